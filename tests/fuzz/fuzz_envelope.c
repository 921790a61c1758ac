/*
 * fuzz_envelope.c - the archive-read page check on arbitrary record
 * bodies: tel_read_envelope_check, and tel_scan_feed over the input split
 * into records at newlines.
 *
 * Invariants: a page never holds more than its limit, and what it keeps
 * are exactly the records that pass the check.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "read.h"
#include "s2/client.h"

/* Records per fuzz input, enough to cross a small limit. */
#define FUZZ_MAX_RECORDS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct s2_record recs[FUZZ_MAX_RECORDS];
    struct tel_scan scan;
    size_t n = 0, valid = 0, start = 0;
    uint64_t seq;
    uint32_t bit;

    (void)tel_read_envelope_check(data, size, &seq, &bit);

    /* Each line is one record body (line copies are exact-size for ASan). */
    memset(recs, 0, sizeof recs);
    for (size_t i = 0; i <= size && n < FUZZ_MAX_RECORDS; i++) {
        if (i < size && data[i] != '\n')
            continue;
        uint8_t *body = malloc(i - start + 1);
        if (body == NULL)
            abort();
        memcpy(body, data + start, i - start);
        recs[n].seq_num = n;
        recs[n].timestamp = n;
        recs[n].body = body;
        recs[n].body_len = i - start;
        if (tel_read_envelope_check(body, i - start, &seq, &bit) == 0)
            valid++;
        n++;
        start = i + 1;
    }

    memset(&scan, 0, sizeof scan);
    scan.limit = 1000;
    scan.max_bytes = 1u << 20;
    if ((scan.out = evbuffer_new()) == NULL)
        abort();
    if (tel_scan_feed(&scan, recs, n, n, 0) != 0)
        abort();
    if (scan.kept != valid || scan.invalid != n - valid)
        abort();
    evbuffer_free(scan.out);

    /* A small limit: the page stops early and says where. */
    memset(&scan, 0, sizeof scan);
    scan.limit = 2;
    scan.max_bytes = 1u << 20;
    if ((scan.out = evbuffer_new()) == NULL)
        abort();
    if (tel_scan_feed(&scan, recs, n, n, 0) != 0 || scan.kept > 2 || scan.next > n)
        abort();
    evbuffer_free(scan.out);

    for (size_t i = 0; i < n; i++)
        free((void *)recs[i].body);
    return 0;
}
