/* Between two requests on one connection: the end of the transaction and the session reset. */
#include <string.h>

#include "trip.h"

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
#define AUDIT_SQL                                                                          \
    "SELECT pg_catalog.pg_advisory_unlock_all(), count(*) = 0 "                            \
    "FROM pg_catalog.pg_prepared_statement() WHERE from_sql"

/*
 * After a read-write COMMIT the audit also tells where the WAL is, for
 * read-your-writes. NOTE: the insert position, not pg_current_wal_lsn(): with
 * synchronous_commit off the commit record may not be written out yet.
 */
#define AUDIT_COMMIT_SQL                                                                   \
    "SELECT pg_catalog.pg_advisory_unlock_all(), count(*) = 0, "                           \
    "pg_catalog.pg_current_wal_insert_lsn() "                                              \
    "FROM pg_catalog.pg_prepared_statement() WHERE from_sql"

void qgp_end_queue(struct qgp_trip *t, enum qgp_end end)
{
    t->end = end;
    t->end_at = t->n;
    if (end != QGP_END_NONE)
        qgp_trip_text(t, QGP_PART_END, end == QGP_END_COMMIT ? "COMMIT" : "ROLLBACK");
    for (size_t i = 0; !t->c->tx_read_only && i < NWRITE_RESET; i++)
        qgp_trip_text(t, QGP_PART_RESET, write_reset[i]);
    bool write_commit = end == QGP_END_COMMIT && !t->c->tx_read_only;
    qgp_trip_text(t, QGP_PART_AUDIT, write_commit ? AUDIT_COMMIT_SQL : AUDIT_SQL);
}

/* A result of COMMIT or ROLLBACK. */
static void take_end(struct qgp_trip *t, const PGresult *res)
{
    qg_error *e = &t->end_err;
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK) {
        /* A COMMIT of a failed transaction answers ROLLBACK. */
        t->end_done = t->end != QGP_END_COMMIT || !strcmp(PQcmdStatus((PGresult *)res), "COMMIT");
        if (!t->end_done)
            qg_error_set(e, QG_ERR_INTERNAL, "the server rolled the transaction back at COMMIT");
    } else if (st == PGRES_PIPELINE_ABORTED) {
        t->end_aborted = true; /* an earlier part failed and said why */
    } else if (e->status == QG_OK && PQstatus(t->c->pg) == CONNECTION_OK &&
               PQresultErrorField(res, PG_DIAG_SQLSTATE)) {
        qgp_error_from_result(e, res);
        /* NOTE: the session ended as COMMIT went out: whether it applied is unknown
           (a FATAL can follow a durable commit, e.g. a cancelled wait for a
           synchronous standby), unless the server ended the session for sitting
           idle in its transaction (25P03), which is before COMMIT arrived. */
        if (qgp_result_fatal(res)) {
            qgp_conn_set_state(t->c, QGP_CONN_BROKEN);
            if (t->end == QGP_END_COMMIT &&
                strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "25P03"))
                e->outcome_unknown = true;
        }
    }
}

void qgp_end_take(struct qgp_trip *t, const struct qgp_part *p, const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    if (p->kind == QGP_PART_END)
        take_end(t, res);
    else if (p->kind == QGP_PART_AUDIT && st == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        t->audited = !strcmp(PQgetvalue(res, 0, 1), "t");
        const char *lsn = PQnfields(res) == 3 ? PQgetvalue(res, 0, 2) : "";
        if (!qg_lsn_parse(lsn, strlen(lsn), &t->c->commit_lsn))
            t->c->commit_lsn = 0;
    }
    else if (st == PGRES_PIPELINE_ABORTED)
        t->reset_skipped = true;
    else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        t->reset_failed = true;
}

enum reset_outcome {
    RESET_DONE,     /* the session is as DISCARD ALL leaves it, but for our statements */
    RESET_SKIPPED,  /* an earlier part of the pipeline failed: nothing of it ran */
    RESET_FAILED,   /* it ran and failed, or found state we did not leave there */
};

static enum reset_outcome reset_outcome(const struct qgp_trip *t)
{
    if (t->reset_skipped && !t->reset_failed)
        return RESET_SKIPPED;
    if (!t->reset_failed && !t->audited && PQstatus(t->c->pg) == CONNECTION_OK)
        qgp_log(t->c->m, QG_LOG_WARN, "a request left prepared statements on its connection "
                                      "that the service did not make; the connection is closed");
    return t->reset_failed || !t->audited ? RESET_FAILED : RESET_DONE;
}

