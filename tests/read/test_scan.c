/*
 * test_scan.c - the page logic of GET /telemetry/events without S2: the
 * envelope check, category filtering (the reference's filterByCategory),
 * and the cursor (the reference's nextCursor, adapted: the S2 reader gives
 * an exact has_more, the page decides where it stopped).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>

#include "read.h"
#include "s2/client.h"
#include "telemetry/service.h"

/* ---- envelope check ---------------------------------------------------- */

static int check(const char *text, uint64_t *seq, uint32_t *bit)
{
    return tel_read_envelope_check(text, strlen(text), seq, bit);
}

Test(envelope, accepts_envelopes)
{
    uint64_t seq = 0;
    uint32_t bit = 0;
    cr_assert_eq(
        check("{\"seq\":42,\"event\":{\"ts\":1746123456789000,\"type\":\"network_request\","
              "\"category\":\"network\",\"source\":{\"kind\":\"cdp\",\"event\":\"Network."
              "requestWillBeSent\",\"metadata\":{\"telemetry_session_id\":\"k3x9q0w2\"}},"
              "\"data\":{\"url\":\"https://example.com/\"},\"truncated\":true}}",
              &seq, &bit),
        0);
    cr_assert_eq(seq, 42);
    cr_assert_eq(bit, TELEMETRY_CAT_NETWORK);

    cr_assert_eq(
        check(" \n{ \"event\" : { \"category\" : \"system\" } , \"seq\" : 0 }\r\n", &seq, &bit), 0);
    cr_assert_eq(seq, 0);
    cr_assert_eq(bit, TELEMETRY_CAT_SYSTEM);

    cr_assert_eq(
        check("{\"seq\":18446744073709551615,\"event\":{\"category\":\"monitor\"}}", &seq, &bit),
        0);
    cr_assert_eq(seq, UINT64_MAX);
    cr_assert_eq(bit, TELEMETRY_CAT_MONITOR);
    /* 19 digits always fit; 20 are checked */
    cr_assert_eq(
        check("{\"seq\":9999999999999999999,\"event\":{\"category\":\"page\"}}", &seq, &bit), 0);
    cr_assert_eq(seq, UINT64_C(9999999999999999999));
    cr_assert_eq(
        check("{\"seq\":10000000000000000000,\"event\":{\"category\":\"page\"}}", &seq, &bit), 0);
    cr_assert_eq(seq, UINT64_C(10000000000000000000));

    /* escapes in the category decode */
    cr_assert_eq(check("{\"seq\":1,\"event\":{\"category\":\"sy\\u0073tem\"}}", &seq, &bit), 0);
    cr_assert_eq(bit, TELEMETRY_CAT_SYSTEM);
    /* an unknown category is still an envelope; it matches no filter */
    cr_assert_eq(check("{\"seq\":1,\"event\":{\"category\":\"other\"}}", &seq, &bit), 0);
    cr_assert_eq(bit, 0);
    /* UTF-8, escapes and every value kind in data */
    cr_assert_eq(check("{\"seq\":3,\"event\":{\"category\":\"page\",\"data\":[\"h\xC3\xA9\","
                       "\"\xE2\x82\xAC\xF0\x9F\x98\x80\",\"\\ud83d\\ude00\\n\\\"\\\\\\/\\b\\f\\r"
                       "\\t\",-0.5e+3,0,1E2,true,false,null,{},[]]}}",
                       &seq, &bit),
                 0);
    /* the first of duplicate keys counts */
    cr_assert_eq(check("{\"seq\":5,\"seq\":\"x\",\"event\":{\"category\":\"page\"}}", &seq, &bit),
                 0);
    cr_assert_eq(seq, 5);
}

