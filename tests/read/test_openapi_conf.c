/*
 * test_openapi_conf.c - the OpenAPI document against what the routes really
 * answer. The agent serves the document; every route of it is called with
 * its parameters, good and bad, and every answer must be documented: its
 * status among the operation's responses, its content type and body as the
 * response's schema says, its required headers present with their
 * documented values. Every documented status must be seen (the S2 failure
 * ones are covered by the read_e2e suite), the methods of each path must be
 * exactly those the agent allows, and the operation ids in api_call events
 * must be the document's.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "read_util.h"

static struct ru_s2 s2;
static struct ru_agent agent;
static cJSON *doc;

/* Statuses exercised elsewhere (test_e2e.c: S2 down, S2 timeout, shutdown
 * with a pending read) or only during host shutdown. */
static const char *const elsewhere[] = {
    "ReadTelemetryEvents 502",
    "ReadTelemetryEvents 503",
    "ReadTelemetryEvents 504",
    "StreamTelemetryEvents 503",
};

#define MAX_SEEN 128
static char seen[MAX_SEEN][64];
static size_t nseen;

static void teardown(void)
{
    cJSON_Delete(doc);
    doc = NULL;
    ru_agent_kill(&agent);
    ru_s2_stop(&s2);
}

/* ---- a small JSON Schema check (the keywords the document uses) ---------- */

static cJSON *resolve(cJSON *node)
{
    cJSON *ref = cJSON_GetObjectItem(node, "$ref");
    if (!cJSON_IsString(ref))
        return node;
    cr_assert(strncmp(ref->valuestring, "#/", 2) == 0, "non-local $ref %s", ref->valuestring);
    char path[256];
    snprintf(path, sizeof path, "%s", ref->valuestring + 2);
    cJSON *at = doc;
    for (char *save = NULL, *tok = strtok_r(path, "/", &save); tok != NULL;
         tok = strtok_r(NULL, "/", &save))
        at = cJSON_GetObjectItemCaseSensitive(at, tok);
    cr_assert_not_null(at, "unresolved $ref %s", ref->valuestring);
    return resolve(at);
}

static void validate(cJSON *schema, cJSON *v, const char *where)
{
    schema = resolve(schema);
    cJSON *type = cJSON_GetObjectItem(schema, "type");
    if (cJSON_IsString(type)) {
        const char *t = type->valuestring;
        int ok = strcmp(t, "object") == 0    ? cJSON_IsObject(v)
                 : strcmp(t, "array") == 0   ? cJSON_IsArray(v)
                 : strcmp(t, "string") == 0  ? cJSON_IsString(v)
                 : strcmp(t, "boolean") == 0 ? cJSON_IsBool(v)
                 : strcmp(t, "number") == 0  ? cJSON_IsNumber(v)
                 : strcmp(t, "integer") == 0
                     ? cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble
                     : 0;
        cr_assert(ok, "%s: not of type %s", where, t);
    }
    cJSON *en = cJSON_GetObjectItem(schema, "enum");
    if (cJSON_IsArray(en)) {
        int found = 0;
        cJSON *e;
        cJSON_ArrayForEach(e, en) found |= cJSON_Compare(e, v, 1);
        cr_assert(found, "%s: not one of the enum", where);
    }
    cJSON *cst = cJSON_GetObjectItem(schema, "const");
    if (cst != NULL)
        cr_assert(cJSON_Compare(cst, v, 1), "%s: not the const", where);
    cJSON *min = cJSON_GetObjectItem(schema, "minimum");
    if (cJSON_IsNumber(min) && cJSON_IsNumber(v))
        cr_assert_geq(v->valuedouble, min->valuedouble, "%s: below minimum", where);
    cJSON *minlen = cJSON_GetObjectItem(schema, "minLength");
    if (cJSON_IsNumber(minlen) && cJSON_IsString(v))
        cr_assert_geq(strlen(v->valuestring), (size_t)minlen->valueint, "%s: too short", where);
    if (cJSON_IsObject(v)) {
        cJSON *req = cJSON_GetObjectItem(schema, "required"), *it;
        cJSON_ArrayForEach(it, req)
        {
            cr_assert(cJSON_GetObjectItemCaseSensitive(v, it->valuestring) != NULL,
                      "%s: required member %s missing", where, it->valuestring);
        }
        cJSON *props = cJSON_GetObjectItem(schema, "properties");
        cJSON *addl = cJSON_GetObjectItem(schema, "additionalProperties");
        cJSON_ArrayForEach(it, v)
        {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.%s", where, it->string);
            cJSON *ps = cJSON_GetObjectItemCaseSensitive(props, it->string);
            if (ps != NULL)
                validate(ps, it, sub);
            else if (cJSON_IsFalse(addl))
                cr_assert_fail("%s: member not allowed", sub);
            else if (cJSON_IsObject(addl))
                validate(addl, it, sub);
        }
    }
    if (cJSON_IsArray(v)) {
        cJSON *items = cJSON_GetObjectItem(schema, "items"), *it;
        int i = 0;
        if (items != NULL) {
            cJSON_ArrayForEach(it, v)
            {
                char sub[256];
                snprintf(sub, sizeof sub, "%s[%d]", where, i++);
                validate(items, it, sub);
            }
        }
    }
}

