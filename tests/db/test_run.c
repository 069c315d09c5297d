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
static void run_claims(const char *sql, bool read_only, double cancel_after, const char *claims,
                       struct outcome *o);

static void run1(const char *sql, bool read_only, double cancel_after, struct outcome *o)
{
    run_claims(sql, read_only, cancel_after, NULL, o);
}

static void run_claims(const char *sql, bool read_only, double cancel_after, const char *claims,
                       struct outcome *o)
{
    *o = (struct outcome){0};
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_loop_new(&o->l, &err), QG_OK);
    const char *const sqls[] = {sql};
    struct qg_run_spec spec = {.n = 1, .sql = sqls,
                               .tx = {.read_only = read_only, .claims = claims}};
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

/* ---- many runs on one loop over a small pool ----------------------------- */

struct many {
    qg_loop *l;
    int left, ok, timeouts, cancelled;
    int max_waiting;
    qg_manager *m;
};

static void many_done(void *arg, qg_status s, qg_result **results, const qg_error *err)
{
    struct many *y = arg;
    (void)results;
    if (s == QG_OK)
        y->ok++;
    else if (s == QG_ERR_POOL_TIMEOUT)
        y->timeouts++;
    else if (err->cancelled)
        y->cancelled++;
    else
        fprintf(stderr, "run failed: %s\n", err->message);
    if (--y->left == 0)
        qg_loop_stop(y->l);
}

static void sample_waiting(void *arg)
{
    struct many *y = arg;
    struct qg_pool_stats st;
    qg_pool_stats(y->m, &st);
    if (st.waiting > y->max_waiting)
        y->max_waiting = st.waiting;
}

static qg_manager *small_pool(struct qg_config *c, const char *app, const char *timeout)
{
    char t[64];
    snprintf(t, sizeof t, "DB_POOL_TIMEOUT=%s", timeout);
    dbt_config(c, app, (const char *const[]){"DB_POOL_SIZE=2", "DB_MAX_OVERFLOW=0", t, NULL});
    qg_manager *m;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_manager_new(c, &m, &err), QG_OK);
    return m;
}

/* Hundreds of transactions at once over two connections: each waits its turn, none fails. */
static void many_over_few(void)
{
    struct qg_config c;
    struct many y = {.left = 300};
    y.m = small_pool(&c, "qgt_run_many", "30");
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_loop_new(&y.l, &err), QG_OK);
    const char *const sqls[] = {"SELECT pg_backend_pid(), :i::int AS i"};
    qg_params *p[300];
    qg_loop_timer *probe = qg_loop_timer_new(y.l, sample_waiting, &y);
    for (int i = 0; i < 300; i++) {
        p[i] = qg_params_new();
        char v[16];
        int n = snprintf(v, sizeof v, "%d", i);
        CHECK_INT(qg_params_add(p[i], "i", QG_PARAM_NUMBER, v, (size_t)n, &err), QG_OK);
        struct qg_run_spec spec = {.n = 1, .sql = sqls, .params = (const qg_params *const *)&p[i],
                                   .tx = {.read_only = i % 2 == 0}};
        CHECK(qg_run_start(y.l, y.m, &spec, many_done, &y, NULL));
    }
    qg_loop_timer_at(probe, qg_now());
    qg_loop_run(y.l);
    CHECK_INT(y.ok, 300);
    CHECK(y.max_waiting > 0);
    struct qg_pool_stats st;
    qg_pool_stats(y.m, &st);
    CHECK_INT(st.checked_out, 0);
    CHECK_INT(st.waiting, 0);
    CHECK(st.idle <= 2);
    CHECK(dbt_backends("qgt_run_many") <= 2);
    for (int i = 0; i < 300; i++)
        qg_params_free(p[i]);
    qg_loop_timer_free(probe);
    qg_loop_free(y.l);
    qg_manager_free(y.m);
    qg_config_free(&c);
}

static void cancel_run(void *arg)
{
    qg_run_cancel(arg);
}

/* With the pool busy: one waiter gives up at DB_POOL_TIMEOUT (counted), one leaves
   the line at once when its caller goes. */
