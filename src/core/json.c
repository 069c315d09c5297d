/* Request JSON: jansson underneath, numbers kept as the exact text the caller sent. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_private.h"

/*
 * NOTE: jansson stores numbers as int64 or double, which loses digits. Before
 * jansson sees the text, every number token is rewritten into the string
 * "\u0000#<digits>". A caller cannot forge one: a \u0000 escape in the
 * caller's own strings is refused (PostgreSQL text cannot hold NUL anyway).
 * Object keys cannot be numbers: jansson refuses NUL in keys, so `{1:2}`
 * stays invalid.
 */
#define MARK_JSON "\"\\u0000#" /* how a rewritten number starts in the text */
#define MARK_JSON_LEN 8
#define MARK_GROWTH 9  /* bytes a rewritten number gains: marker and closing quote */
#define MARK_VALUE "\0#" /* what the parsed string starts with */
#define MARK_VALUE_LEN 2
#define NONE SIZE_MAX

/* What the rewrite found that jansson will not report. */
struct scan {
    size_t nul_at;   /* offset of the first \u0000 escape, or NONE */
    size_t bad_at;   /* offset of a malformed number's offending byte, or NONE */
    const char *why; /* why that number is malformed */
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Bytes that would glue onto a number token and make it something else. */
static bool continues_number(char c)
{
    return is_digit(c) || c == '.' || c == '+' || c == '-' || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || c == '_';
}

/* Offset just past the string whose body starts at i (len if unterminated). */
static size_t string_end(const char *s, size_t len, size_t i, size_t *nul_at)
{
    while (i < len) {
        char c = s[i];
        if (c == '"')
            return i + 1;
        if (c != '\\') {
            i++;
            continue;
        }
        if (*nul_at == NONE && len - i >= 6 && s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4))
            *nul_at = i;
        i += 2;
    }
    return len;
}

/* Offset of the next number token at or after i outside strings, or len. */
static size_t next_number(const char *s, size_t len, size_t i, size_t *nul_at)
{
    while (i < len) {
        char c = s[i];
        if (c == '"')
            i = string_end(s, len, i + 1, nul_at);
        else if (c == '-' || is_digit(c))
            return i;
        else
            i++;
    }
    return len;
}

static size_t skip_digits(const char *s, size_t len, size_t i)
{
    while (i < len && is_digit(s[i]))
        i++;
    return i;
}

/*
 * End of the number starting at s[i] by RFC 8259:
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, not glued to another token.
 * Returns 0 and fills sc->bad_at/why when it is malformed.
 */
static size_t number_end(const char *s, size_t len, size_t i, struct scan *sc)
{
    const char *why = "a digit must follow '-'";
    if (s[i] == '-')
        i++;
    if (i >= len || !is_digit(s[i]))
        goto bad;
    i = s[i] == '0' ? i + 1 : skip_digits(s, len, i);
    if (i < len && s[i] == '.') {
        why = "a digit must follow the decimal point";
        if (++i >= len || !is_digit(s[i]))
            goto bad;
        i = skip_digits(s, len, i);
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        why = "the exponent needs digits";
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= len || !is_digit(s[i]))
            goto bad;
        i = skip_digits(s, len, i);
    }
    why = i < len && is_digit(s[i]) ? "leading zeros are not allowed"
                                    : "a number must be followed by ',', ']', '}' or white space";
    if (i < len && continues_number(s[i]))
        goto bad;
    return i;
bad:
    sc->bad_at = i;
    sc->why = why;
    return 0;
}

/* Copies in to out with numbers rewritten; returns the new length, or NONE on a bad number. */
static size_t rewrite(const char *in, size_t len, char *out, struct scan *sc)
{
    size_t o = 0, copied = 0, i = 0;
    while ((i = next_number(in, len, i, &sc->nul_at)) < len) {
        size_t end = number_end(in, len, i, sc);
        if (!end)
            return NONE;
        memcpy(out + o, in + copied, i - copied);
        o += i - copied;
        memcpy(out + o, MARK_JSON, MARK_JSON_LEN);
        o += MARK_JSON_LEN;
        memcpy(out + o, in + i, end - i);
        o += end - i;
        out[o++] = '"';
        i = copied = end;
    }
    memcpy(out + o, in + copied, len - copied);
    return o + len - copied;
}

/*
 * The caller's offset for an offset in the rewritten text (jansson's error
 * position). *in_number says it fell inside or right after a rewritten number.
 */
static size_t map_back(const char *in, size_t len, size_t pos, bool *in_number)
{
    size_t growth = 0, i = 0, ignored = NONE;
    struct scan sc = {NONE, NONE, NULL};
    *in_number = false;
    while ((i = next_number(in, len, i, &ignored)) < len) {
        size_t end = number_end(in, len, i, &sc);
        if (!end || pos <= i + growth)
            break;
        if (pos <= end + growth + MARK_GROWTH) {
            size_t into = pos - i - growth;
            *in_number = true;
            into = into > MARK_JSON_LEN ? into - MARK_JSON_LEN : 0;
            return i + (into < end - i ? into : end - i);
        }
        growth += MARK_GROWTH;
        i = end;
    }
    return pos - growth < len ? pos - growth : len;
}

