/*
 * lfx.h - s2-local on a loop thread of its own, for suites whose test thread
 * is its client (blocking HTTP, SSE, raw sockets).
 */
#ifndef LFX_H
#define LFX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "s2/local.h"

struct lfx {
    struct event_base *base;
    struct s2l_server *srv; /* runs on base, on thread */
    pthread_t thread;
    bool running;
    char url[64]; /* http://127.0.0.1:<port> */
    uint16_t port;
};

/* The server of the current test (each Criterion test is its own process). */
extern struct lfx fx;

/* Start a server with opts on a new loop thread and wait until /health
 * answers; fails the test otherwise. */
void lfx_start(const struct s2l_opts *opts);

/* Stop the loop thread and free the server; safe to call twice. */
void lfx_stop(void);

#endif /* LFX_H */
