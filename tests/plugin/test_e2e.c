/*
 * test_e2e.c - the plugin in the real agent: session rules, publish answers,
 * SSE frames (live, resume, replay, gaps, keep-alive), api_call events, the
 * shared service (publisher fixture plugin), archive contents in s2-local,
 * shutdown.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include "support.h"
#include "tp_agent.h"
#include "tp_util.h"

static struct tp_agent agent;

static void fini(void)
{
    tp_agent_cleanup(&agent);
}

TestSuite(e2e, .fini = fini, .timeout = 60);

/* The body must be {"message": <non-empty string>} as application/json. */
static void assert_json_error(const struct ts_resp *r, long status, const char *message)
{
    cr_assert_eq(r->status, status, "status %ld, body %s", r->status, r->body);
    const char *ct = ts_resp_header(r, "Content-Type");
    cr_assert(ct != NULL && strncmp(ct, "application/json", 16) == 0, "content type %s", ct);
    cJSON *j = cJSON_Parse(r->body);
    cr_assert_not_null(j, "not JSON: %s", r->body);
    cJSON *m = cJSON_GetObjectItem(j, "message");
    cr_assert(cJSON_IsString(m) && m->valuestring[0] != '\0');
    if (message != NULL)
        cr_assert_str_eq(m->valuestring, message);
    cJSON_Delete(j);
}

static cJSON *json_of(const struct ts_resp *r)
{
    cJSON *j = cJSON_Parse(r->body);
    cr_assert_not_null(j, "not JSON: %s", r->body);
    return j;
}

static int enabled(cJSON *state, const char *cat)
{
    cJSON *b = cJSON_GetObjectItem(cJSON_GetObjectItem(state, "config"), "browser");
    return cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(b, cat), "enabled"));
}

static struct ts_sse *sse_open(const char *query, const char *const headers[])
{
    char url[512], path[256];
    struct ts_sse *s = NULL;
    snprintf(path, sizeof path, "/telemetry/stream%s", query ? query : "");
    cr_assert_eq(ts_sse_open(tp_url(&agent, path, url, sizeof url), headers, 10000, &s), 0);
    cr_assert_eq(ts_sse_status(s), 200);
    return s;
}

/* The next data frame (comments skipped); its id must be its envelope seq. */
static char *sse_data(struct ts_sse *s, uint64_t *id)
{
    struct ts_sse_event ev;
    for (;;) {
        int rc = ts_sse_next(s, 10000, &ev);
        cr_assert_eq(rc, 0, "no frame (%d)", rc);
        if (!ev.comment)
            break;
    }
    cr_assert_not_null(ev.id);
    cr_assert_not_null(ev.data);
    cr_assert_null(ev.event, "frames carry no event field");
    *id = strtoull(ev.id, NULL, 10);
    cJSON *j = cJSON_Parse(ev.data);
    cr_assert_not_null(j, "frame data not JSON: %s", ev.data);
    cr_assert_eq((uint64_t)cJSON_GetObjectItem(j, "seq")->valuedouble, *id);
    cJSON_Delete(j);
    return strdup(ev.data);
}

static uint64_t sse_next_id(struct ts_sse *s)
{
    uint64_t id;
    free(sse_data(s, &id));
    return id;
}

/* Whether the process has libcurl mapped: it is loaded only for an S2
 * reached over HTTP, never for the embedded archive. */
static int maps_libcurl(const struct ts_proc *p)
{
    char path[64], line[512];
    int found = 0;
    snprintf(path, sizeof path, "/proc/%d/maps", ts_proc_pid(p));
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, "/libcurl") != NULL;
    fclose(f);
    return found;
}

/* The archive's records once it holds at least want of them, or what it
 * holds after 10 s; *bodies as tp_archive_records. */
static void wait_archived(size_t want, char ***bodies, size_t *n)
{
    long long deadline = ts_now_ms() + 10000;
    for (;;) {
        tp_archive_records(&agent, bodies, n);
        if (*n >= want || ts_now_ms() > deadline)
            return;
        tp_bodies_free(*bodies, *n);
        ts_sleep_ms(50);
    }
}

static void publish(const char *body, long want)
{
    struct ts_resp r;
    tp_req(&agent, "POST", "/telemetry/events", body, &r);
    cr_assert_eq(r.status, want, "POST %s -> %ld %s", body, r.status, r.body);
    ts_resp_free(&r);
}

