/* sse.c - s2-local's read sessions as Server-Sent Events. */
#include "sse.h"
#include "s2/logf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "store.h"

/* Input a session connection buffers at most: the client has nothing to
 * send during a session, and reading stays on only to notice it closing. */
#define SSE_INPUT_MAX 4096

struct sse {
    struct s2l_sse_hub *hub;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct s2l_sse_params p; /* p.start: the next seq_num to read */
    struct event *pump_ev;   /* activated to read the next batch */
    struct event *ping_ev;
    struct event *wait_ev;
    bool following;    /* at the tail, waiting for appends */
    bool pinged;       /* the first ping at the tail went out */
    bool wait_expired; /* wait seconds passed without a batch */
    bool blocked;      /* waiting for the output to drain */
    struct sse *prev, *next;
};

struct s2l_sse_hub {
    struct event_base *base;
    uint32_t max_sessions;
    uint32_t heartbeat_ms;
    uint32_t n;
    size_t peak_output;
    uint64_t rng;
    s2l_log_fn log;
    void *log_arg;
    struct sse *head;
};

/* One log line through the hub's sink. */
#define hlog(hub, level, ...) s2_logf((hub)->log, (hub)->log_arg, (level), __VA_ARGS__)

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* xorshift64: spreads the pings of many sessions (no security role). */
static uint64_t next_rand(struct s2l_sse_hub *hub)
{
    uint64_t x = hub->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    hub->rng = x;
    return x;
}

static size_t pending_output(const struct sse *s)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(s->evcon);
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void arm_ping(struct sse *s)
{
    uint32_t ms = s->hub->heartbeat_ms;
    if (ms == 0)
        ms = 5000 + (uint32_t)(next_rand(s->hub) % 10000);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(s->ping_ev, &tv);
}

static void arm_wait(struct sse *s)
{
    struct timeval tv = {(time_t)s->p.wait_s, 0};
    evtimer_add(s->wait_ev, &tv);
}

static void sse_unlink_free(struct sse *s)
{
    struct s2l_sse_hub *hub = s->hub;
    if (s->prev)
        s->prev->next = s->next;
    else
        hub->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    hub->n--;
    event_free(s->pump_ev);
    event_free(s->ping_ev);
    event_free(s->wait_ev);
    free(s);
}

/* End the response after a last event (may be NULL) and free s. */
static void sse_end(struct sse *s, const char *last)
{
    struct evhttp_request *req = s->req;
    struct evhttp_connection *evcon = s->evcon;
    struct evbuffer *buf = last ? evbuffer_new() : NULL;
    if (buf != NULL && evbuffer_add(buf, last, strlen(last)) == 0)
        evhttp_send_reply_chunk(req, buf);
    if (buf != NULL)
        evbuffer_free(buf);
    /* The connection may serve more requests: leave it as it was. */
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    if (bev != NULL)
        bufferevent_setwatermark(bev, EV_READ, 0, 0);
    sse_unlink_free(s);
    evhttp_send_reply_end(req);
}

static void sse_end_done(struct sse *s)
{
    sse_end(s, "data: [DONE]\n\n");
}

static void sse_end_error(struct sse *s, const char *code, const char *message)
{
    char ev[512];
    snprintf(ev, sizeof ev, "event: error\ndata: {\"code\":\"%s\",\"message\":\"%s\"}\n\n", code,
             message);
    sse_end(s, ev);
}

static void on_flushed(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct sse *s = arg;
    if (s->blocked) {
        s->blocked = false;
        event_active(s->pump_ev, 0, 0);
    }
}

/* Queue buf (emptied) on the connection; the flush callback resumes a
 * blocked session. */
static void sse_send(struct sse *s, struct evbuffer *buf)
{
    evhttp_send_reply_chunk_with_cb(s->req, buf, on_flushed, s);
}

static int add_tail(struct evbuffer *buf, const struct s2l_stream *st)
{
    uint64_t seq, ts;
    s2l_stream_tail(st, &seq, &ts);
    return evbuffer_add_printf(buf, "\"tail\":{\"seq_num\":%" PRIu64 ",\"timestamp\":%" PRIu64 "}",
                               seq, ts) < 0
               ? -ENOMEM
               : 0;
}

