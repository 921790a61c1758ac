/* batcher.c - ordered, exactly-once appends of a record stream. */
#include "s2/batcher.h"
#include "s2/logf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "s2/loop.h"

#define BATCH_MAX_RECORDS 1000
#define BATCH_MAX_METERED (1024u * 1024u)
#define DEFAULT_QUEUE_RECORDS 65536u
#define DEFAULT_QUEUE_BYTES (64u * 1024u * 1024u)
#define DEFAULT_RETRY_BASE_MS 100u
#define DEFAULT_RETRY_MAX_MS 5000u
#define DROP_LOG_INTERVAL_MS 1000u

/* Appended records are kept for reuse, LIFO, when they are small: a steady
 * stream of events then allocates nothing. Freeing a batch of records at
 * once sends most of them past glibc's per-size cache into its slow paths,
 * which the host's own per-request allocations then pay for. */
#define REC_POOL_MAX 256u
#define REC_POOL_CAP 2048u /* largest pooled capacity */
#define REC_ROUND 64u      /* capacities are multiples of this */

/* One queued record; the first inflight_n of the list form the batch in flight. */
struct rec {
    struct rec *next;
    uint64_t enq_ms;
    size_t len;
    size_t cap; /* bytes data[] can hold */
    uint8_t data[];
};

enum bstate {
    B_ENSURE, /* ensuring the stream exists */
    B_TAIL,   /* learning the tail */
    B_IDLE,   /* ready; nothing in flight */
    B_APPEND, /* the frozen batch is in flight */
    B_VERIFY, /* reading back whether the frozen batch landed */
    B_BACKOFF /* waiting to retry retry_state */
};

struct s2_batcher {
    struct s2_client *client;
    char *stream;
    struct s2_batcher_opts opts;
    s2_log_fn log;
    void *log_arg;

    struct rec *head, *last; /* every pending record, oldest first */
    struct rec *wait_head;   /* first record not in the frozen batch */
    size_t inflight_n;       /* frozen batch: the first inflight_n records */
    uint64_t waiting_n, waiting_bytes, waiting_metered;

    enum bstate state, retry_state;
    uint64_t next_seq;  /* the stream tail we expect: match_seq_num */
    uint64_t seen_tail; /* tail reported by the last 412 */
    int ambiguous;      /* the frozen batch may already have landed */
    uint32_t sends;     /* sends of the frozen batch */
    uint32_t failures;  /* consecutive failures, for backoff */
    int just_ensured;   /* the last ensure preceded this check-tail */
    struct s2_request *req;
    struct s2_append_record *batch; /* scratch, BATCH_MAX_RECORDS */

    struct event *linger_timer, *retry_timer, *flush_timer;
    int flushing;
    void (*flush_done)(int flushed, void *arg);
    void *flush_arg;

    struct rec *pool; /* spent records for reuse, at most REC_POOL_MAX */
    unsigned pool_n;

