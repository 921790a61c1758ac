/*
 * log.h - the host's levelled logging: one line per call, to stderr.
 *
 * Levels are AGENT_LOG_DEBUG..AGENT_LOG_ERROR of agent/plugin.h. Lines look
 * like "2026-06-11T12:00:00.123Z INFO  agent: listening on 127.0.0.1:10001";
 * the origin is "agent" for the host and the plugin's name for plugins.
 */
#ifndef AGENT_HOST_LOG_H
#define AGENT_HOST_LOG_H

#include <agent/plugin.h>

#include <stdarg.h>

/* Parse "debug", "info", "warn"/"warning", "error" (any case) into *level.
 * Returns 0 or -EINVAL. */
int hlog_parse_level(const char *s, int *level);

/* Lines below level are dropped. The default is AGENT_LOG_INFO. */
void hlog_set_level(int level);

/* 1 when lines at level are written: lets callers skip building them. */
int hlog_enabled(int level);

/* Log one line from the host. Embedded newlines become spaces; lines are
 * cut at 4 KiB. */
void hlog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Log one line on behalf of origin (borrowed; NULL means "agent"). */
void hlog_v(int level, const char *origin, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif /* AGENT_HOST_LOG_H */
