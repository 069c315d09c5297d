/* routes_*.c and metrics.c: the handlers of the route table (router.c). */
#ifndef QGH_ROUTES_H
#define QGH_ROUTES_H

#include "handler.h"
#include "querygate/queries.h"

struct qgh_statement;

void qgh_route_query(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_update(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_insert(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_transaction(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_named_run(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_named_list(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_health(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_ready(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_live(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_pool(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_metrics(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_openapi(const struct qgh_ctx *ctx, struct qgh_call *call);

/* The answer a statement gets, by endpoint. */
enum qgh_answer {
    QGH_ANSWER_QUERY,  /* /query: read only; rows, row_count, columns */
    QGH_ANSWER_UPDATE, /* /update: affected_rows */
    QGH_ANSWER_INSERT, /* /insert: affected_rows, id, rows */
    QGH_ANSWER_WRITE   /* a named write: affected_rows, plus rows when it has RETURNING */
};

/*
 * Runs st (parsed; taken, st is left empty) for call as the endpoint of
 * `answer` does, then calls call->finish. prepare: qg_run_spec.prepare.
 * hold (may be NULL) is a reference the run keeps until its end and then drops:
 * the named query set st.sql comes from.
 */
void qgh_run_statement(const struct qgh_ctx *ctx, struct qgh_call *call, enum qgh_answer answer,
                       struct qgh_statement *st, bool prepare, qg_queries *hold);

#endif
