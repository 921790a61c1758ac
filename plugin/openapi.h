/*
 * openapi.h - the OpenAPI 3.1 document of the telemetry routes.
 *
 * The document (plugin/openapi.json) is compiled into the plugin and served
 * as is by GET /telemetry/openapi.json.
 */
#ifndef TEL_OPENAPI_H
#define TEL_OPENAPI_H

#include <stddef.h>

struct evhttp_request;

/* The route path the document is served at. */
#define TEL_OPENAPI_PATH "/telemetry/openapi.json"
/* Its operation id (PascalCase, as the plugin registers it). */
#define TEL_OPENAPI_OPERATION_ID "GetTelemetryOpenApi"

/* The document: static, len bytes of JSON. */
const char *tel_openapi_document(size_t *len);

/* Route handler for GET /telemetry/openapi.json; arg is unused. */
void tel_openapi_handle(struct evhttp_request *req, void *arg);

#endif /* TEL_OPENAPI_H */
