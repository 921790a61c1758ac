/* dataplane.c - s2-local's data-plane rules, shared by HTTP and in-process calls. */
#include "dataplane.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "records.h"
#include "server.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int s2l_dp_fail(struct s2l_err *err, int rc, int status, const char *code, const char *fmt, ...)
{
    err->status = status;
    snprintf(err->code, sizeof err->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return rc;
}

int s2l_dp_fail_errno(struct s2l_err *err, int rc, const char *what)
{
    if (rc == -ENOSPC)
        return s2l_dp_fail(err, rc, 503, "unavailable", "%s: storage limit reached", what);
    return s2l_dp_fail(err, rc, 500, "storage", "%s: %s", what, strerror(-rc));
}

static void set_tail(struct s2l_err *err, const struct s2l_stream *st)
{
    err->has_tail = 1;
    s2l_stream_tail(st, &err->tail.seq_num, &err->tail.timestamp);
}

int s2l_dp_stream(struct s2l_basin *b, const uint8_t *name, size_t len, bool create,
                  struct s2l_stream **out, struct s2l_err *err)
{
    int rc = s2l_basin_stream(b, name, len, out);
    if (rc == -ENOENT && create) {
        enum s2l_provision res;
        rc = s2l_basin_stream_ensure(b, name, len, NULL, false, &res, out);
    }
    if (rc == -ENOENT)
        return s2l_dp_fail(err, rc, 404, "stream_not_found",
                           "stream `%.*s` in basin `%s` not found", (int)(len > 200 ? 200 : len),
                           (const char *)name, s2l_basin_name(b));
    if (rc == -EINVAL)
        return s2l_dp_fail(err, rc, 400, "bad_path", "Invalid stream name");
    if (rc != 0)
        return s2l_dp_fail_errno(err, rc, "opening the stream");
    return 0;
}

/* The rules S2 applies to a batch before looking at the stream. */
static int validate(const struct s2l_dp_rec *recs, size_t n, struct s2l_err *err)
{
    if (n == 0)
        return s2l_dp_fail(err, -EINVAL, 422, "invalid", "record batch must not be empty");
    if (n > S2L_APPEND_MAX_RECORDS)
        return s2l_dp_fail(err, -EINVAL, 422, "invalid",
                           "record batch must not exceed 1000 records");
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct s2l_dp_rec *r = &recs[i];
        uint64_t hbytes = 0;
        for (size_t k = 0; k < r->nheaders; k++)
            hbytes += r->headers[k].name_len + r->headers[k].value_len;
        uint64_t metered = s2l_metered_size(r->nheaders, hbytes, r->body_len);
        if (metered > S2L_APPEND_MAX_BYTES)
            return s2l_dp_fail(err, -EINVAL, 422, "invalid",
                               "record must not exceed a metered size of 1 MiB");
        total += metered;
        /* A command: exactly one header, with an empty name. */
        if (r->nheaders == 1 && r->headers[0].name_len == 0) {
            const struct s2l_hdr *c = &r->headers[0];
            bool fence = c->value_len == 5 && memcmp(c->value, "fence", 5) == 0;
            bool trim = c->value_len == 4 && memcmp(c->value, "trim", 4) == 0;
            if (!fence && !trim)
                return s2l_dp_fail(err, -EINVAL, 422, "invalid", "unknown command");
            if (fence && r->body_len > S2L_FENCE_MAX)
                return s2l_dp_fail(err, -EINVAL, 422, "invalid",
                                   "fencing token must not exceed 36 bytes");
            if (trim && r->body_len != 8)
                return s2l_dp_fail(err, -EINVAL, 422, "invalid",
                                   "trim point must be an 8-byte seq_num");
        } else {
            for (size_t k = 0; k < r->nheaders; k++)
                if (r->headers[k].name_len == 0)
                    return s2l_dp_fail(err, -EINVAL, 422, "invalid",
                                       "header name must not be empty");
        }
    }
    if (total > S2L_APPEND_MAX_BYTES)
        return s2l_dp_fail(err, -EINVAL, 422, "invalid",
                           "record batch must not exceed a metered size of 1 MiB");
    return 0;
}

