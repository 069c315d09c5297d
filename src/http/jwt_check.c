/*
 * Bearer tokens (JWT). libjwt checks the signature; everything it leaves to its
 * caller is here: which alg each key may sign with (libjwt 1.10 accepts an HS256
 * token whose HMAC key is the PEM text of an RSA public key, and an unsigned
 * token when given no key), the key by kid, exp, nbf, aud, role and scopes.
 */
#include <jansson.h>
#include <jwt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "jwt_check.h"
#include "jwt_keys.h"
#include "log.h"
#include "sha256.h"

struct qgh_jwt {
    unsigned char *secret; /* JWT_SECRET's bytes, or NULL; wiped when freed */
    size_t secret_len;
    struct qgh_jwk pubkey; /* JWT_PUBLIC_KEY_FILE's; pem NULL without */
    char *jwks_file;
    pthread_rwlock_t lock; /* guards jwks: checks read it, reload swaps it */
    struct qgh_jwks *jwks;
    char *audience;
    long leeway_s;
    char *role_claim;
    char *default_role;
    unsigned default_scopes;
};

/* ---- lifecycle ----------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

static qg_status configure(qgh_jwt *j, const struct qg_config *cfg, qg_error *err)
{
    j->leeway_s = cfg->jwt_leeway_s;
    j->default_scopes = qgh_scopes_parse(cfg->jwt_default_scopes ? cfg->jwt_default_scopes : "");
    if (!j->default_scopes)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "JWT_DEFAULT_SCOPES=\"%.64s\" is not a comma list of read, write, "
                            "admin, named",
                            cfg->jwt_default_scopes ? cfg->jwt_default_scopes : "");
    if (cfg->jwt_default_role && !qgh_role_valid(cfg->jwt_default_role))
        return qg_error_set(err, QG_ERR_CONFIG,
                            "JWT_DEFAULT_ROLE must be 1 to %d characters of A-Z a-z 0-9 _ $ . -",
                            QGH_ROLE_MAX);
    const char *claim = cfg->jwt_role_claim ? cfg->jwt_role_claim : "role";
    if (!*claim || claim[0] == '.' || claim[strlen(claim) - 1] == '.' || strstr(claim, ".."))
        return qg_error_set(err, QG_ERR_CONFIG,
                            "JWT_ROLE_CLAIM=\"%.64s\" is not a claim name or a dotted path "
                            "(app_metadata.role)",
                            claim);
    j->role_claim = strdup(claim);
    j->audience = dup_or_null(cfg->jwt_audience);
    j->default_role = dup_or_null(cfg->jwt_default_role);
    j->jwks_file = dup_or_null(cfg->jwt_jwks_file);
    if (cfg->jwt_secret && *cfg->jwt_secret) {
        j->secret_len = strlen(cfg->jwt_secret);
        j->secret = (unsigned char *)strdup(cfg->jwt_secret);
    }
    if (!j->role_claim || (cfg->jwt_audience && !j->audience) ||
        (cfg->jwt_default_role && !j->default_role) || (cfg->jwt_jwks_file && !j->jwks_file) ||
        (j->secret_len && !j->secret))
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory reading the JWT settings");
    return QG_OK;
}

qg_status qgh_jwt_new(const struct qg_config *cfg, qgh_jwt **out, qg_error *err)
{
    *out = NULL;
    bool secret = cfg->jwt_secret && *cfg->jwt_secret;
    bool pem = cfg->jwt_public_key_file && *cfg->jwt_public_key_file;
    bool jwks = cfg->jwt_jwks_file && *cfg->jwt_jwks_file;
    if (!secret && !pem && !jwks)
        return QG_OK;
    qgh_jwt *j = calloc(1, sizeof *j);
    if (!j)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory reading the JWT settings");
    pthread_rwlock_init(&j->lock, NULL);
    qg_status s = configure(j, cfg, err);
    if (s == QG_OK && pem)
        s = qgh_jwk_from_pem_file(cfg->jwt_public_key_file, &j->pubkey, err);
    if (s == QG_OK && jwks)
        s = qgh_jwks_load(j->jwks_file, &j->jwks, err);
    if (s != QG_OK) {
        qgh_jwt_free(j);
        return s;
    }
    *out = j;
    return QG_OK;
}

void qgh_jwt_free(qgh_jwt *j)
{
    if (!j)
        return;
    if (j->secret)
        explicit_bzero(j->secret, j->secret_len);
    free(j->secret);
    qgh_jwk_clear(&j->pubkey);
    qgh_jwks_free(j->jwks);
    free(j->jwks_file);
    free(j->audience);
    free(j->role_claim);
    free(j->default_role);
    pthread_rwlock_destroy(&j->lock);
    free(j);
}

qg_status qgh_jwt_reload(qgh_jwt *j, size_t *nkeys, qg_error *err)
{
    *nkeys = 0;
    if (!j || !j->jwks_file)
        return QG_OK;
    struct qgh_jwks *set;
    qg_status s = qgh_jwks_load(j->jwks_file, &set, err);
    if (s != QG_OK)
        return s;
    pthread_rwlock_wrlock(&j->lock);
    struct qgh_jwks *old = j->jwks;
    j->jwks = set;
    pthread_rwlock_unlock(&j->lock);
    qgh_jwks_free(old);
    *nkeys = set->n;
    return QG_OK;
}

void qgh_jwt_describe(qgh_jwt *j, char *out, size_t size)
{
    pthread_rwlock_rdlock(&j->lock);
    size_t n = j->jwks ? j->jwks->n : 0, skipped = j->jwks ? j->jwks->skipped : 0;
    pthread_rwlock_unlock(&j->lock);
    char jwks[320] = "";
    if (j->jwks_file)
        snprintf(jwks, sizeof jwks, "%sRS256/ES256 from JWT_JWKS_FILE %.200s (%zu key%s, %zu "
                 "skipped; SIGHUP re-reads it)", j->secret || j->pubkey.pem ? ", " : "",
                 j->jwks_file, n, n == 1 ? "" : "s", skipped);
    snprintf(out, size, "JWT: %s%s%s%s; role claim %s%s%s%s%s",
             j->secret ? "HS256/384/512 (JWT_SECRET)" : "",
             j->secret && j->pubkey.pem ? ", " : "",
             !j->pubkey.pem ? "" : j->pubkey.kind == QGH_JWK_RSA ? "RS256 (JWT_PUBLIC_KEY_FILE)"
                                                                 : "ES256 (JWT_PUBLIC_KEY_FILE)",
             jwks, j->role_claim, j->default_role ? ", default role " : ", no default role",
             j->default_role ? j->default_role : "", j->audience ? ", audience " : "",
             j->audience ? j->audience : "");
}

/* ---- shape --------------------------------------------------------------- */

