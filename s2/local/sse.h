/*
 * sse.h - s2-local's read sessions: a read answered as Server-Sent Events
 * (GET /v1/streams/{s}/records with Accept: text/event-stream).
 *
 * The HTTP layer validates the request, applies Last-Event-ID, answers the
 * errors found before streaming (JSON) and then hands the request over to
 * s2l_sse_start. A session then sends, on the request's connection:
 *   event: batch   id: <last seq_num>,<records so far>,<metered bytes so far>
 *                  data: {"records":[...],"tail":{...}}  (<= 1000 records, <= 1 MiB)
 *   event: ping    data: {"timestamp":<ms>,"tail":{...}} when it reaches the tail,
 *                  then after every heartbeat interval without output while it waits there
 *   event: error   data: {"code","message"}, then the response ends
 *   data: [DONE]   when a bound (count, bytes, until, or wait idle seconds) ends it,
 *                  or it reaches the tail with a bound and no wait
 * Without count, bytes and until a session follows the stream: appends wake it.
 *
 * Bounded: reading stops while the connection's unsent output is over
 * S2L_SSE_PENDING_MAX and resumes when it has drained; each callback reads
 * at most one batch, so a long catch-up never holds the loop. A client that
 * disconnects is freed from the connection's close callback. Everything
 * runs on the loop of the hub.
 */
#ifndef S2L_SSE_H
#define S2L_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "records.h"
#include "s2/local.h"

struct event_base;
struct evhttp_request;
struct s2l_stream;
struct s2l_sse_hub;

#define S2L_DEFAULT_MAX_SSE_SESSIONS 1024
/* Unsent output of one session above which it stops reading ahead. */
#define S2L_SSE_PENDING_MAX ((size_t)256 << 10)
/* One batch: at most this many records and metered bytes. */
#define S2L_SSE_BATCH_RECORDS 1000
#define S2L_SSE_BATCH_BYTES ((uint64_t)1 << 20)

struct s2l_sse_hub_opts {
    uint32_t max_sessions; /* 0 = S2L_DEFAULT_MAX_SSE_SESSIONS */
    uint32_t heartbeat_ms; /* 0 = random 5 to 15 s for each ping */
};

/* Where a session starts and what still bounds it. */
struct s2l_sse_params {
    struct s2l_stream *st; /* borrowed: streams live as long as the store */
    uint64_t start;        /* first seq_num to read */
    enum s2l_fmt fmt;
    bool has_count, has_bytes, has_until;
    uint64_t count, bytes; /* remaining (Last-Event-ID already subtracted) */
    uint64_t until;        /* exclusive timestamp bound */
    uint32_t wait_s;       /* idle seconds before a session ends; 0 = none */
    uint64_t sent_count;   /* delivered before (Last-Event-ID): ids continue from it */
    uint64_t sent_bytes;
};

/* A set of sessions on base (borrowed). *out is owned by the caller
 * (s2l_sse_hub_free). Returns 0 or -ENOMEM. */
int s2l_sse_hub_new(struct event_base *base, const struct s2l_sse_hub_opts *opts, s2l_log_fn log,
                    void *log_arg, struct s2l_sse_hub **out);

/* true when another session would pass max_sessions. */
bool s2l_sse_hub_full(const struct s2l_sse_hub *hub);

/* Open sessions. */
uint32_t s2l_sse_hub_sessions(const struct s2l_sse_hub *hub);

/* The most unsent output a session had right after queuing a batch (it
 * shows the pending-output bound at work; for tests). */
size_t s2l_sse_hub_peak_output(const struct s2l_sse_hub *hub);

/* Answer req 200 text/event-stream and run a session per p. On 0 the hub
 * owns req until the session ends; on error (-ENOMEM) nothing was sent and
 * the caller still has to answer req. */
int s2l_sse_start(struct s2l_sse_hub *hub, struct evhttp_request *req,
                  const struct s2l_sse_params *p);

/* Records were appended to st: wake the sessions waiting at its tail. */
void s2l_sse_wake(struct s2l_sse_hub *hub, const struct s2l_stream *st);

/* End every session with an error event server_draining (the events are
 * queued on the connections; run the loop a little so they go out). */
void s2l_sse_drain(struct s2l_sse_hub *hub);

/* Drain, then free the hub. NULL is a no-op. */
void s2l_sse_hub_free(struct s2l_sse_hub *hub);

#endif /* S2L_SSE_H */
