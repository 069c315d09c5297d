/* PostgreSQL values (text format) as the contract's JSON: numbers, bools, json, arrays, times, strings. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core_private.h"

/* Built-in OIDs treated specially (pg_type.dat; fixed by initdb, never renumbered). */
enum {
    OID_BOOL = 16,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_OID = 26,
    OID_JSON = 114,
    OID_BOX = 603,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_TIMETZ = 1266,
    OID_NUMERIC = 1700,
    OID_JSONB = 3802,
};

/* How a value's text becomes JSON. */
enum kind {
    K_STRING, /* anything else: the text as a JSON string */
    K_NUMBER, /* int2, int4, oid, float4, float8: the digits as they are */
    K_BIGNUM, /* int8, numeric: the digits, or a string with numbers_as_strings */
    K_BOOL,   /* "t"/"f" */
    K_JSON,   /* json, jsonb: embedded */
    K_TIME,   /* timestamp, timestamptz, timetz: RFC 3339 where it has a form */
    K_ARRAY,  /* a built-in array type: parsed into a JSON array */
};

#define MAX_DIMS 6          /* PostgreSQL's MAXDIM: deeper array text is not server output */
#define JSON_MAX_DEPTH 1024 /* deeper json is emitted as a string (see is_json_text) */

static enum kind kind_of(Oid type)
{
    switch (type) {
    case OID_INT2: case OID_INT4: case OID_OID: case OID_FLOAT4: case OID_FLOAT8:
        return K_NUMBER;
    case OID_INT8: case OID_NUMERIC:
        return K_BIGNUM;
    case OID_BOOL:
        return K_BOOL;
    case OID_JSON: case OID_JSONB:
        return K_JSON;
    case OID_TIMESTAMP: case OID_TIMESTAMPTZ: case OID_TIMETZ:
        return K_TIME;
    default:
        return qgp_array_elem(type) ? K_ARRAY : K_STRING;
    }
}

/* ---- strings ------------------------------------------------------------ */

/*
 * Appends s as a JSON string. With pg_escapes, a backslash makes the next byte
 * literal, as in a quoted array element ("x\"y" is x"y).
 */
static void put_string(qg_buf *out, const char *s, size_t n, bool pg_escapes)
{
    if (!pg_escapes) {
        qg_buf_json_string(out, s, n);
        return;
    }
    if (n > (SIZE_MAX - 2) / 6 || !qg_buf_reserve(out, n * 6 + 2))
        return;
    char *o = out->data + out->len;
    *o++ = '"';
    for (size_t i = 0; i < n;) {
        if (s[i] == '\\' && i + 1 < n)
            i++;
        o = qgp_json_escape_char(o, s, n, &i);
    }
    *o++ = '"';
    *o = '\0';
    out->len = (size_t)(o - out->data);
}

/* ---- numbers and bools -------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static size_t skip_digits(const char *s, size_t n, size_t i)
{
    while (i < n && is_digit(s[i]))
        i++;
    return i;
}

/* RFC 8259 number syntax; PostgreSQL's "NaN", "Infinity", "1e+30" are checked, not assumed. */
static bool is_json_number(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n || !is_digit(s[i]))
        return false;
    i = s[i] == '0' ? i + 1 : skip_digits(s, n, i);
    if (i < n && s[i] == '.') {
        if (++i >= n || !is_digit(s[i]))
            return false;
        i = skip_digits(s, n, i);
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        if (++i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !is_digit(s[i]))
            return false;
        i = skip_digits(s, n, i);
    }
    return i == n;
}

/* The digits as sent, never through a double; anything else (NaN, Infinity) a string. */
static void put_number(qg_buf *out, const char *s, size_t n, bool as_string)
{
    if (!as_string && is_json_number(s, n))
        qg_buf_append(out, s, n);
    else
        qg_buf_json_string(out, s, n);
}

static void put_bool(qg_buf *out, const char *s, size_t n)
{
    if (n == 1 && s[0] == 't')
        qg_buf_append(out, "true", 4);
    else if (n == 1 && s[0] == 'f')
        qg_buf_append(out, "false", 5);
    else
        qg_buf_json_string(out, s, n);
}

/* ---- times -------------------------------------------------------------- */

