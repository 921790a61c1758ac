/*
 * fuzz_wire.c - S2 wire parsing (s2/wire.h) on arbitrary bytes: JSON with
 * exact u64 values, every item read as a u64, strict base64.
 *
 * Invariants: base64 decode then encode gives back the input, and encode
 * then decode gives back the bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s2/wire.h"

/* Bounded: s2_wire_parse inherits cJSON's nesting limit. */
static void walk(const cJSON *item)
{
    uint64_t v;

    for (; item != NULL; item = item->next) {
        (void)s2_wire_get_u64(item, &v);
        walk(item->child);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *root = NULL;
    uint8_t *bytes = NULL;
    char *text = NULL;
    size_t blen, tlen;

    if (s2_wire_parse((const char *)data, size, &root) == 0)
        walk(root);
    cJSON_Delete(root);

    if (s2_base64_decode((const char *)data, size, &bytes, &blen) == 0) {
        if (s2_base64_encode(bytes, blen, &text, &tlen) != 0 || tlen != size ||
            memcmp(text, data, size) != 0)
            abort();
        free(text);
        free(bytes);
        text = NULL;
        bytes = NULL;
    }

    if (s2_base64_encode(data, size, &text, &tlen) != 0 ||
        s2_base64_decode(text, tlen, &bytes, &blen) != 0 || blen != size ||
        (size > 0 && memcmp(bytes, data, size) != 0))
        abort();
    free(text);
    free(bytes);
    return 0;
}
