/* The route table and the checks that run, in order, before a request body arrives (authentication included). */
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "cors.h"
#include "reply.h"
#include "router.h"
#include "routes.h"

/*
 * Every endpoint of the contract. GET routes answer HEAD too. Routes that use
 * the database never block an event loop: statements run with qg_run
 * (QGH_RUNS), health checks on a helper thread (QGH_BLOCKS).
 * NOTE: /health/live and /health/ready stay open for load balancers; ready
 * shows details only to an admin key (routes_health.c). /openapi.json is open too.
 */
static const struct qgh_route routes[] = {
    {"POST", "/query", qgh_route_query, QGH_JSON_BODY | QGH_RUNS | QGH_RAW_SQL, QGH_SCOPE_READ},
    {"POST", "/update", qgh_route_update, QGH_JSON_BODY | QGH_RUNS | QGH_RAW_SQL,
     QGH_SCOPE_WRITE},
    {"POST", "/insert", qgh_route_insert, QGH_JSON_BODY | QGH_RUNS | QGH_RAW_SQL,
     QGH_SCOPE_WRITE},
    {"POST", "/transaction", qgh_route_transaction, QGH_JSON_BODY | QGH_RUNS | QGH_RAW_SQL,
     QGH_SCOPE_WRITE},
    /* The handler checks read or write by the query's mode; a named key may run both. */
    {"POST", "/queries/{name}", qgh_route_named_run, QGH_JSON_BODY | QGH_RUNS | QGH_PATH_NAME,
     QGH_SCOPE_READ | QGH_SCOPE_WRITE | QGH_SCOPE_NAMED},
    /* NOTE: a named key may list what it may call: a frontend discovers the parameters. */
    {"GET", "/queries", qgh_route_named_list, 0, QGH_SCOPE_READ | QGH_SCOPE_NAMED},
    {"GET", "/health", qgh_route_health, QGH_BLOCKS, QGH_SCOPE_ADMIN},
    {"GET", "/health/live", qgh_route_live, 0, 0},
    {"GET", "/health/ready", qgh_route_ready, QGH_BLOCKS, 0},
    {"GET", "/pool", qgh_route_pool, 0, QGH_SCOPE_ADMIN},
    {"GET", "/metrics", qgh_route_metrics, 0, QGH_SCOPE_ADMIN},
    {"GET", "/openapi.json", qgh_route_openapi, 0, 0},
};

#define NROUTES (sizeof routes / sizeof routes[0])

size_t qgh_route_count(void)
{
    return NROUTES;
}

const struct qgh_route *qgh_route_at(size_t i)
{
    return i < NROUTES ? &routes[i] : NULL;
}

static bool method_matches(const struct qgh_route *r, const char *method)
{
    if (!strcmp(r->method, method))
        return true;
    return !strcmp(r->method, "GET") && !strcmp(method, "HEAD");
}

/* The Allow header of a path: its methods, HEAD wherever GET is. */
static const char *allow_header(const struct qgh_route *r)
{
    return !strcmp(r->method, "GET") ? "GET, HEAD" : r->method;
}

static const char *skip_ws(const char *p)
{
    return p + strspn(p, " \t");
}

/* application/json, optionally with charset=utf-8 (any case, optionally quoted). */
static bool is_json_type(const char *ct)
{
    if (!ct)
        return false;
    const char *p = skip_ws(ct);
    if (strncasecmp(p, "application/json", 16))
        return false;
    p = skip_ws(p + 16);
    if (!*p)
        return true;
    if (*p != ';')
        return false;
    p = skip_ws(p + 1);
    if (strncasecmp(p, "charset", 7))
        return false;
    p = skip_ws(p + 7);
    if (*p != '=')
        return false;
    p = skip_ws(p + 1);
    bool quoted = *p == '"';
    p += quoted;
    if (strncasecmp(p, "utf-8", 5))
        return false;
    p += 5;
    if (quoted && *p++ != '"')
        return false;
    return !*skip_ws(p);
}

