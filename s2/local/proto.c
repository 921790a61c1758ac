/* proto.c - protobuf wire format for S2's AppendInput, AppendAck, ReadBatch. */
#include "proto.h"

#include <errno.h>
#include <stdlib.h>

#include <event2/buffer.h>

enum {
    WT_VARINT = 0,
    WT_I64 = 1,
    WT_LEN = 2,
    WT_I32 = 5,
};

struct pb {
    const uint8_t *p, *end;
};

static int pb_varint(struct pb *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return -EINVAL;
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = x;
            return 0;
        }
    }
    return -EINVAL;
}

static int pb_key(struct pb *r, uint64_t *field, uint32_t *wt)
{
    uint64_t k;
    if (pb_varint(r, &k) != 0 || (k >> 3) == 0)
        return -EINVAL;
    *field = k >> 3;
    *wt = (uint32_t)(k & 7);
    return 0;
}

static int pb_bytes(struct pb *r, struct pb *sub)
{
    uint64_t n;
    if (pb_varint(r, &n) != 0 || n > (uint64_t)(r->end - r->p))
        return -EINVAL;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return 0;
}

static int pb_skip(struct pb *r, uint32_t wt)
{
    uint64_t v;
    struct pb sub;
    size_t n = wt == WT_I64 ? 8 : 4;
    switch (wt) {
    case WT_VARINT:
        return pb_varint(r, &v);
    case WT_LEN:
        return pb_bytes(r, &sub);
    case WT_I64:
    case WT_I32:
        if ((size_t)(r->end - r->p) < n)
            return -EINVAL;
        r->p += n;
        return 0;
    default:
        return -EINVAL;
    }
}

/* A Header into *h. */
static int pb_header(struct pb r, struct s2l_hdr *h)
{
    *h = (struct s2l_hdr){(const uint8_t *)"", 0, (const uint8_t *)"", 0};
    while (r.p < r.end) {
        uint64_t f;
        uint32_t wt;
        struct pb v;
        if (pb_key(&r, &f, &wt) != 0)
            return -EINVAL;
        if ((f == 1 || f == 2) && wt == WT_LEN) {
            if (pb_bytes(&r, &v) != 0)
                return -EINVAL;
            if (f == 1) {
                h->name = v.p;
                h->name_len = (size_t)(v.end - v.p);
            } else {
                h->value = v.p;
                h->value_len = (size_t)(v.end - v.p);
            }
        } else if (pb_skip(&r, wt) != 0) {
            return -EINVAL;
        }
    }
    return 0;
}

/* An AppendRecord; with hdrs NULL it only counts its headers. */
static int pb_record(struct pb r, struct s2l_dp_rec *rec, struct s2l_hdr *hdrs)
{
    *rec = (struct s2l_dp_rec){.headers = hdrs, .body = (const uint8_t *)""};
    while (r.p < r.end) {
        uint64_t f;
        uint32_t wt;
        struct pb v;
        if (pb_key(&r, &f, &wt) != 0)
            return -EINVAL;
        if (f == 1 && wt == WT_VARINT) {
            if (pb_varint(&r, &rec->ts) != 0)
                return -EINVAL;
            rec->has_ts = true;
        } else if (f == 2 && wt == WT_LEN) {
            if (pb_bytes(&r, &v) != 0)
                return -EINVAL;
            if (hdrs != NULL && pb_header(v, &hdrs[rec->nheaders]) != 0)
                return -EINVAL;
            rec->nheaders++;
        } else if (f == 3 && wt == WT_LEN) {
            if (pb_bytes(&r, &v) != 0)
                return -EINVAL;
            rec->body = v.p;
            rec->body_len = (size_t)(v.end - v.p);
        } else if (pb_skip(&r, wt) != 0) {
            return -EINVAL;
        }
    }
    return 0;
}

/* One pass over an AppendInput: counts records and headers (fill false),
 * or fills the arrays sized by the first pass. */
static int pb_input(struct pb r, struct s2l_pb_append *a, bool fill, size_t *nhdrs)
{
    size_t n = 0, nh = 0;
    while (r.p < r.end) {
        uint64_t f;
        uint32_t wt;
        struct pb v;
        if (pb_key(&r, &f, &wt) != 0)
            return -EINVAL;
        if (f == 1 && wt == WT_LEN) {
            struct s2l_dp_rec rec;
            if (pb_bytes(&r, &v) != 0 || pb_record(v, &rec, fill ? a->hdrs + nh : NULL) != 0)
                return -EINVAL;
            if (fill)
                a->records[n] = rec;
            n++;
            nh += rec.nheaders;
        } else if (f == 2 && wt == WT_VARINT) {
            if (pb_varint(&r, &a->match) != 0)
                return -EINVAL;
            a->has_match = true;
        } else if (f == 3 && wt == WT_LEN) {
            if (pb_bytes(&r, &v) != 0)
                return -EINVAL;
            a->has_fence = true;
            a->fence = v.p;
            a->fence_len = (size_t)(v.end - v.p);
        } else if (pb_skip(&r, wt) != 0) {
            return -EINVAL;
        }
    }
    a->n = n;
    *nhdrs = nh;
    return 0;
}

