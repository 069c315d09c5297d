/* Request bodies decoded: statement and transaction objects, strictly (unknown keys are errors). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "request.h"

/* The JSON type name a caller would recognise, for "expected X, got Y". */
static const char *type_name(const json_t *v)
{
    if (qg_json_is_number(v))
        return "number";
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER:
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "value";
}

static bool is_string(const json_t *v)
{
    return v && json_is_string(v) && !qg_json_is_number(v);
}

static json_t *parse_object(const char *body, size_t len, qg_error *err)
{
    json_t *root = qg_json_parse(body, len, err);
    if (!root) {
        if (err && err->status == QG_OK)
            qg_error_set(err, QG_ERR_INVALID_JSON, "the body is not valid JSON");
        return NULL;
    }
    if (!json_is_object(root)) {
        qg_error_set(err, QG_ERR_INVALID_REQUEST, "the body must be a JSON object, not %s",
                     type_name(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Fails on the first key of obj not in allowed (a NULL-terminated list), naming them all. */
static qg_status check_keys(json_t *obj, const char *const *allowed, const char *where,
                            qg_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key))
            i++;
        if (allowed[i])
            continue;
        char list[128] = "";
        for (size_t k = 0; allowed[k]; k++) {
            size_t n = strlen(list);
            snprintf(list + n, sizeof list - n, "%s%s", k ? ", " : "", allowed[k]);
        }
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "unknown key \"%.100s\" in %s; allowed: %s", key, where, list);
    }
    return QG_OK;
}

static qg_status get_sql(json_t *obj, const char *where, const char **sql, qg_error *err)
{
    json_t *v = json_object_get(obj, "sql");
    if (!v)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "%s needs \"sql\", a string", where);
    if (!is_string(v))
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "\"sql\" in %s must be a string, not %s", where, type_name(v));
    if (json_string_length(v) == 0)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "\"sql\" in %s is empty", where);
    *sql = json_string_value(v);
    return QG_OK;
}

static qg_status get_bool(json_t *obj, const char *key, bool *out, qg_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return QG_OK;
    if (!json_is_boolean(v))
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "\"%s\" must be true or false, not %s",
                            key, type_name(v));
    *out = json_is_true(v);
    return QG_OK;
}

/* One params object (or absent) into a new qg_params. */
static qg_status get_params(json_t *v, const char *where, qg_params **out, qg_error *err)
{
    if (v && !json_is_object(v))
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "\"params\" in %s must be an object, not %s", where, type_name(v));
    return qg_params_from_json(v, out, err);
}

void qgh_statement_free(struct qgh_statement *st)
{
    for (size_t i = 0; i < st->nsets; i++)
        qg_params_free(st->sets[i]);
    free(st->sets);
    json_decref(st->root);
    memset(st, 0, sizeof *st);
}

/* params as an array of objects: one set per element; errors name the element. */
static qg_status get_batch(json_t *arr, struct qgh_statement *st, qg_error *err)
{
    size_t n = json_array_size(arr);
    if (n == 0)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "\"params\" is an empty batch: give at least one object");
    st->sets = calloc(n, sizeof *st->sets);
    if (!st->sets)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory");
    st->batch = true;
    for (size_t i = 0; i < n; i++) {
        json_t *el = json_array_get(arr, i);
        qg_status s = json_is_object(el)
                          ? qg_params_from_json(el, &st->sets[i], err)
                          : qg_error_set(err, QG_ERR_INVALID_REQUEST,
                                         "\"params\"[%zu] must be an object, not %s", i,
                                         type_name(el));
        if (s != QG_OK) {
            if (err)
                err->statement_index = (int)i;
            return s;
        }
        st->nsets = i + 1;
    }
    return QG_OK;
}

