/*
 * store.h - s2-local's storage: basins and streams, durable on disk or in memory.
 *
 * Layout of a data directory (every name below is chosen by the store, never
 * taken from a client):
 *   <dir>/basins/<basin>/basin.cfg          basin config (basin names are [a-z0-9-])
 *   <dir>/basins/<basin>/streams/<sdir>/    one stream; <sdir> is "x" + hex(name) for
 *                                           names up to 100 bytes, else "h" + hash + "-n"
 *       meta       the stream's name, creation time and config
 *       log        append-only records: a 32-byte header with a CRC32, then payload
 *       index      16 bytes per record (log offset, timestamp): seq_num n is entry n
 *       commands   fence/trim command records, so fencing survives a restart
 *
 * Durability: an append returns only after the records (and their index
 * entries) were written with write(2) to the stream's files, so they survive
 * kill -9 of the process. S2L_FSYNC_BATCH adds one fdatasync per file per
 * append before returning, so acknowledged records also survive power loss.
 * An append batch is atomic: recovery at open verifies the tail by CRC,
 * cuts off a torn final write together with the rest of its batch, and
 * rebuilds missing index entries from the log.
 *
 * Reads by seq_num cost one index lookup; reads by timestamp a binary search
 * over the index (timestamps never decrease within a stream). Streams are
 * opened (recovered) on first use; at most S2L_MAX_OPEN_STREAMS keep their
 * files open, the least recently used are closed beyond that.
 *
 * In memory (dir NULL) the same record format lives in malloc'd buffers,
 * bounded by S2L_MEM_MAX bytes in total.
 *
 * Trim commands are applied logically (reads skip trimmed records); disk
 * space is not reclaimed.
 */
#ifndef S2L_STORE_H
#define S2L_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s2/local.h"

#define S2L_STREAM_NAME_MAX 512
#define S2L_BASIN_NAME_MIN 8
#define S2L_BASIN_NAME_MAX 48
#define S2L_FENCE_MAX 36
#define S2L_MAX_OPEN_STREAMS 256
#define S2L_MAX_STREAMS 100000
#define S2L_MAX_BASINS 1000
#define S2L_MEM_MAX ((size_t)1 << 30)
/* Largest record payload the store accepts (a 1 MiB metered record with
 * many headers stores 6 more bytes per header than it meters). */
#define S2L_PAYLOAD_MAX ((size_t)5 << 20)

struct s2l_store;
struct s2l_basin;
struct s2l_stream;

enum s2l_ts_mode {
    S2L_TS_CLIENT_PREFER = 0,
    S2L_TS_CLIENT_REQUIRE = 1,
    S2L_TS_ARRIVAL = 2,
};

struct s2l_stream_config {
    enum s2l_ts_mode ts_mode;
    bool ts_uncapped;
};

struct s2l_basin_config {
    bool create_stream_on_append;
    bool create_stream_on_read;
};

/* One header of a record; the bytes are borrowed. */
struct s2l_hdr {
    const uint8_t *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
};

/* A record. On append seq_num is ignored (the store assigns it); on read the
 * pointers are valid only during the callback. */
struct s2l_rec {
    uint64_t seq_num;
    uint64_t timestamp;
    size_t nheaders;
    const struct s2l_hdr *headers;
    const uint8_t *body;
    size_t body_len;
};

enum s2l_provision {
    S2L_PROVISION_NOOP = 0,
    S2L_PROVISION_CREATED = 1,
    S2L_PROVISION_UPDATED = 2,
};

/* Open a store: dir NULL = in memory, else created if missing and loaded
 * (streams are recovered lazily). log (may be NULL) hears about recovery
 * (cut-off torn writes, skipped directories). *out is owned by the caller
 * (s2l_store_free). Returns 0, -ENOMEM, or a negative errno of the file
 * system. */
int s2l_store_open(const char *dir, enum s2l_fsync fsync, s2l_log_fn log, void *log_arg,
                   struct s2l_store **out);

/* Close every file and free everything. NULL is a no-op. */
void s2l_store_free(struct s2l_store *store);

/* true if name is a valid basin name: 8..48 of [a-z0-9-], alphanumeric at
 * both ends. */
bool s2l_basin_name_valid(const char *name, size_t len);

/* true if name is a valid stream name: 1..512 bytes of UTF-8, no NUL,
 * not "." or "..". */
bool s2l_stream_name_valid(const uint8_t *name, size_t len);

/* Find a basin. Returns 0 or -ENOENT. The basin is owned by the store. */
int s2l_store_basin(struct s2l_store *store, const char *name, struct s2l_basin **out);