int s2l_pb_decode_append(const uint8_t *buf, size_t len, struct s2l_pb_append *out)
{
    *out = (struct s2l_pb_append){0};
    struct pb r = {buf, buf + len};
    size_t nh = 0;
    int rc = pb_input(r, out, false, &nh);
    if (rc != 0)
        return rc;
    out->records = calloc(out->n ? out->n : 1, sizeof *out->records);
    out->hdrs = calloc(nh ? nh : 1, sizeof *out->hdrs);
    if (out->records == NULL || out->hdrs == NULL) {
        rc = -ENOMEM;
        goto FAIL;
    }
    rc = pb_input(r, out, true, &nh);
    if (rc == 0)
        return 0;
FAIL:
    s2l_pb_append_free(out);
    return rc;
}

void s2l_pb_append_free(struct s2l_pb_append *a)
{
    free(a->records);
    free(a->hdrs);
    *a = (struct s2l_pb_append){0};
}

/* ---- encoding ---- */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static int put_varint(struct evbuffer *out, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;
    while (v >= 0x80) {
        b[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b[n++] = (uint8_t)v;
    return evbuffer_add(out, b, n) == 0 ? 0 : -ENOMEM;
}

static int put_key(struct evbuffer *out, uint32_t field, uint32_t wt)
{
    return put_varint(out, ((uint64_t)field << 3) | wt);
}

static int put_bytes(struct evbuffer *out, uint32_t field, const uint8_t *p, size_t n)
{
    int rc = put_key(out, field, WT_LEN);
    if (rc == 0)
        rc = put_varint(out, n);
    if (rc == 0 && n > 0 && evbuffer_add(out, p, n) != 0)
        rc = -ENOMEM;
    return rc;
}

int s2l_pb_add_position(struct evbuffer *out, uint32_t field, uint64_t seq, uint64_t ts)
{
    size_t len = 1 + varint_len(seq) + 1 + varint_len(ts);
    int rc = put_key(out, field, WT_LEN);
    if (rc == 0)
        rc = put_varint(out, len);
    if (rc == 0)
        rc = put_key(out, 1, WT_VARINT);
    if (rc == 0)
        rc = put_varint(out, seq);
    if (rc == 0)
        rc = put_key(out, 2, WT_VARINT);
    if (rc == 0)
        rc = put_varint(out, ts);
    return rc;
}

static size_t header_len(const struct s2l_hdr *h)
{
    return 1 + varint_len(h->name_len) + h->name_len + 1 + varint_len(h->value_len) + h->value_len;
}

int s2l_pb_add_record(struct evbuffer *out, const struct s2l_rec *rec)
{
    size_t len = 1 + varint_len(rec->seq_num) + 1 + varint_len(rec->timestamp);
    for (size_t i = 0; i < rec->nheaders; i++) {
        size_t hl = header_len(&rec->headers[i]);
        len += 1 + varint_len(hl) + hl;
    }
    if (rec->body_len > 0)
        len += 1 + varint_len(rec->body_len) + rec->body_len;
    int rc = put_key(out, 1, WT_LEN);
    if (rc == 0)
        rc = put_varint(out, len);
    if (rc == 0)
        rc = put_key(out, 1, WT_VARINT);
    if (rc == 0)
        rc = put_varint(out, rec->seq_num);
    if (rc == 0)
        rc = put_key(out, 2, WT_VARINT);
    if (rc == 0)
        rc = put_varint(out, rec->timestamp);
    for (size_t i = 0; rc == 0 && i < rec->nheaders; i++) {
        const struct s2l_hdr *h = &rec->headers[i];
        rc = put_key(out, 3, WT_LEN);
        if (rc == 0)
            rc = put_varint(out, header_len(h));
        if (rc == 0)
            rc = put_bytes(out, 1, h->name, h->name_len);
        if (rc == 0)
            rc = put_bytes(out, 2, h->value, h->value_len);
    }
    if (rc == 0 && rec->body_len > 0)
        rc = put_bytes(out, 4, rec->body, rec->body_len);
    return rc;
}
