/* :name -> $n rewriting: every lexical rule, statement splitting, errors, position map. */
#include "core_private.h"
#include "qgtest.h"
#include "open_literals.h"

static char got[8192];

/* The rewritten text, or "!code@position: message" when parsing fails. */
static const char *rw_len(const char *sql, size_t len)
{
    qgp_sql *q = (qgp_sql *)1;
    qg_error e;
    qg_error_clear(&e);
    qg_status st = qgp_sql_parse(sql, len, &q, &e);
    if (st != QG_OK) {
        if (q != NULL || e.status != st)
            return "!inconsistent error";
        snprintf(got, sizeof got, "!%s@%d: %s", qg_status_code(st), e.position, e.message);
        return got;
    }
    if (strlen(q->text) != q->len)
        snprintf(got, sizeof got, "!len mismatch");
    else
        snprintf(got, sizeof got, "%s", q->text);
    qgp_sql_free(q);
    return got;
}

static const char *rw(const char *sql)
{
    return rw_len(sql, strlen(sql));
}

/* "code@position" only, for error cases. */
static const char *err_of(const char *sql)
{
    const char *r = rw(sql);
    if (r[0] != '!')
        return "(parsed)";
    char *colon = strchr(got, ':');
    if (colon)
        *colon = '\0';
    return got + 1;
}

/* The distinct names in $ order, comma separated. */
static const char *names(const char *sql)
{
    qgp_sql *q;
    if (qgp_sql_parse(sql, strlen(sql), &q, NULL) != QG_OK)
        return "!error";
    got[0] = '\0';
    for (int i = 0; i < q->nparams; i++) {
        strcat(got, i ? "," : "");
        strcat(got, q->names[i]);
    }
    qgp_sql_free(q);
    return got;
}

static void basic_params(void)
{
    CHECK_STR(rw("SELECT 1"), "SELECT 1");
    CHECK_STR(rw("SELECT :a"), "SELECT $1");
    CHECK_STR(rw("SELECT * FROM t WHERE city = :city AND n > :min_n"),
              "SELECT * FROM t WHERE city = $1 AND n > $2");
    CHECK_STR(names("SELECT * FROM t WHERE city = :city AND n > :min_n"), "city,min_n");
    CHECK_STR(rw(":_x+:A1_b9"), "$1+$2");
    CHECK_STR(rw("SELECT :a, :b, :a, :c, :b"), "SELECT $1, $2, $1, $3, $2");
    CHECK_STR(names("SELECT :a, :b, :a, :c, :b"), "a,b,c");
    CHECK_STR(rw("SELECT :a,:b"), "SELECT $1,$2");
    CHECK_STR(rw("SELECT(:a)"), "SELECT($1)");
    CHECK_STR(rw("SELECT :ab, :a"), "SELECT $1, $2"); /* a prefix is another name */
    CHECK_STR(names("SELECT :ab, :a, :abc"), "ab,a,abc");
    CHECK_STR(rw("SELECT :Name, :name"), "SELECT $1, $2"); /* case sensitive */
    CHECK_STR(rw("SELECT 'a':a"), "SELECT 'a'$1");
    CHECK_STR(rw("SELECT :a'x'"), "SELECT $1'x'");
}

