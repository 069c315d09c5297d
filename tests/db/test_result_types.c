/* result_json.c against real server output: literals of every kind, arrays of each, NULLs. */
#include <jansson.h>
#include <stdbool.h>

#include "core_private.h"
#include "qgtest.h"
#include "rfc3339.h"

/* One SELECT expression and the JSON its value must become. */
struct tcase {
    const char *expr;
    const char *want;
};

static const struct tcase cases[] = {
    /* numbers: the server's digits */
    {"1::int2", "1"},
    {"'-2147483648'::int4", "-2147483648"},
    {"'9223372036854775807'::int8", "9223372036854775807"},
    {"'4294967295'::oid", "4294967295"},
    {"'12345678901234567890.123456789'::numeric", "12345678901234567890.123456789"},
    {"0.10::numeric", "0.10"},
    {"'-0'::numeric", "0"},
    {"'1e-30'::numeric", "0.000000000000000000000000000001"},
    {"'NaN'::numeric", "\"NaN\""},
    {"'Infinity'::numeric", "\"Infinity\""},
    {"'-Infinity'::numeric", "\"-Infinity\""},
    {"'-0'::float8", "-0"},
    {"1e308::float8", "1e+308"},
    {"'1.5e-5'::float8", "1.5e-05"},
    {"0.1::float4", "0.1"},
    {"'NaN'::float8", "\"NaN\""},
    {"'Infinity'::float4", "\"Infinity\""},
    {"'-Infinity'::float8", "\"-Infinity\""},
    /* bool, json */
    {"true", "true"},
    {"false", "false"},
    {"'{\"b\":1, \"a\" : [1, 2.5]}'::json", "{\"b\":1, \"a\" : [1, 2.5]}"},
    {"'{\"b\":1, \"a\" : [1, 2.5]}'::jsonb", "{\"a\": [1, 2.5], \"b\": 1}"},
    {"'null'::jsonb", "null"},
    {"'\"\\u263a\"'::jsonb", "\"\xe2\x98\xba\""},
    {"'\"\\u263a\"'::json", "\"\\u263a\""},
    /* strings */
    {"'\\x00ff'::bytea", "\"\\\\x00ff\""},
    {"E'a\"b\\\\c\\nd\\t'::text", "\"a\\\"b\\\\c\\nd\\t\""},
    {"'abc  '::char(5)", "\"abc  \""},
    {"'2024-02-29'::date", "\"2024-02-29\""},
    {"'2024-02-29 13:14:15.5+02'::timestamptz", "\"2024-02-29T11:14:15.5Z\""},
    {"'2024-02-29 13:14:15'::timestamp", "\"2024-02-29T13:14:15\""},
    {"'13:14:15'::time", "\"13:14:15\""},
    {"'13:14:15+02'::timetz", "\"13:14:15+02:00\""},
    {"'13:14:15.25+05:30'::timetz", "\"13:14:15.25+05:30\""},
    {"'infinity'::timestamptz", "\"infinity\""},
    {"'-infinity'::timestamp", "\"-infinity\""},
    {"'0044-03-15 10:00 BC'::timestamptz", "\"0044-03-15 10:00:00+00 BC\""},
    {"'0044-03-15 10:00 BC'::timestamp", "\"0044-03-15 10:00:00 BC\""},
    {"'0044-03-15 BC'::date", "\"0044-03-15 BC\""},
    {"'12345-01-01 00:00Z'::timestamptz", "\"12345-01-01 00:00:00+00\""},
    {"'13:14:15+01:02:03'::timetz", "\"13:14:15+01:02:03\""},
    {"'24:00:00'::time", "\"24:00:00\""},
    {"'1 year 2 months 3 days 04:05:06'::interval", "\"P1Y2M3DT4H5M6S\""},
    {"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""},
    {"'192.168.0.1/24'::inet", "\"192.168.0.1/24\""},
    {"'10.0.0.0/8'::cidr", "\"10.0.0.0/8\""},
    {"'08:00:2b:01:02:03'::macaddr", "\"08:00:2b:01:02:03\""},
    {"12.5::money", "\"$12.50\""},
    {"B'101'::bit(3)", "\"101\""},
    {"'a b'::tsvector", "\"'a' 'b'\""},
    {"point(1,2)", "\"(1,2)\""},
    {"'<a>x</a>'::xml", "\"<a>x</a>\""},
    {"'1 2'::int2vector", "\"1 2\""},
    {"int4range(1,5)", "\"[1,5)\""},
    {"ROW(1,'a b')", "\"(1,\\\"a b\\\")\""},
    {"'happy'::pg_temp.mood", "\"happy\""},
    {"NULL::int4", "null"},
    {"NULL::jsonb", "null"},
    {"NULL::int4[]", "null"},
    /* arrays */
    {"ARRAY[1,2,NULL]::int4[]", "[1,2,null]"},
    {"'{}'::int4[]", "[]"},
    {"'{{1,2},{3,4}}'::int2[]", "[[1,2],[3,4]]"},
    {"'{{{1,2},{3,4}},{{5,6},{7,NULL}}}'::int8[]", "[[[1,2],[3,4]],[[5,6],[7,null]]]"},
    {"'[0:1]={1,2}'::int4[]", "[1,2]"},
    {"'[0:1][-1:0]={{1,2},{3,4}}'::int4[]", "[[1,2],[3,4]]"},
    {"ARRAY['4294967295'::oid]", "[4294967295]"},
    {"ARRAY['a b','x\"y','NULL',NULL,'','c,d','{}','back\\slash',' lead','null','}{',"
     "E'\\n','\xc3\xa9']",
     "[\"a b\",\"x\\\"y\",\"NULL\",null,\"\",\"c,d\",\"{}\",\"back\\\\slash\",\" lead\",\"null\","
     "\"}{\",\"\\n\",\"\xc3\xa9\"]"},
    {"ARRAY[ARRAY['a','b'],ARRAY['c',NULL]]", "[[\"a\",\"b\"],[\"c\",null]]"},
    {"ARRAY['x'::varchar, 'y z']", "[\"x\",\"y z\"]"},
    {"ARRAY['{\"a\": 1}'::jsonb, '[1, \"x,y\"]', '3', '\"s\"', 'null', NULL, 'true', '{}']",
     "[{\"a\": 1},[1, \"x,y\"],3,\"s\",null,null,true,{}]"},
    {"ARRAY['{\"k\": \"a\\\\b\"}'::json, '\"q\\\"\"']", "[{\"k\": \"a\\\\b\"},\"q\\\"\"]"},
    {"'{{1,2},{3,4}}'::jsonb[]", "[[1,2],[3,4]]"},
    {"ARRAY[true,false,NULL]", "[true,false,null]"},
    {"ARRAY[1.5,'NaN','-Infinity',12345678901234567890.123456789,'Infinity']::numeric[]",
     "[1.5,\"NaN\",\"-Infinity\",12345678901234567890.123456789,\"Infinity\"]"},
    {"ARRAY['-0'::float8,1e308,'NaN','Infinity','-Infinity',0.5]",
     "[-0,1e+308,\"NaN\",\"Infinity\",\"-Infinity\",0.5]"},
    {"ARRAY['1.5'::float4]", "[1.5]"},
    {"ARRAY['\\x00ff'::bytea,NULL,'']", "[\"\\\\x00ff\",null,\"\\\\x\"]"},
    {"ARRAY['2024-01-01'::date,NULL]", "[\"2024-01-01\",null]"},
    {"ARRAY['2024-01-01 10:00+02'::timestamptz,'infinity',NULL]",
     "[\"2024-01-01T08:00:00Z\",\"infinity\",null]"},
    {"ARRAY['2024-01-01 10:00'::timestamp]", "[\"2024-01-01T10:00:00\"]"},
    {"ARRAY['13:14:15+02'::timetz,'13:14:15-05:30']", "[\"13:14:15+02:00\",\"13:14:15-05:30\"]"},
    {"ARRAY['1 day 02:00'::interval]", "[\"P1DT2H\"]"},
    {"ARRAY['13:14:15'::time]", "[\"13:14:15\"]"},
    {"ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid]",
     "[\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]"},
    {"ARRAY['10.1.2.3'::inet,'::1/128']", "[\"10.1.2.3\",\"::1\"]"},
    {"ARRAY[box '((1,1),(0,0))', box '((2,2),(1,1))']", "[\"(1,1),(0,0)\",\"(2,2),(1,1)\"]"},
    {"ARRAY[point(1,2),NULL]", "[\"(1,2)\",null]"},
    {"ARRAY[int4range(1,5)]", "[\"[1,5)\"]"},
    {"ARRAY[ROW(1,'a b')]", "[\"(1,\\\"a b\\\")\"]"},
    {"ARRAY[12.5::money]", "[\"$12.50\"]"},
    {"ARRAY['a'::\"char\", 'b']", "[\"a\",\"b\"]"},
    {"ARRAY['n'::name]", "[\"n\"]"},
    {"ARRAY['<a/>'::xml]", "[\"<a/>\"]"},
    {"ARRAY['a b'::tsvector]", "[\"'a' 'b'\"]"},
    {"ARRAY[B'101']", "[\"101\"]"},
    /* a user type's array is not built in: its text, as a string */
    {"ARRAY['happy','sad']::pg_temp.mood[]", "\"{happy,sad}\""},
};

/* numbers_as_strings: int8 and numeric (also in arrays) only. */
static const struct tcase cases_as_strings[] = {
    {"'9223372036854775807'::int8", "\"9223372036854775807\""},
    {"'12345678901234567890.123456789'::numeric", "\"12345678901234567890.123456789\""},
    {"'NaN'::numeric", "\"NaN\""},
    {"42::int4", "42"},
    {"1.5::float8", "1.5"},
    {"ARRAY[1,NULL]::int8[]", "[\"1\",null]"},
    {"ARRAY[1.50]::numeric[]", "[\"1.50\"]"},
    {"ARRAY[7]::int2[]", "[7]"},
    {"'2024-02-29 13:14:15.5+02'::timestamptz", "\"2024-02-29T11:14:15.5Z\""},
    {"ARRAY['2024-01-01 10:00'::timestamp]", "[\"2024-01-01T10:00:00\"]"},
    {"'13:14:15+02'::timetz", "\"13:14:15+02:00\""},
};

static bool valid_json(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
    json_decref(j);
    if (!j)
        fprintf(stderr, "    invalid JSON (%s): %s\n", e.text, s);
    return j != NULL;
}

static PGresult *exec_ok(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        fprintf(stderr, "%s\n    failed: %s", sql, PQerrorMessage(c));
        qgt_failures++;
    }
    return res;
}

