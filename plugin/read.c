/*
 * read.c - GET /telemetry/events: one bounded page of archived envelopes.
 *
 * A request resolves its parameters (params.h), then reads S2 (s2/reader.h)
 * from the start position, one bounded read at a time, until the page holds
 * `limit` matching envelopes, nothing remains, or the scan budget (records,
 * reads, time) is spent. Records are checked to be envelopes in one pass
 * without allocation and served as the bytes S2 holds. The reply is deferred
 * until the reads finish; a client that goes away cancels them.
 */
#include "read.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "agent/plugin.h"
#include "httputil.h"
#include "json.h"
#include "params.h"
#include "s2/reader.h"
#include "s2/wire.h"

/* Envelope bytes of one page; a page always holds at least one envelope,
 * whatever its size. */
#define TEL_READ_PAGE_BYTES (2u << 20)
/* Scan budget of one page: records looked at, S2 reads, and time before
 * another read is started. Then the page goes out short with a cursor past
 * what was scanned. */
#define TEL_READ_SCAN_RECORDS 10000
#define TEL_READ_SCAN_READS 16
#define TEL_READ_SCAN_MS 3000
/* How often pending requests are checked for clients that went away. */
#define TEL_READ_WATCH_MS 200
/* Requests waiting on S2 at once; more get 503. */
#define TEL_READ_MAX_PENDING 32
/* Nesting accepted in an archived envelope: the publish path accepts data
 * nested 1000 deep, and the envelope adds two levels. */
#define TEL_READ_MAX_DEPTH 1100
/* Records per S2 read when filtering: enough to scan sparse matches fast. */
#define TEL_READ_FILTER_COUNT_MIN 100
#define TEL_READ_S2_COUNT_MAX 1000

struct tel_read_req;

struct tel_read {
    const struct agent_host_api *api;
    struct s2_client *client;
    char *stream;
    struct tel_read_req *pending; /* doubly linked */
    unsigned npending;
    struct event *watch; /* looks for abandoned requests while any is pending */
    int shut;
    uint64_t invalid_total;
};

/* One deferred request. */
struct tel_read_req {
    struct tel_read_req *prev, *next;
    struct tel_read *r;
    struct evhttp_request *req;
    struct s2_reader_req *s2; /* the read in flight, if any */
    struct tel_read_params p;
    struct tel_scan scan;
    unsigned reads;
    uint64_t started_ms;
    uint64_t start_pos; /* S2 position of the first read, for logs */
};

/* ---- envelope check ------------------------------------------------------ */

struct jv {
    const unsigned char *p, *end;
};

struct env_seen {
    int has_seq, has_event, has_category;
    uint64_t seq;
    uint32_t category;
};

typedef int (*jv_member_fn)(struct jv *j, const unsigned char *key, size_t klen, int kesc,
                            int depth, void *ctx);

static int jv_value(struct jv *j, int depth);

