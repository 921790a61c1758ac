/*
 * test_e2e.c - GET /telemetry/events end to end: the agent with the
 * telemetry plugin archiving into s2-local over loopback, read back page by
 * page.
 *
 * Sessions enable only the categories a test publishes (TELEMETRY_CATEGORIES),
 * so no api_call events mix in, except where a test wants them.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "read_util.h"

static struct ru_s2 s2;
static struct ru_agent agent;

static void teardown(void)
{
    ru_agent_kill(&agent);
    ru_s2_stop(&s2);
}

/* End of a test: the agent stops cleanly, without sanitizer reports. */
static void stop_agent(void)
{
    ru_agent_stop(&agent);
}

static void publish_n(const char *category, int from, int count)
{
    for (int i = from; i < from + count; i++)
        cr_assert_eq(ru_publish(&agent, "e2e_event", category, i), 200, "publish %d", i);
}

static void assert_seqs_exactly(const struct ru_walk *w, uint64_t first, uint64_t last)
{
    cr_assert_eq(w->n, last - first + 1, "got %zu envelopes, want %llu", w->n,
                 (unsigned long long)(last - first + 1));
    for (size_t i = 0; i < w->n; i++)
        cr_assert_eq(w->seqs[i], first + i, "envelope %zu has seq %llu, want %llu", i,
                     (unsigned long long)w->seqs[i], (unsigned long long)(first + i));
}

static long get(const char *path_query, struct ts_resp *r)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", agent.base, path_query);
    cr_assert_eq(ts_http("GET", url, NULL, 0, NULL, r), 0, "GET %s failed", url);
    return r->status;
}

/* 950 events at limit=50: exactly 19 pages, seq 1..950 once each,
 * ascending, the last page says no more. */
Test(read_e2e, pages_950_at_limit_50, .fini = teardown, .timeout = 120)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", NULL};
    ru_s2_start(&s2);
    ru_agent_start(&agent, &s2, NULL, env);
    publish_n("system", 0, 950);
    cr_assert_eq(ru_wait_archived(&agent, 950, 30000), 950);

    struct ru_walk w;
    ru_walk(&agent, "limit=50", 0, 100, &w);
    cr_assert_eq(w.pages, 19, "%zu pages", w.pages);
    cr_assert_eq(w.last_has_more, 0);
    assert_seqs_exactly(&w, 1, 950);
    ru_walk_free(&w);

    /* the same walk by following Link */
    ru_walk(&agent, "limit=50", 1, 100, &w);
    cr_assert_eq(w.pages, 19);
    assert_seqs_exactly(&w, 1, 950);
    ru_walk_free(&w);

    /* the default page is 100, and 1000 is the most */
    ru_walk(&agent, "", 0, 100, &w);
    cr_assert_eq(w.pages, 10);
    assert_seqs_exactly(&w, 1, 950);
    ru_walk_free(&w);
    ru_walk(&agent, "limit=5000", 0, 100, &w);
    cr_assert_eq(w.pages, 1);
    assert_seqs_exactly(&w, 1, 950);
    ru_walk_free(&w);
    stop_agent();
}

/* limit=1 walks to the end, one envelope a page, and stops. */
Test(read_e2e, limit_1_walks_to_the_end, .fini = teardown, .timeout = 120)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", NULL};
    ru_s2_start(&s2);
    ru_agent_start(&agent, &s2, NULL, env);
    publish_n("system", 0, 60);
    cr_assert_eq(ru_wait_archived(&agent, 60, 30000), 60);

    struct ru_walk w;
    ru_walk(&agent, "limit=1", 0, 200, &w);
    cr_assert_eq(w.pages, 60);
    cr_assert_eq(w.empty_pages, 0);
    assert_seqs_exactly(&w, 1, 60);
    ru_walk_free(&w);
    /* limit=0 is clamped to 1 */
    ru_walk(&agent, "limit=0", 1, 200, &w);
    cr_assert_eq(w.pages, 60);
    ru_walk_free(&w);
    stop_agent();
}

