/* The qg_params container and qgp_bind: names, duplicates, NUL, missing and unknown keys. */
#include "core_private.h"
#include "qgtest.h"

static qgp_sql *parse(const char *sql)
{
    qgp_sql *q = NULL;
    if (qgp_sql_parse(sql, strlen(sql), &q, NULL) != QG_OK)
        fprintf(stderr, "cannot parse %s\n", sql);
    return q;
}

static void container(void)
{
    qg_params *p = qg_params_new();
    CHECK(p != NULL);
    CHECK_INT(qg_params_count(p), 0);
    CHECK_INT(qg_params_add(p, "city", QG_PARAM_TEXT, "Oslo", 4, NULL), QG_OK);
    CHECK_INT(qg_params_add(p, "n", QG_PARAM_NUMBER, "12345678901234567890.123456789", 30, NULL),
              QG_OK);
    CHECK_INT(qg_params_add(p, "ok", QG_PARAM_BOOL, "true", 4, NULL), QG_OK);
    CHECK_INT(qg_params_add(p, "gone", QG_PARAM_NULL, "ignored", 7, NULL), QG_OK);
    CHECK_INT(qg_params_add(p, "doc", QG_PARAM_JSON, "{\"a\":1}", 7, NULL), QG_OK);
    CHECK_INT(qg_params_add(p, "empty", QG_PARAM_TEXT, NULL, 0, NULL), QG_OK);
    CHECK_INT(qg_params_add(p, "_A9_z", QG_PARAM_TEXT, "x", 1, NULL), QG_OK);
    CHECK_INT(qg_params_count(p), 7);
    CHECK_INT(qg_params_count(NULL), 0);
    qg_params_free(p);
    qg_params_free(NULL);
}

static void bad_adds(void)
{
    qg_params *p = qg_params_new();
    qg_error e;
    const char *bad_names[] = {"", "1a", "a-b", "a b", "caf\xc3\xa9", ":a", "a$", "a.b"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
        qg_error_clear(&e);
        CHECK_INT(qg_params_add(p, bad_names[i], QG_PARAM_TEXT, "x", 1, &e),
                  QG_ERR_INVALID_REQUEST);
        CHECK(strstr(e.message, "is not valid; names are [A-Za-z_][A-Za-z0-9_]*") != NULL);
    }
    qg_error_clear(&e);
    CHECK_INT(qg_params_add(p, NULL, QG_PARAM_TEXT, "x", 1, &e), QG_ERR_INVALID_REQUEST);
    CHECK_INT(qg_params_add(NULL, "a", QG_PARAM_TEXT, "x", 1, NULL), QG_ERR_INVALID_REQUEST);
    CHECK_INT(qg_params_add(p, "a", QG_PARAM_TEXT, NULL, 3, NULL), QG_ERR_INVALID_REQUEST);
    CHECK_INT(qg_params_add(p, "a", (enum qg_param_kind)42, "x", 1, NULL), QG_ERR_INVALID_REQUEST);

    qg_error_clear(&e);
    CHECK_INT(qg_params_add(p, "a", QG_PARAM_TEXT, "x\0y", 3, &e), QG_ERR_INVALID_REQUEST);
    CHECK(strstr(e.message, "parameter a holds a NUL character") != NULL);
    CHECK_INT(qg_params_add(p, "a", QG_PARAM_NULL, "x\0y", 3, NULL), QG_OK); /* text ignored */

    qg_error_clear(&e);
    CHECK_INT(qg_params_add(p, "a", QG_PARAM_TEXT, "x", 1, &e), QG_ERR_INVALID_REQUEST);
    CHECK_STR(e.message, "parameter a is given twice in params; give each name once");
    CHECK_INT(qg_params_add_array(p, "a", "[1]", 3, "{1}", 3, NULL), QG_ERR_INVALID_REQUEST);
    CHECK_INT(qg_params_count(p), 1); /* failed adds leave nothing behind */
    qg_params_free(p);
}

