/* Small helpers the core and its callers share: the monotonic clock, timed waits, trimming. */
#ifndef QUERYGATE_UTIL_H
#define QUERYGATE_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <time.h>

/* Seconds on CLOCK_MONOTONIC: for durations and deadlines, never for dates. */
double qg_now(void);

/*
 * seconds as a timespec (negative: zero): a duration for nanosleep or sigtimedwait,
 * or a qg_now() deadline for pthread_cond_timedwait on a qg_cond_init_monotonic cv.
 */
struct timespec qg_timespec(double seconds);

/* A condition variable whose timed waits use CLOCK_MONOTONIC (qg_now's clock). */
void qg_cond_init_monotonic(pthread_cond_t *cv);

/* The length of s[0..n) without its trailing bytes that are in chars. */
size_t qg_trim_end(const char *s, size_t n, const char *chars);

#endif
