/*
 * RFC 3339 section 5.6's grammar as POSIX extended regexes, rule by rule, and
 * section 5.7's restriction of date-mday by month and year: what strict
 * parsers (Java's OffsetDateTime, Go's time.RFC3339) accept of result times.
 */
#ifndef QG_RFC3339_H
#define QG_RFC3339_H

#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#define R3339_DATE_FULLYEAR "[0-9]{4}"
#define R3339_DATE_MONTH "(0[1-9]|1[0-2])"
#define R3339_DATE_MDAY "(0[1-9]|[12][0-9]|3[01])"
#define R3339_TIME_HOUR "([01][0-9]|2[0-3])"
#define R3339_TIME_MINUTE "[0-5][0-9]"
#define R3339_TIME_SECOND "([0-5][0-9]|60)"
#define R3339_TIME_SECFRAC "\\.[0-9]+"
#define R3339_TIME_NUMOFFSET "[+-]" R3339_TIME_HOUR ":" R3339_TIME_MINUTE
#define R3339_TIME_OFFSET "(Z|" R3339_TIME_NUMOFFSET ")"
#define R3339_PARTIAL_TIME                                                        \
    R3339_TIME_HOUR ":" R3339_TIME_MINUTE ":" R3339_TIME_SECOND "(" R3339_TIME_SECFRAC ")?"
#define R3339_FULL_DATE R3339_DATE_FULLYEAR "-" R3339_DATE_MONTH "-" R3339_DATE_MDAY
#define R3339_FULL_TIME R3339_PARTIAL_TIME R3339_TIME_OFFSET
#define R3339_DATE_TIME R3339_FULL_DATE "T" R3339_FULL_TIME

/* The contract's form of each type, anchored. */
#define R3339_TIMESTAMPTZ "^" R3339_FULL_DATE "T" R3339_PARTIAL_TIME "Z$" /* date-time in UTC */
#define R3339_TIMESTAMP "^" R3339_FULL_DATE "T" R3339_PARTIAL_TIME "$"    /* date-time, no offset */
#define R3339_TIMETZ "^" R3339_PARTIAL_TIME R3339_TIME_NUMOFFSET "$"      /* full-time */
#define R3339_DATE "^" R3339_FULL_DATE "$"
#define R3339_TIME "^" R3339_PARTIAL_TIME "$"

/* Section 5.7: 28, 29, 30 or 31 days by month, February 29 in leap years only. */
static inline bool r3339_mday_ok(const char *s)
{
    int y, m, d;
    if (sscanf(s, "%4d-%2d-%2d", &y, &m, &d) != 3)
        return true; /* not a date: the regex alone decides */
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m >= 1 && m <= 12 && d <= days[m - 1] + (m == 2 && leap);
}

/* True if s matches the anchored pattern (and, holding a date, 5.7's day rule). */
static inline bool r3339_match(const char *pattern, const char *s)
{
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0) {
        fprintf(stderr, "bad regex: %s\n", pattern);
        abort();
    }
    bool ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok && r3339_mday_ok(s);
}

#endif
