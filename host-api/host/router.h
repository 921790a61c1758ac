/*
 * router.h - the host's request dispatcher: exact (method, path) routes,
 * 404/405 answers, request ids and the request observers.
 *
 * The router installs itself as the evhttp generic callback. For every
 * request it
 *   - takes a valid inbound X-Request-Id (1-128 bytes of [A-Za-z0-9._:/+=@-])
 *     or makes one, "<hostname>/<10 random chars>-<6-digit counter>", and
 *     returns it as the X-Request-Id response header (also set on the request
 *     headers, so handlers see the one in use);
 *   - answers an unknown path 404 and a known path with another method 405
 *     with an Allow header; both bodies are JSON {"message": ...};
 *   - otherwise calls the route's handler and, once, when the request ends,
 *     every observer with its agent_request_info.
 *
 * A request ends (exactly once) at the first of: its reply completed
 * (evhttp's on-complete hook; the final status), router_request_end (the
 * status given), or its connection closed first (status 0: the client did not
 * get a complete response). For routes without AGENT_ROUTE_STREAMING the
 * router owns the connection's close callback, and it also watches for the
 * client going away while a reply is deferred. HEAD is served by GET routes.
 */
#ifndef AGENT_HOST_ROUTER_H
#define AGENT_HOST_ROUTER_H

#include <agent/plugin.h>

#include <stddef.h>

struct evhttp;
struct router;

/* Called once when the number of open requests drops to zero. */
typedef void (*router_idle_fn)(void *arg);

/* A router serving http (borrowed; must outlive the router's use by
 * evhttp). *out is caller-owned (router_free). Returns 0 or -errno. */
int router_new(struct evhttp *http, struct router **out);

/* Free the router and whatever requests it still tracks (without observing
 * them). Call after evhttp_free. NULL is a no-op. */
void router_free(struct router *r);

/* Add a route for owner (an opaque identity). The route and its strings are
 * copied. Returns 0, -EEXIST for a (method, path) already taken, -EINVAL
 * (unknown method, path not starting with '/' or holding '?' or '#', NULL
 * handler), -ENOSPC (more than 512 routes), -ENOMEM. */
int router_add(struct router *r, const struct agent_route *route, const void *owner);

/* Add an observer for owner. Returns 0, -EINVAL, -ENOSPC (more than 64). */
int router_observer_add(struct router *r, agent_observer_fn fn, void *arg, const void *owner);

/* Remove owner's routes (their paths answer 404 from now on) and observers.
 * Requests in flight on those routes end without observers of owner. */
void router_remove_owner(struct router *r, const void *owner);

/* End req (see above) with status; a no-op for a request that already
 * ended or that the router does not know. req is not touched. */
void router_request_end(struct router *r, struct evhttp_request *req, int status);

/* When on, new requests are answered 503 with Connection: close. */
void router_set_closing(struct router *r, int closing);

/* Requests dispatched to a route that have not ended yet. */
size_t router_active(const struct router *r);

/* Call fn(arg) once, as soon as router_active() is zero (maybe right now).
 * fn NULL cancels. */
void router_on_idle(struct router *r, router_idle_fn fn, void *arg);

/* 1 if s is an acceptable inbound X-Request-Id. */
int router_request_id_valid(const char *s);

/* Reply status with {"message": msg} (JSON-escaped) on req. */
void router_reply_message(struct evhttp_request *req, int status, const char *msg);

#endif /* AGENT_HOST_ROUTER_H */