/* A category filter across mostly other traffic returns exactly the
 * matching envelopes, in order, and the walk ends. */
Test(read_e2e, category_filter_in_other_traffic, .fini = teardown, .timeout = 120)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system,connection,captcha", NULL};
    ru_s2_start(&s2);
    ru_agent_start(&agent, &s2, NULL, env);
    /* seq 1..310: every 31st is system, one captcha in the middle */
    int sys = 0;
    for (int i = 1; i <= 310; i++) {
        const char *cat = i % 31 == 0 ? "system" : i == 150 ? "captcha" : "connection";
        sys += i % 31 == 0;
        cr_assert_eq(ru_publish(&agent, "e2e_event", cat, i), 200);
    }
    cr_assert_eq(sys, 10);
    cr_assert_eq(ru_wait_archived(&agent, 310, 30000), 310);

    struct ru_walk w;
    ru_walk(&agent, "category=system&limit=3", 0, 100, &w);
    cr_assert_eq(w.n, 10);
    for (size_t i = 0; i < w.n; i++) {
        cr_assert_str_eq(w.categories[i], "system");
        cr_assert_eq(w.seqs[i], 31 * (i + 1));
    }
    cr_assert_eq(w.pages, 4, "3+3+3+1 in %zu pages", w.pages);
    ru_walk_free(&w);

    /* repeated and comma forms, following Link (which keeps the filter) */
    ru_walk(&agent, "category=system&category=captcha&limit=4", 1, 100, &w);
    cr_assert_eq(w.n, 11);
    ru_walk_free(&w);
    ru_walk(&agent, "category=captcha,system&limit=4", 0, 100, &w);
    cr_assert_eq(w.n, 11);
    cr_assert_str_eq(w.categories[4], "captcha");
    cr_assert_eq(w.seqs[4], 150);
    ru_walk_free(&w);
    /* a category nobody published: one empty page, no more */
    ru_walk(&agent, "category=network", 0, 10, &w);
    cr_assert_eq(w.n, 0);
    cr_assert_eq(w.pages, 1);
    cr_assert_eq(w.last_has_more, 0);
    ru_walk_free(&w);
    stop_agent();
}

/* More non-matching records than one page may scan: the page comes back
 * short (empty) with X-Has-More: true and a cursor past the scan, and the
 * walk still reaches the match. */
Test(read_e2e, category_filter_scan_budget, .fini = teardown, .timeout = 180)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", NULL};
    ru_s2_start(&s2);
    ru_agent_start(&agent, &s2, NULL, env);
    publish_n("system", 1, 1); /* seq 1, and the stream exists */
    cr_assert_eq(ru_wait_archived(&agent, 1, 30000), 1);

    /* 25,000 network envelopes from another writer */
    static char bodies[1000][96];
    const char *ptrs[1000];
    for (int batch = 0; batch < 25; batch++) {
        for (int i = 0; i < 1000; i++) {
            snprintf(bodies[i], sizeof bodies[i],
                     "{\"seq\":%d,\"event\":{\"type\":\"x\",\"category\":\"network\"}}",
                     100000 + batch * 1000 + i);
            ptrs[i] = bodies[i];
        }
        ru_s2_append_raw(&s2, ptrs, 1000);
    }
    publish_n("system", 2, 1); /* seq 2, after all of them */
    cr_assert_eq(ru_wait_archived(&agent, 25002, 60000), 25002);

    struct ru_walk w;
    ru_walk(&agent, "category=system&limit=10", 0, 100, &w);
    cr_assert_eq(w.n, 2);
    cr_assert_eq(w.seqs[0], 1);
    cr_assert_eq(w.seqs[1], 2);
    cr_assert_geq(w.empty_pages, 1, "a page that spent its scan budget comes back empty");
    cr_assert_lt(w.pages, 10);
    cr_assert_eq(w.last_has_more, 0);
    ru_walk_free(&w);
    stop_agent();
}

