/* The layout of qg_result, shared by exec.c (which fills it) and result.c. */
#ifndef QG_RESULT_PRIVATE_H
#define QG_RESULT_PRIVATE_H

#include <stddef.h>
#include "querygate/result.h"

struct qg_result {
    char command[24];   /* "SELECT", "INSERT", ... */
    long long row_count;
    long long affected;
    char *rows;         /* "[{...},...]" or NULL for none */
    size_t rows_len;
    char *columns;      /* "[{"name":...,"type":...}]" or NULL */
    size_t columns_len;
    char *first;        /* first column of the first row, or NULL */
    size_t first_len;
};

#endif
