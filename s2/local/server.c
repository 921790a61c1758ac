/* server.c - s2-local's HTTP API on evhttp: S2's REST data plane (JSON). */
#include "server.h"
#include "s2/logf.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "s2/local.h"
#include "s2/wire.h"
#include "dataplane.h"
#include "proto.h"
#include "sse.h"
#include "store.h"

struct poll;

struct s2l_server {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    bool draining;
    uint16_t port;
    struct s2l_store *store;
    char *basin; /* the configured basin, or NULL for any */
    uint32_t max_long_polls;
    s2l_log_fn log;
    void *log_arg;
    struct poll *polls; /* open long polls */
    uint32_t npolls;
    struct s2l_sse_hub *sse; /* read sessions (SSE) */
};

/* What a read returns once its start is known. */
struct read_plan {
    uint64_t start;
    struct s2l_read_bounds b; /* count and bytes within the unary caps */
};

/* An open long poll: a read at the tail waiting for an append or its
 * timeout. */
struct poll {
    struct s2l_server *srv;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct s2l_stream *st;
    struct event *timer;
    struct read_plan plan;
    struct poll *prev, *next;
};

/* One log line through the server's sink. */
#define slog(srv, level, ...) s2_logf((srv)->log, (srv)->log_arg, (level), __VA_ARGS__)

/* ---- JSON output ---- */

static void rfc3339(uint64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- replies ---- */

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Payload Too Large";
    case 416:
        return "Range Not Satisfiable";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return status >= 500 ? "Internal Server Error" : "Error";
    }
}

/* Send buf (emptied; still owned by the caller) with a JSON content type. */
static void reply_json(struct evhttp_request *req, int status, struct evbuffer *buf)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_remove_header(h, "Content-Type");
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_send_reply(req, status, reason(status), buf);
}

static void reply_cjson(struct evhttp_request *req, int status, cJSON *obj)
{
    struct evbuffer *buf = evbuffer_new();
    char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
    if (buf == NULL || text == NULL) {
        evhttp_send_error(req, 500, "out of memory");
    } else {
        evbuffer_add(buf, text, strlen(text));
        reply_json(req, status, buf);
    }
    cJSON_free(text);
    if (buf)
        evbuffer_free(buf);
}

/* The S2 error body {"code","message"}. */
static void reply_error(struct evhttp_request *req, int status, const char *code, const char *fmt,
                        ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "code", code);
        cJSON_AddStringToObject(o, "message", msg);
    }
    reply_cjson(req, status, o);
    cJSON_Delete(o);
}

static void reply_errno(struct s2l_server *srv, struct evhttp_request *req, int rc,
                        const char *what)
{
    if (rc == -ENOSPC) {
        reply_error(req, 503, "unavailable", "%s: storage limit reached", what);
        return;
    }
    slog(srv, 3, "%s: %s", what, strerror(-rc));
    reply_error(req, 500, "storage", "%s: %s", what, strerror(-rc));
}

static void reply_tail(struct evhttp_request *req, int status, const struct s2l_stream *st)
{
    uint64_t seq, ts;
    s2l_stream_tail(st, &seq, &ts);
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add_printf(buf, "{\"tail\":{\"seq_num\":%" PRIu64 ",\"timestamp\":%" PRIu64 "}}", seq,
                        ts);
    reply_json(req, status, buf);
    evbuffer_free(buf);
}

static void reply_text(struct evhttp_request *req, int status, const char *text)
{
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(buf, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
    evhttp_send_reply(req, status, reason(status), buf);
    evbuffer_free(buf);
}

/* ---- request parsing helpers ---- */

static const char *in_header(struct evhttp_request *req, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(req), name);
}

static bool ctype_is_json(const char *ct)
{
    if (ct == NULL)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return true;
    return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
           strncasecmp(ct + n - 5, "+json", 5) == 0;
}

/* S2-Format: raw (default) | json | base64 | json-binsafe. */
static int parse_format(struct evhttp_request *req, enum s2l_fmt *out)
{
    const char *f = in_header(req, "S2-Format");
    *out = S2L_FMT_RAW;
    if (f == NULL || strcmp(f, "raw") == 0 || strcmp(f, "json") == 0)
        return 0;
    if (strcmp(f, "base64") == 0 || strcmp(f, "json-binsafe") == 0) {
        *out = S2L_FMT_BASE64;
        return 0;
    }
    reply_error(req, 400, "bad_header",
                "Invalid header `s2-format`: expected one of raw, json, "
                "base64, json-binsafe");
    return -1;
}

static bool parse_u64_str(const char *s, uint64_t *out)
{
    if (s == NULL || *s == 0 || strlen(s) > 20)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* The request body as one contiguous NUL-terminated string (in the input
 * buffer). */
static const char *body_text(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    if (evbuffer_add(in, "", 1) != 0)
        return NULL;
    return (const char *)evbuffer_pullup(in, -1);
}

/* Whether a JSON text holds the escape \u0000 in a string: cJSON cuts
 * strings there, so such bodies are refused rather than silently cut. */
static bool json_has_nul_escape(const char *s, size_t len)
{
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        if (!in_str) {
            if (s[i] == '"')
                in_str = true;
            continue;
        }
        if (s[i] == '"') {
            in_str = false;
        } else if (s[i] == '\\' && i + 1 < len) {
            if (s[i + 1] == 'u' && i + 5 < len && memcmp(s + i + 2, "0000", 4) == 0)
                return true;
            i++;
        }
    }
    return false;
}

/* Parse a JSON request body; sends 400 bad_json and returns -1 on failure.
 * An empty body gives *out NULL when allow_empty. */
static int parse_json_body(struct evhttp_request *req, bool allow_empty, cJSON **out)
{
    size_t len;
    *out = NULL;
    const char *text = body_text(req, &len);
    if (text == NULL) {
        reply_error(req, 500, "other", "out of memory");
        return -1;
    }
    if (len == 0 && allow_empty)
        return 0;
    if (!ctype_is_json(in_header(req, "Content-Type"))) {
        reply_error(req, 400, "bad_json", "Expected request with `Content-Type: application/json`");
        return -1;
    }
    if (!s2l_utf8_valid((const uint8_t *)text, len)) {
        reply_error(req, 400, "bad_json",
                    "Failed to parse the request body as JSON: invalid UTF-8");
        return -1;
    }
    if (json_has_nul_escape(text, len)) {
        reply_error(req, 400, "bad_json",
                    "Failed to parse the request body as JSON: s2-local does not accept \\u0000 "
                    "in strings; send bytes with `S2-Format: base64`");
        return -1;
    }
    int rc = s2_wire_parse(text, len, out);
    if (rc == -ENOMEM) {
        reply_error(req, 500, "other", "out of memory");
        return -1;
    }
    if (rc != 0) {
        reply_error(req, 400, "bad_json", "Failed to parse the request body as JSON");
        return -1;
    }
    return 0;
}

/* The S2-Basin header of a /v1/streams* request, checked but not yet
 * resolved (so nothing is created before the request is validated).
 * Replies and returns NULL when missing or invalid. */
