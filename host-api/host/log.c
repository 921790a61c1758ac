/*
 * log.c - levelled one-line logging to stderr.
 */
#include "log.h"

#include <agent/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define HLOG_LINE_MAX 4096

static int hlog_level = AGENT_LOG_INFO;

int hlog_parse_level(const char *s, int *level)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {{"debug", AGENT_LOG_DEBUG},
                 {"info", AGENT_LOG_INFO},
                 {"warn", AGENT_LOG_WARN},
                 {"warning", AGENT_LOG_WARN},
                 {"error", AGENT_LOG_ERROR}};
    for (size_t i = 0; s != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *level = names[i].level;
            return 0;
        }
    }
    return -EINVAL;
}

void hlog_set_level(int level)
{
    hlog_level = level;
}

static const char *level_name(int level)
{
    switch (level) {
    case AGENT_LOG_DEBUG:
        return "DEBUG";
    case AGENT_LOG_INFO:
        return "INFO ";
    case AGENT_LOG_WARN:
        return "WARN ";
    default:
        return "ERROR";
    }
}

int hlog_enabled(int level)
{
    return level >= hlog_level;
}

void hlog_v(int level, const char *origin, const char *fmt, va_list ap)
{
    char line[HLOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int w;

    if (level < hlog_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    w = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s: ", ts.tv_nsec / 1000000L,
                 level_name(level), origin ? origin : "agent");
    if (w > 0)
        n += (size_t)w;
    if (n < sizeof(line)) {
        size_t start = n;
        w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        if (w > 0)
            n += (size_t)w;
        if (n >= sizeof(line) - 1) {
            n = sizeof(line) - 2;
            memcpy(line + n - 3, "...", 3);
        }
        /* One call, one line: a plugin's newlines must not forge lines. */
        for (size_t i = start; i < n; i++) {
            if (line[i] == '\n' || line[i] == '\r')
                line[i] = ' ';
        }
        while (n > start && line[n - 1] == ' ')
            n--;
    }
    line[n++] = '\n';
    /* A single write keeps lines whole when several processes share stderr. */
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to report it */
    }
}

void hlog(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hlog_v(level, NULL, fmt, ap);
    va_end(ap);
}