Test(e2e, session_rules)
{
    struct ts_resp r;
    tp_agent_start(&agent, NULL, 0, 0);

    tp_req(&agent, "GET", "/telemetry", NULL, &r);
    assert_json_error(&r, 404, "telemetry is not configured");
    ts_resp_free(&r);
    tp_req(&agent, "PATCH", "/telemetry", "{\"browser\":{\"page\":{\"enabled\":true}}}", &r);
    assert_json_error(&r, 404, "telemetry is not configured");
    ts_resp_free(&r);

    /* start: 201, default set */
    tp_req(&agent, "PUT", "/telemetry", NULL, &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cJSON *j = json_of(&r);
    cr_assert(enabled(j, "control") && enabled(j, "connection") && enabled(j, "system") &&
              enabled(j, "captcha"));
    cr_assert(!enabled(j, "console") && !enabled(j, "page"));
    cr_assert_not_null(cJSON_GetObjectItem(j, "applied_at"));
    cr_assert_eq(cJSON_GetObjectItem(j, "seq")->valueint, 0);
    cJSON_Delete(j);
    ts_resp_free(&r);

    /* replace: 200, exactly the enabled ones */
    tp_req(&agent, "PUT", "/telemetry",
           "{\"browser\":{\"page\":{\"enabled\":true},\"system\":{\"enabled\":false}}}", &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    j = json_of(&r);
    cr_assert(enabled(j, "page") && !enabled(j, "system") && !enabled(j, "control"));
    cJSON_Delete(j);
    ts_resp_free(&r);

    /* PATCH changes only what it names */
    tp_req(&agent, "PATCH", "/telemetry", "{\"browser\":{\"captcha\":{\"enabled\":true}}}", &r);
    cr_assert_eq(r.status, 200);
    j = json_of(&r);
    cr_assert(enabled(j, "page") && enabled(j, "captcha"));
    cJSON_Delete(j);
    ts_resp_free(&r);

    tp_req(&agent, "GET", "/telemetry", NULL, &r);
    cr_assert_eq(r.status, 200);
    j = json_of(&r);
    cr_assert(enabled(j, "page") && enabled(j, "captcha") && !enabled(j, "network"));
    cJSON_Delete(j);
    ts_resp_free(&r);

    /* bad bodies: 400 JSON naming the problem */
    tp_req(&agent, "PATCH", "/telemetry", "{\"browser\":{\"page\":{\"enabled\":1}}}", &r);
    assert_json_error(&r, 400, "invalid JSON body: browser.page.enabled must be a boolean");
    ts_resp_free(&r);
    tp_req(&agent, "PUT", "/telemetry", "nope", &r);
    assert_json_error(&r, 400, NULL);
    ts_resp_free(&r);

    /* PATCH to empty stops the session: 200 all false, then 404 */
    tp_req(&agent, "PATCH", "/telemetry",
           "{\"browser\":{\"page\":{\"enabled\":false},\"captcha\":{\"enabled\":false}}}", &r);
    cr_assert_eq(r.status, 200);
    j = json_of(&r);
    cr_assert(!enabled(j, "page") && !enabled(j, "captcha") && !enabled(j, "control"));
    cr_assert_null(cJSON_GetObjectItem(j, "applied_at"));
    cJSON_Delete(j);
    ts_resp_free(&r);
    tp_req(&agent, "GET", "/telemetry", NULL, &r);
    cr_assert_eq(r.status, 404);
    ts_resp_free(&r);

    /* PUT with nothing enabled: 200, stays stopped */
    tp_req(&agent, "PUT", "/telemetry", "{\"browser\":{}}", &r);
    cr_assert_eq(r.status, 200);
    ts_resp_free(&r);
    tp_req(&agent, "GET", "/telemetry", NULL, &r);
    cr_assert_eq(r.status, 404);
    ts_resp_free(&r);
    tp_agent_stop(&agent);
}

/* TestEventLifecycle plus the fixture events, the SSE bytes and the archive. */
Test(e2e, publish_stream_and_archive)
{
    struct ts_resp r;
    size_t n;
    uint64_t id;
    tp_agent_start(&agent, NULL, 0, 1);
    tp_req(&agent, "PUT", "/telemetry", "{}", &r);
    cr_assert_eq(r.status, 201);
    ts_resp_free(&r);

    struct ts_sse *live = sse_open(NULL, NULL);
    cr_assert_str_eq(ts_sse_header(live, "Content-Type"), "text/event-stream");
    cr_assert_str_eq(ts_sse_header(live, "Cache-Control"), "no-cache");
    cr_assert_str_eq(ts_sse_header(live, "X-Accel-Buffering"), "no");
    cr_assert_str_eq(ts_sse_header(live, "X-SSE-Content-Type"), "application/json");

    char **lines = tp_fixture_lines("default-session.jsonl", &n);
    size_t admitted = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *c = cJSON_Parse(lines[i]);
        long want = cJSON_GetObjectItem(c, "expect")->valueint;
        cJSON *body = cJSON_GetObjectItem(c, "body");
        /* send the body text as written (big numbers intact) */
        const char *raw = strstr(lines[i], "\"body\": ") + 8;
        char *text = strndup(raw, strlen(raw) - 1);
        tp_req(&agent, "POST", "/telemetry/events", text, &r);
        cr_assert_eq(r.status, want, "line %zu: %ld %s", i + 1, r.status, r.body);
        if (want == 200) {
            admitted++;
            cr_assert_str_eq(ts_resp_header(&r, "Content-Type"), "application/json");
            cJSON *env = json_of(&r);
            cJSON *ev = cJSON_GetObjectItem(env, "event");
            cr_assert_str_eq(cJSON_GetObjectItem(ev, "type")->valuestring,
                             cJSON_GetObjectItem(body, "type")->valuestring);
            cJSON *src = cJSON_GetObjectItem(ev, "source");
            cr_assert_not_null(cJSON_GetObjectItem(src, "kind"));
            const char *sid =
                cJSON_GetObjectItem(cJSON_GetObjectItem(src, "metadata"), "telemetry_session_id")
                    ->valuestring;
            cr_assert_neq(strcmp(sid, "spoofed"), 0);
            cJSON_Delete(env);
            /* the frame carries the same bytes, then the api_call of the POST */
            char *frame = sse_data(live, &id);
            cr_assert_str_eq(frame, r.body);
            free(frame);
        } else {
            cr_assert_eq(r.body_len, 0);
        }
        {
            char *ac = sse_data(live, &id);
            cr_assert_not_null(strstr(ac, "\"type\":\"api_call\""));
            cr_assert_not_null(strstr(ac, "\"operation_id\":\"PublishTelemetryEvent\""));
            char st[32];
            snprintf(st, sizeof st, "\"status\":%ld", want);
            cr_assert_not_null(strstr(ac, st), "%s", ac);
            free(ac);
        }
        ts_resp_free(&r);
        free(text);
        cJSON_Delete(c);
    }
    tp_lines_free(lines, n);
    cr_assert_eq(admitted, 8);
    ts_sse_close(live);

    /* Everything admitted so far (PUT's api_call, events, api_calls): the
     * archive must hold exactly the same envelopes, in seq order. */
    tp_req(&agent, "GET", "/telemetry", NULL, &r);
    cJSON *st = json_of(&r);
    uint64_t last = (uint64_t)cJSON_GetObjectItem(st, "seq")->valuedouble;
    cJSON_Delete(st);
    ts_resp_free(&r);
    cr_assert_eq(last, 1 + admitted + n);
    last++; /* the api_call of that GET /telemetry */

    struct ts_sse *all = sse_open("?replay=all", NULL);
    char **frames = calloc(last, sizeof *frames);
    for (uint64_t i = 0; i < last; i++) {
        frames[i] = sse_data(all, &id);
        cr_assert_eq(id, i + 1);
    }
    ts_sse_close(all);

    char **bodies = NULL;
    size_t nb = 0;
    wait_archived(last, &bodies, &nb);
    cr_assert_eq(nb, last, "archive holds %zu of %" PRIu64, nb, last);
    for (uint64_t i = 0; i < last; i++)
        cr_assert_str_eq(bodies[i], frames[i], "record %" PRIu64, i);
    tp_bodies_free(bodies, nb);
    for (uint64_t i = 0; i < last; i++)
        free(frames[i]);
    free(frames);
    /* archived in process: libcurl was never loaded */
    cr_assert_not(maps_libcurl(agent.proc));
    tp_agent_stop(&agent);
}

Test(e2e, publish_validation)
{
    struct ts_resp r;
    size_t n;
    const char *env[] = {"TELEMETRY_MAX_BODY=1024", NULL};
    tp_agent_start(&agent, env, 0, 0);
    char **lines = tp_fixture_lines("publish-invalid.jsonl", &n);
    for (size_t i = 0; i < n; i++) {
        cJSON *c = cJSON_Parse(lines[i]);
        int want = cJSON_GetObjectItem(c, "status")->valueint;
        cJSON *msg = cJSON_GetObjectItem(c, "message");
        tp_req(&agent, "POST", "/telemetry/events", cJSON_GetObjectItem(c, "body")->valuestring,
               &r);
        if (want == 0) /* valid, but no session: dropped */
            cr_assert_eq(r.status, 204, "%s: %ld", cJSON_GetObjectItem(c, "name")->valuestring,
                         r.status);
        else
            assert_json_error(&r, want, msg->valuestring);
        ts_resp_free(&r);
        cJSON_Delete(c);
    }
    tp_lines_free(lines, n);

    /* over TELEMETRY_MAX_BODY: 413 JSON */
    char big[2048];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    static const char head[] = "{\"type\":\"x\",\"category\":\"system\",\"data\":\"";
    memcpy(big, head, sizeof head - 1);
    big[sizeof big - 3] = '"';
    big[sizeof big - 2] = '}';
    tp_req(&agent, "POST", "/telemetry/events", big, &r);
    assert_json_error(&r, 413, NULL);
    ts_resp_free(&r);
    /* empty body: 400 */
    tp_req(&agent, "POST", "/telemetry/events", "", &r);
    assert_json_error(&r, 400, NULL);
    ts_resp_free(&r);
    tp_agent_stop(&agent);
}

/* Resume, replay and gaps with a ring of 8; a boot session of one category
 * (no api_call events in the ring). */
Test(e2e, stream_resume_replay_gap)
{
    const char *env[] = {"TELEMETRY_RING_CAPACITY=8", "TELEMETRY_CATEGORIES=system", NULL};
    const char *ev = "{\"type\":\"test.system\",\"category\":\"system\"}";
    tp_agent_start(&agent, env, 0, 0);
    for (int i = 0; i < 5; i++)
        publish(ev, 200);

    /* TestStreamReplayAllFromOldest */
    struct ts_sse *s = sse_open("?replay=all", NULL);
    for (uint64_t want = 1; want <= 5; want++)
        cr_assert_eq(sse_next_id(s), want);
    ts_sse_close(s);

    /* TestStreamResumeAfterLastEventIDUnchanged, and LEID wins over replay */
    const char *leid3[] = {"Last-Event-ID: 3", NULL};
    s = sse_open("?replay=all", leid3);
    cr_assert_eq(sse_next_id(s), 4);
    cr_assert_eq(sse_next_id(s), 5);
    ts_sse_close(s);

    /* from now: unparseable / zero Last-Event-ID, or nothing */
    const char *bad[] = {"Last-Event-ID: abc", NULL};
    const char *zero[] = {"Last-Event-ID: 0", NULL};
    struct ts_sse *a = sse_open(NULL, bad), *b = sse_open("?replay=all", zero),
                  *c = sse_open("?replay=foo", NULL);
    publish(ev, 200);
    cr_assert_eq(sse_next_id(a), 6);
    cr_assert_eq(sse_next_id(b), 6);
    cr_assert_eq(sse_next_id(c), 6);
    ts_sse_close(a);
    ts_sse_close(b);

    /* TestStreamReplayAllAfterEviction: 21 published, ring 8 -> first 14 */
    for (int i = 0; i < 15; i++)
        publish(ev, 200);
    s = sse_open("?replay=all", NULL);
    cr_assert_eq(sse_next_id(s), 14);
    ts_sse_close(s);
    /* a resume point that was evicted: a gap, then contiguous ids */
    const char *leid2[] = {"Last-Event-ID: 2", NULL};
    s = sse_open(NULL, leid2);
    cr_assert_eq(sse_next_id(s), 14);
    for (uint64_t want = 15; want <= 21; want++)
        cr_assert_eq(sse_next_id(s), want);
    ts_sse_close(s);
    /* the live client c saw everything in order */
    for (uint64_t want = 7; want <= 21; want++)
        cr_assert_eq(sse_next_id(c), want);
    ts_sse_close(c);

    /* two Last-Event-ID headers: 400 JSON */
    char url[256];
    struct ts_resp r;
    const char *two[] = {"Last-Event-ID: 1", "Last-Event-ID: 2", NULL};
    cr_assert_eq(
        ts_http("GET", tp_url(&agent, "/telemetry/stream", url, sizeof url), NULL, 0, two, &r), 0);
    assert_json_error(&r, 400, "Expected one value for Last-Event-ID, got 2");
    ts_resp_free(&r);
    tp_agent_stop(&agent);
}

Test(e2e, keepalive_comment)
{
    const char *env[] = {"TELEMETRY_SSE_KEEPALIVE=200ms", "TELEMETRY_CATEGORIES=system", NULL};
    tp_agent_start(&agent, env, 0, 0);
    struct ts_sse *s = sse_open(NULL, NULL);
    struct ts_sse_event ev;
    cr_assert_eq(ts_sse_next(s, 5000, &ev), 0);
    cr_assert_eq(ev.comment, 1, "expected the keep-alive comment");
    cr_assert_null(ev.id);
    cr_assert_eq(ts_sse_next(s, 5000, &ev), 0);
    cr_assert_eq(ev.comment, 1);
    publish("{\"type\":\"service_crashed\"}", 200);
    cr_assert_eq(sse_next_id(s), 1);
    ts_sse_close(s);
    tp_agent_stop(&agent);
}

/* An api_call per request on routes with an operation id, none for the
 * side-effect-free ones; request id and status as the host saw them. */
Test(e2e, api_call_events)
{
    char url[256];
    struct ts_resp r;
    uint64_t id;
    tp_agent_start(&agent, NULL, 0, 1);
    tp_req(&agent, "PUT", "/telemetry", NULL, &r);
    ts_resp_free(&r);
    struct ts_sse *s = sse_open(NULL, NULL);

    /* side-effect-free: reading the archive, another stream */
    tp_req(&agent, "GET", "/telemetry/events", NULL, &r);
    cr_assert_eq(r.status, 200);
    ts_resp_free(&r);
    struct ts_sse *other = sse_open(NULL, NULL);
    ts_sse_close(other);

    const char *h400[] = {"X-Request-Id: req-400", NULL};
    cr_assert_eq(ts_http("POST", tp_url(&agent, "/telemetry/events", url, sizeof url),
                         "{\"type\":\"\"}", 11, h400, &r),
                 0);
    cr_assert_eq(r.status, 400);
    ts_resp_free(&r);
    const char *h200[] = {"X-Request-Id: req-200", NULL};
    const char *body = "{\"type\":\"cdp_connect\"}";
    cr_assert_eq(ts_http("POST", tp_url(&agent, "/telemetry/events", url, sizeof url), body,
                         strlen(body), h200, &r),
                 0);
    cr_assert_eq(r.status, 200);
    ts_resp_free(&r);
    const char *hget[] = {"X-Request-Id: req-get", NULL};
    cr_assert_eq(ts_http("GET", tp_url(&agent, "/telemetry", url, sizeof url), NULL, 0, hget, &r),
                 0);
    ts_resp_free(&r);

    char *f = sse_data(s, &id);
    cr_assert_not_null(strstr(f, "\"type\":\"api_call\",\"category\":\"control\","
                                 "\"source\":{\"kind\":\"kernel_api\""),
                       "%s", f);
    cr_assert_not_null(strstr(f, "\"data\":{\"request_id\":\"req-400\",\"operation_id\":"
                                 "\"PublishTelemetryEvent\",\"status\":400,\"duration_ms\":"),
                       "%s", f);
    free(f);
    f = sse_data(s, &id);
    cr_assert_not_null(strstr(f, "\"type\":\"cdp_connect\""), "%s", f);
    free(f);
    f = sse_data(s, &id);
    cr_assert_not_null(strstr(f, "\"request_id\":\"req-200\",\"operation_id\":"
                                 "\"PublishTelemetryEvent\",\"status\":200"),
                       "%s", f);
    free(f);
    /* next is the GET /telemetry: nothing from the reads or the stream */
    f = sse_data(s, &id);
    cr_assert_not_null(strstr(f, "\"request_id\":\"req-get\",\"operation_id\":\"GetTelemetry\","
                                 "\"status\":200"),
                       "%s", f);
    free(f);

    /* control disabled: no api_call */
    tp_req(&agent, "PATCH", "/telemetry", "{\"browser\":{\"control\":{\"enabled\":false}}}", &r);
    ts_resp_free(&r);
    publish(body, 200);
    f = sse_data(s, &id);
    cr_assert_not_null(strstr(f, "\"type\":\"cdp_connect\""), "%s", f);
    free(f);
    struct ts_sse_event ev;
    cr_assert_eq(ts_sse_next(s, 500, &ev), -ETIMEDOUT, "unexpected frame %s", ev.data);
    ts_sse_close(s);
    tp_agent_stop(&agent);
}

/* The shared service, through the publisher fixture plugin. */
Test(e2e, publisher_plugin_uses_the_service)
{
    struct ts_resp r;
    uint64_t id;
    tp_agent_start(&agent, NULL, 1, 0);
    tp_req(&agent, "GET", "/publisher/categories", NULL, &r);
    cr_assert_str_eq(r.body, "{\"mask\":0,\"changes\":0,\"last\":0}");
    ts_resp_free(&r);

    tp_req(&agent, "POST", "/publisher/events?n=3&category=page", NULL, &r);
    cr_assert_str_eq(r.body, "{\"published\":3,\"admitted\":0,\"first_seq\":0,\"last_seq\":0}");
    ts_resp_free(&r);

    tp_req(&agent, "PUT", "/telemetry", "{\"browser\":{\"page\":{\"enabled\":true}}}", &r);
    cr_assert_eq(r.status, 201);
    ts_resp_free(&r);
    /* page (bit 2) + monitor (bit 9) */
    tp_req(&agent, "GET", "/publisher/categories", NULL, &r);
    cr_assert_str_eq(r.body, "{\"mask\":516,\"changes\":1,\"last\":516}");
    ts_resp_free(&r);

    struct ts_sse *s = sse_open(NULL, NULL);
    tp_req(&agent, "POST", "/publisher/events?n=3&category=page&pad=4", NULL, &r);
    cr_assert_str_eq(r.body, "{\"published\":3,\"admitted\":3,\"first_seq\":1,\"last_seq\":3}");
    ts_resp_free(&r);
    tp_req(&agent, "POST", "/publisher/events?n=2&category=console", NULL, &r);
    cr_assert_str_eq(r.body, "{\"published\":2,\"admitted\":0,\"first_seq\":0,\"last_seq\":0}");
    ts_resp_free(&r);
    for (int i = 0; i < 3; i++) {
        char *f = sse_data(s, &id);
        cr_assert_eq(id, (uint64_t)i + 1);
        cr_assert_not_null(strstr(f, "\"type\":\"publisher.event\",\"category\":\"page\","
                                     "\"source\":{\"kind\":\"local_process\",\"event\":"
                                     "\"publisher\",\"metadata\":{\"plugin\":\"publisher\","
                                     "\"telemetry_session_id\":"),
                           "%s", f);
        char d[64];
        snprintf(d, sizeof d, "\"data\":{\"i\":%d,\"pad\":\"xxxx\"}}}", i);
        cr_assert_not_null(strstr(f, d), "%s", f);
        free(f);
    }
    ts_sse_close(s);

    tp_req(&agent, "PATCH", "/telemetry", "{\"browser\":{\"page\":{\"enabled\":false}}}", &r);
    ts_resp_free(&r);
    tp_req(&agent, "GET", "/publisher/categories", NULL, &r);
    cr_assert_str_eq(r.body, "{\"mask\":0,\"changes\":2,\"last\":0}");
    ts_resp_free(&r);
    tp_agent_stop(&agent);
}

Test(e2e, boot_session_and_bad_configuration)
{
    struct ts_resp r;
    const char *env[] = {"TELEMETRY_CATEGORIES=all", NULL};
    tp_agent_start(&agent, env, 0, 0);
    tp_req(&agent, "GET", "/telemetry", NULL, &r);
    cr_assert_eq(r.status, 200);
    cJSON *j = json_of(&r);
    static const char *cats[] = {"console",    "network", "page",       "interaction", "control",
                                 "connection", "system",  "screenshot", "captcha"};
    for (size_t i = 0; i < 9; i++)
        cr_assert(enabled(j, cats[i]), "%s", cats[i]);
    cJSON_Delete(j);
    ts_resp_free(&r);
    tp_agent_stop(&agent);

    /* an invalid value refuses to start, naming the variable */
    const char *plugins_kv = NULL;
    char kv[2048];
    snprintf(kv, sizeof kv, "AGENT_PLUGINS=telemetry:%s", ts_env("TELEMETRY_PLUGIN"));
    plugins_kv = kv;
    const char *bad_env[] = {plugins_kv, "TELEMETRY_RING_CAPACITY=lots", NULL};
    const char *argv[] = {ts_env("AGENT_BIN"), NULL};
    struct ts_proc *p;
    int st = -1;
    cr_assert_eq(ts_proc_start(argv, bad_env, &p), 0);
    cr_assert_eq(ts_proc_wait(p, 10000, &st), 0);
    cr_assert_neq(st, 0);
    cr_assert_not_null(strstr(ts_proc_log(p), "TELEMETRY_RING_CAPACITY"), "%s", ts_proc_log(p));
    ts_proc_free(p);
}

/* Shutdown ends open streams cleanly and flushes the archive: what was
 * admitted is in s2-local's files afterwards. */
Test(e2e, shutdown_ends_streams_and_flushes)
{
    struct ts_resp r;
    tp_agent_start(&agent, (const char *[]){"S2_BATCHER_LINGER=5s", NULL}, 1, 1);
    tp_req(&agent, "PUT", "/telemetry", "{\"browser\":{\"system\":{\"enabled\":true}}}", &r);
    ts_resp_free(&r);
    struct ts_sse *s = sse_open(NULL, NULL);
    tp_req(&agent, "POST", "/publisher/events?n=50", NULL, &r);
    cr_assert_str_eq(r.body, "{\"published\":50,\"admitted\":50,\"first_seq\":1,\"last_seq\":50}");
    ts_resp_free(&r);
    for (uint64_t want = 1; want <= 50; want++)
        cr_assert_eq(sse_next_id(s), want);

    /* the 5 s linger has not passed: the flush at shutdown sends them */
    tp_agent_stop(&agent);
    struct ts_sse_event ev;
    cr_assert_eq(ts_sse_next(s, 5000, &ev), -EPIPE, "the stream did not end cleanly");
    ts_sse_close(s);

    /* Read the archive back with the standalone s2-local on the same data. */
    char dir[300], port_arg[32];
    int port = ts_free_port();
    snprintf(dir, sizeof dir, "%s", agent.dir);
    snprintf(port_arg, sizeof port_arg, "%d", port);
    const char *argv[] = {ts_env("S2LOCAL_BIN"), "--port", port_arg, "--data-dir", dir, NULL};
    struct ts_proc *srv;
    cr_assert_eq(ts_proc_start(argv, NULL, &srv), 0);
    cr_assert_eq(ts_wait_port(port, 10000), 0, "s2-local did not start: %s", ts_proc_log(srv));
    agent.s2_port = port;
    char **bodies;
    size_t n;
    tp_archive_records(&agent, &bodies, &n);
    cr_assert_eq(n, 50);
    for (size_t i = 0; i < n; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"seq\":%zu,", i + 1);
        cr_assert(strncmp(bodies[i], want, strlen(want)) == 0, "%s", bodies[i]);
    }
    tp_bodies_free(bodies, n);
    ts_proc_free(srv);
}

