/* test_batcher.c - ordered, exactly-once appends through faults. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <event2/event.h>

#include "s2/batcher.h"
#include "t_util.h"

static struct s2_batcher *B;

static struct s2_batcher *make(uint64_t linger_ms, uint32_t max_records, uint32_t queue_records)
{
    struct s2_batcher_opts o = {.linger_ms = linger_ms,
                                .max_records = max_records,
                                .queue_records = queue_records,
                                .retry_base_ms = 1,
                                .retry_max_ms = 10};
    struct s2_batcher *b = NULL;
    cr_assert_eq(s2_batcher_new(T.client, "events", &o, t_log, NULL, &b), 0);
    B = b;
    return b;
}

static void fini(void)
{
    s2_batcher_free(B);
    B = NULL;
    t_teardown();
}

struct flush_result {
    int done;
    int flushed;
};

static void on_flushed(int flushed, void *arg)
{
    struct flush_result *r = arg;
    r->done = 1;
    r->flushed = flushed;
}

static int flush(struct s2_batcher *b, uint64_t deadline_ms)
{
    struct flush_result r = {0};
    cr_assert_eq(s2_batcher_flush(b, deadline_ms, on_flushed, &r), 0);
    cr_assert_not(r.done, "flush completed inside the call");
    t_run_until(&r.done);
    return r.flushed;
}

static void add_n(struct s2_batcher *b, int from, int n)
{
    for (int i = from; i < from + n; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "rec-%06d", i);
        cr_assert_eq(s2_batcher_add(b, buf, (size_t)len), 0);
    }
}

/* The stream holds exactly rec-<first>..rec-<first+n-1>, in order, from index at. */
static void check_stream(size_t at, int first, int n)
{
    cr_assert_eq(fx_stream_count(T.fx, "events"), (long)(at + (size_t)n), "stream has %ld records",
                 fx_stream_count(T.fx, "events"));
    for (int i = 0; i < n; i++) {
        char want[32];
        int wlen = snprintf(want, sizeof want, "rec-%06d", first + i);
        size_t len = 0;
        const uint8_t *body = fx_stream_body(T.fx, "events", at + (size_t)i, &len);
        cr_assert(len == (size_t)wlen && memcmp(body, want, len) == 0,
                  "record %zu is %.*s, want %s", at + (size_t)i, (int)len, (const char *)body,
                  want);
    }
}

static void wait_applied(uint64_t n)
{
    while (fx_appends_applied(T.fx) < n)
        event_base_loop(T.base, EVLOOP_ONCE);
}

static void wait_batches(uint64_t n)
{
    struct s2_batcher_stats st;
    for (s2_batcher_get_stats(B, &st); st.batches < n; s2_batcher_get_stats(B, &st))
        event_base_loop(T.base, EVLOOP_ONCE);
}

TestSuite(s2_batcher, .init = t_setup, .fini = fini, .timeout = 30);

Test(s2_batcher, ordered_and_flushed)
{
    struct s2_batcher *b = make(20, 10, 0);
    add_n(b, 0, 95);
    cr_assert(flush(b, 10000));
    check_stream(0, 0, 95);
    struct s2_batcher_stats st;
    s2_batcher_get_stats(b, &st);
    cr_assert_eq(st.added, 95);
    cr_assert_eq(st.appended, 95);
    cr_assert_eq(st.pending, 0);
    cr_assert_eq(st.batches, fx_appends_applied(T.fx));
    const uint32_t *sizes;
    size_t nb = fx_batch_sizes(T.fx, &sizes);
    cr_assert_eq(nb, 10);
    for (size_t i = 0; i < nb; i++)
        cr_assert_leq(sizes[i], 10);
    /* Missing at start: check-tail (404), create, check-tail again. */
    cr_assert_eq(fx_count(T.fx, FX_ENSURE), 1, "the stream is created at start");
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 2, "the tail is learned at start");
}

