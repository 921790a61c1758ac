/* test_publish.c - publish validation order, the gate, the shared service. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <event2/buffer.h>

#include "bus.h"
#include "envelope.h"
#include "publish.h"
#include "session.h"
#include "telemetry/service.h"
#include "tp_util.h"

static struct tel_bus *bus;
static struct tel_session *sess;
static struct tel_publish *pub;

static void setup(void)
{
    cr_assert_eq(tel_bus_new(64, &bus), 0);
    cr_assert_eq(tel_session_new(bus, &sess), 0);
    struct tel_publish_opts o = {.bus = bus, .session = sess};
    cr_assert_eq(tel_publish_new(&o, &pub), 0);
}

static void teardown(void)
{
    tel_publish_free(pub);
    tel_session_free(sess);
    tel_bus_free(bus);
}

TestSuite(publish, .init = setup, .fini = teardown);

/* fixtures/events/publish-invalid.jsonl: raw bodies and their verdicts. */
Test(publish, fixture_validation_cases)
{
    size_t n;
    char **lines = tp_fixture_lines("publish-invalid.jsonl", &n);
    for (size_t i = 0; i < n; i++) {
        cJSON *c = cJSON_Parse(lines[i]);
        cr_assert_not_null(c);
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const char *body = cJSON_GetObjectItem(c, "body")->valuestring;
        int want = cJSON_GetObjectItem(c, "status")->valueint;
        cJSON *msg = cJSON_GetObjectItem(c, "message");
        struct tel_publish_req r;
        char err[256] = "";
        int got = tel_publish_parse(body, strlen(body), &r, err, sizeof err);
        cr_assert_eq(got, want, "%s: got %d (%s)", name, got, err);
        if (want != 0)
            cr_assert_str_eq(err, msg->valuestring, "%s", name);
        tel_publish_req_clear(&r);
        cJSON_Delete(c);
    }
    tp_lines_free(lines, n);
}

Test(publish, known_type_category_is_server_authoritative)
{
    const char *body = "{\"type\":\"api_call\",\"category\":\"console\"}";
    struct tel_publish_req r;
    char err[256];
    cr_assert_eq(tel_publish_parse(body, strlen(body), &r, err, sizeof err), 0);
    cr_assert_eq(r.ev.category, TEL_CAT_CONTROL);
    tel_publish_req_clear(&r);
}

Test(publish, data_is_kept_verbatim_and_compact)
{
    const char *body =
        "{\"data\" : { \"big\" : 12345678901234567890, \"f\": 0.1000, \"s\":\"<\" } ,"
        "\"type\":\"t\",\"category\":\"page\"}";
    struct tel_publish_req r;
    char err[256];
    cr_assert_eq(tel_publish_parse(body, strlen(body), &r, err, sizeof err), 0);
    cr_assert_eq(r.ev.data_len,
                 strlen("{\"big\":12345678901234567890,\"f\":0.1000,\"s\":\"\\u003c\"}"));
    cr_assert(memcmp(r.ev.data, "{\"big\":12345678901234567890,\"f\":0.1000,\"s\":\"\\u003c\"}",
                     r.ev.data_len) == 0);
    tel_publish_req_clear(&r);

    /* data null is absent */
    body = "{\"type\":\"t\",\"category\":\"page\",\"data\":null}";
    cr_assert_eq(tel_publish_parse(body, strlen(body), &r, err, sizeof err), 0);
    cr_assert_null(r.ev.data);
    tel_publish_req_clear(&r);

    /* a member name with an escape still finds its data */
    body = "{\"type\":\"t\",\"category\":\"page\",\"d\\u0061ta\":[1, 2]}";
    cr_assert_eq(tel_publish_parse(body, strlen(body), &r, err, sizeof err), 0);
    cr_assert_eq(r.ev.data_len, 5);
    cr_assert(memcmp(r.ev.data, "[1,2]", 5) == 0);
    tel_publish_req_clear(&r);
}

static void make_event(struct tel_event *ev, const char *type, int cat)
{
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->category = cat;
}

