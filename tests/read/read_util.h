/*
 * read_util.h - end-to-end helpers of the read suite: an s2-local process,
 * the agent with the telemetry plugin archiving into it, publishing, and
 * walking GET /telemetry/events page by page.
 */
#ifndef READ_UTIL_H
#define READ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "support.h"

#define RU_BASIN "read-e2e-basin"
#define RU_STREAM "telemetry-e2e"

struct ru_s2 {
    struct ts_proc *proc;
    int port;
};

struct ru_agent {
    struct ts_proc *proc;
    int port;
    char base[64]; /* http://127.0.0.1:PORT */
};

/* Start s2-local (S2LOCAL_BIN) in memory on a port it picks. */
void ru_s2_start(struct ru_s2 *s2);
void ru_s2_stop(struct ru_s2 *s2);

/* Start the agent with the plugin (TELEMETRY_PLUGIN). s2 may be NULL (then
 * S2 is not configured); s2_endpoint_override, when set, replaces the
 * endpoint (e.g. a dead port). extra_env is NULL-terminated or NULL. */
void ru_agent_start(struct ru_agent *a, const struct ru_s2 *s2, const char *s2_endpoint_override,
                    const char *const extra_env[]);
/* SIGTERM, assert a clean exit (status 0) and a log without sanitizer
 * reports; then free. Call it from the test body: assertions in a .fini
 * function do not fail the test. */
void ru_agent_stop(struct ru_agent *a);
/* The same checks, for an agent already told to stop. */
void ru_agent_reap(struct ru_agent *a);
/* Kill and free without checks (for .fini). */
void ru_agent_kill(struct ru_agent *a);

/* POST one event {"type":type,"category":category,"data":{"i":i}}; returns
 * the status. */
long ru_publish(const struct ru_agent *a, const char *type, const char *category, int i);

/* Append raw record bodies straight to the stream in s2-local. */
void ru_s2_append_raw(const struct ru_s2 *s2, const char *const bodies[], size_t n);

/* A walk: every envelope of every page, in order. */
struct ru_walk {
    size_t pages, empty_pages;
    size_t n;
    uint64_t *seqs;
    char **categories; /* owned strings */
    char **pages_body; /* owned copies of each page body */
    int last_has_more;
};

/* Walk from query (may be "") following X-Next-Offset (or, with
 * follow_link, the Link header) until X-Has-More is false or max_pages.
 * Asserts each page: 200, JSON array, X-Has-More, and when true
 * X-Next-Offset and Link. */
void ru_walk(const struct ru_agent *a, const char *query, int follow_link, size_t max_pages,
             struct ru_walk *w);
void ru_walk_free(struct ru_walk *w);

/* Walk (unfiltered) until the archive holds at least n envelopes or
 * timeout_ms passes; returns how many it saw last. */
size_t ru_wait_archived(const struct ru_agent *a, size_t n, int timeout_ms);

/* Wall clock, Unix milliseconds. */
uint64_t ru_wall_ms(void);

#endif /* READ_UTIL_H */
