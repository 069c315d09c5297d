/* log.c: stderr lines, text or JSON. */
#ifndef QGH_LOG_H
#define QGH_LOG_H

#include <stdbool.h>
#include "querygate/querygate.h"

void qgh_log_setup(enum qg_log_format format, enum qg_log_level level);
void qgh_log(enum qg_log_level level, const char *fmt, ...) QG_PRINTF(2, 3);
/* Names the request this thread runs in its log lines until called with NULL. */
void qgh_log_request(const char *request_id);
/* Whether a line at level would be written. */
bool qgh_log_enabled(enum qg_log_level level);
/* One line per request, at info; never a body or parameter. wait_ms: in the pool's line
   (0 for a request that ran no statement). trace_id: of the request's traceparent
   header, "" if none. */
void qgh_log_access(const char *method, const char *path, int status, double ms,
                    double wait_ms, const char *request_id, const char *trace_id);
/* A qg_log_fn for qg_manager_set_log (arg unused). */
void qgh_log_core(void *arg, enum qg_log_level level, const char *msg);

#endif
