/* querygate: environment -> config -> keys, named queries -> manager -> server -> wait for signals (SIGHUP: reload keys, JWKS, queries) -> drain -> teardown. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "querygate/loop.h"
#include "auth.h"
#include "log.h"
#include "named.h"
#include "probe.h"
#include "server.h"

#ifndef QG_VERSION
#define QG_VERSION "unknown"
#endif

extern char **environ;

/* Each flag sets one configuration variable, exactly as its environment variable would. */
static const struct {
    const char *flag;
    const char *var;
} flags[] = {
    {"--host", "HOST"},
    {"--port", "PORT"},
    {"--threads", "HTTP_THREADS"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: querygate [--host HOST] [--port PORT] [--threads N] [--probe] [--help] "
            "[--version]\n"
            "  --host     HOST, the address to listen on\n"
            "  --port     PORT (0: any free port; the log says which)\n"
            "  --threads  HTTP_THREADS, event-loop threads serving HTTP (0: one per CPU)\n"
            "  --probe    do not serve: GET /health/ready of the service on HOST:PORT\n"
            "             (0.0.0.0 or :: mean this host); exit 0 on 200, else 1\n"
            "Every setting comes from the environment; flags override it.\n"
            "SIGHUP reloads API_KEYS_FILE, JWT_JWKS_FILE and QUERIES_DIR; SIGTERM (after\n"
            "SHUTDOWN_DELAY) or SIGINT drains and stops.\n\n"
            "Environment:\n");
    qg_config_help(out);
}

static int print_info(const char *flag)
{
    if (!strcmp(flag, "--version"))
        printf("querygate %s\n", QG_VERSION);
    else
        usage(stdout);
    return 0;
}

/* Applies argv to cfg. Returns -1 to go on, else the exit code. */
static int parse_flags(int argc, char **argv, struct qg_config *cfg)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--probe"))
            continue;
        size_t k = 0, n = sizeof flags / sizeof flags[0];
        size_t flen = 0;
        for (; k < n; k++) {
            flen = strlen(flags[k].flag);
            if (!strncmp(a, flags[k].flag, flen) && (a[flen] == '\0' || a[flen] == '='))
                break;
        }
        if (k == n) {
            fprintf(stderr, "querygate: unknown argument %s (see --help)\n", a);
            return 2;
        }
        const char *value = a[flen] == '=' ? a + flen + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!value) {
            fprintf(stderr, "querygate: %s needs a value (see --help)\n", flags[k].flag);
            return 2;
        }
        qg_error err;
        qg_error_clear(&err);
        if (qg_config_set(cfg, flags[k].var, value, &err) != QG_OK) {
            fprintf(stderr, "querygate: %s: %s\n", flags[k].flag, err.message);
            return 2;
        }
    }
    return -1;
}

/* "http://127.0.0.1:8080" (https:// with TLS), brackets around an IPv6 literal. */
static void listen_url(const struct qg_config *cfg, int port, char *out, size_t size)
{
    const char *host = cfg->host && *cfg->host ? cfg->host : "0.0.0.0";
    bool v6 = strchr(host, ':') && host[0] != '[';
    bool tls = cfg->tls_cert_file && *cfg->tls_cert_file;
    snprintf(out, size, "%s://%s%s%s:%d", tls ? "https" : "http", v6 ? "[" : "", host,
             v6 ? "]" : "", port);
}

/*
 * Secrets leave the process environment (which /proc/<pid>/environ shows) once
 * the config holds them: API_KEYS and JWT_SECRET whole, also in the config once
 * auth holds them (hashed, copied);
 * DATABASE_URL's password only, since the config keeps its own copy for the
 * role pools that open later.
 */
static void wipe_secrets(struct qg_config *cfg)
{
    if (cfg->api_keys)
        memset(cfg->api_keys, '*', strlen(cfg->api_keys));
    if (cfg->jwt_secret)
        memset(cfg->jwt_secret, '*', strlen(cfg->jwt_secret));
    for (char **e = environ; e && *e; e++)
        if (!strncmp(*e, "API_KEYS=", 9))
            memset(*e + 9, '*', strlen(*e + 9));
        else if (!strncmp(*e, "JWT_SECRET=", 11))
            memset(*e + 11, '*', strlen(*e + 11));
        else if (!strncmp(*e, "DATABASE_URL=", 13))
            qg_conninfo_scrub(*e + 13);
        else if (!strncmp(*e, "DATABASE_READ_URLS=", 19))
            qg_conninfo_scrub(*e + 19);
}

