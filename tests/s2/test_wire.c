/* test_wire.c - exact u64 JSON and base64. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "s2/wire.h"

Test(s2_wire, big_integers_exact)
{
    const char *text = "{\"a\":18446744073709551615,\"b\":9007199254740993,\"c\":42,"
                       "\"d\":18446744073709551616,\"e\":\"18446744073709551000\"}";
    cJSON *root = NULL;
    cr_assert_eq(s2_wire_parse(text, strlen(text), &root), 0);
    uint64_t v = 0;
    cr_assert_eq(s2_wire_get_u64(cJSON_GetObjectItem(root, "a"), &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    cr_assert_eq(s2_wire_get_u64(cJSON_GetObjectItem(root, "b"), &v), 0);
    cr_assert_eq(v, 9007199254740993ULL);
    cr_assert_eq(s2_wire_get_u64(cJSON_GetObjectItem(root, "c"), &v), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(s2_wire_get_u64(cJSON_GetObjectItem(root, "d"), &v), -ERANGE);
    cJSON_Delete(root);
}

Test(s2_wire, fractions_and_exponents_stay_numbers)
{
    /* Long digit runs after '.' or in an exponent are not integers. */
    const char *text =
        "{\"f\":0.12345678901234567890,\"g\":1.5e1234567890123456,\"h\":-12345678901234567,"
        "\"i\":[1e5,2E-3,12345678901234567.5]}";
    cJSON *root = NULL;
    cr_assert_eq(s2_wire_parse(text, strlen(text), &root), 0, "valid JSON refused");
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(root, "f")));
    cr_assert_float_eq(cJSON_GetObjectItem(root, "f")->valuedouble, 0.123456789, 1e-9);
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(root, "h")));
    uint64_t v = 0;
    cr_assert_eq(s2_wire_get_u64(cJSON_GetObjectItem(root, "h"), &v), -EINVAL);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "i")), 3);
    cJSON_Delete(root);
}

Test(s2_wire, strings_untouched)
{
    const char *text = "{\"s\":\"12345678901234567890 \\\" 98765432109876543210\"}";
    cJSON *root = NULL;
    cr_assert_eq(s2_wire_parse(text, strlen(text), &root), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(root, "s")->valuestring,
                     "12345678901234567890 \" 98765432109876543210");
    cJSON_Delete(root);
}

Test(s2_wire, add_u64_prints_exact)
{
    cJSON *o = cJSON_CreateObject();
    cr_assert_eq(s2_wire_add_u64(o, "seq_num", 18446744073709551000ULL), 0);
    char *s = cJSON_PrintUnformatted(o);
    cr_assert_str_eq(s, "{\"seq_num\":18446744073709551000}");
    free(s);
    cJSON_Delete(o);
}

Test(s2_wire, base64_roundtrip_and_strict)
{
    for (size_t n = 0; n < 40; n++) {
        uint8_t in[40];
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)(i * 37 + n);
        char *enc = NULL;
        size_t elen = 0;
        cr_assert_eq(s2_base64_encode(in, n, &enc, &elen), 0);
        cr_assert_eq(elen, 4 * ((n + 2) / 3));
        uint8_t *dec = NULL;
        size_t dlen = 0;
        cr_assert_eq(s2_base64_decode(enc, elen, &dec, &dlen), 0);
        cr_assert_eq(dlen, n);
        cr_assert_arr_eq(dec, in, n);
        free(enc);
        free(dec);
    }
    uint8_t *dec = NULL;
    size_t dlen = 0;
    cr_assert_eq(s2_base64_decode("aGVsbG8", 7, &dec, &dlen), -EINVAL);
    cr_assert_eq(s2_base64_decode("aGV sbG8=", 8, &dec, &dlen), -EINVAL);
    cr_assert_eq(s2_base64_decode("a=GV", 4, &dec, &dlen), -EINVAL);
    /* Non-canonical: the bits left over by the padding are not zero. */
    cr_assert_eq(s2_base64_decode("aGVsbG7=", 8, &dec, &dlen), -EINVAL);
    cr_assert_eq(s2_base64_decode("QR==", 4, &dec, &dlen), -EINVAL);
    cr_assert_eq(s2_base64_decode("aGVsbG8=", 8, &dec, &dlen), 0);
    cr_assert_eq(dlen, 5);
    free(dec);
}

