/* The pool against the real PostgreSQL: limits, overflow, timeout, recycle, pre-ping. */
#include <pthread.h>
#include <stdatomic.h>

#include "dbtest.h"

static int backend_pid(qg_conn *c)
{
    qg_result *r;
    qg_error err;
    qg_error_clear(&err);
    if (qg_exec(c, "SELECT pg_backend_pid()", NULL, NULL, &r, &err) != QG_OK) {
        fprintf(stderr, "pid query failed: %s\n", err.message);
        return -1;
    }
    int pid = atoi(qg_result_first_value_json(r, NULL));
    qg_result_free(r);
    return pid;
}

struct burst {
    qg_manager *m;
    atomic_int failures;
    atomic_int done;
};

static void *burst_worker(void *arg)
{
    struct burst *b = arg;
    for (int i = 0; i < 5; i++) {
        qg_conn *c;
        qg_error err;
        qg_error_clear(&err);
        if (qg_checkout(b->m, &c, &err) != QG_OK) {
            fprintf(stderr, "checkout failed: %s\n", err.message);
            atomic_fetch_add(&b->failures, 1);
            continue;
        }
        qg_result *r;
        if (qg_exec(c, "SELECT pg_sleep(0.02)", NULL, NULL, &r, &err) != QG_OK)
            atomic_fetch_add(&b->failures, 1);
        qg_result_free(r);
        qg_checkin(b->m, c);
    }
    atomic_fetch_add(&b->done, 1);
    return NULL;
}

/* 32 threads never get more than size + overflow connections; overflow closes once idle. */
static void size_and_overflow(void)
{
    const char *app = "qgt_pool_burst";
    struct qg_config cfg;
    dbt_config(&cfg, app, (const char *const[]){"DB_POOL_SIZE=3", "DB_MAX_OVERFLOW=4",
                                                "DB_OVERFLOW_IDLE=0.3", NULL});
    qg_manager *m;
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    CHECK_INT(dbt_backends(app), 0); /* lazy: nothing opened yet */

    struct burst b = {.m = m};
    pthread_t t[32];
    for (int i = 0; i < 32; i++)
        pthread_create(&t[i], NULL, burst_worker, &b);
    long long peak = 0;
    while (atomic_load(&b.done) < 32) {
        long long n = dbt_backends(app);
        if (n > peak)
            peak = n;
        usleep(5000);
    }
    for (int i = 0; i < 32; i++)
        pthread_join(t[i], NULL);
    CHECK_INT(atomic_load(&b.failures), 0);
    CHECK(peak <= 7);
    CHECK(peak >= 4); /* the burst did overflow */

    struct qg_pool_stats st;
    qg_pool_stats(m, &st);
    CHECK_INT(st.checked_out, 0);
    CHECK(st.overflow > 0); /* kept for a while: a steady load reuses them */
    CHECK(st.connects >= 4);
    usleep(400000);
    /* Past DB_OVERFLOW_IDLE, each connection that comes back takes one lingering one along. */
    for (int i = 0; i < 4; i++) {
        qg_conn *c;
        CHECK(qg_checkout(m, &c, NULL) == QG_OK);
        qg_checkin(m, c);
    }
    qg_pool_stats(m, &st);
    CHECK_INT(st.idle, 3);
    CHECK_INT(st.overflow, 0);
    usleep(100000);
    CHECK_INT(dbt_backends(app), 3);
    qg_manager_free(m);
    usleep(100000);
    CHECK_INT(dbt_backends(app), 0);
    qg_config_free(&cfg);
}

