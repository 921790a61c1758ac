/* test_sse.c - s2-local's read sessions (Server-Sent Events). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "s2/local.h"
#include "s2/wire.h"
#include "server.h"
#include "sse.h"
#include "lfx.h"
#include "support.h"

#define BASIN "test-basin-1"

/* Pings every 200 ms, at most 3 sessions. */
static void start_default(void)
{
    struct s2l_opts o = {.listen_addr = "127.0.0.1", .max_read_sessions = 3, .heartbeat_ms = 200};
    lfx_start(&o);
}

/* Pings only after a minute: a session at the tail writes nothing. */
static void start_quiet(void)
{
    struct s2l_opts o = {.listen_addr = "127.0.0.1", .max_read_sessions = 2, .heartbeat_ms = 60000};
    lfx_start(&o);
}

static void stop(void)
{
    lfx_stop();
}

TestSuite(sse, .init = start_default, .fini = stop, .timeout = 30);
TestSuite(sse_quiet, .init = start_quiet, .fini = stop, .timeout = 30);

/* ---- helpers ---- */

struct stats_q {
    sem_t done;
    uint32_t sessions;
    size_t peak;
};

static void stats_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct stats_q *q = arg;
    s2l_server_sse_stats(fx.srv, &q->sessions, &q->peak);
    sem_post(&q->done);
}

/* The server's session figures, read on its loop thread. */
static void get_stats(uint32_t *sessions, size_t *peak)
{
    struct stats_q q;
    cr_assert(eq(int, sem_init(&q.done, 0, 0), 0));
    struct timeval tv = {0, 0};
    cr_assert(eq(int, event_base_once(fx.base, -1, EV_TIMEOUT, stats_cb, &q, &tv), 0));
    while (sem_wait(&q.done) != 0)
        ;
    sem_destroy(&q.done);
    *sessions = q.sessions;
    *peak = q.peak;
}

/* Wait (the suite's timeout bounds it) until n sessions are open. */
static void wait_sessions(uint32_t n)
{
    for (;;) {
        uint32_t open;
        size_t peak;
        get_stats(&open, &peak);
        if (open == n)
            return;
        ts_sleep_ms(10);
    }
}

static void post(const char *stream, const char *body)
{
    char url[256];
    snprintf(url, sizeof url, "%s/v1/streams/%s/records", fx.url, stream);
    const char *h[] = {"S2-Basin: " BASIN, "Content-Type: application/json", NULL};
    struct ts_resp r;
    cr_assert(eq(int, ts_http("POST", url, body, strlen(body), h, &r), 0));
    cr_assert(eq(long, r.status, 200), "append: %ld %s", r.status, r.body);
    ts_resp_free(&r);
}

/* Append n records with bodies "r<from>".."r<from+n-1>". */
static void append_range(const char *stream, int from, int n)
{
    size_t cap = 64 + (size_t)n * 32;
    char *body = malloc(cap);
    cr_assert_not_null(body);
    size_t o = (size_t)snprintf(body, cap, "{\"records\":[");
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(body + o, cap - o, "%s{\"body\":\"r%d\"}", i ? "," : "", from + i);
    snprintf(body + o, cap - o, "]}");
    post(stream, body);
    free(body);
}

/* Metered size of a record "r<i>" without headers. */
static uint64_t metered_r(int i)
{
    char b[16];
    return 8 + (uint64_t)snprintf(b, sizeof b, "r%d", i);
}

static struct ts_sse *open_h(const char *path_query, const char *const *extra)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", fx.url, path_query);
    const char *h[8] = {"S2-Basin: " BASIN, "Accept: text/event-stream"};
    size_t n = 2;
    for (size_t i = 0; extra && extra[i] && n < 7; i++)
        h[n++] = extra[i];
    h[n] = NULL;
    struct ts_sse *s = NULL;
    cr_assert(eq(int, ts_sse_open(url, h, 5000, &s), 0), "open %s", path_query);
    return s;
}

static struct ts_sse *open_ok(const char *path_query, const char *const *extra)
{
    struct ts_sse *s = open_h(path_query, extra);
    cr_assert(eq(long, ts_sse_status(s), 200), "status %ld for %s", ts_sse_status(s), path_query);
    return s;
}

