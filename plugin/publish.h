/*
 * publish.h - the publish path: POST /telemetry/events (telemetry-api.md
 * section 4) and the shared telemetry service (telemetry/service.h). Both go
 * through the same gate (session + category), the same bus and, through
 * the bus, the same archive.
 */
#ifndef TEL_PUBLISH_H
#define TEL_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "envelope.h"

struct evbuffer;
struct evhttp_request;
struct telemetry_service;
struct tel_bus;
struct tel_env;
struct tel_session;
struct tel_publish;

/* Default bound of a POST /telemetry/events body. */
#define TEL_PUBLISH_DEFAULT_MAX_BODY (2u * 1024 * 1024)

struct tel_publish_opts {
    struct tel_bus *bus;         /* borrowed */
    struct tel_session *session; /* borrowed */
    size_t max_body;             /* 0 = TEL_PUBLISH_DEFAULT_MAX_BODY */
};

int tel_publish_new(const struct tel_publish_opts *opts, struct tel_publish **out);
void tel_publish_free(struct tel_publish *p);

/* Publish through the gate. Runs the pending hook first. Stamps ts when it
 * is 0. Returns 0 with *admitted = 0 (no session, or category not enabled:
 * nothing published) or 1 with *env (may be NULL; borrowed, valid until the
 * next publish). Returns -EINVAL, -ENOMEM, -EBUSY on failure. */
int tel_publish_event(struct tel_publish *p, struct tel_event *ev, int *admitted,
                      const struct tel_env **env);

/* The gate alone: 1 when an event of category would be admitted now, with
 * *session_id (borrowed, valid until the session changes; NULL for none) the
 * id it would carry; 0 when it would not. */
int tel_publish_gate(const struct tel_publish *p, int category, const char **session_id);

/* Publish an event the gate admitted earlier, stamped with the session id it
 * had then. No gate, no pending hook. Stamps ts when it is 0. Returns 0 with
 * *env (may be NULL) or -EINVAL, -ENOMEM, -EBUSY. */
int tel_publish_admitted(struct tel_publish *p, struct tel_event *ev, const char *session_id,
                         const struct tel_env **env);

/* One hook, run first by every tel_publish_event (the route and the shared
 * service): the api_call queue publishes what it holds there, so that seq
 * order stays the order in which events were admitted. NULL removes it. */
void tel_publish_set_pending(struct tel_publish *p, void (*fn)(void *arg), void *arg);

/* A parsed POST body. Owns what ev points into. */
struct tel_publish_req {
    struct tel_event ev;
    cJSON *root;
    struct tel_meta *meta;
    struct evbuffer *data;
    char *data_text; /* contiguous copy of data */
    char *text;      /* owned: the strings ev points at, when parsed without cJSON */
};

/* Parse and validate a POST /telemetry/events body (steps 1-4 of the
 * contract, size excepted). Returns 0 with *req filled (release it with
 * tel_publish_req_clear), or an HTTP status (400, 500) with a message in err.
 * *req is always safe to clear. */
int tel_publish_parse(const char *body, size_t len, struct tel_publish_req *req, char *err,
                      size_t errlen);
void tel_publish_req_clear(struct tel_publish_req *req);

/* Route handler for POST /telemetry/events; arg is the struct tel_publish. */
void tel_publish_handle(struct evhttp_request *req, void *arg);

/* The shared service to register under TELEMETRY_SERVICE_NAME. Owned by p. */
const struct telemetry_service *tel_publish_service(struct tel_publish *p);

/* Wall clock, Unix microseconds. */
int64_t tel_now_us(void);

#endif /* TEL_PUBLISH_H */
