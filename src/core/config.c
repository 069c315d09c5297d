/* Configuration: one table row per variable, parsed from defaults, then the environment. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core_private.h"

/* Enum fields are written through an int*; that is only sound if they are int-sized. */
_Static_assert(sizeof(enum qg_pooler_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum qg_log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum qg_log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum qg_auth_mode) == sizeof(int), "enum size");

enum cf_type {
    CF_INT,    /* int, whole number */
    CF_LONG,   /* long, whole number */
    CF_SIZE,   /* long, bytes: whole number with an optional K/M/G/T (powers of 1024) */
    CF_DOUBLE, /* double, finite decimal */
    CF_BOOL,   /* bool: 1/0, true/false, yes/no, on/off */
    CF_ENUM,   /* int-sized enum: index into names */
    CF_STRING  /* char *, NULL when unset; names (if any) restrict the values */
};

enum cf_secret {
    CF_PLAIN,    /* shown as is */
    CF_CONNINFO, /* holds a password: shown through qgp_redact_conninfo */
    CF_URL_LIST, /* URIs separated by commas (qgp_url_list), each shown redacted */
    CF_SECRET    /* never shown: "***" when set */
};

struct cf_row {
    const char *name;
    const char *alias;  /* a second name, used when name is unset */
    enum cf_type type;
    size_t offset;
    const char *def;    /* parsed like an environment value; NULL = unset */
    double min, max;    /* numbers only; every bound is a whole number < 2^53 */
    const char *const *names;
    enum cf_secret secret;
    const char *unit;
    const char *help;
};

static const char *const pooler_names[] = {"auto", "on", "off", NULL};
static const char *const sslmode_names[] = {"disable", "allow", "prefer", "require",
                                            "verify-ca", "verify-full", NULL};
static const char *const auth_names[] = {"keys", "none", NULL};
static const char *const read_fallback_names[] = {"primary", "none", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
static const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};

#define F(field) offsetof(struct qg_config, field)
#define NUM(name, type, field, def, min, max, unit, help) \
    {name, NULL, type, F(field), def, min, max, NULL, CF_PLAIN, unit, help}
#define CHOICE(name, type, field, def, names, help) \
    {name, NULL, type, F(field), def, 0, 0, names, CF_PLAIN, NULL, help}
#define STR(name, field, def, secret, help) \
    {name, NULL, CF_STRING, F(field), def, 0, 0, NULL, secret, NULL, help}