/* 1-based line and the characters (not bytes) before off on its line. */
static void line_column(const char *s, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 0;
    for (size_t i = 0; i < off; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') {
            ++*line;
            *col = 0;
        } else if ((c & 0xC0) != 0x80) {
            ++*col;
        }
    }
}

/*
 * jansson's message with rewritten numbers shown as sent; bytes that are not
 * printable ASCII become '?', so the message is safe to embed anywhere.
 */
static void clean_message(const char *m, char *out, size_t size)
{
    size_t o = 0;
    while (*m && o + 1 < size) {
        if (!strncmp(m, MARK_JSON, MARK_JSON_LEN)) {
            m += MARK_JSON_LEN;
            while (*m && o + 1 < size && *m != '"' && *m != '\'')
                out[o++] = *m++;
            if (*m == '"')
                m++;
            continue;
        }
        unsigned char c = (unsigned char)*m++;
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[o] = '\0';
}

static qg_status nul_error(const char *text, size_t off, qg_error *err)
{
    int line, col;
    line_column(text, off, &line, &col);
    return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                        "a string at line %d, column %d contains \\u0000: NUL characters "
                        "cannot be stored by PostgreSQL; remove them or send the data as "
                        "hex or base64 for a bytea column",
                        line, col + 1);
}

static qg_status jansson_error(const char *text, size_t len, size_t nul_at,
                               const json_error_t *je, qg_error *err)
{
    bool in_number;
    size_t off = map_back(text, len, je->position > 0 ? (size_t)je->position : 0, &in_number);
    int line, col;
    line_column(text, off, &line, &col);
    if (strstr(je->text, "NUL byte in object key")) {
        if (!in_number) /* the key holds the caller's own \u0000 */
            return nul_error(text, nul_at < off ? nul_at : off, err);
        return qg_error_set(err, QG_ERR_INVALID_JSON,
                            "invalid JSON at line %d, column %d: object keys must be strings",
                            line, col);
    }
    char msg[sizeof je->text];
    clean_message(je->text, msg, sizeof msg);
    return qg_error_set(err, QG_ERR_INVALID_JSON, "invalid JSON at line %d, column %d: %s",
                        line, col, msg);
}

json_t *qg_json_parse(const char *text, size_t len, qg_error *err)
{
    if (!text && len) {
        qg_error_set(err, QG_ERR_INVALID_REQUEST, "qg_json_parse: text is NULL");
        return NULL;
    }
    if (!text)
        text = "";
    /* NOTE: worst case is "1,1,1...": one number per two bytes. Pages of a large
     * allocation that are never written cost nothing, so one allocation suffices. */
    size_t room = len / 2 + 1;
    if (room > (SIZE_MAX - len - 1) / MARK_GROWTH) {
        qg_error_set(err, QG_ERR_INVALID_REQUEST, "the JSON text is too large");
        return NULL;
    }
    char *buf = malloc(len + room * MARK_GROWTH + 1);
    if (!buf) {
        qg_error_set(err, QG_ERR_INTERNAL, "out of memory parsing %zu bytes of JSON", len);
        return NULL;
    }
    struct scan sc = {NONE, NONE, NULL};
    size_t n = rewrite(text, len, buf, &sc);
    if (n == NONE) {
        free(buf);
        int line, col;
        line_column(text, sc.bad_at, &line, &col);
        qg_error_set(err, QG_ERR_INVALID_JSON, "invalid JSON at line %d, column %d: invalid number: %s",
                     line, col + 1, sc.why);
        return NULL;
    }
    json_error_t je;
    json_t *v = json_loadb(buf, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    free(buf);
    if (!v) {
        jansson_error(text, len, sc.nul_at, &je, err);
        return NULL;
    }
    if (sc.nul_at != NONE) {
        json_decref(v);
        nul_error(text, sc.nul_at, err);
        return NULL;
    }
    return v;
}

bool qg_json_is_number(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) >= MARK_VALUE_LEN &&
           !memcmp(json_string_value(v), MARK_VALUE, MARK_VALUE_LEN);
}

const char *qg_json_number_text(const json_t *v, size_t *len)
{
    if (!qg_json_is_number(v)) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = json_string_length(v) - MARK_VALUE_LEN;
    return json_string_value(v) + MARK_VALUE_LEN;
}

/* Numbers jansson made itself (values built by code, not by qg_json_parse). */
static void dump_native_number(qg_buf *b, const json_t *v)
{
    if (json_is_integer(v))
        qg_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        qg_buf_printf(b, "%.17g", json_real_value(v));
}

