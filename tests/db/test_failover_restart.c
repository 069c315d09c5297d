/*
 * Failover (issue 14, item 1): a primary and its streaming standby of our own
 * (scripts/pgcluster pair), the primary stopped and the standby promoted.
 * Writes follow the new primary by themselves; with no primary they wait
 * DB_POOL_TIMEOUT, then db_unavailable; a connection on a standby is dropped,
 * not answered read_only. Runs alone (the name has _restart): it times waits.
 */
#include <pthread.h>
#include <stdlib.h>
#include "dbtest.h"

static char top[256], pw[64];
static int port_a, port_b;

static const char *tool(void)
{
    const char *t = getenv("QG_TEST_PGCLUSTER");
    if (!t) {
        fprintf(stderr, "SKIP: QG_TEST_PGCLUSTER is not set; run the suite with scripts/test\n");
        exit(77);
    }
    return t;
}

/* pgcluster ACTION DIR [ARGS] on the pair's node a or b. */
static int node(const char *action, char n, const char *args)
{
    return dbt_sh("'%s' %s '%s/%c' %s >/dev/null", tool(), action, top, n, args ? args : "");
}

static int read_int(const char *path)
{
    FILE *f = fopen(path, "r");
    int v = 0;
    if (f && fscanf(f, "%d", &v) != 1)
        v = 0;
    if (f)
        fclose(f);
    return v;
}

static void make_pair(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(top, sizeof top, "%s/qg-failover.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(top)) {
        perror("mkdtemp");
        exit(1);
    }
    CHECK_INT(dbt_sh("chmod 755 '%s' && QG_PG_FSYNC=off '%s' pair '%s' >/dev/null", top, tool(), top), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/a/port", top);
    port_a = read_int(path);
    snprintf(path, sizeof path, "%s/b/port", top);
    port_b = read_int(path);
    snprintf(path, sizeof path, "%s/a/password", top);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(pw, sizeof pw, f) || !port_a || !port_b) {
        fprintf(stderr, "the pair did not start (%s)\n", top);
        exit(1);
    }
    fclose(f);
    pw[strcspn(pw, "\n")] = '\0';
}

static void remove_pair(void)
{
    node("stop", 'a', "immediate");
    node("stop", 'b', "immediate");
    dbt_sh("rm -rf '%s'", top);
}

/* A manager on url_tail ("host:port,.../qg?..." after the credentials). */
static qg_manager *manager(struct qg_config *cfg, const char *timeout, const char *url_tail)
{
    static char url[512], t[64];
    snprintf(url, sizeof url, "DATABASE_URL=postgresql://qg:%s@%s", pw, url_tail);
    snprintf(t, sizeof t, "DB_POOL_TIMEOUT=%s", timeout);
    const char *env[] = {url, t, "DB_RETRY_DELAY=0.05", "DB_CONNECT_TIMEOUT=2", "DB_POOL_SIZE=2",
                         "DB_MAX_OVERFLOW=0", NULL};
    qg_error err;
    qg_error_clear(&err);
    if (qg_config_load(cfg, (char **)env, &err) != QG_OK) {
        fprintf(stderr, "config: %s\n", err.message);
        exit(1);
    }
    qg_manager *m;
    CHECK_INT(qg_manager_new(cfg, &m, &err), QG_OK);
    return m;
}

/* The port of the server that ran an insert, or -1 with err filled. */
static int insert(qg_manager *m, qg_error *err)
{
    qg_error_clear(err);
    qg_result *r = NULL;
    qg_status s = qg_insert(m, "INSERT INTO t_failover VALUES (default) RETURNING inet_server_port() AS p",
                            NULL, &r, err);
    int port = -1;
    if (s == QG_OK) {
        const char *rows = qg_result_rows_json(r, NULL);
        const char *p = rows ? strstr(rows, "\"p\":") : NULL;
        port = p ? atoi(p + 4) : -1;
    } else if (err->status == QG_OK) {
        err->status = s;
    }
    qg_result_free(r);
    return port;
}

