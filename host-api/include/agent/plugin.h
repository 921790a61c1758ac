/*
 * agent/plugin.h - the plugin ABI of the browser-control agent host.
 *
 * This is the only header a plugin needs from the host. It is self-contained
 * (standard headers plus forward declarations of libevent types) and
 * versioned:
 *
 *   - AGENT_ABI_MAJOR bumps on any layout or semantic break;
 *   - AGENT_ABI_MINOR bumps when slots are appended to a table.
 *
 * Loading. The host dlopen()s the plugin with RTLD_NOW | RTLD_LOCAL and looks
 * up one symbol, AGENT_PLUGIN_ENTRY ("agent_plugin_entry_v1"), a function
 * without side effects that returns the plugin's static descriptor. Before it
 * runs any other plugin code the host checks the descriptor: abi_major must
 * equal the host's, abi_minor must be <= the host's, struct_size must cover
 * the v1.0 layout. Only then does it call init().
 *
 * Rules for plugins:
 *   - Every call, in both directions, happens on the host's event-loop
 *     thread. A plugin never blocks that thread (no blocking I/O, no sleeps)
 *     and never calls event_base_loopexit() or frees host objects.
 *   - Strings the host hands over are borrowed for the duration of the call
 *     unless a slot says otherwise; the plugin copies what it keeps.
 *   - No cJSON or other third-party structs cross this border: JSON travels
 *     as text.
 *   - A plugin links the shared libevent; it drives the host's event_base.
 *   - On a connection a plugin streams on, the plugin owns the connection's
 *     close callback (evhttp_connection_set_closecb). On connections of
 *     other routes the host owns it (it ends the request's observation when
 *     the client goes away while a reply is deferred): a plugin leaves it
 *     alone there.
 *   - The host neither links nor initialises libcurl (it keeps the agent
 *     small when no plugin needs it). A plugin that uses libcurl calls
 *     curl_global_init() before its first handle and curl_global_cleanup()
 *     after freeing its last one, on the loop thread; libcurl counts these
 *     calls, so several plugins (or libraries) may each make them.
 *
 * Plugin lifecycle:
 *   init()     -> register routes, observers, services; 0 or -errno.
 *   shutdown() -> begin a graceful stop: end open streams, answer pending
 *                 requests, flush; call done() once finished (possibly from
 *                 inside shutdown()). The host stops waiting at the deadline.
 *   destroy()  -> free everything, synchronously; called once, after done()
 *                 or after the deadline, while the event_base still exists.
 *                 Plugins are destroyed in reverse load order, before the
 *                 host frees its evhttp server (which then frees every
 *                 connection left). So destroy() must clear the close
 *                 callbacks it set on connections and forget the requests it
 *                 holds; the loop does not run again.
 */
#ifndef AGENT_PLUGIN_H
#define AGENT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AGENT_ABI_MAJOR 1
#define AGENT_ABI_MINOR 0

#if defined(__GNUC__)
#define AGENT_EXPORT __attribute__((visibility("default")))
#define AGENT_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define AGENT_EXPORT
#define AGENT_PRINTF(fmt, args)
#endif

struct event_base;
struct evhttp_request;

/* Log levels for agent_host_api.log. */
#define AGENT_LOG_DEBUG 0
#define AGENT_LOG_INFO 1
#define AGENT_LOG_WARN 2
#define AGENT_LOG_ERROR 3

/* Route flags. */
/* The route has no side effects: the request observer record says so, and
 * the telemetry plugin emits no api_call event for it. */
#define AGENT_ROUTE_SIDE_EFFECT_FREE (1u << 0)
/* The route may hold its request open (streaming); it must call
 * agent_host_api.request_end when the stream ends without a final reply. */
#define AGENT_ROUTE_STREAMING (1u << 1)

/* Handler of a registered route. The request is borrowed: the plugin answers
 * it with evhttp_send_reply*() now or later (deferred); it must not free it. */
typedef void (*agent_route_fn)(struct evhttp_request *req, void *arg);

/* A route: method and exact path, as registered with route_add. */
struct agent_route {
    uint32_t struct_size;     /* sizeof(struct agent_route) */
    const char *method;       /* "GET", "PUT", "PATCH", "POST", "DELETE" */
    const char *path;         /* exact path, no query: "/telemetry/events" */
    const char *operation_id; /* PascalCase, e.g. "ReadTelemetryEvents"; may be NULL */
    uint32_t flags;           /* AGENT_ROUTE_* */
    agent_route_fn handler;
    void *arg;
};

/* What the request observer sees once per completed request on a routed
 * path (also a long streaming one, when it ends). Everything is borrowed for
 * the duration of the observer call. */
