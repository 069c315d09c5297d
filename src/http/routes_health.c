/* GET /health, /health/ready (database round trip), /health/live (none) and /pool. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "handler.h"
#include "reply.h"
#include "routes.h"

/* JSON has no NaN or Infinity. */
static double json_finite(double v)
{
    return isfinite(v) ? v : -1;
}

/* Appends "replicas":[...]: each replica's state, with its pool's figures when pool. */
static void replicas_json(const struct qgh_ctx *ctx, qg_buf *out, bool pool)
{
    qg_buf_puts(out, "\"replicas\":[");
    int n = qg_replica_count(ctx->m);
    for (int i = 0; i < n; i++) {
        struct qg_replica_stats rs;
        if (!qg_replica_stats(ctx->m, i, &rs))
            continue;
        qg_buf_puts(out, i ? ",{\"url\":" : "{\"url\":");
        qg_buf_json_string(out, rs.url, strlen(rs.url));
        qg_buf_puts(out, ",\"name\":");
        qg_buf_json_string(out, rs.name, strlen(rs.name));
        qg_buf_printf(out, ",\"usable\":%s,\"lag_ms\":", rs.usable ? "true" : "false");
        if (rs.lag_ms < 0)
            qg_buf_puts(out, "null");
        else
            qg_buf_printf(out, "%.0f", rs.lag_ms);
        char lsn[QG_LSN_BUF];
        qg_lsn_format(rs.replay_lsn, lsn);
        qg_buf_puts(out, ",\"replay_lsn\":");
        if (rs.replay_lsn)
            qg_buf_json_string(out, lsn, strlen(lsn));
        else
            qg_buf_puts(out, "null");
        if (!rs.usable) {
            qg_buf_puts(out, ",\"why\":");
            qg_buf_json_string(out, rs.why, strnlen(rs.why, sizeof rs.why));
        }
        if (pool)
            qg_buf_printf(out,
                          ",\"checked_out\":%d,\"idle\":%d,\"waiting\":%d,\"timeouts\":%llu,"
                          "\"errors\":%llu,\"connects\":%llu",
                          rs.pool.checked_out, rs.pool.idle, rs.pool.waiting, rs.pool.timeouts,
                          rs.pool.errors, rs.pool.connects);
        qg_buf_puts(out, "}");
    }
    qg_buf_puts(out, "]");
}

/* Appends the /pool object. */
static void pool_json(const struct qgh_ctx *ctx, qg_buf *out)
{
    struct qg_pool_stats ps;
    memset(&ps, 0, sizeof ps);
    qg_pool_stats(ctx->m, &ps);
    qg_buf_printf(out,
                   "{\"size\":%d,\"max_overflow\":%d,\"checked_out\":%d,\"idle\":%d,"
                   "\"overflow\":%d,\"waiting\":%d,\"timeout_s\":%g,\"recycle_s\":%g,",
                   ps.size, ps.max_overflow, ps.checked_out, ps.idle, ps.overflow, ps.waiting,
                   json_finite(ps.timeout_s), json_finite(ps.recycle_s));
    qg_buf_printf(out,
                   "\"connects\":%llu,\"recycles\":%llu,\"timeouts\":%llu,\"errors\":%llu,"
                   "\"retries\":%llu,\"health_connection\":%d,",
                   ps.connects, ps.recycles, ps.timeouts, ps.errors, ps.retries,
                   ps.health_connection);
    replicas_json(ctx, out, true);
    qg_buf_puts(out, "}");
}

/*
 * NOTE: /health/ready is open to load balancers, so without an admin key it
 * says only healthy or unhealthy: a database error may name hosts, and the
 * pool figures are operational detail.
 */
static void answer_health(const struct qgh_ctx *ctx, struct qgh_call *call,
                          const struct qg_health *h)
{
    qg_buf b;
    qg_buf_init(&b);
    if (!call->who || !(call->who->scopes & QGH_SCOPE_ADMIN)) {
        qg_buf_printf(&b, "{\"status\":\"%s\"}", h->healthy ? "healthy" : "unhealthy");
        qgh_reply_json(call->reply, h->healthy ? 200 : 503, &b);
        return;
    }
    if (!h->healthy) {
        qg_buf_puts(&b, "{\"status\":\"unhealthy\",\"error\":");
        const char *e = h->error[0] ? h->error : "the database check failed";
        qg_buf_json_string(&b, e, strnlen(e, sizeof h->error));
        qg_buf_puts(&b, ",");
        replicas_json(ctx, &b, false);
        qg_buf_puts(&b, "}");
        qgh_reply_json(call->reply, 503, &b);
        return;
    }
    qg_buf_printf(&b, "{\"status\":\"healthy\",\"connection_count\":%d,\"latency_ms\":%.3f,"
                       "\"pool\":",
                   h->connection_count, json_finite(h->latency_ms));
    pool_json(ctx, &b);
    qg_buf_puts(&b, ",");
    replicas_json(ctx, &b, false);
    qg_buf_puts(&b, "}");
    qgh_reply_json(call->reply, 200, &b);
}

void qgh_route_health(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    struct qg_health h;
    memset(&h, 0, sizeof h);
    qg_health_check(ctx->m, &h);
    answer_health(ctx, call, &h);
}

void qgh_route_ready(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    struct qg_health h;
    memset(&h, 0, sizeof h);
    /* Stopping: load balancers hear it first, while requests are still served. */
    if (ctx->unready && atomic_load(ctx->unready))
        snprintf(h.error, sizeof h.error, "the service is stopping (SIGTERM, SHUTDOWN_DELAY)");
    else
        qg_health_cached(ctx->m, ctx->cfg->health_cache_ms, &h);
    answer_health(ctx, call, &h);
}

void qgh_route_live(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    (void)ctx;
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_puts(&b, "{\"status\":\"alive\"}");
    qgh_reply_json(call->reply, 200, &b);
}

void qgh_route_pool(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    qg_buf b;
    qg_buf_init(&b);
    pool_json(ctx, &b);
    qgh_reply_json(call->reply, 200, &b);
}
