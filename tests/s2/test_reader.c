/* test_reader.c - one bounded page read with an exact has_more. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "s2/reader.h"
#include "t_util.h"

#define TS0 1718000000000ULL /* the fixture server's first timestamp, step 10 */

struct page_result {
    int done;
    int ok;
    struct s2_error err;
    size_t count;
    uint64_t seq[16];
    char body[16][16];
    uint64_t next;
    int has_more;
    struct s2_position tail;
};

static void on_page(const struct s2_error *err, const struct s2_page *page, void *arg)
{
    struct page_result *r = arg;
    r->done = 1;
    r->ok = err == NULL;
    if (err != NULL) {
        r->err = *err;
        return;
    }
    r->count = page->count;
    for (size_t i = 0; i < page->count && i < 16; i++) {
        r->seq[i] = page->records[i].seq_num;
        size_t n = page->records[i].body_len < 15 ? page->records[i].body_len : 15;
        memcpy(r->body[i], page->records[i].body, n);
        r->body[i][n] = '\0';
    }
    r->next = page->next_seq_num;
    r->has_more = page->has_more;
    r->tail = page->tail;
}

static void fill(int n)
{
    fx_stream_create(T.fx, "events", 0);
    for (int i = 0; i < n; i++) {
        char b[16];
        int len = snprintf(b, sizeof b, "r%d", i);
        fx_stream_put(T.fx, "events", b, (size_t)len);
    }
}

static struct page_result read_page(const struct s2_page_opts *o)
{
    struct page_result r = {0};
    cr_assert_eq(s2_reader_read(T.client, "events", o, on_page, &r, NULL), 0);
    cr_assert_not(r.done);
    t_run_until(&r.done);
    return r;
}

TestSuite(s2_reader, .init = t_setup, .fini = t_teardown, .timeout = 20);

Test(s2_reader, has_more_with_reported_tail)
{
    fill(5);
    fx_set_read_tail(T.fx, 1);
    struct s2_page_opts o = {.has_seq_num = 1, .seq_num = 0, .count = 2};
    struct page_result r = read_page(&o);
    cr_assert(r.ok, "%s", r.err.message);
    cr_assert_eq(r.count, 2);
    cr_assert_str_eq(r.body[1], "r1");
    cr_assert_eq(r.next, 2);
    cr_assert(r.has_more);
    cr_assert_eq(r.tail.seq_num, 5);
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 0, "the read reported the tail");

    o.seq_num = 3;
    o.count = 10;
    r = read_page(&o);
    cr_assert_eq(r.count, 2);
    cr_assert_eq(r.next, 5);
    cr_assert_not(r.has_more);
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 0);
}

Test(s2_reader, has_more_without_reported_tail)
{
    fill(5);
    struct s2_page_opts o = {.has_seq_num = 1, .seq_num = 0, .count = 2};
    struct page_result r = read_page(&o);
    cr_assert(r.ok, "%s", r.err.message);
    cr_assert_eq(r.count, 2);
    cr_assert(r.has_more);
    cr_assert_eq(r.tail.seq_num, 5);
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 1, "asked for the tail");

    o.seq_num = 2;
    o.count = 3;
    r = read_page(&o);
    cr_assert_eq(r.count, 3);
    cr_assert_eq(r.next, 5);
    cr_assert_not(r.has_more, "the page ended exactly at the tail");
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 2);
}

Test(s2_reader, caught_up_416)
{
    fill(3);
    struct s2_page_opts o = {.has_seq_num = 1, .seq_num = 3, .count = 10};
    struct page_result r = read_page(&o);
    cr_assert(r.ok, "a 416 is not an error: %s", r.err.message);
    cr_assert_eq(r.count, 0);
    cr_assert_eq(r.next, 3);
    cr_assert_not(r.has_more);
    cr_assert_eq(r.tail.seq_num, 3);
    cr_assert_eq(r.tail.timestamp, TS0 + 20);
}

