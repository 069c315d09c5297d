/* API keys: parsed from API_KEYS and API_KEYS_FILE, kept as SHA-256 digests, checked in constant time, reloaded on SIGHUP; JWTs go to jwt_check.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "auth.h"
#include "jwt_check.h"
#include "log.h"
#include "sha256.h"

#define MIN_KEY_LEN 16

struct key {
    unsigned char hash[QGH_SHA256_LEN];
    unsigned scopes;
    char role[QGH_ROLE_MAX + 1];
    char where[64]; /* "API_KEYS entry 2", "line 7": for duplicate messages; never the key */
};

/* Immutable once published; replaced whole on reload. */
struct keytab {
    size_t n;
    struct key *keys;
    bool open; /* no keys on a loopback HOST: local development, everything allowed */
};

struct qgh_auth {
    enum qg_auth_mode mode;
    bool loopback;
    char *file;             /* API_KEYS_FILE or NULL */
    struct keytab inline_keys; /* API_KEYS, parsed once at start (it cannot change) */
    pthread_rwlock_t lock;  /* guards tab: readers check a key, reload swaps it */
    struct keytab *tab;
    qgh_jwt *jwt;           /* NULL: no JWT key configured, bearers are API keys */
};

/* ---- parsing ------------------------------------------------------------- */

/* RFC 6750's b64token: what a Bearer credential may contain. */
static bool is_token(const char *s, size_t n)
{
    size_t i = 0;
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              strchr("-._~+/", c)))
            break;
    }
    if (i == 0)
        return false;
    while (i < n && s[i] == '=')
        i++;
    return i == n;
}

bool qgh_role_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > QGH_ROLE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              strchr("_$.-", c)))
            return false;
    }
    return true;
}

unsigned qgh_scopes_parse(const char *list)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"read", QGH_SCOPE_READ}, {"write", QGH_SCOPE_WRITE}, {"admin", QGH_SCOPE_ADMIN},
                 {"named", QGH_SCOPE_NAMED}};
    const size_t nnames = sizeof names / sizeof names[0];
    unsigned scopes = 0;
    const char *p = list;
    for (;;) {
        size_t n = strcspn(p, ",");
        size_t k = 0;
        while (k < nnames && (strlen(names[k].name) != n || strncmp(names[k].name, p, n)))
            k++;
        if (k == nnames)
            return 0;
        scopes |= names[k].bit;
        if (!p[n])
            return scopes;
        p += n + 1;
    }
}

static bool add_key(struct keytab *t, const struct key *k)
{
    struct key *grown = realloc(t->keys, sizeof *grown * (t->n + 1));
    if (!grown)
        return false;
    t->keys = grown;
    t->keys[t->n++] = *k;
    return true;
}

/*
 * One entry "KEY SCOPES [ROLE]" (comments already cut) into t. Blank: nothing.
 * where names the entry in messages (label, shorter, in later ones); the key
 * itself is never put in one.
 */
static qg_status parse_entry(char *line, const char *where, const char *label, struct keytab *t,
                             qg_error *err)
{
    char *save = NULL;
    char *f[4] = {NULL, NULL, NULL, NULL};
    int n = 0;
    for (char *tok = strtok_r(line, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save))
        if (n < 4)
            f[n++] = tok;
        else
            n++;
    if (n == 0)
        return QG_OK;
    if (n < 2 || n > 3)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "%s: expected KEY SCOPES [ROLE], found %d field%s", where, n,
                            n == 1 ? "" : "s");
    size_t klen = strlen(f[0]);
    if (!is_token(f[0], klen) || klen < MIN_KEY_LEN)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "%s: the key must be at least %d characters of A-Z a-z 0-9 - . _ ~ "
                            "+ / (e.g. from: openssl rand -hex 32)",
                            where, MIN_KEY_LEN);
    struct key k;
    memset(&k, 0, sizeof k);
    k.scopes = qgh_scopes_parse(f[1]);
    /* NOTE: the scopes are not quoted: "KEY1 read,KEY2 admin" puts a key in them. */
    if (!k.scopes)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "%s: the scopes (second field) are not a comma list of read, write, "
                            "admin, named; separate entries with ';' (API_KEYS) or newlines "
                            "(the file)",
                            where);
    if (f[2] && !qgh_role_valid(f[2]))
        return qg_error_set(err, QG_ERR_CONFIG,
                            "%s: the role must be 1 to %d characters of A-Z a-z 0-9 _ $ . -",
                            where, QGH_ROLE_MAX);
    if (f[2])
        snprintf(k.role, sizeof k.role, "%s", f[2]);
    snprintf(k.where, sizeof k.where, "%s", label);
    qgh_sha256(f[0], klen, k.hash);
    explicit_bzero(f[0], klen);
    for (size_t i = 0; i < t->n; i++)
        if (!memcmp(t->keys[i].hash, k.hash, sizeof k.hash))
            return qg_error_set(err, QG_ERR_CONFIG, "%s: the same key as %s; give each key once",
                                where, t->keys[i].where);
    if (!add_key(t, &k))
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading API keys");
    return QG_OK;
}