Test(envelope, refuses_what_is_not_an_envelope)
{
    const char *bad[] = {
        "",
        "   ",
        "null",
        "[1]",
        "\"seq\"",
        "{}",
        "{\"seq\":1}",
        "{\"event\":{\"category\":\"system\"}}",
        "{\"seq\":\"1\",\"event\":{\"category\":\"system\"}}",
        "{\"seq\":-1,\"event\":{\"category\":\"system\"}}",
        "{\"seq\":1.5,\"event\":{\"category\":\"system\"}}",
        "{\"seq\":1e3,\"event\":{\"category\":\"system\"}}",
        "{\"seq\":18446744073709551616,\"event\":{\"category\":\"system\"}}",
        "{\"seq\":99999999999999999999,\"event\":{\"category\":\"system\"}}",
        "{\"seq\":184467440737095516150,\"event\":{\"category\":\"system\"}}",
        "{\"seq\":01,\"event\":{\"category\":\"system\"}}",
        "{\"seq\":1,\"event\":[]}",
        "{\"seq\":1,\"event\":{}}",
        "{\"seq\":1,\"event\":{\"category\":7}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\"}",
        "{\"seq\":1,\"event\":{\"category\":\"system\"}}x",
        "{\"seq\":1,\"event\":{\"category\":\"system\"}}{}",
        "{\"seq\":1,\"event\":{\"category\":\"system\"},}",
        "{\"seq\":1 \"event\":{\"category\":\"system\"}}",
        "{seq:1,\"event\":{\"category\":\"system\"}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":tru}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":\"\\x\"}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":\"\\u12\"}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":\"a\tb\"}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":-}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":1.}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":.5}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":[1,]}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":NaN}}",
        /* invalid UTF-8: overlong, surrogate, past U+10FFFF, lone continuation, cut */
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":\"\xC0\x80\"}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":\"\xED\xA0\x80\"}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":\"\xF4\x90\x80\x80\"}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":\"\x80\"}}",
        "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":\"\xE2\x82\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t seq;
        uint32_t bit;
        cr_assert_eq(check(bad[i], &seq, &bit), -EINVAL, "accepted: %s", bad[i]);
    }
    /* bytes after a NUL count: the body is its length, not a C string */
    static const char nul[] = "{\"seq\":1,\"event\":{\"category\":\"system\"}}\0";
    cr_assert_eq(tel_read_envelope_check(nul, sizeof nul - 1, NULL, NULL), -EINVAL);
    cr_assert_eq(tel_read_envelope_check(NULL, 0, NULL, NULL), -EINVAL);
}

/* Nesting: what the publish path accepts (data 1000 deep) passes; absurd
 * depth is refused without exhausting the stack. */
/* Long strings (checked 16 bytes at a time): a control byte or a bad
 * escape at any position is refused, good escapes and UTF-8 anywhere pass. */
Test(envelope, long_strings_checked_at_every_position)
{
    static const struct {
        const char *piece;
        int ok;
    } pieces[] = {{"\\\"", 1}, {"\\\\", 1}, {"\\u00e9", 1}, {"\xc3\xa9", 1}, {"/", 1},
                  {"\x01", 0}, {"\n", 0},   {"\\x", 0},     {"\\u00g0", 0}};
    char text[256], str[80];
    for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
        size_t pl = strlen(pieces[p].piece);
        for (size_t at = 0; at <= 40; at++) {
            memset(str, 'x', sizeof str);
            memcpy(str + at, pieces[p].piece, pl);
            int n =
                snprintf(text, sizeof text,
                         "{\"seq\":7,\"event\":{\"ts\":1,\"type\":\"t\",\"category\":\"system\","
                         "\"data\":\"%.*s\"}}",
                         (int)(40 + pl), str);
            cr_assert(n > 0 && (size_t)n < sizeof text);
            uint64_t seq = 0;
            int rc = tel_read_envelope_check(text, (size_t)n, &seq, NULL);
            if (pieces[p].ok)
                cr_assert(rc == 0 && seq == 7, "piece %zu at %zu: %s", p, at, text);
            else
                cr_assert_eq(rc, -EINVAL, "piece %zu at %zu: %s", p, at, text);
        }
    }
}

Test(envelope, nesting_is_bounded)
{
    const char *head = "{\"seq\":1,\"event\":{\"category\":\"system\",\"data\":";
    const char *tail = "}}";
    size_t depths[] = {1000, 200000};
    for (int k = 0; k < 2; k++) {
        size_t d = depths[k];
        size_t len = strlen(head) + 2 * d + strlen(tail);
        char *buf = malloc(len + 1);
        cr_assert_not_null(buf);
        char *w = buf;
        w += sprintf(w, "%s", head);
        memset(w, '[', d);
        w += d;
        memset(w, ']', d);
        w += d;
        strcpy(w, tail);
        int rc = tel_read_envelope_check(buf, len, NULL, NULL);
        cr_assert_eq(rc, k == 0 ? 0 : -EINVAL, "depth %zu gave %d", d, rc);
        free(buf);
    }
}

/* ---- page scan ----------------------------------------------------------- */

struct fixture {
    struct s2_record recs[64];
    char *bodies[64];
    size_t n;
};

static void add(struct fixture *f, uint64_t seq_num, const char *body)
{
    f->bodies[f->n] = strdup(body);
    f->recs[f->n] = (struct s2_record){
        .seq_num = seq_num,
        .timestamp = 1000 + seq_num,
        .body = (const uint8_t *)f->bodies[f->n],
        .body_len = strlen(body),
    };
    f->n++;
}

