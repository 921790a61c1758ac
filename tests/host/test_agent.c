/*
 * test_agent.c - the real agent executable with the fixture plugins, driven
 * over HTTP on loopback: health, request ids, 404/405, the observer (normal,
 * deferred and streaming requests), the toggle, refusals, shutdown order,
 * the env-file overlay and limits. Every agent that should stop cleanly is
 * stopped with SIGTERM and must exit 0 (under ASan that also means no leak).
 */
#include "support.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/new/assert.h>

#include <cjson/cJSON.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ROUTE_SIDE_EFFECT_FREE 1
#define ROUTE_STREAMING 2

static char plugins_kv[2048];

static const char *fixture_path(const char *name)
{
    static char path[1024];
    snprintf(path, sizeof(path), "%.800s/%.200s", ts_env("FIXTURE_PLUGIN_DIR"), name);
    return path;
}

/* AGENT_PLUGINS=fixture:<dir>/fixture.so */
static const char *fixture_plugins(void)
{
    snprintf(plugins_kv, sizeof(plugins_kv), "AGENT_PLUGINS=fixture:%s",
             fixture_path("fixture.so"));
    return plugins_kv;
}

static struct ts_proc *start(const char *const args[], const char *const env[], int *port)
{
    struct ts_proc *p = NULL;
    int rc = ts_agent_start(args, env, &p, port);
    cr_assert(eq(int, rc, 0), "agent did not start");
    return p;
}

/* SIGTERM, expect exit 0 within 20 s; returns the log (owned by p). */
static const char *stop(struct ts_proc *p)
{
    int st = -1;
    cr_assert(eq(int, ts_proc_signal(p, SIGTERM), 0));
    int rc = ts_proc_wait(p, 20000, &st);
    const char *log = ts_proc_log(p);
    cr_assert(eq(int, rc, 0), "agent did not stop; log:\n%s", log);
    cr_assert(eq(int, st, 0), "agent exit status %d; log:\n%s", st, log);
    return log;
}

static void url_of(char *buf, size_t len, int port, const char *path)
{
    snprintf(buf, len, "http://127.0.0.1:%d%s", port, path);
}

static void request(const char *method, int port, const char *path, const char *body,
                    const char *const headers[], struct ts_resp *r)
{
    char url[512];
    url_of(url, sizeof(url), port, path);
    cr_assert(eq(int, ts_http(method, url, body, body ? strlen(body) : 0, headers, r), 0),
              "%s %s failed", method, path);
}

/* The body of r as JSON; caller frees with cJSON_Delete. */
static cJSON *json_of(const struct ts_resp *r)
{
    cJSON *j = cJSON_Parse(r->body);
    cr_assert(ne(ptr, j, NULL), "not JSON: %s", r->body);
    return j;
}

static void expect_message_body(const struct ts_resp *r, const char *needle)
{
    cJSON *j = json_of(r);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
    cr_expect(eq(int, cJSON_IsString(m), 1), "no message in %s", r->body);
    cr_expect(eq(int, cJSON_GetArraySize(j), 1), "only a message: %s", r->body);
    if (cJSON_IsString(m) && needle != NULL)
        cr_expect(ne(ptr, strstr(m->valuestring, needle), NULL), "'%s' lacks '%s'", m->valuestring,
                  needle);
    cr_expect(eq(str, (char *)ts_resp_header(r, "Content-Type"), "application/json"));
    cJSON_Delete(j);
}

/* The observer records of operation op (a new array; NULL op: all). */
static cJSON *observed(int port, const char *op)
{
    struct ts_resp r;
    request("GET", port, "/fixture/observed", NULL, NULL, &r);
    cr_assert(eq(long, r.status, 200));
    cJSON *all = json_of(&r), *out = cJSON_CreateArray(), *rec;
    cJSON_ArrayForEach(rec, all)
    {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(rec, "operation_id");
        if (op == NULL || (cJSON_IsString(o) && strcmp(o->valuestring, op) == 0))
            cJSON_AddItemToArray(out, cJSON_Duplicate(rec, 1));
    }
    cJSON_Delete(all);
    ts_resp_free(&r);
    return out;
}

/* Poll until op has at least n records (10 s at most); returns them. */
static cJSON *observed_wait(int port, const char *op, int n)
{
    long long deadline = ts_now_ms() + 10000;
    for (;;) {
        cJSON *a = observed(port, op);
        if (cJSON_GetArraySize(a) >= n || ts_now_ms() > deadline)
            return a;
        cJSON_Delete(a);
        ts_sleep_ms(20);
    }
}

static int num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    cr_assert(eq(int, cJSON_IsNumber(v), 1), "no number %s", key);
    return v->valueint;
}

static double dbl(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    cr_assert(eq(int, cJSON_IsNumber(v), 1), "no number %s", key);
    return v->valuedouble;
}

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    cr_assert(eq(int, cJSON_IsString(v), 1), "no string %s", key);
    return v->valuestring;
}

