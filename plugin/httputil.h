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

/* The request body, made contiguous. *body is borrowed from the request
 * (valid until the reply is sent); an empty body gives len 0. Returns 0,
 * -EFBIG when the body is over max bytes, -ENOMEM. */
int tel_http_body(struct evhttp_request *req, size_t max, const char **body, size_t *len);

/* The reason phrase of a status ("OK", "Bad Request", ...). */
const char *tel_http_reason(int status);

#endif /* TEL_HTTPUTIL_H */
