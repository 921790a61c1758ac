/*
 * s2/client.h - asynchronous S2 REST data-plane client (append, unary read,
 * check-tail, ensure stream) on an s2_loop.
 *
 * Every request completes through its callback, exactly once, on the loop
 * thread, never from inside the call that started it, unless it is
 * cancelled first. In a callback, err is NULL on success (and the payload
 * is set); on failure err is set and the payload is NULL. Both are owned by
 * the client and valid only during the callback. Requests carry S2-Basin,
 * Authorization: Bearer, S2-Format: base64; stream names are
 * percent-encoded; u64 positions are exact. Retryable failures (408, 429,
 * 5xx, connection errors) are retried with capped exponential backoff and
 * jitter, honouring retry-after-ms and Retry-After, within the request's
 * attempt budget (s2_config max_attempts; each attempt is bounded by
 * request_timeout_ms, connection by connect_timeout_ms). Appends are retried
 * only when that cannot duplicate data (unless retry_unsafe): see
 * s2/batcher.h for exactly-once appends. A plain append without
 * match_seq_num is at-least-once, as with the official SDKs.
 */
#ifndef S2_CLIENT_H
#define S2_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "s2/config.h"

struct event_base;
struct s2_loop;
struct s2_client;
struct s2_request;

/* What went wrong, in a form the caller can act on. */
enum s2_error_kind {
    S2_OK = 0,
    S2_ERR_TRANSPORT,    /* could not connect / connection dropped */
    S2_ERR_TIMEOUT,      /* request or connect timeout */
    S2_ERR_HTTP,         /* error status with an S2 error body (code/message) */
    S2_ERR_PRECONDITION, /* 412: seq_num or fencing token mismatch */
    S2_ERR_UNWRITTEN,    /* 416: read at or past the tail ("caught up") */
    S2_ERR_PROTOCOL,     /* unparseable or unexpected response */
    S2_ERR_CANCELLED,
};

struct s2_position {
    uint64_t seq_num;
    uint64_t timestamp; /* ms */
};

struct s2_error {
    enum s2_error_kind kind;
    int http_status;   /* 0 when no response */
    char code[40];     /* S2 error code ("rate_limited"...), "" if none */
    char message[256]; /* human text; never contains the token */
    int retryable;     /* the status/code is retryable per S2 */
    int has_tail;      /* 412 seq_num_mismatch (timestamp 0: not reported) or
                          416: tail is set */
    struct s2_position tail;
    int fencing_mismatch;    /* 412 fencing_token_mismatch */
    uint32_t attempts;       /* attempts made, retries included */
    uint64_t retry_after_ms; /* server's retry-after-ms / Retry-After, 0 if none */
};

/* A record as returned by a read. body is raw (decoded) bytes. */
struct s2_record {
    uint64_t seq_num;
    uint64_t timestamp;
    const uint8_t *body; /* borrowed from the batch */
    size_t body_len;
    size_t header_count; /* headers are parsed but not exposed */
    int is_command;      /* exactly one header with an empty name */
};

/* A read batch. Owned by the client; valid only during the callback. */
struct s2_read_batch {
    const struct s2_record *records;
    size_t count;
    int has_tail; /* S2 reported the tail with this read */
    struct s2_position tail;
};

struct s2_append_ack {
    struct s2_position start, end, tail;
    uint32_t attempts; /* attempts made, retries included */
};

struct s2_read_opts {
    /* start: exactly one of these, or none = tail_offset 0 */
    int has_seq_num, has_timestamp, has_tail_offset;
    uint64_t seq_num, timestamp, tail_offset;
    int has_count, has_bytes, has_until;
    uint64_t count, bytes, until; /* until: exclusive, ms */
    int clamp;
    uint32_t wait_s; /* long poll, 0..60 */
};

/* Records to append: borrowed for the duration of the call (copied). */
struct s2_append_record {
    const void *body;
    size_t len;
};

typedef void (*s2_append_cb)(const struct s2_error *err, const struct s2_append_ack *ack,
                             void *arg);
typedef void (*s2_read_cb)(const struct s2_error *err, const struct s2_read_batch *batch,
                           void *arg);
typedef void (*s2_tail_cb)(const struct s2_error *err, const struct s2_position *tail, void *arg);
typedef void (*s2_done_cb)(const struct s2_error *err, void *arg);

/* Log sink; messages never contain the token. level: 0 debug .. 3 error. */
typedef void (*s2_log_fn)(int level, const char *msg, void *arg);

