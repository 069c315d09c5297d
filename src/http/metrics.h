/* metrics.c: request counters and their Prometheus exposition (GET /metrics is in routes.h). */
#ifndef QGH_METRICS_H
#define QGH_METRICS_H

#include <stddef.h>
#include "querygate/querygate.h"
#include "querygate/run.h"

typedef struct qgh_metrics qgh_metrics;
/* names: one endpoint label per index (borrowed, static); one more slot "other".
   replicas: how many read replicas the pool has (qg_replica_count). */
qgh_metrics *qgh_metrics_new(size_t n, const char *const *names, int replicas);
void qgh_metrics_free(qgh_metrics *mt);
void qgh_metrics_count(qgh_metrics *mt, size_t endpoint, int status, double seconds,
                       const char *sqlstate);
/* How long a request that ran statements waited for a database connection. */
void qgh_metrics_pool_wait(qgh_metrics *mt, double seconds);
/* A request's statements ran on the primary or on replica number `replica`. */
void qgh_metrics_served(qgh_metrics *mt, enum qg_served served, int replica);
/* A stream sent rows (counted once each) and bytes of body. */
void qgh_metrics_stream(qgh_metrics *mt, long long rows, size_t bytes);
/* The Prometheus text exposition (format 0.0.4) into out. */
void qgh_metrics_render(qgh_metrics *mt, qg_manager *m, qg_buf *out);

#endif