struct promote { double delay_s, done_at; };

static void *promote_later(void *arg)
{
    struct promote *p = arg;
    usleep((useconds_t)(p->delay_s * 1e6));
    CHECK_INT(node("promote", 'b', NULL), 0);
    p->done_at = dbt_now();
    return NULL;
}

static char pair_url[256];

/* The primary stops; a write waits, and runs on the standby once it is promoted. */
static void writes_follow_the_promoted_standby(void)
{
    struct qg_config cfg;
    qg_manager *m = manager(&cfg, "10", pair_url);
    qg_error err;
    CHECK_INT(insert(m, &err), port_a);

    CHECK_INT(node("stop", 'a', "fast"), 0);
    struct promote p = {.delay_s = 1.0};
    pthread_t th;
    double t0 = dbt_now();
    pthread_create(&th, NULL, promote_later, &p);
    int port = insert(m, &err);
    double took = dbt_now() - t0;
    pthread_join(th, NULL);
    CHECK_INT(port, port_b);
    if (port != port_b)
        fprintf(stderr, "the write failed: %s\n", err.message);
    CHECK(took > p.delay_s);               /* it waited for the promotion */
    CHECK(dbt_now() - p.done_at < 5);      /* and resumed soon after it */
    struct qg_pool_stats st;
    qg_pool_stats(m, &st);
    CHECK(st.retries >= 1);
    CHECK_INT(insert(m, &err), port_b);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

/* Nothing accepts writes: a write waits DB_POOL_TIMEOUT, then db_unavailable (a read fails
   after DB_RETRIES); nothing ran, so the outcome is known. */
static void no_primary_is_db_unavailable_after_the_pool_timeout(void)
{
    struct qg_config cfg;
    qg_manager *m = manager(&cfg, "2", pair_url);
    CHECK_INT(node("stop", 'b', "fast"), 0);
    qg_error err;
    double t0 = dbt_now();
    CHECK_INT(insert(m, &err), -1);
    double took = dbt_now() - t0;
    CHECK_INT(err.status, QG_ERR_DB_UNAVAILABLE);
    CHECK(err.unreachable);
    CHECK(!err.outcome_unknown);
    CHECK(took >= 1.95 && took < 6);
    qg_result *r = NULL;
    qg_error_clear(&err);
    t0 = dbt_now();
    CHECK_INT(qg_query(m, "SELECT 1", NULL, &r, &err), QG_ERR_DB_UNAVAILABLE);
    CHECK(dbt_now() - t0 < 1.5); /* reads do not wait for a primary */
    qg_result_free(r);
    CHECK_INT(node("start", 'b', NULL), 0);
    CHECK_INT(insert(m, &err), port_b);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

/* rows JSON of a read, or "" with err filled. */
static void query(qg_manager *m, const char *sql, char *rows, size_t size, qg_error *err)
{
    qg_error_clear(err);
    qg_result *r = NULL;
    rows[0] = '\0';
    if (qg_query(m, sql, NULL, &r, err) == QG_OK)
        snprintf(rows, size, "%s", qg_result_rows_json(r, NULL));
    qg_result_free(r);
}

/*
 * The old primary comes back as a standby of the new one. A write sent to it
 * directly (target_session_attrs=any) finds a read-only server: the connection
 * is dropped and the write, which did not run, waits for a primary: 503
 * db_unavailable after DB_POOL_TIMEOUT, never 403 read_only. A read runs there;
 * a read's INSERT stays read_only. The pair's URL skips the standby.
 */
static void a_write_on_a_standby_is_not_read_only(void)
{
    char args[300];
    snprintf(args, sizeof args, "'%s/b'", top);
    CHECK_INT(node("standby", 'a', args), 0);
    char url[128];
    snprintf(url, sizeof url, "127.0.0.1:%d/qg?target_session_attrs=any", port_a);
    struct qg_config cfg;
    qg_manager *m = manager(&cfg, "1", url);
    char rows[256];
    qg_error err;
    query(m, "SELECT pg_is_in_recovery() AS standby", rows, sizeof rows, &err);
    CHECK_STR(rows, "[{\"standby\":true}]");
    double t0 = dbt_now();
    CHECK_INT(insert(m, &err), -1);
    CHECK_INT(err.status, QG_ERR_DB_UNAVAILABLE);
    if (err.status != QG_ERR_DB_UNAVAILABLE)
        fprintf(stderr, "the write on a standby: %s\n", err.message);
    CHECK(err.unreachable && !err.outcome_unknown);
    CHECK(dbt_now() - t0 >= 0.95);
    struct qg_pool_stats st;
    qg_pool_stats(m, &st);
    CHECK(st.connects >= 3);   /* each try's connection was dropped, another opened */
    query(m, "INSERT INTO t_failover VALUES (default)", rows, sizeof rows, &err);
    CHECK_INT(err.status, QG_ERR_READ_ONLY);
    qg_manager_free(m);
    qg_config_free(&cfg);

    m = manager(&cfg, "5", pair_url);
    CHECK_INT(insert(m, &err), port_b);
    qg_manager_free(m);
    qg_config_free(&cfg);
}

/* Points the PgBouncer in dir at port (its database qg) and reloads it. */
static void bouncer_to(const char *dir, int port)
{
    CHECK_INT(dbt_sh("sed -i 's/^qg = .*/qg = host=127.0.0.1 port=%d dbname=qg/' '%s/pgbouncer.ini' && "
                     "kill -HUP $(cat '%s/pgbouncer.pid')", port, dir, dir), 0);
    usleep(200000); /* the reload is asynchronous */
}

/*
 * Behind PgBouncer, whose server moves from the primary to a standby: the
 * client connection still says in_hot_standby=off (the pooler passes on what
 * its first server said), and our BEGIN READ WRITE fails there with 0A000.
 * That is a standby too: db_unavailable after DB_POOL_TIMEOUT, not sql_error;
 * once the pooler points at the primary again, the write runs.
 */
static void a_pooler_that_moved_to_a_standby(void)
{
    char dir[300], primary[16];
    snprintf(dir, sizeof dir, "%s/bouncer", top);
    snprintf(primary, sizeof primary, "%d", port_b);
    int port = dbt_free_port();
    if (!dbt_pgbouncer_start(dir, port, primary, pw))
        return;
    char url[128];
    snprintf(url, sizeof url, "127.0.0.1:%d/qg", port);
    struct qg_config cfg;
    qg_manager *m = manager(&cfg, "1", url);
    qg_error err;
    CHECK_INT(insert(m, &err), port_b);
    bouncer_to(dir, port_a);
    CHECK_INT(insert(m, &err), -1);
    CHECK_INT(err.status, QG_ERR_DB_UNAVAILABLE);
    if (err.status != QG_ERR_DB_UNAVAILABLE)
        fprintf(stderr, "the write behind the pooler: %s\n", err.message);
    CHECK(err.unreachable && !err.outcome_unknown);
    bouncer_to(dir, port_b);
    CHECK_INT(insert(m, &err), port_b);
    qg_manager_free(m);
    qg_config_free(&cfg);
    dbt_pgbouncer_stop(dir);
}

int main(void)
{
    tool();
    make_pair();
    snprintf(pair_url, sizeof pair_url, "127.0.0.1:%d,127.0.0.1:%d/qg?target_session_attrs=read-write",
             port_a, port_b);
    struct qg_config cfg;
    qg_manager *m = manager(&cfg, "5", pair_url);
    long long n = -1;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_update(m, "CREATE TABLE t_failover (id serial PRIMARY KEY)", NULL, &n, &err), QG_OK);
    qg_manager_free(m);
    qg_config_free(&cfg);
    RUN(writes_follow_the_promoted_standby);
    RUN(no_primary_is_db_unavailable_after_the_pool_timeout);
    RUN(a_write_on_a_standby_is_not_read_only);
    RUN(a_pooler_that_moved_to_a_standby);
    remove_pair();
    return qgt_done();
}
