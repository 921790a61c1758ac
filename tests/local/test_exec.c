/* test_exec.c - the s2-local executable as a separate process: driven by
 * the curl command-line tool, stopped by signals, killed with SIGKILL. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "s2/wire.h"
#include "support.h"

#define BASIN "exec-basin-1"

static char tmpdir[64];

static void mk_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/s2l-exec-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_expect(eq(int, system(cmd), 0));
}

TestSuite(exec, .init = mk_tmpdir, .fini = rm_tmpdir, .timeout = 120);

/* Start s2-local on a port it picks; *port is read from its first line. */
static struct ts_proc *start_server(const char *const extra[], const char *const env[], int *port)
{
    const char *argv[16] = {ts_env("S2LOCAL_BIN"), "--port", "0"};
    size_t n = 3;
    for (size_t i = 0; extra && extra[i] && n < 15; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    struct ts_proc *p = NULL;
    cr_assert(eq(int, ts_proc_start(argv, env, &p), 0));
    int rc = ts_proc_wait_log(p, "S2_BASIN_ENDPOINT", 10000);
    cr_assert(eq(int, rc, 0), "s2-local did not start: %s", ts_proc_log(p));
    const char *line = strstr(ts_proc_log(p), "listening on http://127.0.0.1:");
    cr_assert_not_null(line, "%s", ts_proc_log(p));
    *port = atoi(line + strlen("listening on http://127.0.0.1:"));
    cr_assert(gt(int, *port, 0));
    cr_assert(eq(int, ts_wait_port(*port, 5000), 0));
    return p;
}

/* Run the curl tool; returns the HTTP status, the body in out. */
static long curl_tool(int port, const char *method, const char *path, const char *data, char *out,
                      size_t cap)
{
    char bodyfile[128], cmd[2048];
    snprintf(bodyfile, sizeof bodyfile, "%s/curl-body", tmpdir);
    snprintf(cmd, sizeof cmd,
             "curl -sS --max-time 20 -o '%s' -w '%%{http_code}' -X %s "
             "-H 'S2-Basin: " BASIN "' -H 'Authorization: Bearer ignored' "
             "-H 'Content-Type: application/json' %s%s%s 'http://127.0.0.1:%d%s'",
             bodyfile, method, data ? "--data-binary '" : "", data ? data : "", data ? "'" : "",
             port, path);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    char code[16] = {0};
    size_t got = fread(code, 1, sizeof code - 1, f);
    cr_assert(eq(int, pclose(f), 0), "curl failed: %s", cmd);
    cr_assert(gt(sz, got, 0));
    f = fopen(bodyfile, "rb");
    cr_assert_not_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    fclose(f);
    return atol(code);
}

static cJSON *parse(const char *text)
{
    cJSON *j = NULL;
    cr_assert(eq(int, s2_wire_parse(text, strlen(text), &j), 0), "not JSON: %s", text);
    return j;
}

static uint64_t tail_of(const cJSON *j)
{
    uint64_t v = UINT64_MAX;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "tail");
    cr_assert(eq(int, s2_wire_get_u64(cJSON_GetObjectItemCaseSensitive(t, "seq_num"), &v), 0));
    return v;
}

