/* Request JSON: exact numbers, strict parsing, dump round trip, array literals, params. */
#include <stdlib.h>
#include <string.h>

#include "core_private.h"
#include "qgtest.h"

static json_t *parse(const char *s, qg_error *e)
{
    qg_error_clear(e);
    return qg_json_parse(s, strlen(s), e);
}

/* Parses s, which must be valid, and dumps it; "(invalid)" when it fails. */
static char *roundtrip(const char *s)
{
    qg_error e;
    json_t *v = parse(s, &e);
    if (!v) {
        fprintf(stderr, "    unexpected error for %s: %s\n", s, e.message);
        return strdup("(invalid)");
    }
    CHECK_INT(e.status, QG_OK);
    char *d = qg_json_dump(v, NULL);
    json_decref(v);
    return d;
}

#define CHECK_DUMP(in, want)            \
    do {                                \
        char *d_ = roundtrip(in);       \
        CHECK_STR(d_, want);            \
        free(d_);                       \
    } while (0)

/* s must be rejected with status st; returns whether the message contains want. */
static bool rejected(const char *s, size_t len, qg_status st, const char *want)
{
    qg_error e;
    qg_error_clear(&e);
    json_t *v = qg_json_parse(s, len, &e);
    if (v) {
        json_decref(v);
        fprintf(stderr, "    accepted: %.60s\n", s);
        return false;
    }
    if (e.status != st)
        fprintf(stderr, "    status %d (want %d) for %.60s: %s\n", e.status, st, s, e.message);
    if (want && !strstr(e.message, want))
        fprintf(stderr, "    message for %.60s: %s\n    (want it to contain %s)\n", s, e.message,
                want);
    return e.status == st && (!want || strstr(e.message, want));
}

#define CHECK_BAD(s, want) CHECK(rejected(s, strlen(s), QG_ERR_INVALID_JSON, want))

static void exact_numbers(void)
{
    qg_error e;
    json_t *v = parse("{\"n\": 12345678901234567890.123456789, \"i\": 123456789012345678901234567890,"
                      " \"e\": -1.5E+300, \"z\": -0, \"x\": 1e-400, \"s\": \"12\"}",
                      &e);
    CHECK(v != NULL);
    size_t n;
    CHECK(qg_json_is_number(json_object_get(v, "n")));
    CHECK_STR(qg_json_number_text(json_object_get(v, "n"), &n), "12345678901234567890.123456789");
    CHECK_INT(n, 30);
    CHECK_STR(qg_json_number_text(json_object_get(v, "i"), NULL), "123456789012345678901234567890");
    CHECK_STR(qg_json_number_text(json_object_get(v, "e"), NULL), "-1.5E+300");
    CHECK_STR(qg_json_number_text(json_object_get(v, "z"), NULL), "-0");
    CHECK_STR(qg_json_number_text(json_object_get(v, "x"), NULL), "1e-400");
    /* a number inside a string is a string */
    json_t *s = json_object_get(v, "s");
    CHECK(!qg_json_is_number(s));
    CHECK_STR(json_string_value(s), "12");
    CHECK(qg_json_number_text(s, &n) == NULL);
    CHECK_INT(n, 0);
    CHECK(!qg_json_is_number(NULL));
    CHECK(!qg_json_is_number(json_true()));
    json_decref(v);

    v = parse("7", &e); /* a scalar at the top level */
    CHECK_STR(qg_json_number_text(v, NULL), "7");
    json_decref(v);
    CHECK_DUMP("[0,-0,0.0,1E5,1e+5,1e-5,-12.50e007,9223372036854775808]",
               "[0,-0,0.0,1E5,1e+5,1e-5,-12.50e007,9223372036854775808]");
}