static void arrays(void)
{
    qg_params *p = qg_params_new();
    qg_error e;
    qg_error_clear(&e);
    CHECK_INT(qg_params_add_array(p, "ids", "[1,2,null]", 10, "{1,2,NULL}", 10, &e), QG_OK);
    CHECK_INT(qg_params_add_array(p, "objs", "[{\"a\":1}]", 9, NULL, 0, &e), QG_OK);
    CHECK_INT(qg_params_add_array(p, "x", NULL, 0, NULL, 0, NULL), QG_ERR_INVALID_REQUEST);
    CHECK_INT(qg_params_add_array(p, "y", "[\"\0\"]", 5, NULL, 0, NULL), QG_ERR_INVALID_REQUEST);
    CHECK_INT(qg_params_add_array(p, "z", "[\"a\"]", 5, "{\"\0\"}", 5, NULL),
              QG_ERR_INVALID_REQUEST);
    CHECK_INT(qg_params_add_array(NULL, "w", "[]", 2, "{}", 2, NULL), QG_ERR_INVALID_REQUEST);
    CHECK_INT(qg_params_add_array(p, "9", "[]", 2, "{}", 2, NULL), QG_ERR_INVALID_REQUEST);
    CHECK_INT(qg_params_count(p), 2);

    qgp_sql *q = parse("SELECT * FROM t WHERE id = ANY(:ids) AND doc @> :objs");
    struct qgp_value v[2];
    CHECK_INT(qgp_bind(q, p, v, &e), QG_OK);
    CHECK(v[0].is_array);
    CHECK_INT(v[0].kind, QG_PARAM_JSON);
    CHECK_STR(v[0].text, "[1,2,null]");
    CHECK_INT(v[0].len, 10);
    CHECK_STR(v[0].pg_array, "{1,2,NULL}");
    CHECK_INT(v[0].pg_array_len, 10);
    CHECK(v[1].is_array);
    CHECK_STR(v[1].text, "[{\"a\":1}]");
    CHECK(v[1].pg_array == NULL);
    CHECK_INT(v[1].pg_array_len, 0);
    qgp_sql_free(q);
    qg_params_free(p);
}

static void binding(void)
{
    qg_params *p = qg_params_new();
    CHECK_INT(qg_params_add(p, "b", QG_PARAM_NUMBER, "42", 2, NULL), QG_OK);
    CHECK_INT(qg_params_add(p, "a", QG_PARAM_TEXT, "it's; DROP TABLE t", 18, NULL), QG_OK);
    CHECK_INT(qg_params_add(p, "c", QG_PARAM_NULL, NULL, 0, NULL), QG_OK);
    qgp_sql *q = parse("SELECT :a, :b, :a, :c");
    struct qgp_value v[3];
    qg_error e;
    qg_error_clear(&e);
    CHECK_INT(qgp_bind(q, p, v, &e), QG_OK);
    CHECK_INT(e.status, QG_OK);
    CHECK_INT(v[0].kind, QG_PARAM_TEXT);
    CHECK_STR(v[0].text, "it's; DROP TABLE t");
    CHECK_INT(v[0].len, 18);
    CHECK(!v[0].is_array);
    CHECK(v[0].pg_array == NULL);
    CHECK_INT(v[1].kind, QG_PARAM_NUMBER);
    CHECK_STR(v[1].text, "42");
    CHECK_INT(v[2].kind, QG_PARAM_NULL);
    CHECK(v[2].text == NULL);
    CHECK_STR(q->text, "SELECT $1, $2, $1, $3"); /* the value never enters the text */
    qgp_sql_free(q);
    qg_params_free(p);
}

static void missing_and_unknown(void)
{
    qg_params *p = qg_params_new();
    CHECK_INT(qg_params_add(p, "city2", QG_PARAM_TEXT, "x", 1, NULL), QG_OK);
    qgp_sql *q = parse("SELECT * FROM t WHERE city = :city");
    struct qgp_value v[4];
    qg_error e;

    qg_error_clear(&e);
    CHECK_INT(qgp_bind(q, p, v, &e), QG_ERR_MISSING_PARAMETER);
    CHECK_STR(e.message, "parameter :city is used in the SQL but missing from params");
    CHECK_INT(qg_params_add(p, "city", QG_PARAM_TEXT, "y", 1, NULL), QG_OK);
    qg_error_clear(&e);
    CHECK_INT(qgp_bind(q, p, v, &e), QG_ERR_UNKNOWN_PARAMETER);
    CHECK_STR(e.message, "params has city2, which the SQL does not use (it uses :city)");
    qg_error_clear(&e);
    CHECK_INT(qgp_bind(q, NULL, v, &e), QG_ERR_MISSING_PARAMETER);
    CHECK_STR(e.message, "parameter :city is used in the SQL but missing from params");
    qgp_sql_free(q);

    /* missing is reported first, in SQL order */
    q = parse("SELECT :z, :y, :city");
    qg_error_clear(&e);
    CHECK_INT(qgp_bind(q, p, v, &e), QG_ERR_MISSING_PARAMETER);
    CHECK_STR(e.message, "parameter :z is used in the SQL but missing from params");
    qgp_sql_free(q);

    /* no parameters in the SQL */
    q = parse("SELECT 1");
    qg_error_clear(&e);
    CHECK_INT(qgp_bind(q, p, NULL, &e), QG_ERR_UNKNOWN_PARAMETER);
    CHECK_STR(e.message, "params has city2, which the SQL does not use (it uses no parameters)");
    CHECK_INT(qgp_bind(q, NULL, NULL, NULL), QG_OK);
    qg_params *empty = qg_params_new();
    CHECK_INT(qgp_bind(q, empty, NULL, NULL), QG_OK);
    qg_params_free(empty);
    qgp_sql_free(q);

    /* a name used only in a string or comment is not used */
    q = parse("SELECT ':city2' /* :city2 */, :city");
    qg_error_clear(&e);
    CHECK_INT(qgp_bind(q, p, v, &e), QG_ERR_UNKNOWN_PARAMETER);
    CHECK_STR(e.message, "params has city2, which the SQL does not use (it uses :city)");
    qgp_sql_free(q);
    qg_params_free(p);

    CHECK_INT(qgp_bind(NULL, NULL, v, NULL), QG_ERR_INVALID_REQUEST);
    q = parse("SELECT :a");
    CHECK_INT(qgp_bind(q, NULL, NULL, NULL), QG_ERR_INVALID_REQUEST);
    qgp_sql_free(q);
}

