/* The clock, timed-wait, trimming and hashing helpers the other files share. */
#include <errno.h>
#include <string.h>

#include "core_private.h"

double qg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct timespec qg_timespec(double seconds)
{
    struct timespec ts = {0, 0};
    if (seconds <= 0)
        return ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_nsec = 999999999L;
    return ts;
}

void qg_cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
}

size_t qg_trim_end(const char *s, size_t n, const char *chars)
{
    while (n && s[n - 1] && strchr(chars, s[n - 1]))
        n--;
    return n;
}

void qgp_sleep(double seconds)
{
    if (seconds <= 0)
        return;
    struct timespec ts = qg_timespec(seconds);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint64_t qgp_fnv1a(const void *data, size_t n)
{
    const unsigned char *s = data;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}
