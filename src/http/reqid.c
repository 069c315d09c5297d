/* X-Request-Id: the caller's when it is sane, else 16 random hex digits. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "reqid.h"

/* A per-thread xorshift64* generator: ids need to be unique, not secret. */
static _Thread_local uint64_t prng_state;

static uint64_t prng_next(void)
{
    if (!prng_state) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uintptr_t)&seed;
        }
        prng_state = seed ? seed : 0x9e3779b97f4a7c15ULL;
    }
    prng_state ^= prng_state >> 12;
    prng_state ^= prng_state << 25;
    prng_state ^= prng_state >> 27;
    return prng_state * 0x2545f4914f6cdd1dULL;
}

static bool sane(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= QGH_REQUEST_ID_MAX || c < 0x21 || c > 0x7e)
            return false;
    }
    return n > 0;
}

void qgh_request_id(const char *given, char out[QGH_REQUEST_ID_MAX + 1])
{
    if (given && sane(given)) {
        strcpy(out, given);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    uint64_t v = prng_next();
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
    out[16] = '\0';
}
