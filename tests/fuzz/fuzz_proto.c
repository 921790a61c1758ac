/*
 * fuzz_proto.c - s2-local's protobuf AppendInput decoder
 * (s2l_pb_decode_append) and its UTF-8 / JSON string output on arbitrary
 * bytes.
 *
 * Invariants: every decoded span lies inside the input, and a JSON string
 * written from any bytes is valid UTF-8.
 */
#include <stdint.h>
#include <stdlib.h>

#include <event2/buffer.h>

#include "proto.h"
#include "records.h"

static void in_input(const uint8_t *p, size_t len, const uint8_t *data, size_t size)
{
    if (len == 0)
        return;
    if (p == NULL || p < data || len > size || p > data + size - len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct s2l_pb_append a;
    struct evbuffer *out;

    if (s2l_pb_decode_append(data, size, &a) == 0) {
        for (size_t i = 0; i < a.n; i++) {
            const struct s2l_dp_rec *r = &a.records[i];
            in_input(r->body, r->body_len, data, size);
            for (size_t h = 0; h < r->nheaders; h++) {
                in_input(r->headers[h].name, r->headers[h].name_len, data, size);
                in_input(r->headers[h].value, r->headers[h].value_len, data, size);
            }
        }
        if (a.has_fence)
            in_input(a.fence, a.fence_len, data, size);
        s2l_pb_append_free(&a);
    }

    if ((out = evbuffer_new()) == NULL)
        abort();
    if (s2l_json_string(out, data, size) != 0 ||
        !s2l_utf8_valid(evbuffer_pullup(out, -1), evbuffer_get_length(out)))
        abort();
    evbuffer_free(out);
    return 0;
}