static int count_lines_with(const char *log, const char *needle)
{
    int n = 0;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* Offset of needle in log, failing the test when absent. */
static long pos_of(const char *log, const char *needle)
{
    const char *p = strstr(log, needle);
    cr_assert(ne(ptr, (void *)p, NULL), "'%s' not in log:\n%s", needle, log);
    return p - log;
}

/* ---- health, ids, 404/405 ---- */

Test(agent, health_and_generated_request_id, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    struct ts_resp r1, r2;
    regex_t re;

    request("GET", port, "/health", NULL, NULL, &r1);
    cr_expect(eq(long, r1.status, 200));
    cr_expect(eq(str, (char *)ts_resp_header(&r1, "Content-Type"), "application/json"));
    cJSON *j = json_of(&r1);
    cr_expect(eq(str, (char *)str_of(j, "status"), "ok"));
    cJSON *pl = cJSON_GetObjectItemCaseSensitive(j, "plugins");
    cr_expect(eq(int, cJSON_GetArraySize(pl), 1));
    cr_expect(eq(str, cJSON_GetArrayItem(pl, 0)->valuestring, "fixture"));
    cJSON_Delete(j);

    request("GET", port, "/health", NULL, NULL, &r2);
    const char *id1 = ts_resp_header(&r1, "X-Request-Id");
    const char *id2 = ts_resp_header(&r2, "X-Request-Id");
    cr_assert(ne(ptr, (void *)id1, NULL));
    cr_assert(ne(ptr, (void *)id2, NULL));
    cr_assert(eq(int, regcomp(&re, "^[^/ ]+/[A-Za-z0-9]{10}-[0-9]{6}$", REG_EXTENDED), 0));
    cr_expect(eq(int, regexec(&re, id1, 0, NULL, 0), 0), "id %s", id1);
    cr_expect(eq(int, regexec(&re, id2, 0, NULL, 0), 0), "id %s", id2);
    regfree(&re);
    cr_expect(ne(str, (char *)id1, (char *)id2), "ids differ");
    /* Same process prefix, counter one apart. */
    size_t plen = strlen(id1) - 6;
    cr_expect(eq(int, strncmp(id1, id2, plen), 0));
    cr_expect(eq(long, strtol(id2 + plen, NULL, 10), strtol(id1 + plen, NULL, 10) + 1));
    ts_resp_free(&r1);
    ts_resp_free(&r2);

    request("HEAD", port, "/health", NULL, NULL, &r1);
    cr_expect(eq(long, r1.status, 200));
    cr_expect(eq(sz, r1.body_len, 0));
    ts_resp_free(&r1);
    stop(p);
    ts_proc_free(p);
}

Test(agent, request_id_passthrough_and_rejection, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    struct ts_resp r;
    const char *good[] = {"X-Request-Id: client-id.42:x/y", NULL};
    char long_hdr[300];
    snprintf(long_hdr, sizeof(long_hdr), "X-Request-Id: %0200d", 7);
    const char *bad1[] = {"X-Request-Id: bad id with spaces", NULL};
    const char *bad2[] = {long_hdr, NULL};

    request("GET", port, "/fixture/hello", NULL, good, &r);
    cr_expect(eq(long, r.status, 200));
    cr_expect(eq(str, (char *)ts_resp_header(&r, "X-Request-Id"), "client-id.42:x/y"));
    ts_resp_free(&r);
    /* Also on host answers (404). */
    request("GET", port, "/nowhere", NULL, good, &r);
    cr_expect(eq(str, (char *)ts_resp_header(&r, "X-Request-Id"), "client-id.42:x/y"));
    ts_resp_free(&r);

    request("GET", port, "/fixture/hello", NULL, bad1, &r);
    const char *id = ts_resp_header(&r, "X-Request-Id");
    cr_assert(ne(ptr, (void *)id, NULL));
    cr_expect(eq(ptr, strchr(id, ' '), NULL), "generated instead of '%s'", id);
    ts_resp_free(&r);
    request("GET", port, "/fixture/hello", NULL, bad2, &r);
    id = ts_resp_header(&r, "X-Request-Id");
    cr_assert(ne(ptr, (void *)id, NULL));
    cr_expect(lt(sz, strlen(id), 129));
    ts_resp_free(&r);

    /* The observer saw the same ids. */
    cJSON *recs = observed(port, "GetHello");
    cr_assert(eq(int, cJSON_GetArraySize(recs), 3));
    cr_expect(
        eq(str, (char *)str_of(cJSON_GetArrayItem(recs, 0), "request_id"), "client-id.42:x/y"));
    cr_expect(
        ne(str, (char *)str_of(cJSON_GetArrayItem(recs, 1), "request_id"), "bad id with spaces"));
    cJSON_Delete(recs);
    stop(p);
    ts_proc_free(p);
}

Test(agent, not_found_and_method_not_allowed, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    struct ts_resp r;

    request("GET", port, "/no/such/path?x=1", NULL, NULL, &r);
    cr_expect(eq(long, r.status, 404));
    expect_message_body(&r, "/no/such/path");
    cr_expect(eq(ptr, (void *)ts_resp_header(&r, "Allow"), NULL));
    ts_resp_free(&r);

    request("PUT", port, "/fixture/hello", "{}", NULL, &r);
    cr_expect(eq(long, r.status, 405));
    cr_expect(eq(str, (char *)ts_resp_header(&r, "Allow"), "GET"));
    expect_message_body(&r, "PUT");
    ts_resp_free(&r);

    request("DELETE", port, "/fixture/echo", NULL, NULL, &r);
    cr_expect(eq(long, r.status, 405));
    cr_expect(eq(str, (char *)ts_resp_header(&r, "Allow"), "POST"));
    ts_resp_free(&r);

    request("PATCH", port, "/health", "{}", NULL, &r);
    cr_expect(eq(long, r.status, 405));
    cr_expect(eq(str, (char *)ts_resp_header(&r, "Allow"), "GET"));
    ts_resp_free(&r);

    /* 404 and 405 reach no route: the observer saw none of them. */
    cJSON *all = observed(port, NULL);
    cr_expect(eq(int, cJSON_GetArraySize(all), 0));
    cJSON_Delete(all);
    stop(p);
    ts_proc_free(p);
}

/* Date headers of r: how many, and the last one's value. */
static int date_headers(const struct ts_resp *r, const char **last)
{
    int n = 0;
    *last = NULL;
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strncasecmp(r->headers[i], "Date:", 5) == 0) {
            n++;
            *last = r->headers[i] + 5 + strspn(r->headers[i] + 5, " ");
        }
    }
    return n;
}

