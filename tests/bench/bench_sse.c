/*
 * bench_sse.c - SSE fan-out load: CLIENTS connections follow
 * GET /telemetry/stream and check the ids they get, IDLE more connections
 * send the request and never read, and one publisher connection publishes
 * RATE events/s for SECONDS through the publisher plugin's route
 * (POST /publisher/events?n=K: the shared publish service, no HTTP per
 * event). The agent's CPU (utime + stime from /proc/PID/stat over the
 * publish interval) and its peak RSS (VmRSS sampled every 50 ms) are
 * measured. Prints one JSON line:
 *
 *   bench_sse HOST PORT AGENT_PID CLIENTS IDLE RATE SECONDS PAD
 *
 * {"published","first_seq","last_seq","seconds","delivered","delivered_rate",
 *  "lost","clients_lost","clients_complete","cpu_seconds","cpu_cores",
 *  "rss_start_kib","rss_max_kib"}
 * lost: events in [first_seq, last_seq] that some live client did not get
 * (summed over clients); clients_lost: live clients that missed any.
 */
#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* How long the clients get to catch up after the last publish. */
#define BS_DRAIN_SECONDS 5.0
/* How long the clients get to connect. */
#define BS_CONNECT_SECONDS 10.0
/* Most events per publish request. */
#define BS_MAX_PER_REQUEST 1000

struct bs_client {
    struct bs *bs;
    int fd;
    struct event *ev;
    int connected, failed;
    size_t head_len; /* bytes of the response head kept in head[] */
    char head[1024];
    int at_bol;                 /* at the start of a line */
    int match;                  /* bytes of "id: " matched at the start of this line */
    int in_id;                  /* reading the digits of an id line */
    uint64_t cur;               /* the id being read */
    uint64_t first_id, last_id; /* the first and the last id seen */
    uint64_t frames;            /* ids seen */
    uint64_t gap_lost;          /* ids skipped between two ids seen */
    uint64_t disorder;          /* ids not above the previous one */
};

struct bs {
    struct event_base *base;
    const char *host;
    int port, pid;
    int nclients, nidle;
    double rate, seconds;
    int pad;
    struct bs_client *clients;
    int *idle_fds;
    int connected;

