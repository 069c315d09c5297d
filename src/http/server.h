/* server.c: the HTTP server as main starts and stops it. */
#ifndef QGH_SERVER_H
#define QGH_SERVER_H

#include "querygate/querygate.h"

typedef struct qg_server qg_server;
struct qgh_auth;
struct qgh_named;

/*
 * Binds cfg->host:cfg->port (port 0: a free one, see qg_server_port) and starts
 * answering. cfg, m, auth (see auth.c; NULL: no authentication) and named (the
 * named queries, named.c; NULL: none) must outlive the server. *out is new;
 * qg_server_stop frees it.
 */
qg_status qg_server_start(const struct qg_config *cfg, qg_manager *m, struct qgh_auth *auth,
                          struct qgh_named *named, qg_server **out, qg_error *err) QG_MUSTCHECK;

/* The port actually bound. */
int qg_server_port(const qg_server *s);

/* From now on /health/ready answers 503; everything else is served as before. */
void qg_server_unready(qg_server *s);

/*
 * Stops accepting connections; requests still arriving on open connections get
 * 503 shutting_down. Waits up to drain_s for requests in flight, then ends what
 * still runs or waits for a connection (qg_manager_shutdown with no grace) and
 * waits for their answers, stops the HTTP threads and frees s. NULL is allowed.
 * From the thread that started s, not from an HTTP thread.
 */
void qg_server_stop(qg_server *s, double drain_s);

#endif
