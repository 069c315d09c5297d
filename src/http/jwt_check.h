/* jwt_check.c: bearer tokens (JWT): signature, alg, exp, nbf, aud; role, scopes and claims of a request. */
#ifndef QGH_JWT_CHECK_H
#define QGH_JWT_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include "querygate/querygate.h"

typedef struct qgh_jwt qgh_jwt;
struct qgh_principal;

/*
 * The JWT settings of cfg (JWT_SECRET, JWT_PUBLIC_KEY_FILE, JWT_JWKS_FILE and the
 * rest); cfg may be freed afterwards. *out is NULL when none of the three keys is
 * set (tokens are not accepted), else new: free with qgh_jwt_free. QG_ERR_CONFIG
 * names the variable (never the secret's value).
 */
qg_status qgh_jwt_new(const struct qg_config *cfg, qgh_jwt **out, qg_error *err) QG_MUSTCHECK;
void qgh_jwt_free(qgh_jwt *j);
/* Reads JWT_JWKS_FILE again (no-op without one; *nkeys 0); on error the old keys stay. */
qg_status qgh_jwt_reload(qgh_jwt *j, size_t *nkeys, qg_error *err) QG_MUSTCHECK;
/* "HS256/384/512 (JWT_SECRET), ..." for the start log. */
void qgh_jwt_describe(qgh_jwt *j, char *out, size_t size);

/* Three dot-separated base64url parts (the last may be empty), the first a JSON object. */
bool qgh_jwt_shaped(const char *tok, size_t len);

enum qgh_jwt_result {
    QGH_JWT_OK,        /* *who filled: scopes, role, caller, claims */
    QGH_JWT_INVALID,   /* 401 invalid_token; who->why says why */
    QGH_JWT_FORBIDDEN  /* 403: a valid token without a usable role; who->why says why */
};

/*
 * Checks a token of len bytes. On QGH_JWT_OK who->claims is the payload's JSON
 * text, new (qgh_principal_clear frees it). The token itself never reaches a
 * message or the log.
 */
enum qgh_jwt_result qgh_jwt_check(qgh_jwt *j, const char *tok, size_t len,
                                  struct qgh_principal *who);

#endif