    struct evhttp_connection *pub;
    int pub_busy;
    uint64_t published, first_seq, last_seq;
    int pub_failed;
    double t_start, t_last_delivery;
    int phase; /* 0 connecting, 1 publishing, 2 draining, 3 done */
    double phase_t;
    struct event *tick;
    long rss_start, rss_max;
    double cpu_start, cpu_end;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of pid, in seconds. */
static double proc_cpu(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name, which is in parentheses. */
    char *p = strrchr(buf, ')');
    unsigned long utime = 0, stime = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static long proc_rss_kib(int pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static void client_id(struct bs_client *c, uint64_t id)
{
    if (c->frames == 0)
        c->first_id = id;
    else if (id <= c->last_id)
        c->disorder++;
    else
        c->gap_lost += id - c->last_id - 1;
    c->last_id = id;
    c->frames++;
    c->bs->t_last_delivery = now_s();
}

/* Scan SSE bytes for "id: N" lines; everything else is skipped. */
static void client_scan(struct bs_client *c, const char *p, size_t len)
{
    static const char prefix[] = "id: ";
    const char *end = p + len;
    while (p < end) {
        if (c->in_id) {
            while (p < end && *p >= '0' && *p <= '9')
                c->cur = c->cur * 10 + (uint64_t)(*p++ - '0');
            if (p == end)
                return;
            c->in_id = 0;
            client_id(c, c->cur);
            c->at_bol = 0;
        }
        if (c->at_bol) {
            while (p < end && c->match < 4 && *p == prefix[c->match]) {
                c->match++;
                p++;
            }
            if (p == end && c->match < 4)
                return;
            if (c->match == 4) {
                c->in_id = 1;
                c->cur = 0;
                c->match = 0;
                c->at_bol = 0;
                continue;
            }
            c->match = 0;
            c->at_bol = 0;
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            return;
        p = nl + 1;
        c->at_bol = 1;
    }
}

/* Raw socket reads: SSE frames arrive as HTTP chunks, one frame each; the
 * chunk-size lines are lines like any other to the scanner, and a frame is
 * never split across chunks, so "id: N" lines are found as they come. This
 * keeps the client's cost per frame far below the agent's. */
static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    static char buf[256 * 1024];
    struct bs_client *c = arg;
    (void)what;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            if (c->bs->phase < 3)
                c->failed = 1;
            event_del(c->ev);
        }
        return;
    }
    const char *p = buf;
    size_t len = (size_t)n;
    if (!c->connected) {
        /* The response head: keep it until its blank line. */
        size_t take =
            len < sizeof c->head - 1 - c->head_len ? len : sizeof c->head - 1 - c->head_len;
        memcpy(c->head + c->head_len, p, take);
        c->head_len += take;
        c->head[c->head_len] = '\0';
        char *eoh = strstr(c->head, "\r\n\r\n");
        if (eoh == NULL) {
            if (c->head_len + 1 >= sizeof c->head)
                c->failed = 1;
            return;
        }
        if (strncmp(c->head, "HTTP/1.1 200", 12) != 0) {
            fprintf(stderr, "bench_sse: stream answered: %.40s\n", c->head);
            c->failed = 1;
            event_del(c->ev);
            return;
        }
        size_t used = (size_t)(eoh + 4 - c->head) - (c->head_len - take);
        p += used;
        len -= used;
        c->connected = 1;
        c->bs->connected++;
    }
    client_scan(c, p, len);
}

static int client_start(struct bs *bs, struct bs_client *c)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)bs->port)};
    char req[256];
    c->bs = bs;
    c->at_bol = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    inet_pton(AF_INET, bs->host, &sa.sin_addr);
    int n =
        snprintf(req, sizeof req, "GET /telemetry/stream HTTP/1.1\r\nHost: %s\r\n\r\n", bs->host);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        write(c->fd, req, (size_t)n) != n || evutil_make_socket_nonblocking(c->fd) != 0)
        return -errno;
    c->ev = event_new(bs->base, c->fd, EV_READ | EV_PERSIST, on_readable, c);
    return c->ev != NULL && event_add(c->ev, NULL) == 0 ? 0 : -ENOMEM;
}

/* A client that sends the request and never reads: a small receive buffer
 * so the agent's own output bound is what holds its backlog. */
