/* One statement on a connection: bind, send, stream rows into JSON within the caps. */
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

/*
 * A JSON array can be a json value or a PostgreSQL array; only the server knows
 * which type it inferred, so ask it (Parse + Describe) when an array is bound.
 */
static qg_status choose_array_forms(qg_conn *c, const qgp_sql *ps, const char **vals,
                                    const struct qgp_value *v, qg_error *err)
{
    PGresult *r = PQprepare(c->pg, "", ps->text, ps->nparams, NULL);
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        qg_status s = (r && PQresultErrorField(r, PG_DIAG_SQLSTATE))
                          ? qgp_error_from_result(err, r)
                          : qgp_conn_lost(c, err, "preparing the statement");
        if (err && err->position)
            err->position = qgp_sql_map_position(ps, err->position);
        PQclear(r);
        return s;
    }
    PQclear(r);
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
    qgp_buf *rows;
    qgp_buf columns;
    qgp_buf first;
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
    qgp_buf_putc(rd->rows, '[');
}

static void take_row(struct reader *rd, const PGresult *res)
{
    const struct qg_config *cfg = rd->c->m->cfg;
    if (rd->too_large)
        return;
    if (!rd->keys)
        start_rows(rd, res);
    if (rd->nrows)
        qgp_buf_putc(rd->rows, ',');
    qgp_json_row(rd->rows, res, 0, rd->keys, &rd->jopts);
    if (rd->nrows == 0 && PQnfields(res) > 0) {
        if (PQgetisnull(res, 0, 0))
            qgp_buf_puts(&rd->first, "null");
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

static qg_status take_error(struct reader *rd, const PGresult *res, qg_error *err)
{
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (rd->too_large && st && !strcmp(st, "57014"))
        return QG_OK;
    if (PQstatus(rd->c->pg) != CONNECTION_OK || !st)
        return qgp_conn_lost(rd->c, err, "running the statement");
    qg_status s = qgp_error_from_result(err, res);
    if (err && err->position)
        err->position = qgp_sql_map_position(rd->ps, err->position);
    return s;
}

/* Reads every result of the statement; the first error wins, the rest is drained. */
static qg_status read_results(struct reader *rd, qg_error *err)
{
    qg_status s = QG_OK;
    PGresult *res;
    while ((res = PQgetResult(rd->c->pg)) != NULL) {
        switch (PQresultStatus(res)) {
        case PGRES_SINGLE_TUPLE:
            take_row(rd, res);
            break;
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK:
            take_command(rd, res);
            break;
        case PGRES_EMPTY_QUERY:
            break;
        default:
            if (s == QG_OK)
                s = take_error(rd, res, err);
        }
        PQclear(res);
    }
    if (s == QG_OK && PQstatus(rd->c->pg) != CONNECTION_OK)
        s = qgp_conn_lost(rd->c, err, "reading the result");
    return s;
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
        qgp_buf_putc(rd->rows, ']');
    if (rd->rows->oom || rd->columns.oom || rd->first.oom)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory building the result");
    qg_result *r = rd->out;
    r->row_count = rd->nrows;
    if (rd->keys)
        r->rows = qgp_buf_steal(rd->rows, &r->rows_len);
    r->columns = qgp_buf_steal(&rd->columns, &r->columns_len);
    r->first = qgp_buf_steal(&rd->first, &r->first_len);
    return QG_OK;
}

static qg_status send_statement(qg_conn *c, const qgp_sql *ps, const struct qgp_value *v,
                                qg_error *err)
{
    const char *stack_vals[16];
    const char **vals = stack_vals;
    bool arrays = false;
    if (ps->nparams > 16 && !(vals = malloc(sizeof *vals * (size_t)ps->nparams)))
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory binding parameters");
    for (int i = 0; i < ps->nparams; i++) {
        vals[i] = v[i].text;
        arrays |= v[i].is_array;
    }
    qg_status s = arrays ? choose_array_forms(c, ps, vals, v, err) : QG_OK;
    if (s == QG_OK) {
        int ok = arrays ? PQsendQueryPrepared(c->pg, "", ps->nparams, vals, NULL, NULL, 0)
                        : PQsendQueryParams(c->pg, ps->text, ps->nparams, NULL, vals, NULL, NULL, 0);
        if (!ok)
            s = qgp_conn_lost(c, err, "sending the statement");
        else
            PQsetSingleRowMode(c->pg);
    }
    if (vals != stack_vals)
        free(vals);
    return s;
}

static qg_status run(qg_conn *c, const qgp_sql *ps, const qg_params *params,
                     const struct qg_exec_options *opt, qg_result **out, qg_error *err)
{
    struct qgp_value stack_v[16];
    struct qgp_value *v = stack_v;
    if (ps->nparams > 16 && !(v = calloc((size_t)ps->nparams, sizeof *v)))
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory binding parameters");
    qg_status s = qgp_bind(ps, params, v, err);
    if (s == QG_OK) {
        if (c->m->cfg->echo)
            qgp_log(c->m, QG_LOG_INFO, "sql: %.900s", ps->text);
        s = send_statement(c, ps, v, err);
    }
    if (v != stack_v)
        free(v);
    if (s != QG_OK)
        return s;

    struct reader rd = {.c = c, .ps = ps, .rows = &c->rows};
    rd.jopts.numbers_as_strings = opt ? opt->numbers_as_strings : c->m->cfg->numbers_as_strings;
    qgp_buf_reset(&c->rows);
    qgp_buf_init(&rd.columns);
    qgp_buf_init(&rd.first);
    rd.out = calloc(1, sizeof *rd.out);
    if (!rd.out)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory");
    s = read_results(&rd, err);
    if (s == QG_OK)
        s = finish(&rd, err);
    qgp_json_keys_free(rd.keys, rd.nkeys);
    qgp_buf_free(&rd.columns);
    qgp_buf_free(&rd.first);
    if (s != QG_OK) {
        qg_result_free(rd.out);
        return s;
    }
    *out = rd.out;
    return QG_OK;
}

qg_status qg_exec(qg_conn *c, const char *sql, const qg_params *params,
                  const struct qg_exec_options *opt, qg_result **out, qg_error *err)
{
    *out = NULL;
    if (!c || !sql)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "qg_exec needs a connection and an SQL text");
    if (c->broken)
        return qgp_conn_lost(c, err, "starting the statement");
    qgp_sql *ps;
    qg_status s = qgp_sql_parse(sql, strlen(sql), &ps, err);
    if (s != QG_OK)
        return s;
    s = run(c, ps, params, opt, out, err);
    qgp_sql_free(ps);
    return s;
}
