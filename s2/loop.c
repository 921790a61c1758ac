/* loop.c - libcurl's multi socket interface driven by libevent. */
#include "s2/loop.h"

#include <errno.h>
#include <stdlib.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "curlso.h"

/* One transfer: its easy handle and who to tell when it ends. */
struct xfer {
    CURL *easy;
    s2_loop_done_fn done;
    void *arg;
    struct xfer *prev, *next;
};

/* Per-socket context, attached with curl_multi_assign. */
struct sock_ctx {
    struct s2_loop *loop;
    curl_socket_t fd;
    struct event *ev;
};

struct s2_loop {
    const struct s2_curl *cu; /* libcurl */
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct xfer *xfers; /* in flight */
    unsigned active;
    int dispatching;  /* inside drain_completions */
    int free_pending; /* s2_loop_free was called while dispatching */
};

static void drain_completions(struct s2_loop *loop);

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    struct s2_loop *loop = arg;
    int flags = 0;
    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    int running = 0;
    loop->cu->multi_socket_action(loop->multi, fd, flags, &running);
    drain_completions(loop);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct s2_loop *loop = arg;
    int running = 0;
    loop->cu->multi_socket_action(loop->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_completions(loop);
}

static int sock_cb(CURL *easy, curl_socket_t s, int what, void *clientp, void *socketp)
{
    (void)easy;
    struct s2_loop *loop = clientp;
    struct sock_ctx *ctx = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (ctx != NULL) {
            event_free(ctx->ev);
            free(ctx);
            loop->cu->multi_assign(loop->multi, s, NULL);
        }
        return 0;
    }
    if (ctx == NULL) {
        ctx = calloc(1, sizeof *ctx);
        if (ctx == NULL)
            return -1;
        ctx->loop = loop;
        ctx->fd = s;
        loop->cu->multi_assign(loop->multi, s, ctx);
    } else {
        event_free(ctx->ev);
        ctx->ev = NULL;
    }
    short kind = EV_PERSIST;
    if (what & CURL_POLL_IN)
        kind |= EV_READ;
    if (what & CURL_POLL_OUT)
        kind |= EV_WRITE;
    ctx->ev = event_new(loop->base, s, kind, on_socket_event, loop);
    if (ctx->ev == NULL || event_add(ctx->ev, NULL) < 0) {
        loop->cu->multi_assign(loop->multi, s, NULL);
        if (ctx->ev != NULL)
            event_free(ctx->ev);
        free(ctx);
        return -1;
    }
    return 0;
}