/* One Date per reply, IMF-fixdate (RFC 7231: "Sun, 06 Nov 1994 08:49:37
 * GMT"), the time of the request: routes, 404s, HEAD and HTTP/1.0 alike
 * (the router sets it, formatted once a second). */
Test(agent, date_header_on_every_reply, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    static const struct {
        const char *method, *path, *body;
    } reqs[] = {
        {"GET", "/health", NULL},       {"POST", "/fixture/echo", "{\"a\":1}"},
        {"GET", "/no/such/path", NULL}, {"DELETE", "/fixture/echo", NULL},
        {"HEAD", "/health", NULL},      {"GET", "/fixture/hello", NULL},
    };
    regex_t re;
    cr_assert(eq(int,
                 regcomp(&re,
                         "^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
                         "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
                         "[0-9]{2}:[0-9]{2}:[0-9]{2} GMT$",
                         REG_EXTENDED),
                 0));
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        struct ts_resp r;
        const char *date;
        time_t before = time(NULL);
        request(reqs[i].method, port, reqs[i].path, reqs[i].body, NULL, &r);
        time_t after = time(NULL);
        cr_expect(eq(int, date_headers(&r, &date), 1), "%s %s: Date headers", reqs[i].method,
                  reqs[i].path);
        cr_assert(ne(ptr, (void *)date, NULL));
        cr_expect(eq(int, regexec(&re, date, 0, NULL, 0), 0), "Date: %s", date);
        struct tm tm = {0};
        const char *end = strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cr_assert(ne(ptr, (void *)end, NULL), "Date: %s", date);
        time_t t = timegm(&tm);
        cr_expect(ge(i64, (int64_t)t, (int64_t)before), "Date %s before the request", date);
        cr_expect(le(i64, (int64_t)t, (int64_t)after), "Date %s after the reply", date);
        ts_resp_free(&r);
    }
    regfree(&re);

    /* HTTP/1.0 gets one too (libevent alone adds it only for 1.1). */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(eq(int, connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0));
    const char *req10 = "GET /health HTTP/1.0\r\n\r\n";
    cr_assert(eq(long, (long)write(fd, req10, strlen(req10)), (long)strlen(req10)));
    char head[4096];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof(head) - 1 && (n = read(fd, head + got, sizeof(head) - 1 - got)) > 0)
        got += (size_t)n;
    head[got] = '\0';
    close(fd);
    cr_expect(ne(ptr, strstr(head, "\r\nDate: "), NULL), "HTTP/1.0 reply:\n%s", head);
    stop(p);
    ts_proc_free(p);
}

/* ---- the observer ---- */

