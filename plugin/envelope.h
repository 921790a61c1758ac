/*
 * envelope.h - the telemetry event model: categories, known types, and the
 * envelope encoding of the contract (telemetry-api.md section 1).
 *
 * Wire form, compact, in this field order:
 *   {"seq":N,"event":{"ts":T,"type":"..","category":"..",
 *    "source":{"kind":"..","event":"..","metadata":{..}},"data":..,"truncated":true}}
 * source.kind is always present; source.event and source.metadata are
 * omitted when empty; data is omitted when absent; truncated only when true.
 * Metadata keys are sorted (as Go prints a map) and telemetry_session_id is
 * stamped over any caller value.
 */
#ifndef TEL_ENVELOPE_H
#define TEL_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "telemetry/service.h"

struct evbuffer;

/* Category indexes; bit i of a mask is TELEMETRY_CAT_* of telemetry/service.h. */
enum tel_category {
    TEL_CAT_CONSOLE = 0,
    TEL_CAT_NETWORK,
    TEL_CAT_PAGE,
    TEL_CAT_INTERACTION,
    TEL_CAT_CONTROL,
    TEL_CAT_CONNECTION,
    TEL_CAT_SYSTEM,
    TEL_CAT_SCREENSHOT,
    TEL_CAT_CAPTCHA,
    TEL_CAT_MONITOR,
    TEL_CAT_COUNT
};

#define TEL_CATS_ALL ((1u << TEL_CAT_COUNT) - 1)
/* What PUT /telemetry may switch: every category but monitor. */
#define TEL_CATS_USER (TEL_CATS_ALL & ~TELEMETRY_CAT_MONITOR)
/* The set of a session started without a "browser" key. */
#define TEL_CATS_DEFAULT                                                                           \
    (TELEMETRY_CAT_CONTROL | TELEMETRY_CAT_CONNECTION | TELEMETRY_CAT_SYSTEM |                     \
     TELEMETRY_CAT_CAPTCHA)
/* The browser (CDP) categories; any of them also admits monitor. */
#define TEL_CATS_CDP                                                                               \
    (TELEMETRY_CAT_CONSOLE | TELEMETRY_CAT_NETWORK | TELEMETRY_CAT_PAGE |                          \
     TELEMETRY_CAT_INTERACTION | TELEMETRY_CAT_SCREENSHOT)

/* An envelope that serializes to more than this many bytes is truncated. */
#define TEL_ENVELOPE_MAX_BYTES 1000000

/* The name of a category ("console"...); NULL when out of range. */
const char *tel_category_name(int cat);

/* Parse a category name (exact, lower case). Returns 0 with *cat, or -EINVAL. */
int tel_category_parse(const char *name, size_t len, int *cat);

/* The fixed category of a known event type, or -ENOENT for a custom type. */
int tel_type_category(const char *type);

/* The admitted set for a user set: the user categories, plus monitor when
 * any CDP category is on. */
uint32_t tel_cats_effective(uint32_t user_mask);

/* One metadata pair; both strings borrowed, NUL-terminated. */
struct tel_meta {
    const char *key;
    const char *value;
};

/* An event ready to encode. Everything is borrowed. */
struct tel_event {
    int64_t ts_us;            /* Unix microseconds */
    const char *type;         /* non-empty */
    int category;             /* enum tel_category */
    const char *source_kind;  /* NULL = "" */
    const char *source_event; /* NULL or "" = omitted */
    const struct tel_meta *meta;
    size_t meta_count;
    const char *data; /* compact JSON text (see tel_json_compact); NULL = omitted */
    size_t data_len;
};

/* Append the envelope of ev with the given seq to out. session_id (may be
 * NULL) is stamped as metadata.telemetry_session_id. When the result would
 * exceed TEL_ENVELOPE_MAX_BYTES, data becomes null and truncated true.
 * *truncated (may be NULL) tells which. Returns 0, -EINVAL, -ENOMEM; out is
 * left unchanged on error. */
int tel_envelope_encode(const struct tel_event *ev, uint64_t seq, const char *session_id,
                        struct evbuffer *out, int *truncated);

/* The same envelope (same bytes, same truncation) in one new heap block of
 * head + *json_len + tail bytes, the JSON at *out + head: the caller fills
 * the head and tail bytes (left uninitialised) and owns the block (free).
 * For hot paths: no evbuffer, one copy at most. Returns 0, -EINVAL,
 * -ENOMEM. */
int tel_envelope_build(const struct tel_event *ev, uint64_t seq, const char *session_id,
                       size_t head, size_t tail, char **out, size_t *json_len, int *truncated);

#endif /* TEL_ENVELOPE_H */
