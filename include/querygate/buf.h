/* A growable byte buffer with JSON string escaping, shared by the core and its callers. */
#ifndef QUERYGATE_BUF_H
#define QUERYGATE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include "querygate/error.h"

/*
 * A value type (like jansson's json_error_t): callers own the struct, the
 * buffer owns data. It remembers an allocation failure (oom) instead of
 * reporting each append; check oom once at the end.
 */
typedef struct qg_buf {
    char *data; /* NUL-terminated while !oom; NULL before the first append */
    size_t len;
    size_t cap;
    bool oom;
} qg_buf;

void qg_buf_init(qg_buf *b);
/* Frees data; b is left empty and reusable. */
void qg_buf_free(qg_buf *b);
/* len = 0 and oom cleared; keeps the memory. */
void qg_buf_reset(qg_buf *b);
bool qg_buf_reserve(qg_buf *b, size_t extra);
void qg_buf_append(qg_buf *b, const char *s, size_t n);
void qg_buf_puts(qg_buf *b, const char *s);
void qg_buf_putc(qg_buf *b, char c);
void qg_buf_printf(qg_buf *b, const char *fmt, ...) QG_PRINTF(2, 3);
/* Appends s (n bytes) as a JSON string, quotes included: valid UTF-8 passes through, each
   byte of an invalid sequence becomes U+FFFD, so the output is always valid UTF-8 JSON. */
void qg_buf_json_string(qg_buf *b, const char *s, size_t n);
/* The length (1 to 4) of the valid UTF-8 character (RFC 3629) that starts s, n bytes
   available; 0 when s starts none. */
size_t qg_utf8_char_len(const char *s, size_t n);
/* Hands data to the caller (malloc'd, caller frees; NULL after oom); b is left empty. */
char *qg_buf_steal(qg_buf *b, size_t *len);

#endif