static int idle_start(struct bs *bs)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)bs->port)};
    char req[256];
    int small = 4096;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    inet_pton(AF_INET, bs->host, &sa.sin_addr);
    int n =
        snprintf(req, sizeof req, "GET /telemetry/stream HTTP/1.1\r\nHost: %s\r\n\r\n", bs->host);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || write(fd, req, (size_t)n) != n) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static void on_published(struct evhttp_request *req, void *arg)
{
    struct bs *bs = arg;
    bs->pub_busy = 0;
    if (req == NULL || evhttp_request_get_response_code(req) != 200) {
        fprintf(stderr, "bench_sse: publish answered %d\n",
                req ? evhttp_request_get_response_code(req) : 0);
        bs->pub_failed = 1;
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    cJSON *o = cJSON_ParseWithLength((const char *)evbuffer_pullup(in, -1), len);
    const cJSON *adm = cJSON_GetObjectItemCaseSensitive(o, "admitted");
    const cJSON *fs = cJSON_GetObjectItemCaseSensitive(o, "first_seq");
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(o, "last_seq");
    if (cJSON_IsNumber(adm) && cJSON_IsNumber(fs) && cJSON_IsNumber(ls) && adm->valuedouble > 0) {
        bs->published += (uint64_t)adm->valuedouble;
        if (bs->first_seq == 0)
            bs->first_seq = (uint64_t)fs->valuedouble;
        bs->last_seq = (uint64_t)ls->valuedouble;
    } else {
        fprintf(stderr, "bench_sse: events not admitted: %.*s\n", (int)len,
                (const char *)evbuffer_pullup(in, -1));
        bs->pub_failed = 1;
    }
    cJSON_Delete(o);
}

static void publish_some(struct bs *bs, uint64_t n)
{
    char uri[256];
    struct evhttp_request *req = evhttp_request_new(on_published, bs);
    if (req == NULL)
        return;
    snprintf(uri, sizeof uri,
             "/publisher/events?n=%" PRIu64 "&type=console_log&category=console&pad=%d", n,
             bs->pad);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", bs->host);
    if (evhttp_make_request(bs->pub, req, EVHTTP_REQ_POST, uri) == 0)
        bs->pub_busy = 1;
}

static int all_caught_up(struct bs *bs)
{
    for (int i = 0; i < bs->nclients; i++) {
        struct bs_client *c = &bs->clients[i];
        if (!c->failed && c->last_id < bs->last_seq)
            return 0;
    }
    return 1;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct bs *bs = arg;
    double t = now_s();
    (void)fd;
    (void)what;
    long rss = proc_rss_kib(bs->pid);
    if (rss > bs->rss_max)
        bs->rss_max = rss;
    switch (bs->phase) {
    case 0:
        if (bs->connected == bs->nclients) {
            bs->phase = 1;
            bs->t_start = bs->phase_t = t;
            bs->cpu_start = proc_cpu(bs->pid);
        } else if (t - bs->phase_t > BS_CONNECT_SECONDS) {
            fprintf(stderr, "bench_sse: only %d of %d clients connected\n", bs->connected,
                    bs->nclients);
            bs->phase = 3;
            event_base_loopbreak(bs->base);
        }
        break;
    case 1: {
        double el = t - bs->t_start;
        if (el >= bs->seconds || bs->pub_failed) {
            if (!bs->pub_busy) {
                bs->cpu_end = proc_cpu(bs->pid);
                bs->phase = 2;
                bs->phase_t = t;
            }
            break;
        }
        uint64_t target = (uint64_t)(bs->rate * el);
        if (!bs->pub_busy && target > bs->published) {
            uint64_t n = target - bs->published;
            publish_some(bs, n > BS_MAX_PER_REQUEST ? BS_MAX_PER_REQUEST : n);
        }
        break;
    }
    case 2:
        if (all_caught_up(bs) || t - bs->phase_t > BS_DRAIN_SECONDS) {
            bs->phase = 3;
            event_base_loopbreak(bs->base);
        }
        break;
    default:
        break;
    }
}

int main(int argc, char **argv)
{
    struct bs bs = {0};
    int rc = 1;
    if (argc != 9) {
        fprintf(stderr, "usage: bench_sse HOST PORT AGENT_PID CLIENTS IDLE RATE SECONDS PAD\n");
        return 2;
    }
    bs.host = argv[1];
    bs.port = atoi(argv[2]);
    bs.pid = atoi(argv[3]);
    bs.nclients = atoi(argv[4]);
    bs.nidle = atoi(argv[5]);
    bs.rate = atof(argv[6]);
    bs.seconds = atof(argv[7]);
    bs.pad = atoi(argv[8]);
    if (bs.nclients < 1 || bs.nclients > 1000 || bs.nidle < 0 || bs.nidle > 100 || bs.rate <= 0 ||
        bs.seconds <= 0 || bs.pad < 0 || bs.pad > 65536)
        return 2;
    bs.clients = calloc((size_t)bs.nclients, sizeof *bs.clients);
    bs.idle_fds = calloc((size_t)bs.nidle + 1, sizeof *bs.idle_fds);
    if (bs.clients == NULL || bs.idle_fds == NULL || (bs.base = event_base_new()) == NULL)
        goto out;
    bs.rss_start = bs.rss_max = proc_rss_kib(bs.pid);
    for (int i = 0; i < bs.nclients; i++)
        if (client_start(&bs, &bs.clients[i]) != 0)
            goto out;
    for (int i = 0; i < bs.nidle; i++)
        if ((bs.idle_fds[i] = idle_start(&bs)) < 0) {
            fprintf(stderr, "bench_sse: idle client: %s\n", strerror(-bs.idle_fds[i]));
            bs.idle_fds[i] = -1;
            goto out;
        }
    bs.pub = evhttp_connection_base_new(bs.base, NULL, bs.host, (unsigned short)bs.port);
    struct timeval tv = {0, 5 * 1000};
    bs.tick = event_new(bs.base, -1, EV_PERSIST, on_tick, &bs);
    if (bs.pub == NULL || bs.tick == NULL || event_add(bs.tick, &tv) != 0)
        goto out;
    bs.phase_t = now_s();
    event_base_dispatch(bs.base);
    if (bs.phase != 3 || bs.connected < bs.nclients || bs.published == 0) {
        fprintf(stderr,
                "bench_sse: the run did not complete (connected %d, published %" PRIu64 ")\n",
                bs.connected, bs.published);
        goto out;
    }

    /* Nothing else publishes while this runs: every id a client sees is one
     * of [first_seq, last_seq], and it should see all of them, in order. */
    uint64_t delivered = 0, lost = 0, disorder = 0;
    int clients_lost = 0, complete = 0;
    for (int i = 0; i < bs.nclients; i++) {
        struct bs_client *c = &bs.clients[i];
        uint64_t l = c->gap_lost;
        if (c->frames == 0)
            l = bs.last_seq - bs.first_seq + 1;
        else {
            l += c->first_id > bs.first_seq ? c->first_id - bs.first_seq : 0;
            l += c->last_id < bs.last_seq ? bs.last_seq - c->last_id : 0;
        }
        delivered += c->frames;
        disorder += c->disorder;
        lost += l;
        clients_lost += l > 0;
        complete += !c->failed && c->last_id >= bs.last_seq;
    }
    double span = bs.t_last_delivery > bs.t_start ? bs.t_last_delivery - bs.t_start : 1e-9;
    double pub_seconds = bs.seconds;
    printf("{\"published\":%" PRIu64 ",\"first_seq\":%" PRIu64 ",\"last_seq\":%" PRIu64
           ",\"seconds\":%.3f,\"publish_rate\":%.1f,\"delivered\":%" PRIu64
           ",\"delivered_rate\":%.1f,\"lost\":%" PRIu64 ",\"disorder\":%" PRIu64
           ",\"clients_lost\":%d,\"clients_complete\":%d,\"cpu_seconds\":%.3f,\"cpu_cores\":%.3f,"
           "\"rss_start_kib\":%ld,\"rss_max_kib\":%ld}\n",
           bs.published, bs.first_seq, bs.last_seq, span, (double)bs.published / pub_seconds,
           delivered, (double)delivered / span, lost, disorder, clients_lost, complete,
           bs.cpu_end - bs.cpu_start, (bs.cpu_end - bs.cpu_start) / pub_seconds, bs.rss_start,
           bs.rss_max);
    rc = 0;
out:
    for (int i = 0; bs.idle_fds != NULL && i < bs.nidle; i++)
        if (bs.idle_fds[i] > 0)
            close(bs.idle_fds[i]);
    for (int i = 0; bs.clients != NULL && i < bs.nclients; i++) {
        if (bs.clients[i].ev != NULL)
            event_free(bs.clients[i].ev);
        if (bs.clients[i].fd > 0)
            close(bs.clients[i].fd);
    }
    if (bs.pub != NULL)
        evhttp_connection_free(bs.pub);
    if (bs.tick != NULL)
        event_free(bs.tick);
    if (bs.base != NULL)
        event_base_free(bs.base);
    free(bs.clients);
    free(bs.idle_fds);
    return rc;
}