static void add_env(struct fixture *f, uint64_t seq_num, uint64_t seq, const char *category)
{
    char body[200];
    snprintf(body, sizeof body, "{\"seq\":%llu,\"event\":{\"type\":\"t\",\"category\":\"%s\"}}",
             (unsigned long long)seq, category);
    add(f, seq_num, body);
}

static void fixture_free(struct fixture *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->bodies[i]);
    f->n = 0;
}

static struct tel_scan new_scan(uint32_t limit, uint32_t categories, size_t max_bytes)
{
    struct tel_scan s;
    memset(&s, 0, sizeof s);
    s.limit = limit;
    s.categories = categories;
    s.max_bytes = max_bytes;
    s.out = evbuffer_new();
    cr_assert_not_null(s.out);
    return s;
}

/* The page body as the route sends it, parsed; the caller frees it. */
static cJSON *page_json(struct tel_scan *s)
{
    size_t len = evbuffer_get_length(s->out);
    char *text = malloc(len + 3);
    text[0] = '[';
    evbuffer_copyout(s->out, text + 1, len);
    text[len + 1] = ']';
    text[len + 2] = '\0';
    cJSON *arr = cJSON_Parse(text);
    cr_assert_not_null(arr, "page is not JSON: %s", text);
    cr_assert(cJSON_IsArray(arr));
    free(text);
    return arr;
}

static uint64_t seq_at(cJSON *arr, int i)
{
    return (uint64_t)cJSON_GetObjectItem(cJSON_GetArrayItem(arr, i), "seq")->valuedouble;
}

/* nextCursor (5, tail 10) -> (5, true): the read consumed everything and the
 * reader says more remains: the cursor is the reader's position. */
Test(scan, cursor_more_remains)
{
    struct fixture f = {0};
    add_env(&f, 3, 1, "system");
    add_env(&f, 4, 2, "system");
    struct tel_scan s = new_scan(2, 0, 1 << 20);
    cr_assert_eq(tel_scan_feed(&s, f.recs, f.n, 5, 1), 0);
    cr_assert_eq(s.kept, 2);
    cr_assert_eq(s.next, 5);
    cr_assert_eq(s.has_more, 1);
    cr_assert_eq(s.done, 1);
    evbuffer_free(s.out);
    fixture_free(&f);
}

/* nextCursor (10, 10) and (11, 10) -> false: the reader says nothing remains
 * (caught up, or the rest is past until): has_more false, page done. */
Test(scan, cursor_caught_up)
{
    struct fixture f = {0};
    add_env(&f, 9, 1, "system");
    struct tel_scan s = new_scan(5, 0, 1 << 20);
    cr_assert_eq(tel_scan_feed(&s, f.recs, f.n, 10, 0), 0);
    cr_assert_eq(s.kept, 1);
    cr_assert_eq(s.has_more, 0);
    cr_assert_eq(s.done, 1);
    evbuffer_free(s.out);
    fixture_free(&f);
}

/* nextCursor (nil, ...) -> false: an empty read at the tail. */
Test(scan, cursor_empty_read)
{
    struct tel_scan s = new_scan(5, 0, 1 << 20);
    cr_assert_eq(tel_scan_feed(&s, NULL, 0, 7, 0), 0);
    cr_assert_eq(s.kept, 0);
    cr_assert_eq(s.has_more, 0);
    cr_assert_eq(s.done, 1);
    cr_assert_eq(evbuffer_get_length(s.out), 0);
    evbuffer_free(s.out);
}

/* An empty read that claims more (no progress) ends the page instead of
 * reading the same place again. */
Test(scan, cursor_no_progress_stops)
{
    struct tel_scan s = new_scan(5, 0, 1 << 20);
    cr_assert_eq(tel_scan_feed(&s, NULL, 0, 7, 1), 0);
    cr_assert_eq(s.done, 1);
    cr_assert_eq(s.has_more, 1);
    cr_assert_eq(s.next, 7);
    evbuffer_free(s.out);
}

/* Full before the end of a read: the cursor is the first record not
 * consumed, and more certainly remains. */
