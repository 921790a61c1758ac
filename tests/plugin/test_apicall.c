/* test_apicall.c - api_call data and the observer's rules. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <event2/event.h>

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

static int warnings;
static char last_warning[256];

static void fake_log(void *host, int level, const char *fmt, ...)
{
    (void)host;
    if (level != AGENT_LOG_WARN)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_warning, sizeof last_warning, fmt, ap);
    va_end(ap);
    warnings++;
}

static struct event_base *base;

static struct event_base *fake_event_base(void *host)
{
    (void)host;
    return base;
}

static const struct agent_host_api fake_api = {
    .abi_major = AGENT_ABI_MAJOR,
    .struct_size = sizeof(struct agent_host_api),
    .event_base = fake_event_base,
    .log = fake_log,
    .observer_add = fake_observer_add,
};

/* One plugin's worth of bus, session, publish and observer. */
static struct tel_bus *bus;
static struct tel_session *sess;
static struct tel_publish *pub;
static struct tel_apicall *ac;

static void setup(void)
{
    warnings = 0;
    cr_assert_not_null(base = event_base_new());
    cr_assert_eq(tel_bus_new(256, &bus), 0);
    cr_assert_eq(tel_session_new(bus, &sess), 0);
    struct tel_publish_opts o = {.bus = bus, .session = sess};
    cr_assert_eq(tel_publish_new(&o, &pub), 0);
    cr_assert_eq(tel_apicall_new(&fake_api, pub, &ac), 0);
    cr_assert_eq(observer, tel_apicall_observe);
}

static void teardown(void)
{
    tel_apicall_free(ac);
    tel_publish_free(pub);
    tel_session_free(sess);
    tel_bus_free(bus);
    event_base_free(base);
}

/* Let the loop turn end: the queue is published there. */
static void end_turn(void)
{
    cr_assert_geq(event_base_loop(base, EVLOOP_NONBLOCK), 0);
}

/* The envelope of seq as a string (caller frees). */
static char *envelope(uint64_t seq)
{
    uint64_t cursor = seq;
    const struct tel_env *env;
    size_t len;
    cr_assert_eq(tel_bus_read(bus, &cursor, &env, NULL), 0);
    cr_assert_eq(tel_env_seq(env), seq);
    const char *raw = tel_env_json(env, &len);
    return strndup(raw, len);
}

static void request(const char *rid, const char *op)
{
    struct agent_request_info info = {.struct_size = sizeof info,
                                      .method = "POST",
                                      .path = "/x",
                                      .operation_id = op,
                                      .request_id = rid,
                                      .status = 200,
                                      .duration_ms = 1};
    observer(&info, observer_arg);
}

/* The "request_id" of envelope seq is want. */
static void assert_rid(uint64_t seq, const char *want)
{
    char *json = envelope(seq);
    char needle[128];
    snprintf(needle, sizeof needle, "\"data\":{\"request_id\":\"%s\",", want);
    cr_assert_not_null(strstr(json, needle), "seq %llu: %s", (unsigned long long)seq, json);
    free(json);
}

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

