/*
 * test_memory.c - 100 SSE clients, 10 of which never read, while 100,000
 * events are published: the agent's resident memory stays under a fixed
 * bound (the never-reading clients hold at most TELEMETRY_SSE_MAX_PENDING
 * each instead of everything published). Prints the figures.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "support.h"
#include "tp_agent.h"

#define CLIENTS 100
#define STALLED 10
#define EVENTS 100000
#define BURST 1000
#define PAD 100
/* Generous: 100 clients x 256 KiB pending is 25 MiB; unbounded buffering of
 * the 10 stalled clients alone would be about 10 x 100,000 x 300 B = 286 MiB. */
#define GROWTH_BOUND_KIB (96 * 1024)

static struct tp_agent agent;

static void fini(void)
{
    tp_agent_cleanup(&agent);
}

static long rss_kib(int pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static int connect_stream(int port, int small_rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    if (small_rcvbuf) {
        int sz = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    static const char req[] = "GET /telemetry/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    cr_assert_eq(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    return fd;
}

struct reader {
    int fd;
    size_t bytes;
    char tail[8192]; /* the last bytes seen, to find the final marker */
    size_t tail_len;
    int done;
};

struct readers {
    struct reader r[CLIENTS - STALLED];
    int n;
    volatile int stop;
    int done_count;
};

static const char marker[] = "\"type\":\"final.marker\"";

static void *read_all(void *arg)
{
    struct readers *rs = arg;
    int ep = epoll_create1(0);
    char buf[65536];
    for (int i = 0; i < rs->n; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &rs->r[i]};
        fcntl(rs->r[i].fd, F_SETFL, O_NONBLOCK);
        epoll_ctl(ep, EPOLL_CTL_ADD, rs->r[i].fd, &e);
    }
    while (!rs->stop) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            struct reader *r = evs[i].data.ptr;
            ssize_t got;
            while ((got = read(r->fd, buf, sizeof buf)) > 0) {
                r->bytes += (size_t)got;
                /* keep a sliding tail window */
                if ((size_t)got >= sizeof r->tail) {
                    memcpy(r->tail, buf + got - sizeof r->tail, sizeof r->tail);
                    r->tail_len = sizeof r->tail;
                } else {
                    size_t keep = sizeof r->tail - (size_t)got;
                    if (keep > r->tail_len)
                        keep = r->tail_len;
                    memmove(r->tail, r->tail + r->tail_len - keep, keep);
                    memcpy(r->tail + keep, buf, (size_t)got);
                    r->tail_len = keep + (size_t)got;
                }
                if (!r->done && memmem(r->tail, r->tail_len, marker, sizeof marker - 1)) {
                    r->done = 1;
                    __atomic_add_fetch(&rs->done_count, 1, __ATOMIC_SEQ_CST);
                }
            }
        }
    }
    close(ep);
    return NULL;
}

static void post(const char *path)
{
    struct ts_resp r;
    tp_req(&agent, "POST", path, NULL, &r);
    cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body);
    ts_resp_free(&r);
}

Test(memory, stalled_sse_clients_stay_bounded, .fini = fini, .timeout = 240)
{
    /* A small ASan quarantine, so freed ring entries do not count as growth
     * in sanitizer builds; ignored otherwise. */
    const char *env[] = {"TELEMETRY_CATEGORIES=system",
                         "ASAN_OPTIONS=quarantine_size_mb=4:detect_leaks=1", NULL};
    tp_agent_start(&agent, env, 1, 0);
    int pid = ts_proc_pid(agent.proc);
    long rss_start = rss_kib(pid);

    struct readers *rs = calloc(1, sizeof *rs);
    int stalled[STALLED];
    for (int i = 0; i < STALLED; i++)
        stalled[i] = connect_stream(agent.port, 1);
    rs->n = CLIENTS - STALLED;
    for (int i = 0; i < rs->n; i++)
        rs->r[i].fd = connect_stream(agent.port, 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, read_all, rs), 0);

    /* warm up: fill the ring and every client's buffers once */
    char path[128];
    snprintf(path, sizeof path, "/publisher/events?n=%d&pad=%d", 2 * BURST, PAD);
    post(path);
    ts_sleep_ms(500);
    long rss_before = rss_kib(pid);

    long long t0 = ts_now_ms();
    snprintf(path, sizeof path, "/publisher/events?n=%d&pad=%d", BURST, PAD);
    long rss_peak = rss_before;
    for (int i = 0; i < EVENTS / BURST; i++) {
        post(path);
        long now = rss_kib(pid);
        if (now > rss_peak)
            rss_peak = now;
    }
    long long t_pub = ts_now_ms() - t0;
    post("/publisher/events?n=1&type=final.marker");

    /* every reading client gets to the end (possibly across gaps) */
    long long deadline = ts_now_ms() + 60000;
    while (__atomic_load_n(&rs->done_count, __ATOMIC_SEQ_CST) < rs->n && ts_now_ms() < deadline)
        ts_sleep_ms(50);
    long rss_after = rss_kib(pid);
    rs->stop = 1;
    pthread_join(th, NULL);

    size_t total = 0, min = (size_t)-1;
    for (int i = 0; i < rs->n; i++) {
        total += rs->r[i].bytes;
        if (rs->r[i].bytes < min)
            min = rs->r[i].bytes;
    }
    char figures[512];
    snprintf(figures, sizeof figures,
             "memory: VmRSS start %ld KiB, before %ld KiB, peak %ld KiB, after %ld KiB, "
             "growth from start %ld KiB, during publishing %ld KiB (bound %d KiB); %d events in "
             "%lld ms; %d readers got %zu MiB "
             "(min %zu KiB each), %d done\n",
             rss_start, rss_before, rss_peak, rss_after, rss_peak - rss_start,
             rss_peak - rss_before, GROWTH_BOUND_KIB, EVENTS, t_pub, rs->n, total >> 20, min >> 10,
             rs->done_count);
    /* stderr for a direct run; Criterion's TAP mode swallows it, so meson
     * gets the figures in the file MEMORY_REPORT names. */
    fprintf(stderr, "%s\n", figures);
    const char *report = getenv("MEMORY_REPORT");
    FILE *rf = report != NULL ? fopen(report, "w") : NULL;
    if (rf != NULL) {
        fprintf(rf, "%s\n", figures);
        fclose(rf);
    }
    cr_assert_eq(rs->done_count, rs->n, "readers that reached the final event");
    /* from before the clients connected: their buffers count too */
    cr_assert_lt(rss_peak - rss_start, GROWTH_BOUND_KIB, "VmRSS grew by %ld KiB",
                 rss_peak - rss_start);

    /* the agent is still healthy and the stalled clients did not stop it */
    struct ts_resp r;
    tp_req(&agent, "GET", "/telemetry", NULL, &r);
    cr_assert_eq(r.status, 200);
    ts_resp_free(&r);
    for (int i = 0; i < STALLED; i++)
        close(stalled[i]);
    for (int i = 0; i < rs->n; i++)
        close(rs->r[i].fd);
    free(rs);
    tp_agent_stop(&agent);
}
