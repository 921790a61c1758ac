/* fx_server.c - the S2 fixture server of the s2 tests (see fx_server.h). */
#include "fx_server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "s2/wire.h"

#define MAX_RULES 64
#define MAX_STREAMS 8
#define MAX_ARRIVALS 64
#define TS_START 1718000000000ULL
#define TS_STEP 10ULL

struct fx_rec {
    uint8_t *body;
    size_t len;
};

struct fx_stream {
    char *name;
    uint64_t first_seq;
    struct fx_rec *recs;
    size_t n, cap;
};

/* A reply deferred to a timer (delay) or a connection to drop. */
struct fx_pending {
    struct fx_server *srv;
    struct evhttp_request *req;
    struct event *ev;
    int drop;
    struct fx_pending *next;
};

struct fx_server {
    struct event_base *base;
    struct evhttp *http;
    char url[64];
    struct fx_rule rules[MAX_RULES];
    size_t nrules;
    fx_decide_fn decide;
    void *decide_arg;
    int read_tail;
    struct fx_stream streams[MAX_STREAMS];
    size_t nstreams;
    uint64_t counts[FX_ROUTES];
    uint64_t applied;
    uint32_t *sizes;
    size_t nsizes, capsizes;
    uint64_t arrivals[FX_ROUTES][MAX_ARRIVALS];
    char *last_uri;
    char *last_hdr_names[8];
    char *last_hdr_values[8];
    size_t nlast;
    struct fx_pending *pending;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

char *fx_read_file(const char *name, size_t *len)
{
    const char *dir = getenv("S2_FIXTURE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "fixtures/s2", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return buf;
}

static struct fx_stream *find_stream(struct fx_server *s, const char *name)
{
    for (size_t i = 0; i < s->nstreams; i++) {
        if (strcmp(s->streams[i].name, name) == 0)
            return &s->streams[i];
    }
    return NULL;
}

void fx_stream_create(struct fx_server *s, const char *name, uint64_t first_seq)
{
    struct fx_stream *st = find_stream(s, name);
    if (st == NULL && s->nstreams < MAX_STREAMS) {
        st = &s->streams[s->nstreams++];
        st->name = strdup(name);
    }
    if (st != NULL)
        st->first_seq = first_seq;
}

static void stream_push(struct fx_stream *st, const void *body, size_t len)
{
    if (st->n == st->cap) {
        st->cap = st->cap ? st->cap * 2 : 64;
        st->recs = realloc(st->recs, st->cap * sizeof *st->recs);
    }
    st->recs[st->n].body = malloc(len + 1);
    memcpy(st->recs[st->n].body, body, len);
    st->recs[st->n].len = len;
    st->n++;
}

void fx_stream_put(struct fx_server *s, const char *name, const void *body, size_t len)
{
    struct fx_stream *st = find_stream(s, name);
    if (st != NULL)
        stream_push(st, body, len);
}

long fx_stream_count(struct fx_server *s, const char *name)
{
    struct fx_stream *st = find_stream(s, name);
    return st ? (long)st->n : -1;
}

const uint8_t *fx_stream_body(struct fx_server *s, const char *name, size_t i, size_t *len)
{
    struct fx_stream *st = find_stream(s, name);
    if (st == NULL || i >= st->n)
        return NULL;
    *len = st->recs[i].len;
    return st->recs[i].body;
}

uint64_t fx_stream_first_seq(struct fx_server *s, const char *name)
{
    struct fx_stream *st = find_stream(s, name);
    return st ? st->first_seq : 0;
}

uint64_t fx_count(const struct fx_server *s, enum fx_route route)
{
    return s->counts[route];
}

uint64_t fx_appends_applied(const struct fx_server *s)
{
    return s->applied;
}

size_t fx_batch_sizes(const struct fx_server *s, const uint32_t **sizes)
{
    *sizes = s->sizes;
    return s->nsizes;
}

const char *fx_last_header(const struct fx_server *s, const char *name)
{
    for (size_t i = 0; i < s->nlast; i++) {
        if (strcasecmp(s->last_hdr_names[i], name) == 0)
            return s->last_hdr_values[i];
    }
    return NULL;
}

const char *fx_last_uri(const struct fx_server *s)
{
    return s->last_uri;
}

uint64_t fx_arrival_ms(const struct fx_server *s, enum fx_route route, uint64_t n)
{
    return n < MAX_ARRIVALS ? s->arrivals[route][n] : 0;
}

void fx_push(struct fx_server *s, const struct fx_rule *rule)
{
    if (s->nrules < MAX_RULES)
        s->rules[s->nrules++] = *rule;
}

void fx_set_decider(struct fx_server *s, fx_decide_fn fn, void *arg)
{
    s->decide = fn;
    s->decide_arg = arg;
}

void fx_set_read_tail(struct fx_server *s, int on)
{
    s->read_tail = on;
}

/* --- replies --- */

static void reply_text(struct evhttp_request *req, int status, const char *body, size_t len,
                       const struct fx_rule *rule)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    if (rule != NULL && rule->retry_after_ms != NULL)
        evhttp_add_header(h, "retry-after-ms", rule->retry_after_ms);
    if (rule != NULL && rule->retry_after != NULL)
        evhttp_add_header(h, "Retry-After", rule->retry_after);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, len);
    evhttp_send_reply(req, status, "S2", b);
    evbuffer_free(b);
}