static void casts_and_colons(void)
{
    CHECK_STR(rw("SELECT :id::int"), "SELECT $1::int");
    CHECK_STR(names("SELECT :id::int"), "id");
    CHECK_STR(rw("SELECT x::text, now()::date"), "SELECT x::text, now()::date");
    CHECK_STR(names("SELECT x::text"), "");
    CHECK_STR(rw("SELECT ts::date, :d::timestamptz::date"), "SELECT ts::date, $1::timestamptz::date");
    CHECK_STR(rw("SELECT a :: int"), "SELECT a :: int");
    CHECK_STR(rw("SELECT x:::y"), "SELECT x:::y"); /* a colon after a colon starts nothing */
    CHECK_STR(rw("SELECT a[1:2]"), "SELECT a[1:2]");
    /* a colon glued to an identifier or number is a slice, not a parameter */
    CHECK_STR(rw("SELECT a[1:n]"), "SELECT a[1:n]");
    CHECK_STR(rw("SELECT a[lo:hi]"), "SELECT a[lo:hi]");
    CHECK_STR(rw("SELECT a[1.5:n], a[1e3:n], caf\xc3\xa9:n, a$:n, a1:n"),
              "SELECT a[1.5:n], a[1e3:n], caf\xc3\xa9:n, a$:n, a1:n");
    CHECK_STR(rw("SELECT a[1: :n], a[lo :hi]"), "SELECT a[1: $1], a[lo $2]");
    CHECK_STR(rw("SELECT a[lo: hi]"), "SELECT a[lo: hi]");
    CHECK_STR(rw("SELECT 'x':y, \"x\":y, $$x$$:y, (a):y, a[1]:y"),
              "SELECT 'x'$1, \"x\"$1, $$x$$$1, (a)$1, a[1]$1");
    CHECK_STR(rw("SELECT a[:lo:2]"), "SELECT a[$1:2]");
    CHECK_STR(rw("SELECT a[2:]"), "SELECT a[2:]");
    CHECK_STR(rw("SELECT : a, ':'"), "SELECT : a, ':'");
    CHECK_STR(rw("SELECT a:"), "SELECT a:");
    CHECK_STR(rw("SELECT :1"), "SELECT :1");
    CHECK_STR(rw("SELECT :$a"), "SELECT :$a");
}

static void escaped_colon(void)
{
    CHECK_STR(rw("SELECT a[lo\\:hi]"), "SELECT a[lo:hi]");
    CHECK_STR(rw("SELECT '\\:x', \\:y"), "SELECT '\\:x', :y");
    CHECK_STR(names("SELECT \\:y"), "");
    CHECK_STR(rw("SELECT 1\\::int"), "SELECT 1::int"); /* the escaped colon still precedes */
    CHECK_STR(rw("SELECT \\\\:a"), "SELECT \\:a"); /* the second \\ escapes the colon */
    CHECK_STR(rw("SELECT 1 \\ 2"), "SELECT 1 \\ 2");
    CHECK_STR(rw("SELECT \\"), "SELECT \\");
    CHECK_STR(rw("SELECT E'\\:a'"), "SELECT E'\\:a'");
}

static void single_quotes(void)
{
    CHECK_STR(rw("SELECT ':a', :b"), "SELECT ':a', $1");
    CHECK_STR(rw("SELECT 'it''s :a', :b"), "SELECT 'it''s :a', $1");
    CHECK_STR(rw("SELECT '''', :b, ''''"), "SELECT '''', $1, ''''");
    CHECK_STR(rw("SELECT '', :b"), "SELECT '', $1");
    /* standard strings: a backslash is literal, so '\' is a whole string */
    CHECK_STR(rw("SELECT '\\', :b"), "SELECT '\\', $1");
    CHECK_STR(rw("SELECT 'a\\' || :b"), "SELECT 'a\\' || $1");
    CHECK_STR(rw("SELECT U&'d\\0061t\\+000061 :x', :b"), "SELECT U&'d\\0061t\\+000061 :x', $1");
    CHECK_STR(rw("SELECT B'1:0', X':a', N':a', :b"), "SELECT B'1:0', X':a', N':a', $1");
    CHECK_STR(rw("SELECT 'a'\n':x' , :b"), "SELECT 'a'\n':x' , $1");
    CHECK_STR(rw("SELECT '--', :b, '/*'"), "SELECT '--', $1, '/*'");
    CHECK_STR(rw("SELECT ';', :b"), "SELECT ';', $1");
    CHECK_STR(rw("SELECT '$$', :b, '$$'"), "SELECT '$$', $1, '$$'");
    CHECK_STR(rw("SELECT 'caf\xc3\xa9 :x', :b"), "SELECT 'caf\xc3\xa9 :x', $1");
}

