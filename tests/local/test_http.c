/* test_http.c - s2-local's HTTP API: routes, status codes and bodies. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "s2/local.h"
#include "s2/wire.h"
#include "server.h"
#include "lfx.h"
#include "support.h"

#define BASIN "test-basin-1"

static void start_default(void)
{
    struct s2l_opts o = {.listen_addr = "127.0.0.1", .port = 0, .max_long_polls = 4};
    lfx_start(&o);
}

static void stop(void)
{
    lfx_stop();
}

TestSuite(http, .init = start_default, .fini = stop, .timeout = 30);
TestSuite(http_misc, .fini = stop, .timeout = 30);

/* A response: status, body text and its JSON (NULL when not JSON). */
struct r {
    long status;
    struct ts_resp raw;
    cJSON *json;
};

static void r_free(struct r *r)
{
    cJSON_Delete(r->json);
    ts_resp_free(&r->raw);
}

/* Send a request; headers is a NULL-terminated list appended to the
 * defaults (S2-Basin and a JSON content type) unless it starts with "!". */
static struct r call_h(const char *method, const char *path, const char *body,
                       const char *const *headers)
{
    const char *h[16];
    size_t n = 0;
    bool defaults = !(headers && headers[0] && strcmp(headers[0], "!") == 0);
    if (defaults) {
        h[n++] = "S2-Basin: " BASIN;
        h[n++] = "Content-Type: application/json";
    }
    for (size_t i = defaults ? 0 : 1; headers && headers[i] && n < 15; i++)
        h[n++] = headers[i];
    h[n] = NULL;
    char url[4096];
    snprintf(url, sizeof url, "%s%s", fx.url, path);
    struct r r = {0};
    cr_assert(eq(int, ts_http(method, url, body, body ? strlen(body) : 0, h, &r.raw), 0),
              "%s %s failed", method, path);
    r.status = r.raw.status;
    if (r.raw.body_len > 0)
        s2_wire_parse(r.raw.body, r.raw.body_len, &r.json);
    return r;
}

static struct r call(const char *method, const char *path, const char *body)
{
    return call_h(method, path, body, NULL);
}

static const char *jstr(const struct r *r, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->json, key);
    cr_assert(cJSON_IsString(v), "no string %s in %s", key, r->raw.body);
    return v->valuestring;
}

static uint64_t ju64(const cJSON *obj, const char *key)
{
    uint64_t v = 0;
    cr_assert(eq(int, s2_wire_get_u64(cJSON_GetObjectItemCaseSensitive(obj, key), &v), 0),
              "no u64 %s", key);
    return v;
}

/* Assert status and, for an error, the S2 code. */
static void expect_error(struct r *r, long status, const char *code)
{
    cr_assert(eq(long, r->status, status), "status %ld, body %s", r->status, r->raw.body);
    cr_assert(eq(str, (char *)jstr(r, "code"), (char *)code), "body %s", r->raw.body);
    cr_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r->json, "message")));
    const char *ct = ts_resp_header(&r->raw, "Content-Type");
    cr_assert(ct && strcmp(ct, "application/json") == 0);
    r_free(r);
}

static void expect_status(struct r *r, long status)
{
    cr_assert(eq(long, r->status, status), "status %ld, body %s", r->status, r->raw.body);
}

/* The tail of a {"tail":{...}} body. */
static void expect_tail_body(const struct r *r, uint64_t seq)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r->json, "tail");
    cr_assert(cJSON_IsObject(t), "body %s", r->raw.body);
    cr_assert(eq(u64, ju64(t, "seq_num"), seq), "body %s", r->raw.body);
    cJSON_GetObjectItemCaseSensitive(t, "timestamp");
    ju64(t, "timestamp");
}

static cJSON *records_of(const struct r *r)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(r->json, "records");
    cr_assert(cJSON_IsArray(a), "body %s", r->raw.body);
    return (cJSON *)a;
}

/* Append bodies "b<from>".."b<from+n-1>" to stream s; asserts 200. */
static void append_range(const char *s, int from, int n)
{
    char path[256], body[65536];
    size_t o = (size_t)snprintf(body, sizeof body, "{\"records\":[");
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%s{\"body\":\"b%d\"}", i ? "," : "",
                              from + i);
    snprintf(body + o, sizeof body - o, "]}");
    snprintf(path, sizeof path, "/v1/streams/%s/records", s);
    struct r r = call("POST", path, body);
    expect_status(&r, 200);
    r_free(&r);
}

