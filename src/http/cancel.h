/* cancel.c: the statements of a request, which the client watcher (watch.h) may cancel. */
#ifndef QGH_CANCEL_H
#define QGH_CANCEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include "querygate/querygate.h"

/* What a request runs on the database, so that it can be cancelled. */
struct qgh_cancel {
    pthread_mutex_t mu;  /* held while conn is set or cancelled */
    qg_conn *conn;       /* running one of the request's statements, else NULL */
    atomic_bool gone;    /* the client hung up */
    atomic_bool cancelled; /* gone cancelled a statement, or refused to start one */
};

void qgh_cancel_init(struct qgh_cancel *cs);
void qgh_cancel_destroy(struct qgh_cancel *cs);

/*
 * qg_exec that the watcher can cancel; once the client is gone it fails at once
 * (QG_ERR_STATEMENT_TIMEOUT), so a retried transaction does not run again. cs may be NULL.
 */
qg_status qgh_exec(struct qgh_cancel *cs, qg_conn *c, const char *sql, const qg_params *params,
                   const struct qg_exec_options *opt, qg_result **out,
                   qg_error *err) QG_MUSTCHECK;
/* qg_exec_many, cancellable the same way. */
qg_status qgh_exec_many(struct qgh_cancel *cs, qg_conn *c, size_t n, const char *const *sql,
                        const qg_params *const *params, const struct qg_exec_options *opt,
                        qg_result **out, qg_error *err) QG_MUSTCHECK;

#endif
