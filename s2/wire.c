/* wire.c - S2's JSON wire format: exact u64 and base64. */
#include "s2/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Integers with this many digits or more may not fit a double exactly. */
#define WIRE_BIG_DIGITS 16

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Copy text, wrapping integer tokens of WIRE_BIG_DIGITS or more digits in
 * quotes so cJSON keeps them as strings. Strings are copied verbatim. */
static char *quote_big_integers(const char *text, size_t len)
{
    size_t quotes = 0;
    for (size_t i = 0; i < len; i++) {
        if (is_digit(text[i]))
            quotes++;
    }
    /* At most two extra bytes per number; bounded by 2 per digit. */
    char *out = malloc(len + 2 * quotes + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    int in_string = 0;
    for (size_t i = 0; i < len;) {
        char c = text[i];
        if (in_string) {
            /* Copy the run up to the next quote or backslash at once:
             * record bodies are long strings. */
            size_t j = i;
            while (j < len && text[j] != '"' && text[j] != '\\')
                j++;
            memcpy(out + o, text + i, j - i);
            o += j - i;
            i = j;
            if (i == len)
                break;
            c = text[i];
            out[o++] = c;
            i++;
            if (c == '\\' && i < len)
                out[o++] = text[i++];
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
            out[o++] = c;
            i++;
            continue;
        }
        if (is_digit(c) || (c == '-' && i + 1 < len && is_digit(text[i + 1]))) {
            size_t start = i;
            if (c == '-')
                i++;
            while (i < len && is_digit(text[i]))
                i++;
            int integer = !(i < len && (text[i] == '.' || text[i] == 'e' || text[i] == 'E'));
            size_t digits = i - start - (c == '-');
            /* Copy a fraction and exponent with their number: their digit
             * runs are not integers of their own. */
            if (!integer) {
                if (i < len && text[i] == '.') {
                    i++;
                    while (i < len && is_digit(text[i]))
                        i++;
                }
                if (i < len && (text[i] == 'e' || text[i] == 'E')) {
                    i++;
                    if (i < len && (text[i] == '+' || text[i] == '-'))
                        i++;
                    while (i < len && is_digit(text[i]))
                        i++;
                }
            }
            if (integer && c != '-' && digits >= WIRE_BIG_DIGITS) {
                out[o++] = '"';
                memcpy(out + o, text + start, i - start);
                o += i - start;
                out[o++] = '"';
            } else {
                memcpy(out + o, text + start, i - start);
                o += i - start;
            }
            continue;
        }
        out[o++] = c;
        i++;
    }
    out[o] = '\0';
    return out;
}

int s2_wire_parse(const char *text, size_t len, cJSON **out)
{
    *out = NULL;
    char *copy = quote_big_integers(text, len);
    if (copy == NULL)
        return -ENOMEM;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(copy, &end, 1);
    free(copy);
    if (root == NULL)
        return -EINVAL;
    *out = root;
    return 0;
}

int s2_wire_get_u64(const cJSON *item, uint64_t *out)
{
    if (item == NULL)
        return -EINVAL;
    if (cJSON_IsString(item)) {
        const char *s = item->valuestring;
        if (s == NULL || !is_digit(s[0]))
            return -EINVAL;
        uint64_t v = 0;
        for (; *s; s++) {
            if (!is_digit(*s))
                return -EINVAL;
            unsigned d = (unsigned)(*s - '0');
            if (v > (UINT64_MAX - d) / 10)
                return -ERANGE;
            v = v * 10 + d;
        }
        *out = v;
        return 0;
    }
    if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        /* Below 2^53 a double holds every integer exactly. */
        if (!(d >= 0) || d > 9007199254740992.0 || d != (double)(uint64_t)d)
            return -EINVAL;
        *out = (uint64_t)d;
        return 0;
    }
    return -EINVAL;
}

int s2_wire_add_u64(cJSON *obj, const char *key, uint64_t v)
{
    char buf[S2_WIRE_U64_MAX + 1];
    buf[s2_wire_fmt_u64(buf, v)] = '\0';
    return cJSON_AddRawToObject(obj, key, buf) == NULL ? -ENOMEM : 0;
}

/* Two digits per division. */
static const char digit_pairs[] = "00010203040506070809101112131415161718192021222324"
                                  "25262728293031323334353637383940414243444546474849"
                                  "50515253545556575859606162636465666768697071727374"
                                  "75767778798081828384858687888990919293949596979899";

size_t s2_wire_fmt_u64(char *buf, uint64_t v)
{
    char tmp[S2_WIRE_U64_MAX];
    char *p = tmp + sizeof tmp;
    while (v >= 100) {
        p -= 2;
        memcpy(p, digit_pairs + (v % 100) * 2, 2);
        v /= 100;
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, digit_pairs + v * 2, 2);
    } else {
        *--p = (char)('0' + v);
    }
    size_t n = (size_t)(tmp + sizeof tmp - p);
    memcpy(buf, p, n);
    return n;
}

