/* reader.c: one statement's results, as they arrive, into a qg_result. Not installed. */
#ifndef QG_READER_H
#define QG_READER_H

#include "manager_private.h"

/* What the reader has seen so far of one statement's results. */
struct qgp_reader {
    qg_conn *c;
    const qgp_sql *ps;
    struct qgp_json_opts jopts;
    size_t before;       /* rows JSON of the earlier statements: the cap is on the sum */
    qg_buf rows;
    qg_buf columns;
    qg_buf first;
    char **keys;
    int nkeys;
    long long nrows;
    bool too_large;
    bool stream;         /* qg_run_stream: rows as JSON lines, taken in batches, no caps */
    bool discard;        /* a stream nobody reads any more: rows are counted, not kept */
    qg_result *out;
    void (*cancel)(void *arg); /* asks the server to stop sending rows */
    void *cancel_arg;
};

/* Ready for ps's results; rd->out is new (NULL and false when out of memory). */
bool qgp_reader_init(struct qgp_reader *rd, qg_conn *c, const qgp_sql *ps, size_t before,
                     bool numbers_as_strings);
/* One result of the statement (a row in single-row mode, its end, its error). */
qg_status qgp_reader_take(struct qgp_reader *rd, const PGresult *res, qg_error *err);
/* The results ended: the cap's error, when it was passed. */
qg_status qgp_reader_end(struct qgp_reader *rd, qg_error *err);
/* The buffers become rd->out. */
qg_status qgp_reader_finish(struct qgp_reader *rd, qg_error *err);
void qgp_reader_free(struct qgp_reader *rd);

/* The errors for what the service refuses to run. */
qg_status qgp_refuse_transaction_control(qg_error *err);
qg_status qgp_refuse_copy(qg_error *err);

#endif
