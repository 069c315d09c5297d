/* Configuration table: defaults, validation of every type, secrets, aliases, flags, help. */
#include <limits.h>
#include <stdint.h>

#include "core_private.h"
#include "qgtest.h"

/* Loads from a NULL-terminated list of "NAME=value" and returns the status. */
static qg_status load(struct qg_config *cfg, qg_error *err, char *const *env)
{
    qg_error_clear(err);
    return qg_config_load(cfg, env, err);
}

/* One variable set to value must fail naming the variable (and `also`, when given). */
static void bad1(const char *name, const char *value, const char *also)
{
    char entry[256];
    snprintf(entry, sizeof entry, "%s=%s", name, value);
    char *env[] = {entry, NULL};
    struct qg_config cfg;
    qg_error err;
    CHECK_INT(load(&cfg, &err, env), QG_ERR_CONFIG);
    CHECK_INT(err.status, QG_ERR_CONFIG);
    if (!strstr(err.message, name) || (also && !strstr(err.message, also)))
        fprintf(stderr, "   %s=%s gave: %s\n", name, value, err.message);
    CHECK(strstr(err.message, name) != NULL);
    if (also)
        CHECK(strstr(err.message, also) != NULL);
    /* Nothing allocated after an error: every pointer is NULL. */
    CHECK(cfg.database_url == NULL && cfg.host == NULL && cfg.api_keys == NULL &&
          cfg.sslmode == NULL);
}

static void defaults(void)
{
    struct qg_config c;
    qg_error err;
    char *env[] = {NULL};
    CHECK_INT(load(&c, &err, env), QG_OK);
    CHECK(c.database_url == NULL);
    CHECK_INT(c.pool_size, 5);
    CHECK_INT(c.max_overflow, 10);
    CHECK(c.pool_timeout_s == 30.0);
    CHECK(c.pool_recycle_s == 180.0);
    CHECK(c.preping_idle_s == 10.0);
    CHECK_INT(c.retries, 2);
    CHECK(c.retry_delay_s == 0.2);
    CHECK(c.connect_timeout_s == 10.0);
    CHECK_INT(c.pooler, QG_POOLER_AUTO);
    CHECK(c.prepared_statements);
    CHECK(c.sslmode == NULL);
    CHECK_INT(c.keepalives_idle, 30);
    CHECK_INT(c.keepalives_interval, 10);
    CHECK_INT(c.keepalives_count, 3);
    CHECK_INT(c.statement_timeout_ms, 30000);
    CHECK_INT(c.idle_tx_timeout_ms, 60000);
    CHECK(!c.echo);
    CHECK_INT(c.max_result_rows, 100000);
    CHECK_INT(c.max_result_bytes, 67108864);
    CHECK(!c.numbers_as_strings);
    CHECK_INT(c.health_cache_ms, 1000);
    CHECK_STR(c.host, "127.0.0.1");
    CHECK_INT(c.port, 8080);
    CHECK_INT(c.http_threads, 0);
    CHECK_INT(c.http_max_body, 1048576);
    CHECK_INT(c.http_max_connections, 1024);
    CHECK_INT(c.http_idle_timeout_s, 30);
    CHECK(c.shutdown_timeout_s == 30.0);
    CHECK_INT(c.auth, QG_AUTH_KEYS);
    CHECK(c.api_keys == NULL && c.api_keys_file == NULL && c.tls_cert_file == NULL &&
          c.tls_key_file == NULL && c.cors_allow_origins == NULL);
    CHECK(c.queries_dir == NULL && c.allow_raw_sql);
    CHECK_INT(c.log_format, QG_LOG_TEXT);
    CHECK_INT(c.log_level, QG_LOG_INFO);
    qg_config_free(&c);
    /* NULL envp is an empty environment. */
    CHECK_INT(load(&c, &err, NULL), QG_OK);
    CHECK_INT(c.pool_size, 5);
    qg_config_free(&c);
}

