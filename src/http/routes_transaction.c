/* POST /transaction: several statements, in order, all or nothing. */
#include <stdlib.h>
#include <string.h>

#include "http.h"

struct tx_run {
    const struct qgh_tx_body *tx;
    struct qgh_cancel *cancel;
    struct qg_exec_options opt;
    long max_bytes;
    qg_buf out; /* the results array's elements, comma-joined */
};

/* The most append_result adds around a result's rows: keys, command tag and counts. */
enum { RESULT_FRAME = 128 };

static void append_result(qg_buf *b, const qg_result *res)
{
    size_t len;
    const char *rows = qg_result_rows_json(res, &len);
    const char *cmd = qg_result_command(res);
    if (b->len)
        qg_buf_append(b, ",", 1);
    qg_buf_puts(b, "{\"command\":");
    qg_buf_json_string(b, cmd ? cmd : "", cmd ? strlen(cmd) : 0);
    qg_buf_printf(b, ",\"affected_rows\":%lld,\"rows\":", qg_result_affected_rows(res));
    qg_buf_append(b, rows ? rows : "[]", rows ? len : 2);
    qg_buf_printf(b, ",\"row_count\":%lld}", qg_result_row_count(res));
}

/* May run more than once (the core retries whole transactions): starts afresh. */
static qg_status run_tx(qg_conn *c, void *arg, qg_error *err)
{
    struct tx_run *t = arg;
    qg_buf_free(&t->out);
    for (size_t i = 0; i < t->tx->n; i++) {
        qg_result *res = NULL;
        /* The last statement may take ROLLBACK or COMMIT along; a COMMIT only comes
           with no rows, so the size check below can then fail only on the frame. */
        t->opt.last = i + 1 == t->tx->n &&
                      (t->tx->opt.read_only || (long)t->out.len + RESULT_FRAME <= t->max_bytes);
        qg_status s = qgh_exec(t->cancel, c, t->tx->stmts[i].sql, t->tx->stmts[i].params,
                               &t->opt, &res, err);
        if (s == QG_OK) {
            append_result(&t->out, res);
            if (t->out.oom)
                s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory building the results");
            else if (t->max_bytes > 0 && t->out.len > (size_t)t->max_bytes)
                s = qg_error_set(err, QG_ERR_RESULT_TOO_LARGE,
                                 "the results exceed %ld bytes (MAX_RESULT_BYTES); "
                                 "return fewer rows or split the transaction",
                                 t->max_bytes);
        }
        qg_result_free(res);
        if (s != QG_OK) {
            if (err)
                err->statement_index = (int)i;
            return s;
        }
    }
    return QG_OK;
}

void qgh_route_transaction(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    qg_error err;
    qg_error_clear(&err);
    struct qgh_tx_body tx;
    if (qgh_parse_transaction(call->body, call->len, ctx->cfg->numbers_as_strings, &tx, &err) !=
        QG_OK) {
        qgh_reply_error(call->reply, &err);
        qgh_tx_body_free(&tx);
        return;
    }
    struct tx_run t = {.tx = &tx, .cancel = call->cancel, .max_bytes = ctx->cfg->max_result_bytes};
    t.opt.numbers_as_strings = tx.numbers_as_strings;
    qg_buf_init(&t.out);
    qg_manager *m;
    qg_status s = qgh_manager_for(ctx, call, &m, &err);
    if (s == QG_OK)
        s = qg_transaction(m, &tx.opt, run_tx, &t, &err);
    if (s != QG_OK) {
        if (err.status == QG_OK)
            qg_error_set(&err, s, "the transaction failed");
        qgh_reply_error(call->reply, &err);
    } else {
        qg_buf b;
        qg_buf_init(&b);
        qg_buf_puts(&b, "{\"results\":[");
        qg_buf_append(&b, t.out.data ? t.out.data : "", t.out.len);
        qg_buf_puts(&b, "]}");
        qgh_reply_json(call->reply, 200, &b);
    }
    qg_buf_free(&t.out);
    qgh_tx_body_free(&tx);
}
