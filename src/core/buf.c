/* Growable byte buffer and JSON string escaping, shared by every JSON writer. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_private.h"

void qg_buf_init(qg_buf *b)
{
    memset(b, 0, sizeof *b);
}

void qg_buf_free(qg_buf *b)
{
    free(b->data);
    qg_buf_init(b);
}

void qg_buf_reset(qg_buf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->data)
        b->data[0] = '\0';
}

bool qg_buf_reserve(qg_buf *b, size_t extra)
{
    if (b->oom)
        return false;
    if (extra > SIZE_MAX - b->len - 1) { /* len + extra + 1 would wrap */
        b->oom = true;
        return false;
    }
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void qg_buf_append(qg_buf *b, const char *s, size_t n)
{
    if (!qg_buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void qg_buf_puts(qg_buf *b, const char *s)
{
    qg_buf_append(b, s, strlen(s));
}

void qg_buf_putc(qg_buf *b, char c)
{
    if (!qg_buf_reserve(b, 1))
        return;
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void qg_buf_printf(qg_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !qg_buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *qgp_json_escape_byte(char *o, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    if (c >= 0x20 && c != '"' && c != '\\') {
        *o++ = (char)c;
        return o;
    }
    *o++ = '\\';
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    default:
        memcpy(o, "u00", 3);
        o[3] = hex[c >> 4];
        o[4] = hex[c & 15];
        o += 5;
    }
    return o;
}

size_t qg_utf8_char_len(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (!n)
        return 0;
    if (u[0] < 0x80)
        return 1;
    /* RFC 3629: no overlong forms, no surrogates (ED A0..BF), nothing past U+10FFFF:
       the lead byte fixes the length and the range of the second byte. */
    size_t len = 4;
    unsigned char lo = 0x80, hi = 0xbf;
    if (u[0] >= 0xc2 && u[0] <= 0xdf) {
        len = 2;
    } else if (u[0] >= 0xe0 && u[0] <= 0xef) {
        len = 3;
        lo = u[0] == 0xe0 ? 0xa0 : 0x80;
        hi = u[0] == 0xed ? 0x9f : 0xbf;
    } else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
        lo = u[0] == 0xf0 ? 0x90 : 0x80;
        hi = u[0] == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || u[1] < lo || u[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (u[i] < 0x80 || u[i] > 0xbf)
            return 0;
    return len;
}

char *qgp_json_escape_char(char *o, const char *s, size_t n, size_t *i)
{
    unsigned char c = (unsigned char)s[*i];
    if (c < 0x80) {
        (*i)++;
        return qgp_json_escape_byte(o, c);
    }
    size_t len = qg_utf8_char_len(s + *i, n - *i);
    if (!len) {
        (*i)++;
        memcpy(o, "\xef\xbf\xbd", 3); /* U+FFFD REPLACEMENT CHARACTER */
        return o + 3;
    }
    memcpy(o, s + *i, len);
    *i += len;
    return o + len;
}

void qg_buf_json_string(qg_buf *b, const char *s, size_t n)
{
    /* NOTE: worst case 6 bytes per input byte; reserving it once keeps the loop branch-light. */
    if (n > (SIZE_MAX - 2) / 6 || !qg_buf_reserve(b, n * 6 + 2))
        return;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n;)
        o = qgp_json_escape_char(o, s, n, &i);
    *o++ = '"';
    *o = '\0';
    b->len = (size_t)(o - b->data);
}

char *qg_buf_steal(qg_buf *b, size_t *len)
{
    char *d = b->oom ? NULL : b->data;
    if (len)
        *len = d ? b->len : 0;
    if (!d)
        free(b->data);
    qg_buf_init(b);
    return d;
}
