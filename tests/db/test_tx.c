/* Transaction scopes, retries and the helpers against the real PostgreSQL. */
#include <pthread.h>
#include <stdatomic.h>

#include "dbtest.h"

static qg_manager *mgr;
static struct qg_config cfg;

static void setup(void)
{
    dbt_config(&cfg, "qgt_tx", (const char *const[]){"DB_RETRY_DELAY=0.05", NULL});
    CHECK(qg_manager_new(&cfg, &mgr, NULL) == QG_OK);
    qg_result *r;
    qg_error err;
    qg_error_clear(&err);
    CHECK(qg_insert(mgr, "DROP TABLE IF EXISTS tx_items", NULL, &r, &err) == QG_OK);
    qg_result_free(r);
    CHECK(qg_insert(mgr, "CREATE TABLE tx_items (id serial PRIMARY KEY, name text UNIQUE, n numeric)",
                    NULL, &r, &err) == QG_OK);
    qg_result_free(r);
    if (err.status)
        fprintf(stderr, "setup: %s\n", err.message);
}

static qg_params *params1(const char *name, enum qg_param_kind kind, const char *text)
{
    qg_params *p = qg_params_new();
    CHECK(qg_params_add(p, name, kind, text, text ? strlen(text) : 0, NULL) == QG_OK);
    return p;
}

static void helpers(void)
{
    qg_params *p = params1("name", QG_PARAM_TEXT, "alpha");
    qg_result *r;
    qg_error err;
    qg_error_clear(&err);
    CHECK(qg_insert(mgr, "INSERT INTO tx_items (name, n) VALUES (:name, 12345678901234567890.123456789) "
                         "RETURNING id", p, &r, &err) == QG_OK);
    CHECK_INT(qg_result_affected_rows(r), 1);
    CHECK_STR(qg_result_command(r), "INSERT");
    CHECK(atoi(qg_result_first_value_json(r, NULL)) > 0);
    qg_result_free(r);

    CHECK(qg_query(mgr, "SELECT name, n FROM tx_items WHERE name = :name", p, &r, &err) == QG_OK);
    CHECK_INT(qg_result_row_count(r), 1);
    CHECK_STR(qg_result_rows_json(r, NULL), "[{\"name\":\"alpha\",\"n\":12345678901234567890.123456789}]");
    qg_result_free(r);

    long long affected = -1;
    CHECK(qg_update(mgr, "UPDATE tx_items SET n = n + 1 WHERE name = :name", p, &affected, &err) == QG_OK);
    CHECK_INT(affected, 1);

    /* /query is read only: a write is refused by the server. */
    qg_error_clear(&err);
    CHECK_INT(qg_query(mgr, "DELETE FROM tx_items WHERE name = :name", p, &r, &err), QG_ERR_READ_ONLY);
    CHECK_STR(err.sqlstate, "25006");
    CHECK(r == NULL);

    qg_error_clear(&err);
    CHECK_INT(qg_insert(mgr, "INSERT INTO tx_items (name) VALUES (:name)", p, &r, &err), QG_ERR_CONFLICT);
    CHECK_STR(err.sqlstate, "23505");
    qg_params_free(p);
}

struct two_inserts {
    const char *second_sql;
    int calls;
};

static qg_status insert_two(qg_conn *c, void *arg, qg_error *err)
{
    struct two_inserts *t = arg;
    t->calls++;
    qg_result *r;
    qg_status s = qg_exec(c, "INSERT INTO tx_items (name) VALUES ('first-of-two')", NULL, NULL, &r, err);
    qg_result_free(r);
    if (s != QG_OK)
        return s;
    s = qg_exec(c, t->second_sql, NULL, NULL, &r, err);
    qg_result_free(r);
    return s;
}

static long long count_name(const char *name)
{
    return dbt_admin_value("SELECT count(*) FROM tx_items WHERE name = '%s'", name);
}

/* A failure in the second statement takes the first one with it. */
static void all_or_nothing(void)
{
    struct two_inserts t = {"INSERT INTO tx_items (name) VALUES (1/0)", 0};
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_transaction(mgr, NULL, insert_two, &t, &err), QG_ERR_SQL);
    CHECK_STR(err.sqlstate, "22012");
    CHECK_INT(t.calls, 1); /* not retryable */
    CHECK_INT(count_name("first-of-two"), 0);
    CHECK_INT(dbt_admin_value("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'qgt_tx' "
                              "AND state LIKE 'idle in transaction%%'"), 0);

    t.second_sql = "SELECT 1";
    qg_error_clear(&err);
    CHECK(qg_transaction(mgr, NULL, insert_two, &t, &err) == QG_OK);
    CHECK_INT(count_name("first-of-two"), 1);
}

struct killer {
    atomic_int pid;
};

static void *kill_when_running(void *arg)
{
    struct killer *k = arg;
    for (int i = 0; i < 400 && !atomic_load(&k->pid); i++)
        usleep(5000);
    usleep(100000);
    dbt_admin_value("SELECT pg_terminate_backend(%d)", atomic_load(&k->pid));
    return NULL;
}

struct slow_read {
    struct killer *k;
    int calls;
};

