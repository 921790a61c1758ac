/* test_envelope.c - categories, known types, JSON compaction, envelope bytes. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <event2/buffer.h>

#include "envelope.h"
#include "json.h"
#include "tp_util.h"

Test(categories, names_round_trip)
{
    static const char *want[] = {"console",    "network", "page",       "interaction", "control",
                                 "connection", "system",  "screenshot", "captcha",     "monitor"};
    for (int i = 0; i < TEL_CAT_COUNT; i++) {
        int cat = -1;
        cr_assert_str_eq(tel_category_name(i), want[i]);
        cr_assert_eq(tel_category_parse(want[i], strlen(want[i]), &cat), 0);
        cr_assert_eq(cat, i);
    }
    cr_assert_null(tel_category_name(TEL_CAT_COUNT));
    cr_assert_null(tel_category_name(-1));
    int cat;
    cr_assert_eq(tel_category_parse("Console", 7, &cat), -EINVAL);
    cr_assert_eq(tel_category_parse("monitorx", 8, &cat), -EINVAL);
    cr_assert_eq(tel_category_parse("", 0, &cat), -EINVAL);
    /* a prefix of a valid name is not valid */
    cr_assert_eq(tel_category_parse("page", 3, &cat), -EINVAL);
}

Test(categories, bits_match_service_header)
{
    cr_assert_eq(1u << TEL_CAT_CONSOLE, TELEMETRY_CAT_CONSOLE);
    cr_assert_eq(1u << TEL_CAT_CONTROL, TELEMETRY_CAT_CONTROL);
    cr_assert_eq(1u << TEL_CAT_MONITOR, TELEMETRY_CAT_MONITOR);
    cr_assert_eq(TEL_CATS_USER & TELEMETRY_CAT_MONITOR, 0u);
    cr_assert_eq(__builtin_popcount(TEL_CATS_USER), 9);
}

Test(categories, known_types_have_fixed_categories)
{
    static const struct {
        const char *type;
        const char *cat;
    } table[] = {
        {"console_log", "console"},
        {"console_error", "console"},
        {"network_request", "network"},
        {"network_response", "network"},
        {"network_loading_failed", "network"},
        {"network_idle", "network"},
        {"page_navigation", "page"},
        {"page_dom_content_loaded", "page"},
        {"page_load", "page"},
        {"page_tab_opened", "page"},
        {"page_layout_shift", "page"},
        {"page_lcp", "page"},
        {"page_layout_settled", "page"},
        {"page_navigation_settled", "page"},
        {"interaction_click", "interaction"},
        {"interaction_key", "interaction"},
        {"interaction_scroll_settled", "interaction"},
        {"api_call", "control"},
        {"cdp_connect", "connection"},
        {"cdp_disconnect", "connection"},
        {"live_view_connect", "connection"},
        {"live_view_disconnect", "connection"},
        {"system_oom_kill", "system"},
        {"service_crashed", "system"},
        {"monitor_screenshot", "screenshot"},
        {"captcha_solve_result", "captcha"},
        {"monitor_disconnected", "monitor"},
        {"monitor_reconnected", "monitor"},
        {"monitor_reconnect_failed", "monitor"},
        {"monitor_init_failed", "monitor"},
    };
    cr_assert_eq(sizeof table / sizeof table[0], 30);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        int cat = tel_type_category(table[i].type);
        cr_assert_geq(cat, 0, "%s unknown", table[i].type);
        cr_assert_str_eq(tel_category_name(cat), table[i].cat, "%s", table[i].type);
    }
    cr_assert_eq(tel_type_category("test.system"), -ENOENT);
    cr_assert_eq(tel_type_category("API_CALL"), -ENOENT);
    cr_assert_eq(tel_type_category(""), -ENOENT);
}

