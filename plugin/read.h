/*
 * read.h - GET /telemetry/events: archived telemetry, page by page.
 *
 * Reads envelopes archived in S2 (s2/reader.h), one bounded page per
 * request, with X-Has-More / X-Next-Offset / Link paging. Side-effect-free.
 */
#ifndef TEL_READ_H
#define TEL_READ_H

#include <stddef.h>
#include <stdint.h>

#include "openapi.h"

struct evbuffer;
struct evhttp_request;
struct agent_host_api;
struct s2_client;
struct s2_record;
struct tel_read;

struct tel_read_opts {
    const struct agent_host_api *api; /* borrowed */
    struct s2_client *client;         /* borrowed; NULL = archive off */
    const char *stream;               /* copied; NULL when archive off */
};

/* Create the route state. Returns 0, -ENOMEM. */
int tel_read_new(const struct tel_read_opts *opts, struct tel_read **out);

/* Route handler for GET /telemetry/events; arg is the struct tel_read. */
void tel_read_handle(struct evhttp_request *req, void *arg);

/* Answer every pending request (503) and cancel its S2 reads. */
void tel_read_shutdown(struct tel_read *r);

/* Free; call after tel_read_shutdown. NULL is a no-op. */
void tel_read_free(struct tel_read *r);

/* Archived records skipped so far because they were not envelopes. */
uint64_t tel_read_invalid_total(const struct tel_read *r);

/*
 * The page logic, pure and exposed for unit tests.
 */

/* Check that an archived record body is exactly one strict JSON object
 * (RFC 8259, UTF-8) with a non-negative integer "seq" and an "event" object
 * with a string "category". On success *category_bit is its TELEMETRY_CAT_*
 * bit (0 for a category name this build does not know) and *seq its seq.
 * Returns 0 or -EINVAL. */
int tel_read_envelope_check(const void *body, size_t len, uint64_t *seq, uint32_t *category_bit);

/* One page being assembled across S2 reads. Zero it, set the inputs, then
 * feed it the reads in order. */
struct tel_scan {
    /* inputs */
    uint32_t limit;       /* 1..1000 envelopes */
    uint32_t categories;  /* TELEMETRY_CAT_* filter; 0 = all */
    size_t max_bytes;     /* cap on the page's envelope bytes (>= 1 envelope) */
    struct evbuffer *out; /* borrowed: envelopes joined by ',' (no brackets) */
    /* results */
    size_t kept, scanned, invalid, filtered_out;
    size_t bytes;  /* envelope bytes in out */
    uint64_t next; /* the S2 position after what was scanned */
    int has_more;  /* records remain after next (within until) */
    int done;      /* the page is complete */
};

/* Feed one S2 read: the records, the reader's position after them and its
 * has_more. Keeps matching envelopes until the limit or the byte cap, skips
 * (and counts) records that are not envelopes. When it stops before the end
 * of the records, next is the first record not consumed and has_more is
 * true; otherwise next/has_more are the reader's. Sets done when the page is
 * full, nothing remains, or the read made no progress. Returns 0 or
 * -ENOMEM. */
int tel_scan_feed(struct tel_scan *s, const struct s2_record *recs, size_t n, uint64_t next_seq_num,
                  int has_more);

#endif /* TEL_READ_H */
