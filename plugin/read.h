/*
 * read.h - GET /telemetry/events: archived telemetry, page by page.
 *
 * Reads envelopes archived in S2 (s2/reader.h), one bounded page per
 * request, with X-Has-More / X-Next-Offset / Link paging. Side-effect-free.
 */
#ifndef TEL_READ_H
#define TEL_READ_H

struct evhttp_request;
struct agent_host_api;
struct s2_client;
struct tel_read;

struct tel_read_opts {
    const struct agent_host_api *api; /* borrowed */
    struct s2_client *client;         /* borrowed; NULL = archive off */
    const char *stream;               /* copied; NULL when archive off */
};

/* Create the route state. Returns 0, -ENOMEM. */
int tel_read_new(const struct tel_read_opts *opts, struct tel_read **out);

/* Route handler for GET /telemetry/events; arg is the struct tel_read. */
void tel_read_handle(struct evhttp_request *req, void *arg);

/* Answer every pending request (503) and cancel its S2 reads. */
void tel_read_shutdown(struct tel_read *r);

/* Free; call after tel_read_shutdown. NULL is a no-op. */
void tel_read_free(struct tel_read *r);

#endif /* TEL_READ_H */