static void run_cases(PGconn *c, const struct tcase *tc, size_t n, bool as_strings)
{
    struct qgp_json_opts opt = {.numbers_as_strings = as_strings};
    char sql[1024];
    for (size_t i = 0; i < n; i++) {
        snprintf(sql, sizeof sql, "SELECT %s AS v", tc[i].expr);
        PGresult *res = exec_ok(c, sql);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
            char **keys = qgp_json_keys(res);
            qg_buf b;
            qg_buf_init(&b);
            qgp_json_row(&b, res, 0, keys, &opt);
            qgp_json_keys_free(keys, PQnfields(res));
            const char *got = b.data ? b.data + strlen("{\"v\":") : NULL;
            if (got)
                b.data[b.len - 1] = '\0'; /* drop the row's '}' */
            if (!got || strcmp(got, tc[i].want) != 0) {
                fprintf(stderr, "SELECT %s\n    got:  %s\n    want: %s\n    server text: %s\n",
                        tc[i].expr, got ? got : "(null)", tc[i].want, PQgetvalue(res, 0, 0));
                qgt_failures++;
            }
            CHECK(got && valid_json(got));
            qg_buf_free(&b);
        }
        PQclear(res);
    }
}

/* ---- times: RFC 3339 under any session TimeZone ------------------------- */