static void sse_ping(struct sse *s)
{
    struct evbuffer *buf = evbuffer_new();
    int rc = buf ? 0 : -ENOMEM;
    if (rc == 0 &&
        evbuffer_add_printf(buf, "event: ping\ndata: {\"timestamp\":%" PRIu64 ",", now_ms()) < 0)
        rc = -ENOMEM;
    if (rc == 0)
        rc = add_tail(buf, s->p.st);
    if (rc == 0 && evbuffer_add(buf, "}\n\n", 3) != 0)
        rc = -ENOMEM;
    if (rc == 0) {
        sse_send(s, buf);
        arm_ping(s);
    }
    if (buf)
        evbuffer_free(buf);
    if (rc != 0)
        sse_end_error(s, "other", "out of memory");
}

static bool may_follow(const struct s2l_sse_params *p)
{
    return p->wait_s > 0 || (!p->has_count && !p->has_bytes && !p->has_until);
}

/* The session caught up with the tail. */
static void sse_at_tail(struct sse *s)
{
    if (!may_follow(&s->p) || s->wait_expired) {
        sse_end_done(s);
        return;
    }
    if (s->following)
        return;
    s->following = true;
    if (s->p.wait_s > 0 && !evtimer_pending(s->wait_ev, NULL))
        arm_wait(s);
    if (!s->pinged) {
        /* Tell the client at once that it is caught up (and the tail). */
        s->pinged = true;
        sse_ping(s);
    } else if (!evtimer_pending(s->ping_ev, NULL)) {
        arm_ping(s);
    }
}

/* Send one batch from p.start, or end the session, or wait at the tail. */
static void sse_pump(struct sse *s)
{
    struct s2l_sse_params *p = &s->p;
    struct evbuffer *recs = NULL, *ev = NULL;
    if ((p->has_count && p->count == 0) || (p->has_bytes && p->bytes == 0)) {
        sse_end_done(s);
        return;
    }
    uint64_t tail, last_ts;
    s2l_stream_tail(p->st, &tail, &last_ts);
    uint64_t trim = s2l_stream_trim_point(p->st);
    if (p->start < trim)
        p->start = trim;
    if (p->start >= tail) {
        sse_at_tail(s);
        return;
    }
    s->following = false;
    struct s2l_read_bounds b = {p->fmt, S2L_SSE_BATCH_RECORDS, S2L_SSE_BATCH_BYTES, p->has_until,
                                p->until};
    if (p->has_count && p->count < b.count)
        b.count = p->count;
    if (p->has_bytes && p->bytes < b.bytes)
        b.bytes = p->bytes;
    recs = evbuffer_new();
    ev = evbuffer_new();
    if (recs == NULL || ev == NULL) {
        sse_end_error(s, "other", "out of memory");
        goto OUT;
    }
    struct s2l_read_stats stats;
    int rc = s2l_records_write(p->st, p->start, &b, recs, &stats);
    if (rc == -ENOMEM) {
        sse_end_error(s, "other", "out of memory");
        goto OUT;
    }
    if (rc != 0) {
        hlog(s->hub, 3, "read session: reading failed: %s", strerror(-rc));
        sse_end_error(s, "storage", "reading the stream failed");
        goto OUT;
    }
    if (stats.n == 0) {
        /* The next record is past until or the byte bound. */
        sse_end_done(s);
        goto OUT;
    }
    p->start = stats.last_seq + 1;
    if (p->has_count)
        p->count -= stats.n;
    if (p->has_bytes)
        p->bytes -= stats.bytes;
    p->sent_count += stats.n;
    p->sent_bytes += stats.bytes;
    if (evbuffer_add_printf(
            ev, "event: batch\nid: %" PRIu64 ",%" PRIu64 ",%" PRIu64 "\ndata: {\"records\":[",
            stats.last_seq, p->sent_count, p->sent_bytes) < 0 ||
        evbuffer_add_buffer(ev, recs) != 0 || evbuffer_add(ev, "],", 2) != 0 ||
        add_tail(ev, p->st) != 0 || evbuffer_add(ev, "}\n\n", 3) != 0) {
        sse_end_error(s, "other", "out of memory");
        goto OUT;
    }
    sse_send(s, ev);
    if (p->wait_s > 0) {
        s->wait_expired = false;
        arm_wait(s);
    }
    arm_ping(s);
    size_t pending = pending_output(s);
    if (pending > s->hub->peak_output)
        s->hub->peak_output = pending;
    if (pending < S2L_SSE_PENDING_MAX)
        event_active(s->pump_ev, 0, 0);
    else
        s->blocked = true;
OUT:
    if (recs)
        evbuffer_free(recs);
    if (ev)
        evbuffer_free(ev);
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sse_pump(arg);
}

