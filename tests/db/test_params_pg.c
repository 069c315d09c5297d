/* PostgreSQL itself agrees with qgp_sql_parse: parameter counts, literal texts, error positions. */
#include "core_private.h"
#include "open_literals.h"
#include "qgtest.h"

static PGconn *conn;

/* Parses sql, prepares the result; the server's parameter count must equal ours. */
static qgp_sql *prepare(const char *sql)
{
    qgp_sql *q = NULL;
    qg_error e;
    qg_error_clear(&e);
    if (qgp_sql_parse(sql, strlen(sql), &q, &e) != QG_OK) {
        fprintf(stderr, "parse failed: %s: %s\n", sql, e.message);
        qgt_failures++;
        return NULL;
    }
    PGresult *r = PQprepare(conn, "", q->text, 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "prepare failed: %s\n  %s", q->text, PQerrorMessage(conn));
        qgt_failures++;
    }
    PQclear(r);
    r = PQdescribePrepared(conn, "");
    CHECK_INT(PQnparams(r), q->nparams);
    PQclear(r);
    return q;
}

/* Runs sql with every parameter bound to its own name; returns column 0 of row 0. */
static const char *first_value(const char *sql)
{
    static char val[512];
    qgp_sql *q = prepare(sql);
    if (!q)
        return "(parse failed)";
    const char *values[16];
    for (int i = 0; i < q->nparams && i < 16; i++)
        values[i] = q->names[i];
    PGresult *r = PQexecPrepared(conn, "", q->nparams, values, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
        snprintf(val, sizeof val, "%s", PQgetvalue(r, 0, 0));
    else
        snprintf(val, sizeof val, "(error) %s", PQerrorMessage(conn));
    PQclear(r);
    qgp_sql_free(q);
    return val;
}

static void server_assumptions(void)
{
    PGresult *r = PQexec(conn, "SHOW standard_conforming_strings");
    CHECK_STR(PQgetvalue(r, 0, 0), "on");
    PQclear(r);
}

static void literals_untouched(void)
{
    CHECK_STR(first_value("SELECT ':a' || :b::text"), ":ab");
    CHECK_STR(first_value("SELECT 'it''s :a' || :b::text"), "it's :ab");
    CHECK_STR(first_value("SELECT '\\' || :b::text"), "\\b");
    CHECK_STR(first_value("SELECT E'it\\'s :a\\\\' || :b::text"), "it's :a\\b");
    CHECK_STR(first_value("SELECT E'\\\\'':a' || :b::text"), "\\':ab");
    CHECK_STR(first_value("SELECT text'\\' || :b::text"), "\\b"); /* typed literal, not E'' */
    CHECK_STR(first_value("SELECT \"a\"\":b\" FROM (SELECT :c::text AS \"a\"\":b\") s"), "c");
    CHECK_STR(first_value("SELECT $$:a$$ || $t$ $$ :x $$ $t$ || :b::text"), ":a $$ :x $$ b");
    CHECK_STR(first_value("SELECT $a$ $b$ :x $b$ $a$ || :b::text"), " $b$ :x $b$ b");
    CHECK_STR(first_value("SELECT a$b$ FROM (SELECT :x::text AS a$b$) s"), "x");
    CHECK_STR(first_value("SELECT /* /* :a */ :x */ :b::text -- :c"), "b");
    qgp_sql_free(prepare("SELECT :id::int + x::int FROM (SELECT 1 AS x) s")); /* 1 param */
    CHECK_STR(first_value("SELECT (ARRAY[10,20,30])[2:3]::text"), "{20,30}");
    CHECK_STR(first_value("SELECT a[lo:hi]::text FROM (SELECT ARRAY[1,2,3] a, 1 lo, 2 hi) s"),
              "{1,2}");
    CHECK_STR(first_value("SELECT a[lo\\:hi]::text FROM (SELECT ARRAY[1,2,3] a, 1 lo, 2 hi) s"),
              "{1,2}");
    CHECK_STR(first_value("SELECT U&'d\\0061:x' || B'1'::text || :b::text"), "da:x1b");
    CHECK_STR(first_value("SELECT ';' || :b::text;  -- end"), ";b");
    /* a literal continued on the next line keeps E's escapes */
    CHECK_STR(first_value("SELECT E'a'\n'\\'' || :b::text"), "a'b");
    CHECK_STR(first_value("SELECT E'a' -- c\n ':x\\'' || :b::text"), "a:x'b");
    CHECK_STR(first_value("SELECT 'a'\n'\\' || :b::text"), "a\\b");
    CHECK_STR(first_value("SELECT B'0'\n'1'::text || :b::text"), "01b");
}

static void positional_numbers(void)
{
    CHECK_STR(first_value("SELECT :a::text, :b, :c, :d, :e, :f, :g, :h, :i, :j, :k"), "a");
}

/* A server error position maps back to the same token in the caller's SQL. */
static void error_position(const char *sql, const char *token)
{
    qgp_sql *q = NULL;
    if (qgp_sql_parse(sql, strlen(sql), &q, NULL) != QG_OK) {
        fprintf(stderr, "parse failed: %s\n", sql);
        qgt_failures++;
        return;
    }
    PGresult *r = PQexecParams(conn, q->text, 0, NULL, NULL, NULL, NULL, 0);
    const char *pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
    CHECK(pos != NULL);
    int want = 1;
    for (const char *p = sql; p < strstr(sql, token); p++)
        want += ((unsigned char)*p & 0xC0) != 0x80;
    if (pos)
        CHECK_INT(qgp_sql_map_position(q, atoi(pos)), want);
    PQclear(r);
    qgp_sql_free(q);
}

static void positions(void)
{
    error_position("SELECT 'h\xc3\xa9llo \xe2\x82\xac', :abc::text, 1 AS \"\xf0\x9f\x98\x80\", nosuch",
                   "nosuch");
    error_position("SELECT :a::text,:b::text,:c::text,:d::text,:e::text,:f::text,:g::text,"
                   ":h::text,:i::text,:j::text, '\xc3\xa9', :j, (ARRAY[1])[1\\:2], nosuch",
                   "nosuch");
    error_position("SELECT 1 +;", ";");
    error_position("SELECT '\xc3\xa9' + :x::int", "'\xc3\xa9'");
    /* PostgreSQL too lexes 1$$:a$$ as 1, then a dollar-quoted string */
    error_position("SELECT 1$$:a$$", "$$:a$$");
}

/*
 * A literal or comment left open: the scanner answers what the server answers
 * for the same text, SQLSTATE, position and the kind named in the message.
 */
static void unterminated_as_server(void)
{
    for (size_t i = 0; i < sizeof open_literals / sizeof open_literals[0]; i++) {
        const char *sql = open_literals[i].sql;
        PGresult *r = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0);
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        qgp_sql *q = NULL;
        qg_error e;
        qg_error_clear(&e);
        qg_status st = qgp_sql_parse(sql, strlen(sql), &q, &e);
        char kind[64];
        snprintf(kind, sizeof kind, "unterminated %s", open_literals[i].what);
        bool same = state && pos && msg && st == QG_ERR_SQL && !strcmp(e.sqlstate, state) &&
                    e.position == atoi(pos) && !strncmp(msg, kind, strlen(kind)) &&
                    strstr(e.message, kind);
        if (!same) {
            fprintf(stderr, "%s\n    server: %s at %s: %s\n    ours:   %s at %d: %s\n", sql,
                    state ? state : "-", pos ? pos : "-", msg ? msg : "-", e.sqlstate,
                    e.position, e.message);
            qgt_failures++;
        }
        qgp_sql_free(q);
        PQclear(r);
    }
}

int main(void)
{
    conn = PQconnectdb(qgt_database_url());
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect: %s", PQerrorMessage(conn));
        return 1;
    }
    RUN(server_assumptions);
    RUN(literals_untouched);
    RUN(positional_numbers);
    RUN(positions);
    RUN(unterminated_as_server);
    PQfinish(conn);
    return qgt_done();
}
