/* test_client.c - append, read, check-tail, ensure against the fixture server:
 * headers, encoding, exact u64, error mapping, retries, timeouts, redaction. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "t_util.h"

/* One completed request, copied out of its callback. */
struct result {
    int done;
    int ok;
    struct s2_error err;
    struct s2_append_ack ack;
    struct s2_position tail;
    size_t count;
    int has_tail;
    uint64_t seq[8], ts[8];
    char body[8][32];
    size_t body_len[8];
    size_t headers[8];
    int is_command[8];
};

static void save_err(struct result *r, const struct s2_error *err)
{
    r->done = 1;
    r->ok = err == NULL;
    if (err != NULL) {
        r->err = *err;
        t_check_no_token(err->message);
    }
}

static void on_append(const struct s2_error *err, const struct s2_append_ack *ack, void *arg)
{
    struct result *r = arg;
    save_err(r, err);
    if (ack != NULL)
        r->ack = *ack;
}

static void on_read(const struct s2_error *err, const struct s2_read_batch *b, void *arg)
{
    struct result *r = arg;
    save_err(r, err);
    if (b == NULL)
        return;
    r->count = b->count;
    r->has_tail = b->has_tail;
    r->tail = b->tail;
    for (size_t i = 0; i < b->count && i < 8; i++) {
        r->seq[i] = b->records[i].seq_num;
        r->ts[i] = b->records[i].timestamp;
        r->body_len[i] = b->records[i].body_len;
        memcpy(r->body[i], b->records[i].body,
               b->records[i].body_len < 32 ? b->records[i].body_len : 32);
        r->headers[i] = b->records[i].header_count;
        r->is_command[i] = b->records[i].is_command;
    }
}

static void on_tail(const struct s2_error *err, const struct s2_position *tail, void *arg)
{
    struct result *r = arg;
    save_err(r, err);
    if (tail != NULL)
        r->tail = *tail;
}

static void on_done(const struct s2_error *err, void *arg)
{
    save_err(arg, err);
}

static struct s2_read_opts from_seq(uint64_t seq, uint64_t count)
{
    struct s2_read_opts o = {.has_seq_num = 1, .seq_num = seq, .has_count = 1, .count = count};
    return o;
}

TestSuite(s2_client, .init = t_setup, .fini = t_teardown, .timeout = 20);

Test(s2_client, append_read_tail_roundtrip)
{
    struct result ens = {0}, app = {0}, rd = {0}, tl = {0};
    cr_assert_eq(s2_client_ensure_stream(T.client, "events", on_done, &ens, NULL), 0);
    t_run_until(&ens.done);
    cr_assert(ens.ok);
    cr_assert_eq(fx_count(T.fx, FX_ENSURE), 1);

    const uint8_t bin[] = {0, 1, 2, 0xff, '"', '\\', '\n'};
    struct s2_append_record recs[] = {{"hello", 5}, {bin, sizeof bin}, {"", 0}};
    uint64_t match = 0;
    cr_assert_eq(s2_client_append(T.client, "events", recs, 3, &match, 0, on_append, &app, NULL),
                 0);
    cr_assert_not(app.done, "completed inside the call");
    t_run_until(&app.done);
    cr_assert(app.ok, "%s", app.err.message);
    cr_assert_eq(app.ack.start.seq_num, 0);
    cr_assert_eq(app.ack.end.seq_num, 3);
    cr_assert_eq(app.ack.tail.seq_num, 3);
    cr_assert_eq(app.ack.attempts, 1);
    /* Headers of the append. */
    cr_assert_str_eq(fx_last_header(T.fx, "Authorization"), "Bearer " T_TOKEN);
    cr_assert_str_eq(fx_last_header(T.fx, "S2-Basin"), T_BASIN);
    cr_assert_str_eq(fx_last_header(T.fx, "S2-Format"), "base64");
    cr_assert_str_eq(fx_last_header(T.fx, "Content-Type"), "application/json");
    cr_assert_eq(fx_stream_count(T.fx, "events"), 3);
    size_t len = 0;
    const uint8_t *b = fx_stream_body(T.fx, "events", 1, &len);
    cr_assert_eq(len, sizeof bin);
    cr_assert_arr_eq(b, bin, sizeof bin);

    struct s2_read_opts o = from_seq(0, 10);
    cr_assert_eq(s2_client_read(T.client, "events", &o, on_read, &rd, NULL), 0);
    t_run_until(&rd.done);
    cr_assert(rd.ok, "%s", rd.err.message);
    cr_assert_eq(rd.count, 3);
    cr_assert_str_eq(fx_last_header(T.fx, "S2-Format"), "base64");
    cr_assert_str_eq(fx_last_uri(T.fx), "/v1/streams/events/records?seq_num=0&count=10");
    cr_assert_eq(rd.body_len[0], 5);
    cr_assert_arr_eq(rd.body[0], "hello", 5);
    cr_assert_eq(rd.body_len[1], sizeof bin);
    cr_assert_arr_eq(rd.body[1], bin, sizeof bin);
    cr_assert_eq(rd.body_len[2], 0);
    cr_assert_eq(rd.seq[2], 2);
    cr_assert_not(rd.has_tail);

    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &tl, NULL), 0);
    t_run_until(&tl.done);
    cr_assert(tl.ok);
    cr_assert_eq(tl.tail.seq_num, 3);
    cr_assert_str_eq(fx_last_uri(T.fx), "/v1/streams/events/records/tail");
}

