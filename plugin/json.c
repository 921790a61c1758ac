/* json.c - strict JSON scanner/compactor and Go-compatible string escaping. */
#include "json.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <event2/buffer.h>

#include "s2/wire.h"

/* Output: bytes are gathered in a window and appended to the evbuffer in
 * blocks, so compaction costs one evbuffer_add per 4 KiB, not per byte.
 * The window is the caller's memory for tel_json_compact_mem, none when
 * only validating. */
struct out {
    struct evbuffer *eb; /* flush target, or NULL */
    char *w;             /* window; NULL: validate only */
    size_t n, cap;
    int err;
    char buf[4096];
};

/* Only the header is set: zeroing the 4 KiB buffer would cost more than
 * most values take to copy. */
static void out_init(struct out *o, struct evbuffer *eb)
{
    o->eb = eb;
    o->w = eb != NULL ? o->buf : NULL;
    o->n = 0;
    o->cap = sizeof o->buf;
    o->err = 0;
}

/* Output into dst[0..cap) (NULL: none) rather than an evbuffer. */
static void out_mem(struct out *o, char *dst, size_t cap)
{
    o->eb = NULL;
    o->w = dst;
    o->n = 0;
    o->cap = cap;
    o->err = 0;
}

static void out_flush(struct out *o)
{
    if (o->eb != NULL && o->n > 0 && o->err == 0 && evbuffer_add(o->eb, o->buf, o->n) != 0)
        o->err = -ENOMEM;
    o->n = 0;
}

static void out_put(struct out *o, const char *p, size_t n)
{
    if (o->w == NULL)
        return;
    while (n > 0) {
        if (o->n == o->cap) {
            if (o->eb == NULL) {
                o->err = -ENOSPC;
                return;
            }
            out_flush(o);
        }
        size_t take = o->cap - o->n;
        if (take > n)
            take = n;
        memcpy(o->w + o->n, p, take);
        o->n += take;
        p += take;
        n -= take;
    }
}

static void out_byte(struct out *o, char c)
{
    out_put(o, &c, 1);
}

static const char hexdig[] = "0123456789abcdef";

static void out_u00(struct out *o, unsigned char c)
{
    char e[6] = {'\\', 'u', '0', '0', hexdig[c >> 4], hexdig[c & 15]};
    out_put(o, e, sizeof e);
}

struct scan {
    const unsigned char *p;
    const unsigned char *end;
    struct out *o;
    unsigned escapes; /* backslashes seen in string literals */
};

static void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Bytes a string copies as they are: printable ASCII other than the quote,
 * the backslash and Go's HTML-safe escapes, and UTF-8 bytes except 0xE2
 * (the lead byte of U+2028/U+2029). */
#define PLAIN_SCAN 1 /* copied as is inside a string literal */
#define PLAIN_PUT 2  /* ... and ASCII: copied as is by tel_json_put_string */
static const unsigned char plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    3, 3, 0, 3, 3, 3, 0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 3, 0, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* The end of the run of bytes with flag set in plain[] from p: 16 bytes
 * at a time with SSE2 (x86-64's baseline). A run of 16 bytes or more ends
 * with one more block that overlaps the last (those bytes are known to be
 * plain); a shorter one goes byte by byte. */
#if defined(__SSE2__)
#include <emmintrin.h>
static unsigned plain_mask(const unsigned char *p, int flag)
{
    const __m128i ctl = _mm_set1_epi8(0x1F), quote = _mm_set1_epi8('"'), bsl = _mm_set1_epi8('\\'),
                  lt = _mm_set1_epi8('<'), gt = _mm_set1_epi8('>'), amp = _mm_set1_epi8('&'),
                  e2 = _mm_set1_epi8((char)0xE2);
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i bad = _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v); /* v <= 0x1F */
    bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, quote));
    bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, bsl));
    bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, lt));
    bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, gt));
    bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, amp));
    bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, e2));
    unsigned m = (unsigned)_mm_movemask_epi8(bad);
    if (flag == PLAIN_PUT)
        m |= (unsigned)_mm_movemask_epi8(v); /* bytes >= 0x80 */
    return m;
}

