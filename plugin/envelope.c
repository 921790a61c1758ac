/* envelope.c - categories, the known-type table and envelope encoding. */
#include "envelope.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "json.h"

static const char *const category_names[TEL_CAT_COUNT] = {
    "console",    "network", "page",       "interaction", "control",
    "connection", "system",  "screenshot", "captcha",     "monitor",
};

/* Known types and their fixed categories (telemetry-api.md section 2). */
static const struct {
    const char *type;
    int category;
} known_types[] = {
    {"console_log", TEL_CAT_CONSOLE},
    {"console_error", TEL_CAT_CONSOLE},
    {"network_request", TEL_CAT_NETWORK},
    {"network_response", TEL_CAT_NETWORK},
    {"network_loading_failed", TEL_CAT_NETWORK},
    {"network_idle", TEL_CAT_NETWORK},
    {"page_navigation", TEL_CAT_PAGE},
    {"page_dom_content_loaded", TEL_CAT_PAGE},
    {"page_load", TEL_CAT_PAGE},
    {"page_tab_opened", TEL_CAT_PAGE},
    {"page_layout_shift", TEL_CAT_PAGE},
    {"page_lcp", TEL_CAT_PAGE},
    {"page_layout_settled", TEL_CAT_PAGE},
    {"page_navigation_settled", TEL_CAT_PAGE},
    {"interaction_click", TEL_CAT_INTERACTION},
    {"interaction_key", TEL_CAT_INTERACTION},
    {"interaction_scroll_settled", TEL_CAT_INTERACTION},
    {"api_call", TEL_CAT_CONTROL},
    {"cdp_connect", TEL_CAT_CONNECTION},
    {"cdp_disconnect", TEL_CAT_CONNECTION},
    {"live_view_connect", TEL_CAT_CONNECTION},
    {"live_view_disconnect", TEL_CAT_CONNECTION},
    {"system_oom_kill", TEL_CAT_SYSTEM},
    {"service_crashed", TEL_CAT_SYSTEM},
    {"monitor_screenshot", TEL_CAT_SCREENSHOT},
    {"captcha_solve_result", TEL_CAT_CAPTCHA},
    {"monitor_disconnected", TEL_CAT_MONITOR},
    {"monitor_reconnected", TEL_CAT_MONITOR},
    {"monitor_reconnect_failed", TEL_CAT_MONITOR},
    {"monitor_init_failed", TEL_CAT_MONITOR},
};

#define SESSION_KEY "telemetry_session_id"

const char *tel_category_name(int cat)
{
    if (cat < 0 || cat >= TEL_CAT_COUNT)
        return NULL;
    return category_names[cat];
}

int tel_category_parse(const char *name, size_t len, int *cat)
{
    for (int i = 0; i < TEL_CAT_COUNT; i++) {
        if (strlen(category_names[i]) == len && memcmp(category_names[i], name, len) == 0) {
            *cat = i;
            return 0;
        }
    }
    return -EINVAL;
}

int tel_type_category(const char *type)
{
    for (size_t i = 0; i < sizeof known_types / sizeof known_types[0]; i++) {
        if (strcmp(known_types[i].type, type) == 0)
            return known_types[i].category;
    }
    return -ENOENT;
}

uint32_t tel_cats_effective(uint32_t user_mask)
{
    user_mask &= TEL_CATS_USER;
    if (user_mask & TEL_CATS_CDP)
        user_mask |= TELEMETRY_CAT_MONITOR;
    return user_mask;
}

#define META_SMALL 16

struct meta_ref {
    const struct tel_meta *m;
    size_t idx;
};