Test(s2_client, stream_name_percent_encoded)
{
    const char *name = "vm/a b%c?d";
    struct result ens = {0}, app = {0};
    cr_assert_eq(s2_client_ensure_stream(T.client, name, on_done, &ens, NULL), 0);
    t_run_until(&ens.done);
    cr_assert(ens.ok);
    cr_assert_str_eq(fx_last_uri(T.fx), "/v1/streams/vm%2Fa%20b%25c%3Fd");
    struct s2_append_record rec = {"x", 1};
    cr_assert_eq(s2_client_append(T.client, name, &rec, 1, NULL, 0, on_append, &app, NULL), 0);
    t_run_until(&app.done);
    cr_assert(app.ok, "%s", app.err.message);
    cr_assert_str_eq(fx_last_uri(T.fx), "/v1/streams/vm%2Fa%20b%25c%3Fd/records");
    cr_assert_eq(fx_stream_count(T.fx, name), 1);
}

Test(s2_client, exact_u64_read_page)
{
    struct fx_rule r = {.route = FX_READ,
                        .action = FX_FILE,
                        .status = 200,
                        .file = "read_big_u64.json",
                        .times = 1};
    fx_push(T.fx, &r);
    struct result rd = {0};
    struct s2_read_opts o = from_seq(18446744073709551000ULL, 3);
    cr_assert_eq(s2_client_read(T.client, "events", &o, on_read, &rd, NULL), 0);
    t_run_until(&rd.done);
    cr_assert(rd.ok, "%s", rd.err.message);
    cr_assert(strstr(fx_last_uri(T.fx), "seq_num=18446744073709551000") != NULL);
    cr_assert_eq(rd.count, 3);
    cr_assert_eq(rd.seq[0], 18446744073709551000ULL);
    cr_assert_eq(rd.seq[1], 18446744073709551001ULL);
    cr_assert_eq(rd.seq[2], 18446744073709551002ULL);
    cr_assert_eq(rd.ts[1], 18446744073709550001ULL);
    cr_assert(rd.has_tail);
    cr_assert_eq(rd.tail.seq_num, 18446744073709551003ULL);
    cr_assert_arr_eq(rd.body[0], "first", 5);
    const uint8_t bin[] = {0, 1, 2, 0xff};
    cr_assert_eq(rd.body_len[1], 4);
    cr_assert_arr_eq(rd.body[1], bin, 4);
    cr_assert_eq(rd.headers[1], 1);
    cr_assert_eq(rd.body_len[2], 0, "absent body is empty");
}

