/* Transaction scopes (commit on success, roll back on error, always release) and helpers. */
#include <stdio.h>
#include <string.h>

#include "trip.h"

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
 * one-statement request costs one round trip; behind a transaction pooler,
 * with the session settings for that transaction.
 */
void qgp_tx_begin(qg_conn *c, const struct qg_tx_options *opt)
{
    snprintf(c->begin_sql, sizeof c->begin_sql, "BEGIN%s%s", isolation_sql(opt->isolation),
             opt->read_only ? " READ ONLY" : " READ WRITE");
    c->tx_read_only = opt->read_only;
    c->claims = opt->claims;
    c->commit_lsn = 0;
    if (c->caller != opt->caller) {
        /* NOTE: pg_prepared_statements would show this caller the SQL another ran. */
        if (qgp_stmt_cache_forget_prepared(&c->stmts))
            c->drop_prepared = true;
        c->caller = opt->caller;
    }
    qgp_conn_set_state(c, QGP_CONN_BEGIN);
}

/* COMMIT or ROLLBACK and the session reset, in their own round trip, when the
   last statement did not take them along. */
static qg_status finish(qg_conn *c, enum qgp_end end, qg_error *err)
{
    struct qgp_trip t;
    if (qgp_finish_start(&t, c, end, err))
        (void)qgp_trip_wait(&t, 0);
    qgp_trip_free(&t);
    return t.s;
}

/*
 * Ends the transaction: COMMIT when ok and read-write, ROLLBACK otherwise; either
 * way the session is reset before the connection goes back (tx_read_only decides
 * how much needs undoing). On failure the clean-up undoes everything.
 */
enum qgp_end qgp_tx_finishing(const qg_conn *c, bool ok)
{
    if (c->state != QGP_CONN_IN_TX || !ok)
        return QGP_END_NONE;
    return c->tx_read_only ? QGP_END_ROLLBACK : QGP_END_COMMIT;
}

bool qgp_tx_settle(qg_conn *c)
{
    if (c->state == QGP_CONN_BEGIN || c->state == QGP_CONN_ENDED) {
        qgp_conn_set_state(c, QGP_CONN_IDLE); /* nothing was sent, or all is done */
        return false;
    }
    return !qgp_conn_broken(c);
}

static qg_status end(qg_conn *c, bool ok, qg_error *err)
{
    qg_status s = QG_OK;
    enum qgp_end end = qgp_tx_finishing(c, ok);
    if (end != QGP_END_NONE)
        s = finish(c, end, err);
    if (qgp_tx_settle(c))
        qgp_conn_clean(c);
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
    qgp_tx_begin(c, opt);
    s = fn(c, arg, err);
    qg_status e = end(c, s == QG_OK, err);
    qg_checkin(m, c);
    return s == QG_OK ? e : s;
}

qg_status qg_transaction(qg_manager *m, const struct qg_tx_options *opt, qg_tx_fn fn,
                         void *arg, qg_error *err)
{
    static const struct qg_tx_options defaults = {.isolation = QG_ISOLATION_DEFAULT};
    if (!opt)
        opt = &defaults;
    qg_error e;
    qg_status s;
    double delay;
    struct qgp_tries tries;
    qgp_tries_init(&tries, m, opt->read_only);
    for (;;) {
        qg_error_clear(&e);
        s = attempt(m, opt, fn, arg, &e);
        if ((delay = qgp_retry_delay(m, &tries, s, &e)) < 0)
            break;
        qgp_sleep(delay);
    }
    s = qgp_tx_outcome(m, s, &e);
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
    struct qg_tx_options opt = {.isolation = QG_ISOLATION_DEFAULT, .read_only = read_only};
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
