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

static qg_status begin(qg_conn *c, const struct qg_tx_options *opt, qg_error *err)
{
    char sql[512];
    int n = snprintf(sql, sizeof sql, "BEGIN%s%s", isolation_sql(opt->isolation),
                     opt->read_only ? " READ ONLY" : " READ WRITE");
    /* Behind a transaction pooler each transaction may land on another server
       session, so the session settings travel with every transaction. */
    if (c->pooler && c->m->session_sql)
        snprintf(sql + n, sizeof sql - (size_t)n, "; %s", c->m->session_sql);
    return qgp_conn_command(c, sql, err);
}

static qg_status commit(qg_conn *c, const struct qg_tx_options *opt, qg_error *err)
{
    PGresult *res = PQexec(c->pg, "COMMIT");
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    qg_status s = QG_OK;
    if (st == PGRES_COMMAND_OK && !strcmp(PQcmdStatus(res), "COMMIT")) {
        s = QG_OK;
    } else if (st == PGRES_COMMAND_OK) {
        /* The server answered ROLLBACK: the transaction had failed earlier. */
        s = qg_error_set(err, QG_ERR_INTERNAL, "the transaction was rolled back by the server");
    } else if (PQstatus(c->pg) == CONNECTION_OK && res && PQresultErrorField(res, PG_DIAG_SQLSTATE)) {
        s = qgp_error_from_result(err, res);
    } else {
        s = qgp_conn_lost(c, err, "committing");
        /* NOTE: COMMIT may have reached the server before the connection died. */
        if (err && !opt->read_only)
            err->outcome_unknown = true;
    }
    PQclear(res);
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
    if (s == QG_OK)
        s = commit(c, opt, err);
    else if (!c->broken && PQstatus(c->pg) == CONNECTION_OK)
        qgp_conn_command(c, "ROLLBACK", NULL);
    qg_checkin(m, c);
    return s;
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
        if (s == QG_OK || n >= m->cfg->retries || !qg_error_retryable(&e))
            break;
        atomic_fetch_add(&m->retries, 1);
        qgp_log(m, QG_LOG_INFO, "retrying a transaction (try %d of %d) after: %s", n + 2,
                m->cfg->retries + 1, e.message);
        qgp_backoff_sleep(m->cfg->retry_delay_s, n);
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
    return qg_exec(c, o->sql, o->params, NULL, &o->res, err);
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