static bool path_matches(const struct qgh_route *r, const char *path)
{
    if (!(r->flags & QGH_PATH_NAME))
        return !strcmp(r->path, path);
    size_t n = strcspn(r->path, "{");
    return !strncmp(r->path, path, n) && path[n] && !strchr(path + n, '/');
}

/* The route for path and method; else NULL with *path_match the path's first route, if any. */
static const struct qgh_route *lookup(const char *path, const char *method,
                                      const struct qgh_route **path_match, size_t *endpoint)
{
    *path_match = NULL;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!path_matches(&routes[i], path))
            continue;
        if (!*path_match) {
            *path_match = &routes[i];
            *endpoint = i;
        }
        if (method_matches(&routes[i], method)) {
            *endpoint = i;
            return &routes[i];
        }
    }
    return NULL;
}

static const char *scope_name(unsigned scope)
{
    return scope == QGH_SCOPE_READ    ? "read"
           : scope == QGH_SCOPE_WRITE ? "write"
           : scope == QGH_SCOPE_ADMIN ? "admin"
                                      : "read, write or named";
}

/* ALLOW_RAW_SQL=false: the raw SQL endpoints are for admin keys only. */
static bool raw_sql_refused(const struct qgh_head *h, const struct qgh_route *route,
                            const struct qgh_principal *who)
{
    return h->raw_sql_off && (route->flags & QGH_RAW_SQL) && !(who->scopes & QGH_SCOPE_ADMIN);
}

/*
 * 401 or 403 per RFC 6750, or true. An answer closes the connection when a body
 * may follow, so that it goes out before the body is read: a caller without a
 * valid key cannot make the service read, let alone buffer, its body.
 */
static bool authorized(const struct qgh_head *h, const struct qgh_route *route,
                       struct qgh_principal *who, struct qgh_reply *rep)
{
    enum qgh_auth_result r = qgh_auth_check(h->auth, h->authorization, who);
    if (!route->scope) {
        if (r != QGH_AUTH_OK)
            qgh_principal_clear(who); /* open: answered, but without details */
        return true;
    }
    if (r == QGH_AUTH_OK && raw_sql_refused(h, route, who)) {
        qgh_reply_fail(rep, "raw_sql_disabled",
                       "%.100s is turned off for keys without the admin scope "
                       "(ALLOW_RAW_SQL=false); call a named query: POST /queries/NAME (GET "
                       "/queries lists them)", h->path);
    } else if (r == QGH_AUTH_OK && (who->scopes & route->scope)) {
        return true;
    } else if (r == QGH_AUTH_OK) {
        static const char *const insufficient[] = {
            "Bearer error=\"insufficient_scope\", scope=\"read\"",
            "Bearer error=\"insufficient_scope\", scope=\"write\"",
            "Bearer error=\"insufficient_scope\", scope=\"admin\"",
            "Bearer error=\"insufficient_scope\", scope=\"read write named\""};
        qgh_reply_fail(rep, "forbidden", "this %s lacks the %s scope that %.100s needs",
                       who->claims ? "token" : "API key", scope_name(route->scope), h->path);
        rep->www_authenticate = insufficient[route->scope == QGH_SCOPE_READ    ? 0
                                             : route->scope == QGH_SCOPE_WRITE ? 1
                                             : route->scope == QGH_SCOPE_ADMIN ? 2
                                                                               : 3];
    } else if (r == QGH_AUTH_MISSING) {
        qgh_reply_fail(rep, "unauthorized",
                       "%.100s needs an API key: send the header Authorization: Bearer <key>",
                       h->path);
        rep->www_authenticate = "Bearer";
    } else if (r == QGH_AUTH_MALFORMED) {
        qgh_reply_fail(rep, "unauthorized",
                       "the Authorization header holds no usable Bearer token; send "
                       "Authorization: Bearer <key>");
        rep->www_authenticate = "Bearer error=\"invalid_request\"";
    } else if (r == QGH_AUTH_FORBIDDEN) {
        qgh_reply_fail(rep, "forbidden", "%s", who->why);
    } else if (who->why[0]) {
        qgh_reply_fail(rep, "unauthorized", "the token is not valid: %s", who->why);
        rep->www_authenticate = "Bearer error=\"invalid_token\"";
    } else {
        qgh_reply_fail(rep, "unauthorized", "the API key is not valid");
        rep->www_authenticate = "Bearer error=\"invalid_token\"";
    }
    qgh_principal_clear(who);
    rep->close = h->content_length > 0 || !strcmp(h->method, "POST");
    return false;
}