static const unsigned char *plain_run(const unsigned char *p, const unsigned char *end, int flag)
{
    if (end - p < 16) {
        while (p < end && (plain[*p] & flag))
            p++;
        return p;
    }
    for (; end - p >= 16; p += 16) {
        unsigned m = plain_mask(p, flag);
        if (m != 0)
            return p + __builtin_ctz(m);
    }
    if (p < end) {
        unsigned m = plain_mask(end - 16, flag);
        return m != 0 ? end - 16 + __builtin_ctz(m) : end;
    }
    return p;
}
#else
static const unsigned char *plain_run(const unsigned char *p, const unsigned char *end, int flag)
{
    while (p < end && (plain[*p] & flag))
        p++;
    return p;
}
#endif

/* A string literal, copied as is except for Go's HTML-safe escapes. */
static int scan_string(struct scan *s)
{
    if (s->p >= s->end || *s->p != '"')
        return -EINVAL;
    out_byte(s->o, '"');
    s->p++;
    while (s->p < s->end) {
        const unsigned char *run = s->p;
        s->p = plain_run(s->p, s->end, PLAIN_SCAN);
        if (s->p > run)
            out_put(s->o, (const char *)run, (size_t)(s->p - run));
        if (s->p >= s->end)
            break;
        unsigned char c = *s->p;
        if (c == '"') {
            out_byte(s->o, '"');
            s->p++;
            return 0;
        }
        if (c < 0x20)
            return -EINVAL;
        if (c == '\\') {
            s->escapes++;
            if (s->end - s->p < 2)
                return -EINVAL;
            unsigned char e = s->p[1];
            if (e == 'u') {
                if (s->end - s->p < 6 || !is_hex(s->p[2]) || !is_hex(s->p[3]) || !is_hex(s->p[4]) ||
                    !is_hex(s->p[5]))
                    return -EINVAL;
                out_put(s->o, (const char *)s->p, 6);
                s->p += 6;
                continue;
            }
            if (strchr("\"\\/bfnrt", e) == NULL || e == '\0')
                return -EINVAL;
            out_put(s->o, (const char *)s->p, 2);
            s->p += 2;
            continue;
        }
        if (c == '<' || c == '>' || c == '&') {
            out_u00(s->o, c);
            s->p++;
            continue;
        }
        if (c == 0xE2 && s->end - s->p >= 3 && s->p[1] == 0x80 && (s->p[2] & 0xFE) == 0xA8) {
            out_put(s->o, s->p[2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
            s->p += 3;
            continue;
        }
        out_byte(s->o, (char)c);
        s->p++;
    }
    return -EINVAL;
}

static int scan_digits(struct scan *s)
{
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start ? 0 : -EINVAL;
}

static int scan_number(struct scan *s)
{
    const unsigned char *start = s->p;
    if (s->p < s->end && *s->p == '-')
        s->p++;
    if (s->p >= s->end)
        return -EINVAL;
    if (*s->p == '0')
        s->p++;
    else if (scan_digits(s) != 0)
        return -EINVAL;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (scan_digits(s) != 0)
            return -EINVAL;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (scan_digits(s) != 0)
            return -EINVAL;
    }
    out_put(s->o, (const char *)start, (size_t)(s->p - start));
    return 0;
}

static int scan_literal(struct scan *s, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return -EINVAL;
    out_put(s->o, lit, n);
    s->p += n;
    return 0;
}

static int scan_value(struct scan *s, int depth)
{
    skip_ws(s);
    if (s->p >= s->end)
        return -EINVAL;
    unsigned char c = *s->p;
    if (c == '"')
        return scan_string(s);
    if (c == '-' || (c >= '0' && c <= '9'))
        return scan_number(s);
    if (c == 't')
        return scan_literal(s, "true");
    if (c == 'f')
        return scan_literal(s, "false");
    if (c == 'n')
        return scan_literal(s, "null");
    if (c != '{' && c != '[')
        return -EINVAL;
    if (depth >= TEL_JSON_MAX_DEPTH)
        return -EINVAL;
    unsigned char close = c == '{' ? '}' : ']';
    out_byte(s->o, (char)c);
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        out_byte(s->o, (char)close);
        s->p++;
        return 0;
    }
    for (;;) {
        if (c == '{') {
            skip_ws(s);
            if (scan_string(s) != 0)
                return -EINVAL;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return -EINVAL;
            out_byte(s->o, ':');
            s->p++;
        }
        if (scan_value(s, depth + 1) != 0)
            return -EINVAL;
        skip_ws(s);
        if (s->p >= s->end)
            return -EINVAL;
        if (*s->p == close) {
            out_byte(s->o, (char)close);
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return -EINVAL;
        out_byte(s->o, ',');
        s->p++;
    }
}

static int compact(const char *text, size_t len, struct out *o)
{
    struct scan s = {(const unsigned char *)text, (const unsigned char *)text + len, o, 0};
    int rc = scan_value(&s, 0);
    if (rc == 0) {
        skip_ws(&s);
        if (s.p != s.end)
            rc = -EINVAL;
    }
    if (rc == 0 && o->err != 0)
        rc = o->err;
    return rc;
}

int tel_json_compact(const char *text, size_t len, struct evbuffer *out)
{
    /* Heap-free: the staging buffer lives on the stack. */
    struct out o;
    out_init(&o, out);
    int rc = compact(text, len, &o);
    if (rc == 0) {
        out_flush(&o);
        rc = o.err;
    }
    return rc;
}

int tel_json_compact_mem(const char *text, size_t len, char *dst, size_t cap, size_t *out_len)
{
    struct out o;
    out_mem(&o, dst, cap);
    int rc = compact(text, len, &o);
    if (rc == 0)
        *out_len = o.n;
    return rc;
}

size_t tel_utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
    unsigned char c = p[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

size_t tel_json_put_string(char *dst, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)str, *end = p + len;
    char *d = dst;
    *d++ = '"';
    while (p < end) {
        const unsigned char *run = p;
        p = plain_run(p, end, PLAIN_PUT);
        if (p > run) {
            memcpy(d, run, (size_t)(p - run));
            d += p - run;
        }
        if (p >= end)
            break;
        unsigned char c = *p;
        if (c < 0x80) {
            const char *e = NULL;
            switch (c) {
            case '"':
                e = "\\\"";
                break;
            case '\\':
                e = "\\\\";
                break;
            case '\b':
                e = "\\b";
                break;
            case '\f':
                e = "\\f";
                break;
            case '\n':
                e = "\\n";
                break;
            case '\r':
                e = "\\r";
                break;
            case '\t':
                e = "\\t";
                break;
            }
            if (e != NULL) {
                memcpy(d, e, 2);
                d += 2;
            } else {
                memcpy(d, "\\u00", 4);
                d[4] = hex[c >> 4];
                d[5] = hex[c & 15];
                d += 6;
            }
            p++;
            continue;
        }
        uint32_t cp;
        size_t n = tel_utf8_decode(p, (size_t)(end - p), &cp);
        if (n == 0) {
            memcpy(d, "\\ufffd", 6);
            d += 6;
            p++;
        } else if (cp == 0x2028 || cp == 0x2029) {
            memcpy(d, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
            d += 6;
            p += n;
        } else {
            memcpy(d, p, n);
            d += n;
            p += n;
        }
    }
    *d++ = '"';
    return (size_t)(d - dst);
}

/* Long strings go out in pieces that end before a UTF-8 lead byte whose
 * sequence could reach past the piece, so every piece escapes exactly as
 * the whole would. */
#define ADD_STRING_PIECE 1024

int tel_json_add_string(struct evbuffer *out, const char *str, size_t len)
{
    char buf[TEL_JSON_STRING_MAX(ADD_STRING_PIECE)];
    const unsigned char *p = (const unsigned char *)str;
    if (len <= ADD_STRING_PIECE) {
        size_t n = tel_json_put_string(buf, str, len);
        return evbuffer_add(out, buf, n) ? -ENOMEM : 0;
    }
    if (evbuffer_add(out, "\"", 1) != 0)
        return -ENOMEM;
    while (len > 0) {
        size_t take = len;
        if (take > ADD_STRING_PIECE) {
            take = ADD_STRING_PIECE;
            /* A lead byte needs at most 3 more: look back over 3 bytes. */
            for (size_t k = 1; k <= 3; k++) {
                if (p[take - k] >= 0xC0) {
                    take -= k;
                    break;
                }
                if (p[take - k] < 0x80)
                    break;
            }
        }
        /* put_string adds quotes: drop them. */
        size_t n = tel_json_put_string(buf, (const char *)p, take);
        if (evbuffer_add(out, buf + 1, n - 2) != 0)
            return -ENOMEM;
        p += take;
        len -= take;
    }
    return evbuffer_add(out, "\"", 1) ? -ENOMEM : 0;
}

int tel_json_member(const char *text, size_t len, const char *key, const char **val, size_t *vlen)
{
    struct out o;
    out_init(&o, NULL);
    struct scan s = {(const unsigned char *)text, (const unsigned char *)text + len, &o, 0};
    size_t klen = strlen(key);
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return -EINVAL;
    s.p++;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}')
        return -ENOENT;
    while (s.p < s.end) {
        skip_ws(&s);
        const unsigned char *kstart = s.p + 1;
        if (scan_string(&s) != 0)
            return -EINVAL;
        size_t this_klen = (size_t)(s.p - 1 - kstart);
        int match = this_klen == klen && memcmp(kstart, key, klen) == 0;
        skip_ws(&s);
        if (s.p >= s.end || *s.p != ':')
            return -EINVAL;
        s.p++;
        skip_ws(&s);
        const unsigned char *vstart = s.p;
        if (scan_value(&s, 1) != 0)
            return -EINVAL;
        if (match) {
            *val = (const char *)vstart;
            *vlen = (size_t)(s.p - vstart);
            return 0;
        }
        skip_ws(&s);
        if (s.p < s.end && *s.p == ',') {
            s.p++;
            continue;
        }
        break;
    }
    return -ENOENT;
}

/* Just past the '{' that opens text (after whitespace), or NULL. */
static const char *object_start(const char *text, size_t len)
{
    struct scan s = {(const unsigned char *)text, (const unsigned char *)text + len, NULL, 0};
    skip_ws(&s);
    return s.p < s.end && *s.p == '{' ? (const char *)s.p + 1 : NULL;
}

int tel_json_walk_init(struct tel_json_walk *w, const char *text, size_t len)
{
    if ((w->p = object_start(text, len)) == NULL)
        return -EINVAL;
    w->end = text + len;
    w->first = 1;
    w->escapes = 0;
    return 0;
}

int tel_json_walk_key(struct tel_json_walk *w, const char **key, size_t *klen)
{
    struct out none; /* writes nothing; its buffer stays unset */
    out_mem(&none, NULL, 0);
    struct scan s = {(const unsigned char *)w->p, (const unsigned char *)w->end, &none, 0};
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        /* The object is the whole text: only whitespace may follow. */
        s.p++;
        skip_ws(&s);
        w->p = (const char *)s.p;
        return s.p == s.end ? 0 : -EINVAL;
    }
    if (!w->first) {
        if (s.p >= s.end || *s.p != ',')
            return -EINVAL;
        s.p++;
        skip_ws(&s);
    }
    const unsigned char *quote = s.p;
    if (scan_string(&s) != 0)
        return -EINVAL;
    *key = (const char *)quote + 1;
    *klen = (size_t)(s.p - quote - 2);
    skip_ws(&s);
    if (s.p >= s.end || *s.p != ':')
        return -EINVAL;
    w->p = (const char *)s.p + 1;
    w->first = 0;
    w->escapes = s.escapes;
    return 1;
}

