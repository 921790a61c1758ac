/*
 * support.h - helpers for Criterion tests that drive real processes over
 * loopback: free ports, child processes with captured output, blocking HTTP
 * requests (libcurl easy) and a Server-Sent Events client (libcurl multi).
 *
 * Conventions: functions return 0 or a negative errno and hand results
 * through out-parameters. Everything here is test code: it may block and
 * sleep, but every wait is bounded by a timeout given by the caller.
 */
#ifndef TS_SUPPORT_H
#define TS_SUPPORT_H

#include <stddef.h>

/* ---- environment ---------------------------------------------------- */

/* The value of the environment variable name (AGENT_BIN, TELEMETRY_PLUGIN,
 * S2LOCAL_BIN, FIXTURES_DIR, FIXTURE_PLUGIN_DIR, BUILD_ROOT, ...: set by
 * meson test()). Fails the running test with a clear message when it is unset
 * or empty. The result is borrowed from the environment. */
const char *ts_env(const char *name);

/* ---- ports ---------------------------------------------------------- */

/* A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read
 * it back, close). Another process may take it before it is used; callers
 * that can bind port 0 themselves should. Returns the port or -errno. */
int ts_free_port(void);

/* Poll-connect to 127.0.0.1:port until it accepts or timeout_ms passes.
 * Returns 0 or -ETIMEDOUT. */
int ts_wait_port(int port, int timeout_ms);

/* ---- processes ------------------------------------------------------ */

struct ts_proc;

/* Start argv[0] (searched in PATH when it has no '/') with argv, in the
 * inherited environment plus env ("KEY=VALUE" strings, NULL-terminated, may
 * be NULL; a key given here replaces the inherited one). stdout and stderr
 * both go to one unlinked temporary file (read it with ts_proc_log). The child
 * is killed with SIGKILL if the test process dies. On success *out is owned
 * by the caller (ts_proc_free). Returns 0, -ENOENT/-EACCES when argv[0]
 * cannot be executed, or another -errno. */
int ts_proc_start(const char *const argv[], const char *const env[], struct ts_proc **out);

/* The child's pid. */
int ts_proc_pid(const struct ts_proc *p);

/* Everything the child wrote so far (stdout and stderr interleaved), NUL
 * terminated, at most 8 MiB (the start). Owned by p: valid until the next
 * ts_proc_log or ts_proc_free on p. Never NULL. */
const char *ts_proc_log(struct ts_proc *p);

/* Poll the captured output until it contains needle or timeout_ms passes.
 * Returns 0, -ETIMEDOUT, or -ECHILD when the child exited without it. */
int ts_proc_wait_log(struct ts_proc *p, const char *needle, int timeout_ms);

/* Send signal sig to the child. Returns 0, -ESRCH when it was already
 * reaped, or -errno. */
int ts_proc_signal(struct ts_proc *p, int sig);

/* Wait up to timeout_ms for the child to exit. On 0, *exit_status is its
 * exit code, or 128 + the signal that killed it. Returns 0 or -ETIMEDOUT
 * (the child keeps running). Calling it again after the child was reaped
 * returns the same status. */
int ts_proc_wait(struct ts_proc *p, int timeout_ms, int *exit_status);

/* Kill the child with SIGKILL if it still runs, reap it, free p. NULL is a
 * no-op. */
void ts_proc_free(struct ts_proc *p);

/* Start the agent (AGENT_BIN) on a free port with the extra environment env
 * and extra arguments args (both NULL-terminated, may be NULL), and wait up
 * to 15 s for it to accept. On success *out (caller-owned, ts_proc_free) and
 * *port are set. On failure the agent's output is logged with cr_log_error,
 * the child is killed, and -ECHILD (it exited) or -ETIMEDOUT is returned. */
int ts_agent_start(const char *const args[], const char *const env[], struct ts_proc **out,
                   int *port);

/* ---- HTTP (blocking) ------------------------------------------------ */

/* A complete HTTP response. */
struct ts_resp {
    long status;     /* HTTP status code */
    char *body;      /* NUL-terminated (may contain NULs before body_len) */
    size_t body_len; /* bytes in body, not counting the terminator */
    char **headers;  /* "Name: value" lines of the final response, no CRLF */
    size_t n_headers;
};

/* Send one request (method "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD",
 * ...) to url with body (body_len bytes, may be NULL) and extra headers
 * ("Name: value", NULL-terminated array, may be NULL). Waits at most 30 s.
 * On 0, *out holds the response; free it with ts_resp_free. On error
 * (connection refused, timeout, ...) returns -EIO and *out is zeroed. */
int ts_http(const char *method, const char *url, const char *body, size_t body_len,
            const char *const headers[], struct ts_resp *out);

/* The value of the last response header called name (case-insensitive),
 * leading blanks stripped; NULL when absent. Borrowed from r. */
const char *ts_resp_header(const struct ts_resp *r, const char *name);

/* Free what ts_http allocated in r and zero it. */
void ts_resp_free(struct ts_resp *r);

/* ---- Server-Sent Events --------------------------------------------- */

struct ts_sse;

/* One frame. All strings are owned by the stream and valid until the next
 * ts_sse_next or ts_sse_close on it. */
struct ts_sse_event {
    int comment;       /* 1: a comment line (":..."), its text in data */
    const char *id;    /* "id:" field, NULL when absent */
    const char *event; /* "event:" field, NULL when absent */
    const char *data;  /* "data:" lines joined with '\n'; NULL when absent */
};

/* Open a GET stream to url with extra headers (may be NULL) and wait up to
 * timeout_ms for the response headers. On 0, *out is caller-owned
 * (ts_sse_close), whatever the status (see ts_sse_status). Returns -EIO when
 * the connection failed, -ETIMEDOUT when no headers came. */
int ts_sse_open(const char *url, const char *const headers[], int timeout_ms, struct ts_sse **out);

/* The HTTP status of the stream's response. */
long ts_sse_status(const struct ts_sse *s);

/* A response header of the stream (case-insensitive), or NULL. Borrowed. */
const char *ts_sse_header(const struct ts_sse *s, const char *name);

/* The next frame, waiting up to timeout_ms. Comment lines come as their own
 * frames, in order. Frames split across reads are reassembled. Returns 0,
 * -ETIMEDOUT, -EPIPE when the server ended the stream cleanly and every
 * frame was read, -EIO on a transfer error, -E2BIG when a frame exceeds
 * 4 MiB. */
int ts_sse_next(struct ts_sse *s, int timeout_ms, struct ts_sse_event *ev);

/* Bytes of response body received so far that were not part of a complete
 * frame yet (for tests of non-SSE bodies on an error status). Borrowed,
 * NUL-terminated. */
const char *ts_sse_pending(const struct ts_sse *s);

/* Close the stream (drops the connection) and free s. NULL is a no-op. */
void ts_sse_close(struct ts_sse *s);

/* ---- small things ---------------------------------------------------- */

/* Milliseconds of CLOCK_MONOTONIC. */
long long ts_now_ms(void);

/* Sleep ms milliseconds. */
void ts_sleep_ms(int ms);

#endif /* TS_SUPPORT_H */
