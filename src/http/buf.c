/* Growable byte buffer and JSON string escaping for the HTTP layer's bodies. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

void qgh_buf_init(qgh_buf *b)
{
    memset(b, 0, sizeof *b);
}

void qgh_buf_free(qgh_buf *b)
{
    free(b->data);
    qgh_buf_init(b);
}

bool qgh_buf_reserve(qgh_buf *b, size_t extra)
{
    if (b->oom)
        return false;
    if (extra >= SIZE_MAX - b->len - 1) {
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
    b->data[b->len] = '\0';
    return true;
}

void qgh_buf_append(qgh_buf *b, const char *s, size_t n)
{
    if (!qgh_buf_reserve(b, n))
        return;
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void qgh_buf_puts(qgh_buf *b, const char *s)
{
    qgh_buf_append(b, s, strlen(s));
}

void qgh_buf_printf(qgh_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        qgh_buf_append(b, small, (size_t)n);
        return;
    }
    if (!qgh_buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void qgh_buf_json_string(qgh_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    qgh_buf_append(b, "\"", 1);
    size_t run = 0; /* start of the pending stretch that needs no escaping */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        qgh_buf_append(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': qgh_buf_append(b, "\\\"", 2); break;
        case '\\': qgh_buf_append(b, "\\\\", 2); break;
        case '\n': qgh_buf_append(b, "\\n", 2); break;
        case '\r': qgh_buf_append(b, "\\r", 2); break;
        case '\t': qgh_buf_append(b, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            qgh_buf_append(b, u, 6);
        }
        }
    }
    qgh_buf_append(b, s + run, n - run);
    qgh_buf_append(b, "\"", 1);
}

char *qgh_buf_steal(qgh_buf *b, size_t *len)
{
    if (!b->data && !b->oom)
        qgh_buf_reserve(b, 0);
    char *d = b->oom ? NULL : b->data;
    if (len)
        *len = d ? b->len : 0;
    if (!d)
        free(b->data);
    qgh_buf_init(b);
    return d;
}