static void bad_numbers(void)
{
    CHECK_BAD("[01]", "leading zeros");
    CHECK_BAD("[-01]", "leading zeros");
    CHECK_BAD("[1.]", "decimal point");
    CHECK_BAD("[.5]", NULL);
    CHECK_BAD("[1.e5]", "decimal point");
    CHECK_BAD("[1e]", "exponent");
    CHECK_BAD("[1e+]", "exponent");
    CHECK_BAD("[-]", "follow '-'");
    CHECK_BAD("-", "follow '-'");
    CHECK_BAD("[+1]", NULL);
    CHECK_BAD("[1.5.3]", "followed by");
    CHECK_BAD("[1x]", "followed by");
    CHECK_BAD("[1-2]", "followed by");
    CHECK_BAD("[0x10]", "followed by");
    CHECK_BAD("[Infinity]", NULL);
    CHECK_BAD("[-Infinity]", NULL);
    CHECK_BAD("[NaN]", NULL);
    CHECK_BAD("[1 2]", NULL);
    CHECK_BAD("[1,]", NULL);
    CHECK_BAD("{1:2}", "object keys must be strings");
    CHECK_BAD("{\"a\":1,2:3}", "object keys must be strings");
    CHECK_BAD("[1\"a\"]", NULL);
    CHECK_BAD("[true1]", NULL);
    /* the position is the caller's, not the rewritten text's */
    CHECK_BAD("[1, 22,\n 333 x]", "line 2, column 6");
    CHECK_BAD("[1, 22, 333 x]", "line 1, column 13");
    CHECK_BAD("[12345, 1.]", "line 1, column 11");
    CHECK_BAD("[1, 2 3]", "near '3'");
}

static void strings(void)
{
    qg_error e;
    json_t *v = parse("[\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u00e9 \\u20AC \\ud83d\\ude00 \xc3\xa9\"]", &e);
    CHECK(v != NULL);
    CHECK_STR(json_string_value(json_array_get(v, 0)),
              "q\" b\\ s/ \b\f\n\r\t \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc3\xa9");
    char *d = qg_json_dump(v, NULL);
    CHECK_STR(d, "[\"q\\\" b\\\\ s/ \\b\\f\\n\\r\\t \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc3\xa9\"]");
    free(d);
    json_decref(v);

    CHECK_DUMP("[\"-1\", \"1e5\", \"\\\"12\\\"\", \"[1,2]\"]", "[\"-1\",\"1e5\",\"\\\"12\\\"\",\"[1,2]\"]");
    CHECK_BAD("[\"\\ud800\"]", NULL);          /* lone surrogate */
    CHECK_BAD("[\"\\ude00\\ud83d\"]", NULL);   /* reversed pair */
    CHECK_BAD("[\"\\x41\"]", NULL);            /* not a JSON escape */
    CHECK_BAD("[\"a\tb\"]", NULL);             /* raw control character */
    CHECK_BAD("[\"\xff\"]", NULL);             /* not UTF-8 */
    CHECK_BAD("[\"\xc0\x80\"]", NULL);         /* overlong NUL */
    CHECK_BAD("[\"abc]", NULL);                /* unterminated */
    CHECK_BAD("['a']", NULL);
}

static void nul_refused(void)
{
    const char *msg = "PostgreSQL";
    CHECK(rejected("[\"a\\u0000b\"]", 12, QG_ERR_INVALID_REQUEST, msg));
    CHECK(rejected("{\"k\\u0000\": 1}", 14, QG_ERR_INVALID_REQUEST, msg));
    CHECK(rejected("{\"a\": \"x\", \"b\": {\"c\": \"\\u0000\"}}", 32, QG_ERR_INVALID_REQUEST,
                   "line 1, column 24"));
    /* a caller cannot forge a number */
    CHECK(rejected("[\"\\u0000#12\"]", 13, QG_ERR_INVALID_REQUEST, msg));
    /* \u0000 inside something that is not JSON: the JSON error wins */
    CHECK(rejected("[\"\\u0000\"", 9, QG_ERR_INVALID_JSON, NULL));
    /* not a \u0000 escape */
    CHECK_DUMP("[\"\\\\u0000\", \"\\u0001\"]", "[\"\\\\u0000\",\"\\u0001\"]");
    /* a raw NUL byte is not JSON anywhere */
    CHECK(rejected("[\"a\0\"]", 6, QG_ERR_INVALID_JSON, NULL));
    CHECK(rejected("[1]\0", 4, QG_ERR_INVALID_JSON, NULL));
    CHECK(rejected("[1,\0 2]", 7, QG_ERR_INVALID_JSON, NULL));
    /* plain jansson accepts these (a number then NUL); found by fuzz_json */
    CHECK(rejected("0e5\0", 4, QG_ERR_INVALID_JSON, NULL));
    CHECK(rejected("123\0", 4, QG_ERR_INVALID_JSON, NULL));
}