int tel_json_walk_value(struct tel_json_walk *w, char *dst, size_t cap, const char **val,
                        size_t *vlen, size_t *dlen)
{
    struct out o;
    out_mem(&o, dst, cap);
    struct scan s = {(const unsigned char *)w->p, (const unsigned char *)w->end, &o, 0};
    skip_ws(&s);
    const unsigned char *vstart = s.p;
    /* Depth 1: what the members of a depth-0 object get in compact(). */
    if (scan_value(&s, 1) != 0)
        return -EINVAL;
    *val = (const char *)vstart;
    *vlen = (size_t)(s.p - vstart);
    if (dlen != NULL)
        *dlen = o.n;
    w->p = (const char *)s.p;
    w->escapes = s.escapes;
    return o.err;
}

int tel_json_iter_init(struct tel_json_iter *it, const char *text, size_t len)
{
    if ((it->p = object_start(text, len)) == NULL)
        return -EINVAL;
    it->end = text + len;
    it->first = 1;
    return 0;
}

/* The end of the string literal at p (valid JSON: closed, escapes well
 * formed), or end. */
static const unsigned char *skip_string(const unsigned char *p, const unsigned char *end)
{
    const unsigned char *start = ++p;
    while (p < end) {
        const unsigned char *q = memchr(p, '"', (size_t)(end - p));
        if (q == NULL)
            return end;
        size_t k = 0;
        while (q - k > start && q[-(ptrdiff_t)k - 1] == '\\')
            k++;
        if (k % 2 == 0)
            return q + 1;
        p = q + 1;
    }
    return end;
}