static void e_strings(void)
{
    CHECK_STR(rw("SELECT E'it\\'s :a', :b"), "SELECT E'it\\'s :a', $1");
    CHECK_STR(rw("SELECT e'\\\\', :b"), "SELECT e'\\\\', $1");
    CHECK_STR(rw("SELECT E'\\\\' || :b"), "SELECT E'\\\\' || $1");
    CHECK_STR(rw("SELECT E'a''b:c', :b"), "SELECT E'a''b:c', $1");
    CHECK_STR(rw("SELECT E'\\\\'':a', :b"), "SELECT E'\\\\'':a', $1");
    CHECK_STR(rw("SELECT E'\\n:a\\t', :b"), "SELECT E'\\n:a\\t', $1");
    /* E only at a token start: `type'...'` is an identifier, then a standard string */
    CHECK_STR(rw("SELECT type'\\', :b"), "SELECT type'\\', $1");
    CHECK_STR(rw("SELECT xe'\\', :b"), "SELECT xe'\\', $1");
    CHECK_STR(rw("SELECT (E'\\'', :b)"), "SELECT (E'\\'', $1)");
    CHECK_STR(err_of("SELECT E'\\'"), "sql_error@8");
    CHECK_STR(err_of("SELECT E'abc\\"), "sql_error@8");
}

static void quoted_identifiers(void)
{
    CHECK_STR(rw("SELECT \":a\" FROM t WHERE x = :b"), "SELECT \":a\" FROM t WHERE x = $1");
    CHECK_STR(rw("SELECT \"a\"\":b\" , :c"), "SELECT \"a\"\":b\" , $1");
    CHECK_STR(rw("SELECT \"it's\", :c"), "SELECT \"it's\", $1");
    CHECK_STR(rw("SELECT \"x\\\", :c"), "SELECT \"x\\\", $1");
    CHECK_STR(rw("SELECT U&\"d:a\", :c"), "SELECT U&\"d:a\", $1");
    CHECK_STR(rw("SELECT 'a\"b', :c, '\"'"), "SELECT 'a\"b', $1, '\"'");
    CHECK_STR(err_of("SELECT \"abc"), "sql_error@8");
    CHECK_STR(err_of("SELECT \"a\"\""), "sql_error@8");
}

static void dollar_quotes(void)
{
    CHECK_STR(rw("SELECT $$:a$$, :b"), "SELECT $$:a$$, $1");
    CHECK_STR(rw("SELECT $$it's :a$$ || :b"), "SELECT $$it's :a$$ || $1");
    CHECK_STR(rw("SELECT $tag$:a $$ :x $$ $tag$, :b"), "SELECT $tag$:a $$ :x $$ $tag$, $1");
    CHECK_STR(rw("SELECT $a$ $b$ :x $b$ $a$, :b"), "SELECT $a$ $b$ :x $b$ $a$, $1");
    CHECK_STR(rw("SELECT $a$ x$ba$ :x $a$, :b"), "SELECT $a$ x$ba$ :x $a$, $1");
    CHECK_STR(rw("SELECT $_1$:a$_1$, :b"), "SELECT $_1$:a$_1$, $1");
    CHECK_STR(rw("SELECT $\xc3\xa9$:a$\xc3\xa9$, :b"), "SELECT $\xc3\xa9$:a$\xc3\xa9$, $1");
    CHECK_STR(rw("SELECT $$$$, :b"), "SELECT $$$$, $1");
    CHECK_STR(rw("SELECT $$ ' $$, :b"), "SELECT $$ ' $$, $1");
    CHECK_STR(rw("SELECT $$ -- $$, :b"), "SELECT $$ -- $$, $1");
    CHECK_STR(rw("SELECT $TAG$ $tag$ :x $TAG$, :b"), "SELECT $TAG$ $tag$ :x $TAG$, $1");
    /* a $ inside an identifier starts no quote */
    CHECK_STR(rw("SELECT a$b$ , :b, c$$"), "SELECT a$b$ , $1, c$$");
    /* after a number, a $ starts a new token (PostgreSQL lexes 1$$x$$ as 1 then $$x$$) */
    CHECK_STR(rw("SELECT 1$$:a$$, :b"), "SELECT 1$$:a$$, $1");
    CHECK_STR(rw("SELECT 1.5e3$$:a$$, :b"), "SELECT 1.5e3$$:a$$, $1");
    CHECK_STR(rw("SELECT 'x'$$:a$$, :b"), "SELECT 'x'$$:a$$, $1");
    /* $ not forming a tag is an operator character */
    CHECK_STR(rw("SELECT $a :b"), "SELECT $a $1");
    CHECK_STR(rw("SELECT $ :b"), "SELECT $ $1");
    CHECK_STR(rw("SELECT :b $"), "SELECT $1 $");
    CHECK_STR(err_of("SELECT $$abc"), "sql_error@8");
    CHECK_STR(err_of("SELECT $a$ abc $b$"), "sql_error@8");
    CHECK_STR(err_of("SELECT $a$ abc $a"), "sql_error@8");
    CHECK_STR(err_of("SELECT $$$"), "sql_error@8");
    CHECK_STR(rw("SELECT $a$"), "!sql_error@8: the sql string has an unterminated "
                                "dollar-quoted string starting at character 8; close it with $a$");
}

