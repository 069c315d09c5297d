/* The route table and qgh_dispatch_head's checks, in their order, without a socket (src/http/router.c). */
#include "auth.h"
#include "cors.h"
#include "reply.h"
#include "router.h"
#include "routes.h"
#include "qgtest.h"

#define READ_KEY "r-0123456789abcdef"
#define WRITE_KEY "w-0123456789abcdef"
#define ADMIN_KEY "a-0123456789abcdef"
#define NAMED_KEY "n-0123456789abcdef"
#define ADMIN_READ_KEY "ar-0123456789abcdef"

/* A GET with no body, no key, no CORS: each case changes what it tests. */
static struct qgh_head head(const char *method, const char *path)
{
    return (struct qgh_head){.method = method, .path = path, .content_length = -1,
                             .head_bytes = 100, .max_body = 1000};
}

/* What dispatch answered: the route, or the error's status and code. */
struct outcome {
    const struct qgh_route *route;
    size_t endpoint;
    struct qgh_principal who;
    struct qgh_reply rep;
};

#define OUTCOME {.route = NULL}

/* o starts zeroed (OUTCOME); its previous answer is freed. */
static void dispatch(const struct qgh_head *h, struct outcome *o)
{
    qgh_reply_reset(&o->rep);
    memset(o, 0, sizeof *o);
    o->route = qgh_dispatch_head(h, &o->endpoint, &o->who, &o->rep);
    CHECK((o->route != NULL) == (o->rep.status == 0));
}

/* dispatch, expecting an error answer with this status and code. */
static void refused(const struct qgh_head *h, int status, const char *code, struct outcome *o)
{
    dispatch(h, o);
    CHECK(o->route == NULL);
    CHECK_INT(o->rep.status, status);
    CHECK_STR(o->rep.code, code);
    if (o->rep.status != status || !o->rep.code || strcmp(o->rep.code, code))
        fprintf(stderr, "    for %s %s\n", h->method, h->path);
}

/* refused, and the connection is closed after the answer. */
static void refused_closing(const struct qgh_head *h, int status, const char *code,
                            struct outcome *o)
{
    refused(h, status, code, o);
    CHECK(o->rep.close);
}

static qgh_auth *keys(void)
{
    /* Writable: the configuration overwrites API_KEYS once read. */
    char e_auth[] = "AUTH=keys", e_host[] = "HOST=0.0.0.0",
         e_keys[] = "API_KEYS=" READ_KEY " read;" WRITE_KEY " write qgt_role;" ADMIN_KEY " admin;"
                    NAMED_KEY " named;" ADMIN_READ_KEY " read,admin";
    char *env[] = {e_auth, e_host, e_keys, NULL};
    struct qg_config cfg;
    qg_error err;
    qg_error_clear(&err);
    qgh_auth *a = NULL;
    CHECK_INT(qg_config_load(&cfg, env, &err), QG_OK);
    CHECK_INT(qgh_auth_new(&cfg, &a, &err), QG_OK);
    qg_config_free(&cfg);
    return a;
}

static void route_table(void)
{
    CHECK_INT(qgh_route_count(), 12);
    CHECK(qgh_route_at(qgh_route_count()) == NULL);
    for (size_t i = 0; i < qgh_route_count(); i++) {
        const struct qgh_route *r = qgh_route_at(i);
        struct qgh_head h = head(r->method, r->path);
        h.content_type = "application/json";
        struct outcome o = OUTCOME;
        dispatch(&h, &o);
        CHECK(o.route == r);
        CHECK_INT(o.endpoint, i);
        /* Statements run with qg_run; bodies are JSON, POST only. */
        CHECK_INT(!!(r->flags & QGH_JSON_BODY), !strcmp(r->method, "POST"));
        CHECK_INT(!!(r->flags & QGH_JSON_BODY), !!(r->flags & QGH_RUNS));
        /* What waits on the database otherwise leaves the loop. */
        CHECK_INT(!!(r->flags & QGH_BLOCKS), !strncmp(r->path, "/health", 7) &&
                                             strcmp(r->path, "/health/live"));
        qgh_reply_reset(&o.rep);
    }
    struct qgh_head h = head("POST", "/query");
    h.content_type = "application/json";
    struct outcome o = OUTCOME;
    dispatch(&h, &o);
    CHECK(o.route && o.route->handler == qgh_route_query && o.route->scope == QGH_SCOPE_READ);
    h = head("HEAD", "/health/live");
    dispatch(&h, &o);
    CHECK(o.route && o.route->handler == qgh_route_live && !(o.route->flags & (QGH_RUNS | QGH_BLOCKS)));
    h = head("GET", "/pool");
    dispatch(&h, &o);
    CHECK(o.route && o.route->handler == qgh_route_pool && o.route->scope == QGH_SCOPE_ADMIN);
    qgh_reply_reset(&o.rep);
}