static void on_ping(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sse *s = arg;
    if (s->following)
        sse_ping(s);
    else
        arm_ping(s);
}

static void on_wait(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sse *s = arg;
    if (s->following)
        sse_end_done(s);
    else
        s->wait_expired = true;
}

/* The client went away (or the server's connections are being freed). */
static void on_closed(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct sse *s = arg;
    struct evhttp_request *req = s->req;
    sse_unlink_free(s);
    /* A detached request is ours to free; an attached one libevent frees. */
    if (evhttp_request_get_connection(req) == NULL)
        evhttp_request_free(req);
}

int s2l_sse_hub_new(struct event_base *base, const struct s2l_sse_hub_opts *opts, s2l_log_fn log,
                    void *log_arg, struct s2l_sse_hub **out)
{
    struct s2l_sse_hub *hub = calloc(1, sizeof *hub);
    if (hub == NULL)
        return -ENOMEM;
    hub->base = base;
    hub->max_sessions = opts->max_sessions ? opts->max_sessions : S2L_DEFAULT_MAX_SSE_SESSIONS;
    hub->heartbeat_ms = opts->heartbeat_ms;
    hub->rng = (now_ms() ^ (uint64_t)(uintptr_t)hub) | 1;
    hub->log = log;
    hub->log_arg = log_arg;
    *out = hub;
    return 0;
}

bool s2l_sse_hub_full(const struct s2l_sse_hub *hub)
{
    return hub->n >= hub->max_sessions;
}

uint32_t s2l_sse_hub_sessions(const struct s2l_sse_hub *hub)
{
    return hub->n;
}

size_t s2l_sse_hub_peak_output(const struct s2l_sse_hub *hub)
{
    return hub->peak_output;
}

int s2l_sse_start(struct s2l_sse_hub *hub, struct evhttp_request *req,
                  const struct s2l_sse_params *p)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    if (bev == NULL)
        return -ENOTCONN;
    struct sse *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->pump_ev = event_new(hub->base, -1, 0, on_pump, s);
    s->ping_ev = evtimer_new(hub->base, on_ping, s);
    s->wait_ev = evtimer_new(hub->base, on_wait, s);
    if (s->pump_ev == NULL || s->ping_ev == NULL || s->wait_ev == NULL) {
        if (s->pump_ev)
            event_free(s->pump_ev);
        if (s->ping_ev)
            event_free(s->ping_ev);
        if (s->wait_ev)
            event_free(s->wait_ev);
        free(s);
        return -ENOMEM;
    }
    s->hub = hub;
    s->req = req;
    s->evcon = evcon;
    s->p = *p;
    s->next = hub->head;
    if (hub->head)
        hub->head->prev = s;
    hub->head = s;
    hub->n++;

    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_remove_header(h, "Content-Type");
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache, no-transform");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    evhttp_send_reply_start(req, 200, "OK");
    evhttp_connection_set_closecb(evcon, on_closed, s);
    bufferevent_setwatermark(bev, EV_READ, 0, SSE_INPUT_MAX);
    event_active(s->pump_ev, 0, 0);
    return 0;
}

void s2l_sse_wake(struct s2l_sse_hub *hub, const struct s2l_stream *st)
{
    for (struct sse *s = hub->head; s != NULL; s = s->next) {
        if (s->following && s->p.st == st)
            event_active(s->pump_ev, 0, 0);
    }
}

void s2l_sse_drain(struct s2l_sse_hub *hub)
{
    while (hub->head != NULL)
        sse_end_error(hub->head, "server_draining", "s2-local is shutting down");
}

void s2l_sse_hub_free(struct s2l_sse_hub *hub)
{
    if (hub == NULL)
        return;
    s2l_sse_drain(hub);
    free(hub);
}
