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
    int stopped;
};

/* duration_ms as Go prints a float: shortest form, no exponent in range,
 * here at microsecond resolution ("0.412", "12", "1500.5"): "%.3f" with the
 * trailing zeros cut. Integer formatting when the rounding is certain;
 * printf where the value is a near tie, so both give the same bytes.
 * Writes at most DURATION_MAX bytes to buf; returns the length, 0 for a
 * value too long to format. */
#define DURATION_MAX 64
static size_t put_duration(char *buf, double ms)
{
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
        n = snprintf(buf, DURATION_MAX, "%.3f", ms);
        if (n < 0 || n >= DURATION_MAX)
            return 0; /* absurdly long: not formatted */
    }
    if (memchr(buf, '.', (size_t)n) != NULL) {
        while (n > 0 && buf[n - 1] == '0')
            n--;
        if (n > 0 && buf[n - 1] == '.')
            n--;
    }
    return (size_t)n;
}

/* What put_data may write for these strings. */
static size_t data_max(size_t rid_len, size_t op_len)
{
    return 64 + TEL_JSON_STRING_MAX(rid_len) + TEL_JSON_STRING_MAX(op_len) + TEL_JSON_INT_MAX +
           DURATION_MAX;
}

/* The data object into dst (data_max bytes); returns the length, 0 when
 * the duration cannot be formatted. */
static size_t put_data(const struct agent_request_info *info, const char *rid, size_t rid_len,
                       const char *op, size_t op_len, char *dst)
{
    char *d = dst;
    memcpy(d, "{\"request_id\":", 14);
    d += 14;
    d += tel_json_put_string(d, rid, rid_len);
    memcpy(d, ",\"operation_id\":", 16);
    d += 16;
    d += tel_json_put_string(d, op, op_len);
    memcpy(d, ",\"status\":", 10);
    d += 10;
    d += tel_json_fmt_i64(d, info->status);
    memcpy(d, ",\"duration_ms\":", 15);
    d += 15;
    size_t dn = put_duration(d, info->duration_ms);
    if (dn == 0)
        return 0;
    d += dn;
    *d++ = '}';
    return (size_t)(d - dst);
}

int tel_apicall_data(const struct agent_request_info *info, struct evbuffer *out)
{
    const char *rid = info->request_id != NULL ? info->request_id : "";
    const char *op = info->operation_id != NULL ? info->operation_id : "";
    size_t rl = strlen(rid), ol = strlen(op);
    char *buf = malloc(data_max(rl, ol));
    size_t n;
    int rc = -ENOMEM;
    if (buf != NULL && (n = put_data(info, rid, rl, op, ol, buf)) != 0 &&
        evbuffer_add(out, buf, n) == 0)
        rc = 0;
    free(buf);
    return rc;
}

/* Ids of the usual length are formatted on the stack. */
#define DATA_STACK 1024

void tel_apicall_observe(const struct agent_request_info *info, void *arg)
{
    struct tel_apicall *a = arg;
    struct tel_event ev = {
        .type = "api_call",
        .category = TEL_CAT_CONTROL,
        .source_kind = "kernel_api",
    };
    char stack[DATA_STACK];
    char *buf = stack;
    int admitted;
    if (a->stopped || info->operation_id == NULL || info->operation_id[0] == '\0' ||
        (info->route_flags & AGENT_ROUTE_SIDE_EFFECT_FREE))
        return;
    /* The gate would drop it: do not build it (every request gets here). */
    const struct telemetry_service *svc = tel_publish_service(a->pub);
    if (!(svc->categories(svc->ctx) & TELEMETRY_CAT_CONTROL))
        return;
    const char *rid = info->request_id != NULL ? info->request_id : "";
    size_t rl = strlen(rid), ol = strlen(info->operation_id);
    if (data_max(rl, ol) > sizeof stack && (buf = malloc(data_max(rl, ol))) == NULL)
        goto fail;
    ev.data_len = put_data(info, rid, rl, info->operation_id, ol, buf);
    ev.data = buf;
    if (ev.data_len == 0)
        goto fail;
    if (tel_publish_event(a->pub, &ev, &admitted, NULL) != 0)
        goto fail;
    goto out;
fail:
    a->api->log(a->api->host, AGENT_LOG_WARN, "api_call event for %s not published",
                info->operation_id);
out:
    if (buf != stack)
        free(buf);
}

int tel_apicall_new(const struct agent_host_api *api, struct tel_publish *pub,
                    struct tel_apicall **out)
{
    int rc;
    struct tel_apicall *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -ENOMEM;
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
    free(a);
}
