/* archive.c - bus -> S2 batcher, and the choice of S2 endpoint. */
#include "archive.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/plugin.h"
#include "bus.h"
#include "s2/batcher.h"
#include "s2/client.h"
#include "s2/config.h"
#include "s2/local.h"
#include "s2/loop.h"

#define LOCAL_BASIN "telemetry-local"
#define LOCAL_STREAM "telemetry"

struct tel_archive {
    const struct agent_host_api *api;
    struct tel_bus *bus;
    enum tel_archive_mode mode;
    int subscribed;
    unsigned sub_id;
    struct s2l_server *local;
    struct s2_loop *loop;
    struct s2_client *client;
    struct s2_batcher *batcher;
    char *stream;
    void (*flush_done)(void *arg);
    void *flush_arg;
};

static void log_s2(int level, const char *msg, void *arg)
{
    struct tel_archive *a = arg;
    a->api->log(a->api->host, level, "archive: %s", msg);
}

static void on_publish(const struct tel_env *env, void *arg)
{
    struct tel_archive *a = arg;
    size_t len;
    const char *json = tel_env_json(env, &len);
    /* Refusals (queue full, too large) are counted and logged by the batcher. */
    (void)s2_batcher_add(a->batcher, json, len);
}

static int start_client(struct tel_archive *a, const struct s2_config *cfg, char *err,
                        size_t errlen)
{
    int rc;
    struct s2_batcher_opts bo = {
        .linger_ms = cfg->linger_ms,
        .max_records = cfg->max_records,
        .queue_records = cfg->queue_records,
    };
    if ((a->stream = strdup(cfg->stream)) == NULL)
        return -ENOMEM;
    struct event_base *base = a->api->event_base(a->api->host);
    /* The embedded s2-local is served in process: no HTTP, no s2_loop. */
    if (a->local != NULL)
        rc = s2_client_new_local(base, a->local, cfg, log_s2, a, &a->client);
    else if ((rc = s2_loop_new(base, &a->loop)) == 0)
        rc = s2_client_new(a->loop, cfg, log_s2, a, &a->client);
    if (rc != 0 || (rc = s2_batcher_new(a->client, a->stream, &bo, log_s2, a, &a->batcher)) != 0) {
        char why[256];
        if (rc == -ELIBACC && s2_loop_libcurl_error(why, sizeof why) != NULL)
            snprintf(err, errlen, "archive: cannot start the S2 client (%s)", why);
        else
            snprintf(err, errlen, "archive: cannot start the S2 client (%s)", strerror(-rc));
        return rc;
    }
    if ((rc = tel_bus_subscribe(a->bus, on_publish, a, &a->sub_id)) != 0) {
        snprintf(err, errlen, "archive: no bus subscriber slot");
        return rc;
    }
    a->subscribed = 1;
    return 0;
}

/* The embedded default: s2-local on a loopback port of its choice (for
 * readers outside the process), the client served by it in process. */
static int start_local(struct tel_archive *a, const struct tel_archive_opts *o, char *err,
                       size_t errlen)
{
    int rc;
    char endpoint[64];
    struct s2l_opts lo = {
        .listen_addr = "127.0.0.1",
        .port = 0,
        .data_dir = o->local_dir,
        .basin = o->s2->basin != NULL && o->s2->basin[0] ? o->s2->basin : LOCAL_BASIN,
    };
    if ((rc = s2l_server_new(a->api->event_base(a->api->host), &lo, log_s2, a, &a->local)) != 0) {
        snprintf(err, errlen, "archive: cannot start s2-local in %s (%s)", o->local_dir,
                 strerror(-rc));
        return rc;
    }
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u/v1",
             (unsigned)s2l_server_port(a->local));
    /* A borrowed view: s2_client_new copies what it keeps. */
    struct s2_config cfg = *o->s2;
    cfg.basin = (char *)lo.basin;
    cfg.stream = (char *)(o->s2->stream != NULL && o->s2->stream[0] ? o->s2->stream : LOCAL_STREAM);
    cfg.access_token =
        (char *)(o->s2->access_token != NULL && o->s2->access_token[0] ? o->s2->access_token
                                                                       : "local");
    cfg.account_endpoint = endpoint;
    cfg.basin_endpoint = endpoint;
    if ((rc = start_client(a, &cfg, err, errlen)) != 0)
        return rc;
    a->api->log(a->api->host, AGENT_LOG_INFO,
                "archive: embedded s2-local on 127.0.0.1:%u, data in %s, basin %s, "
                "stream %s",
                (unsigned)s2l_server_port(a->local), o->local_dir, cfg.basin, cfg.stream);
    return 0;
}