static const struct cf_row rows[] = {
    STR("DATABASE_URL", database_url, NULL, CF_CONNINFO,
        "postgresql:// or postgres:// URI, or libpq key=value string (unset: libpq's PG* defaults)"),
    NUM("DB_POOL_SIZE", CF_INT, pool_size, "5", 1, 1000, "connections",
        "connections kept open"),
    NUM("DB_MAX_OVERFLOW", CF_INT, max_overflow, "10", 0, 1000, "connections",
        "extra connections opened under load, closed when idle"),
    NUM("DB_POOL_TIMEOUT", CF_DOUBLE, pool_timeout_s, "30", 0, 3600, "seconds",
        "wait this long for a free connection (then pool_timeout), a write also for a primary (then db_unavailable)"),
    NUM("DB_POOL_RECYCLE", CF_DOUBLE, pool_recycle_s, "180", -1, 604800, "seconds",
        "replace connections older than this; -1 never"),
    NUM("DB_OVERFLOW_IDLE", CF_DOUBLE, overflow_idle_s, "5", 0, 3600, "seconds",
        "close a connection beyond DB_POOL_SIZE once it sat idle this long"),
    NUM("DB_PREPING_IDLE", CF_DOUBLE, preping_idle_s, "10", 0, 3600, "seconds",
        "ping a connection idle this long before use; 0 ping every time"),
    NUM("DB_RETRIES", CF_INT, retries, "2", 0, 20, "retries",
        "retries of a connection failure, serialization failure or deadlock"),
    NUM("DB_RETRY_DELAY", CF_DOUBLE, retry_delay_s, "0.2", 0, 60, "seconds",
        "first retry delay, doubled each retry"),
    NUM("DB_CONNECT_TIMEOUT", CF_DOUBLE, connect_timeout_s, "10", 1, 300, "seconds",
        "give up connecting after this long"),
    CHOICE("DB_POOLER_MODE", CF_ENUM, pooler, "auto", pooler_names,
           "behind PgBouncer: auto detects it, on assumes it, off never"),
    CHOICE("DB_PREPARED_STATEMENTS", CF_BOOL, prepared_statements, "true", NULL,
           "prepare repeated statements per connection (off in pooler mode)"),
    CHOICE("PGSSLMODE", CF_STRING, sslmode, NULL, sslmode_names,
           "libpq sslmode; unset: the URL's, else require for a remote host"),
    NUM("PG_KEEPALIVES_IDLE", CF_INT, keepalives_idle, "30", 1, 86400, "seconds",
        "TCP keepalive: idle time before the first probe"),
    NUM("PG_KEEPALIVES_INTERVAL", CF_INT, keepalives_interval, "10", 1, 86400, "seconds",
        "TCP keepalive: time between probes"),
    NUM("PG_KEEPALIVES_COUNT", CF_INT, keepalives_count, "3", 1, 100, "probes",
        "TCP keepalive: lost probes before the connection is dead"),
    NUM("PG_STATEMENT_TIMEOUT", CF_INT, statement_timeout_ms, "30000", 0, 86400000, "ms",
        "server cancels a statement after this long; 0 none"),
    NUM("PG_IDLE_TX_TIMEOUT", CF_INT, idle_tx_timeout_ms, "60000", 0, INT_MAX, "ms",
        "server ends a transaction idle this long; 0 none"),
    {"DB_ECHO", "SQLALCHEMY_ECHO", CF_BOOL, F(echo), "false", 0, 0, NULL, CF_PLAIN, NULL,
     "log every statement (alias SQLALCHEMY_ECHO; DB_ECHO wins)"},
    STR("DATABASE_READ_URLS", read_urls, NULL, CF_URL_LIST,
        "read replicas: postgresql:// URIs separated by commas; reads run there"),
    NUM("DB_READ_POOL_SIZE", CF_INT, read_pool_size, "0", 0, 1000, "connections",
        "connections kept open per replica; 0: DB_POOL_SIZE"),
    NUM("DB_REPLICA_MAX_LAG_MS", CF_INT, replica_max_lag_ms, "5000", 0, 86400000, "ms",
        "a replica replaying further behind than this is set aside"),
    CHOICE("DB_READ_FALLBACK", CF_ENUM, read_fallback, "primary", read_fallback_names,
           "no usable replica: reads go to the primary, or (none) answer 503"),
    NUM("DB_READ_WAIT_MS", CF_INT, read_wait_ms, "200", 0, 60000, "ms",
        "a read with X-Querygate-Min-LSN waits this long for a replica, then the primary"),
    NUM("MAX_RESULT_ROWS", CF_LONG, max_result_rows, "100000", 1, 1e9, "rows",
        "larger results answer result_too_large"),
    NUM("MAX_RESULT_BYTES", CF_SIZE, max_result_bytes, "67108864", 1024, 1099511627776.0,
        "bytes; K, M, G, T suffixes are powers of 1024",
        "larger results answer result_too_large"),
    CHOICE("NUMBERS_AS_STRINGS", CF_BOOL, numbers_as_strings, "false", NULL,
           "default of the request's numbers_as_strings flag"),
    NUM("HEALTH_CACHE_MS", CF_INT, health_cache_ms, "1000", 0, 60000, "ms",
        "/health/ready answers from a check this recent"),
    STR("HOST", host, "127.0.0.1", CF_PLAIN, "address to listen on"),
    NUM("PORT", CF_INT, port, "8080", 0, 65535, NULL, "port to listen on; 0 any free port"),
    NUM("HTTP_THREADS", CF_INT, http_threads, "0", 0, 1024, "threads",
        "event-loop threads serving HTTP; 0: one per online CPU"),
    NUM("HTTP_MAX_BODY", CF_SIZE, http_max_body, "1048576", 1024, 1073741824.0,
        "bytes; K, M, G suffixes are powers of 1024", "larger request bodies answer 413"),
    NUM("HTTP_MAX_CONNECTIONS", CF_INT, http_max_connections, "1024", 1, 65536, "connections",
        "concurrent client connections; more are closed at once"),
    NUM("HTTP_IDLE_TIMEOUT", CF_INT, http_idle_timeout_s, "30", 1, 3600, "seconds",
        "close a client connection idle, or still sending its request, this long"),
    NUM("SHUTDOWN_TIMEOUT", CF_DOUBLE, shutdown_timeout_s, "30", 0, 3600, "seconds",
        "on SIGTERM, let running requests finish this long"),
    NUM("SHUTDOWN_DELAY", CF_DOUBLE, shutdown_delay_s, "0", 0, 3600, "seconds",
        "on SIGTERM, first answer /health/ready 503 and serve the rest this long"),
    CHOICE("AUTH", CF_ENUM, auth, "keys", auth_names,
           "keys: require an API key; none: no authentication"),
    STR("API_KEYS", api_keys, NULL, CF_SECRET, "\"KEY SCOPES [ROLE];...\" (secret)"),
    STR("API_KEYS_FILE", api_keys_file, NULL, CF_PLAIN, "file with API_KEYS entries, one a line"),
    STR("JWT_SECRET", jwt_secret, NULL, CF_SECRET,
        "accept HS256/384/512 tokens signed with it; at least 32 bytes (secret)"),
    STR("JWT_PUBLIC_KEY_FILE", jwt_public_key_file, NULL, CF_PLAIN,
        "PEM public key: accept RS256 (RSA) or ES256 (P-256) tokens"),
    STR("JWT_JWKS_FILE", jwt_jwks_file, NULL, CF_PLAIN,
        "JWKS file: accept RS256/ES256 tokens, key picked by kid; SIGHUP re-reads it"),
    STR("JWT_AUDIENCE", jwt_audience, NULL, CF_PLAIN, "a token's aud must name it, when set"),
    NUM("JWT_LEEWAY_S", CF_INT, jwt_leeway_s, "30", 0, 3600, "seconds",
        "clock skew allowed when checking exp and nbf"),
    STR("JWT_ROLE_CLAIM", jwt_role_claim, "role", CF_PLAIN,
        "claim naming the database role; a dotted path reaches into objects"),
    STR("JWT_DEFAULT_ROLE", jwt_default_role, NULL, CF_PLAIN,
        "role of a token without the role claim; unset: such tokens get 403"),
    STR("JWT_DEFAULT_SCOPES", jwt_default_scopes, "read,write", CF_PLAIN,
        "scopes of a token without a scope claim (comma list)"),
    STR("TLS_CERT_FILE", tls_cert_file, NULL, CF_PLAIN, "PEM certificate: serve HTTPS (with TLS_KEY_FILE)"),
    STR("TLS_KEY_FILE", tls_key_file, NULL, CF_PLAIN, "PEM private key for TLS_CERT_FILE"),
    STR("CORS_ALLOW_ORIGINS", cors_allow_origins, NULL, CF_PLAIN,
        "comma list of origins, or *; unset: no CORS headers"),
    STR("CORS_ALLOW_HEADERS", cors_allow_headers, NULL, CF_PLAIN,
        "comma list of request headers a browser may send; unset: " QG_CORS_ALLOW_HEADERS_DEFAULT),
    STR("QUERIES_DIR", queries_dir, NULL, CF_PLAIN,
        "folder of NAME.sql named queries, run by POST /queries/NAME; SIGHUP re-reads it"),
    CHOICE("ALLOW_RAW_SQL", CF_BOOL, allow_raw_sql, "true", NULL,
           "false: /query, /update, /insert, /transaction only for admin keys"),
    CHOICE("LOG_FORMAT", CF_ENUM, log_format, "text", log_format_names, "log line format"),
    CHOICE("LOG_LEVEL", CF_ENUM, log_level, "info", log_level_names, "least severe level logged"),
};

