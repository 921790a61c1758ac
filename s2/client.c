/* client.c - S2 REST data plane over libcurl on an s2_loop. */
#include "s2/client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <event2/event.h>

#include "s2/loop.h"
#include "s2/wire.h"

#include "curlso.h"

#define BATCH_MAX_RECORDS 1000
#define BATCH_MAX_METERED (1024u * 1024u)
/* Response bounds: a unary read is <= 1 MiB metered, ~1.4 MiB as base64. */
#define READ_RESPONSE_MAX (4u * 1024u * 1024u)
#define SMALL_RESPONSE_MAX (64u * 1024u)
/* A server asking us to wait longer than this gets the error instead. */
#define RETRY_AFTER_CAP_MS 30000u
#define RETRY_AFTER_MARGIN_MS 5u
#define DEFAULT_REQUEST_TIMEOUT_MS 5000u
#define DEFAULT_CONNECT_TIMEOUT_MS 3000u
#define DEFAULT_RETRY_BASE_MS 100u
#define DEFAULT_RETRY_MAX_MS 1000u
#define DEFAULT_MAX_ATTEMPTS 3u
#define MAX_WAIT_S 60u

enum req_kind { REQ_APPEND, REQ_READ, REQ_TAIL, REQ_ENSURE };

struct s2_request {
    struct s2_client *client;
    enum req_kind kind;
    char *url;
    char *body; /* request body (POST/PUT), owned */
    size_t body_len;
    int idempotent;   /* reads, check-tail, ensure */
    int retry_unsafe; /* appends: also retry ambiguous failures */
    union {
        s2_append_cb append;
        s2_read_cb read;
        s2_tail_cb tail;
        s2_done_cb done;
    } cb;
    void *arg;
    char *what; /* "append to stream `x`", for messages */
    uint32_t attempts;
    uint64_t attempt_timeout_ms;
    CURL *easy; /* in flight, or NULL */
    struct event *retry_timer;
    char *resp; /* response body of the current attempt */
    size_t resp_len, resp_cap, resp_max;
    int resp_overflow;
    int completing; /* the callback is running: cancel is a no-op */
    char errbuf[CURL_ERROR_SIZE];
    /* In-process: the op's result, delivered on a later loop turn. */
    struct s2_error ierr;
    int ifailed;
    union {
        struct s2_append_ack ack;
        struct s2_position tail;
    } ires;
    struct s2_read_batch batch;
    struct s2_record *recs; /* read: records, bodies in data */
    size_t nrecs, recs_cap;
    uint8_t *data;
    size_t data_len, data_cap;
    struct s2_request *prev, *next;
};

struct s2_client {
    struct s2_loop *loop;            /* NULL when in-process */
    const struct s2_curl *cu;        /* libcurl; NULL when in-process */
    const struct s2_inproc_ops *ops; /* in-process transport, or NULL */
    void *ops_ctx;
    struct event_base *base;
    char *token; /* for redaction only; never printed */
    char *basin;
    char *basin_base; /* basin endpoint, {basin} substituted */
    struct curl_slist *hdr_get, *hdr_body;
    uint64_t request_timeout_ms, connect_timeout_ms;
    uint64_t retry_base_ms, retry_max_ms;
    uint32_t max_attempts;
    s2_log_fn log;
    void *log_arg;
    uint64_t rng;
    struct s2_request *reqs;
    struct s2_request *in_callback; /* whose callback runs (see complete) */
    /* In-process reads: the last read's record and body buffers, kept for
     * the next one (up to SPARE_KEEP bytes): a reader walking an archive
     * page by page would otherwise grow and free them for every page. */
    struct s2_record *spare_recs;
    size_t spare_recs_cap;
    uint8_t *spare_data;
    size_t spare_data_cap;
};

#define SPARE_KEEP (1024u * 1024u)

/* --- small helpers --- */

/* Overwrite any occurrence of the token in text (server messages could echo it). */
static void redact(const struct s2_client *c, char *text)
{
    if (c->token == NULL || c->token[0] == '\0')
        return;
    size_t n = strlen(c->token);
    char *p;
    while ((p = strstr(text, c->token)) != NULL)
        memset(p, '*', n);
}

static void client_log(const struct s2_client *c, int level, const char *fmt, ...)
{
    if (c->log == NULL)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    redact(c, msg);
    c->log(level, msg, c->log_arg);
}

static void set_message(const struct s2_client *c, struct s2_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    redact(c, err->message);
}