/* Cuts a '#' comment: keys cannot contain '#'. */
static void cut_comment(char *s)
{
    char *hash = strchr(s, '#');
    if (hash)
        *hash = '\0';
}

/* API_KEYS: the same entries separated by ';'. */
static qg_status parse_inline(const char *keys, struct keytab *t, qg_error *err)
{
    char *copy = strdup(keys);
    if (!copy)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading API keys");
    qg_status s = QG_OK;
    char *p = copy;
    for (int entry = 1; s == QG_OK && p; entry++) {
        char *end = strchr(p, ';');
        if (end)
            *end = '\0';
        cut_comment(p);
        char where[64];
        snprintf(where, sizeof where, "API_KEYS entry %d", entry);
        s = parse_entry(p, where, where, t, err);
        p = end ? end + 1 : NULL;
    }
    explicit_bzero(copy, strlen(keys));
    free(copy);
    return s;
}

/* A key file others can read is worth a warning, not a refusal (containers often run as root). */
static void warn_mode(FILE *f, const char *path)
{
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        qgh_log(QG_LOG_WARN, "API_KEYS_FILE %s can be read by other users (mode %03o); "
                "chmod 600 it", path, (unsigned)(st.st_mode & 0777));
}

static qg_status parse_file(const char *path, struct keytab *t, qg_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return qg_error_set(err, QG_ERR_CONFIG, "API_KEYS_FILE %s: cannot open it (%s)", path,
                            strerror(errno));
    warn_mode(f, path);
    char *line = NULL;
    size_t cap = 0;
    qg_status s = QG_OK;
    for (int no = 1; s == QG_OK && getline(&line, &cap, f) >= 0; no++) {
        cut_comment(line);
        char where[320], label[32];
        snprintf(where, sizeof where, "API_KEYS_FILE %.256s line %d", path, no);
        snprintf(label, sizeof label, "line %d", no);
        s = parse_entry(line, where, label, t, err);
    }
    if (s == QG_OK && ferror(f))
        s = qg_error_set(err, QG_ERR_CONFIG, "API_KEYS_FILE %s: cannot read it (%s)", path,
                         strerror(errno));
    if (line)
        explicit_bzero(line, cap);
    free(line);
    fclose(f);
    return s;
}

static void keytab_free(struct keytab *t)
{
    if (!t)
        return;
    if (t->keys)
        explicit_bzero(t->keys, sizeof *t->keys * t->n);
    free(t->keys);
    free(t);
}

/* Index of the key whose digest equals h, or n: every key compared, every byte, no early exit. */
static size_t find_key(const struct keytab *t, const unsigned char h[QGH_SHA256_LEN])
{
    size_t found = t->n;
    for (size_t i = 0; i < t->n; i++) {
        unsigned diff = 0;
        for (size_t b = 0; b < QGH_SHA256_LEN; b++)
            diff |= (unsigned)(t->keys[i].hash[b] ^ h[b]);
        /* 1 when diff is 0, else 0, without a branch; then a masked select. */
        size_t eq = (size_t)(1u & ((diff - 1u) >> 8));
        size_t mask = (size_t)0 - eq;
        found = (found & ~mask) | (i & mask);
    }
    return found;
}

/* "KEY1 read KEY2" (a ';' left out) makes a key a role name, which
   error messages and the log show. */
static qg_status check_roles(const struct keytab *t, const char *file, qg_error *err)
{
    for (size_t i = 0; i < t->n; i++) {
        if (!t->keys[i].role[0])
            continue;
        unsigned char h[QGH_SHA256_LEN];
        qgh_sha256(t->keys[i].role, strlen(t->keys[i].role), h);
        size_t j = find_key(t, h);
        explicit_bzero(h, sizeof h);
        bool in_file = !strncmp(t->keys[i].where, "line", 4);
        if (j < t->n)
            return qg_error_set(err, QG_ERR_CONFIG,
                                "%s%.256s%s%s: its role (third field) is the key of %s; separate "
                                "entries with ';' (API_KEYS) or newlines (the file)",
                                in_file ? "API_KEYS_FILE " : "", in_file ? file : "",
                                in_file ? " " : "", t->keys[i].where, t->keys[j].where);
    }
    return QG_OK;
}