static void values_from_env(void)
{
    char *env[] = {"DATABASE_URL=postgresql://u:pw@db.example.com:6432/app",
                   "DB_POOL_SIZE=20", "DB_MAX_OVERFLOW=0", "DB_POOL_TIMEOUT=2.5",
                   "DB_POOL_RECYCLE=-1", "DB_PREPING_IDLE=0", "DB_RETRY_DELAY=0.05",
                   "DB_POOLER_MODE=ON", "DB_PREPARED_STATEMENTS=no", "PGSSLMODE=Verify-Full",
                   "PG_STATEMENT_TIMEOUT=0", "MAX_RESULT_ROWS=+7", "MAX_RESULT_BYTES=64M",
                   "HTTP_MAX_BODY=2KiB", "NUMBERS_AS_STRINGS=YES", "HOST=0.0.0.0",
                   "PORT=0", "AUTH=none", "API_KEYS=k1 read", "LOG_FORMAT=json",
                   "LOG_LEVEL=debug", "CORS_ALLOW_ORIGINS=*", "TLS_CERT_FILE=/c.pem",
                   "TLS_KEY_FILE=/k.pem", "QUERIES_DIR=/q", "ALLOW_RAW_SQL=off", "UNRELATED=1", "DB_POOL_SIZEX=9", "HOST=ignored",
                   NULL};
    struct qg_config c;
    qg_error err;
    CHECK_INT(load(&c, &err, env), QG_OK);
    CHECK_STR(c.database_url, "postgresql://u:pw@db.example.com:6432/app");
    CHECK_INT(c.pool_size, 20);
    CHECK_INT(c.max_overflow, 0);
    CHECK(c.pool_timeout_s == 2.5);
    CHECK(c.pool_recycle_s == -1.0);
    CHECK(c.preping_idle_s == 0.0);
    CHECK(c.retry_delay_s == 0.05);
    CHECK_INT(c.pooler, QG_POOLER_ON);
    CHECK(!c.prepared_statements);
    CHECK_STR(c.sslmode, "verify-full"); /* stored as libpq spells it */
    CHECK_INT(c.statement_timeout_ms, 0);
    CHECK_INT(c.max_result_rows, 7);
    CHECK_INT(c.max_result_bytes, 64L << 20);
    CHECK_INT(c.http_max_body, 2048);
    CHECK(c.numbers_as_strings);
    CHECK_STR(c.host, "0.0.0.0"); /* the first of two entries, as getenv */
    CHECK_INT(c.port, 0);
    CHECK_INT(c.auth, QG_AUTH_NONE);
    CHECK_STR(c.api_keys, "k1 read");
    CHECK_INT(c.log_format, QG_LOG_JSON);
    CHECK_INT(c.log_level, QG_LOG_DEBUG);
    CHECK_STR(c.cors_allow_origins, "*");
    CHECK_STR(c.tls_cert_file, "/c.pem");
    CHECK_STR(c.queries_dir, "/q");
    CHECK(!c.allow_raw_sql);
    qg_config_free(&c);
    CHECK(c.database_url == NULL && c.host == NULL);
    qg_config_free(&c); /* twice is harmless */
    qg_config_free(NULL);
}

static void empty_is_unset(void)
{
    char *env[] = {"DATABASE_URL=", "DB_POOL_SIZE=", "HOST=", "PGSSLMODE=", "LOG_LEVEL=", NULL};
    struct qg_config c;
    qg_error err;
    CHECK_INT(load(&c, &err, env), QG_OK);
    CHECK(c.database_url == NULL);
    CHECK_INT(c.pool_size, 5);
    CHECK_STR(c.host, "127.0.0.1");
    CHECK(c.sslmode == NULL);
    CHECK_INT(c.log_level, QG_LOG_INFO);
    qg_config_free(&c);
}

