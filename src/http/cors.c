/* CORS: which browser origins may call the API (CORS_ALLOW_ORIGINS) with which headers (CORS_ALLOW_HEADERS), preflights and response headers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cors.h"
#include "reply.h"
#include "router.h"

#define MAX_ORIGINS 64

struct qgh_cors {
    bool any;     /* "*" */
    size_t n;
    char *origins[MAX_ORIGINS];
    /* The request headers a caller may send: "A, B, C", as a preflight answers it. */
    char headers[QGH_CORS_HEADERS_MAX];
};

void qgh_cors_free(qgh_cors *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->origins[i]);
    free(c);
}

/* RFC 9110's token: what a header name may be. */
static bool is_header_name(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              (ch && strchr("!#$%&'*+-.^_`|~", ch))))
            return false;
    }
    return n > 0;
}

/* CORS_ALLOW_HEADERS (NULL: the default) into out as "A, B, C". */
static qg_status parse_headers(const char *spec, char out[QGH_CORS_HEADERS_MAX], qg_error *err)
{
    out[0] = '\0';
    size_t used = 0;
    for (const char *p = spec ? spec : QG_CORS_ALLOW_HEADERS_DEFAULT;;) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, ",");
        n = qg_trim_end(p, n, " \t");
        if (!is_header_name(p, n))
            return qg_error_set(err, QG_ERR_CONFIG,
                                "CORS_ALLOW_HEADERS: \"%.*s\" is not a header name; give a comma "
                                "list such as Content-Type, Authorization, traceparent",
                                (int)(n > 100 ? 100 : n), p);
        int w = snprintf(out + used, QGH_CORS_HEADERS_MAX - used, "%s%.*s", used ? ", " : "",
                         (int)n, p);
        if (w < 0 || (size_t)w >= QGH_CORS_HEADERS_MAX - used)
            return qg_error_set(err, QG_ERR_CONFIG, "CORS_ALLOW_HEADERS: longer than %d characters",
                                QGH_CORS_HEADERS_MAX - 1);
        used += (size_t)w;
        p += strcspn(p, ",");
        if (!*p)
            return QG_OK;
        p++;
    }
}

/* scheme://host[:port], as a browser sends it: no path, no trailing slash, no spaces. */
static qg_status check_origin(const char *o, size_t n, qg_error *err)
{
    const char *sep = n > 3 ? memchr(o, ':', n) : NULL;
    bool scheme = sep && sep + 3 <= o + n && !strncmp(sep, "://", 3) && sep + 3 < o + n;
    if (!scheme)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "CORS_ALLOW_ORIGINS: \"%.*s\" is not an origin; write "
                            "scheme://host[:port], e.g. https://app.example.com",
                            (int)(n > 100 ? 100 : n), o);
    for (const char *p = sep + 3; p < o + n; p++)
        if (*p == '/' || *p == ' ' || *p == '\t' || *p == '*')
            return qg_error_set(err, QG_ERR_CONFIG,
                                "CORS_ALLOW_ORIGINS: \"%.*s\" has a path, a space or a "
                                "wildcard; an origin is only scheme://host[:port] "
                                "(or the whole value is *)",
                                (int)(n > 100 ? 100 : n), o);
    return QG_OK;
}

static qg_status add_origin(qgh_cors *c, const char *o, size_t n, qg_error *err)
{
    if (n == 1 && *o == '*')
        return qg_error_set(err, QG_ERR_CONFIG,
                            "CORS_ALLOW_ORIGINS: * must stand alone, not in a list");
    qg_status st = check_origin(o, n, err);
    if (st != QG_OK)
        return st;
    if (c->n == MAX_ORIGINS)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "CORS_ALLOW_ORIGINS: more than %d origins", MAX_ORIGINS);
    c->origins[c->n] = strndup(o, n);
    if (!c->origins[c->n])
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory");
    c->n++;
    return QG_OK;
}