Test(categories, sets)
{
    cr_assert_eq(TEL_CATS_DEFAULT, TELEMETRY_CAT_CONTROL | TELEMETRY_CAT_CONNECTION |
                                       TELEMETRY_CAT_SYSTEM | TELEMETRY_CAT_CAPTCHA);
    cr_assert_eq(tel_cats_effective(TEL_CATS_DEFAULT), TEL_CATS_DEFAULT);
    /* any CDP category admits monitor too */
    static const uint32_t cdp[] = {TELEMETRY_CAT_CONSOLE, TELEMETRY_CAT_NETWORK, TELEMETRY_CAT_PAGE,
                                   TELEMETRY_CAT_INTERACTION, TELEMETRY_CAT_SCREENSHOT};
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(tel_cats_effective(cdp[i]), cdp[i] | TELEMETRY_CAT_MONITOR);
    cr_assert_eq(tel_cats_effective(TELEMETRY_CAT_CAPTCHA), TELEMETRY_CAT_CAPTCHA);
    /* monitor cannot be switched on by itself */
    cr_assert_eq(tel_cats_effective(TELEMETRY_CAT_MONITOR), 0u);
    cr_assert_eq(tel_cats_effective(TEL_CATS_USER), TEL_CATS_ALL);
}

static char *compact(const char *in, int *rc)
{
    struct evbuffer *b = evbuffer_new();
    *rc = tel_json_compact(in, strlen(in), b);
    char *s = tp_evbuffer_str(b);
    evbuffer_free(b);
    return s;
}

Test(json, compact_keeps_numbers_and_strings)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {" { \"a\" : [ 1 , 2.50 , -0 , 1e+300 ] , \"b\" : null } ",
         "{\"a\":[1,2.50,-0,1e+300],\"b\":null}"},
        {"12345678901234567890123", "12345678901234567890123"},
        {"\"keep \\n \\u00e9 \\/ spaces\"", "\"keep \\n \\u00e9 \\/ spaces\""},
        {"\"<tag> & co\"", "\"\\u003ctag\\u003e \\u0026 co\""},
        {"\"line\xe2\x80\xa8sep\xe2\x80\xa9\"", "\"line\\u2028sep\\u2029\""},
        {"[true,false,{}, [ ] ]", "[true,false,{},[]]"},
        {"0.5E-7", "0.5E-7"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc;
        char *s = compact(cases[i].in, &rc);
        cr_assert_eq(rc, 0, "case %zu", i);
        cr_assert_str_eq(s, cases[i].out, "case %zu", i);
        free(s);
    }
}