static void unknown_paths_and_methods(void)
{
    struct outcome o = OUTCOME;
    struct qgh_head h = head("GET", "/nope");
    refused(&h, 404, "not_found", &o);
    CHECK_INT(o.endpoint, qgh_route_count()); /* "other" in the metrics */
    CHECK(!o.rep.close);
    h = head("GET", "/query/");
    refused(&h, 404, "not_found", &o);
    h = head("GET", "/query");
    refused(&h, 405, "method_not_allowed", &o);
    CHECK_STR(o.rep.allow, "POST");
    CHECK_INT(o.endpoint, 0); /* counted under the path's route */
    h = head("DELETE", "/pool");
    refused(&h, 405, "method_not_allowed", &o);
    CHECK_STR(o.rep.allow, "GET, HEAD");
    /* /queries/NAME: one non-empty segment after the prefix. */
    h = head("GET", "/queries/top-10_x");
    refused(&h, 405, "method_not_allowed", &o);
    CHECK_STR(o.rep.allow, "POST");
    h = head("POST", "/queries/top-10_x");
    h.content_type = "application/json";
    dispatch(&h, &o);
    CHECK(o.route && o.route->handler == qgh_route_named_run);
    static const char *const not_named[] = {"/queries/", "/queries/a/b", "/queries/a/",
                                            "/queriesx", "/querie/a"};
    for (size_t i = 0; i < sizeof not_named / sizeof *not_named; i++) {
        h.path = not_named[i];
        refused(&h, 404, "not_found", &o);
    }
    h = head("GET", "/queries");
    dispatch(&h, &o);
    CHECK(o.route && o.route->handler == qgh_route_named_list);
    h = head("POST", "/queries");
    refused(&h, 405, "method_not_allowed", &o);
    h = head("HEAD", "/query");
    refused(&h, 405, "method_not_allowed", &o);
    h = head("OPTIONS", "/query"); /* not a preflight without CORS */
    refused(&h, 405, "method_not_allowed", &o);
    qgh_reply_reset(&o.rep);
}

static void framing_and_limits(void)
{
    struct outcome o = OUTCOME;
    struct qgh_head h = head("GET", "/nope");
    h.head_bytes = QGH_HEAD_MAX + 1; /* before anything else, even an unknown path */
    refused_closing(&h, 431, "header_too_large", &o);
    h = head("GET", "/health/live");
    h.head_bytes = QGH_HEAD_MAX;
    dispatch(&h, &o);
    CHECK(o.route != NULL);

    h = head("POST", "/query");
    h.content_type = "application/json";
    h.framing_headers = 2;
    refused_closing(&h, 400, "invalid_request", &o);
    h.framing_headers = 1;
    h.transfer_encoding = "gzip, chunked";
    refused_closing(&h, 400, "invalid_request", &o);
    h.transfer_encoding = "Chunked";
    dispatch(&h, &o);
    CHECK(o.route != NULL);

    h = head("GET", "/health%00/live");
    refused_closing(&h, 400, "invalid_request", &o);

    h = head("POST", "/query");
    h.content_type = "application/json";
    h.content_length = 1001;
    refused_closing(&h, 413, "payload_too_large", &o);
    h.content_length = 1000;
    dispatch(&h, &o);
    CHECK(o.route != NULL);

    h = head("GET", "/health/live");
    h.draining = true;
    refused(&h, 503, "shutting_down", &o);
    CHECK(o.rep.close && o.rep.retry_after == 1);
    qgh_reply_reset(&o.rep);
}

