/*
 * config.c - environment + env-file lookup and typed value parsing.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONFIG_FILE_MAX (1u << 20)
#define CONFIG_ENTRIES_MAX 4096

struct config_entry {
    char *key;
    char *value;
};

struct config {
    struct config_entry *e;
    size_t n, cap;
};

int config_new(struct config **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

void config_free(struct config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].key);
        free(c->e[i].value);
    }
    free(c->e);
    free(c);
}

/* Set key (klen bytes) to value (owned, taken over). */
static int config_set(struct config *c, const char *key, size_t klen, char *value)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strlen(c->e[i].key) == klen && memcmp(c->e[i].key, key, klen) == 0) {
            free(c->e[i].value);
            c->e[i].value = value;
            return 0;
        }
    }
    if (c->n == CONFIG_ENTRIES_MAX) {
        free(value);
        return -ENOSPC;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct config_entry *e = realloc(c->e, cap * sizeof(*e));
        if (e == NULL) {
            free(value);
            return -ENOMEM;
        }
        c->e = e;
        c->cap = cap;
    }
    c->e[c->n].key = strndup(key, klen);
    if (c->e[c->n].key == NULL) {
        free(value);
        return -ENOMEM;
    }
    c->e[c->n].value = value;
    c->n++;
    return 0;
}

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Parse the value that starts at p (line ends at end). On success *out is a
 * new string. why is set on a syntax error. */
static int parse_value(const char *p, const char *end, char **out, const char **why)
{
    char *v = malloc((size_t)(end - p) + 1);
    size_t n = 0;
    int rc = -EINVAL;

    if (v == NULL)
        return -ENOMEM;
    if (p < end && *p == '"') {
        p++;
        while (p < end && *p != '"') {
            if (*p == '\\' && p + 1 < end) {
                p++;
                switch (*p) {
                case 'n':
                    v[n++] = '\n';
                    break;
                case 't':
                    v[n++] = '\t';
                    break;
                case 'r':
                    v[n++] = '\r';
                    break;
                default:
                    v[n++] = *p;
                }
                p++;
            } else {
                v[n++] = *p++;
            }
        }
        if (p == end) {
            *why = "unterminated double quote";
            goto out;
        }
        p++;
    } else if (p < end && *p == '\'') {
        const char *q = memchr(p + 1, '\'', (size_t)(end - p - 1));
        if (q == NULL) {
            *why = "unterminated single quote";
            goto out;
        }
        memcpy(v, p + 1, (size_t)(q - p - 1));
        n = (size_t)(q - p - 1);
        p = q + 1;
    } else {
        const char *stop = end;
        for (const char *q = p; q < end; q++) {
            if (*q == '#' && (q == p || is_blank(q[-1]))) {
                stop = q;
                break;
            }
        }
        while (stop > p && is_blank(stop[-1]))
            stop--;
        memcpy(v, p, (size_t)(stop - p));
        n = (size_t)(stop - p);
        p = end;
    }
    /* After a quoted value only blanks and a comment may follow. */
    while (p < end && is_blank(*p))
        p++;
    if (p < end && *p != '#') {
        *why = "unexpected text after the quoted value";
        goto out;
    }
    v[n] = '\0';
    *out = v;
    v = NULL;
    rc = 0;
out:
    free(v);
    return rc;
}

int config_load_text(struct config *c, const char *text, size_t len, const char *origin, char *err,
                     size_t errlen)
{
    const char *p = text, *end = text + len;
    int lineno = 0;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *why = NULL;
        char *value = NULL;
        int rc;

        lineno++;
        if (le > p && le[-1] == '\r')
            le--;
        while (p < le && is_blank(*p))
            p++;
        if (p == le || *p == '#')
            goto next;
        if ((size_t)(le - p) > 7 && strncmp(p, "export", 6) == 0 && is_blank(p[6])) {
            p += 7;
            while (p < le && is_blank(*p))
                p++;
        }
        const char *k = p;
        if (p < le && (isalpha((unsigned char)*p) || *p == '_')) {
            while (p < le && (isalnum((unsigned char)*p) || *p == '_'))
                p++;
        }
        size_t klen = (size_t)(p - k);
        while (p < le && is_blank(*p))
            p++;
        if (klen == 0 || p == le || *p != '=') {
            snprintf(err, errlen, "%s:%d: expected KEY=VALUE", origin, lineno);
            return -EINVAL;
        }
        p++;
        while (p < le && is_blank(*p))
            p++;
        rc = parse_value(p, le, &value, &why);
        if (rc == -EINVAL) {
            snprintf(err, errlen, "%s:%d: %s", origin, lineno, why);
            return rc;
        }
        if (rc == 0)
            rc = config_set(c, k, klen, value);
        if (rc != 0) {
            snprintf(err, errlen, "%s:%d: %s", origin, lineno, strerror(-rc));
            return rc;
        }
    next:
        p = eol ? eol + 1 : end;
    }
    return 0;
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    int rc;

    if (f == NULL) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f)) {
        rc = -EIO;
        snprintf(err, errlen, "%s: read error", path);
        goto out;
    }
    if (n > CONFIG_FILE_MAX) {
        rc = -EFBIG;
        snprintf(err, errlen, "%s: larger than %u bytes", path, CONFIG_FILE_MAX);
        goto out;
    }
    rc = config_load_text(c, buf, n, path, err, errlen);
