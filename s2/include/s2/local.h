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

#include <stdint.h>

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

#endif /* S2_LOCAL_H */