static void pool_timeout_and_leaving(void)
{
    struct qg_config c;
    struct many y = {.left = 4};
    y.m = small_pool(&c, "qgt_run_wait", "0.5");
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_loop_new(&y.l, &err), QG_OK);
    const char *const slow[] = {"SELECT pg_sleep(1.5)"};
    const char *const fast[] = {"SELECT 1"};
    struct qg_run_spec s1 = {.n = 1, .sql = slow, .tx = {.read_only = true}};
    struct qg_run_spec s2 = {.n = 1, .sql = fast, .tx = {.read_only = true}};
    CHECK(qg_run_start(y.l, y.m, &s1, many_done, &y, NULL));
    CHECK(qg_run_start(y.l, y.m, &s1, many_done, &y, NULL));
    qg_run *leaving;
    CHECK(qg_run_start(y.l, y.m, &s2, many_done, &y, NULL));
    CHECK(qg_run_start(y.l, y.m, &s2, many_done, &y, &leaving));
    qg_loop_timer *t = qg_loop_timer_new(y.l, cancel_run, leaving);
    qg_loop_timer_at(t, qg_now() + 0.1);
    qg_loop_timer *probe = qg_loop_timer_new(y.l, sample_waiting, &y);
    qg_loop_timer_at(probe, qg_now() + 0.05);
    double t0 = qg_now();
    qg_loop_run(y.l);
    CHECK(qg_now() - t0 >= 1.4);
    CHECK_INT(y.ok, 2);
    CHECK_INT(y.timeouts, 1);
    CHECK_INT(y.cancelled, 1);
    CHECK_INT(y.max_waiting, 2);
    struct qg_pool_stats st;
    qg_pool_stats(y.m, &st);
    CHECK_INT((int)st.timeouts, 1);
    CHECK_INT(st.waiting, 0);
    CHECK_INT(st.checked_out, 0);
    qg_loop_timer_free(t);
    qg_loop_timer_free(probe);
    qg_loop_free(y.l);
    qg_manager_free(y.m);
    qg_config_free(&c);
}

/* Its pooled connections killed while idle: the next runs notice and reconnect. */
static void reconnects(void)
{
    struct outcome o;
    run1("SELECT 1 AS one", true, 0, &o);
    CHECK_INT(o.s, QG_OK);
    CHECK(dbt_kill_backends("qgt_run") >= 1);
    run1("SELECT 2 AS two", true, 0, &o);
    CHECK_INT(o.s, QG_OK);
    CHECK_STR(o.rows, "[{\"two\":2}]");
}

/* A token's claims are the transaction's alone: the next request on the connection
   sees none. */
static void claims_per_transaction(void)
{
    struct outcome o;
    const char *q = "SELECT current_setting('request.jwt.claims', true) AS c";
    run_claims(q, true, 0, "{\"sub\":\"alice\"}", &o);
    CHECK_INT(o.s, QG_OK);
    CHECK_STR(o.rows, "[{\"c\":\"{\\\"sub\\\":\\\"alice\\\"}\"}]");
    run_claims(q, false, 0, "{\"sub\":\"bob\"}", &o);
    CHECK_INT(o.s, QG_OK);
    CHECK(strstr(o.rows, "bob") != NULL);
    for (int i = 0; i < 3; i++) {
        run1(q, i % 2 == 0, 0, &o);
        CHECK_INT(o.s, QG_OK);
        CHECK(strstr(o.rows, "alice") == NULL && strstr(o.rows, "bob") == NULL);
    }
}

/* ---- a storm: cancels at random moments, failures, killed backends -------- */

struct storm {
    qg_loop *l;
    qg_manager *m;
    int left, calls[400], ok, cancelled, failed;
    qg_run *runs[400];
    unsigned seed;
};

struct storm_arg {
    struct storm *y;
    int i;
};

