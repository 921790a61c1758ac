/*
 * s2/batcher.h - ordered, exactly-once appends of a record stream.
 *
 * Records go out in the order they were added. A batch leaves at linger
 * (from its first record), at max_records, or at 1 MiB metered bytes. One
 * append is in flight at a time. Appends carry match_seq_num; after an
 * ambiguous failure (timeout, 5xx, dropped connection) a 412 whose tail
 * shows the batch already landed counts as success. Adding never blocks and
 * never waits on S2: the queue is bounded and what does not fit is counted
 * and logged.
 */
#ifndef S2_BATCHER_H
#define S2_BATCHER_H

#include <stddef.h>
#include <stdint.h>

#include "s2/client.h"

struct s2_batcher;

struct s2_batcher_opts {
    uint64_t linger_ms;     /* 0 = send at once */
    uint32_t max_records;   /* 1..1000 */
    uint32_t queue_records; /* bound on records waiting (not in flight) */
    size_t queue_bytes;     /* bound on bytes waiting; 0 = 64 MiB */
    /* Batcher-level retries (appends, ensure, check-tail) go on forever with
     * delay in [b/2, b], b = min(retry_base_ms * 2^n, retry_max_ms). */
    uint64_t retry_base_ms; /* 0 = 100 */
    uint64_t retry_max_ms;  /* 0 = 5000 */
};

struct s2_batcher_stats {
    uint64_t added;            /* accepted by s2_batcher_add */
    uint64_t appended;         /* acknowledged by S2 */
    uint64_t dropped_full;     /* refused: queue full */
    uint64_t dropped_large;    /* refused: record over 1 MiB metered */
    uint64_t retries;          /* append attempts beyond the first */
    uint64_t batches;          /* acknowledged appends */
    uint64_t pending;          /* waiting + in flight */
    uint64_t dropped_rejected; /* refused by S2 for good (400/422); logged */
};

/* Options from S2_BATCHER_* (linger, max records, queue records); the
 * rest defaults. */
void s2_batcher_opts_from_config(const struct s2_config *cfg, struct s2_batcher_opts *out);

/* Create a batcher appending to stream through client (borrowed, must
 * outlive the batcher). It starts at once: learns the stream's tail (check-tail),
 * creating the stream first when it is missing (404: PUT, idempotent; an
 * existing stream is never reconfigured); the first append waits for that. Appends use
 * match_seq_num; after a 412 whose tail leaves room for the batch, the batcher reads the range back
 * and counts the batch as appended when it is there, so retries neither duplicate nor lose. */
int s2_batcher_new(struct s2_client *client, const char *stream, const struct s2_batcher_opts *opts,
                   s2_log_fn log, void *log_arg, struct s2_batcher **out);

/* Queue one record (copied). Returns 0, -ENOSPC (queue full; counted and
 * logged), -EMSGSIZE (over 1 MiB metered; counted and logged). */
int s2_batcher_add(struct s2_batcher *b, const void *body, size_t len);

/* Send everything pending now and call done(flushed, arg) once all of it is
 * acknowledged (flushed = 1) or deadline_ms passed (flushed = 0). done runs
 * on the loop, never from inside this call, and may free the batcher.
 * Returns 0, -EALREADY (a flush is running). */
int s2_batcher_flush(struct s2_batcher *b, uint64_t deadline_ms,
                     void (*done)(int flushed, void *arg), void *arg);

void s2_batcher_get_stats(const struct s2_batcher *b, struct s2_batcher_stats *out);

/* Stop and free; whatever is still pending is counted lost and logged.
 * May be called from the flush callback. NULL is a no-op. */
void s2_batcher_free(struct s2_batcher *b);

#endif /* S2_BATCHER_H */