Test(s2_client, exact_u64_tail_ack_412_416)
{
    struct fx_rule rules[] = {
        {.route = FX_TAIL,
         .action = FX_FILE,
         .status = 200,
         .file = "tail_big_u64.json",
         .times = 1},
        {.route = FX_APPEND,
         .action = FX_FILE,
         .status = 200,
         .file = "append_ack_big_u64.json",
         .times = 1},
        {.route = FX_APPEND,
         .action = FX_FILE,
         .status = 412,
         .file = "precondition_seq_num.json",
         .times = 1},
        {.route = FX_READ,
         .action = FX_FILE,
         .status = 416,
         .file = "unwritten_416.json",
         .times = 1},
    };
    for (size_t i = 0; i < 4; i++)
        fx_push(T.fx, &rules[i]);
    struct result tl = {0}, a1 = {0}, a2 = {0}, rd = {0};
    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &tl, NULL), 0);
    t_run_until(&tl.done);
    cr_assert(tl.ok);
    cr_assert_eq(tl.tail.seq_num, 18446744073709551003ULL);
    cr_assert_eq(tl.tail.timestamp, 18446744073709550002ULL);

    struct s2_append_record recs[] = {{"a", 1}, {"b", 1}};
    uint64_t match = 18446744073709551000ULL;
    cr_assert_eq(s2_client_append(T.client, "events", recs, 2, &match, 0, on_append, &a1, NULL), 0);
    t_run_until(&a1.done);
    cr_assert(a1.ok, "%s", a1.err.message);
    cr_assert_eq(a1.ack.start.seq_num, 18446744073709551000ULL);
    cr_assert_eq(a1.ack.end.seq_num, 18446744073709551002ULL);

    cr_assert_eq(s2_client_append(T.client, "events", recs, 2, &match, 0, on_append, &a2, NULL), 0);
    t_run_until(&a2.done);
    cr_assert_not(a2.ok);
    cr_assert_eq(a2.err.kind, S2_ERR_PRECONDITION);
    cr_assert_eq(a2.err.http_status, 412);
    cr_assert(a2.err.has_tail);
    cr_assert_eq(a2.err.tail.seq_num, 18446744073709551001ULL);
    cr_assert_not(a2.err.retryable);
    cr_assert_eq(fx_count(T.fx, FX_APPEND), 2, "a 412 is not retried");

    struct s2_read_opts o = from_seq(18446744073709551003ULL, 10);
    cr_assert_eq(s2_client_read(T.client, "events", &o, on_read, &rd, NULL), 0);
    t_run_until(&rd.done);
    cr_assert_eq(rd.err.kind, S2_ERR_UNWRITTEN);
    cr_assert_eq(rd.err.http_status, 416);
    cr_assert(rd.err.has_tail);
    cr_assert_eq(rd.err.tail.seq_num, 18446744073709551003ULL);
    cr_assert_eq(rd.err.tail.timestamp, 1718000000600ULL);
    cr_assert_eq(fx_count(T.fx, FX_READ), 1, "a 416 is not retried");
}

Test(s2_client, precondition_seq_and_fencing)
{
    fx_stream_create(T.fx, "events", 0);
    fx_stream_put(T.fx, "events", "x", 1);
    struct result a = {0}, f = {0};
    struct s2_append_record rec = {"y", 1};
    uint64_t match = 0;
    cr_assert_eq(s2_client_append(T.client, "events", &rec, 1, &match, 0, on_append, &a, NULL), 0);
    t_run_until(&a.done);
    cr_assert_eq(a.err.kind, S2_ERR_PRECONDITION);
    cr_assert(a.err.has_tail);
    cr_assert_eq(a.err.tail.seq_num, 1);
    cr_assert_str_eq(a.err.code, "seq_num_mismatch");
    cr_assert_eq(fx_stream_count(T.fx, "events"), 1);

    struct fx_rule r = {.route = FX_APPEND,
                        .action = FX_FILE,
                        .status = 412,
                        .file = "precondition_fencing.json",
                        .times = 1};
    fx_push(T.fx, &r);
    cr_assert_eq(s2_client_append(T.client, "events", &rec, 1, NULL, 0, on_append, &f, NULL), 0);
    t_run_until(&f.done);
    cr_assert_eq(f.err.kind, S2_ERR_PRECONDITION);
    cr_assert(f.err.fencing_mismatch);
    cr_assert_not(f.err.has_tail);
    cr_assert(strstr(f.err.message, "writer-8") != NULL, "%s", f.err.message);
}