qg_status qgh_cors_new(const char *spec, const char *headers, qgh_cors **out, qg_error *err)
{
    *out = NULL;
    char list[QGH_CORS_HEADERS_MAX];
    qg_status parsed = parse_headers(headers, list, err);
    if (parsed != QG_OK || !spec || !*spec)
        return parsed;
    qgh_cors *c = calloc(1, sizeof *c);
    if (!c)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory");
    memcpy(c->headers, list, sizeof list);
    const char *p = spec;
    p += strspn(p, " \t");
    if (!strcmp(p, "*") || (*p == '*' && strspn(p + 1, " \t") == strlen(p + 1))) {
        c->any = true;
        *out = c;
        return QG_OK;
    }
    for (;;) {
        p += strspn(p, " \t");
        size_t n = qg_trim_end(p, strcspn(p, ","), " \t");
        qg_status st = n ? add_origin(c, p, n, err)
                         : qg_error_set(err, QG_ERR_CONFIG,
                                        "CORS_ALLOW_ORIGINS: an empty entry; give a comma "
                                        "list of origins or *");
        if (st != QG_OK) {
            qgh_cors_free(c);
            return st;
        }
        p += strcspn(p, ",");
        if (!*p)
            break;
        p++;
    }
    *out = c;
    return QG_OK;
}

bool qgh_cors_allows(const qgh_cors *c, const char *origin)
{
    if (!c || !origin || !*origin)
        return false;
    if (c->any)
        return true;
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->origins[i], origin))
            return true;
    return false;
}

/* Whether name (n bytes) is in the list, ignoring case as HTTP does. */
static bool header_allowed(const qgh_cors *c, const char *name, size_t n)
{
    for (const char *p = c->headers; *p;) {
        size_t k = strcspn(p, ",");
        if (k == n && !strncasecmp(p, name, n))
            return true;
        p += k;
        p += strspn(p, ", ");
    }
    return false;
}

/* The requested headers echoed when each is allowed; otherwise the allowed list. */
static void allow_headers(const qgh_cors *c, const char *requested, char *out, size_t size)
{
    snprintf(out, size, "%s", c->headers);
    if (!requested || strlen(requested) >= size)
        return;
    for (const char *p = requested; *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        size_t k = qg_trim_end(p, n, " \t");
        if (k && !header_allowed(c, p, k))
            return;
        p += n;
    }
    if (requested[strspn(requested, " \t,")])
        snprintf(out, size, "%s", requested);
}

bool qgh_cors_preflight(const struct qgh_head *h, const char *methods, struct qgh_reply *rep)
{
    if (!h->cors || strcmp(h->method, "OPTIONS") || !h->origin || !h->cors_method)
        return false;
    if (!qgh_cors_allows(h->cors, h->origin)) {
        qgh_reply_fail(rep, "forbidden",
                       "origin %.100s may not call this service; add it to CORS_ALLOW_ORIGINS",
                       h->origin);
        return true;
    }
    qgh_reply_reset(rep);
    rep->status = 204;
    rep->preflight = true;
    rep->cors_methods = methods;
    allow_headers(h->cors, h->cors_headers, rep->cors_headers, sizeof rep->cors_headers);
    return true;
}

void qgh_cors_headers(const qgh_cors *c, const char *origin, const struct qgh_reply *rep,
                      qgh_header_fn add, void *arg)
{
    if (!c)
        return;
    /* Always: a cache must not hand one origin's answer to another. */
    add(arg, "Vary", "Origin");
    if (!qgh_cors_allows(c, origin))
        return;
    /* NOTE: no Access-Control-Allow-Credentials, ever: keys travel in the
       Authorization header, not in cookies, so "*" is safe to send as is. */
    add(arg, "Access-Control-Allow-Origin", c->any ? "*" : origin);
    if (rep->preflight) {
        add(arg, "Access-Control-Allow-Methods", rep->cors_methods);
        add(arg, "Access-Control-Allow-Headers", rep->cors_headers);
        add(arg, "Access-Control-Max-Age", "600");
    } else {
        add(arg, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After, WWW-Authenticate, X-Querygate-LSN, X-Querygate-Served-By");
    }
}