/* Create a client. cfg is copied (basin and basin_endpoint required, else
 * -EINVAL; no access_token = no Authorization header); loop is borrowed and
 * must outlive it. */
int s2_client_new(struct s2_loop *loop, const struct s2_config *cfg, s2_log_fn log, void *log_arg,
                  struct s2_client **out);

/* Cancel every request (no callbacks) and free. NULL is a no-op. May be
 * called from inside a request callback. */
void s2_client_free(struct s2_client *client);

/* Append records (1..1000, <= 1 MiB metered) to stream. match_seq_num may be
 * NULL. retry_unsafe: also retry after ambiguous failures (only safe when
 * match_seq_num is set). *req_out (may be NULL) can cancel it. */
int s2_client_append(struct s2_client *client, const char *stream,
                     const struct s2_append_record *records, size_t n,
                     const uint64_t *match_seq_num, int retry_unsafe, s2_append_cb cb, void *arg,
                     struct s2_request **req_out);

/* One unary read. A 416 completes with kind S2_ERR_UNWRITTEN and the tail. */
int s2_client_read(struct s2_client *client, const char *stream, const struct s2_read_opts *opts,
                   s2_read_cb cb, void *arg, struct s2_request **req_out);

/* GET .../records/tail. */
int s2_client_check_tail(struct s2_client *client, const char *stream, s2_tail_cb cb, void *arg,
                         struct s2_request **req_out);

/* Create the stream if missing (PUT /v1/streams/{s}; idempotent). */
int s2_client_ensure_stream(struct s2_client *client, const char *stream, s2_done_cb cb, void *arg,
                            struct s2_request **req_out);

/* Cancel a request: its callback will not run. req is valid until its
 * callback returns; cancelling from inside its own callback is a no-op. */
void s2_request_cancel(struct s2_request *req);

/* The loop the client runs on (borrowed); NULL for an in-process client. */
struct s2_loop *s2_client_loop(const struct s2_client *client);

/* Metered size of a record with no headers: 8 + len. */
static inline size_t s2_metered_size(size_t body_len)
{
    return 8 + body_len;
}

/* ---- In-process transport ----
 *
 * A data plane in the same process (an embedded s2-local: see
 * s2_client_new_local in s2/local.h) serves the client without HTTP, JSON
 * or base64. Each op runs synchronously on the loop thread and returns 0,
 * or a negative errno with err filled as the HTTP API would answer:
 * http_status, code ("" for 412/416), message (the server's text; for a
 * fencing mismatch the current token), has_tail and tail (412
 * seq_num_mismatch, 416), fencing_mismatch. The client sets kind,
 * retryable, attempts and its own message. */
struct s2_inproc_ops {
    int (*append)(void *ctx, const char *stream, const struct s2_append_record *records, size_t n,
                  const uint64_t *match_seq_num, struct s2_append_ack *ack, struct s2_error *err);
    /* emit is called for each record in order (its body valid only during
     * the call; a negative return aborts the read), then *tail is set. */
    int (*read)(void *ctx, const char *stream, const struct s2_read_opts *opts,
                int (*emit)(const struct s2_record *rec, void *sink), void *sink,
                struct s2_position *tail, struct s2_error *err);
    int (*check_tail)(void *ctx, const char *stream, struct s2_position *tail,
                      struct s2_error *err);
    int (*ensure_stream)(void *ctx, const char *stream,
                         struct s2_error *err); /* Called once by s2_client_free (or when creation
                                                   fails); may be NULL. */
    void (*release)(void *ctx);
};

/* Create a client served by ops (borrowed; must outlive it) and ctx (handed
 * to ops->release when the client is freed) on base (borrowed). The requests and callbacks are
 * those of an HTTP client: the op runs when the request is made, its callback on a later loop turn
 * (never inside the call), cancel suppresses it. Differences: one attempt (no retries: the failure
 * is the server's answer), and a read with wait_s > 0 is refused (-ENOTSUP). A read batch's bodies
 * live in a buffer owned by the request for the callback's duration. cfg: basin required
 * (-EINVAL), the rest unused. */
int s2_client_new_inproc(struct event_base *base, const struct s2_inproc_ops *ops, void *ctx,
                         const struct s2_config *cfg, s2_log_fn log, void *log_arg,
                         struct s2_client **out);

/* The event_base the client runs on (borrowed), for both kinds of client. */
struct event_base *s2_client_base(const struct s2_client *client);

#endif /* S2_CLIENT_H */
