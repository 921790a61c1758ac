/*
 * s2/logf.h - printf-style logging into a log callback, shared by the S2
 * client modules and s2-local (both take a (level, message, arg) sink).
 */
#ifndef S2_LOGF_H
#define S2_LOGF_H

/* Format one line (at most 511 bytes; longer ones are cut) and pass it to
 * fn(level, line, arg). A NULL fn logs nothing. */
void s2_logf(void (*fn)(int level, const char *msg, void *arg), void *arg, int level,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif /* S2_LOGF_H */
