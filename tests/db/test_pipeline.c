/* qg_exec_many: statements in order, one round trip per 64, the first error stops the rest. */
#include "dbtest.h"
#include "manager_private.h"

static qg_manager *mgr;
static struct qg_config cfg;

struct many {
    size_t n;
    const char **sql;
    const qg_params **params;
    qg_result **out;
    bool last;
    int syncs;                        /* pipelines sent: Sync messages in libpq's trace */
    PGTransactionStatusType after;    /* right after qg_exec_many */
};

static int count_syncs(FILE *f)
{
    char line[1024];
    int n = 0;
    rewind(f);
    while (fgets(line, sizeof line, f))
        if (strstr(line, "F\t4\tSync"))
            n++;
    return n;
}

static qg_status run_many(qg_conn *c, void *arg, qg_error *err)
{
    struct many *m = arg;
    FILE *f = tmpfile();
    if (f) {
        PQtrace(c->pg, f);
        PQsetTraceFlags(c->pg, PQTRACE_SUPPRESS_TIMESTAMPS);
    }
    struct qg_exec_options opt = {.last = m->last};
    qg_status s = qg_exec_many(c, m->n, m->sql, m->params, &opt, m->out, err);
    m->after = PQtransactionStatus(c->pg);
    if (f) {
        PQuntrace(c->pg);
        m->syncs = count_syncs(f);
        fclose(f);
    }
    return s;
}

/* n statements: sql[i] with :n = i (params NULL when with_n is false). */
static struct many many_new(size_t n, const char *sql, bool with_n)
{
    struct many m = {.n = n};
    m.sql = calloc(n, sizeof *m.sql);
    m.params = calloc(n, sizeof *m.params);
    m.out = calloc(n, sizeof *m.out);
    for (size_t i = 0; i < n; i++) {
        m.sql[i] = sql;
        if (with_n) {
            qg_params *p = qg_params_new();
            char v[32];
            snprintf(v, sizeof v, "%zu", i);
            CHECK(qg_params_add(p, "n", QG_PARAM_NUMBER, v, strlen(v), NULL) == QG_OK);
            m.params[i] = p;
        }
    }
    return m;
}

static void many_free(struct many *m)
{
    for (size_t i = 0; i < m->n; i++) {
        qg_params_free((qg_params *)m->params[i]);
        qg_result_free(m->out[i]);
    }
    free(m->sql);
    free(m->params);
    free(m->out);
}

static qg_status transaction(struct many *m, bool read_only, qg_error *err)
{
    struct qg_tx_options opt = {.isolation = QG_ISOLATION_DEFAULT, .read_only = read_only};
    qg_error_clear(err);
    return qg_transaction(mgr, &opt, run_many, m, err);
}

/* 100 inserts: two round trips (64 + 36), in order, prepared once. */
static void in_order_in_few_trips(void)
{
    dbt_admin_value("DROP TABLE IF EXISTS qgt_pipe; CREATE TABLE qgt_pipe (n int); "
                    "GRANT ALL ON qgt_pipe TO qg");
    struct many m = many_new(100, "INSERT INTO qgt_pipe (n) VALUES (:n)", true);
    qg_error err;
    CHECK(transaction(&m, false, &err) == QG_OK);
    CHECK_INT(m.syncs, 2);
    CHECK_INT(m.after, PQTRANS_INTRANS); /* not seen returning no rows yet: COMMIT apart */
    for (size_t i = 0; i < m.n; i++)
        CHECK(m.out[i] && qg_result_affected_rows(m.out[i]) == 1 &&
              !strcmp(qg_result_command(m.out[i]), "INSERT"));
    CHECK_INT(dbt_admin_value("SELECT count(*) FROM qgt_pipe"), 100);
    CHECK_INT(dbt_admin_value("SELECT sum(n) FROM qgt_pipe"), 99 * 100 / 2);
    many_free(&m);

    /* Seen returning no rows on this connection: the second trip carries COMMIT. */
    m = many_new(100, "INSERT INTO qgt_pipe (n) VALUES (:n)", true);
    m.last = true;
    CHECK(transaction(&m, false, &err) == QG_OK);
    CHECK_INT(m.syncs, 2);
    CHECK_INT(m.after, PQTRANS_IDLE);
    CHECK_INT(dbt_admin_value("SELECT count(*) FROM qgt_pipe"), 200);
    many_free(&m);
}