static void storm_done(void *arg, qg_status s, qg_result **results, const qg_error *err)
{
    struct storm_arg *a = arg;
    (void)results;
    if (s == QG_OK)
        a->y->ok++;
    else if (err->cancelled)
        a->y->cancelled++;
    else
        a->y->failed++;
    a->y->calls[a->i]++;
    a->y->runs[a->i] = NULL;
    if (--a->y->left == 0)
        qg_loop_stop(a->y->l);
}

static void storm_tick(void *arg)
{
    struct storm *y = arg;
    /* Cancel a few runs still going, at whatever stage they are. */
    for (int k = 0; k < 6; k++) {
        int i = (int)(rand_r(&y->seed) % 400);
        if (y->runs[i])
            qg_run_cancel(y->runs[i]);
    }
}

static void storm_kill(void *arg)
{
    (void)arg;
    (void)dbt_kill_backends("qgt_run_storm");
}

/* Every run ends exactly once, whatever happens to it, and the pool is whole after. */
static void storm(void)
{
    struct qg_config c;
    dbt_config(&c, "qgt_run_storm", (const char *const[]){"DB_POOL_SIZE=3", "DB_MAX_OVERFLOW=2",
                                                          "DB_POOL_TIMEOUT=2", "DB_RETRIES=2",
                                                          "DB_RETRY_DELAY=0.01", NULL});
    struct storm y = {.left = 400, .seed = 7};
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_manager_new(&c, &y.m, &err), QG_OK);
    CHECK_INT(qg_loop_new(&y.l, &err), QG_OK);
    static const char *const kinds[] = {
        "SELECT pg_sleep(0.01), 1 AS a",
        "SELECT 1/0",
        "INSERT INTO run_items (name) VALUES ('storm')",
        "SELECT g FROM generate_series(1, 300) g",
        "UPDATE run_items SET name = name WHERE false RETURNING id",
    };
    struct storm_arg args[400];
    for (int i = 0; i < 400; i++) {
        args[i] = (struct storm_arg){&y, i};
        const char *const *sql = &kinds[i % 5];
        struct qg_run_spec spec = {.n = 1, .sql = sql, .tx = {.read_only = i % 5 == 0 || i % 5 == 3}};
        CHECK(qg_run_start(y.l, y.m, &spec, storm_done, &args[i], &y.runs[i]));
    }
    qg_loop_timer *ticks[40];
    for (int k = 0; k < 40; k++) {
        ticks[k] = qg_loop_timer_new(y.l, k % 10 == 9 ? storm_kill : storm_tick, &y);
        qg_loop_timer_at(ticks[k], qg_now() + 0.005 * k);
    }
    qg_loop_run(y.l);
    for (int i = 0; i < 400; i++)
        if (y.calls[i] != 1)
            fprintf(stderr, "run %d ended %d times\n", i, y.calls[i]);
    CHECK_INT(y.left, 0);
    struct qg_pool_stats st;
    qg_pool_stats(y.m, &st);
    fprintf(stderr, "   %d ok, %d cancelled, %d failed; %llu connects, %llu retries\n", y.ok,
            y.cancelled, y.failed, st.connects, st.retries);
    CHECK(y.ok > 0 && y.cancelled > 0 && y.failed > 0);
    CHECK(st.connects > 5); /* the killed backends were replaced */
    CHECK_INT(st.checked_out, 0);
    CHECK_INT(st.waiting, 0);
    /* What the pool kept is clean and alive: reads on every connection it holds work. */
    for (int k = 0; k < 5; k++) {
        qg_result *r = NULL;
        CHECK_INT(qg_query(y.m, "SELECT current_setting('request.jwt.claims', true) AS c", NULL,
                           &r, &err), QG_OK);
        qg_result_free(r);
    }
    for (int k = 0; k < 40; k++)
        qg_loop_timer_free(ticks[k]);
    qg_loop_free(y.l);
    qg_manager_free(y.m);
    qg_config_free(&c);
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
    RUN(many_over_few);
    RUN(pool_timeout_and_leaving);
    RUN(reconnects);
    RUN(claims_per_transaction);
    RUN(storm);
    qg_manager_free(mgr);
    qg_loop_offload_shutdown();
    return qgt_done();
}
