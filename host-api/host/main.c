/*
 * main.c - the agent executable: arguments, env file, signals, run loop.
 *
 *   agent [--env FILE]
 *
 * Exit status: 0 after a clean stop (SIGTERM/SIGINT); 1 when the agent
 * cannot start (bad configuration, cannot listen, a plugin refused); 2 for
 * bad arguments.
 */
#include "config.h"
#include "host.h"
#include "log.h"

#include <event2/event.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef AGENT_VERSION
#define AGENT_VERSION "0.0.0"
#endif

#define DEFAULT_PORT 10001

struct agent {
    struct event_base *base;
    struct host *host;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: agent [--env FILE] [--version]\n"
               "Serves the routes of its plugins over HTTP; see README.md for the\n"
               "configuration variables.\n");
}

static void on_stopped(void *arg)
{
    struct agent *a = arg;
    event_base_loopexit(a->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct agent *a = arg;
    (void)what;
    hlog(AGENT_LOG_INFO, "received %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    host_stop(a->host, on_stopped, a);
}

int main(int argc, char **argv)
{
    struct agent a = {0};
    struct config *cfg = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    struct event_config *cfg_ev = NULL;
    const char *env_file = NULL, *addr, *lvl;
    char err[1024];
    int port, level, rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--env") == 0 && i + 1 < argc) {
            env_file = argv[++i];
        } else if (strncmp(argv[i], "--env=", 6) == 0) {
            env_file = argv[i] + 6;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("agent %s\n", AGENT_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    /* Writes to closed sockets must fail with EPIPE, not kill the agent. */
    signal(SIGPIPE, SIG_IGN);

    if (config_new(&cfg) != 0) {
        hlog(AGENT_LOG_ERROR, "out of memory");
        goto out;
    }
    if (env_file != NULL && config_load_file(cfg, env_file, err, sizeof(err)) != 0) {
        hlog(AGENT_LOG_ERROR, "--env %s", err);
        goto out;
    }
    lvl = config_get(cfg, "AGENT_LOG_LEVEL");
    if (lvl != NULL && *lvl != '\0') {
        if (hlog_parse_level(lvl, &level) != 0) {
            hlog(AGENT_LOG_ERROR, "AGENT_LOG_LEVEL: '%s' is not debug/info/warn/error", lvl);
            goto out;
        }
        hlog_set_level(level);
    }
    if (config_get_port(cfg, "PORT", DEFAULT_PORT, &port, err, sizeof(err)) != 0) {
        hlog(AGENT_LOG_ERROR, "%s", err);
        goto out;
    }
    addr = config_get(cfg, "AGENT_LISTEN_ADDR");
    if (addr == NULL || *addr == '\0')
        addr = "127.0.0.1";

    /* The changelist coalesces the event changes made while a callback runs
     * into one epoll_ctl per fd at the next dispatch: evhttp disables and
     * re-enables reading and writing around every request, which costs 4
     * epoll_ctl calls per request without it and 2 with it. libevent's
     * caveat: with the changelist, an fd that was dup()ed can be reported
     * wrongly when one copy is closed. Nothing on this loop dups fds (evhttp,
     * libcurl's multi socket interface, the plugins' own listeners), so the
     * caveat does not apply. */
    cfg_ev = event_config_new();
    if (cfg_ev == NULL ||
        event_config_set_flag(cfg_ev, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) != 0) {
        hlog(AGENT_LOG_ERROR, "event_config_new failed");
        goto out;
    }
    a.base = event_base_new_with_config(cfg_ev);
    if (a.base == NULL) {
        hlog(AGENT_LOG_ERROR, "event_base_new failed");
        goto out;
    }
    /* Before listening: a signal that comes as soon as the port accepts
     * is held until the loop runs, then stops the agent cleanly. */
    sigterm = evsignal_new(a.base, SIGTERM, on_signal, &a);
    sigint = evsignal_new(a.base, SIGINT, on_signal, &a);
    if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) != 0 ||
        evsignal_add(sigint, NULL) != 0) {
        hlog(AGENT_LOG_ERROR, "cannot install signal handlers");
        goto out;
    }
    if (host_new(a.base, cfg, &a.host, err, sizeof(err)) != 0 ||
        host_listen(a.host, addr, port, err, sizeof(err)) != 0) {
        hlog(AGENT_LOG_ERROR, "%s", err);
        goto out;
    }
    if (host_load_plugins(a.host, err, sizeof(err)) != 0) {
        /* A refused plugin stops the agent: running without a configured
         * plugin would hide the problem behind 404s. Plugins loaded before
         * it get their ordinary shutdown. */
        hlog(AGENT_LOG_ERROR, "%s", err);
        host_stop(a.host, on_stopped, &a);
        event_base_dispatch(a.base);
        goto out;
    }
    hlog(AGENT_LOG_INFO, "agent %s listening on http://%s:%d", AGENT_VERSION, addr,
         host_port(a.host));
    if (event_base_dispatch(a.base) < 0) {
        hlog(AGENT_LOG_ERROR, "event loop failed");
        goto out;
    }
    rc = 0;
out:
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    host_free(a.host);
    if (a.base != NULL)
        event_base_free(a.base);
    if (cfg_ev != NULL)
        event_config_free(cfg_ev);
    config_free(cfg);
    if (rc == 0)
        hlog(AGENT_LOG_INFO, "stopped");
    return rc;
}
