/*
 * s2/config.h - S2 client configuration, read as the official SDKs and the
 * reference server read it.
 *
 *   S2_ACCESS_TOKEN, S2_BASIN, S2_STREAM   all three enable the archive
 *   S2_ACCOUNT_ENDPOINT, S2_BASIN_ENDPOINT self-hosted / local S2 (scheme
 *                                          optional; no path -> "/v1")
 *   S2_BATCHER_LINGER                      Go duration, default 100ms
 *   S2_BATCHER_MAX_RECORDS                 1..1000, default 50
 *   S2_BATCHER_QUEUE_RECORDS               bounded queue, default 65536
 *   S2_REQUEST_TIMEOUT, S2_CONNECT_TIMEOUT Go durations, default 5s / 3s
 *
 * The token never appears in a log line or an error message.
 */
#ifndef S2_CONFIG_H
#define S2_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* Look up one configuration key; NULL when unset. The result is borrowed. */
typedef const char *(*s2_lookup_fn)(const char *key, void *arg);

struct s2_config {
    char *access_token;     /* owned; never logged */
    char *basin;            /* owned */
    char *stream;           /* owned */
    char *account_endpoint; /* owned; normalized base URL ending in "/v1" */
    char *basin_endpoint;   /* owned; normalized, may hold "{basin}" */
    uint64_t linger_ms;
    uint32_t max_records;
    uint32_t queue_records;
    uint64_t request_timeout_ms; /* one attempt, connect included */
    uint64_t connect_timeout_ms;
    /* Retries of one request (not read from the environment; 0 = default):
     * delay = b + rand[0, b], b = min(retry_base_ms * 2^n, retry_max_ms). */
    uint64_t retry_base_ms; /* default 100 */
    uint64_t retry_max_ms;  /* default 1000 */
    uint32_t max_attempts;  /* attempts in all, default 3 */
};

/* Fill *out from lookup (defaults for unset keys). On a malformed value
 * returns -EINVAL and writes a message naming the variable into err. *out is
 * always safe to pass to s2_config_clear afterwards. */
int s2_config_load(s2_lookup_fn lookup, void *arg, struct s2_config *out, char *err, size_t errlen);

/* 1 when token, basin and stream are all set. */
int s2_config_enabled(const struct s2_config *cfg);

/* Free the owned strings; leaves *cfg zeroed. */
void s2_config_clear(struct s2_config *cfg);

/* Parse a Go duration ("300ms", "1.5s", "1m30s", "0"; units ns us µs ms s m
 * h) into nanoseconds. Negative durations are refused (-EINVAL). Returns 0,
 * -EINVAL, -ERANGE. */
int s2_duration_parse(const char *text, uint64_t *ns_out);

/* Normalize an endpoint string: scheme optional (https, or http for
 * localhost/127.0.0.1/[::1]), "/v1" appended when there is no path.
 * *out is malloc'd, caller frees. Returns 0, -EINVAL, -ENOMEM. */
int s2_endpoint_normalize(const char *text, char **out);

#endif /* S2_CONFIG_H */
