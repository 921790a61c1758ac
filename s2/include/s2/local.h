/*
 * s2/local.h - s2-local: a durable S2-compatible server on libevent.
 *
 * Speaks S2's REST data plane (basins, streams, append, unary read, read
 * sessions as Server-Sent Events, check-tail, /health) and keeps streams on local disk, or in
 * memory when no data directory is given. Usable standalone (the s2-local executable), embedded in
 * the agent on a loopback port it picks, and in-memory in tests.
 */
#ifndef S2_LOCAL_H
#define S2_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include "s2/client.h"

struct event_base;
struct s2l_server;

enum s2l_fsync {
    S2L_FSYNC_NONE = 0,  /* write(2) before ack; the OS flushes (survives kill -9) */
    S2L_FSYNC_BATCH = 1, /* fdatasync once per append before ack (survives power loss) */
};

struct s2l_opts {
    const char *listen_addr; /* default "127.0.0.1" */
    uint16_t port;           /* 0 = pick a free port */
    const char *data_dir;    /* NULL = in memory */
    const char *basin;       /* basin to serve/create; NULL = any valid basin */
    enum s2l_fsync fsync;
    uint32_t max_long_polls; /* bound on open wait= reads; 0 = 1024 */
    /* Read sessions (SSE): bound on open sessions (0 = 1024), and the
     * interval of their heartbeats while they wait at the tail (0 = a
     * random 5 to 15 s per ping; tests set a short one). */
    uint32_t max_read_sessions;
    uint32_t heartbeat_ms;
};

/* Log sink (level 0 debug .. 3 error). */
typedef void (*s2l_log_fn)(int level, const char *msg, void *arg);

/* Open the store (recovering it) and start listening on base (borrowed). */
int s2l_server_new(struct event_base *base, const struct s2l_opts *opts, s2l_log_fn log,
                   void *log_arg, struct s2l_server **out);

/* The port actually bound. */
uint16_t s2l_server_port(const struct s2l_server *srv);

/* Begin a graceful stop: stop accepting connections, answer open long
 * polls (and any later wait= read or session) 503 server_draining, and end
 * open read sessions with an error event server_draining. Run the loop a
 * little afterwards (e.g. 100 ms) so the answers go out, then call
 * s2l_server_free. Optional: s2l_server_free drains too, but its answers
 * cannot reach the clients. */
void s2l_server_drain(struct s2l_server *srv);

/* Stop listening, answer open long polls, end read sessions, close the
 * store, free. */
void s2l_server_free(struct s2l_server *srv);

/* ---- In-process data plane ----
 *
 * The same appends, reads and check-tails as the HTTP API (same validation,
 * timestamp rules, 412/416 answers, stream auto-creation, and wake-ups of
 * open long polls and read sessions), called directly on the loop thread:
 * no HTTP, JSON or base64. basin NULL = the configured basin (-EINVAL when
 * the server has none). Each returns 0, or a negative errno with *err
 * holding the S2 error the HTTP API would answer (status, code, message,
 * and for 412 seq_num_mismatch and 416 the tail). */

struct s2l_pos {
    uint64_t seq_num;
    uint64_t timestamp; /* ms */
};

struct s2l_err {
    int status;    /* HTTP status the REST API would answer */
    char code[40]; /* S2 error code; "" for 412/416 */
    char message[256];
    int has_tail; /* 412 seq_num_mismatch, 416 */
    struct s2l_pos tail;
};

/* A record to append (no headers); bytes borrowed for the call. */
struct s2l_append_rec {
    const void *body;
    size_t len;
    int has_timestamp;
    uint64_t timestamp;
};

struct s2l_append_ack {
    struct s2l_pos start, end, tail;
};

/* Append 1..1000 records (<= 1 MiB metered) to stream; match_seq_num may
 * be NULL. */
int s2l_append(struct s2l_server *srv, const char *basin, const char *stream,
               const struct s2l_append_rec *recs, size_t n, const uint64_t *match_seq_num,
               struct s2l_append_ack *ack, struct s2l_err *err);

/* A unary read's query, as GET .../records takes it (no wait: an
 * in-process read never blocks; at the tail it is a 416). */
struct s2l_read_query {
    int has_seq_num, has_timestamp, has_tail_offset; /* at most one; none = tail_offset 0 */
    uint64_t seq_num, timestamp, tail_offset;
    int has_count, has_bytes, has_until;
    uint64_t count, bytes, until; /* capped at 1000 records, 1 MiB */
    int clamp;
};

/* A record handed to a read's callback; pointers valid only during it. */
struct s2l_record {
    uint64_t seq_num;
    uint64_t timestamp;
    const uint8_t *body;
    size_t body_len;
    size_t header_count;
    int is_command; /* exactly one header, with an empty name */
};

/* Read callback: return 0 to continue, or a negative errno to abort the
 * read with it. */
typedef int (*s2l_record_fn)(const struct s2l_record *rec, void *arg);

/* Call fn for each record of the read, in order, then set *tail. */
int s2l_read(struct s2l_server *srv, const char *basin, const char *stream,
             const struct s2l_read_query *q, s2l_record_fn fn, void *arg, struct s2l_pos *tail,
             struct s2l_err *err);

/* The stream's tail (creating the stream when the basin says so). */
int s2l_check_tail(struct s2l_server *srv, const char *basin, const char *stream,
                   struct s2l_pos *tail, struct s2l_err *err);

/* Create the stream with the defaults if missing (idempotent). */
int s2l_ensure_stream(struct s2l_server *srv, const char *basin, const char *stream,
                      struct s2l_err *err);

/* An s2_client (s2/client.h) served by srv in this process: the in-process
 * data plane above, no HTTP, JSON or base64, and no s2_loop. Requests go
 * to basin cfg->basin (required); the rest of cfg is unused. Callbacks run
 * on base, on a later loop turn, as with an HTTP client; see
 * s2_client_new_inproc for the differences. srv is borrowed and must
 * outlive the client. Free with s2_client_free. */
int s2_client_new_local(struct event_base *base, struct s2l_server *srv,
                        const struct s2_config *cfg, s2_log_fn log, void *log_arg,
                        struct s2_client **out);

#endif /* S2_LOCAL_H */