/* A stream whose client goes away ends its request at once: the host's
 * request observer (here the fixture plugin's) sees it end, with status 200. */
Test(e2e, disconnected_stream_is_ended_at_once)
{
    struct ts_resp r;
    char url[256];
    tp_agent_start(&agent, NULL, TP_FIXTURE, 0);
    const char *hdr[] = {"X-Request-Id: sse-gone", NULL};
    struct ts_sse *s;
    cr_assert_eq(ts_sse_open(tp_url(&agent, "/telemetry/stream", url, sizeof url), hdr, 10000, &s),
                 0);
    cr_assert_eq(ts_sse_status(s), 200);
    ts_sleep_ms(100);
    tp_req(&agent, "GET", "/fixture/observed", NULL, &r);
    cr_assert_null(strstr(r.body, "sse-gone"), "ended too early: %s", r.body);
    ts_resp_free(&r);
    ts_sse_close(s);

    int found = 0;
    long long deadline = ts_now_ms() + 3000;
    while (!found && ts_now_ms() < deadline) {
        tp_req(&agent, "GET", "/fixture/observed", NULL, &r);
        cJSON *j = json_of(&r), *it;
        cJSON *arr = cJSON_IsArray(j) ? j : cJSON_GetObjectItem(j, "records");
        cJSON_ArrayForEach(it, arr)
        {
            cJSON *rid = cJSON_GetObjectItem(it, "request_id");
            if (cJSON_IsString(rid) && strcmp(rid->valuestring, "sse-gone") == 0) {
                cr_assert_eq(cJSON_GetObjectItem(it, "status")->valueint, 200);
                cr_assert_str_eq(cJSON_GetObjectItem(it, "operation_id")->valuestring,
                                 "StreamTelemetryEvents");
                found = 1;
            }
        }
        cJSON_Delete(j);
        ts_resp_free(&r);
        if (!found)
            ts_sleep_ms(20);
    }
    cr_assert(found, "the stream's request was not ended after the client left");
    tp_agent_stop(&agent);
}

