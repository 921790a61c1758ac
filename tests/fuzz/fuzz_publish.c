/*
 * fuzz_publish.c - the POST /telemetry/events body parser
 * (tel_publish_parse) on arbitrary bytes.
 *
 * Invariants: the result is 0 or an HTTP status with a message, and the
 * request is always safe to clear.
 */
#include <stdint.h>
#include <stdlib.h>

#include "publish.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tel_publish_req req;
    char err[256] = "";
    int rc = tel_publish_parse((const char *)data, size, &req, err, sizeof err);

    if (rc != 0 && rc != 400 && rc != 500)
        abort();
    if (rc != 0 && err[0] == '\0')
        abort();
    tel_publish_req_clear(&req);
    return 0;
}