/* A time expression; strict: it must come out in the contract's RFC 3339 form. */
struct tcase_time {
    const char *expr;
    bool strict;
};

static const struct tcase_time time_cases[] = {
    {"now()", true},
    {"clock_timestamp()", true},
    {"'2026-12-02 11:59:28.607974Z'::timestamptz", true},
    {"'2024-02-29 23:30Z'::timestamptz", true},
    {"'1800-01-01 00:00Z'::timestamptz", true}, /* local mean time offsets, with seconds */
    {"'1969-12-31 23:59:59.5Z'::timestamptz", true},
    {"'0001-01-01 12:00Z'::timestamptz", true},
    {"'9999-12-31 23:59:59.999999Z'::timestamptz", true},
    {"'infinity'::timestamptz", false},
    {"'-infinity'::timestamptz", false},
    {"'0044-03-15 10:00Z BC'::timestamptz", false},
    {"'12345-06-07 00:00Z'::timestamptz", false},
    {"localtimestamp", true},
    {"'2024-02-29 13:14:15.000001'::timestamp", true},
    {"'0001-01-01 00:00'::timestamp", true},
    {"'infinity'::timestamp", false},
    {"'0044-03-15 BC'::timestamp", false},
    {"'294276-12-31 23:59:59'::timestamp", false},
    {"current_time", true},
    {"'13:14:15+02'::timetz", true},
    {"'00:00:00.5-15:59'::timetz", true},
    {"'13:14:15+01:02:03'::timetz", false},
    {"'24:00:00+02'::timetz", false},
    {"current_date", true},
    {"'2024-02-29'::date", true},
    {"localtime", true},
    {"'23:59:59.999999'::time", true},
};

static const char *time_pattern(Oid type)
{
    switch (type) {
    case 1184: return R3339_TIMESTAMPTZ;
    case 1114: return R3339_TIMESTAMP;
    case 1266: return R3339_TIMETZ;
    case 1082: return R3339_DATE;
    default: return R3339_TIME;
    }
}

