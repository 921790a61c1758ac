/*
 * telemetry/service.h - the telemetry plugin's shared publish service.
 *
 * The telemetry plugin registers this service in the host's named-service
 * registry (agent_host_api.service_register) under TELEMETRY_SERVICE_NAME, so
 * the host and other plugins publish through the same gate (session and
 * categories), bus (seq, ring, SSE) and archive batcher as the HTTP publish
 * route. Look it up with
 *
 *   const struct telemetry_service *t =
 *       api->service_lookup(api->host, TELEMETRY_SERVICE_NAME, TELEMETRY_SERVICE_VERSION);
 *
 * Every slot runs on the host's loop thread and never blocks. The struct is
 * owned by the telemetry plugin and valid until it is destroyed.
 */
#ifndef TELEMETRY_SERVICE_H
#define TELEMETRY_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TELEMETRY_SERVICE_NAME "telemetry"
#define TELEMETRY_SERVICE_VERSION 1

/* Category bits, in the order of the TelemetryEventCategory enum. */
#define TELEMETRY_CAT_CONSOLE (1u << 0)
#define TELEMETRY_CAT_NETWORK (1u << 1)
#define TELEMETRY_CAT_PAGE (1u << 2)
#define TELEMETRY_CAT_INTERACTION (1u << 3)
#define TELEMETRY_CAT_CONTROL (1u << 4)
#define TELEMETRY_CAT_CONNECTION (1u << 5)
#define TELEMETRY_CAT_SYSTEM (1u << 6)
#define TELEMETRY_CAT_SCREENSHOT (1u << 7)
#define TELEMETRY_CAT_CAPTCHA (1u << 8)
#define TELEMETRY_CAT_MONITOR (1u << 9)

/* One event to publish. Everything is borrowed for the duration of the call. */
struct telemetry_event {
    uint32_t struct_size;      /* sizeof(struct telemetry_event) */
    const char *type;          /* required */
    const char *category;      /* required for unknown types; ignored for known ones */
    const char *source_kind;   /* NULL = "" */
    const char *source_event;  /* NULL = omitted */
    const char *metadata_json; /* JSON object of strings, or NULL */
    const char *data_json;     /* any JSON value as text, or NULL = omitted */
    size_t data_len;           /* length of data_json (0 = strlen) */
    int64_t ts_us;             /* Unix microseconds; 0 = now */
};

/* Called when the active category set changes (mask 0: no session). */
typedef void (*telemetry_categories_fn)(uint32_t mask, void *arg);

struct telemetry_service {
    uint32_t struct_size; /* sizeof(struct telemetry_service) */
    void *ctx;            /* first argument of every slot */

    /* Publish one event through the gate. Returns 0 with *admitted set (and
     * *seq_out, if non-NULL, to the assigned seq when admitted), or -EINVAL
     * for an invalid event (bad category, bad JSON). */
    int (*publish)(void *ctx, const struct telemetry_event *ev, int *admitted, uint64_t *seq_out);

    /* The active category set (TELEMETRY_CAT_* bits); 0 when no session. */
    uint32_t (*categories)(void *ctx);

    /* Be told when the category set changes. *id_out identifies the
     * subscription for unsubscribe. Returns 0, -ENOMEM, -ENOSPC. */
    int (*subscribe)(void *ctx, telemetry_categories_fn fn, void *arg, uint64_t *id_out);
    void (*unsubscribe)(void *ctx, uint64_t id);
};

#ifdef __cplusplus
}
#endif

#endif /* TELEMETRY_SERVICE_H */