/* S2_BASIN + S2_ACCESS_TOKEN + S2_STREAM with endpoints: the archive goes to
 * that S2 (a standalone s2-local here), not to an embedded one. */
Test(e2e, archive_to_configured_s2)
{
    struct ts_resp r;
    char port_arg[16], endpoint[64], acc[96], bas[96];
    int port = ts_free_port();
    snprintf(port_arg, sizeof port_arg, "%d", port);
    const char *argv[] = {ts_env("S2LOCAL_BIN"), "--port", port_arg, NULL};
    struct ts_proc *srv;
    cr_assert_eq(ts_proc_start(argv, NULL, &srv), 0);
    cr_assert_eq(ts_wait_port(port, 10000), 0, "s2-local did not start: %s", ts_proc_log(srv));
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", port);
    snprintf(acc, sizeof acc, "S2_ACCOUNT_ENDPOINT=%s", endpoint);
    snprintf(bas, sizeof bas, "S2_BASIN_ENDPOINT=%s", endpoint);
    const char *env[] = {"S2_BASIN=e2e-basin-one",
                         "S2_ACCESS_TOKEN=secret-token-xyz",
                         "S2_STREAM=events-e2e",
                         acc,
                         bas,
                         "TELEMETRY_CATEGORIES=system",
                         "S2_BATCHER_LINGER=10ms",
                         NULL};
    tp_agent_start(&agent, env, 0, 0);
    for (int i = 0; i < 3; i++) {
        tp_req(&agent, "POST", "/telemetry/events", "{\"type\":\"service_crashed\"}", &r);
        cr_assert_eq(r.status, 200);
        ts_resp_free(&r);
    }
    agent.s2_port = port;
    snprintf(agent.basin, sizeof agent.basin, "e2e-basin-one");
    snprintf(agent.stream, sizeof agent.stream, "events-e2e");
    char **bodies = NULL;
    size_t n = 0;
    wait_archived(3, &bodies, &n);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "{\"seq\":%zu,", i + 1);
        cr_assert(strncmp(bodies[i], want, strlen(want)) == 0, "%s", bodies[i]);
    }
    tp_bodies_free(bodies, n);
    /* the token never reaches the log */
    cr_assert_null(strstr(ts_proc_log(agent.proc), "secret-token-xyz"), "%s",
                   ts_proc_log(agent.proc));
    cr_assert_not_null(strstr(ts_proc_log(agent.proc), "archive: S2 basin e2e-basin-one"));
    /* an S2 over HTTP is reached with libcurl, loaded for it */
    cr_assert(maps_libcurl(agent.proc));
    tp_agent_stop(&agent);
    ts_proc_free(srv);
}

