/* One statement on a connection: bind, send (pipelined with BEGIN and ROLLBACK or COMMIT), stream rows into JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager_private.h"
#include "result_private.h"

/* The parameter types that take a JSON array as its JSON text, not as a PostgreSQL array. */
static bool wants_json_text(Oid type)
{
    return type == 0 || type == 114 /* json */ || type == 3802 /* jsonb */ ||
           type == 25 /* text */ || type == 1043 /* varchar */ || type == 705 /* unknown */;
}

static qg_status server_error(qg_conn *c, const qgp_sql *ps, const PGresult *res, qg_error *err,
                              const char *doing)
{
    if (PQstatus(c->pg) != CONNECTION_OK || !res || !PQresultErrorField(res, PG_DIAG_SQLSTATE))
        return qgp_conn_lost(c, err, doing);
    if (qgp_result_fatal(res))
        c->broken = true;
    qg_status s = qgp_error_from_result(err, res);
    if (err && err->position)
        err->position = qgp_sql_map_position(ps, err->position);
    return s;
}

/*
 * A JSON array can be a json value or a PostgreSQL array; only the server knows
 * which type it inferred, so ask it (Parse + Describe of the unnamed statement).
 */
static qg_status choose_array_forms(qg_conn *c, const qgp_sql *ps, const char **vals,
                                    const struct qgp_value *v, qg_error *err)
{
    if (c->begin_pending) {
        c->begin_pending = false;
        qg_status s = qgp_conn_command(c, c->begin_sql, err);
        if (s != QG_OK)
            return s;
    }
    PGresult *r = PQprepare(c->pg, "", ps->text, ps->nparams, NULL);
    qg_status s = QG_OK;
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
        s = server_error(c, ps, r, err, "preparing the statement");
    PQclear(r);
    if (s != QG_OK)
        return s;
    PGresult *d = PQdescribePrepared(c->pg, "");
    if (!d || PQresultStatus(d) != PGRES_COMMAND_OK) {
        PQclear(d);
        return qgp_conn_lost(c, err, "describing the statement");
    }
    for (int i = 0; i < ps->nparams; i++)
        if (v[i].is_array && v[i].pg_array && !wants_json_text(PQparamtype(d, i)))
            vals[i] = v[i].pg_array;
    PQclear(d);
    return QG_OK;
}

/* What the reader has seen so far. */
struct reader {
    qg_conn *c;
    const qgp_sql *ps;
    struct qgp_json_opts jopts;
    qg_buf *rows;
    qg_buf columns;
    qg_buf first;
    char **keys;
    int nkeys;
    long long nrows;
    bool too_large;
    qg_result *out;
};

static void start_rows(struct reader *rd, const PGresult *res)
{
    rd->nkeys = PQnfields(res);
    rd->keys = qgp_json_keys(res);
    qgp_json_columns(&rd->columns, res);
    qg_buf_putc(rd->rows, '[');
}

static void take_row(struct reader *rd, const PGresult *res)
{
    const struct qg_config *cfg = rd->c->m->cfg;
    if (rd->too_large)
        return;
    if (!rd->keys)
        start_rows(rd, res);
    if (rd->nrows)
        qg_buf_putc(rd->rows, ',');
    qgp_json_row(rd->rows, res, 0, rd->keys, &rd->jopts);
    if (rd->nrows == 0 && PQnfields(res) > 0) {
        if (PQgetisnull(res, 0, 0))
            qg_buf_puts(&rd->first, "null");
        else
            qgp_json_value(&rd->first, PQftype(res, 0), PQgetvalue(res, 0, 0),
                           (size_t)PQgetlength(res, 0, 0), &rd->jopts);
    }
    rd->nrows++;
    if (rd->nrows > cfg->max_result_rows || rd->rows->len > (size_t)cfg->max_result_bytes) {
        /* NOTE: stop the server producing rows nobody will read; the error it then
           reports (57014) is ours and is swallowed below. */
        rd->too_large = true;
        qg_conn_cancel(rd->c);
    }
}