static void structure(void)
{
    CHECK_BAD("{\"a\":1,\"a\":2}", "duplicate");
    CHECK_BAD("", NULL);
    CHECK_BAD("   \n ", NULL);
    CHECK_BAD("[1] x", "end of file expected");
    CHECK_BAD("[1]]", NULL);
    CHECK_BAD("{\"a\":1}{}", NULL);
    CHECK_BAD("\xef\xbb\xbf{}", NULL); /* BOM */
    CHECK_BAD("[", NULL);
    CHECK_BAD("{\"a\" 1}", NULL);
    CHECK_BAD("{\"a\":}", NULL);
    CHECK_BAD("[tru]", NULL);
    CHECK_BAD("[True]", NULL);
    CHECK_BAD("[nulll]", NULL);
    CHECK_BAD("/* c */ []", NULL);
    CHECK_DUMP(" \t\r\n[ true , false , null , { } , [ ] ] \n", "[true,false,null,{},[]]");
    CHECK_DUMP("\"x\"", "\"x\"");
    CHECK_DUMP("null", "null");
    /* keys keep the caller's order */
    CHECK_DUMP("{\"b\":1,\"a\":{\"z\":[1,{\"y\":2,\"x\":3}],\"c\":null}}",
               "{\"b\":1,\"a\":{\"z\":[1,{\"y\":2,\"x\":3}],\"c\":null}}");

    /* deep nesting is an error, not a stack overflow */
    size_t depth = 10000;
    char *deep = malloc(2 * depth + 2);
    memset(deep, '[', depth);
    deep[depth] = '1';
    memset(deep + depth + 1, ']', depth);
    deep[2 * depth + 1] = '\0';
    CHECK(rejected(deep, strlen(deep), QG_ERR_INVALID_JSON, "depth"));
    free(deep);

    qg_error e;
    qg_error_clear(&e);
    CHECK(qg_json_parse(NULL, 5, &e) == NULL);
    CHECK_INT(e.status, QG_ERR_INVALID_REQUEST);
    CHECK(qg_json_parse(NULL, 0, NULL) == NULL);
    CHECK(qg_json_dump(NULL, NULL) == NULL);
    /* length, not NUL termination, bounds the text */
    json_t *v = qg_json_parse("[12]xyz", 4, NULL);
    CHECK_STR(qg_json_number_text(json_array_get(v, 0), NULL), "12");
    json_decref(v);
    v = qg_json_parse("123", 2, NULL);
    CHECK_STR(qg_json_number_text(v, NULL), "12");
    json_decref(v);
}

static void dump_values_built_by_code(void)
{
    json_t *v = json_pack("{s:I,s:f,s:s#}", "i", (json_int_t)-42, "r", 0.5, "s", "a\0b", (size_t)3);
    char *d = qg_json_dump(v, NULL);
    CHECK_STR(d, "{\"i\":-42,\"r\":0.5,\"s\":\"a\\u0000b\"}");
    free(d);
    json_decref(v);
}

static char *pg_literal(const char *json)
{
    json_t *v = qg_json_parse(json, strlen(json), NULL);
    char *out = (char *)"(unset)";
    size_t len = 0;
    CHECK(v != NULL);
    CHECK(qgp_json_pg_array(v, &out, &len));
    CHECK(out == NULL || strlen(out) == len);
    json_decref(v);
    return out;
}