static void append_n(const char *s, int n)
{
    append_range(s, 0, n);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- routes and provisioning ---- */

Test(http, health)
{
    struct r r = call_h("GET", "/health", NULL, (const char *[]){"!", NULL});
    expect_status(&r, 200);
    cr_assert(eq(str, r.raw.body, "OK"));
    r_free(&r);
    r = call("GET", "/v1/nothing", NULL);
    expect_error(&r, 404, "not_found");
    r = call("GET", "/v1/access-tokens", NULL);
    expect_error(&r, 501, "not_implemented");
    r = call("DELETE", "/v1/streams", NULL);
    expect_error(&r, 405, "method_not_allowed");
}

Test(http, basins_create_ensure_list)
{
    struct r r = call("POST", "/v1/basins", "{\"basin\":\"new-basin-1\"}");
    expect_status(&r, 201);
    cr_assert(eq(str, (char *)jstr(&r, "name"), "new-basin-1"));
    cr_assert(eq(str, (char *)jstr(&r, "state"), "active"));
    r_free(&r);
    r = call("POST", "/v1/basins", "{\"basin\":\"new-basin-1\"}");
    expect_error(&r, 409, "resource_already_exists");
    r = call("POST", "/v1/basins", "{\"basin\":\"No_Good\"}");
    expect_error(&r, 400, "bad_json");
    r = call("POST", "/v1/basins", "{\"name\":\"x\"}");
    expect_error(&r, 400, "bad_json");

    r = call("PUT", "/v1/basins/new-basin-2", NULL);
    expect_status(&r, 201);
    cr_assert(eq(str, (char *)ts_resp_header(&r.raw, "s2-provision-result"), "created"));
    r_free(&r);
    r = call("PUT", "/v1/basins/new-basin-2", NULL);
    expect_status(&r, 200);
    cr_assert(eq(str, (char *)ts_resp_header(&r.raw, "s2-provision-result"), "noop"));
    r_free(&r);
    r = call("PUT", "/v1/basins/new-basin-2", "{\"config\":{\"create_stream_on_append\":false}}");
    expect_status(&r, 200);
    cr_assert(eq(str, (char *)ts_resp_header(&r.raw, "s2-provision-result"), "updated"));
    r_free(&r);
    r = call("GET", "/v1/basins/new-basin-2", NULL);
    expect_status(&r, 200);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r.json, "create_stream_on_append")));
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "create_stream_on_read")));
    r_free(&r);
    r = call("PUT", "/v1/basins/BAD", NULL);
    expect_error(&r, 400, "bad_path");
    r = call("GET", "/v1/basins/unknown-basin", NULL);
    expect_error(&r, 404, "basin_not_found");

    r = call("GET", "/v1/basins?prefix=new-&limit=1", NULL);
    expect_status(&r, 200);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "basins");
    cr_assert(eq(int, cJSON_GetArraySize(list), 1));
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "has_more")));
    r_free(&r);
}

Test(http, streams_create_ensure_get_list)
{
    struct r r = call("POST", "/v1/streams", "{\"stream\":\"orders/2024\"}");
    expect_status(&r, 201);
    cr_assert(eq(str, (char *)jstr(&r, "name"), "orders/2024"));
    cr_assert(eq(str, (char *)ts_resp_header(&r.raw, "s2-provision-result"), "created"));
    cr_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r.json, "created_at")));
    r_free(&r);
    r = call("POST", "/v1/streams", "{\"stream\":\"orders/2024\"}");
    expect_error(&r, 409, "resource_already_exists");
    r = call("POST", "/v1/streams", "{\"stream\":\"..\"}");
    expect_error(&r, 400, "bad_json");

    /* A create retried with its request token is a no-op. */
    const char *tok[] = {"S2-Request-Token: tok-1", NULL};
    r = call_h("POST", "/v1/streams", "{\"stream\":\"tokened\"}", tok);
    expect_status(&r, 201);
    r_free(&r);
    r = call_h("POST", "/v1/streams", "{\"stream\":\"tokened\"}", tok);
    expect_status(&r, 201);
    cr_assert(eq(str, (char *)ts_resp_header(&r.raw, "s2-provision-result"), "noop"));
    r_free(&r);

    r = call("PUT", "/v1/streams/ensured", NULL);
    expect_status(&r, 201);
    cr_assert(eq(str, (char *)ts_resp_header(&r.raw, "s2-provision-result"), "created"));
    r_free(&r);
    r = call("PUT", "/v1/streams/ensured", "{}");
    expect_status(&r, 200);
    cr_assert(eq(str, (char *)ts_resp_header(&r.raw, "s2-provision-result"), "noop"));
    r_free(&r);
    r = call("PUT", "/v1/streams/ensured", "{\"timestamping\":{\"mode\":\"arrival\"}}");
    expect_status(&r, 200);
    cr_assert(eq(str, (char *)ts_resp_header(&r.raw, "s2-provision-result"), "updated"));
    r_free(&r);
    r = call("PUT", "/v1/streams/ensured", "{\"timestamping\":{\"mode\":\"sometimes\"}}");
    expect_error(&r, 400, "bad_json");
    r = call("GET", "/v1/streams/ensured", NULL);
    expect_status(&r, 200);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(r.json, "timestamping");
    cr_assert(eq(str, cJSON_GetObjectItemCaseSensitive(ts, "mode")->valuestring, "arrival"));
    r_free(&r);
    r = call("GET", "/v1/streams/nope", NULL);
    expect_error(&r, 404, "stream_not_found");

    r = call("GET", "/v1/streams?prefix=o", NULL);
    expect_status(&r, 200);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "streams");
    cr_assert(eq(int, cJSON_GetArraySize(list), 1));
    cr_assert(eq(str,
                 cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list, 0), "name")->valuestring,
                 "orders/2024"));
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r.json, "has_more")));
    r_free(&r);
    r = call("GET", "/v1/streams?start_after=ensured&limit=1", NULL);
    expect_status(&r, 200);
    list = cJSON_GetObjectItemCaseSensitive(r.json, "streams");
    cr_assert(eq(int, cJSON_GetArraySize(list), 1));
    cr_assert(eq(str,
                 cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list, 0), "name")->valuestring,
                 "orders/2024"));
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "has_more")));
    r_free(&r);
    r = call("GET", "/v1/streams?limit=x", NULL);
    expect_error(&r, 400, "bad_query");
}

Test(http, s2_basin_header_required)
{
    const char *none[] = {"!", "Content-Type: application/json", NULL};
    struct r r = call_h("GET", "/v1/streams", NULL, none);
    expect_error(&r, 400, "bad_header");
    r = call_h("POST", "/v1/streams/s/records", "{\"records\":[{}]}", none);
    expect_error(&r, 400, "bad_header");
    r = call_h("GET", "/v1/streams/s/records/tail", NULL, none);
    expect_error(&r, 400, "bad_header");
    const char *bad[] = {"!", "S2-Basin: Not_A_Basin", NULL};
    r = call_h("GET", "/v1/streams/s/records?seq_num=0", NULL, bad);
    expect_error(&r, 400, "bad_header");
}

