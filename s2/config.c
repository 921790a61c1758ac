/* config.c - S2 client configuration from S2_* variables. */
#include "s2/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_ACCOUNT_ENDPOINT "https://aws.s2.dev/v1"
#define DEFAULT_BASIN_ENDPOINT "https://{basin}.b.s2.dev/v1"
#define DEFAULT_LINGER_MS 100
#define DEFAULT_MAX_RECORDS 50
#define DEFAULT_QUEUE_RECORDS 65536
#define MAX_QUEUE_RECORDS (16u * 1024 * 1024)
#define DEFAULT_REQUEST_TIMEOUT_MS 5000
#define DEFAULT_CONNECT_TIMEOUT_MS 3000
#define DEFAULT_RETRY_BASE_MS 100
#define DEFAULT_RETRY_MAX_MS 1000
#define DEFAULT_MAX_ATTEMPTS 3
#define MAX_ENDPOINT_LEN 2048

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Largest Go duration: 2^63 - 1 ns. */
#define DURATION_MAX ((uint64_t)INT64_MAX)

struct unit {
    const char *name;
    uint64_t ns;
};

static const struct unit units[] = {
    {"ns", 1ULL},
    {"us", 1000ULL},
    {"\xc2\xb5s", 1000ULL}, /* U+00B5 micro sign */
    {"\xce\xbcs", 1000ULL}, /* U+03BC Greek mu */
    {"ms", 1000000ULL},
    {"s", 1000000000ULL},
    {"m", 60ULL * 1000000000ULL},
    {"h", 3600ULL * 1000000000ULL},
};

/* Follows Go's time.ParseDuration: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+, or "0". */
int s2_duration_parse(const char *text, uint64_t *ns_out)
{
    if (text == NULL || ns_out == NULL)
        return -EINVAL;
    const char *s = text;
    int neg = 0;
    if (*s == '-' || *s == '+') {
        neg = *s == '-';
        s++;
    }
    if (strcmp(s, "0") == 0) {
        *ns_out = 0;
        return 0;
    }
    if (*s == '\0')
        return -EINVAL;
    uint64_t total = 0;
    while (*s != '\0') {
        uint64_t whole = 0;
        int digits = 0;
        int overflow = 0;
        while (*s >= '0' && *s <= '9') {
            unsigned d = (unsigned)(*s - '0');
            if (whole > (DURATION_MAX - d) / 10)
                overflow = 1;
            else
                whole = whole * 10 + d;
            digits++;
            s++;
        }
        /* Fraction kept as frac / scale, as Go does (extra digits dropped). */
        uint64_t frac = 0;
        uint64_t scale = 1;
        int frac_digits = 0;
        if (*s == '.') {
            s++;
            while (*s >= '0' && *s <= '9') {
                if (scale <= UINT64_MAX / 100 / 10) {
                    frac = frac * 10 + (uint64_t)(*s - '0');
                    scale *= 10;
                }
                frac_digits++;
                s++;
            }
        }
        if (digits == 0 && frac_digits == 0)
            return -EINVAL;
        if (overflow)
            return -ERANGE;
        const struct unit *u = NULL;
        size_t ulen = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t n = strlen(units[i].name);
            /* Longest match: "ms" before "m", "ns" etc. */
            if (strncmp(s, units[i].name, n) == 0 && n > ulen) {
                u = &units[i];
                ulen = n;
            }
        }
        if (u == NULL)
            return -EINVAL;
        s += ulen;
        if (whole > DURATION_MAX / u->ns)
            return -ERANGE;
        uint64_t v = whole * u->ns;
        if (frac > 0) {
            /* frac/scale < 1, so this adds less than one unit. */
            double add = (double)frac * ((double)u->ns / (double)scale);
            v += (uint64_t)add;
            if (v > DURATION_MAX)
                return -ERANGE;
        }
        if (total > DURATION_MAX - v)
            return -ERANGE;
        total += v;
    }
    if (neg && total > 0)
        return -EINVAL;
    *ns_out = total;
    return 0;
}

static int has_bad_chars(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c == 0x7f)
            return 1;
    }
    return 0;
}

static int host_is_loopback(const char *host, size_t len)
{
    static const char *const names[] = {"localhost", "127.0.0.1", "[::1]", "::1"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i]) == len && strncmp(host, names[i], len) == 0)
            return 1;
    }
    return 0;
}