static size_t b64url_span(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && ((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                     (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
        i++;
    return i;
}

/* The lengths of the three parts; false when tok is not three base64url parts. */
static bool split(const char *tok, size_t len, size_t part[3])
{
    size_t at = 0;
    for (int k = 0; k < 3; k++) {
        part[k] = b64url_span(tok + at, len - at);
        at += part[k];
        if (k < 2 && (at >= len || tok[at] != '.'))
            return false;
        at += k < 2;
    }
    return at == len && part[0] && part[1];
}

/* A base64url part decoded and parsed as a JSON object; NULL if it is none. */
static json_t *decode_object(const char *s, size_t n, unsigned char **text, size_t *tlen)
{
    unsigned char *bytes;
    size_t len;
    if (!qgh_base64url_decode(s, n, &bytes, &len))
        return NULL;
    /* NOTE: numbers as reals, so that a large one parses; duplicate names are ambiguous. */
    json_t *o = json_loadb((const char *)bytes, len,
                           JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES, NULL);
    if (o && !json_is_object(o)) {
        json_decref(o);
        o = NULL;
    }
    if (o && text) {
        *text = bytes;
        *tlen = len;
    } else {
        free(bytes);
    }
    return o;
}

bool qgh_jwt_shaped(const char *tok, size_t len)
{
    size_t part[3];
    if (!split(tok, len, part))
        return false;
    json_t *h = decode_object(tok, part[0], NULL, NULL);
    json_decref(h);
    return h != NULL;
}

/* ---- checking ------------------------------------------------------------ */

static enum qgh_jwt_result refuse(struct qgh_principal *who, enum qgh_jwt_result r,
                                  const char *fmt, ...) QG_PRINTF(3, 4);

static enum qgh_jwt_result refuse(struct qgh_principal *who, enum qgh_jwt_result r,
                                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(who->why, sizeof who->why, fmt, ap);
    va_end(ap);
    return r;
}

/* s as it may appear in a message or the log: printable ASCII, at most 64 bytes. */
static void shown(char *dst, size_t size, const char *s)
{
    size_t n = 0;
    for (; s && s[n] && n + 1 < size && n < 64; n++)
        dst[n] = s[n] >= 0x20 && s[n] < 0x7f && s[n] != '"' ? s[n] : '?';
    dst[n] = '\0';
}

/* The key of a verified signature, under j->lock (read). */
struct key_choice {
    const unsigned char *key;
    size_t len;
};

/* The key that must have signed a token with this alg and kid, or why there is none. */
static enum qgh_jwt_result pick_key(qgh_jwt *j, const char *alg, const char *kid,
                                    struct key_choice *k, struct qgh_principal *who)
{
    if (!strncmp(alg, "HS", 2)) {
        /* NOTE: only ever JWT_SECRET: an HMAC keyed with a public key is the confusion attack. */
        if (!j->secret)
            return refuse(who, QGH_JWT_INVALID, "the token's alg %s needs JWT_SECRET, which is not "
                          "set; this service accepts RS256/ES256 tokens", alg);
        k->key = j->secret;
        k->len = j->secret_len;
        return QGH_JWT_OK;
    }
    enum qgh_jwk_kind want = !strcmp(alg, "RS256") ? QGH_JWK_RSA : QGH_JWK_EC256;
    const struct qgh_jwk *found = NULL;
    size_t of_kind = 0;
    for (size_t i = 0; j->jwks && i < j->jwks->n && !found; i++) {
        const struct qgh_jwk *c = &j->jwks->keys[i];
        of_kind += c->kind == want;
        if (kid && !strcmp(c->kid, kid))
            found = c;
        else if (!kid && c->kind == want && !found && j->jwks->n == 1)
            found = c;
    }
    if (!found && j->pubkey.pem && j->pubkey.kind == want)
        found = &j->pubkey;
    char k_shown[72];
    shown(k_shown, sizeof k_shown, kid);
    if (!found && kid && j->jwks)
        return refuse(who, QGH_JWT_INVALID, "no key with the token's kid \"%s\" in JWT_JWKS_FILE",
                      k_shown);
    if (!found)
        return refuse(who, QGH_JWT_INVALID, "no %s key is configured for the token's alg %s%s",
                      want == QGH_JWK_RSA ? "RSA" : "EC P-256", alg,
                      j->jwks && !kid && of_kind ? " (the token names no kid)" : "");
    if (found->kind != want)
        return refuse(who, QGH_JWT_INVALID, "the key with kid \"%s\" is no %s key, as alg %s needs",
                      k_shown, want == QGH_JWK_RSA ? "RSA" : "EC P-256", alg);
    k->key = (const unsigned char *)found->pem;
    k->len = strlen(found->pem);
    return QGH_JWT_OK;
}

/* The alg of a header, if this service takes it, else why not. */
static enum qgh_jwt_result header_alg(qgh_jwt *j, const json_t *h, const char **alg,
                                      struct qgh_principal *who)
{
    static const char *const allowed[] = {"HS256", "HS384", "HS512", "RS256", "ES256"};
    *alg = json_string_value(json_object_get(h, "alg"));
    const char *typ = json_string_value(json_object_get(h, "typ"));
    if (!*alg)
        return refuse(who, QGH_JWT_INVALID, "the token's header has no alg");
    if (!strcasecmp(*alg, "none"))
        return refuse(who, QGH_JWT_INVALID,
                      "the token is unsigned (alg none); only signed tokens are accepted");
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
        if (!strcmp(*alg, allowed[i]))
            return typ && strcasecmp(typ, "JWT")
                       ? refuse(who, QGH_JWT_INVALID, "the token's typ is not JWT")
                       : QGH_JWT_OK;
    char a[72];
    shown(a, sizeof a, *alg);
    return refuse(who, QGH_JWT_INVALID, "the token's alg %s is not accepted; use %s%s%s", a,
                  j->secret ? "HS256, HS384, HS512" : "",
                  j->secret && (j->pubkey.pem || j->jwks) ? ", " : "",
                  j->pubkey.pem || j->jwks ? "RS256, ES256" : "");
}

/* The signature, by libjwt, with the one key alg and kid allow. */
static enum qgh_jwt_result verify(qgh_jwt *j, const char *tok, size_t len, const char *alg,
                                  const char *kid, struct qgh_principal *who)
{
    char *copy = strndup(tok, len);
    if (!copy)
        return refuse(who, QGH_JWT_INVALID, "out of memory checking the token");
    pthread_rwlock_rdlock(&j->lock);
    struct key_choice k = {NULL, 0};
    enum qgh_jwt_result r = pick_key(j, alg, kid, &k, who);
    jwt_t *decoded = NULL;
    if (r == QGH_JWT_OK && (jwt_decode(&decoded, copy, k.key, (int)k.len) != 0 ||
                            jwt_get_alg(decoded) != jwt_str_alg(alg)))
        r = refuse(who, QGH_JWT_INVALID, "the token's signature does not verify");
    pthread_rwlock_unlock(&j->lock);
    jwt_free(decoded);
    explicit_bzero(copy, len);
    free(copy);
    return r;
}

/* exp and nbf (with JWT_LEEWAY_S), aud (with JWT_AUDIENCE). */
static enum qgh_jwt_result check_times_aud(qgh_jwt *j, const json_t *p, struct qgh_principal *who)
{
    double now = (double)time(NULL);
    const json_t *exp = json_object_get(p, "exp"), *nbf = json_object_get(p, "nbf");
    if ((exp && !json_is_number(exp)) || (nbf && !json_is_number(nbf)))
        return refuse(who, QGH_JWT_INVALID, "the token's exp or nbf is not a number");
    if (exp && now > json_number_value(exp) + (double)j->leeway_s)
        return refuse(who, QGH_JWT_INVALID, "the token expired %.0f s ago (JWT_LEEWAY_S=%ld)",
                      now - json_number_value(exp), j->leeway_s);
    if (nbf && now + (double)j->leeway_s < json_number_value(nbf))
        return refuse(who, QGH_JWT_INVALID, "the token is not valid for %.0f s more (nbf; "
                      "JWT_LEEWAY_S=%ld)", json_number_value(nbf) - now, j->leeway_s);
    if (!j->audience)
        return QGH_JWT_OK;
    const json_t *aud = json_object_get(p, "aud");
    bool ok = json_is_string(aud) && !strcmp(json_string_value(aud), j->audience);
    size_t i;
    const json_t *v;
    json_array_foreach(aud, i, v) {
        ok = ok || (json_is_string(v) && !strcmp(json_string_value(v), j->audience));
    }
    return ok ? QGH_JWT_OK
              : refuse(who, QGH_JWT_INVALID, "the token's aud does not name %.100s (JWT_AUDIENCE)",
                       j->audience);
}

/* The claim at a dotted path (app_metadata.role), or NULL. */
static const json_t *claim_at(const json_t *p, const char *path)
{
    const json_t *v = p;
    while (v && *path) {
        size_t n = strcspn(path, ".");
        char name[128];
        if (n >= sizeof name)
            return NULL;
        memcpy(name, path, n);
        name[n] = '\0';
        v = json_object_get(v, name);
        path += n + (path[n] == '.');
    }
    return v;
}

static enum qgh_jwt_result take_role(qgh_jwt *j, const json_t *p, struct qgh_principal *who)
{
    const json_t *v = claim_at(p, j->role_claim);
    const char *role = json_string_value(v);
    if ((!v || json_is_null(v)) && j->default_role)
        role = j->default_role;
    else if (!v || json_is_null(v))
        return refuse(who, QGH_JWT_FORBIDDEN, "the token has no %.64s claim (JWT_ROLE_CLAIM) and "
                      "JWT_DEFAULT_ROLE is not set", j->role_claim);
    else if (!role)
        return refuse(who, QGH_JWT_FORBIDDEN, "the token's %.64s claim is not a string; map it to "
                      "one role name in the identity provider", j->role_claim);
    if (!qgh_role_valid(role))
        return refuse(who, QGH_JWT_FORBIDDEN, "the token's %.64s claim is not a role name (1 to %d "
                      "characters of A-Z a-z 0-9 _ $ . -)", j->role_claim, QGH_ROLE_MAX);
    snprintf(who->role, sizeof who->role, "%s", role);
    return QGH_JWT_OK;
}

/* OAuth's space-separated scope: the names this service knows; others are the IdP's own. */
static unsigned scope_words(const char *s)
{
    unsigned bits = 0;
    while (*s) {
        size_t n = strcspn(s, " ");
        char word[16];
        if (n && n < sizeof word && !memchr(s, ',', n)) {
            memcpy(word, s, n);
            word[n] = '\0';
            bits |= qgh_scopes_parse(word);
        }
        s += n + (s[n] == ' ');
    }
    return bits;
}

/* Scopes, role, caller, claims text, from a verified payload. */
static enum qgh_jwt_result take_claims(qgh_jwt *j, const json_t *p, unsigned char *text,
                                       size_t tlen, struct qgh_principal *who)
{
    enum qgh_jwt_result r = check_times_aud(j, p, who);
    if (r != QGH_JWT_OK)
        return r;
    const json_t *scope = json_object_get(p, "scope");
    if (scope && !json_is_string(scope))
        return refuse(who, QGH_JWT_INVALID, "the token's scope is not a string");
    who->scopes = scope ? scope_words(json_string_value(scope)) : j->default_scopes;
    r = take_role(j, p, who);
    if (r != QGH_JWT_OK)
        return r;
    /* Requests of different subjects never share prepared statements (qg_tx_options.caller). */
    const char *iss = json_string_value(json_object_get(p, "iss"));
    const char *sub = json_string_value(json_object_get(p, "sub"));
    unsigned char h[QGH_SHA256_LEN];
    char id[600];
    int n = snprintf(id, sizeof id, "jwt\n%.280s\n%.280s", iss ? iss : "", sub ? sub : "");
    if (sub)
        qgh_sha256(id, (size_t)n, h);
    else
        qgh_sha256(text, tlen, h);
    memcpy(&who->caller, h, sizeof who->caller);
    who->claims = (char *)text;
    return QGH_JWT_OK;
}

static void log_accepted(const json_t *h, const json_t *p, const struct qgh_principal *who)
{
    if (!qgh_log_enabled(QG_LOG_DEBUG))
        return;
    char sub[72], kid[72];
    shown(sub, sizeof sub, json_string_value(json_object_get(p, "sub")));
    shown(kid, sizeof kid, json_string_value(json_object_get(h, "kid")));
    qgh_log(QG_LOG_DEBUG, "token accepted: sub \"%s\", kid \"%s\", role %s", sub, kid, who->role);
}

enum qgh_jwt_result qgh_jwt_check(qgh_jwt *j, const char *tok, size_t len,
                                  struct qgh_principal *who)
{
    size_t part[3];
    if (!split(tok, len, part))
        return refuse(who, QGH_JWT_INVALID, "the token is not three base64url parts");
    json_t *h = decode_object(tok, part[0], NULL, NULL);
    unsigned char *text = NULL;
    size_t tlen = 0;
    json_t *p = decode_object(tok + part[0] + 1, part[1], &text, &tlen);
    const char *alg = NULL;
    enum qgh_jwt_result r;
    if (!h || !p)
        r = refuse(who, QGH_JWT_INVALID, "the token's %s is not a JSON object",
                   !h ? "header" : "payload");
    else if ((r = header_alg(j, h, &alg, who)) == QGH_JWT_OK &&
             (r = verify(j, tok, len, alg, json_string_value(json_object_get(h, "kid")), who)) ==
                 QGH_JWT_OK &&
             (r = take_claims(j, p, text, tlen, who)) == QGH_JWT_OK) {
        text = NULL; /* who->claims owns it */
        log_accepted(h, p, who);
    }
    free(text);
    json_decref(h);
    json_decref(p);
    return r;
}