Test(http, percent_decoded_names)
{
    append_n("a%2Fb%20c", 1);
    struct r r = call("GET", "/v1/streams?prefix=a%2F", NULL);
    expect_status(&r, 200);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "streams");
    cr_assert(eq(int, cJSON_GetArraySize(list), 1));
    cr_assert(eq(str,
                 cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list, 0), "name")->valuestring,
                 "a/b c"));
    r_free(&r);
    /* A name that ends in /records must be encoded; encoded, it routes. */
    append_n("x%2Frecords", 2);
    r = call("GET", "/v1/streams/x%2Frecords/records/tail", NULL);
    expect_status(&r, 200);
    expect_tail_body(&r, 2);
    r_free(&r);
    r = call("GET", "/v1/streams/%2E%2E/records/tail", NULL);
    expect_error(&r, 400, "bad_path");
    r = call("GET", "/v1/streams/%FF/records/tail", NULL);
    expect_error(&r, 400, "bad_path");
    r = call("GET", "/v1/streams/a%00b/records/tail", NULL);
    expect_error(&r, 400, "bad_path");
}

/* ---- append ---- */

Test(http, append_ack_and_exact_u64)
{
    struct r r = call("POST", "/v1/streams/s/records",
                      "{\"records\":[{\"body\":\"hello\"},{\"headers\":[[\"type\",\"greeting\"]],"
                      "\"body\":\"world\"}]}");
    expect_status(&r, 200);
    const cJSON *start = cJSON_GetObjectItemCaseSensitive(r.json, "start");
    const cJSON *end = cJSON_GetObjectItemCaseSensitive(r.json, "end");
    const cJSON *tail = cJSON_GetObjectItemCaseSensitive(r.json, "tail");
    cr_assert(eq(u64, ju64(start, "seq_num"), 0));
    cr_assert(eq(u64, ju64(end, "seq_num"), 2));
    cr_assert(eq(u64, ju64(tail, "seq_num"), 2));
    cr_assert(eq(u64, ju64(end, "timestamp"), ju64(tail, "timestamp")));
    r_free(&r);
    /* match_seq_num is read as an exact u64. */
    r = call("POST", "/v1/streams/s/records",
             "{\"records\":[{}],\"match_seq_num\":18446744073709551615}");
    cr_assert(eq(long, r.status, 412));
    cr_assert(eq(u64, ju64(r.json, "seq_num_mismatch"), 2));
    r_free(&r);
    r = call("POST", "/v1/streams/s/records", "{\"records\":[{}],\"match_seq_num\":2}");
    expect_status(&r, 200);
    r_free(&r);
}

Test(http, append_bad_requests)
{
    const char *plain[] = {"!", "S2-Basin: " BASIN, "Content-Type: text/plain", NULL};
    struct r r = call_h("POST", "/v1/streams/s/records", "{\"records\":[{}]}", plain);
    expect_error(&r, 400, "bad_json");
    r = call("POST", "/v1/streams/s/records", "{\"records\":[{]}");
    expect_error(&r, 400, "bad_json");
    r = call("POST", "/v1/streams/s/records", "{\"recs\":[]}");
    expect_error(&r, 400, "bad_json");
    r = call("POST", "/v1/streams/s/records", "{\"records\":[{\"body\":5}]}");
    expect_error(&r, 400, "bad_json");
    r = call("POST", "/v1/streams/s/records", "{\"records\":[{\"headers\":[[\"a\"]]}]}");
    expect_error(&r, 400, "bad_json");
    r = call("POST", "/v1/streams/s/records", "{\"records\":[{\"timestamp\":-1}]}");
    expect_error(&r, 400, "bad_json");
    r = call("POST", "/v1/streams/s/records", "{\"records\":[{\"body\":\"a\\u0000b\"}]}");
    expect_error(&r, 400, "bad_json");
    const char *fmt[] = {"S2-Format: utf8", NULL};
    r = call_h("POST", "/v1/streams/s/records", "{\"records\":[{}]}", fmt);
    expect_error(&r, 400, "bad_header");
    /* Nothing of the above was appended (the stream was never created). */
    r = call("GET", "/v1/streams?prefix=s", NULL);
    expect_status(&r, 200);
    cr_assert(eq(int, cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "streams")), 0));
    r_free(&r);
}

Test(http, append_422_limits_and_commands)
{
    struct r r = call("POST", "/v1/streams/s/records", "{\"records\":[]}");
    expect_error(&r, 422, "invalid");
    /* 1001 records. */
    size_t cap = 20000, o = 0;
    char *body = malloc(cap);
    o += (size_t)snprintf(body, cap, "{\"records\":[");
    for (int i = 0; i < 1001; i++)
        o += (size_t)snprintf(body + o, cap - o, "%s{}", i ? "," : "");
    snprintf(body + o, cap - o, "]}");
    r = call("POST", "/v1/streams/s/records", body);
    expect_error(&r, 422, "invalid");
    free(body);
    /* One record of metered size 1 MiB + 1: 8 + 1048569 body bytes. */
    cap = 1300000;
    body = malloc(cap);
    o = (size_t)snprintf(body, cap, "{\"records\":[{\"body\":\"");
    memset(body + o, 'a', 1048569);
    o += 1048569;
    snprintf(body + o, cap - o, "\"}]}");
    r = call("POST", "/v1/streams/s/records", body);
    expect_error(&r, 422, "invalid");
    /* Exactly 1 MiB metered is fine. */
    o = (size_t)snprintf(body, cap, "{\"records\":[{\"body\":\"");
    memset(body + o, 'a', 1048568);
    o += 1048568;
    snprintf(body + o, cap - o, "\"}]}");
    r = call("POST", "/v1/streams/s/records", body);
    expect_status(&r, 200);
    r_free(&r);
    /* Two records of 600 KiB: the batch is over 1 MiB. */
    o = (size_t)snprintf(body, cap, "{\"records\":[{\"body\":\"");
    memset(body + o, 'a', 600000);
    o += 600000;
    o += (size_t)snprintf(body + o, cap - o, "\"},{\"body\":\"");
    memset(body + o, 'a', 600000);
    o += 600000;
    snprintf(body + o, cap - o, "\"}]}");
    r = call("POST", "/v1/streams/s/records", body);
    expect_error(&r, 422, "invalid");
    free(body);

    const char *b64[] = {"S2-Format: base64", NULL};
    r = call_h("POST", "/v1/streams/s/records", "{\"records\":[{\"body\":\"not base64!\"}]}", b64);
    expect_error(&r, 422, "invalid");
    r = call("POST", "/v1/streams/s/records", "{\"records\":[{\"headers\":[[\"\",\"explode\"]]}]}");
    expect_error(&r, 422, "invalid");
    r = call("POST", "/v1/streams/s/records",
             "{\"records\":[{\"headers\":[[\"\",\"fence\"],[\"a\",\"b\"]]}]}");
    expect_error(&r, 422, "invalid");
    r = call("POST", "/v1/streams/s/records",
             "{\"records\":[{}],\"fencing_token\":\"0123456789012345678901234567890123456\"}");
    expect_error(&r, 422, "invalid");
    r = call("POST", "/v1/streams/s/records",
             "{\"records\":[{\"headers\":[[\"\",\"trim\"]],\"body\":\"short\"}]}");
    expect_error(&r, 422, "invalid");
    /* client-require: a record without a timestamp is refused. */
    r = call("PUT", "/v1/streams/req", "{\"timestamping\":{\"mode\":\"client-require\"}}");
    expect_status(&r, 201);
    r_free(&r);
    r = call("POST", "/v1/streams/req/records", "{\"records\":[{\"timestamp\":5},{}]}");
    expect_error(&r, 422, "invalid");
    r = call("POST", "/v1/streams/req/records", "{\"records\":[{\"timestamp\":5}]}");
    expect_status(&r, 200);
    r_free(&r);
}