Test(agent, observer_normal_requests, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    struct ts_resp r;
    const char *hdr[] = {"X-Request-Id: echo-1", NULL};

    request("GET", port, "/fixture/hello", NULL, NULL, &r);
    cr_expect(eq(long, r.status, 200));
    cr_expect(eq(str, r.body, "{\"hello\":\"world\"}"));
    ts_resp_free(&r);
    request("POST", port, "/fixture/echo?status=201", "{\"a\":1}", hdr, &r);
    cr_expect(eq(long, r.status, 201));
    cr_expect(eq(str, r.body, "{\"a\":1}"));
    ts_resp_free(&r);
    request("GET", port, "/fixture/deferred?ms=150", NULL, NULL, &r);
    cr_expect(eq(long, r.status, 200));
    cr_expect(eq(str, r.body, "{\"deferred\":150}"));
    ts_resp_free(&r);
    request("GET", port, "/health", NULL, NULL, &r);
    ts_resp_free(&r);

    cJSON *all = observed(port, NULL);
    cr_assert(eq(int, cJSON_GetArraySize(all), 4), "records: %s", cJSON_PrintUnformatted(all));
    const cJSON *hello = cJSON_GetArrayItem(all, 0);
    cr_expect(eq(str, (char *)str_of(hello, "method"), "GET"));
    cr_expect(eq(str, (char *)str_of(hello, "path"), "/fixture/hello"));
    cr_expect(eq(str, (char *)str_of(hello, "operation_id"), "GetHello"));
    cr_expect(eq(int, num(hello, "status"), 200));
    cr_expect(eq(int, num(hello, "flags"), ROUTE_SIDE_EFFECT_FREE));
    cr_expect(ge(dbl(hello, "duration_ms"), 0.0));

    const cJSON *echo = cJSON_GetArrayItem(all, 1);
    cr_expect(eq(str, (char *)str_of(echo, "method"), "POST"));
    cr_expect(eq(str, (char *)str_of(echo, "operation_id"), "PostEcho"));
    cr_expect(eq(str, (char *)str_of(echo, "request_id"), "echo-1"));
    cr_expect(eq(int, num(echo, "status"), 201));
    cr_expect(eq(int, num(echo, "flags"), 0));

    const cJSON *def = cJSON_GetArrayItem(all, 2);
    cr_expect(eq(str, (char *)str_of(def, "operation_id"), "GetDeferred"));
    cr_expect(eq(int, num(def, "status"), 200));
    /* The reply was held back 150 ms: the duration covers that. */
    cr_expect(ge(dbl(def, "duration_ms"), 150.0));

    const cJSON *health = cJSON_GetArrayItem(all, 3);
    cr_expect(eq(str, (char *)str_of(health, "operation_id"), "GetHealth"));
    cr_expect(eq(int, num(health, "flags"), ROUTE_SIDE_EFFECT_FREE));
    cJSON_Delete(all);
    stop(p);
    ts_proc_free(p);
}

Test(agent, observer_streaming_request_completes_once, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    char url[256];
    struct ts_sse *s;
    struct ts_sse_event ev;
    const char *hdr[] = {"X-Request-Id: stream-1", NULL};

    url_of(url, sizeof(url), port, "/fixture/stream?chunks=3&interval_ms=50");
    cr_assert(eq(int, ts_sse_open(url, hdr, 10000, &s), 0));
    cr_expect(eq(long, ts_sse_status(s), 200));
    cr_expect(eq(str, (char *)ts_sse_header(s, "Content-Type"), "text/event-stream"));
    cr_expect(eq(str, (char *)ts_sse_header(s, "X-Request-Id"), "stream-1"));
    for (int i = 1; i <= 3; i++) {
        char want[32];
        cr_assert(eq(int, ts_sse_next(s, 10000, &ev), 0));
        snprintf(want, sizeof(want), "%d", i);
        cr_expect(eq(str, (char *)ev.id, want));
    }
    cr_expect(eq(int, ts_sse_next(s, 10000, &ev), -EPIPE), "stream ends after 3 chunks");
    ts_sse_close(s);

    cJSON *recs = observed_wait(port, "StreamFixture", 1);
    cr_assert(eq(int, cJSON_GetArraySize(recs), 1));
    const cJSON *rec = cJSON_GetArrayItem(recs, 0);
    cr_expect(eq(int, num(rec, "status"), 200));
    cr_expect(eq(int, num(rec, "flags"), ROUTE_STREAMING));
    cr_expect(eq(str, (char *)str_of(rec, "request_id"), "stream-1"));
    /* Three chunks 50 ms apart: the stream lasted at least 150 ms. */
    cr_expect(ge(dbl(rec, "duration_ms"), 150.0));
    cJSON_Delete(recs);
    ts_sleep_ms(100);
    recs = observed(port, "StreamFixture");
    cr_expect(eq(int, cJSON_GetArraySize(recs), 1), "observed exactly once");
    cJSON_Delete(recs);
    stop(p);
    ts_proc_free(p);
}