static const char *basin_header(struct evhttp_request *req)
{
    const char *name = in_header(req, "S2-Basin");
    if (name == NULL) {
        reply_error(req, 400, "bad_header", "Missing header `s2-basin`");
        return NULL;
    }
    if (!s2l_basin_name_valid(name, strlen(name))) {
        reply_error(req, 400, "bad_header",
                    "Invalid header `s2-basin`: a basin name has 8 to 48 characters of [a-z0-9-] "
                    "and starts and ends with a letter or digit");
        return NULL;
    }
    return name;
}

/* Reply with an S2 error of the data plane. */
static void reply_dp_error(struct evhttp_request *req, const struct s2l_err *err)
{
    if (err->status == 412 && strcmp(err->code, "fencing_token_mismatch") == 0) {
        cJSON *o = cJSON_CreateObject();
        if (o)
            cJSON_AddStringToObject(o, "fencing_token_mismatch", err->message);
        reply_cjson(req, 412, o);
        cJSON_Delete(o);
        return;
    }
    if ((err->status == 412 || err->status == 416) && err->has_tail) {
        struct evbuffer *buf = evbuffer_new();
        if (buf == NULL) {
            evhttp_send_error(req, 500, "out of memory");
            return;
        }
        if (err->status == 412)
            evbuffer_add_printf(buf, "{\"seq_num_mismatch\":%" PRIu64 "}", err->tail.seq_num);
        else
            evbuffer_add_printf(buf,
                                "{\"tail\":{\"seq_num\":%" PRIu64 ",\"timestamp\":%" PRIu64 "}}",
                                err->tail.seq_num, err->tail.timestamp);
        reply_json(req, err->status, buf);
        evbuffer_free(buf);
        return;
    }
    reply_error(req, err->status, err->code, "%s", err->message);
}

int s2l_server_basin(struct s2l_server *srv, const char *name, struct s2l_basin **out,
                     struct s2l_err *err)
{
    if (name == NULL)
        name = srv->basin;
    if (name == NULL)
        return s2l_dp_fail(err, -EINVAL, 400, "bad_header", "Missing header `s2-basin`");
    if (s2l_store_basin(srv->store, name, out) == 0)
        return 0;
    if (srv->basin != NULL)
        return s2l_dp_fail(err, -ENOENT, 404, "basin_not_found", "basin `%.48s` not found", name);
    enum s2l_provision res;
    int rc = s2l_store_basin_ensure(srv->store, name, NULL, &res, out);
    if (rc != 0) {
        slog(srv, 3, "creating the basin: %s", strerror(-rc));
        return s2l_dp_fail_errno(err, rc, "creating the basin");
    }
    return 0;
}

/* The basin of a /v1/streams* request (S2-Basin); replies and returns NULL
 * on failure. */
static struct s2l_basin *request_basin(struct s2l_server *srv, struct evhttp_request *req)
{
    const char *name = basin_header(req);
    if (name == NULL)
        return NULL;
    struct s2l_basin *b = NULL;
    struct s2l_err err = {0};
    if (s2l_server_basin(srv, name, &b, &err) != 0) {
        reply_dp_error(req, &err);
        return NULL;
    }
    return b;
}

/* Find (or, with create, create) a stream; replies and returns NULL on
 * failure. */
static struct s2l_stream *request_stream(struct s2l_server *srv, struct evhttp_request *req,
                                         struct s2l_basin *b, const uint8_t *name, size_t len,
                                         bool create)
{
    struct s2l_stream *st = NULL;
    struct s2l_err err = {0};
    int rc = s2l_dp_stream(b, name, len, create, &st, &err);
    if (rc != 0) {
        if (err.status >= 500)
            slog(srv, 3, "%s", err.message);
        reply_dp_error(req, &err);
        return NULL;
    }
    return st;
}

/* ---- JSON bodies of basins and streams ---- */

static void add_time(cJSON *o, const char *key, uint64_t ms)
{
    char buf[40];
    rfc3339(ms, buf, sizeof buf);
    cJSON_AddStringToObject(o, key, buf);
}

static cJSON *basin_info(const struct s2l_basin *b)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "name", s2l_basin_name(b));
    cJSON_AddNullToObject(o, "scope");
    cJSON_AddStringToObject(o, "state", "active");
    add_time(o, "created_at", s2l_basin_created_ms(b));
    cJSON_AddNullToObject(o, "deleted_at");
    return o;
}

static const char *ts_mode_name(enum s2l_ts_mode m)
{
    switch (m) {
    case S2L_TS_CLIENT_REQUIRE:
        return "client-require";
    case S2L_TS_ARRIVAL:
        return "arrival";
    default:
        return "client-prefer";
    }
}

static cJSON *stream_config_json(struct s2l_stream_config cfg)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "storage_class", "standard");
    cJSON *rp = cJSON_AddObjectToObject(o, "retention_policy");
    if (rp)
        cJSON_AddObjectToObject(rp, "infinite");
    cJSON *ts = cJSON_AddObjectToObject(o, "timestamping");
    if (ts) {
        cJSON_AddStringToObject(ts, "mode", ts_mode_name(cfg.ts_mode));
        cJSON_AddBoolToObject(ts, "uncapped", cfg.ts_uncapped);
    }
    cJSON_AddNullToObject(o, "delete_on_empty");
    return o;
}

static cJSON *basin_config_json(const struct s2l_basin *b)
{
    struct s2l_basin_config c = s2l_basin_get_config(b);
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddItemToObject(o, "default_stream_config",
                          stream_config_json((struct s2l_stream_config){0}));
    cJSON_AddBoolToObject(o, "create_stream_on_append", c.create_stream_on_append);
    cJSON_AddBoolToObject(o, "create_stream_on_read", c.create_stream_on_read);
    return o;
}

static cJSON *stream_info(const struct s2l_stream *st)
{
    size_t len;
    const uint8_t *name = s2l_stream_name(st, &len);
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    /* Names are valid UTF-8 without NUL, so cJSON holds them whole. */
    cJSON_AddStringToObject(o, "name", (const char *)name);
    add_time(o, "created_at", s2l_stream_created_ms(st));
    cJSON_AddNullToObject(o, "deleted_at");
    cJSON_AddNullToObject(o, "cipher");
    return o;
}

/* A StreamConfig from JSON onto *cfg (fields left out keep their value).
 * Replies 400 bad_json and returns -1 on a bad shape. */
static int parse_stream_config(struct evhttp_request *req, const cJSON *j,
                               struct s2l_stream_config *cfg)
{
    if (j == NULL || cJSON_IsNull(j))
        return 0;
    if (!cJSON_IsObject(j))
        goto BAD;
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(j, "storage_class");
    if (sc && !cJSON_IsNull(sc) &&
        (!cJSON_IsString(sc) ||
         (strcmp(sc->valuestring, "standard") != 0 && strcmp(sc->valuestring, "express") != 0)))
        goto BAD;
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "retention_policy");
    if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
        goto BAD;
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "timestamping");
    if (ts && !cJSON_IsNull(ts)) {
        if (!cJSON_IsObject(ts))
            goto BAD;
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(ts, "mode");
        if (m && !cJSON_IsNull(m)) {
            if (!cJSON_IsString(m))
                goto BAD;
            if (strcmp(m->valuestring, "client-prefer") == 0)
                cfg->ts_mode = S2L_TS_CLIENT_PREFER;
            else if (strcmp(m->valuestring, "client-require") == 0)
                cfg->ts_mode = S2L_TS_CLIENT_REQUIRE;
            else if (strcmp(m->valuestring, "arrival") == 0)
                cfg->ts_mode = S2L_TS_ARRIVAL;
            else
                goto BAD;
        }
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(ts, "uncapped");
        if (u && !cJSON_IsNull(u)) {
            if (!cJSON_IsBool(u))
                goto BAD;
            cfg->ts_uncapped = cJSON_IsTrue(u);
        }
    }
    return 0;