Test(exec, driven_by_curl_tool)
{
    cr_assert(eq(int, system("command -v curl >/dev/null"), 0), "the curl tool is needed");
    int port;
    const char *args[] = {"--data-dir", tmpdir, NULL};
    struct ts_proc *p = start_server(args, NULL, &port);
    char out[65536];
    cr_assert(eq(long, curl_tool(port, "GET", "/health", NULL, out, sizeof out), 200));
    cr_assert(eq(str, out, "OK"));
    cr_assert(
        eq(long, curl_tool(port, "PUT", "/v1/streams/app%2Flogs", NULL, out, sizeof out), 201));
    cr_assert(
        eq(long,
           curl_tool(
               port, "POST", "/v1/streams/app%2Flogs/records",
               "{\"records\":[{\"body\":\"one\"},{\"body\":\"two\",\"headers\":[[\"k\",\"v\"]]}]}",
               out, sizeof out),
           200));
    cJSON *j = parse(out);
    cr_assert(eq(u64, tail_of(j), 2));
    cJSON_Delete(j);
    cr_assert(eq(
        long,
        curl_tool(port, "GET", "/v1/streams/app%2Flogs/records?seq_num=0", NULL, out, sizeof out),
        200));
    j = parse(out);
    const cJSON *recs = cJSON_GetObjectItemCaseSensitive(j, "records");
    cr_assert(eq(int, cJSON_GetArraySize(recs), 2));
    cr_assert(eq(str,
                 cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(recs, 1), "body")->valuestring,
                 "two"));
    cJSON_Delete(j);
    cr_assert(eq(
        long,
        curl_tool(port, "GET", "/v1/streams/app%2Flogs/records?seq_num=2", NULL, out, sizeof out),
        416));
    j = parse(out);
    cr_assert(eq(u64, tail_of(j), 2));
    cJSON_Delete(j);
    cr_assert(eq(long,
                 curl_tool(port, "POST", "/v1/streams/app%2Flogs/records", "{\"records\":[{]}", out,
                           sizeof out),
                 400));
    cr_assert(eq(
        long, curl_tool(port, "GET", "/v1/streams/app%2Flogs/records/tail", NULL, out, sizeof out),
        200));
    /* SIGTERM stops it cleanly. */
    cr_assert(eq(int, ts_proc_signal(p, SIGTERM), 0));
    int status = -1;
    cr_assert(eq(int, ts_proc_wait(p, 10000, &status), 0));
    cr_assert(eq(int, status, 0), "%s", ts_proc_log(p));
    ts_proc_free(p);
    /* The data is there after a restart. */
    p = start_server(args, NULL, &port);
    cr_assert(eq(
        long, curl_tool(port, "GET", "/v1/streams/app%2Flogs/records/tail", NULL, out, sizeof out),
        200));
    j = parse(out);
    cr_assert(eq(u64, tail_of(j), 2));
    cJSON_Delete(j);
    ts_proc_free(p);
}

Test(exec, bad_flags_exit_2)
{
    const char *argv[] = {ts_env("S2LOCAL_BIN"), "--fsync", "sometimes", NULL};
    struct ts_proc *p = NULL;
    cr_assert(eq(int, ts_proc_start(argv, NULL, &p), 0));
    int status = -1;
    cr_assert(eq(int, ts_proc_wait(p, 10000, &status), 0));
    cr_assert(eq(int, status, 2));
    ts_proc_free(p);
    const char *argv2[] = {ts_env("S2LOCAL_BIN"), "--port", "70000", NULL};
    cr_assert(eq(int, ts_proc_start(argv2, NULL, &p), 0));
    cr_assert(eq(int, ts_proc_wait(p, 10000, &status), 0));
    cr_assert(eq(int, status, 2));
    ts_proc_free(p);
}

/* ---- kill -9 durability ---- */

/* Record seq's deterministic content: a body of 1..64 pseudo-random bytes
 * and one header ("h", "<seq>"). */
static size_t content(uint64_t seq, uint8_t *body)
{
    uint64_t x = seq * 0x9E3779B97F4A7C15ull + 1;
    size_t n = 1 + (size_t)(seq % 64);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body[i] = (uint8_t)x;
    }
    return n;
}

static char *b64(const void *p, size_t n)
{
    char *s = NULL;
    cr_assert(eq(int, s2_base64_encode(p, n, &s, NULL), 0));
    return s;
}

/* Append records [from, from + n) with match_seq_num = from. Returns the
 * HTTP status, or -1 when the request failed. */
static long append_batch(int port, uint64_t from, size_t n)
{
    size_t cap = 64 + n * 200, o = 0;
    char *body = malloc(cap);
    o += (size_t)snprintf(body, cap, "{\"match_seq_num\":%" PRIu64 ",\"records\":[", from);
    for (size_t i = 0; i < n; i++) {
        uint8_t raw[64];
        char num[24];
        size_t len = content(from + i, raw);
        snprintf(num, sizeof num, "%" PRIu64, from + i);
        char *bb = b64(raw, len), *hn = b64("h", 1), *hv = b64(num, strlen(num));
        o +=
            (size_t)snprintf(body + o, cap - o, "%s{\"headers\":[[\"%s\",\"%s\"]],\"body\":\"%s\"}",
                             i ? "," : "", hn, hv, bb);
        free(bb);
        free(hn);
        free(hv);
    }
    snprintf(body + o, cap - o, "]}");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/streams/durable/records", port);
    const char *h[] = {"S2-Basin: " BASIN, "Content-Type: application/json", "S2-Format: base64",
                       NULL};
    struct ts_resp r;
    long status = ts_http("POST", url, body, strlen(body), h, &r) == 0 ? r.status : -1;
    if (status != -1)
        ts_resp_free(&r);
    free(body);
    return status;
}

