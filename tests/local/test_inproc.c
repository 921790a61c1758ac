/* test_inproc.c - the in-process client of an embedded s2-local
 * (s2_client_new_local) against the HTTP client on the same server: same
 * acks, records, tails and errors; callbacks on a later loop turn; long
 * polls woken by in-process appends; batcher and reader on top. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <event2/event.h>

#include "s2/batcher.h"
#include "s2/client.h"
#include "s2/local.h"
#include "s2/loop.h"
#include "s2/reader.h"

#define BASIN "inproc-basin"
#define MAXREC 64

/* One event loop runs the server and both clients, as in the agent. */
static struct {
    struct event_base *base;
    struct s2l_server *srv;
    struct s2_loop *loop;
    struct s2_client *http, *local;
} fx;

static void start(void)
{
    fx.base = event_base_new();
    cr_assert_not_null(fx.base);
    struct s2l_opts o = {.listen_addr = "127.0.0.1", .basin = BASIN};
    cr_assert(eq(int, s2l_server_new(fx.base, &o, NULL, NULL, &fx.srv), 0));
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%u/v1", (unsigned)s2l_server_port(fx.srv));
    struct s2_config cfg = {.basin = BASIN, .basin_endpoint = ep, .account_endpoint = ep};
    cr_assert(eq(int, s2_loop_new(fx.base, &fx.loop), 0));
    cr_assert(eq(int, s2_client_new(fx.loop, &cfg, NULL, NULL, &fx.http), 0));
    cr_assert(eq(int, s2_client_new_local(fx.base, fx.srv, &cfg, NULL, NULL, &fx.local), 0));
}

static void stop(void)
{
    s2_client_free(fx.local);
    s2_client_free(fx.http);
    s2_loop_free(fx.loop);
    s2l_server_free(fx.srv);
    if (fx.base)
        event_base_free(fx.base);
    memset(&fx, 0, sizeof fx);
}

TestSuite(inproc, .init = start, .fini = stop, .timeout = 30);

/* What a request completed with. */
struct res {
    int done;
    int failed;
    struct s2_error err;
    struct s2_append_ack ack;
    struct s2_position tail;
    size_t n;
    struct s2_record recs[MAXREC];
    char bodies[MAXREC][64];
    int has_tail;
};

static void keep_err(struct res *r, const struct s2_error *err)
{
    r->done++;
    if (err != NULL) {
        r->failed = 1;
        r->err = *err;
    }
}

static void on_append(const struct s2_error *err, const struct s2_append_ack *ack, void *arg)
{
    struct res *r = arg;
    keep_err(r, err);
    if (ack != NULL)
        r->ack = *ack;
}

static void on_read(const struct s2_error *err, const struct s2_read_batch *b, void *arg)
{
    struct res *r = arg;
    keep_err(r, err);
    if (b == NULL)
        return;
    r->has_tail = b->has_tail;
    r->tail = b->tail;
    for (size_t i = 0; i < b->count && i < MAXREC; i++) {
        r->recs[i] = b->records[i];
        size_t len = b->records[i].body_len < 63 ? b->records[i].body_len : 63;
        memcpy(r->bodies[i], b->records[i].body, len);
        r->bodies[i][len] = 0;
        r->recs[i].body = NULL;
    }
    r->n = b->count;
}

static void on_tail(const struct s2_error *err, const struct s2_position *t, void *arg)
{
    struct res *r = arg;
    keep_err(r, err);
    if (t != NULL)
        r->tail = *t;
}

static void on_done(const struct s2_error *err, void *arg)
{
    keep_err(arg, err);
}

static void run_until(const int *done)
{
    while (!*done)
        cr_assert(eq(int, event_base_loop(fx.base, EVLOOP_ONCE), 0));
}

static struct res do_append(struct s2_client *c, const char *stream, const char *const *bodies,
                            size_t n, const uint64_t *match)
{
    struct s2_append_record recs[8];
    for (size_t i = 0; i < n; i++)
        recs[i] = (struct s2_append_record){bodies[i], strlen(bodies[i])};
    struct res r = {0};
    cr_assert(eq(int, s2_client_append(c, stream, recs, n, match, 0, on_append, &r, NULL), 0));
    run_until(&r.done);
    return r;
}

static struct res do_read(struct s2_client *c, const char *stream, const struct s2_read_opts *o)
{
    struct res *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    cr_assert(eq(int, s2_client_read(c, stream, o, on_read, r, NULL), 0));
    run_until(&r->done);
    struct res out = *r;
    free(r);
    return out;
}

