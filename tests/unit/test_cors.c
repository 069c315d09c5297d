/* CORS_ALLOW_ORIGINS and CORS_ALLOW_HEADERS parsing, origin matching, preflight answers and response headers (src/http/cors.c). */
#include "cors.h"
#include "reply.h"
#include "router.h"
#include "qgtest.h"

struct headers {
    char text[1024];
};

static void collect(void *arg, const char *name, const char *value)
{
    struct headers *h = arg;
    size_t n = strlen(h->text);
    snprintf(h->text + n, sizeof h->text - n, "%s: %s\n", name, value);
}

static qgh_cors *parse(const char *spec)
{
    qg_error err;
    qg_error_clear(&err);
    qgh_cors *c = NULL;
    CHECK_INT(qgh_cors_new(spec, NULL, &c, &err), QG_OK);
    return c;
}

static void bad(const char *spec, const char *words)
{
    qg_error err;
    qg_error_clear(&err);
    qgh_cors *c = (qgh_cors *)1;
    CHECK_INT(qgh_cors_new(spec, NULL, &c, &err), QG_ERR_CONFIG);
    CHECK(c == NULL);
    if (!strstr(err.message, words) || !strstr(err.message, "CORS_ALLOW_ORIGINS")) {
        fprintf(stderr, "spec %s: message %s lacks %s\n", spec, err.message, words);
        qgt_failures++;
    }
}

static void bad_headers(const char *headers, const char *words)
{
    qg_error err;
    qg_error_clear(&err);
    qgh_cors *c = (qgh_cors *)1;
    /* Checked even without origins: a typo shows at start, not when CORS is turned on. */
    for (int with_origins = 0; with_origins < 2; with_origins++) {
        CHECK_INT(qgh_cors_new(with_origins ? "*" : NULL, headers, &c, &err), QG_ERR_CONFIG);
        CHECK(c == NULL);
        if (!strstr(err.message, words) || !strstr(err.message, "CORS_ALLOW_HEADERS")) {
            fprintf(stderr, "headers %s: message %s lacks %s\n", headers, err.message, words);
            qgt_failures++;
        }
        qg_error_clear(&err);
    }
}

static void test_parse(void)
{
    CHECK(parse(NULL) == NULL);
    CHECK(parse("") == NULL);
    qgh_cors *c = parse(" https://a.example ,http://127.0.0.1:8080,\thttp://[::1]:9 ");
    CHECK(qgh_cors_allows(c, "https://a.example"));
    CHECK(qgh_cors_allows(c, "http://127.0.0.1:8080"));
    CHECK(qgh_cors_allows(c, "http://[::1]:9"));
    CHECK(!qgh_cors_allows(c, "https://a.example/"));
    CHECK(!qgh_cors_allows(c, "http://a.example"));
    CHECK(!qgh_cors_allows(c, "https://A.example"));
    CHECK(!qgh_cors_allows(c, "https://a.example.evil"));
    CHECK(!qgh_cors_allows(c, ""));
    CHECK(!qgh_cors_allows(c, NULL));
    CHECK(!qgh_cors_allows(NULL, "https://a.example"));
    qgh_cors_free(c);
    c = parse(" * ");
    CHECK(qgh_cors_allows(c, "http://anything:1"));
    CHECK(!qgh_cors_allows(c, NULL));
    qgh_cors_free(c);
    qgh_cors_free(NULL);

    bad("https://a.example/", "path");
    bad("https://a.example/app", "path");
    bad("a.example", "not an origin");
    bad("https://", "not an origin");
    bad("https://a.example,", "empty entry");
    bad(",https://a.example", "empty entry");
    bad("*,https://a.example", "stand alone");
    bad("https://a.example, *", "stand alone");
    bad("https://*.example", "wildcard");
    bad("https://a example", "space");
}

static struct qgh_head head(const qgh_cors *c, const char *method, const char *origin,
                            const char *acr_method, const char *acr_headers)
{
    struct qgh_head h = {.method = method, .path = "/query", .content_length = -1,
                         .max_body = 1024, .cors = c, .origin = origin,
                         .cors_method = acr_method, .cors_headers = acr_headers};
    return h;
}