static void positional_refused(void)
{
    CHECK_STR(err_of("SELECT $1"), "invalid_request@8");
    CHECK_STR(err_of("SELECT :a, $2"), "invalid_request@12");
    CHECK(strstr(rw("SELECT $12"), "positional parameter $12 at character 8") != NULL);
    CHECK_STR(rw("SELECT '$1', \"$1\", $$ $1 $$, a$1"), "SELECT '$1', \"$1\", $$ $1 $$, a$1");
}

static void comments(void)
{
    CHECK_STR(rw("SELECT 1 -- :a\n, :b"), "SELECT 1 -- :a\n, $1");
    CHECK_STR(rw("SELECT 1 -- :a\r, :b"), "SELECT 1 -- :a\r, $1");
    CHECK_STR(rw("SELECT :b -- ' unterminated in a comment is fine"),
              "SELECT $1 -- ' unterminated in a comment is fine");
    CHECK_STR(rw("SELECT 1 --"), "SELECT 1 --");
    CHECK_STR(rw("SELECT /* :a */ :b"), "SELECT /* :a */ $1");
    CHECK_STR(rw("SELECT /* /* :a */ :x */ :b"), "SELECT /* /* :a */ :x */ $1");
    CHECK_STR(rw("SELECT /*/ :x */ :b"), "SELECT /*/ :x */ $1");
    CHECK_STR(rw("SELECT /**/ :b"), "SELECT /**/ $1");
    CHECK_STR(rw("SELECT /* ' \" $$ -- */ :b"), "SELECT /* ' \" $$ -- */ $1");
    CHECK_STR(rw("SELECT 1 --/* \n :b"), "SELECT 1 --/* \n $1");
    CHECK_STR(rw("SELECT 2 +-- x\n:b"), "SELECT 2 +-- x\n$1");
    CHECK_STR(rw("SELECT 2 +/* x */:b"), "SELECT 2 +/* x */$1");
    CHECK_STR(rw("SELECT 4 / 2 - 1, *:b"), "SELECT 4 / 2 - 1, *$1");
    CHECK_STR(err_of("SELECT /* x"), "sql_error@8");
    CHECK_STR(err_of("SELECT /* /* x */"), "sql_error@8");
    CHECK_STR(err_of("SELECT 1 /*/"), "sql_error@10");
    CHECK(strstr(rw("SELECT /* x"), "unterminated /* comment starting at character 8") != NULL);
}