Test(http, body_over_the_limit_is_413)
{
    size_t n = S2L_MAX_BODY + 1024;
    char *body = malloc(n + 1);
    memset(body, ' ', n);
    body[n] = 0;
    struct r r = call("POST", "/v1/streams/s/records", body);
    cr_assert(eq(long, r.status, 413));
    r_free(&r);
    free(body);
}

Test(http, fencing_and_match_seq_num_412)
{
    append_n("f", 2);
    struct r r = call("POST", "/v1/streams/f/records",
                      "{\"records\":[{\"headers\":[[\"\",\"fence\"]],\"body\":\"writer-7\"}]}");
    expect_status(&r, 200);
    r_free(&r);
    r = call("POST", "/v1/streams/f/records", "{\"records\":[{}],\"fencing_token\":\"writer-8\"}");
    cr_assert(eq(long, r.status, 412));
    cr_assert(eq(str, (char *)jstr(&r, "fencing_token_mismatch"), "writer-7"));
    r_free(&r);
    /* The fencing token is checked before match_seq_num. */
    r = call("POST", "/v1/streams/f/records",
             "{\"records\":[{}],\"fencing_token\":\"bad\",\"match_seq_num\":99}");
    cr_assert(eq(long, r.status, 412));
    cr_assert(eq(str, (char *)jstr(&r, "fencing_token_mismatch"), "writer-7"));
    r_free(&r);
    r = call("POST", "/v1/streams/f/records",
             "{\"records\":[{}],\"fencing_token\":\"writer-7\",\"match_seq_num\":1}");
    cr_assert(eq(long, r.status, 412));
    cr_assert(eq(u64, ju64(r.json, "seq_num_mismatch"), 3));
    r_free(&r);
    r = call("POST", "/v1/streams/f/records",
             "{\"records\":[{}],\"fencing_token\":\"writer-7\",\"match_seq_num\":3}");
    expect_status(&r, 200);
    r_free(&r);
    /* The fence record reads back as a command record. */
    r = call("GET", "/v1/streams/f/records?seq_num=2&count=1", NULL);
    expect_status(&r, 200);
    cJSON *rec = cJSON_GetArrayItem(records_of(&r), 0);
    cJSON *h = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "headers"), 0);
    cr_assert(eq(str, cJSON_GetArrayItem(h, 0)->valuestring, ""));
    cr_assert(eq(str, cJSON_GetArrayItem(h, 1)->valuestring, "fence"));
    r_free(&r);
}

Test(http, timestamps_capped_and_monotonic)
{
    uint64_t before = now_ms();
    struct r r = call("POST", "/v1/streams/t/records",
                      "{\"records\":[{\"timestamp\":99999999999999},{\"timestamp\":5},{}]}");
    expect_status(&r, 200);
    uint64_t after = now_ms();
    r_free(&r);
    r = call("GET", "/v1/streams/t/records?seq_num=0", NULL);
    expect_status(&r, 200);
    cJSON *recs = records_of(&r);
    cr_assert(eq(int, cJSON_GetArraySize(recs), 3));
    uint64_t t0 = ju64(cJSON_GetArrayItem(recs, 0), "timestamp");
    cr_assert(ge(u64, t0, before));
    cr_assert(le(u64, t0, after));
    /* Never decreasing: the earlier client timestamp is raised. */
    cr_assert(eq(u64, ju64(cJSON_GetArrayItem(recs, 1), "timestamp"), t0));
    cr_assert(ge(u64, ju64(cJSON_GetArrayItem(recs, 2), "timestamp"), t0));
    r_free(&r);
    /* A client timestamp in the past is kept when it does not go back. */
    r = call("POST", "/v1/streams/t2/records",
             "{\"records\":[{\"timestamp\":1000},{\"timestamp\":2000}]}");
    expect_status(&r, 200);
    cr_assert(eq(u64, ju64(cJSON_GetObjectItemCaseSensitive(r.json, "start"), "timestamp"), 1000));
    cr_assert(eq(u64, ju64(cJSON_GetObjectItemCaseSensitive(r.json, "end"), "timestamp"), 2000));
    r_free(&r);
}