Test(json, compact_rejects_invalid)
{
    static const char *bad[] = {
        "",        "01",          "1.",       "-",     ".5",         "+1",
        "[1,]",    "{\"a\"}",     "{\"a\":}", "nul",   "{} x",       "\"a\tb\"",
        "\"\\x\"", "\"\\u12g4\"", "'a'",      "[1 2]", "{\"a\":1,}", "\"unterminated",
        "NaN",     "1e"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(tel_json_compact(bad[i], strlen(bad[i]), NULL), -EINVAL, "accepted <%s>",
                     bad[i]);
}

Test(json, depth_is_bounded)
{
    size_t n = TEL_JSON_MAX_DEPTH + 5;
    char *s = malloc(2 * n + 1);
    memset(s, '[', n);
    memset(s + n, ']', n);
    s[2 * n] = '\0';
    cr_assert_eq(tel_json_compact(s, 2 * n, NULL), -EINVAL);
    size_t ok = TEL_JSON_MAX_DEPTH;
    cr_assert_eq(tel_json_compact(s + (n - ok), 2 * ok, NULL), 0);
    free(s);
}

Test(json, member_span)
{
    const char *doc = "{\"x\":{\"data\":1},\"data\" : {\"a\": [1, 2]} ,\"z\":3}";
    const char *v;
    size_t len;
    cr_assert_eq(tel_json_member(doc, strlen(doc), "data", &v, &len), 0);
    cr_assert_eq(len, strlen("{\"a\": [1, 2]}"));
    cr_assert(strncmp(v, "{\"a\": [1, 2]}", len) == 0);
    cr_assert_eq(tel_json_member(doc, strlen(doc), "a", &v, &len), -ENOENT);
    cr_assert_eq(tel_json_member("[1]", 3, "data", &v, &len), -EINVAL);
    cr_assert_eq(tel_json_member("{}", 2, "data", &v, &len), -ENOENT);
}

Test(json, string_escaping_like_go)
{
    struct evbuffer *b = evbuffer_new();
    const char in[] = "q\"b\\s/<>&\x01\x1f\x7f\xc3\xa9\xff\xe2\x80\xa8";
    cr_assert_eq(tel_json_add_string(b, in, sizeof in - 1), 0);
    char *s = tp_evbuffer_str(b);
    cr_assert_str_eq(s, "\"q\\\"b\\\\s/\\u003c\\u003e\\u0026\\u0001\\u001f\x7f\xc3\xa9\\ufffd"
                        "\\u2028\"");
    free(s);
    evbuffer_free(b);
}

/* Encoding fixtures: fixtures/events/encode.jsonl. */
Test(envelope, fixture_cases_byte_exact)
{
    size_t n;
    char **lines = tp_fixture_lines("encode.jsonl", &n);
    for (size_t i = 0; i < n; i++) {
        cJSON *c = cJSON_Parse(lines[i]);
        cr_assert_not_null(c, "line %zu", i + 1);
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        uint64_t seq = strtoull(cJSON_GetObjectItem(c, "seq")->valuestring, NULL, 10);
        cJSON *sess = cJSON_GetObjectItem(c, "session");
        cJSON *e = cJSON_GetObjectItem(c, "event");
        struct tel_event ev = {0};
        ev.ts_us = (int64_t)cJSON_GetObjectItem(e, "ts")->valuedouble;
        ev.type = cJSON_GetObjectItem(e, "type")->valuestring;
        const char *cat = cJSON_GetObjectItem(e, "category")->valuestring;
        cr_assert_eq(tel_category_parse(cat, strlen(cat), &ev.category), 0);
        cJSON *src = cJSON_GetObjectItem(e, "source");
        struct tel_meta meta[8];
        if (src != NULL) {
            cJSON *k = cJSON_GetObjectItem(src, "kind"), *se = cJSON_GetObjectItem(src, "event");
            ev.source_kind = k ? k->valuestring : NULL;
            ev.source_event = se ? se->valuestring : NULL;
            cJSON *m = cJSON_GetObjectItem(src, "metadata"), *it;
            if (m != NULL) {
                cJSON_ArrayForEach(it, m)
                {
                    meta[ev.meta_count].key = it->string;
                    meta[ev.meta_count++].value = it->valuestring;
                }
                ev.meta = meta;
            }
        }
        char *data = NULL;
        cJSON *d = cJSON_GetObjectItem(e, "data");
        if (d != NULL) {
            data = cJSON_PrintUnformatted(d);
            ev.data = data;
            ev.data_len = strlen(data);
        }
        struct evbuffer *b = evbuffer_new();
        int trunc = -1;
        cr_assert_eq(
            tel_envelope_encode(&ev, seq, cJSON_IsNull(sess) ? NULL : sess->valuestring, b, &trunc),
            0, "%s", name);
        cr_assert_eq(trunc, 0);
        char *got = tp_evbuffer_str(b);
        cr_assert_str_eq(got, cJSON_GetObjectItem(c, "expect")->valuestring, "case %s", name);
        /* the output is valid, compact JSON: compaction leaves it unchanged */
        struct evbuffer *again = evbuffer_new();
        cr_assert_eq(tel_json_compact(got, strlen(got), again), 0);
        char *again_s = tp_evbuffer_str(again);
        cr_assert_str_eq(again_s, got);
        free(again_s);
        evbuffer_free(again);
        free(got);
        free(data);
        evbuffer_free(b);
        cJSON_Delete(c);
    }
    tp_lines_free(lines, n);
}

/* An event whose envelope is exactly `total` bytes: data is a string. */
static char *sized_data(size_t total, struct tel_event *ev)
{
    static const char frame[] =
        "{\"seq\":1,\"event\":{\"ts\":1,\"type\":\"t\",\"category\":\"system\","
        "\"source\":{\"kind\":\"\"},\"data\":\"\"}}";
    size_t fixed = sizeof frame - 1;
    size_t fill = total - fixed;
    char *data = malloc(fill + 3);
    data[0] = '"';
    memset(data + 1, 'x', fill);
    data[fill + 1] = '"';
    data[fill + 2] = '\0';
    memset(ev, 0, sizeof *ev);
    ev->ts_us = 1;
    ev->type = "t";
    ev->category = TEL_CAT_SYSTEM;
    ev->data = data;
    ev->data_len = fill + 2;
    return data;
}

Test(envelope, truncation_boundary)
{
    struct tel_event ev;
    struct evbuffer *b = evbuffer_new();
    int trunc = -1;

    char *data = sized_data(TEL_ENVELOPE_MAX_BYTES, &ev);
    cr_assert_eq(tel_envelope_encode(&ev, 1, NULL, b, &trunc), 0);
    cr_assert_eq(trunc, 0);
    cr_assert_eq(evbuffer_get_length(b), TEL_ENVELOPE_MAX_BYTES);
    evbuffer_drain(b, evbuffer_get_length(b));
    free(data);

    data = sized_data(TEL_ENVELOPE_MAX_BYTES + 1, &ev);
    cr_assert_eq(tel_envelope_encode(&ev, 1, NULL, b, &trunc), 0);
    cr_assert_eq(trunc, 1);
    char *s = tp_evbuffer_str(b);
    cr_assert_str_eq(s, "{\"seq\":1,\"event\":{\"ts\":1,\"type\":\"t\",\"category\":\"system\","
                        "\"source\":{\"kind\":\"\"},\"data\":null,\"truncated\":true}}");
    free(s);
    free(data);
    evbuffer_free(b);
}

/* An event with no data whose one metadata value alone is over the limit;
 * the value is returned for the caller to free. */
static char *meta_over_limit(struct tel_event *ev, struct tel_meta *m)
{
    size_t big = TEL_ENVELOPE_MAX_BYTES + 10;
    char *v = malloc(big + 1);
    cr_assert_not_null(v);
    memset(v, 'v', big);
    v[big] = '\0';
    *ev = (struct tel_event){.ts_us = 2, .type = "t", .category = TEL_CAT_PAGE};
    *m = (struct tel_meta){"k", v};
    ev->meta = m;
    ev->meta_count = 1;
    return v;
}

Test(envelope, truncated_without_data_field)
{
    /* metadata alone over the limit: data null + truncated, the rest kept */
    struct tel_event ev;
    struct tel_meta m;
    char *v = meta_over_limit(&ev, &m);
    struct evbuffer *b = evbuffer_new();
    int trunc = 0;
    cr_assert_eq(tel_envelope_encode(&ev, 9, "s", b, &trunc), 0);
    cr_assert_eq(trunc, 1);
    size_t len = evbuffer_get_length(b);
    cr_assert_gt(len, TEL_ENVELOPE_MAX_BYTES);
    const char *tail = "}},\"data\":null,\"truncated\":true}}";
    char *s = tp_evbuffer_str(b);
    cr_assert_str_eq(s + len - strlen(tail), tail);
    free(s);
    free(v);
    evbuffer_free(b);
}

Test(envelope, refuses_invalid_events)
{
    struct evbuffer *b = evbuffer_new();
    struct tel_event ev = {.ts_us = 1, .type = "", .category = TEL_CAT_PAGE};
    cr_assert_eq(tel_envelope_encode(&ev, 1, NULL, b, NULL), -EINVAL);
    ev.type = "t";
    ev.category = TEL_CAT_COUNT;
    cr_assert_eq(tel_envelope_encode(&ev, 1, NULL, b, NULL), -EINVAL);
    cr_assert_eq(evbuffer_get_length(b), 0);
    evbuffer_free(b);
}

Test(envelope, duplicate_metadata_keys_last_wins)
{
    struct tel_meta m[] = {{"b", "1"}, {"a", "x"}, {"b", "2"}, {"telemetry_session_id", "no"}};
    struct tel_event ev = {.ts_us = 3,
                           .type = "t",
                           .category = TEL_CAT_PAGE,
                           .meta = m,
                           .meta_count = 4,
                           .source_kind = "cdp"};
    struct evbuffer *b = evbuffer_new();
    cr_assert_eq(tel_envelope_encode(&ev, 5, "sid", b, NULL), 0);
    char *s = tp_evbuffer_str(b);
    cr_assert_str_eq(s, "{\"seq\":5,\"event\":{\"ts\":3,\"type\":\"t\",\"category\":\"page\","
                        "\"source\":{\"kind\":\"cdp\",\"metadata\":{\"a\":\"x\",\"b\":\"2\","
                        "\"telemetry_session_id\":\"sid\"}}}}");
    free(s);
    evbuffer_free(b);
}

/* Strings longer than one output piece are escaped piecewise: pieces must
 * never split a UTF-8 sequence, so the result equals the one-piece
 * encoding, whatever byte sits at each piece border. */
Test(json, long_strings_escape_as_one_piece)
{
    static const char *const units[] = {
        "a", "\xc3\xa9", "\xe2\x80\xa8", "\xf0\x9f\x98\x80", "\xff", "\xe2\x80", "<", "\n"};
    for (size_t shift = 0; shift < 8; shift++) {
        char s[4096];
        size_t len = 0;
        for (size_t i = 0; i < shift; i++)
            s[len++] = 'x';
        for (size_t i = 0; len + 4 < sizeof s; i++) {
            const char *u = units[(i * 7 + shift) % (sizeof units / sizeof units[0])];
            memcpy(s + len, u, strlen(u));
            len += strlen(u);
        }
        char *want = malloc(TEL_JSON_STRING_MAX(len));
        cr_assert_not_null(want);
        size_t wlen = tel_json_put_string(want, s, len);
        struct evbuffer *b = evbuffer_new();
        cr_assert_eq(tel_json_add_string(b, s, len), 0);
        cr_assert_eq(evbuffer_get_length(b), wlen, "shift %zu", shift);
        cr_assert(memcmp(evbuffer_pullup(b, -1), want, wlen) == 0, "shift %zu", shift);
        /* Sanity: the escapes are there. */
        cr_assert_not_null(memmem(want, wlen, "\\ufffd", 6));
        cr_assert_not_null(memmem(want, wlen, "\\u2028", 6));
        evbuffer_free(b);
        free(want);
    }
}

/* The 16-byte scans (whole blocks, the overlapping last block, the byte
 * loop of short runs) stop at a special sequence wherever it sits: a
 * string of plain bytes around it is escaped as the sequence alone is,
 * plus those bytes. Both the writer and the validator are checked. */
Test(json, special_sequence_at_every_position)
{
    static const char *const units[] = {"<",        "\n",           "\"",           "\\",  "\x7f",
                                        "\xc3\xa9", "\xe2\x80\xa8", "\xe2\x82\xac", "\xff"};
    static const char *const lits[] = {"\\n", "\\\"", "\\u00e9", "<", "\\u2028"};
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        char alone[32];
        size_t ulen = strlen(units[u]), alen = tel_json_put_string(alone, units[u], ulen);
        for (size_t len = ulen; len <= 40; len++) {
            for (size_t at = 0; at + ulen <= len; at++) {
                char s[64], got[TEL_JSON_STRING_MAX(64)], want[TEL_JSON_STRING_MAX(64)];
                memset(s, 'a', len);
                memcpy(s + at, units[u], ulen);
                /* want: the plain bytes, the unit's own escape inside the quotes */
                size_t wl = 0;
                want[wl++] = '"';
                memset(want + wl, 'a', at);
                wl += at;
                memcpy(want + wl, alone + 1, alen - 2);
                wl += alen - 2;
                memset(want + wl, 'a', len - at - ulen);
                wl += len - at - ulen;
                want[wl++] = '"';
                size_t gl = tel_json_put_string(got, s, len);
                cr_assert(gl == wl && memcmp(got, want, wl) == 0, "unit %zu, len %zu, at %zu", u,
                          len, at);
            }
        }
    }
    /* The validator: a literal, valid or not, anywhere in a long string. */
    for (size_t l = 0; l < sizeof lits / sizeof lits[0]; l++) {
        size_t llen = strlen(lits[l]);
        for (size_t len = llen; len <= 40; len++) {
            for (size_t at = 0; at + llen <= len; at++) {
                char in[64], dst[TEL_JSON_STRING_MAX(64)];
                size_t got = 0;
                in[0] = '"';
                memset(in + 1, 'a', len);
                memcpy(in + 1 + at, lits[l], llen);
                in[len + 1] = '"';
                cr_assert_eq(tel_json_compact_mem(in, len + 2, dst, sizeof dst, &got), 0,
                             "lit %zu, len %zu, at %zu", l, len, at);
                /* The compact form differs only where the literal is. */
                cr_assert(memcmp(dst, in, 1 + at) == 0, "lit %zu, len %zu, at %zu", l, len, at);
                in[1 + at] = '\x01'; /* a control byte: refused wherever it is */
                cr_assert_eq(tel_json_compact_mem(in, len + 2, dst, sizeof dst, &got), -EINVAL,
                             "control at %zu of %zu", at, len);
            }
        }
    }
}