Test(s2_client, read_at_tail_is_416)
{
    fx_stream_create(T.fx, "events", 0);
    struct result rd = {0};
    struct s2_read_opts o = from_seq(0, 10);
    cr_assert_eq(s2_client_read(T.client, "events", &o, on_read, &rd, NULL), 0);
    t_run_until(&rd.done);
    cr_assert_eq(rd.err.kind, S2_ERR_UNWRITTEN);
    cr_assert_eq(rd.err.tail.seq_num, 0);
    cr_assert_eq(rd.err.tail.timestamp, 0);
}

struct status_case {
    const char *file;
    int status;
    enum s2_error_kind kind;
    const char *code;
    int retryable;
};

static void check_status(const struct status_case *c)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {
        .route = FX_TAIL, .action = FX_FILE, .status = c->status, .file = c->file, .times = -1};
    fx_push(T.fx, &r);
    struct result tl = {0};
    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &tl, NULL), 0);
    t_run_until(&tl.done);
    cr_assert_not(tl.ok);
    cr_assert_eq(tl.err.kind, c->kind, "%s: kind %d", c->file, tl.err.kind);
    cr_assert_eq(tl.err.http_status, c->status);
    cr_assert_str_eq(tl.err.code, c->code);
    cr_assert_eq(tl.err.retryable, c->retryable, "%s", c->file);
    /* Reads retry retryable errors up to max_attempts (3). */
    cr_assert_eq(fx_count(T.fx, FX_TAIL), c->retryable ? 3 : 1);
    cr_assert_eq(tl.err.attempts, c->retryable ? 3 : 1);
    cr_assert(strstr(tl.err.message, "tail of stream `events`") != NULL, "%s", tl.err.message);
}

Test(s2_client, status_400_bad_json)
{
    check_status(&(struct status_case){"error_bad_json.json", 400, S2_ERR_HTTP, "bad_json", 0});
}
Test(s2_client, status_401_authn)
{
    check_status(&(struct status_case){"error_authn.json", 401, S2_ERR_HTTP, "authn", 0});
}
Test(s2_client, status_404_not_found)
{
    check_status(&(struct status_case){"error_stream_not_found.json", 404, S2_ERR_HTTP,
                                       "stream_not_found", 0});
}
Test(s2_client, status_422_invalid)
{
    check_status(&(struct status_case){"error_invalid.json", 422, S2_ERR_HTTP, "invalid", 0});
}
Test(s2_client, status_429_rate_limited)
{
    check_status(
        &(struct status_case){"error_rate_limited.json", 429, S2_ERR_HTTP, "rate_limited", 1});
}
Test(s2_client, status_500_storage)
{
    check_status(&(struct status_case){"error_storage.json", 500, S2_ERR_HTTP, "storage", 1});
}
Test(s2_client, status_502_not_json)
{
    check_status(&(struct status_case){"error_not_json.html", 502, S2_ERR_HTTP, "", 1});
}
Test(s2_client, status_503_unavailable)
{
    check_status(
        &(struct status_case){"error_unavailable.json", 503, S2_ERR_HTTP, "unavailable", 1});
}

