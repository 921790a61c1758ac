/*
 * params.h - query parameters of GET /telemetry/events.
 *
 * Parses offset, since, until, limit and category from a query string with
 * libevent's query parser, applies the contract's defaults, clamping and
 * precedence, and reports every bad value with a message naming the
 * parameter. Pure: no I/O, the wall clock is an argument.
 */
#ifndef TEL_PARAMS_H
#define TEL_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#define TEL_PARAMS_LIMIT_DEFAULT 100
#define TEL_PARAMS_LIMIT_MIN 1
#define TEL_PARAMS_LIMIT_MAX 1000

/* The number of telemetry categories (TelemetryEventCategory). */
#define TEL_PARAMS_NCATEGORIES 10

/* Where a page starts, after precedence (offset > since > oldest). */
enum tel_start_kind {
    TEL_START_OLDEST = 0, /* the oldest retained record: S2 seq_num 0, clamped */
    TEL_START_OFFSET,     /* an S2 stream position (a previous X-Next-Offset) */
    TEL_START_TIMESTAMP,  /* the first record with S2 timestamp >= start_ms */
};

/* The resolved read request. */
struct tel_read_params {
    enum tel_start_kind start;
    uint64_t offset;   /* TEL_START_OFFSET */
    uint64_t since_ms; /* TEL_START_TIMESTAMP */
    int has_until;
    uint64_t until_ms;   /* exclusive, S2 record timestamp (ms) */
    uint32_t limit;      /* 1..1000 */
    uint32_t categories; /* TELEMETRY_CAT_* bits; 0 = no filter */
};

/* Parse the raw (still percent-encoded) query string of a request; NULL or
 * "" is an empty query. now_ms is the wall clock in Unix milliseconds, for
 * durations. Returns 0, or -EINVAL with a message naming the parameter in
 * err (NUL-terminated, at most errlen bytes). */
int tel_params_parse(const char *query, uint64_t now_ms, struct tel_read_params *out, char *err,
                     size_t errlen);

/* A strict unsigned decimal: digits only, no sign or blanks, no overflow.
 * Returns 0 or -EINVAL. */
int tel_params_u64(const char *text, uint64_t *out);

/* The page size for a limit value: default when text is NULL, clamped to
 * 1..1000 otherwise ("0" and "-5" give 1, "5000" gives 1000). Returns 0, or
 * -EINVAL when text is not an integer. */
int tel_params_limit(const char *text, uint32_t *out);

/* A time value in Unix milliseconds: integer Unix milliseconds, a Go
 * duration meaning that long ago ("5m", "1h30m", "300ms"), or RFC 3339 with
 * optional fractional seconds and a Z or numeric offset. Sub-millisecond
 * fractions round up (the first whole millisecond at or after the instant).
 * Returns 0 or -EINVAL with a reason (without the parameter name) in err. */
int tel_params_time(const char *text, uint64_t now_ms, uint64_t *ms_out, char *err, size_t errlen);

/* RFC 3339 only (see tel_params_time). Returns 0 or -EINVAL; -ERANGE before
 * 1970. */
int tel_params_rfc3339(const char *text, uint64_t *ms_out);

/* The category bit (TELEMETRY_CAT_*) of a name of len bytes; 0 if unknown. */
uint32_t tel_params_category_bit(const char *name, size_t len);

/* The name of category index i (0..TEL_PARAMS_NCATEGORIES-1), else NULL. */
const char *tel_params_category_name(unsigned i);

#endif /* TEL_PARAMS_H */
