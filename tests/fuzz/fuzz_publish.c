/*
 * fuzz_publish.c - the POST /telemetry/events body parser
 * (tel_publish_parse) on arbitrary bytes.
 *
 * Invariants: the result is 0 or an HTTP status with a message, and the
 * request is always safe to clear; a body tel_json_compact refuses is
 * called not valid JSON (the one-pass parse checks as it goes), and one it
 * accepts is not, unless it holds a \u escape (cJSON, which decodes the
 * bodies with escapes in the strings read, refuses lone surrogates).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
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
    int called_invalid = rc == 400 && strcmp(err, "invalid JSON body: not valid JSON") == 0;
    int invalid = size > 0 && tel_json_compact((const char *)data, size, NULL) != 0;
    if (invalid && !called_invalid)
        abort();
    if (!invalid && called_invalid && memmem(data, size, "\\u", 2) == NULL)
        abort();
    tel_publish_req_clear(&req);
    return 0;
}
