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
 * here at microsecond resolution ("0.412", "12", "1500.5"): "%.3f" with the
 * trailing zeros cut. Integer formatting when the rounding is certain;
 * printf where the value is a near tie, so both give the same bytes. */
static int add_duration(struct evbuffer *out, double ms)
{
    char buf[64];
    int n;
    if (!isfinite(ms) || ms <= 0)
        ms = 0; /* also -0: "0", not "-0" */
    double us = ms * 1000.0;
    double r = floor(us + 0.5);
    /* Below 1e12 the product's rounding error is far under 0.001. */
    if (us < 1e12 && fabs(us - r) < 0.499) {
        uint64_t v = (uint64_t)r, ip = v / 1000;
        unsigned frac = (unsigned)(v % 1000);
        n = (int)tel_json_fmt_u64(buf, ip);
        if (frac != 0) {
            buf[n++] = '.';
            buf[n++] = (char)('0' + frac / 100);
            buf[n++] = (char)('0' + frac / 10 % 10);
            buf[n++] = (char)('0' + frac % 10);
        }
    } else {
        n = snprintf(buf, sizeof buf, "%.3f", ms);
        if (n < 0 || (size_t)n >= sizeof buf)
            return -ENOMEM;
        if (memchr(buf, '.', (size_t)n) == NULL)
            return evbuffer_add(out, buf, (size_t)n) ? -ENOMEM : 0;
    }
    if (memchr(buf, '.', (size_t)n) != NULL) {
        while (n > 0 && buf[n - 1] == '0')
            n--;
        if (n > 0 && buf[n - 1] == '.')
            n--;
    }
    return evbuffer_add(out, buf, (size_t)n) ? -ENOMEM : 0;
}

int tel_apicall_data(const struct agent_request_info *info, struct evbuffer *out)
{
    const char *rid = info->request_id != NULL ? info->request_id : "";
    const char *op = info->operation_id != NULL ? info->operation_id : "";
    char num[TEL_JSON_INT_MAX + 32];
    size_t n;
    int rc = 0;
    rc |= evbuffer_add(out, "{\"request_id\":", 14);
    rc |= tel_json_add_string(out, rid, strlen(rid));
    rc |= evbuffer_add(out, ",\"operation_id\":", 16);
    rc |= tel_json_add_string(out, op, strlen(op));
    memcpy(num, ",\"status\":", 10);
    n = 10 + tel_json_fmt_i64(num + 10, info->status);
    memcpy(num + n, ",\"duration_ms\":", 15);
    n += 15;
    rc |= evbuffer_add(out, num, n);
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