BAD:
    reply_error(req, 400, "bad_json", "Failed to deserialize the stream config");
    return -1;
}

static int parse_basin_config(struct evhttp_request *req, const cJSON *j,
                              struct s2l_basin_config *cfg)
{
    if (j == NULL || cJSON_IsNull(j))
        return 0;
    if (!cJSON_IsObject(j))
        goto BAD;
    static const char *const keys[] = {"create_stream_on_append", "create_stream_on_read"};
    bool *vals[] = {&cfg->create_stream_on_append, &cfg->create_stream_on_read};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
        if (v == NULL || cJSON_IsNull(v))
            continue;
        if (!cJSON_IsBool(v))
            goto BAD;
        *vals[i] = cJSON_IsTrue(v);
    }
    return 0;
BAD:
    reply_error(req, 400, "bad_json", "Failed to deserialize the basin config");
    return -1;
}

static void add_provision(struct evhttp_request *req, enum s2l_provision res)
{
    const char *v = res == S2L_PROVISION_CREATED   ? "created"
                    : res == S2L_PROVISION_UPDATED ? "updated"
                                                   : "noop";
    evhttp_add_header(evhttp_request_get_output_headers(req), "s2-provision-result", v);
}

/* ---- basins ---- */

static void basins_list(struct s2l_server *srv, struct evhttp_request *req, struct evkeyvalq *q)
{
    uint64_t limit = 1000;
    const char *ls = evhttp_find_header(q, "limit");
    if (ls && !parse_u64_str(ls, &limit)) {
        reply_error(req, 400, "bad_query", "Failed to deserialize query string: invalid `limit`");
        return;
    }
    if (limit == 0 || limit > 1000)
        limit = 1000;
    struct s2l_basin **list = malloc(limit * sizeof *list);
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "basins") : NULL;
    if (list == NULL || arr == NULL) {
        reply_error(req, 500, "other", "out of memory");
        goto OUT;
    }
    bool more = false;
    size_t n = s2l_store_basin_list(srv->store, evhttp_find_header(q, "prefix"),
                                    evhttp_find_header(q, "start_after"), list, limit, &more);
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, basin_info(list[i]));
    cJSON_AddBoolToObject(o, "has_more", more);
    reply_cjson(req, 200, o);
OUT:
    free(list);
    cJSON_Delete(o);
}

/* POST /v1/basins (create) and PUT /v1/basins/{b} (ensure). */
static void basin_provision(struct s2l_server *srv, struct evhttp_request *req, const char *name,
                            bool ensure)
{
    cJSON *body = NULL, *info = NULL;
    if (parse_json_body(req, ensure, &body) != 0)
        return;
    if (!ensure) {
        const cJSON *bn = cJSON_GetObjectItemCaseSensitive(body, "basin");
        if (!cJSON_IsObject(body) || !cJSON_IsString(bn)) {
            reply_error(req, 400, "bad_json", "Failed to deserialize the request: missing `basin`");
            goto OUT;
        }
        name = bn->valuestring;
        if (!s2l_basin_name_valid(name, strlen(name))) {
            reply_error(req, 400, "bad_json",
                        "Failed to deserialize the request: invalid basin "
                        "name");
            goto OUT;
        }
    }
    struct s2l_basin *b = NULL;
    bool exists = s2l_store_basin(srv->store, name, &b) == 0;
    if (exists && !ensure) {
        reply_error(req, 409, "resource_already_exists", "basin `%s` already exists", name);
        goto OUT;
    }
    struct s2l_basin_config cfg = {true, true};
    if (exists)
        cfg = s2l_basin_get_config(b);
    const cJSON *cj = NULL;
    if (cJSON_IsObject(body)) {
        cj = cJSON_GetObjectItemCaseSensitive(body, "config");
        /* An ensure may also send the BasinConfig itself. */
        if (cj == NULL && ensure)
            cj = body;
    } else if (body != NULL) {
        reply_error(req, 400, "bad_json", "Failed to deserialize the request");
        goto OUT;
    }
    if (parse_basin_config(req, cj, &cfg) != 0)
        goto OUT;
    enum s2l_provision res;
    int rc = s2l_store_basin_ensure(srv->store, name, &cfg, &res, &b);
    if (rc != 0) {
        reply_errno(srv, req, rc, "creating the basin");
        goto OUT;
    }
    info = basin_info(b);
    if (ensure)
        add_provision(req, res);
    reply_cjson(req, res == S2L_PROVISION_CREATED ? 201 : 200, info);
OUT:
    cJSON_Delete(info);
    cJSON_Delete(body);
}

static void basin_get(struct s2l_server *srv, struct evhttp_request *req, const char *name)
{
    struct s2l_basin *b;
    if (s2l_store_basin(srv->store, name, &b) != 0) {
        reply_error(req, 404, "basin_not_found", "basin `%s` not found", name);
        return;
    }
    cJSON *o = basin_config_json(b);
    reply_cjson(req, 200, o);
    cJSON_Delete(o);
}

/* ---- streams ---- */

static void streams_list(struct s2l_server *srv, struct evhttp_request *req, struct evkeyvalq *q)
{
    struct s2l_basin *b = request_basin(srv, req);
    if (b == NULL)
        return;
    uint64_t limit = 1000;
    const char *ls = evhttp_find_header(q, "limit");
    if (ls && !parse_u64_str(ls, &limit)) {
        reply_error(req, 400, "bad_query", "Failed to deserialize query string: invalid `limit`");
        return;
    }
    if (limit == 0 || limit > 1000)
        limit = 1000;
    const char *prefix = evhttp_find_header(q, "prefix");
    const char *after = evhttp_find_header(q, "start_after");
    struct s2l_stream **list = malloc(limit * sizeof *list);
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "streams") : NULL;
    if (list == NULL || arr == NULL) {
        reply_error(req, 500, "other", "out of memory");
        goto OUT;
    }
    bool more = false;
    size_t n = s2l_basin_stream_list(b, (const uint8_t *)prefix, prefix ? strlen(prefix) : 0,
                                     (const uint8_t *)after, after ? strlen(after) : 0, list, limit,
                                     &more);
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, stream_info(list[i]));
    cJSON_AddBoolToObject(o, "has_more", more);
    reply_cjson(req, 200, o);
OUT:
    free(list);
    cJSON_Delete(o);
}