static qg_status slow_read(qg_conn *c, void *arg, qg_error *err)
{
    struct slow_read *sr = arg;
    sr->calls++;
    qg_result *r;
    qg_status s = qg_exec(c, "SELECT pg_backend_pid()", NULL, NULL, &r, err);
    if (s != QG_OK)
        return s;
    if (sr->calls == 1)
        atomic_store(&sr->k->pid, atoi(qg_result_first_value_json(r, NULL)));
    qg_result_free(r);
    s = qg_exec(c, "SELECT pg_sleep(0.6)", NULL, NULL, &r, err);
    qg_result_free(r);
    return s;
}

/* The backend dies mid-transaction: the whole transaction runs again, invisibly. */
static void retry_after_killed_backend(void)
{
    struct killer k = {0};
    struct slow_read sr = {&k, 0};
    pthread_t t;
    pthread_create(&t, NULL, kill_when_running, &k);
    struct qg_pool_stats before, after;
    qg_pool_stats(mgr, &before);
    qg_error err;
    qg_error_clear(&err);
    struct qg_tx_options ro = {.isolation = QG_ISOLATION_DEFAULT, .read_only = true};
    CHECK(qg_transaction(mgr, &ro, slow_read, &sr, &err) == QG_OK);
    pthread_join(t, NULL);
    CHECK_INT(sr.calls, 2);
    qg_pool_stats(mgr, &after);
    CHECK_INT(after.retries - before.retries, 1);
}

/* The insert of slow_write_last with :name and :s (seconds of sleep); NULL on failure. */
static qg_params *slow_insert_params(const char *name, const char *seconds)
{
    qg_params *p = qg_params_new();
    if (p && (qg_params_add(p, "name", QG_PARAM_TEXT, name, strlen(name), NULL) != QG_OK ||
              qg_params_add(p, "s", QG_PARAM_NUMBER, seconds, strlen(seconds), NULL) != QG_OK)) {
        qg_params_free(p);
        p = NULL;
    }
    return p;
}

static qg_status slow_write_last(qg_conn *c, void *arg, qg_error *err)
{
    static const char sql[] = "INSERT INTO tx_items (name, n) SELECT :name, 1 FROM pg_sleep(:s)";
    struct slow_read *sr = arg;
    qg_result *r = NULL;
    qg_status s = QG_OK;
    if (sr->calls++ == 0) {
        s = qg_exec(c, "SELECT pg_backend_pid()", NULL, NULL, &r, err);
        if (s == QG_OK)
            atomic_store(&sr->k->pid, atoi(qg_result_first_value_json(r, NULL)));
        qg_result_free(r);
        /* Once seen returning no rows, the statement takes COMMIT along. */
        qg_params *warm = slow_insert_params("warm-up", "0");
        if (s == QG_OK)
            s = qg_exec(c, sql, warm, NULL, &r, err);
        qg_result_free(r);
        qg_params_free(warm);
    }
    struct qg_exec_options last = {.last = true};
    qg_params *p = slow_insert_params("killed-write", "0.6");
    if (s == QG_OK)
        s = qg_exec(c, sql, p, &last, &r, err);
    qg_result_free(r);
    qg_params_free(p);
    return s;
}

/*
 * A write whose COMMIT travels with it, killed mid-statement: the server said so
 * (57P01) before COMMIT ran, so it runs again and lands once, not "outcome unknown".
 */
static void retry_killed_write_that_carried_commit(void)
{
    struct killer k = {0};
    struct slow_read sr = {&k, 0};
    pthread_t t;
    pthread_create(&t, NULL, kill_when_running, &k);
    qg_error err;
    qg_error_clear(&err);
    CHECK(qg_transaction(mgr, NULL, slow_write_last, &sr, &err) == QG_OK);
    pthread_join(t, NULL);
    CHECK(!err.outcome_unknown);
    CHECK_INT(sr.calls, 2);
    CHECK_INT(count_name("killed-write"), 1);
    CHECK_INT(count_name("warm-up"), 0); /* in the killed transaction */
}

struct serial {
    qg_manager *m;
    pthread_barrier_t *barrier;
    int calls;
    qg_status result;
};

static qg_status serial_body(qg_conn *c, void *arg, qg_error *err)
{
    struct serial *s = arg;
    qg_result *r;
    qg_status st = qg_exec(c, "SELECT sum(n) FROM tx_items", NULL, NULL, &r, err);
    qg_result_free(r);
    if (s->calls++ == 0)
        pthread_barrier_wait(s->barrier); /* both have read before either writes */
    if (st == QG_OK)
        st = qg_exec(c, "INSERT INTO tx_items (name, n) VALUES (md5(random()::text), 1)", NULL, NULL, &r, err);
    qg_result_free(r);
    return st;
}

static void *serial_thread(void *arg)
{
    struct serial *s = arg;
    struct qg_tx_options opt = {.isolation = QG_ISOLATION_SERIALIZABLE, .read_only = false};
    s->result = qg_transaction(s->m, &opt, serial_body, s, NULL);
    return NULL;
}