    struct s2_batcher_stats stats;
    uint64_t drops_logged_ms;
    uint64_t drops_unlogged;
    uint64_t rng;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One log line through the batcher's sink. */
#define blog(b, level, ...) s2_logf((b)->log, (b)->log_arg, (level), __VA_ARGS__)

static void timer_in(struct event *ev, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static uint64_t pending(const struct s2_batcher *b)
{
    return b->waiting_n + b->inflight_n;
}

static void send_frozen(struct s2_batcher *b);
static void start_ensure(struct s2_batcher *b);
static void start_tail(struct s2_batcher *b);
static void start_verify(struct s2_batcher *b);

static void finish_flush(struct s2_batcher *b, int flushed)
{
    void (*done)(int, void *) = b->flush_done;
    void *arg = b->flush_arg;
    b->flushing = 0;
    b->flush_done = NULL;
    evtimer_del(b->flush_timer);
    /* Last action: done may free the batcher. */
    if (done != NULL)
        done(flushed, arg);
}

/* Retry `next` after a capped exponential backoff with jitter. */
static void backoff(struct s2_batcher *b, enum bstate next, uint64_t retry_after_ms)
{
    uint64_t base = b->opts.retry_base_ms;
    for (uint32_t i = 0; i < b->failures && base < b->opts.retry_max_ms; i++)
        base *= 2;
    if (base > b->opts.retry_max_ms)
        base = b->opts.retry_max_ms;
    b->failures++;
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    uint64_t delay = base / 2 + b->rng % (base / 2 + 1);
    if (delay < retry_after_ms)
        delay = retry_after_ms;
    b->state = B_BACKOFF;
    b->retry_state = next;
    timer_in(b->retry_timer, delay);
}

/* Move waiting records into the frozen batch: max_records, <= 1 MiB metered. */
static void freeze_batch(struct s2_batcher *b)
{
    size_t metered = 0;
    while (b->wait_head != NULL && b->inflight_n < b->opts.max_records) {
        size_t m = s2_metered_size(b->wait_head->len);
        if (metered + m > BATCH_MAX_METERED)
            break;
        metered += m;
        b->waiting_n--;
        b->waiting_bytes -= b->wait_head->len;
        b->waiting_metered -= m;
        b->inflight_n++;
        b->wait_head = b->wait_head->next;
    }
    b->sends = 0;
    b->ambiguous = 0;
}

static int batch_due(const struct s2_batcher *b, uint64_t now, uint64_t *wait_ms)
{
    if (b->flushing || b->waiting_n >= b->opts.max_records ||
        b->waiting_metered >= BATCH_MAX_METERED)
        return 1;
    uint64_t age = now - b->wait_head->enq_ms;
    if (age >= b->opts.linger_ms)
        return 1;
    *wait_ms = b->opts.linger_ms - age;
    return 0;
}

/* In B_IDLE: send the frozen batch, or a new one if due, or arm linger. */
static void maybe_send(struct s2_batcher *b)
{
    if (b->state != B_IDLE)
        return;
    if (b->inflight_n > 0) {
        send_frozen(b);
        return;
    }
    if (b->waiting_n == 0)
        return;
    uint64_t wait_ms = 0;
    if (batch_due(b, now_ms(), &wait_ms)) {
        evtimer_del(b->linger_timer);
        freeze_batch(b);
        send_frozen(b);
    } else {
        timer_in(b->linger_timer, wait_ms);
    }
}

/* After any progress: send what is due; complete a flush last. */
static void progress(struct s2_batcher *b)
{
    maybe_send(b);
    if (b->flushing && pending(b) == 0)
        finish_flush(b, 1);
}

/* A record for len bytes: the most recently spent one when it is big
 * enough, else a new one. NULL when out of memory. */
static struct rec *rec_get(struct s2_batcher *b, size_t len)
{
    struct rec *r = b->pool;
    if (r != NULL && r->cap >= len) {
        b->pool = r->next;
        b->pool_n--;
        return r;
    }
    size_t cap = len <= REC_POOL_CAP ? (len + REC_ROUND - 1) / REC_ROUND * REC_ROUND : len;
    if (cap == 0)
        cap = REC_ROUND;
    if ((r = malloc(sizeof *r + cap)) != NULL)
        r->cap = cap;
    return r;
}

static void rec_list_free(struct rec *r)
{
    while (r != NULL) {
        struct rec *next = r->next;
        free(r);
        r = next;
    }
}

/* Unlink the first n records of the list (emptying it resets its tail);
 * keep what the pool may hold. */
static void rec_drop_head(struct s2_batcher *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct rec *r = b->head;
        b->head = r->next;
        if (b->pool_n < REC_POOL_MAX && r->cap <= REC_POOL_CAP) {
            r->next = b->pool;
            b->pool = r;
            b->pool_n++;
        } else {
            free(r);
        }
    }
    if (b->head == NULL)
        b->last = NULL;
}

/* The frozen batch is in the stream, ending at new_next. */
static void commit_batch(struct s2_batcher *b, uint64_t new_next)
{
    rec_drop_head(b, b->inflight_n);
    b->stats.appended += b->inflight_n;
    b->stats.batches++;
    b->inflight_n = 0;
    b->next_seq = new_next;
    b->failures = 0;
    b->ambiguous = 0;
    b->state = B_IDLE;
}

/* Drop the frozen batch: S2 refused it for good (400/422). Counted, logged. */
static void reject_batch(struct s2_batcher *b, const struct s2_error *err)
{
    blog(b, 3, "s2 batcher: dropping %zu records S2 refused: %s", b->inflight_n, err->message);
    rec_drop_head(b, b->inflight_n);
    b->stats.dropped_rejected += b->inflight_n;
    b->inflight_n = 0;
    b->failures = 0;
    b->state = B_IDLE;
}

static void on_verify(const struct s2_error *err, const struct s2_read_batch *rb, void *arg)
{
    struct s2_batcher *b = arg;
    b->req = NULL;
    if (err != NULL && err->kind == S2_ERR_UNWRITTEN) {
        /* Nothing at next_seq: the batch did not land there. */
        b->next_seq = err->tail.seq_num;
        send_frozen(b);
        return;
    }
    if (err != NULL) {
        blog(b, 2, "s2 batcher: %s", err->message);
        backoff(b, B_VERIFY, err->retry_after_ms);
        return;
    }
    int same = rb->count == b->inflight_n;
    const struct rec *r = b->head;
    for (size_t i = 0; same && i < rb->count; i++, r = r->next) {
        const struct s2_record *x = &rb->records[i];
        same = x->seq_num == b->next_seq + i && x->header_count == 0 && x->body_len == r->len &&
               memcmp(x->body, r->data, r->len) == 0;
    }
    if (same) {
        blog(b, 1, "s2 batcher: batch of %zu records at %" PRIu64 " had landed; not resending",
             b->inflight_n, b->next_seq);
        commit_batch(b, b->next_seq + b->inflight_n);
        progress(b);
        return;
    }
    /* match_seq_num means it could only have landed at next_seq: it did not. */
    blog(b, 2, "s2 batcher: stream tail moved from %" PRIu64 " to %" PRIu64 " (another writer?)",
         b->next_seq, b->seen_tail);
    b->next_seq = b->seen_tail;
    send_frozen(b);
}

static void start_verify(struct s2_batcher *b)
{
    struct s2_read_opts ro = {
        .has_seq_num = 1, .seq_num = b->next_seq, .has_count = 1, .count = b->inflight_n};
    b->state = B_VERIFY;
    int rc = s2_client_read(b->client, b->stream, &ro, on_verify, b, &b->req);
    if (rc < 0)
        backoff(b, B_VERIFY, 0);
}

static void on_append(const struct s2_error *err, const struct s2_append_ack *ack, void *arg)
{
    struct s2_batcher *b = arg;
    b->req = NULL;
    uint32_t attempts = err != NULL ? err->attempts : ack->attempts;
    if (attempts > 1)
        b->stats.retries += attempts - 1;
    if (err == NULL) {
        if (ack->start.seq_num != b->next_seq ||
            ack->end.seq_num - ack->start.seq_num != b->inflight_n)
            blog(b, 2,
                 "s2 batcher: unexpected ack [%" PRIu64 ", %" PRIu64
                 ") for %zu records at %" PRIu64,
                 ack->start.seq_num, ack->end.seq_num, b->inflight_n, b->next_seq);
        commit_batch(b, ack->end.seq_num);
        progress(b);
        return;
    }
    if (err->kind == S2_ERR_PRECONDITION && err->has_tail) {
        b->seen_tail = err->tail.seq_num;
        if (err->tail.seq_num >= b->next_seq + b->inflight_n) {
            /* Room for our batch: it may have landed (an earlier ambiguous
             * attempt, or a transparent resend): read it back. */
            start_verify(b);
        } else {
            /* It would sit at [next_seq, next_seq + n): not there. */
            blog(b, 2, "s2 batcher: stream tail is %" PRIu64 ", expected %" PRIu64,
                 err->tail.seq_num, b->next_seq);
            if (err->tail.seq_num == b->next_seq) {
                /* A 412 naming our own position makes no sense: do not spin. */
                backoff(b, B_APPEND, 0);
                return;
            }
            b->next_seq = err->tail.seq_num;
            send_frozen(b);
        }
        return;
    }
    blog(b, err->retryable ? 2 : 3, "s2 batcher: %s", err->message);
    if (err->kind == S2_ERR_HTTP && err->http_status == 404) {
        backoff(b, B_ENSURE, 0);
        return;
    }
    if (err->kind == S2_ERR_HTTP && (err->http_status == 400 || err->http_status == 422)) {
        reject_batch(b, err);
        progress(b);
        return;
    }
    /* Timeouts, dropped connections, 5xx: it may have landed. */
    if (err->kind != S2_ERR_HTTP || err->http_status >= 500 || err->http_status == 408)
        b->ambiguous = 1;
    backoff(b, B_APPEND, err->retry_after_ms);
}

static void send_frozen(struct s2_batcher *b)
{
    size_t i = 0;
    for (const struct rec *r = b->head; i < b->inflight_n; r = r->next, i++) {
        b->batch[i].body = r->data;
        b->batch[i].len = r->len;
    }
    if (b->sends > 0)
        b->stats.retries++;
    b->sends++;
    b->state = B_APPEND;
    int rc = s2_client_append(b->client, b->stream, b->batch, b->inflight_n, &b->next_seq, 0,
                              on_append, b, &b->req);
    if (rc < 0) {
        blog(b, 3, "s2 batcher: cannot start an append: %s", strerror(-rc));
        backoff(b, B_APPEND, 0);
    }
}

static void on_tail(const struct s2_error *err, const struct s2_position *tail, void *arg)
{
    struct s2_batcher *b = arg;
    b->req = NULL;
    if (err != NULL) {
        blog(b, 2, "s2 batcher: %s", err->message);
        int missing = err->kind == S2_ERR_HTTP && err->http_status == 404;
        if (missing && !b->just_ensured) {
            /* Create it only when missing: an existing stream is never touched. */
            start_ensure(b);
            return;
        }
        b->just_ensured = 0;
        backoff(b, missing ? B_ENSURE : B_TAIL, err->retry_after_ms);
        return;
    }
    b->just_ensured = 0;
    b->next_seq = tail->seq_num;
    b->failures = 0;
    b->state = B_IDLE;
    progress(b);
}

static void start_tail(struct s2_batcher *b)
{
    b->state = B_TAIL;
    int rc = s2_client_check_tail(b->client, b->stream, on_tail, b, &b->req);
    if (rc < 0)
        backoff(b, B_TAIL, 0);
}

static void on_ensure(const struct s2_error *err, void *arg)
{
    struct s2_batcher *b = arg;
    b->req = NULL;
    if (err != NULL && err->retryable) {
        blog(b, 2, "s2 batcher: %s", err->message);
        backoff(b, B_ENSURE, err->retry_after_ms);
        return;
    }
    /* A refusal (e.g. no permission to create) may still leave a usable
     * stream: the tail will tell. */
    if (err != NULL)
        blog(b, 2, "s2 batcher: %s; checking the tail", err->message);
    b->just_ensured = 1;
    start_tail(b);
}

static void start_ensure(struct s2_batcher *b)
{
    b->state = B_ENSURE;
    int rc = s2_client_ensure_stream(b->client, b->stream, on_ensure, b, &b->req);
    if (rc < 0)
        backoff(b, B_ENSURE, 0);
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct s2_batcher *b = arg;
    switch (b->retry_state) {
    case B_ENSURE:
        b->just_ensured = 0;
        start_ensure(b);
        break;
    case B_TAIL:
        start_tail(b);
        break;
    case B_VERIFY:
        start_verify(b);
        break;
    default:
        send_frozen(b);
        break;
    }
}

static void on_linger_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maybe_send(arg);
}

