/* The helpers every handler uses: which pool runs a request, and who asks. */
#include "auth.h"
#include "handler.h"
#include "log.h"
#include "reply.h"

qg_status qgh_manager_for(const struct qgh_ctx *ctx, const struct qgh_call *call,
                          qg_manager **out, qg_error *err)
{
    *out = ctx->m;
    if (!call->who || !call->who->role[0])
        return QG_OK;
    return qg_manager_for_role(ctx->m, call->who->role, out, err);
}

void qgh_call_ran(struct qgh_call *call, const qg_run *run)
{
    call->pool_wait_s = qg_run_pool_wait(run);
    call->served = qg_run_served_by(run, &call->replica);
    call->commit_lsn = qg_run_commit_lsn(run);
}

uint64_t qgh_caller(const struct qgh_call *call)
{
    return call->who ? call->who->caller : 0;
}

const char *qgh_claims(const struct qgh_call *call)
{
    return call->who ? call->who->claims : NULL;
}

void qgh_reply_run_error(struct qgh_call *call, qg_status s, const qg_error *err,
                         const char *what, bool with_index)
{
    qg_error e;
    qg_error_clear(&e);
    if (err)
        e = *err;
    if (e.status == QG_OK)
        qg_error_set(&e, s, "%s", what);
    if (!with_index)
        e.statement_index = -1;
    /* A run ends on a loop that serves many requests: name this one in the log. */
    qgh_log_request(call->request_id);
    qgh_reply_error_as(call->reply, &e, call->who);
    qgh_log_request(NULL);
}
