/*
 * fuzz_params.c - the query parameters of GET /telemetry/events
 * (plugin/params.h) on arbitrary query strings and values.
 *
 * Invariants: a parse either succeeds with a limit in 1..1000 or fails with
 * a message; the value parsers never crash on any text.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A fixed clock keeps runs reproducible (2024-01-01T00:00:00Z). */
    const uint64_t now_ms = 1704067200000ull;
    struct tel_read_params p;
    char err[256] = "";
    char *text = malloc(size + 1);
    uint64_t v;
    uint32_t lim;
    int rc;

    if (text == NULL)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';

    rc = tel_params_parse(text, now_ms, &p, err, sizeof err);
    if (rc == 0 && (p.limit < TEL_PARAMS_LIMIT_MIN || p.limit > TEL_PARAMS_LIMIT_MAX))
        abort();
    if (rc != 0 && (rc != -EINVAL || err[0] == '\0'))
        abort();

    /* The value parsers on the raw text. */
    (void)tel_params_u64(text, &v);
    if (tel_params_limit(text, &lim) == 0 &&
        (lim < TEL_PARAMS_LIMIT_MIN || lim > TEL_PARAMS_LIMIT_MAX))
        abort();
    (void)tel_params_time(text, now_ms, &v, err, sizeof err);
    (void)tel_params_rfc3339(text, &v);
    (void)tel_params_category_bit(text, size);

    free(text);
    return 0;
}