/* Read back [0, tail) and compare every record byte for byte. */
static void verify_all(int port, uint64_t tail)
{
    char url[160];
    const char *h[] = {"S2-Basin: " BASIN, "S2-Format: base64", NULL};
    uint64_t next = 0;
    while (next < tail) {
        snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/streams/durable/records?seq_num=%" PRIu64,
                 port, next);
        struct ts_resp r;
        cr_assert(eq(int, ts_http("GET", url, NULL, 0, h, &r), 0));
        cr_assert(eq(long, r.status, 200), "%s", r.body);
        cJSON *j = parse(r.body);
        const cJSON *rec;
        size_t got = 0;
        cJSON_ArrayForEach(rec, cJSON_GetObjectItemCaseSensitive(j, "records"))
        {
            uint64_t seq;
            cr_assert(eq(
                int, s2_wire_get_u64(cJSON_GetObjectItemCaseSensitive(rec, "seq_num"), &seq), 0));
            cr_assert(eq(u64, seq, next));
            uint8_t want[64];
            size_t wlen = content(seq, want);
            char *wb = b64(want, wlen);
            cr_assert(eq(str, cJSON_GetObjectItemCaseSensitive(rec, "body")->valuestring, wb),
                      "record %" PRIu64, seq);
            free(wb);
            char num[24];
            snprintf(num, sizeof num, "%" PRIu64, seq);
            char *wv = b64(num, strlen(num));
            const cJSON *hdr =
                cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "headers"), 0);
            cr_assert(eq(str, cJSON_GetArrayItem(hdr, 0)->valuestring, "aA=="));
            cr_assert(eq(str, cJSON_GetArrayItem(hdr, 1)->valuestring, wv));
            free(wv);
            next++;
            got++;
        }
        cr_assert(gt(sz, got, 0));
        cJSON_Delete(j);
        ts_resp_free(&r);
    }
}

static uint64_t check_tail(int port)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/streams/durable/records/tail", port);
    const char *h[] = {"S2-Basin: " BASIN, NULL};
    struct ts_resp r;
    cr_assert(eq(int, ts_http("GET", url, NULL, 0, h, &r), 0));
    cr_assert(eq(long, r.status, 200));
    cJSON *j = parse(r.body);
    uint64_t t = tail_of(j);
    cJSON_Delete(j);
    ts_resp_free(&r);
    return t;
}

static void kill9_after_acks(const char *fsync)
{
    int port;
    const char *args[] = {"--data-dir", tmpdir, NULL};
    const char *env[] = {fsync, NULL};
    struct ts_proc *p = start_server(args, env, &port);
    uint64_t acked = 0;
    for (int b = 0; b < 100; b++) {
        size_t n = 1 + (size_t)(b % 50);
        cr_assert(eq(long, append_batch(port, acked, n), 200));
        acked += n;
    }
    cr_assert(eq(int, ts_proc_signal(p, SIGKILL), 0));
    int status;
    cr_assert(eq(int, ts_proc_wait(p, 10000, &status), 0));
    cr_assert(eq(int, status, 128 + SIGKILL));
    ts_proc_free(p);
    p = start_server(args, env, &port);
    cr_assert(eq(u64, check_tail(port), acked));
    verify_all(port, acked);
    ts_proc_free(p);
}

Test(exec, kill9_keeps_every_acknowledged_record)
{
    kill9_after_acks("S2LOCAL_FSYNC=none");
}

Test(exec, kill9_keeps_every_acknowledged_record_fsync_batch)
{
    kill9_after_acks("S2LOCAL_FSYNC=batch");
}

struct appender {
    int port;
    atomic_ullong acked;
    atomic_int stop;
};

static void *appender_main(void *arg)
{
    struct appender *a = arg;
    uint64_t next = 0;
    while (!atomic_load(&a->stop)) {
        size_t n = 1 + (size_t)(next % 37);
        if (append_batch(a->port, next, n) != 200)
            break;
        next += n;
        atomic_store(&a->acked, next);
    }
    return NULL;
}