Test(s2_batcher, linger_sends_without_flush)
{
    struct s2_batcher *b = make(100, 1000, 0);
    add_n(b, 0, 5);
    wait_applied(1);
    const uint32_t *sizes;
    cr_assert_eq(fx_batch_sizes(T.fx, &sizes), 1);
    cr_assert_eq(sizes[0], 5, "held until linger, then sent together");
    t_run_for(150);
    cr_assert_eq(fx_appends_applied(T.fx), 1);
    check_stream(0, 0, 5);
}

Test(s2_batcher, linger_zero_sends_at_once)
{
    struct s2_batcher *b = make(0, 1000, 0);
    t_run_for(50); /* let it learn the tail */
    add_n(b, 0, 1);
    wait_applied(1);
    const uint32_t *sizes;
    cr_assert_eq(fx_batch_sizes(T.fx, &sizes), 1);
    cr_assert_eq(sizes[0], 1);
    check_stream(0, 0, 1);
}

Test(s2_batcher, max_records_trigger)
{
    struct s2_batcher *b = make(60000, 5, 0);
    add_n(b, 0, 12);
    wait_batches(2);
    const uint32_t *sizes;
    cr_assert_eq(fx_batch_sizes(T.fx, &sizes), 2);
    cr_assert_eq(sizes[0], 5);
    cr_assert_eq(sizes[1], 5);
    struct s2_batcher_stats st;
    s2_batcher_get_stats(b, &st);
    cr_assert_eq(st.pending, 2, "the rest waits for linger");
    cr_assert(flush(b, 5000));
    cr_assert_eq(fx_batch_sizes(T.fx, &sizes), 3);
    cr_assert_eq(sizes[2], 2);
    check_stream(0, 0, 12);
}

Test(s2_batcher, one_mib_split)
{
    struct s2_batcher *b = make(60000, 1000, 0);
    size_t len = 400 * 1024;
    char *big = malloc(len);
    for (int i = 0; i < 3; i++) {
        memset(big, 'a' + i, len);
        cr_assert_eq(s2_batcher_add(b, big, len), 0);
    }
    /* 3 x 400 KiB is over 1 MiB metered: a batch of 2 leaves without linger. */
    wait_applied(1);
    const uint32_t *sizes;
    cr_assert_eq(fx_batch_sizes(T.fx, &sizes), 1);
    cr_assert_eq(sizes[0], 2);
    cr_assert(flush(b, 5000));
    cr_assert_eq(fx_batch_sizes(T.fx, &sizes), 2);
    cr_assert_eq(sizes[1], 1);
    for (int i = 0; i < 3; i++) {
        size_t got = 0;
        const uint8_t *body = fx_stream_body(T.fx, "events", (size_t)i, &got);
        cr_assert_eq(got, len);
        cr_assert(body[0] == 'a' + i && body[len - 1] == 'a' + i);
    }
    free(big);
}

/* Records of every size, small ones packed together and large ones on
 * their own, interleaved over many batches: each lands once, in order, byte
 * for byte, and the queue empties (and refills) cleanly. */
Test(s2_batcher, mixed_sizes_in_order)
{
    struct s2_batcher *b = make(5, 7, 0);
    static const size_t sizes[] = {0, 1, 15, 16, 17, 300, 4000, 16383, 16384, 40000, 70000, 9};
    const size_t nsizes = sizeof sizes / sizeof sizes[0];
    const int n = 600;
    uint8_t *buf = malloc(70000);
    cr_assert_not_null(buf);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < n; i++) {
            size_t len = sizes[(size_t)i % nsizes];
            memset(buf, 'A' + (i + round) % 26, len);
            if (len >= 4)
                memcpy(buf, &i, sizeof i);
            cr_assert_eq(s2_batcher_add(b, buf, len), 0);
        }
        cr_assert(flush(b, 20000));
    }
    cr_assert_eq(fx_stream_count(T.fx, "events"), 2 * n);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < n; i++) {
            size_t len = sizes[(size_t)i % nsizes], got = 0;
            const uint8_t *body = fx_stream_body(T.fx, "events", (size_t)(round * n + i), &got);
            cr_assert_eq(got, len, "record %d of round %d", i, round);
            if (len >= 4)
                cr_assert(memcmp(body, &i, sizeof i) == 0, "record %d of round %d", i, round);
            for (size_t k = len >= 4 ? 4 : 0; k < len; k++)
                cr_assert_eq(body[k], 'A' + (i + round) % 26, "record %d byte %zu", i, k);
        }
    }
    struct s2_batcher_stats st;
    s2_batcher_get_stats(b, &st);
    cr_assert_eq(st.appended, 2 * n);
    cr_assert_eq(st.pending, 0);
    free(buf);
}