/* TestPublishDroppedWhenTelemetryInactive / ...WhenCategoryDisabled */
Test(publish, gate)
{
    struct tel_event ev;
    int admitted = -1;
    const struct tel_env *env = NULL;
    make_event(&ev, "test.event", TEL_CAT_SYSTEM);
    cr_assert_eq(tel_publish_event(pub, &ev, &admitted, &env), 0);
    cr_assert_eq(admitted, 0);
    cr_assert_eq(tel_bus_last_seq(bus), 0);

    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, NULL), 0);
    make_event(&ev, "console_log", TEL_CAT_CONSOLE);
    cr_assert_eq(tel_publish_event(pub, &ev, &admitted, &env), 0);
    cr_assert_eq(admitted, 0);
    make_event(&ev, "monitor_disconnected", TEL_CAT_MONITOR);
    cr_assert_eq(tel_publish_event(pub, &ev, &admitted, &env), 0);
    cr_assert_eq(admitted, 0, "monitor needs a CDP category");

    make_event(&ev, "test.event", TEL_CAT_SYSTEM);
    int64_t before = tel_now_us();
    cr_assert_eq(tel_publish_event(pub, &ev, &admitted, &env), 0);
    cr_assert_eq(admitted, 1);
    cr_assert_eq(tel_env_seq(env), 1);
    cr_assert_geq(ev.ts_us, before, "ts stamped with the wall clock");
    size_t len;
    const char *json = tel_env_json(env, &len);
    char *s = strndup(json, len);
    cJSON *j = cJSON_Parse(s);
    cr_assert_not_null(j);
    cJSON *meta = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "event"), "source"), "metadata");
    cr_assert_str_eq(cJSON_GetObjectItem(meta, "telemetry_session_id")->valuestring,
                     tel_session_id(sess));
    cr_assert_null(cJSON_GetObjectItem(j, "telemetry_session_id"));
    cJSON_Delete(j);
    free(s);

    cr_assert_eq(tel_session_apply(sess, TELEMETRY_CAT_PAGE, NULL), 0);
    make_event(&ev, "monitor_disconnected", TEL_CAT_MONITOR);
    cr_assert_eq(tel_publish_event(pub, &ev, &admitted, &env), 0);
    cr_assert_eq(admitted, 1);
    cr_assert_eq(tel_env_seq(env), 2);
}

static void on_change(uint32_t mask, void *arg)
{
    *(uint32_t *)arg = mask;
}

Test(publish, shared_service)
{
    const struct telemetry_service *svc = tel_publish_service(pub);
    cr_assert_eq(svc->struct_size, sizeof *svc);
    uint32_t seen = 12345;
    uint64_t id;
    cr_assert_eq(svc->subscribe(svc->ctx, on_change, &seen, &id), 0);
    cr_assert_eq(svc->categories(svc->ctx), 0u);

    struct telemetry_event ev = {.struct_size = sizeof ev, .type = "cdp_connect"};
    int admitted = -1;
    uint64_t seq = 0;
    cr_assert_eq(svc->publish(svc->ctx, &ev, &admitted, &seq), 0);
    cr_assert_eq(admitted, 0);

    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, NULL), 0);
    cr_assert_eq(seen, TEL_CATS_DEFAULT);
    cr_assert_eq(svc->categories(svc->ctx), TEL_CATS_DEFAULT);

    ev.source_kind = "kernel_api";
    ev.metadata_json = "{\"plugin\":\"x\"}";
    ev.data_json = "{ \"n\" : 1 }";
    ev.ts_us = 77;
    cr_assert_eq(svc->publish(svc->ctx, &ev, &admitted, &seq), 0);
    cr_assert_eq(admitted, 1);
    cr_assert_eq(seq, 1);
    uint64_t cursor = 1;
    const struct tel_env *env;
    cr_assert_eq(tel_bus_read(bus, &cursor, &env, NULL), 0);
    size_t len;
    const char *json = tel_env_json(env, &len);
    char want[512];
    snprintf(want, sizeof want,
             "{\"seq\":1,\"event\":{\"ts\":77,\"type\":\"cdp_connect\",\"category\":\"connection\","
             "\"source\":{\"kind\":\"kernel_api\",\"metadata\":{\"plugin\":\"x\","
             "\"telemetry_session_id\":\"%s\"}},\"data\":{\"n\":1}}}",
             tel_session_id(sess));
    cr_assert_eq(len, strlen(want));
    cr_assert(memcmp(json, want, len) == 0);

    /* invalid events */
    struct telemetry_event bad = {.struct_size = sizeof bad, .type = "custom"};
    cr_assert_eq(svc->publish(svc->ctx, &bad, &admitted, NULL), -EINVAL);
    bad.category = "nope";
    cr_assert_eq(svc->publish(svc->ctx, &bad, &admitted, NULL), -EINVAL);
    bad.category = "system";
    bad.data_json = "{oops";
    cr_assert_eq(svc->publish(svc->ctx, &bad, &admitted, NULL), -EINVAL);
    bad.data_json = NULL;
    bad.metadata_json = "{\"a\":1}";
    cr_assert_eq(svc->publish(svc->ctx, &bad, &admitted, NULL), -EINVAL);
    bad.metadata_json = NULL;
    bad.struct_size = 4;
    cr_assert_eq(svc->publish(svc->ctx, &bad, &admitted, NULL), -EINVAL);
    cr_assert_eq(tel_bus_last_seq(bus), 1);

    svc->unsubscribe(svc->ctx, id);
    cr_assert_eq(tel_session_apply(sess, 0, NULL), 0);
    cr_assert_eq(seen, TEL_CATS_DEFAULT);
}

