/* session.c - the category gate and the /telemetry config routes. */
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>

#include "bus.h"
#include "envelope.h"
#include "httputil.h"
#include "json.h"

#define ID_LEN 24

struct sub {
    uint64_t id; /* 0 = free */
    tel_session_fn fn;
    void *arg;
};

struct tel_session {
    struct tel_bus *bus;
    uint32_t user_mask; /* 0 = no session */
    char id[ID_LEN + 1];
    char applied_at[40];
    uint64_t next_sub_id;
    struct sub subs[TEL_SESSION_MAX_SUBSCRIBERS];
};

int tel_session_new(struct tel_bus *bus, struct tel_session **out)
{
    struct tel_session *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->bus = bus;
    s->next_sub_id = 1;
    *out = s;
    return 0;
}

void tel_session_free(struct tel_session *s)
{
    free(s);
}

/* A cuid2-shaped id: a letter, then lower-case letters and digits. */
static int new_id(char *id)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[ID_LEN];
    size_t got = 0;
    while (got < sizeof rnd) {
        ssize_t n = getrandom(rnd + got, sizeof rnd - got, GRND_NONBLOCK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    id[0] = alnum[rnd[0] % 26];
    for (size_t i = 1; i < ID_LEN; i++)
        id[i] = alnum[rnd[i] % 36];
    id[ID_LEN] = '\0';
    return 0;
}

/* RFC 3339 UTC with the fraction trimmed, as Go prints a time. */
static void now_rfc3339(char *out, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    long ns = ts.tv_nsec;
    if (ns > 0 && n + 12 < len) {
        char frac[24];
        snprintf(frac, sizeof frac, ".%09ld", ns);
        size_t fl = strlen(frac);
        while (fl > 1 && frac[fl - 1] == '0')
            frac[--fl] = '\0';
        memcpy(out + n, frac, fl + 1);
        n += fl;
    }
    snprintf(out + n, len - n, "Z");
}

static void notify(struct tel_session *s, uint32_t before)
{
    uint32_t after = tel_session_mask(s);
    if (after == before)
        return;
    for (size_t i = 0; i < TEL_SESSION_MAX_SUBSCRIBERS; i++) {
        if (s->subs[i].id != 0)
            s->subs[i].fn(after, s->subs[i].arg);
    }
}

int tel_session_apply(struct tel_session *s, uint32_t user_mask, int *started)
{
    uint32_t before = tel_session_mask(s);
    int rc = 0, start = 0;
    user_mask &= TEL_CATS_USER;
    if (user_mask == 0) {
        s->user_mask = 0;
        s->id[0] = '\0';
        s->applied_at[0] = '\0';
    } else {
        if (s->user_mask == 0) {
            if ((rc = new_id(s->id)) != 0)
                goto out;
            start = 1;
        }
        s->user_mask = user_mask;
        now_rfc3339(s->applied_at, sizeof s->applied_at);
    }
    notify(s, before);
out:
    if (started != NULL)
        *started = start;
    return rc;
}

uint32_t tel_session_user_mask(const struct tel_session *s)
{
    return s->user_mask;
}

uint32_t tel_session_mask(const struct tel_session *s)
{
    return tel_cats_effective(s->user_mask);
}

const char *tel_session_id(const struct tel_session *s)
{
    return s->user_mask != 0 ? s->id : NULL;
}

int tel_session_parse(const char *body, size_t len, int patch, uint32_t current, uint32_t *mask_out,
                      char *err, size_t errlen)
{
    int rc = -EINVAL;
    cJSON *root = NULL;
    const cJSON *browser;
    uint32_t mask = patch ? current & TEL_CATS_USER : 0;

    if (len == 0) {
        if (patch) {
            snprintf(err, errlen, "invalid JSON body: a body is required");
            goto out;
        }
        *mask_out = TEL_CATS_DEFAULT;
        rc = 0;
        goto out;
    }
    if (tel_json_compact(body, len, NULL) != 0 ||
        (root = cJSON_ParseWithLength(body, len)) == NULL) {
        snprintf(err, errlen, "invalid JSON body: not valid JSON");
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "invalid JSON body: expected an object");
        goto out;
    }
    browser = cJSON_GetObjectItemCaseSensitive(root, "browser");
    if (browser == NULL || cJSON_IsNull(browser)) {
        *mask_out = patch ? mask : TEL_CATS_DEFAULT;
        rc = 0;
        goto out;
    }
    if (!cJSON_IsObject(browser)) {
        snprintf(err, errlen, "invalid JSON body: browser must be an object");
        goto out;
    }
    for (int cat = 0; cat < TEL_CAT_COUNT; cat++) {
        uint32_t bit = 1u << cat;
        if (!(bit & TEL_CATS_USER))
            continue;
        const char *name = tel_category_name(cat);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(browser, name);
        if (c == NULL || cJSON_IsNull(c))
            continue;
        if (!cJSON_IsObject(c)) {
            snprintf(err, errlen, "invalid JSON body: browser.%s must be an object", name);
            goto out;
        }
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(c, "enabled");
        if (en == NULL || cJSON_IsNull(en))
            continue;
        if (!cJSON_IsBool(en)) {
            snprintf(err, errlen, "invalid JSON body: browser.%s.enabled must be a boolean", name);
            goto out;
        }
        if (cJSON_IsTrue(en))
            mask |= bit;
        else
            mask &= ~bit;
    }
    *mask_out = mask;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int tel_session_state_json(const struct tel_session *s, struct evbuffer *out)
{
    int rc = 0, first = 1;
    rc |= evbuffer_add_printf(out, "{\"config\":{\"browser\":{") < 0;
    for (int cat = 0; cat < TEL_CAT_COUNT; cat++) {
        uint32_t bit = 1u << cat;
        if (!(bit & TEL_CATS_USER))
            continue;
        rc |= evbuffer_add_printf(out, "%s\"%s\":{\"enabled\":%s}", first ? "" : ",",
                                  tel_category_name(cat),
                                  (s->user_mask & bit) ? "true" : "false") < 0;
        first = 0;
    }
    rc |= evbuffer_add_printf(out, "}},\"seq\":%" PRIu64, tel_bus_last_seq(s->bus)) < 0;
    if (s->user_mask != 0)
        rc |= evbuffer_add_printf(out, ",\"applied_at\":\"%s\"", s->applied_at) < 0;
    rc |= evbuffer_add(out, "}", 1);
    return rc ? -ENOMEM : 0;
}

int tel_session_subscribe(struct tel_session *s, tel_session_fn fn, void *arg, uint64_t *id)
{
    for (size_t i = 0; i < TEL_SESSION_MAX_SUBSCRIBERS; i++) {
        if (s->subs[i].id == 0) {
            s->subs[i].id = s->next_sub_id++;
            s->subs[i].fn = fn;
            s->subs[i].arg = arg;
            *id = s->subs[i].id;
            return 0;
        }
    }
    return -ENOSPC;
}

void tel_session_unsubscribe(struct tel_session *s, uint64_t id)
{
    for (size_t i = 0; i < TEL_SESSION_MAX_SUBSCRIBERS; i++) {
        if (id != 0 && s->subs[i].id == id)
            s->subs[i].id = 0;
    }
}

static void reply_state(struct evhttp_request *req, struct tel_session *s, int status)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL || tel_session_state_json(s, b) != 0) {
        tel_http_error(req, 500, "out of memory");
    } else {
        size_t n = evbuffer_get_length(b);
        tel_http_json(req, status, (const char *)evbuffer_pullup(b, -1), n);
    }
    if (b != NULL)
        evbuffer_free(b);
}

