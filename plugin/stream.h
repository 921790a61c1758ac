/*
 * stream.h - GET /telemetry/stream: the live Server-Sent Events stream
 * (telemetry-api.md section 5).
 *
 * Each client is a cursor into the bus ring. Frames are written only while
 * the connection's pending output is under max_pending; a client that does
 * not read stops receiving, keeps its cursor and, once the ring has moved
 * past it, resumes with a gap in ids. Writing resumes when its output has
 * drained. A keep-alive comment ":\n\n" goes out after keepalive_ms without
 * a write. A client that goes away is freed at once; shutdown ends every
 * stream with a final chunk.
 */
#ifndef TEL_STREAM_H
#define TEL_STREAM_H

#include <stddef.h>
#include <stdint.h>

struct agent_host_api;
struct evhttp_request;
struct tel_bus;
struct tel_stream;

#define TEL_STREAM_DEFAULT_KEEPALIVE_MS 15000
#define TEL_STREAM_DEFAULT_MAX_PENDING (256 * 1024)

struct tel_stream_opts {
    const struct agent_host_api *api; /* borrowed */
    struct tel_bus *bus;              /* borrowed */
    uint64_t keepalive_ms;            /* 0 = default */
    size_t max_pending;               /* 0 = default */
};

int tel_stream_new(const struct tel_stream_opts *opts, struct tel_stream **out);

/* Route handler for GET /telemetry/stream; arg is the struct tel_stream. */
void tel_stream_handle(struct evhttp_request *req, void *arg);

/* End every open stream cleanly (final chunk) and refuse nothing else:
 * the host stops routing before it calls shutdown. */
void tel_stream_shutdown(struct tel_stream *s);

/* Free; ends open streams first if shutdown was not called. NULL is a no-op. */
void tel_stream_free(struct tel_stream *s);

/* Open streams. */
size_t tel_stream_clients(const struct tel_stream *s);

/* The reader start of the reference (resolveStartSeq): the seq to resume
 * after (0 = from the oldest retained). last_event_id and replay may be
 * NULL. A Last-Event-ID that is a positive integer wins; one that is
 * unparseable, 0 or negative means "from now" (current); else replay=all
 * means 0; else current. */
uint64_t tel_stream_start_after(const char *last_event_id, const char *replay, uint64_t current);

#endif /* TEL_STREAM_H */
