/*
 * host.c - the host object: HTTP server settings, the host table handed to
 * plugins, plugin configuration, and the order of a graceful stop.
 */
#include "host.h"

#include "config.h"
#include "log.h"
#include "plugins.h"
#include "router.h"
#include "services.h"

#include <agent/plugin.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

#ifndef AGENT_VERSION
#define AGENT_VERSION "0.0.0"
#endif

#define HOST_DEFAULT_MAX_BODY (4u << 20)
#define HOST_DEFAULT_MAX_HEADERS (64u << 10)
#define HOST_DEFAULT_SHUTDOWN_MS 10000
#define PLUGIN_NAME_MAX 32
#define PLUGINS_CONFIG_MAX 32

/* What a plugin's table points at: the host, and who is calling. */
struct binding {
    struct host *h;
    char name[PLUGIN_NAME_MAX + 1];
};

struct host {
    struct event_base *base;
    struct config *cfg;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    struct router *router;
    struct services *services;
    struct plugins *plugins;
    struct binding *bindings[32];
    size_t n_bindings;

    int stopping;
    int stopped_called;
    struct event *deadline;
    host_stopped_fn stopped;
    void *stopped_arg;
};

/* ---- the table lent to plugins ---- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct event_base *api_event_base(void *host)
{
    return ((struct binding *)host)->h->base;
}

static int api_route_add(void *host, const struct agent_route *route)
{
    struct binding *b = host;
    int rc = router_add(b->h->router, route, b);
    if (rc == 0)
        hlog(AGENT_LOG_DEBUG, "plugin %s: route %s %s (%s)", b->name, route->method, route->path,
             route->operation_id ? route->operation_id : "-");
    return rc;
}

static const char *api_config_get(void *host, const char *key)
{
    return key ? config_get(((struct binding *)host)->h->cfg, key) : NULL;
}

static void api_log(void *host, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hlog_v(level, ((struct binding *)host)->name, fmt, ap);
    va_end(ap);
}

static int api_observer_add(void *host, agent_observer_fn fn, void *arg)
{
    struct binding *b = host;
    return router_observer_add(b->h->router, fn, arg, b);
}

static void api_request_end(void *host, struct evhttp_request *req, int status)
{
    router_request_end(((struct binding *)host)->h->router, req, status);
}

static int api_service_register(void *host, const char *name, uint32_t version, const void *iface)
{
    struct binding *b = host;
    return services_register(b->h->services, name, version, iface, b);
}

static const void *api_service_lookup(void *host, const char *name, uint32_t min_version)
{
    return services_lookup(((struct binding *)host)->h->services, name, min_version);
}

static uint64_t api_now_ms(void *host)
{
    (void)host;
    return mono_ms();
}

static const struct agent_host_api api_template = {
    .abi_major = AGENT_ABI_MAJOR,
    .abi_minor = AGENT_ABI_MINOR,
    .struct_size = sizeof(struct agent_host_api),
    .host_version = AGENT_VERSION,
    .event_base = api_event_base,
    .route_add = api_route_add,
    .config_get = api_config_get,
    .log = api_log,
    .observer_add = api_observer_add,
    .request_end = api_request_end,
    .service_register = api_service_register,
    .service_lookup = api_service_lookup,
    .now_ms = api_now_ms,
};

/* ---- GET /health ---- */

