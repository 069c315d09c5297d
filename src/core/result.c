/* qg_result: one statement's outcome, held as the JSON texts callers send on. */
#include <stdlib.h>
#include <string.h>

#include "result_private.h"

void qg_result_free(qg_result *r)
{
    if (!r)
        return;
    free(r->rows);
    free(r->columns);
    free(r->first);
    free(r);
}

const char *qg_result_command(const qg_result *r)
{
    return r->command;
}

long long qg_result_row_count(const qg_result *r)
{
    return r->row_count;
}

long long qg_result_affected_rows(const qg_result *r)
{
    return r->affected;
}

static const char *text_or_null(const char *s, size_t n, size_t *len)
{
    if (!s) {
        s = "null";
        n = 4;
    }
    if (len)
        *len = n;
    return s;
}

const char *qg_result_rows_json(const qg_result *r, size_t *len)
{
    if (!r->rows) {
        if (len)
            *len = 2;
        return "[]";
    }
    return text_or_null(r->rows, r->rows_len, len);
}

const char *qg_result_columns_json(const qg_result *r, size_t *len)
{
    if (!r->columns) {
        if (len)
            *len = 2;
        return "[]";
    }
    return text_or_null(r->columns, r->columns_len, len);
}

const char *qg_result_first_value_json(const qg_result *r, size_t *len)
{
    return text_or_null(r->first, r->first_len, len);
}