#define NROWS (sizeof rows / sizeof rows[0])

union cf_val {
    int i;
    long l;
    double d;
    bool b;
    char *s;
};

/* The value as it may appear in a message: short, no control characters. */
static void shown_value(char *dst, size_t size, const char *v)
{
    size_t n = 0, max = size - 4;
    for (; v[n] && n < max && n < 60; n++)
        dst[n] = isprint((unsigned char)v[n]) ? v[n] : '?';
    if (v[n] && n + 3 < size) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }
    dst[n] = '\0';
}

/* "NAME="value"" for plain variables, "NAME (value not shown)" for secret ones. */
static void named(char *dst, size_t size, const struct cf_row *r, const char *name,
                  const char *v)
{
    char shown[72];
    if (r->secret != CF_PLAIN) {
        snprintf(dst, size, "%s (value not shown)", name);
        return;
    }
    shown_value(shown, sizeof shown, v);
    snprintf(dst, size, "%s=\"%s\"", name, shown);
}

static qg_status bad_number(const struct cf_row *r, const char *name, const char *v,
                            bool parsed, qg_error *err)
{
    char who[128];
    named(who, sizeof who, r, name, v);
    const char *unit = r->unit ? r->unit : "";
    const char *lp = r->unit ? " (" : "", *rp = r->unit ? ")" : "";
    if (parsed)
        return qg_error_set(err, QG_ERR_CONFIG, "%s is out of range; use %.15g to %.15g%s%s%s",
                            who, r->min, r->max, lp, unit, rp);
    return qg_error_set(err, QG_ERR_CONFIG, "%s is not a %s; use a value from %.15g to %.15g%s%s%s",
                        who, r->type == CF_DOUBLE ? "number" : "whole number", r->min, r->max,
                        lp, unit, rp);
}