/* Parse body; on success encode its envelope into env (seq 1, session "s"). */
/* *tree: whether the body went through cJSON. */
static int parse_encode(const char *body, char *err, size_t errlen, struct evbuffer *env, int *tree)
{
    struct tel_publish_req r;
    int st = tel_publish_parse(body, strlen(body), &r, err, errlen);
    *tree = r.root != NULL;
    if (st == 0) {
        r.ev.ts_us = 1;
        cr_assert_eq(tel_envelope_encode(&r.ev, 1, "s", env, NULL), 0);
    }
    tel_publish_req_clear(&r);
    return st;
}

/* Bodies are read without cJSON unless a string that counts needs decoding:
 * an escape in a member name, in type or category, or anywhere in source.
 * Both paths must give the same verdict, message and envelope bytes: each
 * body is compared with itself plus an ignored member whose name holds an
 * escape, which sends it through cJSON. */
Test(publish, plain_and_escaped_bodies_agree)
{
    static const char *const extra[] = {
        /* parenthesised: one element split over lines, not a missing comma */
        ("{\"type\":\"console_log\",\"source\":{\"kind\":\"cdp\",\"event\":\"E\","
         "\"metadata\":{\"b\":\"2\",\"a\":\"1\",\"b\":\"3\",\"telemetry_session_id\":\"x\"}},"
         "\"data\":{\"level\":\"log\",\"text\":\"a<b & c\"}}"),
        "{\"type\":\"t\",\"type\":\"u\",\"category\":\"page\",\"category\":7,\"data\":[1 , 2]}",
        ("{\"type\":\"t\",\"category\":\"page\",\"source\":{\"kind\":null,\"event\":null,"
         "\"metadata\":null},\"data\":null}"),
        "{\"type\":\"t\",\"category\":\"page\",\"source\":{\"metadata\":{}}}",
        "{\"type\":\"t\",\"category\":\"page\",\"source\":{\"metadata\":{\"k\":1}}}",
        "{\"type\":\"t\",\"category\":\"page\",\"source\":{\"kind\":\"kernel_api\"}}",
        "{\"type\":\"t\",\"category\":\"page\",\"source\":{\"kind\":5}}",
        "{\"type\":\"t\",\"category\":\"page\",\"source\":[]}",
        "{\"type\":\"\u00e9\u2028\",\"category\":\"network\",\"data\":\"\u2029\"}",
        " { \"type\" : \"t\" , \"category\" : \"nope\" } ",
        "{}",
        "[]",
        "{\"type\":null}",
        "{\"type\":1}",
        "{\"category\":true,\"type\":\"t\"}",
        /* escapes where they are copied as written: data, ignored members */
        ("{\"type\":\"t\",\"category\":\"page\",\"note\":\"\\n\",\"data\":{\"text\":"
         "\"a\\\"b\\n\\u00e9 \\/<\",\"k\\u0041\":[\"\\t\"]}}"),
        "{\"type\":\"t\",\"category\":\"page\",\"data\":\"\\ud83d\\ude00\"}",
        "{\"type\":\"t\",\"category\":\"page\",\"data\":\"\\x\"}",
        "{\"type\":\"t\",\"category\":\"page\",\"data\":[1,]}",
        "{\"type\":\"t\",\"data\":1,\"category\":\"page\"} x",
    };
    size_t n;
    char **lines = tp_fixture_lines("publish-invalid.jsonl", &n);
    size_t total = n + sizeof extra / sizeof extra[0];
    size_t plain_ok = 0, plain_escaped = 0;
    for (size_t i = 0; i < total; i++) {
        cJSON *c = NULL;
        const char *body;
        if (i < n) {
            c = cJSON_Parse(lines[i]);
            body = cJSON_GetObjectItem(c, "body")->valuestring;
        } else {
            body = extra[i - n];
        }
        const char *open = strchr(body, '{');
        if (open == NULL || strspn(body, " \t\r\n") != (size_t)(open - body)) {
            cJSON_Delete(c);
            continue;
        }
        /* The variant: an ignored member with an escape, first in the object. */
        size_t len = strlen(body), at = (size_t)(open - body) + 1;
        const char *after = open + 1 + strspn(open + 1, " \t\r\n");
        const char *ins = *after == '}' ? "\"z\\u007a\":0" : "\"z\\u007a\":0,";
        char *variant = malloc(len + strlen(ins) + 1);
        cr_assert_not_null(variant);
        memcpy(variant, body, at);
        strcpy(variant + at, ins);
        strcat(variant, body + at);

        char e1[256] = "", e2[256] = "";
        struct evbuffer *b1 = evbuffer_new(), *b2 = evbuffer_new();
        int t1, t2;
        int s1 = parse_encode(body, e1, sizeof e1, b1, &t1);
        int s2 = parse_encode(variant, e2, sizeof e2, b2, &t2);
        cr_assert_eq(s1, s2, "%s: %d vs %d (%s / %s)", body, s1, s2, e1, e2);
        if (s1 != 0) {
            cr_assert_str_eq(e1, e2, "%s", body);
        } else {
            cr_assert(t2, "%s: the variant did not go through cJSON", body);
            plain_ok += !t1;
            plain_escaped += !t1 && strchr(body, '\\') != NULL;
            size_t l1 = evbuffer_get_length(b1), l2 = evbuffer_get_length(b2);
            cr_assert_eq(l1, l2, "%s", body);
            cr_assert(memcmp(evbuffer_pullup(b1, -1), evbuffer_pullup(b2, -1), l1) == 0, "%s",
                      body);
        }
        evbuffer_free(b1);
        evbuffer_free(b2);
        free(variant);
        cJSON_Delete(c);
    }
    tp_lines_free(lines, n);
    cr_assert_geq(plain_ok, 5);
    cr_assert_geq(plain_escaped, 2);
}

