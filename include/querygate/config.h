/* Configuration: read once from the environment at start, then passed down read-only. */
#ifndef QUERYGATE_CONFIG_H
#define QUERYGATE_CONFIG_H

#include <stdbool.h>
#include <stdio.h>
#include "querygate/error.h"

enum qg_pooler_mode {
    QG_POOLER_AUTO, /* detect a pooler that rejects startup options, then use SET */
    QG_POOLER_ON,   /* always behave as behind PgBouncer (no startup options, no
                       prepared statement outlives a transaction) */
    QG_POOLER_OFF   /* never: a rejected startup option is a connection error */
};

enum qg_log_format { QG_LOG_TEXT, QG_LOG_JSON };
/* Where reads go when no replica is usable. */
enum qg_read_fallback { QG_READ_FALLBACK_PRIMARY, QG_READ_FALLBACK_NONE };

/* The headers a browser may send (OpenTelemetry's fetch instrumentation adds the last two). */
#define QG_CORS_ALLOW_HEADERS_DEFAULT \
    "Content-Type, Authorization, X-Request-Id, X-Querygate-Min-LSN, traceparent, tracestate"
enum qg_log_level { QG_LOG_DEBUG, QG_LOG_INFO, QG_LOG_WARN, QG_LOG_ERROR };
enum qg_auth_mode { QG_AUTH_KEYS, QG_AUTH_NONE };

/*
 * Every field comes from one environment variable (named in the comment);
 * qg_config_help() lists them with defaults. Strings are owned by the struct
 * and freed by qg_config_free(); NULL means "not set".
 */
struct qg_config {
    /* database */
    char *database_url;          /* DATABASE_URL: postgresql:// URI or key=value */
    int pool_size;               /* DB_POOL_SIZE */
    int max_overflow;            /* DB_MAX_OVERFLOW */
    double pool_timeout_s;       /* DB_POOL_TIMEOUT */
    double pool_recycle_s;       /* DB_POOL_RECYCLE; -1 never */
    double overflow_idle_s;      /* DB_OVERFLOW_IDLE: close an overflow connection idle this long */
    double preping_idle_s;       /* DB_PREPING_IDLE: ping a connection idle this long */
    int retries;                 /* DB_RETRIES */
    double retry_delay_s;        /* DB_RETRY_DELAY, doubled each retry */
    double connect_timeout_s;    /* DB_CONNECT_TIMEOUT */
    enum qg_pooler_mode pooler;  /* DB_POOLER_MODE: auto, on, off */
    bool prepared_statements;    /* DB_PREPARED_STATEMENTS */
    char *sslmode;               /* PGSSLMODE */
    int keepalives_idle;         /* PG_KEEPALIVES_IDLE */
    int keepalives_interval;     /* PG_KEEPALIVES_INTERVAL */
    int keepalives_count;        /* PG_KEEPALIVES_COUNT */
    int statement_timeout_ms;    /* PG_STATEMENT_TIMEOUT */
    int idle_tx_timeout_ms;      /* PG_IDLE_TX_TIMEOUT */
    bool echo;                   /* DB_ECHO (alias SQLALCHEMY_ECHO) */
    /* read replicas */
    char *read_urls;             /* DATABASE_READ_URLS: postgresql:// URIs, comma-separated */
    int read_pool_size;          /* DB_READ_POOL_SIZE; 0: DB_POOL_SIZE */
    int replica_max_lag_ms;      /* DB_REPLICA_MAX_LAG_MS: set a replica aside past this lag */
    enum qg_read_fallback read_fallback; /* DB_READ_FALLBACK: primary, none */
    int read_wait_ms;            /* DB_READ_WAIT_MS: wait for a replica with the caller's LSN */
    /* results */
    long max_result_rows;        /* MAX_RESULT_ROWS */
    long max_result_bytes;       /* MAX_RESULT_BYTES */
    bool numbers_as_strings;     /* NUMBERS_AS_STRINGS: default of the request flag */
    int health_cache_ms;         /* HEALTH_CACHE_MS: /health/ready answers from cache */
    /* http */
    char *host;                  /* HOST */
    int port;                    /* PORT */
    int http_threads;            /* HTTP_THREADS: HTTP event loops; 0: one per CPU */
    long http_max_body;          /* HTTP_MAX_BODY bytes */
    int http_max_connections;    /* HTTP_MAX_CONNECTIONS */
    int http_idle_timeout_s;     /* HTTP_IDLE_TIMEOUT */
    double shutdown_timeout_s;   /* SHUTDOWN_TIMEOUT */
    double shutdown_delay_s;     /* SHUTDOWN_DELAY */
    /* security */
    enum qg_auth_mode auth;      /* AUTH: keys, none */
    char *api_keys;              /* API_KEYS: "KEY SCOPES [ROLE];..." (secret) */
    char *api_keys_file;         /* API_KEYS_FILE */
    char *jwt_secret;            /* JWT_SECRET: HS256/384/512 key, >= 32 bytes (secret) */
    char *jwt_public_key_file;   /* JWT_PUBLIC_KEY_FILE: PEM public key, RS256/ES256 */
    char *jwt_jwks_file;         /* JWT_JWKS_FILE: JWKS document, keys picked by kid */
    char *jwt_audience;          /* JWT_AUDIENCE: required aud, when set */
    int jwt_leeway_s;            /* JWT_LEEWAY_S: clock skew allowed for exp and nbf */
    char *jwt_role_claim;        /* JWT_ROLE_CLAIM: dotted path of the role claim */
    char *jwt_default_role;      /* JWT_DEFAULT_ROLE: role of a token without the claim */
    char *jwt_default_scopes;    /* JWT_DEFAULT_SCOPES: scopes of a token without scope */
    char *tls_cert_file;         /* TLS_CERT_FILE */
    char *tls_key_file;          /* TLS_KEY_FILE */
    char *cors_allow_origins;    /* CORS_ALLOW_ORIGINS: comma list or * */
    char *cors_allow_headers;    /* CORS_ALLOW_HEADERS: comma list of request header names;
                                    NULL: QG_CORS_ALLOW_HEADERS_DEFAULT */
    char *queries_dir;           /* QUERIES_DIR: NAME.sql files, POST /queries/NAME */
    bool allow_raw_sql;          /* ALLOW_RAW_SQL: false leaves non-admin keys named queries only */
    /* logs */
    enum qg_log_format log_format; /* LOG_FORMAT: text, json */
    enum qg_log_level log_level;   /* LOG_LEVEL: debug, info, warn, error */
};

