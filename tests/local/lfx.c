/* lfx.c - s2-local on its own loop thread for client-side tests. */
#include "lfx.h"

#include <stdio.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "support.h"

struct lfx fx;

static void *loop_main(void *arg)
{
    (void)arg;
    event_base_loop(fx.base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

void lfx_start(const struct s2l_opts *opts)
{
    cr_assert(eq(int, evthread_use_pthreads(), 0));
    fx.base = event_base_new();
    cr_assert_not_null(fx.base);
    cr_assert(eq(int, s2l_server_new(fx.base, opts, NULL, NULL, &fx.srv), 0));
    fx.port = s2l_server_port(fx.srv);
    snprintf(fx.url, sizeof fx.url, "http://127.0.0.1:%u", fx.port);
    cr_assert(eq(int, pthread_create(&fx.thread, NULL, loop_main, NULL), 0));
    fx.running = true;
    /* Also initialises libcurl before any test thread uses it. */
    char url[96];
    snprintf(url, sizeof url, "%s/health", fx.url);
    struct ts_resp r;
    cr_assert(eq(int, ts_http("GET", url, NULL, 0, NULL, &r), 0));
    cr_assert(eq(long, r.status, 200));
    ts_resp_free(&r);
}

void lfx_stop(void)
{
    if (fx.running) {
        event_base_loopexit(fx.base, NULL);
        pthread_join(fx.thread, NULL);
        fx.running = false;
    }
    s2l_server_free(fx.srv);
    fx.srv = NULL;
    if (fx.base)
        event_base_free(fx.base);
    fx.base = NULL;
}