static void statements(void)
{
    const char *multi = "!multiple_statements@11: the sql string holds more than one statement; "
                        "send one statement per request (use /transaction for several)";
    CHECK_STR(rw("SELECT 1; SELECT 2"), multi);
    CHECK_STR(rw("SELECT 1;SELECT 2"), "!multiple_statements@10: the sql string holds more than "
                                       "one statement; send one statement per request (use "
                                       "/transaction for several)");
    CHECK_STR(err_of("SELECT 1; ; x"), "multiple_statements@13");
    CHECK_STR(err_of("SELECT 1; /* c */ DROP TABLE t"), "multiple_statements@19");
    CHECK_STR(err_of("SELECT 1; -- c\nDROP TABLE t"), "multiple_statements@16");
    CHECK_STR(err_of("; SELECT 1"), "multiple_statements@3");
    CHECK_STR(err_of("SELECT 1;'x'"), "multiple_statements@10");
    CHECK_STR(err_of("SELECT 1;:a"), "multiple_statements@10");
    CHECK_STR(rw("SELECT 1;"), "SELECT 1");
    CHECK_STR(rw("SELECT :a ;  ;\n;\t"), "SELECT $1 ");
    CHECK_STR(rw("SELECT 1; -- done\n /* and */ ;"), "SELECT 1");
    CHECK_STR(err_of("SELECT 1; /* open"), "sql_error@11");
    CHECK_STR(rw("SELECT ';', \";\", $$;$$, E'\\';' /* ; */ -- ;"),
              "SELECT ';', \";\", $$;$$, E'\\';' /* ; */ -- ;");
    CHECK_STR(rw("SELECT 1 -- ; SELECT 2"), "SELECT 1 -- ; SELECT 2");
    CHECK_STR(rw("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2 $$ LANGUAGE sql"),
              "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2 $$ LANGUAGE sql");
}

static void empty_and_bad_input(void)
{
    CHECK_STR(err_of(""), "invalid_request@0");
    CHECK_STR(err_of("   \n\t "), "invalid_request@0");
    CHECK_STR(err_of("-- only a comment"), "invalid_request@0");
    CHECK_STR(err_of("/* c */ -- d\n"), "invalid_request@0");
    CHECK_STR(err_of(";"), "invalid_request@0");
    CHECK_STR(err_of(" ; ;"), "invalid_request@0");
    CHECK(strstr(rw(""), "holds no statement") != NULL);
    CHECK_STR(rw_len("SELECT 1\0; DROP TABLE t", 23), "!invalid_request@9: the sql string "
                                                      "holds a NUL character at character 9; "
                                                      "remove it");
    CHECK_STR(rw_len("SELECT 'a\0'", 11), "!invalid_request@10: the sql string holds a NUL "
                                          "character at character 10; remove it");
    CHECK_STR(rw_len("SELECT 12", 8), "SELECT 1"); /* len, not the terminator, counts */

    qgp_sql *q = (qgp_sql *)1;
    qg_error e;
    qg_error_clear(&e);
    CHECK_INT(qgp_sql_parse(NULL, 0, &q, &e), QG_ERR_INVALID_REQUEST);
    CHECK(q == NULL);
    CHECK_INT(e.status, QG_ERR_INVALID_REQUEST);
    CHECK_INT(qgp_sql_parse("SELECT 1", 8, NULL, NULL), QG_ERR_INVALID_REQUEST);
    CHECK_INT(qgp_sql_parse("SELECT '", 8, &q, NULL), QG_ERR_SQL); /* err optional */
    CHECK(q == NULL);
    qgp_sql_free(NULL);
    CHECK_INT(qgp_sql_map_position(NULL, 5), 5);
}