/* By key, then by input position, so the last duplicate ends each run. */
static int meta_cmp(const void *a, const void *b)
{
    const struct meta_ref *x = a, *y = b;
    int c = strcmp(x->m->key, y->m->key);
    if (c != 0)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The envelope is built in one flat buffer (on the stack for the usual
 * size) and handed to the evbuffer at once: evbuffer_add per field cost
 * more than the encoding itself. */
struct wbuf {
    char *p;
    size_t n, cap;
    int err;
    char stack[2048];
};

static void wb_init(struct wbuf *w)
{
    w->p = w->stack;
    w->n = 0;
    w->cap = sizeof w->stack;
    w->err = 0;
}

static void wb_release(struct wbuf *w)
{
    if (w->p != w->stack)
        free(w->p);
}

static char *wb_reserve(struct wbuf *w, size_t extra)
{
    if (w->err != 0)
        return NULL;
    if (extra > w->cap - w->n) {
        size_t cap = w->cap * 2 > w->n + extra ? w->cap * 2 : w->n + extra;
        char *np = w->p == w->stack ? malloc(cap) : realloc(w->p, cap);
        if (np == NULL) {
            w->err = -ENOMEM;
            return NULL;
        }
        if (w->p == w->stack)
            memcpy(np, w->stack, w->n);
        w->p = np;
        w->cap = cap;
    }
    return w->p + w->n;
}

static int wb_put(struct wbuf *w, const char *s, size_t n)
{
    char *d = wb_reserve(w, n);
    if (d == NULL)
        return -ENOMEM;
    memcpy(d, s, n);
    w->n += n;
    return 0;
}

/* Literal s at p; evaluates to the end of what was written. */
#define PUT_LIT(p, s) ((char *)memcpy((p), (s), sizeof(s) - 1) + sizeof(s) - 1)

/* s as a JSON string at p (room for TEL_JSON_STRING_MAX(len) reserved). */
static char *put_str(char *p, const char *s, size_t len)
{
    return p + tel_json_put_string(p, s, len);
}

/* Metadata: sorted keys, last duplicate wins (as a Go map), the session id
 * stamped over any caller value. O(n log n): n is bounded only by the body
 * size. Room for every pair is reserved at once, then written directly. */
static int encode_metadata(struct wbuf *out, const struct tel_event *ev, const char *session_id)
{
    int rc = 0;
    size_t n = 0, room = 0;
    struct meta_ref *v = NULL;
    struct tel_meta stamp = {SESSION_KEY, session_id};
    size_t *lens = NULL, small_lens[2 * META_SMALL];

    /* The usual event has a few pairs: no allocation for those. */
    struct meta_ref small[META_SMALL];
    if (ev->meta_count + 1 <= META_SMALL) {
        v = small;
        lens = small_lens;
    } else if ((v = calloc(ev->meta_count + 1, sizeof *v)) == NULL ||
               (lens = calloc(2 * (ev->meta_count + 1), sizeof *lens)) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < ev->meta_count; i++) {
        if (session_id != NULL && strcmp(ev->meta[i].key, SESSION_KEY) == 0)
            continue;
        v[n].m = &ev->meta[i];
        v[n].idx = n;
        n++;
    }
    if (session_id != NULL) {
        v[n].m = &stamp;
        v[n].idx = n;
        n++;
    }
    if (n == 0)
        goto out;
    if (n > 1)
        qsort(v, n, sizeof *v, meta_cmp);
    for (size_t i = 0; i < n; i++) {
        lens[2 * i] = strlen(v[i].m->key);
        lens[2 * i + 1] = strlen(v[i].m->value);
        room += TEL_JSON_STRING_MAX(lens[2 * i]) + TEL_JSON_STRING_MAX(lens[2 * i + 1]) + 2;
    }
    char *d = wb_reserve(out, 14 + room);
    if (d == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    char *p = PUT_LIT(d, ",\"metadata\":{");
    for (size_t i = 0, written = 0; i < n; i++) {
        if (i + 1 < n && strcmp(v[i].m->key, v[i + 1].m->key) == 0)
            continue;
        if (written++ > 0)
            *p++ = ',';
        if (v[i].m == &stamp) /* our own key needs no escaping */
            p = PUT_LIT(p, "\"" SESSION_KEY "\"");
        else
            p = put_str(p, v[i].m->key, lens[2 * i]);
        *p++ = ':';
        p = put_str(p, v[i].m->value, lens[2 * i + 1]);
    }
    *p++ = '}';
    out->n += (size_t)(p - d);
out:
    if (v != small)
        free(v);
    if (lens != small_lens)
        free(lens);
    return rc;
}

static int encode_head(const struct tel_event *ev, uint64_t seq, const char *session_id,
                       struct wbuf *w)
{
    int rc;
    const char *cat = tel_category_name(ev->category);
    if (cat == NULL || ev->type == NULL || ev->type[0] == '\0')
        return -EINVAL;
    const char *kind = ev->source_kind != NULL ? ev->source_kind : "";
    const char *sev =
        ev->source_event != NULL && ev->source_event[0] != '\0' ? ev->source_event : NULL;
    size_t tlen = strlen(ev->type), clen = strlen(cat), klen = strlen(kind);
    size_t elen = sev != NULL ? strlen(sev) : 0;
    /* One reservation for everything before the metadata: literals,
     * numbers and each string at its longest escaped form. */
    size_t room = 96 + 2 * TEL_JSON_INT_MAX + TEL_JSON_STRING_MAX(tlen) + clen +
                  TEL_JSON_STRING_MAX(klen) + (sev != NULL ? TEL_JSON_STRING_MAX(elen) : 0);
    char *d = wb_reserve(w, room);
    if (d == NULL)
        return -ENOMEM;
    char *p = PUT_LIT(d, "{\"seq\":");
    p += tel_json_fmt_u64(p, seq);
    p = PUT_LIT(p, ",\"event\":{\"ts\":");
    p += tel_json_fmt_i64(p, ev->ts_us);
    p = PUT_LIT(p, ",\"type\":");
    p = put_str(p, ev->type, tlen);
    p = PUT_LIT(p, ",\"category\":\"");
    p = (char *)memcpy(p, cat, clen) + clen;
    p = PUT_LIT(p, "\",\"source\":{\"kind\":");
    p = put_str(p, kind, klen);
    if (sev != NULL) {
        p = PUT_LIT(p, ",\"event\":");
        p = put_str(p, sev, elen);
    }
    w->n += (size_t)(p - d);
    if ((rc = encode_metadata(w, ev, session_id)) != 0)
        return rc;
    return wb_put(w, "}", 1);
}

/* The envelope into w after its first head bytes; data too unless it would
 * take the envelope over the limit. */
static int encode_flat(const struct tel_event *ev, uint64_t seq, const char *session_id,
                       size_t head, struct wbuf *w, int *trunc)
{
    int rc;
    w->n = head;
    if ((rc = encode_head(ev, seq, session_id, w)) != 0)
        return rc;
    size_t json = w->n - head;
    /* Like the reference: over the limit, data becomes null (even when it
     * was absent and the rest alone is too big). */
    *trunc = json + (ev->data != NULL ? 8 + ev->data_len : 0) + 2 > TEL_ENVELOPE_MAX_BYTES;
    if (*trunc)
        return wb_put(w, ",\"data\":null,\"truncated\":true}}", 31);
    if (ev->data == NULL)
        return wb_put(w, "}}", 2);
    if ((rc = wb_put(w, ",\"data\":", 8)) == 0 && (rc = wb_put(w, ev->data, ev->data_len)) == 0)
        rc = wb_put(w, "}}", 2);
    return rc;
}

int tel_envelope_encode(const struct tel_event *ev, uint64_t seq, const char *session_id,
                        struct evbuffer *out, int *truncated)
{
    struct wbuf w;
    int rc, trunc = 0;
    wb_init(&w);
    rc = encode_flat(ev, seq, session_id, 0, &w, &trunc);
    /* One evbuffer_add: out gets all of it or, on error, nothing. */
    if (rc == 0 && evbuffer_add(out, w.p, w.n) != 0)
        rc = -ENOMEM;
    if (rc == 0 && truncated != NULL)
        *truncated = trunc;
    wb_release(&w);
    return rc;
}

int tel_envelope_build(const struct tel_event *ev, uint64_t seq, const char *session_id,
                       size_t head, size_t tail, char **out, size_t *json_len, int *truncated)
{
    struct wbuf w;
    char *block = NULL;
    int rc, trunc = 0;

    *out = NULL;
    wb_init(&w);
    if (head > w.cap) {
        if (wb_reserve(&w, head) == NULL)
            return -ENOMEM;
    }
    rc = encode_flat(ev, seq, session_id, head, &w, &trunc);
    if (rc == 0 && wb_reserve(&w, tail) == NULL)
        rc = -ENOMEM;
    if (rc != 0)
        goto out;
    *json_len = w.n - head;
    if (w.p != w.stack) {
        /* Already on the heap: hand it over as it is. */
        block = w.p;
        w.p = w.stack;
    } else if ((block = malloc(w.n + tail)) != NULL) {
        memcpy(block + head, w.p + head, w.n - head);
    } else {
        rc = -ENOMEM;
        goto out;
    }
    *out = block;
    if (truncated != NULL)
        *truncated = trunc;
out:
    wb_release(&w);
    return rc;
}
