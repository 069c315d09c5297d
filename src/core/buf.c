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

void qg_buf_json_string(qg_buf *b, const char *s, size_t n)
{
    /* NOTE: worst case 6 bytes per input byte; reserving it once keeps the loop branch-light. */
    if (n > (SIZE_MAX - 2) / 6 || !qg_buf_reserve(b, n * 6 + 2))
        return;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++)
        o = qgp_json_escape_byte(o, (unsigned char)s[i]);
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
