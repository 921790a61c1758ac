/* publish.c - POST /telemetry/events and the shared telemetry service. */
#include "publish.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "bus.h"
#include "httputil.h"
#include "json.h"
#include "session.h"
#include "telemetry/service.h"

struct tel_publish {
    struct tel_bus *bus;
    struct tel_session *session;
    size_t max_body;
    struct telemetry_service service;
    void (*pending_fn)(void *arg); /* run before every gated publish */
    void *pending_arg;
};

int64_t tel_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int tel_publish_event(struct tel_publish *p, struct tel_event *ev, int *admitted,
                      const struct tel_env **env)
{
    const char *session_id;
    int rc;
    *admitted = 0;
    if (p->pending_fn != NULL)
        p->pending_fn(p->pending_arg);
    if (ev->category < 0 || ev->category >= TEL_CAT_COUNT)
        return -EINVAL;
    if (!tel_publish_gate(p, ev->category, &session_id))
        return 0;
    rc = tel_publish_admitted(p, ev, session_id, env);
    if (rc == 0)
        *admitted = 1;
    return rc;
}

int tel_publish_gate(const struct tel_publish *p, int category, const char **session_id)
{
    if (category < 0 || category >= TEL_CAT_COUNT ||
        !(tel_session_mask(p->session) & (1u << category)))
        return 0;
    *session_id = tel_session_id(p->session);
    return 1;
}

int tel_publish_admitted(struct tel_publish *p, struct tel_event *ev, const char *session_id,
                         const struct tel_env **env)
{
    if (ev->ts_us == 0)
        ev->ts_us = tel_now_us();
    return tel_bus_publish(p->bus, ev, session_id, env);
}

void tel_publish_set_pending(struct tel_publish *p, void (*fn)(void *arg), void *arg)
{
    p->pending_fn = fn;
    p->pending_arg = arg;
}

void tel_publish_req_clear(struct tel_publish_req *req)
{
    cJSON_Delete(req->root);
    free(req->meta);
    free(req->text);
    if (req->data != NULL)
        evbuffer_free(req->data);
    memset(req, 0, sizeof *req);
}

/* Metadata: a JSON object of strings (null = none). */
static int meta_from_json(const cJSON *obj, struct tel_meta **out, size_t *count)
{
    size_t n = 0, i = 0;
    const cJSON *it;
    *out = NULL;
    *count = 0;
    if (obj == NULL || cJSON_IsNull(obj))
        return 0;
    if (!cJSON_IsObject(obj))
        return -EINVAL;
    cJSON_ArrayForEach(it, obj)
    {
        if (!cJSON_IsString(it) || it->string == NULL)
            return -EINVAL;
        n++;
    }
    if (n == 0)
        return 0;
    *out = calloc(n, sizeof **out);
    if (*out == NULL)
        return -ENOMEM;
    cJSON_ArrayForEach(it, obj)
    {
        (*out)[i].key = it->string;
        (*out)[i].value = it->valuestring;
        i++;
    }
    *count = n;
    return 0;
}

/* Compact a JSON value text into req->data and point ev.data at it. */
static int set_data(struct tel_publish_req *req, const char *text, size_t len)
{
    int rc;
    req->data = evbuffer_new();
    if (req->data == NULL)
        return -ENOMEM;
    if ((rc = tel_json_compact(text, len, req->data)) != 0)
        return rc;
    req->ev.data_len = evbuffer_get_length(req->data);
    req->ev.data = (const char *)evbuffer_pullup(req->data, -1);
    return req->ev.data != NULL ? 0 : -ENOMEM;
}

/* An optional string member: absent and null are NULL; another type fails. */
static int opt_string(const cJSON *obj, const char *key, const char **out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (it == NULL || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsString(it))
        return -EINVAL;
    *out = it->valuestring;
    return 0;
}