static uint64_t ju64(const cJSON *obj, const char *key)
{
    uint64_t v = 0;
    cr_assert(eq(int, s2_wire_get_u64(cJSON_GetObjectItemCaseSensitive(obj, key), &v), 0),
              "no u64 %s", key);
    return v;
}

/* The next frame, which must come within 10 s. */
static void next(struct ts_sse *s, struct ts_sse_event *ev)
{
    int rc = ts_sse_next(s, 10000, ev);
    cr_assert(eq(int, rc, 0), "ts_sse_next: %d", rc);
}

/* A batch frame: checks its id against the expected values and returns
 * its data (caller frees). */
static cJSON *expect_batch(struct ts_sse *s, uint64_t last, uint64_t count, uint64_t bytes)
{
    struct ts_sse_event ev;
    next(s, &ev);
    cr_assert(ev.event && strcmp(ev.event, "batch") == 0, "event %s data %s",
              ev.event ? ev.event : "(none)", ev.data ? ev.data : "");
    char want[80];
    snprintf(want, sizeof want, "%" PRIu64 ",%" PRIu64 ",%" PRIu64, last, count, bytes);
    cr_assert(ev.id != NULL);
    cr_assert(eq(str, (char *)ev.id, want));
    cJSON *j = NULL;
    cr_assert(eq(int, s2_wire_parse(ev.data, strlen(ev.data), &j), 0), "data %s", ev.data);
    cr_assert(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "records")));
    cr_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "tail")));
    return j;
}

static const cJSON *records(const cJSON *batch)
{
    return cJSON_GetObjectItemCaseSensitive(batch, "records");
}

static uint64_t tail_seq(const cJSON *obj)
{
    return ju64(cJSON_GetObjectItemCaseSensitive(obj, "tail"), "seq_num");
}

/* A ping frame; returns its tail's seq_num. */
static uint64_t expect_ping(struct ts_sse *s)
{
    struct ts_sse_event ev;
    next(s, &ev);
    cr_assert(ev.event && strcmp(ev.event, "ping") == 0, "event %s data %s",
              ev.event ? ev.event : "(none)", ev.data ? ev.data : "");
    cr_assert(ev.id == NULL);
    cJSON *j = NULL;
    cr_assert(eq(int, s2_wire_parse(ev.data, strlen(ev.data), &j), 0), "data %s", ev.data);
    cr_assert(gt(u64, ju64(j, "timestamp"), 1000000000000ull));
    uint64_t seq = tail_seq(j);
    cJSON_Delete(j);
    return seq;
}

/* The final data-only frame [DONE], then the end of the response. */
static void expect_done(struct ts_sse *s)
{
    struct ts_sse_event ev;
    next(s, &ev);
    cr_assert(ev.event == NULL, "event %s data %s", ev.event, ev.data ? ev.data : "");
    cr_assert(ev.data && strcmp(ev.data, "[DONE]") == 0, "data %s", ev.data ? ev.data : "");
    cr_assert(eq(int, ts_sse_next(s, 10000, &ev), -EPIPE));
}

/* A JSON error reply to a session request. */
static void expect_json_error(const char *path_query, const char *const *extra, long status,
                              const char *code)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", fx.url, path_query);
    const char *h[8] = {"S2-Basin: " BASIN, "Accept: text/event-stream"};
    size_t n = 2;
    for (size_t i = 0; extra && extra[i] && n < 7; i++)
        h[n++] = extra[i];
    h[n] = NULL;
    struct ts_resp r;
    cr_assert(eq(int, ts_http("GET", url, NULL, 0, h, &r), 0));
    cr_assert(eq(long, r.status, status), "%s: status %ld body %s", path_query, r.status, r.body);
    cr_assert(eq(str, (char *)ts_resp_header(&r, "Content-Type"), "application/json"));
    cJSON *j = NULL;
    cr_assert(eq(int, s2_wire_parse(r.body, r.body_len, &j), 0), "body %s", r.body);
    if (code != NULL) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "code");
        cr_assert(cJSON_IsString(c), "body %s", r.body);
        cr_assert(eq(str, c->valuestring, (char *)code));
        cr_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "message")));
    } else {
        /* 416: the tail, not an error body. */
        cr_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "tail")), "body %s", r.body);
    }
    cJSON_Delete(j);
    ts_resp_free(&r);
}

/* ---- framing, ids, bounds ---- */

