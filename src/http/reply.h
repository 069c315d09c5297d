/* reply.c: status, headers and JSON bodies of an answer. */
#ifndef QGH_REPLY_H
#define QGH_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include "querygate/querygate.h"

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
    struct qgh_stream *stream; /* a 200 whose body is this stream (stream.h), or NULL */
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
/* A 200 with an ETag that if_none_match (the header; NULL if absent) names becomes 304, no body. */
void qgh_reply_conditional(struct qgh_reply *r, const char *if_none_match);

#endif