/* K/M/G/T (optionally followed by "iB") as a power of 1024; 1 for "", 0 for junk. */
static long long size_multiplier(const char *s)
{
    static const char units[] = "KMGT";
    if (!*s)
        return 1;
    const char *u = strchr(units, toupper((unsigned char)*s));
    if (!u || (s[1] && strcasecmp(s + 1, "iB") != 0))
        return 0;
    return 1LL << (10 * (u - units + 1));
}

static qg_status parse_whole(const struct cf_row *r, const char *name, const char *v,
                             union cf_val *out, qg_error *err)
{
    char *end;
    if (!isdigit((unsigned char)v[0]) && !((v[0] == '-' || v[0] == '+') && isdigit((unsigned char)v[1])))
        return bad_number(r, name, v, false, err);
    errno = 0;
    long long n = strtoll(v, &end, 10);
    bool overflow = errno == ERANGE;
    long long mult = r->type == CF_SIZE ? size_multiplier(end) : (*end ? 0 : 1);
    if (!mult)
        return bad_number(r, name, v, false, err);
    if (overflow || n > LLONG_MAX / mult || n < LLONG_MIN / mult)
        return bad_number(r, name, v, true, err);
    n *= mult;
    if ((double)n < r->min || (double)n > r->max || n > LONG_MAX ||
        (r->type == CF_INT && n > INT_MAX))
        return bad_number(r, name, v, true, err);
    if (r->type == CF_INT)
        out->i = (int)n;
    else
        out->l = (long)n;
    return QG_OK;
}

static qg_status parse_double(const struct cf_row *r, const char *name, const char *v,
                              union cf_val *out, qg_error *err)
{
    char *end;
    /* Only plain decimals: strtod would also take "nan", "inf" and hex floats. */
    if (!*v || strspn(v, "0123456789+-.eE") != strlen(v))
        return bad_number(r, name, v, false, err);
    errno = 0;
    double d = strtod(v, &end);
    if (*end || end == v)
        return bad_number(r, name, v, false, err);
    if (errno == ERANGE || !isfinite(d) || d < r->min || d > r->max)
        return bad_number(r, name, v, true, err);
    out->d = d;
    return QG_OK;
}

static qg_status parse_bool(const struct cf_row *r, const char *name, const char *v,
                            union cf_val *out, qg_error *err)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i]) || !strcasecmp(v, no[i])) {
            out->b = !strcasecmp(v, yes[i]);
            return QG_OK;
        }
    }
    char who[128];
    named(who, sizeof who, r, name, v);
    return qg_error_set(err, QG_ERR_CONFIG,
                        "%s is not a boolean; use true or false (1/0, yes/no, on/off also work)", who);
}

