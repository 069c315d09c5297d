/* Session hygiene and the statement cache, on a pool of one connection. */
#include "dbtest.h"
#include "manager_private.h"

static qg_manager *mgr;
static struct qg_config cfg;

static char *value(const char *sql)
{
    qg_result *r;
    qg_error err;
    qg_error_clear(&err);
    if (qg_query(mgr, sql, NULL, &r, &err) != QG_OK) {
        fprintf(stderr, "%s: %s\n", sql, err.message);
        return strdup("(error)");
    }
    char *v = strdup(qg_result_first_value_json(r, NULL));
    qg_result_free(r);
    return v;
}

#define CHECK_VALUE(sql, want)          \
    do {                                \
        char *v_ = value(sql);          \
        CHECK_STR(v_, want);            \
        free(v_);                       \
    } while (0)

static void write_sql(const char *sql)
{
    qg_result *r;
    qg_error err;
    qg_error_clear(&err);
    if (qg_insert(mgr, sql, NULL, &r, &err) != QG_OK) {
        fprintf(stderr, "%s: %s\n", sql, err.message);
        qgt_failures++;
    }
    qg_result_free(r);
}

static void read_sql(const char *sql)
{
    qg_result *r;
    qg_error err;
    qg_error_clear(&err);
    if (qg_query(mgr, sql, NULL, &r, &err) != QG_OK) {
        fprintf(stderr, "%s: %s\n", sql, err.message);
        qgt_failures++;
    }
    qg_result_free(r);
}

static const char *pid_sql = "SELECT pg_backend_pid()";

/* Changes made by one request never reach the next one on the same connection. */
static void changes_do_not_leak(void)
{
    char *pid = value(pid_sql);
    const char *changers[] = {
        "SELECT set_config('search_path', 'pg_catalog', false)",
        "SET TIME ZONE 'Asia/Tokyo'",
        "SELECT set_config('statement_timeout', '1', false)",
        "SET ROLE qgt_session_role",
        "LISTEN qgt_channel",
        "CREATE TEMP TABLE qgt_temp (x int)",
        "SELECT pg_advisory_lock(4242)",
        "SELECT count(U&\"pg_\\0061dvisory_lock\"(i)) FROM generate_series(100, 120) i",
        "SELECT pg_advisory_lock_shared(4243)",
        "DECLARE qgt_cur CURSOR WITH HOLD FOR SELECT 1",
        "SELECT set_config('role', 'qgt_session_role', false)",
    };
    for (size_t i = 0; i < sizeof changers / sizeof *changers; i++) {
        for (int ro = 0; ro < 2; ro++) {
            if (ro) {
                if (strstr(changers[i], "CREATE") || strstr(changers[i], "LISTEN"))
                    continue; /* refused in a read-only transaction anyway */
                read_sql(changers[i]);
            } else {
                write_sql(changers[i]);
            }
            CHECK_VALUE("SELECT current_setting('search_path')", "\"\\\"$user\\\", public\"");
            CHECK_VALUE("SELECT current_setting('TimeZone')", "\"UTC\"");
            CHECK_VALUE("SELECT current_setting('statement_timeout')", "\"30s\"");
            CHECK_VALUE("SELECT current_user", "\"qg\"");
            CHECK_VALUE("SELECT session_user", "\"qg\"");
            CHECK_VALUE("SELECT count(*) FROM pg_listening_channels()", "0");
            CHECK_VALUE("SELECT to_regclass('pg_temp.qgt_temp') IS NULL", "true");
            CHECK_VALUE("SELECT count(*) FROM pg_prepared_statements WHERE name = 'qgt_mine'", "0");
            CHECK_VALUE("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()", "0");
            CHECK_VALUE("SELECT count(*) FROM pg_cursors WHERE name = 'qgt_cur'", "0");
        }
    }
    char *pid2 = value(pid_sql);
    CHECK_STR(pid2, pid); /* same connection all along: it was reset, not replaced */
    free(pid);
    free(pid2);
}

static void prepared_on_second_use(void)
{
    const char *sql = "SELECT 'cache-probe' AS x";
    read_sql(sql);
    CHECK_VALUE("SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT ''cache-probe'' AS x'", "0");
    read_sql(sql);
    CHECK_VALUE("SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT ''cache-probe'' AS x'", "1");
    read_sql(sql);
    CHECK_VALUE("SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT ''cache-probe'' AS x'", "1");
}