Test(s2_reader, empty_stream_from_head)
{
    fill(0);
    struct s2_page_opts o = {.count = 10};
    struct page_result r = read_page(&o);
    cr_assert(r.ok);
    cr_assert_eq(r.count, 0);
    cr_assert_eq(r.next, 0);
    cr_assert_not(r.has_more);
    cr_assert(strstr(fx_last_uri(T.fx), "seq_num=0") != NULL, "%s", fx_last_uri(T.fx));
}

Test(s2_reader, until_bounds_has_more)
{
    fill(6); /* timestamps TS0, TS0+10, ... TS0+50 */
    struct s2_page_opts o = {
        .has_seq_num = 1, .seq_num = 0, .count = 2, .has_until = 1, .until = TS0 + 25};
    struct page_result r = read_page(&o);
    cr_assert_eq(r.count, 2);
    cr_assert_eq(r.next, 2);
    cr_assert(r.has_more, "record 2 (TS0+20) is before until");

    o.count = 10;
    r = read_page(&o);
    cr_assert_eq(r.count, 3);
    cr_assert_eq(r.next, 3);
    cr_assert_not(r.has_more, "record 3 (TS0+30) is at or after until");

    /* Until past the tail's timestamp: no probe needed. */
    uint64_t reads = fx_count(T.fx, FX_READ);
    o.count = 2;
    o.until = TS0 + 1000;
    r = read_page(&o);
    cr_assert(r.has_more);
    cr_assert_eq(fx_count(T.fx, FX_READ), reads + 1);
}

Test(s2_reader, until_before_first_record)
{
    fill(3);
    struct s2_page_opts o = {
        .has_seq_num = 1, .seq_num = 1, .count = 10, .has_until = 1, .until = TS0 + 5};
    struct page_result r = read_page(&o);
    cr_assert(r.ok);
    cr_assert_eq(r.count, 0);
    cr_assert_eq(r.next, 1);
    cr_assert_not(r.has_more);
}

Test(s2_reader, from_timestamp)
{
    fill(5);
    struct s2_page_opts o = {.has_timestamp = 1, .timestamp = TS0 + 15, .count = 2};
    struct page_result r = read_page(&o);
    cr_assert_eq(r.count, 2);
    cr_assert_eq(r.seq[0], 2);
    cr_assert_eq(r.next, 4);
    cr_assert(r.has_more);
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 1);
    cr_assert(strstr(fx_last_uri(T.fx), "/records/tail") != NULL, "%s", fx_last_uri(T.fx));

    o.timestamp = TS0 + 1000;
    r = read_page(&o);
    cr_assert(r.ok);
    cr_assert_eq(r.count, 0);
    cr_assert_not(r.has_more);
    cr_assert_eq(r.next, 5, "caught up from a timestamp: next is the tail");
}

Test(s2_reader, bytes_below_first_record)
{
    fx_stream_create(T.fx, "events", 0);
    char big[100];
    memset(big, 'x', sizeof big);
    fx_stream_put(T.fx, "events", big, sizeof big);
    struct s2_page_opts o = {.has_seq_num = 1, .seq_num = 0, .count = 10, .bytes = 50};
    struct page_result r = read_page(&o);
    cr_assert(r.ok);
    cr_assert_eq(r.count, 0);
    cr_assert_eq(r.next, 0);
    cr_assert(r.has_more, "a record is there, it did not fit the byte bound");
}

Test(s2_reader, exact_u64_with_reported_tail)
{
    struct fx_rule rule = {.route = FX_READ,
                           .action = FX_FILE,
                           .status = 200,
                           .file = "read_big_u64.json",
                           .times = 1};
    fx_push(T.fx, &rule);
    struct s2_page_opts o = {.has_seq_num = 1, .seq_num = 18446744073709551000ULL, .count = 3};
    struct page_result r = read_page(&o);
    cr_assert(r.ok, "%s", r.err.message);
    cr_assert_eq(r.count, 3);
    cr_assert_eq(r.seq[2], 18446744073709551002ULL);
    cr_assert_eq(r.next, 18446744073709551003ULL);
    cr_assert_eq(r.tail.seq_num, 18446744073709551003ULL);
    cr_assert_not(r.has_more);
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 0);
}