/* NOTE: DateStyle ISO writes a space and "+00"; strict parsers want "T" and "Z". */
static void put_time(qg_buf *out, Oid type, const char *s, size_t n)
{
    char t[64];
    size_t m = qgp_time_rfc3339(type, s, n, t, sizeof t);
    if (m)
        qg_buf_json_string(out, t, m);
    else
        qg_buf_json_string(out, s, n);
}

/* ---- json syntax check -------------------------------------------------- */

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static long hex4(const char *s, size_t n, size_t i)
{
    long v = 0;
    if (n < 4 || i > n - 4)
        return -1;
    for (size_t k = i; k < i + 4; k++) {
        char c = s[k];
        int d = is_digit(c) ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A \u escape at s[*i] (after the backslash); surrogates must pair, as strict parsers demand. */
static bool scan_unicode_escape(const char *s, size_t n, size_t *i)
{
    long u = hex4(s, n, *i + 1);
    *i += 5;
    if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF))
        return false;
    if (u < 0xD800 || u > 0xDBFF)
        return true;
    if (*i + 1 >= n || s[*i] != '\\' || s[*i + 1] != 'u')
        return false;
    long lo = hex4(s, n, *i + 2);
    *i += 6;
    return lo >= 0xDC00 && lo <= 0xDFFF;
}

/* A JSON string opening at s[*i]; *i ends past the closing quote. */
static bool scan_json_string(const char *s, size_t n, size_t *i)
{
    size_t p = *i + 1;
    while (p < n) {
        unsigned char c = (unsigned char)s[p];
        if (c == '"') {
            *i = p + 1;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c != '\\') {
            p++;
            continue;
        }
        if (++p >= n)
            return false;
        c = (unsigned char)s[p];
        if (c == 'u') {
            if (!scan_unicode_escape(s, n, &p))
                return false;
        } else if (c && strchr("\"\\/bfnrt", c)) {
            p++;
        } else {
            return false;
        }
    }
    return false;
}

/* A string, number or literal at s[*i]; *i ends past it. */
static bool scan_json_scalar(const char *s, size_t n, size_t *i)
{
    size_t p = *i;
    if (s[p] == '"')
        return scan_json_string(s, n, i);
    if (s[p] == '-' || is_digit(s[p])) {
        while (p < n && (is_digit(s[p]) || s[p] == '+' || s[p] == '-' || s[p] == '.'
                         || s[p] == 'e' || s[p] == 'E'))
            p++;
        if (!is_json_number(s + *i, p - *i))
            return false;
        *i = p;
        return true;
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t k = 0; k < 3; k++) {
        size_t len = strlen(lits[k]);
        if (n - p >= len && memcmp(s + p, lits[k], len) == 0) {
            *i = p + len;
            return true;
        }
    }
    return false;
}

/*
 * True if s is one JSON text. NOTE: json/jsonb output is already valid, but an
 * element of a malformed array text is not; checking costs one pass and makes
 * "the output is always valid JSON" hold. Nesting past JSON_MAX_DEPTH counts as
 * invalid (the value is then a string), since common parsers refuse it anyway.
 */
static bool is_json_text(const char *s, size_t n)
{
    unsigned char is_obj[JSON_MAX_DEPTH / 8] = {0}; /* bit per open level */
    enum { VALUE, VALUE_OR_CLOSE, KEY, KEY_OR_CLOSE, AFTER } st = VALUE;
    size_t depth = 0, i = 0;
    for (;;) {
        while (i < n && is_json_space(s[i]))
            i++;
        if (i >= n)
            return st == AFTER && depth == 0;
        char c = s[i];
        bool obj = depth && (is_obj[(depth - 1) / 8] >> ((depth - 1) % 8) & 1);
        if (st == AFTER) {
            if (depth == 0 || (c != ',' && c != (obj ? '}' : ']')))
                return false;
            st = c == ',' ? (obj ? KEY : VALUE) : AFTER;
            depth -= (c != ',');
            i++;
        } else if ((st == KEY_OR_CLOSE && c == '}') || (st == VALUE_OR_CLOSE && c == ']')) {
            depth--;
            i++;
            st = AFTER;
        } else if (st == KEY || st == KEY_OR_CLOSE) {
            if (c != '"' || !scan_json_string(s, n, &i))
                return false;
            while (i < n && is_json_space(s[i]))
                i++;
            if (i >= n || s[i++] != ':')
                return false;
            st = VALUE;
        } else if (c == '{' || c == '[') {
            if (depth == JSON_MAX_DEPTH)
                return false;
            if (c == '{')
                is_obj[depth / 8] |= (unsigned char)(1u << (depth % 8));
            else
                is_obj[depth / 8] &= (unsigned char)~(1u << (depth % 8));
            depth++;
            i++;
            st = c == '{' ? KEY_OR_CLOSE : VALUE_OR_CLOSE;
        } else {
            if (!scan_json_scalar(s, n, &i))
                return false;
            st = AFTER;
        }
    }
}