static void unknown_in_key_order(void)
{
    qg_params *p = qg_params_new();
    const char *keys[] = {"a", "zz", "b", "yy", "c"};
    for (size_t i = 0; i < 5; i++)
        CHECK_INT(qg_params_add(p, keys[i], QG_PARAM_TEXT, "v", 1, NULL), QG_OK);
    qgp_sql *q = parse("SELECT :c, :b, :a");
    struct qgp_value v[3];
    qg_error e;
    qg_error_clear(&e);
    CHECK_INT(qgp_bind(q, p, v, &e), QG_ERR_UNKNOWN_PARAMETER);
    CHECK_STR(e.message, "params has zz, which the SQL does not use (it uses :c, :b, :a)");
    qgp_sql_free(q);
    qg_params_free(p);
}

/* Many keys: the hash index, insertion order kept, long name lists shortened. */
static void many(void)
{
    enum { N = 2000 };
    qg_params *p = qg_params_new();
    char name[32], val[32];
    size_t cap = N * 10 + 16, l = 0;
    char *sql = malloc(cap);
    l += (size_t)snprintf(sql, cap, "SELECT 0");
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "p%d", i);
        int vl = snprintf(val, sizeof val, "%d", i * 7);
        CHECK_INT(qg_params_add(p, name, QG_PARAM_NUMBER, val, (size_t)vl, NULL), QG_OK);
        CHECK_INT(qg_params_add(p, name, QG_PARAM_NUMBER, val, (size_t)vl, NULL),
                  QG_ERR_INVALID_REQUEST);
        l += (size_t)snprintf(sql + l, cap - l, "+:p%d", N - 1 - i);
    }
    CHECK_INT(qg_params_count(p), N);
    qgp_sql *q = parse(sql);
    struct qgp_value *v = calloc(N, sizeof *v);
    CHECK_INT(qgp_bind(q, p, v, NULL), QG_OK);
    CHECK_STR(q->names[0], "p1999");
    CHECK_STR(v[0].text, "13993");
    CHECK_STR(v[N - 1].text, "0");
    qgp_sql_free(q);

    /* all but p1234 used: that one is reported, and the list is cut to fit */
    l = (size_t)snprintf(sql, cap, "SELECT 0");
    for (int i = 0; i < N; i++)
        if (i != 1234)
            l += (size_t)snprintf(sql + l, cap - l, "+:p%d", i);
    q = parse(sql);
    qg_error e;
    qg_error_clear(&e);
    CHECK_INT(qgp_bind(q, p, v, &e), QG_ERR_UNKNOWN_PARAMETER);
    CHECK(strncmp(e.message, "params has p1234, which the SQL does not use (it uses :p0, :p1, ",
                  64) == 0);
    CHECK(strstr(e.message, ", ...)") != NULL);
    qgp_sql_free(q);
    free(v);
    free(sql);
    qg_params_free(p);
}

int main(void)
{
    RUN(container);
    RUN(bad_adds);
    RUN(arrays);
    RUN(binding);
    RUN(missing_and_unknown);
    RUN(unknown_in_key_order);
    RUN(many);
    return qgt_done();
}
