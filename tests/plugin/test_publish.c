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
