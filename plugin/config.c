/* config.c - TELEMETRY_* variables and the S2 configuration. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "envelope.h"
#include "stream.h"

int tel_config_categories(const char *text, uint32_t *mask)
{
    uint32_t m = 0;
    const char *p = text;
    if (strcmp(text, "default") == 0) {
        *mask = TEL_CATS_DEFAULT;
        return 0;
    }
    if (strcmp(text, "all") == 0) {
        *mask = TEL_CATS_USER;
        return 0;
    }
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *a = p, *b = p + len;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        int cat;
        if (tel_category_parse(a, (size_t)(b - a), &cat) != 0 || !((1u << cat) & TEL_CATS_USER))
            return -EINVAL;
        m |= 1u << cat;
        p = end ? end + 1 : p + len;
        if (end != NULL && *p == '\0')
            return -EINVAL; /* trailing comma */
    }
    if (m == 0)
        return -EINVAL;
    *mask = m;
    return 0;
}

/* A decimal unsigned integer within [min, max]. */
static int parse_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (*text == '\0')
        return -EINVAL;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_bool(const char *text, int *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -EINVAL;
}

int tel_config_load(s2_lookup_fn lookup, void *arg, struct tel_config *out, char *err,
                    size_t errlen)
{
    const char *v;
    uint64_t n;
    int rc = -EINVAL;

    memset(out, 0, sizeof *out);
    out->enabled = 1;
    out->ring_capacity = 1024;
    out->max_body = 2u * 1024 * 1024;
    out->keepalive_ms = TEL_STREAM_DEFAULT_KEEPALIVE_MS;
    out->sse_max_pending = TEL_STREAM_DEFAULT_MAX_PENDING;

    if ((v = lookup("TELEMETRY_ENABLED", arg)) != NULL && v[0] != '\0' &&
        parse_bool(v, &out->enabled) != 0) {
        snprintf(err, errlen, "TELEMETRY_ENABLED: expected true or false, got \"%.64s\"", v);
        goto out;
    }
    if ((v = lookup("TELEMETRY_RING_CAPACITY", arg)) != NULL && v[0] != '\0') {
        if (parse_uint(v, 1, 1048576, &n) != 0) {
            snprintf(err, errlen,
                     "TELEMETRY_RING_CAPACITY: expected an integer in 1..1048576, "
                     "got \"%.64s\"",
                     v);
            goto out;
        }
        out->ring_capacity = (uint32_t)n;
    }
    if ((v = lookup("TELEMETRY_CATEGORIES", arg)) != NULL && v[0] != '\0') {
        if (tel_config_categories(v, &out->boot_mask) != 0) {
            snprintf(err, errlen,
                     "TELEMETRY_CATEGORIES: expected \"default\", \"all\" or a comma list of "
                     "console, network, page, interaction, control, connection, system, "
                     "screenshot, captcha; got \"%.64s\"",
                     v);
            goto out;
        }
        out->boot_session = 1;
    }
    if ((v = lookup("TELEMETRY_MAX_BODY", arg)) != NULL && v[0] != '\0') {
        if (parse_uint(v, 1024, 64u * 1024 * 1024, &n) != 0) {
            snprintf(err, errlen,
                     "TELEMETRY_MAX_BODY: expected bytes in 1024..67108864, "
                     "got \"%.64s\"",
                     v);
            goto out;
        }
        out->max_body = (size_t)n;
    }
    if ((v = lookup("TELEMETRY_SSE_KEEPALIVE", arg)) != NULL && v[0] != '\0') {
        if (s2_duration_parse(v, &n) != 0 || n < 10000000ull || n > 3600000000000ull) {
            snprintf(err, errlen,
                     "TELEMETRY_SSE_KEEPALIVE: expected a duration in 10ms..1h, "
                     "got \"%.64s\"",
                     v);
            goto out;
        }
        out->keepalive_ms = n / 1000000;
    }
    if ((v = lookup("TELEMETRY_SSE_MAX_PENDING", arg)) != NULL && v[0] != '\0') {
        if (parse_uint(v, 4096, 64u * 1024 * 1024, &n) != 0) {
            snprintf(err, errlen,
                     "TELEMETRY_SSE_MAX_PENDING: expected bytes in 4096..67108864, "
                     "got \"%.64s\"",
                     v);
            goto out;
        }
        out->sse_max_pending = (size_t)n;
    }
    if ((v = lookup("TELEMETRY_ARCHIVE_DIR", arg)) != NULL && v[0] != '\0') {
        if ((out->archive_dir = strdup(v)) == NULL) {
            rc = -ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    rc = s2_config_load(lookup, arg, &out->s2, err, errlen);
out:
    return rc;
}

void tel_config_clear(struct tel_config *cfg)
{
    free(cfg->archive_dir);
    s2_config_clear(&cfg->s2);
    memset(cfg, 0, sizeof *cfg);
}