Test(scan, cursor_stops_inside_a_read)
{
    struct fixture f = {0};
    for (uint64_t i = 0; i < 10; i++)
        add_env(&f, 100 + i, 50 + i, "system");
    struct tel_scan s = new_scan(3, 0, 1 << 20);
    cr_assert_eq(tel_scan_feed(&s, f.recs, f.n, 110, 0), 0);
    cr_assert_eq(s.kept, 3);
    cr_assert_eq(s.next, 103);
    cr_assert_eq(s.has_more, 1, "records 103..109 remain");
    cr_assert_eq(s.done, 1);
    cJSON *arr = page_json(&s);
    cr_assert_eq(cJSON_GetArraySize(arr), 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(seq_at(arr, i), 50 + (uint64_t)i);
    cJSON_Delete(arr);
    evbuffer_free(s.out);
    fixture_free(&f);
}

/* filterByCategory: only the asked categories, order kept; no filter keeps
 * all. */
Test(scan, filter_by_category)
{
    const char *cats[] = {"system", "network", "control", "system", "console", "network"};
    struct fixture f = {0};
    for (uint64_t i = 0; i < 6; i++)
        add_env(&f, i, i + 1, cats[i]);

    struct tel_scan s = new_scan(100, TELEMETRY_CAT_SYSTEM | TELEMETRY_CAT_NETWORK, 1 << 20);
    cr_assert_eq(tel_scan_feed(&s, f.recs, f.n, 6, 0), 0);
    cr_assert_eq(s.kept, 4);
    cr_assert_eq(s.filtered_out, 2);
    cJSON *arr = page_json(&s);
    uint64_t want[] = {1, 2, 4, 6};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(seq_at(arr, i), want[i]);
    cJSON_Delete(arr);
    evbuffer_free(s.out);

    s = new_scan(100, 0, 1 << 20);
    cr_assert_eq(tel_scan_feed(&s, f.recs, f.n, 6, 0), 0);
    cr_assert_eq(s.kept, 6);
    evbuffer_free(s.out);

    s = new_scan(100, TELEMETRY_CAT_CAPTCHA, 1 << 20);
    cr_assert_eq(tel_scan_feed(&s, f.recs, f.n, 6, 0), 0);
    cr_assert_eq(s.kept, 0);
    cr_assert_eq(s.scanned, 6);
    cr_assert_eq(evbuffer_get_length(s.out), 0);
    evbuffer_free(s.out);
    fixture_free(&f);
}

/* A filtered page fills across reads; the cursor moves past everything
 * scanned, and the page is not done while the reader says more remains. */
Test(scan, filter_fills_across_reads)
{
    struct fixture a = {0}, b = {0};
    for (uint64_t i = 0; i < 10; i++)
        add_env(&a, i, i + 1, i == 4 ? "captcha" : "control");
    for (uint64_t i = 10; i < 20; i++)
        add_env(&b, i, i + 1, i == 12 || i == 17 ? "captcha" : "control");

    struct tel_scan s = new_scan(2, TELEMETRY_CAT_CAPTCHA, 1 << 20);
    cr_assert_eq(tel_scan_feed(&s, a.recs, a.n, 10, 1), 0);
    cr_assert_eq(s.kept, 1);
    cr_assert_eq(s.done, 0);
    cr_assert_eq(s.next, 10);
    cr_assert_eq(tel_scan_feed(&s, b.recs, b.n, 20, 1), 0);
    cr_assert_eq(s.kept, 2);
    cr_assert_eq(s.done, 1);
    cr_assert_eq(s.next, 13, "stops right after the second match");
    cr_assert_eq(s.has_more, 1);
    cJSON *arr = page_json(&s);
    cr_assert_eq(seq_at(arr, 0), 5);
    cr_assert_eq(seq_at(arr, 1), 13);
    cJSON_Delete(arr);
    evbuffer_free(s.out);
    fixture_free(&a);
    fixture_free(&b);
}

/* Records that are not envelopes are skipped and counted; the array stays
 * valid and the cursor moves past them. Command records are skipped
 * without being counted invalid. */
Test(scan, invalid_records_skipped)
{
    struct fixture f = {0};
    add_env(&f, 0, 1, "system");
    add(&f, 1, "garbage");
    add(&f, 2, "{\"seq\":2,\"event\":{\"category\":\"system\"");
    add(&f, 3, "");
    add_env(&f, 4, 3, "system");
    add(&f, 5, "fence-token");
    f.recs[5].is_command = 1;
    struct tel_scan s = new_scan(10, 0, 1 << 20);
    cr_assert_eq(tel_scan_feed(&s, f.recs, f.n, 6, 0), 0);
    cr_assert_eq(s.kept, 2);
    cr_assert_eq(s.invalid, 3);
    cr_assert_eq(s.scanned, 6);
    cr_assert_eq(s.next, 6);
    cJSON *arr = page_json(&s);
    cr_assert_eq(cJSON_GetArraySize(arr), 2);
    cJSON_Delete(arr);
    evbuffer_free(s.out);

    /* a read of nothing but garbage still advances the cursor */
    struct fixture g = {0};
    for (uint64_t i = 0; i < 5; i++)
        add(&g, 40 + i, "not json");
    s = new_scan(10, 0, 1 << 20);
    cr_assert_eq(tel_scan_feed(&s, g.recs, g.n, 45, 1), 0);
    cr_assert_eq(s.kept, 0);
    cr_assert_eq(s.next, 45);
    cr_assert_eq(s.done, 0, "more remains; the page reads on");
    evbuffer_free(s.out);
    fixture_free(&f);
    fixture_free(&g);
}

/* The byte cap: the first envelope always goes in, whatever its size; the
 * one that would cross the cap starts the next page. */
Test(scan, byte_cap)
{
    struct fixture f = {0};
    for (uint64_t i = 0; i < 4; i++)
        add_env(&f, 20 + i, i + 1, "system");
    size_t one = f.recs[0].body_len;
    struct tel_scan s = new_scan(10, 0, 2 * one + 1);
    cr_assert_eq(tel_scan_feed(&s, f.recs, f.n, 24, 0), 0);
    cr_assert_eq(s.kept, 2);
    cr_assert_eq(s.next, 22);
    cr_assert_eq(s.has_more, 1);
    cr_assert_eq(s.done, 1);
    cr_assert_leq(s.bytes, 2 * one + 1);
    evbuffer_free(s.out);

    s = new_scan(10, 0, 1);
    cr_assert_eq(tel_scan_feed(&s, f.recs, f.n, 24, 0), 0);
    cr_assert_eq(s.kept, 1, "one envelope over the cap still makes a page");
    cr_assert_eq(s.next, 21);
    evbuffer_free(s.out);
    fixture_free(&f);
}

/* The archived bytes go out as written: no re-encoding, spacing kept. */
Test(scan, bytes_served_as_written)
{
    struct fixture f = {0};
    const char *a = "{ \"seq\" : 1 , \"event\" : {\"category\":\"system\",\"data\":1.50} }";
    const char *b = "{\"seq\":2,\"event\":{\"category\":\"page\",\"data\":\"\\u00e9\"}}";
    add(&f, 0, a);
    add(&f, 1, b);
    struct tel_scan s = new_scan(10, 0, 1 << 20);
    cr_assert_eq(tel_scan_feed(&s, f.recs, f.n, 2, 0), 0);
    char want[300];
    snprintf(want, sizeof want, "%s,%s", a, b);
    size_t len = evbuffer_get_length(s.out);
    cr_assert_eq(len, strlen(want));
    cr_assert_eq(memcmp(evbuffer_pullup(s.out, -1), want, len), 0);
    evbuffer_free(s.out);
    fixture_free(&f);
}

/* Mutated envelopes: the check never reads out of bounds (the sanitizer
 * build watches), and whatever it accepts is JSON with the envelope shape. */
Test(envelope, mutations_are_safe)
{
    static const char base[] =
        "{\"seq\":42,\"event\":{\"ts\":1746123456789000,\"type\":\"network_request\","
        "\"category\":\"network\",\"source\":{\"kind\":\"cdp\",\"metadata\":{\"k\":\"v\\u00e9\"}},"
        "\"data\":{\"url\":\"https://example.com/\",\"n\":[1,2.5e-3,true,null]}}}";
    const size_t len = sizeof base - 1;
    unsigned seed = 12345;
    size_t accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        /* exact-size heap copy so any overread is caught */
        size_t n = len - (iter % 7 == 0 ? (size_t)(iter % (int)len) : 0);
        char *buf = malloc(n);
        memcpy(buf, base, n);
        int edits = 1 + iter % 3;
        for (int e = 0; e < edits && n > 0; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            buf[at] = (char)(seed >> 16);
        }
        uint64_t seq;
        uint32_t bit;
        if (tel_read_envelope_check(buf, n, &seq, &bit) == 0) {
            accepted++;
            cJSON *j = cJSON_ParseWithLength(buf, n);
            cr_assert_not_null(j, "accepted what is not JSON: %.*s", (int)n, buf);
            cr_assert(cJSON_IsObject(cJSON_GetObjectItem(j, "event")));
            cJSON_Delete(j);
        }
        free(buf);
    }
    cr_assert_gt(accepted, 0, "some mutations (inside strings) stay valid");
}
