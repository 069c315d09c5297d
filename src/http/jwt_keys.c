/* Public keys for tokens: a PEM file or a JWKS document, turned into the PEM text libjwt takes, with GnuTLS. */
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt_keys.h"

#define MIN_RSA_BITS 2048

/* ---- base64url ----------------------------------------------------------- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

bool qgh_base64url_decode(const char *s, size_t n, unsigned char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (n % 4 == 1)
        return false;
    unsigned char *buf = malloc(n / 4 * 3 + 3);
    if (!buf)
        return false;
    size_t len = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0) {
            free(buf);
            return false;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[len++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return true;
}

/* ---- keys ---------------------------------------------------------------- */

void qgh_jwk_clear(struct qgh_jwk *k)
{
    if (!k)
        return;
    free(k->pem);
    memset(k, 0, sizeof *k);
}

void qgh_jwks_free(struct qgh_jwks *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        qgh_jwk_clear(&s->keys[i]);
    free(s->keys);
    free(s);
}

/* The kind of pk, or why it is not one we take (into why). */
static bool key_kind(gnutls_pubkey_t pk, enum qgh_jwk_kind *kind, char *why, size_t size)
{
    unsigned bits = 0;
    int alg = gnutls_pubkey_get_pk_algorithm(pk, &bits);
    if (alg == GNUTLS_PK_RSA) {
        if (bits < MIN_RSA_BITS) {
            snprintf(why, size, "an RSA key of %u bits; use %d bits or more", bits, MIN_RSA_BITS);
            return false;
        }
        *kind = QGH_JWK_RSA;
        return true;
    }
    if (alg == GNUTLS_PK_ECDSA) {
        gnutls_ecc_curve_t curve;
        gnutls_datum_t x = {NULL, 0}, y = {NULL, 0};
        int r = gnutls_pubkey_export_ecc_raw(pk, &curve, &x, &y);
        gnutls_free(x.data);
        gnutls_free(y.data);
        if (r == 0 && curve == GNUTLS_ECC_CURVE_SECP256R1) {
            *kind = QGH_JWK_EC256;
            return true;
        }
        snprintf(why, size, "an EC key on another curve than P-256 (ES256 needs P-256)");
        return false;
    }
    snprintf(why, size, "neither an RSA nor a P-256 key");
    return false;
}

/* pk as PEM into k->pem; false when out of memory. */
static bool export_pem(gnutls_pubkey_t pk, struct qgh_jwk *k)
{
    gnutls_datum_t d = {NULL, 0};
    if (gnutls_pubkey_export2(pk, GNUTLS_X509_FMT_PEM, &d) < 0)
        return false;
    k->pem = strndup((const char *)d.data, d.size);
    gnutls_free(d.data);
    return k->pem != NULL;
}

static qg_status read_file(const char *var, const char *path, gnutls_datum_t *out, qg_error *err)
{
    int r = gnutls_load_file(path, out);
    if (r < 0)
        return qg_error_set(err, QG_ERR_CONFIG, "%s %s: cannot read it (%s)", var, path,
                            gnutls_strerror(r));
    return QG_OK;
}

qg_status qgh_jwk_from_pem_file(const char *path, struct qgh_jwk *out, qg_error *err)
{
    memset(out, 0, sizeof *out);
    gnutls_datum_t data = {NULL, 0};
    qg_status s = read_file("JWT_PUBLIC_KEY_FILE", path, &data, err);
    if (s != QG_OK)
        return s;
    gnutls_pubkey_t pk;
    if (gnutls_pubkey_init(&pk) < 0) {
        gnutls_free(data.data);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading JWT_PUBLIC_KEY_FILE");
    }
    char why[128];
    if (gnutls_pubkey_import(pk, &data, GNUTLS_X509_FMT_PEM) < 0 &&
        gnutls_pubkey_import_x509_raw(pk, &data, GNUTLS_X509_FMT_PEM, 0) < 0)
        s = qg_error_set(err, QG_ERR_CONFIG,
                         "JWT_PUBLIC_KEY_FILE %s: not a PEM public key "
                         "(-----BEGIN PUBLIC KEY-----) nor a PEM certificate",
                         path);
    else if (!key_kind(pk, &out->kind, why, sizeof why))
        s = qg_error_set(err, QG_ERR_CONFIG, "JWT_PUBLIC_KEY_FILE %s: %s", path, why);
    else if (!export_pem(pk, out))
        s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading JWT_PUBLIC_KEY_FILE");
    gnutls_pubkey_deinit(pk);
    gnutls_free(data.data);
    if (s != QG_OK)
        qgh_jwk_clear(out);
    return s;
}

/* ---- JWKS ---------------------------------------------------------------- */