/* Never drive curl from here (recursion); only (re)arm the one timer. */
static int timer_cb(CURLM *multi, long timeout_ms, void *clientp)
{
    (void)multi;
    struct s2_loop *loop = clientp;
    if (timeout_ms < 0) {
        evtimer_del(loop->timer);
        return 0;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    return evtimer_add(loop->timer, &tv) < 0 ? -1 : 0;
}

static void unlink_xfer(struct s2_loop *loop, struct xfer *x)
{
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        loop->xfers = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
    loop->active--;
}

static void loop_destroy(struct s2_loop *loop)
{
    while (loop->xfers != NULL) {
        struct xfer *x = loop->xfers;
        unlink_xfer(loop, x);
        loop->cu->multi_remove_handle(loop->multi, x->easy);
        loop->cu->easy_cleanup(x->easy);
        free(x);
    }
    /* Closing pooled connections calls sock_cb: the base must still live. */
    if (loop->multi != NULL)
        loop->cu->multi_cleanup(loop->multi);
    if (loop->timer != NULL)
        event_free(loop->timer);
    const struct s2_curl *cu = loop->cu;
    free(loop);
    cu->global_cleanup();
}

static void drain_completions(struct s2_loop *loop)
{
    loop->dispatching++;
    CURLMsg *msg;
    int left = 0;
    while (!loop->free_pending && (msg = loop->cu->multi_info_read(loop->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        /* msg is invalid once the handle is removed: copy first. */
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        struct xfer *x = NULL;
        loop->cu->easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        loop->cu->multi_remove_handle(loop->multi, easy);
        if (x == NULL) {
            loop->cu->easy_cleanup(easy);
            continue;
        }
        unlink_xfer(loop, x);
        x->done(easy, (int)result, x->arg);
        loop->cu->easy_cleanup(easy);
        free(x);
    }
    loop->dispatching--;
    if (loop->dispatching == 0 && loop->free_pending)
        loop_destroy(loop);
}

int s2_loop_new(struct event_base *base, struct s2_loop **out)
{
    const struct s2_curl *cu;
    char why[256];
    *out = NULL;
    int rc = s2_curl_load(&cu, why, sizeof why);
    if (rc != 0)
        return rc;
    /* Reference-counted and thread-safe since libcurl 7.84: a process that
     * never makes a loop never initialises libcurl (nor its TLS library). */
    if (cu->global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -EIO;
    struct s2_loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL) {
        cu->global_cleanup();
        return -ENOMEM;
    }
    loop->cu = cu;
    loop->base = base;
    loop->multi = cu->multi_init();
    loop->timer = evtimer_new(base, on_timer, loop);
    if (loop->multi == NULL || loop->timer == NULL) {
        loop_destroy(loop);
        return -ENOMEM;
    }
    cu->multi_setopt(loop->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    cu->multi_setopt(loop->multi, CURLMOPT_SOCKETDATA, loop);
    cu->multi_setopt(loop->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    cu->multi_setopt(loop->multi, CURLMOPT_TIMERDATA, loop);
    /* Bounded pool and fan-out: excess transfers queue inside curl. */
    cu->multi_setopt(loop->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
    cu->multi_setopt(loop->multi, CURLMOPT_MAXCONNECTS, 8L);
    *out = loop;
    return 0;
}

const char *s2_loop_libcurl_error(char *buf, size_t len)
{
    const struct s2_curl *cu;
    return s2_curl_load(&cu, buf, len) != 0 ? buf : NULL;
}

struct event_base *s2_loop_base(const struct s2_loop *loop)
{
    return loop->base;
}

int s2_loop_add(struct s2_loop *loop, CURL *easy, s2_loop_done_fn done, void *arg)
{
    if (loop->free_pending) {
        loop->cu->easy_cleanup(easy);
        return -ECANCELED;
    }
    struct xfer *x = calloc(1, sizeof *x);
    if (x == NULL) {
        loop->cu->easy_cleanup(easy);
        return -ENOMEM;
    }
    x->easy = easy;
    x->done = done;
    x->arg = arg;
    loop->cu->easy_setopt(easy, CURLOPT_PRIVATE, x);
    if (loop->cu->multi_add_handle(loop->multi, easy) != CURLM_OK) {
        loop->cu->easy_cleanup(easy);
        free(x);
        return -EIO;
    }
    x->next = loop->xfers;
    if (loop->xfers != NULL)
        loop->xfers->prev = x;
    loop->xfers = x;
    loop->active++;
    return 0;
}

void s2_loop_cancel(struct s2_loop *loop, CURL *easy)
{
    struct xfer *x = NULL;
    loop->cu->easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    /* Removing also drops a pending CURLMSG_DONE of this handle. */
    loop->cu->multi_remove_handle(loop->multi, easy);
    if (x != NULL)
        unlink_xfer(loop, x);
    loop->cu->easy_cleanup(easy);
    free(x);
}

unsigned s2_loop_active(const struct s2_loop *loop)
{
    return loop->active;
}

void s2_loop_free(struct s2_loop *loop)
{
    if (loop == NULL)
        return;
    if (loop->dispatching > 0) {
        /* Called from a done callback: finish after the dispatch unwinds. */
        loop->free_pending = 1;
        return;
    }
    loop_destroy(loop);
}