static void unterminated(void)
{
    CHECK_STR(rw("SELECT 'abc"), "!sql_error@8: the sql string has an unterminated quoted "
                                 "string starting at character 8; close it with '");
    CHECK_STR(err_of("SELECT 'it''s"), "sql_error@8");
    CHECK_STR(err_of("SELECT 'ok', 'no"), "sql_error@14");
    CHECK_STR(err_of("SELECT 'caf\xc3\xa9', 'no"), "sql_error@16");
    CHECK_STR(err_of("SELECT '\xc3\xa9\xc3\xa9' || E'x"), "sql_error@16");
    CHECK(strstr(rw("SELECT \"abc"), "unterminated quoted identifier starting at character 8") !=
          NULL);
    CHECK_STR(err_of("'"), "sql_error@1");
    CHECK_STR(err_of("E'"), "sql_error@1");
    CHECK_STR(err_of("\""), "sql_error@1");
    CHECK_STR(err_of("$$"), "sql_error@1");
    CHECK_STR(err_of("/*"), "sql_error@1");
}


/* Unterminated literals and comments are statement errors: 42601 at PostgreSQL's position. */
static void unterminated_is_sql_error(void)
{
    for (size_t i = 0; i < sizeof open_literals / sizeof open_literals[0]; i++) {
        qgp_sql *q = (qgp_sql *)1;
        qg_error e;
        qg_error_clear(&e);
        const char *sql = open_literals[i].sql;
        CHECK_INT(qgp_sql_parse(sql, strlen(sql), &q, &e), QG_ERR_SQL);
        CHECK(q == NULL);
        CHECK_STR(e.sqlstate, "42601");
        if (e.position != open_literals[i].position)
            fprintf(stderr, "    %s\n", sql);
        CHECK_INT(e.position, open_literals[i].position);
        char want[64];
        snprintf(want, sizeof want, "unterminated %s starting at character %d",
                 open_literals[i].what, open_literals[i].position);
        CHECK(strstr(e.message, want) != NULL);
    }
    CHECK(strstr(rw("SELECT E'a\\'"), "a backslash escapes the next character") != NULL);
    CHECK(strstr(rw("SELECT $x$ a"), "close it with $x$") != NULL);
    /* the other refusals of the scanner stay invalid_request, without a SQLSTATE */
    qg_error e;
    qg_error_clear(&e);
    qgp_sql *q;
    CHECK_INT(qgp_sql_parse("SELECT $1", 9, &q, &e), QG_ERR_INVALID_REQUEST);
    CHECK_STR(e.sqlstate, "");
}

/* Continued literals: the same extent as PostgreSQL's, E'..' escapes included. */
static void continued_literals(void)
{
    CHECK_STR(rw("SELECT E'a'\n'\\'', :x"), "SELECT E'a'\n'\\'', $1");
    CHECK_STR(rw("SELECT E'a' -- c\n '\\':y', :x"), "SELECT E'a' -- c\n '\\':y', $1");
    CHECK_STR(rw("SELECT 'a'\n'\\', :x"), "SELECT 'a'\n'\\', $1");
    CHECK_STR(rw("SELECT 'a'\n':y', :x"), "SELECT 'a'\n':y', $1");
    CHECK_STR(rw("SELECT B'0'\n'1', :x"), "SELECT B'0'\n'1', $1");
    CHECK_STR(rw("SELECT B'0''1', :x"), "SELECT B'0''1', $1");
    CHECK_STR(rw("SELECT X'0f', :x"), "SELECT X'0f', $1");
    CHECK_STR(rw("SELECT U&'d\\0061', U&\"a:b\", :x"), "SELECT U&'d\\0061', U&\"a:b\", $1");
    CHECK_STR(rw("SELECT u & 'a', :x"), "SELECT u & 'a', $1");
}

static void bad_names(void)
{
    CHECK_STR(err_of("SELECT :caf\xc3\xa9"), "invalid_request@8");
    CHECK(strstr(rw("SELECT :a$b"), "parameter name at character 8") != NULL);
    CHECK_STR(rw("SELECT :a.b, :c-1"), "SELECT $1.b, $2-1");
}

