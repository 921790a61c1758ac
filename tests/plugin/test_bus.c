/* test_bus.c - seq assignment, ring order, overflow, gaps, subscribers. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "bus.h"
#include "envelope.h"

static struct tel_event ev_of(const char *type)
{
    struct tel_event ev = {.ts_us = 1, .type = type, .category = TEL_CAT_SYSTEM};
    return ev;
}

static void publish_n(struct tel_bus *bus, int n)
{
    for (int i = 0; i < n; i++) {
        struct tel_event ev = ev_of("t");
        cr_assert_eq(tel_bus_publish(bus, &ev, "s", NULL), 0);
    }
}

Test(bus, refuses_zero_capacity)
{
    struct tel_bus *bus = NULL;
    cr_assert_eq(tel_bus_new(0, &bus), -EINVAL);
    cr_assert_null(bus);
}

Test(bus, seq_starts_at_one_and_grows_by_one)
{
    struct tel_bus *bus;
    cr_assert_eq(tel_bus_new(4, &bus), 0);
    cr_assert_eq(tel_bus_last_seq(bus), 0);
    cr_assert_eq(tel_bus_oldest_seq(bus), 0);
    for (uint64_t i = 1; i <= 10; i++) {
        struct tel_event ev = ev_of("t");
        const struct tel_env *env;
        cr_assert_eq(tel_bus_publish(bus, &ev, "s", &env), 0);
        cr_assert_eq(tel_env_seq(env), i);
        cr_assert_eq(tel_bus_last_seq(bus), i);
        size_t len, flen;
        const char *json = tel_env_json(env, &len);
        char want[64];
        int wl = snprintf(want, sizeof want, "{\"seq\":%" PRIu64 ",", i);
        cr_assert(len > (size_t)wl && memcmp(json, want, (size_t)wl) == 0);
        const char *frame = tel_env_frame(env, &flen);
        char fp[64];
        int fl = snprintf(fp, sizeof fp, "id: %" PRIu64 "\ndata: ", i);
        cr_assert_eq(flen, (size_t)fl + len + 2);
        cr_assert(memcmp(frame, fp, (size_t)fl) == 0);
        cr_assert(memcmp(frame + fl, json, len) == 0);
        cr_assert(memcmp(frame + fl + len, "\n\n", 2) == 0);
    }
    tel_bus_free(bus);
}

Test(bus, invalid_event_consumes_no_seq)
{
    struct tel_bus *bus;
    cr_assert_eq(tel_bus_new(4, &bus), 0);
    struct tel_event bad = ev_of("");
    cr_assert_eq(tel_bus_publish(bus, &bad, "s", NULL), -EINVAL);
    cr_assert_eq(tel_bus_last_seq(bus), 0);
    publish_n(bus, 1);
    cr_assert_eq(tel_bus_last_seq(bus), 1);
    tel_bus_free(bus);
}

Test(bus, reader_reads_in_order)
{
    struct tel_bus *bus;
    cr_assert_eq(tel_bus_new(8, &bus), 0);
    uint64_t cursor = 1;
    const struct tel_env *env;
    cr_assert_eq(tel_bus_read(bus, &cursor, &env, NULL), -EAGAIN);
    publish_n(bus, 5);
    for (uint64_t want = 1; want <= 5; want++) {
        uint64_t skipped = 99;
        cr_assert_eq(tel_bus_read(bus, &cursor, &env, &skipped), 0);
        cr_assert_eq(tel_env_seq(env), want);
        cr_assert_eq(skipped, 0);
    }
    cr_assert_eq(tel_bus_read(bus, &cursor, &env, NULL), -EAGAIN);
    cr_assert_eq(cursor, 6);
    publish_n(bus, 1);
    cr_assert_eq(tel_bus_read(bus, &cursor, &env, NULL), 0);
    cr_assert_eq(tel_env_seq(env), 6);
    tel_bus_free(bus);
}

/* Overflow never blocks the publisher; a slow reader skips to the oldest
 * retained and is told how many it lost (the gap). */