/*
 * Fills *cfg from envp (a NULL-terminated "NAME=value" array such as environ),
 * defaults for what is unset. On error *cfg holds nothing to free and err names
 * the variable and the offending value (never the value of a secret).
 */
qg_status qg_config_load(struct qg_config *cfg, char *const *envp, qg_error *err) QG_MUSTCHECK;

/*
 * Sets one variable by its environment name (or alias, any case), as a
 * command-line flag does; value NULL or "" restores the default. Validated as
 * qg_config_load does; on error cfg is unchanged. Checks between variables
 * are left to qg_config_check(), to run after the last flag.
 */
qg_status qg_config_set(struct qg_config *cfg, const char *name, const char *value,
                        qg_error *err) QG_MUSTCHECK;

/*
 * Checks that need several variables (TLS_CERT_FILE needs TLS_KEY_FILE and the
 * reverse) and DATABASE_URL as libpq parses it. qg_config_load() runs it.
 */
qg_status qg_config_check(const struct qg_config *cfg, qg_error *err) QG_MUSTCHECK;

/* Frees the strings cfg owns; cfg itself is the caller's. */
void qg_config_free(struct qg_config *cfg);

/* Writes one line per variable: name, default, meaning (for --help). */
void qg_config_help(FILE *out);

/*
 * The effective configuration as "NAME=value" pairs separated by spaces, with
 * secrets (passwords, keys) replaced by "***". Returns a malloc'd string the
 * caller frees, or NULL when out of memory.
 */
char *qg_config_describe(const struct qg_config *cfg);

/*
 * Overwrites, in place, every secret of a connection string (DATABASE_URL in
 * either form: the URI's password, password=, sslpassword=...) with '*', so
 * that a copy the process must keep (its environment) holds none. NULL is allowed.
 */
void qg_conninfo_scrub(char *conninfo);

#endif
