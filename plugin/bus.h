/*
 * bus.h - the event bus: seq assignment, the ring of recent envelopes,
 * reader cursors and publish notification.
 *
 * Publishing encodes the event with the next seq and stores it in the ring
 * in one step, so ring order is seq order. The ring keeps the last
 * `capacity` envelopes, each encoded once (the JSON and its SSE frame share
 * one allocation); the oldest is overwritten, so a publisher never waits.
 * A reader is just a cursor (the next seq it wants): one that falls behind
 * skips what was overwritten and sees a gap. Everything runs on one thread.
 */
#ifndef TEL_BUS_H
#define TEL_BUS_H

#include <stddef.h>
#include <stdint.h>

struct tel_event;
struct tel_bus;
struct tel_env;

#define TEL_BUS_MAX_SUBSCRIBERS 16

/* Called for every envelope right after it entered the ring, in seq order.
 * env is borrowed for the duration of the call. A subscriber must not
 * publish from inside the call. */
typedef void (*tel_bus_fn)(const struct tel_env *env, void *arg);

/* Create a bus whose ring holds capacity (>= 1) envelopes. */
int tel_bus_new(uint32_t capacity, struct tel_bus **out);

/* Free the ring and every envelope in it. NULL is a no-op. */
void tel_bus_free(struct tel_bus *bus);

/* Assign the next seq to ev, encode it (stamping session_id) and insert it.
 * *env_out (may be NULL) is borrowed: valid until it is overwritten, i.e.
 * at least until the next publish. Returns 0, -EINVAL (event not
 * encodable; no seq consumed), -ENOMEM, -EBUSY (called from inside a
 * subscriber). */
int tel_bus_publish(struct tel_bus *bus, const struct tel_event *ev, const char *session_id,
                    const struct tel_env **env_out);

/* The last assigned seq (0 before the first publish). */
uint64_t tel_bus_last_seq(const struct tel_bus *bus);

/* The oldest seq still in the ring (0 when empty). */
uint64_t tel_bus_oldest_seq(const struct tel_bus *bus);

uint32_t tel_bus_capacity(const struct tel_bus *bus);

/* Read at a cursor (the next seq wanted, >= 1). When that seq was
 * overwritten, the cursor jumps to the oldest retained and *skipped (may be
 * NULL) says how many were lost. Returns 0 with *env (borrowed, valid until
 * the next publish) and the cursor advanced, or -EAGAIN when nothing is
 * there yet. */
int tel_bus_read(const struct tel_bus *bus, uint64_t *cursor, const struct tel_env **env,
                 uint64_t *skipped);

/* Subscribe to publishes. Returns 0 with *id, -ENOSPC. */
int tel_bus_subscribe(struct tel_bus *bus, tel_bus_fn fn, void *arg, unsigned *id);
void tel_bus_unsubscribe(struct tel_bus *bus, unsigned id);

/* Accessors of an envelope. */
uint64_t tel_env_seq(const struct tel_env *env);
int tel_env_category(const struct tel_env *env);
/* The envelope JSON (not NUL-terminated). */
const char *tel_env_json(const struct tel_env *env, size_t *len);
/* The SSE frame "id: <seq>\ndata: <json>\n\n". */
const char *tel_env_frame(const struct tel_env *env, size_t *len);

#endif /* TEL_BUS_H */