/* A lone surrogate escape is valid JSON syntax: in data it is kept as
 * written, as the reference keeps data as raw JSON. */
Test(publish, data_keeps_escapes_as_written)
{
    const char *body = "{\"type\":\"t\",\"category\":\"page\",\"data\":[\"\\ud800\", \"\\\"\"]}";
    struct tel_publish_req r;
    char err[256] = "";
    cr_assert_eq(tel_publish_parse(body, strlen(body), &r, err, sizeof err), 0, "%s", err);
    cr_assert_null(r.root);
    cr_assert_eq(r.ev.data_len, strlen("[\"\\ud800\",\"\\\"\"]"));
    cr_assert(memcmp(r.ev.data, "[\"\\ud800\",\"\\\"\"]", r.ev.data_len) == 0);
    tel_publish_req_clear(&r);

    /* An escape in a member that is not read needs no decoding either. */
    body = "{\"note\":\"\\n\",\"type\":\"t\",\"category\":\"page\"}";
    cr_assert_eq(tel_publish_parse(body, strlen(body), &r, err, sizeof err), 0, "%s", err);
    cr_assert_null(r.root);
    tel_publish_req_clear(&r);

    /* One in type does: the cJSON path decodes it. */
    body = "{\"type\":\"\\u0074\",\"category\":\"page\"}";
    cr_assert_eq(tel_publish_parse(body, strlen(body), &r, err, sizeof err), 0, "%s", err);
    cr_assert_not_null(r.root);
    cr_assert_str_eq(r.ev.type, "t");
    tel_publish_req_clear(&r);
}