Test(agent, observer_stream_closed_by_client, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    char url[256];
    struct ts_sse *s;
    struct ts_sse_event ev;

    url_of(url, sizeof(url), port, "/fixture/stream?chunks=0&interval_ms=20");
    cr_assert(eq(int, ts_sse_open(url, NULL, 10000, &s), 0));
    cr_assert(eq(int, ts_sse_next(s, 10000, &ev), 0));
    cr_assert(eq(int, ts_sse_next(s, 10000, &ev), 0));
    ts_sse_close(s);

    cJSON *recs = observed_wait(port, "StreamFixture", 1);
    cr_assert(eq(int, cJSON_GetArraySize(recs), 1));
    cr_expect(eq(int, num(cJSON_GetArrayItem(recs, 0), "status"), 200));
    cr_expect(ge(dbl(cJSON_GetArrayItem(recs, 0), "duration_ms"), 20.0));
    cJSON_Delete(recs);
    ts_sleep_ms(100);
    recs = observed(port, "StreamFixture");
    cr_expect(eq(int, cJSON_GetArraySize(recs), 1), "observed exactly once");
    cJSON_Delete(recs);
    stop(p);
    ts_proc_free(p);
}

/* A client that leaves while its reply is deferred: observed once, with
 * status 0, right away; the plugin's late reply harms nothing. */
Test(agent, observer_client_gone_during_deferred_reply, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    static const char req[] = "GET /fixture/deferred?ms=1500 HTTP/1.1\r\nHost: x\r\n"
                              "X-Request-Id: gone-1\r\n\r\n";
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    cr_assert(eq(int, connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0));
    cr_assert(eq(long, (long)write(fd, req, sizeof(req) - 1), (long)sizeof(req) - 1));
    ts_sleep_ms(100);
    close(fd);

    cJSON *recs = observed_wait(port, "GetDeferred", 1);
    cr_assert(eq(int, cJSON_GetArraySize(recs), 1));
    const cJSON *rec = cJSON_GetArrayItem(recs, 0);
    cr_expect(eq(int, num(rec, "status"), 0));
    cr_expect(eq(str, (char *)str_of(rec, "request_id"), "gone-1"));
    cr_expect(lt(dbl(rec, "duration_ms"), 1500.0), "noticed before the reply was due");
    cJSON_Delete(recs);

    /* After the plugin's timer has fired and replied into the void. */
    ts_sleep_ms(1700);
    recs = observed(port, "GetDeferred");
    cr_expect(eq(int, cJSON_GetArraySize(recs), 1), "observed exactly once");
    cJSON_Delete(recs);
    struct ts_resp r;
    request("GET", port, "/health", NULL, NULL, &r);
    cr_expect(eq(long, r.status, 200));
    ts_resp_free(&r);
    stop(p);
    ts_proc_free(p);
}

Test(agent, service_registry, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    struct ts_resp r;
    request("GET", port, "/fixture/service", NULL, NULL, &r);
    cr_expect(eq(long, r.status, 200));
    cr_expect(eq(str, r.body,
                 "{\"found\":true,\"ping\":42,\"v2_found\":false,\"duplicate_refused\":true}"));
    ts_resp_free(&r);
    /* A route without operation id is observed with null. */
    cJSON *all = observed(port, NULL);
    cr_assert(eq(int, cJSON_GetArraySize(all), 1));
    cr_expect(
        eq(int, cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(all, 0), "operation_id")), 1));
    cJSON_Delete(all);
    stop(p);
    ts_proc_free(p);
}

/* ---- toggle ---- */

Test(agent, toggle_off_answers_404, .timeout = 60)
{
    const char *values[] = {"off", "false", "0", "OFF"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char kv[64];
        snprintf(kv, sizeof(kv), "FIXTURE_ENABLED=%s", values[i]);
        const char *env[] = {fixture_plugins(), kv, NULL};
        int port;
        struct ts_proc *p = start(NULL, env, &port);
        struct ts_resp r;
        request("GET", port, "/fixture/hello", NULL, NULL, &r);
        cr_expect(eq(long, r.status, 404), "%s", kv);
        expect_message_body(&r, "/fixture/hello");
        ts_resp_free(&r);
        request("GET", port, "/health", NULL, NULL, &r);
        cr_expect(eq(str, r.body, "{\"status\":\"ok\",\"version\":\"0.1.0\",\"plugins\":[]}"));
        ts_resp_free(&r);
        const char *log = stop(p);
        cr_expect(ne(ptr, strstr(log, "plugin fixture is off (FIXTURE_ENABLED)"), NULL), "%s", log);
        cr_expect(eq(ptr, strstr(log, "fixture: ready"), NULL), "not loaded");
        ts_proc_free(p);
    }
    /* On explicitly. */
    const char *env[] = {fixture_plugins(), "FIXTURE_ENABLED=true", NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    struct ts_resp r;
    request("GET", port, "/fixture/hello", NULL, NULL, &r);
    cr_expect(eq(long, r.status, 200));
    ts_resp_free(&r);
    stop(p);
    ts_proc_free(p);
}

/* Run the agent expecting it to exit non-zero at start; returns its log. */
static const char *run_failing(struct ts_proc **pp, const char *const args[],
                               const char *const env[])
{
    const char *bin = ts_env("AGENT_BIN");
    const char *argv[8] = {bin};
    size_t n = 1;
    int st = -1;
    for (size_t i = 0; args != NULL && args[i] != NULL && n < 7; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    cr_assert(eq(int, ts_proc_start(argv, env, pp), 0));
    cr_assert(eq(int, ts_proc_wait(*pp, 20000, &st), 0), "agent kept running");
    const char *log = ts_proc_log(*pp);
    cr_expect(eq(int, st, 1), "exit status %d (1 expected, no crash); log:\n%s", st, log);
    return log;
}

Test(agent, toggle_bad_value_is_refused, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), "FIXTURE_ENABLED=maybe", "PORT=0", NULL};
    struct ts_proc *p;
    const char *log = run_failing(&p, NULL, env);
    cr_expect(ne(ptr, strstr(log, "FIXTURE_ENABLED: 'maybe' is not on/off/true/false/1/0"), NULL),
              "%s", log);
    ts_proc_free(p);
}

