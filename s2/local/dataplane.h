/*
 * dataplane.h - s2-local's data-plane rules, shared by the HTTP API
 * (server.c) and the in-process API (s2/local.h, inproc.c) so that the two
 * cannot diverge: record validation, fencing and match_seq_num, timestamp
 * assignment, the start of a read and its 416 rule, stream lookup.
 */
#ifndef S2L_DATAPLANE_H
#define S2L_DATAPLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s2/local.h"
#include "store.h"

/* One record of an append; the bytes are borrowed. */
struct s2l_dp_rec {
    bool has_ts;
    uint64_t ts;
    size_t nheaders;
    const struct s2l_hdr *headers;
    const uint8_t *body;
    size_t body_len;
};

/* Conditions of an append. fence: NUL-terminated, or NULL for none. */
struct s2l_dp_cond {
    const char *fence;
    bool has_match;
    uint64_t match;
};

/* Fill err (status, code, message) and return rc. */
int s2l_dp_fail(struct s2l_err *err, int rc, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* A store errno as the API answers it (503 when out of space, else 500
 * "storage"); returns rc. */
int s2l_dp_fail_errno(struct s2l_err *err, int rc, const char *what);

/* Find (or, with create, create) a stream: 0, or -ENOENT (404
 * stream_not_found) or a store errno, with err set. */
int s2l_dp_stream(struct s2l_basin *b, const uint8_t *name, size_t len, bool create,
                  struct s2l_stream **out, struct s2l_err *err);

/* Validate recs (1..1000, metered sizes, commands, header names), check the
 * fencing token then match_seq_num, assign timestamps per the stream's
 * config and append. 0 with *ack set; else a negative errno with err set:
 * -EINVAL 422, -ESTALE 412 (seq_num_mismatch: err has the tail; a fencing
 * mismatch has code "fencing_token_mismatch"), or a store error. */
int s2l_dp_append(struct s2l_stream *st, const struct s2l_dp_rec *recs, size_t n,
                  const struct s2l_dp_cond *cond, struct s2l_append_ack *ack, struct s2l_err *err);

/* The first seq_num of a read (clamped, past the trim point). can_follow:
 * the read may wait at the tail (else starting at the tail is a 416).
 * 0, -EINVAL 422, -ERANGE 416 (err has the tail), or a store error. */
int s2l_dp_read_start(struct s2l_stream *st, const struct s2l_read_query *q, bool can_follow,
                      uint64_t *start, struct s2l_err *err);

/* Internals of server.c used by the in-process API. */

/* The basin named name (NULL = the configured one), created on first use
 * when the server serves any basin. 0, -EINVAL, -ENOENT (404) or a store
 * error, with err set. */
int s2l_server_basin(struct s2l_server *srv, const char *name, struct s2l_basin **out,
                     struct s2l_err *err);

/* Records were appended to st: answer its long polls, wake its sessions. */
void s2l_server_appended(struct s2l_server *srv, struct s2l_stream *st);

#endif /* S2L_DATAPLANE_H */