Test(s2_client, retry_then_success)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {.route = FX_READ,
                        .action = FX_FILE,
                        .status = 503,
                        .file = "error_unavailable.json",
                        .times = 2};
    fx_push(T.fx, &r);
    fx_stream_put(T.fx, "events", "a", 1);
    struct result rd = {0};
    struct s2_read_opts o = from_seq(0, 10);
    cr_assert_eq(s2_client_read(T.client, "events", &o, on_read, &rd, NULL), 0);
    t_run_until(&rd.done);
    cr_assert(rd.ok, "%s", rd.err.message);
    cr_assert_eq(rd.count, 1);
    cr_assert_eq(fx_count(T.fx, FX_READ), 3);
    cr_assert(strstr(T.log, "retry 1 of 2") != NULL, "%s", T.log);
}

Test(s2_client, retry_after_ms_honoured)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {.route = FX_TAIL,
                        .action = FX_FILE,
                        .status = 429,
                        .file = "error_rate_limited.json",
                        .retry_after_ms = "300",
                        .times = 1};
    fx_push(T.fx, &r);
    struct result tl = {0};
    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &tl, NULL), 0);
    t_run_until(&tl.done);
    cr_assert(tl.ok);
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 2);
    /* A lower bound only: the retry cannot come before the server's wish. */
    uint64_t gap = fx_arrival_ms(T.fx, FX_TAIL, 1) - fx_arrival_ms(T.fx, FX_TAIL, 0);
    cr_assert_geq(gap, 299, "retried after %llu ms", (unsigned long long)gap);
}

Test(s2_client, retry_after_seconds_honoured)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {.route = FX_TAIL,
                        .action = FX_FILE,
                        .status = 503,
                        .file = "error_unavailable.json",
                        .retry_after = "1",
                        .times = 1};
    fx_push(T.fx, &r);
    struct result tl = {0};
    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &tl, NULL), 0);
    t_run_until(&tl.done);
    cr_assert(tl.ok);
    uint64_t gap = fx_arrival_ms(T.fx, FX_TAIL, 1) - fx_arrival_ms(T.fx, FX_TAIL, 0);
    cr_assert_geq(gap, 999, "retried after %llu ms", (unsigned long long)gap);
}

Test(s2_client, retry_after_beyond_cap_is_returned)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {.route = FX_TAIL,
                        .action = FX_FILE,
                        .status = 429,
                        .file = "error_rate_limited.json",
                        .retry_after_ms = "600000",
                        .times = 1};
    fx_push(T.fx, &r);
    struct result tl = {0};
    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &tl, NULL), 0);
    t_run_until(&tl.done);
    cr_assert_not(tl.ok);
    cr_assert_eq(tl.err.retry_after_ms, 600000);
    cr_assert(tl.err.retryable);
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 1);
}

Test(s2_client, append_unsafe_error_not_retried)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {.route = FX_APPEND,
                        .action = FX_FILE,
                        .status = 503,
                        .file = "error_unavailable.json",
                        .times = 1};
    fx_push(T.fx, &r);
    struct result a = {0};
    struct s2_append_record rec = {"x", 1};
    cr_assert_eq(s2_client_append(T.client, "events", &rec, 1, NULL, 0, on_append, &a, NULL), 0);
    t_run_until(&a.done);
    cr_assert_eq(a.err.kind, S2_ERR_HTTP);
    cr_assert_eq(a.err.http_status, 503);
    cr_assert(a.err.retryable);
    cr_assert_eq(fx_count(T.fx, FX_APPEND), 1, "503 unavailable may have had effects");
}

Test(s2_client, append_unsafe_error_retried_when_allowed)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {.route = FX_APPEND,
                        .action = FX_FILE,
                        .status = 500,
                        .file = "error_storage.json",
                        .times = 1};
    fx_push(T.fx, &r);
    struct result a = {0};
    struct s2_append_record rec = {"x", 1};
    uint64_t match = 0;
    cr_assert_eq(s2_client_append(T.client, "events", &rec, 1, &match, 1, on_append, &a, NULL), 0);
    t_run_until(&a.done);
    cr_assert(a.ok, "%s", a.err.message);
    cr_assert_eq(a.ack.attempts, 2);
    cr_assert_eq(fx_stream_count(T.fx, "events"), 1);
}