Test(s2_reader, exact_u64_without_reported_tail)
{
    struct fx_rule rules[] = {
        {.route = FX_READ,
         .action = FX_FILE,
         .status = 200,
         .file = "read_big_u64_no_tail.json",
         .times = 1},
        {.route = FX_TAIL,
         .action = FX_FILE,
         .status = 200,
         .file = "tail_big_u64_more.json",
         .times = 1},
    };
    fx_push(T.fx, &rules[0]);
    fx_push(T.fx, &rules[1]);
    struct s2_page_opts o = {.has_seq_num = 1, .seq_num = 18446744073709551000ULL, .count = 3};
    struct page_result r = read_page(&o);
    cr_assert(r.ok, "%s", r.err.message);
    cr_assert_eq(r.next, 18446744073709551003ULL);
    cr_assert_eq(r.tail.seq_num, 18446744073709551010ULL);
    cr_assert(r.has_more);
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 1);
}

Test(s2_reader, skip_command_records)
{
    struct fx_rule rule = {.route = FX_READ,
                           .action = FX_FILE,
                           .status = 200,
                           .file = "read_commands.json",
                           .times = 1};
    fx_push(T.fx, &rule);
    struct s2_page_opts o = {.has_seq_num = 1, .seq_num = 0, .count = 10, .skip_commands = 1};
    struct page_result r = read_page(&o);
    cr_assert(r.ok, "%s", r.err.message);
    cr_assert_eq(r.count, 2);
    cr_assert_str_eq(r.body[0], "hello");
    cr_assert_str_eq(r.body[1], "world");
    cr_assert_eq(r.seq[1], 2);
    cr_assert_eq(r.next, 3);
    cr_assert_not(r.has_more);
}

Test(s2_reader, errors_are_reported)
{
    struct page_result r = {0};
    struct s2_page_opts o = {.has_seq_num = 1, .seq_num = 0, .count = 10};
    r = read_page(&o); /* no such stream */
    cr_assert_not(r.ok);
    cr_assert_eq(r.err.kind, S2_ERR_HTTP);
    cr_assert_eq(r.err.http_status, 404);
    cr_assert_str_eq(r.err.code, "stream_not_found");
}

Test(s2_reader, tail_error_is_reported)
{
    fill(3);
    struct fx_rule rule = {
        .route = FX_TAIL, .action = FX_FILE, .status = 403, .file = "error_authn.json", .times = 1};
    fx_push(T.fx, &rule);
    struct s2_page_opts o = {.has_seq_num = 1, .seq_num = 0, .count = 1};
    struct page_result r = read_page(&o);
    cr_assert_not(r.ok, "has_more is never guessed");
    cr_assert_eq(r.err.http_status, 403);
}

Test(s2_reader, invalid_options)
{
    struct page_result r = {0};
    struct s2_page_opts o = {.count = 0};
    cr_assert_eq(s2_reader_read(T.client, "events", &o, on_page, &r, NULL), -EINVAL);
    o.count = 1001;
    cr_assert_eq(s2_reader_read(T.client, "events", &o, on_page, &r, NULL), -EINVAL);
    struct s2_page_opts both = {.has_seq_num = 1, .has_timestamp = 1, .count = 1};
    cr_assert_eq(s2_reader_read(T.client, "events", &both, on_page, &r, NULL), -EINVAL);
    cr_assert_eq(fx_count(T.fx, FX_ANY), 0);
}

Test(s2_reader, cancel)
{
    fill(3);
    struct fx_rule rule = {.route = FX_TAIL, .action = FX_DELAY, .delay_ms = 100, .times = 1};
    fx_push(T.fx, &rule);
    struct page_result r = {0};
    struct s2_reader_req *q = NULL;
    struct s2_page_opts o = {.has_seq_num = 1, .seq_num = 0, .count = 1};
    cr_assert_eq(s2_reader_read(T.client, "events", &o, on_page, &r, &q), 0);
    while (fx_count(T.fx, FX_TAIL) == 0)
        t_run_for(5);
    s2_reader_cancel(q);
    t_run_for(200);
    cr_assert_not(r.done);
}