/* POST /v1/streams (create) and PUT /v1/streams/{s} (ensure). */
static void stream_provision(struct s2l_server *srv, struct evhttp_request *req,
                             const uint8_t *name, size_t len, bool ensure)
{
    cJSON *body = NULL, *info = NULL;
    struct s2l_basin *b = request_basin(srv, req);
    if (b == NULL)
        return;
    if (parse_json_body(req, ensure, &body) != 0)
        return;
    const cJSON *cj = body;
    if (!ensure) {
        const cJSON *sn = cJSON_GetObjectItemCaseSensitive(body, "stream");
        if (!cJSON_IsObject(body) || !cJSON_IsString(sn)) {
            reply_error(req, 400, "bad_json",
                        "Failed to deserialize the request: missing `stream`");
            goto OUT;
        }
        name = (const uint8_t *)sn->valuestring;
        len = strlen(sn->valuestring);
        if (!s2l_stream_name_valid(name, len)) {
            reply_error(req, 400, "bad_json",
                        "Failed to deserialize the request: invalid stream "
                        "name");
            goto OUT;
        }
        cj = cJSON_GetObjectItemCaseSensitive(body, "config");
    }
    const char *token = in_header(req, "S2-Request-Token");
    if (token && strlen(token) > S2L_FENCE_MAX) {
        reply_error(req, 400, "bad_header",
                    "Invalid header `s2-request-token`: longer than 36 "
                    "bytes");
        goto OUT;
    }
    struct s2l_stream *st = NULL;
    bool exists = s2l_basin_stream(b, name, len, &st) == 0;
    struct s2l_stream_config cfg = {0};
    if (exists)
        cfg = s2l_stream_get_config(st);
    if (parse_stream_config(req, cj, &cfg) != 0)
        goto OUT;
    enum s2l_provision res = S2L_PROVISION_NOOP;
    if (exists && !ensure) {
        if (token && *token && strcmp(token, s2l_stream_request_token(st)) == 0) {
            /* A retried create. */
            add_provision(req, S2L_PROVISION_NOOP);
            info = stream_info(st);
            reply_cjson(req, 201, info);
        } else {
            reply_error(req, 409, "resource_already_exists", "stream `%.*s` already exists",
                        (int)len, (const char *)name);
        }
        goto OUT;
    }
    int rc = s2l_basin_stream_ensure(b, name, len, &cfg, false, &res, &st);
    if (rc != 0) {
        if (rc == -ENOSPC)
            reply_error(req, 403, "quota_exhausted", "too many streams");
        else
            reply_errno(srv, req, rc, "creating the stream");
        goto OUT;
    }
    if (res == S2L_PROVISION_CREATED && token)
        s2l_stream_set_request_token(st, token);
    info = stream_info(st);
    add_provision(req, res);
    reply_cjson(req, res == S2L_PROVISION_CREATED ? 201 : 200, info);
OUT:
    cJSON_Delete(info);
    cJSON_Delete(body);
}

static void stream_get(struct s2l_server *srv, struct evhttp_request *req, const uint8_t *name,
                       size_t len)
{
    struct s2l_basin *b = request_basin(srv, req);
    if (b == NULL)
        return;
    struct s2l_stream *st = request_stream(srv, req, b, name, len, false);
    if (st == NULL)
        return;
    cJSON *o = stream_config_json(s2l_stream_get_config(st));
    reply_cjson(req, 200, o);
    cJSON_Delete(o);
}

static void check_tail(struct s2l_server *srv, struct evhttp_request *req, const uint8_t *name,
                       size_t len)
{
    struct s2l_basin *b = request_basin(srv, req);
    if (b == NULL)
        return;
    struct s2l_stream *st =
        request_stream(srv, req, b, name, len, s2l_basin_get_config(b).create_stream_on_read);
    if (st != NULL)
        reply_tail(req, 200, st);
}

/* ---- append ---- */

struct append_in {
    struct s2l_dp_rec *recs; /* pointing into the JSON or decoded base64 */
    size_t n;
    struct s2l_hdr *hdrs; /* all headers, in order */
    uint8_t **allocs;     /* decoded base64 buffers */
    size_t nallocs;
    bool has_match;
    uint64_t match;
    bool has_fence;
    const char *fence;
    char fence_buf[S2L_FENCE_MAX + 1]; /* a protobuf token, NUL-terminated */
};

static void append_in_free(struct append_in *a)
{
    for (size_t i = 0; i < a->nallocs; i++)
        free(a->allocs[i]);
    free(a->allocs);
    free(a->hdrs);
    free(a->recs);
}

/* Decode one string of the body per S2-Format. 0, -EINVAL (bad base64),
 * -ENOMEM. */
static int decode_str(struct append_in *a, const cJSON *s, enum s2l_fmt fmt, const uint8_t **out,
                      size_t *len)
{
    const char *text = s->valuestring;
    size_t tlen = strlen(text);
    if (fmt == S2L_FMT_RAW) {
        *out = (const uint8_t *)text;
        *len = tlen;
        return 0;
    }
    uint8_t *buf = NULL;
    int rc = s2_base64_decode(text, tlen, &buf, len);
    if (rc != 0)
        return rc;
    a->allocs[a->nallocs++] = buf;
    *out = buf;
    return 0;
}

/* Parse and validate an AppendInput. Replies and returns -1 on failure. */
static int parse_append(struct evhttp_request *req, const cJSON *body, enum s2l_fmt fmt,
                        struct append_in *a)
{
    const cJSON *recs = cJSON_GetObjectItemCaseSensitive(body, "records");
    if (!cJSON_IsObject(body) || !cJSON_IsArray(recs)) {
        reply_error(req, 400, "bad_json",
                    "Failed to deserialize the JSON body: missing field "
                    "`records`");
        return -1;
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "match_seq_num");
    if (m && !cJSON_IsNull(m)) {
        if (s2_wire_get_u64(m, &a->match) != 0)
            goto BAD_JSON;
        a->has_match = true;
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, "fencing_token");
    if (f && !cJSON_IsNull(f)) {
        if (!cJSON_IsString(f))
            goto BAD_JSON;
        if (strlen(f->valuestring) > S2L_FENCE_MAX) {
            reply_error(req, 422, "invalid", "fencing token must not exceed 36 bytes");
            return -1;
        }
        a->has_fence = true;
        a->fence = f->valuestring;
    }
    size_t n = (size_t)cJSON_GetArraySize(recs);
    if (n == 0) {
        reply_error(req, 422, "invalid", "record batch must not be empty");
        return -1;
    }
    if (n > S2L_APPEND_MAX_RECORDS) {
        reply_error(req, 422, "invalid", "record batch must not exceed 1000 records");
        return -1;
    }
    /* Count headers and strings first to size the arrays. */
    size_t nh = 0, nstr = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, recs)
    {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(r, "headers");
        if (!cJSON_IsObject(r) || (h && !cJSON_IsNull(h) && !cJSON_IsArray(h)))
            goto BAD_JSON;
        size_t k = cJSON_IsArray(h) ? (size_t)cJSON_GetArraySize(h) : 0;
        nh += k;
        nstr += 1 + 2 * k;
    }
    a->recs = calloc(n, sizeof *a->recs);
    a->hdrs = calloc(nh ? nh : 1, sizeof *a->hdrs);
    a->allocs = fmt == S2L_FMT_BASE64 ? calloc(nstr, sizeof *a->allocs) : NULL;
    if (a->recs == NULL || a->hdrs == NULL || (fmt == S2L_FMT_BASE64 && a->allocs == NULL)) {
        reply_error(req, 500, "other", "out of memory");
        return -1;
    }
    a->n = n;
    size_t i = 0, hi = 0;
    cJSON_ArrayForEach(r, recs)
    {
        struct s2l_dp_rec *ir = &a->recs[i++];
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "timestamp");
        if (t && !cJSON_IsNull(t)) {
            if (s2_wire_get_u64(t, &ir->ts) != 0)
                goto BAD_JSON;
            ir->has_ts = true;
        }
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(r, "body");
        ir->body = (const uint8_t *)"";
        int rc = 0;
        if (b && !cJSON_IsNull(b)) {
            if (!cJSON_IsString(b))
                goto BAD_JSON;
            rc = decode_str(a, b, fmt, &ir->body, &ir->body_len);
        }
        ir->headers = a->hdrs + hi;
        const cJSON *hs = cJSON_GetObjectItemCaseSensitive(r, "headers");
        const cJSON *h;
        if (cJSON_IsArray(hs)) {
            cJSON_ArrayForEach(h, hs)
            {
                if (rc != 0)
                    break;
                const cJSON *hn = cJSON_GetArrayItem(h, 0), *hv = cJSON_GetArrayItem(h, 1);
                if (!cJSON_IsArray(h) || cJSON_GetArraySize(h) != 2 || !cJSON_IsString(hn) ||
                    !cJSON_IsString(hv))
                    goto BAD_JSON;
                struct s2l_hdr *sh = &a->hdrs[hi++];
                rc = decode_str(a, hn, fmt, &sh->name, &sh->name_len);
                if (rc == 0)
                    rc = decode_str(a, hv, fmt, &sh->value, &sh->value_len);
                ir->nheaders++;
            }
        }
        if (rc == -ENOMEM) {
            reply_error(req, 500, "other", "out of memory");
            return -1;
        }
        if (rc != 0) {
            reply_error(req, 422, "invalid", "invalid Base64 encoding");
            return -1;
        }
    }
    /* Sizes, commands and header names are checked by s2l_dp_append. */
    return 0;
