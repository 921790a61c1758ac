/*
 * archive.h - archive writes: every admitted envelope, in seq order, becomes
 * one S2 record through the S2 batcher (telemetry-api.md section 8).
 *
 * Modes: real S2 (S2_BASIN + S2_ACCESS_TOKEN + S2_STREAM), else an embedded
 * s2-local on 127.0.0.1 (TELEMETRY_ARCHIVE_DIR), else off. Adding never
 * blocks: the batcher queue is bounded and counts what it refuses.
 */
#ifndef TEL_ARCHIVE_H
#define TEL_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

struct agent_host_api;
struct s2_client;
struct s2_config;
struct tel_archive;
struct tel_bus;

enum tel_archive_mode {
    TEL_ARCHIVE_OFF = 0,
    TEL_ARCHIVE_S2,
    TEL_ARCHIVE_LOCAL,
};

struct tel_archive_opts {
    const struct agent_host_api *api; /* borrowed */
    struct tel_bus *bus;              /* borrowed */
    const struct s2_config *s2;       /* borrowed; read during tel_archive_new */
    const char *local_dir;            /* NULL = no embedded s2-local */
};

/* Start the archive in the mode the configuration selects and log one line
 * saying which (never the token). Returns 0, or -errno with a message. */
int tel_archive_new(const struct tel_archive_opts *opts, struct tel_archive **out, char *err,
                    size_t errlen);

enum tel_archive_mode tel_archive_mode(const struct tel_archive *a);

/* The client and stream the archive writes to (for the read route); NULL
 * when the archive is off. Borrowed; valid until tel_archive_free. */
struct s2_client *tel_archive_client(const struct tel_archive *a);
const char *tel_archive_stream(const struct tel_archive *a);

/* The embedded s2-local's port (0 unless mode LOCAL). */
uint16_t tel_archive_local_port(const struct tel_archive *a);

/* Stop taking envelopes and send what is pending; call done(arg) once it is
 * acknowledged or timeout_ms passed (at once when off or empty). */
void tel_archive_flush(struct tel_archive *a, uint64_t timeout_ms, void (*done)(void *arg),
                       void *arg);

/* Free; what is still pending is counted lost and logged. NULL is a no-op. */
void tel_archive_free(struct tel_archive *a);

#endif /* TEL_ARCHIVE_H */
