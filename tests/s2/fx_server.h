/*
 * fx_server.h - a small S2 fixture server for the client tests.
 *
 * libevent evhttp on 127.0.0.1:<ephemeral>, on the test's event_base. It
 * keeps in-memory streams (ensure, append with match_seq_num, unary read
 * with the 416 rules, check-tail) and answers canned files from
 * fixtures/s2/. Rules inject faults: canned statuses, dropped connections,
 * delays, and appends applied but answered with an error or a drop.
 */
#ifndef FX_SERVER_H
#define FX_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct fx_server;

enum fx_route { FX_ANY = 0, FX_APPEND, FX_READ, FX_TAIL, FX_ENSURE, FX_ROUTES };

enum fx_action {
    FX_NORMAL = 0,   /* handle normally */
    FX_FILE,         /* answer status with file, not applied */
    FX_DROP,         /* close the connection without a reply, not applied */
    FX_APPLY_DROP,   /* apply, then close without a reply */
    FX_APPLY_STATUS, /* apply, then answer status with file */
    FX_DELAY,        /* wait delay_ms, then handle normally */
};

struct fx_rule {
    enum fx_route route;
    enum fx_action action;
    int status;
    const char *file;           /* in fixtures/s2/, for FX_FILE / FX_APPLY_STATUS */
    const char *body;           /* inline body instead of file (borrowed) */
    const char *retry_after_ms; /* header value or NULL */
    const char *retry_after;    /* Retry-After value or NULL */
    uint64_t delay_ms;
    int times; /* how many requests it applies to; -1 = forever */
};

/* Per-request decision hook (for periodic faults); returns 1 and fills
 * *rule to override, 0 for the queued rules / normal handling. n counts the
 * requests of that route from 0. */
typedef int (*fx_decide_fn)(enum fx_route route, uint64_t n, struct fx_rule *rule, void *arg);

int fx_server_new(struct event_base *base, struct fx_server **out);
void fx_server_free(struct fx_server *s);
/* "http://127.0.0.1:<port>" (owned by the server). */
const char *fx_server_url(const struct fx_server *s);

/* Queue a rule; rules are tried in order. */
void fx_push(struct fx_server *s, const struct fx_rule *rule);
void fx_set_decider(struct fx_server *s, fx_decide_fn fn, void *arg);
/* Include the tail in read responses (default: never, as s2-lite for
 * catch-up reads). */
void fx_set_read_tail(struct fx_server *s, int on);

/* Create a stream whose first seq_num is first_seq. */
void fx_stream_create(struct fx_server *s, const char *name, uint64_t first_seq);
/* Append directly (bypassing HTTP). */
void fx_stream_put(struct fx_server *s, const char *name, const void *body, size_t len);
/* Number of records, and the i-th record's body (borrowed); -1 if none. */
long fx_stream_count(struct fx_server *s, const char *name);
const uint8_t *fx_stream_body(struct fx_server *s, const char *name, size_t i, size_t *len);
uint64_t fx_stream_first_seq(struct fx_server *s, const char *name);

/* Requests seen per route (after rules), appends applied. */
uint64_t fx_count(const struct fx_server *s, enum fx_route route);
uint64_t fx_appends_applied(const struct fx_server *s);
/* Sizes (records) of applied append batches, in order. */
size_t fx_batch_sizes(const struct fx_server *s, const uint32_t **sizes);

/* The last request seen: header value (NULL if absent), raw URI. */
const char *fx_last_header(const struct fx_server *s, const char *name);
const char *fx_last_uri(const struct fx_server *s);
/* Monotonic ms at which the n-th request of route arrived (n < 64). */
uint64_t fx_arrival_ms(const struct fx_server *s, enum fx_route route, uint64_t n);

/* Read a fixture file into a malloc'd NUL-terminated buffer. */
char *fx_read_file(const char *name, size_t *len);

#endif /* FX_SERVER_H */
