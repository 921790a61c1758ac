/* records.c - SequencedRecord JSON for reads and read sessions. */
#include "records.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "proto.h"
#include "s2/wire.h"
#include "store.h"

uint64_t s2l_metered_size(size_t nheaders, uint64_t header_bytes, uint64_t body_len)
{
    return 8 + 2 * (uint64_t)nheaders + header_bytes + body_len;
}

/* Length of the valid UTF-8 sequence at s, or 0 with *skip set to the
 * maximal invalid subpart to replace by one U+FFFD. */
static size_t utf8_seq(const uint8_t *s, size_t len, size_t *skip)
{
    uint8_t c = s[0];
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        *skip = 1;
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (i >= len || s[i] < lo || s[i] > hi) {
            *skip = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return n;
}

/* The inside of s2l_json_string: s escaped, without the quotes. */
static int json_chars(struct evbuffer *out, const uint8_t *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    int rc = 0;
    size_t i = 0, run = 0; /* run: safe bytes pending from s + i - run */
    while (rc == 0 && i < len) {
        size_t k = s2_wire_plain_run(s + i, len - i);
        i += k;
        run += k;
        if (i >= len)
            break;
        uint8_t c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            run++;
            continue;
        }
        size_t skip = 0, n = c >= 0x80 ? utf8_seq(s + i, len - i, &skip) : 0;
        if (n > 0) {
            i += n;
            run += n;
            continue;
        }
        if (run > 0)
            rc = evbuffer_add(out, s + i - run, run);
        run = 0;
        if (rc != 0)
            break;
        if (c >= 0x80) {
            rc = evbuffer_add(out, "\xEF\xBF\xBD", 3);
            i += skip;
            continue;
        }
        char esc[7] = {'\\', 0};
        size_t elen = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        rc = evbuffer_add(out, esc, elen);
        i++;
    }
    if (rc == 0 && run > 0)
        rc = evbuffer_add(out, s + i - run, run);
    return rc == 0 ? 0 : -ENOMEM;
}

int s2l_json_string(struct evbuffer *out, const uint8_t *s, size_t len)
{
    if (evbuffer_add(out, "\"", 1) != 0 || json_chars(out, s, len) != 0 ||
        evbuffer_add(out, "\"", 1) != 0)
        return -ENOMEM;
    return 0;
}

static int json_bytes(struct evbuffer *out, const uint8_t *s, size_t len, enum s2l_fmt fmt)
{
    if (fmt == S2L_FMT_RAW)
        return s2l_json_string(out, s, len);
    /* Encoded in place, between its quotes, in the output buffer. */
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)(S2_BASE64_LEN(len) + 2), &v, 1) < 1)
        return -ENOMEM;
    char *p = v.iov_base;
    size_t n = s2_base64_encode_to(p + 1, s, len);
    p[0] = '"';
    p[n + 1] = '"';
    v.iov_len = n + 2;
    return evbuffer_commit_space(out, &v, 1) == 0 ? 0 : -ENOMEM;
}

bool s2l_utf8_valid(const uint8_t *s, size_t len)
{
    size_t skip;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(s + i, len - i, &skip);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

struct read_out {
    const struct s2l_read_bounds *b;
    struct evbuffer *buf;
    struct s2l_read_stats *stats;
};

/* rec as a SequencedRecord JSON object, after a comma unless first. */
static int json_record(struct evbuffer *b, const struct s2l_rec *rec, enum s2l_fmt fmt, bool first)
{
    char head[48 + 2 * S2_WIRE_U64_MAX];
    char *p = head;
    if (!first)
        *p++ = ',';
    memcpy(p, "{\"seq_num\":", 11);
    p += 11;
    p += s2_wire_fmt_u64(p, rec->seq_num);
    memcpy(p, ",\"timestamp\":", 13);
    p += 13;
    p += s2_wire_fmt_u64(p, rec->timestamp);
    /* The usual record, a raw body and no headers: three appends. */
    if (rec->nheaders == 0 && fmt == S2L_FMT_RAW) {
        if (rec->body_len > 0) {
            memcpy(p, ",\"body\":\"", 9);
            p += 9;
        }
        if (evbuffer_add(b, head, (size_t)(p - head)) != 0)
            return -ENOMEM;
        if (rec->body_len == 0)
            return evbuffer_add(b, "}", 1) ? -ENOMEM : 0;
        if (json_chars(b, rec->body, rec->body_len) != 0 || evbuffer_add(b, "\"}", 2) != 0)
            return -ENOMEM;
        return 0;
    }
    int rc = evbuffer_add(b, head, (size_t)(p - head)) ? -ENOMEM : 0;
    if (rc == 0 && rec->nheaders > 0) {
        rc = evbuffer_add(b, ",\"headers\":[", 12) ? -ENOMEM : 0;
        for (size_t i = 0; rc == 0 && i < rec->nheaders; i++) {
            const struct s2l_hdr *h = &rec->headers[i];
            rc = evbuffer_add(b, i ? ",[" : "[", i ? 2 : 1) ? -ENOMEM : 0;
            if (rc == 0)
                rc = json_bytes(b, h->name, h->name_len, fmt);
            if (rc == 0)
                rc = evbuffer_add(b, ",", 1) ? -ENOMEM : 0;
            if (rc == 0)
                rc = json_bytes(b, h->value, h->value_len, fmt);
            if (rc == 0)
                rc = evbuffer_add(b, "]", 1) ? -ENOMEM : 0;
        }
        if (rc == 0)
            rc = evbuffer_add(b, "]", 1) ? -ENOMEM : 0;
    }
    if (rc == 0 && rec->body_len > 0) {
        rc = evbuffer_add(b, ",\"body\":", 8) ? -ENOMEM : 0;
        if (rc == 0)
            rc = json_bytes(b, rec->body, rec->body_len, fmt);
    }
    if (rc == 0)
        rc = evbuffer_add(b, "}", 1) ? -ENOMEM : 0;
    return rc;
}

static int read_one(const struct s2l_rec *rec, void *arg)
{
    struct read_out *o = arg;
    const struct s2l_read_bounds *p = o->b;
    struct s2l_read_stats *s = o->stats;
    uint64_t hbytes = 0;
    for (size_t i = 0; i < rec->nheaders; i++)
        hbytes += rec->headers[i].name_len + rec->headers[i].value_len;
    uint64_t m = s2l_metered_size(rec->nheaders, hbytes, rec->body_len);
    if (s->n >= p->count)
        return 1;
    if (p->has_until && rec->timestamp >= p->until) {
        s->stop = S2L_READ_STOP_UNTIL;
        return 1;
    }
    if (m > p->bytes - s->bytes) {
        s->stop = S2L_READ_STOP_BYTES;
        return 1;
    }
    int rc = p->fmt == S2L_FMT_PROTO ? s2l_pb_add_record(o->buf, rec)
                                     : json_record(o->buf, rec, p->fmt, s->n == 0);
    if (rc != 0)
        return rc;
    s->n++;
    s->bytes += m;
    s->last_seq = rec->seq_num;
    return 0;
}

int s2l_records_write(struct s2l_stream *st, uint64_t start, const struct s2l_read_bounds *b,
                      struct evbuffer *out, struct s2l_read_stats *stats)
{
    *stats = (struct s2l_read_stats){0};
    struct read_out o = {b, out, stats};
    size_t max = b->count > SIZE_MAX ? SIZE_MAX : (size_t)b->count;
    return s2l_stream_read(st, start, max, read_one, &o);
}