static void on_flush_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct s2_batcher *b = arg;
    finish_flush(b, pending(b) == 0);
}

int s2_batcher_new(struct s2_client *client, const char *stream, const struct s2_batcher_opts *opts,
                   s2_log_fn log, void *log_arg, struct s2_batcher **out)
{
    *out = NULL;
    if (client == NULL || stream == NULL || opts == NULL || opts->max_records < 1 ||
        opts->max_records > BATCH_MAX_RECORDS || stream[0] == '\0' || strlen(stream) > 512 ||
        strcmp(stream, ".") == 0 || strcmp(stream, "..") == 0)
        return -EINVAL;
    struct s2_batcher *b = calloc(1, sizeof *b);
    if (b == NULL)
        return -ENOMEM;
    b->client = client;
    b->opts = *opts;
    if (b->opts.queue_records == 0)
        b->opts.queue_records = DEFAULT_QUEUE_RECORDS;
    if (b->opts.queue_bytes == 0)
        b->opts.queue_bytes = DEFAULT_QUEUE_BYTES;
    if (b->opts.retry_base_ms == 0)
        b->opts.retry_base_ms = DEFAULT_RETRY_BASE_MS;
    if (b->opts.retry_max_ms == 0)
        b->opts.retry_max_ms = DEFAULT_RETRY_MAX_MS;
    if (b->opts.retry_max_ms < b->opts.retry_base_ms)
        b->opts.retry_max_ms = b->opts.retry_base_ms;
    b->log = log;
    b->log_arg = log_arg;
    b->rng = now_ms() ^ (uint64_t)(uintptr_t)b ^ 0x9E3779B97F4A7C15ULL;
    struct event_base *base = s2_client_base(client);
    b->stream = strdup(stream);
    b->batch = calloc(BATCH_MAX_RECORDS, sizeof *b->batch);
    b->linger_timer = evtimer_new(base, on_linger_timer, b);
    b->retry_timer = evtimer_new(base, on_retry_timer, b);
    b->flush_timer = evtimer_new(base, on_flush_timer, b);
    if (b->stream == NULL || b->batch == NULL || b->linger_timer == NULL ||
        b->retry_timer == NULL || b->flush_timer == NULL) {
        s2_batcher_free(b);
        return -ENOMEM;
    }
    start_tail(b);
    *out = b;
    return 0;
}