static void many_names(void)
{
    char sql[4096], want[4096];
    size_t sl = 0, wl = 0;
    sl += (size_t)snprintf(sql + sl, sizeof sql - sl, "SELECT ");
    wl += (size_t)snprintf(want + wl, sizeof want - wl, "SELECT ");
    for (int i = 0; i < 100; i++) {
        sl += (size_t)snprintf(sql + sl, sizeof sql - sl, "%s:p%d", i ? ", " : "", i);
        wl += (size_t)snprintf(want + wl, sizeof want - wl, "%s$%d", i ? ", " : "", i + 1);
    }
    /* every name once more, in reverse, to exercise lookups through the hash */
    for (int i = 99; i >= 0; i--) {
        sl += (size_t)snprintf(sql + sl, sizeof sql - sl, ", :p%d", i);
        wl += (size_t)snprintf(want + wl, sizeof want - wl, ", $%d", i + 1);
    }
    CHECK_STR(rw(sql), want);
    qgp_sql *q;
    CHECK_INT(qgp_sql_parse(sql, sl, &q, NULL), QG_OK);
    CHECK_INT(q->nparams, 100);
    CHECK_STR(q->names[0], "p0");
    CHECK_STR(q->names[57], "p57");
    CHECK_STR(q->names[99], "p99");
    qgp_sql_free(q);
}

static void too_many_names(void)
{
    size_t cap = 65536 * 10 + 32, l = 0;
    char *sql = malloc(cap);
    l += (size_t)snprintf(sql, cap, "SELECT ");
    for (int i = 0; i < 65536; i++)
        l += (size_t)snprintf(sql + l, cap - l, ":p%d,", i);
    qgp_sql *q;
    qg_error e;
    qg_error_clear(&e);
    CHECK_INT(qgp_sql_parse(sql, l, &q, &e), QG_ERR_INVALID_REQUEST);
    CHECK(strstr(e.message, "more than 65535 distinct parameters") != NULL);
    /* 65535 is the limit, and is fine */
    char *last = strrchr(sql, ':');
    CHECK_INT(qgp_sql_parse(sql, (size_t)(last - sql), &q, NULL), QG_OK);
    CHECK_INT(q->nparams, 65535);
    CHECK_STR(q->names[65534], "p65534");
    qgp_sql_free(q);
    free(sql);
}

/* 1-based character position of the first `needle` in s. */
static int char_pos(const char *s, const char *needle)
{
    const char *at = strstr(s, needle);
    if (!at)
        return -1;
    int n = 1;
    for (const char *p = s; p < at; p++)
        n += ((unsigned char)*p & 0xC0) != 0x80;
    return n;
}

static void positions(void)
{
    /* multi-byte characters before and between the parameters */
    const char *sql = "SELECT 'h\xc3\xa9llo \xe2\x82\xac', :abc, \xf0\x9f\x98\x80x, :a, "
                      "a[lo\\:hi], zz + :abc -- \xc3\xa9\n; /* t */";
    qgp_sql *q;
    CHECK_INT(qgp_sql_parse(sql, strlen(sql), &q, NULL), QG_OK);
    CHECK_STR(q->text, "SELECT 'h\xc3\xa9llo \xe2\x82\xac', $1, \xf0\x9f\x98\x80x, $2, "
                       "a[lo:hi], zz + $1 -- \xc3\xa9\n");
    const char *marks[] = {"SELECT", "'h", "llo", "x,", "hi]", "zz", "-- "};
    for (size_t i = 0; i < sizeof marks / sizeof *marks; i++)
        CHECK_INT(qgp_sql_map_position(q, char_pos(q->text, marks[i])), char_pos(sql, marks[i]));
    CHECK_INT(qgp_sql_map_position(q, char_pos(q->text, "$1")), char_pos(sql, ":abc"));
    CHECK_INT(qgp_sql_map_position(q, char_pos(q->text, "1,")), char_pos(sql, ":abc") + 1);
    CHECK_INT(qgp_sql_map_position(q, char_pos(q->text, "$2")), char_pos(sql, ":a,"));
    CHECK_INT(qgp_sql_map_position(q, char_pos(q->text, "2,")), char_pos(sql, ":a,") + 1);
    CHECK_INT(qgp_sql_map_position(q, char_pos(q->text, ":hi")), char_pos(sql, "\\:hi"));
    CHECK_INT(qgp_sql_map_position(q, char_pos(q->text, "$1 --")), char_pos(sql, ":abc --"));
    /* "at end of input": one past the rewritten text is where the ';' was */
    int out_chars = char_pos(q->text, "\n") + 1;
    CHECK_INT(qgp_sql_map_position(q, out_chars), char_pos(sql, ";"));
    CHECK_INT(qgp_sql_map_position(q, 0), 0);
    CHECK_INT(qgp_sql_map_position(q, -3), 0);
    int orig_chars = char_pos(sql, "*/") + 1;
    CHECK_INT(qgp_sql_map_position(q, 100000), orig_chars + 1);
    qgp_sql_free(q);
}