Test(s2_client, append_safe_errors_retried)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r1 = {.route = FX_APPEND,
                         .action = FX_FILE,
                         .status = 503,
                         .file = "error_server_draining.json",
                         .times = 1};
    struct fx_rule r2 = {.route = FX_APPEND,
                         .action = FX_FILE,
                         .status = 502,
                         .file = "error_hot_server.json",
                         .times = 1};
    fx_push(T.fx, &r1);
    fx_push(T.fx, &r2);
    struct result a = {0};
    struct s2_append_record rec = {"x", 1};
    cr_assert_eq(s2_client_append(T.client, "events", &rec, 1, NULL, 0, on_append, &a, NULL), 0);
    t_run_until(&a.done);
    cr_assert(a.ok, "%s", a.err.message);
    cr_assert_eq(a.ack.attempts, 3);
    cr_assert_eq(fx_stream_count(T.fx, "events"), 1);
}

Test(s2_client, dropped_connection_read_retried)
{
    fx_stream_create(T.fx, "events", 0);
    fx_stream_put(T.fx, "events", "a", 1);
    struct fx_rule r = {.route = FX_READ, .action = FX_DROP, .times = 1};
    fx_push(T.fx, &r);
    struct result rd = {0};
    struct s2_read_opts o = from_seq(0, 10);
    cr_assert_eq(s2_client_read(T.client, "events", &o, on_read, &rd, NULL), 0);
    t_run_until(&rd.done);
    cr_assert(rd.ok, "%s", rd.err.message);
    cr_assert_eq(rd.count, 1);
    cr_assert_eq(fx_count(T.fx, FX_READ), 2);
}

Test(s2_client, dropped_connection_append_reported)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {.route = FX_APPEND, .action = FX_APPLY_DROP, .times = 1};
    fx_push(T.fx, &r);
    struct result a = {0};
    struct s2_append_record rec = {"x", 1};
    cr_assert_eq(s2_client_append(T.client, "events", &rec, 1, NULL, 0, on_append, &a, NULL), 0);
    t_run_until(&a.done);
    cr_assert_not(a.ok);
    cr_assert_eq(a.err.kind, S2_ERR_TRANSPORT, "%s", a.err.message);
    cr_assert(a.err.retryable);
    cr_assert_eq(fx_stream_count(T.fx, "events"), 1);
}

static void setup_short_timeout(void)
{
    const char *env[] = {"S2_REQUEST_TIMEOUT", "200ms", NULL};
    t_setup_with(env);
}

Test(s2_client, request_timeout, .init = setup_short_timeout)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {.route = FX_TAIL, .action = FX_DELAY, .delay_ms = 5000, .times = -1};
    fx_push(T.fx, &r);
    struct result tl = {0};
    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &tl, NULL), 0);
    t_run_until(&tl.done);
    cr_assert_eq(tl.err.kind, S2_ERR_TIMEOUT, "%s", tl.err.message);
    cr_assert(tl.err.retryable);
    cr_assert_eq(tl.err.attempts, 3);
    cr_assert_eq(tl.err.http_status, 0);
}

Test(s2_client, timeout_then_success, .init = setup_short_timeout)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {.route = FX_TAIL, .action = FX_DELAY, .delay_ms = 1000, .times = 1};
    fx_push(T.fx, &r);
    struct result tl = {0};
    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &tl, NULL), 0);
    t_run_until(&tl.done);
    cr_assert(tl.ok, "%s", tl.err.message);
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 2);
}

Test(s2_client, connection_refused)
{
    /* A port nothing listens on: bind one, note it, close it. */
    struct s2_config cfg = T.cfg;
    cfg.basin_endpoint = "http://127.0.0.1:1/v1";
    struct s2_client *c = NULL;
    cr_assert_eq(s2_client_new(T.loop, &cfg, t_log, NULL, &c), 0);
    struct result tl = {0};
    cr_assert_eq(s2_client_check_tail(c, "events", on_tail, &tl, NULL), 0);
    t_run_until(&tl.done);
    cr_assert_eq(tl.err.kind, S2_ERR_TRANSPORT, "%s", tl.err.message);
    cr_assert(tl.err.retryable);
    cr_assert_eq(tl.err.attempts, 3);
    s2_client_free(c);
}

