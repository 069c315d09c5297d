/* Connection modes against real servers: SSL required, and behind PgBouncer (transaction pooling). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "dbtest.h"

static char *first_value(qg_manager *m, const char *sql)
{
    qg_result *r;
    qg_error err;
    qg_error_clear(&err);
    if (qg_query(m, sql, NULL, &r, &err) != QG_OK) {
        fprintf(stderr, "%s failed: %s\n", sql, err.message);
        return strdup("(error)");
    }
    char *v = strdup(qg_result_first_value_json(r, NULL));
    qg_result_free(r);
    return v;
}

static void ssl_required(void)
{
    struct qg_config cfg;
    dbt_config(&cfg, "qgt_ssl", (const char *const[]){"PGSSLMODE=require", NULL});
    qg_manager *m;
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    char *v = first_value(m, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    CHECK_STR(v, "true");
    free(v);
    qg_manager_free(m);
    qg_config_free(&cfg);

    dbt_config(&cfg, "qgt_nossl", (const char *const[]){"PGSSLMODE=disable", NULL});
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    v = first_value(m, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    CHECK_STR(v, "false");
    free(v);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

static void behind_pgbouncer(void)
{
    char password[128] = "", server_port[16] = "";
    const char *url = qgt_database_url();
    CHECK(sscanf(url, "postgresql://qg:%127[^@]@127.0.0.1:%15[0-9]/", password, server_port) == 2);
    char dir[] = "/tmp/qgt-bouncer.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    int port = dbt_free_port();
    if (!dbt_pgbouncer_start(dir, port, server_port, password))
        return;
    char env_url[512];
    snprintf(env_url, sizeof env_url, "DATABASE_URL=postgresql://qg:%s@127.0.0.1:%d/qg", password, port);

    char *env[] = {env_url, "PG_STATEMENT_TIMEOUT=4321", NULL};
    struct qg_config cfg;
    CHECK(qg_config_load(&cfg, env, NULL) == QG_OK);
    qg_manager *m;
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    char *v = first_value(m, "SELECT current_setting('TimeZone')");
    CHECK_STR(v, "\"UTC\"");
    free(v);
    v = first_value(m, "SELECT current_setting('statement_timeout')");
    CHECK_STR(v, "\"4321ms\"");
    free(v);
    v = first_value(m, "SELECT current_setting('IntervalStyle')");
    CHECK_STR(v, "\"iso_8601\"");
    free(v);
    /* Times in RFC 3339 UTC, also when a statement moves TimeZone in its transaction. */
    v = first_value(m, "SELECT '2024-07-01 02:00+02'::timestamptz");
    CHECK_STR(v, "\"2024-07-01T00:00:00Z\"");
    free(v);
    v = first_value(m, "SELECT x FROM (SELECT set_config('TimeZone', 'Asia/Kolkata', true) AS s, "
                       "'2024-07-01 00:00Z'::timestamptz AS x OFFSET 0) q");
    CHECK_STR(v, "\"2024-07-01T00:00:00Z\"");
    free(v);
    /* Several statements, several connections, in transaction pooling mode. */
    for (int i = 0; i < 20; i++) {
        v = first_value(m, "SELECT count(*) FROM generate_series(1, 10)");
        CHECK_STR(v, "10");
        free(v);
    }
    qg_manager_free(m);
    qg_config_free(&cfg);

    /* Forced off: the pooler's refusal is an error, not a silent fallback. */
    char *env_off[] = {env_url, "DB_POOLER_MODE=off", "DB_RETRIES=0", NULL};
    CHECK(qg_config_load(&cfg, env_off, NULL) == QG_OK);
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    qg_result *r;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_query(m, "SELECT 1", NULL, &r, &err), QG_ERR_DB_UNAVAILABLE);
    CHECK(strstr(err.message, "unsupported startup parameter") != NULL);
    CHECK(strstr(err.message, password) == NULL);
    qg_manager_free(m);
    qg_config_free(&cfg);

    /* Forced on: works from the first connection, without a refused attempt. */
    char *env_on[] = {env_url, "DB_POOLER_MODE=on", NULL};
    CHECK(qg_config_load(&cfg, env_on, NULL) == QG_OK);
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    v = first_value(m, "SELECT current_setting('DateStyle')");
    CHECK_STR(v, "\"ISO, MDY\"");
    free(v);
    qg_manager_free(m);
    qg_config_free(&cfg);

    dbt_pgbouncer_stop(dir);
    dbt_sh("rm -rf %s", dir);
}

/* The startup options reach a direct connection. */
static void session_settings(void)
{
    struct qg_config cfg;
    dbt_config(&cfg, "qgt_settings", (const char *const[]){"PG_STATEMENT_TIMEOUT=1234", "PG_IDLE_TX_TIMEOUT=5678", NULL});
    qg_manager *m;
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    char *v = first_value(m, "SELECT current_setting('statement_timeout') || ' ' || "
                             "current_setting('idle_in_transaction_session_timeout') || ' ' || "
                             "current_setting('TimeZone') || ' ' || current_setting('IntervalStyle') || ' ' || "
                             "current_setting('application_name')");
    CHECK_STR(v, "\"1234ms 5678ms UTC iso_8601 qgt_settings\"");
    free(v);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

int main(void)
{
    qgt_database_url();
    RUN(session_settings);
    RUN(ssl_required);
    RUN(behind_pgbouncer);
    return qgt_done();
}
