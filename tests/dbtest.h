/* Helpers for tests against the real PostgreSQL that scripts/test starts. */
#ifndef QG_DBTEST_H
#define QG_DBTEST_H

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "qgtest.h"
#include "querygate/querygate.h"

static inline double dbt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The superuser connection (unix socket) for checks and for killing backends. */
static inline PGconn *dbt_admin(void)
{
    static PGconn *admin;
    if (admin && PQstatus(admin) == CONNECTION_OK)
        return admin;
    PQfinish(admin);
    const char *url = getenv("QG_TEST_ADMIN_URL");
    if (!url) {
        fprintf(stderr, "SKIP: QG_TEST_ADMIN_URL is not set; run the suite with scripts/test\n");
        exit(77);
    }
    admin = PQconnectdb(url);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "admin connection failed: %s", PQerrorMessage(admin));
        exit(1);
    }
    return admin;
}

/* Runs sql as the superuser; returns the first value as a number (or -1). */
static inline long long dbt_admin_value(const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(dbt_admin(), sql);
    long long v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = atoll(PQgetvalue(r, 0, 0));
    else if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        fprintf(stderr, "admin sql failed: %s: %s", sql, PQerrorMessage(dbt_admin()));
    PQclear(r);
    return v;
}

/* Connections of one application_name, as the server sees them. */
static inline long long dbt_backends(const char *app)
{
    return dbt_admin_value("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'", app);
}

static inline long long dbt_kill_backends(const char *app)
{
    return dbt_admin_value("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE application_name = '%s'", app);
}

/*
 * A configuration from "NAME=value" strings (NULL-terminated), with DATABASE_URL
 * pointing at the test database under application_name `app`.
 */
static inline void dbt_config(struct qg_config *cfg, const char *app, const char *const *extra)
{
    static char url[1024];
    const char *base = qgt_database_url();
    snprintf(url, sizeof url, "DATABASE_URL=%s%sapplication_name=%s", base,
             strchr(base, '?') ? "&" : "?", app);
    char *env[64];
    int n = 0;
    env[n++] = url;
    for (; extra && *extra && n < 63; extra++)
        env[n++] = (char *)*extra;
    env[n] = NULL;
    qg_error err;
    qg_error_clear(&err);
    if (qg_config_load(cfg, env, &err) != QG_OK) {
        fprintf(stderr, "config: %s\n", err.message);
        exit(1);
    }
}

/* A loopback TCP port nobody listens on now (for a pooler or proxy of a test's own). */
static inline int dbt_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* Runs a shell command; returns its exit status. */
static inline int dbt_sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

/*
 * A PgBouncer (tests/tools/pgbouncer-ctl: transaction pooling, user qg) in dir,
 * listening on port, in front of the server on server_port. False, counted as a
 * failure, when it is not installed or does not start.
 */
static inline bool dbt_pgbouncer_start(const char *dir, int port, const char *server_port,
                                       const char *password)
{
    const char *src = getenv("QG_SOURCE_DIR");
    if (dbt_sh("command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer") != 0)
        fprintf(stderr, "pgbouncer is not installed (scripts/deps test installs it)\n");
    else if (dbt_sh("'%s/tests/tools/pgbouncer-ctl' start '%s' %d %s '%s'", src ? src : ".", dir,
                    port, server_port, password) == 0)
        return true;
    qgt_failures++;
    return false;
}

static inline void dbt_pgbouncer_stop(const char *dir)
{
    const char *src = getenv("QG_SOURCE_DIR");
    dbt_sh("'%s/tests/tools/pgbouncer-ctl' stop '%s'", src ? src : ".", dir);
}

#endif