/* ---- refusals ---- */

struct refusal {
    const char *file;
    const char *reason;
};

static void expect_refusal(const struct refusal *rf)
{
    char kv[4096], want[2048], path[1024];
    snprintf(path, sizeof(path), "%s", fixture_path(rf->file));
    snprintf(kv, sizeof(kv), "AGENT_PLUGINS=fixture:%s,broken:%s", fixture_path("fixture.so"),
             path);
    const char *env[] = {kv, "PORT=0", NULL};
    struct ts_proc *p;
    const char *log = run_failing(&p, NULL, env);
    snprintf(want, sizeof(want), "ERROR agent: refusing plugin broken (%s): %s\n", path,
             rf->reason);
    cr_expect(ne(ptr, strstr(log, want), NULL), "want '%s' in:\n%s", want, log);
    cr_expect(eq(int, count_lines_with(log, "ERROR"), 1), "one line:\n%s", log);
    /* The plugin loaded before it was shut down and destroyed. */
    long begin = pos_of(log, "fixture: shutdown begin");
    long destroy = pos_of(log, "fixture: destroy");
    cr_expect(lt(begin, destroy));
    ts_proc_free(p);
}

Test(agent, refuses_missing_file, .timeout = 60)
{
    struct refusal rf = {"no-such-plugin.so", "file missing"};
    expect_refusal(&rf);
}

Test(agent, refuses_missing_entry_symbol, .timeout = 60)
{
    struct refusal rf = {"fixture_no_entry.so", "entry symbol agent_plugin_entry_v1 missing"};
    expect_refusal(&rf);
}

Test(agent, refuses_abi_mismatch, .timeout = 60)
{
    struct refusal rf = {"fixture_bad_abi.so",
                         "ABI mismatch: plugin built for ABI 2.0, host has ABI 1.0"};
    expect_refusal(&rf);
}

Test(agent, refuses_failing_init, .timeout = 60)
{
    struct refusal rf = {"fixture_fail_init.so",
                         "init failed (Invalid argument): cannot start: FAIL_INIT_SETTING is "
                         "required"};
    expect_refusal(&rf);
}

Test(agent, refuses_bad_plugin_list, .timeout = 60)
{
    const char *cases[][2] = {
        {"AGENT_PLUGINS=justaname", "AGENT_PLUGINS: 'justaname' is not name:path"},
        {"AGENT_PLUGINS=a:/x.so, a:/y.so", "AGENT_PLUGINS: plugin name 'a' given twice"},
        {"AGENT_PLUGINS=bad name:/x.so", "AGENT_PLUGINS: 'bad name:/x.so' is not name:path"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *env[] = {cases[i][0], "PORT=0", NULL};
        struct ts_proc *p;
        const char *log = run_failing(&p, NULL, env);
        cr_expect(ne(ptr, strstr(log, cases[i][1]), NULL), "want '%s' in:\n%s", cases[i][1], log);
        ts_proc_free(p);
    }
}

/* ---- shutdown ---- */

Test(agent, sigterm_ends_streams_then_shutdown_then_destroy, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), "AGENT_LOG_LEVEL=debug",
                         "FIXTURE_SHUTDOWN_DELAY_MS=100", NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    char url[256];
    struct ts_sse *s;
    struct ts_sse_event ev;

    url_of(url, sizeof(url), port, "/fixture/stream?chunks=0&interval_ms=20");
    cr_assert(eq(int, ts_sse_open(url, NULL, 10000, &s), 0));
    cr_assert(eq(int, ts_sse_next(s, 10000, &ev), 0));
    cr_assert(eq(int, ts_proc_signal(p, SIGTERM), 0));
    /* The stream gets the plugin's final event, then a clean end. */
    int rc;
    int saw_bye = 0;
    while ((rc = ts_sse_next(s, 10000, &ev)) == 0) {
        if (ev.event != NULL && strcmp(ev.event, "bye") == 0)
            saw_bye = 1;
    }
    cr_expect(eq(int, saw_bye, 1));
    cr_expect(eq(int, rc, -EPIPE), "clean end of stream");
    ts_sse_close(s);

    int st = -1;
    cr_assert(eq(int, ts_proc_wait(p, 20000, &st), 0));
    const char *log = ts_proc_log(p);
    cr_expect(eq(int, st, 0), "exit %d; log:\n%s", st, log);
    long sig = pos_of(log, "received SIGTERM");
    long begin = pos_of(log, "fixture: shutdown begin: 1 open");
    long observed_end = pos_of(log, "GET /fixture/stream 200");
    long done = pos_of(log, "fixture: shutdown done");
    long complete = pos_of(log, "agent: shutdown complete");
    long destroy = pos_of(log, "fixture: destroy");
    long stopped = pos_of(log, "agent: stopped");
    cr_expect(lt(sig, begin));
    cr_expect(lt(begin, done));
    cr_expect(lt(begin, observed_end));
    cr_expect(lt(done, complete));
    cr_expect(lt(complete, destroy));
    cr_expect(lt(destroy, stopped));
    ts_proc_free(p);
}

