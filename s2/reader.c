/* reader.c - one bounded page read with an exact has_more. */
#include "s2/reader.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_MAX_COUNT 1000
#define PAGE_MAX_BYTES (1024u * 1024u)

struct s2_reader_req {
    struct s2_client *client;
    char *stream;
    struct s2_page_opts opts;
    s2_page_cb cb;
    void *arg;
    struct s2_request *inflight;
    int completing;
    /* The page, copied out of the read's callback. */
    struct s2_record *recs;
    uint8_t *bodies;
    size_t n;
    size_t raw_n; /* records read, commands included */
    uint64_t next;
    int next_known;
    int has_more;
    struct s2_position tail;
};

static void rd_free(struct s2_reader_req *q)
{
    free(q->recs);
    free(q->bodies);
    free(q->stream);
    free(q);
}

static void finish(struct s2_reader_req *q, const struct s2_error *err)
{
    q->inflight = NULL;
    q->completing = 1;
    if (err != NULL) {
        q->cb(err, NULL, q->arg);
    } else {
        struct s2_page page = {
            .records = q->recs,
            .count = q->n,
            .next_seq_num = q->next,
            .has_more = q->has_more,
            .tail = q->tail,
        };
        q->cb(NULL, &page, q->arg);
    }
    rd_free(q);
}

static void fail_errno(struct s2_reader_req *q, int rc)
{
    struct s2_error err = {.kind = S2_ERR_TRANSPORT};
    snprintf(err.message, sizeof err.message, "read stream `%.128s`: %s", q->stream, strerror(-rc));
    finish(q, &err);
}

static int copy_page(struct s2_reader_req *q, const struct s2_read_batch *b)
{
    size_t total = 0;
    for (size_t i = 0; i < b->count; i++)
        total += b->records[i].body_len;
    q->recs = calloc(b->count ? b->count : 1, sizeof *q->recs);
    q->bodies = malloc(total + 1);
    if (q->recs == NULL || q->bodies == NULL)
        return -ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < b->count; i++) {
        const struct s2_record *r = &b->records[i];
        if (q->opts.skip_commands && r->is_command)
            continue;
        struct s2_record *d = &q->recs[q->n++];
        *d = *r;
        memcpy(q->bodies + off, r->body, r->body_len);
        d->body = q->bodies + off;
        off += r->body_len;
    }
    q->raw_n = b->count;
    if (b->count > 0) {
        q->next = b->records[b->count - 1].seq_num + 1;
        q->next_known = 1;
    }
    return 0;
}

/* Probe: is there at least one record at next (or at the start) within until? */
static void on_probe(const struct s2_error *err, const struct s2_read_batch *b, void *arg)
{
    struct s2_reader_req *q = arg;
    q->inflight = NULL;
    if (err != NULL && err->kind == S2_ERR_UNWRITTEN) {
        q->tail = err->tail;
        q->has_more = 0;
    } else if (err != NULL) {
        finish(q, err);
        return;
    } else {
        q->has_more = b->count > 0;
        if (b->has_tail)
            q->tail = b->tail;
        if (!q->next_known && b->count > 0) {
            q->next = b->records[0].seq_num;
            q->next_known = 1;
        }
    }
    if (!q->next_known)
        q->next = q->tail.seq_num;
    finish(q, NULL);
}

static void start_probe(struct s2_reader_req *q)
{
    struct s2_read_opts ro = {.has_count = 1, .count = 1};
    if (q->next_known) {
        ro.has_seq_num = 1;
        ro.seq_num = q->next;
    } else if (q->opts.has_timestamp) {
        ro.has_timestamp = 1;
        ro.timestamp = q->opts.timestamp;
    } else {
        ro.has_seq_num = 1;
        ro.seq_num = q->opts.has_seq_num ? q->opts.seq_num : 0;
    }
    ro.has_until = q->opts.has_until;
    ro.until = q->opts.until;
    int rc = s2_client_read(q->client, q->stream, &ro, on_probe, q, &q->inflight);
    if (rc < 0)
        fail_errno(q, rc);
}

