/*
 * Statements a request runs, lent to the client watcher (watch.c) for cancelling:
 * qgh_exec and qgh_exec_many are qg_exec and qg_exec_many that stop once the client is gone.
 */
#include "cancel.h"

void qgh_cancel_init(struct qgh_cancel *cs)
{
    pthread_mutex_init(&cs->mu, NULL);
    cs->conn = NULL;
    atomic_init(&cs->gone, false);
    atomic_init(&cs->cancelled, false);
}

void qgh_cancel_destroy(struct qgh_cancel *cs)
{
    pthread_mutex_destroy(&cs->mu);
}

/* Lends c to the watcher for cancelling; false (and err set) once the client is gone. */
static bool watch_start(struct qgh_cancel *cs, qg_conn *c, qg_error *err)
{
    if (!cs)
        return true;
    pthread_mutex_lock(&cs->mu);
    bool gone = atomic_load(&cs->gone);
    if (!gone)
        cs->conn = c;
    pthread_mutex_unlock(&cs->mu);
    if (gone) {
        atomic_store(&cs->cancelled, true);
        qg_error_set(err, QG_ERR_STATEMENT_TIMEOUT, "cancelled: the client closed the connection");
    }
    return !gone;
}

static void watch_stop(struct qgh_cancel *cs)
{
    if (!cs)
        return;
    pthread_mutex_lock(&cs->mu);
    cs->conn = NULL;
    pthread_mutex_unlock(&cs->mu);
}

qg_status qgh_exec(struct qgh_cancel *cs, qg_conn *c, const char *sql, const qg_params *params,
                   const struct qg_exec_options *opt, qg_result **out, qg_error *err)
{
    *out = NULL;
    if (!watch_start(cs, c, err))
        return QG_ERR_STATEMENT_TIMEOUT;
    qg_status s = qg_exec(c, sql, params, opt, out, err);
    watch_stop(cs);
    return s;
}

qg_status qgh_exec_many(struct qgh_cancel *cs, qg_conn *c, size_t n, const char *const *sql,
                        const qg_params *const *params, const struct qg_exec_options *opt,
                        qg_result **out, qg_error *err)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    if (!watch_start(cs, c, err))
        return QG_ERR_STATEMENT_TIMEOUT;
    qg_status s = qg_exec_many(c, n, sql, params, opt, out, err);
    watch_stop(cs);
    return s;
}