static void dump(qg_buf *b, const json_t *v)
{
    size_t n;
    const char *s = qg_json_number_text(v, &n);
    if (s) {
        qg_buf_append(b, s, n);
    } else if (json_is_string(v)) {
        qg_buf_json_string(b, json_string_value(v), json_string_length(v));
    } else if (json_is_object(v)) {
        const char *key;
        json_t *item;
        bool first = true;
        qg_buf_putc(b, '{');
        json_object_foreach((json_t *)v, key, item) {
            if (!first)
                qg_buf_putc(b, ',');
            first = false;
            qg_buf_json_string(b, key, strlen(key));
            qg_buf_putc(b, ':');
            dump(b, item);
        }
        qg_buf_putc(b, '}');
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        qg_buf_putc(b, '[');
        json_array_foreach((json_t *)v, i, item) {
            if (i)
                qg_buf_putc(b, ',');
            dump(b, item);
        }
        qg_buf_putc(b, ']');
    } else if (json_is_number(v)) {
        dump_native_number(b, v);
    } else {
        qg_buf_puts(b, json_is_true(v) ? "true" : json_is_false(v) ? "false" : "null");
    }
}

char *qg_json_dump(const json_t *v, size_t *len)
{
    if (len)
        *len = 0;
    if (!v)
        return NULL;
    qg_buf b;
    qg_buf_init(&b);
    dump(&b, v);
    return qg_buf_steal(&b, len);
}

/* Appends s as a double-quoted array element ("a\"b\\c"). */
static void pg_quoted(qg_buf *b, const char *s, size_t n)
{
    qg_buf_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '"' && s[i] != '\\')
            continue;
        qg_buf_append(b, s + run, i - run);
        qg_buf_putc(b, '\\');
        run = i;
    }
    qg_buf_append(b, s + run, n - run);
    qg_buf_putc(b, '"');
}

/* Appends arr as an array literal; false when an element is an object. */
static bool pg_array(qg_buf *b, const json_t *arr)
{
    size_t i, n;
    json_t *v;
    qg_buf_putc(b, '{');
    json_array_foreach((json_t *)arr, i, v) {
        const char *s = qg_json_number_text(v, &n);
        if (i)
            qg_buf_putc(b, ',');
        if (s)
            qg_buf_append(b, s, n);
        else if (json_is_string(v))
            pg_quoted(b, json_string_value(v), json_string_length(v));
        else if (json_is_array(v)) {
            if (!pg_array(b, v))
                return false;
        } else if (json_is_number(v))
            dump_native_number(b, v);
        else if (json_is_object(v))
            return false;
        else
            qg_buf_puts(b, json_is_true(v) ? "true" : json_is_false(v) ? "false" : "NULL");
    }
    qg_buf_putc(b, '}');
    return true;
}

bool qgp_json_pg_array(const json_t *arr, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!json_is_array(arr))
        return true;
    qg_buf b;
    qg_buf_init(&b);
    if (!pg_array(&b, arr)) {
        qg_buf_free(&b);
        return true;
    }
    if (b.oom) {
        qg_buf_free(&b);
        return false;
    }
    *out = qg_buf_steal(&b, len);
    return true;
}

/* Adds one params entry by the contract's type rules. */
static qg_status add_value(qg_params *p, const char *name, const json_t *v, qg_error *err)
{
    size_t n;
    const char *num = qg_json_number_text(v, &n);
    if (num)
        return qg_params_add(p, name, QG_PARAM_NUMBER, num, n, err);
    if (json_is_string(v))
        return qg_params_add(p, name, QG_PARAM_TEXT, json_string_value(v),
                             json_string_length(v), err);
    if (json_is_boolean(v))
        return qg_params_add(p, name, QG_PARAM_BOOL, json_is_true(v) ? "true" : "false",
                             json_is_true(v) ? 4 : 5, err);
    if (json_is_null(v))
        return qg_params_add(p, name, QG_PARAM_NULL, NULL, 0, err);

    qg_status st = QG_ERR_INTERNAL;
    char *text = qg_json_dump(v, &n), *pg = NULL;
    size_t pg_len = 0;
    if (!text || (json_is_array(v) && !qgp_json_pg_array(v, &pg, &pg_len)))
        st = qg_error_set(err, QG_ERR_INTERNAL, "out of memory converting parameter %s", name);
    else if (json_is_array(v))
        st = qg_params_add_array(p, name, text, n, pg, pg_len, err);
    else if (json_is_object(v))
        st = qg_params_add(p, name, QG_PARAM_JSON, text, n, err);
    else /* a number jansson made itself: only code, not a caller, builds one */
        st = qg_params_add(p, name, QG_PARAM_NUMBER, text, n, err);
    free(text);
    free(pg);
    return st;
}

qg_status qg_params_from_json(const json_t *obj, qg_params **out, qg_error *err)
{
    if (!out)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "qg_params_from_json: out is NULL");
    *out = NULL;
    if (obj && !json_is_object(obj))
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "\"params\" must be a JSON object mapping names to values");
    qg_params *p = qg_params_new();
    if (!p)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory creating parameters");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) { /* no iterations when obj is NULL */
        qg_status st = add_value(p, key, v, err);
        if (st != QG_OK) {
            qg_params_free(p);
            return st;
        }
    }
    *out = p;
    return QG_OK;
}
