/*
 * router.c - route table, dispatch, 404/405, request ids, request observer.
 */
#include "router.h"

#include "log.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ROUTES_MAX 512
#define OBSERVERS_MAX 64
#define PATH_MAX_LEN 1024
#define REQUEST_ID_MAX 128
/* While a reply is deferred the router keeps reading to notice a client
 * that goes away; this bounds what a client can pile up meanwhile. */
#define DEFERRED_READ_MAX (256u << 10)
/* Records of ended requests kept for reuse; enough for typical keep-alive
 * concurrency, bounded so a burst does not pin memory. */
#define INFLIGHT_SPARE_MAX 64

struct route {
    char *method;
    char *path;
    size_t path_len; /* compared first: most routes differ in length */
    char *operation_id;
    uint32_t flags;
    agent_route_fn handler;
    void *arg;
    const void *owner;
    int removed; /* kept until router_free: requests in flight point here */
};

struct observer {
    agent_observer_fn fn;
    void *arg;
    const void *owner;
};

/* A request dispatched to a route and not ended yet. */
struct inflight {
    struct inflight *prev, *next;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    const struct route *route;
    const char *method; /* static string */
    char request_id[REQUEST_ID_MAX + 1];
    struct timespec t0;
};

struct router {
    struct evhttp *http;
    struct route **routes; /* each route allocated alone: in-flight requests point at it */
    size_t n_routes, cap_routes;
    struct observer observers[OBSERVERS_MAX];
    size_t n_observers;
    struct inflight *head;
    size_t n_active;
    int closing;
    router_idle_fn idle_fn;
    void *idle_arg;
    char id_prefix[80]; /* "<hostname>/<10 random chars>" */
    size_t id_prefix_len;
    unsigned long long id_counter;
    /* Ended requests' records, reused: a request costs no allocation. */
    struct inflight *spare[INFLIGHT_SPARE_MAX];
    size_t n_spare;
    /* The Date header of this second (see set_date). */
    time_t date_sec;
    char date[32];
};

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "UNKNOWN";
}

static int route_method_valid(const char *m)
{
    static const char *const ok[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; m != NULL && i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strcmp(m, ok[i]) == 0)
            return 1;
    }
    return 0;
}

int router_request_id_valid(const char *s)
{
    size_t n = 0;
    if (s == NULL)
        return 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (n >= REQUEST_ID_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._:/+=@-", c) != NULL))
            return 0;
    }
    return n > 0;
}

static void make_prefix(struct router *r)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    char host[64] = "localhost";
    unsigned char rnd[10];
    char tail[11];

    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
        strcpy(host, "localhost");
    host[sizeof(host) - 1] = '\0';
    /* Keep the id within the charset accepted inbound, '/' only once. */
    for (char *p = host; *p; p++) {
        char one[2] = {*p, '\0'};
        if (*p == '/' || !router_request_id_valid(one))
            *p = '-';
    }
    evutil_secure_rng_get_bytes(rnd, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++)
        tail[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
    tail[10] = '\0';
    snprintf(r->id_prefix, sizeof(r->id_prefix), "%s/%s", host, tail);
    r->id_prefix_len = strlen(r->id_prefix);
}

/* Writes "<prefix>-<counter, at least 6 digits>" into out (REQUEST_ID_MAX + 1
 * bytes) without printf: this runs on every request without an id. */