Test(agent, shutdown_deadline_when_a_plugin_hangs, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), "FIXTURE_SHUTDOWN_HANG=1",
                         "AGENT_SHUTDOWN_TIMEOUT=300ms", NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    const char *log = stop(p);
    long late = pos_of(log, "shutdown deadline reached; plugins still busy: fixture");
    long destroy = pos_of(log, "fixture: destroy");
    cr_expect(lt(late, destroy));
    cr_expect(eq(ptr, strstr(log, "fixture: shutdown done"), NULL));
    ts_proc_free(p);
}

Test(agent, sigint_stops_too, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), NULL};
    int port, st = -1;
    struct ts_proc *p = start(NULL, env, &port);
    cr_assert(eq(int, ts_proc_signal(p, SIGINT), 0));
    cr_assert(eq(int, ts_proc_wait(p, 20000, &st), 0));
    cr_expect(eq(int, st, 0), "%s", ts_proc_log(p));
    cr_expect(ne(ptr, strstr(ts_proc_log(p), "received SIGINT"), NULL));
    ts_proc_free(p);
}

/* ---- configuration ---- */

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/agent-test-XXXXXX.env");
    int fd = mkstemps(path, 4);
    cr_assert(fd >= 0);
    cr_assert(eq(long, (long)write(fd, text, strlen(text)), (long)strlen(text)));
    close(fd);
    return path;
}

Test(agent, env_file_overlays_environment, .timeout = 60)
{
    char text[8192];
    snprintf(text, sizeof(text),
             "# plugins come from the file\n"
             "AGENT_PLUGINS=fixture:%s\n"
             "TEST_BOTH=from-file   # comment\n"
             "export TEST_QUOTED=\"two words # kept\"\n",
             fixture_path("fixture.so"));
    char *file = write_temp(text);
    const char *args[] = {"--env", file, NULL};
    const char *env[] = {"TEST_BOTH=from-env", "TEST_ENV_ONLY=env", NULL};
    int port;
    struct ts_proc *p = start(args, env, &port);
    struct ts_resp r;
    request("GET", port, "/fixture/config?key=TEST_BOTH", NULL, NULL, &r);
    cr_expect(eq(str, r.body, "{\"key\":\"TEST_BOTH\",\"value\":\"from-file\"}"));
    ts_resp_free(&r);
    request("GET", port, "/fixture/config?key=TEST_ENV_ONLY", NULL, NULL, &r);
    cr_expect(eq(str, r.body, "{\"key\":\"TEST_ENV_ONLY\",\"value\":\"env\"}"));
    ts_resp_free(&r);
    request("GET", port, "/fixture/config?key=TEST_QUOTED", NULL, NULL, &r);
    cr_expect(eq(str, r.body, "{\"key\":\"TEST_QUOTED\",\"value\":\"two words # kept\"}"));
    ts_resp_free(&r);
    request("GET", port, "/fixture/config?key=TEST_NOT_SET_ANYWHERE", NULL, NULL, &r);
    cr_expect(eq(str, r.body, "{\"key\":\"TEST_NOT_SET_ANYWHERE\",\"value\":null}"));
    ts_resp_free(&r);
    stop(p);
    ts_proc_free(p);
    unlink(file);
    free(file);
}