static void reload_keys(qgh_auth *auth)
{
    qg_error err;
    qg_error_clear(&err);
    size_t n = 0;
    if (qgh_auth_reload(auth, &n, &err) == QG_OK)
        qgh_log(QG_LOG_INFO, "SIGHUP: API keys reloaded; %zu key%s", n, n == 1 ? "" : "s");
    else
        qgh_log(QG_LOG_ERROR, "SIGHUP: API keys not reloaded, the old ones stay: %s",
                err.message);
    qg_error_clear(&err);
    if (qgh_auth_reload_jwks(auth, &n, &err) != QG_OK)
        qgh_log(QG_LOG_ERROR, "SIGHUP: JWT_JWKS_FILE not reloaded, the old keys stay: %s",
                err.message);
    else if (n)
        qgh_log(QG_LOG_INFO, "SIGHUP: JWT_JWKS_FILE reloaded; %zu key%s", n, n == 1 ? "" : "s");
}

static void reload_queries(qgh_named *named, const char *dir)
{
    if (!dir || !*dir)
        return;
    qg_error err;
    qg_error_clear(&err);
    size_t n = 0;
    if (qgh_named_reload(named, &n, &err) == QG_OK)
        qgh_log(QG_LOG_INFO, "SIGHUP: named queries reloaded; %zu quer%s", n,
                n == 1 ? "y" : "ies");
    else
        qgh_log(QG_LOG_ERROR, "SIGHUP: named queries not reloaded, the old ones stay: %s",
                err.message);
}

/* What SIGHUP re-reads. */
struct reloadable {
    qgh_auth *auth;
    qgh_named *named;
    const char *queries_dir;
};

static void reload(const struct reloadable *r)
{
    reload_keys(r->auth);
    reload_queries(r->named, r->queries_dir);
}

/* Waits for SIGINT or SIGTERM, reloading on each SIGHUP. */
static int wait_for_stop(const struct reloadable *r, const sigset_t *signals)
{
    for (;;) {
        int sig = 0;
        sigwait(signals, &sig);
        if (sig != SIGHUP)
            return sig;
        reload(r);
    }
}

/*
 * SHUTDOWN_DELAY after SIGTERM: /health/ready answers 503 while everything else
 * is still served, so that load balancers stop sending before connections are
 * refused. Another SIGTERM, or a SIGINT, ends it early.
 */
static void delay_stop(qg_server *srv, const struct reloadable *r, const sigset_t *signals,
                       double delay_s)
{
    qg_server_unready(srv);
    qgh_log(QG_LOG_INFO, "SIGTERM: /health/ready answers 503 from now; serving for %g s more "
            "before draining (SHUTDOWN_DELAY)", delay_s);
    double end = qg_now() + delay_s;
    for (double left; (left = end - qg_now()) > 0;) {
        struct timespec ts = qg_timespec(left);
        int sig = sigtimedwait(signals, NULL, &ts);
        if (sig == SIGHUP) {
            reload(r);
        } else if (sig == SIGTERM || sig == SIGINT) {
            qgh_log(QG_LOG_INFO, "%s: SHUTDOWN_DELAY cut short",
                    sig == SIGINT ? "SIGINT" : "SIGTERM");
            return;
        }
    }
}

/* The start log's line on named queries and raw SQL. */
static void describe_named(const struct qg_config *cfg, qgh_auth *auth, qgh_named *named)
{
    if (cfg->queries_dir && *cfg->queries_dir) {
        qg_queries *q = qgh_named_get(named);
        size_t n = qg_queries_count(q);
        qg_queries_unref(q);
        qgh_log(QG_LOG_INFO, "named queries: %zu from QUERIES_DIR %s (POST /queries/NAME); "
                "SIGHUP re-reads it", n, cfg->queries_dir);
    }
    struct qgh_principal anyone;
    if (!cfg->allow_raw_sql && qgh_auth_check(auth, NULL, &anyone) == QGH_AUTH_OK &&
        (anyone.scopes & QGH_SCOPE_ADMIN))
        qgh_log(QG_LOG_WARN, "ALLOW_RAW_SQL=false changes nothing: without API keys every "
                "caller has the admin scope");
}