Test(s2_client, token_never_in_messages_or_logs)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {.route = FX_TAIL,
                        .action = FX_FILE,
                        .status = 401,
                        .file = "error_echo_token.json",
                        .times = 1};
    struct fx_rule r2 = {.route = FX_READ,
                         .action = FX_FILE,
                         .status = 503,
                         .file = "error_unavailable.json",
                         .times = 1};
    fx_push(T.fx, &r);
    fx_push(T.fx, &r2);
    struct result tl = {0}, rd = {0};
    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &tl, NULL), 0);
    t_run_until(&tl.done);
    cr_assert_eq(tl.err.http_status, 401);
    cr_assert(strstr(tl.err.message, "is not valid") != NULL, "%s", tl.err.message);
    t_check_no_token(tl.err.message);
    struct s2_read_opts o = from_seq(0, 1);
    cr_assert_eq(s2_client_read(T.client, "events", &o, on_read, &rd, NULL), 0);
    t_run_until(&rd.done);
    cr_assert(T.loglen > 0, "a retry was logged");
    t_check_no_token(T.log);
    /* The token did go out, in the Authorization header only. */
    cr_assert_str_eq(fx_last_header(T.fx, "Authorization"), "Bearer " T_TOKEN);
}

Test(s2_client, cancel_runs_no_callback)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {.route = FX_TAIL, .action = FX_DELAY, .delay_ms = 100, .times = 1};
    fx_push(T.fx, &r);
    struct result tl = {0}, tl2 = {0};
    struct s2_request *req = NULL;
    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &tl, &req), 0);
    cr_assert_not_null(req);
    t_run_for(30);
    s2_request_cancel(req);
    /* A second request still goes through on the same loop. */
    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &tl2, NULL), 0);
    t_run_until(&tl2.done);
    t_run_for(150);
    cr_assert_not(tl.done);
    cr_assert(tl2.ok);
}

static void free_client_cb(const struct s2_error *err, const struct s2_position *tail, void *arg)
{
    (void)err;
    (void)tail;
    s2_client_free(T.client);
    T.client = NULL;
    *(int *)arg = 1;
}

Test(s2_client, free_from_callback)
{
    fx_stream_create(T.fx, "events", 0);
    int done = 0;
    struct result other = {0};
    struct fx_rule r = {.route = FX_READ, .action = FX_DELAY, .delay_ms = 200, .times = 1};
    fx_push(T.fx, &r);
    struct s2_read_opts o = from_seq(0, 1);
    cr_assert_eq(s2_client_read(T.client, "events", &o, on_read, &other, NULL), 0);
    cr_assert_eq(s2_client_check_tail(T.client, "events", free_client_cb, &done, NULL), 0);
    t_run_until(&done);
    t_run_for(300);
    cr_assert_not(other.done, "cancelled by the free");
}

Test(s2_client, invalid_arguments)
{
    struct result a = {0};
    struct s2_append_record rec = {"x", 1};
    cr_assert_eq(s2_client_append(T.client, "events", &rec, 0, NULL, 0, on_append, &a, NULL),
                 -EINVAL);
    cr_assert_eq(s2_client_append(T.client, "", &rec, 1, NULL, 0, on_append, &a, NULL), -EINVAL);
    cr_assert_eq(s2_client_append(T.client, "..", &rec, 1, NULL, 0, on_append, &a, NULL), -EINVAL);
    static char big[1024 * 1024];
    struct s2_append_record two[] = {{big, sizeof big - 8}, {"y", 1}};
    cr_assert_eq(s2_client_append(T.client, "events", two, 2, NULL, 0, on_append, &a, NULL),
                 -EMSGSIZE);
    struct s2_read_opts o = {.has_seq_num = 1, .has_timestamp = 1};
    cr_assert_eq(s2_client_read(T.client, "events", &o, on_read, &a, NULL), -EINVAL);
    struct s2_read_opts w = {.wait_s = 61};
    cr_assert_eq(s2_client_read(T.client, "events", &w, on_read, &a, NULL), -EINVAL);
    cr_assert_eq(fx_count(T.fx, FX_ANY), 0);
}

