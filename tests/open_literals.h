/*
 * SQL texts with a literal or comment left open, and where PostgreSQL reports
 * it (1-based character): tests/unit/test_params.c checks the scanner gives
 * these, tests/db/test_params_pg.c that the server does too.
 */
#ifndef QG_OPEN_LITERALS_H
#define QG_OPEN_LITERALS_H

static const struct { const char *sql; int position; const char *what; } open_literals[] = {
    {"SELECT 'abc", 8, "quoted string"},
    {"SELECT \"abc", 8, "quoted identifier"},
    {"SELECT $$abc", 8, "dollar-quoted string"},
    {"SELECT 1 /* x", 10, "/* comment"},
    {"SELECT E'a\\'", 8, "quoted string"},
    {"SELECT e'a\\\\\\'", 8, "quoted string"},
    {"SELECT B'01", 8, "bit string literal"},
    {"SELECT x'ab", 8, "hexadecimal string literal"},
    {"SELECT U&'ab", 8, "quoted string"},
    {"SELECT u&\"ab", 8, "quoted identifier"},
    {"SELECT N'ab", 9, "quoted string"},
    {"SELECT int'5", 11, "quoted string"},
    {"SELECT 'é' || 'abc", 15, "quoted string"},
    {"SELECT 1 /* a /* b */", 10, "/* comment"},
    {"SELECT $a$ x $b$", 8, "dollar-quoted string"},
    /* a literal continued on another line is one token: PostgreSQL points at its start */
    {"SELECT 'a'\n'b", 8, "quoted string"},
    {"SELECT 'a'\r\n  'b'\n'c", 8, "quoted string"},
    {"SELECT 'a' -- c\n'b", 8, "quoted string"},
    {"SELECT 'a' -- c\n -- d\n\n 'b", 8, "quoted string"},
    {"SELECT E'a'\n'b\\'", 8, "quoted string"},
    {"SELECT B'0'\n'1", 8, "bit string literal"},
    {"SELECT U&'a'\n'b", 8, "quoted string"},
    /* ... but not without a newline, nor across a block comment, nor for identifiers */
    {"SELECT 'a'  'b", 13, "quoted string"},
    {"SELECT 'a' /* c */\n'b", 20, "quoted string"},
    {"SELECT \"a\"\n\"b", 12, "quoted identifier"},
    /* B'' and X'' strings do not double quotes */
    {"SELECT B'0''1", 12, "quoted string"},
};

#endif
