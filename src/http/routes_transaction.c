/* POST /transaction: several statements, in order, all or nothing, run with qg_run. */
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "reply.h"
#include "request.h"
#include "routes.h"

/* One request's transaction while it runs; freed by its end. */
struct tx_run {
    struct qgh_call *call;
    struct qgh_tx_body tx;
    const char **sql;
    const qg_params **params;
};

static void tx_run_free(struct tx_run *t)
{
    qgh_tx_body_free(&t->tx);
    free(t->sql);
    free(t->params);
    free(t);
}

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

static void answer_error(struct tx_run *t, qg_status s, const qg_error *err)
{
    qgh_reply_run_error(t->call, s, err, "the transaction failed", true);
}

static void tx_done(void *arg, qg_status s, qg_result **results, const qg_error *err)
{
    struct tx_run *t = arg;
    struct qgh_call *call = t->call;
    qgh_call_ran(call, call->run);
    call->run = NULL;
    if (s == QG_OK) {
        qg_buf b;
        qg_buf_init(&b);
        qg_buf_puts(&b, "{\"results\":[");
        qg_buf out;
        qg_buf_init(&out);
        for (size_t i = 0; i < t->tx.n; i++)
            append_result(&out, results[i]);
        qg_buf_append(&b, out.data ? out.data : "", out.len);
        qg_buf_puts(&b, "]}");
        if (out.oom)
            b.oom = true;
        qg_buf_free(&out);
        qgh_reply_json(call->reply, 200, &b);
    } else {
        answer_error(t, s, err);
    }
    tx_run_free(t);
    call->finish(call);
}

void qgh_route_transaction(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    qg_error err;
    qg_error_clear(&err);
    struct tx_run *t = calloc(1, sizeof *t);
    if (!t) {
        qgh_reply_fail(call->reply, "internal_error", "out of memory starting the transaction");
        call->finish(call);
        return;
    }
    t->call = call;
    qg_status s = qgh_parse_transaction(call->body, call->len, ctx->cfg->numbers_as_strings,
                                        &t->tx, &err);
    if (s != QG_OK) {
        qgh_reply_error(call->reply, &err);
        tx_run_free(t);
        call->finish(call);
        return;
    }
    size_t n = t->tx.n;
    t->sql = calloc(n, sizeof *t->sql);
    t->params = calloc(n, sizeof *t->params);
    for (size_t i = 0; t->sql && t->params && i < n; i++) {
        t->sql[i] = t->tx.stmts[i].sql;
        t->params[i] = t->tx.stmts[i].params;
    }
    t->tx.opt.caller = qgh_caller(call);
    t->tx.opt.claims = qgh_claims(call);
    struct qg_run_spec spec = {.n = n, .sql = t->sql, .params = t->params, .tx = t->tx.opt,
                               .numbers_as_strings = t->tx.numbers_as_strings,
                               .log_tag = call->request_id, .min_lsn = call->min_lsn};
    qg_manager *m = NULL;
    s = t->sql && t->params
            ? qgh_manager_for(ctx, call, &m, &err)
            : qg_error_set(&err, QG_ERR_INTERNAL, "out of memory starting the transaction");
    if (s == QG_OK && !qg_run_start(call->loop, m, &spec, tx_done, t, &call->run))
        s = qg_error_set(&err, QG_ERR_INTERNAL, "out of memory starting the transaction");
    if (s != QG_OK) {
        answer_error(t, s, &err);
        tx_run_free(t);
        call->finish(call);
    }
}
