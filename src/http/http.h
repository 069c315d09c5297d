/* Private interface of the HTTP layer: qg_server_* for main, qgh_* between its files. */
#ifndef QG_HTTP_H
#define QG_HTTP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "querygate/querygate.h"

/* ---- server.c: what main uses --------------------------------------------- */

typedef struct qg_server qg_server;
typedef struct qgh_auth qgh_auth;

/*
 * Binds cfg->host:cfg->port (port 0: a free one, see qg_server_port) and starts
 * answering. cfg, m and auth (see auth.c; NULL: no authentication) must outlive
 * the server. *out is new; qg_server_stop frees it.
 */
qg_status qg_server_start(const struct qg_config *cfg, qg_manager *m, qgh_auth *auth,
                          qg_server **out, qg_error *err) QG_MUSTCHECK;

/* The port actually bound. */
int qg_server_port(const qg_server *s);

/* From now on /health/ready answers 503; everything else is served as before. */
void qg_server_unready(qg_server *s);

/*
 * Stops accepting connections; requests still arriving on open connections get
 * 503 shutting_down. Waits up to drain_s for requests in flight, then cancels
 * what still runs (qg_manager_shutdown with no grace), answers what is queued
 * with 503, stops the daemon and frees s. NULL is allowed.
 */
void qg_server_stop(qg_server *s, double drain_s);

/* ---- probe.c: querygate --probe ------------------------------------------- */

/*
 * GET /health/ready on cfg->host:cfg->port (a wildcard address means loopback),
 * over TLS when TLS_CERT_FILE is set, all within timeout_s. Returns 0 on a 200,
 * else 1 after writing one line saying why to out.
 */
int qgh_probe(const struct qg_config *cfg, double timeout_s, FILE *out);

/* ---- log.c: stderr lines, text or JSON ------------------------------------ */

void qgh_log_setup(enum qg_log_format format, enum qg_log_level level);
void qgh_log(enum qg_log_level level, const char *fmt, ...) QG_PRINTF(2, 3);
/* Names the request this thread runs in its log lines until called with NULL. */
void qgh_log_request(const char *request_id);
/* Whether a line at level would be written. */
bool qgh_log_enabled(enum qg_log_level level);
/* One line per request, at info; never a body or parameter. wait_ms: the pool wait;
   trace_id: of the request's traceparent header, "" if none. */
void qgh_log_access(const char *method, const char *path, int status, double ms,
                    double wait_ms, const char *request_id, const char *trace_id);
/* A qg_log_fn for qg_manager_set_log (arg unused). */
void qgh_log_core(void *arg, enum qg_log_level level, const char *msg);

/* ---- reply.c: status, headers and JSON bodies ----------------------------- */

/* CORS_ALLOW_HEADERS's longest value. */
#define QGH_CORS_HEADERS_MAX 512

struct qgh_reply {
    int status;               /* HTTP status; 0 while undecided */
    char *body;               /* malloc'd, owned */
    size_t len;
    const char *content_type; /* static */
    const char *code;         /* error code (static) or NULL on success */
    int retry_after;          /* seconds; 0: no Retry-After */
    const char *allow;        /* static Allow header or NULL */
    const char *www_authenticate; /* static WWW-Authenticate header or NULL */
    bool close;               /* Connection: close */
    char sqlstate[6];         /* for the db error metrics; "" if none */
    bool preflight;           /* a CORS preflight answer: the two fields below are sent */
    const char *cors_methods; /* static: Access-Control-Allow-Methods */
    char cors_headers[QGH_CORS_HEADERS_MAX]; /* Access-Control-Allow-Headers */
    char message[256];        /* internal_error's cause, logged with the request id */
    const char *etag;         /* static ETag of a cacheable 200, or NULL */
    const char *cache_control; /* static Cache-Control, or NULL */
};