/* DDL changes the result type of a prepared SELECT *: the request still succeeds. */
static void stale_plan_is_retried(void)
{
    write_sql("DROP TABLE IF EXISTS qgt_plan");
    write_sql("CREATE TABLE qgt_plan (a int)");
    write_sql("INSERT INTO qgt_plan VALUES (1)");
    CHECK_VALUE("SELECT * FROM qgt_plan", "1");
    CHECK_VALUE("SELECT * FROM qgt_plan", "1");
    write_sql("ALTER TABLE qgt_plan ADD COLUMN b int DEFAULT 7");
    qg_result *r;
    qg_error err;
    qg_error_clear(&err);
    CHECK(qg_query(mgr, "SELECT * FROM qgt_plan", NULL, &r, &err) == QG_OK);
    if (r)
        CHECK_STR(qg_result_rows_json(r, NULL), "[{\"a\":1,\"b\":7}]");
    qg_result_free(r);
}

/* More distinct statements than the cache holds: old ones are deallocated. */
static void cache_eviction(void)
{
    char sql[64];
    for (int i = 0; i < 140; i++) {
        snprintf(sql, sizeof sql, "SELECT %d AS n", i);
        read_sql(sql);
        read_sql(sql); /* the second use prepares it */
    }
    char *n = value("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'qg\\_%'");
    CHECK(atoi(n) <= 128);
    CHECK(atoi(n) > 0);
    free(n);
}

static void arrays_bind_by_type(void)
{
    const char *arr = "[1,2,3]";
    qg_params *p = qg_params_new();
    CHECK(qg_params_add_array(p, "ids", arr, strlen(arr), "{1,2,3}", 7, NULL) == QG_OK);
    struct {
        const char *sql, *want;
    } cases[] = {
        {"SELECT count(*) FROM generate_series(1, 10) g WHERE g = ANY(:ids)", "3"},
        {"SELECT jsonb_array_length(:ids)", "3"},
        {"SELECT :ids::text", "\"[1,2,3]\""},
        {"SELECT array_length(:ids::int8[], 1)", "3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (int twice = 0; twice < 3; twice++) { /* also once the statement is cached */
            qg_result *r;
            qg_error err;
            qg_error_clear(&err);
            if (qg_query(mgr, cases[i].sql, p, &r, &err) != QG_OK) {
                fprintf(stderr, "%s: %s\n", cases[i].sql, err.message);
                qgt_failures++;
                continue;
            }
            CHECK_STR(qg_result_first_value_json(r, NULL), cases[i].want);
            qg_result_free(r);
        }
    }
    qg_params_free(p);
}

/* A failing statement in the first pipeline leaves a clean, reusable connection. */
static void errors_leave_clean_connection(void)
{
    char *pid = value(pid_sql);
    for (int i = 0; i < 3; i++) {
        qg_result *r;
        qg_error err;
        qg_error_clear(&err);
        CHECK_INT(qg_query(mgr, "SELECT 1/0", NULL, &r, &err), QG_ERR_SQL);
        CHECK_STR(err.sqlstate, "22012");
        qg_error_clear(&err);
        CHECK_INT(qg_query(mgr, "SELECT * FROM no_such_table", NULL, &r, &err), QG_ERR_SQL);
        CHECK_INT(err.position, 15);
    }
    CHECK_VALUE("SELECT 41 + 1", "42");
    char *pid2 = value(pid_sql);
    CHECK_STR(pid2, pid);
    free(pid);
    free(pid2);
}

struct last_run {
    const char *sql;
    PGTransactionStatusType after;
};

static qg_status run_last(qg_conn *c, void *arg, qg_error *err)
{
    struct last_run *lr = arg;
    struct qg_exec_options opt = {.last = true};
    qg_result *r;
    qg_status s = qg_exec(c, lr->sql, NULL, &opt, &r, err);
    qg_result_free(r);
    lr->after = PQtransactionStatus(c->pg);
    return s;
}

/*
 * The last statement carries ROLLBACK, or COMMIT and the reset once the
 * connection has seen it return no rows (rows are capped after the server ran
 * the statement, and a COMMIT already sent would stand): one round trip.
 */