int tel_archive_new(const struct tel_archive_opts *o, struct tel_archive **out, char *err,
                    size_t errlen)
{
    int rc = 0;
    struct tel_archive *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -ENOMEM;
    a->api = o->api;
    a->bus = o->bus;
    if (s2_config_enabled(o->s2)) {
        a->mode = TEL_ARCHIVE_S2;
        if ((rc = start_client(a, o->s2, err, errlen)) != 0)
            goto fail;
        a->api->log(a->api->host, AGENT_LOG_INFO, "archive: S2 basin %s, stream %s, endpoint %s",
                    o->s2->basin, o->s2->stream,
                    o->s2->basin_endpoint != NULL ? o->s2->basin_endpoint : "(cloud default)");
    } else if (o->local_dir != NULL && o->local_dir[0] != '\0') {
        a->mode = TEL_ARCHIVE_LOCAL;
        if ((rc = start_local(a, o, err, errlen)) != 0)
            goto fail;
    } else {
        a->mode = TEL_ARCHIVE_OFF;
        a->api->log(a->api->host, AGENT_LOG_INFO,
                    "archive: off (set S2_BASIN, S2_ACCESS_TOKEN and S2_STREAM, or "
                    "TELEMETRY_ARCHIVE_DIR)");
    }
    *out = a;
    return 0;
fail:
    if (rc == -ENOMEM && err[0] == '\0')
        snprintf(err, errlen, "archive: out of memory");
    tel_archive_free(a);
    return rc;
}

enum tel_archive_mode tel_archive_mode(const struct tel_archive *a)
{
    return a->mode;
}

struct s2_client *tel_archive_client(const struct tel_archive *a)
{
    return a->client;
}

const char *tel_archive_stream(const struct tel_archive *a)
{
    return a->client != NULL ? a->stream : NULL;
}

uint16_t tel_archive_local_port(const struct tel_archive *a)
{
    return a->local != NULL ? s2l_server_port(a->local) : 0;
}

static void on_flushed(int flushed, void *arg)
{
    struct tel_archive *a = arg;
    struct s2_batcher_stats st;
    s2_batcher_get_stats(a->batcher, &st);
    a->api->log(a->api->host, flushed ? AGENT_LOG_INFO : AGENT_LOG_WARN,
                "archive: %s; %llu appended, %llu pending, %llu refused",
                flushed ? "flushed" : "flush deadline passed", (unsigned long long)st.appended,
                (unsigned long long)st.pending,
                (unsigned long long)(st.dropped_full + st.dropped_large));
    void (*done)(void *) = a->flush_done;
    a->flush_done = NULL;
    if (done != NULL)
        done(a->flush_arg);
}

void tel_archive_flush(struct tel_archive *a, uint64_t timeout_ms, void (*done)(void *arg),
                       void *arg)
{
    if (a->subscribed) {
        tel_bus_unsubscribe(a->bus, a->sub_id);
        a->subscribed = 0;
    }
    if (a->batcher == NULL) {
        done(arg);
        return;
    }
    a->flush_done = done;
    a->flush_arg = arg;
    if (s2_batcher_flush(a->batcher, timeout_ms, on_flushed, a) != 0)
        on_flushed(0, a);
}

void tel_archive_free(struct tel_archive *a)
{
    if (a == NULL)
        return;
    if (a->subscribed)
        tel_bus_unsubscribe(a->bus, a->sub_id);
    if (a->batcher != NULL)
        s2_batcher_free(a->batcher);
    s2_client_free(a->client);
    s2_loop_free(a->loop);
    if (a->local != NULL)
        s2l_server_free(a->local);
    free(a->stream);
    free(a);
}