const struct qgh_route *qgh_dispatch_head(const struct qgh_head *h, size_t *endpoint,
                                          struct qgh_principal *who, struct qgh_reply *rep)
{
    memset(who, 0, sizeof *who);
    *endpoint = NROUTES; /* "other" unless the path is known */
    const struct qgh_route *path_match;
    const struct qgh_route *route = lookup(h->path, h->method, &path_match, endpoint);

    /* A head past the limit is refused before anything reads it further. */
    if (h->head_bytes > QGH_HEAD_MAX) {
        qgh_reply_fail(rep, "header_too_large",
                       "the request line and headers take %zu bytes; the limit is %d",
                       h->head_bytes, QGH_HEAD_MAX);
        rep->close = true;
        return NULL;
    }

    /* Then request smuggling hygiene: a proxy in front may frame the body
       otherwise than libmicrohttpd (which takes Transfer-Encoding over Content-Length, and
       the first of several), and it may see another path than the one a %00 (NUL) would
       cut short here. Refused, then closed. */
    if (h->framing_headers > 1) {
        qgh_reply_fail(rep, "invalid_request",
                       "a request may carry one Content-Length or one Transfer-Encoding "
                       "header, not both nor several");
        rep->close = true;
        return NULL;
    }
    if (h->transfer_encoding && strcasecmp(h->transfer_encoding, "chunked")) {
        qgh_reply_fail(rep, "invalid_request",
                       "Transfer-Encoding may only be chunked, not %.40s", h->transfer_encoding);
        rep->close = true;
        return NULL;
    }
    if (strstr(h->path, "%00")) {
        qgh_reply_fail(rep, "invalid_request", "the path holds %%00 (a NUL byte)");
        rep->close = true;
        return NULL;
    }

    /* CORS preflight FIRST: browsers send it without Authorization, so no check
       that needs a key (or anything else a request needs) may come before it. */
    if (path_match && qgh_cors_preflight(h, allow_header(path_match), rep))
        return NULL;

    /* Draining: a load balancer should send this elsewhere. */
    if (h->draining) {
        qgh_reply_fail(rep, "shutting_down", "the service is shutting down; retry elsewhere");
        rep->close = true;
        return NULL;
    }

    /* Unknown path. */
    if (!path_match) {
        qgh_reply_fail(rep, "not_found",
                       "no endpoint %.100s; the endpoints are /query, /update, /insert, "
                       "/transaction, /queries, /queries/NAME, /health, /health/live, "
                       "/health/ready, /pool, /metrics",
                       h->path);
        return NULL;
    }

    /* Known path, wrong method. */
    if (!route) {
        qgh_reply_fail(rep, "method_not_allowed", "%.100s accepts %s, not %.20s", h->path,
                       allow_header(path_match), h->method);
        rep->allow = allow_header(path_match);
        return NULL;
    }

    /* Before anything about the body: an unknown caller learns nothing more. */
    if (!authorized(h, route, who, rep))
        return NULL;

    /* A declared body past the limit: answered before it is read. */
    if (h->content_length > h->max_body) {
        qgh_reply_fail(rep, "payload_too_large",
                       "the body has %lld bytes; the limit is %ld (HTTP_MAX_BODY)",
                       h->content_length, h->max_body);
        rep->close = true;
        return NULL;
    }

    /* Bodies are JSON. */
    if ((route->flags & QGH_JSON_BODY) && !is_json_type(h->content_type)) {
        qgh_reply_fail(rep, "unsupported_media_type",
                       "send the body as Content-Type: application/json");
        return NULL;
    }
    return route;
}