static void test_preflight(void)
{
    qgh_cors *c = parse("https://a.example");
    struct qgh_reply rep = {0};
    struct qgh_head h = head(c, "OPTIONS", "https://a.example", "POST", "Content-Type, authorization");
    CHECK(qgh_cors_preflight(&h, "POST", &rep));
    CHECK_INT(rep.status, 204);
    CHECK(rep.preflight && rep.body == NULL);
    CHECK_STR(rep.cors_headers, "Content-Type, authorization");
    struct headers out = {""};
    qgh_cors_headers(c, h.origin, &rep, collect, &out);
    CHECK_STR(out.text, "Vary: Origin\nAccess-Control-Allow-Origin: https://a.example\n"
                        "Access-Control-Allow-Methods: POST\n"
                        "Access-Control-Allow-Headers: Content-Type, authorization\n"
                        "Access-Control-Max-Age: 600\n");
    qgh_reply_reset(&rep);

    /* One requested header outside the set, none requested, only separators: the set. */
    const char *asks[] = {"content-type, x-evil", NULL, " , ", "x-request-id,authorizationx"};
    for (size_t i = 0; i < sizeof asks / sizeof asks[0]; i++) {
        h = head(c, "OPTIONS", "https://a.example", "POST", asks[i]);
        CHECK(qgh_cors_preflight(&h, "POST", &rep));
        CHECK_STR(rep.cors_headers, QG_CORS_ALLOW_HEADERS_DEFAULT);
        qgh_reply_reset(&rep);
    }

    /* OpenTelemetry's fetch instrumentation: allowed by default. */
    h = head(c, "OPTIONS", "https://a.example", "POST",
             "authorization,content-type,traceparent,tracestate");
    CHECK(qgh_cors_preflight(&h, "POST", &rep));
    CHECK_INT(rep.status, 204);
    CHECK_STR(rep.cors_headers, "authorization,content-type,traceparent,tracestate");
    qgh_reply_reset(&rep);

    /* Read-your-writes from a browser: the LSN header a read sends is allowed by default. */
    h = head(c, "OPTIONS", "https://a.example", "POST", "content-type,x-querygate-min-lsn");
    CHECK(qgh_cors_preflight(&h, "POST", &rep));
    CHECK_INT(rep.status, 204);
    qgh_reply_reset(&rep);

    /* Origin not allowed: 403, and no CORS header but Vary. */
    h = head(c, "OPTIONS", "https://b.example", "POST", NULL);
    CHECK(qgh_cors_preflight(&h, "POST", &rep));
    CHECK_INT(rep.status, 403);
    CHECK_STR(rep.code, "forbidden");
    out.text[0] = '\0';
    qgh_cors_headers(c, h.origin, &rep, collect, &out);
    CHECK_STR(out.text, "Vary: Origin\n");
    qgh_reply_reset(&rep);

    /* Not preflights: another method, no Origin, no Access-Control-Request-Method, no CORS. */
    struct qgh_head nots[] = {head(c, "POST", "https://a.example", "POST", NULL),
                              head(c, "OPTIONS", NULL, "POST", NULL),
                              head(c, "OPTIONS", "https://a.example", NULL, NULL),
                              head(NULL, "OPTIONS", "https://a.example", "POST", NULL)};
    for (size_t i = 0; i < sizeof nots / sizeof nots[0]; i++) {
        CHECK(!qgh_cors_preflight(&nots[i], "POST", &rep));
        CHECK_INT(rep.status, 0);
    }
    qgh_cors_free(c);
}

static void test_allow_headers(void)
{
    qg_error err;
    qg_error_clear(&err);
    qgh_cors *c = NULL;
    CHECK_INT(qgh_cors_new("https://a.example", " X-Custom ,authorization,\tB3 ", &c, &err),
              QG_OK);
    struct qgh_reply rep = {0};
    struct qgh_head h = head(c, "OPTIONS", "https://a.example", "POST", "x-custom, Authorization");
    CHECK(qgh_cors_preflight(&h, "POST", &rep));
    CHECK_STR(rep.cors_headers, "x-custom, Authorization");
    qgh_reply_reset(&rep);
    /* Not listed, even though the default has it: the list is the one configured. */
    h = head(c, "OPTIONS", "https://a.example", "POST", "content-type");
    CHECK(qgh_cors_preflight(&h, "POST", &rep));
    CHECK_STR(rep.cors_headers, "X-Custom, authorization, B3");
    qgh_reply_reset(&rep);
    qgh_cors_free(c);
    /* Without origins there is no CORS, but the list is still checked. */
    c = (qgh_cors *)1;
    CHECK_INT(qgh_cors_new(NULL, "X-Custom", &c, &err), QG_OK);
    CHECK(c == NULL);

    bad_headers("", "not a header name");
    bad_headers("Content-Type,,Authorization", "not a header name");
    bad_headers("Content-Type,", "not a header name");
    bad_headers("Content Type", "not a header name");
    bad_headers("X-A:b", "not a header name");
    bad_headers("X-\"q\"", "not a header name");
    char big[700];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (size_t i = 20; i < sizeof big - 1; i += 21)
        big[i] = ',';
    bad_headers(big, "longer than");
}

static void test_response_headers(void)
{
    qgh_cors *c = parse("https://a.example");
    struct qgh_reply rep = {.status = 200};
    struct headers out = {""};
    qgh_cors_headers(c, "https://a.example", &rep, collect, &out);
    CHECK_STR(out.text, "Vary: Origin\nAccess-Control-Allow-Origin: https://a.example\n"
                        "Access-Control-Expose-Headers: X-Request-Id, Retry-After, WWW-Authenticate, X-Querygate-LSN, X-Querygate-Served-By\n");
    out.text[0] = '\0';
    qgh_cors_headers(c, NULL, &rep, collect, &out);
    CHECK_STR(out.text, "Vary: Origin\n");
    out.text[0] = '\0';
    qgh_cors_headers(NULL, "https://a.example", &rep, collect, &out);
    CHECK_STR(out.text, "");
    qgh_cors_free(c);
    c = parse("*");
    out.text[0] = '\0';
    qgh_cors_headers(c, "https://z.example", &rep, collect, &out);
    CHECK_STR(out.text, "Vary: Origin\nAccess-Control-Allow-Origin: *\n"
                        "Access-Control-Expose-Headers: X-Request-Id, Retry-After, WWW-Authenticate, X-Querygate-LSN, X-Querygate-Served-By\n");
    qgh_cors_free(c);
}

int main(void)
{
    RUN(test_parse);
    RUN(test_allow_headers);
    RUN(test_preflight);
    RUN(test_response_headers);
    return qgt_done();
}
