/*
 * session.h - the telemetry session: the category gate and the routes
 * GET, PUT and PATCH /telemetry (telemetry-api.md section 3).
 *
 * A session is active with a non-empty set of user categories; monitor is
 * added whenever a CDP category is on. Changes of the admitted set are told
 * to subscribers (the shared service forwards them to other plugins).
 */
#ifndef TEL_SESSION_H
#define TEL_SESSION_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct evhttp_request;
struct tel_bus;
struct tel_session;

/* Bodies of PUT/PATCH /telemetry above this size are refused (413). */
#define TEL_SESSION_MAX_BODY (64 * 1024)
#define TEL_SESSION_MAX_SUBSCRIBERS 32

typedef void (*tel_session_fn)(uint32_t mask, void *arg);

/* Create an inactive session gate. bus is borrowed (its last seq is part of
 * the state). */
int tel_session_new(struct tel_bus *bus, struct tel_session **out);
void tel_session_free(struct tel_session *s);

/* Apply a user category set: non-zero starts a session (new id) or replaces
 * the set of the active one; zero stops it. *started (may be NULL) is 1 when
 * a new session began. Returns 0 or -ENOMEM. */
int tel_session_apply(struct tel_session *s, uint32_t user_mask, int *started);

/* The configured user categories; 0 when no session is active. */
uint32_t tel_session_user_mask(const struct tel_session *s);
/* The admitted categories (user set + monitor rule); 0 when inactive. */
uint32_t tel_session_mask(const struct tel_session *s);
/* The active session id, or NULL. */
const char *tel_session_id(const struct tel_session *s);

/* Parse a PUT (patch = 0) or PATCH (patch = 1) body into a new user mask,
 * starting from current (PATCH changes only categories with an explicit
 * "enabled"). len 0 means no body. Returns 0, or -EINVAL with a message in
 * err. */
int tel_session_parse(const char *body, size_t len, int patch, uint32_t current, uint32_t *mask_out,
                      char *err, size_t errlen);

/* Append the state JSON {"config":{"browser":{...}},"seq":N[,"applied_at":".."]}. */
int tel_session_state_json(const struct tel_session *s, struct evbuffer *out);

/* Subscribe to changes of the admitted set. Returns 0, -ENOSPC. */
int tel_session_subscribe(struct tel_session *s, tel_session_fn fn, void *arg, uint64_t *id);
void tel_session_unsubscribe(struct tel_session *s, uint64_t id);

/* Route handlers; arg is the struct tel_session. */
void tel_session_handle_get(struct evhttp_request *req, void *arg);
void tel_session_handle_put(struct evhttp_request *req, void *arg);
void tel_session_handle_patch(struct evhttp_request *req, void *arg);

#endif /* TEL_SESSION_H */