/* Count a refused record; log the first and then at most once a second. */
static void count_drop(struct s2_batcher *b, uint64_t *counter, const char *why)
{
    (*counter)++;
    b->drops_unlogged++;
    uint64_t now = now_ms();
    if (b->drops_logged_ms == 0 || now - b->drops_logged_ms >= DROP_LOG_INTERVAL_MS) {
        blog(b, 2,
             "s2 batcher: dropped %" PRIu64 " record(s) (%s); totals: %" PRIu64
             " queue full, %" PRIu64 " too large",
             b->drops_unlogged, why, b->stats.dropped_full, b->stats.dropped_large);
        b->drops_logged_ms = now ? now : 1;
        b->drops_unlogged = 0;
    }
}

void s2_batcher_opts_from_config(const struct s2_config *cfg, struct s2_batcher_opts *out)
{
    memset(out, 0, sizeof *out);
    out->linger_ms = cfg->linger_ms;
    out->max_records = cfg->max_records ? cfg->max_records : 50;
    out->queue_records = cfg->queue_records;
}

int s2_batcher_add(struct s2_batcher *b, const void *body, size_t len)
{
    if (b == NULL || (body == NULL && len > 0))
        return -EINVAL;
    if (s2_metered_size(len) > BATCH_MAX_METERED) {
        count_drop(b, &b->stats.dropped_large, "record over 1 MiB metered");
        return -EMSGSIZE;
    }
    if (b->waiting_n >= b->opts.queue_records || len > b->opts.queue_bytes - b->waiting_bytes) {
        count_drop(b, &b->stats.dropped_full, "queue full");
        return -ENOSPC;
    }
    struct rec *r = rec_get(b, len);
    if (r == NULL) {
        count_drop(b, &b->stats.dropped_full, "out of memory");
        return -ENOMEM;
    }
    r->next = NULL;
    r->len = len;
    r->enq_ms = now_ms();
    if (len > 0)
        memcpy(r->data, body, len);
    if (b->last != NULL)
        b->last->next = r;
    else
        b->head = r;
    b->last = r;
    if (b->wait_head == NULL)
        b->wait_head = r;
    b->waiting_n++;
    b->waiting_bytes += len;
    b->waiting_metered += s2_metered_size(len);
    b->stats.added++;
    if (b->state != B_IDLE)
        return 0;
    /* Only the first waiting record or a full batch changes what is due. */
    if (b->waiting_n == 1 || b->waiting_n >= b->opts.max_records ||
        b->waiting_metered >= BATCH_MAX_METERED)
        maybe_send(b);
    return 0;
}