/* Enums and restricted strings: the index of v in r->names, case-insensitive. */
static qg_status parse_choice(const struct cf_row *r, const char *name, const char *v,
                              int *index, qg_error *err)
{
    char who[128], list[160] = "";
    for (int i = 0; r->names[i]; i++) {
        if (!strcasecmp(v, r->names[i])) {
            *index = i;
            return QG_OK;
        }
    }
    for (int i = 0; r->names[i]; i++) {
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", r->names[i]);
    }
    named(who, sizeof who, r, name, v);
    return qg_error_set(err, QG_ERR_CONFIG, "%s is not a valid choice; use one of: %s", who, list);
}

/* Parses v (NULL or "" = unset) for row r into *out; strings are new copies. */
static qg_status parse_value(const struct cf_row *r, const char *name, const char *v,
                             union cf_val *out, qg_error *err)
{
    memset(out, 0, sizeof *out);
    if (!v || !*v)
        v = r->def;
    if (!v) /* unset without a default: only strings have none */
        return QG_OK;
    int idx = 0;
    switch (r->type) {
    case CF_INT:
    case CF_LONG:
    case CF_SIZE:
        return parse_whole(r, name, v, out, err);
    case CF_DOUBLE:
        return parse_double(r, name, v, out, err);
    case CF_BOOL:
        return parse_bool(r, name, v, out, err);
    case CF_ENUM:
        if (parse_choice(r, name, v, &idx, err) != QG_OK)
            return QG_ERR_CONFIG;
        out->i = idx;
        return QG_OK;
    case CF_STRING:
        if (r->names && parse_choice(r, name, v, &idx, err) != QG_OK)
            return QG_ERR_CONFIG;
        out->s = strdup(r->names ? r->names[idx] : v);
        return out->s ? QG_OK : qg_error_set(err, QG_ERR_INTERNAL, "out of memory reading %s", name);
    }
    return qg_error_set(err, QG_ERR_INTERNAL, "%s has an unknown type", name);
}

/* Stores v into cfg's field for r; a string's old value is freed. */
static void store(struct qg_config *cfg, const struct cf_row *r, union cf_val v)
{
    void *p = (char *)cfg + r->offset;
    switch (r->type) {
    case CF_INT:
    case CF_ENUM: *(int *)p = v.i; break;
    case CF_LONG:
    case CF_SIZE: *(long *)p = v.l; break;
    case CF_DOUBLE: *(double *)p = v.d; break;
    case CF_BOOL: *(bool *)p = v.b; break;
    case CF_STRING:
        free(*(char **)p);
        *(char **)p = v.s;
        break;
    }
}

/* DATABASE_URL is checked by building the connection parameters it will become. */
static qg_status check_database_url(const struct qg_config *cfg, qg_error *err)
{
    qgp_conninfo *ci = NULL;
    if (!cfg->database_url)
        return QG_OK;
    qg_status s = qgp_conninfo_new(cfg, false, &ci, err);
    qgp_conninfo_free(ci);
    return s;
}

/* Each replica's URI is checked the same way. */
static qg_status check_read_urls(const struct qg_config *cfg, const char *list, qg_error *err)
{
    char **urls;
    int n;
    if (!list)
        return QG_OK;
    qg_status s = qgp_url_list(list, &urls, &n, err);
    for (int i = 0; s == QG_OK && i < n; i++) {
        struct qg_config one = *cfg;
        one.database_url = urls[i];
        s = check_database_url(&one, err);
        if (s != QG_OK) {
            char why[sizeof err->message];
            snprintf(why, sizeof why, "%s", err->message);
            qg_error_clear(err);
            qg_error_set(err, s, "DATABASE_READ_URLS, replica %d: %s", i + 1, why);
        }
    }
    if (s == QG_OK && n == 0)
        s = qg_error_set(err, QG_ERR_CONFIG,
                         "DATABASE_READ_URLS is set but lists no URI; unset it or list one "
                         "postgresql:// URI per replica");
    qgp_url_list_free(urls, n);
    return s;
}