int s2_endpoint_normalize(const char *text, char **out)
{
    *out = NULL;
    if (text == NULL || *text == '\0' || strlen(text) > MAX_ENDPOINT_LEN || has_bad_chars(text))
        return -EINVAL;
    const char *scheme = NULL;
    const char *rest = text;
    const char *sep = strstr(text, "://");
    if (sep != NULL) {
        size_t slen = (size_t)(sep - text);
        if (slen == 4 && strncmp(text, "http", 4) == 0)
            scheme = "http";
        else if (slen == 5 && strncmp(text, "https", 5) == 0)
            scheme = "https";
        else
            return -EINVAL;
        rest = sep + 3;
    }
    /* Authority ends at the first '/', '?' or '#'. */
    size_t alen = strcspn(rest, "/?#");
    if (alen == 0 || rest[alen] == '?' || rest[alen] == '#')
        return -EINVAL;
    const char *path = rest + alen;
    /* Host without the port; an IPv6 literal keeps its brackets. */
    size_t hlen = alen;
    if (rest[0] == '[') {
        const char *close = memchr(rest, ']', alen);
        if (close == NULL)
            return -EINVAL;
        hlen = (size_t)(close - rest) + 1;
        if (hlen < alen && rest[hlen] != ':')
            return -EINVAL;
    } else {
        const char *colon = memchr(rest, ':', alen);
        if (colon != NULL)
            hlen = (size_t)(colon - rest);
    }
    if (hlen == 0)
        return -EINVAL;
    if (hlen < alen) {
        /* A port: 1..65535 digits only. */
        const char *p = rest + hlen + 1;
        size_t plen = alen - hlen - 1;
        if (plen == 0 || plen > 5)
            return -EINVAL;
        unsigned long port = 0;
        for (size_t i = 0; i < plen; i++) {
            if (p[i] < '0' || p[i] > '9')
                return -EINVAL;
            port = port * 10 + (unsigned long)(p[i] - '0');
        }
        if (port == 0 || port > 65535)
            return -EINVAL;
    }
    if (scheme == NULL)
        scheme = host_is_loopback(rest, hlen) ? "http" : "https";
    /* Trailing slashes do not make a path. */
    size_t plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    const char *suffix = plen == 0 ? "/v1" : "";
    size_t n = strlen(scheme) + 3 + alen + plen + strlen(suffix) + 1;
    char *s = malloc(n);
    if (s == NULL)
        return -ENOMEM;
    snprintf(s, n, "%s://%.*s%.*s%s", scheme, (int)alen, rest, (int)plen, path, suffix);
    *out = s;
    return 0;
}

static const char *lookup_value(s2_lookup_fn lookup, void *arg, const char *key)
{
    const char *v = lookup(key, arg);
    /* An empty variable counts as unset, as envconfig treats it. */
    return v != NULL && *v != '\0' ? v : NULL;
}

static int dup_str(const char *v, char **out)
{
    *out = NULL;
    if (v == NULL)
        return 0;
    *out = strdup(v);
    return *out == NULL ? -ENOMEM : 0;
}

