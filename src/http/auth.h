/* auth.c: API keys and bearer tokens (jwt_check.c), their scopes and roles. */
#ifndef QGH_AUTH_H
#define QGH_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "querygate/querygate.h"

typedef struct qgh_auth qgh_auth;

enum qgh_scope {
    QGH_SCOPE_READ = 1,  /* /query */
    QGH_SCOPE_WRITE = 2, /* /update, /insert, /transaction */
    QGH_SCOPE_ADMIN = 4, /* /health, /pool, /metrics; details of /health/ready */
    QGH_SCOPE_NAMED = 8, /* POST /queries/NAME of either mode, and nothing else */
    QGH_SCOPE_ALL = 7
};

#define QGH_ROLE_MAX 63

/* What a request may do, decided from its Authorization header. */
struct qgh_principal {
    unsigned scopes;                 /* QGH_SCOPE_* bits */
    char role[QGH_ROLE_MAX + 1];     /* database role of the key or token; "" for the main pool */
    uint64_t caller;                 /* the key's id (from its digest), the token's (iss, sub);
                                        0 without keys */
    char *claims;                    /* a token's payload (JSON text), owned; NULL for keys */
    char why[192];                   /* why a token was refused, for the answer; never the token */
};

enum qgh_auth_result {
    QGH_AUTH_OK,
    QGH_AUTH_MISSING,   /* no Authorization header, or another scheme than Bearer */
    QGH_AUTH_MALFORMED, /* Bearer with an empty or ill-formed token */
    QGH_AUTH_INVALID,   /* a well-formed token that is no key, or a bad JWT (who->why) */
    QGH_AUTH_FORBIDDEN  /* a valid JWT without a usable role (who->why) */
};

/*
 * The keys of cfg (AUTH, API_KEYS, API_KEYS_FILE), hashed, and its JWT settings
 * (jwt_check.c); cfg may be freed afterwards. QG_ERR_CONFIG for a malformed entry
 * (named by file and line or entry number, never by the key), a bad JWT
 * setting, and for AUTH=keys without keys or JWT keys on a HOST that is not
 * loopback. *out is new; free with qgh_auth_free.
 */
qg_status qgh_auth_new(const struct qg_config *cfg, qgh_auth **out, qg_error *err) QG_MUSTCHECK;
void qgh_auth_free(qgh_auth *a);
/* Reads API_KEYS_FILE again (plus API_KEYS); on error the old keys stay. */
qg_status qgh_auth_reload(qgh_auth *a, size_t *nkeys, qg_error *err) QG_MUSTCHECK;
/* Reads JWT_JWKS_FILE again (*nkeys 0 without one); on error the old keys stay. */
qg_status qgh_auth_reload_jwks(qgh_auth *a, size_t *nkeys, qg_error *err) QG_MUSTCHECK;
/* A line for the start log saying how requests are authenticated; returns its level. */
enum qg_log_level qgh_auth_describe(qgh_auth *a, char *out, size_t size);
/*
 * Checks an Authorization header value (NULL: none); a NULL a allows everything.
 * A bearer shaped as a JWT (qgh_jwt_shaped) is checked as one when tokens are
 * configured, anything else as an API key. *who is filled afresh: release it
 * with qgh_principal_clear.
 */
enum qgh_auth_result qgh_auth_check(qgh_auth *a, const char *authorization,
                                    struct qgh_principal *who);
/* Frees who->claims and zeroes *who. */
void qgh_principal_clear(struct qgh_principal *who);
/* 1 to QGH_ROLE_MAX characters of A-Z a-z 0-9 _ $ . - */
bool qgh_role_valid(const char *s);
/* "read,write" -> bits; 0 if any name is unknown or empty. */
unsigned qgh_scopes_parse(const char *list);
/* 127.0.0.0/8, ::1 (bracketed or not), ::ffff:127.x, localhost. */
bool qgh_host_is_loopback(const char *host);

#endif
