/* POST /query, /update, /insert (and named queries): one statement (or a batch) in one transaction, run with qg_run. */
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "reply.h"
#include "request.h"
#include "routes.h"
#include "stream.h"

/* One request's statement while it runs; freed by its end. */
struct run {
    struct qgh_call *call;
    enum qgh_answer kind;
    struct qgh_statement st;
    bool prepare;     /* qg_run_spec.prepare */
    qg_queries *hold; /* the named query's set, kept until the end; or NULL */
    const char **sql; /* st.sql once per parameter set */
    long long affected;
    bool returning;   /* some result had columns (RETURNING) */
    qg_buf rows;      /* row objects joined by commas, no brackets */
    char *id;         /* JSON of the first RETURNING row's first value */
};

static void run_free(struct run *r)
{
    qgh_statement_free(&r->st);
    qg_queries_unref(r->hold);
    free(r->sql);
    qg_buf_free(&r->rows);
    free(r->id);
    free(r);
}

/* Adds a result's rows ("[{...},{...}]") to the concatenation. */
static qg_status collect_rows(struct run *r, const qg_result *res, qg_error *err)
{
    size_t cols;
    qg_result_columns_json(res, &cols);
    r->returning |= cols > 2;
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

static void answer_query(const qg_result *res, struct qgh_reply *rep)
{
    size_t rows_len, cols_len;
    const char *rows = qg_result_rows_json(res, &rows_len);
    const char *cols = qg_result_columns_json(res, &cols_len);
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_reserve(&b, rows_len + cols_len + 64);
    qg_buf_puts(&b, "{\"rows\":");
    qg_buf_append(&b, rows ? rows : "[]", rows ? rows_len : 2);
    qg_buf_printf(&b, ",\"row_count\":%lld,\"columns\":", qg_result_row_count(res));
    qg_buf_append(&b, cols ? cols : "[]", cols ? cols_len : 2);
    qg_buf_puts(&b, "}");
    qgh_reply_json(rep, 200, &b);
}

static void answer_writes(struct run *r, struct qgh_reply *rep)
{
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_printf(&b, "{\"affected_rows\":%lld", r->affected);
    if (r->kind == QGH_ANSWER_INSERT)
        qg_buf_printf(&b, ",\"id\":%s", r->id ? r->id : "null");
    /* A named write has rows when it has RETURNING; /insert always. */
    if (r->kind == QGH_ANSWER_INSERT || r->returning) {
        qg_buf_puts(&b, ",\"rows\":[");
        qg_buf_append(&b, r->rows.data ? r->rows.data : "", r->rows.len);
        qg_buf_puts(&b, "]");
    }
    qg_buf_puts(&b, "}");
    qgh_reply_json(rep, 200, &b);
}

/* /query is never a batch, and one statement has no index to name. */
static void answer_error(struct run *r, qg_status s, const qg_error *err)
{
    qgh_reply_run_error(r->call, s, err, "the statement failed", r->st.batch);
}

static void run_done(void *arg, qg_status s, qg_result **results, const qg_error *err)
{
    struct run *r = arg;
    struct qgh_call *call = r->call;
    qgh_call_ran(call, call->run);
    call->run = NULL;
    qg_error cerr;
    qg_error_clear(&cerr);
    if (s == QG_OK && r->kind == QGH_ANSWER_QUERY) {
        answer_query(results[0], call->reply);
    } else if (s == QG_OK) {
        for (size_t i = 0; i < r->st.nsets && s == QG_OK; i++) {
            r->affected += qg_result_affected_rows(results[i]);
            if (r->kind == QGH_ANSWER_INSERT || r->kind == QGH_ANSWER_WRITE)
                s = collect_rows(r, results[i], &cerr);
        }
        if (s == QG_OK)
            answer_writes(r, call->reply);
        else
            answer_error(r, s, &cerr);
    } else {
        answer_error(r, s, err);
    }
    run_free(r);
    call->finish(call);
}

/* Starts r (its statement parsed): the answer comes from run_done, or now on failure. */
static void start(const struct qgh_ctx *ctx, struct run *r)
{
    struct qgh_call *call = r->call;
    qg_error err;
    qg_error_clear(&err);
    size_t n = r->st.nsets;
    r->sql = calloc(n, sizeof *r->sql);
    for (size_t i = 0; r->sql && i < n; i++)
        r->sql[i] = r->st.sql;
    /* /update and /insert: the statement once per parameter set, all in one transaction. */
    struct qg_run_spec spec = {
        .n = n,
        .sql = r->sql,
        .params = (const qg_params *const *)r->st.sets,
        .tx = {.isolation = QG_ISOLATION_DEFAULT,
               .read_only = r->kind == QGH_ANSWER_QUERY,
               .caller = qgh_caller(call), .claims = qgh_claims(call)},
        .numbers_as_strings = r->st.numbers_as_strings,
        .prepare = r->prepare,
        .log_tag = call->request_id,
        .min_lsn = call->min_lsn,
    };
    qg_manager *m = NULL;
    qg_status s = r->sql ? qgh_manager_for(ctx, call, &m, &err)
                         : qg_error_set(&err, QG_ERR_INTERNAL,
                                        "out of memory starting the statement");
    if (s == QG_OK && !qg_run_start(call->loop, m, &spec, run_done, r, &call->run))
        s = qg_error_set(&err, QG_ERR_INTERNAL, "out of memory starting the statement");
    if (s != QG_OK) {
        answer_error(r, s, &err);
        run_free(r);
        call->finish(call);
    }
}

/* A new run for call; NULL (call answered and finished) when out of memory. */
static struct run *run_new(struct qgh_call *call, enum qgh_answer kind)
{
    struct run *r = calloc(1, sizeof *r);
    if (!r) {
        qgh_reply_fail(call->reply, "internal_error", "out of memory starting the statement");
        call->finish(call);
        return NULL;
    }
    r->call = call;
    r->kind = kind;
    return r;
}

static void statement_route(const struct qgh_ctx *ctx, struct qgh_call *call, enum qgh_answer kind)
{
    struct run *r = run_new(call, kind);
    if (!r)
        return;
    qg_error err;
    qg_error_clear(&err);
    if (qgh_parse_statement(call->body, call->len, kind != QGH_ANSWER_QUERY,
                            ctx->cfg->numbers_as_strings, &r->st, &err) != QG_OK) {
        qgh_reply_error(call->reply, &err);
        run_free(r);
        call->finish(call);
        return;
    }
    if (kind == QGH_ANSWER_QUERY && call->ndjson) {
        qgh_stream_statement(ctx, call, &r->st);
        run_free(r);
        return;
    }
    start(ctx, r);
}

void qgh_run_statement(const struct qgh_ctx *ctx, struct qgh_call *call, enum qgh_answer answer,
                       struct qgh_statement *st, bool prepare, qg_queries *hold)
{
    struct run *r = run_new(call, answer);
    if (!r) {
        qgh_statement_free(st);
        qg_queries_unref(hold);
        return;
    }
    r->st = *st;
    memset(st, 0, sizeof *st);
    r->prepare = prepare;
    r->hold = hold;
    if (answer == QGH_ANSWER_QUERY && call->ndjson) {
        qgh_stream_statement(ctx, call, &r->st); /* it copies the SQL: the set may go */
        run_free(r);
        return;
    }
    start(ctx, r);
}

void qgh_route_query(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    statement_route(ctx, call, QGH_ANSWER_QUERY);
}

void qgh_route_update(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    statement_route(ctx, call, QGH_ANSWER_UPDATE);
}

void qgh_route_insert(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    statement_route(ctx, call, QGH_ANSWER_INSERT);
}