/* Frees the body and makes r undecided again. */
void qgh_reply_reset(struct qgh_reply *r);
/* A JSON body taken from b (b is left empty); oom becomes 500. */
void qgh_reply_json(struct qgh_reply *r, int status, qg_buf *b);
/* A body of another type, taken from b. */
void qgh_reply_body(struct qgh_reply *r, int status, const char *content_type, qg_buf *b);
/* The error body for err, status by its code (the contract's table). */
void qgh_reply_error(struct qgh_reply *r, const qg_error *err);
/* The same for a statement's error as caller who may see it: db_unavailable's
   cause (hosts, logins, roles) only for an admin key; always logged. */
struct qgh_principal;
void qgh_reply_error_as(struct qgh_reply *r, const qg_error *err,
                        const struct qgh_principal *who);
/* An error by code name, including the HTTP-only ones (not_found, ...). */
void qgh_reply_fail(struct qgh_reply *r, const char *code, const char *fmt, ...)
    QG_PRINTF(3, 4);
/* The HTTP status of an error code; 500 for unknown codes. */
int qgh_code_status(const char *code);

/* ---- sha256.c ------------------------------------------------------------- */

#define QGH_SHA256_LEN 32
/* FIPS 180-4 SHA-256 of len bytes. */
void qgh_sha256(const void *data, size_t len, unsigned char out[QGH_SHA256_LEN]);

/* ---- auth.c: API keys ----------------------------------------------------- */

enum qgh_scope {
    QGH_SCOPE_READ = 1,  /* /query */
    QGH_SCOPE_WRITE = 2, /* /update, /insert, /transaction */
    QGH_SCOPE_ADMIN = 4, /* /health, /pool, /metrics; details of /health/ready */
    QGH_SCOPE_ALL = 7
};

#define QGH_ROLE_MAX 63

/* What a request may do, decided from its Authorization header. */
struct qgh_principal {
    unsigned scopes;                 /* QGH_SCOPE_* bits */
    char role[QGH_ROLE_MAX + 1];     /* database role of the key; "" for the main pool */
    uint64_t caller;                 /* the key's id (from its digest); 0 without keys */
};

enum qgh_auth_result {
    QGH_AUTH_OK,
    QGH_AUTH_MISSING,   /* no Authorization header, or another scheme than Bearer */
    QGH_AUTH_MALFORMED, /* Bearer with an empty or ill-formed token */
    QGH_AUTH_INVALID    /* a well-formed token that is no key */
};

/*
 * The keys of cfg (AUTH, API_KEYS, API_KEYS_FILE), hashed; cfg may be freed
 * afterwards. QG_ERR_CONFIG for a malformed entry (named by file and line or
 * entry number, never by the key) and for AUTH=keys without keys on a HOST
 * that is not loopback. *out is new; free with qgh_auth_free.
 */
qg_status qgh_auth_new(const struct qg_config *cfg, qgh_auth **out, qg_error *err) QG_MUSTCHECK;
void qgh_auth_free(qgh_auth *a);
/* Reads API_KEYS_FILE again (plus API_KEYS); on error the old keys stay. */
qg_status qgh_auth_reload(qgh_auth *a, size_t *nkeys, qg_error *err) QG_MUSTCHECK;
/* A line for the start log saying how requests are authenticated; returns its level. */
enum qg_log_level qgh_auth_describe(qgh_auth *a, char *out, size_t size);
/* Checks an Authorization header value (NULL: none); a NULL a allows everything. */
enum qgh_auth_result qgh_auth_check(qgh_auth *a, const char *authorization,
                                    struct qgh_principal *who);
/* "read,write" -> bits; 0 if any name is unknown or empty. */
unsigned qgh_scopes_parse(const char *list);
/* 127.0.0.0/8, ::1 (bracketed or not), ::ffff:127.x, localhost. */
bool qgh_host_is_loopback(const char *host);

/* ---- reqid.c -------------------------------------------------------------- */