static void take_command(struct reader *rd, const PGresult *res)
{
    const char *tag = PQcmdStatus((PGresult *)res);
    size_t n = strcspn(tag, " ");
    if (n >= sizeof rd->out->command)
        n = sizeof rd->out->command - 1;
    memcpy(rd->out->command, tag, n);
    rd->out->command[n] = '\0';
    const char *tuples = PQcmdTuples((PGresult *)res);
    rd->out->affected = *tuples ? atoll(tuples) : rd->nrows;
    if (!rd->keys && PQresultStatus(res) == PGRES_TUPLES_OK)
        start_rows(rd, res);
}

/* One result of the caller's statement. */
static qg_status take_result(struct reader *rd, const PGresult *res, qg_error *err)
{
    switch (PQresultStatus(res)) {
    case PGRES_SINGLE_TUPLE:
        take_row(rd, res);
        return QG_OK;
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
        take_command(rd, res);
        return QG_OK;
    case PGRES_EMPTY_QUERY:
    case PGRES_PIPELINE_ABORTED:
        return QG_OK;
    default: {
        const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (rd->too_large && st && !strcmp(st, "57014"))
            return QG_OK;
        return server_error(rd->c, rd->ps, res, err, "running the statement");
    }
    }
}

/* The pipeline's parts, in the order they were sent. */
enum part { PART_BEGIN, PART_PREPARE, PART_STATEMENT, PART_ROLLBACK, PART_COMMIT };

struct plan {
    enum part parts[4];
    int nparts;
    const char *name; /* prepared statement name, "" for unnamed, NULL for none */
    bool prepare;
    bool prepared;    /* the server accepted the PREPARE (it outlives a rollback) */
};

/*
 * Reads every part's results up to the sync; the first error wins. With COMMIT
 * in the pipeline, a connection lost without the server refusing an earlier
 * part leaves the outcome unknown: the server may have committed, and a reset
 * connection loses the answers still in flight.
 */
static qg_status read_pipeline(struct reader *rd, struct plan *p, qg_error *err)
{
    PGconn *pg = rd->c->pg;
    qg_status s = QG_OK;
    bool refused = false; /* the server answered a part before COMMIT with an error */
    for (int i = 0; i < p->nparts; i++) {
        if (p->parts[i] == PART_COMMIT) {
            /* After a failed part COMMIT did not run; its results only need reading. */
            qg_error ignored;
            qg_error_clear(&ignored);
            qg_status r = qgp_commit_read(rd->c, s == QG_OK ? err : &ignored);
            if (s == QG_OK)
                s = r;
            break;
        }
        if (p->parts[i] == PART_STATEMENT)
            PQsetSingleRowMode(pg);
        PGresult *res;
        while ((res = PQgetResult(pg)) != NULL) {
            qg_status r = QG_OK;
            if (PQresultErrorField(res, PG_DIAG_SQLSTATE))
                refused = true;
            if (p->parts[i] == PART_STATEMENT)
                r = take_result(rd, res, err);
            else if (p->parts[i] == PART_PREPARE && PQresultStatus(res) == PGRES_COMMAND_OK)
                p->prepared = true;
            else if (PQresultStatus(res) != PGRES_COMMAND_OK &&
                     PQresultStatus(res) != PGRES_PIPELINE_ABORTED)
                r = server_error(rd->c, rd->ps, res, err, "running the statement");
            if (s == QG_OK)
                s = r;
            PQclear(res);
        }
        if (PQstatus(pg) != CONNECTION_OK)
            break;
    }
    if (PQstatus(pg) == CONNECTION_OK) {
        PGresult *sync = PQgetResult(pg);
        bool synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
        PQclear(sync);
        if (synced && PQexitPipelineMode(pg))
            return s;
    }
    if (s == QG_OK)
        s = qgp_conn_lost(rd->c, err, "reading the result");
    rd->c->broken = true;
    if (p->parts[p->nparts - 1] == PART_COMMIT && !refused && err &&
        err->status == QG_ERR_DB_UNAVAILABLE)
        err->outcome_unknown = true;
    return s;
}

