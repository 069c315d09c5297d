/* One PostgreSQL connection: open (with the pooler fallback), ping, close. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manager_private.h"

void qgp_log(qg_manager *m, enum qg_log_level level, const char *fmt, ...)
{
    if (!m->log_fn || level < m->cfg->log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    m->log_fn(m->log_arg, level, msg);
}

bool qgp_send_command(PGconn *pg, const char *sql)
{
    return PQsendQueryParams(pg, sql, 0, NULL, NULL, NULL, NULL, 0);
}

bool qgp_stale_plan(const qg_error *e)
{
    return !strcmp(e->sqlstate, "26000") ||
           (!strcmp(e->sqlstate, "0A000") && strstr(e->message, "cached plan"));
}

bool qgp_pipeline_end(PGconn *pg)
{
    if (PQstatus(pg) != CONNECTION_OK)
        return false;
    PGresult *sync = PQgetResult(pg);
    bool synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    PQclear(sync);
    return synced && PQexitPipelineMode(pg);
}

qg_status qgp_conn_lost(qg_conn *c, qg_error *err, const char *doing)
{
    if (c)
        qgp_conn_set_state(c, QGP_CONN_BROKEN);
    const char *why = c && c->pg ? PQerrorMessage(c->pg) : "no connection";
    qg_status s = qg_error_set(err, QG_ERR_DB_UNAVAILABLE,
                               "the database connection failed while %s: %.300s", doing, why);
    if (err && err->status == QG_ERR_DB_UNAVAILABLE && !err->sqlstate[0])
        snprintf(err->sqlstate, sizeof err->sqlstate, "08006");
    return s;
}

/* libpq reports a pooler's refusal of the `options` startup parameter this way. */
static bool pooler_refused_options(const PGconn *pg)
{
    const char *msg = PQerrorMessage(pg);
    return strstr(msg, "unsupported startup parameter") != NULL;
}

static PGconn *connect_with(const qgp_conninfo *ci)
{
    return PQconnectdbParams((const char *const *)ci->keywords,
                             (const char *const *)ci->values, 0);
}

static qg_status connect_error(qg_manager *m, PGconn *pg, qg_error *err)
{
    char why[400];
    snprintf(why, sizeof why, "%s", pg ? PQerrorMessage(pg) : "out of memory");
    why[qg_trim_end(why, strlen(why), "\n ")] = '\0';
    qg_status s = m->role
        ? qg_error_set(err, QG_ERR_DB_UNAVAILABLE,
                       "could not connect to the database at %s as role \"%s\": %s; the role "
                       "needs LOGIN and its password in PGPASSFILE (or another libpq method)",
                       m->ci_options->display, m->role, why)
        : qg_error_set(err, QG_ERR_DB_UNAVAILABLE,
                       "could not connect to the database at %s: %s; check DATABASE_URL "
                       "and that the server is up",
                       m->ci_options->display, why);
    if (err && !err->sqlstate[0])
        snprintf(err->sqlstate, sizeof err->sqlstate, "08001");
    return s;
}

static PGconn *open_pg(qg_manager *m, bool *pooler)
{
    if (atomic_load(&m->pooler)) {
        *pooler = true;
        return connect_with(m->ci_plain);
    }
    PGconn *pg = connect_with(m->ci_options);
    if (pg && PQstatus(pg) != CONNECTION_OK && m->cfg->pooler == QG_POOLER_AUTO &&
        pooler_refused_options(pg)) {
        /* NOTE: PgBouncer rejects `options`; from now on every connection goes without. */
        PQfinish(pg);
        atomic_store(&m->pooler, true);
        qgp_log(m, QG_LOG_INFO, "the server refused startup options (a pooler such as "
                                "PgBouncer?); settings are now applied per transaction");
        *pooler = true;
        return connect_with(m->ci_plain);
    }
    *pooler = false;
    return pg;
}

/* Server notices (RAISE NOTICE, termination messages) go to the log, not stderr. */
static void notice_to_log(void *arg, const char *message)
{
    qgp_log(arg, QG_LOG_DEBUG, "server notice: %.900s", message);
}

qg_status qgp_conn_open(qg_manager *m, qg_conn **out, qg_error *err)
{
    *out = NULL;
    bool pooler = false;
    PGconn *pg = open_pg(m, &pooler);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        qg_status s = connect_error(m, pg, err);
        PQfinish(pg);
        return s;
    }
    qg_conn *c = calloc(1, sizeof *c);
    if (!c) {
        PQfinish(pg);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory opening a connection");
    }
    c->pg = pg;
    c->m = m;
    c->pooler = pooler;
    c->created_at = c->last_used = qg_now();
    c->cancel = PQgetCancel(pg);
    PQsetNoticeProcessor(pg, notice_to_log, m);
    pthread_mutex_init(&c->cancel_lock, NULL);
    *out = c;
    return QG_OK;
}