/* ---- read ---- */

Test(http, read_formats_and_omitted_fields)
{
    const char *b64[] = {"S2-Format: base64", NULL};
    /* "\xff\xfeok" has invalid UTF-8; an empty record has neither field. */
    struct r r =
        call_h("POST", "/v1/streams/fmt/records",
               "{\"records\":[{\"headers\":[[\"aw==\",\"\"]],\"body\":\"//5vaw==\"},{}]}", b64);
    expect_status(&r, 200);
    r_free(&r);
    r = call("GET", "/v1/streams/fmt/records?seq_num=0", NULL);
    expect_status(&r, 200);
    cJSON *recs = records_of(&r);
    cJSON *r0 = cJSON_GetArrayItem(recs, 0), *r1 = cJSON_GetArrayItem(recs, 1);
    cr_assert(eq(str, cJSON_GetObjectItemCaseSensitive(r0, "body")->valuestring,
                 "\xef\xbf\xbd\xef\xbf\xbdok"));
    cJSON *h = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r0, "headers"), 0);
    cr_assert(eq(str, cJSON_GetArrayItem(h, 0)->valuestring, "k"));
    cr_assert(eq(str, cJSON_GetArrayItem(h, 1)->valuestring, ""));
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(r1, "body"));
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(r1, "headers"));
    cr_assert(eq(u64, ju64(r1, "seq_num"), 1));
    r_free(&r);
    const char *bs[] = {"S2-Format: json-binsafe", NULL};
    r = call_h("GET", "/v1/streams/fmt/records?seq_num=0&count=1", NULL, bs);
    expect_status(&r, 200);
    r0 = cJSON_GetArrayItem(records_of(&r), 0);
    cr_assert(eq(str, cJSON_GetObjectItemCaseSensitive(r0, "body")->valuestring, "//5vaw=="));
    r_free(&r);
    /* Control characters and quotes are escaped in raw mode. */
    r = call("POST", "/v1/streams/fmt/records",
             "{\"records\":[{\"body\":\"q\\\"\\\\\\n\\u0001\\u00e9\"}]}");
    expect_status(&r, 200);
    r_free(&r);
    r = call("GET", "/v1/streams/fmt/records?seq_num=2", NULL);
    expect_status(&r, 200);
    r0 = cJSON_GetArrayItem(records_of(&r), 0);
    cr_assert(
        eq(str, cJSON_GetObjectItemCaseSensitive(r0, "body")->valuestring, "q\"\\\n\x01\xc3\xa9"));
    r_free(&r);
}

Test(http, read_416_rules_with_tail_body)
{
    append_n("r", 3);
    struct r r = call("GET", "/v1/streams/r/records", NULL);
    cr_assert(eq(long, r.status, 416));
    expect_tail_body(&r, 3);
    r_free(&r);
    r = call("GET", "/v1/streams/r/records?seq_num=3", NULL);
    cr_assert(eq(long, r.status, 416));
    expect_tail_body(&r, 3);
    r_free(&r);
    r = call("GET", "/v1/streams/r/records?seq_num=10", NULL);
    cr_assert(eq(long, r.status, 416));
    r_free(&r);
    /* Clamped to the tail, a read without wait still cannot follow. */
    r = call("GET", "/v1/streams/r/records?seq_num=10&clamp=true", NULL);
    cr_assert(eq(long, r.status, 416));
    expect_tail_body(&r, 3);
    r_free(&r);
    r = call("GET", "/v1/streams/r/records?timestamp=99999999999999", NULL);
    cr_assert(eq(long, r.status, 416));
    r_free(&r);
    /* An empty stream (created by the read) answers 416 with {0,0}. */
    r = call("GET", "/v1/streams/empty/records?seq_num=0", NULL);
    cr_assert(eq(long, r.status, 416));
    expect_tail_body(&r, 0);
    r_free(&r);
    r = call("GET", "/v1/streams/r/records?tail_offset=2", NULL);
    expect_status(&r, 200);
    cJSON *recs = records_of(&r);
    cr_assert(eq(int, cJSON_GetArraySize(recs), 2));
    cr_assert(eq(u64, ju64(cJSON_GetArrayItem(recs, 0), "seq_num"), 1));
    expect_tail_body(&r, 3);
    r_free(&r);
    r = call("GET", "/v1/streams/r/records?tail_offset=100", NULL);
    expect_status(&r, 200);
    cr_assert(eq(int, cJSON_GetArraySize(records_of(&r)), 3));
    r_free(&r);
}

