/*
 * config.h - the host's configuration: the process environment, overlaid by
 * KEY=VALUE lines of an env file (--env FILE). A key set in the file wins
 * over the same key in the environment.
 *
 * Env file syntax, one assignment per line:
 *   # comment            blank lines and lines starting with '#' are skipped
 *   KEY=value            value up to the end of the line, blanks trimmed;
 *                        " #" starts a trailing comment in unquoted values
 *   export KEY=value     "export " is accepted and ignored
 *   KEY="a \"b\" \n"     double quotes: \" \\ \n \t \r escapes
 *   KEY='raw $text'      single quotes: taken literally
 * KEY is [A-Za-z_][A-Za-z0-9_]*. The file is at most 1 MiB.
 */
#ifndef AGENT_HOST_CONFIG_H
#define AGENT_HOST_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct config;

/* A configuration with no file overlay. *out is caller-owned
 * (config_free). Returns 0 or -ENOMEM. */
int config_new(struct config **out);

/* Free c and every string it handed out. NULL is a no-op. */
void config_free(struct config *c);

/* Overlay the assignments of the env file at path. On error returns -errno
 * (-ENOENT, -EINVAL for a syntax error, -EFBIG) and writes one line into
 * err: "FILE:LINE: reason". Earlier overlays stay in place. */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);

/* Like config_load_file, for text (len bytes) named origin in messages. */
int config_load_text(struct config *c, const char *text, size_t len, const char *origin, char *err,
                     size_t errlen);

/* The value of key: from the overlay, else the environment, else NULL.
 * Borrowed: valid until config_free (the host never changes its
 * environment). */
const char *config_get(const struct config *c, const char *key);

/* Parsers of typed values. Each returns 0 or -EINVAL (-ERANGE when too
 * big) and writes *out only on success. */
/* on/off, true/false, yes/no, 1/0 (any case). */
int config_parse_bool(const char *s, int *out);
/* A Go duration ("10s", "1m30s", "250ms", "1.5s", "2h"; units ns us ms s m
 * h) or a bare number of milliseconds; the result in milliseconds. */
int config_parse_duration_ms(const char *s, uint64_t *out);
/* A byte count with an optional binary suffix: "4096", "64KiB", "4MiB",
 * "1GiB" (K/KB/M/MB/G/GB are binary too). */
int config_parse_size(const char *s, uint64_t *out);

/* Typed lookups: def when key is unset or empty; on a bad value return
 * -EINVAL and write "KEY: 'value' is not ..." into err. */
int config_get_bool(const struct config *c, const char *key, int def, int *out, char *err,
                    size_t errlen);
int config_get_duration_ms(const struct config *c, const char *key, uint64_t def, uint64_t *out,
                           char *err, size_t errlen);
int config_get_size(const struct config *c, const char *key, uint64_t def, uint64_t *out, char *err,
                    size_t errlen);
/* A TCP port 0..65535 (0: any free port). */
int config_get_port(const struct config *c, const char *key, int def, int *out, char *err,
                    size_t errlen);

#endif /* AGENT_HOST_CONFIG_H */
