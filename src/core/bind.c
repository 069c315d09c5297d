/* The qg_params container and matching its values to a parsed statement's $n. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_private.h"

#define QGP_HASH_FROM 16 /* below this many keys, linear search wins */
#define NOT_FOUND SIZE_MAX

struct entry {
    char *name; /* one malloc: name, then text, then pg_array, each NUL-terminated */
    size_t name_len;
    struct qgp_value v;
};

struct qg_params {
    struct entry *e; /* in the order added: "key order" for error reports */
    size_t n, cap;
    size_t *hash;    /* index + 1 into e, 0 = empty; built from QGP_HASH_FROM keys */
    size_t hash_cap;
};

qg_params *qg_params_new(void)
{
    return calloc(1, sizeof(qg_params));
}

void qg_params_free(qg_params *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->e[i].name);
    free(p->e);
    free(p->hash);
    free(p);
}

size_t qg_params_count(const qg_params *p)
{
    return p ? p->n : 0;
}

/* The index of name in p, or NOT_FOUND; *slot gets the empty hash slot it would use. */
static size_t find(const qg_params *p, const char *name, size_t len, size_t *slot)
{
    if (!p)
        return NOT_FOUND;
    if (!p->hash) {
        for (size_t i = 0; i < p->n; i++)
            if (p->e[i].name_len == len && memcmp(p->e[i].name, name, len) == 0)
                return i;
        return NOT_FOUND;
    }
    size_t mask = p->hash_cap - 1, k = (size_t)qgp_fnv1a(name, len) & mask;
    for (; p->hash[k]; k = (k + 1) & mask) {
        const struct entry *e = &p->e[p->hash[k] - 1];
        if (e->name_len == len && memcmp(e->name, name, len) == 0)
            return p->hash[k] - 1;
    }
    if (slot)
        *slot = k;
    return NOT_FOUND;
}

/* Rebuilds the index at four times the key count (rounded up to 2^k). */
static bool rehash(qg_params *p)
{
    size_t cap = 64;
    while (cap < p->n * 4)
        cap *= 2;
    size_t *h = calloc(cap, sizeof *h);
    if (!h)
        return false;
    for (size_t i = 0; i < p->n; i++) {
        size_t k = (size_t)qgp_fnv1a(p->e[i].name, p->e[i].name_len) & (cap - 1);
        while (h[k])
            k = (k + 1) & (cap - 1);
        h[k] = i + 1;
    }
    free(p->hash);
    p->hash = h;
    p->hash_cap = cap;
    return true;
}

static bool valid_name(const char *name)
{
    unsigned char c = (unsigned char)name[0];
    if (!(c == '_' || (unsigned)((c | 0x20) - 'a') < 26u))
        return false;
    for (const char *s = name + 1; *s; s++) {
        c = (unsigned char)*s;
        if (!(c == '_' || (unsigned)((c | 0x20) - 'a') < 26u || (unsigned)(c - '0') < 10u))
            return false;
    }
    return true;
}

/* Checks one value text: present when len says so, no NUL, fits libpq's int length. */
static qg_status check_text(const char *name, const char *what, const char *text, size_t len,
                            qg_error *err)
{
    if (!text && len)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "qg_params_add: the %s of parameter %s is NULL with length %zu",
                            what, name, len);
    if (len >= INT_MAX)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "the value of parameter %s is too long (%zu bytes)", name, len);
    if (len && memchr(text, '\0', len))
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "the value of parameter %s holds a NUL character, which PostgreSQL "
                            "text cannot hold; remove it (send binary data as hex for bytea)",
                            name);
    return QG_OK;
}

/* Checks the name is valid and new; *slot as find(). */
static qg_status check_name(const qg_params *p, const char *name, size_t *slot, qg_error *err)
{
    if (!p)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "qg_params_add: params is NULL");
    if (!name || !valid_name(name))
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "parameter name \"%.100s\" is not valid; names are "
                            "[A-Za-z_][A-Za-z0-9_]*", name ? name : "(null)");
    if (find(p, name, strlen(name), slot) != NOT_FOUND)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "parameter %s is given twice in params; give each name once", name);
    return QG_OK;
}

static char *put(char *w, const char *s, size_t n)
{
    if (n)
        memcpy(w, s, n);
    w[n] = '\0';
    return w + n + 1;
}

