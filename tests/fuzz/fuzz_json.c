/*
 * fuzz_json.c - plugin/json.h on arbitrary bytes: validation and
 * compaction, member lookup, member iteration, string escaping.
 *
 * Invariants checked: compaction is idempotent (the compact form of valid
 * JSON is itself valid and compacts to itself), and an escaped string is
 * always valid JSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "json.h"

static void walk_members(const char *text, size_t len)
{
    struct tel_json_iter it;
    const char *key, *val;
    size_t klen, vlen;

    if (tel_json_iter_init(&it, text, len) != 0)
        return;
    while (tel_json_iter_next(&it, &key, &klen, &val, &vlen) == 1) {
        /* Every member value of a valid object is valid JSON. */
        if (tel_json_compact(val, vlen, NULL) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct evbuffer *out = evbuffer_new(), *again = evbuffer_new(), *str = evbuffer_new();
    const char *val;
    size_t vlen;

    if (out == NULL || again == NULL || str == NULL)
        abort();
    if (tel_json_compact(text, size, out) == 0) {
        size_t clen = evbuffer_get_length(out);
        const char *c = (const char *)evbuffer_pullup(out, -1);
        if (tel_json_compact(c, clen, again) != 0 || evbuffer_get_length(again) != clen ||
            memcmp(evbuffer_pullup(again, -1), c, clen) != 0)
            abort();
        if (tel_json_member(text, size, "data", &val, &vlen) == 0 &&
            tel_json_compact(val, vlen, NULL) != 0)
            abort();
        walk_members(text, size);
        walk_members(c, clen);
    }

    /* Any bytes escape to one valid JSON string. */
    if (tel_json_add_string(str, text, size) != 0 ||
        tel_json_compact((const char *)evbuffer_pullup(str, -1), evbuffer_get_length(str), NULL) !=
            0)
        abort();

    evbuffer_free(out);
    evbuffer_free(again);
    evbuffer_free(str);
    return 0;
}