Test(s2_batcher, record_size_limit)
{
    struct s2_batcher *b = make(10, 1000, 0);
    size_t max = 1024 * 1024 - 8;
    char *big = calloc(1, max + 1);
    cr_assert_eq(s2_batcher_add(b, big, max + 1), -EMSGSIZE);
    cr_assert_eq(s2_batcher_add(b, big, max), 0);
    cr_assert(flush(b, 10000));
    struct s2_batcher_stats st;
    s2_batcher_get_stats(b, &st);
    cr_assert_eq(st.dropped_large, 1);
    cr_assert_eq(st.appended, 1);
    cr_assert(strstr(T.log, "over 1 MiB") != NULL, "%s", T.log);
    size_t got = 0;
    fx_stream_body(T.fx, "events", 0, &got);
    cr_assert_eq(got, max);
    free(big);
}

Test(s2_batcher, retries_without_duplicates)
{
    struct fx_rule rules[] = {
        {.route = FX_APPEND,
         .action = FX_FILE,
         .status = 503,
         .file = "error_unavailable.json",
         .times = 2},
        {.route = FX_APPEND,
         .action = FX_FILE,
         .status = 500,
         .file = "error_storage.json",
         .times = 1},
        {.route = FX_APPEND, .action = FX_DROP, .times = 1},
        {.route = FX_APPEND,
         .action = FX_FILE,
         .status = 429,
         .file = "error_rate_limited.json",
         .retry_after_ms = "20",
         .times = 1},
    };
    for (size_t i = 0; i < 4; i++)
        fx_push(T.fx, &rules[i]);
    struct s2_batcher *b = make(5, 10, 0);
    add_n(b, 0, 20);
    cr_assert(flush(b, 10000));
    check_stream(0, 0, 20);
    struct s2_batcher_stats st;
    s2_batcher_get_stats(b, &st);
    cr_assert_eq(st.appended, 20);
    /* Every fault was met; a drop on a reused connection may be resent by
     * libcurl itself, so it need not count as a retry here. */
    cr_assert_eq(fx_count(T.fx, FX_APPEND), st.batches + 5);
    cr_assert_geq(st.retries, 4, "retries %llu", (unsigned long long)st.retries);
}

Test(s2_batcher, ambiguous_503_after_apply)
{
    struct fx_rule rule = {.route = FX_APPEND,
                           .action = FX_APPLY_STATUS,
                           .status = 503,
                           .file = "error_unavailable.json",
                           .times = 1};
    fx_push(T.fx, &rule);
    struct s2_batcher *b = make(5, 10, 0);
    add_n(b, 0, 10);
    cr_assert(flush(b, 10000));
    check_stream(0, 0, 10);
    cr_assert_eq(fx_appends_applied(T.fx), 1, "applied once");
    cr_assert_eq(fx_count(T.fx, FX_READ), 1, "the landing was verified");
    cr_assert(strstr(T.log, "had landed") != NULL, "%s", T.log);
    struct s2_batcher_stats st;
    s2_batcher_get_stats(b, &st);
    cr_assert_eq(st.appended, 10);
    cr_assert_eq(st.batches, 1);
}

Test(s2_batcher, ambiguous_dropped_connection_after_apply)
{
    struct fx_rule rule = {.route = FX_APPEND, .action = FX_APPLY_DROP, .times = 1};
    fx_push(T.fx, &rule);
    struct s2_batcher *b = make(5, 10, 0);
    add_n(b, 0, 7);
    cr_assert(flush(b, 10000));
    add_n(b, 7, 3);
    cr_assert(flush(b, 10000));
    check_stream(0, 0, 10);
    cr_assert_eq(fx_appends_applied(T.fx), 2);
}