/* libcurl is loaded only for an S2 reached over HTTP: without it (here
 * S2_LIBCURL names a file that does not exist) the embedded archive still
 * works, and a configured S2 is refused at start, saying why. */
Test(e2e, libcurl_only_for_a_remote_s2)
{
    struct ts_resp r;
    const char *env[] = {"S2_LIBCURL=/nonexistent/libcurl.so.4", "S2_BATCHER_LINGER=10ms",
                         "TELEMETRY_CATEGORIES=system", NULL};
    tp_agent_start(&agent, env, 0, 1);
    tp_req(&agent, "POST", "/telemetry/events", "{\"type\":\"service_crashed\"}", &r);
    cr_assert_eq(r.status, 200);
    ts_resp_free(&r);
    char **bodies = NULL;
    size_t n = 0;
    wait_archived(1, &bodies, &n);
    cr_assert_eq(n, 1);
    tp_bodies_free(bodies, n);
    cr_assert_not(maps_libcurl(agent.proc));
    tp_agent_stop(&agent);

    char kv[2048];
    snprintf(kv, sizeof kv, "AGENT_PLUGINS=telemetry:%s", ts_env("TELEMETRY_PLUGIN"));
    const char *remote[] = {kv,
                            "S2_LIBCURL=/nonexistent/libcurl.so.4",
                            "S2_BASIN=e2e-basin-two",
                            "S2_ACCESS_TOKEN=t",
                            "S2_STREAM=s",
                            "S2_ACCOUNT_ENDPOINT=http://127.0.0.1:9",
                            "S2_BASIN_ENDPOINT=http://127.0.0.1:9",
                            NULL};
    const char *argv[] = {ts_env("AGENT_BIN"), NULL};
    struct ts_proc *p;
    int st = -1;
    cr_assert_eq(ts_proc_start(argv, remote, &p), 0);
    cr_assert_eq(ts_proc_wait(p, 10000, &st), 0);
    cr_assert_eq(st, 1, "%s", ts_proc_log(p));
    cr_assert_not_null(strstr(ts_proc_log(p), "cannot start the S2 client (cannot load libcurl: "
                                              "/nonexistent/libcurl.so.4"),
                       "%s", ts_proc_log(p));
    ts_proc_free(p);
}

