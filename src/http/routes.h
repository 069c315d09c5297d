/* routes_*.c and metrics.c: the handlers of the route table (router.c). */
#ifndef QGH_ROUTES_H
#define QGH_ROUTES_H

#include "handler.h"

void qgh_route_query(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_update(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_insert(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_transaction(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_health(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_ready(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_live(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_pool(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_metrics(const struct qgh_ctx *ctx, struct qgh_call *call);
void qgh_route_openapi(const struct qgh_ctx *ctx, struct qgh_call *call);

#endif