static void next_request_id(struct router *r, char *out)
{
    char digits[24];
    size_t nd = 0;
    unsigned long long v = ++r->id_counter;

    do {
        digits[nd++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (nd < 6)
        digits[nd++] = '0';
    /* The prefix is at most 75 bytes, the counter 20 digits: it fits. */
    memcpy(out, r->id_prefix, r->id_prefix_len);
    char *p = out + r->id_prefix_len;
    *p++ = '-';
    while (nd > 0)
        *p++ = digits[--nd];
    *p = '\0';
}

/* The Date header, formatted once a second: libevent would otherwise
 * format it with gmtime and printf for every reply; it keeps a Date that
 * is already set. Same form as libevent's (RFC 7231 IMF-fixdate). */
static void set_date(struct router *r, struct evkeyvalq *out)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    if (now != r->date_sec || r->date[0] == '\0') {
        if (gmtime_r(&now, &tm) == NULL)
            return; /* libevent adds its own */
        snprintf(r->date, sizeof(r->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        r->date_sec = now;
    }
    evhttp_add_header(out, "Date", r->date);
}

static struct inflight *inflight_get(struct router *r)
{
    if (r->n_spare > 0) {
        struct inflight *f = r->spare[--r->n_spare];
        memset(f, 0, sizeof(*f));
        return f;
    }
    return calloc(1, sizeof(struct inflight));
}

static void inflight_put(struct router *r, struct inflight *f)
{
    if (r->n_spare < INFLIGHT_SPARE_MAX)
        r->spare[r->n_spare++] = f;
    else
        free(f);
}

void router_reply_message(struct evhttp_request *req, int status, const char *msg)
{
    struct evbuffer *body = evbuffer_new();
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    const char *reason;

    if (o != NULL && cJSON_AddStringToObject(o, "message", msg) != NULL)
        text = cJSON_PrintUnformatted(o);
    if (body != NULL) {
        if (text != NULL)
            evbuffer_add(body, text, strlen(text));
        else
            evbuffer_add_printf(body, "{\"message\":\"internal error\"}");
    }
    switch (status) {
    case 404:
        reason = "Not Found";
        break;
    case 405:
        reason = "Method Not Allowed";
        break;
    case 500:
        reason = "Internal Server Error";
        break;
    case 503:
        reason = "Service Unavailable";
        break;
    default:
        reason = NULL;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, status, reason, body);
    if (body != NULL)
        evbuffer_free(body);
    cJSON_free(text);
    cJSON_Delete(o);
}

static double elapsed_ms(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static struct inflight *find_by_req(const struct router *r, const struct evhttp_request *req)
{
    for (struct inflight *f = r->head; f != NULL; f = f->next) {
        if (f->req == req)
            return f;
    }
    return NULL;
}

static void unlink_inflight(struct router *r, struct inflight *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        r->head = f->next;
    if (f->next)
        f->next->prev = f->prev;
    r->n_active--;
}

/* End f: observe it once, forget it, and tell the idle watcher. */
static void finish(struct router *r, struct inflight *f, int status)
{
    struct agent_request_info info = {
        .struct_size = sizeof(info),
        .method = f->method,
        .path = f->route->path,
        .operation_id = f->route->operation_id,
        .request_id = f->request_id,
        .status = status,
        .duration_ms = elapsed_ms(&f->t0),
        .route_flags = f->route->flags,
    };
    unlink_inflight(r, f);
    if (hlog_enabled(AGENT_LOG_DEBUG))
        hlog(AGENT_LOG_DEBUG, "%s %s %d %.3fms id=%s", info.method, info.path, status,
             info.duration_ms, info.request_id);
    /* Index loop: stays in bounds even if an observer adds one. */
    for (size_t i = 0; i < r->n_observers; i++)
        r->observers[i].fn(&info, r->observers[i].arg);
    inflight_put(r, f);
    if (r->n_active == 0 && r->idle_fn != NULL) {
        router_idle_fn fn = r->idle_fn;
        r->idle_fn = NULL;
        fn(r->idle_arg);
    }
}

static void on_complete(struct evhttp_request *req, void *arg)
{
    struct router *r = arg;
    struct inflight *f = find_by_req(r, req);
    if (f == NULL)
        return;
    if (!(f->route->flags & AGENT_ROUTE_STREAMING)) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(req);
        if (evcon != NULL)
            bufferevent_setwatermark(evhttp_connection_get_bufferevent(evcon), EV_READ, 0, 0);
    }
    finish(r, f, evhttp_request_get_response_code(req));
}

/* The close callback of connections that carry non-streaming routes: the
 * connection went away before the request's reply completed. */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct router *r = arg;
    struct inflight *f = r->head;
    while (f != NULL) {
        struct inflight *next = f->next;
        if (f->evcon == evcon)
            finish(r, f, 0);
        f = next;
    }
}

/* Keep reading while a reply is deferred, as evhttp itself does while it
 * writes, so that a client closing the connection is noticed: evhttp then
 * detaches the request and frees the connection (on_close runs). */
static void watch_deferred(struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    bufferevent_data_cb rd, wr;
    bufferevent_event_cb ev;
    void *cbarg;

    bufferevent_getcb(bev, &rd, &wr, &ev, &cbarg);
    bufferevent_setcb(bev, NULL, wr, ev, cbarg);
    bufferevent_setwatermark(bev, EV_READ, 0, DEFERRED_READ_MAX);
    bufferevent_enable(bev, EV_READ);
}

static void dispatch(struct evhttp_request *req, void *arg)
{
    struct router *r = arg;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const char *rid = evhttp_find_header(in, "X-Request-Id");
    const char *method = method_name(evhttp_request_get_command(req));
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const struct route *match = NULL;
    char idbuf[REQUEST_ID_MAX + 1];
    char msg[PATH_MAX_LEN + 128];
    int path_known = 0;

    if (!router_request_id_valid(rid)) {
        next_request_id(r, idbuf);
        evhttp_remove_header(in, "X-Request-Id");
        evhttp_add_header(in, "X-Request-Id", idbuf);
        rid = idbuf;
    }
    evhttp_add_header(out, "X-Request-Id", rid);
    set_date(r, out);
    if (r->closing) {
        evhttp_add_header(out, "Connection", "close");
        router_reply_message(req, 503, "the agent is shutting down");
        return;
    }
    if (path == NULL || *path == '\0')
        path = "/";
    size_t path_len = strlen(path);
    if (path_len > PATH_MAX_LEN) {
        router_reply_message(req, 404, "no route for this path");
        return;
    }
    for (size_t i = 0; i < r->n_routes && match == NULL; i++) {
        const struct route *rt = r->routes[i];
        if (rt->removed || rt->path_len != path_len || memcmp(rt->path, path, path_len) != 0)
            continue;
        path_known = 1;
        if (strcmp(rt->method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0))
            match = rt;
    }
    if (match == NULL && !path_known) {
        snprintf(msg, sizeof(msg), "no route for %s %s", method, path);
        router_reply_message(req, 404, msg);
        return;
    }
    if (match == NULL) {
        char allow[256] = "";
        size_t used = 0;
        for (size_t i = 0; i < r->n_routes; i++) {
            const struct route *rt = r->routes[i];
            if (rt->removed || rt->path_len != path_len || memcmp(rt->path, path, path_len) != 0)
                continue;
            int w =
                snprintf(allow + used, sizeof(allow) - used, "%s%s", used ? ", " : "", rt->method);
            if (w < 0 || (size_t)w >= sizeof(allow) - used)
                break;
            used += (size_t)w;
        }
        evhttp_add_header(out, "Allow", allow);
        snprintf(msg, sizeof(msg), "method %s not allowed on %s; allowed: %s", method, path, allow);
        router_reply_message(req, 405, msg);
        return;
    }

    struct inflight *f = inflight_get(r);
    if (f == NULL) {
        router_reply_message(req, 503, "out of memory");
        return;
    }
    f->req = req;
    f->evcon = evhttp_request_get_connection(req);
    f->route = match;
    f->method = method;
    /* rid passed router_request_id_valid or is ours: at most REQUEST_ID_MAX. */
    memcpy(f->request_id, rid, strlen(rid) + 1);
    clock_gettime(CLOCK_MONOTONIC, &f->t0);
    f->next = r->head;
    if (r->head)
        r->head->prev = f;
    r->head = f;
    r->n_active++;
    evhttp_request_set_on_complete_cb(req, on_complete, r);
    if (!(match->flags & AGENT_ROUTE_STREAMING) && f->evcon != NULL)
        evhttp_connection_set_closecb(f->evcon, on_close, r);

    match->handler(req, match->arg);

    /* Still open after the handler: the reply is deferred (or queued). */
    if (!(match->flags & AGENT_ROUTE_STREAMING) && find_by_req(r, req) == f &&
        evhttp_request_get_connection(req) != NULL)
        watch_deferred(f->evcon);
}

int router_new(struct evhttp *http, struct router **out)
{
    struct router *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (r == NULL)
        return -ENOMEM;
    r->http = http;
    make_prefix(r);
    evhttp_set_gencb(http, dispatch, r);
    *out = r;
    return 0;
}

void router_free(struct router *r)
{
    if (r == NULL)
        return;
    while (r->head != NULL) {
        struct inflight *f = r->head;
        unlink_inflight(r, f);
        free(f);
    }
    for (size_t i = 0; i < r->n_spare; i++)
        free(r->spare[i]);
    for (size_t i = 0; i < r->n_routes; i++) {
        free(r->routes[i]->method);
        free(r->routes[i]->path);
        free(r->routes[i]->operation_id);
        free(r->routes[i]);
    }
    free(r->routes);
    free(r);
}

int router_add(struct router *r, const struct agent_route *route, const void *owner)
{
    struct route *rt = NULL;
    int rc = -ENOMEM;

    if (route == NULL || route->struct_size < sizeof(struct agent_route) ||
        !route_method_valid(route->method) || route->path == NULL || route->path[0] != '/' ||
        strlen(route->path) > PATH_MAX_LEN || strpbrk(route->path, "?# ") != NULL ||
        route->handler == NULL)
        return -EINVAL;
    for (size_t i = 0; i < r->n_routes; i++) {
        if (!r->routes[i]->removed && strcmp(r->routes[i]->path, route->path) == 0 &&
            strcmp(r->routes[i]->method, route->method) == 0)
            return -EEXIST;
    }
    if (r->n_routes == ROUTES_MAX)
        return -ENOSPC;
    if (r->n_routes == r->cap_routes) {
        size_t cap = r->cap_routes ? r->cap_routes * 2 : 32;
        struct route **a = realloc(r->routes, cap * sizeof(*a));
        if (a == NULL)
            return -ENOMEM;
        r->routes = a;
        r->cap_routes = cap;
    }
    rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        goto fail;
    rt->method = strdup(route->method);
    rt->path = strdup(route->path);
    rt->path_len = rt->path != NULL ? strlen(rt->path) : 0;
    rt->operation_id = route->operation_id ? strdup(route->operation_id) : NULL;
    if (rt->method == NULL || rt->path == NULL || (route->operation_id && !rt->operation_id))
        goto fail;
    rt->flags = route->flags;
    rt->handler = route->handler;
    rt->arg = route->arg;
    rt->owner = owner;
    r->routes[r->n_routes++] = rt;
    return 0;
fail:
    if (rt != NULL) {
        free(rt->method);
        free(rt->path);
        free(rt->operation_id);
        free(rt);
    }
    return rc;
}

int router_observer_add(struct router *r, agent_observer_fn fn, void *arg, const void *owner)
{
    if (fn == NULL)
        return -EINVAL;
    if (r->n_observers == OBSERVERS_MAX)
        return -ENOSPC;
    r->observers[r->n_observers++] = (struct observer){fn, arg, owner};
    return 0;
}

void router_remove_owner(struct router *r, const void *owner)
{
    size_t k = 0;
    for (size_t i = 0; i < r->n_routes; i++) {
        if (r->routes[i]->owner == owner)
            r->routes[i]->removed = 1;
    }
    for (size_t i = 0; i < r->n_observers; i++) {
        if (r->observers[i].owner != owner)
            r->observers[k++] = r->observers[i];
    }
    r->n_observers = k;
}

void router_request_end(struct router *r, struct evhttp_request *req, int status)
{
    struct inflight *f = find_by_req(r, req);
    if (f != NULL)
        finish(r, f, status);
}

void router_set_closing(struct router *r, int closing)
{
    r->closing = closing;
}

size_t router_active(const struct router *r)
{
    return r->n_active;
}

void router_on_idle(struct router *r, router_idle_fn fn, void *arg)
{
    r->idle_fn = fn;
    r->idle_arg = arg;
    if (fn != NULL && r->n_active == 0) {
        r->idle_fn = NULL;
        fn(arg);
    }
}