/* Embeds JSON text (array elements first lose their backslash escapes); not JSON: a string. */
static void put_json(qg_buf *out, const char *s, size_t n, bool pg_escapes)
{
    if (!pg_escapes) {
        if (is_json_text(s, n))
            qg_buf_append(out, s, n);
        else
            qg_buf_json_string(out, s, n);
        return;
    }
    size_t start = out->len;
    if (!qg_buf_reserve(out, n))
        return;
    char *o = out->data + start;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n)
            i++;
        *o++ = s[i];
    }
    size_t m = (size_t)(o - (out->data + start));
    if (is_json_text(out->data + start, m)) {
        out->len = start + m;
        out->data[out->len] = '\0';
    } else {
        put_string(out, s, n, true);
    }
}

/* ---- arrays ------------------------------------------------------------- */

/* One element of an array text: its bytes without the quotes. */
struct elem {
    const char *s;
    size_t n;
    bool quoted;  /* was in double quotes */
    bool escaped; /* holds backslash escapes */
};

/* array_in's whitespace. */
static bool is_array_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool skip_int(const char *s, size_t n, size_t *i)
{
    if (*i < n && (s[*i] == '-' || s[*i] == '+'))
        (*i)++;
    size_t end = skip_digits(s, n, *i);
    bool any = end > *i;
    *i = end;
    return any;
}

/* Skips a "[lb:ub]...=" prefix (written when a lower bound is not 1). Returns n if malformed. */
static size_t skip_dims(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && is_array_space(s[i]))
        i++;
    if (i >= n || s[i] != '[')
        return i;
    while (i < n && s[i] == '[') {
        i++;
        if (!skip_int(s, n, &i) || i >= n || s[i++] != ':')
            return n;
        if (!skip_int(s, n, &i) || i >= n || s[i++] != ']')
            return n;
    }
    while (i < n && is_array_space(s[i]))
        i++;
    return i < n && s[i] == '=' ? i + 1 : n;
}

/* Reads the element at s[*i]; on success *i is at the delimiter or '}' that ends it. */
static bool read_element(const char *s, size_t n, size_t *i, char delim, struct elem *e)
{
    size_t p = *i;
    bool esc = false;
    if (s[p] == '"') {
        size_t a = ++p;
        for (; p < n && s[p] != '"'; p++) {
            if (s[p] == '\\') {
                esc = true;
                p++; /* the escaped byte; running off the end is caught below */
            }
        }
        if (p >= n)
            return false;
        *e = (struct elem){s + a, p - a, true, esc};
        for (p++; p < n && is_array_space(s[p]); p++)
            ;
    } else {
        size_t a = p, keep = p; /* keep: past the last byte that is not trailing space */
        for (; p < n && s[p] != delim && s[p] != '}'; p++) {
            if (s[p] == '{' || s[p] == '"')
                return false;
            bool literal = s[p] == '\\';
            if (literal && ++p >= n)
                return false;
            esc |= literal;
            if (literal || !is_array_space(s[p]))
                keep = p + 1;
        }
        if (keep == a)
            return false;
        *e = (struct elem){s + a, keep - a, false, esc};
    }
    *i = p;
    return p < n && (s[p] == delim || s[p] == '}');
}

static void put_element(qg_buf *out, enum kind k, Oid type, const struct elem *e,
                        const struct qgp_json_opts *opt)
{
    bool plain = !e->quoted && !e->escaped;
    if (plain && e->n == 4 && strncasecmp(e->s, "NULL", 4) == 0) {
        qg_buf_append(out, "null", 4);
        return;
    }
    if (k == K_JSON) {
        put_json(out, e->s, e->n, e->escaped);
    } else if (plain && (k == K_NUMBER || k == K_BIGNUM)) {
        put_number(out, e->s, e->n, k == K_BIGNUM && opt && opt->numbers_as_strings);
    } else if (plain && k == K_BOOL) {
        put_bool(out, e->s, e->n);
    } else if (!e->escaped && k == K_TIME) {
        put_time(out, type, e->s, e->n);
    } else {
        put_string(out, e->s, e->n, e->escaped);
    }
}

