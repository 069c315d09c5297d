/* request.c: request bodies decoded. */
#ifndef QGH_REQUEST_H
#define QGH_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include "querygate/querygate.h"

struct qgh_statement {
    const char *sql;    /* borrowed from the parsed body */
    qg_params **sets;   /* nsets parameter sets (a batch when batch is true) */
    size_t nsets;
    bool batch;
    bool numbers_as_strings;
    json_t *root;       /* keeps sql alive */
};

struct qgh_tx_body {
    size_t n;
    struct qgh_tx_stmt {
        const char *sql;
        qg_params *params;
    } *stmts;
    struct qg_tx_options opt;
    bool numbers_as_strings;
    json_t *root;
};

/* {sql, params, numbers_as_strings}; params may be an array (batch) when allow_batch. */
qg_status qgh_parse_statement(const char *body, size_t len, bool allow_batch,
                              bool default_nas, struct qgh_statement *out,
                              qg_error *err) QG_MUSTCHECK;
void qgh_statement_free(struct qgh_statement *st);
/* The body of POST /queries/NAME, {params, numbers_as_strings}, for sql (borrowed: it
   must outlive out). */
qg_status qgh_parse_named(const char *body, size_t len, const char *sql, bool allow_batch,
                          bool default_nas, struct qgh_statement *out,
                          qg_error *err) QG_MUSTCHECK;

/* {statements: [...], isolation, read_only, numbers_as_strings}. */
qg_status qgh_parse_transaction(const char *body, size_t len, bool default_nas,
                                struct qgh_tx_body *out, qg_error *err) QG_MUSTCHECK;
void qgh_tx_body_free(struct qgh_tx_body *tx);

#endif
