/*
 * s2/reader.h - one bounded read of a stream, with exact has_more.
 *
 * A page read: from a position or a timestamp, bounded by count, bytes and
 * until. It returns the records, the position after the last one and
 * whether records remain before the tail (within until). A 416 is "caught
 * up", not an error. When S2 does not report the tail with a read, the
 * reader asks for it (check-tail) rather than guess.
 */
#ifndef S2_READER_H
#define S2_READER_H

#include "s2/client.h"

struct s2_reader_req;

struct s2_page_opts {
    int has_seq_num, has_timestamp; /* at most one; neither = from seq_num 0 */
    uint64_t seq_num, timestamp;
    uint64_t count; /* 1..1000 */
    uint64_t bytes; /* 0 = 1 MiB */
    int has_until;
    uint64_t until;
    int skip_commands; /* drop command records from the page */
};

/* The result of one page read. Owned by the reader; the page, its records
 * and their bodies are valid only during the callback. */
struct s2_page {
    const struct s2_record *records;
    size_t count;
    uint64_t next_seq_num;   /* position after the last record read (or the start;
                                when caught up from a timestamp: the tail) */
    int has_more;            /* records remain before the tail within until */
    struct s2_position tail; /* the stream's tail as last seen */
};

/* err is NULL on success (page set); on failure page is NULL. A 416 is a
 * success: an empty page with has_more = 0. */
typedef void (*s2_page_cb)(const struct s2_error *err, const struct s2_page *page, void *arg);

/* Start a page read. *req_out (may be NULL) lets the caller cancel it. */
int s2_reader_read(struct s2_client *client, const char *stream, const struct s2_page_opts *opts,
                   s2_page_cb cb, void *arg, struct s2_reader_req **req_out);

/* Cancel: the callback will not run. req is valid until its callback
 * returns; cancelling from inside the callback is a no-op. */
void s2_reader_cancel(struct s2_reader_req *req);

#endif /* S2_READER_H */