static uint64_t rng_next(struct s2_client *c)
{
    /* xorshift64*: jitter only, per client (no global state). */
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Replace every "{basin}" in tmpl by basin. */
static char *substitute_basin(const char *tmpl, const char *basin)
{
    static const char key[] = "{basin}";
    size_t klen = sizeof key - 1;
    size_t count = 0;
    for (const char *p = tmpl; (p = strstr(p, key)) != NULL; p += klen)
        count++;
    size_t blen = strlen(basin);
    char *out = malloc(strlen(tmpl) + count * blen + 1);
    if (out == NULL)
        return NULL;
    char *o = out;
    const char *p = tmpl;
    const char *hit;
    while ((hit = strstr(p, key)) != NULL) {
        memcpy(o, p, (size_t)(hit - p));
        o += hit - p;
        memcpy(o, basin, blen);
        o += blen;
        p = hit + klen;
    }
    strcpy(o, p);
    return out;
}

/* --- request lifecycle --- */

static void req_unlink(struct s2_request *r)
{
    struct s2_client *c = r->client;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else if (c->reqs == r)
        c->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void req_free(struct s2_request *r)
{
    if (r == NULL)
        return;
    if (r->retry_timer != NULL)
        event_free(r->retry_timer);
    free(r->url);
    free(r->body);
    free(r->what);
    free(r->resp);
    struct s2_client *c = r->client; /* NULL once the client is freed */
    if (c != NULL && c->ops != NULL && c->spare_data == NULL && r->data_cap <= SPARE_KEEP &&
        c->spare_recs == NULL) {
        c->spare_recs = r->recs;
        c->spare_recs_cap = r->recs_cap;
        c->spare_data = r->data;
        c->spare_data_cap = r->data_cap;
    } else {
        free(r->recs);
        free(r->data);
    }
    free(r);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct s2_request *r = arg;
    size_t n = size * nmemb;
    if (n > r->resp_max - r->resp_len) {
        r->resp_overflow = 1;
        return 0; /* abort: CURLE_WRITE_ERROR */
    }
    if (r->resp_len + n + 1 > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 1024;
        while (cap < r->resp_len + n + 1)
            cap *= 2;
        if (cap > r->resp_max + 1)
            cap = r->resp_max + 1;
        char *p = realloc(r->resp, cap);
        if (p == NULL) {
            r->resp_overflow = 1;
            return 0;
        }
        r->resp = p;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, data, n);
    r->resp_len += n;
    r->resp[r->resp_len] = '\0';
    return n;
}

static void on_transfer_done(CURL *easy, int result, void *arg);

static int start_attempt(struct s2_request *r)
{
    struct s2_client *c = r->client;
    CURL *e = c->cu->easy_init();
    if (e == NULL)
        return -ENOMEM;
    r->resp_len = 0;
    r->resp_overflow = 0;
    r->errbuf[0] = '\0';
    c->cu->easy_setopt(e, CURLOPT_URL, r->url);
    c->cu->easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    c->cu->easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    c->cu->easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    c->cu->easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    c->cu->easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    c->cu->easy_setopt(e, CURLOPT_WRITEDATA, r);
    c->cu->easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->resp_max);
    c->cu->easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->attempt_timeout_ms);
    c->cu->easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    c->cu->easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (r->body != NULL) {
        c->cu->easy_setopt(e, CURLOPT_HTTPHEADER, c->hdr_body);
        c->cu->easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        c->cu->easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        if (r->kind == REQ_ENSURE)
            c->cu->easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
    } else {
        c->cu->easy_setopt(e, CURLOPT_HTTPHEADER, c->hdr_get);
        c->cu->easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    r->attempts++;
    r->easy = e;
    int rc = s2_loop_add(c->loop, e, on_transfer_done, r);
    if (rc < 0)
        r->easy = NULL;
    return rc;
}

/* --- response parsing --- */

static int parse_position(const cJSON *obj, struct s2_position *out)
{
    if (!cJSON_IsObject(obj))
        return -EINVAL;
    if (s2_wire_get_u64(cJSON_GetObjectItemCaseSensitive(obj, "seq_num"), &out->seq_num) < 0)
        return -EINVAL;
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(obj, "timestamp");
    out->timestamp = 0;
    if (ts != NULL && !cJSON_IsNull(ts) && s2_wire_get_u64(ts, &out->timestamp) < 0)
        return -EINVAL;
    return 0;
}

static cJSON *parse_body(const struct s2_request *r)
{
    cJSON *root = NULL;
    if (r->resp == NULL || s2_wire_parse(r->resp, r->resp_len, &root) < 0)
        return NULL;
    return root;
}

/* Decoded records of a read; freed after the callback. */
struct read_result {
    struct s2_record *recs;
    uint8_t **bufs;
    size_t n;
    struct s2_read_batch batch;
};

static void read_result_clear(struct read_result *rr)
{
    for (size_t i = 0; i < rr->n; i++)
        free(rr->bufs[i]);
    free(rr->bufs);
    free(rr->recs);
    memset(rr, 0, sizeof *rr);
}

static int parse_record(const cJSON *item, struct s2_record *rec, uint8_t **buf)
{
    *buf = NULL;
    if (!cJSON_IsObject(item))
        return -EINVAL;
    if (s2_wire_get_u64(cJSON_GetObjectItemCaseSensitive(item, "seq_num"), &rec->seq_num) < 0 ||
        s2_wire_get_u64(cJSON_GetObjectItemCaseSensitive(item, "timestamp"), &rec->timestamp) < 0)
        return -EINVAL;
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(item, "headers");
    rec->header_count = 0;
    rec->is_command = 0;
    if (headers != NULL && !cJSON_IsNull(headers)) {
        if (!cJSON_IsArray(headers))
            return -EINVAL;
        int empty_name = 0;
        const cJSON *h;
        cJSON_ArrayForEach(h, headers)
        {
            const cJSON *name = cJSON_GetArrayItem(h, 0);
            const cJSON *value = cJSON_GetArrayItem(h, 1);
            if (!cJSON_IsArray(h) || cJSON_GetArraySize(h) != 2 || !cJSON_IsString(name) ||
                !cJSON_IsString(value))
                return -EINVAL;
            if (name->valuestring[0] == '\0')
                empty_name++;
            rec->header_count++;
        }
        rec->is_command = rec->header_count == 1 && empty_name == 1;
    }
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(item, "body");
    size_t len = 0;
    if (body != NULL && !cJSON_IsNull(body)) {
        if (!cJSON_IsString(body))
            return -EINVAL;
        int rc = s2_base64_decode(body->valuestring, strlen(body->valuestring), buf, &len);
        if (rc < 0)
            return rc;
    } else {
        *buf = calloc(1, 1);
        if (*buf == NULL)
            return -ENOMEM;
    }
    rec->body = *buf;
    rec->body_len = len;
    return 0;
}

static int parse_read(const cJSON *root, struct read_result *rr)
{
    memset(rr, 0, sizeof *rr);
    const cJSON *records = cJSON_GetObjectItemCaseSensitive(root, "records");
    if (!cJSON_IsArray(records))
        return -EINVAL;
    size_t n = (size_t)cJSON_GetArraySize(records);
    if (n > 0) {
        rr->recs = calloc(n, sizeof *rr->recs);
        rr->bufs = calloc(n, sizeof *rr->bufs);
        if (rr->recs == NULL || rr->bufs == NULL) {
            read_result_clear(rr);
            return -ENOMEM;
        }
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, records)
    {
        int rc = parse_record(item, &rr->recs[rr->n], &rr->bufs[rr->n]);
        if (rr->bufs[rr->n] != NULL)
            rr->n++;
        if (rc < 0) {
            read_result_clear(rr);
            return rc;
        }
    }
    const cJSON *tail = cJSON_GetObjectItemCaseSensitive(root, "tail");
    if (tail != NULL && !cJSON_IsNull(tail)) {
        if (parse_position(tail, &rr->batch.tail) < 0) {
            read_result_clear(rr);
            return -EINVAL;
        }
        rr->batch.has_tail = 1;
    }
    rr->batch.records = rr->recs;
    rr->batch.count = rr->n;
    return 0;
}

/* --- error classification (s2-wire.md 2.4) --- */

/* retryable and "safe" (no side effects) for an HTTP error status/code. */
static void classify_status(int status, const char *code, int *retryable, int *safe)
{
    *retryable = 0;
    *safe = 1;
    switch (status) {
    case 408:
        *retryable = 1;
        *safe = 0;
        break;
    case 409:
        *retryable = strcmp(code, "transaction_conflict") == 0;
        break;
    case 429:
        *retryable = 1;
        break;
    case 499:
        *safe = 0;
        break;
    case 500:
    case 504:
        *retryable = 1;
        *safe = 0;
        break;
    case 502:
        *retryable = 1;
        break;
    case 503:
        *retryable = 1;
        *safe = strcmp(code, "server_draining") == 0;
        break;
    default:
        /* Unknown 5xx: retry like the SDKs, but it may have had effects. */
        if (status >= 500) {
            *retryable = 1;
            *safe = 0;
        }
        break;
    }
}

static void classify_curl(const struct s2_curl *cu, CURL *easy, CURLcode rc, int *retryable,
                          int *safe)
{
    *retryable = 0;
    *safe = 0;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        *retryable = 1;
        *safe = 1; /* nothing was sent */
        break;
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3: {
        *retryable = 1;
        /* Safe only if the request cannot have reached the server. */
        long sent = 0;
        cu->easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &sent);
        *safe = sent == 0;
        break;
    }
    default:
        break;
    }
}