/* Steps 2-4 of the contract, on what step 1 found. */
static int check_event(struct tel_publish_req *req, const char *type, const char *category,
                       char *err, size_t errlen)
{
    /* 2. type. */
    if (type == NULL || type[0] == '\0') {
        snprintf(err, errlen, "type is required");
        return 400;
    }
    req->ev.type = type;
    /* 3. category: fixed for known types, else given and valid. */
    req->ev.category = tel_type_category(type);
    if (req->ev.category < 0) {
        if (category == NULL) {
            snprintf(err, errlen, "category is required for unknown event type");
            return 400;
        }
        if (tel_category_parse(category, strlen(category), &req->ev.category) != 0) {
            snprintf(err, errlen, "invalid category");
            return 400;
        }
    }
    /* 4. kernel_api is the agent's own. */
    if (req->ev.source_kind != NULL && strcmp(req->ev.source_kind, "kernel_api") == 0) {
        snprintf(err, errlen, "source.kind kernel_api is reserved for server-generated events");
        return 400;
    }
    return 0;
}

static int key_is(const char *k, size_t klen, const char *name, size_t nlen)
{
    return klen == nlen && memcmp(k, name, nlen) == 0;
}

#define KEY_IS(k, klen, lit) key_is(k, klen, lit, sizeof(lit) - 1)

/* A string value without escapes, NUL-terminated into the arena. */
static const char *arena_str(char **arena, const char *val, size_t vlen)
{
    char *d = *arena;
    memcpy(d, val + 1, vlen - 2);
    d[vlen - 2] = '\0';
    *arena += vlen - 1;
    return d;
}

/* A member value: NULL when absent or null. */
static const char *present(const char *v)
{
    return v != NULL && v[0] != 'n' ? v : NULL;
}

/* Asks tel_publish_parse to take the cJSON path. */
#define PARSE_WITH_CJSON (-1)

/* Steps 1-4 in one pass over the body, no tree built: the walk validates
 * every member while it finds the ones read, and compacts data as it goes.
 * Strings that would need decoding (an escape in a member name, in type or
 * category, anywhere in source) send the body to the cJSON path instead;
 * data and ignored members are copied as written, escapes and all. Same
 * rules and messages as that path: the whole body is checked before
 * anything else, the first member of a name counts, metadata keeps every
 * pair in order. */