static void expect_same_read(const struct res *a, const struct res *b)
{
    cr_assert(eq(int, a->failed, b->failed));
    cr_assert(eq(sz, a->n, b->n));
    for (size_t i = 0; i < a->n; i++) {
        cr_assert(eq(u64, a->recs[i].seq_num, b->recs[i].seq_num));
        cr_assert(eq(u64, a->recs[i].timestamp, b->recs[i].timestamp));
        cr_assert(eq(sz, a->recs[i].body_len, b->recs[i].body_len));
        cr_assert(eq(str, (char *)a->bodies[i], (char *)b->bodies[i]));
        cr_assert(eq(int, a->recs[i].is_command, b->recs[i].is_command));
    }
    if (!a->failed) {
        cr_assert(eq(int, a->has_tail, 1));
        cr_assert(eq(int, b->has_tail, 1));
        cr_assert(eq(u64, a->tail.seq_num, b->tail.seq_num));
        cr_assert(eq(u64, a->tail.timestamp, b->tail.timestamp));
    }
}

/* Record i of the reuse test: (100 + 37 i mod 900) bytes of one letter. */
static size_t reuse_len(uint64_t i)
{
    return 100 + (size_t)(i * 37 % 900);
}

struct reuse {
    int done, failed;
    uint64_t from;
    size_t n;
    int free_client; /* free fx.local from the callback */
};

/* Every body exactly as appended: a read's buffers, kept from the read
 * before, never show that read's bytes. */
static void on_reuse_read(const struct s2_error *err, const struct s2_read_batch *b, void *arg)
{
    struct reuse *r = arg;
    r->done = 1;
    r->failed = err != NULL;
    for (size_t i = 0; b != NULL && i < b->count; i++) {
        const struct s2_record *rec = &b->records[i];
        uint64_t seq = r->from + i;
        r->failed |= rec->seq_num != seq || rec->body_len != reuse_len(seq);
        for (size_t k = 0; !r->failed && k < rec->body_len; k++)
            r->failed |= rec->body[k] != 'a' + seq % 26;
        r->n++;
    }
    if (r->free_client) {
        s2_client_free(fx.local);
        fx.local = NULL;
    }
}

/* Reads of different sizes one after the other (each reuses the last
 * one's buffers), then a read whose callback frees the client. */
Test(inproc, reads_reuse_buffers_and_may_free_the_client)
{
    static char body[1000];
    for (uint64_t i = 0; i < 300; i++) {
        memset(body, 'a' + (int)(i % 26), sizeof body);
        struct s2_append_record rec = {body, reuse_len(i)};
        struct res a = {0};
        cr_assert(
            eq(int, s2_client_append(fx.local, "r", &rec, 1, NULL, 0, on_append, &a, NULL), 0));
        run_until(&a.done);
        cr_assert(eq(int, a.failed, 0));
    }
    const struct {
        uint64_t from, count;
        int free_client;
    } reads[] = {{0, 300, 0}, {50, 3, 0}, {100, 150, 0}, {7, 1, 0}, {200, 100, 1}};
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        struct reuse r = {.from = reads[i].from, .free_client = reads[i].free_client};
        struct s2_read_opts o = {
            .has_seq_num = 1, .seq_num = reads[i].from, .has_count = 1, .count = reads[i].count};
        cr_assert(eq(int, s2_client_read(fx.local, "r", &o, on_reuse_read, &r, NULL), 0));
        run_until(&r.done);
        cr_assert(eq(int, r.failed, 0), "read %zu", i);
        cr_assert(eq(sz, r.n, (size_t)reads[i].count), "read %zu", i);
    }
    cr_assert_null(fx.local);
}