Test(apicall, observer_rules, .init = setup, .fini = teardown)
{
    struct agent_request_info info = {.struct_size = sizeof info,
                                      .method = "POST",
                                      .path = "/telemetry/events",
                                      .operation_id = "PublishTelemetryEvent",
                                      .request_id = "r1",
                                      .status = 200,
                                      .duration_ms = 1.5};
    /* no session: gated */
    observer(&info, observer_arg);
    end_turn();
    cr_assert_eq(tel_bus_last_seq(bus), 0);
    /* a session without control: gated */
    cr_assert_eq(tel_session_apply(sess, TELEMETRY_CAT_SYSTEM, NULL), 0);
    observer(&info, observer_arg);
    end_turn();
    cr_assert_eq(tel_bus_last_seq(bus), 0);

    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, NULL), 0);
    observer(&info, observer_arg);
    cr_assert_eq(tel_bus_last_seq(bus), 0, "published before the end of the turn");
    end_turn();
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
    end_turn();
    cr_assert_eq(tel_bus_last_seq(bus), 1);
    /* non-2xx status is reported as is */
    info.operation_id = "PutTelemetry";
    info.route_flags = 0;
    info.status = 400;
    observer(&info, observer_arg);
    end_turn();
    cr_assert_eq(tel_bus_last_seq(bus), 2);

    char *json = envelope(1);
    cr_assert_not_null(strstr(json, "\"type\":\"api_call\",\"category\":\"control\","
                                    "\"source\":{\"kind\":\"kernel_api\",\"metadata\":{"));
    cr_assert_not_null(strstr(json, "\"data\":{\"request_id\":\"r1\",\"operation_id\":"
                                    "\"PublishTelemetryEvent\",\"status\":200,"
                                    "\"duration_ms\":1.5}}}"));
    free(json);
    json = envelope(2);
    cr_assert_not_null(strstr(json, "\"operation_id\":\"PutTelemetry\",\"status\":400"));
    free(json);

    /* stopped: nothing more */
    tel_apicall_stop(ac);
    observer(&info, observer_arg);
    end_turn();
    cr_assert_eq(tel_bus_last_seq(bus), 2);
    cr_assert_eq(warnings, 0);
}

/* Queued events go first when anything else publishes: seq order is the
 * order in which events were admitted. */
Test(apicall, queue_keeps_admission_order, .init = setup, .fini = teardown)
{
    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT | TELEMETRY_CAT_CONSOLE, NULL), 0);
    request("a", "OpA");
    request("b", "OpB");
    struct tel_event ev = {.type = "console_log", .category = TEL_CAT_CONSOLE};
    int admitted = 0;
    cr_assert_eq(tel_publish_event(pub, &ev, &admitted, NULL), 0);
    cr_assert_eq(admitted, 1);
    cr_assert_eq(tel_bus_last_seq(bus), 3);
    assert_rid(1, "a");
    assert_rid(2, "b");
    char *json = envelope(3);
    cr_assert_not_null(strstr(json, "\"type\":\"console_log\""), "%s", json);
    free(json);
    end_turn();
    cr_assert_eq(tel_bus_last_seq(bus), 3, "published twice");
}

/* An event carries the session it was admitted under, even when the
 * session stops or is replaced before the end of the turn. */
Test(apicall, session_of_admission, .init = setup, .fini = teardown)
{
    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, NULL), 0);
    char first[128];
    snprintf(first, sizeof first, "\"telemetry_session_id\":\"%s\"", tel_session_id(sess));
    request("a", "OpA");
    cr_assert_eq(tel_session_apply(sess, 0, NULL), 0); /* stopped */
    request("gated", "OpB");
    int started = 0;
    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, &started), 0);
    cr_assert_eq(started, 1);
    char second[128];
    snprintf(second, sizeof second, "\"telemetry_session_id\":\"%s\"", tel_session_id(sess));
    cr_assert_str_neq(first, second);
    request("b", "OpC");
    end_turn();
    cr_assert_eq(tel_bus_last_seq(bus), 2);
    char *json = envelope(1);
    cr_assert_not_null(strstr(json, first), "%s", json);
    free(json);
    json = envelope(2);
    cr_assert_not_null(strstr(json, second), "%s", json);
    free(json);
    assert_rid(1, "a");
    assert_rid(2, "b");
}

/* More requests in one turn than the queue holds: all published, in order. */
Test(apicall, full_queue_published_in_order, .init = setup, .fini = teardown)
{
    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, NULL), 0);
    char rid[32];
    for (int i = 0; i < 200; i++) {
        snprintf(rid, sizeof rid, "r%03d", i);
        request(rid, "Op");
    }
    end_turn();
    cr_assert_eq(tel_bus_last_seq(bus), 200);
    for (int i = 0; i < 200; i++) {
        snprintf(rid, sizeof rid, "r%03d", i);
        assert_rid((uint64_t)i + 1, rid);
    }
    cr_assert_eq(warnings, 0);
}