/* An empty time window gives [] and no more. */
Test(read_e2e, empty_window, .fini = teardown, .timeout = 60)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", NULL};
    ru_s2_start(&s2);
    ru_agent_start(&agent, &s2, NULL, env);
    publish_n("system", 0, 5);
    cr_assert_eq(ru_wait_archived(&agent, 5, 30000), 5);

    const char *queries[] = {
        "/telemetry/events?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z",
        "/telemetry/events?since=1&until=2",
        "/telemetry/events?since=2999-01-01T00:00:00Z",
        "/telemetry/events?until=1000",
        "/telemetry/events?offset=5",
        "/telemetry/events?offset=999999",
        "/telemetry/events?offset=18446744073709551615",
        "/telemetry/events?offset=0&until=1",
    };
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        struct ts_resp r;
        cr_assert_eq(get(queries[i], &r), 200, "%s: %s", queries[i], r.body);
        cr_assert_str_eq(r.body, "[]", "%s", queries[i]);
        cr_assert_str_eq(ts_resp_header(&r, "X-Has-More"), "false");
        cr_assert_null(ts_resp_header(&r, "X-Next-Offset"));
        ts_resp_free(&r);
    }
    /* a window around now holds them all */
    char q[128];
    struct ru_walk w;
    snprintf(q, sizeof q, "since=5m&until=%llu", (unsigned long long)(ru_wall_ms() + 60000));
    ru_walk(&agent, q, 0, 10, &w);
    assert_seqs_exactly(&w, 1, 5);
    ru_walk_free(&w);
    stop_agent();
}

struct publisher {
    volatile int stop;
    int published;
};

static void *publish_loop(void *arg)
{
    struct publisher *p = arg;
    for (int i = 0; i < 2000 && !p->stop; i++) {
        if (ru_publish(&agent, "e2e_event", "system", 1000 + i) != 200)
            break;
        p->published++;
    }
    return NULL;
}

/* An until-bounded walk ends while publishing goes on, with exactly the
 * envelopes archived before until. */
Test(read_e2e, until_bounded_walk_terminates, .fini = teardown, .timeout = 120)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", NULL};
    ru_s2_start(&s2);
    ru_agent_start(&agent, &s2, NULL, env);
    publish_n("system", 0, 30);
    cr_assert_eq(ru_wait_archived(&agent, 30, 30000), 30);
    /* S2 stamps records at append (ms): the 30 are before until, and
     * everything archived from now on is at or after it. */
    ts_sleep_ms(5);
    uint64_t until = ru_wall_ms();
    ts_sleep_ms(5);

    struct publisher pub = {0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, publish_loop, &pub), 0);
    ts_sleep_ms(200);
    char q[96];
    snprintf(q, sizeof q, "until=%llu&limit=2", (unsigned long long)until);
    struct ru_walk w;
    ru_walk(&agent, q, 0, 50, &w);
    pub.stop = 1;
    pthread_join(th, NULL);
    cr_assert_gt(pub.published, 0, "publishing went on during the walk");
    cr_assert_eq(w.pages, 15);
    assert_seqs_exactly(&w, 1, 30);
    ru_walk_free(&w);

    /* offset keeps until: start in the middle */
    snprintf(q, sizeof q, "offset=20&until=%llu&limit=100", (unsigned long long)until);
    ru_walk(&agent, q, 1, 10, &w);
    assert_seqs_exactly(&w, 21, 30);
    ru_walk_free(&w);
    stop_agent();
}

/* Reading has no side effects: two full walks return the same pages, even
 * with control (api_call) enabled. */