void qgp_end_finish(struct qgp_trip *t)
{
    qg_conn *c = t->c;
    qg_error *e = &t->end_err;
    bool done = t->end == QGP_END_NONE || t->end_done;
    if (t->end == QGP_END_COMMIT && t->end_aborted)
        qg_error_set(e, QG_ERR_INTERNAL, "COMMIT did not run: an earlier statement failed");
    if (t->end == QGP_END_COMMIT && !done && e->status == QG_OK) {
        qgp_conn_lost(c, e, "committing");
        /* NOTE: COMMIT may have reached the server before the connection died. */
        e->outcome_unknown = true;
    }
    t->committed = t->end == QGP_END_COMMIT && done;
    enum reset_outcome r = reset_outcome(t);
    if (r == RESET_FAILED || PQstatus(c->pg) != CONNECTION_OK)
        qgp_conn_set_state(c, QGP_CONN_BROKEN); /* maybe ended, but not clean: never reused */
    else if (done && r == RESET_DONE)
        qgp_conn_set_state(c, QGP_CONN_ENDED);
    if (e->status != QG_OK && t->s == QG_OK) {
        t->s = e->status;
        if (t->err && t->err->status == QG_OK)
            *t->err = *e;
    }
}

/* A trip that ends before it starts, with status s. */
static void ended(struct qgp_trip *t, qg_conn *c, qg_status s)
{
    memset(t, 0, sizeof *t);
    t->c = c;
    t->parts = t->small;
    t->done = true;
    t->s = s;
}

/*
 * The transaction must still be ours: a connection whose transaction something
 * else ended is never trusted again.
 */
bool qgp_finish_start(struct qgp_trip *t, qg_conn *c, enum qgp_end end, qg_error *err)
{
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    if (ts == PQTRANS_IDLE) {
        qgp_conn_set_state(c, QGP_CONN_BROKEN);
        ended(t, c, qg_error_set(err, QG_ERR_TRANSACTION_CONTROL,
                                 "a statement ended the service's transaction; the service runs "
                                 "each request in its own transaction: remove COMMIT, ROLLBACK "
                                 "and the like from the statements"));
        return false;
    }
    if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR) {
        ended(t, c, qgp_conn_lost(c, err, "ending the transaction"));
        return false;
    }
    qgp_trip_begin(t, c, NULL, NULL, err);
    qgp_end_queue(t, end);
    qgp_trip_sync(t);
    return !t->done;
}

/*
 * NOTE: RESET ALL (in the reset) returns the startup options (statement_timeout,
 * TimeZone...) to the values the connection was opened with, as wanted.
 */
bool qgp_clean_start(struct qgp_trip *t, qg_conn *c)
{
    PGconn *pg = c->pg;
    PGTransactionStatusType ts = PQtransactionStatus(pg);
    if (qgp_conn_broken(c) || PQstatus(pg) != CONNECTION_OK ||
        PQpipelineStatus(pg) != PQ_PIPELINE_OFF || ts == PQTRANS_ACTIVE || ts == PQTRANS_UNKNOWN) {
        qgp_conn_set_state(c, QGP_CONN_BROKEN);
        ended(t, c, QG_ERR_DB_UNAVAILABLE);
        return false;
    }
    c->tx_read_only = false; /* whatever ran, undo all of it */
    qgp_trip_begin(t, c, NULL, NULL, NULL);
    if (c->drop_prepared)
        qgp_trip_text(t, QGP_PART_COMMAND, "DEALLOCATE ALL");
    qgp_end_queue(t, ts == PQTRANS_IDLE ? QGP_END_NONE : QGP_END_ROLLBACK);
    qgp_trip_sync(t);
    return !t->done;
}

void qgp_clean_result(struct qgp_trip *t)
{
    qg_conn *c = t->c;
    if (!t->synced || t->command_failed || c->state != QGP_CONN_ENDED) {
        qgp_conn_set_state(c, QGP_CONN_BROKEN);
        return;
    }
    c->drop_prepared = false;
    qgp_conn_set_state(c, QGP_CONN_IDLE);
}

bool qgp_conn_clean(qg_conn *c)
{
    struct qgp_trip t;
    if (qgp_clean_start(&t, c))
        (void)qgp_trip_wait(&t, 0);
    qgp_clean_result(&t);
    qgp_trip_free(&t);
    return !qgp_conn_broken(c);
}