/* An envelope over 1,000,000 bytes travels with data null and truncated. */
Test(e2e, truncation_end_to_end)
{
    struct ts_resp r;
    const char *env[] = {"TELEMETRY_CATEGORIES=system", NULL};
    tp_agent_start(&agent, env, 0, 1);
    size_t big = 1200000;
    char *body = malloc(big + 100);
    cr_assert_not_null(body);
    int len = sprintf(body, "{\"type\":\"test.big\",\"category\":\"system\",\"data\":\"");
    cr_assert_gt(len, 0);
    memset(body + (size_t)len, 'x', big);
    memcpy(body + (size_t)len + big, "\"}", 3);
    struct ts_sse *s = sse_open(NULL, NULL);
    tp_req(&agent, "POST", "/telemetry/events", body, &r);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.status == 200 ? "" : r.body);
    cr_assert_lt(r.body_len, 1000000);
    const char *tail = ",\"data\":null,\"truncated\":true}}";
    cr_assert_str_eq(r.body + r.body_len - strlen(tail), tail);
    uint64_t id;
    char *f = sse_data(s, &id);
    cr_assert_str_eq(f, r.body);
    free(f);
    ts_sse_close(s);
    char **bodies = NULL;
    size_t n = 0;
    wait_archived(1, &bodies, &n);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(bodies[0], r.body);
    tp_bodies_free(bodies, n);
    ts_resp_free(&r);
    free(body);

    /* HEAD of the stream answers at once with its headers */
    char url[256];
    cr_assert_eq(
        ts_http("HEAD", tp_url(&agent, "/telemetry/stream", url, sizeof url), NULL, 0, NULL, &r),
        0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(ts_resp_header(&r, "Content-Type"), "text/event-stream");
    ts_resp_free(&r);
    tp_agent_stop(&agent);
}