static void setup_short_timeout(void)
{
    const char *env[] = {"S2_REQUEST_TIMEOUT", "150ms", NULL};
    t_setup_with(env);
}

Test(s2_batcher, timeout_then_late_apply, .init = setup_short_timeout)
{
    /* The first append is applied only after the client gave up on it. */
    struct fx_rule rule = {.route = FX_APPEND, .action = FX_DELAY, .delay_ms = 400, .times = 1};
    fx_push(T.fx, &rule);
    struct s2_batcher *b = make(5, 10, 0);
    add_n(b, 0, 4);
    cr_assert(flush(b, 10000));
    t_run_for(500); /* let the delayed original land (or be refused) */
    add_n(b, 4, 4);
    cr_assert(flush(b, 10000));
    t_run_for(100);
    check_stream(0, 0, 8);
}

Test(s2_batcher, another_writer_moves_the_tail)
{
    fx_stream_create(T.fx, "events", 0);
    fx_stream_put(T.fx, "events", "other-0", 7);
    struct s2_batcher *b = make(60000, 1000, 0);
    while (fx_count(T.fx, FX_TAIL) == 0)
        t_run_for(5);
    t_run_for(20);
    fx_stream_put(T.fx, "events", "other-1", 7); /* after the batcher learned the tail */
    add_n(b, 0, 4);
    cr_assert(flush(b, 10000));
    check_stream(2, 0, 4);
    /* Another writer appends at least a batch's worth: read back, not ours. */
    for (int i = 0; i < 5; i++)
        fx_stream_put(T.fx, "events", "other-2", 7);
    add_n(b, 4, 3);
    cr_assert(flush(b, 10000));
    check_stream(11, 4, 3);
    cr_assert(strstr(T.log, "another writer") != NULL, "%s", T.log);
}

Test(s2_batcher, queue_full_counted_and_logged)
{
    struct fx_rule rule = {.route = FX_ENSURE, .action = FX_DELAY, .delay_ms = 100, .times = 1};
    fx_push(T.fx, &rule);
    struct s2_batcher *b = make(5, 100, 5);
    int full = 0;
    for (int i = 0; i < 8; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "rec-%06d", i);
        int rc = s2_batcher_add(b, buf, (size_t)len);
        cr_assert(rc == 0 || rc == -ENOSPC);
        full += rc == -ENOSPC;
    }
    cr_assert_eq(full, 3);
    struct s2_batcher_stats st;
    s2_batcher_get_stats(b, &st);
    cr_assert_eq(st.dropped_full, 3);
    cr_assert_eq(st.added, 5);
    cr_assert(strstr(T.log, "queue full") != NULL, "%s", T.log);
    cr_assert(flush(b, 10000));
    check_stream(0, 0, 5);
}

Test(s2_batcher, queue_bytes_bound)
{
    struct s2_batcher_opts o = {.linger_ms = 60000,
                                .max_records = 1000,
                                .queue_bytes = 100,
                                .retry_base_ms = 1,
                                .retry_max_ms = 10};
    cr_assert_eq(s2_batcher_new(T.client, "events", &o, t_log, NULL, &B), 0);
    char buf[60] = {0};
    cr_assert_eq(s2_batcher_add(B, buf, sizeof buf), 0);
    cr_assert_eq(s2_batcher_add(B, buf, sizeof buf), -ENOSPC);
    cr_assert_eq(s2_batcher_add(B, buf, 40), 0);
    struct s2_batcher_stats st;
    s2_batcher_get_stats(B, &st);
    cr_assert_eq(st.dropped_full, 1);
}

Test(s2_batcher, flush_deadline_and_loss_logged)
{
    struct fx_rule rule = {.route = FX_APPEND,
                           .action = FX_FILE,
                           .status = 503,
                           .file = "error_unavailable.json",
                           .times = -1};
    fx_push(T.fx, &rule);
    struct s2_batcher *b = make(5, 10, 0);
    add_n(b, 0, 3);
    cr_assert_not(flush(b, 200), "nothing can be appended");
    struct s2_batcher_stats st;
    s2_batcher_get_stats(b, &st);
    cr_assert_eq(st.pending, 3);
    cr_assert_eq(st.appended, 0);
    s2_batcher_free(b);
    B = NULL;
    cr_assert(strstr(T.log, "3 record(s) not appended") != NULL, "%s", T.log);
}