Test(inproc, append_and_read_match_http)
{
    const char *one[] = {"alpha", "", "gamma \xff\x01 binary"};
    struct res a = do_append(fx.local, "s", one, 3, NULL);
    cr_assert(eq(int, a.failed, 0));
    cr_assert(eq(u64, a.ack.start.seq_num, 0));
    cr_assert(eq(u64, a.ack.end.seq_num, 3));
    cr_assert(eq(u64, a.ack.tail.seq_num, 3));
    cr_assert(eq(u32, a.ack.attempts, 1));
    const char *two[] = {"delta", "epsilon"};
    uint64_t match = 3;
    struct res h = do_append(fx.http, "s", two, 2, &match);
    cr_assert(eq(int, h.failed, 0));
    cr_assert(eq(u64, h.ack.start.seq_num, 3));
    cr_assert(eq(u64, h.ack.end.seq_num, 5));
    match = 5;
    struct res a2 = do_append(fx.local, "s", two, 1, &match);
    cr_assert(eq(int, a2.failed, 0));
    cr_assert(eq(u64, a2.ack.start.seq_num, 5));
    cr_assert(ge(u64, a2.ack.start.timestamp, h.ack.end.timestamp));

    struct s2_read_opts all = {.has_seq_num = 1, .seq_num = 0, .has_count = 1, .count = 100};
    struct res rl = do_read(fx.local, "s", &all), rh = do_read(fx.http, "s", &all);
    cr_assert(eq(sz, rl.n, 6));
    cr_assert(eq(str, rl.bodies[0], "alpha"));
    cr_assert(eq(sz, rl.recs[1].body_len, 0));
    cr_assert(eq(sz, rl.recs[2].body_len, strlen("gamma ") + 2 + strlen(" binary")));
    cr_assert(eq(str, rl.bodies[4], "epsilon"));
    expect_same_read(&rl, &rh);

    /* Bounds: count, bytes (metered 8 + len), until, tail_offset, timestamp. */
    struct s2_read_opts o[] = {
        {.has_seq_num = 1, .seq_num = 1, .has_count = 1, .count = 2},
        {.has_seq_num = 1, .seq_num = 0, .has_bytes = 1, .bytes = 8 + 5 + 8},
        {.has_tail_offset = 1, .tail_offset = 2},
        {.has_timestamp = 1, .timestamp = a2.ack.start.timestamp},
        {.has_seq_num = 1, .seq_num = 0, .has_until = 1, .until = a2.ack.start.timestamp},
    };
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++) {
        struct res x = do_read(fx.local, "s", &o[i]), y = do_read(fx.http, "s", &o[i]);
        expect_same_read(&x, &y);
    }
    struct res x = do_read(fx.local, "s", &o[1]);
    cr_assert(eq(sz, x.n, 2));
}

Test(inproc, callbacks_run_on_a_later_loop_turn)
{
    struct s2_append_record rec = {"x", 1};
    struct res a = {0}, t = {0}, e = {0}, r = {0};
    cr_assert(eq(int, s2_client_append(fx.local, "s", &rec, 1, NULL, 0, on_append, &a, NULL), 0));
    cr_assert(eq(int, s2_client_check_tail(fx.local, "s", on_tail, &t, NULL), 0));
    cr_assert(eq(int, s2_client_ensure_stream(fx.local, "s2", on_done, &e, NULL), 0));
    struct s2_read_opts o = {.has_seq_num = 1};
    cr_assert(eq(int, s2_client_read(fx.local, "s", &o, on_read, &r, NULL), 0));
    cr_assert(eq(int, a.done + t.done + e.done + r.done, 0));
    run_until(&r.done);
    cr_assert(eq(int, a.done, 1));
    cr_assert(eq(int, t.done, 1));
    cr_assert(eq(int, e.done, 1));
    cr_assert(eq(int, e.failed, 0));
    cr_assert(eq(u64, t.tail.seq_num, 1));
    cr_assert(eq(sz, r.n, 1));
}

Test(inproc, cancel_suppresses_the_callback)
{
    struct s2_append_record rec = {"x", 1};
    struct res a = {0}, t = {0};
    struct s2_request *req = NULL;
    cr_assert(eq(int, s2_client_append(fx.local, "s", &rec, 1, NULL, 0, on_append, &a, &req), 0));
    cr_assert_not_null(req);
    s2_request_cancel(req);
    cr_assert(eq(int, s2_client_check_tail(fx.local, "s", on_tail, &t, NULL), 0));
    run_until(&t.done);
    cr_assert(eq(int, a.done, 0));
    /* Like an HTTP request that reached the server, the append happened. */
    cr_assert(eq(u64, t.tail.seq_num, 1));
}