/* A statement object; sql NULL: its "sql" key, else sql (a named query's, keys without "sql"). */
static qg_status parse_statement(const char *body, size_t len, const char *sql, bool allow_batch,
                                 bool default_nas, struct qgh_statement *out, qg_error *err)
{
    static const char *const keys[] = {"sql", "params", "numbers_as_strings", NULL};
    const char *where = sql ? "the body" : "the statement";
    memset(out, 0, sizeof *out);
    out->numbers_as_strings = default_nas;
    out->root = parse_object(body, len, err);
    if (!out->root)
        return err ? err->status : QG_ERR_INVALID_JSON;
    qg_status s = check_keys(out->root, sql ? keys + 1 : keys, where, err);
    if (s == QG_OK && sql)
        out->sql = sql;
    else if (s == QG_OK)
        s = get_sql(out->root, where, &out->sql, err);
    if (s == QG_OK)
        s = get_bool(out->root, "numbers_as_strings", &out->numbers_as_strings, err);
    json_t *params = json_object_get(out->root, "params");
    if (s == QG_OK && allow_batch && json_is_array(params)) {
        s = get_batch(params, out, err);
    } else if (s == QG_OK && sql && json_is_array(params)) {
        s = qg_error_set(err, QG_ERR_INVALID_REQUEST,
                         "\"params\" must be an object: a read query runs once (only a write "
                         "query takes an array of parameter sets)");
    } else if (s == QG_OK) {
        out->sets = calloc(1, sizeof *out->sets);
        if (!out->sets)
            return qg_error_set(err, QG_ERR_INTERNAL, "out of memory");
        s = get_params(params, where, &out->sets[0], err);
        if (s == QG_OK)
            out->nsets = 1;
    }
    return s;
}

qg_status qgh_parse_statement(const char *body, size_t len, bool allow_batch,
                              bool default_nas, struct qgh_statement *out, qg_error *err)
{
    return parse_statement(body, len, NULL, allow_batch, default_nas, out, err);
}

qg_status qgh_parse_named(const char *body, size_t len, const char *sql, bool allow_batch,
                          bool default_nas, struct qgh_statement *out, qg_error *err)
{
    return parse_statement(body, len, sql, allow_batch, default_nas, out, err);
}

void qgh_tx_body_free(struct qgh_tx_body *tx)
{
    for (size_t i = 0; i < tx->n; i++)
        qg_params_free(tx->stmts[i].params);
    free(tx->stmts);
    json_decref(tx->root);
    memset(tx, 0, sizeof *tx);
}

static qg_status get_isolation(json_t *obj, enum qg_isolation *out, qg_error *err)
{
    static const struct {
        const char *name;
        enum qg_isolation level;
    } levels[] = {{"read committed", QG_ISOLATION_READ_COMMITTED},
                  {"repeatable read", QG_ISOLATION_REPEATABLE_READ},
                  {"serializable", QG_ISOLATION_SERIALIZABLE}};
    json_t *v = json_object_get(obj, "isolation");
    if (!v)
        return QG_OK;
    if (is_string(v))
        for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
            if (!strcasecmp(json_string_value(v), levels[i].name)) {
                *out = levels[i].level;
                return QG_OK;
            }
    return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                        "\"isolation\" must be \"read committed\", \"repeatable read\" or "
                        "\"serializable\"");
}

static qg_status get_tx_statement(json_t *el, size_t i, struct qgh_tx_stmt *st, qg_error *err)
{
    static const char *const keys[] = {"sql", "params", NULL};
    char where[48];
    snprintf(where, sizeof where, "statements[%zu]", i);
    if (!json_is_object(el))
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "%s must be an object, not %s",
                            where, type_name(el));
    qg_status s = check_keys(el, keys, where, err);
    if (s == QG_OK)
        s = get_sql(el, where, &st->sql, err);
    if (s == QG_OK)
        s = get_params(json_object_get(el, "params"), where, &st->params, err);
    return s;
}

qg_status qgh_parse_transaction(const char *body, size_t len, bool default_nas,
                                struct qgh_tx_body *out, qg_error *err)
{
    static const char *const keys[] = {"statements", "isolation", "read_only",
                                       "numbers_as_strings", NULL};
    memset(out, 0, sizeof *out);
    out->numbers_as_strings = default_nas;
    out->root = parse_object(body, len, err);
    if (!out->root)
        return err ? err->status : QG_ERR_INVALID_JSON;
    qg_status s = check_keys(out->root, keys, "the transaction", err);
    if (s == QG_OK)
        s = get_isolation(out->root, &out->opt.isolation, err);
    if (s == QG_OK)
        s = get_bool(out->root, "read_only", &out->opt.read_only, err);
    if (s == QG_OK)
        s = get_bool(out->root, "numbers_as_strings", &out->numbers_as_strings, err);
    if (s != QG_OK)
        return s;
    json_t *arr = json_object_get(out->root, "statements");
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST,
                            "\"statements\" must be a non-empty array of statement objects");
    out->stmts = calloc(json_array_size(arr), sizeof *out->stmts);
    if (!out->stmts)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        s = get_tx_statement(json_array_get(arr, i), i, &out->stmts[i], err);
        out->n = i + 1; /* params of a failed element are freed too */
        if (s != QG_OK) {
            if (err)
                err->statement_index = (int)i;
            return s;
        }
    }
    return QG_OK;
}