static void bad_numbers(void)
{
    bad1("DB_POOL_SIZE", "abc", "not a whole number");
    bad1("DB_POOL_SIZE", "abc", "1 to 1000");
    bad1("DB_POOL_SIZE", "3.5", "not a whole number");
    bad1("DB_POOL_SIZE", "5x", "not a whole number");
    bad1("DB_POOL_SIZE", " 5", "not a whole number");
    bad1("DB_POOL_SIZE", "5 ", "not a whole number");
    bad1("DB_POOL_SIZE", "0x10", "not a whole number");
    bad1("DB_POOL_SIZE", "-", "not a whole number");
    bad1("DB_POOL_SIZE", "0", "out of range");
    bad1("DB_POOL_SIZE", "1001", "out of range");
    bad1("DB_POOL_SIZE", "-3", "out of range");
    bad1("DB_POOL_SIZE", "99999999999999999999999", "out of range");
    bad1("PORT", "65536", "0 to 65535");
    bad1("PORT", "4294967296", "out of range");
    bad1("DB_POOL_TIMEOUT", "-1", "out of range; use 0 to 3600 (seconds)");
    bad1("DB_POOL_TIMEOUT", "ten", "not a number");
    bad1("DB_POOL_TIMEOUT", "nan", "not a number");
    bad1("DB_POOL_TIMEOUT", "inf", "not a number");
    bad1("DB_POOL_TIMEOUT", "1e999", "out of range");
    bad1("DB_POOL_TIMEOUT", "1.5s", "not a number");
    bad1("DB_POOL_TIMEOUT", ".", "not a number");
    bad1("DB_POOL_RECYCLE", "-2", "out of range");
    bad1("DB_RETRY_DELAY", "0x1p3", "not a number");
    bad1("DB_CONNECT_TIMEOUT", "0.5", "out of range");
    bad1("PG_STATEMENT_TIMEOUT", "86400001", "out of range");
    bad1("PG_IDLE_TX_TIMEOUT", "2147483648", "out of range");
    bad1("MAX_RESULT_ROWS", "1000000001", "out of range");
    bad1("MAX_RESULT_BYTES", "1023", "out of range");
    bad1("MAX_RESULT_BYTES", "2T", "out of range");
    bad1("MAX_RESULT_BYTES", "1.5G", "not a whole number");
    bad1("MAX_RESULT_BYTES", "64MB", "not a whole number");
    bad1("MAX_RESULT_BYTES", "64Q", "not a whole number");
    bad1("MAX_RESULT_BYTES", "9223372036854775807K", "out of range");
    bad1("HTTP_MAX_BODY", "2G", "out of range");
    bad1("HTTP_THREADS", "-1", "out of range");
    bad1("HEALTH_CACHE_MS", "60001", "(ms)");
}

static void bounds_accepted(void)
{
    char *env[] = {"DB_POOL_SIZE=1000", "PORT=65535", "MAX_RESULT_BYTES=1T",
                   "MAX_RESULT_ROWS=1000000000", "PG_IDLE_TX_TIMEOUT=2147483647",
                   "DB_POOL_TIMEOUT=3600", "DB_CONNECT_TIMEOUT=1", "HTTP_MAX_BODY=1g",
                   "DB_RETRY_DELAY=1e-1", NULL};
    struct qg_config c;
    qg_error err;
    CHECK_INT(load(&c, &err, env), QG_OK);
    CHECK_INT(c.pool_size, 1000);
    CHECK_INT(c.port, 65535);
    CHECK_INT(c.max_result_bytes, 1099511627776LL);
    CHECK_INT(c.max_result_rows, 1000000000);
    CHECK_INT(c.idle_tx_timeout_ms, INT_MAX);
    CHECK_INT(c.http_max_body, 1 << 30);
    CHECK(c.retry_delay_s == 0.1);
    qg_config_free(&c);
}

static void bad_choices(void)
{
    bad1("DB_PREPARED_STATEMENTS", "2", "not a boolean");
    bad1("NUMBERS_AS_STRINGS", "truee", "not a boolean");
    bad1("DB_POOLER_MODE", "sometimes", "auto, on, off");
    bad1("PGSSLMODE", "required", "verify-full");
    bad1("AUTH", "basic", "keys, none");
    bad1("LOG_FORMAT", "xml", "text, json");
    bad1("LOG_LEVEL", "trace", "debug, info, warn, error");
    bad1("SQLALCHEMY_ECHO", "perhaps", "not a boolean");
}