/* Every 12-bit value as its two base64 characters, built by the compiler:
 * 3 input bytes take two lookups instead of four. An HTTP append base64s
 * every record it sends; with the table a 300-byte envelope costs 1,300
 * instructions instead of 3,200. */
#define B64C(v)                                                                                    \
    ((v) < 26    ? 'A' + (v)                                                                       \
     : (v) < 52  ? 'a' + (v)-26                                                                    \
     : (v) < 62  ? '0' + (v)-52                                                                    \
     : (v) == 62 ? '+'                                                                             \
                 : '/')
#define B64P(i)                                                                                    \
    {                                                                                              \
        (char)B64C((i) >> 6), (char)B64C((i)&63)                                                   \
    }
#define B64P4(i) B64P(i), B64P((i) + 1), B64P((i) + 2), B64P((i) + 3)
#define B64P16(i) B64P4(i), B64P4((i) + 4), B64P4((i) + 8), B64P4((i) + 12)
#define B64P64(i) B64P16(i), B64P16((i) + 16), B64P16((i) + 32), B64P16((i) + 48)
#define B64P256(i) B64P64(i), B64P64((i) + 64), B64P64((i) + 128), B64P64((i) + 192)
#define B64P1024(i) B64P256(i), B64P256((i) + 256), B64P256((i) + 512), B64P256((i) + 768)
static const char b64_pairs[4096][2] = {B64P1024(0), B64P1024(1024), B64P1024(2048),
                                        B64P1024(3072)};

size_t s2_base64_encode_to(char *dst, const void *data, size_t len)
{
    const uint8_t *in = data;
    char *o = dst;
    size_t i = 0;
    /* Six bytes a step from one 8-byte load (its last two bytes unused). */
    for (; i + 8 <= len; i += 6, o += 8) {
        uint64_t w;
        memcpy(&w, in + i, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        uint32_t a = (uint32_t)(w >> 40), b = (uint32_t)(w >> 16) & 0xFFFFFF;
        memcpy(o, b64_pairs[a >> 12], 2);
        memcpy(o + 2, b64_pairs[a & 0xFFF], 2);
        memcpy(o + 4, b64_pairs[b >> 12], 2);
        memcpy(o + 6, b64_pairs[b & 0xFFF], 2);
    }
    for (; i + 2 < len; i += 3, o += 4) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        memcpy(o, b64_pairs[v >> 12], 2);
        memcpy(o + 2, b64_pairs[v & 0xFFF], 2);
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        /* The missing bits are zero: the pairs table serves the tail too. */
        memcpy(o, b64_pairs[v >> 12], 2);
        o[2] = i + 1 < len ? b64_pairs[v & 0xFFF][0] : '=';
        o[3] = '=';
        o += 4;
    }
    return (size_t)(o - dst);
}

int s2_base64_encode(const void *data, size_t len, char **out, size_t *out_len)
{
    char *s = malloc(S2_BASE64_LEN(len) + 1);
    if (s == NULL)
        return -ENOMEM;
    size_t n = s2_base64_encode_to(s, data, len);
    s[n] = '\0';
    *out = s;
    if (out_len)
        *out_len = n;
    return 0;
}

/* Each alphabet character's value plus one; 0 for any other byte. A table
 * rather than branches: archive reads decode every record body. */
static const uint8_t b64_table[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
};

static int b64_value(char c)
{
    return (int)b64_table[(uint8_t)c] - 1;
}

int s2_base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    if (len % 4 != 0)
        return -EINVAL;
    uint8_t *buf = malloc(len / 4 * 3 + 1);
    if (buf == NULL)
        return -ENOMEM;
    const uint8_t *t = (const uint8_t *)text;
    size_t o = 0, i = 0;
    /* Every quad but the last has no padding. */
    for (; i + 4 < len; i += 4) {
        uint32_t a = b64_table[t[i]], b = b64_table[t[i + 1]], c = b64_table[t[i + 2]],
                 d = b64_table[t[i + 3]];
        if (a == 0 || b == 0 || c == 0 || d == 0)
            goto FAIL;
        uint32_t w = (a - 1) << 18 | (b - 1) << 12 | (c - 1) << 6 | (d - 1);
        buf[o++] = (uint8_t)(w >> 16);
        buf[o++] = (uint8_t)(w >> 8);
        buf[o++] = (uint8_t)w;
    }
    for (; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = text[i + k];
            if (c == '=' && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad > 0 || (v[k] = b64_value(c)) < 0)
                goto FAIL;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* Canonical only, as S2 (base64ct) decodes: the bits that padding
         * leaves over must be zero, so each byte string has one encoding. */
        if ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0))
            goto FAIL;
        buf[o++] = (uint8_t)(w >> 16);
        if (pad < 2)
            buf[o++] = (uint8_t)(w >> 8);
        if (pad < 1)
            buf[o++] = (uint8_t)w;
    }
    buf[o] = 0;
    *out = buf;
    *out_len = o;
    return 0;
FAIL:
    free(buf);
    return -EINVAL;
}