qg_status qg_config_check(const struct qg_config *cfg, qg_error *err)
{
    if (!cfg)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "qg_config_check: cfg is NULL");
    if (!cfg->tls_cert_file != !cfg->tls_key_file)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "%s is set but %s is not; set both to serve HTTPS, or neither",
                            cfg->tls_cert_file ? "TLS_CERT_FILE" : "TLS_KEY_FILE",
                            cfg->tls_cert_file ? "TLS_KEY_FILE" : "TLS_CERT_FILE");
    /* NOTE: RFC 7518 3.2: an HMAC key at least as long as the hash; shorter ones can be guessed. */
    if (cfg->jwt_secret && strlen(cfg->jwt_secret) < 32)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "JWT_SECRET (value not shown) is shorter than 32 bytes; use a longer "
                            "secret (e.g. from: openssl rand -base64 32)");
    qg_status s = check_read_urls(cfg, cfg->read_urls, err);
    return s == QG_OK ? check_database_url(cfg, err) : s;
}

/* The value of name in envp ("NAME=value" entries), first match, or NULL. */
static const char *env_lookup(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (; envp && *envp; envp++)
        if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
            return *envp + n + 1;
    return NULL;
}

static qg_status load_rows(struct qg_config *cfg, char *const *envp, qg_error *err)
{
    union cf_val v;
    for (size_t i = 0; i < NROWS; i++) {
        /* Defaults are parsed by the same code, so a bad default is a bug found at once. */
        if (parse_value(&rows[i], rows[i].name, NULL, &v, err) != QG_OK)
            return QG_ERR_INTERNAL;
        store(cfg, &rows[i], v);
    }
    for (size_t i = 0; i < NROWS; i++) {
        const struct cf_row *r = &rows[i];
        const char *name = r->name, *val = env_lookup(envp, name);
        if ((!val || !*val) && r->alias) {
            name = r->alias;
            val = env_lookup(envp, name);
        }
        if (!val || !*val)
            continue;
        if (parse_value(r, name, val, &v, err) != QG_OK)
            return QG_ERR_CONFIG;
        store(cfg, r, v);
    }
    return QG_OK;
}

qg_status qg_config_load(struct qg_config *cfg, char *const *envp, qg_error *err)
{
    if (!cfg)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "qg_config_load: cfg is NULL");
    memset(cfg, 0, sizeof *cfg);
    qg_status s = load_rows(cfg, envp, err);
    if (s == QG_OK)
        s = qg_config_check(cfg, err);
    if (s != QG_OK) {
        qg_config_free(cfg);
        return s;
    }
    return QG_OK;
}

static const struct cf_row *find_row(const char *name)
{
    for (size_t i = 0; i < NROWS; i++)
        if (!strcasecmp(name, rows[i].name) || (rows[i].alias && !strcasecmp(name, rows[i].alias)))
            return &rows[i];
    return NULL;
}

qg_status qg_config_set(struct qg_config *cfg, const char *name, const char *value,
                        qg_error *err)
{
    if (!cfg || !name)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "qg_config_set: cfg and name are required");
    const struct cf_row *r = find_row(name);
    if (!r)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "unknown setting \"%.64s\"; see --help for the list", name);
    union cf_val v;
    if (parse_value(r, r->name, value, &v, err) != QG_OK)
        return QG_ERR_CONFIG;
    if (r->secret == CF_CONNINFO) {
        struct qg_config tmp = *cfg;
        tmp.database_url = v.s;
        qg_status s = check_database_url(&tmp, err);
        if (s != QG_OK) {
            free(v.s);
            return s;
        }
    }
    if (r->secret == CF_URL_LIST && v.s) {
        qg_status s = check_read_urls(cfg, v.s, err);
        if (s != QG_OK) {
            free(v.s);
            return s;
        }
    }
    store(cfg, r, v);
    return QG_OK;
}

void qg_config_free(struct qg_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].type == CF_STRING)
            free(*(char **)((char *)cfg + rows[i].offset));
    memset(cfg, 0, sizeof *cfg);
}

