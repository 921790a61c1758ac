/*
 * json.h - strict JSON validation and compaction, Go-compatible escaping.
 *
 * The envelope must carry the caller's `data` exactly (numbers keep their
 * text, no float round trip) and must be byte-compatible with the reference
 * server, which prints JSON with Go's encoding/json: compact, and with
 * '<', '>', '&', U+2028 and U+2029 escaped as \u003c ... \u2029.
 */
#ifndef TEL_JSON_H
#define TEL_JSON_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Maximum nesting depth accepted by tel_json_compact. */
#define TEL_JSON_MAX_DEPTH 1000

/* Validate that text[0..len) is exactly one JSON value (RFC 8259, optional
 * surrounding whitespace) and, when out is non-NULL, append its compact form
 * to out. Returns 0, -EINVAL (not valid JSON), -ENOMEM. */
int tel_json_compact(const char *text, size_t len, struct evbuffer *out);

/* tel_json_compact into dst (cap bytes) instead of an evbuffer; *out_len
 * gets the length. Returns 0, -EINVAL (not valid JSON), -ENOSPC (valid
 * but its compact form is longer than cap: escapes can make it longer
 * than the input). */
int tel_json_compact_mem(const char *text, size_t len, char *dst, size_t cap, size_t *out_len);

/* Append s[0..len) as a JSON string literal (quotes included), escaped as
 * Go does: invalid UTF-8 becomes \ufffd. Returns 0 or -ENOMEM. */
int tel_json_add_string(struct evbuffer *out, const char *s, size_t len);

/* What tel_json_put_string may write for len input bytes. */
#define TEL_JSON_STRING_MAX(len) (6 * (size_t)(len) + 2)

/* Write s[0..len) as tel_json_add_string does into dst (at least
 * TEL_JSON_STRING_MAX(len) bytes); returns the bytes written. */
size_t tel_json_put_string(char *dst, const char *s, size_t len);

/* Find the value of the first member named key (as written, escapes not decoded) of the
 * top-level JSON object text[0..len), which must be valid JSON. On success
 * *val and *vlen span the value text. Returns 0, -ENOENT, -EINVAL (not an
 * object). */
int tel_json_member(const char *text, size_t len, const char *key, const char **val, size_t *vlen);

/* Walks the members of the JSON object that is the whole of a text,
 * checking each key and value as tel_json_compact would: one pass over a
 * body both validates it and finds its members. Fields are private. */
struct tel_json_walk {
    const char *p;
    const char *end;
    int first;
    unsigned escapes;
};

/* Start at text[0..len), which must begin (after whitespace) with '{'.
 * Returns 0, -EINVAL (not an object). */
int tel_json_walk_init(struct tel_json_walk *w, const char *text, size_t len);

/* The next member's name: *key and *klen span it between its quotes
 * (escapes not decoded); call tel_json_walk_value next. Returns 1 with a
 * name, 0 at the end of the object (nothing but whitespace after it),
 * -EINVAL (not valid JSON). */
int tel_json_walk_key(struct tel_json_walk *w, const char **key, size_t *klen);

/* The value of the member just named: *val and *vlen span its text. When
 * dst is non-NULL its compact form is written there too (cap bytes; *dlen,
 * which may be NULL, gets its length). Returns 0, -EINVAL (not valid
 * JSON), -ENOSPC (valid, but the compact form is longer than cap; the span
 * is set). */
int tel_json_walk_value(struct tel_json_walk *w, char *dst, size_t cap, const char **val,
                        size_t *vlen, size_t *dlen);

/* Backslashes in the last name or value walked over: non-zero when it
 * holds an escape that a decoder would change. */
static inline unsigned tel_json_walk_escapes(const struct tel_json_walk *w)
{
    return w->escapes;
}

/* Walks the members of a JSON object that is known to be valid (checked
 * with tel_json_compact first), without building a tree. Values are skipped
 * over, not checked again: on text that is not valid JSON the spans are
 * unspecified (but within the text). */
struct tel_json_iter {
    const char *p;
    const char *end;
    int first;
};

/* Start at the object text[0..len). Returns 0, -EINVAL (not an object). */
int tel_json_iter_init(struct tel_json_iter *it, const char *text, size_t len);

/* The next member: *key and *klen span the name between its quotes (escapes
 * not decoded), *val and *vlen the value text. Returns 1 with a member, 0 at
 * the end of the object, -EINVAL (malformed). */
int tel_json_iter_next(struct tel_json_iter *it, const char **key, size_t *klen, const char **val,
                       size_t *vlen);

/* Write v in decimal to buf (at least TEL_JSON_INT_MAX bytes, not
 * NUL-terminated), as printf's %llu / %lld would; returns the length.
 * For hot paths that would otherwise go through printf. */
#define TEL_JSON_INT_MAX 20
size_t tel_json_fmt_u64(char *buf, uint64_t v);
size_t tel_json_fmt_i64(char *buf, int64_t v);

/* Decode one well-formed UTF-8 sequence (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF) at p, n bytes left. Returns its length
 * with the code point in *cp, or 0 for an invalid sequence. */
size_t tel_utf8_decode(const unsigned char *p, size_t n, uint32_t *cp);

#endif /* TEL_JSON_H */
