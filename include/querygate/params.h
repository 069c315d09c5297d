/* Named parameter values for a statement (the `params` object of a request). */
#ifndef QUERYGATE_PARAMS_H
#define QUERYGATE_PARAMS_H

#include <stddef.h>
#include "querygate/error.h"

typedef struct qg_params qg_params;

/* How a value travels: always as a bound parameter, never spliced into SQL. */
enum qg_param_kind {
    QG_PARAM_NULL,   /* SQL NULL */
    QG_PARAM_TEXT,   /* a string, sent as text */
    QG_PARAM_NUMBER, /* the digits the caller sent; the server infers the type */
    QG_PARAM_BOOL,   /* "true" or "false" */
    QG_PARAM_JSON    /* an object's JSON text (json/jsonb/text parameters) */
};

/* A new empty set. NULL when out of memory. Free with qg_params_free(). */
qg_params *qg_params_new(void);

/* Frees p and every copy it holds. NULL is allowed. */
void qg_params_free(qg_params *p);

/*
 * Adds name = value, copying both (text is ignored for QG_PARAM_NULL). A name
 * given twice, a name that is not [A-Za-z_][A-Za-z0-9_]*, or a text with a NUL
 * byte is QG_ERR_INVALID_REQUEST.
 */
qg_status qg_params_add(qg_params *p, const char *name, enum qg_param_kind kind,
                        const char *text, size_t len, qg_error *err) QG_MUSTCHECK;

/*
 * Adds a JSON array. It is sent as json_text where the server wants json, jsonb
 * or text, and as pg_array (a PostgreSQL array literal such as {1,2,NULL}) where
 * it wants an array type (`id = ANY(:ids)`). pg_array is NULL when the array has
 * no such form (it holds objects). Both texts are copied.
 */
qg_status qg_params_add_array(qg_params *p, const char *name, const char *json_text,
                              size_t json_len, const char *pg_array, size_t pg_len,
                              qg_error *err) QG_MUSTCHECK;

/* How many values p holds. */
size_t qg_params_count(const qg_params *p);

#endif
