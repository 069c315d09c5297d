/* The database goes away and comes back: health follows, the pool recovers by itself. */
#include "dbtest.h"

static int cluster(const char *action)
{
    const char *tool = getenv("QG_TEST_PGCLUSTER"), *dir = getenv("QG_TEST_PG_DIR");
    if (!tool || !dir) {
        fprintf(stderr, "SKIP: QG_TEST_PGCLUSTER/QG_TEST_PG_DIR not set; run with scripts/test\n");
        exit(77);
    }
    return dbt_sh("'%s' %s '%s' >/dev/null", tool, action, dir);
}

static void health_follows_the_database(void)
{
    struct qg_config cfg;
    dbt_config(&cfg, "qgt_restart", (const char *const[]){"DB_CONNECT_TIMEOUT=3", "DB_RETRY_DELAY=0.1", NULL});
    qg_manager *m;
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    struct qg_health h;
    qg_health_check(m, &h);
    CHECK(h.healthy);
    qg_result *r;
    CHECK(qg_query(m, "SELECT 1", NULL, &r, NULL) == QG_OK);
    qg_result_free(r);

    CHECK_INT(cluster("stop"), 0);
    double t0 = dbt_now();
    qg_health_check(m, &h);
    CHECK(!h.healthy);
    CHECK(dbt_now() - t0 < cfg.connect_timeout_s); /* within DB_CONNECT_TIMEOUT */
    CHECK(h.error[0] != '\0');
    CHECK(strstr(h.error, "qg:") == NULL); /* no credentials */
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_query(m, "SELECT 1", NULL, &r, &err), QG_ERR_DB_UNAVAILABLE);
    CHECK(!err.outcome_unknown); /* a read's outcome is always known */

    CHECK_INT(cluster("start"), 0);
    qg_health_check(m, &h);
    CHECK(h.healthy);
    qg_error_clear(&err);
    CHECK(qg_query(m, "SELECT 2 AS two", NULL, &r, &err) == QG_OK);
    if (r)
        CHECK_STR(qg_result_rows_json(r, NULL), "[{\"two\":2}]");
    qg_result_free(r);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

/* Terminates app's backends and waits until they are gone; returns how many. */
static long long terminate(const char *app)
{
    return dbt_admin_value("SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                           "WHERE application_name = '%s'", app);
}

/* A failover or a DBA ends the check's session while the database stays up: still healthy. */
static void health_survives_a_terminated_backend(void)
{
    struct qg_config cfg;
    dbt_config(&cfg, "qgt_health_kill", NULL);
    qg_manager *m;
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    struct qg_health h;
    qg_health_check(m, &h);
    CHECK(h.healthy);
    CHECK_INT(terminate("qgt_health_kill"), 1);
    qg_health_check(m, &h);
    CHECK(h.healthy);
    if (!h.healthy)
        fprintf(stderr, "unhealthy: %s\n", h.error);
    struct qg_pool_stats st;
    qg_pool_stats(m, &st);
    CHECK_INT(st.health_connection, 1);
    CHECK_INT(terminate("qgt_health_kill"), 1);
    qg_health_cached(m, 60000, &h); /* nothing cached yet: a check */
    CHECK(h.healthy);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

int main(void)
{
    qgt_database_url();
    RUN(health_survives_a_terminated_backend);
    RUN(health_follows_the_database);
    return qgt_done();
}
