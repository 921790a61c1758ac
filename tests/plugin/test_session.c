/* test_session.c - the session rules of telemetry-api.md section 3. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <event2/buffer.h>

#include "bus.h"
#include "envelope.h"
#include "session.h"
#include "tp_util.h"

static struct tel_bus *bus;
static struct tel_session *sess;

static void setup(void)
{
    cr_assert_eq(tel_bus_new(8, &bus), 0);
    cr_assert_eq(tel_session_new(bus, &sess), 0);
}

static void teardown(void)
{
    tel_session_free(sess);
    tel_bus_free(bus);
}

TestSuite(session, .init = setup, .fini = teardown);

static int parse(const char *body, int patch, uint32_t cur, uint32_t *mask, char *err)
{
    return tel_session_parse(body, body ? strlen(body) : 0, patch, cur, mask, err, 200);
}

Test(session, put_without_body_or_browser_is_default)
{
    uint32_t m;
    char err[200];
    cr_assert_eq(parse(NULL, 0, 0, &m, err), 0);
    cr_assert_eq(m, TEL_CATS_DEFAULT);
    cr_assert_eq(parse("{}", 0, 0, &m, err), 0);
    cr_assert_eq(m, TEL_CATS_DEFAULT);
    cr_assert_eq(parse("{\"browser\":null}", 0, TELEMETRY_CAT_PAGE, &m, err), 0);
    cr_assert_eq(m, TEL_CATS_DEFAULT);
}

Test(session, put_browser_takes_exactly_the_enabled)
{
    uint32_t m;
    char err[200];
    cr_assert_eq(parse("{\"browser\":{\"console\":{\"enabled\":true},\"page\":{\"enabled\":false},"
                       "\"network\":{},\"monitor\":{\"enabled\":true},\"bogus\":1}}",
                       0, TEL_CATS_DEFAULT, &m, err),
                 0);
    cr_assert_eq(m, TELEMETRY_CAT_CONSOLE);
    cr_assert_eq(parse("{\"browser\":{}}", 0, TEL_CATS_DEFAULT, &m, err), 0);
    cr_assert_eq(m, 0u);
}

Test(session, patch_changes_only_explicit)
{
    uint32_t m;
    char err[200];
    uint32_t cur = TELEMETRY_CAT_CONTROL | TELEMETRY_CAT_SYSTEM;
    cr_assert_eq(parse("{\"browser\":{\"system\":{\"enabled\":false},\"page\":{\"enabled\":true},"
                       "\"captcha\":{}}}",
                       1, cur, &m, err),
                 0);
    cr_assert_eq(m, TELEMETRY_CAT_CONTROL | TELEMETRY_CAT_PAGE);
    cr_assert_eq(parse("{}", 1, cur, &m, err), 0);
    cr_assert_eq(m, cur);
}

Test(session, bad_bodies)
{
    static const struct {
        const char *body;
        int patch;
        const char *msg;
    } cases[] = {
        {"{", 0, "invalid JSON body: not valid JSON"},
        {"[]", 0, "invalid JSON body: expected an object"},
        {"{\"browser\":[]}", 0, "invalid JSON body: browser must be an object"},
        {"{\"browser\":{\"page\":true}}", 1, "invalid JSON body: browser.page must be an object"},
        {"{\"browser\":{\"page\":{\"enabled\":\"yes\"}}}", 0,
         "invalid JSON body: browser.page.enabled must be a boolean"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t m;
        char err[200] = "";
        cr_assert_eq(parse(cases[i].body, cases[i].patch, 0, &m, err), -EINVAL, "%s",
                     cases[i].body);
        cr_assert_str_eq(err, cases[i].msg);
    }
    uint32_t m;
    char err[200] = "";
    cr_assert_eq(parse(NULL, 1, TEL_CATS_DEFAULT, &m, err), -EINVAL);
    cr_assert_str_eq(err, "invalid JSON body: a body is required");
}

struct calls {
    int n;
    uint32_t last;
};

static void on_change(uint32_t mask, void *arg)
{
    struct calls *c = arg;
    c->n++;
    c->last = mask;
}

Test(session, start_replace_stop)
{
    int started = -1;
    struct calls c = {0};
    uint64_t id;
    cr_assert_eq(tel_session_subscribe(sess, on_change, &c, &id), 0);
    cr_assert_null(tel_session_id(sess));
    cr_assert_eq(tel_session_mask(sess), 0u);

    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, &started), 0);
    cr_assert_eq(started, 1);
    const char *sid = tel_session_id(sess);
    cr_assert_not_null(sid);
    cr_assert_eq(strlen(sid), 24);
    cr_assert(sid[0] >= 'a' && sid[0] <= 'z');
    char first[32];
    strcpy(first, sid);
    cr_assert_eq(c.n, 1);
    cr_assert_eq(c.last, TEL_CATS_DEFAULT);

    /* replacing keeps the id */
    cr_assert_eq(tel_session_apply(sess, TELEMETRY_CAT_PAGE, &started), 0);
    cr_assert_eq(started, 0);
    cr_assert_str_eq(tel_session_id(sess), first);
    cr_assert_eq(tel_session_mask(sess), TELEMETRY_CAT_PAGE | TELEMETRY_CAT_MONITOR);
    cr_assert_eq(c.n, 2);
    cr_assert_eq(c.last, TELEMETRY_CAT_PAGE | TELEMETRY_CAT_MONITOR);

    /* same set: no notification */
    cr_assert_eq(tel_session_apply(sess, TELEMETRY_CAT_PAGE, &started), 0);
    cr_assert_eq(c.n, 2);

    cr_assert_eq(tel_session_apply(sess, 0, &started), 0);
    cr_assert_null(tel_session_id(sess));
    cr_assert_eq(c.n, 3);
    cr_assert_eq(c.last, 0u);

    /* a new session gets a new id */
    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, &started), 0);
    cr_assert_eq(started, 1);
    cr_assert_str_neq(tel_session_id(sess), first);

    tel_session_unsubscribe(sess, id);
    cr_assert_eq(tel_session_apply(sess, 0, NULL), 0);
    cr_assert_eq(c.n, 4);
}