#define QGH_REQUEST_ID_MAX 200
/* Copies the caller's id into out if it is sane (1..200 printable ASCII), else a new one. */
void qgh_request_id(const char *given, char out[QGH_REQUEST_ID_MAX + 1]);

/* ---- trace.c -------------------------------------------------------------- */

#define QGH_TRACE_ID_LEN 32
/* The trace id of a W3C traceparent header value (NULL: none); "" and false if it is not valid. */
bool qgh_traceparent(const char *value, char trace_id[QGH_TRACE_ID_LEN + 1]);

/* ---- request.c: bodies decoded ------------------------------------------- */

struct qgh_statement {
    const char *sql;    /* borrowed from the parsed body */
    qg_params **sets;   /* nsets parameter sets (a batch when batch is true) */
    size_t nsets;
    bool batch;
    bool numbers_as_strings;
    json_t *root;       /* keeps sql alive */
};

struct qgh_tx_body {
    size_t n;
    struct qgh_tx_stmt {
        const char *sql;
        qg_params *params;
    } *stmts;
    struct qg_tx_options opt;
    bool numbers_as_strings;
    json_t *root;
};

/* {sql, params, numbers_as_strings}; params may be an array (batch) when allow_batch. */
qg_status qgh_parse_statement(const char *body, size_t len, bool allow_batch,
                              bool default_nas, struct qgh_statement *out,
                              qg_error *err) QG_MUSTCHECK;
void qgh_statement_free(struct qgh_statement *st);

/* {statements: [...], isolation, read_only, numbers_as_strings}. */
qg_status qgh_parse_transaction(const char *body, size_t len, bool default_nas,
                                struct qgh_tx_body *out, qg_error *err) QG_MUSTCHECK;
void qgh_tx_body_free(struct qgh_tx_body *tx);

/* ---- metrics.c ------------------------------------------------------------ */

typedef struct qgh_metrics qgh_metrics;
/* names: one endpoint label per index (borrowed, static); one more slot "other". */
qgh_metrics *qgh_metrics_new(size_t n, const char *const *names);
void qgh_metrics_free(qgh_metrics *mt);
void qgh_metrics_count(qgh_metrics *mt, size_t endpoint, int status, double seconds,
                       const char *sqlstate);
/* A worker route's wait in the worker queue (the access log's pool wait). */
void qgh_metrics_queue_wait(qgh_metrics *mt, double seconds);
/* Whether the health check's own connection is open: the last check was healthy. */
/* The Prometheus text exposition (format 0.0.4) into out. */
void qgh_metrics_render(qgh_metrics *mt, qg_manager *m, qg_buf *out);

/* ---- cors.c: CORS_ALLOW_ORIGINS, CORS_ALLOW_HEADERS ----------------------- */

typedef struct qgh_cors qgh_cors;
struct qgh_head;

/*
 * Parses spec (comma-separated exact origins such as https://app.example.com,
 * or "*") and headers (comma-separated request header names; NULL: the
 * default). NULL or empty spec: *out is NULL (no CORS headers at all), headers
 * still checked. *out is new; qgh_cors_free frees it.
 */
qg_status qgh_cors_new(const char *spec, const char *headers, qgh_cors **out,
                       qg_error *err) QG_MUSTCHECK;
void qgh_cors_free(qgh_cors *c);
bool qgh_cors_allows(const qgh_cors *c, const char *origin);

/*
 * A preflight (OPTIONS with Origin and Access-Control-Request-Method, CORS
 * configured): fills rep (204, or 403 for an origin not allowed) and returns
 * true. methods: the path's Allow value. Anything else: false, rep untouched.
 */
bool qgh_cors_preflight(const struct qgh_head *h, const char *methods, struct qgh_reply *rep);

/* Receives one response header. */
typedef void (*qgh_header_fn)(void *arg, const char *name, const char *value);
/* The CORS headers of any response to a request from origin (NULL: none sent). */
void qgh_cors_headers(const qgh_cors *c, const char *origin, const struct qgh_reply *rep,
                      qgh_header_fn add, void *arg);

