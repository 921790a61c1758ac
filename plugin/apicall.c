/* apicall.c - the request observer that publishes api_call events. */
#include "apicall.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "agent/plugin.h"
#include "envelope.h"
#include "json.h"
#include "publish.h"
#include "telemetry/service.h"

struct tel_apicall {
    const struct agent_host_api *api;
    struct tel_publish *pub;
    struct evbuffer *data;
    int stopped;
};

/* duration_ms as Go prints a float: shortest form, no exponent in range,
 * here at microsecond resolution ("0.412", "12", "1500.5"). */
static int add_duration(struct evbuffer *out, double ms)
{
    char buf[64];
    if (!isfinite(ms) || ms < 0)
        ms = 0;
    int n = snprintf(buf, sizeof buf, "%.3f", ms);
    if (n < 0 || (size_t)n >= sizeof buf)
        return -ENOMEM;
    while (n > 0 && buf[n - 1] == '0')
        buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '.')
        buf[--n] = '\0';
    return evbuffer_add(out, buf, (size_t)n) ? -ENOMEM : 0;
}

int tel_apicall_data(const struct agent_request_info *info, struct evbuffer *out)
{
    const char *rid = info->request_id != NULL ? info->request_id : "";
    const char *op = info->operation_id != NULL ? info->operation_id : "";
    int rc = 0;
    rc |= evbuffer_add(out, "{\"request_id\":", 14);
    rc |= tel_json_add_string(out, rid, strlen(rid));
    rc |= evbuffer_add(out, ",\"operation_id\":", 16);
    rc |= tel_json_add_string(out, op, strlen(op));
    rc |= evbuffer_add_printf(out, ",\"status\":%d,\"duration_ms\":", info->status) < 0;
    rc |= add_duration(out, info->duration_ms);
    rc |= evbuffer_add(out, "}", 1);
    return rc ? -ENOMEM : 0;
}

void tel_apicall_observe(const struct agent_request_info *info, void *arg)
{
    struct tel_apicall *a = arg;
    struct tel_event ev = {
        .type = "api_call",
        .category = TEL_CAT_CONTROL,
        .source_kind = "kernel_api",
    };
    int admitted;
    if (a->stopped || info->operation_id == NULL || info->operation_id[0] == '\0' ||
        (info->route_flags & AGENT_ROUTE_SIDE_EFFECT_FREE))
        return;
    /* The gate would drop it: do not build it (every request gets here). */
    const struct telemetry_service *svc = tel_publish_service(a->pub);
    if (!(svc->categories(svc->ctx) & TELEMETRY_CAT_CONTROL))
        return;
    evbuffer_drain(a->data, evbuffer_get_length(a->data));
    if (tel_apicall_data(info, a->data) != 0)
        goto out;
    ev.data_len = evbuffer_get_length(a->data);
    ev.data = (const char *)evbuffer_pullup(a->data, -1);
    if (tel_publish_event(a->pub, &ev, &admitted, NULL) != 0)
        a->api->log(a->api->host, AGENT_LOG_WARN, "api_call event for %s not published",
                    info->operation_id);
out:
    evbuffer_drain(a->data, evbuffer_get_length(a->data));
}

int tel_apicall_new(const struct agent_host_api *api, struct tel_publish *pub,
                    struct tel_apicall **out)
{
    int rc;
    struct tel_apicall *a = calloc(1, sizeof *a);
    if (a == NULL || (a->data = evbuffer_new()) == NULL) {
        free(a);
        return -ENOMEM;
    }
    a->api = api;
    a->pub = pub;
    if ((rc = api->observer_add(api->host, tel_apicall_observe, a)) != 0) {
        tel_apicall_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void tel_apicall_stop(struct tel_apicall *a)
{
    if (a != NULL)
        a->stopped = 1;
}

void tel_apicall_free(struct tel_apicall *a)
{
    if (a == NULL)
        return;
    evbuffer_free(a->data);
    free(a);
}
