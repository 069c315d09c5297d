/*
 * qg_run (querygate/run.h), a first, blocking-underneath form: the whole
 * qg_transaction runs on a helper thread (qg_loop_offload) and done comes back
 * to the loop. To be replaced by the non-blocking one that drives libpq on the
 * loop itself.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "querygate/run.h"

struct qg_run {
    qg_manager *m;
    size_t n;
    const char **sql;
    const qg_params **params; /* NULL when the spec had none */
    struct qg_tx_options tx;
    bool numbers_as_strings;
    qg_run_done done;
    void *arg;
    qg_result **results;      /* n entries; the last attempt's */
    qg_status status;
    qg_error err;
    atomic_bool cancel;
    pthread_mutex_t mu;       /* guards running */
    qg_conn *running;         /* the connection inside qg_exec_many, or NULL */
};

static void free_results(qg_run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        qg_result_free(r->results[i]);
        r->results[i] = NULL;
    }
}

static qg_status cancelled(qg_error *err)
{
    return qg_error_set(err, QG_ERR_STATEMENT_TIMEOUT, "cancelled: the client closed the connection");
}

static void set_running(qg_run *r, qg_conn *c)
{
    pthread_mutex_lock(&r->mu);
    r->running = c;
    pthread_mutex_unlock(&r->mu);
}

/* The transaction's body; qg_transaction calls it again on a retry. */
static qg_status statements(qg_conn *c, void *arg, qg_error *err)
{
    qg_run *r = arg;
    free_results(r);
    if (atomic_load(&r->cancel))
        return cancelled(err);
    set_running(r, c);
    /* A cancel between the check above and here found no connection to cancel. */
    qg_status s = atomic_load(&r->cancel)
        ? cancelled(err)
        : qg_exec_many(c, r->n, r->sql, r->params,
                       &(struct qg_exec_options){.numbers_as_strings = r->numbers_as_strings,
                                                 .last = true},
                       r->results, err);
    set_running(r, NULL);
    return s;
}

static void work(void *arg)
{
    qg_run *r = arg;
    r->status = qg_transaction(r->m, &r->tx, statements, r, &r->err);
    if (r->status == QG_OK)
        return;
    free_results(r);
    /* A write whose COMMIT went out keeps its own answer: it may have been applied. */
    if (atomic_load(&r->cancel) && !r->err.outcome_unknown) {
        if (r->status != QG_ERR_STATEMENT_TIMEOUT) {
            int index = r->err.statement_index;
            qg_error_clear(&r->err);
            r->err.statement_index = index;
            r->status = cancelled(&r->err);
        }
        r->err.cancelled = true;
    }
}

static void run_free(qg_run *r)
{
    free_results(r);
    free(r->results);
    free(r->sql);
    free(r->params);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static void finish(void *arg)
{
    qg_run *r = arg;
    r->done(r->arg, r->status, r->status == QG_OK ? r->results : NULL, &r->err);
    run_free(r);
}

bool qg_run_start(qg_loop *l, qg_manager *m, const struct qg_run_spec *spec, qg_run_done done,
                  void *arg, qg_run **out)
{
    *out = NULL;
    qg_run *r = calloc(1, sizeof *r);
    if (!r)
        return false;
    *r = (qg_run){.m = m, .n = spec->n, .tx = spec->tx,
                  .numbers_as_strings = spec->numbers_as_strings, .done = done, .arg = arg};
    pthread_mutex_init(&r->mu, NULL);
    atomic_init(&r->cancel, false);
    qg_error_clear(&r->err);
    r->sql = malloc(spec->n * sizeof *r->sql);
    r->results = calloc(spec->n, sizeof *r->results);
    if (r->sql)
        memcpy(r->sql, spec->sql, spec->n * sizeof *r->sql);
    if (spec->params) {
        r->params = malloc(spec->n * sizeof *r->params);
        if (r->params)
            memcpy(r->params, spec->params, spec->n * sizeof *r->params);
    }
    if (!r->sql || !r->results || (spec->params && !r->params) ||
        !qg_loop_offload(l, work, finish, r)) {
        run_free(r);
        return false;
    }
    *out = r;
    return true;
}

void qg_run_cancel(qg_run *r)
{
    atomic_store(&r->cancel, true);
    /* NOTE: PQcancel blocks this loop for its own connect; the non-blocking
       qg_run sends it from a helper thread. */
    pthread_mutex_lock(&r->mu);
    qg_conn_cancel(r->running);
    pthread_mutex_unlock(&r->mu);
}