/* ---- responses against the document ---------------------------------- */

static cJSON *operation(const char *path, const char *method)
{
    cJSON *o = cJSON_GetObjectItem(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(doc, "paths"), path), method);
    cr_assert_not_null(o, "%s %s is not in the document", method, path);
    return o;
}

static void mark_seen(const char *op_id, long status)
{
    char key[64];
    snprintf(key, sizeof key, "%s %ld", op_id, status);
    for (size_t i = 0; i < nseen; i++) {
        if (strcmp(seen[i], key) == 0)
            return;
    }
    cr_assert_lt(nseen, MAX_SEEN);
    snprintf(seen[nseen++], sizeof seen[0], "%s", key);
}

/* The documented response of an answer; checks headers and body. */
static void conform(const char *path, const char *method, long status, const char *ctype,
                    const char *body, size_t body_len, const char *(*header)(void *, const char *),
                    void *hctx, int check_body)
{
    cJSON *o = operation(path, method);
    const char *op_id = cJSON_GetObjectItem(o, "operationId")->valuestring;
    char code[8];
    snprintf(code, sizeof code, "%ld", status);
    cJSON *resp = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(o, "responses"), code);
    cr_assert_not_null(resp, "%s %s answered %ld, which is not documented (%.200s)", method, path,
                       status, body);
    resp = resolve(resp);
    mark_seen(op_id, status);

    cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItem(resp, "headers"))
    {
        cJSON *hs = resolve(h);
        const char *val = header(hctx, h->string);
        if (cJSON_IsTrue(cJSON_GetObjectItem(hs, "required")))
            cr_assert_not_null(val, "%s %s %ld: header %s missing", method, path, status,
                               h->string);
        if (val == NULL)
            continue;
        cJSON *schema = resolve(cJSON_GetObjectItem(hs, "schema"));
        cJSON *cst = cJSON_GetObjectItem(schema, "const");
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(schema, "type"));
        if (cJSON_IsString(cst))
            cr_assert_str_eq(val, cst->valuestring, "%s %s: header %s", method, path, h->string);
        if (type != NULL && strcmp(type, "boolean") == 0)
            cr_assert(strcmp(val, "true") == 0 || strcmp(val, "false") == 0, "%s: %s", h->string,
                      val);
        if (type != NULL && strcmp(type, "integer") == 0)
            cr_assert(val[0] != '\0' && strspn(val, "0123456789") == strlen(val), "%s: %s",
                      h->string, val);
    }

    cJSON *content = cJSON_GetObjectItem(resp, "content");
    if (content == NULL) {
        cr_assert_eq(body_len, 0, "%s %s %ld: a body where none is documented", method, path,
                     status);
        return;
    }
    cr_assert_not_null(ctype, "%s %s %ld: no Content-Type", method, path, status);
    cJSON *media = NULL, *m;
    cJSON_ArrayForEach(m, content)
    {
        if (strncasecmp(ctype, m->string, strlen(m->string)) == 0)
            media = m;
    }
    cr_assert_not_null(media, "%s %s %ld: Content-Type %s is not documented", method, path, status,
                       ctype);
    if (check_body && strcmp(media->string, "application/json") == 0) {
        cJSON *v = cJSON_ParseWithLength(body, body_len);
        cr_assert_not_null(v, "%s %s %ld: body is not JSON: %.200s", method, path, status, body);
        char where[128];
        snprintf(where, sizeof where, "%s %s %ld body", method, path, status);
        validate(cJSON_GetObjectItem(media, "schema"), v, where);
        cJSON_Delete(v);
    }
}