Test(sse, framing_headers_and_ids)
{
    post("fr", "{\"records\":[{\"body\":\"hello\"},{\"headers\":[[\"type\",\"greeting\"]],"
               "\"body\":\"world\"},{}]}");
    struct ts_sse *s = open_ok("/v1/streams/fr/records?seq_num=0&count=3", NULL);
    cr_assert(eq(str, (char *)ts_sse_header(s, "Content-Type"), "text/event-stream"));
    cr_assert(eq(str, (char *)ts_sse_header(s, "Cache-Control"), "no-cache, no-transform"));
    cr_assert(eq(str, (char *)ts_sse_header(s, "X-Accel-Buffering"), "no"));
    /* Metered: 8+5, 8+2+12+5, 8. */
    cJSON *b = expect_batch(s, 2, 3, 13 + 27 + 8);
    const cJSON *rs = records(b);
    cr_assert(eq(int, cJSON_GetArraySize(rs), 3));
    for (int i = 0; i < 3; i++)
        cr_assert(eq(u64, ju64(cJSON_GetArrayItem(rs, i), "seq_num"), (uint64_t)i));
    const cJSON *r0 = cJSON_GetArrayItem(rs, 0), *r1 = cJSON_GetArrayItem(rs, 1),
                *r2 = cJSON_GetArrayItem(rs, 2);
    cr_assert(eq(str, cJSON_GetObjectItemCaseSensitive(r0, "body")->valuestring, "hello"));
    const cJSON *h = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r1, "headers"), 0);
    cr_assert(eq(str, cJSON_GetArrayItem(h, 0)->valuestring, "type"));
    cr_assert(eq(str, cJSON_GetArrayItem(h, 1)->valuestring, "greeting"));
    /* Empty headers and body are left out, as in unary reads. */
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(r2, "body"));
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(r2, "headers"));
    cr_assert(eq(u64, tail_seq(b), 3));
    cJSON_Delete(b);
    expect_done(s);
    ts_sse_close(s);
}

Test(sse, base64_format)
{
    post("b64", "{\"records\":[{\"headers\":[[\"k\",\"v\"]],\"body\":\"hi\"}]}");
    const char *f[] = {"S2-Format: base64", NULL};
    struct ts_sse *s = open_ok("/v1/streams/b64/records?seq_num=0&count=1", f);
    cJSON *b = expect_batch(s, 0, 1, 8 + 2 + 2 + 2);
    const cJSON *r0 = cJSON_GetArrayItem(records(b), 0);
    cr_assert(eq(str, cJSON_GetObjectItemCaseSensitive(r0, "body")->valuestring, "aGk="));
    const cJSON *h = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r0, "headers"), 0);
    cr_assert(eq(str, cJSON_GetArrayItem(h, 0)->valuestring, "aw=="));
    cr_assert(eq(str, cJSON_GetArrayItem(h, 1)->valuestring, "dg=="));
    cJSON_Delete(b);
    expect_done(s);
    ts_sse_close(s);
}

Test(sse, batches_hold_at_most_1000_records_without_a_session_cap)
{
    for (int i = 0; i < 3; i++)
        append_range("big", i * 1000, 1000);
    append_range("big", 3000, 500);
    /* No 1000-record cap on a session: 3500 records in four batches. */
    struct ts_sse *s = open_ok("/v1/streams/big/records?seq_num=0&count=3500", NULL);
    uint64_t bytes = 0, seq = 0;
    const int sizes[] = {1000, 1000, 1000, 500};
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < sizes[k]; i++)
            bytes += metered_r((int)seq + i);
        cJSON *b = expect_batch(s, seq + (uint64_t)sizes[k] - 1, seq + (uint64_t)sizes[k], bytes);
        const cJSON *rs = records(b);
        cr_assert(eq(int, cJSON_GetArraySize(rs), sizes[k]));
        cr_assert(eq(u64, ju64(cJSON_GetArrayItem(rs, 0), "seq_num"), seq));
        char want[16];
        snprintf(want, sizeof want, "r%" PRIu64, seq);
        cr_assert(eq(
            str, cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(rs, 0), "body")->valuestring,
            want));
        seq += (uint64_t)sizes[k];
        cJSON_Delete(b);
    }
    expect_done(s);
    ts_sse_close(s);
}

