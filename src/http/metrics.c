/* Request counters and latency histograms (lock-free), and GET /metrics in Prometheus text format 0.0.4. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "metrics.h"
#include "reply.h"
#include "routes.h"

#ifndef QG_VERSION
#define QG_VERSION "unknown"
#endif

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,   5,    10};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])
#define NSTATUS 500 /* statuses 100..599 */
#define NCLASS 36   /* SQLSTATE characters: 0-9 A-Z */

struct qgh_metrics {
    size_t n; /* endpoints, the last one "other" */
    const char **names;
    atomic_ullong *requests; /* [endpoint][status - 100] */
    atomic_ullong *hist;     /* [endpoint][bucket], the last bucket +Inf; not cumulative */
    atomic_ullong *sum_ns;   /* [endpoint] */
    atomic_ullong db_errors[NCLASS * NCLASS];
    atomic_ullong pwait[NBUCKETS + 1]; /* pool wait, not cumulative */
    atomic_ullong pwait_sum_ns;
    atomic_ullong stream_rows, stream_bytes;
    int replicas;
    atomic_ullong *served;   /* [0] the primary, [1 + i] replica i */
};

qgh_metrics *qgh_metrics_new(size_t n, const char *const *names, int replicas)
{
    qgh_metrics *mt = calloc(1, sizeof *mt);
    if (!mt)
        return NULL;
    mt->n = n + 1;
    mt->names = calloc(mt->n, sizeof *mt->names);
    mt->requests = calloc(mt->n * NSTATUS, sizeof *mt->requests);
    mt->hist = calloc(mt->n * (NBUCKETS + 1), sizeof *mt->hist);
    mt->sum_ns = calloc(mt->n, sizeof *mt->sum_ns);
    mt->replicas = replicas > 0 ? replicas : 0;
    mt->served = calloc((size_t)mt->replicas + 1, sizeof *mt->served);
    if (!mt->names || !mt->requests || !mt->hist || !mt->sum_ns || !mt->served) {
        qgh_metrics_free(mt);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        mt->names[i] = names[i];
    mt->names[n] = "other";
    return mt;
}

void qgh_metrics_free(qgh_metrics *mt)
{
    if (!mt)
        return;
    free(mt->names);
    free(mt->requests);
    free(mt->hist);
    free(mt->sum_ns);
    free(mt->served);
    free(mt);
}

static int class_index(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'Z')
        return 10 + c - 'A';
    return -1;
}

/* Adds one observation to a histogram of NBUCKETS + 1 counters and its sum. */
static void observe(atomic_ullong *hist, atomic_ullong *sum_ns, double seconds)
{
    size_t b = 0;
    while (b < NBUCKETS && seconds > buckets[b])
        b++;
    atomic_fetch_add_explicit(&hist[b], 1, memory_order_relaxed);
    if (seconds > 0)
        atomic_fetch_add_explicit(sum_ns, (unsigned long long)(seconds * 1e9),
                                  memory_order_relaxed);
}

void qgh_metrics_count(qgh_metrics *mt, size_t endpoint, int status, double seconds,
                       const char *sqlstate)
{
    if (endpoint >= mt->n)
        endpoint = mt->n - 1;
    if (status >= 100 && status < 100 + NSTATUS)
        atomic_fetch_add_explicit(&mt->requests[endpoint * NSTATUS + (size_t)(status - 100)], 1,
                                  memory_order_relaxed);
    observe(&mt->hist[endpoint * (NBUCKETS + 1)], &mt->sum_ns[endpoint], seconds);
    if (sqlstate && sqlstate[0] && sqlstate[1]) {
        int a = class_index(sqlstate[0]), c = class_index(sqlstate[1]);
        if (a >= 0 && c >= 0)
            atomic_fetch_add_explicit(&mt->db_errors[a * NCLASS + c], 1, memory_order_relaxed);
    }
}

void qgh_metrics_served(qgh_metrics *mt, enum qg_served served, int replica)
{
    if (served == QG_SERVED_PRIMARY)
        atomic_fetch_add_explicit(&mt->served[0], 1, memory_order_relaxed);
    else if (served == QG_SERVED_REPLICA && replica >= 0 && replica < mt->replicas)
        atomic_fetch_add_explicit(&mt->served[1 + replica], 1, memory_order_relaxed);
}

void qgh_metrics_pool_wait(qgh_metrics *mt, double seconds)
{
    observe(mt->pwait, &mt->pwait_sum_ns, seconds);
}

static unsigned long long load(atomic_ullong *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* A label value as the exposition format wants it: backslash, quote and newline escaped. */
static void put_label(qg_buf *out, const char *name, const char *value)
{
    qg_buf_printf(out, "%s=\"", name);
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            qg_buf_printf(out, "\\%c", *p);
        else if (*p == '\n')
            qg_buf_puts(out, "\\n");
        else
            qg_buf_append(out, p, 1);
    }
    qg_buf_puts(out, "\"");
}

