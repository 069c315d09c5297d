/* libFuzzer target: any array text (and json text) must become valid JSON. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "core_private.h"

/* The first input byte picks the type (and numbers_as_strings); the rest is the value text. */
static const Oid types[] = {
    1007, /* int4[] */
    1009, /* text[] */
    3807, /* jsonb[] */
    1231, /* numeric[] */
    1000, /* bool[] */
    1020, /* box[] (';' delimiter) */
    1022, /* float8[] */
    3802, /* jsonb itself */
};

/* Strict UTF-8 (no overlongs, surrogates or > U+10FFFF), as jansson demands. */
static int utf8_valid(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || c == 0xC0 || c == 0xC1 || c > 0xF4 || i + len > n)
            return 0;
        uint32_t cp = len == 1 ? c : c & (0x7F >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))
            || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* NOTE: the server sends UTF-8 text only (client_encoding UTF8); other bytes are out of scope. */
    if (size < 1 || !utf8_valid(data + 1, size - 1))
        return 0;
    struct qgp_json_opts opt = {.numbers_as_strings = (data[0] & 0x80) != 0};
    Oid type = types[(data[0] & 0x7F) % (sizeof types / sizeof types[0])];
    qg_buf b;
    qg_buf_init(&b);
    qgp_json_value(&b, type, (const char *)data + 1, size - 1, &opt);
    if (b.oom)
        abort();
    json_error_t e;
    json_t *j = json_loadb(b.data, b.len,
                           JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &e);
    /* jansson refuses numbers beyond a double's range that RFC 8259 allows: not ours to fix. */
    if (!j && json_error_code(&e) != json_error_numeric_overflow)
        abort();
    json_decref(j);
    qg_buf_free(&b);
    return 0;
}