int s2_batcher_flush(struct s2_batcher *b, uint64_t deadline_ms,
                     void (*done)(int flushed, void *arg), void *arg)
{
    if (b == NULL)
        return -EINVAL;
    if (b->flushing)
        return -EALREADY;
    b->flushing = 1;
    b->flush_done = done;
    b->flush_arg = arg;
    /* With nothing pending the timer reports success on the next turn. */
    timer_in(b->flush_timer, pending(b) == 0 ? 0 : deadline_ms);
    maybe_send(b);
    return 0;
}

void s2_batcher_get_stats(const struct s2_batcher *b, struct s2_batcher_stats *out)
{
    *out = b->stats;
    out->pending = pending(b);
}

void s2_batcher_free(struct s2_batcher *b)
{
    if (b == NULL)
        return;
    uint64_t lost = pending(b);
    if (lost > 0)
        blog(b, 3, "s2 batcher: %" PRIu64 " record(s) not appended, lost at shutdown", lost);
    s2_request_cancel(b->req);
    rec_list_free(b->head);
    rec_list_free(b->pool);
    if (b->linger_timer != NULL)
        event_free(b->linger_timer);
    if (b->retry_timer != NULL)
        event_free(b->retry_timer);
    if (b->flush_timer != NULL)
        event_free(b->flush_timer);
    free(b->batch);
    free(b->stream);
    free(b);
}