out:
    free(buf);
    fclose(f);
    return rc;
}

const char *config_get(const struct config *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->e[i].key, key) == 0)
            return c->e[i].value;
    }
    return getenv(key);
}

int config_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"on", "true", "yes", "1"};
    static const char *const no[] = {"off", "false", "no", "0"};
    for (size_t i = 0; s != NULL && i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -EINVAL;
}

int config_parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        double ms;
    } units[] = {{"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"ms", 1.0},
                 {"s", 1e3},   {"m", 6e4},   {"h", 3.6e6}};
    const char *p = s;
    double total = 0;

    if (s == NULL || *s == '\0')
        return -EINVAL;
    /* A bare number is milliseconds. */
    {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (*end == '\0' && isdigit((unsigned char)*s)) {
            if (errno == ERANGE)
                return -ERANGE;
            *out = v;
            return 0;
        }
    }
    while (*p != '\0') {
        char *end;
        if (!isdigit((unsigned char)*p) && *p != '.')
            return -EINVAL;
        double v = strtod(p, &end);
        if (end == p)
            return -EINVAL;
        p = end;
        size_t best = 0;
        int found = -1;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t ul = strlen(units[i].unit);
            /* Longest match: "ms" before "m". */
            if (strncmp(p, units[i].unit, ul) == 0 && ul > best) {
                best = ul;
                found = (int)i;
            }
        }
        if (found < 0)
            return -EINVAL;
        p += best;
        total += v * units[found].ms;
    }
    if (total > 1e15)
        return -ERANGE;
    *out = (uint64_t)total;
    return 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } sfx[] = {{"", 1},           {"B", 1},           {"K", 1u << 10},    {"KB", 1u << 10},
               {"KiB", 1u << 10}, {"M", 1u << 20},    {"MB", 1u << 20},   {"MiB", 1u << 20},
               {"G", 1ull << 30}, {"GB", 1ull << 30}, {"GiB", 1ull << 30}};
    char *end;

    if (s == NULL || !isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    while (is_blank(*end))
        end++;
    for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
        if (strcasecmp(end, sfx[i].suffix) == 0) {
            if (v > UINT64_MAX / sfx[i].mult)
                return -ERANGE;
            *out = v * sfx[i].mult;
            return 0;
        }
    }
    return -EINVAL;
}

int config_get_bool(const struct config *c, const char *key, int def, int *out, char *err,
                    size_t errlen)
{
    const char *v = config_get(c, key);
    if (v == NULL || *v == '\0') {
        *out = def;
        return 0;
    }
    if (config_parse_bool(v, out) != 0) {
        snprintf(err, errlen, "%s: '%s' is not on/off/true/false/1/0", key, v);
        return -EINVAL;
    }
    return 0;
}

int config_get_duration_ms(const struct config *c, const char *key, uint64_t def, uint64_t *out,
                           char *err, size_t errlen)
{
    const char *v = config_get(c, key);
    if (v == NULL || *v == '\0') {
        *out = def;
        return 0;
    }
    if (config_parse_duration_ms(v, out) != 0) {
        snprintf(err, errlen, "%s: '%s' is not a duration (e.g. 10s, 500ms, or milliseconds)", key,
                 v);
        return -EINVAL;
    }
    return 0;
}

int config_get_size(const struct config *c, const char *key, uint64_t def, uint64_t *out, char *err,
                    size_t errlen)
{
    const char *v = config_get(c, key);
    if (v == NULL || *v == '\0') {
        *out = def;
        return 0;
    }
    if (config_parse_size(v, out) != 0) {
        snprintf(err, errlen, "%s: '%s' is not a size (e.g. 4MiB, 65536)", key, v);
        return -EINVAL;
    }
    return 0;
}

int config_get_port(const struct config *c, const char *key, int def, int *out, char *err,
                    size_t errlen)
{
    const char *v = config_get(c, key);
    char *end;
    if (v == NULL || *v == '\0') {
        *out = def;
        return 0;
    }
    errno = 0;
    long p = strtol(v, &end, 10);
    if (!isdigit((unsigned char)*v) || *end != '\0' || errno != 0 || p < 0 || p > 65535) {
        snprintf(err, errlen, "%s: '%s' is not a port (0-65535)", key, v);
        return -EINVAL;
    }
    *out = (int)p;
    return 0;
}