static void urls(void)
{
    bad1("DATABASE_URL", "mysql://u:hunter2@h/db", "\"mysql\"");
    bad1("DATABASE_URL", "http://u:hunter2@h/db", "\"http\"");
    bad1("DATABASE_URL", "postgresql://u:hunter2@h/db?foo=bar", "not a valid connection");
    bad1("DATABASE_URL", "postgresql://u:hunt%zz@h/db", "not a valid connection");
    bad1("DATABASE_URL", "host=h password", "not a valid connection");
    bad1("DATABASE_URL", "postgresql://[::1", "not a valid connection");
    const char *secret_urls[] = {"mysql://u:hunter2@h/db", "postgresql://u:hunt%zz@h/db",
                                 "host=h password hunter2", "postgresql://u:hunter2@[::1",
                                 "postgresql://u:hunter2@h/db?hunter2=1",
                                 "hunter2", "postgresql://u:p@h/db?password=hunter2&x=1"};
    for (size_t i = 0; i < sizeof secret_urls / sizeof *secret_urls; i++) {
        char entry[256];
        snprintf(entry, sizeof entry, "DATABASE_URL=%s", secret_urls[i]);
        char *env[] = {entry, NULL};
        struct qg_config c;
        qg_error err;
        CHECK_INT(load(&c, &err, env), QG_ERR_CONFIG);
        if (strstr(err.message, "hunter") || strstr(err.message, "hunt%"))
            fprintf(stderr, "   leaked: %s\n", err.message);
        CHECK(strstr(err.message, "hunt") == NULL);
        CHECK(strstr(err.message, "DATABASE_URL") != NULL);
    }
    const char *good[] = {"postgres://u@h/db", "postgresql:///db?host=/tmp",
                          "host=/tmp dbname=x password='a b'", "postgresql://[::1]:5432/db",
                          "postgresql://h1:5432,h2:5433/db?target_session_attrs=read-write"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char entry[256];
        snprintf(entry, sizeof entry, "DATABASE_URL=%s", good[i]);
        char *env[] = {entry, NULL};
        struct qg_config c;
        qg_error err;
        CHECK_INT(load(&c, &err, env), QG_OK);
        CHECK_STR(c.database_url, good[i]);
        qg_config_free(&c);
    }
}

static void tls_pair(void)
{
    bad1("TLS_CERT_FILE", "/c.pem", "TLS_KEY_FILE");
    bad1("TLS_KEY_FILE", "/k.pem", "TLS_CERT_FILE");
}

/* Short HMAC secrets can be guessed offline from one token: refused, without showing them. */
static void jwt_secret_length(void)
{
    bad1("JWT_SECRET", "only-31-bytes-long-0123456789ab", "32 bytes");
    char *env[] = {"JWT_SECRET=exactly-32-bytes-long-0123456789ab", NULL};
    struct qg_config c;
    qg_error err;
    CHECK_INT(load(&c, &err, env), QG_OK);
    CHECK_INT(c.jwt_leeway_s, 30);
    CHECK_STR(c.jwt_role_claim, "role");
    CHECK_STR(c.jwt_default_scopes, "read,write");
    CHECK(c.jwt_default_role == NULL && c.jwt_audience == NULL);
    char *d = qg_config_describe(&c);
    CHECK(d && strstr(d, "JWT_SECRET=*** ") != NULL && strstr(d, "0123456789ab") == NULL);
    free(d);
    qg_config_free(&c);
    char *shortenv[] = {"JWT_SECRET=short-secret-value", NULL};
    CHECK_INT(load(&c, &err, shortenv), QG_ERR_CONFIG);
    CHECK(strstr(err.message, "short-secret") == NULL);
}

static void alias_precedence(void)
{
    struct qg_config c;
    qg_error err;
    char *alias_only[] = {"SQLALCHEMY_ECHO=true", NULL};
    CHECK_INT(load(&c, &err, alias_only), QG_OK);
    CHECK(c.echo);
    qg_config_free(&c);
    char *both[] = {"SQLALCHEMY_ECHO=true", "DB_ECHO=off", NULL};
    CHECK_INT(load(&c, &err, both), QG_OK);
    CHECK(!c.echo);
    qg_config_free(&c);
    char *both2[] = {"DB_ECHO=1", "SQLALCHEMY_ECHO=0", NULL};
    CHECK_INT(load(&c, &err, both2), QG_OK);
    CHECK(c.echo);
    qg_config_free(&c);
    /* A bad DB_ECHO is reported even when the alias is fine; the alias is not consulted. */
    char *bad[] = {"DB_ECHO=zz", "SQLALCHEMY_ECHO=1", NULL};
    CHECK_INT(load(&c, &err, bad), QG_ERR_CONFIG);
    CHECK(strstr(err.message, "DB_ECHO=\"zz\"") != NULL);
    /* An empty DB_ECHO is unset, so the alias applies. */
    char *empty[] = {"DB_ECHO=", "SQLALCHEMY_ECHO=yes", NULL};
    CHECK_INT(load(&c, &err, empty), QG_OK);
    CHECK(c.echo);
    qg_config_free(&c);
}

