/* inproc.c - s2-local's in-process data plane (s2/local.h): the HTTP API's
 * appends, reads and check-tails without HTTP, JSON or base64. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane.h"
#include "records.h"
#include "server.h"

/* The stream of a call; create per the basin's config. */
static int open_stream(struct s2l_server *srv, const char *basin, const char *stream, int create,
                       struct s2l_stream **st, struct s2l_err *err)
{
    *err = (struct s2l_err){0};
    size_t len = stream != NULL ? strlen(stream) : 0;
    if (!s2l_stream_name_valid((const uint8_t *)stream, len))
        return s2l_dp_fail(err, -EINVAL, 400, "bad_path", "Invalid stream name");
    struct s2l_basin *b = NULL;
    int rc = s2l_server_basin(srv, basin, &b, err);
    if (rc != 0)
        return rc;
    struct s2l_basin_config bc = s2l_basin_get_config(b);
    bool c = create == 2 ? true : create ? bc.create_stream_on_append : bc.create_stream_on_read;
    return s2l_dp_stream(b, (const uint8_t *)stream, len, c, st, err);
}

int s2l_append(struct s2l_server *srv, const char *basin, const char *stream,
               const struct s2l_append_rec *recs, size_t n, const uint64_t *match_seq_num,
               struct s2l_append_ack *ack, struct s2l_err *err)
{
    struct s2l_stream *st = NULL;
    int rc = open_stream(srv, basin, stream, 1, &st, err);
    if (rc != 0)
        return rc;
    if (n > S2L_APPEND_MAX_RECORDS || recs == NULL)
        return s2l_dp_fail(err, -EINVAL, 422, "invalid",
                           n == 0 ? "record batch must not be empty"
                                  : "record batch must not exceed 1000 records");
    struct s2l_dp_rec small[64];
    struct s2l_dp_rec *in = n <= 64 ? small : calloc(n, sizeof *in);
    if (in == NULL)
        return s2l_dp_fail(err, -ENOMEM, 500, "other", "out of memory");
    for (size_t i = 0; i < n; i++)
        in[i] = (struct s2l_dp_rec){
            .has_ts = recs[i].has_timestamp != 0,
            .ts = recs[i].timestamp,
            .body = recs[i].len ? recs[i].body : (const uint8_t *)"",
            .body_len = recs[i].len,
        };
    struct s2l_dp_cond cond = {NULL, match_seq_num != NULL, match_seq_num ? *match_seq_num : 0};
    rc = s2l_dp_append(st, in, n, &cond, ack, err);
    if (in != small)
        free(in);
    if (rc == 0)
        s2l_server_appended(srv, st);
    return rc;
}

struct read_state {
    uint64_t count, bytes, n, taken;
    bool has_until;
    uint64_t until;
    s2l_record_fn fn;
    void *arg;
};

/* The bounds of a unary read, as records.c applies them to JSON output. */
static int read_one(const struct s2l_rec *rec, void *arg)
{
    struct read_state *s = arg;
    uint64_t hbytes = 0;
    for (size_t i = 0; i < rec->nheaders; i++)
        hbytes += rec->headers[i].name_len + rec->headers[i].value_len;
    uint64_t m = s2l_metered_size(rec->nheaders, hbytes, rec->body_len);
    if (s->n >= s->count || (s->has_until && rec->timestamp >= s->until) || m > s->bytes - s->taken)
        return 1;
    struct s2l_record out = {
        .seq_num = rec->seq_num,
        .timestamp = rec->timestamp,
        .body = rec->body,
        .body_len = rec->body_len,
        .header_count = rec->nheaders,
        .is_command = rec->nheaders == 1 && rec->headers[0].name_len == 0,
    };
    int rc = s->fn(&out, s->arg);
    if (rc != 0)
        return rc < 0 ? rc : -EINVAL;
    s->n++;
    s->taken += m;
    return 0;
}

int s2l_read(struct s2l_server *srv, const char *basin, const char *stream,
             const struct s2l_read_query *q, s2l_record_fn fn, void *arg, struct s2l_pos *tail,
             struct s2l_err *err)
{
    struct s2l_stream *st = NULL;
    int rc = open_stream(srv, basin, stream, 0, &st, err);
    if (rc != 0)
        return rc;
    uint64_t start;
    rc = s2l_dp_read_start(st, q, false, &start, err);
    if (rc != 0)
        return rc;
    struct read_state s = {
        .count = q->has_count && q->count < S2L_READ_MAX_RECORDS ? q->count : S2L_READ_MAX_RECORDS,
        .bytes = q->has_bytes && q->bytes < S2L_READ_MAX_BYTES ? q->bytes : S2L_READ_MAX_BYTES,
        .has_until = q->has_until != 0,
        .until = q->until,
        .fn = fn,
        .arg = arg,
    };
    rc = s2l_stream_read(st, start, (size_t)s.count, read_one, &s);
    if (rc != 0)
        return s2l_dp_fail_errno(err, rc, "reading");
    s2l_stream_tail(st, &tail->seq_num, &tail->timestamp);
    return 0;
}

int s2l_check_tail(struct s2l_server *srv, const char *basin, const char *stream,
                   struct s2l_pos *tail, struct s2l_err *err)
{
    struct s2l_stream *st = NULL;
    int rc = open_stream(srv, basin, stream, 0, &st, err);
    if (rc != 0)
        return rc;
    s2l_stream_tail(st, &tail->seq_num, &tail->timestamp);
    return 0;
}

int s2l_ensure_stream(struct s2l_server *srv, const char *basin, const char *stream,
                      struct s2l_err *err)
{
    struct s2l_stream *st = NULL;
    return open_stream(srv, basin, stream, 2, &st, err);
}