/* RFC 4648's test vectors, through both encoders. */
Test(s2_wire, base64_rfc4648_vectors)
{
    static const char *const vec[][2] = {{"", ""},
                                         {"f", "Zg=="},
                                         {"fo", "Zm8="},
                                         {"foo", "Zm9v"},
                                         {"foob", "Zm9vYg=="},
                                         {"fooba", "Zm9vYmE="},
                                         {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        char buf[16];
        size_t n = s2_base64_encode_to(buf, vec[i][0], strlen(vec[i][0]));
        cr_assert_eq(n, strlen(vec[i][1]));
        cr_assert_arr_eq(buf, vec[i][1], n);
        char *enc = NULL;
        cr_assert_eq(s2_base64_encode(vec[i][0], strlen(vec[i][0]), &enc, &n), 0);
        cr_assert_str_eq(enc, vec[i][1]);
        free(enc);
    }
}

/* Base64 the slow way, six bits at a time: the oracle for the table. */
static size_t b64_bitwise(char *dst, const uint8_t *in, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, bits = 8 * len;
    for (size_t b = 0; b < bits; b += 6) {
        unsigned v = 0;
        for (size_t k = b; k < b + 6; k++) {
            unsigned bit = k < bits ? (in[k / 8] >> (7 - k % 8)) & 1 : 0;
            v = v << 1 | bit;
        }
        dst[o++] = abc[v];
    }
    while (o % 4 != 0)
        dst[o++] = '=';
    return o;
}

/* Every byte value in each of the three positions of a group, over lengths
 * that end on each padding case; nothing written past the encoding. */
Test(s2_wire, base64_matches_bitwise_oracle)
{
    uint8_t in[300];
    char got[S2_BASE64_LEN(sizeof in) + 8], want[S2_BASE64_LEN(sizeof in)];
    for (unsigned seed = 0; seed < 256; seed++) {
        for (size_t i = 0; i < sizeof in; i++)
            in[i] = (uint8_t)(seed + i * 7 + (i % 3) * 85);
        for (size_t len = 0; len <= sizeof in; len += (len < 20 ? 1 : 37)) {
            memset(got, '#', sizeof got);
            size_t n = s2_base64_encode_to(got, in, len);
            size_t m = b64_bitwise(want, in, len);
            cr_assert_eq(n, m, "seed %u len %zu", seed, len);
            cr_assert_eq(n, S2_BASE64_LEN(len));
            cr_assert_arr_eq(got, want, n, "seed %u len %zu", seed, len);
            cr_assert_eq(got[n], '#', "seed %u len %zu: wrote past the end", seed, len);
        }
    }
}

/* Decimal u64 agrees with printf at every digit-count boundary. */
Test(wire, fmt_u64_as_printf)
{
    char got[S2_WIRE_U64_MAX], want[32];
    uint64_t p10 = 1;
    for (int d = 0; d < 20; d++) {
        const uint64_t vs[] = {p10 - 1, p10, p10 + 1, p10 * 3 + 7};
        for (size_t i = 0; i < 4; i++) {
            size_t n = s2_wire_fmt_u64(got, vs[i]);
            snprintf(want, sizeof want, "%" PRIu64, vs[i]);
            cr_assert(n == strlen(want) && memcmp(got, want, n) == 0, "%s vs %.*s", want, (int)n,
                      got);
        }
        if (d < 19)
            p10 *= 10;
    }
    size_t n = s2_wire_fmt_u64(got, UINT64_MAX);
    cr_assert(n == 20 && memcmp(got, "18446744073709551615", 20) == 0);
}