static void reply_json(struct evhttp_request *req, int status, cJSON *root)
{
    char *text = cJSON_PrintUnformatted(root);
    reply_text(req, status, text, strlen(text), NULL);
    free(text);
    cJSON_Delete(root);
}

static void reply_error(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "code", code);
    cJSON_AddStringToObject(root, "message", msg);
    reply_json(req, status, root);
}

static void reply_file(struct evhttp_request *req, const struct fx_rule *rule)
{
    if (rule->body != NULL) {
        reply_text(req, rule->status, rule->body, strlen(rule->body), rule);
        return;
    }
    size_t len = 0;
    char *text = fx_read_file(rule->file, &len);
    if (text == NULL) {
        reply_error(req, 500, "other", "fixture file missing");
        return;
    }
    reply_text(req, rule->status, text, len, rule);
    free(text);
}

static cJSON *position(const struct fx_stream *st, uint64_t seq)
{
    cJSON *p = cJSON_CreateObject();
    uint64_t n = seq - st->first_seq;
    s2_wire_add_u64(p, "seq_num", seq);
    s2_wire_add_u64(p, "timestamp", n == 0 ? 0 : TS_START + (n - 1) * TS_STEP);
    return p;
}

static uint64_t tail_seq(const struct fx_stream *st)
{
    return st->first_seq + st->n;
}

static uint64_t rec_ts(const struct fx_stream *st, size_t i)
{
    (void)st;
    return TS_START + (uint64_t)i * TS_STEP;
}

/* --- handlers --- */

static void handle_ensure(struct fx_server *s, struct evhttp_request *req, const char *name)
{
    int created = find_stream(s, name) == NULL;
    if (created)
        fx_stream_create(s, name, 0);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", name);
    cJSON_AddStringToObject(root, "created_at", "2026-01-01T00:00:00Z");
    cJSON_AddNullToObject(root, "deleted_at");
    evhttp_add_header(evhttp_request_get_output_headers(req), "s2-provision-result",
                      created ? "created" : "noop");
    reply_json(req, created ? 201 : 200, root);
}

static void handle_tail(struct fx_server *s, struct evhttp_request *req, const char *name)
{
    struct fx_stream *st = find_stream(s, name);
    if (st == NULL) {
        reply_error(req, 404, "stream_not_found", "stream not found");
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "tail", position(st, tail_seq(st)));
    reply_json(req, 200, root);
}

