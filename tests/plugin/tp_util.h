/* tp_util.h - small helpers shared by the plugin test suites. */
#ifndef TP_UTIL_H
#define TP_UTIL_H

#include <stddef.h>

struct evbuffer;

/* The lines of FIXTURES_DIR/events/<name> (empty lines skipped). The array
 * and its strings are malloc'd: free with tp_lines_free. Fails the test when
 * the file cannot be read. */
char **tp_fixture_lines(const char *name, size_t *n);
void tp_lines_free(char **lines, size_t n);

/* A NUL-terminated malloc'd copy of an evbuffer's bytes (drained). */
char *tp_evbuffer_str(struct evbuffer *b);

#endif /* TP_UTIL_H */