static void render_requests(qgh_metrics *mt, qg_buf *out)
{
    qg_buf_puts(out, "# HELP querygate_http_requests_total HTTP requests answered, by endpoint "
                      "and status.\n# TYPE querygate_http_requests_total counter\n");
    for (size_t e = 0; e < mt->n; e++)
        for (int s = 0; s < NSTATUS; s++) {
            unsigned long long v = load(&mt->requests[e * NSTATUS + (size_t)s]);
            if (!v)
                continue;
            qg_buf_puts(out, "querygate_http_requests_total{");
            put_label(out, "endpoint", mt->names[e]);
            qg_buf_printf(out, ",status=\"%d\"} %llu\n", s + 100, v);
        }
}

/* One histogram series: name_bucket/_sum/_count, with endpoint="..." when endpoint is set. */
static void render_hist(qg_buf *out, const char *name, const char *endpoint,
                        atomic_ullong *hist, atomic_ullong *sum_ns)
{
    unsigned long long cum = 0;
    for (size_t b = 0; b <= NBUCKETS; b++) {
        cum += load(&hist[b]);
        qg_buf_printf(out, "%s_bucket{", name);
        if (endpoint) {
            put_label(out, "endpoint", endpoint);
            qg_buf_puts(out, ",");
        }
        if (b < NBUCKETS)
            qg_buf_printf(out, "le=\"%g\"} %llu\n", buckets[b], cum);
        else
            qg_buf_printf(out, "le=\"+Inf\"} %llu\n", cum);
    }
    const char *suffix[] = {"_sum", "_count"};
    for (int i = 0; i < 2; i++) {
        qg_buf_printf(out, "%s%s", name, suffix[i]);
        if (endpoint) {
            qg_buf_puts(out, "{");
            put_label(out, "endpoint", endpoint);
            qg_buf_puts(out, "}");
        }
        if (i == 0)
            qg_buf_printf(out, " %.9f\n", (double)load(sum_ns) / 1e9);
        else
            qg_buf_printf(out, " %llu\n", cum);
    }
}

static void render_histograms(qgh_metrics *mt, qg_buf *out)
{
    static const char name[] = "querygate_http_request_duration_seconds";
    qg_buf_printf(out, "# HELP %s Time from the request head to the queued answer.\n"
                        "# TYPE %s histogram\n", name, name);
    for (size_t e = 0; e < mt->n; e++)
        render_hist(out, name, mt->names[e], &mt->hist[e * (NBUCKETS + 1)], &mt->sum_ns[e]);
    static const char wname[] = "querygate_pool_wait_seconds";
    qg_buf_printf(out, "# HELP %s Time requests that run statements waited for a database "
                       "connection (the access log's pool wait).\n# TYPE %s histogram\n",
                  wname, wname);
    render_hist(out, wname, NULL, mt->pwait, &mt->pwait_sum_ns);
}

static void metric(qg_buf *out, const char *name, const char *type, const char *help,
                   unsigned long long v)
{
    qg_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, v);
}

static void gauge(qg_buf *out, const char *name, const char *help, long long v)
{
    qg_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, v);
}

/* One series per pool: the primary's, then each replica's (qg_replica_stats names). */
struct pool_series {
    int n;
    struct qg_replica_stats *s; /* [0] the primary's pool (no name), [1 + i] replica i */
};

#define POOL_FIELD(f) offsetof(struct qg_pool_stats, f)
static const struct {
    const char *name, *type, *help;
    size_t off;
    bool ull; /* unsigned long long, else int */
} pool_rows[] = {
    {"querygate_pool_size", "gauge", "Configured pool size (DB_POOL_SIZE, DB_READ_POOL_SIZE).",
     POOL_FIELD(size), false},
    {"querygate_pool_checked_out", "gauge", "Connections in use.", POOL_FIELD(checked_out), false},
    {"querygate_pool_idle", "gauge", "Open connections waiting in the pool.", POOL_FIELD(idle),
     false},
    {"querygate_pool_overflow", "gauge", "Open connections beyond the pool size.",
     POOL_FIELD(overflow), false},
    {"querygate_pool_waiting", "gauge", "Requests waiting for a connection.", POOL_FIELD(waiting),
     false},
    {"querygate_pool_connects_total", "counter", "Connections opened.", POOL_FIELD(connects), true},
    {"querygate_pool_recycles_total", "counter",
     "Connections replaced for age or a failed pre-ping.", POOL_FIELD(recycles), true},
    {"querygate_pool_timeouts_total", "counter",
     "Waits for a connection that gave up (503 pool_timeout).", POOL_FIELD(timeouts), true},
    {"querygate_pool_errors_total", "counter", "Failed connection attempts.", POOL_FIELD(errors),
     true},
    {"querygate_db_retries_total", "counter", "Transactions run again.", POOL_FIELD(retries), true},
};

static void pool_labels(qg_buf *out, const struct pool_series *ps, int i)
{
    if (i == 0) {
        qg_buf_puts(out, "{pool=\"primary\"}");
        return;
    }
    qg_buf_puts(out, "{pool=\"replica\",");
    put_label(out, "replica", ps->s[i].name);
    qg_buf_puts(out, "}");
}

