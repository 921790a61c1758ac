/*
 * test_params.c - query parameters of GET /telemetry/events: formats,
 * defaults, clamping, precedence, and a 400 naming the parameter for every
 * bad value. The reference's buildReadOptions and pageSize cases are here,
 * adapted to our contract (limit 1..1000 default 100, offset unsigned).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "params.h"
#include "telemetry/service.h"

/* A fixed wall clock: 2026-01-01T00:00:00Z. */
#define NOW_MS 1767225600000ULL

static struct tel_read_params p;
static char err[400];

static int parse(const char *query)
{
    memset(&p, 0xAB, sizeof p);
    err[0] = '\0';
    return tel_params_parse(query, NOW_MS, &p, err, sizeof err);
}

/* The request fails and the message starts with the parameter's name. */
static void assert_bad(const char *query, const char *param)
{
    int rc = parse(query);
    cr_assert_eq(rc, -EINVAL, "query \"%s\" should be refused", query);
    cr_assert(strncmp(err, param, strlen(param)) == 0, "message for \"%s\" should name %s: \"%s\"",
              query, param, err);
}

Test(params, defaults_start_at_oldest)
{
    cr_assert_eq(parse(NULL), 0);
    cr_assert_eq(p.start, TEL_START_OLDEST);
    cr_assert_eq(p.limit, 100);
    cr_assert_eq(p.has_until, 0);
    cr_assert_eq(p.categories, 0);
    cr_assert_eq(parse(""), 0);
    cr_assert_eq(p.start, TEL_START_OLDEST);
    cr_assert_eq(p.limit, 100);
}

/* buildReadOptions: since/until RFC 3339 to milliseconds. */
Test(params, build_since_until_rfc3339)
{
    cr_assert_eq(parse("since=2020-01-01T00:00:00Z&until=2020-01-02T00:00:00Z"), 0, "%s", err);
    cr_assert_eq(p.start, TEL_START_TIMESTAMP);
    cr_assert_eq(p.since_ms, 1577836800000ULL);
    cr_assert_eq(p.has_until, 1);
    cr_assert_eq(p.until_ms, 1577923200000ULL);
}

/* buildReadOptions: offset wins over since. */
Test(params, build_offset_beats_since)
{
    cr_assert_eq(parse("offset=4213&since=5m"), 0, "%s", err);
    cr_assert_eq(p.start, TEL_START_OFFSET);
    cr_assert_eq(p.offset, 4213);
}

/* With offset, since is not compared with until (it is ignored), but until
 * still bounds. */
Test(params, build_offset_keeps_until)
{
    cr_assert_eq(parse("offset=7&since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z"), 0, "%s",
                 err);
    cr_assert_eq(p.start, TEL_START_OFFSET);
    cr_assert_eq(p.offset, 7);
    cr_assert_eq(p.has_until, 1);
    cr_assert_eq(p.until_ms, 1577836800000ULL);
}

/* buildReadOptions: until alone reads from the oldest record, not now-5m. */
Test(params, build_until_only_starts_at_oldest)
{
    cr_assert_eq(parse("until=2020-01-02T00:00:00Z"), 0, "%s", err);
    cr_assert_eq(p.start, TEL_START_OLDEST);
    cr_assert_eq(p.until_ms, 1577923200000ULL);
}

/* buildReadOptions: offset=-1 was clamped to 0 by the reference; our offset
 * is unsigned, so it is a 400 naming offset. */
Test(params, build_negative_offset_refused)
{
    assert_bad("offset=-1", "offset");
}

Test(params, build_nonsense_since_refused)
{
    assert_bad("since=nonsense", "since");
    cr_assert(strstr(err, "nonsense") != NULL, "%s", err);
}

Test(params, build_negative_until_refused)
{
    assert_bad("until=-5m", "until");
    cr_assert(strstr(err, "negative") != NULL, "%s", err);
}