BAD_JSON:
    reply_error(req, 400, "bad_json", "Failed to deserialize the JSON body");
    return -1;
}

/* Decode a protobuf AppendInput body (the records point into the request's
 * input buffer). Replies and returns -1 on failure. */
static int parse_append_proto(struct evhttp_request *req, struct append_in *a)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const uint8_t *p = len > 0 ? evbuffer_pullup(in, -1) : (const uint8_t *)"";
    struct s2l_pb_append pa;
    int rc = p != NULL ? s2l_pb_decode_append(p, len, &pa) : -ENOMEM;
    if (rc == -ENOMEM) {
        reply_error(req, 500, "other", "out of memory");
        return -1;
    }
    if (rc != 0) {
        reply_error(req, 400, "bad_proto", "Failed to decode the request body as an AppendInput");
        return -1;
    }
    a->recs = pa.records;
    a->hdrs = pa.hdrs;
    a->n = pa.n;
    a->has_match = pa.has_match;
    a->match = pa.match;
    if (pa.has_fence) {
        if (pa.fence_len > S2L_FENCE_MAX || memchr(pa.fence, 0, pa.fence_len) != NULL) {
            reply_error(req, 422, "invalid", "fencing token must not exceed 36 bytes");
            return -1;
        }
        memcpy(a->fence_buf, pa.fence, pa.fence_len);
        a->fence_buf[pa.fence_len] = 0;
        a->has_fence = true;
        a->fence = a->fence_buf;
    }
    return 0;
}

static bool ctype_is_proto(const char *ct)
{
    if (ct == NULL)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";, \t");
    return (n == 20 && strncasecmp(ct, "application/protobuf", 20) == 0) ||
           (n == 22 && strncasecmp(ct, "application/x-protobuf", 22) == 0);
}

/* Whether the response should be protobuf (the first type of Accept). */
static bool accept_proto(struct evhttp_request *req)
{
    return ctype_is_proto(in_header(req, "Accept"));
}

/* Send buf (emptied; still owned by the caller) as protobuf. */
static void reply_proto(struct evhttp_request *req, int status, struct evbuffer *buf)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_remove_header(h, "Content-Type");
    evhttp_add_header(h, "Content-Type", "application/protobuf");
    evhttp_send_reply(req, status, reason(status), buf);
}

static void append(struct s2l_server *srv, struct evhttp_request *req, const uint8_t *name,
                   size_t len)
{
    cJSON *body = NULL;
    struct append_in a = {0};
    enum s2l_fmt fmt;
    bool proto_out = accept_proto(req);
    if (basin_header(req) == NULL || parse_format(req, &fmt) != 0)
        return;
    if (ctype_is_proto(in_header(req, "Content-Type"))) {
        if (parse_append_proto(req, &a) != 0)
            goto OUT;
    } else {
        if (parse_json_body(req, false, &body) != 0)
            return;
        if (parse_append(req, body, fmt, &a) != 0)
            goto OUT;
    }
    struct s2l_basin *b = request_basin(srv, req);
    if (b == NULL)
        goto OUT;
    struct s2l_stream *st =
        request_stream(srv, req, b, name, len, s2l_basin_get_config(b).create_stream_on_append);
    if (st == NULL)
        goto OUT;
    struct s2l_dp_cond cond = {a.has_fence ? a.fence : NULL, a.has_match, a.match};
    struct s2l_append_ack ack;
    struct s2l_err err = {0};
    if (s2l_dp_append(st, a.recs, a.n, &cond, &ack, &err) != 0) {
        if (err.status >= 500)
            slog(srv, 3, "%s", err.message);
        reply_dp_error(req, &err);
        goto OUT;
    }
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL) {
        evhttp_send_error(req, 500, "out of memory");
        goto WAKE;
    }
    if (proto_out) {
        if (s2l_pb_add_position(buf, 1, ack.start.seq_num, ack.start.timestamp) == 0 &&
            s2l_pb_add_position(buf, 2, ack.end.seq_num, ack.end.timestamp) == 0 &&
            s2l_pb_add_position(buf, 3, ack.tail.seq_num, ack.tail.timestamp) == 0)
            reply_proto(req, 200, buf);
        else
            evhttp_send_error(req, 500, "out of memory");
        evbuffer_free(buf);
        goto WAKE;
    }
    evbuffer_add_printf(buf,
                        "{\"start\":{\"seq_num\":%" PRIu64 ",\"timestamp\":%" PRIu64 "},"
                        "\"end\":{\"seq_num\":%" PRIu64 ",\"timestamp\":%" PRIu64 "},"
                        "\"tail\":{\"seq_num\":%" PRIu64 ",\"timestamp\":%" PRIu64 "}}",
                        ack.start.seq_num, ack.start.timestamp, ack.end.seq_num, ack.end.timestamp,
                        ack.tail.seq_num, ack.tail.timestamp);
    reply_json(req, 200, buf);
    evbuffer_free(buf);
WAKE:
    s2l_server_appended(srv, st);
OUT:
    append_in_free(&a);
    cJSON_Delete(body);
}

/* ---- read ---- */

