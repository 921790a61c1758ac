/* test_stream.c - the stream's start position (reference TestResolveStartSeq). */
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "stream.h"

/* Parameters are copied into the test's process: arrays, not pointers.
 * "-" stands for an absent header or parameter. */
struct start_case {
    char name[32];
    char leid[32];
    char replay[8];
    uint64_t want;
};

/* The reference's own cases, current = 10, plus edges of ours. */
ParameterizedTestParameters(stream, start_after)
{
    static struct start_case cases[] = {
        {"fresh", "-", "-", 10},
        {"replay=all", "-", "all", 0},
        {"replay=foo", "-", "foo", 10},
        {"LEID 5", "5", "-", 5},
        {"LEID 5 + all", "5", "all", 5},
        {"LEID 0 + all", "0", "all", 10},
        {"LEID empty + all", "", "all", 0},
        {"LEID abc", "abc", "-", 10},
        {"LEID -1", "-1", "-", 10},
        /* ours */
        {"LEID -1 + all", "-1", "all", 10},
        {"LEID +5", "+5", "-", 10},
        {"LEID 5x", "5x", "-", 10},
        {"LEID ahead of current", "99", "-", 99},
        {"LEID max u64", "18446744073709551615", "-", UINT64_MAX},
        {"LEID overflow", "18446744073709551616", "-", 10},
        {"replay=ALL", "-", "ALL", 10},
    };
    return cr_make_param_array(struct start_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct start_case *c, stream, start_after)
{
    const char *leid = strcmp(c->leid, "-") == 0 ? NULL : c->leid;
    const char *replay = strcmp(c->replay, "-") == 0 ? NULL : c->replay;
    cr_assert_eq(tel_stream_start_after(leid, replay, 10), c->want, "%s", c->name);
}

Test(stream, fresh_with_nothing_published_starts_at_one)
{
    /* cursor = after + 1: the first event ever published is seq 1 */
    cr_assert_eq(tel_stream_start_after(NULL, NULL, 0) + 1, 1);
}
