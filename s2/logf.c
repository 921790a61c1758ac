/* logf.c - printf-style logging into a log callback. */
#include "s2/logf.h"

#include <stdarg.h>
#include <stdio.h>

void s2_logf(void (*fn)(int level, const char *msg, void *arg), void *arg, int level,
             const char *fmt, ...)
{
    if (fn == NULL)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fn(level, line, arg);
}