Test(http, read_limits_count_bytes_until)
{
    append_range("l", 0, 1000);
    append_range("l", 1000, 500);
    struct r r = call("GET", "/v1/streams/l/records?seq_num=0", NULL);
    expect_status(&r, 200);
    cr_assert(eq(int, cJSON_GetArraySize(records_of(&r)), 1000));
    r_free(&r);
    r = call("GET", "/v1/streams/l/records?seq_num=0&count=5000", NULL);
    expect_status(&r, 200);
    cr_assert(eq(int, cJSON_GetArraySize(records_of(&r)), 1000));
    r_free(&r);
    r = call("GET", "/v1/streams/l/records?seq_num=1200&count=7", NULL);
    expect_status(&r, 200);
    cJSON *recs = records_of(&r);
    cr_assert(eq(int, cJSON_GetArraySize(recs), 7));
    cr_assert(eq(str,
                 cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(recs, 0), "body")->valuestring,
                 "b1200"));
    r_free(&r);
    r = call("GET", "/v1/streams/l/records?seq_num=0&count=0", NULL);
    expect_status(&r, 200);
    cr_assert(eq(int, cJSON_GetArraySize(records_of(&r)), 0));
    r_free(&r);
    /* Records b0..b9 meter 10 bytes each, b10.. 11: 25 bytes hold two. */
    r = call("GET", "/v1/streams/l/records?seq_num=0&bytes=25", NULL);
    expect_status(&r, 200);
    cr_assert(eq(int, cJSON_GetArraySize(records_of(&r)), 2));
    r_free(&r);
    r = call("GET", "/v1/streams/l/records?seq_num=0&bytes=9", NULL);
    expect_status(&r, 200);
    cr_assert(eq(int, cJSON_GetArraySize(records_of(&r)), 0));
    r_free(&r);
    /* until is exclusive. */
    r = call("POST", "/v1/streams/u/records",
             "{\"records\":[{\"timestamp\":100},{\"timestamp\":200},{\"timestamp\":300}]}");
    expect_status(&r, 200);
    r_free(&r);
    r = call("GET", "/v1/streams/u/records?seq_num=0&until=300", NULL);
    expect_status(&r, 200);
    cr_assert(eq(int, cJSON_GetArraySize(records_of(&r)), 2));
    r_free(&r);
    r = call("GET", "/v1/streams/u/records?timestamp=150", NULL);
    expect_status(&r, 200);
    recs = records_of(&r);
    cr_assert(eq(int, cJSON_GetArraySize(recs), 2));
    cr_assert(eq(u64, ju64(cJSON_GetArrayItem(recs, 0), "seq_num"), 1));
    r_free(&r);
    r = call("GET", "/v1/streams/u/records?timestamp=100&until=100", NULL);
    expect_error(&r, 422, "invalid");
    r = call("GET", "/v1/streams/u/records?seq_num=0&timestamp=100", NULL);
    expect_error(&r, 422, "invalid");
    r = call("GET", "/v1/streams/u/records?seq_num=abc", NULL);
    expect_error(&r, 400, "bad_query");
    r = call("GET", "/v1/streams/u/records?seq_num=-1", NULL);
    expect_error(&r, 400, "bad_query");
    r = call("GET", "/v1/streams/u/records?seq_num=0&clamp=1", NULL);
    expect_error(&r, 400, "bad_query");
    r = call("GET", "/v1/streams/u/records?seq_num=99999999999999999999999", NULL);
    expect_error(&r, 400, "bad_query");
    /* Invalid arguments do not create the stream. */
    r = call("GET", "/v1/streams/never/records?timestamp=5&until=1", NULL);
    expect_error(&r, 422, "invalid");
    r = call("GET", "/v1/streams?prefix=never", NULL);
    cr_assert(eq(int, cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "streams")), 0));
    r_free(&r);
}

Test(http, check_tail)
{
    struct r r = call("GET", "/v1/streams/ct/records/tail", NULL);
    expect_status(&r, 200);
    expect_tail_body(&r, 0);
    cr_assert(eq(u64, ju64(cJSON_GetObjectItemCaseSensitive(r.json, "tail"), "timestamp"), 0));
    r_free(&r);
    append_n("ct", 4);
    r = call("GET", "/v1/streams/ct/records/tail", NULL);
    expect_status(&r, 200);
    expect_tail_body(&r, 4);
    r_free(&r);
}

Test(http, no_auto_create_gives_404)
{
    struct r r = call("PUT", "/v1/basins/strict-basin",
                      "{\"create_stream_on_append\":false,\"create_stream_on_read\":false}");
    expect_status(&r, 201);
    r_free(&r);
    const char *h[] = {"!", "S2-Basin: strict-basin", "Content-Type: application/json", NULL};
    r = call_h("POST", "/v1/streams/s/records", "{\"records\":[{}]}", h);
    expect_error(&r, 404, "stream_not_found");
    r = call_h("GET", "/v1/streams/s/records?seq_num=0", NULL, h);
    expect_error(&r, 404, "stream_not_found");
    r = call_h("GET", "/v1/streams/s/records/tail", NULL, h);
    expect_error(&r, 404, "stream_not_found");
    r = call_h("POST", "/v1/streams", "{\"stream\":\"s\"}", h);
    expect_status(&r, 201);
    r_free(&r);
    r = call_h("POST", "/v1/streams/s/records", "{\"records\":[{}]}", h);
    expect_status(&r, 200);
    r_free(&r);
}

/* ---- long polls ---- */

struct bg {
    pthread_t th;
    char path[256];
    struct r r;
};

static void *bg_main(void *arg)
{
    struct bg *b = arg;
    b->r = call("GET", b->path, NULL);
    return NULL;
}

static void bg_start(struct bg *b, const char *path)
{
    snprintf(b->path, sizeof b->path, "%s", path);
    cr_assert(eq(int, pthread_create(&b->th, NULL, bg_main, b), 0));
}

Test(http, long_poll_answered_by_append)
{
    append_n("lp", 2);
    struct bg b;
    bg_start(&b, "/v1/streams/lp/records?seq_num=2&wait=20");
    ts_sleep_ms(300);
    struct r r = call("POST", "/v1/streams/lp/records", "{\"records\":[{\"body\":\"late\"}]}");
    expect_status(&r, 200);
    r_free(&r);
    pthread_join(b.th, NULL);
    expect_status(&b.r, 200);
    cJSON *recs = records_of(&b.r);
    cr_assert(eq(int, cJSON_GetArraySize(recs), 1));
    cJSON *r0 = cJSON_GetArrayItem(recs, 0);
    cr_assert(eq(u64, ju64(r0, "seq_num"), 2));
    cr_assert(eq(str, cJSON_GetObjectItemCaseSensitive(r0, "body")->valuestring, "late"));
    expect_tail_body(&b.r, 3);
    r_free(&b.r);
}

Test(http, long_poll_times_out_empty)
{
    append_n("lt", 1);
    struct r r = call("GET", "/v1/streams/lt/records?seq_num=1&wait=1", NULL);
    expect_status(&r, 200);
    cr_assert(eq(int, cJSON_GetArraySize(records_of(&r)), 0));
    expect_tail_body(&r, 1);
    r_free(&r);
    /* A read that finds records does not wait. */
    r = call("GET", "/v1/streams/lt/records?seq_num=0&wait=60", NULL);
    expect_status(&r, 200);
    cr_assert(eq(int, cJSON_GetArraySize(records_of(&r)), 1));
    r_free(&r);
}