/* tel_envelope_build gives tel_envelope_encode's bytes and truncation,
 * after head bytes and before tail bytes that are the caller's. */
static void expect_build_same(const struct tel_event *ev, uint64_t seq, const char *sess,
                              size_t head)
{
    struct evbuffer *b = evbuffer_new();
    int trunc_e = -1, trunc_b = -1;
    cr_assert_eq(tel_envelope_encode(ev, seq, sess, b, &trunc_e), 0);
    char *block = NULL;
    size_t jlen = 0;
    cr_assert_eq(tel_envelope_build(ev, seq, sess, head, 2, &block, &jlen, &trunc_b), 0);
    cr_assert_not_null(block);
    cr_assert_eq(trunc_b, trunc_e);
    cr_assert_eq(jlen, evbuffer_get_length(b));
    cr_assert_eq(memcmp(block + head, evbuffer_pullup(b, -1), jlen), 0);
    /* The head and tail bytes are writable. */
    memset(block, 'h', head);
    memcpy(block + head + jlen, "\n\n", 2);
    free(block);
    evbuffer_free(b);
}

Test(envelope, build_matches_encode)
{
    struct tel_meta meta[] = {{"z", "last"}, {"a", "<&>"}, {"a", "dup wins"}};
    struct tel_event ev = {.ts_us = -5,
                           .type = "custom\xe2\x80\xa8type",
                           .category = TEL_CAT_NETWORK,
                           .source_kind = "cdp",
                           .source_event = "Network.x",
                           .meta = meta,
                           .meta_count = 3,
                           .data = "{\"k\":[1,2,{\"x\":null}]}",
                           .data_len = 22};
    for (size_t head = 0; head < 3000; head += 997) {
        expect_build_same(&ev, 1, NULL, head);
        expect_build_same(&ev, UINT64_MAX, "session", head);
    }
    ev.data = NULL;
    ev.meta_count = 0;
    ev.source_event = NULL;
    expect_build_same(&ev, 7, "s", 40);

    /* Larger than the stack buffer, at and over the limit. */
    char *data = sized_data(TEL_ENVELOPE_MAX_BYTES, &ev);
    expect_build_same(&ev, 1, NULL, 0);
    expect_build_same(&ev, 1, NULL, 48);
    free(data);
    data = sized_data(TEL_ENVELOPE_MAX_BYTES + 1, &ev);
    expect_build_same(&ev, 1, NULL, 48);
    free(data);

    /* Metadata alone over the limit, no data. */
    struct tel_event ev2;
    struct tel_meta m;
    char *v = meta_over_limit(&ev2, &m);
    expect_build_same(&ev2, 9, "s", 48);
    free(v);

    /* Refusals as encode's. */
    char *block = (char *)&ev;
    size_t jlen;
    ev2.type = "";
    cr_assert_eq(tel_envelope_build(&ev2, 1, NULL, 8, 2, &block, &jlen, NULL), -EINVAL);
    cr_assert_null(block);
}