Test(inproc, unwritten_416_matches_http)
{
    const char *b[] = {"a", "b"};
    struct res a = do_append(fx.local, "s", b, 2, NULL);
    cr_assert(eq(int, a.failed, 0));
    struct s2_read_opts o[] = {
        {0},                                          /* tail_offset 0: at the tail */
        {.has_seq_num = 1, .seq_num = 2},             /* at the tail */
        {.has_seq_num = 1, .seq_num = 9},             /* past it */
        {.has_seq_num = 1, .seq_num = 9, .clamp = 1}, /* clamped to it */
        {.has_timestamp = 1, .timestamp = a.ack.end.timestamp + 1},
    };
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++) {
        struct res x = do_read(fx.local, "s", &o[i]), y = do_read(fx.http, "s", &o[i]);
        cr_assert(eq(int, x.failed, 1));
        cr_assert(eq(int, y.failed, 1));
        cr_assert(eq(int, x.err.kind, S2_ERR_UNWRITTEN));
        cr_assert(eq(int, y.err.kind, S2_ERR_UNWRITTEN));
        cr_assert(eq(int, x.err.http_status, 416));
        cr_assert(eq(int, x.err.has_tail, 1));
        cr_assert(eq(u64, x.err.tail.seq_num, 2));
        cr_assert(eq(u64, x.err.tail.seq_num, y.err.tail.seq_num));
        cr_assert(eq(u64, x.err.tail.timestamp, y.err.tail.timestamp));
        cr_assert(eq(int, x.err.retryable, 0));
    }
}

Test(inproc, precondition_412_matches_http)
{
    const char *b[] = {"a", "b", "c"};
    cr_assert(eq(int, do_append(fx.http, "s", b, 3, NULL).failed, 0));
    uint64_t wrong = 1;
    struct res x = do_append(fx.local, "s", b, 1, &wrong);
    struct res y = do_append(fx.http, "s", b, 1, &wrong);
    cr_assert(eq(int, x.failed, 1));
    cr_assert(eq(int, x.err.kind, S2_ERR_PRECONDITION));
    cr_assert(eq(int, y.err.kind, S2_ERR_PRECONDITION));
    cr_assert(eq(int, x.err.http_status, 412));
    cr_assert(eq(str, x.err.code, "seq_num_mismatch"));
    cr_assert(eq(str, x.err.code, y.err.code));
    cr_assert(eq(int, x.err.has_tail, 1));
    cr_assert(eq(u64, x.err.tail.seq_num, 3));
    cr_assert(eq(u64, y.err.tail.seq_num, 3));
    cr_assert(eq(int, x.err.fencing_mismatch, 0));
    /* Nothing was appended. */
    struct res t = {0};
    cr_assert(eq(int, s2_client_check_tail(fx.local, "s", on_tail, &t, NULL), 0));
    run_until(&t.done);
    cr_assert(eq(u64, t.tail.seq_num, 3));
}

Test(inproc, check_tail_and_ensure_match_http)
{
    struct res e = {0}, tl = {0}, th = {0};
    cr_assert(eq(int, s2_client_ensure_stream(fx.local, "fresh", on_done, &e, NULL), 0));
    run_until(&e.done);
    cr_assert(eq(int, e.failed, 0));
    const char *b[] = {"q"};
    cr_assert(eq(int, do_append(fx.local, "fresh", b, 1, NULL).failed, 0));
    cr_assert(eq(int, s2_client_check_tail(fx.local, "fresh", on_tail, &tl, NULL), 0));
    cr_assert(eq(int, s2_client_check_tail(fx.http, "fresh", on_tail, &th, NULL), 0));
    run_until(&tl.done);
    run_until(&th.done);
    cr_assert(eq(int, tl.failed + th.failed, 0));
    cr_assert(eq(u64, tl.tail.seq_num, 1));
    cr_assert(eq(u64, tl.tail.seq_num, th.tail.seq_num));
    cr_assert(eq(u64, tl.tail.timestamp, th.tail.timestamp));
}

Test(inproc, unknown_basin_is_404_like_http)
{
    struct s2_config cfg = {.basin = "other-basin"};
    struct s2_client *c = NULL;
    cr_assert(eq(int, s2_client_new_local(fx.base, fx.srv, &cfg, NULL, NULL, &c), 0));
    struct res t = {0};
    cr_assert(eq(int, s2_client_check_tail(c, "s", on_tail, &t, NULL), 0));
    run_until(&t.done);
    cr_assert(eq(int, t.err.kind, S2_ERR_HTTP));
    cr_assert(eq(int, t.err.http_status, 404));
    cr_assert(eq(str, t.err.code, "basin_not_found"));
    cr_assert(eq(int, t.err.retryable, 0));
    s2_client_free(c);
}

