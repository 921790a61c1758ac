/* tp_agent.h - the real agent with the telemetry plugin, for end-to-end suites. */
#ifndef TP_AGENT_H
#define TP_AGENT_H

#include <stddef.h>

#include "support.h"

struct tp_agent {
    struct ts_proc *proc;
    int port;
    int s2_port;    /* the embedded s2-local's port; 0 when the archive is off */
    char dir[256];  /* TELEMETRY_ARCHIVE_DIR, a fresh temp dir ("" when off) */
    char basin[64]; /* what tp_archive_records reads */
    char stream[64];
};

/* Plugins loaded after telemetry. */
#define TP_PUBLISHER 1 /* PUBLISHER_PLUGIN */
#define TP_FIXTURE 2   /* FIXTURE_PLUGIN: the host's fixture (request observer) */

/* Start the agent (AGENT_BIN) with TELEMETRY_PLUGIN, then the TP_* plugins
 * of the plugins mask, the archive on an embedded s2-local in a
 * temp dir when archive, and the extra environment env (NULL-terminated).
 * Fails the test when the agent does not come up. */
void tp_agent_start(struct tp_agent *a, const char *const env[], int with_publisher, int archive);

/* SIGTERM, wait for exit (fails the test unless it exits 0 within 15 s),
 * free. Keeps the temp dir (tp_agent_cleanup removes it). */
void tp_agent_stop(struct tp_agent *a);
void tp_agent_cleanup(struct tp_agent *a);

/* http://127.0.0.1:<port><path> into buf. */
const char *tp_url(const struct tp_agent *a, const char *path, char *buf, size_t len);

/* One request to the agent; fails the test on a transport error. */
void tp_req(const struct tp_agent *a, const char *method, const char *path, const char *body,
            struct ts_resp *out);

/* The record bodies of a->stream in a->basin (by default the embedded
 * s2-local's), read straight from the s2-local at a->s2_port, from seq_num 0. *bodies is malloc'd
 * (tp_bodies_free). */
void tp_archive_records(const struct tp_agent *a, char ***bodies, size_t *n);
void tp_bodies_free(char **bodies, size_t n);

#endif /* TP_AGENT_H */