struct agent_request_info {
    uint32_t struct_size; /* sizeof(struct agent_request_info) */
    const char *method;
    const char *path;
    const char *operation_id; /* NULL when the route has none */
    const char *request_id;   /* inbound X-Request-Id, or one the host made */
    int status;               /* final HTTP status; 0 if none was sent, or
                                 the connection closed before the reply
                                 completed (non-streaming routes) */
    double duration_ms;       /* from dispatch to completion */
    uint32_t route_flags;     /* AGENT_ROUTE_* of the matched route */
};

typedef void (*agent_observer_fn)(const struct agent_request_info *info, void *arg);

/* Called by a plugin when its shutdown has finished. */
typedef void (*agent_done_fn)(void *token);

/* The table the host lends to a plugin. Host-owned, const, append-only. A
 * plugin checks struct_size before it reads a slot added after v1.0. */
struct agent_host_api {
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t struct_size; /* sizeof(struct agent_host_api) of the host */
    void *host;           /* opaque; first argument of every slot */
    const char *host_version;

    /* The host's event loop. Never freed or exited by a plugin. */
    struct event_base *(*event_base)(void *host);

    /* Register a route. The route struct is copied; its strings must stay
     * valid until the plugin is destroyed (string literals, or plugin-owned).
     * Returns 0, -EEXIST for a (method, path) already taken, -EINVAL. */
    int (*route_add)(void *host, const struct agent_route *route);

    /* Configuration lookup: the environment, overlaid by the host's --env
     * FILE. The result is host-owned and valid until the host exits; NULL
     * when the key is unset. */
    const char *(*config_get)(void *host, const char *key);

    /* Levelled logging; one line per call, no trailing newline needed. */
    void (*log)(void *host, int level, const char *fmt, ...) AGENT_PRINTF(3, 4);

    /* Observe every completed request on a routed path. Returns 0 or -errno.
     * The observer runs on the loop after the response is complete. */
    int (*observer_add)(void *host, agent_observer_fn fn, void *arg);

    /* A streaming route calls this exactly once when its request ends
     * without evhttp_send_reply_end() having completed it normally (client
     * gone, host shutdown). status is what the client was sent (e.g. 200).
     * Safe to call for a request the host already saw complete (no-op).
     * The host does not touch req here, so it may be called just before or
     * after the plugin frees or ends req. */
    void (*request_end)(void *host, struct evhttp_request *req, int status);

    /* Named-service registry. A service is a plugin-defined const struct
     * whose header the consumers share. register: -EEXIST if taken.
     * lookup: NULL if absent or older than min_version. The pointer stays
     * valid until the registering plugin is destroyed. */
    int (*service_register)(void *host, const char *name, uint32_t version, const void *iface);
    const void *(*service_lookup)(void *host, const char *name, uint32_t min_version);

    /* Milliseconds of the host's monotonic clock (for deadlines). */
    uint64_t (*now_ms)(void *host);

    void *reserved[8];
};

/* The descriptor a plugin returns from its entry symbol. Plugin-owned,
 * static const, append-only. */
struct agent_plugin {
    uint32_t abi_major;   /* AGENT_ABI_MAJOR the plugin was built against */
    uint32_t abi_minor;   /* AGENT_ABI_MINOR the plugin was built against */
    uint32_t struct_size; /* sizeof(struct agent_plugin) */
    const char *name;     /* short name, e.g. "telemetry" */
    const char *version;

    /* Set up. On failure return -errno and write one line into errbuf
     * (NUL-terminated, at most errlen bytes); the host then calls nothing
     * else of this plugin. *state is passed back to the other slots. */
    int (*init)(const struct agent_host_api *api, void **state, char *errbuf, size_t errlen);

    /* Begin a graceful stop with deadline_ms left (host monotonic clock:
     * api->now_ms() + deadline_ms). Call done(token) once finished. */
    void (*shutdown)(void *state, uint64_t deadline_ms, agent_done_fn done, void *token);

    /* Free everything; no callbacks may fire afterwards. */
    void (*destroy)(void *state);

    void *reserved[4];
};

/* The one exported symbol of a plugin. */
#define AGENT_PLUGIN_ENTRY agent_plugin_entry_v1
#define AGENT_PLUGIN_ENTRY_NAME "agent_plugin_entry_v1"
typedef const struct agent_plugin *(*agent_plugin_entry_fn)(void);

/* Convenience for plugins: AGENT_DECLARE_PLUGIN(desc) defines the entry. */
#define AGENT_DECLARE_PLUGIN(desc)                                                                 \
    AGENT_EXPORT const struct agent_plugin *AGENT_PLUGIN_ENTRY(void);                              \
    AGENT_EXPORT const struct agent_plugin *AGENT_PLUGIN_ENTRY(void)                               \
    {                                                                                              \
        return &(desc);                                                                            \
    }

#ifdef __cplusplus
}
#endif

#endif /* AGENT_PLUGIN_H */
