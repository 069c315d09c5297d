/* Test helpers: a failure macro that names file and line, and the test database. */
#ifndef QG_TEST_H
#define QG_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int qgt_failures;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            qgt_failures++;                                                      \
        }                                                                        \
    } while (0)

#define CHECK_STR(got, want)                                                     \
    do {                                                                         \
        const char *g_ = (got), *w_ = (want);                                    \
        if (!g_ || !w_ || strcmp(g_, w_) != 0) {                                 \
            fprintf(stderr, "%s:%d: %s\n    got:  %s\n    want: %s\n", __FILE__, \
                    __LINE__, #got, g_ ? g_ : "(null)", w_ ? w_ : "(null)");     \
            qgt_failures++;                                                      \
        }                                                                        \
    } while (0)

#define CHECK_INT(got, want)                                                     \
    do {                                                                         \
        long long g_ = (long long)(got), w_ = (long long)(want);                 \
        if (g_ != w_) {                                                          \
            fprintf(stderr, "%s:%d: %s: got %lld, want %lld\n", __FILE__,       \
                    __LINE__, #got, g_, w_);                                     \
            qgt_failures++;                                                      \
        }                                                                        \
    } while (0)

/* Run one test function, announcing it, so a crash shows where it happened. */
#define RUN(fn)                                                                  \
    do {                                                                         \
        fprintf(stderr, "-- %s\n", #fn);                                         \
        fn();                                                                    \
    } while (0)

static inline int qgt_done(void)
{
    if (qgt_failures) {
        fprintf(stderr, "%d check(s) failed\n", qgt_failures);
        return 1;
    }
    return 0;
}

/* The throwaway cluster that scripts/test started; exits 77 (skip) without it. */
static inline const char *qgt_database_url(void)
{
    const char *url = getenv("QG_TEST_DATABASE_URL");
    if (!url || !*url) {
        fprintf(stderr, "SKIP: QG_TEST_DATABASE_URL is not set; run the suite with scripts/test\n");
        exit(77);
    }
    return url;
}

#endif