/* Basin names: 8..48 of [a-z0-9-], starting and ending with a letter or digit. */
static int basin_name_valid(const char *b)
{
    size_t n = strlen(b);
    if (n < 8 || n > 48 || b[0] == '-' || b[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return 1;
}

static int stream_name_valid(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 512 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Parse a duration variable into ms (sub-millisecond remainders round up). */
static int load_duration_ms(s2_lookup_fn lookup, void *arg, const char *key, uint64_t def,
                            int allow_zero, uint64_t *out, char *err, size_t errlen)
{
    const char *v = lookup_value(lookup, arg, key);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    uint64_t ns = 0;
    int rc = s2_duration_parse(v, &ns);
    if (rc == -ERANGE) {
        set_err(err, errlen, "%s: duration \"%.64s\" is out of range", key, v);
        return -EINVAL;
    }
    if (rc < 0) {
        set_err(err, errlen,
                "%s: invalid duration \"%.64s\" (want a non-negative Go duration such as 100ms, "
                "1s or 1m30s)",
                key, v);
        return -EINVAL;
    }
    if (ns == 0 && !allow_zero) {
        set_err(err, errlen, "%s: duration must be greater than 0", key);
        return -EINVAL;
    }
    *out = ns / 1000000 + (ns % 1000000 != 0);
    return 0;
}

static int load_uint(s2_lookup_fn lookup, void *arg, const char *key, uint32_t def, uint32_t min,
                     uint32_t max, uint32_t *out, char *err, size_t errlen)
{
    const char *v = lookup_value(lookup, arg, key);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    uint64_t n = 0;
    const char *p = v;
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (uint64_t)(*p - '0');
        if (n > max)
            break;
    }
    if (p == v || (*p != '\0' && !(*p >= '0' && *p <= '9')) || n < min || n > max) {
        set_err(err, errlen,
                "%s: invalid value \"%.64s\" (want an integer from %" PRIu32 " to %" PRIu32 ")",
                key, v, min, max);
        return -EINVAL;
    }
    *out = (uint32_t)n;
    return 0;
}

static int load_endpoint(s2_lookup_fn lookup, void *arg, const char *key, const char *def,
                         char **out, char *err, size_t errlen)
{
    const char *v = lookup_value(lookup, arg, key);
    if (v == NULL) {
        *out = strdup(def);
        return *out == NULL ? -ENOMEM : 0;
    }
    int rc = s2_endpoint_normalize(v, out);
    if (rc == -EINVAL)
        set_err(err, errlen,
                "%s: invalid endpoint \"%.128s\" (want [http[s]://]host[:port][/path])", key, v);
    return rc;
}

int s2_config_load(s2_lookup_fn lookup, void *arg, struct s2_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    set_err(err, errlen, "%s", "");
    int rc = 0;
    const char *token = lookup_value(lookup, arg, "S2_ACCESS_TOKEN");
    const char *basin = lookup_value(lookup, arg, "S2_BASIN");
    const char *stream = lookup_value(lookup, arg, "S2_STREAM");
    if (token != NULL && has_bad_chars(token)) {
        /* Never echo the token itself. */
        set_err(err, errlen, "S2_ACCESS_TOKEN: contains whitespace or control characters");
        rc = -EINVAL;
        goto FAIL;
    }
    if (basin != NULL && !basin_name_valid(basin)) {
        set_err(err, errlen,
                "S2_BASIN: invalid basin name \"%.64s\" (want 8 to 48 of a-z, 0-9 and '-', "
                "not starting or ending with '-')",
                basin);
        rc = -EINVAL;
        goto FAIL;
    }
    if (stream != NULL && !stream_name_valid(stream)) {
        set_err(err, errlen, "S2_STREAM: invalid stream name (want 1 to 512 bytes, not . or ..)");
        rc = -EINVAL;
        goto FAIL;
    }
    if ((rc = dup_str(token, &out->access_token)) < 0 || (rc = dup_str(basin, &out->basin)) < 0 ||
        (rc = dup_str(stream, &out->stream)) < 0)
        goto FAIL;
    if ((rc = load_endpoint(lookup, arg, "S2_ACCOUNT_ENDPOINT", DEFAULT_ACCOUNT_ENDPOINT,
                            &out->account_endpoint, err, errlen)) < 0 ||
        (rc = load_endpoint(lookup, arg, "S2_BASIN_ENDPOINT", DEFAULT_BASIN_ENDPOINT,
                            &out->basin_endpoint, err, errlen)) < 0)
        goto FAIL;
    if ((rc = load_duration_ms(lookup, arg, "S2_BATCHER_LINGER", DEFAULT_LINGER_MS, 1,
                               &out->linger_ms, err, errlen)) < 0 ||
        (rc = load_uint(lookup, arg, "S2_BATCHER_MAX_RECORDS", DEFAULT_MAX_RECORDS, 1, 1000,
                        &out->max_records, err, errlen)) < 0 ||
        (rc = load_uint(lookup, arg, "S2_BATCHER_QUEUE_RECORDS", DEFAULT_QUEUE_RECORDS, 1,
                        MAX_QUEUE_RECORDS, &out->queue_records, err, errlen)) < 0 ||
        (rc = load_duration_ms(lookup, arg, "S2_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT_MS, 0,
                               &out->request_timeout_ms, err, errlen)) < 0 ||
        (rc = load_duration_ms(lookup, arg, "S2_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT_MS, 0,
                               &out->connect_timeout_ms, err, errlen)) < 0)
        goto FAIL;
    out->retry_base_ms = DEFAULT_RETRY_BASE_MS;
    out->retry_max_ms = DEFAULT_RETRY_MAX_MS;
    out->max_attempts = DEFAULT_MAX_ATTEMPTS;
    return 0;
FAIL:
    if (rc == -ENOMEM)
        set_err(err, errlen, "S2 configuration: out of memory");
    s2_config_clear(out);
    return rc;
}

int s2_config_enabled(const struct s2_config *cfg)
{
    return cfg != NULL && cfg->access_token != NULL && cfg->basin != NULL && cfg->stream != NULL;
}

void s2_config_clear(struct s2_config *cfg)
{
    if (cfg == NULL)
        return;
    if (cfg->access_token != NULL)
        explicit_bzero(cfg->access_token, strlen(cfg->access_token));
    free(cfg->access_token);
    free(cfg->basin);
    free(cfg->stream);
    free(cfg->account_endpoint);
    free(cfg->basin_endpoint);
    memset(cfg, 0, sizeof *cfg);
}
