/* stream.c - GET /telemetry/stream (SSE), one bus cursor per client. */
#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "agent/plugin.h"
#include "bus.h"
#include "httputil.h"

struct client {
    TAILQ_ENTRY(client) link;
    struct tel_stream *s;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *keepalive;
    uint64_t cursor; /* next seq to send */
    uint64_t skipped;
};

struct tel_stream {
    const struct agent_host_api *api;
    struct tel_bus *bus;
    struct timeval keepalive;
    size_t max_pending;
    unsigned sub_id;
    int subscribed;
    struct event *pump_ev; /* coalesces the publishes of one loop turn */
    struct evbuffer *scratch;
    size_t nclients;
    TAILQ_HEAD(, client) clients;
};

uint64_t tel_stream_start_after(const char *last_event_id, const char *replay, uint64_t current)
{
    if (last_event_id != NULL && last_event_id[0] != '\0') {
        /* digits only: "-1", "+5", " 5" and "5x" are not sequence numbers */
        uint64_t n = 0;
        const char *p = last_event_id;
        for (; *p >= '0' && *p <= '9'; p++) {
            uint64_t d = (uint64_t)(*p - '0');
            if (n > (UINT64_MAX - d) / 10)
                return current;
            n = n * 10 + d;
        }
        if (*p != '\0' || n == 0)
            return current;
        return n;
    }
    if (replay != NULL && strcmp(replay, "all") == 0)
        return 0;
    return current;
}

static size_t pending_output(const struct client *c)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
    return bev != NULL ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void on_drained(struct evhttp_connection *evcon, void *arg);

/* Send what the client can take now: frames until the pending output
 * reaches the cap. Copies the frames once into the connection's output. */
static void pump(struct client *c)
{
    struct tel_stream *s = c->s;
    struct evbuffer *b = s->scratch;
    size_t pending = pending_output(c);
    const struct tel_env *env;
    uint64_t skipped;

    while (pending + evbuffer_get_length(b) < s->max_pending &&
           tel_bus_read(s->bus, &c->cursor, &env, &skipped) == 0) {
        size_t len;
        const char *frame = tel_env_frame(env, &len);
        c->skipped += skipped;
        if (evbuffer_add(b, frame, len) != 0)
            break;
    }
    if (evbuffer_get_length(b) == 0)
        return;
    evhttp_send_reply_chunk_with_cb(c->req, b, on_drained, c);
    evbuffer_drain(b, evbuffer_get_length(b));
    event_add(c->keepalive, &s->keepalive);
}

/* The connection's output is empty: a stalled client may take more. */
static void on_drained(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    pump(arg);
}

static void on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    (void)fd;
    (void)what;
    /* A client with output still queued needs no keep-alive. */
    if (pending_output(c) == 0) {
        evbuffer_add(c->s->scratch, ":\n\n", 3);
        evhttp_send_reply_chunk_with_cb(c->req, c->s->scratch, on_drained, c);
        evbuffer_drain(c->s->scratch, evbuffer_get_length(c->s->scratch));
    }
    event_add(c->keepalive, &c->s->keepalive);
}

static void client_free(struct client *c)
{
    TAILQ_REMOVE(&c->s->clients, c, link);
    c->s->nclients--;
    event_free(c->keepalive);
    free(c);
}

/* The connection is going away (see c-anchors 3.2): the client left
 * (request detached: we free it) or the host is tearing the connection
 * down (libevent frees the request after this returns). */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct client *c = arg;
    struct tel_stream *s = c->s;
    struct evhttp_request *req = c->req;
    (void)evcon;
    s->api->request_end(s->api->host, req, 200);
    if (evhttp_request_get_connection(req) == NULL)
        evhttp_request_free(req);
    client_free(c);
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    struct tel_stream *s = arg;
    struct client *c;
    (void)fd;
    (void)what;
    TAILQ_FOREACH(c, &s->clients, link)
    pump(c);
}

static void on_publish(const struct tel_env *env, void *arg)
{
    struct tel_stream *s = arg;
    (void)env;
    if (!TAILQ_EMPTY(&s->clients))
        event_active(s->pump_ev, EV_WRITE, 0);
}

