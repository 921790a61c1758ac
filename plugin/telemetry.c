/*
 * telemetry.c - the plugin's entry point: configuration, wiring of the
 * modules, routes, the shared service, and the lifecycle. Nothing else.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/plugin.h"
#include "apicall.h"
#include "archive.h"
#include "bus.h"
#include "config.h"
#include "openapi.h"
#include "publish.h"
#include "read.h"
#include "session.h"
#include "stream.h"
#include "telemetry/service.h"

struct tel_plugin {
    const struct agent_host_api *api;
    struct tel_config cfg;
    struct tel_bus *bus;
    struct tel_session *session;
    struct tel_publish *publish;
    struct tel_stream *stream;
    struct tel_archive *archive;
    struct tel_apicall *apicall;
    struct tel_read *read;
    agent_done_fn done;
    void *done_token;
};

static const char *lookup(const char *key, void *arg)
{
    const struct agent_host_api *api = arg;
    return api->config_get(api->host, key);
}

static void plugin_destroy(void *state)
{
    struct tel_plugin *p = state;
    if (p == NULL)
        return;
    tel_apicall_free(p->apicall);
    tel_stream_free(p->stream);
    tel_read_free(p->read);
    tel_archive_free(p->archive);
    tel_publish_free(p->publish);
    tel_session_free(p->session);
    tel_bus_free(p->bus);
    tel_config_clear(&p->cfg);
    free(p);
}

static int add_route(struct tel_plugin *p, const char *method, const char *path, const char *op,
                     uint32_t flags, agent_route_fn fn, void *arg, char *err, size_t errlen)
{
    struct agent_route r = {
        .struct_size = sizeof r,
        .method = method,
        .path = path,
        .operation_id = op,
        .flags = flags,
        .handler = fn,
        .arg = arg,
    };
    int rc = p->api->route_add(p->api->host, &r);
    if (rc != 0)
        snprintf(err, errlen, "cannot register %s %s (%s)", method, path, strerror(-rc));
    return rc;
}

static int add_routes(struct tel_plugin *p, char *err, size_t n)
{
    int rc;
    if ((rc = add_route(p, "GET", "/telemetry", "GetTelemetry", 0, tel_session_handle_get,
                        p->session, err, n)) != 0 ||
        (rc = add_route(p, "PUT", "/telemetry", "PutTelemetry", 0, tel_session_handle_put,
                        p->session, err, n)) != 0 ||
        (rc = add_route(p, "PATCH", "/telemetry", "PatchTelemetry", 0, tel_session_handle_patch,
                        p->session, err, n)) != 0 ||
        (rc = add_route(p, "POST", "/telemetry/events", "PublishTelemetryEvent", 0,
                        tel_publish_handle, p->publish, err, n)) != 0 ||
        (rc = add_route(p, "GET", "/telemetry/stream", "StreamTelemetryEvents",
                        AGENT_ROUTE_SIDE_EFFECT_FREE | AGENT_ROUTE_STREAMING, tel_stream_handle,
                        p->stream, err, n)) != 0)
        return rc;
    if ((rc = add_route(p, "GET", "/telemetry/events", "ReadTelemetryEvents",
                        AGENT_ROUTE_SIDE_EFFECT_FREE, tel_read_handle, p->read, err, n)) != 0)
        return rc;
    if ((rc = add_route(p, "GET", TEL_OPENAPI_PATH, TEL_OPENAPI_OPERATION_ID,
                        AGENT_ROUTE_SIDE_EFFECT_FREE, tel_openapi_handle, NULL, err, n)) != 0)
        return rc;
    return 0;
}

static int plugin_init(const struct agent_host_api *api, void **state, char *err, size_t errlen)
{
    int rc;
    struct tel_plugin *p = NULL;

    err[0] = '\0';
    if (api == NULL || api->abi_major != AGENT_ABI_MAJOR ||
        api->struct_size < offsetof(struct agent_host_api, reserved)) {
        snprintf(err, errlen, "incompatible host ABI");
        return -EINVAL;
    }
    if ((p = calloc(1, sizeof *p)) == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    p->api = api;
    if ((rc = tel_config_load(lookup, (void *)api, &p->cfg, err, errlen)) != 0)
        goto fail;
    if (!p->cfg.enabled) {
        api->log(api->host, AGENT_LOG_INFO, "disabled by TELEMETRY_ENABLED");
        *state = p;
        return 0;
    }
    if ((rc = tel_bus_new(p->cfg.ring_capacity, &p->bus)) != 0 ||
        (rc = tel_session_new(p->bus, &p->session)) != 0)
        goto fail;
    struct tel_publish_opts po = {
        .bus = p->bus, .session = p->session, .max_body = p->cfg.max_body};
    struct tel_stream_opts so = {.api = api,
                                 .bus = p->bus,
                                 .keepalive_ms = p->cfg.keepalive_ms,
                                 .max_pending = p->cfg.sse_max_pending};
    if ((rc = tel_publish_new(&po, &p->publish)) != 0 ||
        (rc = tel_stream_new(&so, &p->stream)) != 0)
        goto fail;
    struct tel_archive_opts ao = {
        .api = api, .bus = p->bus, .s2 = &p->cfg.s2, .local_dir = p->cfg.archive_dir};
    if ((rc = tel_archive_new(&ao, &p->archive, err, errlen)) != 0)
        goto fail;
    struct tel_read_opts ro = {.api = api,
                               .client = tel_archive_client(p->archive),
                               .stream = tel_archive_stream(p->archive)};
    if ((rc = tel_read_new(&ro, &p->read)) != 0)
        goto fail;
    if ((rc = tel_apicall_new(api, p->publish, &p->apicall)) != 0) {
        snprintf(err, errlen, "cannot add the request observer (%s)", strerror(-rc));
        goto fail;
    }
    if ((rc = add_routes(p, err, errlen)) != 0)
        goto fail;
    if ((rc = api->service_register(api->host, TELEMETRY_SERVICE_NAME, TELEMETRY_SERVICE_VERSION,
                                    tel_publish_service(p->publish))) != 0) {
        snprintf(err, errlen, "cannot register service %s (%s)", TELEMETRY_SERVICE_NAME,
                 strerror(-rc));
        goto fail;
    }
    if (p->cfg.boot_session && (rc = tel_session_apply(p->session, p->cfg.boot_mask, NULL)) != 0)
        goto fail;
    api->log(api->host, AGENT_LOG_INFO, "ring %u envelopes, session %s",
             (unsigned)p->cfg.ring_capacity, p->cfg.boot_session ? "started at boot" : "off");
    *state = p;
    return 0;
fail:
    if (err[0] == '\0')
        snprintf(err, errlen, "init failed (%s)", strerror(-rc));
    plugin_destroy(p);
    return rc;
}

static void on_archive_flushed(void *arg)
{
    struct tel_plugin *p = arg;
    agent_done_fn done = p->done;
    p->done = NULL;
    if (done != NULL)
        done(p->done_token);
}

static void plugin_shutdown(void *state, uint64_t deadline_ms, agent_done_fn done, void *token)
{
    struct tel_plugin *p = state;
    if (!p->cfg.enabled || p->bus == NULL) {
        done(token);
        return;
    }
    tel_apicall_stop(p->apicall);
    tel_stream_shutdown(p->stream);
    tel_read_shutdown(p->read);
    p->done = done;
    p->done_token = token;
    /* Leave a little of the host's deadline for the host itself. */
    uint64_t budget = deadline_ms > 200 ? deadline_ms - 100 : deadline_ms;
    tel_archive_flush(p->archive, budget, on_archive_flushed, p);
}

static const struct agent_plugin telemetry_plugin = {
    .abi_major = AGENT_ABI_MAJOR,
    .abi_minor = AGENT_ABI_MINOR,
    .struct_size = sizeof(struct agent_plugin),
    .name = "telemetry",
    .version = "0.1.0",
    .init = plugin_init,
    .shutdown = plugin_shutdown,
    .destroy = plugin_destroy,
};

AGENT_DECLARE_PLUGIN(telemetry_plugin)
