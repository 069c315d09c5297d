/* Unit tests for types.c and result_json.c: every value kind, arrays, keys, rows, columns. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core_private.h"
#include "qgtest.h"
#include "rfc3339.h"

enum {
    BOOL = 16, BYTEA = 17, INT8 = 20, INT2 = 21, INT4 = 23, TEXT = 25, OID = 26, JSON = 114,
    FLOAT4 = 700, FLOAT8 = 701, DATE = 1082, TIME = 1083, TIMESTAMP = 1114, TIMESTAMPTZ = 1184,
    INTERVAL = 1186, TIMETZ = 1266, NUMERIC = 1700, UUID = 2950, JSONB = 3802,
    A_TIMESTAMP = 1115, A_TIMESTAMPTZ = 1185, A_TIMETZ = 1270, TSTZRANGE = 3910,
    A_JSON = 199, A_BOOL = 1000, A_BYTEA = 1001, A_INT4 = 1007, A_TEXT = 1009, A_INT8 = 1016,
    A_BOX = 1020, A_FLOAT8 = 1022, A_DATE = 1182, A_NUMERIC = 1231, A_JSONB = 3807,
};

/*
 * Valid JSON by jansson. NOTE: jansson refuses numbers beyond a double's range
 * ("real number overflow") although RFC 8259 allows them; that one error passes.
 */
static bool valid_json(const char *s, size_t n)
{
    json_error_t e;
    json_t *j = json_loadb(s, n, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &e);
    if (j) {
        json_decref(j);
        return true;
    }
    if (json_error_code(&e) == json_error_numeric_overflow)
        return true;
    fprintf(stderr, "    invalid JSON (%s at %d): %.*s\n", e.text, e.position, (int)n, s);
    return false;
}

/* The JSON for one value; malloc'd, caller frees. */
static char *value_json(Oid type, const char *text, bool as_strings)
{
    struct qgp_json_opts opt = {.numbers_as_strings = as_strings};
    qg_buf b;
    qg_buf_init(&b);
    qgp_json_value(&b, type, text, text ? strlen(text) : 0, &opt);
    return qg_buf_steal(&b, NULL);
}

#define CHECK_VALUE_OPT(type, text, as_strings, want)                            \
    do {                                                                         \
        char *got_ = value_json((type), (text), (as_strings));                   \
        CHECK_STR(got_, (want));                                                 \
        CHECK(got_ && valid_json(got_, strlen(got_)));                           \
        free(got_);                                                              \
    } while (0)
#define CHECK_VALUE(type, text, want) CHECK_VALUE_OPT(type, text, false, want)

