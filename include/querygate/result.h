/* The result of one statement, already in the contract's JSON form. */
#ifndef QUERYGATE_RESULT_H
#define QUERYGATE_RESULT_H

#include <stddef.h>

typedef struct qg_result qg_result;

/* Frees r and everything it holds. NULL is allowed. */
void qg_result_free(qg_result *r);

/* The command tag's verb: "SELECT", "INSERT", "UPDATE", ... Borrowed from r. */
const char *qg_result_command(const qg_result *r);

/* Rows returned. */
long long qg_result_row_count(const qg_result *r);

/* Rows the command affected (from the command tag); a SELECT's row count. */
long long qg_result_affected_rows(const qg_result *r);

/*
 * JSON texts, borrowed from r (valid until qg_result_free), NUL-terminated,
 * with their length in *len when len is not NULL:
 *   rows:        [{"col": value, ...}, ...]  (the contract's type table)
 *   columns:     [{"name": "id", "type": "int4"}, ...]
 *   first value: the first column of the first row, or null
 */
const char *qg_result_rows_json(const qg_result *r, size_t *len);
const char *qg_result_columns_json(const qg_result *r, size_t *len);
const char *qg_result_first_value_json(const qg_result *r, size_t *len);

#endif