Test(sse, batches_hold_at_most_1_mib)
{
    /* Three records of 400000 bytes: a batch holds two (1 MiB cap). */
    size_t n = 400000;
    char *body = malloc(n + 64);
    cr_assert_not_null(body);
    int o = snprintf(body, 64, "{\"records\":[{\"body\":\"");
    memset(body + o, 'x', n);
    strcpy(body + o + n, "\"}]}");
    for (int i = 0; i < 3; i++)
        post("mib", body);
    free(body);
    uint64_t m = 8 + n;
    struct ts_sse *s = open_ok("/v1/streams/mib/records?seq_num=0&count=3", NULL);
    cJSON *b = expect_batch(s, 1, 2, 2 * m);
    cr_assert(eq(int, cJSON_GetArraySize(records(b)), 2));
    cJSON_Delete(b);
    b = expect_batch(s, 2, 3, 3 * m);
    cr_assert(eq(int, cJSON_GetArraySize(records(b)), 1));
    cJSON_Delete(b);
    expect_done(s);
    ts_sse_close(s);
}

Test(sse, bounded_session_ends_at_the_tail)
{
    append_range("bt", 0, 3);
    /* count is larger than the stream; without wait the session ends at
     * the tail. */
    struct ts_sse *s = open_ok("/v1/streams/bt/records?seq_num=1&count=100", NULL);
    cJSON *b = expect_batch(s, 2, 2, metered_r(1) + metered_r(2));
    cr_assert(eq(int, cJSON_GetArraySize(records(b)), 2));
    cJSON_Delete(b);
    expect_done(s);
    ts_sse_close(s);
}

Test(sse, byte_bound_and_until_end_the_session)
{
    append_range("bb", 0, 5);
    /* 10 bytes per record: 39 bytes hold three. */
    struct ts_sse *s = open_ok("/v1/streams/bb/records?seq_num=0&bytes=39", NULL);
    cJSON *b = expect_batch(s, 2, 3, 30);
    cJSON_Delete(b);
    expect_done(s);
    ts_sse_close(s);

    /* until: the records stamped 1000 and 2000 only. */
    post("un", "{\"records\":[{\"body\":\"a\",\"timestamp\":1000},{\"body\":\"b\",\"timestamp\":"
               "2000},{\"body\":\"c\",\"timestamp\":3000}]}");
    s = open_ok("/v1/streams/un/records?seq_num=0&until=3000", NULL);
    b = expect_batch(s, 1, 2, 18);
    cJSON_Delete(b);
    expect_done(s);
    ts_sse_close(s);

    /* A zero count: nothing, then [DONE]. */
    s = open_ok("/v1/streams/un/records?seq_num=0&count=0", NULL);
    expect_done(s);
    ts_sse_close(s);
}

/* ---- following ---- */

Test(sse, follow_receives_new_appends)
{
    append_range("fo", 0, 1);
    struct ts_sse *s = open_ok("/v1/streams/fo/records?seq_num=0", NULL);
    cJSON *b = expect_batch(s, 0, 1, metered_r(0));
    cJSON_Delete(b);
    /* Caught up: a ping with the tail comes at once. */
    cr_assert(eq(u64, expect_ping(s), 1));
    append_range("fo", 1, 2);
    struct ts_sse_event ev;
    for (;;) {
        next(s, &ev);
        if (ev.event && strcmp(ev.event, "ping") == 0)
            continue;
        break;
    }
    cr_assert(ev.event && strcmp(ev.event, "batch") == 0, "event %s", ev.event);
    char want[64];
    snprintf(want, sizeof want, "2,3,%" PRIu64, metered_r(0) + metered_r(1) + metered_r(2));
    cr_assert(eq(str, (char *)ev.id, want));
    cJSON *j = NULL;
    cr_assert(eq(int, s2_wire_parse(ev.data, strlen(ev.data), &j), 0));
    cr_assert(eq(int, cJSON_GetArraySize(records(j)), 2));
    cr_assert(
        eq(str,
           cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(records(j), 1), "body")->valuestring,
           "r2"));
    cr_assert(eq(u64, tail_seq(j), 3));
    cJSON_Delete(j);
    ts_sse_close(s);
}