/* API_KEYS's entries plus the file's, as a new table. */
static qg_status build(const qgh_auth *a, bool was_open, struct keytab **out, qg_error *err)
{
    *out = NULL;
    struct keytab *t = calloc(1, sizeof *t);
    if (!t)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading API keys");
    qg_status s = QG_OK;
    for (size_t i = 0; s == QG_OK && i < a->inline_keys.n; i++)
        if (!add_key(t, &a->inline_keys.keys[i]))
            s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading API keys");
    if (s == QG_OK && a->file)
        s = parse_file(a->file, t, err);
    if (s == QG_OK)
        s = check_roles(t, a->file, err);
    if (s != QG_OK) {
        keytab_free(t);
        return s;
    }
    /* NOTE: open only ever continues: removing every key later revokes, it never opens. */
    t->open = t->n == 0 && a->loopback && was_open && !a->jwt;
    *out = t;
    return QG_OK;
}

/* ---- lifecycle ----------------------------------------------------------- */

bool qgh_host_is_loopback(const char *host)
{
    if (!host || !*host)
        return false;
    char h[64];
    size_t n = strlen(host);
    if (n >= sizeof h)
        return false;
    memcpy(h, host, n + 1);
    if (n > 2 && h[0] == '[' && h[n - 1] == ']') {
        memmove(h, h + 1, n - 2);
        h[n - 2] = '\0';
    }
    if (!strcasecmp(h, "localhost"))
        return true;
    unsigned char a4[4], a6[16];
    if (inet_pton(AF_INET, h, a4) == 1)
        return a4[0] == 127;
    if (inet_pton(AF_INET6, h, a6) != 1)
        return false;
    static const unsigned char one[16] = {[15] = 1};
    static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
    return !memcmp(a6, one, 16) || (!memcmp(a6, mapped, 12) && a6[12] == 127);
}

static qg_status secure_default(const struct qg_config *cfg, qg_error *err)
{
    return qg_error_set(err, QG_ERR_CONFIG,
                        "HOST=%s is not a loopback address and no API keys are configured: "
                        "add keys with API_KEYS=\"KEY SCOPES [ROLE];...\" or API_KEYS_FILE=<file> "
                        "(one \"KEY SCOPES [ROLE]\" a line, scopes read,write,admin), or set "
                        "AUTH=none to serve without authentication",
                        cfg->host && *cfg->host ? cfg->host : "0.0.0.0");
}

qg_status qgh_auth_new(const struct qg_config *cfg, qgh_auth **out, qg_error *err)
{
    *out = NULL;
    qgh_auth *a = calloc(1, sizeof *a);
    if (!a)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading API keys");
    a->mode = cfg->auth;
    a->loopback = qgh_host_is_loopback(cfg->host);
    pthread_rwlock_init(&a->lock, NULL);
    qg_status s = QG_OK;
    if (cfg->api_keys_file && *cfg->api_keys_file && !(a->file = strdup(cfg->api_keys_file)))
        s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading API keys");
    if (s == QG_OK && cfg->api_keys)
        s = parse_inline(cfg->api_keys, &a->inline_keys, err);
    if (s == QG_OK && a->mode == QG_AUTH_KEYS)
        s = qgh_jwt_new(cfg, &a->jwt, err);
    if (s == QG_OK)
        s = build(a, true, &a->tab, err);
    if (s == QG_OK && a->mode == QG_AUTH_KEYS && a->tab->n == 0 && !a->jwt && !a->loopback)
        s = secure_default(cfg, err);
    if (s != QG_OK) {
        qgh_auth_free(a);
        return s;
    }
    *out = a;
    return QG_OK;
}

void qgh_auth_free(qgh_auth *a)
{
    if (!a)
        return;
    keytab_free(a->tab);
    qgh_jwt_free(a->jwt);
    if (a->inline_keys.keys)
        explicit_bzero(a->inline_keys.keys, sizeof *a->inline_keys.keys * a->inline_keys.n);
    free(a->inline_keys.keys);
    free(a->file);
    pthread_rwlock_destroy(&a->lock);
    free(a);
}

qg_status qgh_auth_reload(qgh_auth *a, size_t *nkeys, qg_error *err)
{
    pthread_rwlock_rdlock(&a->lock);
    bool was_open = a->tab->open;
    pthread_rwlock_unlock(&a->lock);
    struct keytab *t;
    qg_status s = build(a, was_open, &t, err);
    if (s != QG_OK)
        return s;
    /* Requests already past their check keep what it decided; new ones see t. */
    pthread_rwlock_wrlock(&a->lock);
    struct keytab *old = a->tab;
    a->tab = t;
    pthread_rwlock_unlock(&a->lock);
    keytab_free(old);
    if (nkeys)
        *nkeys = t->n;
    return QG_OK;
}