static void content_types(void)
{
    static const char *const good[] = {
        "application/json", "Application/JSON", " application/json ",
        "application/json;charset=utf-8", "application/json; charset=UTF-8",
        "application/json ; charset = \"utf-8\" "};
    static const char *const bad[] = {
        "application/jsonx", "text/plain", "application/json; charset=latin1",
        "application/json;", "application/json; charset=\"utf-8", "application/json; foo=bar",
        "application/json; charset=utf-8x", "application/json; charset=utf-8; q=1",
        "application/x-www-form-urlencoded", ""};
    struct outcome o = OUTCOME;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct qgh_head h = head("POST", "/update");
        h.content_type = good[i];
        dispatch(&h, &o);
        if (!o.route)
            fprintf(stderr, "    refused Content-Type: %s\n", good[i]);
        CHECK(o.route != NULL);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct qgh_head h = head("POST", "/update");
        h.content_type = bad[i];
        refused(&h, 415, "unsupported_media_type", &o);
    }
    struct qgh_head h = head("POST", "/update");
    refused(&h, 415, "unsupported_media_type", &o); /* none */
    h = head("GET", "/health/live");
    h.content_type = "text/plain"; /* a GET's is not looked at */
    dispatch(&h, &o);
    CHECK(o.route != NULL);
    qgh_reply_reset(&o.rep);
}

static void authentication(void)
{
    qgh_auth *a = keys();
    if (!a)
        return;
    struct outcome o = OUTCOME;
    struct qgh_head h = head("POST", "/update");
    h.auth = a;
    h.content_type = "application/json";
    h.content_length = 5000; /* past the limit: the key is checked first */
    refused(&h, 401, "unauthorized", &o);
    CHECK_STR(o.rep.www_authenticate, "Bearer");
    CHECK(o.rep.close); /* the body is never read */
    h.authorization = "Bearer nope-0123456789abcdef";
    refused(&h, 401, "unauthorized", &o);
    CHECK_STR(o.rep.www_authenticate, "Bearer error=\"invalid_token\"");
    h.authorization = "Bearer ";
    refused(&h, 401, "unauthorized", &o);
    CHECK_STR(o.rep.www_authenticate, "Bearer error=\"invalid_request\"");
    h.authorization = "Bearer " READ_KEY;
    refused(&h, 403, "forbidden", &o);
    CHECK_STR(o.rep.www_authenticate, "Bearer error=\"insufficient_scope\", scope=\"write\"");
    CHECK_INT(o.who.scopes, 0); /* a refused caller is nobody */
    h.authorization = "Bearer " WRITE_KEY;
    refused(&h, 413, "payload_too_large", &o);
    h.content_length = 10;
    dispatch(&h, &o);
    CHECK(o.route && o.route->handler == qgh_route_update);
    CHECK_INT(o.who.scopes, QGH_SCOPE_WRITE);
    CHECK_STR(o.who.role, "qgt_role");
    CHECK(o.who.caller != 0);

    /* A GET without a body keeps its connection. */
    h = head("GET", "/pool");
    h.auth = a;
    refused(&h, 401, "unauthorized", &o);
    CHECK(!o.rep.close);
    h.authorization = "Bearer " READ_KEY;
    refused(&h, 403, "forbidden", &o);
    CHECK_STR(o.rep.www_authenticate, "Bearer error=\"insufficient_scope\", scope=\"admin\"");
    h.authorization = "Bearer " ADMIN_KEY;
    dispatch(&h, &o);
    CHECK(o.route && o.who.scopes == QGH_SCOPE_ADMIN);

    /* Open routes answer any caller; a bad key is nobody, not refused. */
    h = head("GET", "/health/ready");
    h.auth = a;
    h.authorization = "Bearer nope-0123456789abcdef";
    dispatch(&h, &o);
    CHECK(o.route != NULL);
    CHECK_INT(o.who.scopes, 0);
    h.authorization = "Bearer " ADMIN_KEY;
    dispatch(&h, &o);
    CHECK_INT(o.who.scopes, QGH_SCOPE_ADMIN);

    /* Without authentication everybody may do everything. */
    h = head("GET", "/pool");
    dispatch(&h, &o);
    CHECK(o.route != NULL);
    CHECK_INT(o.who.scopes, QGH_SCOPE_ALL);
    qgh_auth_free(a);
    qgh_reply_reset(&o.rep);
}

/* The named scope runs named queries of either mode and nothing else; ALLOW_RAW_SQL=false
   leaves the raw SQL endpoints to admin keys. */
