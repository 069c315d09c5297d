/* GET /openapi.json: the API's description, compiled in. */
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "reply.h"
#include "routes.h"
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
