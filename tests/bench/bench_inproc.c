/*
 * bench_inproc.c - the in-process publish rate: loads telemetry.so through
 * its ABI with a minimal host table (no HTTP server), looks up the shared
 * publish service and publishes N events through it, timed with
 * clock_gettime. Prints one JSON line.
 *
 *   bench_inproc PLUGIN.so N [KEY=VALUE...]
 *
 * KEY=VALUE pairs are the plugin's whole configuration (the environment is
 * not read). With TELEMETRY_ARCHIVE_DIR set, the plugin archives to its
 * embedded s2-local; after the publish loop the plugin's shutdown flushes
 * the archive, and the flush is timed too:
 *   {"events","admitted","publish_seconds","archive_seconds","appended","refused"}
 * (appended and refused come from the plugin's flush log line; -1 when the
 * archive is off). Keep N within the batcher queue (S2_BATCHER_QUEUE_RECORDS,
 * default 65536) when archiving: the loop does not yield to the event loop.
 */
#include <agent/plugin.h>
#include <telemetry/service.h>

#include <curl/curl.h>
#include <event2/event.h>

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BI_MAX_CONFIG 32

struct bi_host {
    struct event_base *base;
    const char *keys[BI_MAX_CONFIG], *values[BI_MAX_CONFIG];
    int nconfig;
    const void *service;
    long long appended, refused;
    int done;
};

static struct bi_host host;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct event_base *h_event_base(void *h)
{
    return ((struct bi_host *)h)->base;
}

static int h_route_add(void *h, const struct agent_route *route)
{
    (void)h;
    (void)route;
    return 0;
}

static const char *h_config_get(void *h, const char *key)
{
    struct bi_host *b = h;
    for (int i = 0; i < b->nconfig; i++)
        if (strcmp(b->keys[i], key) == 0)
            return b->values[i];
    return NULL;
}

static void h_log(void *h, int level, const char *fmt, ...)
{
    struct bi_host *b = h;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* "archive: flushed; N appended, P pending, R refused" */
    const char *p = strstr(line, "archive: flushed; ");
    long long pending;
    if (p != NULL)
        sscanf(p, "archive: flushed; %lld appended, %lld pending, %lld refused", &b->appended,
               &pending, &b->refused);
    if (level >= AGENT_LOG_WARN)
        fprintf(stderr, "bench_inproc: plugin: %s\n", line);
}

static int h_observer_add(void *h, agent_observer_fn fn, void *arg)
{
    (void)h;
    (void)fn;
    (void)arg;
    return 0;
}

static void h_request_end(void *h, struct evhttp_request *req, int status)
{
    (void)h;
    (void)req;
    (void)status;
}

static int h_service_register(void *h, const char *name, uint32_t version, const void *iface)
{
    struct bi_host *b = h;
    if (strcmp(name, TELEMETRY_SERVICE_NAME) == 0 && version >= TELEMETRY_SERVICE_VERSION)
        b->service = iface;
    return 0;
}

static const void *h_service_lookup(void *h, const char *name, uint32_t min_version)
{
    struct bi_host *b = h;
    (void)min_version;
    return strcmp(name, TELEMETRY_SERVICE_NAME) == 0 ? b->service : NULL;
}

static uint64_t h_now_ms(void *h)
{
    (void)h;
    return (uint64_t)(now_s() * 1000.0);
}

static const struct agent_host_api api = {
    .abi_major = AGENT_ABI_MAJOR,
    .abi_minor = AGENT_ABI_MINOR,
    .struct_size = sizeof(struct agent_host_api),
    .host = &host,
    .host_version = "bench",
    .event_base = h_event_base,
    .route_add = h_route_add,
    .config_get = h_config_get,
    .log = h_log,
    .observer_add = h_observer_add,
    .request_end = h_request_end,
    .service_register = h_service_register,
    .service_lookup = h_service_lookup,
    .now_ms = h_now_ms,
};

static void on_done(void *token)
{
    struct bi_host *b = token;
    b->done = 1;
    event_base_loopbreak(b->base);
}

int main(int argc, char **argv)
{
    int rc = 1;
    void *so = NULL, *state = NULL;
    const struct agent_plugin *plugin = NULL;
    char err[512] = "";

    if (argc < 3 || atol(argv[2]) < 1) {
        fprintf(stderr, "usage: bench_inproc PLUGIN.so N [KEY=VALUE...]\n");
        return 2;
    }
    long n = atol(argv[2]);
    for (int i = 3; i < argc && host.nconfig < BI_MAX_CONFIG; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq == NULL)
            return 2;
        *eq = '\0';
        host.keys[host.nconfig] = argv[i];
        host.values[host.nconfig++] = eq + 1;
    }
    int archiving = h_config_get(&host, "TELEMETRY_ARCHIVE_DIR") != NULL;
    host.appended = host.refused = -1;
    /* The host owns libcurl's global state. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || (host.base = event_base_new()) == NULL)
        return 1;
    if ((so = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL)) == NULL) {
        fprintf(stderr, "bench_inproc: %s\n", dlerror());
        goto out;
    }
    agent_plugin_entry_fn entry;
    *(void **)&entry = dlsym(so, AGENT_PLUGIN_ENTRY_NAME);
    if (entry == NULL || (plugin = entry()) == NULL || plugin->abi_major != AGENT_ABI_MAJOR) {
        fprintf(stderr, "bench_inproc: %s is not a plugin of this ABI\n", argv[1]);
        goto out;
    }
    if (plugin->init(&api, &state, err, sizeof err) != 0) {
        fprintf(stderr, "bench_inproc: init: %s\n", err);
        plugin = NULL;
        goto out;
    }
    const struct telemetry_service *svc = host.service;
    if (svc == NULL) {
        fprintf(stderr, "bench_inproc: the plugin registered no telemetry service\n");
        goto out;
    }
    /* Let the archive learn its stream's tail before the clock starts. */
    if (archiving) {
        struct timeval tv = {0, 300 * 1000};
        event_base_loopexit(host.base, &tv);
        event_base_dispatch(host.base);
    }

    static const char data[] = "{\"level\":\"log\",\"text\":\"bench event: page script finished "
                               "loading resources in 123 ms, 4 warnings\"}";
    struct telemetry_event ev = {
        .struct_size = sizeof ev,
        .type = "console_log",
        .source_kind = "cdp",
        .source_event = "Runtime.consoleAPICalled",
        .metadata_json = "{\"target_id\":\"T1\"}",
        .data_json = data,
        .data_len = sizeof data - 1,
    };
    long admitted = 0;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        int ok = 0;
        if (svc->publish(svc->ctx, &ev, &ok, NULL) != 0) {
            fprintf(stderr, "bench_inproc: publish failed\n");
            goto out;
        }
        admitted += ok;
    }
    double t1 = now_s();
    /* Shutdown flushes the archive; done() ends the loop. */
    plugin->shutdown(state, 60000, on_done, &host);
    while (!host.done && event_base_dispatch(host.base) == 0)
        ;
    double t2 = now_s();
    printf("{\"events\":%ld,\"admitted\":%ld,\"publish_seconds\":%.6f,\"archive_seconds\":%.6f,"
           "\"appended\":%lld,\"refused\":%lld}\n",
           n, admitted, t1 - t0, archiving ? t2 - t0 : 0.0, host.appended, host.refused);
    rc = 0;
out:
    if (plugin != NULL)
        plugin->destroy(state);
    if (so != NULL)
        dlclose(so);
    event_base_free(host.base);
    curl_global_cleanup();
    return rc;
}