/* Retry-After wish of the response in ms (0 = none). */
static uint64_t retry_after_ms(const struct s2_curl *cu, CURL *easy)
{
    struct curl_header *h = NULL;
    if (cu->easy_header(easy, "retry-after-ms", 0, CURLH_HEADER, -1, &h) == CURLHE_OK &&
        h != NULL && h->value != NULL) {
        char *end = NULL;
        unsigned long long v = strtoull(h->value, &end, 10);
        if (end != h->value)
            return v;
    }
    curl_off_t secs = 0;
    if (cu->easy_getinfo(easy, CURLINFO_RETRY_AFTER, &secs) == CURLE_OK && secs > 0)
        return (uint64_t)secs * 1000;
    return 0;
}

/* --- completion --- */

static void complete(struct s2_request *r, const struct s2_error *err, const void *payload)
{
    struct s2_client *c = r->client;
    struct s2_request *outer = c->in_callback;
    req_unlink(r);
    r->completing = 1;
    c->in_callback = r;
    switch (r->kind) {
    case REQ_APPEND:
        r->cb.append(err, payload, r->arg);
        break;
    case REQ_READ:
        r->cb.read(err, payload, r->arg);
        break;
    case REQ_TAIL:
        r->cb.tail(err, payload, r->arg);
        break;
    case REQ_ENSURE:
        r->cb.done(err, r->arg);
        break;
    }
    /* The callback may have freed the client: s2_client_free then set
     * r->client to NULL. */
    if (r->client != NULL)
        r->client->in_callback = outer;
    req_free(r);
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct s2_request *r = arg;
    int rc = start_attempt(r);
    if (rc < 0) {
        struct s2_error err = {.kind = S2_ERR_TRANSPORT, .attempts = r->attempts};
        set_message(r->client, &err, "%s: cannot start request (%s)", r->what, strerror(-rc));
        complete(r, &err, NULL);
    }
}