/* Apply an append: returns the reply body, sets *status. */
static cJSON *apply_append(struct fx_server *s, struct evhttp_request *req, const char *name,
                           int *status)
{
    struct fx_stream *st = find_stream(s, name);
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    const char *fmt = evhttp_find_header(evhttp_request_get_input_headers(req), "S2-Format");
    cJSON *out = cJSON_CreateObject();
    if (st == NULL) {
        *status = 404;
        cJSON_AddStringToObject(out, "code", "stream_not_found");
        cJSON_AddStringToObject(out, "message", "stream not found");
        return out;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *text = (const char *)evbuffer_pullup(in, -1);
    cJSON *root = NULL;
    if (ct == NULL || strncmp(ct, "application/json", 16) != 0 || fmt == NULL ||
        strcmp(fmt, "base64") != 0 || s2_wire_parse(text ? text : "", len, &root) < 0) {
        *status = 400;
        cJSON_AddStringToObject(out, "code", "bad_json");
        cJSON_AddStringToObject(out, "message", "expected a base64 JSON append");
        cJSON_Delete(root);
        return out;
    }
    const cJSON *records = cJSON_GetObjectItemCaseSensitive(root, "records");
    const cJSON *match = cJSON_GetObjectItemCaseSensitive(root, "match_seq_num");
    int n = cJSON_GetArraySize(records);
    if (!cJSON_IsArray(records) || n < 1 || n > 1000) {
        *status = 422;
        cJSON_AddStringToObject(out, "code", "invalid");
        cJSON_AddStringToObject(out, "message", "bad record count");
        cJSON_Delete(root);
        return out;
    }
    uint64_t m = 0;
    if (match != NULL && (s2_wire_get_u64(match, &m) < 0 || m != tail_seq(st))) {
        *status = 412;
        s2_wire_add_u64(out, "seq_num_mismatch", tail_seq(st));
        cJSON_Delete(root);
        return out;
    }
    /* Decode all first: the batch is atomic. */
    uint8_t **bodies = calloc((size_t)n, sizeof *bodies);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    size_t metered = 0;
    int i = 0, bad = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, records)
    {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(r, "body");
        const char *bs = cJSON_IsString(b) ? b->valuestring : "";
        if (s2_base64_decode(bs, strlen(bs), &bodies[i], &lens[i]) < 0)
            bad = 1;
        metered += 8 + lens[i];
        i++;
    }
    if (bad || metered > 1024 * 1024) {
        *status = 422;
        cJSON_AddStringToObject(out, "code", "invalid");
        cJSON_AddStringToObject(out, "message",
                                bad ? "invalid Base64 encoding"
                                    : "record batch must not exceed a metered "
                                      "size of 1 MiB");
    } else {
        uint64_t start = tail_seq(st);
        for (i = 0; i < n; i++)
            stream_push(st, bodies[i], lens[i]);
        s->applied++;
        if (s->nsizes == s->capsizes) {
            s->capsizes = s->capsizes ? s->capsizes * 2 : 64;
            s->sizes = realloc(s->sizes, s->capsizes * sizeof *s->sizes);
        }
        s->sizes[s->nsizes++] = (uint32_t)n;
        *status = 200;
        cJSON_AddItemToObject(out, "start", position(st, start));
        cJSON_AddItemToObject(out, "end", position(st, tail_seq(st)));
        cJSON_AddItemToObject(out, "tail", position(st, tail_seq(st)));
    }
    for (i = 0; i < n; i++)
        free(bodies[i]);
    free(bodies);
    free(lens);
    cJSON_Delete(root);
    return out;
}

static int query_u64(struct evkeyvalq *q, const char *key, uint64_t *out)
{
    const char *v = evhttp_find_header(q, key);
    if (v == NULL)
        return 0;
    cJSON *item = cJSON_CreateString(v);
    int rc = s2_wire_get_u64(item, out);
    cJSON_Delete(item);
    return rc == 0 ? 1 : -1;
}