static void set_flags(void)
{
    struct qg_config c;
    qg_error err;
    CHECK_INT(load(&c, &err, NULL), QG_OK);
    qg_error_clear(&err);
    CHECK_INT(qg_config_set(&c, "PORT", "9000", &err), QG_OK);
    CHECK_INT(c.port, 9000);
    CHECK_INT(qg_config_set(&c, "port", "9001", &err), QG_OK);
    CHECK_INT(c.port, 9001);
    CHECK_INT(qg_config_set(&c, "HOST", "::", &err), QG_OK);
    CHECK_STR(c.host, "::");
    CHECK_INT(qg_config_set(&c, "HOST", NULL, &err), QG_OK);
    CHECK_STR(c.host, "127.0.0.1");
    CHECK_INT(qg_config_set(&c, "sqlalchemy_echo", "on", &err), QG_OK);
    CHECK(c.echo);
    CHECK_INT(qg_config_set(&c, "PGSSLMODE", "disable", &err), QG_OK);
    CHECK_STR(c.sslmode, "disable");
    CHECK_INT(qg_config_set(&c, "PGSSLMODE", "", &err), QG_OK);
    CHECK(c.sslmode == NULL);
    CHECK_INT(qg_config_set(&c, "DATABASE_URL", "postgresql://u:pw@h/db", &err), QG_OK);
    CHECK_STR(c.database_url, "postgresql://u:pw@h/db");

    /* A bad value leaves the old one. */
    CHECK_INT(qg_config_set(&c, "PORT", "70000", &err), QG_ERR_CONFIG);
    CHECK(strstr(err.message, "PORT=\"70000\" is out of range") != NULL);
    CHECK_INT(c.port, 9001);
    qg_error_clear(&err);
    CHECK_INT(qg_config_set(&c, "DATABASE_URL", "mysql://u:hunter2@h", &err), QG_ERR_CONFIG);
    CHECK(strstr(err.message, "hunter2") == NULL);
    CHECK_STR(c.database_url, "postgresql://u:pw@h/db");
    qg_error_clear(&err);
    CHECK_INT(qg_config_set(&c, "NO_SUCH_THING", "1", &err), QG_ERR_CONFIG);
    CHECK(strstr(err.message, "NO_SUCH_THING") != NULL);
    qg_error_clear(&err);
    CHECK_INT(qg_config_set(&c, NULL, "1", &err), QG_ERR_INVALID_REQUEST);
    CHECK_INT(qg_config_set(NULL, "PORT", "1", NULL), QG_ERR_INVALID_REQUEST);

    /* Cross checks run on demand after the flags. */
    qg_error_clear(&err);
    CHECK_INT(qg_config_check(&c, &err), QG_OK);
    CHECK_INT(qg_config_set(&c, "TLS_CERT_FILE", "/c.pem", &err), QG_OK);
    CHECK_INT(qg_config_check(&c, &err), QG_ERR_CONFIG);
    CHECK(strstr(err.message, "TLS_KEY_FILE") != NULL);
    qg_error_clear(&err);
    CHECK_INT(qg_config_set(&c, "TLS_KEY_FILE", "/k.pem", &err), QG_OK);
    CHECK_INT(qg_config_check(&c, &err), QG_OK);
    CHECK_INT(qg_config_check(NULL, NULL), QG_ERR_INVALID_REQUEST);
    qg_config_free(&c);
    CHECK_INT(qg_config_load(NULL, NULL, NULL), QG_ERR_INVALID_REQUEST);
}

/* DATABASE_READ_URLS: URIs split where the next begins, multi-host ones whole; each checked
   and shown redacted. */