Test(sse, session_at_the_tail_follows_without_bounds)
{
    /* No records, no bounds: a session (a unary read here would be 416). */
    struct ts_sse *s = open_ok("/v1/streams/empty/records", NULL);
    cr_assert(eq(u64, expect_ping(s), 0));
    append_range("empty", 0, 1);
    struct ts_sse_event ev;
    do
        next(s, &ev);
    while (ev.event && strcmp(ev.event, "ping") == 0);
    cr_assert(eq(str, (char *)ev.event, "batch"));
    char want[32];
    snprintf(want, sizeof want, "0,1,%" PRIu64, metered_r(0));
    cr_assert(eq(str, (char *)ev.id, want));
    ts_sse_close(s);
}

Test(sse, pings_while_idle)
{
    append_range("pi", 0, 2);
    struct ts_sse *s = open_ok("/v1/streams/pi/records?tail_offset=0", NULL);
    /* Nothing to read: the first ping at once, then one every 200 ms. */
    for (int i = 0; i < 4; i++)
        cr_assert(eq(u64, expect_ping(s), 2));
    ts_sse_close(s);
}

Test(sse, wait_ends_an_idle_bounded_session)
{
    append_range("wa", 0, 1);
    struct ts_sse *s = open_ok("/v1/streams/wa/records?seq_num=0&count=10&wait=1", NULL);
    cJSON *b = expect_batch(s, 0, 1, metered_r(0));
    cJSON_Delete(b);
    /* Pings, then [DONE] after a second without records. */
    struct ts_sse_event ev;
    int pings = 0;
    for (;;) {
        next(s, &ev);
        if (ev.event && strcmp(ev.event, "ping") == 0) {
            pings++;
            continue;
        }
        break;
    }
    cr_assert(ge(int, pings, 1));
    cr_assert(ev.event == NULL && ev.data && strcmp(ev.data, "[DONE]") == 0);
    cr_assert(eq(int, ts_sse_next(s, 10000, &ev), -EPIPE));
    ts_sse_close(s);
}

/* ---- resume ---- */

Test(sse, resume_with_last_event_id)
{
    append_range("re", 0, 6);
    uint64_t m01 = metered_r(0) + metered_r(1);
    /* Seen records 0 and 1 of a session of count=4: two more, and the ids
     * go on counting from the resumed totals. */
    char lei[64];
    snprintf(lei, sizeof lei, "Last-Event-ID: 1,2,%" PRIu64, m01);
    const char *h[] = {lei, NULL};
    struct ts_sse *s = open_ok("/v1/streams/re/records?seq_num=0&count=4", h);
    cJSON *b = expect_batch(s, 3, 4, m01 + metered_r(2) + metered_r(3));
    const cJSON *rs = records(b);
    cr_assert(eq(int, cJSON_GetArraySize(rs), 2));
    cr_assert(eq(u64, ju64(cJSON_GetArrayItem(rs, 0), "seq_num"), 2));
    cJSON_Delete(b);
    expect_done(s);
    ts_sse_close(s);

    /* A byte bound shrinks likewise: 30 - 20 leaves one record. */
    s = open_ok("/v1/streams/re/records?seq_num=0&bytes=30", h);
    b = expect_batch(s, 2, 3, m01 + metered_r(2));
    cJSON_Delete(b);
    expect_done(s);
    ts_sse_close(s);

    /* A resume at the end of a bounded session has nothing left. */
    const char *end[] = {"Last-Event-ID: 5,6,60", NULL};
    expect_json_error("/v1/streams/re/records?seq_num=0&count=6", end, 416, NULL);

    const char *bad[] = {"Last-Event-ID: 1:2:3", NULL};
    expect_json_error("/v1/streams/re/records?seq_num=0", bad, 400, "bad_header");
    const char *bad2[] = {"Last-Event-ID: 1,2", NULL};
    expect_json_error("/v1/streams/re/records?seq_num=0", bad2, 400, "bad_header");
}

/* ---- errors before streaming ---- */