Test(read_e2e, two_walks_are_equal, .fini = teardown, .timeout = 120)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=default", NULL};
    ru_s2_start(&s2);
    ru_agent_start(&agent, &s2, NULL, env);
    publish_n("system", 0, 40);
    /* each publish also emits an api_call */
    cr_assert_eq(ru_wait_archived(&agent, 80, 30000), 80);
    struct ru_walk a, b;
    ru_walk(&agent, "limit=7", 0, 100, &a);
    ru_walk(&agent, "limit=7", 0, 100, &b);
    cr_assert_eq(a.n, 80);
    cr_assert_eq(b.n, a.n);
    cr_assert_eq(a.pages, b.pages);
    for (size_t i = 0; i < a.pages; i++)
        cr_assert_str_eq(a.pages_body[i], b.pages_body[i], "page %zu differs", i);
    size_t api_calls = 0;
    for (size_t i = 0; i < a.n; i++)
        api_calls += strcmp(a.categories[i], "control") == 0;
    cr_assert_eq(api_calls, 40);
    ru_walk_free(&a);
    ru_walk_free(&b);
    stop_agent();
}

/* Events long gone from the live ring are still read from the archive. */
Test(read_e2e, older_than_the_ring, .fini = teardown, .timeout = 120)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", "TELEMETRY_RING_CAPACITY=16",
                                      NULL};
    ru_s2_start(&s2);
    ru_agent_start(&agent, &s2, NULL, env);
    publish_n("system", 0, 200);
    cr_assert_eq(ru_wait_archived(&agent, 200, 30000), 200);

    /* the live ring only has the last 16 */
    char url[128];
    struct ts_sse *sse;
    struct ts_sse_event ev;
    snprintf(url, sizeof url, "%s/telemetry/stream?replay=all", agent.base);
    cr_assert_eq(ts_sse_open(url, NULL, 5000, &sse), 0);
    cr_assert_eq(ts_sse_status(sse), 200);
    cr_assert_eq(ts_sse_next(sse, 5000, &ev), 0);
    cr_assert_str_eq(ev.id, "185");
    ts_sse_close(sse);

    struct ru_walk w;
    ru_walk(&agent, "limit=64", 0, 100, &w);
    assert_seqs_exactly(&w, 1, 200);
    ru_walk_free(&w);
    stop_agent();
}

/* Records that are not envelopes (another writer, corruption) are skipped:
 * every page is a valid array and the walk goes on past them. */
Test(read_e2e, invalid_records_skipped, .fini = teardown, .timeout = 120)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", NULL};
    ru_s2_start(&s2);
    ru_agent_start(&agent, &s2, NULL, env);
    publish_n("system", 0, 5);
    cr_assert_eq(ru_wait_archived(&agent, 5, 30000), 5);
    const char *garbage[] = {
        "garbage",
        "{\"seq\":1}",
        "[1,2",
        "{\"seq\":6,\"event\":{\"category\":\"system\"}}trailing",
        "",
        "{\"seq\":\"7\",\"event\":{\"category\":\"system\"}}",
        "\xff\xfe not utf-8",
    };
    ru_s2_append_raw(&s2, garbage, 7);
    publish_n("system", 5, 5);
    /* wait by walking with a large page: 10 envelopes, garbage skipped */
    cr_assert_eq(ru_wait_archived(&agent, 10, 30000), 10);

    for (int limit = 1; limit <= 4; limit++) {
        char q[32];
        struct ru_walk w;
        snprintf(q, sizeof q, "limit=%d", limit);
        ru_walk(&agent, q, limit % 2, 100, &w);
        assert_seqs_exactly(&w, 1, 10);
        ru_walk_free(&w);
    }
    cr_assert_eq(ts_proc_wait_log(agent.proc, "not envelopes", 5000), 0, "skips are logged: %s",
                 ts_proc_log(agent.proc));
    stop_agent();
}