/* Appends an entry holding copies of name, v.text and v.pg_array (either may be NULL). */
static qg_status append(qg_params *p, const char *name, size_t slot, struct qgp_value v,
                        qg_error *err)
{
    size_t name_len = strlen(name), tl = v.text ? (size_t)v.len : 0,
           al = v.pg_array ? (size_t)v.pg_array_len : 0;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        struct entry *e = realloc(p->e, cap * sizeof *e);
        if (!e)
            return qg_error_set(err, QG_ERR_INTERNAL, "out of memory adding a parameter");
        p->e = e;
        p->cap = cap;
    }
    char *block = malloc(name_len + tl + al + 3);
    if (!block)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory adding a parameter");
    char *w = put(block, name, name_len);
    if (v.text) {
        const char *src = v.text;
        v.text = w;
        w = put(w, src, tl);
    }
    if (v.pg_array) {
        const char *src = v.pg_array;
        v.pg_array = w;
        put(w, src, al);
    }
    struct entry *e = &p->e[p->n++];
    e->name = block;
    e->name_len = name_len;
    e->v = v;
    if (p->hash && p->n * 2 <= p->hash_cap) {
        p->hash[slot] = p->n;
    } else if (p->n >= QGP_HASH_FROM && !rehash(p)) {
        free(p->e[--p->n].name);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory adding a parameter");
    }
    return QG_OK;
}

qg_status qg_params_add(qg_params *p, const char *name, enum qg_param_kind kind,
                        const char *text, size_t len, qg_error *err)
{
    size_t slot = 0;
    qg_status st = check_name(p, name, &slot, err);
    if (st != QG_OK)
        return st;
    if ((unsigned)kind > QG_PARAM_JSON)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "qg_params_add: parameter %s has an unknown kind %d", name, (int)kind);
    struct qgp_value v = {.kind = kind};
    if (kind != QG_PARAM_NULL) {
        if ((st = check_text(name, "value", text, len, err)) != QG_OK)
            return st;
        v.text = text ? text : "";
        v.len = (int)len;
    }
    return append(p, name, slot, v, err);
}

qg_status qg_params_add_array(qg_params *p, const char *name, const char *json_text,
                              size_t json_len, const char *pg_array, size_t pg_len,
                              qg_error *err)
{
    size_t slot = 0;
    qg_status st = check_name(p, name, &slot, err);
    if (st != QG_OK)
        return st;
    if (!json_text)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "qg_params_add_array: the JSON text of parameter %s is NULL", name);
    if ((st = check_text(name, "JSON text", json_text, json_len, err)) != QG_OK ||
        (st = check_text(name, "array literal", pg_array, pg_array ? pg_len : 0, err)) != QG_OK)
        return st;
    struct qgp_value v = {.kind = QG_PARAM_JSON, .text = json_text, .len = (int)json_len,
                          .pg_array = pg_array, .pg_array_len = pg_array ? (int)pg_len : 0,
                          .is_array = true};
    return append(p, name, slot, v, err);
}

/* Appends " :a, :b" (the SQL's names) to buf, shortened with ", ..." to fit. */
static void list_names(const qgp_sql *s, char *buf, size_t size)
{
    size_t used = 0;
    if (s->nparams == 0) {
        snprintf(buf, size, "no parameters");
        return;
    }
    buf[0] = '\0';
    for (int i = 0; i < s->nparams; i++) {
        size_t need = strlen(s->names[i]) + 3;
        if (used + need + 6 > size) {
            snprintf(buf + used, size - used, ", ...");
            return;
        }
        used += (size_t)snprintf(buf + used, size - used, "%s:%s", i ? ", " : "",
                                 s->names[i]);
    }
}

/* Reports the first key of p (in the order added) that s does not use. */
static qg_status report_unknown(const qgp_sql *s, const qg_params *p, qg_error *err)
{
    bool *used = calloc(p->n, sizeof *used);
    if (!used)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory matching parameters");
    for (int i = 0; i < s->nparams; i++) {
        size_t k = find(p, s->names[i], strlen(s->names[i]), NULL);
        if (k != NOT_FOUND)
            used[k] = true;
    }
    size_t first = 0;
    while (first < p->n && used[first])
        first++;
    free(used);
    if (first == p->n)
        return qg_error_set(err, QG_ERR_INTERNAL, "parameter matching is inconsistent");
    char names[200];
    list_names(s, names, sizeof names);
    return qg_error_set(err, QG_ERR_UNKNOWN_PARAMETER,
                        "params has %s, which the SQL does not use (it uses %s)",
                        p->e[first].name, names);
}

qg_status qgp_bind(const qgp_sql *s, const qg_params *p, struct qgp_value *values,
                   qg_error *err)
{
    if (!s || (s->nparams > 0 && !values))
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "qgp_bind: statement or values is NULL");
    for (int i = 0; i < s->nparams; i++) {
        size_t k = find(p, s->names[i], strlen(s->names[i]), NULL);
        if (k == NOT_FOUND)
            return qg_error_set(err, QG_ERR_MISSING_PARAMETER,
                                "parameter :%s is used in the SQL but missing from params",
                                s->names[i]);
        values[i] = p->e[k].v;
    }
    /* Keys are distinct and each name matched its own key, so any extra key is unused. */
    if (qg_params_count(p) > (size_t)s->nparams)
        return report_unknown(s, p, err);
    return QG_OK;
}
