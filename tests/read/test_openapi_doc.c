/*
 * test_openapi_doc.c - the OpenAPI document compiled into the plugin: it is
 * byte for byte plugin/openapi.json, OpenAPI 3.1, and names every route,
 * operation id, parameter, status code and header of the contract.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "openapi.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static cJSON *doc_json(void)
{
    size_t len;
    const char *doc = tel_openapi_document(&len);
    cJSON *j = cJSON_ParseWithLength(doc, len);
    cr_assert_not_null(j, "the embedded document is not JSON");
    return j;
}

static cJSON *op(cJSON *doc, const char *path, const char *method)
{
    cJSON *p = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(doc, "paths"), path);
    cr_assert_not_null(p, "path %s missing", path);
    cJSON *o = cJSON_GetObjectItemCaseSensitive(p, method);
    cr_assert_not_null(o, "%s %s missing", method, path);
    return o;
}

static cJSON *param(cJSON *doc, cJSON *o, const char *in, const char *name)
{
    cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(o, "parameters"))
    {
        cJSON *ref = cJSON_GetObjectItem(it, "$ref");
        cJSON *pm = it;
        if (cJSON_IsString(ref)) {
            const char *leaf = strrchr(ref->valuestring, '/') + 1;
            pm = cJSON_GetObjectItem(
                cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "components"), "parameters"), leaf);
        }
        if (strcmp(cJSON_GetObjectItem(pm, "in")->valuestring, in) == 0 &&
            strcmp(cJSON_GetObjectItem(pm, "name")->valuestring, name) == 0)
            return pm;
    }
    cr_assert_fail("parameter %s in %s missing", name, in);
    return NULL;
}

static cJSON *response(cJSON *o, const char *status)
{
    cJSON *r = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "responses"), status);
    cr_assert_not_null(r, "response %s missing", status);
    return r;
}

Test(openapi_doc, embedded_equals_source)
{
    size_t flen, elen;
    char *file = slurp(getenv("OPENAPI_JSON"), &flen);
    const char *emb = tel_openapi_document(&elen);
    cr_assert_eq(elen, flen, "plugin/openapi.inc is stale: run tests/read/openapi-embed.py");
    cr_assert_eq(memcmp(emb, file, flen), 0, "plugin/openapi.inc is stale");
    free(file);
}

Test(openapi_doc, routes_and_operation_ids)
{
    cJSON *doc = doc_json();
    cr_assert_str_eq(cJSON_GetObjectItem(doc, "openapi")->valuestring, "3.1.0");
    struct {
        const char *path, *method, *id;
    } ops[] = {
        {"/telemetry", "get", "GetTelemetry"},
        {"/telemetry", "put", "PutTelemetry"},
        {"/telemetry", "patch", "PatchTelemetry"},
        {"/telemetry/events", "post", "PublishTelemetryEvent"},
        {"/telemetry/events", "get", "ReadTelemetryEvents"},
        {"/telemetry/stream", "get", "StreamTelemetryEvents"},
        {TEL_OPENAPI_PATH, "get", TEL_OPENAPI_OPERATION_ID},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        cJSON *o = op(doc, ops[i].path, ops[i].method);
        cr_assert_str_eq(cJSON_GetObjectItem(o, "operationId")->valuestring, ops[i].id);
    }
    cJSON_Delete(doc);
}

Test(openapi_doc, read_route_contract)
{
    cJSON *doc = doc_json();
    cJSON *o = op(doc, "/telemetry/events", "get");
    const char *names[] = {"offset", "since", "until", "limit", "category"};
    for (size_t i = 0; i < 5; i++)
        param(doc, o, "query", names[i]);
    cJSON *limit = cJSON_GetObjectItem(param(doc, o, "query", "limit"), "schema");
    cr_assert_eq(cJSON_GetObjectItem(limit, "default")->valueint, 100);
    cr_assert_eq(cJSON_GetObjectItem(limit, "minimum")->valueint, 1);
    cr_assert_eq(cJSON_GetObjectItem(limit, "maximum")->valueint, 1000);
    cJSON *cat = param(doc, o, "query", "category");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(cat, "explode")));
    const char *statuses[] = {"200", "400", "502", "503", "504"};
    for (size_t i = 0; i < 5; i++)
        response(o, statuses[i]);
    cJSON *h = cJSON_GetObjectItem(response(o, "200"), "headers");
    cr_assert_not_null(cJSON_GetObjectItem(h, "X-Has-More"));
    cr_assert_not_null(cJSON_GetObjectItem(h, "X-Next-Offset"));
    cr_assert_not_null(cJSON_GetObjectItem(h, "Link"));
    cJSON_Delete(doc);
}

Test(openapi_doc, other_routes_contract)
{
    cJSON *doc = doc_json();
    response(op(doc, "/telemetry", "get"), "200");
    response(op(doc, "/telemetry", "get"), "404");
    response(op(doc, "/telemetry", "put"), "200");
    response(op(doc, "/telemetry", "put"), "201");
    response(op(doc, "/telemetry", "put"), "400");
    response(op(doc, "/telemetry", "patch"), "200");
    response(op(doc, "/telemetry", "patch"), "400");
    response(op(doc, "/telemetry", "patch"), "404");
    cJSON *pub = op(doc, "/telemetry/events", "post");
    const char *pst[] = {"200", "204", "400", "413"};
    for (size_t i = 0; i < 4; i++)
        response(pub, pst[i]);
    cJSON *st = op(doc, "/telemetry/stream", "get");
    param(doc, st, "header", "Last-Event-ID");
    param(doc, st, "query", "replay");
    cJSON *h = cJSON_GetObjectItem(response(st, "200"), "headers");
    cr_assert_not_null(cJSON_GetObjectItem(h, "Cache-Control"));
    cr_assert_not_null(cJSON_GetObjectItem(h, "X-Accel-Buffering"));
    cr_assert_not_null(cJSON_GetObjectItem(h, "X-SSE-Content-Type"));
    cr_assert_not_null(cJSON_GetObjectItem(cJSON_GetObjectItem(response(st, "200"), "content"),
                                           "text/event-stream"));
    /* the ten categories, in enum order */
    cJSON *cats = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "components"), "schemas"),
                            "TelemetryEventCategory"),
        "enum");
    const char *want[] = {"console",    "network", "page",       "interaction", "control",
                          "connection", "system",  "screenshot", "captcha",     "monitor"};
    cr_assert_eq(cJSON_GetArraySize(cats), 10);
    for (int i = 0; i < 10; i++)
        cr_assert_str_eq(cJSON_GetArrayItem(cats, i)->valuestring, want[i]);
    cJSON_Delete(doc);
}
