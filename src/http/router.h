/* router.c: the route table and the checks that run before a request body arrives. */
#ifndef QGH_ROUTER_H
#define QGH_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include "handler.h"

struct qgh_auth;
struct qgh_cors;
struct qgh_principal;
struct qgh_reply;

enum qgh_route_flags {
    QGH_JSON_BODY = 1, /* POST with a JSON body (415 otherwise) */
    QGH_RUNS = 2,      /* runs statements with qg_run on the request's loop (see qgh_call) */
    QGH_BLOCKS = 4,    /* waits on the database otherwise: runs on a helper thread */
    QGH_RAW_SQL = 8,   /* runs the caller's SQL: only for admin keys when ALLOW_RAW_SQL=false */
    QGH_PATH_NAME = 16 /* path "/prefix/{name}": the prefix and one non-empty segment */
};

struct qgh_route {
    const char *method; /* "GET" also answers HEAD */
    const char *path;
    qgh_handler handler;
    unsigned flags;
    unsigned scope; /* the QGH_SCOPE_* a key needs (any one of them); 0: open to all */
};

/* How many routes; metrics endpoints are 0..n-1 by route, n is "other". */
size_t qgh_route_count(void);
const struct qgh_route *qgh_route_at(size_t i);

/* A request head (request line and headers) past this answers 431 header_too_large. */
#define QGH_HEAD_MAX (16 * 1024)

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
    bool raw_sql_off;           /* ALLOW_RAW_SQL=false */
    struct qgh_auth *auth;
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

#endif
