/* tp_util.c - fixture file reading for the plugin suites. */
#include "tp_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <event2/buffer.h>

char **tp_fixture_lines(const char *name, size_t *n)
{
    const char *dir = getenv("FIXTURES_DIR");
    cr_assert(dir != NULL && dir[0] != '\0', "FIXTURES_DIR is not set");
    char path[4096];
    snprintf(path, sizeof path, "%s/events/%s", dir, name);
    FILE *f = fopen(path, "r");
    cr_assert(f != NULL, "cannot open fixture %s", path);
    char **lines = NULL;
    size_t count = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            lines = realloc(lines, cap * sizeof *lines);
            cr_assert(lines != NULL);
        }
        lines[count++] = strdup(line);
    }
    free(line);
    fclose(f);
    cr_assert(count > 0, "fixture %s is empty", path);
    *n = count;
    return lines;
}

void tp_lines_free(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

char *tp_evbuffer_str(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    cr_assert(s != NULL);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}