static void test_type_names(void)
{
    static const struct { Oid oid; const char *name; } want[] = {
        {21, "int2"}, {23, "int4"}, {20, "int8"}, {26, "oid"}, {700, "float4"},
        {701, "float8"}, {1700, "numeric"}, {16, "bool"}, {25, "text"}, {1043, "varchar"},
        {1042, "bpchar"}, {19, "name"}, {18, "char"}, {114, "json"}, {3802, "jsonb"},
        {17, "bytea"}, {1082, "date"}, {1083, "time"}, {1266, "timetz"}, {1114, "timestamp"},
        {1184, "timestamptz"}, {1186, "interval"}, {2950, "uuid"}, {869, "inet"},
        {650, "cidr"}, {829, "macaddr"}, {142, "xml"}, {790, "money"}, {1560, "bit"},
        {1562, "varbit"}, {3614, "tsvector"}, {600, "point"}, {1007, "_int4"},
        {1009, "_text"}, {3807, "_jsonb"}, {1231, "_numeric"}, {1020, "_box"},
        {2287, "_record"}, {3905, "_int4range"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK_STR(qgp_type_name(want[i].oid), want[i].name);
    CHECK(qgp_type_name(0) == NULL);
    CHECK(qgp_type_name(16385) == NULL);
    CHECK(qgp_type_name((Oid)-1) == NULL);
}

static void test_array_elems(void)
{
    CHECK_INT(qgp_array_elem(A_INT4), INT4);
    CHECK_INT(qgp_array_elem(A_JSONB), JSONB);
    CHECK_INT(qgp_array_elem(A_BOX), 603);
    CHECK_INT(qgp_array_elem(143), 142);  /* _xml, the first */
    CHECK_INT(qgp_array_elem(6157), 4536); /* _int8multirange, the last */
    CHECK_INT(qgp_array_elem(INT4), 0);
    CHECK_INT(qgp_array_elem(22), 0); /* int2vector has a typelem but is not written as {...} */
    CHECK_INT(qgp_array_elem(30), 0); /* oidvector */
    CHECK_INT(qgp_array_elem(0), 0);
    /* Every array type has a name starting "_" and a named element (the tables agree). */
    int arrays = 0;
    for (Oid o = 1; o < 10000; o++) {
        Oid e = qgp_array_elem(o);
        if (!e)
            continue;
        arrays++;
        CHECK(qgp_type_name(o) && qgp_type_name(o)[0] == '_');
        CHECK(qgp_type_name(e) != NULL);
    }
    CHECK_INT(arrays, 82);
}

static void test_numbers(void)
{
    CHECK_VALUE(INT4, "42", "42");
    CHECK_VALUE(INT4, "-2147483648", "-2147483648");
    CHECK_VALUE(INT2, "0", "0");
    CHECK_VALUE(OID, "4294967295", "4294967295");
    CHECK_VALUE(INT8, "9223372036854775807", "9223372036854775807");
    CHECK_VALUE(NUMERIC, "12345678901234567890.123456789", "12345678901234567890.123456789");
    CHECK_VALUE(NUMERIC, "0.000000000000000000001", "0.000000000000000000001");
    CHECK_VALUE(FLOAT8, "1e+308", "1e+308");
    CHECK_VALUE(FLOAT8, "1.7976931348623157e+308", "1.7976931348623157e+308");
    CHECK_VALUE(FLOAT8, "-0", "-0");
    CHECK_VALUE(FLOAT4, "1.5e-05", "1.5e-05");
    CHECK_VALUE(FLOAT8, "NaN", "\"NaN\"");
    CHECK_VALUE(FLOAT8, "Infinity", "\"Infinity\"");
    CHECK_VALUE(FLOAT4, "-Infinity", "\"-Infinity\"");
    CHECK_VALUE(NUMERIC, "NaN", "\"NaN\"");
    CHECK_VALUE(NUMERIC, "-Infinity", "\"-Infinity\"");
    /* Numbers beyond a double stay exact. */
    CHECK_VALUE(NUMERIC, "1000000000000000000000000000000000000000000000000000000000000",
                "1000000000000000000000000000000000000000000000000000000000000");
}

static void test_numbers_as_strings(void)
{
    CHECK_VALUE_OPT(INT8, "9223372036854775807", true, "\"9223372036854775807\"");
    CHECK_VALUE_OPT(NUMERIC, "12345678901234567890.123456789", true,
                    "\"12345678901234567890.123456789\"");
    CHECK_VALUE_OPT(NUMERIC, "NaN", true, "\"NaN\"");
    CHECK_VALUE_OPT(INT4, "42", true, "42");
    CHECK_VALUE_OPT(INT2, "-1", true, "-1");
    CHECK_VALUE_OPT(FLOAT8, "1.5", true, "1.5");
    CHECK_VALUE_OPT(OID, "7", true, "7");
}

/* Text that is not JSON number syntax is a string, never invalid JSON. */
static void test_numbers_not_json(void)
{
    CHECK_VALUE(INT4, "+1", "\"+1\"");
    CHECK_VALUE(NUMERIC, ".5", "\".5\"");
    CHECK_VALUE(NUMERIC, "5.", "\"5.\"");
    CHECK_VALUE(INT4, "01", "\"01\"");
    CHECK_VALUE(INT4, "-", "\"-\"");
    CHECK_VALUE(INT4, "", "\"\"");
    CHECK_VALUE(FLOAT8, "1e", "\"1e\"");
    CHECK_VALUE(FLOAT8, "1e+", "\"1e+\"");
    CHECK_VALUE(FLOAT8, "1E5", "1E5");
    CHECK_VALUE(INT4, "0x10", "\"0x10\"");
    CHECK_VALUE(INT4, " 1", "\" 1\"");
    CHECK_VALUE(INT4, "1 ", "\"1 \"");
    CHECK_VALUE(INT4, "--1", "\"--1\"");
}

static void test_bool_bytea_strings(void)
{
    CHECK_VALUE(BOOL, "t", "true");
    CHECK_VALUE(BOOL, "f", "false");
    CHECK_VALUE(BOOL, "true", "\"true\"");
    CHECK_VALUE(BOOL, "", "\"\"");
    CHECK_VALUE(BYTEA, "\\x00ff", "\"\\\\x00ff\"");
    CHECK_VALUE(TEXT, "a\"b\\c\n\t\x01/", "\"a\\\"b\\\\c\\n\\t\\u0001/\"");
    CHECK_VALUE(TEXT, "h\xc3\xa9", "\"h\xc3\xa9\"");
    CHECK_VALUE(DATE, "2024-02-29", "\"2024-02-29\"");
    CHECK_VALUE(TIMESTAMPTZ, "2024-02-29 12:00:00+00", "\"2024-02-29T12:00:00Z\"");
    CHECK_VALUE(INTERVAL, "P1Y2M3DT4H5M6S", "\"P1Y2M3DT4H5M6S\"");
    CHECK_VALUE(UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"");
    CHECK_VALUE(16385, "happy", "\"happy\""); /* an enum */
    CHECK_VALUE(INT4, NULL, "null");
}

/* The JSON string of one time value, without its quotes, for the regexes. */
static const char *time_text(Oid type, const char *text, bool as_strings)
{
    static char t[128];
    char *j = value_json(type, text, as_strings);
    size_t n = j ? strlen(j) : 0;
    snprintf(t, sizeof t, "%.*s", n >= 2 ? (int)(n - 2) : 0, n >= 2 ? j + 1 : "");
    free(j);
    return t;
}

#define CHECK_TIME(type, text, pattern, want)                                    \
    do {                                                                         \
        CHECK_VALUE((type), (text), "\"" want "\"");                             \
        CHECK_VALUE_OPT((type), (text), true, "\"" want "\"");                   \
        CHECK(r3339_match((pattern), time_text((type), (text), false)));         \
    } while (0)

/* ISO text as DateStyle=ISO, TimeZone=UTC write it, in the forms strict parsers accept. */
static void test_times(void)
{
    CHECK_TIME(TIMESTAMPTZ, "2026-12-02 11:59:28.607974+00", R3339_TIMESTAMPTZ,
               "2026-12-02T11:59:28.607974Z");
    CHECK_TIME(TIMESTAMPTZ, "2024-02-29 00:00:00+00", R3339_TIMESTAMPTZ, "2024-02-29T00:00:00Z");
    CHECK_TIME(TIMESTAMPTZ, "0001-01-01 00:00:00+00", R3339_DATE_TIME, "0001-01-01T00:00:00Z");
    CHECK_TIME(TIMESTAMPTZ, "9999-12-31 23:59:59.999999+00", R3339_TIMESTAMPTZ,
               "9999-12-31T23:59:59.999999Z");
    CHECK_TIME(TIMESTAMP, "2024-01-02 03:04:05.5", R3339_TIMESTAMP, "2024-01-02T03:04:05.5");
    CHECK_TIME(TIMESTAMP, "2024-01-02 03:04:05", R3339_TIMESTAMP, "2024-01-02T03:04:05");
    CHECK_TIME(TIMETZ, "13:14:15+02", R3339_TIMETZ, "13:14:15+02:00");
    CHECK_TIME(TIMETZ, "13:14:15-02", R3339_TIMETZ, "13:14:15-02:00");
    CHECK_TIME(TIMETZ, "13:14:15+00", R3339_TIMETZ, "13:14:15+00:00");
    CHECK_TIME(TIMETZ, "13:14:15.123456+05:30", R3339_TIMETZ, "13:14:15.123456+05:30");
    CHECK_TIME(TIMETZ, "00:00:00-15:59", R3339_TIMETZ, "00:00:00-15:59");
    CHECK_TIME(TIMETZ, "00:00:00.123456789+01", R3339_TIMETZ, "00:00:00.123456789+01:00");
    /* date and time are already RFC 3339's full-date and partial-time */
    CHECK_TIME(DATE, "2024-02-29", R3339_DATE, "2024-02-29");
    CHECK_TIME(TIME, "13:14:15.5", R3339_TIME, "13:14:15.5");
}

/* A statement that SETs TimeZone still gets UTC: the same instant, Z. */
static void test_times_other_zones(void)
{
    CHECK_TIME(TIMESTAMPTZ, "2024-07-01 02:00:00+02", R3339_TIMESTAMPTZ, "2024-07-01T00:00:00Z");
    CHECK_TIME(TIMESTAMPTZ, "2024-07-01 05:30:00.25+05:30", R3339_TIMESTAMPTZ,
               "2024-07-01T00:00:00.25Z");
    CHECK_TIME(TIMESTAMPTZ, "2024-12-31 20:30:00-03:30", R3339_TIMESTAMPTZ,
               "2025-01-01T00:00:00Z");
    CHECK_TIME(TIMESTAMPTZ, "2024-03-01 01:00:00+02", R3339_TIMESTAMPTZ, "2024-02-29T23:00:00Z");
    CHECK_TIME(TIMESTAMPTZ, "2023-03-01 01:00:00+02", R3339_TIMESTAMPTZ, "2023-02-28T23:00:00Z");
    CHECK_TIME(TIMESTAMPTZ, "1900-03-01 01:00:00+02", R3339_TIMESTAMPTZ, "1900-02-28T23:00:00Z");
    CHECK_TIME(TIMESTAMPTZ, "1800-01-01 00:19:32+00:19:32", R3339_TIMESTAMPTZ,
               "1800-01-01T00:00:00Z"); /* local mean time, Europe/Amsterdam */
    CHECK_TIME(TIMESTAMPTZ, "1969-12-31 23:00:00-01", R3339_TIMESTAMPTZ, "1970-01-01T00:00:00Z");
    CHECK_TIME(TIMESTAMPTZ, "0001-01-01 05:00:00+05", R3339_TIMESTAMPTZ, "0001-01-01T00:00:00Z");
    CHECK_TIME(TIMESTAMPTZ, "10000-01-01 05:29:59.999999+05:30", R3339_TIMESTAMPTZ,
               "9999-12-31T23:59:59.999999Z");
    /* outside 0001-9999 once in UTC: PostgreSQL's text */
    CHECK_VALUE(TIMESTAMPTZ, "0001-01-01 00:30:00+01", "\"0001-01-01 00:30:00+01\"");
    CHECK_VALUE(TIMESTAMPTZ, "9999-12-31 23:00:00-05", "\"9999-12-31 23:00:00-05\"");
}

/* What RFC 3339 cannot express keeps PostgreSQL's text. */
static void test_times_kept(void)
{
    static const struct { Oid type; const char *text; } kept[] = {
        {TIMESTAMPTZ, "infinity"}, {TIMESTAMPTZ, "-infinity"}, {TIMESTAMP, "infinity"},
        {TIMESTAMP, "-infinity"}, {DATE, "infinity"},
        {TIMESTAMPTZ, "0044-03-15 10:00:00+00 BC"}, {TIMESTAMP, "0044-03-15 10:00:00 BC"},
        {DATE, "0044-03-15 BC"}, {TIMESTAMPTZ, "12345-01-01 00:00:00+00"},
        {TIMESTAMP, "294276-12-31 23:59:59.999999"}, {DATE, "5874897-12-31"},
        {TIMETZ, "13:14:15+01:02:03"}, {TIMETZ, "13:14:15-00:00:01"}, /* offset seconds */
        {TIMETZ, "24:00:00+02"}, {TIME, "24:00:00"},                  /* hour 24 */
        /* another DateStyle (a statement may SET it): left alone */
        {TIMESTAMPTZ, "07/01/2024 05:30:00 IST"}, {TIMESTAMPTZ, "Mon Jul 01 05:30:00 2024 IST"},
        {TIMESTAMP, "01.07.2024 00:00:00"},
        /* not server output: never half rewritten */
        {TIMESTAMPTZ, ""}, {TIMESTAMPTZ, "2024-01-01"}, {TIMESTAMPTZ, "2024-01-01 00:00:00"},
        {TIMESTAMPTZ, "2024-01-01 00:00:00+"}, {TIMESTAMPTZ, "2024-01-01 00:00:00+1"},
        {TIMESTAMPTZ, "2024-01-01 00:00:00+01:"}, {TIMESTAMPTZ, "2024-01-01 00:00:00+01:00:"},
        {TIMESTAMPTZ, "2024-01-01 00:00:00+01:00:00:00"}, {TIMESTAMPTZ, "2024-01-01 00:00:00.+00"},
        {TIMESTAMPTZ, "2024-13-01 00:00:00+00"}, {TIMESTAMPTZ, "0000-01-01 00:00:00+00"},
        {TIMESTAMPTZ, "2024-01-01T00:00:00+00"}, {TIMESTAMPTZ, "2024-01-01 00:60:00+00"},
        {TIMESTAMP, "2024-01-01 00:00:00+00"}, {TIMESTAMP, "2024-01-01 25:00:00"},
        {TIMETZ, "13:14:15"}, {TIMETZ, "13:14+02"}, {TIMETZ, "13:14:15+0a"},
        {TIMETZ, "13:14:15.1234567890+02"},
    };
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        char want[128];
        snprintf(want, sizeof want, "\"%s\"", kept[i].text);
        CHECK_VALUE(kept[i].type, kept[i].text, want);
        CHECK_VALUE_OPT(kept[i].type, kept[i].text, true, want);
    }
    char buf[8];
    CHECK_INT(qgp_time_rfc3339(TIMESTAMPTZ, "2024-01-01 00:00:00+00", 22, buf, sizeof buf), 0);
    CHECK_INT(qgp_time_rfc3339(TEXT, "2024-01-01 00:00:00", 19, buf, sizeof buf), 0);
}

static void test_time_arrays(void)
{
    CHECK_VALUE(A_TIMESTAMPTZ, "{\"2024-01-01 08:00:00+00\",infinity,NULL,-infinity}",
                "[\"2024-01-01T08:00:00Z\",\"infinity\",null,\"-infinity\"]");
    CHECK_VALUE_OPT(A_TIMESTAMPTZ, "{\"2024-01-01 08:00:00.5+00\"}", true,
                    "[\"2024-01-01T08:00:00.5Z\"]");
    CHECK_VALUE(A_TIMESTAMPTZ, "{{\"2024-01-01 08:00:00+00\"},{\"0044-03-15 10:00:00+00 BC\"}}",
                "[[\"2024-01-01T08:00:00Z\"],[\"0044-03-15 10:00:00+00 BC\"]]");
    CHECK_VALUE(A_TIMESTAMP, "{\"2024-01-01 10:00:00\",NULL}", "[\"2024-01-01T10:00:00\",null]");
    CHECK_VALUE(A_TIMETZ, "{13:14:15+02,13:14:15+01:02:03}",
                "[\"13:14:15+02:00\",\"13:14:15+01:02:03\"]");
    /* a backslash is never in a time: such an element keeps its text */
    CHECK_VALUE(A_TIMESTAMP, "{\"2024-01-01\\ 10:00:00\"}", "[\"2024-01-01 10:00:00\"]");
    /* ranges are not in the contract's list: PostgreSQL's text */
    CHECK_VALUE(TSTZRANGE, "[\"2024-01-01 00:00:00+00\",)", "\"[\\\"2024-01-01 00:00:00+00\\\",)\"");
}

static void test_json(void)
{
    CHECK_VALUE(JSONB, "{\"a\": [1, 2.5, null, true, \"x\"]}", "{\"a\": [1, 2.5, null, true, \"x\"]}");
    CHECK_VALUE(JSON, " {\"a\" : 1} ", " {\"a\" : 1} ");
    CHECK_VALUE(JSONB, "[]", "[]");
    CHECK_VALUE(JSONB, "{}", "{}");
    CHECK_VALUE(JSONB, "\"s\"", "\"s\"");
    CHECK_VALUE(JSONB, "-0.5e10", "-0.5e10");
    CHECK_VALUE(JSONB, "null", "null");
    CHECK_VALUE(JSON, "\"\\ud83d\\ude00 \\u00e9 \\/\"", "\"\\ud83d\\ude00 \\u00e9 \\/\"");
    CHECK_VALUE(JSON, "12345678901234567890123", "12345678901234567890123");
    /* Not JSON (a server never sends it): a string, not broken output. */
    CHECK_VALUE(JSON, "{", "\"{\"");
    CHECK_VALUE(JSON, "", "\"\"");
    CHECK_VALUE(JSON, "1 2", "\"1 2\"");
    CHECK_VALUE(JSON, "[1,]", "\"[1,]\"");
    CHECK_VALUE(JSON, "{\"a\" 1}", "\"{\\\"a\\\" 1}\"");
    CHECK_VALUE(JSON, "{\"a\":1,}", "\"{\\\"a\\\":1,}\"");
    CHECK_VALUE(JSON, "[1}", "\"[1}\"");
    CHECK_VALUE(JSON, "{1:2}", "\"{1:2}\"");
    CHECK_VALUE(JSON, "tru", "\"tru\"");
    CHECK_VALUE(JSON, "nulls", "\"nulls\"");
    CHECK_VALUE(JSON, "01", "\"01\"");
    CHECK_VALUE(JSON, "\"\\ud800\"", "\"\\\"\\\\ud800\\\"\"");
    CHECK_VALUE(JSON, "\"\\udc00\"", "\"\\\"\\\\udc00\\\"\"");
    CHECK_VALUE(JSON, "\"\\x\"", "\"\\\"\\\\x\\\"\"");
    CHECK_VALUE(JSON, "\"a\nb\"", "\"\\\"a\\nb\\\"\"");
    CHECK_VALUE(JSON, "\"abc", "\"\\\"abc\"");
    CHECK_VALUE(JSON, "\"\\u12\"", "\"\\\"\\\\u12\\\"\"");
}

/* Nesting up to the limit is embedded; deeper is a string, still valid JSON. */
static void test_json_depth(void)
{
    char deep[2 * 1025 + 1];
    for (int depth = 1024; depth <= 1025; depth++) {
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        deep[2 * depth] = '\0';
        char *got = value_json(JSONB, deep, false);
        CHECK(got && (depth == 1024 ? got[0] == '[' : got[0] == '"'));
        CHECK(got && valid_json(got, strlen(got)));
        free(got);
    }
}

static void test_arrays(void)
{
    CHECK_VALUE(A_INT4, "{1,2,NULL}", "[1,2,null]");
    CHECK_VALUE(A_INT4, "{}", "[]");
    CHECK_VALUE(A_INT4, "{{1,2},{3,4}}", "[[1,2],[3,4]]");
    CHECK_VALUE(A_INT4, "{{{1,2},{3,4}},{{5,6},{7,NULL}}}", "[[[1,2],[3,4]],[[5,6],[7,null]]]");
    CHECK_VALUE(A_INT4, "{{{{{{1}}}}}}", "[[[[[[1]]]]]]");
    CHECK_VALUE(A_INT4, "[0:1]={1,2}", "[1,2]");
    CHECK_VALUE(A_INT4, "[-2:-1][1:1]={{1},{2}}", "[[1],[2]]");
    CHECK_VALUE(A_INT8, "{9223372036854775807,-1}", "[9223372036854775807,-1]");
    CHECK_VALUE_OPT(A_INT8, "{9223372036854775807,NULL}", true, "[\"9223372036854775807\",null]");
    CHECK_VALUE_OPT(A_INT4, "{1}", true, "[1]");
    CHECK_VALUE(A_NUMERIC, "{1.5,NaN,-Infinity,12345678901234567890.123456789}",
                "[1.5,\"NaN\",\"-Infinity\",12345678901234567890.123456789]");
    CHECK_VALUE_OPT(A_NUMERIC, "{1.5,NaN}", true, "[\"1.5\",\"NaN\"]");
    CHECK_VALUE(A_FLOAT8, "{1e+308,-0,NaN,Infinity,-Infinity}",
                "[1e+308,-0,\"NaN\",\"Infinity\",\"-Infinity\"]");
    CHECK_VALUE(A_BOOL, "{t,f,NULL}", "[true,false,null]");
    CHECK_VALUE(A_BYTEA, "{\"\\\\x00ff\",NULL,\"\\\\x\"}", "[\"\\\\x00ff\",null,\"\\\\x\"]");
    CHECK_VALUE(A_DATE, "{2024-01-01,NULL}", "[\"2024-01-01\",null]");
    CHECK_VALUE(A_BOX, "{(1,1),(0,0);(2,2),(1,1)}", "[\"(1,1),(0,0)\",\"(2,2),(1,1)\"]");
    CHECK_VALUE(A_TIMESTAMP, "{\"2024-01-01 00:00:00\"}", "[\"2024-01-01T00:00:00\"]");
}

static void test_text_arrays(void)
{
    CHECK_VALUE(A_TEXT,
                "{\"a b\",\"x\\\"y\",\"NULL\",NULL,\"\",\"c,d\",\"{}\",\"back\\\\slash\",plain}",
                "[\"a b\",\"x\\\"y\",\"NULL\",null,\"\",\"c,d\",\"{}\",\"back\\\\slash\",\"plain\"]");
    CHECK_VALUE(A_TEXT, "{null,Null}", "[null,null]");      /* array_in: NULL in any case */
    CHECK_VALUE(A_TEXT, "{\"null\"}", "[\"null\"]");
    CHECK_VALUE(A_TEXT, "{ a , b }", "[\"a\",\"b\"]");        /* array_in trims */
    CHECK_VALUE(A_TEXT, "{a\\ }", "[\"a \"]");               /* unless escaped */
    CHECK_VALUE(A_TEXT, "{N\\ULL}", "[\"NULL\"]");
    CHECK_VALUE(A_TEXT, "{\"tab\there\",\"nl\nx\"}", "[\"tab\\there\",\"nl\\nx\"]");
    CHECK_VALUE(A_TEXT, "{\"\xc3\xa9\"}", "[\"\xc3\xa9\"]");
    CHECK_VALUE(A_TEXT, "{{a,b},{\"}\",\"{\"}}", "[[\"a\",\"b\"],[\"}\",\"{\"]]");
    /* A quoted number cannot come from the server; it stays the text it is. */
    CHECK_VALUE(A_INT4, "{\"1\"}", "[\"1\"]");
    CHECK_VALUE(A_BOOL, "{\"t\",x}", "[\"t\",\"x\"]");
    CHECK_VALUE(A_INT4, "{1e,+1}", "[\"1e\",\"+1\"]");
    CHECK_VALUE(A_INT4, "{1 2}", "[\"1 2\"]");
}

static void test_json_arrays(void)
{
    CHECK_VALUE(A_JSONB,
                "{\"{\\\"a\\\": 1}\",\"[1, 2]\",3,\"\\\"s\\\"\",\"null\",NULL,true}",
                "[{\"a\": 1},[1, 2],3,\"s\",null,null,true]");
    CHECK_VALUE(A_JSON, "{\"{\\\"k\\\": \\\"a\\\\\\\\b\\\"}\"}", "[{\"k\": \"a\\\\b\"}]");
    CHECK_VALUE(A_JSONB, "{{1,2},{3,4}}", "[[1,2],[3,4]]");
    /* An element that is not JSON becomes a string; the array stays an array. */
    CHECK_VALUE(A_JSONB, "{\"{bad\",1}", "[\"{bad\",1]");
    CHECK_VALUE(A_JSONB, "{abc}", "[\"abc\"]");
}

/* Malformed array text (never server output): the whole text as a string. */
static void test_malformed_arrays(void)
{
    static const struct { Oid type; const char *text, *want; } cases[] = {
        {A_INT4, "{1,2", "\"{1,2\""},
        {A_INT4, "{1,,2}", "\"{1,,2}\""},
        {A_INT4, "{1,}", "\"{1,}\""},
        {A_INT4, "{,1}", "\"{,1}\""},
        {A_INT4, "1,2}", "\"1,2}\""},
        {A_INT4, "{1}x", "\"{1}x\""},
        {A_INT4, "{1}{2}", "\"{1}{2}\""},
        {A_INT4, "{{1},2}", "\"{{1},2}\""},
        {A_INT4, "{1,{2}}", "\"{1,{2}}\""},
        {A_INT4, "{{{{{{{1}}}}}}}", "\"{{{{{{{1}}}}}}}\""},
        {A_INT4, "}", "\"}\""},
        {A_INT4, "{}}", "\"{}}\""},
        {A_INT4, "{{}", "\"{{}\""},
        {A_INT4, "", "\"\""},
        {A_TEXT, "{\"abc}", "\"{\\\"abc}\""},
        {A_TEXT, "{\"a\\", "\"{\\\"a\\\\\""},
        {A_TEXT, "{a\\", "\"{a\\\\\""},
        {A_TEXT, "{a\"b\"}", "\"{a\\\"b\\\"}\""},
        {A_TEXT, "{\"a\"b}", "\"{\\\"a\\\"b}\""},
        {A_TEXT, "{a{b}", "\"{a{b}\""},
        {A_INT4, "[1:2={1,2}", "\"[1:2={1,2}\""},
        {A_INT4, "[1:2]{1,2}", "\"[1:2]{1,2}\""},
        {A_INT4, "[:2]={1,2}", "\"[:2]={1,2}\""},
        {A_INT4, "[1:2]=", "\"[1:2]=\""},
        {A_BOX, "{(1,1),(0,0),(2,2)}", "[\"(1,1),(0,0),(2,2)\"]"}, /* one box-ish element */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_VALUE(cases[i].type, cases[i].text, cases[i].want);
}

/* A result with the given columns (types) and one row of texts (NULL = SQL NULL). */
static PGresult *make_result(int n, const char *const *names, const Oid *types,
                             const char *const *row)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc att[16];
    memset(att, 0, sizeof att);
    for (int i = 0; i < n; i++) {
        att[i].name = (char *)names[i];
        att[i].typid = types[i];
        att[i].typlen = -1;
        att[i].atttypmod = -1;
    }
    CHECK(PQsetResultAttrs(res, n, att));
    for (int i = 0; row && i < n; i++)
        CHECK(PQsetvalue(res, 0, i, (char *)row[i], row[i] ? (int)strlen(row[i]) : -1));
    return res;
}

static char *row_json(const PGresult *res, bool as_strings)
{
    struct qgp_json_opts opt = {.numbers_as_strings = as_strings};
    char **keys = qgp_json_keys(res);
    qg_buf b;
    qg_buf_init(&b);
    qgp_json_row(&b, res, 0, keys, &opt);
    qgp_json_keys_free(keys, PQnfields(res));
    char *s = qg_buf_steal(&b, NULL);
    CHECK(s && valid_json(s, strlen(s)));
    return s;
}

static char *columns_json(const PGresult *res)
{
    qg_buf b;
    qg_buf_init(&b);
    qgp_json_columns(&b, res);
    char *s = qg_buf_steal(&b, NULL);
    CHECK(s && valid_json(s, strlen(s)));
    return s;
}

static void test_duplicate_names(void)
{
    const char *names[] = {"id", "id", "id_2", "id"};
    const Oid types[] = {INT4, INT8, TEXT, 16385};
    const char *row[] = {"1", "2", "three", NULL};
    PGresult *res = make_result(4, names, types, row);
    char **keys = qgp_json_keys(res);
    CHECK(keys != NULL);
    if (keys) {
        CHECK_STR(keys[0], "\"id\":");
        CHECK_STR(keys[1], "\"id_3\":");
        CHECK_STR(keys[2], "\"id_2\":");
        CHECK_STR(keys[3], "\"id_4\":");
    }
    qgp_json_keys_free(keys, 4);
    char *s = row_json(res, false);
    CHECK_STR(s, "{\"id\":1,\"id_3\":2,\"id_2\":\"three\",\"id_4\":null}");
    free(s);
    s = row_json(res, true);
    CHECK_STR(s, "{\"id\":1,\"id_3\":\"2\",\"id_2\":\"three\",\"id_4\":null}");
    free(s);
    s = columns_json(res);
    CHECK_STR(s, "[{\"name\":\"id\",\"type\":\"int4\"},{\"name\":\"id_3\",\"type\":\"int8\"},"
                 "{\"name\":\"id_2\",\"type\":\"text\"},{\"name\":\"id_4\",\"type\":\"oid:16385\"}]");
    free(s);
    PQclear(res);
}

static void test_more_names(void)
{
    const char *names[] = {"a_2", "a", "a", "x", "x", "x", "q\"\n", "q\"\n"};
    const Oid types[] = {INT4, INT4, INT4, INT4, INT4, INT4, INT4, INT4};
    PGresult *res = make_result(8, names, types, NULL);
    char **keys = qgp_json_keys(res);
    static const char *const want[] = {"\"a_2\":", "\"a\":", "\"a_3\":", "\"x\":", "\"x_2\":",
                                       "\"x_3\":", "\"q\\\"\\n\":", "\"q\\\"\\n_2\":"};
    for (int i = 0; keys && i < 8; i++)
        CHECK_STR(keys[i], want[i]);
    qgp_json_keys_free(keys, 8);
    char *s = columns_json(res);
    CHECK(s && strstr(s, "{\"name\":\"q\\\"\\n_2\",\"type\":\"int4\"}]") != NULL);
    free(s);
    PQclear(res);
}

static void test_row_types(void)
{
    const char *names[] = {"n", "j", "arr", "b", "by", "nul"};
    const Oid types[] = {NUMERIC, JSONB, A_TEXT, BOOL, BYTEA, DATE};
    const char *row[] = {"12345678901234567890.123456789", "{\"k\": [1]}", "{\"a b\",NULL}",
                         "t", "\\x00", NULL};
    PGresult *res = make_result(6, names, types, row);
    char *s = row_json(res, false);
    CHECK_STR(s, "{\"n\":12345678901234567890.123456789,\"j\":{\"k\": [1]},\"arr\":[\"a b\",null],"
                 "\"b\":true,\"by\":\"\\\\x00\",\"nul\":null}");
    free(s);
    PQclear(res);
}

static void test_no_columns_and_bad_args(void)
{
    PGresult *res = make_result(0, NULL, NULL, NULL);
    char **keys = qgp_json_keys(res);
    CHECK(keys != NULL); /* NULL only on out of memory */
    qg_buf b;
    qg_buf_init(&b);
    qgp_json_row(&b, res, 0, keys, NULL);
    CHECK_STR(b.data, "{}");
    qg_buf_reset(&b);
    qgp_json_columns(&b, res);
    CHECK_STR(b.data, "[]");
    qgp_json_keys_free(keys, 0);
    PQclear(res);

    CHECK(qgp_json_keys(NULL) == NULL);
    qgp_json_keys_free(NULL, 3);
    qg_buf_reset(&b);
    qgp_json_row(&b, NULL, 0, NULL, NULL);
    CHECK_STR(b.data, "{}");
    qg_buf_reset(&b);
    qgp_json_columns(&b, NULL);
    CHECK_STR(b.data, "[]");
    qg_buf_reset(&b);
    qgp_json_value(&b, INT8, "5", 1, NULL); /* no options: defaults */
    CHECK_STR(b.data, "5");
    qgp_json_value(NULL, INT8, "5", 1, NULL);
    qgp_json_row(NULL, NULL, 0, NULL, NULL);
    qgp_json_columns(NULL, NULL);
    qg_buf_free(&b);
}

/* An embedded NUL (impossible from the server) is escaped, not a cut. */
static void test_lengths_not_nul(void)
{
    qg_buf b;
    qg_buf_init(&b);
    qgp_json_value(&b, A_TEXT, "{a\0b}", 5, NULL);
    CHECK_STR(b.data, "[\"a\\u0000b\"]");
    qg_buf_reset(&b);
    qgp_json_value(&b, A_INT4, "{1,2}", 3, NULL); /* only "{1," */
    CHECK_STR(b.data, "\"{1,\"");
    qg_buf_reset(&b);
    qgp_json_value(&b, JSONB, "[1]xyz", 3, NULL);
    CHECK_STR(b.data, "[1]");
    qg_buf_free(&b);
}

/* result_json.c reserves by value length; a wrapping size must fail, not under-allocate. */
static void test_buf_reserve_wrap(void)
{
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_puts(&b, "x");
    CHECK(!qg_buf_reserve(&b, SIZE_MAX));
    CHECK(b.oom);
    qg_buf_free(&b);
}

int main(void)
{
    RUN(test_type_names);
    RUN(test_array_elems);
    RUN(test_numbers);
    RUN(test_numbers_as_strings);
    RUN(test_numbers_not_json);
    RUN(test_bool_bytea_strings);
    RUN(test_times);
    RUN(test_times_other_zones);
    RUN(test_times_kept);
    RUN(test_time_arrays);
    RUN(test_json);
    RUN(test_json_depth);
    RUN(test_arrays);
    RUN(test_text_arrays);
    RUN(test_json_arrays);
    RUN(test_malformed_arrays);
    RUN(test_duplicate_names);
    RUN(test_more_names);
    RUN(test_row_types);
    RUN(test_no_columns_and_bad_args);
    RUN(test_lengths_not_nul);
    RUN(test_buf_reserve_wrap);
    return qgt_done();
}