static void jv_ws(struct jv *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A string; raw and rawlen span its text between the quotes, escaped tells
 * whether that text holds escapes. */
static int jv_string(struct jv *j, const unsigned char **raw, size_t *rawlen, int *escaped)
{
    if (j->p >= j->end || *j->p != '"')
        return -EINVAL;
    const unsigned char *start = ++j->p;
    int esc = 0;
    while (j->p < j->end) {
        j->p += s2_wire_plain_run(j->p, (size_t)(j->end - j->p));
        if (j->p >= j->end)
            break;
        unsigned char c = *j->p;
        if (c == '"') {
            *raw = start;
            *rawlen = (size_t)(j->p - start);
            *escaped = esc;
            j->p++;
            return 0;
        }
        if (c < 0x20)
            return -EINVAL;
        if (c == '\\') {
            esc = 1;
            if (j->end - j->p < 2)
                return -EINVAL;
            switch (j->p[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                j->p += 2;
                break;
            case 'u':
                if (j->end - j->p < 6)
                    return -EINVAL;
                for (int i = 2; i < 6; i++) {
                    if (hexval(j->p[i]) < 0)
                        return -EINVAL;
                }
                j->p += 6;
                break;
            default:
                return -EINVAL;
            }
        } else if (c < 0x80) {
            j->p++;
        } else {
            uint32_t cp;
            size_t n = tel_utf8_decode(j->p, (size_t)(j->end - j->p), &cp);
            if (n == 0)
                return -EINVAL;
            j->p += n;
        }
    }
    return -EINVAL;
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A number (RFC 8259 grammar). *is_u64 tells whether it is a plain
 * non-negative integer that fits, then held in *u. */
static int jv_number(struct jv *j, int *is_u64, uint64_t *u)
{
    const unsigned char *p = j->p, *end = j->end;
    int plain = 1;
    uint64_t v = 0;
    if (p < end && *p == '-') {
        plain = 0;
        p++;
    }
    if (p >= end || !is_digit(*p))
        return -EINVAL;
    if (*p == '0') {
        p++;
    } else {
        const unsigned char *digits = p;
        while (p < end && is_digit(*p))
            p++;
        /* Up to 19 digits always fit: only a longer one is checked. */
        int check = p - digits >= 20;
        for (const unsigned char *q = digits; q < p && plain; q++) {
            unsigned d = (unsigned)(*q - '0');
            if (check && v > (UINT64_MAX - d) / 10)
                plain = 0;
            else
                v = v * 10 + d;
        }
    }
    if (p < end && *p == '.') {
        plain = 0;
        if (++p >= end || !is_digit(*p))
            return -EINVAL;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        plain = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return -EINVAL;
        while (p < end && is_digit(*p))
            p++;
    }
    j->p = p;
    if (is_u64 != NULL)
        *is_u64 = plain;
    if (u != NULL)
        *u = v;
    return 0;
}

static int jv_literal(struct jv *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return -EINVAL;
    j->p += n;
    return 0;
}

/* An object at '{'; fn (when set) parses each member's value. */
static int jv_object(struct jv *j, int depth, jv_member_fn fn, void *ctx)
{
    if (depth > TEL_READ_MAX_DEPTH)
        return -EINVAL;
    j->p++;
    jv_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        const unsigned char *key;
        size_t klen;
        int kesc, rc;
        jv_ws(j);
        if (jv_string(j, &key, &klen, &kesc) != 0)
            return -EINVAL;
        jv_ws(j);
        if (j->p >= j->end || *j->p != ':')
            return -EINVAL;
        j->p++;
        jv_ws(j);
        rc = fn != NULL ? fn(j, key, klen, kesc, depth, ctx) : jv_value(j, depth);
        if (rc != 0)
            return rc;
        jv_ws(j);
        if (j->p >= j->end)
            return -EINVAL;
        if (*j->p == '}') {
            j->p++;
            return 0;
        }
        if (*j->p != ',')
            return -EINVAL;
        j->p++;
    }
}

static int jv_array(struct jv *j, int depth)
{
    if (depth > TEL_READ_MAX_DEPTH)
        return -EINVAL;
    j->p++;
    jv_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        if (jv_value(j, depth) != 0)
            return -EINVAL;
        jv_ws(j);
        if (j->p >= j->end)
            return -EINVAL;
        if (*j->p == ']') {
            j->p++;
            return 0;
        }
        if (*j->p != ',')
            return -EINVAL;
        j->p++;
    }
}

/* Any value; depth is that of the enclosing container. */
static int jv_value(struct jv *j, int depth)
{
    const unsigned char *s;
    size_t n;
    int esc;
    jv_ws(j);
    if (j->p >= j->end)
        return -EINVAL;
    switch (*j->p) {
    case '{':
        return jv_object(j, depth + 1, NULL, NULL);
    case '[':
        return jv_array(j, depth + 1);
    case '"':
        return jv_string(j, &s, &n, &esc);
    case 't':
        return jv_literal(j, "true");
    case 'f':
        return jv_literal(j, "false");
    case 'n':
        return jv_literal(j, "null");
    default:
        return jv_number(j, NULL, NULL);
    }
}

static int key_is(const unsigned char *key, size_t klen, int kesc, const char *name)
{
    return !kesc && klen == strlen(name) && memcmp(key, name, klen) == 0;
}

/* The category bit of a string's raw text; escapes are decoded (names are
 * ASCII, so anything else is an unknown category). */
static uint32_t category_of(const unsigned char *raw, size_t len, int escaped)
{
    char buf[32];
    size_t n = 0;
    if (!escaped)
        return tel_params_category_bit((const char *)raw, len);
    for (size_t i = 0; i < len; i++) {
        unsigned c = raw[i];
        if (c == '\\') {
            if (raw[i + 1] != 'u')
                return 0; /* no category holds a quote, slash or control */
            c = 0;
            for (size_t k = 2; k < 6; k++)
                c = c * 16 + (unsigned)hexval(raw[i + k]);
            i += 5;
        }
        if (c == 0 || c >= 0x80 || n == sizeof buf)
            return 0;
        buf[n++] = (char)c;
    }
    return tel_params_category_bit(buf, n);
}

static int event_member(struct jv *j, const unsigned char *key, size_t klen, int kesc, int depth,
                        void *ctx)
{
    struct env_seen *seen = ctx;
    if (!seen->has_category && key_is(key, klen, kesc, "category")) {
        const unsigned char *raw;
        size_t len;
        int esc;
        if (jv_string(j, &raw, &len, &esc) != 0)
            return -EINVAL;
        seen->category = category_of(raw, len, esc);
        seen->has_category = 1;
        return 0;
    }
    return jv_value(j, depth);
}

static int envelope_member(struct jv *j, const unsigned char *key, size_t klen, int kesc, int depth,
                           void *ctx)
{
    struct env_seen *seen = ctx;
    if (!seen->has_seq && key_is(key, klen, kesc, "seq")) {
        int is_u64;
        if (j->p >= j->end || (*j->p != '-' && !is_digit(*j->p)))
            return -EINVAL;
        if (jv_number(j, &is_u64, &seen->seq) != 0 || !is_u64)
            return -EINVAL;
        seen->has_seq = 1;
        return 0;
    }
    if (!seen->has_event && key_is(key, klen, kesc, "event")) {
        if (j->p >= j->end || *j->p != '{')
            return -EINVAL;
        seen->has_event = 1;
        return jv_object(j, depth + 1, event_member, seen);
    }
    return jv_value(j, depth);
}

int tel_read_envelope_check(const void *body, size_t len, uint64_t *seq, uint32_t *category_bit)
{
    struct env_seen seen = {0};
    struct jv j = {.p = body, .end = (const unsigned char *)body + len};
    if (body == NULL)
        return -EINVAL;
    jv_ws(&j);
    if (j.p >= j.end || *j.p != '{')
        return -EINVAL;
    if (jv_object(&j, 1, envelope_member, &seen) != 0)
        return -EINVAL;
    jv_ws(&j);
    if (j.p != j.end || !seen.has_seq || !seen.has_event || !seen.has_category)
        return -EINVAL;
    if (seq != NULL)
        *seq = seen.seq;
    if (category_bit != NULL)
        *category_bit = seen.category;
    return 0;
}

/* ---- page scan ----------------------------------------------------------- */

int tel_scan_feed(struct tel_scan *s, const struct s2_record *recs, size_t n, uint64_t next_seq_num,
                  int has_more)
{
    for (size_t i = 0; i < n; i++) {
        const struct s2_record *rec = &recs[i];
        uint32_t bit;

        /* Stopping inside a read: the record exists within until, so more
         * remains, and the next page starts with it. */
        if (s->kept >= s->limit)
            goto stop_here;
        if (rec->is_command) {
            s->scanned++;
            continue;
        }
        if (tel_read_envelope_check(rec->body, rec->body_len, NULL, &bit) != 0) {
            s->scanned++;
            s->invalid++;
            continue;
        }
        if (s->categories != 0 && (bit & s->categories) == 0) {
            s->scanned++;
            s->filtered_out++;
            continue;
        }
        size_t add = rec->body_len + (s->kept > 0);
        if (s->kept > 0 && s->bytes + add > s->max_bytes)
            goto stop_here;
        if ((s->kept > 0 && evbuffer_add(s->out, ",", 1) != 0) ||
            evbuffer_add(s->out, rec->body, rec->body_len) != 0)
            return -ENOMEM;
        s->scanned++;
        s->kept++;
        s->bytes += add;
        continue;

    stop_here:
        s->next = rec->seq_num;
        s->has_more = 1;
        s->done = 1;
        return 0;
    }
    s->next = next_seq_num;
    s->has_more = has_more != 0;
    /* A read that returned nothing yet claims more would loop: stop. */
    s->done = !s->has_more || s->kept >= s->limit || n == 0;
    return 0;
}

/* ---- the route ----------------------------------------------------------- */

static void read_log(const struct tel_read *r, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void read_log(const struct tel_read *r, int level, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    if (r->api == NULL || r->api->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    r->api->log(r->api->host, level, "telemetry read: %s", line);
}

static uint64_t mono_ms(const struct tel_read *r)
{
    struct timespec ts;
    if (r->api != NULL && r->api->now_ms != NULL)
        return r->api->now_ms(r->api->host);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void on_watch(evutil_socket_t fd, short what, void *arg);

int tel_read_new(const struct tel_read_opts *opts, struct tel_read **out)
{
    struct tel_read *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    r->api = opts->api;
    r->client = opts->client;
    if (opts->client != NULL && opts->stream != NULL) {
        r->stream = strdup(opts->stream);
        if (r->stream == NULL) {
            free(r);
            return -ENOMEM;
        }
    } else {
        r->client = NULL; /* no stream, no archive */
    }
    if (r->client != NULL && r->api != NULL && r->api->event_base != NULL) {
        struct event_base *base = r->api->event_base(r->api->host);
        r->watch = base != NULL ? evtimer_new(base, on_watch, r) : NULL;
        if (base != NULL && r->watch == NULL) {
            free(r->stream);
            free(r);
            return -ENOMEM;
        }
    }
    *out = r;
    return 0;
}

uint64_t tel_read_invalid_total(const struct tel_read *r)
{
    return r->invalid_total;
}

/* Unlink, cancel the read in flight, free. Does not touch rr->req. */
static void req_free(struct tel_read_req *rr)
{
    struct tel_read *r = rr->r;
    if (rr->s2 != NULL)
        s2_reader_cancel(rr->s2);
    if (rr->prev != NULL)
        rr->prev->next = rr->next;
    else if (r->pending == rr)
        r->pending = rr->next;
    if (rr->next != NULL)
        rr->next->prev = rr->prev;
    r->npending--;
    if (rr->scan.out != NULL)
        evbuffer_free(rr->scan.out);
    free(rr);
}

/* The host owns the close callback of this route's connections: when a
 * client goes away during a deferred reply, evhttp detaches the request
 * (no connection) and the host stops observing it. Nobody else frees a
 * detached request, so abandon() cancels its S2 read and frees it. */
static void abandon(struct tel_read_req *rr)
{
    struct evhttp_request *req = rr->req;
    read_log(rr->r, AGENT_LOG_DEBUG, "client went away after %u S2 read(s); read cancelled",
             rr->reads);
    req_free(rr);
    evhttp_request_free(req);
}

static void watch_arm(struct tel_read *r)
{
    static const struct timeval every = {0, TEL_READ_WATCH_MS * 1000};
    if (r->watch != NULL && !evtimer_pending(r->watch, NULL))
        evtimer_add(r->watch, &every);
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    struct tel_read *r = arg;
    (void)fd;
    (void)what;
    for (struct tel_read_req *rr = r->pending, *next; rr != NULL; rr = next) {
        next = rr->next;
        if (evhttp_request_get_connection(rr->req) == NULL)
            abandon(rr);
    }
    if (r->npending > 0)
        watch_arm(r);
}

static void add_u64_header(struct evkeyvalq *h, const char *name, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    evhttp_add_header(h, name, num);
}

/* Link: <path?offset=N&limit=L[&category=a,b][&until=U]>; rel="next".
 * until goes as resolved milliseconds, so a duration does not slide. */
static void add_link(struct tel_read_req *rr, struct evkeyvalq *h)
{
    char link[512];
    size_t n = 0;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(rr->req));
    if (path == NULL || *path == '\0' || strlen(path) > 200)
        path = "/telemetry/events";
    n += (size_t)snprintf(link + n, sizeof link - n, "<%s?offset=%llu&limit=%u", path,
                          (unsigned long long)rr->scan.next, rr->p.limit);
    if (rr->p.categories != 0) {
        const char *sep = "&category=";
        for (unsigned i = 0; i < TEL_PARAMS_NCATEGORIES; i++) {
            if (rr->p.categories & (1u << i)) {
                n += (size_t)snprintf(link + n, sizeof link - n, "%s%s", sep,
                                      tel_params_category_name(i));
                sep = ",";
            }
        }
    }
    if (rr->p.has_until)
        n += (size_t)snprintf(link + n, sizeof link - n, "&until=%llu",
                              (unsigned long long)rr->p.until_ms);
    snprintf(link + n, sizeof link - n, ">; rel=\"next\"");
    evhttp_add_header(h, "Link", link);
}

/* Send the page (status 200) and free rr. */
static void finish_page(struct tel_read_req *rr)
{
    struct tel_read *r = rr->r;
    struct evhttp_request *req = rr->req;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *body = evbuffer_new();

    if (rr->scan.invalid > 0) {
        r->invalid_total += rr->scan.invalid;
        read_log(r, AGENT_LOG_WARN,
                 "skipped %zu archived record(s) that are not envelopes between S2 positions "
                 "%llu and %llu",
                 rr->scan.invalid, (unsigned long long)rr->start_pos,
                 (unsigned long long)rr->scan.next);
    }
    if (body == NULL || evbuffer_add(body, "[", 1) != 0 ||
        evbuffer_add_buffer(body, rr->scan.out) != 0 || evbuffer_add(body, "]", 1) != 0) {
        if (body != NULL)
            evbuffer_free(body);
        tel_http_error(req, 500, "out of memory");
        req_free(rr);
        return;
    }
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "X-Has-More", rr->scan.has_more ? "true" : "false");
    if (rr->scan.has_more) {
        add_u64_header(h, "X-Next-Offset", rr->scan.next);
        add_link(rr, h);
    }
    evhttp_send_reply(req, 200, "OK", body);
    evbuffer_free(body);
    req_free(rr);
}

static void finish_error(struct tel_read_req *rr, int status, const char *fmt, const char *detail)
{
    struct evhttp_request *req = rr->req;
    tel_http_error(req, status, fmt, detail);
    req_free(rr);
}

static void on_page(const struct s2_error *err, const struct s2_page *page, void *arg);

static int start_read(struct tel_read_req *rr)
{
    struct tel_read *r = rr->r;
    struct s2_page_opts o;
    uint32_t want = rr->p.limit - (uint32_t)rr->scan.kept;

    memset(&o, 0, sizeof o);
    if (rr->reads > 0) {
        o.has_seq_num = 1;
        o.seq_num = rr->scan.next;
    } else if (rr->p.start == TEL_START_TIMESTAMP) {
        o.has_timestamp = 1;
        o.timestamp = rr->p.since_ms;
    } else {
        /* Oldest: position 0, which S2 clamps to the oldest retained. */
        o.has_seq_num = 1;
        o.seq_num = rr->p.start == TEL_START_OFFSET ? rr->p.offset : 0;
    }
    if (rr->p.categories != 0 && rr->reads > 0) {
        /* A page that needs another read is scanning sparse matches. */
        o.count = TEL_READ_S2_COUNT_MAX;
    } else if (rr->p.categories != 0) {
        uint64_t c = (uint64_t)want * 4;
        o.count = c < TEL_READ_FILTER_COUNT_MIN ? TEL_READ_FILTER_COUNT_MIN
                  : c > TEL_READ_S2_COUNT_MAX   ? TEL_READ_S2_COUNT_MAX
                                                : c;
    } else {
        o.count = want;
    }
    o.bytes = 0; /* the reader's cap, 1 MiB: any one record fits */
    o.has_until = rr->p.has_until;
    o.until = rr->p.until_ms;
    o.skip_commands = 1;
    rr->reads++;
    return s2_reader_read(r->client, r->stream, &o, on_page, rr, &rr->s2);
}

/* Whether the scan budget allows another S2 read. */
static int budget_left(const struct tel_read_req *rr)
{
    return rr->reads < TEL_READ_SCAN_READS && rr->scan.scanned < TEL_READ_SCAN_RECORDS &&
           mono_ms(rr->r) - rr->started_ms < TEL_READ_SCAN_MS;
}

static void on_page(const struct s2_error *err, const struct s2_page *page, void *arg)
{
    struct tel_read_req *rr = arg;
    struct tel_read *r = rr->r;

    rr->s2 = NULL;
    if (err != NULL && err->kind != S2_OK) {
        if (err->kind == S2_ERR_CANCELLED)
            return;
        if (rr->reads > 1) {
            /* Earlier reads said more remains: serve what was gathered. */
            read_log(r, AGENT_LOG_WARN, "S2 read failed mid-page, serving a short page: %s",
                     err->message);
            rr->scan.has_more = 1;
            finish_page(rr);
        } else if (err->http_status == 404 && strcmp(err->code, "stream_not_found") == 0) {
            /* Nothing was ever archived. */
            rr->scan.has_more = 0;
            finish_page(rr);
        } else if (err->kind == S2_ERR_TIMEOUT) {
            read_log(r, AGENT_LOG_WARN, "S2 read timed out: %s", err->message);
            finish_error(rr, 504, "archive read timed out: %s", err->message);
        } else {
            read_log(r, AGENT_LOG_WARN, "S2 read failed: %s", err->message);
            finish_error(rr, 502, "archive read failed: %s",
                         err->message[0] != '\0' ? err->message : "S2 error");
        }
        return;
    }
    if (rr->reads == 1)
        rr->start_pos = page->count > 0 ? page->records[0].seq_num : page->next_seq_num;
    if (tel_scan_feed(&rr->scan, page->records, page->count, page->next_seq_num, page->has_more) !=
        0) {
        finish_error(rr, 500, "%s", "out of memory");
        return;
    }
    if (rr->scan.done || !budget_left(rr)) {
        finish_page(rr);
        return;
    }
    if (start_read(rr) != 0) {
        read_log(r, AGENT_LOG_WARN, "could not start another S2 read; serving a short page");
        finish_page(rr);
    }
}

void tel_read_handle(struct evhttp_request *req, void *arg)
{
    struct tel_read *r = arg;
    struct tel_read_params p;
    char err[400];
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));

    if (r->shut) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        tel_http_error(req, 503, "shutting down");
        return;
    }
    if (tel_params_parse(query, wall_ms(), &p, err, sizeof err) != 0) {
        tel_http_error(req, 400, "%s", err);
        return;
    }
    if (r->client == NULL) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "X-Has-More", "false");
        tel_http_json(req, 200, "[]", 2);
        return;
    }
    if (r->npending >= TEL_READ_MAX_PENDING) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        tel_http_error(req, 503, "too many archive reads in progress (%u); retry shortly",
                       r->npending);
        return;
    }

    struct tel_read_req *rr = calloc(1, sizeof *rr);
    if (rr == NULL || (rr->scan.out = evbuffer_new()) == NULL) {
        free(rr);
        tel_http_error(req, 500, "out of memory");
        return;
    }
    rr->r = r;
    rr->req = req;
    rr->p = p;
    rr->scan.limit = p.limit;
    rr->scan.categories = p.categories;
    rr->scan.max_bytes = TEL_READ_PAGE_BYTES;
    rr->started_ms = mono_ms(r);
    rr->next = r->pending;
    if (r->pending != NULL)
        r->pending->prev = rr;
    r->pending = rr;
    r->npending++;

    int rc = start_read(rr);
    if (rc == 0)
        read_log(r, AGENT_LOG_DEBUG, "read started: %s %llu, limit %u, categories 0x%x%s",
                 p.start == TEL_START_OFFSET      ? "offset"
                 : p.start == TEL_START_TIMESTAMP ? "since ms"
                                                  : "oldest",
                 (unsigned long long)(p.start == TEL_START_OFFSET ? p.offset : p.since_ms), p.limit,
                 p.categories, p.has_until ? ", until set" : "");
    if (rc != 0) {
        read_log(r, AGENT_LOG_WARN, "could not start an S2 read (%s)", strerror(-rc));
        tel_http_error(req, 502, "archive read failed: could not start the S2 read");
        req_free(rr);
        return;
    }
    watch_arm(r);
}

void tel_read_shutdown(struct tel_read *r)
{
    if (r == NULL)
        return;
    r->shut = 1;
    if (r->watch != NULL)
        evtimer_del(r->watch);
    while (r->pending != NULL) {
        struct tel_read_req *rr = r->pending;
        struct evhttp_request *req = rr->req;
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        tel_http_error(req, 503, "shutting down");
        req_free(rr);
    }
}

void tel_read_free(struct tel_read *r)
{
    if (r == NULL)
        return;
    /* Normally empty after shutdown; never leave a read behind. */
    while (r->pending != NULL)
        req_free(r->pending);
    if (r->watch != NULL)
        event_free(r->watch);
    free(r->stream);
    free(r);
}
