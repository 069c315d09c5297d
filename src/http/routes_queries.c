/* GET /queries lists the named queries (QUERIES_DIR) with their parameters; POST /queries/NAME runs one. */
#include <string.h>

#include "auth.h"
#include "named.h"
#include "reply.h"
#include "request.h"
#include "routes.h"

#define PREFIX "/queries/"

/* The set in force with a reference for the caller, or NULL (no QUERIES_DIR support). */
static qg_queries *current(const struct qgh_ctx *ctx)
{
    return ctx->named ? qgh_named_get(ctx->named) : NULL;
}

void qgh_route_named_list(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    qg_queries *set = current(ctx);
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_puts(&b, "{\"queries\":[");
    for (size_t i = 0; i < qg_queries_count(set); i++) {
        const struct qg_query *q = qg_queries_at(set, i);
        qg_buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
        qg_buf_json_string(&b, q->name, strlen(q->name));
        qg_buf_printf(&b, ",\"mode\":\"%s\",\"params\":[", qg_query_mode_name(q->mode));
        for (size_t k = 0; k < q->nparams; k++) {
            if (k)
                qg_buf_putc(&b, ',');
            qg_buf_json_string(&b, q->params[k], strlen(q->params[k]));
        }
        qg_buf_puts(&b, "]}");
    }
    qg_buf_puts(&b, "]}");
    qg_queries_unref(set);
    qgh_reply_json(call->reply, 200, &b);
}

/* A read query needs the read scope, a write query write; named runs either. */
static bool may_run(const struct qgh_call *call, const struct qg_query *q, struct qgh_reply *rep)
{
    bool write = q->mode == QG_QUERY_WRITE;
    unsigned need = write ? QGH_SCOPE_WRITE : QGH_SCOPE_READ;
    if (!call->who || (call->who->scopes & (need | QGH_SCOPE_NAMED)))
        return true;
    qgh_reply_fail(rep, "forbidden",
                   "this API key lacks the %s scope (or named) that the %s query %.100s needs",
                   qg_query_mode_name(q->mode), qg_query_mode_name(q->mode), q->name);
    rep->www_authenticate = write ? "Bearer error=\"insufficient_scope\", scope=\"write\""
                                  : "Bearer error=\"insufficient_scope\", scope=\"read\"";
    return false;
}

void qgh_route_named_run(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    const char *name = call->path && !strncmp(call->path, PREFIX, strlen(PREFIX))
                           ? call->path + strlen(PREFIX)
                           : "";
    qg_queries *set = current(ctx);
    const struct qg_query *q = qg_queries_find(set, name);
    struct qgh_statement st;
    memset(&st, 0, sizeof st);
    qg_error err;
    qg_error_clear(&err);
    if (!q) {
        qgh_reply_fail(call->reply, "not_found",
                       "no named query %.100s; GET /queries lists them", name);
    } else if (may_run(call, q, call->reply)) {
        bool write = q->mode == QG_QUERY_WRITE;
        if (qgh_parse_named(call->body, call->len, q->sql, write, ctx->cfg->numbers_as_strings,
                            &st, &err) == QG_OK) {
            /* Known to repeat: prepared on its first use on a connection. */
            qgh_run_statement(ctx, call, write ? QGH_ANSWER_WRITE : QGH_ANSWER_QUERY, &st, true,
                              set);
            return;
        }
        qgh_reply_error(call->reply, &err);
    }
    qgh_statement_free(&st);
    qg_queries_unref(set);
    call->finish(call);
}