static bool send_pipeline(qg_conn *c, const qgp_sql *ps, const char **vals, const struct plan *p)
{
    PGconn *pg = c->pg;
    bool ok = PQenterPipelineMode(pg);
    for (int i = 0; ok && i < p->nparts; i++) {
        switch (p->parts[i]) {
        case PART_BEGIN:
            ok = PQsendQueryParams(pg, c->begin_sql, 0, NULL, NULL, NULL, NULL, 0);
            break;
        case PART_PREPARE:
            ok = PQsendPrepare(pg, p->name, ps->text, ps->nparams, NULL);
            break;
        case PART_STATEMENT:
            ok = p->name ? PQsendQueryPrepared(pg, p->name, ps->nparams, vals, NULL, NULL, 0)
                         : PQsendQueryParams(pg, ps->text, ps->nparams, NULL, vals, NULL, NULL, 0);
            break;
        case PART_ROLLBACK:
            ok = PQsendQueryParams(pg, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0);
            break;
        case PART_COMMIT:
            ok = qgp_commit_send(c);
            break;
        }
    }
    return ok && PQpipelineSync(pg);
}

static struct plan make_plan(qg_conn *c, struct qgp_stmt *st, bool arrays, bool last)
{
    struct plan p = {.nparts = 0};
    if (c->begin_pending)
        p.parts[p.nparts++] = PART_BEGIN;
    if (arrays) {
        p.name = ""; /* prepared and described by choose_array_forms */
    } else if (c->m->cfg->prepared_statements && !c->pooler && (st->prepared || st->uses >= 2)) {
        /* NOTE: prepare on the second use: one-off SQL costs the server no extra work. */
        p.name = st->name;
        p.prepare = !st->prepared;
        if (p.prepare)
            p.parts[p.nparts++] = PART_PREPARE;
    }
    p.parts[p.nparts++] = PART_STATEMENT;
    /* NOTE: rows are capped here, after the server ran the statement; a COMMIT sent
       along would stand even when the cap then fails the request. */
    if (last && c->tx_read_only)
        p.parts[p.nparts++] = PART_ROLLBACK;
    else if (last && st->rowless)
        p.parts[p.nparts++] = PART_COMMIT;
    return p;
}

static qg_status finish(struct reader *rd, qg_error *err)
{
    const struct qg_config *cfg = rd->c->m->cfg;
    if (rd->too_large)
        return qg_error_set(err, QG_ERR_RESULT_TOO_LARGE,
                            "the result is larger than the service returns at once (MAX_RESULT_ROWS "
                            "%ld rows, MAX_RESULT_BYTES %ld bytes); add a LIMIT or a WHERE clause, "
                            "page with keyset pagination, or raise the caps",
                            cfg->max_result_rows, cfg->max_result_bytes);
    if (rd->keys)
        qg_buf_putc(rd->rows, ']');
    if (rd->rows->oom || rd->columns.oom || rd->first.oom)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory building the result");
    qg_result *r = rd->out;
    r->row_count = rd->nrows;
    if (rd->keys)
        r->rows = qg_buf_steal(rd->rows, &r->rows_len);
    r->columns = qg_buf_steal(&rd->columns, &r->columns_len);
    r->first = qg_buf_steal(&rd->first, &r->first_len);
    return QG_OK;
}

/* A plan that failed because the server dropped or outdated our prepared statement. */
static void note_stale_plan(qg_conn *c, struct qgp_stmt *st, const qg_error *err)
{
    if (!err || !st->prepared)
        return;
    if (!strcmp(err->sqlstate, "26000") ||
        (!strcmp(err->sqlstate, "0A000") && strstr(err->message, "cached plan")))
        c->needs_reset = true; /* DEALLOCATE ALL; the transaction may run again */
}