Test(agent, bad_env_file_is_refused, .timeout = 60)
{
    char *file = write_temp("OK=1\nthis is not an assignment\n");
    const char *args[] = {"--env", file, NULL};
    const char *env[] = {"PORT=0", NULL};
    struct ts_proc *p;
    char want[512];
    const char *log = run_failing(&p, args, env);
    snprintf(want, sizeof(want), "%s:2: expected KEY=VALUE", file);
    cr_expect(ne(ptr, strstr(log, want), NULL), "%s", log);
    ts_proc_free(p);
    unlink(file);
    free(file);

    const char *args2[] = {"--env", "/nonexistent/agent.env", NULL};
    log = run_failing(&p, args2, env);
    cr_expect(ne(ptr, strstr(log, "/nonexistent/agent.env: No such file or directory"), NULL), "%s",
              log);
    ts_proc_free(p);
}

Test(agent, bad_settings_are_refused, .timeout = 60)
{
    const char *cases[][2] = {
        {"AGENT_LOG_LEVEL=chatty", "AGENT_LOG_LEVEL: 'chatty' is not debug/info/warn/error"},
        {"AGENT_MAX_BODY=lots", "AGENT_MAX_BODY: 'lots' is not a size"},
        {"AGENT_HTTP_TIMEOUT=soon", "AGENT_HTTP_TIMEOUT: 'soon' is not a duration"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *env[] = {cases[i][0], "PORT=0", NULL};
        struct ts_proc *p;
        const char *log = run_failing(&p, NULL, env);
        cr_expect(ne(ptr, strstr(log, cases[i][1]), NULL), "want '%s' in:\n%s", cases[i][1], log);
        ts_proc_free(p);
    }
    const char *env[] = {"PORT=99999", NULL};
    struct ts_proc *p;
    const char *log = run_failing(&p, NULL, env);
    cr_expect(ne(ptr, strstr(log, "PORT: '99999' is not a port"), NULL), "%s", log);
    ts_proc_free(p);
}

Test(agent, body_size_limit_answers_413, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), "AGENT_MAX_BODY=1KiB", NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    char big[4096];
    struct ts_resp r;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    request("POST", port, "/fixture/echo", big, NULL, &r);
    cr_expect(eq(long, r.status, 413));
    ts_resp_free(&r);
    request("POST", port, "/fixture/echo", "small", NULL, &r);
    cr_expect(eq(long, r.status, 200));
    cr_expect(eq(str, r.body, "small"));
    ts_resp_free(&r);
    stop(p);
    ts_proc_free(p);
}

Test(agent, port_in_use_is_refused, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    char kv[32];
    snprintf(kv, sizeof(kv), "PORT=%d", port);
    const char *env2[] = {kv, NULL};
    struct ts_proc *q;
    const char *log = run_failing(&q, NULL, env2);
    cr_expect(ne(ptr, strstr(log, "cannot listen on 127.0.0.1:"), NULL), "%s", log);
    cr_expect(ne(ptr, strstr(log, "in use"), NULL), "%s", log);
    ts_proc_free(q);
    stop(p);
    ts_proc_free(p);
}

/* Read one HTTP response head from fd (up to the blank line). */
static void read_head(int fd, char *buf, size_t len)
{
    size_t got = 0;
    long long deadline = ts_now_ms() + 10000;
    buf[0] = '\0';
    while (got < len - 1 && strstr(buf, "\r\n\r\n") == NULL && ts_now_ms() < deadline) {
        ssize_t n = read(fd, buf + got, len - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
    }
}

Test(agent, requests_during_shutdown_get_503, .timeout = 60)
{
    const char *env[] = {fixture_plugins(), "FIXTURE_SHUTDOWN_DELAY_MS=3000", NULL};
    int port;
    struct ts_proc *p = start(NULL, env, &port);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    static const char req[] = "GET /fixture/hello HTTP/1.1\r\nHost: x\r\n\r\n";
    char head[4096];
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    cr_assert(eq(int, connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0));

    /* A keep-alive connection opened before the signal... */
    cr_assert(eq(long, (long)write(fd, req, sizeof(req) - 1), (long)sizeof(req) - 1));
    read_head(fd, head, sizeof(head));
    cr_assert(eq(int, strncmp(head, "HTTP/1.1 200", 12), 0), "%s", head);
    cr_assert(eq(int, ts_proc_signal(p, SIGTERM), 0));
    cr_assert(eq(int, ts_proc_wait_log(p, "fixture: shutdown begin", 10000), 0));
    /* New connections are refused from now on. */
    cr_expect(eq(int, ts_wait_port(port, 100), -ETIMEDOUT));

    /* ...is answered 503 and closed while plugins finish. */
    cr_assert(eq(long, (long)write(fd, req, sizeof(req) - 1), (long)sizeof(req) - 1));
    read_head(fd, head, sizeof(head));
    cr_expect(eq(int, strncmp(head, "HTTP/1.1 503", 12), 0), "%s", head);
    cr_expect(ne(ptr, strstr(head, "Connection: close"), NULL), "%s", head);
    close(fd);

    int st = -1;
    cr_assert(eq(int, ts_proc_wait(p, 20000, &st), 0));
    cr_expect(eq(int, st, 0), "%s", ts_proc_log(p));
    ts_proc_free(p);
}