/* ---- conns.c: connection cap and request deadline ------------------------- */

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

/* ---- early.c: answers written while the request body still arrives --------- */

struct MHD_Connection;
/*
 * Writes rep (with X-Request-Id, CORS headers and Connection: close) to c's client at
 * once, beside libmicrohttpd, which must not have queued an answer. Call it only from
 * the access handler while a body arrives; false when not all of it went out.
 */
bool qgh_answer_early(struct MHD_Connection *c, const qgh_cors *cors, const char *origin,
                      const char *request_id, const struct qgh_reply *rep);

/* ---- router.c ------------------------------------------------------------- */

/* What a handler may use. */
struct qgh_ctx {
    const struct qg_config *cfg;
    qg_manager *m;
    qgh_metrics *metrics;
    qgh_auth *auth;
    const atomic_bool *unready; /* qg_server_unready was called; NULL: never */
};

/* ---- watch.c: clients that hang up while their request runs ---------------- */

/* What a request runs on the database, so that it can be cancelled. */
struct qgh_cancel {
    pthread_mutex_t mu;  /* held while conn is set or cancelled */
    qg_conn *conn;       /* running one of the request's statements, else NULL */
    atomic_bool gone;    /* the client hung up */
    atomic_bool cancelled; /* gone cancelled a statement, or refused to start one */
};

void qgh_cancel_init(struct qgh_cancel *cs);
void qgh_cancel_destroy(struct qgh_cancel *cs);

/*
 * qg_exec that the watcher can cancel; once the client is gone it fails at once
 * (QG_ERR_STATEMENT_TIMEOUT), so a retried transaction does not run again. cs may be NULL.
 */
qg_status qgh_exec(struct qgh_cancel *cs, qg_conn *c, const char *sql, const qg_params *params,
                   const struct qg_exec_options *opt, qg_result **out,
                   qg_error *err) QG_MUSTCHECK;
/* qg_exec_many, cancellable the same way. */
qg_status qgh_exec_many(struct qgh_cancel *cs, qg_conn *c, size_t n, const char *const *sql,
                        const qg_params *const *params, const struct qg_exec_options *opt,
                        qg_result **out, qg_error *err) QG_MUSTCHECK;

/* True when the peer of socket fd closed or shut down its side (no wait). */
bool qgh_client_gone(int fd);

/* One watched request; lives in the request, linked while it runs. */
struct qgh_watch_entry {
    struct qgh_watch_entry *next;
    uint64_t id;     /* names it in the epoll set: a stale event cannot hit a new entry */
    int fd;
    struct qgh_cancel *cancel;
    bool cancelling; /* the watcher is cancelling its statement right now */
};

typedef struct qgh_watch qgh_watch;

/* One thread watching the sockets of running requests. Free with qgh_watch_free. */
qg_status qgh_watch_new(qgh_watch **out, qg_error *err) QG_MUSTCHECK;
/* From now until qgh_watch_remove: a hang-up on fd sets cs->gone and cancels cs->conn. */
void qgh_watch_add(qgh_watch *w, struct qgh_watch_entry *e, int fd, struct qgh_cancel *cs);
/* Stops watching e; once it returns the watcher no longer touches e or its cancel. */
void qgh_watch_remove(qgh_watch *w, struct qgh_watch_entry *e);
/* Stops the thread (nothing may be watched any more) and frees w. NULL is allowed. */
void qgh_watch_free(qgh_watch *w);

/* One request as a handler sees it. */
struct qgh_call {
    const char *body;   /* NUL-terminated; len bytes (may contain NULs) */
    size_t len;
    const char *request_id;
    const struct qgh_principal *who; /* what its API key allows */
    struct qgh_reply *reply;
    struct qgh_cancel *cancel; /* for qgh_exec; NULL for handlers run inline */
};

typedef void (*qgh_handler)(const struct qgh_ctx *ctx, struct qgh_call *call);