/* What the items of an open array level are: array_in refuses {1,{2}}. */
enum { ITEMS_NONE, ITEMS_ARRAYS, ITEMS_SCALARS };

/* Opens a '{' below depth; more than MAX_DIMS levels are malformed. */
static bool open_level(unsigned char *items, int *depth)
{
    if (*depth == MAX_DIMS || (*depth > 0 && items[*depth] == ITEMS_SCALARS))
        return false;
    if (*depth > 0)
        items[*depth] = ITEMS_ARRAYS;
    items[++*depth] = ITEMS_NONE;
    return true;
}

/*
 * Writes array_out's text as a JSON array; false if it is malformed (out then
 * holds a partial result for the caller to cut). Sub-array lengths are not
 * compared: a ragged text still gives valid JSON.
 */
static bool put_array_text(qg_buf *out, enum kind k, Oid elem, char delim, const char *s,
                           size_t n, const struct qgp_json_opts *opt)
{
    enum { FIRST, NEXT, AFTER } st = NEXT; /* after '{', after a delimiter, after an item */
    unsigned char items[MAX_DIMS + 1] = {0};
    int depth = 0;
    size_t i = skip_dims(s, n);
    while (i < n) {
        char c = s[i];
        struct elem e;
        if (is_array_space(c)) {
            i++;
        } else if (st == AFTER) {
            if (depth == 0 || (c != delim && c != '}'))
                return false;
            qg_buf_putc(out, c == delim ? ',' : ']');
            depth -= (c == '}');
            st = c == delim ? NEXT : AFTER;
            i++;
        } else if (c == '}' && st == FIRST) {
            qg_buf_putc(out, ']');
            depth--;
            st = AFTER;
            i++;
        } else if (c == '{') {
            if (!open_level(items, &depth))
                return false;
            qg_buf_putc(out, '[');
            st = FIRST;
            i++;
        } else {
            if (depth == 0 || items[depth] == ITEMS_ARRAYS)
                return false;
            items[depth] = ITEMS_SCALARS;
            if (!read_element(s, n, &i, delim, &e))
                return false;
            put_element(out, k, elem, &e, opt);
            st = AFTER;
        }
    }
    return depth == 0 && st == AFTER;
}

static void put_array(qg_buf *out, Oid type, const char *s, size_t n,
                      const struct qgp_json_opts *opt)
{
    Oid elem = qgp_array_elem(type);
    enum kind k = kind_of(elem);
    size_t start = out->len;
    /* NOTE: box is the only built-in type whose array delimiter is not ','. */
    if (put_array_text(out, k == K_ARRAY ? K_STRING : k, elem, elem == OID_BOX ? ';' : ',', s, n,
                       opt)
        || out->oom)
        return;
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    qg_buf_json_string(out, s, n);
}

/* ---- values, rows, columns ---------------------------------------------- */

void qgp_json_value(qg_buf *out, Oid type, const char *val, size_t len,
                    const struct qgp_json_opts *opt)
{
    if (!out)
        return;
    if (!val) {
        qg_buf_append(out, "null", 4);
        return;
    }
    switch (kind_of(type)) {
    case K_NUMBER: put_number(out, val, len, false); break;
    case K_BIGNUM: put_number(out, val, len, opt && opt->numbers_as_strings); break;
    case K_BOOL: put_bool(out, val, len); break;
    case K_JSON: put_json(out, val, len, false); break;
    case K_TIME: put_time(out, type, val, len); break;
    case K_ARRAY: put_array(out, type, val, len, opt); break;
    case K_STRING: qg_buf_json_string(out, val, len); break;
    }
}

/* NOTE: text-format results only (the core never asks for binary). */
void qgp_json_row(qg_buf *out, const PGresult *res, int row, char *const *keys,
                  const struct qgp_json_opts *opt)
{
    if (!out)
        return;
    int n = res && keys ? PQnfields(res) : 0;
    qg_buf_putc(out, '{');
    for (int c = 0; c < n; c++) {
        if (c)
            qg_buf_putc(out, ',');
        qg_buf_puts(out, keys[c]);
        if (PQgetisnull(res, row, c))
            qg_buf_append(out, "null", 4);
        else
            qgp_json_value(out, PQftype(res, c), PQgetvalue(res, row, c),
                           (size_t)PQgetlength(res, row, c), opt);
    }
    qg_buf_putc(out, '}');
}

