/* openapi.c - serve the OpenAPI document compiled into the plugin. */
#include "openapi.h"

#include <event2/http.h>

#include "httputil.h"
#include "openapi.inc"

const char *tel_openapi_document(size_t *len)
{
    if (len != NULL)
        *len = sizeof tel_openapi_json - 1;
    return tel_openapi_json;
}

void tel_openapi_handle(struct evhttp_request *req, void *arg)
{
    size_t len;
    const char *doc = tel_openapi_document(&len);
    (void)arg;
    tel_http_json(req, 200, doc, len);
}