/* Count a header's values (names compare case-insensitively). */
static int header_count(struct evkeyvalq *h, const char *name, const char **value)
{
    int n = 0;
    struct evkeyval *kv;
    *value = NULL;
    TAILQ_FOREACH(kv, h, next)
    {
        if (strcasecmp(kv->key, name) == 0) {
            n++;
            *value = kv->value;
        }
    }
    return n;
}

void tel_stream_handle(struct evhttp_request *req, void *arg)
{
    struct tel_stream *s = arg;
    struct evkeyvalq query;
    struct client *c = NULL;
    const char *leid, *replay = NULL;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);

    TAILQ_INIT(&query);
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* HEAD of a stream: its headers, no body to hold open */
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Content-Type", "text/event-stream");
        evhttp_add_header(h, "Cache-Control", "no-cache");
        evhttp_send_reply(req, 200, "OK", NULL);
        goto out;
    }
    int n = header_count(evhttp_request_get_input_headers(req), "Last-Event-ID", &leid);
    if (n > 1) {
        tel_http_error(req, 400, "Expected one value for Last-Event-ID, got %d", n);
        goto out;
    }
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (q != NULL && evhttp_parse_query_str(q, &query) == 0)
        replay = evhttp_find_header(&query, "replay");

    c = calloc(1, sizeof *c);
    if (c == NULL || evcon == NULL ||
        (c->keepalive = evtimer_new(s->api->event_base(s->api->host), on_keepalive, c)) == NULL) {
        tel_http_error(req, 500, "out of memory");
        free(c);
        goto out;
    }
    c->s = s;
    c->req = req;
    c->evcon = evcon;
    c->cursor = tel_stream_start_after(leid, replay, tel_bus_last_seq(s->bus)) + 1;

    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    evhttp_add_header(h, "X-SSE-Content-Type", "application/json");
    evhttp_send_reply_start(req, 200, "OK");
    evhttp_connection_set_closecb(evcon, on_close, c);
    TAILQ_INSERT_TAIL(&s->clients, c, link);
    s->nclients++;
    event_add(c->keepalive, &s->keepalive);
    pump(c);
out:
    evhttp_clear_headers(&query);
}

void tel_stream_shutdown(struct tel_stream *s)
{
    struct client *c;
    if (s == NULL)
        return;
    while ((c = TAILQ_FIRST(&s->clients)) != NULL) {
        /* Ours no more: libevent finishes the reply (or frees it with the
         * connection); no callback of ours may run after this. */
        evhttp_connection_set_closecb(c->evcon, NULL, NULL);
        evhttp_send_reply_end(c->req);
        client_free(c);
    }
}

int tel_stream_new(const struct tel_stream_opts *opts, struct tel_stream **out)
{
    struct tel_stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    TAILQ_INIT(&s->clients);
    s->api = opts->api;
    s->bus = opts->bus;
    uint64_t ka = opts->keepalive_ms ? opts->keepalive_ms : TEL_STREAM_DEFAULT_KEEPALIVE_MS;
    s->keepalive.tv_sec = (time_t)(ka / 1000);
    s->keepalive.tv_usec = (suseconds_t)(ka % 1000) * 1000;
    s->max_pending = opts->max_pending ? opts->max_pending : TEL_STREAM_DEFAULT_MAX_PENDING;
    s->scratch = evbuffer_new();
    s->pump_ev = event_new(opts->api->event_base(opts->api->host), -1, 0, on_pump, s);
    if (s->scratch == NULL || s->pump_ev == NULL ||
        tel_bus_subscribe(s->bus, on_publish, s, &s->sub_id) != 0) {
        tel_stream_free(s);
        return -ENOMEM;
    }
    s->subscribed = 1;
    *out = s;
    return 0;
}

void tel_stream_free(struct tel_stream *s)
{
    if (s == NULL)
        return;
    tel_stream_shutdown(s);
    if (s->subscribed)
        tel_bus_unsubscribe(s->bus, s->sub_id);
    if (s->pump_ev != NULL)
        event_free(s->pump_ev);
    if (s->scratch != NULL)
        evbuffer_free(s->scratch);
    free(s);
}

size_t tel_stream_clients(const struct tel_stream *s)
{
    return s->nclients;
}
