/*
 * httputil.h - small reply helpers shared by the plugin's routes.
 *
 * Every error body is JSON {"message": ...}, Content-Type application/json.
 */
#ifndef TEL_HTTPUTIL_H
#define TEL_HTTPUTIL_H

#include <stddef.h>

struct evhttp_request;

/* Reply status with {"message": <formatted text>}. */
void tel_http_error(struct evhttp_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reply status with body (len bytes, borrowed) as application/json. */
void tel_http_json(struct evhttp_request *req, int status, const char *body, size_t len);

/* The reason phrase of a status ("OK", "Bad Request", ...). */
const char *tel_http_reason(int status);

#endif /* TEL_HTTPUTIL_H */
