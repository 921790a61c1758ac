/* params.c - query parameters of GET /telemetry/events. */
#include "params.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "s2/config.h"
#include "telemetry/service.h"

/* In TelemetryEventCategory order: index i is bit 1 << i. */
static const char *const category_names[TEL_PARAMS_NCATEGORIES] = {
    "console",    "network", "page",       "interaction", "control",
    "connection", "system",  "screenshot", "captcha",     "monitor",
};

/* Longest echo of a bad value in an error message. */
#define ECHO_MAX 64

uint32_t tel_params_category_bit(const char *name, size_t len)
{
    for (unsigned i = 0; i < TEL_PARAMS_NCATEGORIES; i++) {
        if (strlen(category_names[i]) == len && memcmp(category_names[i], name, len) == 0)
            return 1u << i;
    }
    return 0;
}

const char *tel_params_category_name(unsigned i)
{
    return i < TEL_PARAMS_NCATEGORIES ? category_names[i] : NULL;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int tel_params_u64(const char *text, uint64_t *out)
{
    uint64_t v = 0;
    if (text == NULL || *text == '\0')
        return -EINVAL;
    for (const char *p = text; *p != '\0'; p++) {
        if (!is_digit(*p))
            return -EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int tel_params_limit(const char *text, uint32_t *out)
{
    if (text == NULL) {
        *out = TEL_PARAMS_LIMIT_DEFAULT;
        return 0;
    }
    const char *p = text;
    int negative = 0;
    if (*p == '-' || *p == '+')
        negative = *p++ == '-';
    if (*p == '\0')
        return -EINVAL;
    /* Saturate: any value past the maximum clamps the same way. */
    uint64_t v = 0;
    for (; *p != '\0'; p++) {
        if (!is_digit(*p))
            return -EINVAL;
        if (v <= TEL_PARAMS_LIMIT_MAX)
            v = v * 10 + (uint64_t)(*p - '0');
    }
    if (negative || v < TEL_PARAMS_LIMIT_MIN)
        *out = TEL_PARAMS_LIMIT_MIN;
    else if (v > TEL_PARAMS_LIMIT_MAX)
        *out = TEL_PARAMS_LIMIT_MAX;
    else
        *out = (uint32_t)v;
    return 0;
}

/* Exactly n digits at p into *out. */
static int fixed_digits(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return -EINVAL;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const int yoe = y - era * 400;
    const int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t)era * 146097 + doe - 719468;
}

int tel_params_rfc3339(const char *text, uint64_t *ms_out)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, s;
    const char *p = text;

    /* YYYY-MM-DDTHH:MM:SS */
    if (strlen(p) < 20 || fixed_digits(p, 4, &y) || p[4] != '-' || fixed_digits(p + 5, 2, &mo) ||
        p[7] != '-' || fixed_digits(p + 8, 2, &d) || (p[10] != 'T' && p[10] != 't') ||
        fixed_digits(p + 11, 2, &h) || p[13] != ':' || fixed_digits(p + 14, 2, &mi) ||
        p[16] != ':' || fixed_digits(p + 17, 2, &s))
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59)
        return -EINVAL;
    if (d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
        return -EINVAL;
    p += 19;

    /* Fraction: milliseconds, rounded up when finer digits are non-zero. */
    int64_t frac_ms = 0;
    if (*p == '.') {
        p++;
        if (!is_digit(*p))
            return -EINVAL;
        int n = 0, finer = 0;
        for (; is_digit(*p); p++, n++) {
            if (n < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
            else if (*p != '0')
                finer = 1;
        }
        for (; n < 3; n++)
            frac_ms *= 10;
        frac_ms += finer;
    }

    /* Offset. A blank where the sign belongs is a '+' that a client left
     * unencoded in the query string (form decoding turns it into a space). */
    int64_t off_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-' || *p == ' ') {
        int oh, om;
        int sign = *p == '-' ? -1 : 1;
        if (fixed_digits(p + 1, 2, &oh) || p[3] != ':' || fixed_digits(p + 4, 2, &om) || oh > 23 ||
            om > 59)
            return -EINVAL;
        off_min = sign * (oh * 60 + om);
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p != '\0')
        return -EINVAL;

    int64_t ms = days_from_civil(y, mo, d) * 86400000 + (int64_t)h * 3600000 + (int64_t)mi * 60000 +
                 (int64_t)s * 1000 + frac_ms - off_min * 60000;
    if (ms < 0)
        return -ERANGE;
    *ms_out = (uint64_t)ms;
    return 0;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int tel_params_time(const char *text, uint64_t now_ms, uint64_t *ms_out, char *err, size_t errlen)
{
    uint64_t v;
    int rc;

    if (text == NULL || *text == '\0') {
        set_err(err, errlen, "empty value");
        return -EINVAL;
    }
    /* Digits only: Unix milliseconds (so "0" is the epoch, not "now"). */
    if (tel_params_u64(text, &v) == 0) {
        *ms_out = v;
        return 0;
    }
    /* A date first: "2020-..." must not be tried as a duration. */
    if (strlen(text) >= 10 && text[4] == '-' && text[7] == '-') {
        rc = tel_params_rfc3339(text, &v);
        if (rc == -ERANGE) {
            set_err(err, errlen, "timestamp \"%.*s\" is before 1970", ECHO_MAX, text);
            return -EINVAL;
        }
        if (rc == 0) {
            *ms_out = v;
            return 0;
        }
        set_err(err, errlen, "invalid RFC 3339 timestamp \"%.*s\"", ECHO_MAX, text);
        return -EINVAL;
    }
    if (text[0] == '-') {
        set_err(err, errlen, "duration must not be negative: \"%.*s\"", ECHO_MAX, text);
        return -EINVAL;
    }
    uint64_t ns;
    rc = s2_duration_parse(text, &ns);
    if (rc == 0) {
        uint64_t ago = ns / 1000000;
        *ms_out = ago >= now_ms ? 0 : now_ms - ago;
        return 0;
    }
    if (rc == -ERANGE) {
        set_err(err, errlen, "duration \"%.*s\" is too large", ECHO_MAX, text);
        return -EINVAL;
    }
    set_err(err, errlen,
            "invalid time value \"%.*s\": want an RFC 3339 timestamp, a duration like 5m, or "
            "Unix milliseconds",
            ECHO_MAX, text);
    return -EINVAL;
}

/* Add the comma-separated categories of value to *mask. */
static int parse_categories(const char *value, uint32_t *mask, char *err, size_t errlen)
{
    const char *p = value;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        uint32_t bit = tel_params_category_bit(p, len);
        if (bit == 0) {
            if (len == 0)
                set_err(err, errlen, "category: empty value");
            else
                set_err(err, errlen,
                        "category: unknown category \"%.*s\" (want one of console, network, page, "
                        "interaction, control, connection, system, screenshot, captcha, monitor)",
                        (int)(len > ECHO_MAX ? ECHO_MAX : len), p);
            return -EINVAL;
        }
        *mask |= bit;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

int tel_params_parse(const char *query, uint64_t now_ms, struct tel_read_params *out, char *err,
                     size_t errlen)
{
    struct evkeyvalq q;
    const char *offset = NULL, *since = NULL, *until = NULL, *limit = NULL;
    uint32_t categories = 0;
    int rc = 0;

    TAILQ_INIT(&q);
    memset(out, 0, sizeof *out);
    /* Decoding "%00" would cut a value short without a trace. */
    if (query != NULL && strstr(query, "%00") != NULL) {
        set_err(err, errlen, "query: NUL byte in the query string");
        return -EINVAL;
    }
    if (query != NULL && evhttp_parse_query_str(query, &q) != 0) {
        set_err(err, errlen, "query: malformed query string (want name=value pairs joined by &)");
        rc = -EINVAL;
        goto out;
    }

    for (struct evkeyval *kv = TAILQ_FIRST(&q); kv != NULL; kv = TAILQ_NEXT(kv, next)) {
        const char **slot = NULL;
        if (strcmp(kv->key, "offset") == 0)
            slot = &offset;
        else if (strcmp(kv->key, "since") == 0)
            slot = &since;
        else if (strcmp(kv->key, "until") == 0)
            slot = &until;
        else if (strcmp(kv->key, "limit") == 0)
            slot = &limit;
        if (slot != NULL) {
            /* Which of two values was meant is a guess; refuse it. */
            if (*slot != NULL) {
                set_err(err, errlen, "%s: given more than once", kv->key);
                rc = -EINVAL;
                goto out;
            }
            *slot = kv->value;
        } else if (strcmp(kv->key, "category") == 0) {
            rc = parse_categories(kv->value, &categories, err, errlen);
            if (rc != 0)
                goto out;
        }
        /* Unknown parameters are ignored, as S2 and the reference do. */
    }

    if (offset != NULL && tel_params_u64(offset, &out->offset) != 0) {
        set_err(err, errlen,
                "offset: want an unsigned integer (the X-Next-Offset of a previous page), got "
                "\"%.*s\"",
                ECHO_MAX, offset);
        rc = -EINVAL;
        goto out;
    }
    if (tel_params_limit(limit, &out->limit) != 0) {
        set_err(err, errlen, "limit: want an integer, got \"%.*s\"", ECHO_MAX, limit);
        rc = -EINVAL;
        goto out;
    }
    char why[256];
    /* since is checked even when offset makes it moot: a bad value is an
     * error whatever else the query holds. */
    if (since != NULL && tel_params_time(since, now_ms, &out->since_ms, why, sizeof why) != 0) {
        set_err(err, errlen, "since: %s", why);
        rc = -EINVAL;
        goto out;
    }
    if (until != NULL) {
        if (tel_params_time(until, now_ms, &out->until_ms, why, sizeof why) != 0) {
            set_err(err, errlen, "until: %s", why);
            rc = -EINVAL;
            goto out;
        }
        out->has_until = 1;
    }

    if (offset != NULL) {
        out->start = TEL_START_OFFSET;
    } else if (since != NULL) {
        out->start = TEL_START_TIMESTAMP;
        if (out->has_until && out->since_ms >= out->until_ms) {
            set_err(err, errlen, "since must be before until (since %llu ms, until %llu ms)",
                    (unsigned long long)out->since_ms, (unsigned long long)out->until_ms);
            rc = -EINVAL;
            goto out;
        }
    } else {
        out->start = TEL_START_OLDEST;
    }
    out->categories = categories;

out:
    evhttp_clear_headers(&q);
    return rc;
}