/* Every bad value is a 400 with a JSON message naming the parameter. */
Test(read_e2e, bad_parameters, .fini = teardown, .timeout = 60)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", NULL};
    ru_s2_start(&s2);
    ru_agent_start(&agent, &s2, NULL, env);
    struct {
        const char *query, *param;
    } cases[] = {
        {"offset=abc", "offset"},
        {"offset=-1", "offset"},
        {"offset=18446744073709551616", "offset"},
        {"limit=ten", "limit"},
        {"since=yesterday", "since"},
        {"since=-5m", "since"},
        {"until=2020-13-01T00:00:00Z", "until"},
        {"category=bogus", "category"},
        {"category=system,", "category"},
        {"since=2020-01-02T00:00:00Z&until=2020-01-01T00:00:00Z", "since"},
        {"limit=1&limit=2", "limit"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        struct ts_resp r;
        snprintf(path, sizeof path, "/telemetry/events?%s", cases[i].query);
        cr_assert_eq(get(path, &r), 400, "%s: %ld", cases[i].query, r.status);
        cr_assert_str_eq(ts_resp_header(&r, "Content-Type"), "application/json");
        cJSON *j = cJSON_Parse(r.body);
        cJSON *m = cJSON_GetObjectItem(j, "message");
        cr_assert(cJSON_IsString(m), "%s: body %s", cases[i].query, r.body);
        cr_assert(strncmp(m->valuestring, cases[i].param, strlen(cases[i].param)) == 0,
                  "%s: message \"%s\" does not name %s", cases[i].query, m->valuestring,
                  cases[i].param);
        cJSON_Delete(j);
        ts_resp_free(&r);
    }
    stop_agent();
}

/* Archive off: [] and no more, parameters still checked. */
Test(read_e2e, archive_off, .fini = teardown, .timeout = 60)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", NULL};
    ru_agent_start(&agent, NULL, NULL, env);
    publish_n("system", 0, 3);
    struct ts_resp r;
    cr_assert_eq(get("/telemetry/events", &r), 200);
    cr_assert_str_eq(r.body, "[]");
    cr_assert_str_eq(ts_resp_header(&r, "X-Has-More"), "false");
    cr_assert_null(ts_resp_header(&r, "X-Next-Offset"));
    ts_resp_free(&r);
    cr_assert_eq(get("/telemetry/events?limit=x", &r), 400);
    ts_resp_free(&r);
    stop_agent();
}

/* S2 unreachable: 502 with a JSON message, in bounded time. */
Test(read_e2e, s2_down_is_502, .fini = teardown, .timeout = 90)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", "S2_REQUEST_TIMEOUT=1s", NULL};
    int dead = ts_free_port(); /* nothing listens there */
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d/v1", dead);
    ru_agent_start(&agent, NULL, endpoint, env);
    struct ts_resp r;
    cr_assert_eq(get("/telemetry/events", &r), 502, "%ld %s", r.status, r.body);
    cr_assert_str_eq(ts_resp_header(&r, "Content-Type"), "application/json");
    cJSON *j = cJSON_Parse(r.body);
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(j, "message")), "%s", r.body);
    cJSON_Delete(j);
    ts_resp_free(&r);
    stop_agent();
}

/* A listener that never answers: S2 times out. */
static int blackhole(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(fd, 64), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

Test(read_e2e, s2_timeout_is_504, .fini = teardown, .timeout = 90)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", "S2_REQUEST_TIMEOUT=500ms",
                                      NULL};
    int port, fd = blackhole(&port);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d/v1", port);
    ru_agent_start(&agent, NULL, endpoint, env);
    struct ts_resp r;
    cr_assert_eq(get("/telemetry/events", &r), 504, "%ld %s", r.status, r.body);
    cJSON *j = cJSON_Parse(r.body);
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(j, "message")), "%s", r.body);
    cJSON_Delete(j);
    ts_resp_free(&r);
    close(fd);
    stop_agent();
}

/* A client that goes away mid-read: the read is cancelled, nothing is left
 * (the sanitizer build checks for leaks at exit), the agent serves on. */
Test(read_e2e, client_gone_cancels_the_read, .fini = teardown, .timeout = 90)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", "S2_REQUEST_TIMEOUT=5s", NULL};
    int port, fd = blackhole(&port);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d/v1", port);
    ru_agent_start(&agent, NULL, endpoint, env);

    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)agent.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
    static const char req[] = "GET /telemetry/events HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(write(c, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    cr_assert_eq(ts_proc_wait_log(agent.proc, "read started", 10000), 0, "%s",
                 ts_proc_log(agent.proc));
    close(c);
    cr_assert_eq(ts_proc_wait_log(agent.proc, "read cancelled", 5000), 0, "%s",
                 ts_proc_log(agent.proc));
    /* the agent still answers */
    struct ts_resp r;
    cr_assert_eq(get("/telemetry/events?limit=bad", &r), 400);
    ts_resp_free(&r);
    close(fd);
    stop_agent();
}