/* Create a basin, or update its config when cfg is non-NULL (NULL keeps the
 * config of an existing basin, and gives new basins both create flags on).
 * *result says what happened. Returns 0, -EINVAL (bad name), -ENOSPC (too
 * many basins), -ENOMEM, or a file-system errno. */
int s2l_store_basin_ensure(struct s2l_store *store, const char *name,
                           const struct s2l_basin_config *cfg, enum s2l_provision *result,
                           struct s2l_basin **out);

/* Basins in name order after start_after (NULL = from the first) whose name
 * starts with prefix (NULL = all), at most max into out (borrowed
 * pointers). Returns the number written; *has_more tells if more matched. */
size_t s2l_store_basin_list(struct s2l_store *store, const char *prefix, const char *start_after,
                            struct s2l_basin **out, size_t max, bool *has_more);

const char *s2l_basin_name(const struct s2l_basin *basin);
uint64_t s2l_basin_created_ms(const struct s2l_basin *basin);
struct s2l_basin_config s2l_basin_get_config(const struct s2l_basin *basin);

/* Find a stream and open (recover) it. Returns 0, -ENOENT, or a negative
 * errno when its files cannot be opened or recovered. Owned by the store. */
int s2l_basin_stream(struct s2l_basin *basin, const uint8_t *name, size_t len,
                     struct s2l_stream **out);

/* Create a stream (cfg NULL = defaults) or, if it exists, apply cfg when
 * non-NULL. *result says what happened; with exclusive set an existing
 * stream gives -EEXIST. Returns 0, -EEXIST, -EINVAL (bad name), -ENOSPC
 * (too many streams), -ENOMEM or a file-system errno. */
int s2l_basin_stream_ensure(struct s2l_basin *basin, const uint8_t *name, size_t len,
                            const struct s2l_stream_config *cfg, bool exclusive,
                            enum s2l_provision *result, struct s2l_stream **out);

/* Streams in byte order of their names, after start_after (len 0 = from the
 * first), whose name starts with prefix (len 0 = all). At most max into
 * out (borrowed; not opened). Returns the number written. */
size_t s2l_basin_stream_list(struct s2l_basin *basin, const uint8_t *prefix, size_t prefix_len,
                             const uint8_t *start_after, size_t start_after_len,
                             struct s2l_stream **out, size_t max, bool *has_more);

const uint8_t *s2l_stream_name(const struct s2l_stream *st, size_t *len);
uint64_t s2l_stream_created_ms(const struct s2l_stream *st);
struct s2l_stream_config s2l_stream_get_config(const struct s2l_stream *st);

/* The tail of an opened stream: the next seq_num and the last record's
 * timestamp (0 when empty). */
void s2l_stream_tail(const struct s2l_stream *st, uint64_t *next_seq, uint64_t *last_ts);

/* The S2-Request-Token the stream was created with ("" if none; kept in
 * memory only, so a create retried with the same token is recognised). */
const char *s2l_stream_request_token(const struct s2l_stream *st);
void s2l_stream_set_request_token(struct s2l_stream *st, const char *token);

/* The current fencing token (not NUL-terminated; "" initially). */
const char *s2l_stream_fence(const struct s2l_stream *st, size_t *len);

/* The first readable seq_num (records before it were trimmed). */
uint64_t s2l_stream_trim_point(const struct s2l_stream *st);

/* Append n (>= 1) records atomically; seq_nums follow the tail, timestamps
 * must not decrease (the caller assigns them). A record with exactly one
 * header whose name is empty is a command: "fence" (body = new token,
 * <= 36 bytes) or "trim" (body = 8-byte big-endian seq_num). The caller
 * validates; invalid input gives -EINVAL and changes nothing. *first gets
 * the first assigned seq_num. Returns 0, -EINVAL, -ENOSPC, -ENOMEM, or the
 * errno of a failed write (the stream is left unchanged). */
int s2l_stream_append(struct s2l_stream *st, const struct s2l_rec *recs, size_t n, uint64_t *first);

/* Read callback: return 0 to continue, 1 to stop, or a negative errno to
 * abort the read with it. */
typedef int (*s2l_read_fn)(const struct s2l_rec *rec, void *arg);

/* Call fn for the records from seq_num start on (at most max, and never
 * past the tail). Every record's CRC is checked. Returns 0, -EIO (a corrupt
 * record), -ENOMEM, a read errno, or what fn returned when negative. */
int s2l_stream_read(struct s2l_stream *st, uint64_t start, size_t max, s2l_read_fn fn, void *arg);

/* The first seq_num whose timestamp is >= ts (the tail when none). Binary
 * search over the index. Returns 0 or a negative errno. */
int s2l_stream_seek_timestamp(struct s2l_stream *st, uint64_t ts, uint64_t *seq);

#endif /* S2L_STORE_H */