static void read_urls(void)
{
    char **u;
    int n;
    qg_error err;
    CHECK_INT(qgp_url_list(" postgresql://a:p1@h1:5432,h2:5433/db?target_session_attrs=any , "
                           "postgres://b@h3/db", &u, &n, &err), QG_OK);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(u[0], "postgresql://a:p1@h1:5432,h2:5433/db?target_session_attrs=any");
        CHECK_STR(u[1], "postgres://b@h3/db");
    }
    qgp_url_list_free(u, n);
    CHECK_INT(qgp_url_list("postgresql://u:hunter2@h/db,host=h2 password=hunter2", &u, &n, &err),
              QG_OK); /* a key=value string is not split off: libpq then refuses the whole */
    CHECK_INT(n, 1);
    qgp_url_list_free(u, n);
    CHECK_INT(qgp_url_list("host=h password=hunter2", &u, &n, &err), QG_ERR_CONFIG);
    CHECK(strstr(err.message, "hunter2") == NULL);
    bad1("DATABASE_READ_URLS", "postgresql://u:hunter2@h/db,postgresql://u:hunter2@h/db?x=1",
         "not a valid connection");
    bad1("DATABASE_READ_URLS", " ", "lists no URI");
    char *env[] = {"DATABASE_READ_URLS=postgresql://r:s3cret@r1/app,postgresql://r:s3cret@r2,r3/app",
                   "DB_READ_FALLBACK=none", NULL};
    struct qg_config c;
    CHECK_INT(load(&c, &err, env), QG_OK);
    CHECK_INT(c.read_fallback, QG_READ_FALLBACK_NONE);
    CHECK_INT(c.read_wait_ms, 200);
    CHECK_INT(c.replica_max_lag_ms, 5000);
    char *d = qg_config_describe(&c);
    CHECK(d && strstr(d, "s3cret") == NULL);
    CHECK(d && strstr(d, "DATABASE_READ_URLS=postgresql://r:***@r1/app,postgresql://r:***@r2,r3/app ") != NULL);
    free(d);
    qg_config_free(&c);
}

