/* One statement's results, row by row as they arrive, into a qg_result: JSON rows, caps, the command tag. */
#include <stdlib.h>
#include <string.h>

#include "reader.h"
#include "result_private.h"
#include "trip.h"


qg_status qgp_refuse_transaction_control(qg_error *err)
{
    return qg_error_set(err, QG_ERR_TRANSACTION_CONTROL,
                        "the statement controls the transaction (BEGIN, COMMIT, ROLLBACK, "
                        "SAVEPOINT, SET TRANSACTION...); the service runs each request in its "
                        "own transaction: send the statements alone (several at once through "
                        "/transaction, with its isolation and read_only options)");
}

qg_status qgp_refuse_copy(qg_error *err)
{
    return qg_error_set(err, QG_ERR_UNSUPPORTED_STATEMENT,
                        "COPY is not supported over this API; read with SELECT and write "
                        "with INSERT (a batch: params as an array)");
}


static void start_rows(struct qgp_reader *rd, const PGresult *res)
{
    rd->nkeys = PQnfields(res);
    rd->keys = qgp_json_keys(res);
    qgp_json_columns(&rd->columns, res);
    if (!rd->stream)
        qg_buf_putc(&rd->rows, '[');
}

/* A stream's row: one line, the same JSON object as in an ordinary answer. */
static void stream_row(struct qgp_reader *rd, const PGresult *res)
{
    if (!rd->keys)
        start_rows(rd, res);
    rd->nrows++;
    if (rd->discard)
        return;
    qgp_json_row(&rd->rows, res, 0, rd->keys, &rd->jopts);
    qg_buf_putc(&rd->rows, '\n');
}

static void take_row(struct qgp_reader *rd, const PGresult *res)
{
    const struct qg_config *cfg = rd->c->m->cfg;
    if (rd->stream) {
        stream_row(rd, res);
        return;
    }
    if (rd->too_large)
        return;
    if (!rd->keys)
        start_rows(rd, res);
    if (rd->nrows)
        qg_buf_putc(&rd->rows, ',');
    qgp_json_row(&rd->rows, res, 0, rd->keys, &rd->jopts);
    if (rd->nrows == 0 && PQnfields(res) > 0) {
        if (PQgetisnull(res, 0, 0))
            qg_buf_puts(&rd->first, "null");
        else
            qgp_json_value(&rd->first, PQftype(res, 0), PQgetvalue(res, 0, 0),
                           (size_t)PQgetlength(res, 0, 0), &rd->jopts);
    }
    rd->nrows++;
    if (rd->nrows > cfg->max_result_rows ||
        rd->before + rd->rows.len > (size_t)cfg->max_result_bytes) {
        /* NOTE: stop the server producing rows nobody will read; the error it then
           reports (57014) is ours and is swallowed below. */
        rd->too_large = true;
        if (rd->cancel)
            rd->cancel(rd->cancel_arg);
    }
}

/*
 * NOTE: the backstop behind the keyword check (qgp_sql.kind): the server's own
 * command tag says what ran, whatever spelling got it there.
 */
static bool ends_transactions(const char *tag)
{
    static const char *const tags[] = {"BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK",
                                       "SAVEPOINT", "RELEASE", "PREPARE TRANSACTION",
                                       "COMMIT PREPARED", "ROLLBACK PREPARED"};
    for (size_t i = 0; i < sizeof tags / sizeof *tags; i++)
        if (!strcmp(tag, tags[i]))
            return true;
    return false;
}

static qg_status take_command(struct qgp_reader *rd, const PGresult *res, qg_error *err)
{
    const char *tag = PQcmdStatus((PGresult *)res);
    if (ends_transactions(tag) && qgp_conn_in_scope(rd->c)) {
        qgp_conn_set_state(rd->c, QGP_CONN_BROKEN);
        return qgp_refuse_transaction_control(err);
    }
    size_t n = strcspn(tag, " ");
    if (n >= sizeof rd->out->command)
        n = sizeof rd->out->command - 1;
    memcpy(rd->out->command, tag, n);
    rd->out->command[n] = '\0';
    const char *tuples = PQcmdTuples((PGresult *)res);
    rd->out->affected = *tuples ? atoll(tuples) : rd->nrows;
    if (!rd->keys && PQresultStatus(res) == PGRES_TUPLES_OK)
        start_rows(rd, res);
    return QG_OK;
}


/* One result of the caller's statement. */
qg_status qgp_reader_take(struct qgp_reader *rd, const PGresult *res, qg_error *err)
{
    if (qgp_endless(res)) {
        qgp_conn_set_state(rd->c, QGP_CONN_BROKEN); /* the copy never ends: drop it */
        return qgp_refuse_copy(err);
    }
    switch (PQresultStatus(res)) {
    case PGRES_SINGLE_TUPLE:
        take_row(rd, res);
        return QG_OK;
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
        return take_command(rd, res, err);
    case PGRES_EMPTY_QUERY:
    case PGRES_PIPELINE_ABORTED:
        return QG_OK;
    case PGRES_BAD_RESPONSE:
    case PGRES_FATAL_ERROR:
    default: {
        const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (rd->too_large && st && !strcmp(st, "57014"))
            return QG_OK;
        return qgp_server_error(rd->c, rd->ps, res, err, "running the statement");
    }
    }
}

static qg_status too_large(const struct qgp_reader *rd, qg_error *err)
{
    const struct qg_config *cfg = rd->c->m->cfg;
    return qg_error_set(err, QG_ERR_RESULT_TOO_LARGE,
                        "the result is larger than the service returns at once (MAX_RESULT_ROWS "
                        "%ld rows, MAX_RESULT_BYTES %ld bytes%s); add a LIMIT or a WHERE clause, "
                        "page with keyset pagination, or raise the caps",
                        cfg->max_result_rows, cfg->max_result_bytes,
                        rd->before ? " over all statements" : "");
}

/* The reader's buffers become its result. */
qg_status qgp_reader_finish(struct qgp_reader *rd, qg_error *err)
{
    if (rd->keys && !rd->stream)
        qg_buf_putc(&rd->rows, ']');
    if (rd->rows.oom || rd->columns.oom || rd->first.oom)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory building the result");
    qg_result *r = rd->out;
    r->row_count = rd->nrows;
    if (rd->keys && !rd->stream)
        r->rows = qg_buf_steal(&rd->rows, &r->rows_len);
    r->columns = qg_buf_steal(&rd->columns, &r->columns_len);
    r->first = qg_buf_steal(&rd->first, &r->first_len);
    return QG_OK;
}


bool qgp_reader_init(struct qgp_reader *rd, qg_conn *c, const qgp_sql *ps, size_t before,
                     bool numbers_as_strings)
{
    memset(rd, 0, sizeof *rd);
    rd->c = c;
    rd->ps = ps;
    rd->before = before;
    rd->jopts.numbers_as_strings = numbers_as_strings;
    qg_buf_init(&rd->rows);
    qg_buf_init(&rd->columns);
    qg_buf_init(&rd->first);
    rd->out = calloc(1, sizeof *rd->out);
    return rd->out != NULL;
}

qg_status qgp_reader_end(struct qgp_reader *rd, qg_error *err)
{
    return rd->too_large ? too_large(rd, err) : QG_OK;
}

void qgp_reader_free(struct qgp_reader *rd)
{
    qgp_json_keys_free(rd->keys, rd->nkeys);
    rd->keys = NULL;
    qg_buf_free(&rd->rows);
    qg_buf_free(&rd->columns);
    qg_buf_free(&rd->first);
    qg_result_free(rd->out);
    rd->out = NULL;
}