static void free_all_cb(const struct s2_error *err, const struct s2_position *tail, void *arg)
{
    (void)err;
    (void)tail;
    s2_client_free(T.client);
    s2_loop_free(T.loop);
    T.client = NULL;
    T.loop = NULL;
    *(int *)arg = 1;
}

Test(s2_client, free_loop_from_callback)
{
    fx_stream_create(T.fx, "events", 0);
    int done = 0;
    struct result other = {0};
    cr_assert_eq(s2_client_check_tail(T.client, "events", free_all_cb, &done, NULL), 0);
    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &other, NULL), 0);
    t_run_until(&done);
    t_run_for(100);
    cr_assert_not(other.done, "freed with the loop");
}

Test(s2_client, response_too_large)
{
    fx_stream_create(T.fx, "events", 0);
    size_t n = 100 * 1024;
    char *body = malloc(n + 1);
    memset(body, ' ', n);
    memcpy(body, "{\"tail\":", 8);
    memcpy(body + n - 40, "{\"seq_num\":1,\"timestamp\":2}}", 29);
    body[n] = '\0';
    struct fx_rule r = {
        .route = FX_TAIL, .action = FX_FILE, .status = 200, .body = body, .times = -1};
    fx_push(T.fx, &r);
    struct result tl = {0};
    cr_assert_eq(s2_client_check_tail(T.client, "events", on_tail, &tl, NULL), 0);
    t_run_until(&tl.done);
    cr_assert_not(tl.ok);
    cr_assert_eq(tl.err.kind, S2_ERR_PROTOCOL, "%s", tl.err.message);
    cr_assert(strstr(tl.err.message, "larger than") != NULL, "%s", tl.err.message);
    cr_assert_eq(fx_count(T.fx, FX_TAIL), 1, "not retried");
    free(body);
}

Test(s2_client, malformed_success_body)
{
    fx_stream_create(T.fx, "events", 0);
    struct fx_rule r = {.route = FX_APPEND,
                        .action = FX_FILE,
                        .status = 200,
                        .body = "{\"start\":{\"seq_num\":-1}}",
                        .times = 1};
    fx_push(T.fx, &r);
    struct result a = {0};
    struct s2_append_record rec = {"x", 1};
    cr_assert_eq(s2_client_append(T.client, "events", &rec, 1, NULL, 0, on_append, &a, NULL), 0);
    t_run_until(&a.done);
    cr_assert_eq(a.err.kind, S2_ERR_PROTOCOL);
    cr_assert_not(a.err.retryable, "a 2xx append may have been applied");
}

Test(s2_client, basin_placeholder_in_endpoint)
{
    char ep[128];
    snprintf(ep, sizeof ep, "%s/b/{basin}/v1", fx_server_url(T.fx));
    char *norm = NULL;
    cr_assert_eq(s2_endpoint_normalize(ep, &norm), 0);
    struct s2_config cfg = T.cfg;
    cfg.basin_endpoint = norm;
    struct s2_client *c = NULL;
    cr_assert_eq(s2_client_new(T.loop, &cfg, t_log, NULL, &c), 0);
    fx_stream_create(T.fx, "events", 0);
    struct result tl = {0};
    cr_assert_eq(s2_client_check_tail(c, "events", on_tail, &tl, NULL), 0);
    t_run_until(&tl.done);
    cr_assert(tl.ok, "%s", tl.err.message);
    cr_assert_str_eq(fx_last_uri(T.fx), "/b/" T_BASIN "/v1/streams/events/records/tail");
    cr_assert_str_eq(fx_last_header(T.fx, "S2-Basin"), T_BASIN);
    s2_client_free(c);
    free(norm);
}