/* Handle a 2xx body; fills err on a protocol error. Then completes. */
static void complete_success(struct s2_request *r, struct s2_error *err)
{
    struct s2_client *c = r->client;
    cJSON *root = NULL;
    if (r->kind == REQ_ENSURE) {
        complete(r, NULL, NULL);
        return;
    }
    root = parse_body(r);
    if (r->kind == REQ_APPEND) {
        struct s2_append_ack ack = {.attempts = r->attempts};
        if (root == NULL ||
            parse_position(cJSON_GetObjectItemCaseSensitive(root, "start"), &ack.start) < 0 ||
            parse_position(cJSON_GetObjectItemCaseSensitive(root, "end"), &ack.end) < 0 ||
            parse_position(cJSON_GetObjectItemCaseSensitive(root, "tail"), &ack.tail) < 0)
            goto PROTOCOL;
        cJSON_Delete(root);
        complete(r, NULL, &ack);
        return;
    }
    if (r->kind == REQ_TAIL) {
        struct s2_position tail;
        if (root == NULL ||
            parse_position(cJSON_GetObjectItemCaseSensitive(root, "tail"), &tail) < 0)
            goto PROTOCOL;
        cJSON_Delete(root);
        complete(r, NULL, &tail);
        return;
    }
    struct read_result rr;
    if (root == NULL || parse_read(root, &rr) < 0)
        goto PROTOCOL;
    cJSON_Delete(root);
    complete(r, NULL, &rr.batch);
    read_result_clear(&rr);
    return;
PROTOCOL:
    cJSON_Delete(root);
    err->kind = S2_ERR_PROTOCOL;
    set_message(c, err, "%s: unexpected response body (HTTP %d)", r->what, err->http_status);
    /* A 2xx append we cannot read may have been applied: ambiguous. */
    err->retryable = r->kind != REQ_APPEND;
    complete(r, err, NULL);
}

/* Fill err from an error status and its body. Returns whether it is "safe". */
static int fill_http_error(struct s2_request *r, long status, struct s2_error *err)
{
    struct s2_client *c = r->client;
    cJSON *root = parse_body(r);
    int safe = 1;
    err->http_status = (int)status;
    if (status == 412) {
        err->kind = S2_ERR_PRECONDITION;
        const cJSON *seq = root ? cJSON_GetObjectItemCaseSensitive(root, "seq_num_mismatch") : NULL;
        const cJSON *fence =
            root ? cJSON_GetObjectItemCaseSensitive(root, "fencing_token_mismatch") : NULL;
        if (seq != NULL && s2_wire_get_u64(seq, &err->tail.seq_num) == 0) {
            err->has_tail = 1;
            snprintf(err->code, sizeof err->code, "seq_num_mismatch");
            set_message(c, err, "%s: seq_num mismatch, stream tail is %" PRIu64, r->what,
                        err->tail.seq_num);
        } else if (cJSON_IsString(fence)) {
            err->fencing_mismatch = 1;
            snprintf(err->code, sizeof err->code, "fencing_token_mismatch");
            set_message(c, err, "%s: fencing token mismatch (current token \"%.64s\")", r->what,
                        fence->valuestring);
        } else {
            err->kind = S2_ERR_PROTOCOL;
            set_message(c, err, "%s: HTTP 412 with an unexpected body", r->what);
        }
    } else if (status == 416) {
        const cJSON *tail = root ? cJSON_GetObjectItemCaseSensitive(root, "tail") : NULL;
        if (parse_position(tail, &err->tail) == 0) {
            err->kind = S2_ERR_UNWRITTEN;
            err->has_tail = 1;
            set_message(c, err, "%s: caught up, tail is %" PRIu64, r->what, err->tail.seq_num);
        } else {
            err->kind = S2_ERR_PROTOCOL;
            set_message(c, err, "%s: HTTP 416 with an unexpected body", r->what);
        }
    } else {
        err->kind = S2_ERR_HTTP;
        const cJSON *code = root ? cJSON_GetObjectItemCaseSensitive(root, "code") : NULL;
        const cJSON *msg = root ? cJSON_GetObjectItemCaseSensitive(root, "message") : NULL;
        if (cJSON_IsString(code))
            snprintf(err->code, sizeof err->code, "%s", code->valuestring);
        classify_status((int)status, err->code, &err->retryable, &safe);
        if (cJSON_IsString(msg))
            set_message(c, err, "%s: HTTP %ld %s: %.180s", r->what, status,
                        err->code[0] ? err->code : "error", msg->valuestring);
        else
            set_message(c, err, "%s: HTTP %ld%s%s", r->what, status, err->code[0] ? " " : "",
                        err->code);
    }
    cJSON_Delete(root);
    return safe;
}

static void on_transfer_done(CURL *easy, int result, void *arg)
{
    struct s2_request *r = arg;
    struct s2_client *c = r->client;
    r->easy = NULL; /* the loop cleans it up after we return */
    struct s2_error err = {.kind = S2_OK, .attempts = r->attempts};
    int safe = 0;
    long status = 0;
    if (result != CURLE_OK) {
        if ((result == CURLE_WRITE_ERROR && r->resp_overflow) ||
            result == CURLE_FILESIZE_EXCEEDED) {
            err.kind = S2_ERR_PROTOCOL;
            set_message(c, &err, "%s: response larger than %zu bytes", r->what, r->resp_max);
        } else {
            classify_curl(c->cu, easy, (CURLcode)result, &err.retryable, &safe);
            err.kind = result == CURLE_OPERATION_TIMEDOUT ? S2_ERR_TIMEOUT : S2_ERR_TRANSPORT;
            set_message(c, &err, "%s: %s", r->what,
                        r->errbuf[0] ? r->errbuf : c->cu->easy_strerror((CURLcode)result));
        }
    } else {
        c->cu->easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            err.http_status = (int)status;
            complete_success(r, &err);
            return;
        }
        safe = fill_http_error(r, status, &err);
        err.retry_after_ms = retry_after_ms(c->cu, easy);
    }
    if (err.retryable && r->attempts < c->max_attempts &&
        (r->idempotent || safe || r->retry_unsafe) && err.retry_after_ms <= RETRY_AFTER_CAP_MS) {
        uint64_t base = c->retry_base_ms;
        for (uint32_t i = 1; i < r->attempts && base < c->retry_max_ms; i++)
            base *= 2;
        if (base > c->retry_max_ms)
            base = c->retry_max_ms;
        uint64_t delay = base + (base ? rng_next(c) % (base + 1) : 0);
        /* libevent's timers run on CLOCK_MONOTONIC_COARSE unless the base
         * asks for precise ones: a tick (1 to 4 ms) behind the real time,
         * so a timer can fire that much before its time. The margin keeps
         * the retry after the server's wish (a 300 ms wish was retried
         * after 298 ms). */
        if (delay < err.retry_after_ms + RETRY_AFTER_MARGIN_MS && err.retry_after_ms > 0)
            delay = err.retry_after_ms + RETRY_AFTER_MARGIN_MS;
        client_log(c, 1, "%s; retry %" PRIu32 " of %" PRIu32 " in %" PRIu64 " ms", err.message,
                   r->attempts, c->max_attempts - 1, delay);
        struct timeval tv = {.tv_sec = (time_t)(delay / 1000),
                             .tv_usec = (suseconds_t)(delay % 1000) * 1000};
        /* libevent measures timeouts from the time cached at the start of
         * the loop iteration; refresh it so a server's Retry-After is not
         * cut short by the time this iteration already took. */
        event_base_update_cache_time(event_get_base(r->retry_timer));
        if (evtimer_add(r->retry_timer, &tv) == 0)
            return;
    }
    complete(r, &err, NULL);
}

