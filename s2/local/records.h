/*
 * records.h - s2-local's record output: SequencedRecord JSON as S2 writes
 * it, shared by unary reads and read sessions (SSE).
 */
#ifndef S2L_RECORDS_H
#define S2L_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct s2l_stream;

/* How records are written: JSON with the strings (header names and
 * values, bodies) per S2-Format, or protobuf. */
enum s2l_fmt {
    S2L_FMT_RAW = 0,    /* JSON; the bytes as UTF-8 (invalid sequences become U+FFFD) */
    S2L_FMT_BASE64 = 1, /* JSON; standard base64 with padding */
    S2L_FMT_PROTO = 2,  /* protobuf SequencedRecords, field 1 of a ReadBatch (proto.h) */
};

/* Bounds of one pass over a stream. A record is taken only while the
 * running totals stay within count and bytes and its timestamp is below
 * until (when has_until). */
struct s2l_read_bounds {
    enum s2l_fmt fmt;
    uint64_t count;
    uint64_t bytes;
    bool has_until;
    uint64_t until;
};

/* Why a pass stopped. */
enum s2l_read_stop {
    S2L_READ_STOP_END = 0, /* the tail, or count records were taken */
    S2L_READ_STOP_BYTES,   /* the next record would pass the byte bound */
    S2L_READ_STOP_UNTIL,   /* the next record's timestamp is >= until */
};

/* What a pass wrote. */
struct s2l_read_stats {
    uint64_t n;        /* records */
    uint64_t bytes;    /* their metered bytes */
    uint64_t last_seq; /* seq_num of the last one (when n > 0) */
    enum s2l_read_stop stop;
};

/* Append s as a JSON string (with quotes) to out. Invalid UTF-8 becomes
 * U+FFFD, one per maximal invalid subsequence. Returns 0 or -ENOMEM. */
int s2l_json_string(struct evbuffer *out, const uint8_t *s, size_t len);

/* true if s is valid UTF-8. */
bool s2l_utf8_valid(const uint8_t *s, size_t len);

/* Metered size of a record: 8 + 2 * headers + name and value bytes + body. */
uint64_t s2l_metered_size(size_t nheaders, uint64_t header_bytes, uint64_t body_len);

/* Append the records of st from seq_num start on, within b, to out: as
 * comma-separated SequencedRecord objects (empty headers and body left
 * out), or for S2L_FMT_PROTO as ReadBatch field-1 entries. *stats says
 * what was written. Returns 0, -ENOMEM, or the store's read error (out
 * then holds a partial list). */
int s2l_records_write(struct s2l_stream *st, uint64_t start, const struct s2l_read_bounds *b,
                      struct evbuffer *out, struct s2l_read_stats *stats);

#endif /* S2L_RECORDS_H */