static int parse_plain(const char *body, size_t len, struct tel_publish_req *req, char *err,
                       size_t errlen)
{
    struct tel_json_walk w;
    struct tel_json_iter sit, mit;
    const char *k, *v, *type_v = NULL, *cat_v = NULL, *src_v = NULL, *data_v = NULL;
    const char *kind_v = NULL, *event_v = NULL, *meta_v = NULL;
    const char *type = NULL, *category = NULL;
    size_t kl, vl, type_l = 0, cat_l = 0, src_l = 0, data_l = 0, kind_l = 0, event_l = 0,
                   meta_l = 0, dlen = 0;
    char *arena;
    int r, data_rc = 0;

    if (tel_json_walk_init(&w, body, len) != 0)
        return PARSE_WITH_CJSON; /* not an object: that path words the error */
    /* data's compact form usually fits in the body's length (escapes can
     * make it longer); every other string kept is shorter than the body. */
    if ((req->text = malloc(2 * len + 1)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return 500;
    }
    arena = req->text + len;
    while ((r = tel_json_walk_key(&w, &k, &kl)) == 1) {
        int wanted = 0;
        if (tel_json_walk_escapes(&w) != 0)
            return PARSE_WITH_CJSON;
        if (data_v == NULL && KEY_IS(k, kl, "data")) {
            if ((data_rc = tel_json_walk_value(&w, req->text, len, &data_v, &data_l, &dlen)) ==
                -EINVAL)
                break;
            continue;
        }
        if (tel_json_walk_value(&w, NULL, 0, &v, &vl, NULL) != 0) {
            r = -EINVAL;
            break;
        }
        if (type_v == NULL && KEY_IS(k, kl, "type"))
            type_v = v, type_l = vl, wanted = 1;
        else if (cat_v == NULL && KEY_IS(k, kl, "category"))
            cat_v = v, cat_l = vl, wanted = 1;
        else if (src_v == NULL && KEY_IS(k, kl, "source"))
            src_v = v, src_l = vl, wanted = 1;
        if (wanted && tel_json_walk_escapes(&w) != 0)
            return PARSE_WITH_CJSON;
    }
    if (r != 0 || data_rc == -EINVAL) {
        snprintf(err, errlen, "invalid JSON body: not valid JSON");
        return 400;
    }
    if ((type_v = present(type_v)) != NULL) {
        if (type_v[0] != '"') {
            snprintf(err, errlen, "invalid JSON body: type must be a string");
            return 400;
        }
        type = arena_str(&arena, type_v, type_l);
    }
    if ((cat_v = present(cat_v)) != NULL) {
        if (cat_v[0] != '"') {
            snprintf(err, errlen, "invalid JSON body: category must be a string");
            return 400;
        }
        category = arena_str(&arena, cat_v, cat_l);
    }
    if ((src_v = present(src_v)) != NULL) {
        /* Already checked: the iterator only finds the members again. */
        if (src_v[0] != '{' || tel_json_iter_init(&sit, src_v, src_l) != 0) {
            snprintf(err, errlen, "invalid JSON body: source must be an object");
            return 400;
        }
        while ((r = tel_json_iter_next(&sit, &k, &kl, &v, &vl)) == 1) {
            if (kind_v == NULL && KEY_IS(k, kl, "kind"))
                kind_v = v, kind_l = vl;
            else if (event_v == NULL && KEY_IS(k, kl, "event"))
                event_v = v, event_l = vl;
            else if (meta_v == NULL && KEY_IS(k, kl, "metadata"))
                meta_v = v, meta_l = vl;
        }
        kind_v = present(kind_v);
        event_v = present(event_v);
        if (r < 0 || (kind_v != NULL && kind_v[0] != '"') ||
            (event_v != NULL && event_v[0] != '"')) {
            snprintf(err, errlen,
                     "invalid JSON body: source.kind and source.event must be strings");
            return 400;
        }
        if (kind_v != NULL)
            req->ev.source_kind = arena_str(&arena, kind_v, kind_l);
        if (event_v != NULL)
            req->ev.source_event = arena_str(&arena, event_v, event_l);
        if ((meta_v = present(meta_v)) != NULL) {
            size_t n = 0, i = 0;
            r = meta_v[0] == '{' ? tel_json_iter_init(&mit, meta_v, meta_l) : -EINVAL;
            while (r == 0 && (r = tel_json_iter_next(&mit, &k, &kl, &v, &vl)) == 1) {
                r = v[0] == '"' ? 0 : -EINVAL;
                n++;
            }
            if (r != 0) {
                snprintf(err, errlen,
                         "invalid JSON body: source.metadata must be an object of strings");
                return 400;
            }
            if (n > 0 && (req->meta = calloc(n, sizeof *req->meta)) == NULL) {
                snprintf(err, errlen, "out of memory");
                return 500;
            }
            tel_json_iter_init(&mit, meta_v, meta_l);
            while (i < n && tel_json_iter_next(&mit, &k, &kl, &v, &vl) == 1) {
                /* The key as a string value: its quotes are around it. */
                req->meta[i].key = arena_str(&arena, k - 1, kl + 2);
                req->meta[i].value = arena_str(&arena, v, vl);
                i++;
            }
            req->ev.meta = req->meta;
            req->ev.meta_count = n;
        }
    }
    if ((data_v = present(data_v)) != NULL) {
        int rc = 0;
        if (data_rc == 0) {
            req->ev.data = req->text;
            req->ev.data_len = dlen;
        } else {
            rc = set_data(req, data_v, data_l); /* -ENOSPC: longer once escaped */
        }
        if (rc != 0) {
            snprintf(err, errlen, rc == -ENOMEM ? "out of memory" : "invalid data");
            return rc == -ENOMEM ? 500 : 400;
        }
    }
    return check_event(req, type, category, err, errlen);
}

int tel_publish_parse(const char *body, size_t len, struct tel_publish_req *req, char *err,
                      size_t errlen)
{
    const cJSON *source, *data;
    const char *type, *category, *span;
    size_t span_len;
    int rc;

    memset(req, 0, sizeof *req);
    /* 1. Strict JSON, an object. cJSON alone is laxer than RFC 8259. */
    if (len == 0) {
        snprintf(err, errlen, "invalid JSON body: empty body");
        return 400;
    }
    if ((rc = parse_plain(body, len, req, err, errlen)) != PARSE_WITH_CJSON)
        return rc;
    tel_publish_req_clear(req);
    if (tel_json_compact(body, len, NULL) != 0) {
        snprintf(err, errlen, "invalid JSON body: not valid JSON");
        return 400;
    }
    if ((req->root = cJSON_ParseWithLength(body, len)) == NULL) {
        snprintf(err, errlen, "invalid JSON body: not valid JSON");
        return 400;
    }
    if (!cJSON_IsObject(req->root)) {
        snprintf(err, errlen, "invalid JSON body: expected an object");
        return 400;
    }
    if (opt_string(req->root, "type", &type) != 0) {
        snprintf(err, errlen, "invalid JSON body: type must be a string");
        return 400;
    }
    if (opt_string(req->root, "category", &category) != 0) {
        snprintf(err, errlen, "invalid JSON body: category must be a string");
        return 400;
    }
    source = cJSON_GetObjectItemCaseSensitive(req->root, "source");
    if (source != NULL && !cJSON_IsNull(source)) {
        if (!cJSON_IsObject(source)) {
            snprintf(err, errlen, "invalid JSON body: source must be an object");
            return 400;
        }
        if (opt_string(source, "kind", &req->ev.source_kind) != 0 ||
            opt_string(source, "event", &req->ev.source_event) != 0) {
            snprintf(err, errlen,
                     "invalid JSON body: source.kind and source.event must be strings");
            return 400;
        }
        rc = meta_from_json(cJSON_GetObjectItemCaseSensitive(source, "metadata"), &req->meta,
                            &req->ev.meta_count);
        if (rc == -ENOMEM) {
            snprintf(err, errlen, "out of memory");
            return 500;
        }
        if (rc != 0) {
            snprintf(err, errlen,
                     "invalid JSON body: source.metadata must be an object of strings");
            return 400;
        }
        req->ev.meta = req->meta;
    }
    /* data: the caller's text, compacted, numbers untouched. cJSON decodes
     * escaped member names, the span finder does not: fall back to
     * re-printing in that rare case. */
    data = cJSON_GetObjectItemCaseSensitive(req->root, "data");
    if (data != NULL && !cJSON_IsNull(data)) {
        char *printed = NULL;
        if (tel_json_member(body, len, "data", &span, &span_len) == 0) {
            rc = set_data(req, span, span_len);
        } else if ((printed = cJSON_PrintUnformatted(data)) != NULL) {
            rc = set_data(req, printed, strlen(printed));
            cJSON_free(printed);
        } else {
            rc = -ENOMEM;
        }
        if (rc != 0) {
            snprintf(err, errlen, rc == -ENOMEM ? "out of memory" : "invalid data");
            return rc == -ENOMEM ? 500 : 400;
        }
    }
    return check_event(req, type, category, err, errlen);
}

void tel_publish_handle(struct evhttp_request *req, void *arg)
{
    struct tel_publish *p = arg;
    struct tel_publish_req pr;
    const struct tel_env *env = NULL;
    const char *body;
    size_t len;
    int admitted = 0;
    char err[256];

    memset(&pr, 0, sizeof pr);
    int rc = tel_http_body(req, p->max_body, &body, &len);
    if (rc == -EFBIG) {
        tel_http_error(req, 413, "request body exceeds %zu bytes", p->max_body);
        goto out;
    }
    if (rc != 0) {
        tel_http_error(req, 500, "out of memory");
        goto out;
    }
    int status = tel_publish_parse(body, len, &pr, err, sizeof err);
    if (status != 0) {
        tel_http_error(req, status, "%s", err);
        goto out;
    }
    pr.ev.ts_us = tel_now_us(); /* the HTTP route always stamps ts */
    rc = tel_publish_event(p, &pr.ev, &admitted, &env);
    if (rc != 0) {
        tel_http_error(req, 500, "failed to publish event");
        goto out;
    }
    if (!admitted) {
        evhttp_send_reply(req, 204, "No Content", NULL);
        goto out;
    }
    /* The envelope straight into the reply: no buffer of our own. */
    size_t jlen;
    const char *json = tel_env_json(env, &jlen);
    if (evbuffer_add(evhttp_request_get_output_buffer(req), json, jlen) != 0) {
        tel_http_error(req, 500, "out of memory");
        goto out;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", NULL);
out:
    tel_publish_req_clear(&pr);
}

/* --- the shared service --- */

static int svc_publish(void *ctx, const struct telemetry_event *tev, int *admitted,
                       uint64_t *seq_out)
{
    struct tel_publish *p = ctx;
    struct tel_publish_req r;
    const struct tel_env *env = NULL;
    int rc = -EINVAL;

    memset(&r, 0, sizeof r);
    *admitted = 0;
    if (tev == NULL || tev->struct_size < sizeof *tev || tev->type == NULL || tev->type[0] == 0)
        goto out;
    r.ev.type = tev->type;
    r.ev.category = tel_type_category(tev->type);
    if (r.ev.category < 0 &&
        (tev->category == NULL ||
         tel_category_parse(tev->category, strlen(tev->category), &r.ev.category) != 0))
        goto out;
    r.ev.source_kind = tev->source_kind;
    r.ev.source_event = tev->source_event;
    r.ev.ts_us = tev->ts_us;
    if (tev->metadata_json != NULL) {
        r.root = cJSON_Parse(tev->metadata_json);
        if (r.root == NULL || !cJSON_IsObject(r.root))
            goto out;
        if ((rc = meta_from_json(r.root, &r.meta, &r.ev.meta_count)) != 0)
            goto out;
        r.ev.meta = r.meta;
    }
    if (tev->data_json != NULL) {
        size_t dl = tev->data_len != 0 ? tev->data_len : strlen(tev->data_json);
        if ((rc = set_data(&r, tev->data_json, dl)) != 0)
            goto out;
    }
    rc = tel_publish_event(p, &r.ev, admitted, &env);
    if (rc == 0 && *admitted && seq_out != NULL)
        *seq_out = tel_env_seq(env);
out:
    tel_publish_req_clear(&r);
    return rc;
}

static uint32_t svc_categories(void *ctx)
{
    struct tel_publish *p = ctx;
    return tel_session_mask(p->session);
}

static int svc_subscribe(void *ctx, telemetry_categories_fn fn, void *arg, uint64_t *id_out)
{
    struct tel_publish *p = ctx;
    if (fn == NULL || id_out == NULL)
        return -EINVAL;
    return tel_session_subscribe(p->session, fn, arg, id_out);
}

static void svc_unsubscribe(void *ctx, uint64_t id)
{
    struct tel_publish *p = ctx;
    tel_session_unsubscribe(p->session, id);
}

int tel_publish_new(const struct tel_publish_opts *opts, struct tel_publish **out)
{
    struct tel_publish *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -ENOMEM;
    p->bus = opts->bus;
    p->session = opts->session;
    p->max_body = opts->max_body != 0 ? opts->max_body : TEL_PUBLISH_DEFAULT_MAX_BODY;
    p->service.struct_size = sizeof p->service;
    p->service.ctx = p;
    p->service.publish = svc_publish;
    p->service.categories = svc_categories;
    p->service.subscribe = svc_subscribe;
    p->service.unsubscribe = svc_unsubscribe;
    *out = p;
    return 0;
}

void tel_publish_free(struct tel_publish *p)
{
    free(p);
}

const struct telemetry_service *tel_publish_service(struct tel_publish *p)
{
    return &p->service;
}