/* --- public API --- */

static int build_headers(struct s2_client *c)
{
    char *auth = NULL, *basin = NULL;
    int rc = -ENOMEM;
    if (c->token != NULL && (auth = str_printf("Authorization: Bearer %s", c->token)) == NULL)
        goto DONE;
    if ((basin = str_printf("S2-Basin: %s", c->basin)) == NULL)
        goto DONE;
    const char *common[] = {auth, basin, "S2-Format: base64", "Accept: application/json"};
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) {
        if (common[i] == NULL)
            continue;
        struct curl_slist *g = c->cu->slist_append(c->hdr_get, common[i]);
        if (g == NULL)
            goto DONE;
        c->hdr_get = g;
        struct curl_slist *b = c->cu->slist_append(c->hdr_body, common[i]);
        if (b == NULL)
            goto DONE;
        c->hdr_body = b;
    }
    /* No "Expect: 100-continue" round trip for large appends. */
    const char *body_only[] = {"Content-Type: application/json", "Expect:"};
    for (size_t i = 0; i < 2; i++) {
        struct curl_slist *b = c->cu->slist_append(c->hdr_body, body_only[i]);
        if (b == NULL)
            goto DONE;
        c->hdr_body = b;
    }
    rc = 0;
DONE:
    if (auth != NULL) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    free(basin);
    return rc;
}

int s2_client_new(struct s2_loop *loop, const struct s2_config *cfg, s2_log_fn log, void *log_arg,
                  struct s2_client **out)
{
    *out = NULL;
    if (loop == NULL || cfg == NULL || cfg->basin == NULL || cfg->basin_endpoint == NULL)
        return -EINVAL;
    struct s2_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    char why[256];
    int rc = s2_curl_load(&c->cu, why, sizeof why);
    if (rc != 0)
        goto FAIL;
    rc = -ENOMEM;
    c->loop = loop;
    c->base = s2_loop_base(loop);
    c->log = log;
    c->log_arg = log_arg;
    c->request_timeout_ms =
        cfg->request_timeout_ms ? cfg->request_timeout_ms : DEFAULT_REQUEST_TIMEOUT_MS;
    c->connect_timeout_ms =
        cfg->connect_timeout_ms ? cfg->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    c->retry_base_ms = cfg->retry_base_ms ? cfg->retry_base_ms : DEFAULT_RETRY_BASE_MS;
    c->retry_max_ms = cfg->retry_max_ms ? cfg->retry_max_ms : DEFAULT_RETRY_MAX_MS;
    if (c->retry_max_ms < c->retry_base_ms)
        c->retry_max_ms = c->retry_base_ms;
    c->max_attempts = cfg->max_attempts ? cfg->max_attempts : DEFAULT_MAX_ATTEMPTS;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)c;
    if (c->rng == 0)
        c->rng = 0x9E3779B97F4A7C15ULL;
    if (cfg->access_token != NULL && (c->token = strdup(cfg->access_token)) == NULL)
        goto FAIL;
    if ((c->basin = strdup(cfg->basin)) == NULL ||
        (c->basin_base = substitute_basin(cfg->basin_endpoint, cfg->basin)) == NULL)
        goto FAIL;
    if ((rc = build_headers(c)) < 0)
        goto FAIL;
    const curl_version_info_data *vi = c->cu->version_info(CURLVERSION_NOW);
    if (vi == NULL || !(vi->features & CURL_VERSION_ASYNCHDNS))
        client_log(c, 2, "libcurl has no asynchronous resolver: name lookups may block the loop");
    *out = c;
    return 0;
FAIL:
    s2_client_free(c);
    return rc;
}

void s2_client_free(struct s2_client *c)
{
    if (c == NULL)
        return;
    if (c->in_callback != NULL)
        c->in_callback->client = NULL; /* freed from its callback */
    while (c->reqs != NULL)
        s2_request_cancel(c->reqs);
    if (c->ops != NULL && c->ops->release != NULL)
        c->ops->release(c->ops_ctx);
    if (c->cu != NULL) {
        c->cu->slist_free_all(c->hdr_get);
        c->cu->slist_free_all(c->hdr_body);
    }
    if (c->token != NULL) {
        explicit_bzero(c->token, strlen(c->token));
        free(c->token);
    }
    free(c->basin);
    free(c->basin_base);
    free(c->spare_recs);
    free(c->spare_data);
    free(c);
}