void qgp_conn_close(qg_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->cancel_lock);
    PQfreeCancel(c->cancel);
    c->cancel = NULL;
    pthread_mutex_unlock(&c->cancel_lock);
    pthread_mutex_destroy(&c->cancel_lock);
    PQfinish(c->pg);
    qgp_stmt_cache_free(&c->stmts);
    free(c);
}

void qg_conn_cancel(qg_conn *c)
{
    if (!c)
        return;
    char errbuf[256];
    pthread_mutex_lock(&c->cancel_lock);
    if (c->cancel)
        (void)PQcancel(c->cancel, errbuf, sizeof errbuf);
    pthread_mutex_unlock(&c->cancel_lock);
}

bool qgp_conn_alive(qg_conn *c)
{
    if (c->state != QGP_CONN_IDLE || PQstatus(c->pg) != CONNECTION_OK ||
        PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        return false;
    /* An idle connection has nothing to say. Readable means the server spoke
       anyway (a termination notice, possibly SSL-wrapped) or hung up: either way
       it is not to be trusted. Costs a poll(), not a round trip. */
    struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
    return p.fd >= 0 && poll(&p, 1, 0) == 0;
}

void qgp_conn_set_state(qg_conn *c, enum qgp_conn_state to)
{
    if (c->state == QGP_CONN_BROKEN)
        return;
    c->state = to;
}

/*
 * NOTE: RESET ALL (in the reset) returns the startup options (statement_timeout,
 * TimeZone...) to the values the connection was opened with, as wanted.
 */
bool qgp_conn_clean(qg_conn *c)
{
    PGconn *pg = c->pg;
    PGTransactionStatusType ts = PQtransactionStatus(pg);
    if (qgp_conn_broken(c) || PQstatus(pg) != CONNECTION_OK ||
        PQpipelineStatus(pg) != PQ_PIPELINE_OFF || ts == PQTRANS_ACTIVE || ts == PQTRANS_UNKNOWN) {
        qgp_conn_set_state(c, QGP_CONN_BROKEN);
        return false;
    }
    enum qgp_end end = ts == PQTRANS_IDLE ? QGP_END_NONE : QGP_END_ROLLBACK;
    bool drop = c->drop_prepared, committed;
    c->tx_read_only = false; /* whatever ran, undo all of it */
    if (!PQenterPipelineMode(pg) || (drop && !qgp_send_command(pg, "DEALLOCATE ALL")) ||
        !qgp_end_send(c, end) || !PQpipelineSync(pg)) {
        qgp_conn_set_state(c, QGP_CONN_BROKEN);
        return false;
    }
    PGresult *res;
    bool ok = true;
    while (drop && (res = PQgetResult(pg)) != NULL) {
        ok &= PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
    }
    (void)qgp_end_read(c, end, &committed, NULL);
    if (!qgp_pipeline_end(pg) || !ok || c->state != QGP_CONN_ENDED) {
        qgp_conn_set_state(c, QGP_CONN_BROKEN);
        return false;
    }
    c->drop_prepared = false;
    qgp_conn_set_state(c, QGP_CONN_IDLE);
    return true;
}

/* Waits until the connection has a whole result, or the deadline passes. */
static bool wait_result(PGconn *pg, double deadline)
{
    while (PQisBusy(pg)) {
        double left = deadline - qg_now();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = PQsocket(pg), .events = POLLIN};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno != EINTR)
            return false;
        if (r > 0 && !PQconsumeInput(pg))
            return false;
    }
    return true;
}

bool qgp_conn_ping(qg_conn *c, double timeout_s)
{
    if (!qgp_conn_alive(c))
        return false;
    if (!PQsendQuery(c->pg, ""))
        return false;
    double deadline = qg_now() + timeout_s;
    bool ok = true;
    PGresult *res;
    for (;;) {
        if (!wait_result(c->pg, deadline))
            return false;
        res = PQgetResult(c->pg);
        if (!res)
            break;
        if (PQresultStatus(res) != PGRES_EMPTY_QUERY)
            ok = false;
        PQclear(res);
    }
    return ok && PQstatus(c->pg) == CONNECTION_OK;
}

qg_status qgp_conn_command(qg_conn *c, const char *sql, qg_error *err)
{
    PGresult *res = PQexec(c->pg, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(res);
        return QG_OK;
    }
    qg_status s;
    if (PQstatus(c->pg) != CONNECTION_OK || !res || !PQresultErrorField(res, PG_DIAG_SQLSTATE))
        s = qgp_conn_lost(c, err, sql);
    else
        s = qgp_error_from_result(err, res);
    if (qgp_result_fatal(res))
        qgp_conn_set_state(c, QGP_CONN_BROKEN);
    PQclear(res);
    return s;
}
