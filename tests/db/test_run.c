/* qg_run (src/core/run.c): a transaction started from an event loop, its done back on the loop. */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

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
static void storm_round(unsigned seed)
{
    struct qg_config c;
    dbt_config(&c, "qgt_run_storm", (const char *const[]){"DB_POOL_SIZE=3", "DB_MAX_OVERFLOW=2",
                                                          "DB_POOL_TIMEOUT=2", "DB_RETRIES=2",
                                                          "DB_RETRY_DELAY=0.01", NULL});
    struct storm y = {.left = 400, .seed = seed};
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
    /* NOTE: kills close to cancels: a backend ended while its run waits for the cancel
       request to finish (before the connection may go back) makes the socket readable
       then, with no round trip in flight. */
    qg_loop_timer *ticks[120];
    for (int k = 0; k < 120; k++) {
        ticks[k] = qg_loop_timer_new(y.l, k % 3 == 2 ? storm_kill : storm_tick, &y);
        qg_loop_timer_at(ticks[k], qg_now() + 0.002 * k);
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
    for (int k = 0; k < 120; k++)
        qg_loop_timer_free(ticks[k]);
    qg_loop_free(y.l);
    qg_manager_free(y.m);
    qg_config_free(&c);
}

static void storm(void)
{
    storm_round(7);
}

/* ---- loops on two threads taking turns on one connection ------------------ */

#define TURNS 1000

/*
 * NOTE: the race below lasts a few instructions, from the pool's lock let go
 * to what the run does next. This program is linked with
 * -Wl,--wrap=pthread_mutex_unlock (tests/CMakeLists.txt): on a lane's thread
 * every unlock of the core's is followed by a nap, so that the other lane
 * gets in there nearly every turn rather than once in thousands.
 */
int __real_pthread_mutex_unlock(pthread_mutex_t *mu);
int __wrap_pthread_mutex_unlock(pthread_mutex_t *mu);

static _Thread_local bool on_lane;

int __wrap_pthread_mutex_unlock(pthread_mutex_t *mu)
{
    int rc = __real_pthread_mutex_unlock(mu);
    if (on_lane) {
        struct timespec ts = {0, 20 * 1000};
        nanosleep(&ts, NULL);
    }
    return rc;
}

struct lane {
    qg_manager *m;
    qg_loop *l;
    int left, ok;
};

static void lane_start(struct lane *ln);

static void lane_done(void *arg, qg_status s, qg_result **results, const qg_error *err)
{
    struct lane *ln = arg;
    (void)results;
    (void)err;
    if (s == QG_OK)
        ln->ok++;
    if (--ln->left == 0)
        qg_loop_stop(ln->l);
    else
        lane_start(ln);
}

/* One run at a time, the next started from the last one's done: it joins the line
   (the other thread holds the connection) as its first and only waiter. */
static void lane_start(struct lane *ln)
{
    static const char *const sql[] = {"SELECT 1"};
    struct qg_run_spec spec = {.n = 1, .sql = sql, .tx = {.read_only = true}};
    CHECK(qg_run_start(ln->l, ln->m, &spec, lane_done, ln, NULL));
}

static void *lane_main(void *arg)
{
    struct lane *ln = arg;
    on_lane = true;
    lane_start(ln);
    qg_loop_run(ln->l);
    return NULL;
}

/*
 * NOTE: a connection checked in on another thread may serve a run's waiter as
 * soon as qgp_pool_take has put it in line, before the run looked at what it
 * got: the run must not take that for a connection had at once and then be
 * served again by its wake (it ran on two connections and lost the first).
 */
static void two_loops_one_connection(void)
{
    struct qg_config c;
    dbt_config(&c, "qgt_run_lanes", (const char *const[]){"DB_POOL_SIZE=1", "DB_MAX_OVERFLOW=0",
                                                          "DB_POOL_TIMEOUT=30", NULL});
    qg_manager *m;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_manager_new(&c, &m, &err), QG_OK);
    struct lane lanes[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        lanes[i] = (struct lane){.m = m, .left = TURNS};
        CHECK_INT(qg_loop_new(&lanes[i].l, &err), QG_OK);
    }
    for (int i = 0; i < 2; i++)
        CHECK_INT(pthread_create(&th[i], NULL, lane_main, &lanes[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    struct qg_pool_stats st;
    qg_pool_stats(m, &st);
    fprintf(stderr, "   %d + %d ok; %llu connects\n", lanes[0].ok, lanes[1].ok, st.connects);
    CHECK_INT(lanes[0].ok + lanes[1].ok, 2 * TURNS);
    CHECK_INT(st.checked_out, 0);
    CHECK_INT(st.waiting, 0);
    /* One connection all along: no run opened a second one beside it. */
    CHECK_INT((int)st.connects, 1);
    CHECK(dbt_backends("qgt_run_lanes") <= 1);
    for (int i = 0; i < 2; i++)
        qg_loop_free(lanes[i].l);
    qg_manager_free(m);
    qg_config_free(&c);
}

/* ---- a socket that speaks while its run waits for a cancel to finish ------ */

static void nap(void *arg)
{
    (void)arg;
    usleep(800000);
}

struct quiet {
    struct outcome o;
    int naps_done;
};

static void nap_done(void *arg)
{
    struct quiet *q = arg;
    if (++q->naps_done == 16 && q->o.called)
        qg_loop_stop(q->o.l);
}

static void quiet_done(void *arg, qg_status s, qg_result **results, const qg_error *err)
{
    struct quiet *q = arg;
    (void)results;
    q->o.called = true;
    q->o.s = s;
    q->o.err = *err;
    if (q->naps_done == 16)
        qg_loop_stop(q->o.l);
}

static void kill_app(void *arg)
{
    (void)arg;
    CHECK(dbt_kill_backends("qgt_run_quiet") >= 1);
}

/*
 * A run whose statement ended while its cancel request still waits for a helper
 * thread holds its connection until the cancel is done. The backend ended then
 * (its socket readable, no round trip in flight) must not step anything.
 */
static void quiet_while_releasing(void)
{
    struct qg_config c;
    dbt_config(&c, "qgt_run_quiet", (const char *const[]){"DB_POOL_SIZE=1", "DB_MAX_OVERFLOW=0",
                                                          NULL});
    qg_manager *m;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_manager_new(&c, &m, &err), QG_OK);
    /* NOTE: its connection is open before the clock starts: on a loaded machine opening
       one can outlast the naps, and the cancel would then reach the statement. */
    qg_result *warm = NULL;
    CHECK_INT(qg_query(m, "SELECT 1 AS one", NULL, &warm, &err), QG_OK);
    qg_result_free(warm);
    struct quiet q = {{0}, 0};
    struct outcome o = {0};
    CHECK_INT(qg_loop_new(&o.l, &err), QG_OK);
    q.o.l = o.l;
    const char *const sql[] = {"SELECT pg_sleep(0.1) IS NULL AS slept"};
    struct qg_run_spec spec = {.n = 1, .sql = sql, .tx = {.read_only = true}};
    qg_run *r = NULL;
    CHECK(qg_run_start(o.l, m, &spec, quiet_done, &q, &r));
    /* Every helper thread busy: the cancel request waits its turn. */
    for (int i = 0; i < 16; i++)
        CHECK(qg_loop_offload(o.l, nap, nap_done, &q));
    struct cancel_at ca = {r};
    qg_loop_timer *t1 = qg_loop_timer_new(o.l, cancel_fn, &ca);
    qg_loop_timer *t2 = qg_loop_timer_new(o.l, kill_app, NULL);
    qg_loop_timer_at(t1, qg_now() + 0.05);
    qg_loop_timer_at(t2, qg_now() + 0.25);
    qg_loop_run(o.l);
    CHECK(q.o.called);
    CHECK_INT(q.o.s, QG_OK); /* it ended before the cancel could reach it */
    qg_loop_timer_free(t1);
    qg_loop_timer_free(t2);
    qg_loop_free(o.l);
    /* The pool notices the dead connection and opens another. */
    qg_result *res = NULL;
    CHECK_INT(qg_query(m, "SELECT 1 AS one", NULL, &res, &err), QG_OK);
    qg_result_free(res);
    qg_manager_free(m);
    qg_config_free(&c);
}

/* ---- streams (qg_run_stream_start) ----------------------------------------- */

struct stream_out {
    qg_loop *l;
    qg_run *r;
    bool auto_more;          /* ask for the next batch inside each rows callback */
    int columns_calls, batches;
    char columns[256];
    char first[512];         /* the first line */
    long long rows, row_count;
    size_t max_batch;
    bool ended, rows_after_end;
    qg_status s;
    qg_error err;
};

static void st_columns(void *arg, const char *json, size_t len)
{
    struct stream_out *o = arg;
    CHECK(o->batches == 0 && !o->ended);
    o->columns_calls++;
    snprintf(o->columns, sizeof o->columns, "%.*s", (int)len, json);
}

static void st_rows(void *arg, char *lines, size_t len, long long n)
{
    struct stream_out *o = arg;
    CHECK(o->columns_calls == 1);
    o->rows_after_end |= o->ended;
    if (o->batches++ == 0)
        snprintf(o->first, sizeof o->first, "%.*s", (int)strcspn(lines, "\n"), lines);
    long long lf = 0;
    for (size_t i = 0; i < len; i++)
        lf += lines[i] == '\n';
    CHECK_INT(lf, n);
    CHECK(len > 0 && lines[len - 1] == '\n');
    o->rows += n;
    if (len > o->max_batch)
        o->max_batch = len;
    free(lines);
    if (o->auto_more)
        qg_run_stream_more(o->r);
}

static void st_end(void *arg, qg_status s, long long row_count, const qg_error *err)
{
    struct stream_out *o = arg;
    o->ended = true;
    o->s = s;
    o->row_count = row_count;
    o->err = *err;
    o->r = NULL;
    qg_loop_stop(o->l);
}

static const struct qg_run_stream st_cb = {st_columns, st_rows, st_end, 4096};

static void stream_begin(const char *sql, bool auto_more, struct stream_out *o)
{
    *o = (struct stream_out){.auto_more = auto_more};
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_loop_new(&o->l, &err), QG_OK);
    const char *const sqls[] = {sql};
    struct qg_run_spec spec = {.n = 1, .sql = sqls, .tx = {.read_only = true}};
    CHECK(qg_run_stream_start(o->l, mgr, &spec, &st_cb, o, &o->r));
    CHECK(o->columns_calls == 0 && !o->ended); /* never from inside the start */
}

static void stop_loop(void *arg)
{
    qg_loop_stop(arg);
}

/* Runs o's loop for secs (or until the stream ends). */
static void stream_for(struct stream_out *o, double secs)
{
    qg_loop_timer *t = qg_loop_timer_new(o->l, stop_loop, o->l);
    qg_loop_timer_at(t, qg_now() + secs);
    if (!o->ended)
        qg_loop_run(o->l);
    qg_loop_timer_free(t);
}

struct until {
    struct stream_out *o;
    int batches;
    double deadline;
    qg_loop_timer *t;
};

static void until_check(void *arg)
{
    struct until *u = arg;
    if (u->o->batches >= u->batches || u->o->ended || qg_now() > u->deadline)
        qg_loop_stop(u->o->l);
    else
        qg_loop_timer_at(u->t, qg_now() + 0.01);
}

/* Runs o's loop until it has had `batches` batches (or ended), at most 15 s: a loaded
   machine may take long for the first; that none more comes is checked by stream_for. */
static void stream_until(struct stream_out *o, int batches)
{
    struct until u = {o, batches, qg_now() + 15, NULL};
    u.t = qg_loop_timer_new(o->l, until_check, &u);
    qg_loop_timer_at(u.t, qg_now());
    if (!o->ended)
        qg_loop_run(o->l);
    qg_loop_timer_free(u.t);
}

static void stream_finish(struct stream_out *o)
{
    if (!o->ended)
        qg_loop_run(o->l);
    qg_loop_free(o->l);
    CHECK(o->ended);
    CHECK(!o->rows_after_end);
}

static void stream_batches(void)
{
    struct stream_out o;
    stream_begin("SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 20000) g", true, &o);
    stream_finish(&o);
    CHECK_INT(o.s, QG_OK);
    CHECK_INT(o.columns_calls, 1);
    CHECK_STR(o.columns, "[{\"name\":\"g\",\"type\":\"int4\"},{\"name\":\"pad\",\"type\":\"text\"}]");
    CHECK(strncmp(o.first, "{\"g\":1,\"pad\":\"xxx", 17) == 0);
    CHECK_INT(o.rows, 20000);
    CHECK_INT(o.row_count, 20000);
    CHECK(o.batches > 100);                  /* 2.3 MB of rows in 4 KiB batches */
    CHECK(o.max_batch < 4096 + 200);         /* a batch ends with the row that filled it */
    /* Past MAX_RESULT_ROWS (and its bytes) of an ordinary answer: a stream has no cap. */
    stream_begin("SELECT g FROM generate_series(1, 200000) g", true, &o);
    stream_finish(&o);
    CHECK_INT(o.s, QG_OK);
    CHECK_INT(o.rows, 200000);
    /* No rows: the columns, then the end. */
    stream_begin("SELECT 1 AS a WHERE false", true, &o);
    stream_finish(&o);
    CHECK_INT(o.s, QG_OK);
    CHECK_STR(o.columns, "[{\"name\":\"a\",\"type\":\"int4\"}]");
    CHECK_INT(o.batches, 0);
    CHECK_INT(o.row_count, 0);
}

/* A streamed row is the same JSON as the ordinary answer's. */
static void stream_same_json(void)
{
    const char *q = "SELECT 1::int8 AS i, 2.50::numeric AS n, 'NaN'::float8 AS f, true AS b, "
                    "'{\"a\":[1,null]}'::jsonb AS j, ARRAY[[1,2],[3,NULL]] AS arr, "
                    "'\\x00ff'::bytea AS by, '2024-03-10 10:34:56.789+00'::timestamptz AS ts, "
                    "'P1DT2H'::interval AS iv, 'a\"b\\c'::text AS t, NULL::text AS z, 5 AS i";
    struct outcome n;
    run1(q, true, 0, &n);
    CHECK_INT(n.s, QG_OK);
    struct stream_out o;
    stream_begin(q, true, &o);
    stream_finish(&o);
    CHECK_INT(o.s, QG_OK);
    char want[600];
    snprintf(want, sizeof want, "[%s]", o.first);
    CHECK_STR(want, n.rows);
}

/* A batch, then nothing while the caller does not ask: the server waits, memory is bounded. */
static void stream_back_pressure(void)
{
    struct stream_out o;
    stream_begin("SELECT g, repeat('y', 200) AS pad FROM generate_series(1, 5000000) g", false, &o);
    stream_until(&o, 1);
    stream_for(&o, 0.5);
    CHECK_INT(o.batches, 1);
    long long seen = o.rows;
    CHECK(seen >= 1 && seen < 100);
    qg_run_stream_more(o.r);
    stream_until(&o, 2);
    stream_for(&o, 0.3);
    CHECK_INT(o.batches, 2);
    qg_run_stream_more(o.r);
    stream_until(&o, 3);
    stream_for(&o, 0.3);
    CHECK_INT(o.batches, 3);
    CHECK(o.rows < 100);
    struct qg_pool_stats ps;
    qg_pool_stats(mgr, &ps);
    CHECK_INT(ps.checked_out, 1);
    /* The caller leaves while paused: the statement stops, the connection comes back clean. */
    double t0 = qg_now();
    qg_run_cancel(o.r);
    stream_finish(&o);
    CHECK(qg_now() - t0 < 2.0);
    CHECK_INT(o.s, QG_ERR_STATEMENT_TIMEOUT);
    CHECK(o.err.cancelled);
    qg_pool_stats(mgr, &ps);
    CHECK_INT(ps.checked_out, 0);
    CHECK_INT(dbt_admin_value("SELECT count(*) FROM pg_stat_activity WHERE state <> 'idle' "
                              "AND query LIKE '%%generate_series(1, 5000000)%%' "
                              "AND pid <> pg_backend_pid()"), 0);
    struct outcome n;
    run1("SELECT current_setting('transaction_read_only') AS ro", false, 0, &n);
    CHECK_STR(n.rows, "[{\"ro\":\"off\"}]");
}

/* The connection lost after rows went out: the end says so; the stream is not run again
   (its rows would arrive twice). */
static void stream_not_retried_after_rows(void)
{
    struct qg_pool_stats before, after;
    qg_pool_stats(mgr, &before);
    struct stream_out o;
    stream_begin("SELECT a * 100000 + b AS g, repeat('z', 300) AS pad "
                 "FROM generate_series(1, 1000) a, generate_series(1, 100000) b", false, &o);
    stream_until(&o, 1);
    CHECK_INT(o.batches, 1);
    CHECK(dbt_kill_backends("qgt_run") >= 1);
    o.auto_more = true;
    qg_run_stream_more(o.r);
    stream_finish(&o);
    CHECK_INT(o.s, QG_ERR_DB_UNAVAILABLE);
    CHECK_INT(o.columns_calls, 1);
    qg_pool_stats(mgr, &after);
    CHECK(after.retries == before.retries);
    struct outcome n;
    run1("SELECT 2 AS two", true, 0, &n); /* the pool recovers */
    CHECK_STR(n.rows, "[{\"two\":2}]");
}

static void stream_errors(void)
{
    struct stream_out o;
    /* Fails after rows went out: they all arrive, then the error; no retry. */
    stream_begin("SELECT 1/(1000-g) AS v FROM generate_series(1, 2000) g", true, &o);
    stream_finish(&o);
    CHECK_INT(o.s, QG_ERR_SQL);
    CHECK_STR(o.err.sqlstate, "22012");
    CHECK_INT(o.columns_calls, 1);
    CHECK_INT(o.rows, 999);
    /* Fails before its first row: no columns. */
    stream_begin("SELECT nosuchcolumn FROM generate_series(1, 2) g", true, &o);
    stream_finish(&o);
    CHECK_INT(o.s, QG_ERR_SQL);
    CHECK_INT(o.columns_calls, 0);
    CHECK_INT(o.batches, 0);
    /* A statement that reads nothing: the columns are "[]". */
    stream_begin("SELECT set_config('application_name', 'qgt_run', true) WHERE false", true, &o);
    stream_finish(&o);
    CHECK_INT(o.s, QG_OK);
    const char *const two[] = {"SELECT 1", "SELECT 2"};
    struct qg_run_spec spec = {.n = 2, .sql = two};
    qg_run *r = NULL;
    CHECK(!qg_run_stream_start(NULL, mgr, &spec, &st_cb, &o, &r)); /* one statement only */
    CHECK(r == NULL);
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
    RUN(two_loops_one_connection);
    RUN(storm);
    RUN(quiet_while_releasing);
    RUN(stream_batches);
    RUN(stream_same_json);
    RUN(stream_back_pressure);
    RUN(stream_errors);
    RUN(stream_not_retried_after_rows);
    qg_manager_free(mgr);
    qg_loop_offload_shutdown();
    return qgt_done();
}