/* Runs the service until SIGINT or SIGTERM; returns the exit code. */
static int serve(const struct qg_config *cfg, const struct reloadable *r,
                 const sigset_t *signals)
{
    qgh_auth *auth = r->auth;
    qg_error err;
    qg_error_clear(&err);
    qg_manager *m = NULL;
    if (qg_manager_new(cfg, &m, &err) != QG_OK) {
        qgh_log(QG_LOG_ERROR, "cannot create the connection manager: %s", err.message);
        return 1;
    }
    qg_manager_set_log(m, qgh_log_core, NULL);
    qg_server *srv = NULL;
    if (qg_server_start(cfg, m, auth, r->named, &srv, &err) != QG_OK) {
        qgh_log(QG_LOG_ERROR, "%s", err.message);
        qg_manager_free(m);
        return 1;
    }
    char url[300];
    listen_url(cfg, qg_server_port(srv), url, sizeof url);
    qgh_log(QG_LOG_INFO, "querygate %s listening on %s", QG_VERSION, url);
    char *desc = qg_config_describe(cfg);
    if (desc)
        qgh_log(QG_LOG_INFO, "configuration: %s", desc);
    free(desc);
    char how[1280];
    enum qg_log_level level = qgh_auth_describe(auth, how, sizeof how);
    qgh_log(level, "%s", how);
    describe_named(cfg, auth, r->named);

    int sig = wait_for_stop(r, signals);
    if (sig == SIGTERM && cfg->shutdown_delay_s > 0)
        delay_stop(srv, r, signals, cfg->shutdown_delay_s);
    qgh_log(QG_LOG_INFO, "%s: draining (up to %g s, SHUTDOWN_TIMEOUT)",
            sig == SIGINT ? "SIGINT" : "SIGTERM", cfg->shutdown_timeout_s);
    qg_server_stop(srv, cfg->shutdown_timeout_s);
    qg_manager_shutdown(m, 0);
    qg_manager_free(m);
    qg_loop_offload_shutdown();
    qgh_log(QG_LOG_INFO, "stopped");
    return 0;
}

/* The seconds a probe may take; Docker's HEALTHCHECK --timeout is longer. */
#define PROBE_TIMEOUT_S 3.0

static bool probe_mode(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--probe"))
            return true;
    return false;
}

int main(int argc, char **argv)
{
    /* Blocked here, before any thread exists, so that only sigwait() sees them. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* --help and --version answer even when the environment has a bad value. */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") ||
            !strcmp(argv[i], "--version"))
            return print_info(argv[i]);

    /* NOTE: a probe exits 1 on any failure: Docker reserves exit code 2. */
    bool probe = probe_mode(argc, argv);
    struct qg_config cfg;
    qg_error err;
    qg_error_clear(&err);
    if (qg_config_load(&cfg, environ, &err) != QG_OK) {
        fprintf(stderr, "querygate: %s\n", err.message);
        return probe ? 1 : 2;
    }
    int rc = parse_flags(argc, argv, &cfg);
    if (rc < 0 && qg_config_check(&cfg, &err) != QG_OK) {
        fprintf(stderr, "querygate: %s\n", err.message);
        rc = 2;
    }
    if (rc < 0 && probe)
        rc = qgh_probe(&cfg, PROBE_TIMEOUT_S, stderr);
    if (rc >= 0) {
        qg_config_free(&cfg);
        return probe && rc ? 1 : rc;
    }
    qgh_log_setup(cfg.log_format, cfg.log_level);
    if (!cfg.database_url || !*cfg.database_url) {
        fprintf(stderr, "querygate: DATABASE_URL is not set; set it to a postgresql:// URL "
                        "(or start the service with scripts/run, which provides a database)\n");
        qg_config_free(&cfg);
        return 2;
    }
    qgh_auth *auth = NULL;
    if (qgh_auth_new(&cfg, &auth, &err) != QG_OK) {
        fprintf(stderr, "querygate: %s\n", err.message);
        qg_config_free(&cfg);
        return 2;
    }
    qgh_named *named = NULL;
    if (qgh_named_new(&cfg, &named, &err) != QG_OK) {
        fprintf(stderr, "querygate: %s\n", err.message);
        qgh_auth_free(auth);
        qg_config_free(&cfg);
        return 2;
    }
    wipe_secrets(&cfg);
    struct reloadable r = {auth, named, cfg.queries_dir};
    rc = serve(&cfg, &r, &signals);
    qgh_named_free(named);
    qgh_auth_free(auth);
    qg_config_free(&cfg);
    return rc;
}
