/* test_apicall.c - api_call data and the observer's rules. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <event2/buffer.h>

#include "agent/plugin.h"
#include "apicall.h"
#include "bus.h"
#include "envelope.h"
#include "publish.h"
#include "session.h"
#include "tp_util.h"

static agent_observer_fn observer;
static void *observer_arg;

static int fake_observer_add(void *host, agent_observer_fn fn, void *arg)
{
    (void)host;
    observer = fn;
    observer_arg = arg;
    return 0;
}

static void fake_log(void *host, int level, const char *fmt, ...)
{
    (void)host;
    (void)level;
    (void)fmt;
}

static const struct agent_host_api fake_api = {
    .abi_major = AGENT_ABI_MAJOR,
    .struct_size = sizeof(struct agent_host_api),
    .log = fake_log,
    .observer_add = fake_observer_add,
};

Test(apicall, data_object)
{
    static const struct {
        double ms;
        const char *printed;
    } cases[] = {{0.412, "0.412"}, {12, "12"},        {1500.5, "1500.5"},
                 {0.0004, "0"},    {0.0006, "0.001"}, {-1, "0"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct agent_request_info info = {.struct_size = sizeof info,
                                          .operation_id = "PublishTelemetryEvent",
                                          .request_id = "host/Ab<c>-000012",
                                          .status = 204,
                                          .duration_ms = cases[i].ms};
        struct evbuffer *b = evbuffer_new();
        cr_assert_eq(tel_apicall_data(&info, b), 0);
        char *s = tp_evbuffer_str(b);
        char want[256];
        snprintf(want, sizeof want,
                 "{\"request_id\":\"host/Ab\\u003cc\\u003e-000012\",\"operation_id\":"
                 "\"PublishTelemetryEvent\",\"status\":204,\"duration_ms\":%s}",
                 cases[i].printed);
        cr_assert_str_eq(s, want);
        free(s);
        evbuffer_free(b);
    }
}

Test(apicall, observer_rules)
{
    struct tel_bus *bus;
    struct tel_session *sess;
    struct tel_publish *pub;
    struct tel_apicall *ac;
    cr_assert_eq(tel_bus_new(16, &bus), 0);
    cr_assert_eq(tel_session_new(bus, &sess), 0);
    struct tel_publish_opts o = {.bus = bus, .session = sess};
    cr_assert_eq(tel_publish_new(&o, &pub), 0);
    cr_assert_eq(tel_apicall_new(&fake_api, pub, &ac), 0);
    cr_assert_eq(observer, tel_apicall_observe);

    struct agent_request_info info = {.struct_size = sizeof info,
                                      .method = "POST",
                                      .path = "/telemetry/events",
                                      .operation_id = "PublishTelemetryEvent",
                                      .request_id = "r1",
                                      .status = 200,
                                      .duration_ms = 1.5};
    /* no session: gated */
    observer(&info, observer_arg);
    cr_assert_eq(tel_bus_last_seq(bus), 0);
    /* a session without control: gated */
    cr_assert_eq(tel_session_apply(sess, TELEMETRY_CAT_SYSTEM, NULL), 0);
    observer(&info, observer_arg);
    cr_assert_eq(tel_bus_last_seq(bus), 0);

    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, NULL), 0);
    observer(&info, observer_arg);
    cr_assert_eq(tel_bus_last_seq(bus), 1);
    /* no operation id, or side-effect-free: nothing */
    info.operation_id = NULL;
    observer(&info, observer_arg);
    info.operation_id = "";
    observer(&info, observer_arg);
    info.operation_id = "ReadTelemetryEvents";
    info.route_flags = AGENT_ROUTE_SIDE_EFFECT_FREE;
    observer(&info, observer_arg);
    info.operation_id = "StreamTelemetryEvents";
    info.route_flags = AGENT_ROUTE_SIDE_EFFECT_FREE | AGENT_ROUTE_STREAMING;
    observer(&info, observer_arg);
    cr_assert_eq(tel_bus_last_seq(bus), 1);
    /* non-2xx status is reported as is */
    info.operation_id = "PutTelemetry";
    info.route_flags = 0;
    info.status = 400;
    observer(&info, observer_arg);
    cr_assert_eq(tel_bus_last_seq(bus), 2);

    uint64_t cursor = 1;
    const struct tel_env *env;
    cr_assert_eq(tel_bus_read(bus, &cursor, &env, NULL), 0);
    size_t len;
    const char *raw = tel_env_json(env, &len);
    char *json = strndup(raw, len);
    cr_assert_not_null(strstr(json, "\"type\":\"api_call\",\"category\":\"control\","
                                    "\"source\":{\"kind\":\"kernel_api\",\"metadata\":{"));
    cr_assert_not_null(strstr(json, "\"data\":{\"request_id\":\"r1\",\"operation_id\":"
                                    "\"PublishTelemetryEvent\",\"status\":200,"
                                    "\"duration_ms\":1.5}}}"));
    free(json);
    cr_assert_eq(tel_bus_read(bus, &cursor, &env, NULL), 0);
    raw = tel_env_json(env, &len);
    json = strndup(raw, len);
    cr_assert_not_null(strstr(json, "\"operation_id\":\"PutTelemetry\",\"status\":400"));
    free(json);

    /* stopped: nothing more */
    tel_apicall_stop(ac);
    observer(&info, observer_arg);
    cr_assert_eq(tel_bus_last_seq(bus), 2);

    tel_apicall_free(ac);
    tel_publish_free(pub);
    tel_session_free(sess);
    tel_bus_free(bus);
}