/* Reads with last: BEGIN READ ONLY, the statements and ROLLBACK in one trip. */
static void reads_in_one_trip(void)
{
    struct many m = many_new(3, "SELECT :n::int * 2 AS twice", true);
    m.last = true;
    qg_error err;
    CHECK(transaction(&m, true, &err) == QG_OK);
    CHECK_INT(m.syncs, 1);
    CHECK_INT(m.after, PQTRANS_IDLE);
    for (size_t i = 0; i < m.n; i++) {
        char want[8];
        snprintf(want, sizeof want, "%zu", i * 2);
        CHECK_STR(qg_result_first_value_json(m.out[i], NULL), want);
    }
    many_free(&m);
}

/* The second statement fails: its index is reported, nothing is committed, no results. */
static void first_error_stops_the_rest(void)
{
    dbt_admin_value("TRUNCATE qgt_pipe");
    const char *sql[] = {"INSERT INTO qgt_pipe VALUES (1)", "SELECT 1/0", "INSERT INTO qgt_pipe VALUES (2)"};
    qg_result *out[3] = {NULL, NULL, NULL};
    struct many m = {.n = 3, .sql = sql, .out = out, .last = true};
    qg_error err;
    CHECK_INT(transaction(&m, false, &err), QG_ERR_SQL);
    CHECK_STR(err.sqlstate, "22012");
    CHECK_INT(err.statement_index, 1);
    CHECK(!out[0] && !out[1] && !out[2]);
    CHECK_INT(dbt_admin_value("SELECT count(*) FROM qgt_pipe"), 0);
    /* The connection is clean afterwards. */
    const char *ok[] = {"SELECT 1"};
    m = (struct many){.n = 1, .sql = ok, .out = out};
    CHECK(transaction(&m, true, &err) == QG_OK);
    qg_result_free(out[0]);
}

/* A JSON array parameter needs the server's types first: one statement a trip. */
static void arrays_one_trip_each(void)
{
    const char *arr = "[1,2,3]";
    qg_params *p = qg_params_new();
    CHECK(qg_params_add_array(p, "ids", arr, strlen(arr), "{1,2,3}", 7, NULL) == QG_OK);
    const char *sql[] = {"SELECT 1 AS one", "SELECT count(*) FROM generate_series(1, 10) g WHERE g = ANY(:ids)"};
    const qg_params *params[] = {NULL, p};
    qg_result *out[2] = {NULL, NULL};
    struct many m = {.n = 2, .sql = sql, .params = params, .out = out, .last = true};
    qg_error err;
    CHECK(transaction(&m, true, &err) == QG_OK);
    CHECK_INT(m.syncs, 3); /* the first statement; Parse with Describe; the array one */
    if (out[1])
        CHECK_STR(qg_result_first_value_json(out[1], NULL), "3");
    qg_result_free(out[0]);
    qg_result_free(out[1]);
    qg_params_free(p);
}

/* MAX_RESULT_BYTES caps the rows of all statements together. */
static void cap_on_the_sum(void)
{
    struct qg_config small;
    qg_manager *m2;
    dbt_config(&small, "qgt_pipeline_cap", (const char *const[]){"MAX_RESULT_BYTES=2048", NULL});
    CHECK(qg_manager_new(&small, &m2, NULL) == QG_OK);
    struct many m = many_new(3, "SELECT repeat('x', 900) AS pad, :n AS n", true);
    struct qg_tx_options ro = {.isolation = QG_ISOLATION_DEFAULT, .read_only = true};
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_transaction(m2, &ro, run_many, &m, &err), QG_ERR_RESULT_TOO_LARGE);
    CHECK_INT(err.statement_index, 2);
    many_free(&m);
    m = many_new(2, "SELECT repeat('x', 900) AS pad, :n AS n", true);
    qg_error_clear(&err);
    CHECK(qg_transaction(m2, &ro, run_many, &m, &err) == QG_OK);
    many_free(&m);
    qg_manager_free(m2);
    qg_config_free(&small);
}

int main(void)
{
    qgt_database_url();
    dbt_config(&cfg, "qgt_pipeline", (const char *const[]){"DB_POOL_SIZE=1", "DB_MAX_OVERFLOW=0", NULL});
    CHECK(qg_manager_new(&cfg, &mgr, NULL) == QG_OK);
    RUN(in_order_in_few_trips);
    RUN(reads_in_one_trip);
    RUN(first_error_stops_the_rest);
    RUN(arrays_one_trip_each);
    RUN(cap_on_the_sum);
    dbt_admin_value("DROP TABLE IF EXISTS qgt_pipe");
    qg_manager_free(mgr);
    qg_config_free(&cfg);
    return qgt_done();
}
