/* trace.c: the trace id of a W3C traceparent header. */
#ifndef QGH_TRACE_H
#define QGH_TRACE_H

#include <stdbool.h>

#define QGH_TRACE_ID_LEN 32
/* The trace id of a W3C traceparent header value (NULL: none); "" and false if it is not valid. */
bool qgh_traceparent(const char *value, char trace_id[QGH_TRACE_ID_LEN + 1]);

#endif