static void checkout_timeout(void)
{
    struct qg_config cfg;
    dbt_config(&cfg, "qgt_pool_timeout",
               (const char *const[]){"DB_POOL_SIZE=1", "DB_MAX_OVERFLOW=0", "DB_POOL_TIMEOUT=0.5", NULL});
    qg_manager *m;
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    qg_conn *held, *c2;
    qg_error err;
    qg_error_clear(&err);
    CHECK(qg_checkout(m, &held, &err) == QG_OK);
    double t0 = dbt_now();
    CHECK_INT(qg_checkout(m, &c2, &err), QG_ERR_POOL_TIMEOUT);
    double waited = dbt_now() - t0;
    CHECK(waited >= 0.45);
    CHECK(waited < 5.0); /* generous: the machine is shared */
    CHECK(strstr(err.message, "DB_POOL_SIZE 1") != NULL);
    struct qg_pool_stats st;
    qg_pool_stats(m, &st);
    CHECK_INT(st.timeouts, 1);
    CHECK_INT(st.waiting, 0);
    qg_checkin(m, held);
    /* The freed connection serves the next caller at once. */
    qg_error_clear(&err);
    CHECK(qg_checkout(m, &c2, &err) == QG_OK);
    qg_checkin(m, c2);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

struct handoff {
    qg_manager *m;
    atomic_int got;
};

static void *wait_for_conn(void *arg)
{
    struct handoff *h = arg;
    qg_conn *c;
    if (qg_checkout(h->m, &c, NULL) == QG_OK) {
        atomic_fetch_add(&h->got, 1);
        qg_checkin(h->m, c);
    }
    return NULL;
}

/* A waiter is woken by a checkin (no polling): it gets the connection quickly. */
static void waiter_gets_returned_connection(void)
{
    struct qg_config cfg;
    dbt_config(&cfg, "qgt_pool_handoff",
               (const char *const[]){"DB_POOL_SIZE=1", "DB_MAX_OVERFLOW=0", "DB_POOL_TIMEOUT=20", NULL});
    qg_manager *m;
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    qg_conn *held;
    CHECK(qg_checkout(m, &held, NULL) == QG_OK);
    struct handoff h = {.m = m};
    pthread_t t;
    pthread_create(&t, NULL, wait_for_conn, &h);
    struct qg_pool_stats st;
    for (int i = 0; i < 200; i++) {
        qg_pool_stats(m, &st);
        if (st.waiting == 1)
            break;
        usleep(5000);
    }
    CHECK_INT(st.waiting, 1);
    qg_checkin(m, held);
    pthread_join(t, NULL);
    CHECK_INT(atomic_load(&h.got), 1);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

static void recycle_old_connections(void)
{
    struct qg_config cfg;
    dbt_config(&cfg, "qgt_pool_recycle", (const char *const[]){"DB_POOL_RECYCLE=1", NULL});
    qg_manager *m;
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    qg_conn *c;
    CHECK(qg_checkout(m, &c, NULL) == QG_OK);
    int pid1 = backend_pid(c);
    qg_checkin(m, c);
    CHECK(qg_checkout(m, &c, NULL) == QG_OK);
    CHECK_INT(backend_pid(c), pid1); /* young: reused */
    qg_checkin(m, c);
    usleep(1200000);
    CHECK(qg_checkout(m, &c, NULL) == QG_OK);
    int pid2 = backend_pid(c);
    CHECK(pid2 > 0 && pid2 != pid1);
    qg_checkin(m, c);
    struct qg_pool_stats st;
    qg_pool_stats(m, &st);
    CHECK_INT(st.recycles, 1);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

/* Every idle connection killed: the next callers never notice. */
static void preping_survives_terminated_backends(const char *preping)
{
    char app[64];
    snprintf(app, sizeof app, "qgt_pool_preping_%s", preping);
    char opt[64];
    snprintf(opt, sizeof opt, "DB_PREPING_IDLE=%s", preping);
    struct qg_config cfg;
    dbt_config(&cfg, app, (const char *const[]){"DB_POOL_SIZE=3", opt, NULL});
    qg_manager *m;
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    qg_conn *c[3];
    for (int i = 0; i < 3; i++)
        CHECK(qg_checkout(m, &c[i], NULL) == QG_OK);
    for (int i = 0; i < 3; i++)
        qg_checkin(m, c[i]);
    CHECK_INT(dbt_kill_backends(app), 3);
    usleep(200000);
    for (int i = 0; i < 3; i++) {
        qg_error err;
        qg_error_clear(&err);
        CHECK(qg_checkout(m, &c[i], &err) == QG_OK);
        CHECK(backend_pid(c[i]) > 0);
    }
    for (int i = 0; i < 3; i++)
        qg_checkin(m, c[i]);
    struct qg_pool_stats st;
    qg_pool_stats(m, &st);
    CHECK_INT(st.recycles, 3);
    CHECK_INT(st.errors, 0);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

static void preping_each_checkout(void)
{
    preping_survives_terminated_backends("0");
}

static void preping_socket_check(void)
{
    preping_survives_terminated_backends("3600");
}

/* A connection handed back inside a transaction is rolled back, not pooled dirty. */
static void checkin_rolls_back(void)
{
    const char *app = "qgt_pool_dirty";
    struct qg_config cfg;
    dbt_config(&cfg, app, (const char *const[]){"DB_POOL_SIZE=1", NULL});
    qg_manager *m;
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    qg_conn *c;
    qg_result *r;
    CHECK(qg_checkout(m, &c, NULL) == QG_OK);
    CHECK(qg_exec(c, "BEGIN", NULL, NULL, &r, NULL) == QG_OK);
    qg_result_free(r);
    CHECK(qg_exec(c, "CREATE TEMP TABLE dirty_marker (x int)", NULL, NULL, &r, NULL) == QG_OK);
    qg_result_free(r);
    qg_checkin(m, c);
    CHECK_INT(dbt_admin_value("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s' "
                              "AND state <> 'idle'", app), 0);
    CHECK(qg_checkout(m, &c, NULL) == QG_OK);
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_exec(c, "SELECT * FROM dirty_marker", NULL, NULL, &r, &err), QG_ERR_SQL);
    CHECK_STR(err.sqlstate, "42P01");
    qg_checkin(m, c);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

static void bad_server_is_db_unavailable(void)
{
    char *env[] = {"DATABASE_URL=postgresql://qg:secret-pw@127.0.0.1:1/qg", "DB_CONNECT_TIMEOUT=2", NULL};
    struct qg_config cfg;
    CHECK(qg_config_load(&cfg, env, NULL) == QG_OK);
    qg_manager *m;
    CHECK(qg_manager_new(&cfg, &m, NULL) == QG_OK);
    qg_conn *c;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_checkout(m, &c, &err), QG_ERR_DB_UNAVAILABLE);
    CHECK(strstr(err.message, "secret-pw") == NULL);
    CHECK(strstr(err.message, "127.0.0.1") != NULL);
    struct qg_pool_stats st;
    qg_pool_stats(m, &st);
    CHECK_INT(st.errors, 1);
    CHECK_INT(st.checked_out, 0);
    CHECK_INT(st.overflow, -st.size);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

int main(void)
{
    qgt_database_url();
    RUN(size_and_overflow);
    RUN(checkout_timeout);
    RUN(waiter_gets_returned_connection);
    RUN(recycle_old_connections);
    RUN(preping_each_checkout);
    RUN(preping_socket_check);
    RUN(checkin_rolls_back);
    RUN(bad_server_is_db_unavailable);
    return qgt_done();
}
