/* Transaction scopes (commit on success, roll back on error, always release) and helpers. */
#include <stdio.h>
#include <string.h>

#include "manager_private.h"

static const char *isolation_sql(enum qg_isolation iso)
{
    switch (iso) {
    case QG_ISOLATION_READ_COMMITTED: return " ISOLATION LEVEL READ COMMITTED";
    case QG_ISOLATION_REPEATABLE_READ: return " ISOLATION LEVEL REPEATABLE READ";
    case QG_ISOLATION_SERIALIZABLE: return " ISOLATION LEVEL SERIALIZABLE";
    case QG_ISOLATION_DEFAULT: break;
    }
    return "";
}

/*
 * BEGIN is not sent here: it travels with the first statement (exec.c), so a
 * one-statement request costs one round trip. Behind a transaction pooler each
 * transaction may land on another server session, so the session settings are
 * applied per transaction, at once.
 */
static qg_status begin(qg_conn *c, const struct qg_tx_options *opt, qg_error *err)
{
    snprintf(c->begin_sql, sizeof c->begin_sql, "BEGIN%s%s", isolation_sql(opt->isolation),
             opt->read_only ? " READ ONLY" : " READ WRITE");
    c->tx_read_only = opt->read_only;
    c->tx_ended = false;
    c->begin_pending = true;
    if (!c->pooler)
        return QG_OK;
    c->begin_pending = false;
    qg_status s = qgp_conn_command(c, c->begin_sql, err);
    return s == QG_OK ? qgp_conn_command(c, c->m->session_sql, err) : s;
}

/*
 * NOTE: the caller's SQL may change the session (SET, set_config, SET ROLE,
 * LISTEN, temp tables). A read-only transaction ends in ROLLBACK, which undoes
 * all of that; a committed one is followed by this reset in the same pipeline.
 */
static const char *const reset_sql[] = {
    "RESET SESSION AUTHORIZATION", "RESET ROLE", "RESET ALL", "UNLISTEN *",
    "SELECT pg_advisory_unlock_all()", "DISCARD TEMP",
};

bool qgp_commit_send(qg_conn *c)
{
    bool ok = qgp_send_command(c->pg, "COMMIT");
    for (size_t i = 0; ok && i < sizeof reset_sql / sizeof *reset_sql; i++)
        ok = qgp_send_command(c->pg, reset_sql[i]);
    return ok;
}

/* COMMIT's own results. */
static qg_status read_commit(qg_conn *c, qg_error *err)
{
    qg_status s = QG_OK;
    bool committed = false, aborted = false;
    PGresult *res;
    while ((res = PQgetResult(c->pg)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COMMAND_OK) {
            committed = !strcmp(PQcmdStatus(res), "COMMIT");
            if (!committed)
                s = qg_error_set(err, QG_ERR_INTERNAL, "the server rolled the transaction back at COMMIT");
        } else if (st == PGRES_PIPELINE_ABORTED) {
            aborted = true; /* an earlier part failed and said why */
        } else if (s == QG_OK && PQstatus(c->pg) == CONNECTION_OK &&
                   PQresultErrorField(res, PG_DIAG_SQLSTATE)) {
            s = qgp_error_from_result(err, res);
            /* NOTE: the session ended as COMMIT went out: whether it applied is unknown
               (a FATAL can follow a durable commit, e.g. a cancelled wait for a
               synchronous standby), unless the server ended the session for sitting
               idle in its transaction (25P03), which is before COMMIT arrived. */
            if (qgp_result_fatal(res)) {
                c->broken = true;
                const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                if (err && strcmp(state, "25P03"))
                    err->outcome_unknown = true;
            }
        }
        PQclear(res);
    }
    if (aborted && s == QG_OK)
        return qg_error_set(err, QG_ERR_INTERNAL, "COMMIT did not run: an earlier statement failed");
    if (!committed && s == QG_OK) {
        s = qgp_conn_lost(c, err, "committing");
        /* NOTE: COMMIT may have reached the server before the connection died. */
        if (err)
            err->outcome_unknown = true;
    }
    return s;
}

qg_status qgp_commit_read(qg_conn *c, qg_error *err)
{
    qg_status s = read_commit(c, err);
    for (size_t i = 0; i < sizeof reset_sql / sizeof *reset_sql; i++) {
        PGresult *res;
        while ((res = PQgetResult(c->pg)) != NULL) {
            ExecStatusType st = PQresultStatus(res);
            if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_PIPELINE_ABORTED)
                c->broken = true; /* committed, but the session could not be reset */
            PQclear(res);
        }
    }
    if (PQstatus(c->pg) != CONNECTION_OK)
        c->broken = true;
    return s;
}