static void render_pool(qgh_metrics *mt, qg_manager *m, qg_buf *out)
{
    struct pool_series ps = {.n = 1 + qg_replica_count(m)};
    ps.s = calloc((size_t)ps.n, sizeof *ps.s);
    if (!ps.s) {
        out->oom = true;
        return;
    }
    qg_pool_stats(m, &ps.s[0].pool);
    for (int i = 1; i < ps.n; i++)
        (void)qg_replica_stats(m, i - 1, &ps.s[i]);
    for (size_t k = 0; k < sizeof pool_rows / sizeof *pool_rows; k++) {
        qg_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", pool_rows[k].name, pool_rows[k].help,
                      pool_rows[k].name, pool_rows[k].type);
        for (int i = 0; i < ps.n; i++) {
            const char *f = (const char *)&ps.s[i].pool + pool_rows[k].off;
            qg_buf_puts(out, pool_rows[k].name);
            pool_labels(out, &ps, i);
            if (pool_rows[k].ull)
                qg_buf_printf(out, " %llu\n", *(const unsigned long long *)f);
            else
                qg_buf_printf(out, " %d\n", *(const int *)f);
        }
    }
    if (ps.n > 1) {
        qg_buf_puts(out, "# HELP querygate_replica_usable 1 while reads may go to the replica.\n"
                         "# TYPE querygate_replica_usable gauge\n");
        for (int i = 1; i < ps.n; i++) {
            qg_buf_puts(out, "querygate_replica_usable");
            pool_labels(out, &ps, i);
            qg_buf_printf(out, " %d\n", ps.s[i].usable);
        }
        qg_buf_puts(out, "# HELP querygate_replica_lag_seconds Replay lag at the last check "
                         "(-1: unknown, no primary answered).\n"
                         "# TYPE querygate_replica_lag_seconds gauge\n");
        for (int i = 1; i < ps.n; i++) {
            qg_buf_puts(out, "querygate_replica_lag_seconds");
            pool_labels(out, &ps, i);
            qg_buf_printf(out, " %.3f\n", ps.s[i].lag_ms < 0 ? -1 : ps.s[i].lag_ms / 1000.0);
        }
    }
    qg_buf_puts(out, "# HELP querygate_requests_served_total Requests whose statements ran, by "
                     "the pool that ran them.\n# TYPE querygate_requests_served_total counter\n");
    for (int i = 0; i < ps.n && i <= mt->replicas; i++) {
        qg_buf_puts(out, "querygate_requests_served_total");
        pool_labels(out, &ps, i);
        qg_buf_printf(out, " %llu\n", load(&mt->served[i]));
    }
    gauge(out, "querygate_health_connection",
          "The health check's own database connection (1 after a healthy check), "
          "not part of the pool.",
          ps.s[0].pool.health_connection);
    free(ps.s);
}

void qgh_metrics_stream(qgh_metrics *mt, long long rows, size_t bytes)
{
    if (!mt)
        return;
    atomic_fetch_add_explicit(&mt->stream_rows, (unsigned long long)rows, memory_order_relaxed);
    atomic_fetch_add_explicit(&mt->stream_bytes, bytes, memory_order_relaxed);
}

static void render_streams(qgh_metrics *mt, qg_buf *out)
{
    metric(out, "querygate_stream_rows_total", "counter",
           "Rows of streamed answers (Accept: application/x-ndjson).",
           load(&mt->stream_rows));
    metric(out, "querygate_stream_bytes_total", "counter",
           "Bytes of streamed answers' bodies.", load(&mt->stream_bytes));
}

static void render_db_errors(qgh_metrics *mt, qg_buf *out)
{
    static const char chars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    qg_buf_puts(out, "# HELP querygate_db_errors_total Database errors answered, by SQLSTATE "
                      "class.\n# TYPE querygate_db_errors_total counter\n");
    for (int i = 0; i < NCLASS * NCLASS; i++) {
        unsigned long long v = load(&mt->db_errors[i]);
        if (v)
            qg_buf_printf(out, "querygate_db_errors_total{class=\"%c%c\"} %llu\n",
                           chars[i / NCLASS], chars[i % NCLASS], v);
    }
}

void qgh_metrics_render(qgh_metrics *mt, qg_manager *m, qg_buf *out)
{
    render_requests(mt, out);
    render_histograms(mt, out);
    render_pool(mt, m, out);
    render_db_errors(mt, out);
    render_streams(mt, out);
    qg_buf_puts(out, "# HELP querygate_build_info The running version.\n"
                      "# TYPE querygate_build_info gauge\nquerygate_build_info{");
    put_label(out, "version", QG_VERSION);
    qg_buf_puts(out, "} 1\n");
}

void qgh_route_metrics(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    qg_buf b;
    qg_buf_init(&b);
    qgh_metrics_render(ctx->metrics, ctx->m, &b);
    qgh_reply_body(call->reply, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
}