Test(s2_batcher, invalid_options)
{
    struct s2_batcher_opts o = {.max_records = 0};
    struct s2_batcher *b = NULL;
    cr_assert_eq(s2_batcher_new(T.client, "events", &o, t_log, NULL, &b), -EINVAL);
    o.max_records = 1001;
    cr_assert_eq(s2_batcher_new(T.client, "events", &o, t_log, NULL, &b), -EINVAL);
    o.max_records = 10;
    cr_assert_eq(s2_batcher_new(T.client, "..", &o, t_log, NULL, &b), -EINVAL);
    cr_assert_eq(s2_batcher_new(T.client, "", &o, t_log, NULL, &b), -EINVAL);
    cr_assert_null(b);
}

Test(s2_batcher, opts_from_config)
{
    struct s2_batcher_opts o;
    s2_batcher_opts_from_config(&T.cfg, &o);
    cr_assert_eq(o.linger_ms, 100);
    cr_assert_eq(o.max_records, 50);
    cr_assert_eq(o.queue_records, 65536);
}

Test(s2_batcher, flush_when_empty)
{
    struct s2_batcher *b = make(5, 10, 0);
    cr_assert(flush(b, 1000));
    struct flush_result r = {0};
    cr_assert_eq(s2_batcher_flush(b, 1000, on_flushed, &r), 0);
    cr_assert_eq(s2_batcher_flush(b, 1000, on_flushed, &r), -EALREADY);
    t_run_until(&r.done);
    cr_assert(r.flushed);
}

static void free_on_flush(int flushed, void *arg)
{
    *(int *)arg = flushed ? 1 : 2;
    s2_batcher_free(B);
    B = NULL;
}

Test(s2_batcher, free_from_flush_callback)
{
    struct s2_batcher *b = make(5, 10, 0);
    add_n(b, 0, 3);
    int done = 0;
    cr_assert_eq(s2_batcher_flush(b, 5000, free_on_flush, &done), 0);
    t_run_until(&done);
    cr_assert_eq(done, 1);
    check_stream(0, 0, 3);
}

Test(s2_batcher, rejected_batch_counted)
{
    struct fx_rule rule = {.route = FX_APPEND,
                           .action = FX_FILE,
                           .status = 422,
                           .file = "error_invalid.json",
                           .times = 1};
    fx_push(T.fx, &rule);
    struct s2_batcher *b = make(5, 10, 0);
    add_n(b, 0, 3);
    cr_assert(flush(b, 5000));
    add_n(b, 3, 2);
    cr_assert(flush(b, 5000));
    check_stream(0, 3, 2);
    struct s2_batcher_stats st;
    s2_batcher_get_stats(b, &st);
    cr_assert_eq(st.dropped_rejected, 3);
    cr_assert_eq(st.appended, 2);
    cr_assert(strstr(T.log, "dropping 3 records") != NULL, "%s", T.log);
}

Test(s2_batcher, existing_stream_not_touched)
{
    fx_stream_create(T.fx, "events", 0);
    fx_stream_put(T.fx, "events", "old", 3);
    struct s2_batcher *b = make(5, 10, 0);
    add_n(b, 0, 3);
    cr_assert(flush(b, 5000));
    check_stream(1, 0, 3);
    cr_assert_eq(fx_count(T.fx, FX_ENSURE), 0);
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 1);
}

Test(s2_batcher, stream_recreated_after_404)
{
    struct fx_rule rule = {.route = FX_APPEND,
                           .action = FX_FILE,
                           .status = 404,
                           .file = "error_stream_not_found.json",
                           .times = 1};
    fx_push(T.fx, &rule);
    struct s2_batcher *b = make(5, 10, 0);
    add_n(b, 0, 3);
    cr_assert(flush(b, 5000));
    check_stream(0, 0, 3);
    cr_assert_eq(fx_count(T.fx, FX_ENSURE), 2);
}

