/*
 * apicall.h - api_call events (telemetry-api.md section 7): the host's
 * request observer publishes one per completed request on a route with an
 * operation id, except side-effect-free routes, through the session gate.
 * The gate is asked when the request ends; the event is built and published
 * at the end of that loop turn, or earlier when anything else publishes.
 */
#ifndef TEL_APICALL_H
#define TEL_APICALL_H

struct agent_host_api;
struct agent_request_info;
struct evbuffer;
struct tel_publish;
struct tel_apicall;

/* Register the observer with the host (and the publish hook with pub).
 * Returns 0 or -errno. */
int tel_apicall_new(const struct agent_host_api *api, struct tel_publish *pub,
                    struct tel_apicall **out);

/* Publish what is queued, then stop publishing (the host has no observer
 * removal: the observer stays registered and does nothing). */
void tel_apicall_stop(struct tel_apicall *a);

/* Free; what is still queued is logged as not published. The host must not
 * call the observer afterwards. NULL is a no-op. */
void tel_apicall_free(struct tel_apicall *a);

/* Append the data object {"request_id":..,"operation_id":..,"status":..,
 * "duration_ms":..} of a request. Returns 0 or -ENOMEM. */
int tel_apicall_data(const struct agent_request_info *info, struct evbuffer *out);

/* The observer itself (arg: the struct tel_apicall), for tests. */
void tel_apicall_observe(const struct agent_request_info *info, void *arg);

#endif /* TEL_APICALL_H */
