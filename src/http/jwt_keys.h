/* jwt_keys.c: the public keys tokens are checked with (a PEM file, a JWKS document), and base64url. */
#ifndef QGH_JWT_KEYS_H
#define QGH_JWT_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include "querygate/querygate.h"

enum qgh_jwk_kind {
    QGH_JWK_RSA,  /* RS256 */
    QGH_JWK_EC256 /* ES256: P-256 */
};

struct qgh_jwk {
    enum qgh_jwk_kind kind;
    char kid[128]; /* "" without one */
    char *pem;     /* SubjectPublicKeyInfo PEM, NUL-terminated: what libjwt takes */
};

struct qgh_jwks {
    size_t n;
    struct qgh_jwk *keys;
    size_t skipped; /* keys of other types or uses (encryption, HMAC, other curves) */
};

/*
 * The RSA (2048 bits or more) or P-256 public key of a PEM file (a public key or
 * a certificate). QG_ERR_CONFIG names the file and what is wrong. Free out's
 * contents with qgh_jwk_clear.
 */
qg_status qgh_jwk_from_pem_file(const char *path, struct qgh_jwk *out, qg_error *err) QG_MUSTCHECK;
void qgh_jwk_clear(struct qgh_jwk *k);

/*
 * The RS256 and ES256 signing keys of a JWKS file ({"keys": [...]}); others are
 * skipped and counted. QG_ERR_CONFIG when none is usable, a usable one is
 * malformed (named by index and kid) or a kid repeats. *out is new; free it
 * with qgh_jwks_free.
 */
qg_status qgh_jwks_load(const char *path, struct qgh_jwks **out, qg_error *err) QG_MUSTCHECK;
void qgh_jwks_free(struct qgh_jwks *s);

/*
 * RFC 4648 base64url without padding (a trailing '=' is refused). *out is new,
 * NUL-terminated (not counted in *outlen); free it. False on a bad character,
 * a bad length or no memory.
 */
bool qgh_base64url_decode(const char *s, size_t n, unsigned char **out, size_t *outlen);

#endif