enum qgh_route_flags {
    QGH_JSON_BODY = 1, /* POST with a JSON body (415 otherwise) */
    QGH_WORKER = 2     /* runs on a worker thread: it may block on the database */
};

struct qgh_route {
    const char *method; /* "GET" also answers HEAD */
    const char *path;
    qgh_handler handler;
    unsigned flags;
    unsigned scope; /* the QGH_SCOPE_* a key needs; 0: open to all */
};

/* How many routes; metrics endpoints are 0..n-1 by route, n is "other". */
size_t qgh_route_count(void);
const struct qgh_route *qgh_route_at(size_t i);

/* A request head (request line and headers) past this answers 431 header_too_large. */
#define QGH_HEAD_MAX (32 * 1024)

/* What the request line and headers decide before any body arrives. */
struct qgh_head {
    const char *method;
    const char *path;
    const char *content_type;   /* NULL if absent */
    long long content_length;   /* -1 if absent */
    const char *transfer_encoding; /* NULL if absent */
    int framing_headers;        /* Content-Length and Transfer-Encoding headers, valid or not */
    size_t head_bytes;          /* request line and headers, as received (about) */
    bool draining;
    long max_body;
    qgh_auth *auth;
    const char *authorization;  /* the Authorization header or NULL */
    const struct qgh_cors *cors; /* NULL: CORS not configured */
    const char *origin;          /* the headers a preflight uses; NULL if absent */
    const char *cors_method;     /* Access-Control-Request-Method */
    const char *cors_headers;    /* Access-Control-Request-Headers */
};

/*
 * Runs the checks that need no body, in order (authentication included).
 * Returns the route (its metrics endpoint in *endpoint, what the caller may do
 * in *who), or NULL after filling rep with the error.
 */
const struct qgh_route *qgh_dispatch_head(const struct qgh_head *h, size_t *endpoint,
                                          struct qgh_principal *who, struct qgh_reply *rep);

/* The pool a request's statements run on: the key's role's, else ctx->m. */
qg_status qgh_manager_for(const struct qgh_ctx *ctx, const struct qgh_call *call,
                          qg_manager **out, qg_error *err) QG_MUSTCHECK;
/* Who asks, for qg_tx_options.caller: callers never share prepared statements. */
uint64_t qgh_caller(const struct qgh_call *call);

/* ---- handlers (routes_*.c, metrics.c) ------------------------------------- */

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

/* A 200 with an ETag that if_none_match (the header; NULL if absent) names becomes 304, no body. */
void qgh_reply_conditional(struct qgh_reply *r, const char *if_none_match);

/* Appends the /pool object. */
void qgh_pool_json(const struct qgh_ctx *ctx, qg_buf *out);

/* ---- workers.c: a FIFO of jobs for a fixed set of threads ------------------ */

struct qgh_job {
    struct qgh_job *next;
    double deadline;                                  /* monotonic seconds */
    qg_manager *pool; /* while queued, counted as waiting for this pool; NULL: not counted */
    void (*run)(struct qgh_job *job);                 /* on a worker */
    void (*expire)(struct qgh_job *job, qg_status why); /* never ran: timeout or shutdown */
};

typedef struct qgh_workers qgh_workers;

/* nthreads workers; a job waiting longer than timeout_s is expired with QG_ERR_POOL_TIMEOUT
   (and counted in its pool's timeouts). */
qg_status qgh_workers_new(int nthreads, double timeout_s, qgh_workers **out,
                          qg_error *err) QG_MUSTCHECK;
/* Queues job; false once stopping (the job was not taken). */
bool qgh_workers_submit(qgh_workers *w, struct qgh_job *job);
/* Waits up to timeout_s for the queue to empty and every worker to be idle. */
bool qgh_workers_wait_idle(qgh_workers *w, double timeout_s);
/* Expires what is queued with QG_ERR_SHUTTING_DOWN, joins the threads, frees w. */
void qgh_workers_free(qgh_workers *w);

#endif
