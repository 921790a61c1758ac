/* bus.c - seq, ring, cursors, subscribers. */
#include "bus.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "envelope.h"
#include "json.h"

struct tel_env {
    uint64_t seq;
    int category;
    size_t json_off; /* the JSON starts after the "id: N\ndata: " prefix */
    size_t json_len;
    size_t frame_len;
    char bytes[]; /* the whole SSE frame */
};

struct sub {
    tel_bus_fn fn;
    void *arg;
};

struct tel_bus {
    uint32_t capacity;
    uint64_t seq;          /* last assigned */
    struct tel_env **ring; /* slot = seq % capacity */
    int notifying;         /* a publish from inside a subscriber would break seq order */
    struct sub subs[TEL_BUS_MAX_SUBSCRIBERS];
};

int tel_bus_new(uint32_t capacity, struct tel_bus **out)
{
    struct tel_bus *bus = NULL;
    if (capacity == 0)
        return -EINVAL;
    bus = calloc(1, sizeof *bus);
    if (bus == NULL)
        goto fail;
    bus->capacity = capacity;
    bus->ring = calloc(capacity, sizeof *bus->ring);
    if (bus->ring == NULL)
        goto fail;
    *out = bus;
    return 0;
fail:
    tel_bus_free(bus);
    return -ENOMEM;
}

void tel_bus_free(struct tel_bus *bus)
{
    if (bus == NULL)
        return;
    if (bus->ring != NULL) {
        for (uint32_t i = 0; i < bus->capacity; i++)
            free(bus->ring[i]);
        free(bus->ring);
    }
    free(bus);
}

int tel_bus_publish(struct tel_bus *bus, const struct tel_event *ev, const char *session_id,
                    const struct tel_env **env_out)
{
    int rc;
    char prefix[48];
    uint64_t seq = bus->seq + 1;
    char *block = NULL;
    size_t jlen = 0;

    if (bus->notifying)
        return -EBUSY;
    size_t plen = 4 + tel_json_fmt_u64(prefix + 4, seq);
    memcpy(prefix, "id: ", 4);
    memcpy(prefix + plen, "\ndata: ", 7);
    plen += 7;
    /* The envelope is encoded straight into the frame's own allocation. */
    size_t head = offsetof(struct tel_env, bytes) + plen;
    rc = tel_envelope_build(ev, seq, session_id, head, 2, &block, &jlen, NULL);
    if (rc != 0)
        return rc;
    struct tel_env *env = (struct tel_env *)(void *)block;
    env->seq = seq;
    env->category = ev->category;
    env->json_off = plen;
    env->json_len = jlen;
    env->frame_len = plen + jlen + 2;
    memcpy(env->bytes, prefix, plen);
    memcpy(env->bytes + plen + jlen, "\n\n", 2);

    /* seq and slot change together: the ring never holds a seq it has not
     * assigned, and never skips one. */
    bus->seq = seq;
    struct tel_env **slot = &bus->ring[seq % bus->capacity];
    free(*slot);
    *slot = env;
    if (env_out != NULL)
        *env_out = env;
    bus->notifying = 1;
    for (unsigned i = 0; i < TEL_BUS_MAX_SUBSCRIBERS; i++) {
        if (bus->subs[i].fn != NULL)
            bus->subs[i].fn(env, bus->subs[i].arg);
    }
    bus->notifying = 0;
    return 0;
}

uint64_t tel_bus_last_seq(const struct tel_bus *bus)
{
    return bus->seq;
}

uint64_t tel_bus_oldest_seq(const struct tel_bus *bus)
{
    if (bus->seq == 0)
        return 0;
    return bus->seq <= bus->capacity ? 1 : bus->seq - bus->capacity + 1;
}

uint32_t tel_bus_capacity(const struct tel_bus *bus)
{
    return bus->capacity;
}

int tel_bus_read(const struct tel_bus *bus, uint64_t *cursor, const struct tel_env **env,
                 uint64_t *skipped)
{
    uint64_t next = *cursor == 0 ? 1 : *cursor;
    uint64_t oldest = tel_bus_oldest_seq(bus);
    if (skipped != NULL)
        *skipped = 0;
    if (bus->seq == 0 || next > bus->seq) {
        *cursor = next;
        return -EAGAIN;
    }
    if (next < oldest) {
        if (skipped != NULL)
            *skipped = oldest - next;
        next = oldest;
    }
    *env = bus->ring[next % bus->capacity];
    *cursor = next + 1;
    return 0;
}

int tel_bus_subscribe(struct tel_bus *bus, tel_bus_fn fn, void *arg, unsigned *id)
{
    for (unsigned i = 0; i < TEL_BUS_MAX_SUBSCRIBERS; i++) {
        if (bus->subs[i].fn == NULL) {
            bus->subs[i].fn = fn;
            bus->subs[i].arg = arg;
            *id = i;
            return 0;
        }
    }
    return -ENOSPC;
}

void tel_bus_unsubscribe(struct tel_bus *bus, unsigned id)
{
    if (id < TEL_BUS_MAX_SUBSCRIBERS)
        bus->subs[id].fn = NULL;
}

uint64_t tel_env_seq(const struct tel_env *env)
{
    return env->seq;
}

int tel_env_category(const struct tel_env *env)
{
    return env->category;
}

const char *tel_env_json(const struct tel_env *env, size_t *len)
{
    *len = env->json_len;
    return env->bytes + env->json_off;
}

const char *tel_env_frame(const struct tel_env *env, size_t *len)
{
    *len = env->frame_len;
    return env->bytes;
}
