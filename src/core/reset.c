/* Between two requests on one connection: the end of the transaction and the session reset. */
#include <string.h>

#include "manager_private.h"

/*
 * NOTE: a pooled connection must come back to what DISCARD ALL gives, but
 * DISCARD ALL cannot run in a pipeline, so this is its list, one statement
 * each, minus DEALLOCATE ALL and DISCARD PLANS: our own prepared statements
 * stay (the audit proves that nothing else was prepared;
 * drop_prepared deallocates them when the caller changes), and cached plans
 * change nothing a caller can see but speed.
 *
 * A read-only transaction needs only the audit: its ROLLBACK undoes SET,
 * set_config, SET ROLE, SET SESSION AUTHORIZATION, LISTEN, temp tables and
 * cursors, and it cannot change sequence state (lastval). Session advisory
 * locks and PREPARE (also from dynamic SQL in a DO block) outlive any
 * ROLLBACK, whatever keyword scan the SQL passed, so every request ends in it.
 */
static const char *const write_reset[] = {
    "RESET SESSION AUTHORIZATION", "RESET ROLE", "RESET ALL", "UNLISTEN *", "CLOSE ALL",
    "DISCARD TEMP", "DISCARD SEQUENCES",
};
#define NWRITE_RESET (sizeof write_reset / sizeof *write_reset)

/*
 * Releases session advisory locks and proves that no prepared statement but
 * ours exists: a caller's PREPARE, also from dynamic SQL, is from_sql. One that
 * only DEALLOCATEd ours makes its next use fail with 26000, which runs the
 * transaction again (a stale plan). NOTE: sent as text, parsed and planned each
 * time: a prepared audit is one a caller could replace by name, and it would run
 * before it could tell. The function, not the view, and qualified names keep
 * the plan cheap and out of reach of a search_path.
 */
static bool send_audit(qg_conn *c)
{
    return qgp_send_command(c->pg, "SELECT pg_catalog.pg_advisory_unlock_all(), count(*) = 0 "
                                   "FROM pg_catalog.pg_prepared_statement() WHERE from_sql");
}

static bool full_reset(const qg_conn *c)
{
    return !c->tx_read_only;
}

bool qgp_end_send(qg_conn *c, enum qgp_end end)
{
    bool ok = true;
    if (end != QGP_END_NONE)
        ok = qgp_send_command(c->pg, end == QGP_END_COMMIT ? "COMMIT" : "ROLLBACK");
    for (size_t i = 0; ok && full_reset(c) && i < NWRITE_RESET; i++)
        ok = qgp_send_command(c->pg, write_reset[i]);
    return ok && send_audit(c);
}

/* COMMIT's or ROLLBACK's own results; *done when the server answered it with success. */
static qg_status read_end(qg_conn *c, enum qgp_end end, bool *done, qg_error *err)
{
    qg_status s = QG_OK;
    bool aborted = false;
    PGresult *res;
    while ((res = PQgetResult(c->pg)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COMMAND_OK) {
            /* A COMMIT of a failed transaction answers ROLLBACK. */
            *done = end != QGP_END_COMMIT || !strcmp(PQcmdStatus(res), "COMMIT");
            if (!*done)
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
                qgp_conn_set_state(c, QGP_CONN_BROKEN);
                const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                if (err && end == QGP_END_COMMIT && strcmp(state, "25P03"))
                    err->outcome_unknown = true;
            }
        }
        PQclear(res);
    }
    if (end != QGP_END_COMMIT)
        return s;
    if (aborted && s == QG_OK)
        return qg_error_set(err, QG_ERR_INTERNAL, "COMMIT did not run: an earlier statement failed");
    if (!*done && s == QG_OK) {
        s = qgp_conn_lost(c, err, "committing");
        /* NOTE: COMMIT may have reached the server before the connection died. */
        if (err)
            err->outcome_unknown = true;
    }
    return s;
}

enum reset_outcome {
    RESET_DONE,     /* the session is as DISCARD ALL leaves it, but for our statements */
    RESET_SKIPPED,  /* an earlier part of the pipeline failed: nothing of it ran */
    RESET_FAILED,   /* it ran and failed, or found state we did not leave there */
};

static enum reset_outcome read_reset(qg_conn *c)
{
    bool failed = false, skipped = false, audited = false;
    size_t parts = (full_reset(c) ? NWRITE_RESET : 0) + 1;
    for (size_t i = 0; i < parts; i++) {
        PGresult *res;
        while ((res = PQgetResult(c->pg)) != NULL) {
            ExecStatusType st = PQresultStatus(res);
            if (i + 1 == parts && st == PGRES_TUPLES_OK && PQntuples(res) == 1)
                audited = !strcmp(PQgetvalue(res, 0, 1), "t");
            else if (st == PGRES_PIPELINE_ABORTED)
                skipped = true;
            else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                failed = true;
            PQclear(res);
        }
    }
    if (skipped && !failed)
        return RESET_SKIPPED;
    if (!failed && !audited && PQstatus(c->pg) == CONNECTION_OK)
        qgp_log(c->m, QG_LOG_WARN, "a request left prepared statements on its connection that "
                                   "the service did not make; the connection is closed");
    return failed || !audited ? RESET_FAILED : RESET_DONE;
}

qg_status qgp_end_read(qg_conn *c, enum qgp_end end, bool *committed, qg_error *err)
{
    bool done = end == QGP_END_NONE;
    qg_status s = end == QGP_END_NONE ? QG_OK : read_end(c, end, &done, err);
    *committed = end == QGP_END_COMMIT && done;
    enum reset_outcome r = read_reset(c);
    if (r == RESET_FAILED || PQstatus(c->pg) != CONNECTION_OK)
        qgp_conn_set_state(c, QGP_CONN_BROKEN); /* maybe ended, but not clean: never reused */
    else if (done && r == RESET_DONE)
        qgp_conn_set_state(c, QGP_CONN_ENDED);
    return s;
}