/* The server reads s as the same value as its own text (in the session's TimeZone). */
static bool same_value(PGconn *c, const char *type, const char *s, const char *server_text)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT $1::%s = $2::%s", type, type);
    const char *vals[2] = {s, server_text};
    PGresult *r = PQexecParams(c, sql, 2, NULL, vals, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && !strcmp(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    return ok;
}

/* One value, alone and as an array element, in both number modes. */
static void check_time(PGconn *c, const struct tcase_time *tc, const char *zone)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT v, ARRAY[v, NULL] FROM (SELECT %s AS v) s", tc->expr);
    PGresult *res = exec_ok(c, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        return;
    }
    Oid type = PQftype(res, 0);
    const char *server_text = PQgetvalue(res, 0, 0);
    char **keys = qgp_json_keys(res);
    for (int as_strings = 0; as_strings < 2; as_strings++) {
        struct qgp_json_opts opt = {.numbers_as_strings = as_strings};
        qg_buf b;
        qg_buf_init(&b);
        qgp_json_row(&b, res, 0, keys, &opt);
        json_t *row = json_loads(b.data ? b.data : "", 0, NULL);
        json_t *arr = json_object_get(row, "array");
        const char *v = json_string_value(json_object_get(row, "v"));
        const char *elem = json_string_value(json_array_get(arr, 0));
        bool ok = v && elem && !strcmp(v, elem) && json_is_null(json_array_get(arr, 1)) &&
                  (tc->strict ? r3339_match(time_pattern(type), v) &&
                                    same_value(c, qgp_type_name(type), v, server_text)
                              : !strcmp(v, server_text));
        if (!ok) {
            fprintf(stderr, "TimeZone %s: SELECT %s\n    server text: %s\n    got: %s\n", zone,
                    tc->expr, server_text, b.data ? b.data : "(null)");
            qgt_failures++;
        }
        json_decref(row);
        qg_buf_free(&b);
    }
    qgp_json_keys_free(keys, PQnfields(res));
    PQclear(res);
}

/*
 * The service sets TimeZone=UTC, DateStyle=ISO (per transaction behind a
 * pooler), but a statement may SET TimeZone: values still come out in UTC.
 */
static void test_times_any_zone(PGconn *c)
{
    static const char *const zones[] = {"UTC", "Europe/Amsterdam", "Asia/Kolkata",
                                        "America/St_Johns", "Pacific/Chatham", "Pacific/Kiritimati"};
    char sql[128];
    for (size_t z = 0; z < sizeof zones / sizeof zones[0]; z++) {
        snprintf(sql, sizeof sql, "SET TimeZone='%s'", zones[z]);
        PQclear(exec_ok(c, sql));
        for (size_t i = 0; i < sizeof time_cases / sizeof time_cases[0]; i++)
            check_time(c, &time_cases[i], zones[z]);
    }
    PQclear(exec_ok(c, "SET TimeZone=UTC"));
}

static void test_duplicate_columns(PGconn *c)
{
    PGresult *res = exec_ok(c, "SELECT 1 AS id, 2::int8 AS id, 'x' AS id_2, "
                               "'happy'::pg_temp.mood AS m, NULL::numeric AS id");
    qg_buf b;
    qg_buf_init(&b);
    char **keys = qgp_json_keys(res);
    qgp_json_row(&b, res, 0, keys, NULL);
    CHECK_STR(b.data, "{\"id\":1,\"id_3\":2,\"id_2\":\"x\",\"m\":\"happy\",\"id_4\":null}");
    qgp_json_keys_free(keys, PQnfields(res));
    qg_buf_reset(&b);
    qgp_json_columns(&b, res);
    char want[512];
    snprintf(want, sizeof want,
             "[{\"name\":\"id\",\"type\":\"int4\"},{\"name\":\"id_3\",\"type\":\"int8\"},"
             "{\"name\":\"id_2\",\"type\":\"text\"},{\"name\":\"m\",\"type\":\"oid:%u\"},"
             "{\"name\":\"id_4\",\"type\":\"numeric\"}]",
             (unsigned)PQftype(res, 3));
    CHECK_STR(b.data, want);
    CHECK(PQftype(res, 3) >= 16384);
    qg_buf_free(&b);
    PQclear(res);
}

int main(void)
{
    PGconn *c = PQconnectdb(qgt_database_url());
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "connect failed: %s", PQerrorMessage(c));
        PQfinish(c);
        return 1;
    }
    PQclear(exec_ok(c, "SET DateStyle=ISO; SET IntervalStyle=iso_8601; SET TimeZone=UTC; "
                       "SET client_encoding=UTF8; SET lc_monetary='C'; "
                       "CREATE TYPE pg_temp.mood AS ENUM ('sad', 'happy')"));
    run_cases(c, cases, sizeof cases / sizeof cases[0], false);
    run_cases(c, cases_as_strings, sizeof cases_as_strings / sizeof cases_as_strings[0], true);
    test_times_any_zone(c);
    test_duplicate_columns(c);
    PQfinish(c);
    return qgt_done();
}