#define CHECK_PG(json, want)                    \
    do {                                        \
        char *l_ = pg_literal(json);            \
        const char *pw_ = (want);               \
        if (pw_)                                \
            CHECK_STR(l_, pw_);                 \
        else                                    \
            CHECK(l_ == NULL);                  \
        free(l_);                               \
    } while (0)

static void pg_arrays(void)
{
    CHECK_PG("[1,2,3]", "{1,2,3}");
    CHECK_PG("[12345678901234567890.123456789,-0,1e5]", "{12345678901234567890.123456789,-0,1e5}");
    CHECK_PG("[[1,2],[3,4]]", "{{1,2},{3,4}}");
    CHECK_PG("[[[1]],[[2]]]", "{{{1}},{{2}}}");
    CHECK_PG("[\"a\",\"b c\",\"\",\"NULL\",\"{x,y}\"]", "{\"a\",\"b c\",\"\",\"NULL\",\"{x,y}\"}");
    CHECK_PG("[\"say \\\"hi\\\"\",\"back\\\\slash\",\"\\\\\\\"\"]",
             "{\"say \\\"hi\\\"\",\"back\\\\slash\",\"\\\\\\\"\"}");
    CHECK_PG("[null,1,null]", "{NULL,1,NULL}");
    CHECK_PG("[true,false]", "{true,false}");
    CHECK_PG("[]", "{}");
    CHECK_PG("[[]]", "{{}}");
    CHECK_PG("[\"\xc3\xa9\\n\"]", "{\"\xc3\xa9\n\"}");
    CHECK_PG("[{\"a\":1}]", NULL);
    CHECK_PG("[1,[2,{}]]", NULL);
    CHECK_PG("{\"a\":1}", NULL);
    CHECK_PG("\"[1]\"", NULL);
}

static void params(void)
{
    qg_error e;
    json_t *v = parse("{\"s\":\"x\",\"n\":1.50,\"t\":true,\"f\":false,\"z\":null,"
                      "\"o\":{\"k\":[1]},\"a\":[1,2],\"ao\":[{}]}",
                      &e);
    qg_params *p = NULL;
    qg_error_clear(&e);
    CHECK_INT(qg_params_from_json(v, &p, &e), QG_OK);
    CHECK_INT(qg_params_count(p), 8);
    qg_params_free(p);
    json_decref(v);

    p = NULL;
    CHECK_INT(qg_params_from_json(NULL, &p, NULL), QG_OK);
    CHECK(p != NULL);
    CHECK_INT(qg_params_count(p), 0);
    qg_params_free(p);

    const char *not_objects[] = {"[1]", "1", "\"a\"", "null", "[{\"a\":1}]"};
    for (size_t i = 0; i < sizeof not_objects / sizeof *not_objects; i++) {
        v = parse(not_objects[i], &e);
        qg_error_clear(&e);
        p = (qg_params *)&e; /* must be reset to NULL */
        CHECK_INT(qg_params_from_json(v, &p, &e), QG_ERR_INVALID_REQUEST);
        CHECK(strstr(e.message, "params") != NULL);
        CHECK(p == NULL);
        json_decref(v);
    }
    /* a bad name is refused by qg_params_add, and nothing leaks */
    v = parse("{\"ok\":1,\"bad name\":2}", &e);
    qg_error_clear(&e);
    CHECK_INT(qg_params_from_json(v, &p, &e), QG_ERR_INVALID_REQUEST);
    CHECK(p == NULL);
    json_decref(v);
    CHECK_INT(qg_params_from_json(NULL, NULL, NULL), QG_ERR_INVALID_REQUEST);
}

int main(void)
{
    RUN(exact_numbers);
    RUN(bad_numbers);
    RUN(strings);
    RUN(nul_refused);
    RUN(structure);
    RUN(dump_values_built_by_code);
    RUN(pg_arrays);
    RUN(params);
    return qgt_done();
}