void tel_session_handle_get(struct evhttp_request *req, void *arg)
{
    struct tel_session *s = arg;
    if (s->user_mask == 0) {
        tel_http_error(req, 404, "telemetry is not configured");
        return;
    }
    reply_state(req, s, 200);
}

static void handle_change(struct evhttp_request *req, struct tel_session *s, int patch)
{
    const char *body;
    size_t len;
    uint32_t mask;
    int started = 0;
    char err[200];

    if (patch && s->user_mask == 0) {
        tel_http_error(req, 404, "telemetry is not configured");
        return;
    }
    int rc = tel_http_body(req, TEL_SESSION_MAX_BODY, &body, &len);
    if (rc == -EFBIG) {
        tel_http_error(req, 413, "request body exceeds %d bytes", TEL_SESSION_MAX_BODY);
        return;
    }
    if (rc != 0) {
        tel_http_error(req, 500, "out of memory");
        return;
    }
    if (tel_session_parse(body, len, patch, s->user_mask, &mask, err, sizeof err) != 0) {
        tel_http_error(req, 400, "%s", err);
        return;
    }
    if (tel_session_apply(s, mask, &started) != 0) {
        tel_http_error(req, 500, "failed to start telemetry");
        return;
    }
    reply_state(req, s, started ? 201 : 200);
}

void tel_session_handle_put(struct evhttp_request *req, void *arg)
{
    handle_change(req, arg, 0);
}

void tel_session_handle_patch(struct evhttp_request *req, void *arg)
{
    handle_change(req, arg, 1);
}