Test(inproc, refuses_long_polls_and_bad_input)
{
    struct s2_read_opts o = {.wait_s = 1};
    struct res r = {0};
    cr_assert(eq(int, s2_client_read(fx.local, "s", &o, on_read, &r, NULL), -ENOTSUP));
    cr_assert(
        eq(int, s2_client_append(fx.local, "s", NULL, 0, NULL, 0, on_append, &r, NULL), -EINVAL));
    cr_assert(eq(int, s2_client_check_tail(fx.local, "", on_tail, &r, NULL), -EINVAL));
    struct s2_client *c = NULL;
    struct s2_config none = {0};
    cr_assert(eq(int, s2_client_new_local(fx.base, fx.srv, &none, NULL, NULL, &c), -EINVAL));
    cr_assert_null(c);
}

/* A long poll over HTTP is answered by an in-process append. */
static void append_later(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    const char *b[] = {"woken"};
    struct res *a = arg;
    struct s2_append_record rec = {b[0], 5};
    cr_assert(eq(int, s2_client_append(fx.local, "s", &rec, 1, NULL, 0, on_append, a, NULL), 0));
}

Test(inproc, http_long_poll_woken_by_inproc_append)
{
    struct s2_read_opts o = {.has_seq_num = 1, .seq_num = 0, .wait_s = 50};
    struct res r = {0}, a = {0};
    cr_assert(eq(int, s2_client_read(fx.http, "s", &o, on_read, &r, NULL), 0));
    struct event *ev = evtimer_new(fx.base, append_later, &a);
    struct timeval tv = {0, 200 * 1000};
    evtimer_add(ev, &tv);
    /* Without the wake-up the poll would last 50 s, past the test's timeout. */
    run_until(&r.done);
    run_until(&a.done);
    event_free(ev);
    cr_assert(eq(int, r.failed, 0));
    cr_assert(eq(sz, r.n, 1));
    cr_assert(eq(str, r.bodies[0], "woken"));
}

/* The batcher and the reader work unchanged on an in-process client. */
struct flush_state {
    int done, rc;
};

static void on_flushed(int rc, void *arg)
{
    struct flush_state *f = arg;
    f->rc = rc;
    f->done = 1;
}

struct page_state {
    int done;
    int failed;
    size_t n;
    uint64_t next;
    char first[16], last[16];
};

static void on_page(const struct s2_error *err, const struct s2_page *page, void *arg)
{
    struct page_state *p = arg;
    p->done = 1;
    p->failed = err != NULL;
    if (page == NULL || page->count == 0)
        return;
    p->n = page->count;
    p->next = page->next_seq_num;
    snprintf(p->first, sizeof p->first, "%.*s", (int)page->records[0].body_len,
             (const char *)page->records[0].body);
    const struct s2_record *l = &page->records[page->count - 1];
    snprintf(p->last, sizeof p->last, "%.*s", (int)l->body_len, (const char *)l->body);
}

Test(inproc, batcher_and_reader_on_top)
{
    struct s2_batcher *b = NULL;
    struct s2_batcher_opts bo = {.linger_ms = 5, .max_records = 100};
    cr_assert(eq(int, s2_batcher_new(fx.local, "events", &bo, NULL, NULL, &b), 0));
    char buf[16];
    for (int i = 0; i < 250; i++) {
        int n = snprintf(buf, sizeof buf, "ev-%d", i);
        cr_assert(eq(int, s2_batcher_add(b, buf, (size_t)n), 0));
    }
    struct flush_state f = {0};
    cr_assert(eq(int, s2_batcher_flush(b, 10000, on_flushed, &f), 0));
    run_until(&f.done);
    cr_assert(eq(int, f.rc, 1)); /* flushed */
    s2_batcher_free(b);

    struct s2_page_opts po = {.has_seq_num = 1, .seq_num = 200, .count = 100};
    struct page_state pl = {0}, ph = {0};
    cr_assert(eq(int, s2_reader_read(fx.local, "events", &po, on_page, &pl, NULL), 0));
    cr_assert(eq(int, s2_reader_read(fx.http, "events", &po, on_page, &ph, NULL), 0));
    run_until(&pl.done);
    run_until(&ph.done);
    cr_assert(eq(int, pl.failed + ph.failed, 0));
    cr_assert(eq(sz, pl.n, 50));
    cr_assert(eq(str, pl.first, "ev-200"));
    cr_assert(eq(str, pl.last, "ev-249"));
    cr_assert(eq(sz, pl.n, ph.n));
    cr_assert(eq(u64, pl.next, ph.next));
    cr_assert(eq(str, pl.first, ph.first));
}