qg_status qgh_auth_reload_jwks(qgh_auth *a, size_t *nkeys, qg_error *err)
{
    return qgh_jwt_reload(a->jwt, nkeys, err);
}

enum qg_log_level qgh_auth_describe(qgh_auth *a, char *out, size_t size)
{
    pthread_rwlock_rdlock(&a->lock);
    size_t n = a->tab->n;
    bool open = a->tab->open;
    pthread_rwlock_unlock(&a->lock);
    if (a->mode == QG_AUTH_NONE) {
        snprintf(out, size, "WARNING: AUTH=none: no authentication; anyone who can reach this "
                            "port can run SQL as the service's database user");
        return QG_LOG_WARN;
    }
    if (open) {
        snprintf(out, size, "notice: no API keys configured; requests are accepted without a key "
                            "because HOST is a loopback address (local development); set API_KEYS "
                            "or API_KEYS_FILE to require keys");
        return QG_LOG_INFO;
    }
    char jwt[700] = "";
    if (a->jwt) {
        jwt[0] = ' ';
        qgh_jwt_describe(a->jwt, jwt + 1, sizeof jwt - 1);
    }
    if (a->jwt && n == 0 && !a->file) {
        snprintf(out, size, "no API keys; every endpoint but /health/live and /health/ready "
                            "needs a token.%s", jwt);
        return QG_LOG_INFO;
    }
    snprintf(out, size, "API keys: %zu loaded (%s%s%s%s); every endpoint but /health/live "
                        "and /health/ready needs one%s; SIGHUP reloads the file.%s",
             n, a->inline_keys.n ? "API_KEYS" : "", a->inline_keys.n && a->file ? ", " : "",
             a->file ? "API_KEYS_FILE " : "", a->file ? a->file : "", a->jwt ? " or a token" : "",
             jwt);
    return QG_LOG_INFO;
}

/* ---- checking ------------------------------------------------------------ */

/* The Bearer token of an Authorization value, or why there is none. */
static enum qgh_auth_result bearer_token(const char *v, const char **tok, size_t *len)
{
    if (!v)
        return QGH_AUTH_MISSING;
    v += strspn(v, " \t");
    if (strncasecmp(v, "Bearer", 6) || (v[6] && v[6] != ' ' && v[6] != '\t'))
        return QGH_AUTH_MISSING; /* another scheme: no Bearer credentials */
    v += 6;
    v += strspn(v, " \t");
    size_t n = qg_trim_end(v, strlen(v), " \t");
    if (!is_token(v, n))
        return QGH_AUTH_MALFORMED;
    *tok = v;
    *len = n;
    return QGH_AUTH_OK;
}

void qgh_principal_clear(struct qgh_principal *who)
{
    free(who->claims);
    memset(who, 0, sizeof *who);
}

static enum qgh_auth_result check_jwt(qgh_auth *a, const char *tok, size_t len,
                                      struct qgh_principal *who)
{
    switch (qgh_jwt_check(a->jwt, tok, len, who)) {
    case QGH_JWT_OK:
        return QGH_AUTH_OK;
    case QGH_JWT_FORBIDDEN:
        return QGH_AUTH_FORBIDDEN;
    case QGH_JWT_INVALID:
        break;
    }
    return QGH_AUTH_INVALID;
}

enum qgh_auth_result qgh_auth_check(qgh_auth *a, const char *authorization,
                                    struct qgh_principal *who)
{
    memset(who, 0, sizeof *who);
    if (a == NULL || a->mode == QG_AUTH_NONE) {
        who->scopes = QGH_SCOPE_ALL;
        return QGH_AUTH_OK;
    }
    const char *tok = NULL;
    size_t len = 0;
    enum qgh_auth_result r = bearer_token(authorization, &tok, &len);
    if (r == QGH_AUTH_OK && a->jwt && qgh_jwt_shaped(tok, len))
        return check_jwt(a, tok, len, who);
    unsigned char h[QGH_SHA256_LEN];
    if (r == QGH_AUTH_OK)
        qgh_sha256(tok, len, h);
    pthread_rwlock_rdlock(&a->lock);
    const struct keytab *t = a->tab;
    if (t->open) {
        who->scopes = QGH_SCOPE_ALL;
        r = QGH_AUTH_OK;
    } else if (r == QGH_AUTH_OK) {
        size_t i = find_key(t, h);
        if (i < t->n) {
            who->scopes = t->keys[i].scopes;
            memcpy(who->role, t->keys[i].role, sizeof who->role);
            memcpy(&who->caller, t->keys[i].hash, sizeof who->caller);
        } else {
            r = QGH_AUTH_INVALID;
        }
    }
    pthread_rwlock_unlock(&a->lock);
    explicit_bzero(h, sizeof h);
    return r;
}