static const char *resp_header(void *ctx, const char *name)
{
    return ts_resp_header(ctx, name);
}

static const char *sse_header(void *ctx, const char *name)
{
    return ts_sse_header(ctx, name);
}

/* Call path (with query) and check the answer against path's operation. */
static long call(const char *method, const char *path, const char *query, const char *body,
                 const char *const headers[], struct ts_resp *out)
{
    char url[1024];
    static const char *const json_hdr[] = {"Content-Type: application/json", NULL};
    snprintf(url, sizeof url, "%s%s%s%s", agent.base, path, query ? "?" : "", query ? query : "");
    cr_assert_eq(ts_http(method, url, body, body ? strlen(body) : 0,
                         headers != NULL ? headers
                         : body          ? json_hdr
                                         : NULL,
                         out),
                 0, "%s %s failed", method, url);
    char lower[16];
    size_t i = 0;
    for (; method[i] != '\0' && i < sizeof lower - 1; i++)
        lower[i] = (char)(method[i] | 0x20);
    lower[i] = '\0';
    conform(path, lower, out->status, ts_resp_header(out, "Content-Type"), out->body, out->body_len,
            resp_header, out, 1);
    return out->status;
}

static void expect(const char *method, const char *path, const char *query, const char *body,
                   long want)
{
    struct ts_resp r;
    long st = call(method, path, query, body, NULL, &r);
    cr_assert_eq(st, want, "%s %s?%s: %ld %s", method, path, query ? query : "", st, r.body);
    ts_resp_free(&r);
}

/* A 400 whose message names the parameter. */
static void expect_400(const char *path, const char *query, const char *param)
{
    struct ts_resp r;
    cr_assert_eq(call("GET", path, query, NULL, NULL, &r), 400, "%s?%s", path, query);
    cJSON *j = cJSON_Parse(r.body);
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItem(j, "message"));
    cr_assert(msg != NULL && strstr(msg, param) != NULL, "%s: %s", query, r.body);
    cJSON_Delete(j);
    ts_resp_free(&r);
}

static char *big_body(size_t n)
{
    char *b = malloc(n + 64);
    if (b == NULL)
        cr_assert_fail("out of memory");
    int k = sprintf(b, "{\"type\":\"x\",\"category\":\"system\",\"data\":\"");
    memset(b + k, 'a', n);
    strcpy(b + k + n, "\"}");
    return b;
}

static void stream_check(const char *query, const char *const headers[], const char *first_id)
{
    char url[256];
    struct ts_sse *sse;
    struct ts_sse_event ev;
    snprintf(url, sizeof url, "%s/telemetry/stream%s%s", agent.base, query ? "?" : "",
             query ? query : "");
    cr_assert_eq(ts_sse_open(url, headers, 5000, &sse), 0);
    conform("/telemetry/stream", "get", ts_sse_status(sse), ts_sse_header(sse, "Content-Type"), "",
            0, sse_header, sse, 0);
    cr_assert_eq(ts_sse_next(sse, 5000, &ev), 0);
    cr_assert_str_eq(ev.id, first_id);
    cJSON *env = cJSON_Parse(ev.data);
    cr_assert_not_null(env, "frame data is not JSON: %s", ev.data);
    cJSON *media = cJSON_GetObjectItem(
        cJSON_GetObjectItem(
            cJSON_GetObjectItem(
                cJSON_GetObjectItem(operation("/telemetry/stream", "get"), "responses"), "200"),
            "content"),
        "text/event-stream");
    validate(cJSON_GetObjectItem(media, "x-frame-data-schema"), env, "stream frame");
    cJSON_Delete(env);
    ts_sse_close(sse);
}

/* The methods the agent allows on path (from a 405's Allow) equal the
 * document's. */
static void methods_match(const char *path)
{
    char url[256];
    struct ts_resp r;
    snprintf(url, sizeof url, "%s%s", agent.base, path);
    cr_assert_eq(ts_http("DELETE", url, NULL, 0, NULL, &r), 0);
    cr_assert_eq(r.status, 405, "DELETE %s: %ld", path, r.status);
    const char *allow = ts_resp_header(&r, "Allow");
    cr_assert_not_null(allow);
    char want[128] = "";
    size_t n = 0;
    cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(doc, "paths"), path))
    {
        char up[16];
        size_t i = 0;
        for (; m->string[i] != '\0' && i < sizeof up - 1; i++)
            up[i] = (char)(m->string[i] & ~0x20);
        up[i] = '\0';
        cr_assert(strstr(allow, up) != NULL, "%s: %s documented, agent allows %s", path, up, allow);
        n += (size_t)snprintf(want + n, sizeof want - n, "%s%s", n ? ", " : "", up);
    }
    cr_assert_eq(strlen(allow), strlen(want), "%s: agent allows %s, document has %s", path, allow,
                 want);
    ts_resp_free(&r);
}

