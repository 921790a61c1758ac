/*
 * server.h - internals of s2-local's HTTP layer that its tests reach.
 *
 * The server itself is public in s2/local.h. Routes (paths are
 * percent-decoded; S2-Basin is required on /v1/streams*):
 *   GET  /health, /ping                      200 "OK"
 *   GET  /v1/basins   POST /v1/basins        list, create (201, 409)
 *   GET|PUT /v1/basins/{b}                   config, ensure (s2-provision-result)
 *   GET  /v1/streams  POST /v1/streams       list, create (201, 409)
 *   GET|PUT /v1/streams/{s}                  config, ensure (s2-provision-result)
 *   POST /v1/streams/{s}/records             append (JSON; S2-Format raw|json|base64|json-binsafe)
 *   GET  /v1/streams/{s}/records             unary read (seq_num|timestamp|tail_offset, count,
 *                                            bytes, until, clamp, wait <= 60 s); with
 *                                            Accept: text/event-stream a read session
 *                                            (sse.h; Last-Event-ID resumes)
 *   GET  /v1/streams/{s}/records/tail        check-tail
 *
 * Basins: with s2l_opts.basin set, that basin is created at start and other
 * basins must be created through /v1/basins; with it NULL any valid basin
 * named by S2-Basin is created on first use. Basins default to
 * create_stream_on_append and create_stream_on_read on (S2's default is
 * off): appends, reads and check-tails create missing streams.
 *
 * Reads: a 200 always carries "tail" (S2 sends it only sometimes; clients
 * must cope either way). A long-poll timeout answers 200 {"records":[],
 * "tail":...}. Open long polls are bounded by max_long_polls; beyond it a
 * read with wait answers 429 rate_limited. Freeing the server answers open
 * long polls 503 server_draining.
 *
 * Read sessions: the same query without the 1000-record / 1 MiB caps; the
 * errors found before streaming (400, 404, 416, 422, 429 beyond
 * max_read_sessions, 503 when draining) are JSON replies.
 */
#ifndef S2L_SERVER_H
#define S2L_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "records.h"

/* Largest request body accepted (evhttp answers 413 beyond it). */
#define S2L_MAX_BODY ((size_t)5 << 19) /* 2.5 MiB */
#define S2L_MAX_WAIT_S 60
#define S2L_READ_MAX_RECORDS 1000
#define S2L_READ_MAX_BYTES ((uint64_t)1 << 20)
#define S2L_APPEND_MAX_RECORDS 1000
#define S2L_APPEND_MAX_BYTES ((uint64_t)1 << 20)
#define S2L_DEFAULT_MAX_LONG_POLLS 1024

struct s2l_server;

/* For tests, on the server's loop thread: open read sessions, and the most
 * unsent output one of them had after queuing a batch (sse.h). */
void s2l_server_sse_stats(const struct s2l_server *srv, uint32_t *sessions, size_t *peak_output);

#endif /* S2L_SERVER_H */
