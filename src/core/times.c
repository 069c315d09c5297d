/* PostgreSQL's ISO text of timestamp, timestamptz and timetz in the forms of RFC 3339. */
#include <stdio.h>
#include <string.h>

#include "core_private.h"

enum { OID_TIMESTAMP = 1114, OID_TIMESTAMPTZ = 1184, OID_TIMETZ = 1266 };

/* One date and time of day as DateStyle ISO writes it; frac points into the text. */
struct when {
    int year, month, day, hour, minute, second;
    const char *frac; /* "." and its digits, or "" */
    size_t nfrac;
};

/* Exactly k digits at s[*i], as a number; *i moves past them. */
static bool digits(const char *s, size_t n, size_t *i, size_t k, int *v)
{
    if (n - *i < k)
        return false;
    *v = 0;
    for (size_t j = *i; j < *i + k; j++) {
        if (s[j] < '0' || s[j] > '9')
            return false;
        *v = *v * 10 + (s[j] - '0');
    }
    *i += k;
    return true;
}

static bool lit(const char *s, size_t n, size_t *i, char c)
{
    if (*i >= n || s[*i] != c)
        return false;
    (*i)++;
    return true;
}

/*
 * YYYY-MM-DD, the year 4 to 7 digits (PostgreSQL's range). A BC date fails
 * further on (its " BC" comes last) and keeps its text; so does a year past
 * 9999, unless a timestamptz's offset brings it back (to_utc).
 */
static bool date_part(const char *s, size_t n, size_t *i, struct when *w)
{
    if (!digits(s, n, i, 4, &w->year))
        return false;
    for (int k = 0; k < 3 && *i < n && s[*i] >= '0' && s[*i] <= '9'; k++)
        w->year = w->year * 10 + (s[(*i)++] - '0');
    return w->year >= 1 && lit(s, n, i, '-') && digits(s, n, i, 2, &w->month) &&
           w->month >= 1 && w->month <= 12 && lit(s, n, i, '-') &&
           digits(s, n, i, 2, &w->day) && w->day >= 1 && w->day <= 31;
}

/* HH:MM:SS[.fff]. PostgreSQL's 24:00:00 (time and timetz allow it) has no RFC 3339 form. */
static bool time_part(const char *s, size_t n, size_t *i, struct when *w)
{
    if (!digits(s, n, i, 2, &w->hour) || w->hour > 23 || !lit(s, n, i, ':') ||
        !digits(s, n, i, 2, &w->minute) || w->minute > 59 || !lit(s, n, i, ':') ||
        !digits(s, n, i, 2, &w->second) || w->second > 59)
        return false;
    w->frac = s + *i;
    w->nfrac = 0;
    if (*i < n && s[*i] == '.') {
        size_t j = *i + 1;
        while (j < n && s[j] >= '0' && s[j] <= '9')
            j++;
        if (j == *i + 1 || j - *i > 10) /* PostgreSQL writes up to 6 digits; Java reads 9 */
            return false;
        w->nfrac = j - *i;
        *i = j;
    }
    return true;
}

/* +HH[:MM[:SS]] to the end of the text, as seconds east of UTC; *has_secs if SS was there. */
static bool offset_part(const char *s, size_t n, size_t *i, long *secs, bool *has_secs)
{
    if (*i >= n || (s[*i] != '+' && s[*i] != '-'))
        return false;
    int sign = s[(*i)++] == '-' ? -1 : 1, h, m = 0, sec = 0;
    if (!digits(s, n, i, 2, &h))
        return false;
    if (*i < n && (!lit(s, n, i, ':') || !digits(s, n, i, 2, &m) || m > 59))
        return false;
    *has_secs = *i < n;
    if (*i < n && (!lit(s, n, i, ':') || !digits(s, n, i, 2, &sec) || sec > 59))
        return false;
    *secs = sign * ((long)h * 3600 + m * 60 + sec);
    return *i == n;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long era = y / 400; /* y >= 0 here: years from 1, less one */
    long yoe = y - era * 400;
    long doy = (153L * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(long z, struct when *w)
{
    z += 719468;
    long era = (z >= 0 ? z : z - 146096) / 146097;
    long doe = z - era * 146097;
    long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long mp = (5 * doy + 2) / 153;
    w->day = (int)(doy - (153 * mp + 2) / 5 + 1);
    w->month = (int)(mp < 10 ? mp + 3 : mp - 9);
    w->year = (int)(yoe + era * 400 + (w->month <= 2));
}

/*
 * The same instant in UTC. NOTE: the session runs with TimeZone=UTC, so the
 * offset is +00 and nothing moves; a statement that SETs TimeZone gets UTC all
 * the same, rather than an offset that Instant.parse and the contract refuse.
 */
static bool to_utc(struct when *w, long offset)
{
    if (offset == 0)
        return w->year <= 9999;
    long long t = (long long)days_from_civil(w->year, w->month, w->day) * 86400 +
                  w->hour * 3600 + w->minute * 60 + w->second - offset;
    long long days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    long sod = (long)(t - days * 86400);
    civil_from_days((long)days, w);
    w->hour = (int)(sod / 3600);
    w->minute = (int)(sod / 60 % 60);
    w->second = (int)(sod % 60);
    return w->year >= 1 && w->year <= 9999;
}

static size_t put(char *buf, size_t cap, const struct when *w, bool date, const char *zone)
{
    int n = date ? snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d%.*s%s", w->year, w->month,
                            w->day, w->hour, w->minute, w->second, (int)w->nfrac, w->frac, zone)
                 : snprintf(buf, cap, "%02d:%02d:%02d%.*s%s", w->hour, w->minute, w->second,
                            (int)w->nfrac, w->frac, zone);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t qgp_time_rfc3339(Oid type, const char *s, size_t n, char *buf, size_t cap)
{
    struct when w;
    size_t i = 0;
    long off = 0;
    bool has_secs = false;
    if (!s || !buf)
        return 0;
    switch (type) {
    case OID_TIMESTAMP:
        if (date_part(s, n, &i, &w) && w.year <= 9999 && lit(s, n, &i, ' ') &&
            time_part(s, n, &i, &w) && i == n)
            return put(buf, cap, &w, true, "");
        return 0;
    case OID_TIMESTAMPTZ:
        if (date_part(s, n, &i, &w) && lit(s, n, &i, ' ') && time_part(s, n, &i, &w) &&
            offset_part(s, n, &i, &off, &has_secs) && to_utc(&w, off))
            return put(buf, cap, &w, true, "Z");
        return 0;
    case OID_TIMETZ: {
        /* NOTE: an offset with seconds (+01:02:03) has no RFC 3339 form: kept as it is. */
        if (!time_part(s, n, &i, &w) || !offset_part(s, n, &i, &off, &has_secs) || has_secs)
            return 0;
        long a = off < 0 ? -off : off;
        char zone[8];
        snprintf(zone, sizeof zone, "%c%02ld:%02ld", off < 0 ? '-' : '+', a / 3600 % 100,
                 a / 60 % 60);
        return put(buf, cap, &w, false, zone);
    }
    default:
        return 0;
    }
}