/* Read per plan and reply 200 {"records":[...],"tail":...}. */
static void reply_records(struct s2l_server *srv, struct evhttp_request *req, struct s2l_stream *st,
                          const struct read_plan *plan)
{
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    bool proto = plan->b.fmt == S2L_FMT_PROTO;
    if (!proto)
        evbuffer_add(buf, "{\"records\":[", 12);
    struct s2l_read_stats stats;
    int rc = s2l_records_write(st, plan->start, &plan->b, buf, &stats);
    if (rc != 0) {
        reply_errno(srv, req, rc, "reading");
        evbuffer_free(buf);
        return;
    }
    uint64_t seq, ts;
    s2l_stream_tail(st, &seq, &ts);
    if (proto) {
        /* ReadBatch: the records (field 1), then the tail (field 2). */
        if (s2l_pb_add_position(buf, 2, seq, ts) == 0)
            reply_proto(req, 200, buf);
        else
            evhttp_send_error(req, 500, "out of memory");
        evbuffer_free(buf);
        return;
    }
    evbuffer_add_printf(buf, "],\"tail\":{\"seq_num\":%" PRIu64 ",\"timestamp\":%" PRIu64 "}}", seq,
                        ts);
    reply_json(req, 200, buf);
    evbuffer_free(buf);
}

static void poll_unlink(struct poll *p)
{
    struct s2l_server *srv = p->srv;
    if (p->prev)
        p->prev->next = p->next;
    else
        srv->polls = p->next;
    if (p->next)
        p->next->prev = p->prev;
    srv->npolls--;
    if (p->evcon)
        evhttp_connection_set_closecb(p->evcon, NULL, NULL);
    event_free(p->timer);
    free(p);
}

/* Answer a long poll with records (or none, on timeout) and drop it. */
static void poll_answer(struct poll *p)
{
    struct evhttp_request *req = p->req;
    struct s2l_server *srv = p->srv;
    struct s2l_stream *st = p->st;
    struct read_plan plan = p->plan;
    poll_unlink(p);
    reply_records(srv, req, st, &plan);
}

static void poll_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    poll_answer(arg);
}

/* The client's connection went away while its long poll waited. */
static void poll_closed(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct poll *p = arg;
    struct evhttp_request *req = p->req;
    p->evcon = NULL;
    poll_unlink(p);
    /* A detached request is ours to free; an attached one libevent frees. */
    if (evhttp_request_get_connection(req) == NULL)
        evhttp_request_free(req);
}

static void polls_wake(struct s2l_server *srv, struct s2l_stream *st)
{
    struct poll *p = srv->polls;
    while (p != NULL) {
        struct poll *next = p->next;
        if (p->st == st)
            poll_answer(p);
        p = next;
    }
}

void s2l_server_appended(struct s2l_server *srv, struct s2l_stream *st)
{
    polls_wake(srv, st);
    s2l_sse_wake(srv->sse, st);
}

static int start_poll(struct s2l_server *srv, struct evhttp_request *req, struct s2l_stream *st,
                      const struct read_plan *plan, uint32_t wait_s)
{
    if (srv->draining) {
        reply_error(req, 503, "server_draining", "s2-local is shutting down");
        return 0;
    }
    if (srv->npolls >= srv->max_long_polls) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "retry-after-ms", "1000");
        reply_error(req, 429, "rate_limited", "too many open long polls; retry later");
        return 0;
    }
    struct poll *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -ENOMEM;
    p->timer = evtimer_new(srv->base, poll_timeout, p);
    if (p->timer == NULL) {
        free(p);
        return -ENOMEM;
    }
    struct timeval tv = {(time_t)wait_s, 0};
    evtimer_add(p->timer, &tv);
    p->srv = srv;
    p->req = req;
    p->st = st;
    p->plan = *plan;
    p->evcon = evhttp_request_get_connection(req);
    if (p->evcon)
        evhttp_connection_set_closecb(p->evcon, poll_closed, p);
    p->next = srv->polls;
    if (srv->polls)
        srv->polls->prev = p;
    srv->polls = p;
    srv->npolls++;
    return 0;
}

static int query_u64(struct evhttp_request *req, struct evkeyvalq *q, const char *key, bool *has,
                     uint64_t *v)
{
    const char *s = evhttp_find_header(q, key);
    *has = s != NULL;
    if (s == NULL)
        return 0;
    if (!parse_u64_str(s, v)) {
        reply_error(req, 400, "bad_query", "Failed to deserialize query string: invalid `%s`", key);
        return -1;
    }
    return 0;
}

/* Whether the first media type of an Accept header is type. */
static bool accept_first_is(const char *accept, const char *type)
{
    if (accept == NULL)
        return false;
    while (*accept == ' ' || *accept == '\t')
        accept++;
    size_t n = strlen(type);
    return strncasecmp(accept, type, n) == 0 &&
           (accept[n] == 0 || accept[n] == ';' || accept[n] == ',' || accept[n] == ' ');
}

/* Last-Event-ID of a read session: "<seq_num>,<count>,<bytes>". */
static int parse_last_event_id(const char *s, uint64_t v[3])
{
    for (int i = 0; i < 3; i++) {
        size_t n = strcspn(s, ",");
        char part[24];
        if (n == 0 || n >= sizeof part)
            return -1;
        memcpy(part, s, n);
        part[n] = 0;
        if (!parse_u64_str(part, &v[i]))
            return -1;
        s += n;
        if (i < 2 && *s++ != ',')
            return -1;
    }
    return *s == 0 && v[0] < UINT64_MAX ? 0 : -1;
}

/* The query of a read, parsed and checked. */
struct read_query {
    bool has_seq, has_ts, has_off, has_count, has_bytes, has_until, clamp;
    uint64_t seq, ts, off, count, bytes, until, wait;
    bool resumed; /* from Last-Event-ID */
    uint64_t done_count, done_bytes;
};

/* Parse the query (and, for a session, Last-Event-ID); replies and returns
 * -1 on a bad request. */
static int parse_read_query(struct evhttp_request *req, struct evkeyvalq *q, bool session,
                            struct read_query *rq)
{
    if (query_u64(req, q, "seq_num", &rq->has_seq, &rq->seq) ||
        query_u64(req, q, "timestamp", &rq->has_ts, &rq->ts) ||
        query_u64(req, q, "tail_offset", &rq->has_off, &rq->off) ||
        query_u64(req, q, "count", &rq->has_count, &rq->count) ||
        query_u64(req, q, "bytes", &rq->has_bytes, &rq->bytes) ||
        query_u64(req, q, "until", &rq->has_until, &rq->until))
        return -1;
    bool has_wait;
    if (query_u64(req, q, "wait", &has_wait, &rq->wait))
        return -1;
    if (rq->wait > UINT32_MAX) {
        reply_error(req, 400, "bad_query", "Failed to deserialize query string: invalid `wait`");
        return -1;
    }
    const char *cs = evhttp_find_header(q, "clamp");
    if (cs != NULL) {
        if (strcmp(cs, "true") != 0 && strcmp(cs, "false") != 0) {
            reply_error(req, 400, "bad_query",
                        "Failed to deserialize query string: invalid "
                        "`clamp`");
            return -1;
        }
        rq->clamp = strcmp(cs, "true") == 0;
    }
    if ((int)rq->has_seq + (int)rq->has_ts + (int)rq->has_off > 1) {
        reply_error(req, 422, "invalid",
                    "only one of seq_num, timestamp, or tail_offset can be provided");
        return -1;
    }
    const char *lei = session ? in_header(req, "Last-Event-ID") : NULL;
    if (lei != NULL) {
        /* Resume after the last batch seen, within what is left of the
         * bounds. */
        uint64_t v[3];
        if (parse_last_event_id(lei, v) != 0) {
            reply_error(req, 400, "bad_header",
                        "Invalid header `last-event-id`: expected <seq_num>,<count>,<bytes>");
            return -1;
        }
        rq->resumed = true;
        rq->has_seq = true;
        rq->seq = v[0] + 1;
        rq->has_ts = rq->has_off = false;
        rq->count = rq->count > v[1] ? rq->count - v[1] : 0;
        rq->bytes = rq->bytes > v[2] ? rq->bytes - v[2] : 0;
        rq->done_count = v[1];
        rq->done_bytes = v[2];
    }
    if (rq->has_ts && rq->has_until && rq->until <= rq->ts) {
        reply_error(req, 422, "invalid", "start `timestamp` exceeds or equal to `until`");
        return -1;
    }
    return 0;
}

