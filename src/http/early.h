/* early.c: answers written while the request body still arrives. */
#ifndef QGH_EARLY_H
#define QGH_EARLY_H

#include <stdbool.h>

struct MHD_Connection;
struct qgh_cors;
struct qgh_reply;

/*
 * Writes rep (with X-Request-Id, CORS headers and Connection: close) to c's client at
 * once, beside libmicrohttpd, which must not have queued an answer. Call it only from
 * the access handler while a body arrives; false when not all of it went out.
 */
bool qgh_answer_early(struct MHD_Connection *c, const struct qgh_cors *cors, const char *origin,
                      const char *request_id, const struct qgh_reply *rep);

#endif
