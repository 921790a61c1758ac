/*
 * s2/wire.h - the JSON wire format of S2, shared by the client and s2-local.
 *
 * cJSON keeps numbers as doubles, exact only up to 2^53, and prints large
 * ones in exponent form. S2's seq_num and timestamp are u64, so bodies are
 * parsed with s2_wire_parse, which keeps integers of 16 or more digits as
 * strings, and u64 fields are read with s2_wire_get_u64 and written with
 * s2_wire_add_u64.
 */
#ifndef S2_WIRE_H
#define S2_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Parse JSON text; big integers stay exact (as strings). *out is owned by
 * the caller (cJSON_Delete). Returns 0, -EINVAL (not JSON), -ENOMEM. */
int s2_wire_parse(const char *text, size_t len, cJSON **out);

/* Read an unsigned 64-bit integer from a number or a digit string item.
 * Returns 0, -EINVAL (not a non-negative integer), -ERANGE. */
int s2_wire_get_u64(const cJSON *item, uint64_t *out);

/* Add key: v to obj as an exact integer. Returns 0 or -ENOMEM. */
int s2_wire_add_u64(cJSON *obj, const char *key, uint64_t v);

/* Longest decimal u64 (20 digits). */
#define S2_WIRE_U64_MAX 20

/* v in decimal into buf (at least S2_WIRE_U64_MAX bytes, not terminated);
 * returns the length. For bodies written by hand, without printf. */
size_t s2_wire_fmt_u64(char *buf, uint64_t v);

/* How many bytes from s a JSON string holds as they are: printable ASCII
 * other than '"' and '\\'. Writers and checkers of JSON strings skip such
 * runs at once (bodies and envelopes are mostly that). Inline: it is
 * called once per string, often on a few bytes. 16 bytes at a time with
 * SSE2 (x86-64's baseline), the rest one by one. */
static inline size_t s2_wire_plain_run(const uint8_t *s, size_t len)
{
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i ctl = _mm_set1_epi8(0x1F), quote = _mm_set1_epi8('"'), bsl = _mm_set1_epi8('\\');
    for (; len - i >= 16; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i bad = _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v); /* v <= 0x1F */
        bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, quote));
        bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, bsl));
        /* movemask of v itself: the bytes >= 0x80 */
        unsigned m = (unsigned)(_mm_movemask_epi8(bad) | _mm_movemask_epi8(v));
        if (m != 0)
            return i + (size_t)__builtin_ctz(m);
    }
#endif
    while (i < len && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
        i++;
    return i;
}

/* The length of len bytes in base64 with padding. */
#define S2_BASE64_LEN(len) (4 * (((len) + 2) / 3))

/* Standard base64 with padding of data[0..len) into dst, which has room for
 * S2_BASE64_LEN(len) bytes; no terminator. Returns the length written. */
size_t s2_base64_encode_to(char *dst, const void *data, size_t len);

/* The same into a new string. *out is malloc'd and NUL-terminated; caller
 * frees. Returns 0 or -ENOMEM. */
int s2_base64_encode(const void *data, size_t len, char **out, size_t *out_len);

/* Strict decode (padding required, no whitespace). *out is malloc'd (one
 * spare NUL byte); caller frees. Returns 0, -EINVAL, -ENOMEM. */
int s2_base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len);

#endif /* S2_WIRE_H */