Test(json, compact_mem_matches_compact)
{
    static const char *in[] = {"{ \"a\" : [1, 2.5e3, true, null] , \"b\":\"x<y\" }",
                               "\"\\u00e9\\\\\\\"\"", "[ ]", "-0", "{\"k\":\"\xe2\x80\xa8\"}"};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        struct evbuffer *b = evbuffer_new();
        cr_assert_eq(tel_json_compact(in[i], strlen(in[i]), b), 0);
        size_t want = evbuffer_get_length(b), got = 0;
        char dst[128];
        cr_assert_eq(tel_json_compact_mem(in[i], strlen(in[i]), dst, sizeof dst, &got), 0);
        cr_assert_eq(got, want, "%s", in[i]);
        cr_assert_eq(memcmp(dst, evbuffer_pullup(b, -1), got), 0, "%s", in[i]);
        /* One byte short: valid but does not fit. */
        cr_assert_eq(tel_json_compact_mem(in[i], strlen(in[i]), dst, want - 1, &got), -ENOSPC);
        evbuffer_free(b);
    }
    /* Escapes make it longer than the input. */
    char dst[16];
    size_t got;
    cr_assert_eq(tel_json_compact_mem("\"<\"", 3, dst, 3, &got), -ENOSPC);
    cr_assert_eq(tel_json_compact_mem("\"<\"", 3, dst, sizeof dst, &got), 0);
    cr_assert_eq(got, 8);
    cr_assert_eq(memcmp(dst, "\"\\u003c\"", 8), 0);
    /* Invalid JSON is -EINVAL whatever the room. */
    cr_assert_eq(tel_json_compact_mem("{\"a\":}", 6, dst, sizeof dst, &got), -EINVAL);
    cr_assert_eq(tel_json_compact_mem("[1,", 3, dst, 1, &got), -EINVAL);
}