/* Two serializable transactions that conflict: 40001 is retried and both commit. */
static void serialization_failure_retried(void)
{
    pthread_barrier_t b;
    pthread_barrier_init(&b, NULL, 2);
    struct serial s1 = {mgr, &b, 0, QG_OK}, s2 = {mgr, &b, 0, QG_OK};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, serial_thread, &s1);
    pthread_create(&t2, NULL, serial_thread, &s2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    pthread_barrier_destroy(&b);
    CHECK_INT(s1.result, QG_OK);
    CHECK_INT(s2.result, QG_OK);
    CHECK_INT(s1.calls + s2.calls, 3); /* exactly one of them ran twice */
}

struct idler {
    int calls;
    bool then_exec; /* a statement follows the idle time, else only COMMIT */
};

/* The first call idles in its transaction past a 100 ms timeout: the server ends the session. */
static qg_status idle_too_long(qg_conn *c, void *arg, qg_error *err)
{
    struct idler *id = arg;
    qg_result *r = NULL;
    qg_status s = QG_OK;
    if (id->calls++ == 0) {
        s = qg_exec(c, "SELECT set_config('idle_in_transaction_session_timeout', '100', false)",
                    NULL, NULL, &r, err);
        qg_result_free(r);
        r = NULL;
        usleep(400000);
    }
    if (s == QG_OK && id->then_exec)
        s = qg_exec(c, "SELECT 1", NULL, NULL, &r, err);
    qg_result_free(r);
    return s;
}

/* 25P03 arrives as a FATAL error result: a lost connection (retried), not an SQL error. */
static void idle_in_transaction_timeout(void)
{
    struct idler id = {0, true};
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_transaction(mgr, NULL, idle_too_long, &id, &err), QG_OK);
    CHECK_INT(id.calls, 2);
    /* Killed with only COMMIT to go: 25P03 ends a session idle in its transaction, so
       COMMIT never ran; the server rolled back and the transaction runs again. */
    struct idler at_commit = {0, false};
    qg_error_clear(&err);
    CHECK_INT(qg_transaction(mgr, NULL, idle_too_long, &at_commit, &err), QG_OK);
    CHECK(!err.outcome_unknown);
    CHECK_INT(at_commit.calls, 2);
    qg_result *r;
    CHECK(qg_query(mgr, "SELECT 1", NULL, &r, NULL) == QG_OK);
    qg_result_free(r);
}

static int flaky_calls;
static qg_status flaky(void *arg, qg_error *err)
{
    (void)arg;
    if (++flaky_calls < 3)
        return qg_error_set(err, QG_ERR_DB_UNAVAILABLE, "connection refused");
    return QG_OK;
}

static qg_status unknown_outcome(void *arg, qg_error *err)
{
    (void)arg;
    flaky_calls++;
    qg_error_set(err, QG_ERR_DB_UNAVAILABLE, "lost during COMMIT");
    err->outcome_unknown = true;
    return QG_ERR_DB_UNAVAILABLE;
}

static void with_retry(void)
{
    flaky_calls = 0;
    CHECK(qg_with_retry(2, 0.01, flaky, NULL, NULL) == QG_OK);
    CHECK_INT(flaky_calls, 3);
    flaky_calls = 0;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_with_retry(1, 0.01, flaky, NULL, &err), QG_ERR_DB_UNAVAILABLE);
    CHECK_INT(flaky_calls, 2);
    flaky_calls = 0;
    qg_error_clear(&err);
    CHECK_INT(qg_with_retry(5, 0.01, unknown_outcome, NULL, &err), QG_ERR_DB_UNAVAILABLE);
    CHECK_INT(flaky_calls, 1); /* never retried */
    CHECK(err.outcome_unknown);
}

static void health(void)
{
    struct qg_health h;
    qg_health_check(mgr, &h);
    CHECK(h.healthy);
    CHECK(h.latency_ms > 0);
    CHECK_STR(h.error, "");
    qg_health_cached(mgr, 60000, &h);
    CHECK(h.healthy);
}

static void global_manager(void)
{
    char url[1024];
    snprintf(url, sizeof url, "%s", qgt_database_url());
    setenv("DATABASE_URL", url, 1);
    qg_manager *g1, *g2;
    CHECK(qg_manager_global(&g1, NULL) == QG_OK);
    CHECK(qg_manager_global(&g2, NULL) == QG_OK);
    CHECK(g1 == g2);
    qg_result *r;
    CHECK(qg_query(g1, "SELECT 1 AS one", NULL, &r, NULL) == QG_OK);
    CHECK_STR(qg_result_rows_json(r, NULL), "[{\"one\":1}]");
    qg_result_free(r);
    qg_manager_global_free();
    qg_manager_global_free();
}

int main(void)
{
    qgt_database_url();
    RUN(setup);
    RUN(helpers);
    RUN(all_or_nothing);
    RUN(retry_after_killed_backend);
    RUN(retry_killed_write_that_carried_commit);
    RUN(serialization_failure_retried);
    RUN(idle_in_transaction_timeout);
    RUN(with_retry);
    RUN(health);
    RUN(global_manager);
    qg_manager_free(mgr);
    qg_config_free(&cfg);
    return qgt_done();
}
