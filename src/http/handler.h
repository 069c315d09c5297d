/* handler.c: what a route handler gets (qgh_ctx, qgh_call) and the helpers every handler uses. */
#ifndef QGH_HANDLER_H
#define QGH_HANDLER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "querygate/querygate.h"
#include "querygate/run.h"

struct qgh_auth;
struct qgh_metrics;
struct qgh_named;
struct qgh_principal;
struct qgh_reply;

/* What a handler may use. */
struct qgh_ctx {
    const struct qg_config *cfg;
    qg_manager *m;
    struct qgh_metrics *metrics;
    struct qgh_auth *auth;
    struct qgh_named *named;    /* QUERIES_DIR's queries; NULL: none */
    const atomic_bool *unready; /* qg_server_unready was called; NULL: never */
    atomic_int *open_runs;      /* runs the drain waits for; a stream's counts until it ends */
};

/* One request as a handler sees it. */
struct qgh_call {
    const char *body;   /* NUL-terminated; len bytes (may contain NULs) */
    size_t len;
    const char *request_id;
    const char *path;   /* the request's path, decoded */
    const struct qgh_principal *who; /* what its API key or token allows */
    struct qgh_reply *reply;
    /* For QGH_RUNS routes (router.h), else NULL: */
    qg_loop *loop;  /* the request's loop, where its run runs and finish is called */
    qg_run *run;    /* the run in flight, set by the handler, NULL once it is done:
                       the server cancels it when the client leaves */
    double pool_wait_s; /* how long the run waited for a connection (access log, metrics) */
    qg_lsn min_lsn;     /* X-Querygate-Min-LSN; 0: none */
    /* What the run reports (qgh_call_ran), for the answer's headers, the log and metrics: */
    enum qg_served served;
    int replica;        /* the replica's number (qg_replica_stats) when served by one */
    qg_lsn commit_lsn;  /* a read-write run's: X-Querygate-LSN */
    /* Called exactly once, on loop, when reply holds the answer (inside the
       handler too, when it answers without a run). */
    void (*finish)(struct qgh_call *call);
    bool ndjson;    /* Accept asks for application/x-ndjson: a read may stream (stream.h) */
    /* A streamed answer's (reply->stream) news, on loop, after finish: more of the body is
       ready (or its end). */
    void (*wake)(struct qgh_call *call);
};

/* Notes what run did for call (pool wait, server, commit LSN); in its done, before the answer. */
void qgh_call_ran(struct qgh_call *call, const qg_run *run);

/* Fills call->reply; a QGH_RUNS route starts its run and calls call->finish instead. */
typedef void (*qgh_handler)(const struct qgh_ctx *ctx, struct qgh_call *call);

/* The pool a request's statements run on: the key's role's, else ctx->m. */
qg_status qgh_manager_for(const struct qgh_ctx *ctx, const struct qgh_call *call,
                          qg_manager **out, qg_error *err) QG_MUSTCHECK;
/* Who asks, for qg_tx_options.caller: callers never share prepared statements. */
uint64_t qgh_caller(const struct qgh_call *call);
/* For qg_tx_options.claims: the token's payload, NULL for API keys; lives as long as call. */
const char *qgh_claims(const struct qgh_call *call);
/* A run's failure s (err may be NULL or say nothing: then `what` failed) into call->reply,
   as the caller may see it; with_index false drops statement_index (no batch). */
void qgh_reply_run_error(struct qgh_call *call, qg_status s, const qg_error *err,
                         const char *what, bool with_index);

#endif
