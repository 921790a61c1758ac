/* httputil.c - JSON replies for the plugin's routes. */
#include "httputil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>

const char *tel_http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "";
    }
}

void tel_http_json(struct evhttp_request *req, int status, const char *body, size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    if (buf != NULL && len > 0)
        evbuffer_add(buf, body, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, status, tel_http_reason(status), buf);
    if (buf != NULL)
        evbuffer_free(buf);
}

void tel_http_error(struct evhttp_request *req, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    /* cJSON escapes the message; a fixed fallback keeps the body JSON when
     * memory is short. */
    cJSON *obj = cJSON_CreateObject();
    char *text = NULL;
    if (obj != NULL && cJSON_AddStringToObject(obj, "message", msg) != NULL)
        text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (text != NULL) {
        tel_http_json(req, status, text, strlen(text));
        cJSON_free(text);
    } else {
        static const char fallback[] = "{\"message\":\"out of memory\"}";
        tel_http_json(req, status, fallback, sizeof fallback - 1);
    }
}

int tel_http_body(struct evhttp_request *req, size_t max, const char **body, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = in != NULL ? evbuffer_get_length(in) : 0;
    if (n > max)
        return -EFBIG;
    *len = n;
    if (n == 0) {
        *body = "";
        return 0;
    }
    *body = (const char *)evbuffer_pullup(in, -1);
    return *body != NULL ? 0 : -ENOMEM;
}