/* Ids too long to queue: published at once, after what was queued. */
Test(apicall, long_ids_published_at_once, .init = setup, .fini = teardown)
{
    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, NULL), 0);
    size_t n = 40000;
    char *op = malloc(n + 1);
    cr_assert_not_null(op);
    memset(op, 'o', n);
    op[n] = '\0';
    request("a", "OpA");
    request("long", op);
    cr_assert_eq(tel_bus_last_seq(bus), 2);
    assert_rid(1, "a");
    assert_rid(2, "long");
    char *json = envelope(2);
    cr_assert_eq(strstr(json, op) != NULL, 1);
    free(json);
    free(op);
    end_turn();
    cr_assert_eq(tel_bus_last_seq(bus), 2);
}

/* Stopping publishes the queue first; freeing with a queue says so. */
Test(apicall, stop_publishes_the_queue, .init = setup, .fini = teardown)
{
    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, NULL), 0);
    request("a", "OpA");
    request("b", "OpB");
    tel_apicall_stop(ac);
    cr_assert_eq(tel_bus_last_seq(bus), 2);
    assert_rid(2, "b");
    cr_assert_eq(warnings, 0);
}

Test(apicall, free_reports_the_queue, .init = setup)
{
    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, NULL), 0);
    request("a", "OpA");
    tel_apicall_free(ac);
    ac = NULL;
    cr_assert_eq(warnings, 1);
    cr_assert_str_eq(last_warning, "1 api_call event(s) not published");
    teardown();
}

/* A publish from inside the bus's notification of another event is refused
 * (-EBUSY); the api_call queued there waits for the end of the turn. */
static void publish_while_notified(const struct tel_env *env, void *arg)
{
    int *rc = arg;
    if (tel_env_seq(env) != 1)
        return;
    request("inner", "OpInner");
    struct tel_event ev = {.type = "console_log", .category = TEL_CAT_CONSOLE};
    int admitted = 0;
    *rc = tel_publish_event(pub, &ev, &admitted, NULL);
}

Test(apicall, busy_bus_keeps_the_queue, .init = setup, .fini = teardown)
{
    int inner_rc = 0, admitted = 0;
    unsigned id;
    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT | TELEMETRY_CAT_CONSOLE, NULL), 0);
    cr_assert_eq(tel_bus_subscribe(bus, publish_while_notified, &inner_rc, &id), 0);
    struct tel_event ev = {.type = "console_log", .category = TEL_CAT_CONSOLE};
    cr_assert_eq(tel_publish_event(pub, &ev, &admitted, NULL), 0);
    cr_assert_eq(inner_rc, -EBUSY);
    cr_assert_eq(tel_bus_last_seq(bus), 1);
    end_turn();
    cr_assert_eq(tel_bus_last_seq(bus), 2, "the queued event is published at the end of the turn");
    assert_rid(2, "inner");
    cr_assert_eq(warnings, 0);
    tel_bus_unsubscribe(bus, id);
}

/* ts is when the request ended, not when the queue was published. */
Test(apicall, ts_of_the_request_end, .init = setup, .fini = teardown)
{
    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, NULL), 0);
    int64_t before = tel_now_us();
    request("a", "OpA");
    int64_t after = tel_now_us();
    while (tel_now_us() < after + 5000)
        ; /* the turn ends 5 ms later */
    end_turn();
    char *json = envelope(1);
    const char *ts = strstr(json, "\"ts\":");
    cr_assert_not_null(ts, "%s", json);
    long long v = strtoll(ts + 5, NULL, 10);
    cr_assert(v >= before && v <= after, "ts %lld not in [%lld, %lld]", v, (long long)before,
              (long long)after);
    free(json);
}
