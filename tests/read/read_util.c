/* read_util.c - end-to-end helpers of the read suite. */
#include "read_util.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

uint64_t ru_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void ru_s2_start(struct ru_s2 *s2)
{
    const char *argv[] = {ts_env("S2LOCAL_BIN"), "--port", "0", NULL};
    memset(s2, 0, sizeof *s2);
    cr_assert_eq(ts_proc_start(argv, NULL, &s2->proc), 0, "cannot start s2-local");
    cr_assert_eq(ts_proc_wait_log(s2->proc, "listening on http://", 10000), 0,
                 "s2-local did not start: %s", ts_proc_log(s2->proc));
    const char *at = strstr(ts_proc_log(s2->proc), "listening on http://");
    const char *colon = strchr(at + strlen("listening on http://"), ':');
    cr_assert_not_null(colon);
    s2->port = atoi(colon + 1);
    cr_assert_gt(s2->port, 0);
    cr_assert_eq(ts_wait_port(s2->port, 5000), 0);
}

void ru_s2_stop(struct ru_s2 *s2)
{
    ts_proc_free(s2->proc);
    s2->proc = NULL;
}

void ru_agent_start(struct ru_agent *a, const struct ru_s2 *s2, const char *s2_endpoint_override,
                    const char *const extra_env[])
{
    char plugins[4200], endpoint[128], acc[160], bas[160];
    const char *env[48];
    size_t n = 0;

    memset(a, 0, sizeof *a);
    snprintf(plugins, sizeof plugins, "AGENT_PLUGINS=telemetry:%s", ts_env("TELEMETRY_PLUGIN"));
    env[n++] = plugins;
    env[n++] = "AGENT_LOG_LEVEL=debug";
    env[n++] = "S2_BATCHER_LINGER=5ms";
    if (s2 != NULL || s2_endpoint_override != NULL) {
        if (s2_endpoint_override != NULL)
            snprintf(endpoint, sizeof endpoint, "%s", s2_endpoint_override);
        else
            snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d/v1", s2->port);
        snprintf(acc, sizeof acc, "S2_ACCOUNT_ENDPOINT=%s", endpoint);
        snprintf(bas, sizeof bas, "S2_BASIN_ENDPOINT=%s", endpoint);
        env[n++] = acc;
        env[n++] = bas;
        env[n++] = "S2_BASIN=" RU_BASIN;
        env[n++] = "S2_ACCESS_TOKEN=read-e2e-token";
        env[n++] = "S2_STREAM=" RU_STREAM;
    } else {
        /* Not even the embedded archive. */
        env[n++] = "S2_BASIN=";
        env[n++] = "S2_STREAM=";
        env[n++] = "TELEMETRY_ARCHIVE_DIR=";
    }
    for (size_t i = 0; extra_env != NULL && extra_env[i] != NULL && n < 47; i++)
        env[n++] = extra_env[i];
    env[n] = NULL;
    cr_assert_eq(ts_agent_start(NULL, env, &a->proc, &a->port), 0, "agent did not start");
    snprintf(a->base, sizeof a->base, "http://127.0.0.1:%d", a->port);
}

void ru_agent_reap(struct ru_agent *a)
{
    int status = -1;
    if (a->proc == NULL)
        return;
    cr_assert_eq(ts_proc_wait(a->proc, 20000, &status), 0, "agent did not stop");
    const char *log = ts_proc_log(a->proc);
    cr_assert_null(strstr(log, "Sanitizer"), "sanitizer report in the agent log:\n%s", log);
    cr_assert_null(strstr(log, "runtime error"), "UBSan report in the agent log:\n%s", log);
    cr_assert_eq(status, 0, "agent exit status %d; log:\n%s", status, log);
    ts_proc_free(a->proc);
    a->proc = NULL;
}

void ru_agent_stop(struct ru_agent *a)
{
    if (a->proc == NULL)
        return;
    int rc = ts_proc_signal(a->proc, SIGTERM);
    cr_assert(rc == 0 || rc == -ESRCH, "cannot signal the agent: %d", rc);
    ru_agent_reap(a);
}

void ru_agent_kill(struct ru_agent *a)
{
    ts_proc_free(a->proc);
    a->proc = NULL;
}

long ru_publish(const struct ru_agent *a, const char *type, const char *category, int i)
{
    char url[128], body[256];
    struct ts_resp r;
    static const char *const hdr[] = {"Content-Type: application/json", NULL};
    snprintf(url, sizeof url, "%s/telemetry/events", a->base);
    snprintf(body, sizeof body, "{\"type\":\"%s\",\"category\":\"%s\",\"data\":{\"i\":%d}}", type,
             category, i);
    cr_assert_eq(ts_http("POST", url, body, strlen(body), hdr, &r), 0, "publish failed");
    long st = r.status;
    ts_resp_free(&r);
    return st;
}

/* Standard base64 of len bytes; the caller frees. */
static char *base64(const unsigned char *in, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((len + 2) / 3) + 1), *w = out;
    cr_assert_not_null(out);
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        *w++ = tab[(v >> 18) & 63];
        *w++ = tab[(v >> 12) & 63];
        *w++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        *w++ = i + 2 < len ? tab[v & 63] : '=';
    }
    *w = '\0';
    return out;
}