static void last_statement_ends_transaction(void)
{
    struct last_run rows = {"SELECT 1", PQTRANS_UNKNOWN};
    struct qg_tx_options ro = {.isolation = QG_ISOLATION_DEFAULT, .read_only = true};
    CHECK(qg_transaction(mgr, &ro, run_last, &rows, NULL) == QG_OK);
    CHECK_INT(rows.after, PQTRANS_IDLE);
    struct qg_tx_options rw = {.isolation = QG_ISOLATION_DEFAULT, .read_only = false};
    for (int i = 0; i < 2; i++) {
        CHECK(qg_transaction(mgr, &rw, run_last, &rows, NULL) == QG_OK);
        CHECK_INT(rows.after, PQTRANS_INTRANS);
    }
    struct last_run none = {"SET LOCAL work_mem = '8MB'", PQTRANS_UNKNOWN};
    CHECK(qg_transaction(mgr, &rw, run_last, &none, NULL) == QG_OK);
    CHECK_INT(none.after, PQTRANS_INTRANS); /* not seen yet */
    CHECK(qg_transaction(mgr, &rw, run_last, &none, NULL) == QG_OK);
    CHECK_INT(none.after, PQTRANS_IDLE);
}


/* The same changes, made by a statement that then fails: the reset runs all the same. */
static void failed_requests_do_not_leak(void)
{
    const char *changers[] = {
        "SELECT pg_advisory_lock(4250), 1/0",
        "SELECT set_config('search_path', 'pg_catalog', false), 1/0",
        "SELECT nextval('qgt_seq'), 1/0",
    };
    write_sql("CREATE SEQUENCE IF NOT EXISTS qgt_seq");
    char *pid = value(pid_sql);
    for (size_t i = 0; i < sizeof changers / sizeof *changers; i++) {
        for (int ro = 0; ro < 2; ro++) {
            qg_result *r = NULL;
            qg_error err;
            qg_error_clear(&err);
            qg_status s = ro ? qg_query(mgr, changers[i], NULL, &r, &err)
                             : qg_insert(mgr, changers[i], NULL, &r, &err);
            CHECK(s != QG_OK);
            qg_result_free(r);
            CHECK_VALUE("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()", "0");
            CHECK_VALUE("SELECT current_setting('search_path')", "\"\\\"$user\\\", public\"");
        }
    }
    /* lastval() after a failed write: sequence state is not transactional. */
    qg_result *r = NULL;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_query(mgr, "SELECT lastval()", NULL, &r, &err), QG_ERR_SQL);
    CHECK_STR(err.sqlstate, "55000");
    char *pid2 = value(pid_sql);
    CHECK_STR(pid2, pid);
    free(pid);
    free(pid2);
}

/* A write's lastval() is not the next request's: the new id of one caller stays its own. */
static void lastval_does_not_leak(void)
{
    write_sql("CREATE TABLE IF NOT EXISTS qgt_ids (id serial PRIMARY KEY, x int)");
    write_sql("INSERT INTO qgt_ids (x) VALUES (1) RETURNING id");
    write_sql("INSERT INTO qgt_ids (x) VALUES (1)");
    qg_result *r = NULL;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_query(mgr, "SELECT lastval()", NULL, &r, &err), QG_ERR_SQL);
    CHECK_STR(err.sqlstate, "55000");
    qg_error_clear(&err);
    CHECK_INT(qg_query(mgr, "SELECT currval('qgt_ids_id_seq')", NULL, &r, &err), QG_ERR_SQL);
    CHECK_STR(err.sqlstate, "55000");
}

/*
 * PREPARE outlives ROLLBACK, also from dynamic SQL no keyword scan sees: a
 * session holding a statement the service did not prepare is never reused.
 */
static void caller_prepared_statements_close_the_connection(void)
{
    const char *preparers[] = {
        "PREPARE qgt_mine AS SELECT 1",
        "DO $$BEGIN EXECUTE 'PREP' || 'ARE qgt_dyn AS SELECT 2'; END$$",
    };
    for (size_t i = 0; i < sizeof preparers / sizeof *preparers; i++) {
        for (int ro = 0; ro < 2; ro++) {
            char *pid = value(pid_sql);
            if (ro)
                read_sql(preparers[i]);
            else
                write_sql(preparers[i]);
            CHECK_VALUE("SELECT count(*) FROM pg_prepared_statements WHERE from_sql", "0");
            char *pid2 = value(pid_sql);
            CHECK(strcmp(pid, pid2) != 0);
            free(pid);
            free(pid2);
        }
    }
}

