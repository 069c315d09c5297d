/* GET /openapi.json: the API's description, compiled in; and If-None-Match for cacheable answers. */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "openapi_doc.h"

/*
 * NOTE: open without a key, like the probes: the description holds no secret,
 * and clients and gateways read it before they have one.
 */
void qgh_route_openapi(const struct qgh_ctx *ctx, struct qgh_call *call)
{
    (void)ctx;
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_append(&b, (const char *)qgh_openapi_json, qgh_openapi_json_len);
    qgh_reply_json(call->reply, 200, &b);
    if (call->reply->status != 200)
        return;
    /* The document changes only with the binary: a client may keep it a while, then revalidate. */
    call->reply->etag = qgh_openapi_json_etag;
    call->reply->cache_control = "public, max-age=300";
}

/* Whether an If-None-Match list ("*", or entity tags, weak or not) names etag (weak comparison). */
static bool etag_listed(const char *list, const char *etag)
{
    size_t n = strlen(etag);
    for (const char *p = list; *p;) {
        p += strspn(p, " \t,");
        if (*p == '*')
            return true;
        if (!strncmp(p, "W/", 2))
            p += 2;
        if (*p != '"')
            return false;
        const char *end = strchr(p + 1, '"');
        if (!end)
            return false;
        if ((size_t)(end + 1 - p) == n && !memcmp(p, etag, n))
            return true;
        p = end + 1;
    }
    return false;
}

/*
 * NOTE: libmicrohttpd 0.9.75 adds "Content-Length: 0" to the 304 whatever we
 * do (RFC 9110 would have none, or the 200's); caches ignore a 304's
 * Content-Length (RFC 9111 3.2), and clients read no body after a 304.
 */
void qgh_reply_conditional(struct qgh_reply *r, const char *if_none_match)
{
    if (!r->etag || r->status != 200 || !if_none_match || !etag_listed(if_none_match, r->etag))
        return;
    free(r->body);
    r->body = NULL;
    r->len = 0;
    r->status = 304;
    r->content_type = NULL;
}