/* The end of the value at p, which is valid JSON: no checks, bounds kept. */
static const unsigned char *skip_value(const unsigned char *p, const unsigned char *end)
{
    if (p >= end)
        return end;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        size_t depth = 0;
        while (p < end) {
            unsigned char c = *p;
            if (c == '"') {
                p = skip_string(p, end);
                continue;
            }
            p++;
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return p;
            }
        }
        return end;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
           *p != '\n' && *p != '\r')
        p++;
    return p;
}

int tel_json_iter_next(struct tel_json_iter *it, const char **key, size_t *klen, const char **val,
                       size_t *vlen)
{
    /* The object was validated: members are skipped over, not re-checked
     * (publishing walks every body this way). */
    struct scan s = {(const unsigned char *)it->p, (const unsigned char *)it->end, NULL, 0};
    skip_ws(&s);
    if (s.p >= s.end)
        return -EINVAL;
    if (*s.p == '}')
        return 0;
    if (!it->first) {
        if (*s.p != ',')
            return -EINVAL;
        s.p++;
        skip_ws(&s);
    }
    if (s.p >= s.end || *s.p != '"')
        return -EINVAL;
    const unsigned char *kstart = s.p + 1;
    s.p = skip_string(s.p, s.end);
    if (s.p == s.end || s.p[-1] != '"' || s.p - 1 < kstart)
        return -EINVAL;
    *key = (const char *)kstart;
    *klen = (size_t)(s.p - 1 - kstart);
    skip_ws(&s);
    if (s.p >= s.end || *s.p != ':')
        return -EINVAL;
    s.p++;
    skip_ws(&s);
    const unsigned char *vstart = s.p;
    s.p = skip_value(s.p, s.end);
    if (s.p == vstart)
        return -EINVAL;
    *val = (const char *)vstart;
    *vlen = (size_t)(s.p - vstart);
    it->p = (const char *)s.p;
    it->first = 0;
    return 1;
}

size_t tel_json_fmt_u64(char *buf, uint64_t v)
{
    return s2_wire_fmt_u64(buf, v);
}

size_t tel_json_fmt_i64(char *buf, int64_t v)
{
    if (v >= 0)
        return tel_json_fmt_u64(buf, (uint64_t)v);
    buf[0] = '-';
    /* Negate in unsigned arithmetic: INT64_MIN has no positive int64. */
    return 1 + tel_json_fmt_u64(buf + 1, 0 - (uint64_t)v);
}
