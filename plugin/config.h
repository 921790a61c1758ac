/*
 * config.h - the plugin's configuration, read through the host's lookup
 * (environment overlaid by the host's env file).
 *
 *   TELEMETRY_ENABLED         on/off toggle of the whole plugin (default on)
 *   TELEMETRY_RING_CAPACITY   envelopes kept for SSE readers, 1..1048576 (1024)
 *   TELEMETRY_CATEGORIES      boot session: comma list of user categories,
 *                             "default" or "all"; unset = no session
 *   TELEMETRY_MAX_BODY        POST /telemetry/events body bound, bytes,
 *                             1024..67108864 (2097152)
 *   TELEMETRY_ARCHIVE_DIR     data directory of the embedded s2-local, used
 *                             when S2 is not configured
 *   TELEMETRY_SSE_KEEPALIVE   Go duration, 10ms..1h (15s)
 *   TELEMETRY_SSE_MAX_PENDING bytes queued per SSE client before it stops
 *                             receiving, 4096..67108864 (262144)
 *   S2_*                      see s2/config.h
 *
 * An invalid value refuses the load with a message naming the variable.
 */
#ifndef TEL_CONFIG_H
#define TEL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "s2/config.h"

struct tel_config {
    int enabled;
    uint32_t ring_capacity;
    int boot_session;   /* TELEMETRY_CATEGORIES was set */
    uint32_t boot_mask; /* its user categories */
    size_t max_body;
    char *archive_dir; /* owned; NULL when unset */
    uint64_t keepalive_ms;
    size_t sse_max_pending;
    struct s2_config s2; /* owned */
};

/* Fill *out. Returns 0, or -EINVAL with a message naming the variable in err,
 * or -ENOMEM. *out is always safe to clear. */
int tel_config_load(s2_lookup_fn lookup, void *arg, struct tel_config *out, char *err,
                    size_t errlen);

void tel_config_clear(struct tel_config *cfg);

/* Parse a TELEMETRY_CATEGORIES value into a user mask. Returns 0 or -EINVAL. */
int tel_config_categories(const char *text, uint32_t *mask);

#endif /* TEL_CONFIG_H */