Test(http, long_polls_are_bounded)
{
    /* The fixture allows 4 open long polls. */
    struct bg b[4];
    for (int i = 0; i < 4; i++)
        bg_start(&b[i], "/v1/streams/bound/records?wait=20");
    ts_sleep_ms(500);
    struct r r = call("GET", "/v1/streams/bound/records?wait=20", NULL);
    expect_error(&r, 429, "rate_limited");
    append_n("bound", 1);
    for (int i = 0; i < 4; i++) {
        pthread_join(b[i].th, NULL);
        expect_status(&b[i].r, 200);
        cr_assert(eq(int, cJSON_GetArraySize(records_of(&b[i].r)), 1));
        r_free(&b[i].r);
    }
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    s2l_server_drain(fx.srv);
}

Test(http, drain_answers_long_polls_503)
{
    struct bg b;
    bg_start(&b, "/v1/streams/dr/records?wait=20");
    ts_sleep_ms(300);
    struct timeval tv = {0, 0};
    cr_assert(eq(int, event_base_once(fx.base, -1, EV_TIMEOUT, drain_cb, NULL, &tv), 0));
    pthread_join(b.th, NULL);
    expect_error(&b.r, 503, "server_draining");
}

/* ---- a configured basin ---- */

Test(http_misc, configured_basin_only)
{
    struct s2l_opts o = {.listen_addr = "127.0.0.1", .basin = "only-basin"};
    lfx_start(&o);
    const char *other[] = {"!", "S2-Basin: other-basin", NULL};
    struct r r = call_h("GET", "/v1/streams/s/records/tail", NULL, other);
    expect_error(&r, 404, "basin_not_found");
    const char *mine[] = {"!", "S2-Basin: only-basin", NULL};
    r = call_h("GET", "/v1/streams/s/records/tail", NULL, mine);
    expect_status(&r, 200);
    r_free(&r);
}

Test(http_misc, bad_opts_fail_cleanly)
{
    struct event_base *base = event_base_new();
    struct s2l_server *srv = NULL;
    struct s2l_opts o = {.listen_addr = "127.0.0.1", .basin = "X"};
    cr_assert(eq(int, s2l_server_new(base, &o, NULL, NULL, &srv), -EINVAL));
    o = (struct s2l_opts){.listen_addr = "not-an-address"};
    cr_assert(lt(int, s2l_server_new(base, &o, NULL, NULL, &srv), 0));
    o = (struct s2l_opts){.data_dir = "/proc/definitely/not/writable"};
    cr_assert(lt(int, s2l_server_new(base, &o, NULL, NULL, &srv), 0));
    event_base_free(base);
}

/* ---- the JSON string writer ---- */

#include <event2/buffer.h>

static void expect_json(const char *in, size_t len, const char *want)
{
    struct evbuffer *b = evbuffer_new();
    cr_assert(eq(int, s2l_json_string(b, (const uint8_t *)in, len), 0));
    size_t n = evbuffer_get_length(b);
    char *got = calloc(1, n + 1);
    evbuffer_remove(b, got, n);
    cr_assert(eq(str, got, (char *)want));
    free(got);
    evbuffer_free(b);
}

