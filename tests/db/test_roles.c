/* Per-key database roles: a role pool logs in as the role, so no SQL can escape it. */
#include "dbtest.h"

static qg_manager *mgr, *reader;
static struct qg_config cfg;

struct stmts {
    const char *const *sql;
    int n;
};

static qg_status run_all(qg_conn *c, void *arg, qg_error *err)
{
    struct stmts *s = arg;
    for (int i = 0; i < s->n; i++) {
        qg_result *r;
        qg_status st = qg_exec(c, s->sql[i], NULL, NULL, &r, err);
        qg_result_free(r);
        if (st != QG_OK)
            return st;
    }
    return QG_OK;
}

static qg_status as_reader(bool read_only, const char *const *sql, int n, qg_error *err)
{
    struct stmts s = {sql, n};
    struct qg_tx_options opt = {.isolation = QG_ISOLATION_DEFAULT, .read_only = read_only};
    qg_error_clear(err);
    return qg_transaction(reader, &opt, run_all, &s, err);
}

static void setup(void)
{
    char password[128] = "", port[16] = "";
    CHECK(sscanf(qgt_database_url(), "postgresql://qg:%127[^@]@127.0.0.1:%15[0-9]/", password, port) == 2);
    dbt_admin_value("DO $$BEGIN CREATE ROLE qgt_reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$");
    dbt_admin_value("ALTER ROLE qgt_reader PASSWORD 'reader-secret'");
    dbt_admin_value("DROP TABLE IF EXISTS qgt_open, qgt_secret");
    dbt_admin_value("CREATE TABLE qgt_open (x int); INSERT INTO qgt_open VALUES (1)");
    dbt_admin_value("CREATE TABLE qgt_secret (s text); INSERT INTO qgt_secret VALUES ('hidden')");
    dbt_admin_value("ALTER TABLE qgt_open OWNER TO qg; ALTER TABLE qgt_secret OWNER TO qg");
    dbt_admin_value("GRANT SELECT ON qgt_open TO qgt_reader");
    static char passfile[] = "/tmp/qgt-passfile.XXXXXX";
    int fd = mkstemp(passfile);
    dprintf(fd, "127.0.0.1:%s:qg:qgt_reader:reader-secret\n", port);
    close(fd);
    setenv("PGPASSFILE", passfile, 1);
    dbt_config(&cfg, "qgt_roles", NULL);
    CHECK(qg_manager_new(&cfg, &mgr, NULL) == QG_OK);
    qg_error err;
    qg_error_clear(&err);
    CHECK(qg_manager_for_role(mgr, "qgt_reader", &reader, &err) == QG_OK);
    qg_manager *again;
    CHECK(qg_manager_for_role(mgr, "qgt_reader", &again, NULL) == QG_OK);
    CHECK(again == reader);
}

static void grants_decide(void)
{
    qg_error err;
    const char *open_read[] = {"SELECT x FROM qgt_open"};
    CHECK(as_reader(true, open_read, 1, &err) == QG_OK);
    const char *secret_read[] = {"SELECT s FROM qgt_secret"};
    CHECK_INT(as_reader(true, secret_read, 1, &err), QG_ERR_FORBIDDEN);
    CHECK_STR(err.sqlstate, "42501");
    const char *secret_write[] = {"INSERT INTO qgt_secret VALUES ('x')"};
    CHECK_INT(as_reader(false, secret_write, 1, &err), QG_ERR_FORBIDDEN);
    /* The main pool still logs in as the service's user. */
    qg_result *r;
    CHECK(qg_query(mgr, "SELECT s FROM qgt_secret", NULL, &r, NULL) == QG_OK);
    qg_result_free(r);
}

/* Every escape the issue lists ends in 42501, with nothing read. */
static void escapes_fail(void)
{
    const char *escapes[][2] = {
        {"RESET ROLE", "SELECT s FROM qgt_secret"},
        {"SET ROLE qg", "SELECT s FROM qgt_secret"},
        {"SET SESSION AUTHORIZATION qg", "SELECT s FROM qgt_secret"},
        {"SELECT set_config('role', 'qg', true)", "SELECT s FROM qgt_secret"},
        {"SELECT set_config('role', 'qg', true), (SELECT count(*) FROM qgt_secret)", NULL},
        {"SELECT set_config('role', 'qg', true), query_to_xml('SELECT s FROM qgt_secret', true, false, '')", NULL},
        {"SELECT query_to_xml('SELECT set_config(''role'', ''qg'', true)', true, false, ''), "
         "query_to_xml('SELECT s FROM qgt_secret', true, false, '')", NULL},
    };
    for (size_t i = 0; i < sizeof escapes / sizeof *escapes; i++) {
        for (int ro = 0; ro < 2; ro++) {
            qg_error err;
            int n = escapes[i][1] ? 2 : 1;
            qg_status s = as_reader(ro, escapes[i], n, &err);
            if (s != QG_ERR_FORBIDDEN || strcmp(err.sqlstate, "42501") != 0) {
                fprintf(stderr, "escape %zu (%s) gave %s %s: %s\n", i, escapes[i][0], qg_status_code(s),
                        err.sqlstate, err.message);
                qgt_failures++;
            }
        }
    }
    const char *who[] = {"SELECT 1 WHERE current_user = 'qgt_reader' AND session_user = 'qgt_reader'"};
    qg_error err;
    CHECK(as_reader(true, who, 1, &err) == QG_OK);
}

static void missing_role_is_unavailable(void)
{
    qg_manager *ghost;
    CHECK(qg_manager_for_role(mgr, "qgt_no_such_role", &ghost, NULL) == QG_OK);
    qg_result *r;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_query(ghost, "SELECT 1", NULL, &r, &err), QG_ERR_DB_UNAVAILABLE);
    CHECK(strstr(err.message, "could not connect") != NULL);
    CHECK(strstr(err.message, "as role \"qgt_no_such_role\"") != NULL);
    CHECK(strstr(err.message, "reader-secret") == NULL);
}

int main(void)
{
    qgt_database_url();
    RUN(setup);
    RUN(grants_decide);
    RUN(escapes_fail);
    RUN(missing_role_is_unavailable);
    unlink(getenv("PGPASSFILE"));
    qg_manager_free(mgr);
    qg_config_free(&cfg);
    return qgt_done();
}