static void on_health(struct evhttp_request *req, void *arg)
{
    struct host *h = arg;
    cJSON *o = cJSON_CreateObject();
    cJSON *list = NULL;
    char *text = NULL;
    struct evbuffer *body = evbuffer_new();

    if (o != NULL && cJSON_AddStringToObject(o, "status", "ok") != NULL &&
        cJSON_AddStringToObject(o, "version", AGENT_VERSION) != NULL)
        list = cJSON_AddArrayToObject(o, "plugins");
    if (list != NULL) {
        for (size_t i = 0; i < plugins_count(h->plugins); i++)
            cJSON_AddItemToArray(list, cJSON_CreateString(plugins_name(h->plugins, i)));
        text = cJSON_PrintUnformatted(o);
    }
    if (text == NULL || body == NULL) {
        router_reply_message(req, 500, "out of memory");
        goto out;
    }
    evbuffer_add(body, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", body);
out:
    if (body != NULL)
        evbuffer_free(body);
    cJSON_free(text);
    cJSON_Delete(o);
}

/* ---- setup ---- */

int host_new(struct event_base *base, struct config *cfg, struct host **out, char *err,
             size_t errlen)
{
    struct host *h = calloc(1, sizeof(*h));
    uint64_t max_body, max_headers, timeout_ms;
    int rc;

    *out = NULL;
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    h->base = base;
    h->cfg = cfg;
    if ((rc = config_get_size(cfg, "AGENT_MAX_BODY", HOST_DEFAULT_MAX_BODY, &max_body, err,
                              errlen)) != 0 ||
        (rc = config_get_size(cfg, "AGENT_MAX_HEADERS", HOST_DEFAULT_MAX_HEADERS, &max_headers, err,
                              errlen)) != 0 ||
        (rc = config_get_duration_ms(cfg, "AGENT_HTTP_TIMEOUT", 0, &timeout_ms, err, errlen)) != 0)
        goto fail;
    rc = -ENOMEM;
    h->http = evhttp_new(base);
    if (h->http == NULL || services_new(&h->services) != 0 || plugins_new(&h->plugins) != 0 ||
        router_new(h->http, &h->router) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_OPTIONS);
    evhttp_set_max_body_size(h->http, (ev_ssize_t)max_body);
    evhttp_set_max_headers_size(h->http, (ev_ssize_t)max_headers);
    /* Read and drop an oversized body so the client sees the 413. */
    evhttp_set_flags(h->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_default_content_type(h->http, "application/json");
    if (timeout_ms > 0) {
        struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
        evhttp_set_timeout_tv(h->http, &tv);
    }
    static const struct agent_route health = {
        .struct_size = sizeof(struct agent_route),
        .method = "GET",
        .path = "/health",
        .operation_id = "GetHealth",
        .flags = AGENT_ROUTE_SIDE_EFFECT_FREE,
        .handler = on_health,
    };
    struct agent_route hr = health;
    hr.arg = h;
    if ((rc = router_add(h->router, &hr, h)) != 0) {
        snprintf(err, errlen, "cannot add /health: %s", strerror(-rc));
        goto fail;
    }
    *out = h;
    return 0;
fail:
    host_free(h);
    return rc;
}

int host_listen(struct host *h, const char *addr, int port, char *err, size_t errlen)
{
    h->sock = evhttp_bind_socket_with_handle(h->http, addr, (ev_uint16_t)port);
    if (h->sock == NULL) {
        int e = errno ? errno : EADDRNOTAVAIL;
        snprintf(err, errlen, "cannot listen on %s:%d: %s", addr, port, strerror(e));
        return -e;
    }
    /* Replies go out in several writes (head, then body chunks); with Nagle
     * on, a large body waits for the client's delayed ACK (~40 ms per
     * response on a kept-alive connection). Accepted sockets inherit the
     * option from the listener on Linux. */
    int one = 1;
    if (setsockopt(evhttp_bound_socket_get_fd(h->sock), IPPROTO_TCP, TCP_NODELAY, &one,
                   sizeof one) != 0)
        hlog(AGENT_LOG_WARN, "TCP_NODELAY on the listener: %s", strerror(errno));
    return 0;
}

int host_port(const struct host *h)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (h->sock == NULL ||
        getsockname(evhttp_bound_socket_get_fd(h->sock), (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static int valid_plugin_name(const char *s, size_t n)
{
    if (n == 0 || n > PLUGIN_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return 0;
    }
    return 1;
}

static void drop_owner(const void *owner, void *arg)
{
    struct host *h = arg;
    router_remove_owner(h->router, owner);
    services_remove_owner(h->services, owner);
}

/* One entry of AGENT_PLUGINS. */
struct plugin_entry {
    char name[PLUGIN_NAME_MAX + 1];
    char path[4096];
    char toggle[PLUGIN_NAME_MAX + 16]; /* <NAME>_ENABLED */
    int enabled;
};

/* Parse one "name:path" entry (trimmed, len bytes) into e, checking the
 * name against the entries before it (n of them) and reading its toggle. */
static int parse_entry(struct host *h, const char *entry, size_t len, struct plugin_entry *e,
                       const struct plugin_entry *before, size_t n, char *err, size_t errlen)
{
    const char *colon = memchr(entry, ':', len);
    char *var = e->toggle;

    if (colon == NULL || colon == entry || colon + 1 == entry + len ||
        !valid_plugin_name(entry, (size_t)(colon - entry)) ||
        (size_t)(entry + len - colon - 1) >= sizeof(e->path)) {
        snprintf(err, errlen,
                 "AGENT_PLUGINS: '%.*s' is not name:path (name: letters, digits, _ or -)", (int)len,
                 entry);
        return -EINVAL;
    }
    size_t nlen = (size_t)(colon - entry);
    memcpy(e->name, entry, nlen);
    e->name[nlen] = '\0';
    memcpy(e->path, colon + 1, (size_t)(entry + len - colon - 1));
    e->path[entry + len - colon - 1] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (strcmp(before[i].name, e->name) == 0) {
            snprintf(err, errlen, "AGENT_PLUGINS: plugin name '%s' given twice", e->name);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < nlen; i++)
        var[i] = e->name[i] == '-' ? '_' : (char)toupper((unsigned char)e->name[i]);
    strcpy(var + nlen, "_ENABLED");
    return config_get_bool(h->cfg, var, 1, &e->enabled, err, errlen);
}

/* Load one enabled plugin. */
static int load_entry(struct host *h, const struct plugin_entry *e, char *err, size_t errlen)
{
    char reason[768];
    struct binding *b;
    int rc;

    if (h->n_bindings == sizeof(h->bindings) / sizeof(h->bindings[0])) {
        snprintf(err, errlen, "AGENT_PLUGINS: too many plugins");
        return -ENOSPC;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    b->h = h;
    snprintf(b->name, sizeof(b->name), "%s", e->name);
    /* The binding outlives a failed init: the plugin's code may keep it. */
    h->bindings[h->n_bindings++] = b;

    struct agent_host_api api = api_template;
    api.host = b;
    rc = plugins_load(h->plugins, b->name, e->path, &api, reason, sizeof(reason));
    if (rc != 0) {
        drop_owner(b, h);
        snprintf(err, errlen, "refusing plugin %s (%s): %s", b->name, e->path, reason);
    }
    return rc;
}

int host_load_plugins(struct host *h, char *err, size_t errlen)
{
    const char *list = config_get(h->cfg, "AGENT_PLUGINS");
    const char *p = list;
    struct plugin_entry *entries = calloc(PLUGINS_CONFIG_MAX, sizeof(*entries));
    size_t n = 0;
    int rc = 0;

    if (entries == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* The whole list is checked before any plugin code runs. */
    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *s = p, *e = end;
        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (e > s) {
            if (n == PLUGINS_CONFIG_MAX) {
                snprintf(err, errlen, "AGENT_PLUGINS: more than %d plugins", PLUGINS_CONFIG_MAX);
                rc = -ENOSPC;
                goto out;
            }
            rc = parse_entry(h, s, (size_t)(e - s), &entries[n], entries, n, err, errlen);
            if (rc != 0)
                goto out;
            n++;
        }
        p = comma ? comma + 1 : end;
    }
    for (size_t i = 0; i < n; i++) {
        if (!entries[i].enabled) {
            hlog(AGENT_LOG_INFO, "plugin %s is off (%s), not loaded", entries[i].name,
                 entries[i].toggle);
            continue;
        }
        rc = load_entry(h, &entries[i], err, errlen);
        if (rc != 0)
            goto out;
    }
    if (plugins_count(h->plugins) == 0)
        hlog(AGENT_LOG_INFO, "no plugins loaded");
out:
    free(entries);
    return rc;
}

/* ---- stopping ---- */

static void stopped(struct host *h)
{
    if (h->stopped_called)
        return;
    h->stopped_called = 1;
    if (h->deadline != NULL)
        event_del(h->deadline);
    router_on_idle(h->router, NULL, NULL);
    if (h->stopped != NULL)
        h->stopped(h->stopped_arg);
}

static void on_idle(void *arg)
{
    struct host *h = arg;
    hlog(AGENT_LOG_INFO, "shutdown complete");
    stopped(h);
}

static void on_plugins_done(void *arg)
{
    struct host *h = arg;
    if (router_active(h->router) > 0)
        hlog(AGENT_LOG_DEBUG, "plugins done; waiting for %zu open requests",
             router_active(h->router));
    router_on_idle(h->router, on_idle, h);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct host *h = arg;
    char names[256];
    (void)fd;
    (void)what;
    size_t n = plugins_pending(h->plugins, names, sizeof(names));
    if (n > 0)
        hlog(AGENT_LOG_WARN, "shutdown deadline reached; plugins still busy: %s", names);
    else
        hlog(AGENT_LOG_WARN, "shutdown deadline reached with %zu requests open",
             router_active(h->router));
    stopped(h);
}

void host_stop(struct host *h, host_stopped_fn fn, void *arg)
{
    uint64_t timeout_ms;
    char err[256];

    if (h->stopping) {
        hlog(AGENT_LOG_WARN, "stopping now");
        stopped(h);
        return;
    }
    h->stopping = 1;
    h->stopped = fn;
    h->stopped_arg = arg;
    if (config_get_duration_ms(h->cfg, "AGENT_SHUTDOWN_TIMEOUT", HOST_DEFAULT_SHUTDOWN_MS,
                               &timeout_ms, err, sizeof(err)) != 0) {
        hlog(AGENT_LOG_WARN, "%s; using %d ms", err, HOST_DEFAULT_SHUTDOWN_MS);
        timeout_ms = HOST_DEFAULT_SHUTDOWN_MS;
    }
    hlog(AGENT_LOG_INFO, "shutting down (deadline %llu ms)", (unsigned long long)timeout_ms);
    if (h->sock != NULL) {
        evhttp_del_accept_socket(h->http, h->sock);
        h->sock = NULL;
    }
    router_set_closing(h->router, 1);
    h->deadline = evtimer_new(h->base, on_deadline, h);
    if (h->deadline != NULL) {
        struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
        evtimer_add(h->deadline, &tv);
    }
    plugins_shutdown(h->plugins, mono_ms() + timeout_ms, on_plugins_done, h);
}

void host_free(struct host *h)
{
    if (h == NULL)
        return;
    if (h->plugins != NULL)
        plugins_destroy(h->plugins, drop_owner, h);
    /* Frees every connection left; close callbacks end their requests. */
    if (h->http != NULL)
        evhttp_free(h->http);
    router_free(h->router);
    plugins_free(h->plugins);
    services_free(h->services);
    for (size_t i = 0; i < h->n_bindings; i++)
        free(h->bindings[i]);
    if (h->deadline != NULL)
        event_free(h->deadline);
    free(h);
}