Test(http_misc, json_string_replaces_invalid_utf8)
{
    expect_json("abc", 3, "\"abc\"");
    expect_json("\xc3\xa9", 2, "\"\xc3\xa9\"");
    expect_json("\xf0\x9f\x98\x80", 4, "\"\xf0\x9f\x98\x80\"");
    expect_json("a\xff"
                "b",
                3,
                "\"a\xef\xbf\xbd"
                "b\"");
    /* A truncated sequence is one U+FFFD, then the next byte. */
    expect_json("\xe2\x82"
                "x",
                3, "\"\xef\xbf\xbdx\"");
    /* Surrogates and overlongs are invalid byte by byte. */
    expect_json("\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    expect_json("\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    expect_json("\0\x1f\"\\", 4, "\"\\u0000\\u001f\\\"\\\\\"");
}

/* Long strings (the 16-byte scan) with one byte to escape or check at
 * every position, in front of, inside and after a 16-byte block. */
Test(http_misc, json_string_long_runs)
{
    static const struct {
        const char *in, *out;
    } specials[] = {{"\"", "\\\""},           {"\\", "\\\\"},   {"\n", "\\n"},
                    {"\x01", "\\u0001"},      {"\x7f", "\x7f"}, {"\xc3\xa9", "\xc3\xa9"},
                    {"\xff", "\xef\xbf\xbd"}, {"/", "/"}};
    char in[80], want[128];
    for (size_t sp = 0; sp < sizeof specials / sizeof specials[0]; sp++) {
        size_t sl = strlen(specials[sp].in);
        for (size_t len = sl; len <= 64; len++) {
            for (size_t at = 0; at + sl <= len; at++) {
                memset(in, 'a', len);
                memcpy(in + at, specials[sp].in, sl);
                int w = snprintf(want, sizeof want, "\"%.*s%s%.*s\"", (int)at, in, specials[sp].out,
                                 (int)(len - at - sl), in + at + sl);
                cr_assert(lt(int, w, (int)sizeof want));
                expect_json(in, len, want);
            }
        }
    }
}

Test(http, trim_command_hides_earlier_records)
{
    append_n("tr", 5);
    /* Trim to seq_num 3: an 8-byte big-endian body, base64 "AAAAAAAAAAM=". */
    const char *b64[] = {"S2-Format: base64", NULL};
    struct r r = call_h(
        "POST", "/v1/streams/tr/records",
        "{\"records\":[{\"headers\":[[\"\",\"dHJpbQ==\"]],\"body\":\"AAAAAAAAAAM=\"}]}", b64);
    expect_status(&r, 200);
    r_free(&r);
    r = call("GET", "/v1/streams/tr/records?seq_num=0", NULL);
    expect_status(&r, 200);
    cJSON *recs = records_of(&r);
    cr_assert(eq(int, cJSON_GetArraySize(recs), 3));
    cr_assert(eq(u64, ju64(cJSON_GetArrayItem(recs, 0), "seq_num"), 3));
    r_free(&r);
    r = call("GET", "/v1/streams/tr/records/tail", NULL);
    expect_tail_body(&r, 6);
    r_free(&r);
}

/* ---- protobuf (what SDKs send for binary records) ---- */

static struct ts_resp pb_call(const char *method, const char *path, const void *body, size_t len,
                              const char *ctype, const char *accept)
{
    char url[256], ct[96], ac[96];
    snprintf(url, sizeof url, "%s%s", fx.url, path);
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    snprintf(ac, sizeof ac, "Accept: %s", accept);
    const char *h[] = {"S2-Basin: " BASIN, ct, ac, NULL};
    struct ts_resp r;
    cr_assert(eq(int, ts_http(method, url, body, len, h, &r), 0));
    return r;
}

static bool has_bytes(const struct ts_resp *r, const void *needle, size_t n)
{
    for (size_t i = 0; i + n <= r->body_len; i++)
        if (memcmp(r->body + i, needle, n) == 0)
            return true;
    return false;
}

Test(http, protobuf_append_and_read)
{
    /* AppendInput{records: [{headers: [{"k", "v"}], body: 00 ff}]} */
    static const uint8_t in[] = {0x0a, 0x0c, 0x12, 0x06, 0x0a, 0x01, 'k',
                                 0x12, 0x01, 'v',  0x1a, 0x02, 0x00, 0xff};
    struct ts_resp r = pb_call("POST", "/v1/streams/pb/records", in, sizeof in,
                               "application/protobuf", "application/json");
    cr_assert(eq(long, r.status, 200), "body %s", r.body);
    cr_assert(strstr(r.body, "\"end\":{\"seq_num\":1") != NULL, "body %s", r.body);
    ts_resp_free(&r);
    /* An AppendAck in protobuf: start (field 1) at seq_num 0. */
    r = pb_call("POST", "/v1/streams/pb/records", in, sizeof in, "application/x-protobuf",
                "application/protobuf");
    cr_assert(eq(long, r.status, 200));
    cr_assert(eq(str, (char *)ts_resp_header(&r, "Content-Type"), "application/protobuf"));
    cr_assert(gt(u64, (uint64_t)r.body_len, 6));
    cr_assert(eq(int, (uint8_t)r.body[0], 0x0a));
    cr_assert(eq(int, (uint8_t)r.body[2], 0x08));
    cr_assert(eq(int, (uint8_t)r.body[3], 0x01), "second append starts at seq_num 1");
    ts_resp_free(&r);

    /* The same bytes read back as JSON base64 and as a protobuf ReadBatch. */
    const char *b64[] = {"S2-Format: base64", NULL};
    struct r j = call_h("GET", "/v1/streams/pb/records?seq_num=0", NULL, b64);
    expect_status(&j, 200);
    cJSON *recs = records_of(&j);
    cr_assert(eq(int, cJSON_GetArraySize(recs), 2));
    cr_assert(eq(str,
                 cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(recs, 0), "body")->valuestring,
                 "AP8="));
    r_free(&j);
    r = pb_call("GET", "/v1/streams/pb/records?seq_num=0&count=1", NULL, 0, "application/json",
                "application/protobuf");
    cr_assert(eq(long, r.status, 200));
    cr_assert(eq(str, (char *)ts_resp_header(&r, "Content-Type"), "application/protobuf"));
    /* SequencedRecord: seq_num 0, a timestamp, the header (field 3), the
     * body (field 4); then the tail (field 2) at seq_num 2. */
    cr_assert(eq(int, (uint8_t)r.body[0], 0x0a));
    cr_assert(eq(int, (uint8_t)r.body[2], 0x08));
    cr_assert(eq(int, (uint8_t)r.body[3], 0x00));
    static const uint8_t rec_tail[] = {0x1a, 0x06, 0x0a, 0x01, 'k',  0x12, 0x01,
                                       'v',  0x22, 0x02, 0x00, 0xff, 0x12};
    cr_assert(has_bytes(&r, rec_tail, sizeof rec_tail));
    size_t rec_len = (uint8_t)r.body[1];
    cr_assert(eq(int, (uint8_t)r.body[2 + rec_len], 0x12), "tail after the record");
    cr_assert(eq(int, (uint8_t)r.body[2 + rec_len + 2], 0x08));
    cr_assert(eq(int, (uint8_t)r.body[2 + rec_len + 3], 0x02));
    ts_resp_free(&r);

    /* Not an AppendInput: 400 bad_proto; no records: 422 invalid; 416 is
     * the JSON tail even for a protobuf read. */
    static const uint8_t bad[] = {0x0a, 0x7f, 0x01};
    r = pb_call("POST", "/v1/streams/pb/records", bad, sizeof bad, "application/protobuf",
                "application/protobuf");
    cr_assert(eq(long, r.status, 400));
    cr_assert(strstr(r.body, "\"bad_proto\"") != NULL, "body %s", r.body);
    ts_resp_free(&r);
    r = pb_call("POST", "/v1/streams/pb/records", "", 0, "application/protobuf",
                "application/protobuf");
    cr_assert(eq(long, r.status, 422), "body %s", r.body);
    ts_resp_free(&r);
    r = pb_call("GET", "/v1/streams/pb/records?seq_num=2", NULL, 0, "application/json",
                "application/protobuf");
    cr_assert(eq(long, r.status, 416));
    cr_assert(strstr(r.body, "{\"tail\":{\"seq_num\":2") != NULL, "body %s", r.body);
    ts_resp_free(&r);
}
