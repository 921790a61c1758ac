/*
 * host.h - the agent host: one evhttp server on the caller's event_base, the
 * router, the service registry and the plugins, tied together behind the
 * agent_host_api table (agent/plugin.h).
 *
 * Configuration (see README.md): AGENT_MAX_BODY, AGENT_MAX_HEADERS,
 * AGENT_HTTP_TIMEOUT, AGENT_PLUGINS, <NAME>_ENABLED, AGENT_SHUTDOWN_TIMEOUT.
 */
#ifndef AGENT_HOST_HOST_H
#define AGENT_HOST_HOST_H

#include <stddef.h>

struct config;
struct event_base;
struct host;

/* Called once when a graceful stop has finished or hit its deadline. */
typedef void (*host_stopped_fn)(void *arg);

/* A host on base (borrowed) with configuration cfg (borrowed; both must
 * outlive the host). Creates the HTTP server (not yet listening) and the
 * GET /health route. On error returns -errno with one line in err. */
int host_new(struct event_base *base, struct config *cfg, struct host **out, char *err,
             size_t errlen);

/* Listen on addr:port (port 0: any free port). Returns 0 or -errno with
 * one line in err. */
int host_listen(struct host *h, const char *addr, int port, char *err, size_t errlen);

/* The port the host listens on, or -1. */
int host_port(const struct host *h);

/* Load the plugins of AGENT_PLUGINS ("name:path,name:path"), skipping those
 * whose <NAME>_ENABLED is off. Returns 0, or -errno with one line in err:
 * a configuration error naming the variable, or
 * "refusing plugin NAME (PATH): reason"
 * for a refused plugin. The caller decides what a refusal means (the agent
 * exits non-zero). */
int host_load_plugins(struct host *h, char *err, size_t errlen);

/* Begin a graceful stop: stop accepting, answer new requests 503, run the
 * plugins' shutdown (reverse load order) with the AGENT_SHUTDOWN_TIMEOUT
 * deadline, and wait for open requests to end. stopped(arg) runs once, when
 * all of that finished or at the deadline. A second call stops at once. */
void host_stop(struct host *h, host_stopped_fn stopped, void *arg);

/* Destroy the plugins (reverse load order), free the HTTP server and
 * everything else the host made. NULL is a no-op. */
void host_free(struct host *h);

#endif /* AGENT_HOST_HOST_H */