Test(json, iter_spans_members_with_escapes_and_nesting)
{
    const char *text = " { \"a\\\"b\" : \"x\\\\\" , \"n\":[\"]}\",{\"q\":\"\\\"}\"}, -1.5e2],"
                       "\"t\" :true,\"e\":{},\"z\":\"\\\\\\\"\"\t}";
    static const struct {
        const char *key, *val;
    } want[] = {{"a\\\"b", "\"x\\\\\""},
                {"n", "[\"]}\",{\"q\":\"\\\"}\"}, -1.5e2]"},
                {"t", "true"},
                {"e", "{}"},
                {"z", "\"\\\\\\\"\""}};
    cr_assert_eq(tel_json_compact(text, strlen(text), NULL), 0);
    struct tel_json_iter it;
    const char *k, *v;
    size_t kl, vl, i = 0;
    int r;
    cr_assert_eq(tel_json_iter_init(&it, text, strlen(text)), 0);
    while ((r = tel_json_iter_next(&it, &k, &kl, &v, &vl)) == 1) {
        cr_assert_lt(i, sizeof want / sizeof want[0]);
        cr_assert_eq(kl, strlen(want[i].key), "member %zu", i);
        cr_assert_eq(memcmp(k, want[i].key, kl), 0, "member %zu", i);
        cr_assert_eq(vl, strlen(want[i].val), "member %zu: %.*s", i, (int)vl, v);
        cr_assert_eq(memcmp(v, want[i].val, vl), 0, "member %zu", i);
        i++;
    }
    cr_assert_eq(r, 0);
    cr_assert_eq(i, sizeof want / sizeof want[0]);
}

