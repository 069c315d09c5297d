/* qg_run (src/core/run.c): a transaction started from an event loop, its done back on the loop. */
#include "dbtest.h"
#include "querygate/run.h"

static qg_manager *mgr;
static struct qg_config cfg;

struct outcome {
    qg_loop *l;
    bool called;
    bool on_loop;
    qg_status s;
    qg_error err;
    char rows[256];
    long long affected;
};

static void done(void *arg, qg_status s, qg_result **results, const qg_error *err)
{
    struct outcome *o = arg;
    o->called = true;
    o->on_loop = qg_loop_current() == o->l;
    o->s = s;
    o->err = *err;
    if (s == QG_OK) {
        qg_result *last = results[0];
        snprintf(o->rows, sizeof o->rows, "%s", qg_result_rows_json(last, NULL));
        o->affected = qg_result_affected_rows(last);
    } else {
        CHECK(results == NULL);
    }
    qg_loop_stop(o->l);
}

struct cancel_at {
    qg_run *r;
};

static void cancel_fn(void *arg)
{
    qg_run_cancel(((struct cancel_at *)arg)->r);
}

/* Runs sql (one statement, no parameters) to done on a loop on this thread;
   with cancel_after > 0, cancels it that many seconds in. */
static void run1(const char *sql, bool read_only, double cancel_after, struct outcome *o)
{
    *o = (struct outcome){0};
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_loop_new(&o->l, &err), QG_OK);
    const char *const sqls[] = {sql};
    struct qg_run_spec spec = {.n = 1, .sql = sqls, .tx = {.read_only = read_only}};
    qg_run *r = NULL;
    CHECK(qg_run_start(o->l, mgr, &spec, done, o, &r));
    CHECK(!o->called); /* never from inside qg_run_start */
    struct cancel_at c = {r};
    qg_loop_timer *t = qg_loop_timer_new(o->l, cancel_fn, &c);
    if (cancel_after > 0)
        qg_loop_timer_at(t, qg_now() + cancel_after);
    qg_loop_run(o->l);
    qg_loop_timer_free(t);
    qg_loop_free(o->l);
    CHECK(o->called);
    CHECK(o->on_loop);
}

static void query(void)
{
    struct outcome o;
    run1("SELECT g AS n FROM generate_series(1, 3) g", true, 0, &o);
    CHECK_INT(o.s, QG_OK);
    CHECK_STR(o.rows, "[{\"n\":1},{\"n\":2},{\"n\":3}]");
    CHECK(!o.err.cancelled);
}

static void failure(void)
{
    struct outcome o;
    run1("SELECT * FROM no_such_table_here", true, 0, &o);
    CHECK_INT(o.s, QG_ERR_SQL);
    CHECK_STR(o.err.sqlstate, "42P01");
    CHECK_INT(o.err.statement_index, 0);
    CHECK(!o.err.cancelled);
}

static void write_committed(void)
{
    struct outcome o;
    run1("INSERT INTO run_items (name) VALUES ('one'), ('two')", false, 0, &o);
    CHECK_INT(o.s, QG_OK);
    CHECK_INT(o.affected, 2);
    CHECK_INT(dbt_admin_value("SELECT count(*) FROM run_items"), 2);
}

static void cancel(void)
{
    struct outcome o;
    double t0 = qg_now();
    run1("SELECT pg_sleep(5)", true, 0.2, &o);
    CHECK(qg_now() - t0 < 1.2);
    CHECK_INT(o.s, QG_ERR_STATEMENT_TIMEOUT);
    CHECK(o.err.cancelled);
    CHECK(!o.err.outcome_unknown);
}

int main(void)
{
    dbt_config(&cfg, "qgt_run", NULL);
    qg_error err;
    qg_error_clear(&err);
    if (qg_manager_new(&cfg, &mgr, &err) != QG_OK) {
        fprintf(stderr, "manager: %s\n", err.message);
        return 1;
    }
    qg_result *res;
    CHECK_INT(qg_insert(mgr, "DROP TABLE IF EXISTS run_items", NULL, &res, &err), QG_OK);
    qg_result_free(res);
    CHECK_INT(qg_insert(mgr, "CREATE TABLE run_items (id serial PRIMARY KEY, name text)", NULL, &res,
                        &err), QG_OK);
    qg_result_free(res);
    RUN(query);
    RUN(failure);
    RUN(write_committed);
    RUN(cancel);
    qg_manager_free(mgr);
    qg_loop_offload_shutdown();
    return qgt_done();
}