void s2_request_cancel(struct s2_request *r)
{
    if (r == NULL || r->completing)
        return;
    if (r->easy != NULL)
        s2_loop_cancel(r->client->loop, r->easy);
    r->easy = NULL;
    req_unlink(r);
    req_free(r);
}

/* URL of a stream path: <basin base>/streams/<escaped>[suffix][?query]. */
static char *stream_url(struct s2_client *c, const char *stream, const char *suffix,
                        const char *query)
{
    char *esc = c->cu->easy_escape(NULL, stream, (int)strlen(stream));
    if (esc == NULL)
        return NULL;
    char *url = str_printf("%s/streams/%s%s%s%s", c->basin_base, esc, suffix, query ? "?" : "",
                           query ? query : "");
    c->cu->free(esc);
    return url;
}

static int stream_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= 512 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static void on_inproc_done(evutil_socket_t fd, short what, void *arg);

static struct s2_request *req_new(struct s2_client *c, enum req_kind kind, const char *stream,
                                  const char *verb, size_t resp_max)
{
    struct s2_request *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->client = c;
    r->kind = kind;
    r->resp_max = resp_max;
    r->attempt_timeout_ms = c->request_timeout_ms;
    r->idempotent = kind != REQ_APPEND;
    r->retry_timer = evtimer_new(c->base, c->ops ? on_inproc_done : on_retry_timer, r);
    r->what = str_printf("%s stream `%.128s`", verb, stream);
    if (r->retry_timer == NULL || r->what == NULL) {
        req_free(r);
        return NULL;
    }
    return r;
}

/* Link and start r; on failure free it. */
static int req_submit(struct s2_request *r, struct s2_request **req_out)
{
    struct s2_client *c = r->client;
    if (r->url == NULL) {
        req_free(r);
        return -ENOMEM;
    }
    r->next = c->reqs;
    if (c->reqs != NULL)
        c->reqs->prev = r;
    c->reqs = r;
    int rc = start_attempt(r);
    if (rc < 0) {
        req_unlink(r);
        req_free(r);
        return rc;
    }
    if (req_out != NULL)
        *req_out = r;
    return 0;
}

/* --- in-process transport --- */

static void on_inproc_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct s2_request *r = arg;
    if (r->ifailed) {
        complete(r, &r->ierr, NULL);
        return;
    }
    switch (r->kind) {
    case REQ_APPEND:
        complete(r, NULL, &r->ires.ack);
        break;
    case REQ_READ:
        complete(r, NULL, &r->batch);
        break;
    case REQ_TAIL:
        complete(r, NULL, &r->ires.tail);
        break;
    case REQ_ENSURE:
        complete(r, NULL, NULL);
        break;
    }
}

/* Turn the op's answer into the error an HTTP request would complete with. */
static void inproc_error(struct s2_request *r, int rc)
{
    struct s2_client *c = r->client;
    struct s2_error *e = &r->ierr;
    char text[sizeof e->message];
    memcpy(text, e->message, sizeof text);
    text[sizeof text - 1] = '\0';
    r->ifailed = 1;
    e->attempts = 1;
    e->retryable = 0;
    if (e->http_status == 0) {
        e->kind = S2_ERR_TRANSPORT;
        set_message(c, e, "%s: %s", r->what, strerror(rc < 0 ? -rc : EIO));
    } else if (e->http_status == 412) {
        e->kind = S2_ERR_PRECONDITION;
        if (e->fencing_mismatch) {
            snprintf(e->code, sizeof e->code, "fencing_token_mismatch");
            set_message(c, e, "%s: fencing token mismatch (current token \"%.64s\")", r->what,
                        text);
        } else {
            snprintf(e->code, sizeof e->code, "seq_num_mismatch");
            set_message(c, e, "%s: seq_num mismatch, stream tail is %" PRIu64, r->what,
                        e->tail.seq_num);
        }
    } else if (e->http_status == 416) {
        e->kind = S2_ERR_UNWRITTEN;
        set_message(c, e, "%s: caught up, tail is %" PRIu64, r->what, e->tail.seq_num);
    } else {
        int safe;
        e->kind = S2_ERR_HTTP;
        classify_status(e->http_status, e->code, &e->retryable, &safe);
        set_message(c, e, "%s: HTTP %d %s: %.180s", r->what, e->http_status,
                    e->code[0] ? e->code : "error", text);
    }
}

/* Link r and deliver its result on a later loop turn. */
static int inproc_submit(struct s2_request *r, int rc, struct s2_request **req_out)
{
    struct s2_client *c = r->client;
    if (rc != 0)
        inproc_error(r, rc);
    r->next = c->reqs;
    if (c->reqs != NULL)
        c->reqs->prev = r;
    c->reqs = r;
    event_active(r->retry_timer, EV_TIMEOUT, 1);
    if (req_out != NULL)
        *req_out = r;
    return 0;
}

static int inproc_append(struct s2_client *c, const char *stream,
                         const struct s2_append_record *records, size_t n,
                         const uint64_t *match_seq_num, s2_append_cb cb, void *arg,
                         struct s2_request **req_out)
{
    struct s2_request *r = req_new(c, REQ_APPEND, stream, "append to", 0);
    if (r == NULL)
        return -ENOMEM;
    r->cb.append = cb;
    r->arg = arg;
    int rc = c->ops->append(c->ops_ctx, stream, records, n, match_seq_num, &r->ires.ack, &r->ierr);
    r->ires.ack.attempts = 1;
    return inproc_submit(r, rc, req_out);
}