Test(openapi_conformance, routes_answer_as_documented, .fini = teardown, .timeout = 120)
{
    static const char *const env[] = {"TELEMETRY_MAX_BODY=4096", NULL};
    ru_s2_start(&s2);
    ru_agent_start(&agent, &s2, NULL, env);

    /* the served document is the repository's */
    struct ts_resp r;
    char url[256];
    snprintf(url, sizeof url, "%s/telemetry/openapi.json", agent.base);
    cr_assert_eq(ts_http("GET", url, NULL, 0, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    FILE *f = fopen(ts_env("OPENAPI_JSON"), "rb");
    cr_assert_not_null(f);
    char *file = malloc(r.body_len + 2);
    size_t flen = fread(file, 1, r.body_len + 1, f);
    fclose(f);
    cr_assert_eq(flen, r.body_len);
    cr_assert_eq(memcmp(file, r.body, flen), 0, "the served document is not plugin/openapi.json");
    free(file);
    doc = cJSON_ParseWithLength(r.body, r.body_len);
    cr_assert_not_null(doc);
    conform("/telemetry/openapi.json", "get", r.status, ts_resp_header(&r, "Content-Type"), r.body,
            r.body_len, resp_header, &r, 1);
    ts_resp_free(&r);

    char *big = big_body(8192);       /* over TELEMETRY_MAX_BODY */
    char *huge = big_body(70 * 1024); /* over the session routes' 64 KiB */

    /* /telemetry: no session yet */
    expect("GET", "/telemetry", NULL, NULL, 404);
    expect("PATCH", "/telemetry", NULL, "{\"browser\":{\"system\":{\"enabled\":true}}}", 404);
    expect("PUT", "/telemetry", NULL, "{", 400);
    expect("PUT", "/telemetry", NULL, huge, 413);
    expect("PUT", "/telemetry", NULL, "{}", 201);
    expect("PUT", "/telemetry", NULL,
           "{\"browser\":{\"system\":{\"enabled\":true},\"control\":{\"enabled\":true}}}", 200);
    expect("GET", "/telemetry", NULL, NULL, 200);
    expect("PATCH", "/telemetry", NULL, "{", 400);
    expect("PATCH", "/telemetry", NULL, huge, 413);
    expect("PATCH", "/telemetry", NULL, "{\"browser\":{\"console\":{\"enabled\":true}}}", 200);
    {
        static const char *const rid[] = {"Content-Type: application/json",
                                          "X-Request-Id: conformance-rid-1", NULL};
        cr_assert_eq(call("GET", "/telemetry", NULL, NULL, rid, &r), 200);
        ts_resp_free(&r);
    }

    /* publish */
    expect("POST", "/telemetry/events", NULL,
           "{\"type\":\"conf\",\"category\":\"system\",\"source\":{\"kind\":\"extension\","
           "\"event\":\"e\",\"metadata\":{\"k\":\"v\"}},\"data\":[1,{\"a\":null}]}",
           200);
    expect("POST", "/telemetry/events", NULL, "{\"type\":\"conf\",\"category\":\"captcha\"}", 204);
    expect("POST", "/telemetry/events", NULL, "{\"category\":\"system\"}", 400);
    expect("POST", "/telemetry/events", NULL, "{\"type\":\"conf\"}", 400);
    expect("POST", "/telemetry/events", NULL, "[]", 400);
    expect("POST", "/telemetry/events", NULL, big, 413);
    for (int i = 0; i < 4; i++)
        expect("POST", "/telemetry/events", NULL, "{\"type\":\"console_log\",\"data\":{}}", 200);

    /* the live stream: Last-Event-ID and replay */
    static const char *const leid[] = {"Last-Event-ID: 1", NULL};
    stream_check(NULL, leid, "2");
    stream_check("replay=all", NULL, "1");

    /* the archive: every parameter, good and bad */
    cr_assert_geq(ru_wait_archived(&agent, 5, 30000), 5);
    const char *good[] = {
        NULL,
        "limit=1",
        "offset=0&limit=2",
        "since=2020-01-01T00:00:00.5%2B01:00",
        "since=10m",
        "since=1",
        "until=4102444800000",
        "since=1h&until=2099-01-01T00:00:00Z",
        "category=system&category=control",
        "category=system,console",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        expect("GET", "/telemetry/events", good[i], NULL, 200);
    cr_assert_eq(call("GET", "/telemetry/events", "limit=1", NULL, NULL, &r), 200);
    cr_assert_not_null(ts_resp_header(&r, "X-Next-Offset"), "more remains after one");
    cr_assert_not_null(ts_resp_header(&r, "Link"));
    ts_resp_free(&r);
    expect_400("/telemetry/events", "offset=x", "offset");
    expect_400("/telemetry/events", "since=x", "since");
    expect_400("/telemetry/events", "until=x", "until");
    expect_400("/telemetry/events", "limit=x", "limit");
    expect_400("/telemetry/events", "category=x", "category");

    /* the methods of every path */
    cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(doc, "paths")) methods_match(p->string);

    /* every documented status was answered */
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(doc, "paths"))
    {
        cJSON *o;
        cJSON_ArrayForEach(o, p)
        {
            cJSON *st;
            const char *id = cJSON_GetObjectItem(o, "operationId")->valuestring;
            cJSON_ArrayForEach(st, cJSON_GetObjectItem(o, "responses"))
            {
                char key[64];
                int found = 0;
                snprintf(key, sizeof key, "%s %s", id, st->string);
                for (size_t i = 0; i < nseen; i++)
                    found |= strcmp(seen[i], key) == 0;
                for (size_t i = 0; i < sizeof elsewhere / sizeof elsewhere[0]; i++)
                    found |= strcmp(elsewhere[i], key) == 0;
                cr_assert(found, "documented response %s was never answered", key);
            }
        }
    }

    /* api_call operation ids are the document's, and side-effect-free
     * operations emit none */
    const char *must[] = {"GetTelemetry", "PutTelemetry", "PatchTelemetry",
                          "PublishTelemetryEvent"};
    int must_seen[4] = {0}, got_rid = 0, all = 0;
    long long deadline = ts_now_ms() + 20000;
    /* the last api_call events may still be on their way to the archive */
    while (!all && ts_now_ms() < deadline) {
        struct ru_walk w;
        ru_walk(&agent, "category=control&limit=1000", 0, 10, &w);
        for (size_t i = 0; i < w.pages; i++) {
            cJSON *arr = cJSON_Parse(w.pages_body[i]), *env_;
            cJSON_ArrayForEach(env_, arr)
            {
                cJSON *data = cJSON_GetObjectItem(cJSON_GetObjectItem(env_, "event"), "data");
                const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(data, "operation_id"));
                const char *rid = cJSON_GetStringValue(cJSON_GetObjectItem(data, "request_id"));
                cr_assert_not_null(id);
                cr_assert(strcmp(id, "ReadTelemetryEvents") != 0 &&
                              strcmp(id, "StreamTelemetryEvents") != 0 &&
                              strcmp(id, "GetTelemetryOpenApi") != 0,
                          "side-effect-free %s emitted an api_call", id);
                int documented = 0;
                cJSON_ArrayForEach(p, cJSON_GetObjectItem(doc, "paths"))
                {
                    cJSON *o;
                    cJSON_ArrayForEach(o, p) documented |=
                        strcmp(cJSON_GetObjectItem(o, "operationId")->valuestring, id) == 0;
                }
                cr_assert(documented, "api_call operation_id %s is not in the document", id);
                for (int k = 0; k < 4; k++)
                    must_seen[k] |= strcmp(id, must[k]) == 0;
                got_rid |= rid != NULL && strcmp(rid, "conformance-rid-1") == 0;
            }
            cJSON_Delete(arr);
        }
        ru_walk_free(&w);
        all = got_rid;
        for (int k = 0; k < 4; k++)
            all &= must_seen[k];
        if (!all)
            ts_sleep_ms(50);
    }
    for (int k = 0; k < 4; k++)
        cr_assert(must_seen[k], "no api_call with operation_id %s", must[k]);
    cr_assert(got_rid, "X-Request-Id was not carried into the api_call");
    free(big);
    free(huge);
    ru_agent_stop(&agent);
}
