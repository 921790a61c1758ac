/* inproc_client.c - an s2_client served by an embedded s2-local in the same
 * process (s2_client_new_local): the in-process data plane behind the
 * client's ops. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s2/client.h"
#include "s2/local.h"

struct s2l_client_ctx {
    struct s2l_server *srv;
    char *basin;
};

/* The S2 error as the HTTP client would have read it from the reply. */
static int to_s2_error(int rc, const struct s2l_err *le, struct s2_error *err)
{
    err->http_status = le->status;
    snprintf(err->code, sizeof err->code, "%s", le->code);
    snprintf(err->message, sizeof err->message, "%s", le->message);
    err->has_tail = le->has_tail;
    err->tail = (struct s2_position){le->tail.seq_num, le->tail.timestamp};
    err->fencing_mismatch =
        le->status == 412 && strcmp(le->code, "fencing_token_mismatch") == 0 ? 1 : 0;
    return rc;
}

static int op_append(void *ctx, const char *stream, const struct s2_append_record *records,
                     size_t n, const uint64_t *match_seq_num, struct s2_append_ack *ack,
                     struct s2_error *err)
{
    struct s2l_client_ctx *x = ctx;
    struct s2l_append_rec small[64] = {{0}};
    struct s2l_append_rec *recs = n <= 64 ? small : calloc(n, sizeof *recs);
    if (recs == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        recs[i] = (struct s2l_append_rec){records[i].body, records[i].len, 0, 0};
    struct s2l_append_ack la;
    struct s2l_err le = {0};
    int rc = s2l_append(x->srv, x->basin, stream, recs, n, match_seq_num, &la, &le);
    if (recs != small)
        free(recs);
    if (rc != 0)
        return to_s2_error(rc, &le, err);
    ack->start = (struct s2_position){la.start.seq_num, la.start.timestamp};
    ack->end = (struct s2_position){la.end.seq_num, la.end.timestamp};
    ack->tail = (struct s2_position){la.tail.seq_num, la.tail.timestamp};
    return 0;
}

struct emit_state {
    int (*emit)(const struct s2_record *rec, void *sink);
    void *sink;
};

static int on_record(const struct s2l_record *rec, void *arg)
{
    struct emit_state *e = arg;
    struct s2_record r = {
        .seq_num = rec->seq_num,
        .timestamp = rec->timestamp,
        .body = rec->body,
        .body_len = rec->body_len,
        .header_count = rec->header_count,
        .is_command = rec->is_command,
    };
    return e->emit(&r, e->sink);
}

static int op_read(void *ctx, const char *stream, const struct s2_read_opts *o,
                   int (*emit)(const struct s2_record *rec, void *sink), void *sink,
                   struct s2_position *tail, struct s2_error *err)
{
    struct s2l_client_ctx *x = ctx;
    struct s2l_read_query q = {
        .has_seq_num = o->has_seq_num,
        .has_timestamp = o->has_timestamp,
        .has_tail_offset = o->has_tail_offset,
        .seq_num = o->seq_num,
        .timestamp = o->timestamp,
        .tail_offset = o->tail_offset,
        .has_count = o->has_count,
        .has_bytes = o->has_bytes,
        .has_until = o->has_until,
        .count = o->count,
        .bytes = o->bytes,
        .until = o->until,
        .clamp = o->clamp,
    };
    struct emit_state e = {emit, sink};
    struct s2l_pos t;
    struct s2l_err le = {0};
    int rc = s2l_read(x->srv, x->basin, stream, &q, on_record, &e, &t, &le);
    if (rc != 0)
        return to_s2_error(rc, &le, err);
    *tail = (struct s2_position){t.seq_num, t.timestamp};
    return 0;
}

static int op_check_tail(void *ctx, const char *stream, struct s2_position *tail,
                         struct s2_error *err)
{
    struct s2l_client_ctx *x = ctx;
    struct s2l_pos t;
    struct s2l_err le = {0};
    int rc = s2l_check_tail(x->srv, x->basin, stream, &t, &le);
    if (rc != 0)
        return to_s2_error(rc, &le, err);
    *tail = (struct s2_position){t.seq_num, t.timestamp};
    return 0;
}

static int op_ensure(void *ctx, const char *stream, struct s2_error *err)
{
    struct s2l_client_ctx *x = ctx;
    struct s2l_err le = {0};
    int rc = s2l_ensure_stream(x->srv, x->basin, stream, &le);
    return rc != 0 ? to_s2_error(rc, &le, err) : 0;
}

static void op_release(void *ctx)
{
    struct s2l_client_ctx *x = ctx;
    free(x->basin);
    free(x);
}

static const struct s2_inproc_ops ops = {op_append, op_read, op_check_tail, op_ensure, op_release};

int s2_client_new_local(struct event_base *base, struct s2l_server *srv,
                        const struct s2_config *cfg, s2_log_fn log, void *log_arg,
                        struct s2_client **out)
{
    *out = NULL;
    if (srv == NULL || cfg == NULL || cfg->basin == NULL)
        return -EINVAL;
    struct s2l_client_ctx *x = calloc(1, sizeof *x);
    if (x == NULL || (x->basin = strdup(cfg->basin)) == NULL) {
        free(x);
        return -ENOMEM;
    }
    x->srv = srv;
    /* From here on the client owns x (op_release), even on failure. */
    return s2_client_new_inproc(base, &ops, x, cfg, log, log_arg, out);
}