static void named_scope_and_raw_sql(void)
{
    qgh_auth *a = keys();
    if (!a)
        return;
    struct outcome o = OUTCOME;
    static const char *const raw[] = {"/query", "/update", "/insert", "/transaction"};
    for (size_t i = 0; i < 4; i++) {
        struct qgh_head h = head("POST", raw[i]);
        h.auth = a;
        h.content_type = "application/json";
        h.authorization = "Bearer " NAMED_KEY;
        refused(&h, 403, "forbidden", &o);
        h.raw_sql_off = true;
        h.authorization = "Bearer " READ_KEY;
        refused_closing(&h, 403, "raw_sql_disabled", &o);
        CHECK(o.rep.www_authenticate == NULL);
        CHECK_INT(o.who.scopes, 0);
        h.authorization = "Bearer " WRITE_KEY;
        refused(&h, 403, "raw_sql_disabled", &o);
        h.authorization = "Bearer " NAMED_KEY;
        refused(&h, 403, "raw_sql_disabled", &o);
        h.authorization = NULL; /* who the caller is comes first */
        refused(&h, 401, "unauthorized", &o);
        h.authorization = "Bearer " ADMIN_READ_KEY; /* admin: the scope decides, as before */
        if (i == 0) {
            dispatch(&h, &o);
            CHECK(o.route != NULL);
        } else {
            refused(&h, 403, "forbidden", &o);
        }
    }
    struct qgh_head h = head("POST", "/queries/x");
    h.auth = a;
    h.content_type = "application/json";
    h.raw_sql_off = true; /* named queries keep working */
    static const char *const runners[] = {"Bearer " NAMED_KEY, "Bearer " READ_KEY,
                                          "Bearer " WRITE_KEY};
    for (size_t i = 0; i < 3; i++) {
        h.authorization = runners[i];
        dispatch(&h, &o);
        CHECK(o.route && o.route->handler == qgh_route_named_run);
    }
    h.authorization = "Bearer " ADMIN_KEY;
    refused(&h, 403, "forbidden", &o);
    CHECK_STR(o.rep.www_authenticate,
              "Bearer error=\"insufficient_scope\", scope=\"read write named\"");
    /* Listing takes read, or named: a named key lists what it may call. */
    h = head("GET", "/queries");
    h.auth = a;
    h.authorization = "Bearer " NAMED_KEY;
    dispatch(&h, &o);
    CHECK(o.route && o.route->handler == qgh_route_named_list);
    h.authorization = "Bearer " READ_KEY;
    dispatch(&h, &o);
    CHECK(o.route != NULL);
    h.authorization = "Bearer " WRITE_KEY;
    refused(&h, 403, "forbidden", &o);
    h = head("GET", "/pool");
    h.auth = a;
    h.authorization = "Bearer " NAMED_KEY;
    refused(&h, 403, "forbidden", &o);
    qgh_auth_free(a);
    qgh_reply_reset(&o.rep);
}

/* A preflight comes before the key (browsers send none) and before the method check. */
static void preflight_first(void)
{
    qgh_auth *a = keys();
    qgh_cors *c = NULL;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qgh_cors_new("https://app.example", NULL, &c, &err), QG_OK);
    if (!a || !c)
        return;
    struct outcome o = OUTCOME;
    struct qgh_head h = head("OPTIONS", "/update");
    h.auth = a;
    h.cors = c;
    h.origin = "https://app.example";
    h.cors_method = "POST";
    dispatch(&h, &o);
    CHECK(o.route == NULL);
    CHECK_INT(o.rep.status, 204);
    CHECK(o.rep.preflight);
    CHECK_STR(o.rep.cors_methods, "POST");
    h.path = "/pool";
    dispatch(&h, &o);
    CHECK_STR(o.rep.cors_methods, "GET, HEAD");
    h.origin = "https://evil.example";
    refused(&h, 403, "forbidden", &o);
    /* The checks before it still hold; after it, an unknown path is 404. */
    h.origin = "https://app.example";
    h.head_bytes = QGH_HEAD_MAX + 1;
    refused(&h, 431, "header_too_large", &o);
    h = head("OPTIONS", "/nope");
    h.cors = c;
    h.origin = "https://app.example";
    h.cors_method = "GET";
    refused(&h, 404, "not_found", &o);
    qgh_cors_free(c);
    qgh_auth_free(a);
    qgh_reply_reset(&o.rep);
}

int main(void)
{
    RUN(route_table);
    RUN(unknown_paths_and_methods);
    RUN(framing_and_limits);
    RUN(content_types);
    RUN(authentication);
    RUN(named_scope_and_raw_sql);
    RUN(preflight_first);
    return qgt_done();
}
