/* t_util.c - shared set-up of the s2 tests. */
#include "t_util.h"

#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <event2/event.h>

struct t_ctx T;

const char *t_lookup(const char *key, void *arg)
{
    const char *const *kv = arg;
    const char *found = NULL;
    for (size_t i = 0; kv != NULL && kv[i] != NULL; i += 2) {
        if (strcmp(kv[i], key) == 0)
            found = kv[i + 1]; /* later entries win */
    }
    return found;
}

void t_log(int level, const char *msg, void *arg)
{
    (void)arg;
    int n = snprintf(T.log + T.loglen, sizeof T.log - T.loglen, "[%d] %s\n", level, msg);
    if (n > 0 && T.loglen + (size_t)n < sizeof T.log)
        T.loglen += (size_t)n;
    cr_assert(strstr(msg, T_TOKEN) == NULL, "token in a log line: %s", msg);
}

void t_check_no_token(const char *text)
{
    cr_assert(strstr(text, T_TOKEN) == NULL, "token leaked: %s", text);
}

void t_setup_with(const char *const *env)
{
    /* A test's own .init runs after the suite's: replace that setup. */
    if (T.base != NULL)
        t_teardown();
    memset(&T, 0, sizeof T);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    T.base = event_base_new();
    cr_assert(T.base != NULL);
    cr_assert(fx_server_new(T.base, &T.fx) == 0);
    const char *url = fx_server_url(T.fx);
    const char *kv[64];
    size_t n = 0;
    const char *preset[] = {"S2_ACCESS_TOKEN",
                            T_TOKEN,
                            "S2_BASIN",
                            T_BASIN,
                            "S2_STREAM",
                            "events",
                            "S2_ACCOUNT_ENDPOINT",
                            url,
                            "S2_BASIN_ENDPOINT",
                            url,
                            "S2_REQUEST_TIMEOUT",
                            "2s",
                            "S2_CONNECT_TIMEOUT",
                            "1s"};
    for (size_t i = 0; i < sizeof preset / sizeof preset[0]; i++)
        kv[n++] = preset[i];
    for (size_t i = 0; env != NULL && env[i] != NULL && n < 62; i++)
        kv[n++] = env[i];
    kv[n] = NULL;
    char err[256];
    int rc = s2_config_load(t_lookup, kv, &T.cfg, err, sizeof err);
    cr_assert(rc == 0, "config: %s", err);
    /* Quick retries keep the suite fast. */
    T.cfg.retry_base_ms = 5;
    T.cfg.retry_max_ms = 20;
    cr_assert(s2_loop_new(T.base, &T.loop) == 0);
    cr_assert(s2_client_new(T.loop, &T.cfg, t_log, NULL, &T.client) == 0);
}

void t_setup(void)
{
    t_setup_with(NULL);
}

void t_teardown(void)
{
    s2_client_free(T.client);
    s2_loop_free(T.loop);
    fx_server_free(T.fx);
    s2_config_clear(&T.cfg);
    if (T.base != NULL)
        event_base_free(T.base);
    curl_global_cleanup();
    t_check_no_token(T.log);
    memset(&T, 0, sizeof T);
}

void t_run_until(const int *flag)
{
    while (!*flag)
        event_base_loop(T.base, EVLOOP_ONCE);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

void t_run_for(unsigned ms)
{
    int done = 0;
    struct event *ev = evtimer_new(T.base, on_stop, &done);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
    t_run_until(&done);
    event_free(ev);
}
