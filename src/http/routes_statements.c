/* POST /query, /update, /insert: one statement (or a batch) in one transaction. */
#include <stdlib.h>
#include <string.h>

#include "cancel.h"
#include "handler.h"
#include "reply.h"
#include "request.h"
#include "routes.h"

/* What one transaction attempt produced; reset at the start of each attempt. */
struct run {
    const struct qgh_statement *st;
    struct qgh_cancel *cancel;
    struct qg_exec_options opt;
    bool collect;          /* /insert: keep RETURNING rows and the id */
    qg_result *res;        /* /query's result */
    long long affected;
    qg_buf rows;          /* row objects joined by commas, no brackets */
    char *id;              /* JSON of the first RETURNING row's first value */
};

static void run_reset(struct run *r)
{
    qg_result_free(r->res);
    r->res = NULL;
    r->affected = 0;
    qg_buf_free(&r->rows);
    free(r->id);
    r->id = NULL;
}

static qg_status run_query(qg_conn *c, void *arg, qg_error *err)
{
    struct run *r = arg;
    run_reset(r);
    return qgh_exec(r->cancel, c, r->st->sql, r->st->sets[0], &r->opt, &r->res, err);
}

/* Adds a result's rows ("[{...},{...}]") to the concatenation. */
static qg_status collect_rows(struct run *r, const qg_result *res, qg_error *err)
{
    if (qg_result_row_count(res) <= 0)
        return QG_OK;
    if (!r->id) {
        size_t n;
        const char *v = qg_result_first_value_json(res, &n);
        r->id = strndup(v ? v : "null", v ? n : 4);
    }
    size_t len;
    const char *rows = qg_result_rows_json(res, &len);
    if (!rows || len < 2)
        return QG_OK;
    if (r->rows.len)
        qg_buf_append(&r->rows, ",", 1);
    qg_buf_append(&r->rows, rows + 1, len - 2);
    if (r->rows.oom || !r->id)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory collecting RETURNING rows");
    return QG_OK;
}

static qg_status run_writes(qg_conn *c, void *arg, qg_error *err)
{
    struct run *r = arg;
    run_reset(r);
    size_t n = r->st->nsets;
    const char **sql = calloc(n, sizeof *sql);
    qg_result **res = calloc(n, sizeof *res);
    if (!sql || !res) {
        free(sql);
        free(res);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory running the batch");
    }
    for (size_t i = 0; i < n; i++)
        sql[i] = r->st->sql;
    /* The whole batch in one pipeline; the core caps the RETURNING rows' sum. */
    qg_status s = qgh_exec_many(r->cancel, c, n, sql, (const qg_params *const *)r->st->sets,
                                &r->opt, res, err);
    if (s != QG_OK && !r->st->batch && err)
        err->statement_index = -1;
    for (size_t i = 0; i < n && s == QG_OK; i++) {
        r->affected += qg_result_affected_rows(res[i]);
        if (r->collect)
            s = collect_rows(r, res[i], err);
    }
    for (size_t i = 0; i < n; i++)
        qg_result_free(res[i]);
    free(res);
    free(sql);
    return s;
}

static void answer_query(struct run *r, struct qgh_reply *rep)
{
    size_t rows_len, cols_len;
    const char *rows = qg_result_rows_json(r->res, &rows_len);
    const char *cols = qg_result_columns_json(r->res, &cols_len);
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_reserve(&b, rows_len + cols_len + 64);
    qg_buf_puts(&b, "{\"rows\":");
    qg_buf_append(&b, rows ? rows : "[]", rows ? rows_len : 2);
    qg_buf_printf(&b, ",\"row_count\":%lld,\"columns\":", qg_result_row_count(r->res));
    qg_buf_append(&b, cols ? cols : "[]", cols ? cols_len : 2);
    qg_buf_puts(&b, "}");
    qgh_reply_json(rep, 200, &b);
}

static void answer_writes(struct run *r, struct qgh_reply *rep)
{
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_printf(&b, "{\"affected_rows\":%lld", r->affected);
    if (r->collect) {
        qg_buf_printf(&b, ",\"id\":%s,\"rows\":[", r->id ? r->id : "null");
        qg_buf_append(&b, r->rows.data ? r->rows.data : "", r->rows.len);
        qg_buf_puts(&b, "]");
    }
    qg_buf_puts(&b, "}");
    qgh_reply_json(rep, 200, &b);
}

enum kind { QUERY, UPDATE, INSERT };

static void statement_route(const struct qgh_ctx *ctx, struct qgh_call *call, enum kind kind)
{
    qg_error err;
    qg_error_clear(&err);
    struct qgh_statement st;
    if (qgh_parse_statement(call->body, call->len, kind != QUERY,
                            ctx->cfg->numbers_as_strings, &st, &err) != QG_OK) {
        qgh_reply_error(call->reply, &err);
        qgh_statement_free(&st);
        return;
    }
    struct run r = {.st = &st, .cancel = call->cancel, .collect = kind == INSERT};
    r.opt.numbers_as_strings = st.numbers_as_strings;
    r.opt.last = true; /* one round trip: BEGIN, the statement(s), ROLLBACK or COMMIT */
    struct qg_tx_options opt = {.isolation = QG_ISOLATION_DEFAULT, .read_only = kind == QUERY,
                                .caller = qgh_caller(call)};
    qg_manager *m;
    qg_status s = qgh_manager_for(ctx, call, &m, &err);
    if (s == QG_OK)
        s = qg_transaction(m, &opt, kind == QUERY ? run_query : run_writes, &r, &err);
    if (s != QG_OK) {
        if (err.status == QG_OK)
            qg_error_set(&err, s, "the statement failed");
        qgh_reply_error_as(call->reply, &err, call->who);
    } else if (kind == QUERY) {
        answer_query(&r, call->reply);
    } else {
        answer_writes(&r, call->reply);
    }
    run_reset(&r);
    qgh_statement_free(&st);
}

void qgh_route_query(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    statement_route(ctx, call, QUERY);
}

void qgh_route_update(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    statement_route(ctx, call, UPDATE);
}

void qgh_route_insert(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    statement_route(ctx, call, INSERT);
}