Test(bus, overflow_and_gap)
{
    struct tel_bus *bus;
    const uint32_t cap = 16;
    cr_assert_eq(tel_bus_new(cap, &bus), 0);
    uint64_t cursor = 1;
    const struct tel_env *env;
    publish_n(bus, 3);
    cr_assert_eq(tel_bus_read(bus, &cursor, &env, NULL), 0); /* read 1 */
    publish_n(bus, (int)cap + 36);                           /* 52 total */
    cr_assert_eq(tel_bus_last_seq(bus), 3 + cap + 36);
    cr_assert_eq(tel_bus_oldest_seq(bus), 3 + 36 + 1);
    uint64_t skipped = 0;
    cr_assert_eq(tel_bus_read(bus, &cursor, &env, &skipped), 0);
    cr_assert_eq(tel_env_seq(env), 40);
    cr_assert_eq(skipped, 40 - 2);
    uint64_t prev = 40;
    while (tel_bus_read(bus, &cursor, &env, &skipped) == 0) {
        cr_assert_eq(tel_env_seq(env), prev + 1);
        cr_assert_eq(skipped, 0);
        prev++;
    }
    cr_assert_eq(prev, 3 + cap + 36);
    tel_bus_free(bus);
}

/* TestStreamReplayAllAtCapacityBoundary / AfterEviction: replay from the
 * oldest retained (cursor 1). */
Test(bus, replay_from_oldest_at_boundaries)
{
    const uint32_t cap = 32;
    const struct {
        int published;
        uint64_t first;
    } cases[] = {{1, 1}, {(int)cap, 1}, {(int)cap + 1, 2}, {(int)cap + 36, 37}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct tel_bus *bus;
        cr_assert_eq(tel_bus_new(cap, &bus), 0);
        publish_n(bus, cases[i].published);
        uint64_t cursor = 1; /* afterSeq 0 */
        const struct tel_env *env;
        cr_assert_eq(tel_bus_read(bus, &cursor, &env, NULL), 0);
        cr_assert_eq(tel_env_seq(env), cases[i].first, "published %d", cases[i].published);
        tel_bus_free(bus);
    }
}

struct seen {
    uint64_t seqs[64];
    int n;
    struct tel_bus *bus;
    int nested_rc;
};

static void on_publish(const struct tel_env *env, void *arg)
{
    struct seen *s = arg;
    s->seqs[s->n++] = tel_env_seq(env);
    if (s->bus != NULL) {
        struct tel_event ev = ev_of("nested");
        s->nested_rc = tel_bus_publish(s->bus, &ev, "s", NULL);
    }
}

Test(bus, subscribers_see_every_publish_in_order)
{
    struct tel_bus *bus;
    cr_assert_eq(tel_bus_new(4, &bus), 0);
    struct seen a = {0}, b = {0};
    unsigned ida, idb;
    cr_assert_eq(tel_bus_subscribe(bus, on_publish, &a, &ida), 0);
    cr_assert_eq(tel_bus_subscribe(bus, on_publish, &b, &idb), 0);
    publish_n(bus, 10);
    tel_bus_unsubscribe(bus, idb);
    publish_n(bus, 2);
    cr_assert_eq(a.n, 12);
    cr_assert_eq(b.n, 10);
    for (int i = 0; i < a.n; i++)
        cr_assert_eq(a.seqs[i], (uint64_t)i + 1);
    tel_bus_free(bus);
}

Test(bus, publish_from_a_subscriber_is_refused)
{
    struct tel_bus *bus;
    cr_assert_eq(tel_bus_new(4, &bus), 0);
    struct seen a = {0};
    a.bus = bus;
    unsigned id;
    cr_assert_eq(tel_bus_subscribe(bus, on_publish, &a, &id), 0);
    publish_n(bus, 1);
    cr_assert_eq(a.nested_rc, -EBUSY);
    cr_assert_eq(tel_bus_last_seq(bus), 1);
    tel_bus_free(bus);
}

Test(bus, subscriber_slots_are_bounded)
{
    struct tel_bus *bus;
    cr_assert_eq(tel_bus_new(4, &bus), 0);
    struct seen s = {0};
    unsigned id;
    for (int i = 0; i < TEL_BUS_MAX_SUBSCRIBERS; i++)
        cr_assert_eq(tel_bus_subscribe(bus, on_publish, &s, &id), 0);
    cr_assert_eq(tel_bus_subscribe(bus, on_publish, &s, &id), -ENOSPC);
    tel_bus_free(bus);
}