Test(s2_batcher, start_retries_until_reachable)
{
    struct fx_rule rules[] = {
        {.route = FX_ENSURE,
         .action = FX_FILE,
         .status = 503,
         .file = "error_unavailable.json",
         .times = 3},
        {.route = FX_TAIL, .action = FX_DROP, .times = 3},
    };
    fx_push(T.fx, &rules[0]);
    fx_push(T.fx, &rules[1]);
    struct s2_batcher *b = make(5, 10, 0);
    add_n(b, 0, 3);
    cr_assert(flush(b, 10000));
    check_stream(0, 0, 3);
}

Test(s2_batcher, positions_above_2_pow_53)
{
    uint64_t first = 9007199254740993ULL; /* 2^53 + 1: not a double */
    fx_stream_create(T.fx, "events", first);
    struct s2_batcher *b = make(2, 100, 0);
    add_n(b, 0, 250);
    cr_assert(flush(b, 10000));
    check_stream(0, 0, 250);
    cr_assert_eq(fx_count(T.fx, FX_APPEND), fx_appends_applied(T.fx),
                 "no 412: exact match_seq_num");
    cr_assert_eq(fx_count(T.fx, FX_READ), 0);
}

/* --- Done-when: 100,000 records through 503s and dropped connections --- */

static int faults(enum fx_route route, uint64_t n, struct fx_rule *rule, void *arg)
{
    (void)arg;
    if (route != FX_APPEND)
        return 0;
    memset(rule, 0, sizeof *rule);
    rule->route = FX_APPEND;
    if (n % 7 == 3) {
        rule->action = FX_FILE; /* 503, not applied */
        rule->status = 503;
        rule->file = "error_unavailable.json";
    } else if (n % 11 == 5) {
        rule->action = FX_APPLY_DROP; /* applied, connection dropped */
    } else if (n % 13 == 8) {
        rule->action = FX_APPLY_STATUS; /* applied, answered 503 */
        rule->status = 503;
        rule->file = "error_unavailable.json";
    } else if (n % 17 == 2) {
        rule->action = FX_DROP; /* dropped, not applied */
    } else if (n % 19 == 4) {
        rule->action = FX_FILE;
        rule->status = 429;
        rule->file = "error_rate_limited.json";
        rule->retry_after_ms = "2";
    } else {
        return 0;
    }
    return 1;
}

#define BIG_N 100000

struct feeder {
    struct s2_batcher *b;
    int next;
    struct event *ev;
};

static void on_feed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct feeder *f = arg;
    int n = BIG_N - f->next < 2500 ? BIG_N - f->next : 2500;
    add_n(f->b, f->next, n);
    f->next += n;
    if (f->next < BIG_N) {
        struct timeval tv = {0, 1000};
        evtimer_add(f->ev, &tv);
    }
}

Test(s2_batcher, hundred_thousand_exactly_once, .timeout = 120)
{
    fx_set_decider(T.fx, faults, NULL);
    struct s2_batcher *b = make(5, 1000, BIG_N);
    struct feeder f = {.b = b};
    f.ev = evtimer_new(T.base, on_feed, &f);
    struct timeval tv = {0, 0};
    evtimer_add(f.ev, &tv);
    while (f.next < BIG_N)
        event_base_loop(T.base, EVLOOP_ONCE);
    event_free(f.ev);
    cr_assert(flush(b, 100000));
    check_stream(0, 0, BIG_N);
    struct s2_batcher_stats st;
    s2_batcher_get_stats(b, &st);
    cr_assert_eq(st.added, BIG_N);
    cr_assert_eq(st.appended, BIG_N);
    cr_assert_eq(st.dropped_full + st.dropped_large + st.dropped_rejected, 0);
    cr_assert_eq(st.batches, fx_appends_applied(T.fx));
    cr_assert_gt(st.retries, 0);
    printf("# 100k: %llu batches, %llu append requests, %llu retries, %llu verify reads\n",
           (unsigned long long)st.batches, (unsigned long long)fx_count(T.fx, FX_APPEND),
           (unsigned long long)st.retries, (unsigned long long)fx_count(T.fx, FX_READ));
}