/* Decimal formatting agrees with printf at every digit-count boundary and
 * at the ends of the ranges. */
Test(json, integers_format_as_printf)
{
    char got[TEL_JSON_INT_MAX + 2], want[32];
    uint64_t p10 = 1;
    for (int d = 0; d <= 20; d++) {
        const uint64_t us[] = {p10 - 1, p10, p10 + 1, p10 * 5 + 7};
        for (size_t i = 0; i < 4; i++) {
            size_t n = tel_json_fmt_u64(got, us[i]);
            snprintf(want, sizeof want, "%" PRIu64, us[i]);
            cr_assert_eq(n, strlen(want));
            cr_assert(memcmp(got, want, n) == 0, "%s vs %.*s", want, (int)n, got);
            int64_t s = us[i] > INT64_MAX ? INT64_MIN + (int64_t)(us[i] & 0xFFFF) : -(int64_t)us[i];
            n = tel_json_fmt_i64(got, s);
            snprintf(want, sizeof want, "%" PRId64, s);
            cr_assert_eq(n, strlen(want));
            cr_assert(memcmp(got, want, n) == 0, "%s vs %.*s", want, (int)n, got);
        }
        if (d < 19)
            p10 *= 10;
    }
    const uint64_t ends[] = {0, 9, 10, 99, 100, UINT64_MAX, (uint64_t)INT64_MAX};
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        size_t n = tel_json_fmt_u64(got, ends[i]);
        snprintf(want, sizeof want, "%" PRIu64, ends[i]);
        cr_assert(n == strlen(want) && memcmp(got, want, n) == 0, "%s", want);
    }
    size_t n = tel_json_fmt_i64(got, INT64_MIN);
    cr_assert(n == 20 && memcmp(got, "-9223372036854775808", 20) == 0);
}