/* COMMIT and the reset on their own, when the last statement did not take them along. */
static qg_status commit(qg_conn *c, qg_error *err)
{
    if (!PQenterPipelineMode(c->pg) || !qgp_commit_send(c) || !PQpipelineSync(c->pg)) {
        qg_status s = qgp_conn_lost(c, err, "sending COMMIT");
        if (err)
            err->outcome_unknown = true;
        return s;
    }
    qg_status s = qgp_commit_read(c, err);
    if (!qgp_pipeline_end(c->pg))
        c->broken = true;
    return s;
}

/* Ends the transaction: COMMIT when ok, else (or when read-only) ROLLBACK. */
static qg_status end(qg_conn *c, bool ok, qg_error *err)
{
    qg_status s = QG_OK;
    if (c->begin_pending) {
        c->begin_pending = false; /* nothing was sent: nothing to end */
    } else if (ok && !c->tx_read_only) {
        if (!c->tx_ended)
            s = commit(c, err);
    } else if (!c->tx_ended && !c->broken && PQstatus(c->pg) == CONNECTION_OK) {
        qgp_conn_command(c, "ROLLBACK", NULL);
    }
    c->tx_ended = false;
    if (c->needs_reset && !c->broken && PQstatus(c->pg) == CONNECTION_OK &&
        PQtransactionStatus(c->pg) == PQTRANS_IDLE)
        qgp_conn_reset(c);
    return s;
}

/* One try: checkout, BEGIN, fn, COMMIT or ROLLBACK, checkin. */
static qg_status attempt(qg_manager *m, const struct qg_tx_options *opt, qg_tx_fn fn,
                         void *arg, qg_error *err)
{
    qg_conn *c;
    qg_status s = qg_checkout(m, &c, err);
    if (s != QG_OK)
        return s;
    s = begin(c, opt, err);
    if (s == QG_OK)
        s = fn(c, arg, err);
    qg_status e = end(c, s == QG_OK, err);
    qg_checkin(m, c);
    return s == QG_OK ? e : s;
}

qg_status qg_transaction(qg_manager *m, const struct qg_tx_options *opt, qg_tx_fn fn,
                         void *arg, qg_error *err)
{
    static const struct qg_tx_options defaults = {QG_ISOLATION_DEFAULT, false};
    if (!opt)
        opt = &defaults;
    qg_error e;
    qg_status s;
    for (int n = 0;; n++) {
        qg_error_clear(&e);
        s = attempt(m, opt, fn, arg, &e);
        if (s == QG_OK || n >= m->cfg->retries || !(qg_error_retryable(&e) || qgp_stale_plan(&e)))
            break;
        atomic_fetch_add(&m->retries, 1);
        qgp_log(m, QG_LOG_INFO, "retrying a transaction (try %d of %d) after: %s", n + 2,
                m->cfg->retries + 1, e.message);
        qgp_backoff_sleep(m->cfg->retry_delay_s, n);
    }
    if (s == QG_ERR_STATEMENT_TIMEOUT && atomic_load(&m->cancelled_running)) {
        /* Our own cancel, not the statement's fault: the caller should go elsewhere. */
        s = e.status = QG_ERR_SHUTTING_DOWN;
        snprintf(e.message, sizeof e.message, "the service shut down while the statement ran; "
                 "it was cancelled and rolled back: retry on another instance");
    }
    if (s != QG_OK && err && err->status == QG_OK)
        *err = e;
    return s;
}

/* ---- helpers ------------------------------------------------------------ */

struct one {
    const char *sql;
    const qg_params *params;
    qg_result *res;
};

static qg_status run_one(qg_conn *c, void *arg, qg_error *err)
{
    struct one *o = arg;
    qg_result_free(o->res);
    o->res = NULL;
    struct qg_exec_options opt = {.numbers_as_strings = c->m->cfg->numbers_as_strings, .last = true};
    return qg_exec(c, o->sql, o->params, &opt, &o->res, err);
}

static qg_status helper(qg_manager *m, bool read_only, const char *sql, const qg_params *params,
                        qg_result **out, qg_error *err)
{
    struct one o = {sql, params, NULL};
    struct qg_tx_options opt = {QG_ISOLATION_DEFAULT, read_only};
    qg_status s = qg_transaction(m, &opt, run_one, &o, err);
    if (s != QG_OK) {
        qg_result_free(o.res);
        o.res = NULL;
    }
    *out = o.res;
    return s;
}

qg_status qg_query(qg_manager *m, const char *sql, const qg_params *params, qg_result **out,
                   qg_error *err)
{
    return helper(m, true, sql, params, out, err);
}

qg_status qg_insert(qg_manager *m, const char *sql, const qg_params *params, qg_result **out,
                    qg_error *err)
{
    return helper(m, false, sql, params, out, err);
}

qg_status qg_update(qg_manager *m, const char *sql, const qg_params *params, long long *affected,
                    qg_error *err)
{
    qg_result *r;
    qg_status s = helper(m, false, sql, params, &r, err);
    *affected = s == QG_OK ? qg_result_affected_rows(r) : 0;
    qg_result_free(r);
    return s;
}