Test(sse, errors_before_streaming_are_json)
{
    append_range("er", 0, 2);
    /* Beyond the tail, and at the tail with a bound and no wait. */
    expect_json_error("/v1/streams/er/records?seq_num=5", NULL, 416, NULL);
    expect_json_error("/v1/streams/er/records?seq_num=2&count=5", NULL, 416, NULL);
    expect_json_error("/v1/streams/er/records?seq_num=0&tail_offset=1", NULL, 422, "invalid");
    expect_json_error("/v1/streams/er/records?timestamp=5&until=5", NULL, 422, "invalid");
    expect_json_error("/v1/streams/er/records?count=x", NULL, 400, "bad_query");
    const char *fmt[] = {"S2-Format: utf8", NULL};
    expect_json_error("/v1/streams/er/records?seq_num=0", fmt, 400, "bad_header");

    /* 404 without create-on-read. */
    char url[256];
    snprintf(url, sizeof url, "%s/v1/basins/strict-basin", fx.url);
    const char *ct[] = {"Content-Type: application/json", NULL};
    const char *cfg = "{\"create_stream_on_append\":false,\"create_stream_on_read\":false}";
    struct ts_resp r;
    cr_assert(eq(int, ts_http("PUT", url, cfg, strlen(cfg), ct, &r), 0));
    cr_assert(eq(long, r.status, 201));
    ts_resp_free(&r);
    snprintf(url, sizeof url, "%s/v1/streams/none/records", fx.url);
    const char *h[] = {"S2-Basin: strict-basin", "Accept: text/event-stream", NULL};
    cr_assert(eq(int, ts_http("GET", url, NULL, 0, h, &r), 0));
    cr_assert(eq(long, r.status, 404), "body %s", r.body);
    cr_assert(eq(str, (char *)ts_resp_header(&r, "Content-Type"), "application/json"));
    cr_assert(strstr(r.body, "\"stream_not_found\"") != NULL, "body %s", r.body);
    ts_resp_free(&r);
}

/* ---- bounds on sessions ---- */

Test(sse_quiet, sessions_are_capped)
{
    /* The fixture allows two sessions. */
    struct ts_sse *a = open_ok("/v1/streams/cap/records", NULL);
    struct ts_sse *b = open_ok("/v1/streams/cap/records", NULL);
    char url[256];
    snprintf(url, sizeof url, "%s/v1/streams/cap/records", fx.url);
    const char *h[] = {"S2-Basin: " BASIN, "Accept: text/event-stream", NULL};
    struct ts_resp r;
    cr_assert(eq(int, ts_http("GET", url, NULL, 0, h, &r), 0));
    cr_assert(eq(long, r.status, 429), "body %s", r.body);
    cr_assert(strstr(r.body, "\"rate_limited\"") != NULL, "body %s", r.body);
    cr_assert_not_null(ts_resp_header(&r, "retry-after-ms"));
    ts_resp_free(&r);
    /* Unary reads are not sessions. */
    append_range("cap", 0, 1);
    const char *json[] = {"S2-Basin: " BASIN, NULL};
    snprintf(url, sizeof url, "%s/v1/streams/cap/records?seq_num=0", fx.url);
    cr_assert(eq(int, ts_http("GET", url, NULL, 0, json, &r), 0));
    cr_assert(eq(long, r.status, 200));
    ts_resp_free(&r);
    ts_sse_close(a);
    ts_sse_close(b);
}

Test(sse_quiet, disconnect_frees_the_session_at_once)
{
    /* Both sessions wait at the tail and write nothing for a minute, so
     * only the close callback can notice a client leaving. */
    struct ts_sse *a = open_ok("/v1/streams/dc/records", NULL);
    struct ts_sse *b = open_ok("/v1/streams/dc/records", NULL);
    struct ts_sse_event ev;
    cr_assert(eq(int, ts_sse_next(a, 10000, &ev), 0));
    cr_assert(eq(str, (char *)ev.event, "ping"));
    ts_sse_close(a);
    /* The session is gone well before any ping could reveal the closed
     * socket (the suite's timeout is 30 s, pings come after 60 s), and its
     * slot is free again. */
    wait_sessions(1);
    struct ts_sse *c = open_ok("/v1/streams/dc/records", NULL);
    wait_sessions(2);
    /* The remaining sessions still work. */
    append_range("dc", 0, 1);
    do
        cr_assert(eq(int, ts_sse_next(b, 10000, &ev), 0));
    while (ev.event && strcmp(ev.event, "ping") == 0);
    cr_assert(eq(str, (char *)ev.event, "batch"));
    do
        cr_assert(eq(int, ts_sse_next(c, 10000, &ev), 0));
    while (ev.event && strcmp(ev.event, "ping") == 0);
    cr_assert(eq(str, (char *)ev.event, "batch"));
    ts_sse_close(b);
    ts_sse_close(c);
    wait_sessions(0);
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    s2l_server_drain(fx.srv);
}