static void handle_read(struct fx_server *s, struct evhttp_request *req, const char *name)
{
    struct fx_stream *st = find_stream(s, name);
    if (st == NULL) {
        reply_error(req, 404, "stream_not_found", "stream not found");
        return;
    }
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query != NULL)
        evhttp_parse_query_str(query, &q);
    uint64_t seq = 0, ts = 0, count = 1000, bytes = 1024 * 1024, until = UINT64_MAX;
    int has_seq = query_u64(&q, "seq_num", &seq);
    int has_ts = query_u64(&q, "timestamp", &ts);
    int has_count = query_u64(&q, "count", &count);
    int has_bytes = query_u64(&q, "bytes", &bytes);
    int has_until = query_u64(&q, "until", &until);
    evhttp_clear_headers(&q);
    if (has_seq < 0 || has_ts < 0 || has_count < 0 || has_bytes < 0 || has_until < 0) {
        reply_error(req, 400, "bad_query", "bad query");
        return;
    }
    if (count > 1000)
        count = 1000;
    if (bytes > 1024 * 1024)
        bytes = 1024 * 1024;
    uint64_t tail = tail_seq(st);
    uint64_t last_ts = st->n ? rec_ts(st, st->n - 1) : 0;
    uint64_t start;
    if (has_seq) {
        start = seq < st->first_seq ? st->first_seq : seq;
        if (start > tail)
            start = UINT64_MAX;
    } else if (has_ts) {
        start = tail;
        if (ts > last_ts)
            start = UINT64_MAX;
        for (size_t i = 0; i < st->n; i++) {
            if (rec_ts(st, i) >= ts) {
                start = st->first_seq + i;
                break;
            }
        }
    } else {
        start = tail;
    }
    if (start == UINT64_MAX || start == tail) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddItemToObject(root, "tail", position(st, tail));
        reply_json(req, 416, root);
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "records");
    uint64_t got = 0, used = 0;
    for (uint64_t sq = start; sq < tail; sq++) {
        size_t i = (size_t)(sq - st->first_seq);
        uint64_t m = 8 + st->recs[i].len;
        if (got + 1 > count || used + m > bytes || rec_ts(st, i) >= until)
            break;
        cJSON *r = cJSON_CreateObject();
        s2_wire_add_u64(r, "seq_num", sq);
        s2_wire_add_u64(r, "timestamp", rec_ts(st, i));
        if (st->recs[i].len > 0) {
            char *b64 = NULL;
            s2_base64_encode(st->recs[i].body, st->recs[i].len, &b64, NULL);
            cJSON_AddStringToObject(r, "body", b64);
            free(b64);
        }
        cJSON_AddItemToArray(arr, r);
        got++;
        used += m;
    }
    if (s->read_tail)
        cJSON_AddItemToObject(root, "tail", position(st, tail));
    reply_json(req, 200, root);
}

/* --- dispatch --- */

static enum fx_route classify(struct evhttp_request *req, char **name)
{
    *name = NULL;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    /* Endpoints may carry a path before /v1 (e.g. a {basin} segment). */
    const char *prefix = "/v1/streams/";
    const char *at = path != NULL ? strstr(path, prefix) : NULL;
    if (at == NULL)
        return FX_ANY;
    const char *enc = at + strlen(prefix);
    size_t elen = strcspn(enc, "/");
    const char *rest = enc + elen;
    char *raw = strndup(enc, elen);
    *name = evhttp_uridecode(raw, 0, NULL);
    free(raw);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (*rest == '\0' && cmd == EVHTTP_REQ_PUT)
        return FX_ENSURE;
    if (strcmp(rest, "/records") == 0 && cmd == EVHTTP_REQ_POST)
        return FX_APPEND;
    if (strcmp(rest, "/records") == 0 && cmd == EVHTTP_REQ_GET)
        return FX_READ;
    if (strcmp(rest, "/records/tail") == 0 && cmd == EVHTTP_REQ_GET)
        return FX_TAIL;
    return FX_ANY;
}

static void drop_connection(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (conn != NULL)
        evhttp_connection_free(conn);
}

