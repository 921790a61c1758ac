/*
 * proto.h - the protobuf messages of S2's data plane that s2-local speaks
 * (package s2.v1): AppendInput in, AppendAck and ReadBatch out. SDKs use
 * them for binary records (Content-Type / Accept: application/protobuf).
 *
 *   StreamPosition  { uint64 seq_num = 1; uint64 timestamp = 2; }
 *   Header          { bytes name = 1; bytes value = 2; }
 *   AppendRecord    { optional uint64 timestamp = 1; repeated Header headers = 2; bytes body = 3; }
 *   AppendInput     { repeated AppendRecord records = 1; optional uint64 match_seq_num = 2;
 *                     optional string fencing_token = 3; }
 *   AppendAck       { StreamPosition start = 1; StreamPosition end = 2; StreamPosition tail = 3; }
 *   SequencedRecord { uint64 seq_num = 1; uint64 timestamp = 2; repeated Header headers = 3;
 *                     bytes body = 4; }
 *   ReadBatch       { repeated SequencedRecord records = 1; optional StreamPosition tail = 2; }
 * Unknown fields are skipped.
 */
#ifndef S2L_PROTO_H
#define S2L_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane.h"
#include "store.h"

struct evbuffer;

/* A decoded AppendInput. Owns the two arrays (s2l_pb_append_free): the
 * records' headers point into hdrs; all bytes are borrowed from the buffer
 * it was decoded from. */
struct s2l_pb_append {
    size_t n;
    struct s2l_dp_rec *records;
    struct s2l_hdr *hdrs;
    bool has_match;
    uint64_t match;
    bool has_fence;
    const uint8_t *fence;
    size_t fence_len;
};

/* Decode an AppendInput from buf (which must outlive *out). Returns 0,
 * -EINVAL (not a valid AppendInput) or -ENOMEM; on error *out holds
 * nothing to free. */
int s2l_pb_decode_append(const uint8_t *buf, size_t len, struct s2l_pb_append *out);

void s2l_pb_append_free(struct s2l_pb_append *a);

/* Append a StreamPosition as field `field` of the enclosing message. */
int s2l_pb_add_position(struct evbuffer *out, uint32_t field, uint64_t seq, uint64_t ts);

/* Append rec as a SequencedRecord in field 1 of a ReadBatch. */
int s2l_pb_add_record(struct evbuffer *out, const struct s2l_rec *rec);

#endif /* S2L_PROTO_H */