static qg_status execute(qg_conn *c, struct qgp_stmt *st, const char **vals,
                         const struct qgp_value *v, bool arrays, const struct qg_exec_options *opt,
                         qg_result **out, qg_error *err)
{
    const qgp_sql *ps = st->parsed;
    qg_status s = arrays ? choose_array_forms(c, ps, vals, v, err) : QG_OK;
    if (s != QG_OK)
        return s;
    struct plan p = make_plan(c, st, arrays, opt && opt->last);
    struct reader rd = {.c = c, .ps = ps, .rows = &c->rows};
    rd.jopts.numbers_as_strings = opt ? opt->numbers_as_strings : c->m->cfg->numbers_as_strings;
    if (!(rd.out = calloc(1, sizeof *rd.out)))
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory");
    qg_buf_reset(&c->rows);
    qg_buf_init(&rd.columns);
    qg_buf_init(&rd.first);
    c->begin_pending = false;
    if (!send_pipeline(c, ps, vals, &p)) {
        s = qgp_conn_lost(c, err, "sending the statement");
        if (err && p.parts[p.nparts - 1] == PART_COMMIT)
            err->outcome_unknown = true; /* part of it may have gone out */
    } else {
        s = read_pipeline(&rd, &p, err);
    }
    if (p.prepared)
        st->prepared = true;
    if (s == QG_OK) {
        if (p.parts[p.nparts - 1] >= PART_ROLLBACK)
            c->tx_ended = true;
        st->rowless = !rd.keys;
        s = finish(&rd, err);
    } else {
        note_stale_plan(c, st, err);
    }
    qgp_json_keys_free(rd.keys, rd.nkeys);
    qg_buf_free(&rd.columns);
    qg_buf_free(&rd.first);
    if (s != QG_OK) {
        qg_result_free(rd.out);
        return s;
    }
    *out = rd.out;
    return QG_OK;
}

static qg_status bind_and_execute(qg_conn *c, struct qgp_stmt *st, const qg_params *params,
                                  const struct qg_exec_options *opt, qg_result **out, qg_error *err)
{
    const qgp_sql *ps = st->parsed;
    struct qgp_value stack_v[16];
    const char *stack_vals[16];
    struct qgp_value *v = stack_v;
    const char **vals = stack_vals;
    if (ps->nparams > 16) {
        v = calloc((size_t)ps->nparams, sizeof *v);
        vals = calloc((size_t)ps->nparams, sizeof *vals);
    }
    qg_status s = (!v || !vals) ? qg_error_set(err, QG_ERR_INTERNAL, "out of memory binding parameters")
                                : qgp_bind(ps, params, v, err);
    if (s == QG_OK) {
        bool arrays = false;
        for (int i = 0; i < ps->nparams; i++) {
            vals[i] = v[i].text;
            arrays |= v[i].is_array;
        }
        if (c->m->cfg->echo)
            qgp_log(c->m, QG_LOG_INFO, "sql: %.900s", ps->text);
        s = execute(c, st, vals, v, arrays, opt, out, err);
    }
    if (v != stack_v)
        free(v);
    if (vals != stack_vals)
        free(vals);
    return s;
}

qg_status qg_exec(qg_conn *c, const char *sql, const qg_params *params,
                  const struct qg_exec_options *opt, qg_result **out, qg_error *err)
{
    *out = NULL;
    if (!c || !sql)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "qg_exec needs a connection and an SQL text");
    if (c->broken)
        return qgp_conn_lost(c, err, "starting the statement");
    if (c->tx_ended)
        return qg_error_set(err, QG_ERR_INTERNAL,
                            "a statement after the one marked last in its transaction");
    struct qgp_stmt *st;
    char evicted[sizeof st->name];
    qg_status s = qgp_stmt_lookup(&c->stmts, sql, strlen(sql), &st, evicted, err);
    if (s != QG_OK)
        return s;
    if (evicted[0]) {
        char sql_dealloc[sizeof evicted + 16];
        snprintf(sql_dealloc, sizeof sql_dealloc, "DEALLOCATE %s", evicted);
        if ((s = qgp_conn_command(c, sql_dealloc, err)) != QG_OK)
            return s;
    }
    if (st->session_risk)
        c->needs_reset = true;
    return bind_and_execute(c, st, params, opt, out, err);
}