static void pending_remove(struct fx_server *s, struct fx_pending *p)
{
    for (struct fx_pending **pp = &s->pending; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    event_free(p->ev);
    free(p);
}

static void process(struct fx_server *s, struct evhttp_request *req, enum fx_route route,
                    const char *name, const struct fx_rule *rule);

static void on_pending(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fx_pending *p = arg;
    struct fx_server *s = p->srv;
    struct evhttp_request *req = p->req;
    int drop = p->drop;
    pending_remove(s, p);
    if (drop) {
        drop_connection(req);
        return;
    }
    char *name = NULL;
    enum fx_route route = classify(req, &name);
    process(s, req, route, name, NULL);
    free(name);
}

static void defer(struct fx_server *s, struct evhttp_request *req, uint64_t ms, int drop)
{
    struct fx_pending *p = calloc(1, sizeof *p);
    p->srv = s;
    p->req = req;
    p->drop = drop;
    p->ev = evtimer_new(s->base, on_pending, p);
    p->next = s->pending;
    s->pending = p;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(p->ev, &tv);
}

/* Handle normally, or apply-then-misbehave per rule (NULL = normal). */
static void process(struct fx_server *s, struct evhttp_request *req, enum fx_route route,
                    const char *name, const struct fx_rule *rule)
{
    switch (route) {
    case FX_ENSURE:
        handle_ensure(s, req, name);
        return;
    case FX_TAIL:
        handle_tail(s, req, name);
        return;
    case FX_READ:
        handle_read(s, req, name);
        return;
    case FX_APPEND: {
        int status = 0;
        cJSON *out = apply_append(s, req, name, &status);
        if (rule != NULL && rule->action == FX_APPLY_DROP) {
            cJSON_Delete(out);
            defer(s, req, 0, 1);
        } else if (rule != NULL && rule->action == FX_APPLY_STATUS) {
            cJSON_Delete(out);
            reply_file(req, rule);
        } else {
            reply_json(req, status, out);
        }
        return;
    }
    default:
        reply_error(req, 404, "bad_path", "no such route");
        return;
    }
}

static void remember(struct fx_server *s, struct evhttp_request *req)
{
    free(s->last_uri);
    s->last_uri = strdup(evhttp_request_get_uri(req));
    for (size_t i = 0; i < s->nlast; i++) {
        free(s->last_hdr_names[i]);
        free(s->last_hdr_values[i]);
    }
    s->nlast = 0;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next)
    {
        if (s->nlast == 8)
            break;
        s->last_hdr_names[s->nlast] = strdup(kv->key);
        s->last_hdr_values[s->nlast] = strdup(kv->value);
        s->nlast++;
    }
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct fx_server *s = arg;
    char *name = NULL;
    enum fx_route route = classify(req, &name);
    remember(s, req);
    uint64_t n = s->counts[route]++;
    if (n < MAX_ARRIVALS)
        s->arrivals[route][n] = mono_ms();
    s->counts[FX_ANY] += route != FX_ANY;
    struct fx_rule rule;
    int have = 0;
    if (s->decide != NULL)
        have = s->decide(route, n, &rule, s->decide_arg);
    for (size_t i = 0; !have && i < s->nrules; i++) {
        struct fx_rule *r = &s->rules[i];
        if (r->times != 0 && (r->route == FX_ANY || r->route == route)) {
            rule = *r;
            if (r->times > 0)
                r->times--;
            have = 1;
        }
    }
    if (!have || rule.action == FX_NORMAL) {
        process(s, req, route, name, NULL);
    } else if (rule.action == FX_FILE) {
        reply_file(req, &rule);
    } else if (rule.action == FX_DROP) {
        defer(s, req, 0, 1);
    } else if (rule.action == FX_DELAY) {
        defer(s, req, rule.delay_ms, 0);
    } else {
        process(s, req, route, name, &rule);
    }
    free(name);
}

int fx_server_new(struct event_base *base, struct fx_server **out)
{
    struct fx_server *s = calloc(1, sizeof *s);
    s->base = base;
    s->http = evhttp_new(base);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT);
    evhttp_set_max_body_size(s->http, 8 * 1024 * 1024);
    evhttp_set_gencb(s->http, on_request, s);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
    if (bs == NULL) {
        evhttp_free(s->http);
        free(s);
        return -EADDRNOTAVAIL;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%u",
             (unsigned)ntohs(((struct sockaddr_in *)&ss)->sin_port));
    *out = s;
    return 0;
}

const char *fx_server_url(const struct fx_server *s)
{
    return s->url;
}

void fx_server_free(struct fx_server *s)
{
    if (s == NULL)
        return;
    while (s->pending != NULL)
        pending_remove(s, s->pending);
    evhttp_free(s->http);
    for (size_t i = 0; i < s->nstreams; i++) {
        for (size_t j = 0; j < s->streams[i].n; j++)
            free(s->streams[i].recs[j].body);
        free(s->streams[i].recs);
        free(s->streams[i].name);
    }
    for (size_t i = 0; i < s->nlast; i++) {
        free(s->last_hdr_names[i]);
        free(s->last_hdr_values[i]);
    }
    free(s->last_uri);
    free(s->sizes);
    free(s);
}