Test(sse, drain_ends_sessions_with_an_error_event)
{
    struct ts_sse *s = open_ok("/v1/streams/dr/records", NULL);
    cr_assert(eq(u64, expect_ping(s), 0));
    struct timeval tv = {0, 0};
    cr_assert(eq(int, event_base_once(fx.base, -1, EV_TIMEOUT, drain_cb, NULL, &tv), 0));
    struct ts_sse_event ev;
    do
        next(s, &ev);
    while (ev.event && strcmp(ev.event, "ping") == 0);
    cr_assert(eq(str, (char *)ev.event, "error"));
    cr_assert(strstr(ev.data, "\"server_draining\"") != NULL, "data %s", ev.data);
    cr_assert(eq(int, ts_sse_next(s, 10000, &ev), -EPIPE));
    ts_sse_close(s);
}

/* ---- a reader that stalls ---- */

/* A raw client: it sends the request and then reads nothing for a while,
 * so the server's output for it backs up. */
static int raw_open(const char *path_query)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(ge(int, fd, 0));
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(fx.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(eq(int, connect(fd, (struct sockaddr *)&a, sizeof a), 0));
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: x\r\nS2-Basin: " BASIN
                     "\r\nAccept: text/event-stream\r\n\r\n",
                     path_query);
    cr_assert(eq(long, (long)write(fd, req, (size_t)n), (long)n));
    return fd;
}

Test(sse, stalled_reader_gets_every_record_after_it_drains)
{
    /* About 6 MB of events, far more than the session may queue. */
    size_t body_len = 1000;
    char *body = malloc(100 * (body_len + 16) + 64);
    cr_assert_not_null(body);
    size_t o = (size_t)sprintf(body, "{\"records\":[");
    for (int i = 0; i < 100; i++) {
        o += (size_t)sprintf(body + o, "%s{\"body\":\"", i ? "," : "");
        memset(body + o, 'a' + i % 26, body_len);
        o += body_len;
        o += (size_t)sprintf(body + o, "\"}");
    }
    sprintf(body + o, "]}");
    for (int k = 0; k < 60; k++)
        post("stall", body);
    free(body);
    int fd = raw_open("/v1/streams/stall/records?seq_num=0&count=6000");
    /* Other clients are served meanwhile. */
    ts_sleep_ms(300);
    append_range("other", 0, 1);
    /* Now read everything: ids must run 99,100,.. up to 5999,6000. */
    size_t cap = 16 << 20, len = 0;
    char *in = malloc(cap);
    cr_assert_not_null(in);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        cr_assert(gt(int, poll(&p, 1, 10000), 0), "no data for 10 s");
        ssize_t r = read(fd, in + len, cap - len - 1);
        cr_assert(ge(long, (long)r, 0));
        if (r == 0)
            break;
        len += (size_t)r;
        in[len] = 0;
        if (strstr(in + (len > 4096 ? len - 4096 : 0), "data: [DONE]") != NULL)
            break;
        cr_assert(lt(u64, (uint64_t)len, (uint64_t)cap - 1));
    }
    close(fd);
    uint64_t expect_count = 0, batches = 0;
    for (const char *p = strstr(in, "\nid: "); p != NULL; p = strstr(p + 1, "\nid: ")) {
        uint64_t last, count, bytes;
        cr_assert(
            eq(int, sscanf(p, "\nid: %" SCNu64 ",%" SCNu64 ",%" SCNu64, &last, &count, &bytes), 3));
        cr_assert(gt(u64, count, expect_count));
        cr_assert(eq(u64, last + 1, count));
        cr_assert(eq(u64, bytes, count * (8 + body_len)));
        expect_count = count;
        batches++;
    }
    cr_assert(eq(u64, expect_count, 6000));
    cr_assert(ge(u64, batches, 6));
    cr_assert(strstr(in, "data: [DONE]") != NULL);
    free(in);
    /* The session stopped reading ahead while its output was unsent: at
     * most one batch (about 1 MB here) beyond the bound was ever queued,
     * of the 6 MB it sent; and it did reach the bound. */
    uint32_t open;
    size_t peak;
    get_stats(&open, &peak);
    cr_assert(ge(u64, (uint64_t)peak, (uint64_t)S2L_SSE_PENDING_MAX));
    cr_assert(lt(u64, (uint64_t)peak, (uint64_t)S2L_SSE_PENDING_MAX + (3u << 19)),
              "peak unsent output %zu", peak);
}