/* Killed in the middle of appends: every acknowledged record survives,
 * and whatever else was written is whole. */
Test(exec, kill9_during_appends)
{
    int port;
    const char *args[] = {"--data-dir", tmpdir, NULL};
    struct ts_proc *p = start_server(args, NULL, &port);
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", port);
    struct ts_resp r;
    cr_assert(eq(int, ts_http("GET", url, NULL, 0, NULL, &r), 0));
    ts_resp_free(&r);
    struct appender a = {.port = port};
    pthread_t th;
    cr_assert(eq(int, pthread_create(&th, NULL, appender_main, &a), 0));
    while (atomic_load(&a.acked) < 2000)
        ts_sleep_ms(5);
    cr_assert(eq(int, ts_proc_signal(p, SIGKILL), 0));
    atomic_store(&a.stop, 1);
    pthread_join(th, NULL);
    uint64_t acked = atomic_load(&a.acked);
    ts_proc_free(p);
    p = start_server(args, NULL, &port);
    uint64_t tail = check_tail(port);
    cr_assert(ge(u64, tail, acked));
    verify_all(port, tail);
    ts_proc_free(p);
}

struct bg_get {
    pthread_t th;
    char url[256];
    long status;
    char body[512];
};

static void *bg_get_main(void *arg)
{
    struct bg_get *g = arg;
    const char *h[] = {"S2-Basin: " BASIN, NULL};
    struct ts_resp r;
    g->status = -1;
    if (ts_http("GET", g->url, NULL, 0, h, &r) == 0) {
        g->status = r.status;
        snprintf(g->body, sizeof g->body, "%s", r.body);
        ts_resp_free(&r);
    }
    return NULL;
}

/* Long polls answered by an append, timed out towards a client that left,
 * and drained by SIGTERM; the process then exits 0 (under ASan that
 * includes its leak check). */
Test(exec, long_polls_and_clean_shutdown)
{
    int port;
    const char *args[] = {"--data-dir", tmpdir, NULL};
    struct ts_proc *p = start_server(args, NULL, &port);
    char url[256], out[4096];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", port);
    struct ts_resp r;
    cr_assert(eq(int, ts_http("GET", url, NULL, 0, NULL, &r), 0));
    ts_resp_free(&r);
    struct bg_get drained = {0}, answered = {0};
    snprintf(drained.url, sizeof drained.url,
             "http://127.0.0.1:%d/v1/streams/lp/records?seq_num=0&wait=30", port);
    snprintf(answered.url, sizeof answered.url,
             "http://127.0.0.1:%d/v1/streams/lp2/records?seq_num=0&wait=30", port);
    cr_assert(eq(int, pthread_create(&drained.th, NULL, bg_get_main, &drained), 0));
    cr_assert(eq(int, pthread_create(&answered.th, NULL, bg_get_main, &answered), 0));
    /* A client that gives up before its long poll times out. */
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "curl -s --max-time 1 -H 'S2-Basin: " BASIN "' "
             "'http://127.0.0.1:%d/v1/streams/lp3/records?wait=2' >/dev/null",
             port);
    cr_assert(ne(int, system(cmd), 0));
    cr_assert(eq(long,
                 curl_tool(port, "POST", "/v1/streams/lp2/records",
                           "{\"records\":[{\"body\":\"x\"}]}", out, sizeof out),
                 200));
    pthread_join(answered.th, NULL);
    cr_assert(eq(long, answered.status, 200), "%s", answered.body);
    cr_assert_not_null(strstr(answered.body, "\"body\":\"x\""));
    ts_sleep_ms(1500); /* the abandoned poll times out meanwhile */
    cr_assert(eq(int, ts_proc_signal(p, SIGTERM), 0));
    pthread_join(drained.th, NULL);
    cr_assert(eq(long, drained.status, 503), "%s", drained.body);
    cr_assert_not_null(strstr(drained.body, "server_draining"));
    int status = -1;
    cr_assert(eq(int, ts_proc_wait(p, 10000, &status), 0));
    cr_assert(eq(int, status, 0), "%s", ts_proc_log(p));
    ts_proc_free(p);
}
