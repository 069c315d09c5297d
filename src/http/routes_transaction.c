/* POST /transaction: several statements, in order, all or nothing. */
#include <stdlib.h>
#include <string.h>

#include "cancel.h"
#include "handler.h"
#include "reply.h"
#include "request.h"
#include "routes.h"

struct tx_run {
    const struct qgh_tx_body *tx;
    struct qgh_cancel *cancel;
    struct qg_exec_options opt;
    qg_buf out; /* the results array's elements, comma-joined */
};

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
    size_t n = t->tx->n;
    const char **sql = calloc(n, sizeof *sql);
    const qg_params **params = calloc(n, sizeof *params);
    qg_result **res = calloc(n, sizeof *res);
    qg_status s = QG_OK;
    if (!sql || !params || !res)
        s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory running the transaction");
    for (size_t i = 0; i < n && s == QG_OK; i++) {
        sql[i] = t->tx->stmts[i].sql;
        params[i] = t->tx->stmts[i].params;
    }
    /* All statements in one pipeline; the core caps the sum of their rows. */
    if (s == QG_OK)
        s = qgh_exec_many(t->cancel, c, n, sql, params, &t->opt, res, err);
    for (size_t i = 0; i < n && s == QG_OK; i++) {
        append_result(&t->out, res[i]);
        if (t->out.oom)
            s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory building the results");
    }
    for (size_t i = 0; res && i < n; i++)
        qg_result_free(res[i]);
    free(res);
    free(params);
    free(sql);
    return s;
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
    struct tx_run t = {.tx = &tx, .cancel = call->cancel};
    t.opt.numbers_as_strings = tx.numbers_as_strings;
    t.opt.last = true;
    qg_buf_init(&t.out);
    tx.opt.caller = qgh_caller(call);
    qg_manager *m;
    qg_status s = qgh_manager_for(ctx, call, &m, &err);
    if (s == QG_OK)
        s = qg_transaction(m, &tx.opt, run_tx, &t, &err);
    if (s != QG_OK) {
        if (err.status == QG_OK)
            qg_error_set(&err, s, "the transaction failed");
        qgh_reply_error_as(call->reply, &err, call->who);
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