/* Copy one record of an in-process read into the request. Bodies are
 * placed by offset first (data may move while it grows), then pointed at
 * once the read is over. */
static int inproc_emit(const struct s2_record *rec, void *sink)
{
    struct s2_request *r = sink;
    if (r->nrecs == r->recs_cap) {
        size_t cap = r->recs_cap ? 2 * r->recs_cap : 16;
        if (cap > BATCH_MAX_RECORDS)
            cap = BATCH_MAX_RECORDS;
        if (cap <= r->nrecs)
            return -EMSGSIZE;
        struct s2_record *n = realloc(r->recs, cap * sizeof *n);
        if (n == NULL)
            return -ENOMEM;
        r->recs = n;
        r->recs_cap = cap;
    }
    if (rec->body_len > READ_RESPONSE_MAX - r->data_len)
        return -EMSGSIZE;
    if (r->data_len + rec->body_len > r->data_cap) {
        size_t cap = r->data_cap ? r->data_cap : 4096;
        while (cap < r->data_len + rec->body_len)
            cap *= 2;
        uint8_t *d = realloc(r->data, cap);
        if (d == NULL)
            return -ENOMEM;
        r->data = d;
        r->data_cap = cap;
    }
    if (rec->body_len > 0)
        memcpy(r->data + r->data_len, rec->body, rec->body_len);
    struct s2_record *out = &r->recs[r->nrecs++];
    *out = *rec;
    out->body = (const uint8_t *)(uintptr_t)r->data_len;
    r->data_len += rec->body_len;
    return 0;
}

static int inproc_read(struct s2_client *c, const char *stream, const struct s2_read_opts *o,
                       s2_read_cb cb, void *arg, struct s2_request **req_out)
{
    if (o->wait_s > 0)
        return -ENOTSUP;
    struct s2_request *r = req_new(c, REQ_READ, stream, "read", 0);
    if (r == NULL)
        return -ENOMEM;
    r->cb.read = cb;
    r->arg = arg;
    r->recs = c->spare_recs;
    r->recs_cap = c->spare_recs_cap;
    r->data = c->spare_data;
    r->data_cap = c->spare_data_cap;
    c->spare_recs = NULL;
    c->spare_data = NULL;
    c->spare_recs_cap = c->spare_data_cap = 0;
    int rc = c->ops->read(c->ops_ctx, stream, o, inproc_emit, r, &r->batch.tail, &r->ierr);
    if (rc == 0) {
        for (size_t i = 0; i < r->nrecs; i++)
            r->recs[i].body = r->data + (uintptr_t)r->recs[i].body;
        r->batch.records = r->recs;
        r->batch.count = r->nrecs;
        r->batch.has_tail = 1;
    }
    return inproc_submit(r, rc, req_out);
}

static int inproc_check_tail(struct s2_client *c, const char *stream, s2_tail_cb cb, void *arg,
                             struct s2_request **req_out)
{
    struct s2_request *r = req_new(c, REQ_TAIL, stream, "check tail of", 0);
    if (r == NULL)
        return -ENOMEM;
    r->cb.tail = cb;
    r->arg = arg;
    int rc = c->ops->check_tail(c->ops_ctx, stream, &r->ires.tail, &r->ierr);
    return inproc_submit(r, rc, req_out);
}

static int inproc_ensure(struct s2_client *c, const char *stream, s2_done_cb cb, void *arg,
                         struct s2_request **req_out)
{
    struct s2_request *r = req_new(c, REQ_ENSURE, stream, "ensure", 0);
    if (r == NULL)
        return -ENOMEM;
    r->cb.done = cb;
    r->arg = arg;
    int rc = c->ops->ensure_stream(c->ops_ctx, stream, &r->ierr);
    return inproc_submit(r, rc, req_out);
}

int s2_client_append(struct s2_client *c, const char *stream,
                     const struct s2_append_record *records, size_t n,
                     const uint64_t *match_seq_num, int retry_unsafe, s2_append_cb cb, void *arg,
                     struct s2_request **req_out)
{
    if (req_out != NULL)
        *req_out = NULL;
    if (c == NULL || cb == NULL || !stream_name_ok(stream) || n == 0 || n > BATCH_MAX_RECORDS ||
        records == NULL)
        return -EINVAL;
    size_t metered = 0;
    size_t json_len = 64;
    for (size_t i = 0; i < n; i++) {
        if (records[i].len > 0 && records[i].body == NULL)
            return -EINVAL;
        metered += s2_metered_size(records[i].len);
        if (metered > BATCH_MAX_METERED)
            return -EMSGSIZE;
        json_len += S2_BASE64_LEN(records[i].len) + 16;
    }
    if (c->ops != NULL)
        return inproc_append(c, stream, records, n, match_seq_num, cb, arg, req_out);
    struct s2_request *r = req_new(c, REQ_APPEND, stream, "append to", SMALL_RESPONSE_MAX);
    if (r == NULL)
        return -ENOMEM;
    r->retry_unsafe = retry_unsafe;
    r->cb.append = cb;
    r->arg = arg;
    /* Base64 never needs JSON escaping, so the body is written directly,
     * each record encoded in place. */
    char *body = malloc(json_len);
    if (body == NULL) {
        req_free(r);
        return -ENOMEM;
    }
    size_t o = 0;
    memcpy(body, "{\"records\":[", 12);
    o += 12;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            body[o++] = ',';
        memcpy(body + o, "{\"body\":\"", 9);
        o += 9;
        o += s2_base64_encode_to(body + o, records[i].body, records[i].len);
        body[o++] = '"';
        body[o++] = '}';
    }
    body[o++] = ']';
    if (match_seq_num != NULL) {
        memcpy(body + o, ",\"match_seq_num\":", 17);
        o += 17;
        o += s2_wire_fmt_u64(body + o, *match_seq_num);
    }
    body[o++] = '}';
    body[o] = '\0';
    r->body = body;
    r->body_len = o;
    r->url = stream_url(c, stream, "/records", NULL);
    return req_submit(r, req_out);
}

