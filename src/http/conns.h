/* conns.c: the connection cap and the deadline of each request. */
#ifndef QGH_CONNS_H
#define QGH_CONNS_H

#include <stdbool.h>
#include "querygate/querygate.h"

typedef struct qgh_conns qgh_conns;
struct qgh_conn;

/* Starts the sweeper thread. *out is new; qgh_conns_free stops and frees it. */
qg_status qgh_conns_new(int max_connections, int timeout_s, qgh_conns **out,
                        qg_error *err) QG_MUSTCHECK;
void qgh_conns_free(qgh_conns *g);
/* Whether another connection may open (HTTP_MAX_CONNECTIONS); counts refusals for the log. */
bool qgh_conns_admit(qgh_conns *g);
/* A connection opened on fd (-1: unknown, only counted): its first request must arrive
   within the timeout. Returns NULL when untracked; qgh_conns_close frees it. */
struct qgh_conn *qgh_conns_open(qgh_conns *g, int fd);
/* Before fd is closed. c may be NULL (tracking it ran out of memory). */
void qgh_conns_close(qgh_conns *g, struct qgh_conn *c);
/* The request (head and body) is complete: no deadline while it is answered. */
void qgh_conns_arrived(struct qgh_conn *c);
/* The answer is done: the next request's deadline starts. */
void qgh_conns_answered(qgh_conns *g, struct qgh_conn *c);
/* An early answer went out: the connection is cut within secs, whatever else arrives. */
void qgh_conns_linger(struct qgh_conn *c, double secs);

#endif