/* The row's range or choices, for --help: "(1-1000 connections)" or "(auto|on|off)". */
static void row_domain(const struct cf_row *r, char *dst, size_t size)
{
    dst[0] = '\0';
    if (r->names) {
        size_t n = 0;
        for (int i = 0; r->names[i] && n < size; i++)
            n += (size_t)snprintf(dst + n, size - n, "%s%s", i ? "|" : "(", r->names[i]);
        if (n < size)
            snprintf(dst + n, size - n, ")");
    } else if (r->type == CF_BOOL) {
        snprintf(dst, size, "(true|false)");
    } else if (r->type != CF_STRING) {
        snprintf(dst, size, "(%.15g to %.15g%s%s)", r->min, r->max, r->unit ? " " : "",
                 r->unit ? r->unit : "");
    }
}

void qg_config_help(FILE *out)
{
    int wname = 0, wdef = 0;
    for (size_t i = 0; i < NROWS; i++) {
        int n = (int)strlen(rows[i].name), d = rows[i].def ? (int)strlen(rows[i].def) : 7;
        wname = n > wname ? n : wname;
        wdef = d > wdef ? d : wdef;
    }
    for (size_t i = 0; i < NROWS; i++) {
        char domain[128];
        row_domain(&rows[i], domain, sizeof domain);
        fprintf(out, "  %-*s  %-*s  %s%s%s\n", wname, rows[i].name, wdef,
                rows[i].def ? rows[i].def : "(unset)", rows[i].help, *domain ? " " : "", domain);
    }
}

/* Appends s, in double quotes (with \" and \\) when it is empty or has spaces or quotes. */
static void put_word(qg_buf *b, const char *s)
{
    if (*s && !strpbrk(s, " \t\n\"\\'")) {
        qg_buf_puts(b, s);
        return;
    }
    qg_buf_putc(b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            qg_buf_putc(b, '\\');
        qg_buf_putc(b, *s);
    }
    qg_buf_putc(b, '"');
}

/* Every URI redacted; a list that does not split is not shown at all. */
static void put_url_list(qg_buf *b, const char *list)
{
    char **urls;
    int n;
    qg_error err;
    if (qgp_url_list(list, &urls, &n, &err) != QG_OK) {
        qg_buf_puts(b, "***");
        return;
    }
    qg_buf joined;
    qg_buf_init(&joined);
    for (int i = 0; i < n; i++) {
        char *red = qgp_redact_conninfo(urls[i]);
        if (!red)
            b->oom = true;
        qg_buf_printf(&joined, "%s%s", i ? "," : "", red ? red : "");
        free(red);
    }
    char *s = qg_buf_steal(&joined, NULL);
    if (!s)
        b->oom = true;
    else
        put_word(b, s);
    free(s);
    qgp_url_list_free(urls, n);
}

static void describe_row(qg_buf *b, const struct qg_config *cfg, const struct cf_row *r)
{
    const void *p = (const char *)cfg + r->offset;
    qg_buf_printf(b, "%s%s=", b->len ? " " : "", r->name);
    switch (r->type) {
    case CF_INT: qg_buf_printf(b, "%d", *(const int *)p); break;
    case CF_LONG:
    case CF_SIZE: qg_buf_printf(b, "%ld", *(const long *)p); break;
    case CF_DOUBLE: qg_buf_printf(b, "%.15g", *(const double *)p); break;
    case CF_BOOL: qg_buf_puts(b, *(const bool *)p ? "true" : "false"); break;
    case CF_ENUM: {
        int i = *(const int *)p, n = 0;
        while (r->names[n])
            n++;
        qg_buf_puts(b, i >= 0 && i < n ? r->names[i] : "?");
        break;
    }
    case CF_STRING: {
        const char *s = *(char *const *)p;
        if (!s)
            break;
        if (r->secret == CF_SECRET) {
            qg_buf_puts(b, "***");
        } else if (r->secret == CF_CONNINFO) {
            char *red = qgp_redact_conninfo(s);
            if (!red)
                b->oom = true;
            else
                put_word(b, red);
            free(red);
        } else if (r->secret == CF_URL_LIST) {
            put_url_list(b, s);
        } else {
            put_word(b, s);
        }
        break;
    }
    }
}

char *qg_config_describe(const struct qg_config *cfg)
{
    if (!cfg)
        return NULL;
    qg_buf b;
    qg_buf_init(&b);
    for (size_t i = 0; i < NROWS; i++)
        describe_row(&b, cfg, &rows[i]);
    return qg_buf_steal(&b, NULL);
}