/* X-Querygate-Min-LSN's form, PostgreSQL's pg_lsn text. */
static void lsn_text(void)
{
    qg_lsn l = 0;
    CHECK(qg_lsn_parse("16/B374D848", 11, &l));
    CHECK(l == ((qg_lsn)0x16 << 32 | 0xB374D848u));
    char buf[QG_LSN_BUF];
    qg_lsn_format(l, buf);
    CHECK_STR(buf, "16/B374D848");
    CHECK(qg_lsn_parse("ffffffff/ffffffff", 17, &l) && l == UINT64_MAX);
    qg_lsn_format(0, buf);
    CHECK_STR(buf, "0/0");
    const char *bad[] = {"", "/", "1/", "/1", "1", "1/2/3", "123456789/1", "1/g", " 1/2", "1/2 ",
                         "-1/2", "0x1/2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(!qg_lsn_parse(bad[i], strlen(bad[i]), &l));
    CHECK(!qg_lsn_parse("1/2\0", 4, &l)); /* n counts: a NUL inside is a character */
}

static void secrets_hidden(void)
{
    char *env[] = {"DATABASE_URL=postgresql://app:s3cr%40t@db.example.com/app?sslmode=verify-full",
                   "API_KEYS=topsecretkey read,write", "CORS_ALLOW_ORIGINS=https://a.example, https://b.example",
                   NULL};
    struct qg_config c;
    qg_error err;
    CHECK_INT(load(&c, &err, env), QG_OK);
    char *d = qg_config_describe(&c);
    CHECK(d != NULL);
    if (d) {
        CHECK(strstr(d, "s3cr") == NULL);
        CHECK(strstr(d, "topsecret") == NULL);
        CHECK(strstr(d, "DATABASE_URL=postgresql://app:***@db.example.com/app?sslmode=verify-full") != NULL);
        CHECK(strstr(d, "API_KEYS=*** ") != NULL);
        CHECK(strstr(d, "DB_POOL_SIZE=5 ") != NULL);
        CHECK(strstr(d, "DB_RETRY_DELAY=0.2 ") != NULL);
        CHECK(strstr(d, "DB_POOLER_MODE=auto ") != NULL);
        CHECK(strstr(d, "DB_ECHO=false ") != NULL);
        CHECK(strstr(d, "MAX_RESULT_BYTES=67108864 ") != NULL);
        CHECK(strstr(d, "CORS_ALLOW_ORIGINS=\"https://a.example, https://b.example\"") != NULL);
        CHECK(strstr(d, "TLS_CERT_FILE= ") != NULL);
        CHECK(strstr(d, "LOG_LEVEL=info") != NULL);
        CHECK(d[strlen(d) - 1] != ' ');
    }
    free(d);
    /* key=value passwords too, and describe of an unset API_KEYS shows nothing. */
    qg_error_clear(&err);
    CHECK_INT(qg_config_set(&c, "DATABASE_URL", "host=db password='my secret' dbname=x", &err), QG_OK);
    CHECK_INT(qg_config_set(&c, "API_KEYS", NULL, &err), QG_OK);
    d = qg_config_describe(&c);
    CHECK(d && strstr(d, "my secret") == NULL);
    CHECK(d && strstr(d, "DATABASE_URL=\"host=db password='***' dbname=x\"") != NULL);
    CHECK(d && strstr(d, "API_KEYS= ") != NULL);
    free(d);
    CHECK(qg_config_describe(NULL) == NULL);
    qg_config_free(&c);
}

static void help_lists_all(void)
{
    static const char *const names[] = {
        "DATABASE_URL", "DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DB_POOL_TIMEOUT", "DB_POOL_RECYCLE",
        "DB_OVERFLOW_IDLE", "DB_PREPING_IDLE", "DB_RETRIES", "DB_RETRY_DELAY", "DB_CONNECT_TIMEOUT", "DB_POOLER_MODE",
        "DB_PREPARED_STATEMENTS", "PGSSLMODE", "PG_KEEPALIVES_IDLE", "PG_KEEPALIVES_INTERVAL",
        "PG_KEEPALIVES_COUNT", "PG_STATEMENT_TIMEOUT", "PG_IDLE_TX_TIMEOUT", "DB_ECHO",
        "SQLALCHEMY_ECHO", "MAX_RESULT_ROWS", "MAX_RESULT_BYTES", "NUMBERS_AS_STRINGS",
        "HEALTH_CACHE_MS", "HOST", "PORT", "HTTP_THREADS", "HTTP_MAX_BODY",
        "HTTP_MAX_CONNECTIONS", "HTTP_IDLE_TIMEOUT", "SHUTDOWN_TIMEOUT", "SHUTDOWN_DELAY", "AUTH",
        "API_KEYS",
        "API_KEYS_FILE", "JWT_SECRET", "JWT_PUBLIC_KEY_FILE", "JWT_JWKS_FILE", "JWT_AUDIENCE",
        "JWT_LEEWAY_S", "JWT_ROLE_CLAIM", "JWT_DEFAULT_ROLE", "JWT_DEFAULT_SCOPES", "TLS_CERT_FILE",
        "TLS_KEY_FILE", "CORS_ALLOW_ORIGINS", "CORS_ALLOW_HEADERS", "QUERIES_DIR", "ALLOW_RAW_SQL",
        "LOG_FORMAT",
        "LOG_LEVEL"};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f != NULL);
    if (!f)
        return;
    qg_config_help(f);
    fclose(f);
    int lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    CHECK_INT(lines, 55); /* one per variable; the alias shares DB_ECHO's line */
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (!strstr(text, names[i]))
            fprintf(stderr, "   help lacks %s\n", names[i]);
        CHECK(strstr(text, names[i]) != NULL);
    }
    CHECK(strstr(text, "(1 to 1000 connections)") != NULL);
    CHECK(strstr(text, "(auto|on|off)") != NULL);
    /* Aligned: the default column starts at the same offset on every line. */
    const char *l1 = strstr(text, "  DB_POOL_SIZE "), *l2 = strstr(text, "  PORT ");
    CHECK(l1 && l2);
    if (l1 && l2) {
        size_t a = strspn(l1 + 2 + 12, " "), b = strspn(l2 + 2 + 4, " ");
        CHECK_INT(12 + a, 4 + b);
    }
    free(text);

    /* Every variable in the help is also in describe, and describe covers the struct. */
    struct qg_config c;
    qg_error err;
    CHECK_INT(load(&c, &err, NULL), QG_OK);
    char *d = qg_config_describe(&c);
    int pairs = 0;
    for (const char *p = d; p && *p; p++)
        pairs += *p == '=';
    CHECK_INT(pairs, 55);
    free(d);
    qg_config_free(&c);
}

int main(void)
{
    RUN(defaults);
    RUN(values_from_env);
    RUN(empty_is_unset);
    RUN(bad_numbers);
    RUN(bounds_accepted);
    RUN(bad_choices);
    RUN(urls);
    RUN(tls_pair);
    RUN(jwt_secret_length);
    RUN(alias_precedence);
    RUN(set_flags);
    RUN(read_urls);
    RUN(lsn_text);
    RUN(secrets_hidden);
    RUN(help_lists_all);
    return qgt_done();
}