/* Hand a validated read over to a session (SSE). */
static void start_session(struct s2l_server *srv, struct evhttp_request *req, struct s2l_stream *st,
                          const struct read_query *rq, uint64_t start, enum s2l_fmt fmt)
{
    if (srv->draining) {
        reply_error(req, 503, "server_draining", "s2-local is shutting down");
        return;
    }
    if (s2l_sse_hub_full(srv->sse)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "retry-after-ms", "1000");
        reply_error(req, 429, "rate_limited", "too many open read sessions; retry later");
        return;
    }
    struct s2l_sse_params p = {
        .st = st,
        .start = start,
        .fmt = fmt,
        .has_count = rq->has_count,
        .has_bytes = rq->has_bytes,
        .has_until = rq->has_until,
        .count = rq->count,
        .bytes = rq->bytes,
        .until = rq->until,
        .wait_s = (uint32_t)rq->wait,
        .sent_count = rq->done_count,
        .sent_bytes = rq->done_bytes,
    };
    if (s2l_sse_start(srv->sse, req, &p) != 0)
        reply_error(req, 500, "other", "out of memory");
}

/* GET /v1/streams/{s}/records: a unary read (JSON), or a read session
 * (SSE) when the first type of Accept is text/event-stream. */
static void read_records(struct s2l_server *srv, struct evhttp_request *req, struct evkeyvalq *q,
                         const uint8_t *name, size_t len)
{
    struct read_plan plan = {0};
    struct read_query rq = {0};
    const char *accept = in_header(req, "Accept");
    bool session = accept_first_is(accept, "text/event-stream");
    if (basin_header(req) == NULL || parse_format(req, &plan.b.fmt) != 0)
        return;
    if (!session && accept_proto(req))
        plan.b.fmt = S2L_FMT_PROTO;
    if (parse_read_query(req, q, session, &rq) != 0)
        return;
    /* A session has only the bounds it was given; a unary read is capped. */
    uint64_t wait = rq.wait;
    plan.b.has_until = rq.has_until;
    plan.b.until = rq.until;
    plan.b.count = rq.count;
    plan.b.bytes = rq.bytes;
    if (!rq.has_count || plan.b.count > S2L_READ_MAX_RECORDS)
        plan.b.count = S2L_READ_MAX_RECORDS;
    if (!rq.has_bytes || plan.b.bytes > S2L_READ_MAX_BYTES)
        plan.b.bytes = S2L_READ_MAX_BYTES;
    if (!session && wait > S2L_MAX_WAIT_S)
        wait = S2L_MAX_WAIT_S;

    struct s2l_basin *b = request_basin(srv, req);
    if (b == NULL)
        return;
    struct s2l_stream *st =
        request_stream(srv, req, b, name, len, s2l_basin_get_config(b).create_stream_on_read);
    if (st == NULL)
        return;
    /* At the tail a read that cannot follow is 416: a unary read follows
     * only with wait, a session also when it has no count, bytes or until. */
    bool can_follow = wait > 0 || (session && !rq.has_count && !rq.has_bytes && !rq.has_until);
    struct s2l_read_query dq = {
        .has_seq_num = rq.has_seq,
        .has_timestamp = rq.has_ts,
        .has_tail_offset = rq.has_off,
        .seq_num = rq.seq,
        .timestamp = rq.ts,
        .tail_offset = rq.off,
        .has_until = rq.has_until,
        .until = rq.until,
        .clamp = rq.clamp,
    };
    struct s2l_err err = {0};
    uint64_t start = 0, tail, last_ts;
    if (s2l_dp_read_start(st, &dq, can_follow, &start, &err) != 0) {
        if (err.status >= 500)
            slog(srv, 3, "%s", err.message);
        reply_dp_error(req, &err);
        return;
    }
    s2l_stream_tail(st, &tail, &last_ts);
    plan.start = start;
    if (session) {
        start_session(srv, req, st, &rq, start, plan.b.fmt);
        return;
    }
    if (start >= tail) {
        if (plan.b.count == 0 || plan.b.bytes == 0) {
            reply_records(srv, req, st, &plan);
            return;
        }
        int rc = start_poll(srv, req, st, &plan, (uint32_t)wait);
        if (rc != 0)
            reply_error(req, 500, "other", "out of memory");
        return;
    }
    reply_records(srv, req, st, &plan);
}

/* ---- routing ---- */

/* Percent-decode a path segment into a stream name; replies 400 bad_path
 * and returns -1 when it is not a valid name. *out is malloc'd. */
static int decode_stream_name(struct evhttp_request *req, const char *raw, size_t rawlen,
                              uint8_t **out, size_t *len)
{
    char *seg = strndup(raw, rawlen);
    if (seg == NULL) {
        reply_error(req, 500, "other", "out of memory");
        return -1;
    }
    size_t n = 0;
    char *dec = evhttp_uridecode(seg, 0, &n);
    free(seg);
    if (dec == NULL) {
        reply_error(req, 500, "other", "out of memory");
        return -1;
    }
    if (!s2l_stream_name_valid((const uint8_t *)dec, n)) {
        free(dec);
        reply_error(req, 400, "bad_path",
                    "Invalid stream name: 1 to 512 bytes of UTF-8, not `.` "
                    "or `..`");
        return -1;
    }
    *out = (uint8_t *)dec;
    *len = n;
    return 0;
}

static bool ends_with(const char *s, size_t len, const char *suffix, size_t *stem)
{
    size_t sl = strlen(suffix);
    if (len <= sl || memcmp(s + len - sl, suffix, sl) != 0)
        return false;
    *stem = len - sl;
    return true;
}

static void method_not_allowed(struct evhttp_request *req)
{
    reply_error(req, 405, "method_not_allowed", "method not allowed on this path");
}