static void positions_longer_numbers(void)
{
    /* $10 is longer than :j; positions inside it stay inside :j */
    const char *sql = "SELECT :a,:b,:c,:d,:e,:f,:g,:h,:i,:j,\xc3\xa9 :j";
    qgp_sql *q;
    CHECK_INT(qgp_sql_parse(sql, strlen(sql), &q, NULL), QG_OK);
    CHECK_STR(q->text, "SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,\xc3\xa9 $10");
    int p10 = char_pos(q->text, "$10");
    CHECK_INT(qgp_sql_map_position(q, p10), char_pos(sql, ":j"));
    CHECK_INT(qgp_sql_map_position(q, p10 + 1), char_pos(sql, ":j") + 1);
    CHECK_INT(qgp_sql_map_position(q, p10 + 2), char_pos(sql, ":j") + 1);
    CHECK_INT(qgp_sql_map_position(q, p10 + 3), char_pos(sql, ",\xc3\xa9"));
    CHECK_INT(qgp_sql_map_position(q, p10 + 4), char_pos(sql, "\xc3\xa9"));
    CHECK_INT(qgp_sql_map_position(q, p10 + 6), char_pos(sql, ":j") + 5);
    qgp_sql_free(q);
}

static void injection_looking(void)
{
    CHECK_STR(rw("SELECT * FROM t WHERE name = :name"), "SELECT * FROM t WHERE name = $1");
    CHECK_STR(err_of("SELECT * FROM t WHERE id = 1; DROP TABLE t; --"), "multiple_statements@31");
    CHECK_STR(err_of("SELECT ''; DROP TABLE t; --'"), "multiple_statements@12");
    CHECK_STR(err_of("SELECT E'\\''; DROP TABLE t; --'"), "multiple_statements@15");
    /* standard strings: '\' is complete, so the rest is a second statement */
    CHECK_STR(err_of("SELECT '\\'; DROP TABLE t; --'"), "multiple_statements@13");
    CHECK_STR(err_of("SELECT $$ $$; DROP TABLE t"), "multiple_statements@15");
    CHECK_STR(err_of("SELECT /* */ */; DROP TABLE t"), "multiple_statements@18");
    CHECK_STR(err_of("SELECT 1 /* /* */ ; */; DROP TABLE t"), "multiple_statements@25");
    CHECK_STR(rw("SELECT ':a''; DROP TABLE t; --', :b"), "SELECT ':a''; DROP TABLE t; --', $1");
    CHECK_STR(rw("SELECT \"\"\"; DROP\" FROM t"), "SELECT \"\"\"; DROP\" FROM t");
}

int main(void)
{
    RUN(basic_params);
    RUN(casts_and_colons);
    RUN(escaped_colon);
    RUN(single_quotes);
    RUN(e_strings);
    RUN(quoted_identifiers);
    RUN(dollar_quotes);
    RUN(positional_refused);
    RUN(comments);
    RUN(statements);
    RUN(empty_and_bad_input);
    RUN(unterminated);
    RUN(unterminated_is_sql_error);
    RUN(continued_literals);
    RUN(bad_names);
    RUN(many_names);
    RUN(too_many_names);
    RUN(positions);
    RUN(positions_longer_numbers);
    RUN(injection_looking);
    return qgt_done();
}