void ru_s2_append_raw(const struct ru_s2 *s2, const char *const bodies[], size_t n)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *recs = cJSON_AddArrayToObject(root, "records");
    for (size_t i = 0; i < n; i++) {
        cJSON *rec = cJSON_CreateObject();
        char *b64 = base64((const unsigned char *)bodies[i], strlen(bodies[i]));
        cJSON_AddStringToObject(rec, "body", b64);
        free(b64);
        cJSON_AddItemToArray(recs, rec);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char url[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/streams/%s/records", s2->port, RU_STREAM);
    static const char *const hdr[] = {"Content-Type: application/json", "S2-Basin: " RU_BASIN,
                                      "S2-Format: base64", "Authorization: Bearer read-e2e-token",
                                      NULL};
    struct ts_resp r;
    cr_assert_eq(ts_http("POST", url, text, strlen(text), hdr, &r), 0);
    cr_assert_eq(r.status, 200, "append to s2-local: %ld %s", r.status, r.body);
    ts_resp_free(&r);
    cJSON_free(text);
}

static void walk_add(struct ru_walk *w, uint64_t seq, const char *category)
{
    w->seqs = realloc(w->seqs, (w->n + 1) * sizeof *w->seqs);
    w->categories = realloc(w->categories, (w->n + 1) * sizeof *w->categories);
    cr_assert(w->seqs != NULL && w->categories != NULL);
    w->seqs[w->n] = seq;
    w->categories[w->n] = strdup(category);
    w->n++;
}

void ru_walk(const struct ru_agent *a, const char *query, int follow_link, size_t max_pages,
             struct ru_walk *w)
{
    char url[1024];
    memset(w, 0, sizeof *w);
    snprintf(url, sizeof url, "%s/telemetry/events%s%s", a->base, query[0] ? "?" : "", query);
    for (;;) {
        struct ts_resp r;
        cr_assert_lt(w->pages, max_pages, "walk did not end within %zu pages", max_pages);
        cr_assert_eq(ts_http("GET", url, NULL, 0, NULL, &r), 0, "GET %s failed", url);
        cr_assert_eq(r.status, 200, "GET %s: %ld %s", url, r.status, r.body);
        const char *ct = ts_resp_header(&r, "Content-Type");
        cr_assert(ct != NULL && strncmp(ct, "application/json", 16) == 0, "content type %s", ct);
        const char *hm = ts_resp_header(&r, "X-Has-More");
        cr_assert_not_null(hm, "no X-Has-More on %s", url);
        cr_assert(strcmp(hm, "true") == 0 || strcmp(hm, "false") == 0, "X-Has-More: %s", hm);
        int has_more = strcmp(hm, "true") == 0;

        cJSON *arr = cJSON_ParseWithLength(r.body, r.body_len);
        cr_assert(cJSON_IsArray(arr), "page is not a JSON array: %s", r.body);
        int len = cJSON_GetArraySize(arr);
        for (int i = 0; i < len; i++) {
            cJSON *env = cJSON_GetArrayItem(arr, i);
            cJSON *seq = cJSON_GetObjectItem(env, "seq");
            cJSON *cat = cJSON_GetObjectItem(cJSON_GetObjectItem(env, "event"), "category");
            cr_assert(cJSON_IsNumber(seq) && cJSON_IsString(cat), "not an envelope in %s", r.body);
            walk_add(w, (uint64_t)seq->valuedouble, cat->valuestring);
        }
        cJSON_Delete(arr);
        w->pages_body = realloc(w->pages_body, (w->pages + 1) * sizeof *w->pages_body);
        w->pages_body[w->pages] = strdup(r.body);
        w->pages++;
        if (len == 0)
            w->empty_pages++;
        w->last_has_more = has_more;

        const char *next = ts_resp_header(&r, "X-Next-Offset");
        const char *link = ts_resp_header(&r, "Link");
        if (!has_more) {
            cr_assert_null(next, "X-Next-Offset without X-Has-More");
            cr_assert_null(link, "Link without X-Has-More");
            ts_resp_free(&r);
            return;
        }
        cr_assert_not_null(next, "X-Has-More: true without X-Next-Offset");
        cr_assert_not_null(link, "X-Has-More: true without Link");
        char want[64];
        snprintf(want, sizeof want, "offset=%s", next);
        cr_assert(strstr(link, want) != NULL, "Link %s does not carry %s", link, want);
        cr_assert(strstr(link, "rel=\"next\"") != NULL, "Link %s has no rel=\"next\"", link);
        cr_assert_eq(link[0], '<');
        if (follow_link) {
            const char *end = strchr(link, '>');
            cr_assert_not_null(end);
            snprintf(url, sizeof url, "%s%.*s", a->base, (int)(end - link - 1), link + 1);
        } else {
            /* The same query, the offset replaced. */
            char q[900] = "";
            size_t qn = 0;
            const char *p = query;
            while (*p != '\0') {
                const char *amp = strchr(p, '&');
                size_t l = amp ? (size_t)(amp - p) : strlen(p);
                if (strncmp(p, "offset=", 7) != 0)
                    qn += (size_t)snprintf(q + qn, sizeof q - qn, "&%.*s", (int)l, p);
                p += l + (amp != NULL);
            }
            snprintf(url, sizeof url, "%s/telemetry/events?offset=%s%s", a->base, next, q);
        }
        ts_resp_free(&r);
    }
}

void ru_walk_free(struct ru_walk *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->categories[i]);
    for (size_t i = 0; i < w->pages; i++)
        free(w->pages_body[i]);
    free(w->seqs);
    free(w->categories);
    free(w->pages_body);
    memset(w, 0, sizeof *w);
}

size_t ru_wait_archived(const struct ru_agent *a, size_t n, int timeout_ms)
{
    long long deadline = ts_now_ms() + timeout_ms;
    size_t seen = 0;
    for (;;) {
        struct ru_walk w;
        ru_walk(a, "limit=1000", 0, 10000, &w);
        seen = w.n;
        ru_walk_free(&w);
        if (seen >= n || ts_now_ms() > deadline)
            return seen;
        ts_sleep_ms(50);
    }
}