int s2l_dp_append(struct s2l_stream *st, const struct s2l_dp_rec *recs, size_t n,
                  const struct s2l_dp_cond *cond, struct s2l_append_ack *ack, struct s2l_err *err)
{
    int rc = validate(recs, n, err);
    if (rc != 0)
        return rc;
    size_t flen;
    const char *fence = s2l_stream_fence(st, &flen);
    uint64_t tail_seq, last_ts;
    s2l_stream_tail(st, &tail_seq, &last_ts);
    /* Fencing token first, then match_seq_num (as S2 checks them). */
    if (cond->fence != NULL &&
        (strlen(cond->fence) != flen || memcmp(cond->fence, fence, flen) != 0))
        return s2l_dp_fail(err, -ESTALE, 412, "fencing_token_mismatch", "%.*s", (int)flen, fence);
    if (cond->has_match && cond->match != tail_seq) {
        set_tail(err, st);
        err->tail.timestamp = 0; /* S2 reports only the seq_num */
        return s2l_dp_fail(err, -ESTALE, 412, "", "seq_num_mismatch");
    }
    struct s2l_rec small[64];
    struct s2l_rec *out = n <= 64 ? small : calloc(n, sizeof *out);
    if (out == NULL)
        return s2l_dp_fail(err, -ENOMEM, 500, "other", "out of memory");
    struct s2l_stream_config cfg = s2l_stream_get_config(st);
    uint64_t now = now_ms(), prev = last_ts;
    for (size_t i = 0; i < n; i++) {
        const struct s2l_dp_rec *r = &recs[i];
        uint64_t t = now;
        if (cfg.ts_mode != S2L_TS_ARRIVAL && r->has_ts) {
            t = r->ts;
            if (!cfg.ts_uncapped && t > now)
                t = now;
        } else if (cfg.ts_mode == S2L_TS_CLIENT_REQUIRE) {
            rc = s2l_dp_fail(err, -EINVAL, 422, "invalid",
                             "record timestamp was required but was missing");
            goto OUT;
        }
        if (t < prev)
            t = prev;
        prev = t;
        out[i] = (struct s2l_rec){0, t, r->nheaders, r->headers, r->body, r->body_len};
    }
    uint64_t first = 0;
    rc = s2l_stream_append(st, out, n, &first);
    if (rc != 0) {
        s2l_dp_fail_errno(err, rc, "appending");
        goto OUT;
    }
    ack->start = (struct s2l_pos){first, out[0].timestamp};
    ack->end = (struct s2l_pos){first + n, out[n - 1].timestamp};
    s2l_stream_tail(st, &ack->tail.seq_num, &ack->tail.timestamp);
OUT:
    if (out != small)
        free(out);
    return rc;
}

int s2l_dp_read_start(struct s2l_stream *st, const struct s2l_read_query *q, bool can_follow,
                      uint64_t *start, struct s2l_err *err)
{
    if ((q->has_seq_num != 0) + (q->has_timestamp != 0) + (q->has_tail_offset != 0) > 1)
        return s2l_dp_fail(err, -EINVAL, 422, "invalid",
                           "only one of seq_num, timestamp, or tail_offset can be provided");
    if (q->has_timestamp && q->has_until && q->until <= q->timestamp)
        return s2l_dp_fail(err, -EINVAL, 422, "invalid",
                           "start `timestamp` exceeds or equal to `until`");
    uint64_t tail, last_ts, s;
    s2l_stream_tail(st, &tail, &last_ts);
    if (q->has_seq_num) {
        if (q->seq_num > tail && !q->clamp)
            goto UNWRITTEN;
        s = q->seq_num > tail ? tail : q->seq_num;
    } else if (q->has_timestamp) {
        if (q->timestamp > last_ts && !q->clamp)
            goto UNWRITTEN;
        s = tail;
        if (q->timestamp <= last_ts) {
            int rc = s2l_stream_seek_timestamp(st, q->timestamp, &s);
            if (rc != 0)
                return s2l_dp_fail_errno(err, rc, "seeking");
        }
    } else {
        s = tail - (q->tail_offset < tail ? q->tail_offset : tail);
    }
    uint64_t trim = s2l_stream_trim_point(st);
    if (s < trim)
        s = trim;
    if (s >= tail && !can_follow)
        goto UNWRITTEN;
    *start = s;
    return 0;
UNWRITTEN:
    set_tail(err, st);
    return s2l_dp_fail(err, -ERANGE, 416, "", "unwritten");
}