static void route_streams(struct s2l_server *srv, struct evhttp_request *req,
                          enum evhttp_cmd_type m, struct evkeyvalq *q, const char *rest)
{
    size_t rlen = strlen(rest), stem;
    enum { OP_STREAM, OP_RECORDS, OP_TAIL } op = OP_STREAM;
    if (ends_with(rest, rlen, "/records/tail", &stem))
        op = OP_TAIL;
    else if (ends_with(rest, rlen, "/records", &stem))
        op = OP_RECORDS;
    else
        stem = rlen;
    uint8_t *name = NULL;
    size_t len = 0;
    if (decode_stream_name(req, rest, stem, &name, &len) != 0)
        return;
    switch (op) {
    case OP_STREAM:
        if (m == EVHTTP_REQ_PUT)
            stream_provision(srv, req, name, len, true);
        else if (m == EVHTTP_REQ_GET)
            stream_get(srv, req, name, len);
        else
            method_not_allowed(req);
        break;
    case OP_RECORDS:
        if (m == EVHTTP_REQ_POST)
            append(srv, req, name, len);
        else if (m == EVHTTP_REQ_GET)
            read_records(srv, req, q, name, len);
        else
            method_not_allowed(req);
        break;
    case OP_TAIL:
        if (m == EVHTTP_REQ_GET)
            check_tail(srv, req, name, len);
        else
            method_not_allowed(req);
        break;
    }
    free(name);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct s2l_server *srv = arg;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (path == NULL) {
        reply_error(req, 400, "bad_path", "malformed request path");
        return;
    }
    if (query != NULL && evhttp_parse_query_str(query, &q) != 0) {
        reply_error(req, 400, "bad_query", "Failed to deserialize query string");
        goto OUT;
    }
    if (strcmp(path, "/health") == 0 || strcmp(path, "/ping") == 0) {
        if (m == EVHTTP_REQ_GET)
            reply_text(req, 200, "OK");
        else
            method_not_allowed(req);
    } else if (strcmp(path, "/v1/basins") == 0) {
        if (m == EVHTTP_REQ_GET)
            basins_list(srv, req, &q);
        else if (m == EVHTTP_REQ_POST)
            basin_provision(srv, req, NULL, false);
        else
            method_not_allowed(req);
    } else if (strncmp(path, "/v1/basins/", 11) == 0) {
        char *name = evhttp_uridecode(path + 11, 0, NULL);
        if (name == NULL || !s2l_basin_name_valid(name, strlen(name)))
            reply_error(req, 400, "bad_path", "Invalid basin name");
        else if (m == EVHTTP_REQ_PUT)
            basin_provision(srv, req, name, true);
        else if (m == EVHTTP_REQ_GET)
            basin_get(srv, req, name);
        else
            method_not_allowed(req);
        free(name);
    } else if (strcmp(path, "/v1/streams") == 0) {
        if (m == EVHTTP_REQ_GET)
            streams_list(srv, req, &q);
        else if (m == EVHTTP_REQ_POST)
            stream_provision(srv, req, NULL, 0, false);
        else
            method_not_allowed(req);
    } else if (strncmp(path, "/v1/streams/", 12) == 0) {
        route_streams(srv, req, m, &q, path + 12);
    } else if (strncmp(path, "/v1/access-tokens", 17) == 0 ||
               strncmp(path, "/v1/metrics", 11) == 0 || strncmp(path, "/v1/locations", 13) == 0) {
        reply_error(req, 501, "not_implemented", "not implemented by s2-local");
    } else {
        reply_error(req, 404, "not_found", "no route for %.200s", path);
    }
OUT:
    evhttp_clear_headers(&q);
}

/* ---- lifecycle ---- */

int s2l_server_new(struct event_base *base, const struct s2l_opts *opts, s2l_log_fn log,
                   void *log_arg, struct s2l_server **out)
{
    int rc = -ENOMEM;
    struct s2l_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return -ENOMEM;
    srv->base = base;
    srv->log = log;
    srv->log_arg = log_arg;
    srv->max_long_polls = opts->max_long_polls ? opts->max_long_polls : S2L_DEFAULT_MAX_LONG_POLLS;
    if (opts->basin != NULL) {
        if (!s2l_basin_name_valid(opts->basin, strlen(opts->basin))) {
            rc = -EINVAL;
            slog(srv, 3, "invalid basin name: %s", opts->basin);
            goto FAIL;
        }
        srv->basin = strdup(opts->basin);
        if (srv->basin == NULL)
            goto FAIL;
    }
    rc = s2l_store_open(opts->data_dir, opts->fsync, log, log_arg, &srv->store);
    if (rc != 0) {
        slog(srv, 3, "cannot open the data directory %s: %s", opts->data_dir, strerror(-rc));
        goto FAIL;
    }
    if (srv->basin != NULL) {
        struct s2l_basin *b;
        enum s2l_provision res;
        rc = s2l_store_basin_ensure(srv->store, srv->basin, NULL, &res, &b);
        if (rc != 0)
            goto FAIL;
    }
    rc = -ENOMEM;
    struct s2l_sse_hub_opts so = {opts->max_read_sessions, opts->heartbeat_ms};
    if (s2l_sse_hub_new(base, &so, log, log_arg, &srv->sse) != 0)
        goto FAIL;
    srv->http = evhttp_new(base);
    if (srv->http == NULL)
        goto FAIL;
    evhttp_set_max_body_size(srv->http, (ev_ssize_t)S2L_MAX_BODY);
    evhttp_set_max_headers_size(srv->http, 64 * 1024);
    /* Longer than the longest long poll. */
    evhttp_set_timeout(srv->http, 2 * S2L_MAX_WAIT_S);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(srv->http, on_request, srv);
    const char *addr = opts->listen_addr ? opts->listen_addr : "127.0.0.1";
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(srv->http, addr, opts->port);
    if (sock == NULL) {
        rc = -EADDRINUSE;
        slog(srv, 3, "cannot listen on %s:%u", addr, (unsigned)opts->port);
        goto FAIL;
    }
    srv->sock = sock;
    /* Replies are written whole; without TCP_NODELAY the tail of one waits
     * for the client's delayed ACK on a kept-alive connection (~40 ms).
     * Accepted sockets inherit it from the listener on Linux. */
    int one = 1;
    if (setsockopt(evhttp_bound_socket_get_fd(sock), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) !=
        0)
        slog(srv, 2, "cannot set TCP_NODELAY: %s", strerror(errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    *out = srv;
    return 0;
FAIL:
    s2l_server_free(srv);
    return rc;
}

uint16_t s2l_server_port(const struct s2l_server *srv)
{
    return srv->port;
}

void s2l_server_sse_stats(const struct s2l_server *srv, uint32_t *sessions, size_t *peak_output)
{
    *sessions = s2l_sse_hub_sessions(srv->sse);
    *peak_output = s2l_sse_hub_peak_output(srv->sse);
}

void s2l_server_drain(struct s2l_server *srv)
{
    srv->draining = true;
    if (srv->sock != NULL) {
        evhttp_del_accept_socket(srv->http, srv->sock);
        srv->sock = NULL;
    }
    while (srv->polls != NULL) {
        struct poll *p = srv->polls;
        struct evhttp_request *req = p->req;
        poll_unlink(p);
        reply_error(req, 503, "server_draining", "s2-local is shutting down");
    }
    if (srv->sse != NULL)
        s2l_sse_drain(srv->sse);
}

void s2l_server_free(struct s2l_server *srv)
{
    if (srv == NULL)
        return;
    if (srv->http)
        s2l_server_drain(srv);
    s2l_sse_hub_free(srv->sse);
    if (srv->http)
        evhttp_free(srv->http);
    s2l_store_free(srv->store);
    free(srv->basin);
    free(srv);
}