Test(session, state_json)
{
    struct evbuffer *b = evbuffer_new();
    cr_assert_eq(tel_session_state_json(sess, b), 0);
    char *s = tp_evbuffer_str(b);
    cr_assert_str_eq(s, "{\"config\":{\"browser\":{\"console\":{\"enabled\":false},"
                        "\"network\":{\"enabled\":false},\"page\":{\"enabled\":false},"
                        "\"interaction\":{\"enabled\":false},\"control\":{\"enabled\":false},"
                        "\"connection\":{\"enabled\":false},\"system\":{\"enabled\":false},"
                        "\"screenshot\":{\"enabled\":false},\"captcha\":{\"enabled\":false}}},"
                        "\"seq\":0}");
    free(s);

    struct tel_event ev = {.ts_us = 1, .type = "t", .category = TEL_CAT_SYSTEM};
    cr_assert_eq(tel_bus_publish(bus, &ev, "x", NULL), 0);
    cr_assert_eq(tel_bus_publish(bus, &ev, "x", NULL), 0);
    cr_assert_eq(tel_session_apply(sess, TEL_CATS_DEFAULT, NULL), 0);
    cr_assert_eq(tel_session_state_json(sess, b), 0);
    s = tp_evbuffer_str(b);
    cJSON *j = cJSON_Parse(s);
    cr_assert_not_null(j, "%s", s);
    cJSON *br = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "config"), "browser");
    cr_assert_eq(cJSON_GetArraySize(br), 9);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(br, "control"), "enabled")));
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(br, "captcha"), "enabled")));
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(br, "page"), "enabled")));
    cr_assert_null(cJSON_GetObjectItem(br, "monitor"));
    cr_assert_eq(cJSON_GetObjectItem(j, "seq")->valueint, 2);
    const char *at = cJSON_GetObjectItem(j, "applied_at")->valuestring;
    /* RFC 3339 UTC: 2026-06-10T12:34:56[.frac]Z */
    cr_assert(strlen(at) >= 20 && at[4] == '-' && at[10] == 'T' && at[strlen(at) - 1] == 'Z', "%s",
              at);
    cJSON_Delete(j);
    free(s);
    evbuffer_free(b);
}

Test(session, subscriber_slots_are_bounded)
{
    struct calls c = {0};
    uint64_t id;
    for (int i = 0; i < TEL_SESSION_MAX_SUBSCRIBERS; i++)
        cr_assert_eq(tel_session_subscribe(sess, on_change, &c, &id), 0);
    cr_assert_eq(tel_session_subscribe(sess, on_change, &c, &id), -ENOSPC);
}
