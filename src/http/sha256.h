/* sha256.c: SHA-256 for the API keys' digests. */
#ifndef QGH_SHA256_H
#define QGH_SHA256_H

#include <stddef.h>

#define QGH_SHA256_LEN 32
/* FIPS 180-4 SHA-256 of len bytes. */
void qgh_sha256(const void *data, size_t len, unsigned char out[QGH_SHA256_LEN]);

#endif