int s2_client_read(struct s2_client *c, const char *stream, const struct s2_read_opts *o,
                   s2_read_cb cb, void *arg, struct s2_request **req_out)
{
    if (req_out != NULL)
        *req_out = NULL;
    if (c == NULL || cb == NULL || o == NULL || !stream_name_ok(stream))
        return -EINVAL;
    if ((o->has_seq_num != 0) + (o->has_timestamp != 0) + (o->has_tail_offset != 0) > 1 ||
        o->wait_s > MAX_WAIT_S)
        return -EINVAL;
    if (c->ops != NULL)
        return inproc_read(c, stream, o, cb, arg, req_out);
    char q[256];
    size_t n = 0;
#define QADD(...) n += (size_t)snprintf(q + n, sizeof q - n, __VA_ARGS__)
    if (o->has_seq_num)
        QADD("&seq_num=%" PRIu64, o->seq_num);
    if (o->has_timestamp)
        QADD("&timestamp=%" PRIu64, o->timestamp);
    if (o->has_tail_offset)
        QADD("&tail_offset=%" PRIu64, o->tail_offset);
    if (o->has_count)
        QADD("&count=%" PRIu64, o->count);
    if (o->has_bytes)
        QADD("&bytes=%" PRIu64, o->bytes);
    if (o->has_until)
        QADD("&until=%" PRIu64, o->until);
    if (o->clamp)
        QADD("&clamp=true");
    if (o->wait_s > 0)
        QADD("&wait=%" PRIu32, o->wait_s);
#undef QADD
    struct s2_request *r = req_new(c, REQ_READ, stream, "read", READ_RESPONSE_MAX);
    if (r == NULL)
        return -ENOMEM;
    r->cb.read = cb;
    r->arg = arg;
    /* A long poll may legitimately take wait_s longer. */
    r->attempt_timeout_ms += (uint64_t)o->wait_s * 1000;
    r->url = stream_url(c, stream, "/records", n > 0 ? q + 1 : NULL);
    return req_submit(r, req_out);
}

int s2_client_check_tail(struct s2_client *c, const char *stream, s2_tail_cb cb, void *arg,
                         struct s2_request **req_out)
{
    if (req_out != NULL)
        *req_out = NULL;
    if (c == NULL || cb == NULL || !stream_name_ok(stream))
        return -EINVAL;
    if (c->ops != NULL)
        return inproc_check_tail(c, stream, cb, arg, req_out);
    struct s2_request *r = req_new(c, REQ_TAIL, stream, "check tail of", SMALL_RESPONSE_MAX);
    if (r == NULL)
        return -ENOMEM;
    r->cb.tail = cb;
    r->arg = arg;
    r->url = stream_url(c, stream, "/records/tail", NULL);
    return req_submit(r, req_out);
}

int s2_client_ensure_stream(struct s2_client *c, const char *stream, s2_done_cb cb, void *arg,
                            struct s2_request **req_out)
{
    if (req_out != NULL)
        *req_out = NULL;
    if (c == NULL || cb == NULL || !stream_name_ok(stream))
        return -EINVAL;
    if (c->ops != NULL)
        return inproc_ensure(c, stream, cb, arg, req_out);
    struct s2_request *r = req_new(c, REQ_ENSURE, stream, "ensure", SMALL_RESPONSE_MAX);
    if (r == NULL)
        return -ENOMEM;
    r->cb.done = cb;
    r->arg = arg;
    /* An empty StreamConfig: create with the basin defaults, change nothing. */
    r->body = strdup("{}");
    r->body_len = 2;
    if (r->body == NULL) {
        req_free(r);
        return -ENOMEM;
    }
    char *esc = c->cu->easy_escape(NULL, stream, (int)strlen(stream));
    if (esc != NULL)
        r->url = str_printf("%s/streams/%s", c->basin_base, esc);
    c->cu->free(esc);
    return req_submit(r, req_out);
}

struct s2_loop *s2_client_loop(const struct s2_client *c)
{
    return c->loop;
}

struct event_base *s2_client_base(const struct s2_client *c)
{
    return c->base;
}

int s2_client_new_inproc(struct event_base *base, const struct s2_inproc_ops *ops, void *ctx,
                         const struct s2_config *cfg, s2_log_fn log, void *log_arg,
                         struct s2_client **out)
{
    *out = NULL;
    if (ops == NULL)
        return -EINVAL;
    struct s2_client *c = NULL;
    if (base == NULL || cfg == NULL || cfg->basin == NULL || (c = calloc(1, sizeof *c)) == NULL) {
        if (ops->release != NULL)
            ops->release(ctx);
        return c == NULL && base != NULL && cfg != NULL && cfg->basin != NULL ? -ENOMEM : -EINVAL;
    }
    c->base = base;
    c->ops = ops;
    c->ops_ctx = ctx;
    c->log = log;
    c->log_arg = log_arg;
    c->max_attempts = 1;
    if ((c->basin = strdup(cfg->basin)) == NULL) {
        s2_client_free(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}