/* Open-addressing set of borrowed names, for making duplicate column names unique. */
struct name_set {
    const char **slot;
    size_t mask;
};

static size_t name_hash(const char *s)
{
    size_t h = 1469598103934665603u & SIZE_MAX;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static bool set_init(struct name_set *h, int n)
{
    size_t cap = 16;
    while (cap < 2 * (size_t)n)
        cap *= 2;
    h->mask = cap - 1;
    h->slot = calloc(cap, sizeof *h->slot);
    return h->slot != NULL;
}

/* The slot holding s, or the empty slot where it belongs. */
static const char **set_find(const struct name_set *h, const char *s)
{
    size_t i = name_hash(s) & h->mask;
    while (h->slot[i] && strcmp(h->slot[i], s) != 0)
        i = (i + 1) & h->mask;
    return &h->slot[i];
}

/* name_2, name_3, ...: the first that is neither a real column name nor taken. malloc'd. */
static char *unique_name(const char *name, const struct name_set *real, const struct name_set *used)
{
    size_t size = strlen(name) + 24;
    char *cand = malloc(size);
    for (unsigned long k = 2; cand; k++) {
        snprintf(cand, size, "%s_%lu", name, k);
        if (!*set_find(real, cand) && !*set_find(used, cand))
            break;
    }
    return cand;
}

static char *make_key(const char *name)
{
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_json_string(&b, name, strlen(name));
    qg_buf_putc(&b, ':');
    return qg_buf_steal(&b, NULL);
}

/* Fills keys[] (n entries) from res's column names; gen[] keeps generated names alive. */
static bool fill_keys(const PGresult *res, int n, char **keys, char **gen,
                      struct name_set *real, struct name_set *used)
{
    for (int c = 0; c < n; c++)
        *set_find(real, PQfname(res, c)) = PQfname(res, c);
    for (int c = 0; c < n; c++) {
        const char *name = PQfname(res, c);
        const char **slot = set_find(used, name);
        if (*slot) {
            if (!(gen[c] = unique_name(name, real, used)))
                return false;
            name = gen[c];
            slot = set_find(used, name);
        }
        *slot = name;
        if (!(keys[c] = make_key(name)))
            return false;
    }
    return true;
}

char **qgp_json_keys(const PGresult *res)
{
    if (!res)
        return NULL;
    int n = PQnfields(res);
    char **keys = calloc((size_t)n + 1, sizeof *keys);
    char **gen = calloc((size_t)n + 1, sizeof *gen);
    struct name_set real = {0}, used = {0};
    bool ok = keys && gen && set_init(&real, n) && set_init(&used, n)
              && fill_keys(res, n, keys, gen, &real, &used);
    for (int c = 0; gen && c < n; c++)
        free(gen[c]);
    free(gen);
    free(real.slot);
    free(used.slot);
    if (!ok) {
        qgp_json_keys_free(keys, n);
        return NULL;
    }
    return keys;
}

void qgp_json_keys_free(char **keys, int n)
{
    if (!keys)
        return;
    for (int c = 0; c < n; c++)
        free(keys[c]);
    free(keys);
}

/* Unknown (non built-in) types, e.g. enums and domains, are named "oid:<number>". */
void qgp_json_columns(qg_buf *out, const PGresult *res)
{
    if (!out)
        return;
    int n = res ? PQnfields(res) : 0;
    char **keys = qgp_json_keys(res);
    if (res && !keys) {
        out->oom = true;
        return;
    }
    qg_buf_putc(out, '[');
    for (int c = 0; c < n; c++) {
        Oid t = PQftype(res, c);
        const char *name = qgp_type_name(t);
        qg_buf_append(out, c ? ",{\"name\":" : "{\"name\":", c ? 9 : 8);
        qg_buf_append(out, keys[c], strlen(keys[c]) - 1); /* without its ':' */
        qg_buf_append(out, ",\"type\":\"", 9);
        if (name)
            qg_buf_puts(out, name);
        else
            qg_buf_printf(out, "oid:%u", (unsigned)t);
        qg_buf_append(out, "\"}", 2);
    }
    qg_buf_putc(out, ']');
    qgp_json_keys_free(keys, n);
}