static qg_status update_as(uint64_t caller, const char *sql, long long *affected, qg_error *err);

struct as_one {
    const char *sql;
    long long affected;
    char *first;
};

static qg_status run_as_one(qg_conn *c, void *arg, qg_error *err)
{
    struct as_one *o = arg;
    qg_result *r;
    struct qg_exec_options opt = {.last = true};
    qg_status s = qg_exec(c, o->sql, NULL, &opt, &r, err);
    if (s == QG_OK) {
        o->affected = qg_result_affected_rows(r);
        free(o->first);
        o->first = strdup(qg_result_first_value_json(r, NULL));
        qg_result_free(r);
    }
    return s;
}

static qg_status update_as(uint64_t caller, const char *sql, long long *affected, qg_error *err)
{
    struct as_one o = {sql, 0, NULL};
    struct qg_tx_options opt = {.isolation = QG_ISOLATION_DEFAULT, .caller = caller};
    qg_status s = qg_transaction(mgr, &opt, run_as_one, &o, err);
    *affected = o.affected;
    free(o.first);
    return s;
}

static char *read_as(uint64_t caller, const char *sql)
{
    struct as_one o = {sql, 0, NULL};
    struct qg_tx_options opt = {.isolation = QG_ISOLATION_DEFAULT, .read_only = true, .caller = caller};
    qg_error err;
    qg_error_clear(&err);
    if (qg_transaction(mgr, &opt, run_as_one, &o, &err) != QG_OK) {
        fprintf(stderr, "%s: %s\n", sql, err.message);
        free(o.first);
        return strdup("(error)");
    }
    return o.first;
}

/*
 * Issue 10's attack on the statement cache: a write caller's UPDATE is
 * prepared; a read caller finds its name, deallocates it and prepares another
 * UPDATE under that name. The write caller's next UPDATE must be its own.
 */
static void prepared_statements_cannot_be_hijacked(void)
{
    const uint64_t adm = 1, r2 = 2;
    write_sql("DROP TABLE IF EXISTS qgt_items");
    write_sql("CREATE TABLE qgt_items (id int PRIMARY KEY, name text, qty int)");
    write_sql("INSERT INTO qgt_items SELECT g, 'item' || g, g FROM generate_series(1, 8) g");
    const char *upd = "UPDATE qgt_items SET qty = 10 WHERE id = 1";
    long long n = 0;
    qg_error err;
    for (int i = 0; i < 2; i++) {
        qg_error_clear(&err);
        CHECK(update_as(adm, upd, &n, &err) == QG_OK);
        CHECK_INT(n, 1);
    }
    /* Another caller sees none of its prepared statements, SQL text included. */
    char *seen = read_as(r2, "SELECT count(*) FROM pg_prepared_statements");
    CHECK_STR(seen, "0");
    free(seen);
    /* Even knowing the name, as a caller sharing the key would, replacing it fails. */
    for (int i = 0; i < 2; i++) {
        qg_error_clear(&err);
        CHECK(update_as(adm, upd, &n, &err) == QG_OK);
    }
    char *names = read_as(adm, "SELECT string_agg(name, ',') FROM pg_prepared_statements");
    CHECK(strstr(names, "qg_") != NULL);
    char hijack[512];
    const char *name = names + 1;
    size_t len = strcspn(name, ",\"");
    snprintf(hijack, sizeof hijack,
             "DO $$BEGIN EXECUTE 'DEALLOCATE %.*s'; EXECUTE 'PREP' || 'ARE %.*s AS "
             "UPDATE qgt_items SET name = ''pwned'', qty = -1'; END$$",
             (int)len, name, (int)len, name);
    free(names);
    qg_error_clear(&err);
    CHECK(update_as(adm, hijack, &n, &err) == QG_OK); /* its own caller id: no DEALLOCATE first */
    qg_error_clear(&err);
    CHECK(update_as(adm, upd, &n, &err) == QG_OK);
    CHECK_INT(n, 1);
    CHECK_VALUE("SELECT count(*) FROM qgt_items WHERE name = 'pwned' OR qty < 0", "0");
}