struct pending_get {
    long status;
    char body[512];
};

static void *get_thread(void *arg)
{
    struct pending_get *g = arg;
    struct ts_resp r;
    char url[128];
    snprintf(url, sizeof url, "%s/telemetry/events", agent.base);
    if (ts_http("GET", url, NULL, 0, NULL, &r) == 0) {
        g->status = r.status;
        snprintf(g->body, sizeof g->body, "%s", r.body);
        ts_resp_free(&r);
    }
    return NULL;
}

/* Shutting down answers a read that waits on S2 with 503. */
Test(read_e2e, shutdown_answers_pending_503, .fini = teardown, .timeout = 90)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", "S2_REQUEST_TIMEOUT=10s",
                                      NULL};
    int port, fd = blackhole(&port);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d/v1", port);
    ru_agent_start(&agent, NULL, endpoint, env);
    struct pending_get g = {0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, get_thread, &g), 0);
    cr_assert_eq(ts_proc_wait_log(agent.proc, "read started", 10000), 0, "%s",
                 ts_proc_log(agent.proc));
    cr_assert_eq(ts_proc_signal(agent.proc, SIGTERM), 0);
    pthread_join(th, NULL);
    cr_assert_eq(g.status, 503, "status %ld body %s", g.status, g.body);
    cr_assert(strstr(g.body, "\"message\"") != NULL, "%s", g.body);
    close(fd);
    ru_agent_reap(&agent);
}

static size_t count_in_log(struct ts_proc *p, const char *needle)
{
    size_t n = 0;
    for (const char *at = ts_proc_log(p); (at = strstr(at, needle)) != NULL; at++)
        n++;
    return n;
}

/* At most 32 reads wait on S2 at once; one more is a 503 with Retry-After,
 * at once. Clients that all go away leave nothing behind. */
Test(read_e2e, pending_reads_are_bounded, .fini = teardown, .timeout = 120)
{
    static const char *const env[] = {"TELEMETRY_CATEGORIES=system", "S2_REQUEST_TIMEOUT=20s",
                                      NULL};
    int port, fd = blackhole(&port);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d/v1", port);
    ru_agent_start(&agent, NULL, endpoint, env);

    int conns[32];
    for (int i = 0; i < 32; i++) {
        conns[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)agent.port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        cr_assert_eq(connect(conns[i], (struct sockaddr *)&sa, sizeof sa), 0);
        static const char req[] = "GET /telemetry/events HTTP/1.1\r\nHost: x\r\n\r\n";
        cr_assert_eq(write(conns[i], req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    }
    long long deadline = ts_now_ms() + 20000;
    while (count_in_log(agent.proc, "read started") < 32 && ts_now_ms() < deadline)
        ts_sleep_ms(20);
    cr_assert_eq(count_in_log(agent.proc, "read started"), 32);

    struct ts_resp r;
    cr_assert_eq(get("/telemetry/events", &r), 503, "%ld %s", r.status, r.body);
    cr_assert_not_null(ts_resp_header(&r, "Retry-After"));
    cr_assert(strstr(r.body, "\"message\"") != NULL, "%s", r.body);
    ts_resp_free(&r);

    for (int i = 0; i < 32; i++)
        close(conns[i]);
    deadline = ts_now_ms() + 20000;
    while (count_in_log(agent.proc, "read cancelled") < 32 && ts_now_ms() < deadline)
        ts_sleep_ms(20);
    cr_assert_eq(count_in_log(agent.proc, "read cancelled"), 32);
    close(fd);
    stop_agent();
}