/* pageSize: nil -> default, in range kept, below 1 -> 1, above max -> max. */
Test(params, page_size)
{
    struct {
        const char *text;
        uint32_t want;
    } cases[] = {
        {NULL, 100},
        {"50", 50},
        {"0", 1},
        {"-5", 1},
        {"1", 1},
        {"1000", 1000},
        {"1001", 1000},
        {"5000", 1000},
        {"99999999999999999999999", 1000},
        {"-99999999999999999999999", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t got = 0;
        cr_assert_eq(tel_params_limit(cases[i].text, &got), 0, "%s", cases[i].text);
        cr_assert_eq(got, cases[i].want, "limit %s: got %u want %u",
                     cases[i].text ? cases[i].text : "(none)", got, cases[i].want);
    }
    cr_assert_eq(parse("limit=5000"), 0);
    cr_assert_eq(p.limit, 1000);
    cr_assert_eq(parse("limit=0"), 0);
    cr_assert_eq(p.limit, 1);
}

Test(params, limit_not_an_integer)
{
    assert_bad("limit=abc", "limit");
    assert_bad("limit=", "limit");
    assert_bad("limit=1.5", "limit");
    assert_bad("limit=10x", "limit");
    assert_bad("limit=-", "limit");
}

Test(params, offset_strict_u64)
{
    uint64_t v;
    cr_assert_eq(tel_params_u64("0", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(tel_params_u64("18446744073709551615", &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    cr_assert_eq(tel_params_u64("18446744073709551616", &v), -EINVAL);
    cr_assert_eq(tel_params_u64("", &v), -EINVAL);
    cr_assert_eq(tel_params_u64("+1", &v), -EINVAL);
    cr_assert_eq(tel_params_u64(" 1", &v), -EINVAL);
    cr_assert_eq(tel_params_u64("1 ", &v), -EINVAL);
    cr_assert_eq(tel_params_u64("0x10", &v), -EINVAL);

    cr_assert_eq(parse("offset=18446744073709551615"), 0);
    cr_assert_eq(p.offset, UINT64_MAX);
    assert_bad("offset=18446744073709551616", "offset");
    assert_bad("offset=", "offset");
    assert_bad("offset=12abc", "offset");
    assert_bad("offset=%201", "offset");
}

Test(params, repeated_scalar_refused)
{
    assert_bad("offset=1&offset=2", "offset");
    assert_bad("limit=1&limit=1", "limit");
    assert_bad("since=5m&since=1m", "since");
    assert_bad("until=5m&until=1m", "until");
}

Test(params, rfc3339_forms)
{
    struct {
        const char *text;
        uint64_t want;
    } ok[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T01:00:00+01:00", 0},
        {"2020-01-01T00:00:00Z", 1577836800000ULL},
        {"2020-01-01t00:00:00z", 1577836800000ULL},
        {"2020-01-01T00:00:00.5Z", 1577836800500ULL},
        {"2020-01-01T00:00:00.123Z", 1577836800123ULL},
        /* finer than a millisecond: the first whole millisecond after */
        {"2020-01-01T00:00:00.1231Z", 1577836800124ULL},
        {"2020-01-01T00:00:00.000000001Z", 1577836800001ULL},
        {"2020-01-01T00:00:00.120000000Z", 1577836800120ULL},
        {"2020-01-01T01:00:00+01:00", 1577836800000ULL},
        {"2019-12-31T18:30:00-05:30", 1577836800000ULL},
        {"2020-02-29T00:00:00Z", 1582934400000ULL},
        {"2000-02-29T12:00:00Z", 951825600000ULL},
        {"9999-12-31T23:59:59.999Z", 253402300799999ULL},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t got = 1;
        cr_assert_eq(tel_params_rfc3339(ok[i].text, &got), 0, "%s", ok[i].text);
        cr_assert_eq(got, ok[i].want, "%s: got %llu want %llu", ok[i].text, (unsigned long long)got,
                     (unsigned long long)ok[i].want);
    }
    const char *bad[] = {
        "2020-01-01",
        "2020-01-01T00:00:00",
        "2020-13-01T00:00:00Z",
        "2020-00-01T00:00:00Z",
        "2020-01-32T00:00:00Z",
        "2021-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2020-04-31T00:00:00Z",
        "2020-01-01T24:00:00Z",
        "2020-01-01T00:60:00Z",
        "2020-01-01T00:00:60Z",
        "2020-01-01T00:00:00.Z",
        "2020-01-01T00:00:00+1:00",
        "2020-01-01T00:00:00+01:60",
        "2020-01-01T00:00:00+0100",
        "2020-01-01X00:00:00Z",
        "2020-01-01T00:00:00Zjunk",
        "20200-01-01T00:00:00Z",
        "2020-1-01T00:00:00Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t got;
        cr_assert_neq(tel_params_rfc3339(bad[i], &got), 0, "%s should be refused", bad[i]);
    }
    uint64_t got;
    cr_assert_eq(tel_params_rfc3339("1969-12-31T23:59:59Z", &got), -ERANGE);
    cr_assert_eq(tel_params_rfc3339("1970-01-01T00:00:00+00:01", &got), -ERANGE);
}

Test(params, time_formats)
{
    uint64_t ms;
    char why[200];
    /* integer Unix milliseconds, "0" included */
    cr_assert_eq(tel_params_time("1", NOW_MS, &ms, why, sizeof why), 0);
    cr_assert_eq(ms, 1);
    cr_assert_eq(tel_params_time("0", NOW_MS, &ms, why, sizeof why), 0);
    cr_assert_eq(ms, 0);
    /* durations: that long ago */
    cr_assert_eq(tel_params_time("5m", NOW_MS, &ms, why, sizeof why), 0, "%s", why);
    cr_assert_eq(ms, NOW_MS - 300000);
    cr_assert_eq(tel_params_time("1h30m", NOW_MS, &ms, why, sizeof why), 0, "%s", why);
    cr_assert_eq(ms, NOW_MS - 5400000);
    cr_assert_eq(tel_params_time("300ms", NOW_MS, &ms, why, sizeof why), 0, "%s", why);
    cr_assert_eq(ms, NOW_MS - 300);
    cr_assert_eq(tel_params_time("0s", NOW_MS, &ms, why, sizeof why), 0, "%s", why);
    cr_assert_eq(ms, NOW_MS);
    /* longer ago than the epoch: the epoch */
    cr_assert_eq(tel_params_time("10m", 1000, &ms, why, sizeof why), 0, "%s", why);
    cr_assert_eq(ms, 0);
    /* RFC 3339 */
    cr_assert_eq(tel_params_time("2020-01-01T00:00:00Z", NOW_MS, &ms, why, sizeof why), 0);
    cr_assert_eq(ms, 1577836800000ULL);
    /* refusals, each with a reason */
    const char *bad[] = {"-5m", "5x", "m", "soon", "1.5.5s", "2020-01-01", "1969-01-01T00:00:00Z",
                         "-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        cr_assert_eq(tel_params_time(bad[i], NOW_MS, &ms, why, sizeof why), -EINVAL, "%s", bad[i]);
        cr_assert(why[0] != '\0', "no reason for %s", bad[i]);
    }
    cr_assert_eq(tel_params_time("", NOW_MS, &ms, why, sizeof why), -EINVAL);
}

/* A '+' left unencoded in the query decodes to a blank; it still means +. */
Test(params, unencoded_plus_offset)
{
    cr_assert_eq(parse("since=2020-01-01T01:00:00+01:00"), 0, "%s", err);
    cr_assert_eq(p.since_ms, 1577836800000ULL);
    cr_assert_eq(parse("since=2020-01-01T01%3A00%3A00%2B01%3A00"), 0, "%s", err);
    cr_assert_eq(p.since_ms, 1577836800000ULL);
}

Test(params, since_must_precede_until)
{
    assert_bad("since=2020-01-02T00:00:00Z&until=2020-01-01T00:00:00Z", "since");
    cr_assert(strstr(err, "until") != NULL, "%s", err);
    assert_bad("since=5&until=5", "since");
    cr_assert_eq(parse("since=4&until=5"), 0, "%s", err);
    cr_assert_eq(p.since_ms, 4);
    cr_assert_eq(p.until_ms, 5);
    /* durations: 10m ago is before 5m ago */
    cr_assert_eq(parse("since=10m&until=5m"), 0, "%s", err);
    assert_bad("since=5m&until=10m", "since");
}

Test(params, bad_since_refused_even_with_offset)
{
    assert_bad("offset=3&since=yesterday", "since");
}

/* filterByCategory input: repeated and comma-separated values add up. */
Test(params, categories_repeat_and_comma)
{
    cr_assert_eq(parse("category=system&category=network,console"), 0, "%s", err);
    cr_assert_eq(p.categories,
                 TELEMETRY_CAT_SYSTEM | TELEMETRY_CAT_NETWORK | TELEMETRY_CAT_CONSOLE);
    cr_assert_eq(parse("category=monitor"), 0, "%s", err);
    cr_assert_eq(p.categories, TELEMETRY_CAT_MONITOR);
    cr_assert_eq(parse("category=system,system"), 0, "%s", err);
    cr_assert_eq(p.categories, TELEMETRY_CAT_SYSTEM);
    /* every name of the enum, in its bit */
    for (unsigned i = 0; i < TEL_PARAMS_NCATEGORIES; i++) {
        const char *name = tel_params_category_name(i);
        cr_assert_eq(tel_params_category_bit(name, strlen(name)), 1u << i, "%s", name);
    }
    cr_assert_null(tel_params_category_name(TEL_PARAMS_NCATEGORIES));
}

Test(params, categories_refused)
{
    assert_bad("category=bogus", "category");
    cr_assert(strstr(err, "bogus") != NULL, "%s", err);
    assert_bad("category=", "category");
    assert_bad("category=system,", "category");
    assert_bad("category=system,,network", "category");
    assert_bad("category=System", "category");
    assert_bad("category=system&category=nope", "category");
}

Test(params, query_shape)
{
    /* unknown parameters are ignored */
    cr_assert_eq(parse("foo=bar&limit=7"), 0, "%s", err);
    cr_assert_eq(p.limit, 7);
    assert_bad("limit", "query");
    assert_bad("=5", "query");
    assert_bad("offset=1%002", "query");
}

/* A long bad value is echoed cut short; the message stays bounded. */
Test(params, long_value_echo_is_bounded)
{
    char q[5000] = "since=";
    memset(q + 6, 'x', 4000);
    q[4006] = '\0';
    assert_bad(q, "since");
    cr_assert_lt(strlen(err), 300);
}