/* The tail is known: decide has_more, probing when until makes it unclear. */
static void decide(struct s2_reader_req *q)
{
    if (q->raw_n > 0) {
        if (q->next >= q->tail.seq_num) {
            q->has_more = 0;
        } else if (!q->opts.has_until || q->tail.timestamp < q->opts.until) {
            /* Timestamps never decrease: every remaining record is < until. */
            q->has_more = 1;
        } else {
            start_probe(q);
            return;
        }
        finish(q, NULL);
        return;
    }
    /* An empty page: a bound (until, or bytes below the first record) stopped
     * it, or nothing is there. Ask for one record to know which. */
    if (q->next_known && q->next >= q->tail.seq_num) {
        q->has_more = 0;
        finish(q, NULL);
        return;
    }
    start_probe(q);
}

static void on_tail(const struct s2_error *err, const struct s2_position *tail, void *arg)
{
    struct s2_reader_req *q = arg;
    q->inflight = NULL;
    if (err != NULL) {
        finish(q, err);
        return;
    }
    q->tail = *tail;
    decide(q);
}

static void on_page(const struct s2_error *err, const struct s2_read_batch *b, void *arg)
{
    struct s2_reader_req *q = arg;
    q->inflight = NULL;
    if (err != NULL && err->kind == S2_ERR_UNWRITTEN) {
        /* Nothing at or after the start: caught up. */
        q->tail = err->tail;
        q->has_more = 0;
        q->next = q->opts.has_seq_num ? q->opts.seq_num : err->tail.seq_num;
        finish(q, NULL);
        return;
    }
    if (err != NULL) {
        finish(q, err);
        return;
    }
    int rc = copy_page(q, b);
    if (rc < 0) {
        fail_errno(q, rc);
        return;
    }
    if (b->has_tail) {
        q->tail = b->tail;
        decide(q);
        return;
    }
    /* S2 did not report the tail: ask, never guess. */
    rc = s2_client_check_tail(q->client, q->stream, on_tail, q, &q->inflight);
    if (rc < 0)
        fail_errno(q, rc);
}

int s2_reader_read(struct s2_client *client, const char *stream, const struct s2_page_opts *opts,
                   s2_page_cb cb, void *arg, struct s2_reader_req **req_out)
{
    if (req_out != NULL)
        *req_out = NULL;
    if (client == NULL || stream == NULL || opts == NULL || cb == NULL ||
        (opts->has_seq_num && opts->has_timestamp) || opts->count < 1 ||
        opts->count > PAGE_MAX_COUNT || opts->bytes > PAGE_MAX_BYTES)
        return -EINVAL;
    struct s2_reader_req *q = calloc(1, sizeof *q);
    if (q == NULL)
        return -ENOMEM;
    q->client = client;
    q->opts = *opts;
    q->cb = cb;
    q->arg = arg;
    q->stream = strdup(stream);
    if (q->stream == NULL) {
        rd_free(q);
        return -ENOMEM;
    }
    struct s2_read_opts ro = {.has_count = 1, .count = opts->count};
    if (opts->has_timestamp) {
        ro.has_timestamp = 1;
        ro.timestamp = opts->timestamp;
    } else {
        /* Neither selector: from the head (seq_num 0). */
        q->opts.has_seq_num = 1;
        q->opts.seq_num = opts->has_seq_num ? opts->seq_num : 0;
        ro.has_seq_num = 1;
        ro.seq_num = q->opts.seq_num;
        q->next = q->opts.seq_num;
        q->next_known = 1;
    }
    if (opts->bytes > 0) {
        ro.has_bytes = 1;
        ro.bytes = opts->bytes;
    }
    ro.has_until = opts->has_until;
    ro.until = opts->until;
    int rc = s2_client_read(client, stream, &ro, on_page, q, &q->inflight);
    if (rc < 0) {
        rd_free(q);
        return rc;
    }
    if (req_out != NULL)
        *req_out = q;
    return 0;
}

void s2_reader_cancel(struct s2_reader_req *q)
{
    if (q == NULL || q->completing)
        return;
    s2_request_cancel(q->inflight);
    rd_free(q);
}
