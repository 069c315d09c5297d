/* cors.c: CORS_ALLOW_ORIGINS, CORS_ALLOW_HEADERS. */
#ifndef QGH_CORS_H
#define QGH_CORS_H

#include <stdbool.h>
#include <stddef.h>
#include "querygate/querygate.h"

typedef struct qgh_cors qgh_cors;
struct qgh_head;
struct qgh_reply;

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

#endif