/* Statements that would end or reshape the service's transaction are refused unsent. */
static void transaction_control_is_refused(void)
{
    const char *refused[] = {
        "COMMIT", "commit", "  /* x */ -- y\n COMMIT", "END", "ABORT", "ROLLBACK",
        "ROLLBACK TO SAVEPOINT a", "BEGIN", "START TRANSACTION", "SAVEPOINT a",
        "RELEASE SAVEPOINT a", "PREPARE TRANSACTION 'x'", "COMMIT PREPARED 'x'",
        "ROLLBACK PREPARED 'x'", "SET TRANSACTION READ WRITE",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SET transaction_read_only = off", "SET LOCAL \"transaction_read_only\" TO off",
        "RESET transaction_read_only",
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        for (int ro = 0; ro < 2; ro++) {
            qg_result *r = NULL;
            qg_error err;
            qg_error_clear(&err);
            qg_status s = ro ? qg_query(mgr, refused[i], NULL, &r, &err)
                             : qg_insert(mgr, refused[i], NULL, &r, &err);
            if (s != QG_ERR_TRANSACTION_CONTROL)
                fprintf(stderr, "%s: %s\n", refused[i], err.message);
            CHECK_INT(s, QG_ERR_TRANSACTION_CONTROL);
        }
    }
    /* Words that only look alike stay statements. */
    CHECK_VALUE("SELECT 1 AS \"commit\"", "1");
    CHECK_VALUE("SELECT 'BEGIN' AS x", "\"BEGIN\"");
    CHECK_VALUE("/* COMMIT */ SELECT 2", "2");
}

/* COPY is answered at once, never waited on, also where it would copy in. */
static void copy_is_refused(void)
{
    const char *copies[] = {"COPY (SELECT 1) TO STDOUT", "copy qgt_items FROM STDIN",
                            "/* c */ COPY (SELECT 1) TO STDOUT (FORMAT csv)"};
    for (size_t i = 0; i < sizeof copies / sizeof *copies; i++) {
        qg_result *r = NULL;
        qg_error err;
        qg_error_clear(&err);
        CHECK_INT(qg_insert(mgr, copies[i], NULL, &r, &err), QG_ERR_UNSUPPORTED_STATEMENT);
        qg_error_clear(&err);
        CHECK_INT(qg_query(mgr, copies[i], NULL, &r, &err), QG_ERR_UNSUPPORTED_STATEMENT);
    }
    CHECK_VALUE("SELECT 3", "3");
}

/* A COMMIT that fails (a deferred constraint) still leaves a reset session. */
static void failed_commit_still_resets(void)
{
    write_sql("DROP TABLE IF EXISTS qgt_def");
    write_sql("CREATE TABLE qgt_def (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)");
    write_sql("INSERT INTO qgt_def VALUES (1)");
    const char *sql = "WITH s AS (SELECT set_config('search_path', 'pg_catalog', false)) "
                      "INSERT INTO qgt_def SELECT 1 FROM s";
    for (int i = 0; i < 3; i++) { /* also once it rides with COMMIT in one pipeline */
        qg_result *r = NULL;
        qg_error err;
        qg_error_clear(&err);
        CHECK_INT(qg_insert(mgr, sql, NULL, &r, &err), QG_ERR_CONFLICT);
        CHECK_VALUE("SELECT current_setting('search_path')", "\"\\\"$user\\\", public\"");
    }
}

int main(void)
{
    qgt_database_url();
    dbt_admin_value("DO $$BEGIN CREATE ROLE qgt_session_role; EXCEPTION WHEN duplicate_object THEN NULL; END$$");
    dbt_admin_value("GRANT qgt_session_role TO qg");
    dbt_config(&cfg, "qgt_session", (const char *const[]){"DB_POOL_SIZE=1", "DB_MAX_OVERFLOW=0", NULL});
    CHECK(qg_manager_new(&cfg, &mgr, NULL) == QG_OK);
    RUN(changes_do_not_leak);
    RUN(failed_requests_do_not_leak);
    RUN(lastval_does_not_leak);
    RUN(caller_prepared_statements_close_the_connection);
    RUN(prepared_statements_cannot_be_hijacked);
    RUN(transaction_control_is_refused);
    RUN(copy_is_refused);
    RUN(failed_commit_still_resets);
    RUN(prepared_on_second_use);
    RUN(stale_plan_is_retried);
    RUN(cache_eviction);
    RUN(arrays_bind_by_type);
    RUN(errors_leave_clean_connection);
    RUN(last_statement_ends_transaction);
    qg_manager_free(mgr);
    qg_config_free(&cfg);
    return qgt_done();
}