static const char *member(const json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

/* A base64url member as a GnuTLS datum (new data; free it). */
static bool datum(const json_t *o, const char *name, gnutls_datum_t *d)
{
    const char *v = member(o, name);
    unsigned char *bytes;
    size_t n;
    if (!v || !*v || !qgh_base64url_decode(v, strlen(v), &bytes, &n))
        return false;
    d->data = bytes;
    d->size = (unsigned)n;
    return true;
}

/* The public key a JWK describes, imported into pk; false on a missing or bad member. */
static bool import_jwk(const json_t *o, bool rsa, gnutls_pubkey_t pk)
{
    gnutls_datum_t a = {NULL, 0}, b = {NULL, 0};
    bool ok = datum(o, rsa ? "n" : "x", &a) && datum(o, rsa ? "e" : "y", &b);
    if (ok)
        ok = (rsa ? gnutls_pubkey_import_rsa_raw(pk, &a, &b)
                  : gnutls_pubkey_import_ecc_raw(pk, GNUTLS_ECC_CURVE_SECP256R1, &a, &b)) == 0;
    free(a.data);
    free(b.data);
    return ok;
}

/* Whether a JWK is an RS256 or ES256 signing key (else it is skipped), and which. */
static bool usable(const json_t *o, bool *rsa)
{
    const char *kty = member(o, "kty"), *use = member(o, "use"), *alg = member(o, "alg");
    const char *crv = member(o, "crv");
    if (use && strcmp(use, "sig"))
        return false;
    *rsa = kty && !strcmp(kty, "RSA");
    if (*rsa)
        return !alg || !strcmp(alg, "RS256");
    return kty && !strcmp(kty, "EC") && crv && !strcmp(crv, "P-256") &&
           (!alg || !strcmp(alg, "ES256"));
}

/* One usable JWK (the index-th) into k. */
static qg_status load_jwk(const char *path, size_t index, const json_t *o, bool rsa,
                          struct qgh_jwk *k, qg_error *err)
{
    const char *kid = member(o, "kid");
    snprintf(k->kid, sizeof k->kid, "%s", kid ? kid : "");
    gnutls_pubkey_t pk;
    if (gnutls_pubkey_init(&pk) < 0)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading JWT_JWKS_FILE");
    char why[128];
    qg_status s = QG_OK;
    if (!import_jwk(o, rsa, pk))
        s = qg_error_set(err, QG_ERR_CONFIG,
                         "JWT_JWKS_FILE %s: key %zu (kid \"%.64s\"): %s missing or not base64url",
                         path, index, k->kid, rsa ? "n or e" : "x or y");
    else if (!key_kind(pk, &k->kind, why, sizeof why))
        s = qg_error_set(err, QG_ERR_CONFIG, "JWT_JWKS_FILE %s: key %zu (kid \"%.64s\"): %s", path,
                         index, k->kid, why);
    else if (!export_pem(pk, k))
        s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading JWT_JWKS_FILE");
    gnutls_pubkey_deinit(pk);
    return s;
}

static qg_status load_keys(const char *path, const json_t *keys, struct qgh_jwks *set,
                           qg_error *err)
{
    set->keys = calloc(json_array_size(keys) + 1, sizeof *set->keys);
    if (!set->keys)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading JWT_JWKS_FILE");
    size_t i;
    json_t *o;
    json_array_foreach(keys, i, o) {
        bool rsa = false;
        if (!json_is_object(o) || !usable(o, &rsa)) {
            set->skipped++;
            continue;
        }
        struct qgh_jwk *k = &set->keys[set->n];
        qg_status s = load_jwk(path, i, o, rsa, k, err);
        if (s != QG_OK) {
            qgh_jwk_clear(k);
            return s;
        }
        set->n++;
        for (size_t j = 0; j + 1 < set->n; j++)
            if (!strcmp(set->keys[j].kid, k->kid))
                return qg_error_set(err, QG_ERR_CONFIG,
                                    "JWT_JWKS_FILE %s: two keys have the kid \"%.64s\"; give "
                                    "each key its own kid",
                                    path, k->kid);
    }
    if (set->n == 0)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "JWT_JWKS_FILE %s holds no RS256 (RSA) or ES256 (EC P-256) signing key",
                            path);
    return QG_OK;
}

qg_status qgh_jwks_load(const char *path, struct qgh_jwks **out, qg_error *err)
{
    *out = NULL;
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return qg_error_set(err, QG_ERR_CONFIG, "JWT_JWKS_FILE %s: line %d: %s", path, jerr.line,
                            jerr.text);
    json_t *keys = json_object_get(doc, "keys");
    struct qgh_jwks *set = calloc(1, sizeof *set);
    qg_status s = QG_OK;
    if (!set)
        s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading JWT_JWKS_FILE");
    else if (!json_is_array(keys))
        s = qg_error_set(err, QG_ERR_CONFIG,
                         "JWT_JWKS_FILE %s: not a JWKS document ({\"keys\": [...]})", path);
    else
        s = load_keys(path, keys, set, err);
    json_decref(doc);
    if (s != QG_OK) {
        qgh_jwks_free(set);
        return s;
    }
    *out = set;
    return QG_OK;
}
