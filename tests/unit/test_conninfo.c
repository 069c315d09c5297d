/* Connection parameters from DATABASE_URL: libpq forms, our defaults, the SSL rule, redaction. */
#include "core_private.h"
#include "qgtest.h"

static struct qg_config base_cfg(void)
{
    struct qg_config c;
    qg_error err;
    qg_error_clear(&err);
    if (qg_config_load(&c, NULL, &err) != QG_OK) {
        fprintf(stderr, "defaults do not load: %s\n", err.message);
        exit(1);
    }
    return c;
}

/* The value of kw in ci, NULL if absent; a keyword given twice is a failure. */
static const char *kv(const qgp_conninfo *ci, const char *kw)
{
    const char *found = NULL;
    int seen = 0;
    for (int i = 0; ci->keywords[i]; i++) {
        if (!strcmp(ci->keywords[i], kw)) {
            found = ci->values[i];
            seen++;
        }
        CHECK(ci->values[i] != NULL);
    }
    CHECK(seen <= 1);
    return found;
}

/* Builds parameters for url (NULL = unset) with cfg's other values. */
static qgp_conninfo *build(struct qg_config *cfg, const char *url, bool startup)
{
    free(cfg->database_url);
    cfg->database_url = url ? strdup(url) : NULL;
    qgp_conninfo *ci = NULL;
    qg_error err;
    qg_error_clear(&err);
    qg_status s = qgp_conninfo_new(cfg, startup, &ci, &err);
    if (s != QG_OK)
        fprintf(stderr, "   %s: %s\n", url, err.message);
    CHECK_INT(s, QG_OK);
    CHECK(ci != NULL);
    return ci;
}

static void uri_form(void)
{
    struct qg_config c = base_cfg();
    qgp_conninfo *ci = build(&c, "postgresql://app:pw@db.example.com:6432/orders", true);
    if (!ci)
        return;
    CHECK_STR(kv(ci, "user"), "app");
    CHECK_STR(kv(ci, "password"), "pw");
    CHECK_STR(kv(ci, "host"), "db.example.com");
    CHECK_STR(kv(ci, "port"), "6432");
    CHECK_STR(kv(ci, "dbname"), "orders");
    CHECK_STR(kv(ci, "application_name"), "querygate");
    CHECK_STR(kv(ci, "keepalives"), "1");
    CHECK_STR(kv(ci, "keepalives_idle"), "30");
    CHECK_STR(kv(ci, "keepalives_interval"), "10");
    CHECK_STR(kv(ci, "keepalives_count"), "3");
    CHECK_STR(kv(ci, "connect_timeout"), "10");
    CHECK_STR(kv(ci, "sslmode"), "require");
    CHECK(!ci->local);
    CHECK_STR(ci->display, "postgresql://app:***@db.example.com:6432/orders");
    qgp_conninfo_free(ci);
    qgp_conninfo_free(NULL);

    ci = build(&c, "postgres://app@localhost/orders", false);
    CHECK_STR(kv(ci, "host"), "localhost");
    CHECK(kv(ci, "password") == NULL);
    CHECK(kv(ci, "sslmode") == NULL); /* local: libpq's default */
    CHECK(kv(ci, "options") == NULL);
    CHECK(ci->local);
    qgp_conninfo_free(ci);
    qg_config_free(&c);
}

static void keyword_value_form(void)
{
    struct qg_config c = base_cfg();
    qgp_conninfo *ci = build(&c, "host=/var/run/postgresql dbname=x user=u password='a b\\'c' "
                                 "application_name=mine", false);
    CHECK_STR(kv(ci, "host"), "/var/run/postgresql");
    CHECK_STR(kv(ci, "password"), "a b'c");
    CHECK_STR(kv(ci, "application_name"), "mine");
    CHECK(ci->local);
    CHECK(kv(ci, "sslmode") == NULL);
    CHECK_STR(ci->display, "host=/var/run/postgresql dbname=x user=u password='***' "
                           "application_name=mine");
    qgp_conninfo_free(ci);

    /* Unset DATABASE_URL: only our parameters; libpq fills in PG* itself. */
    ci = build(&c, NULL, false);
    CHECK(kv(ci, "host") == NULL);
    CHECK_STR(kv(ci, "application_name"), "querygate");
    CHECK(ci->local);
    CHECK_STR(ci->display, "");
    qgp_conninfo_free(ci);
    qg_config_free(&c);
}

static void ipv6_multihost_encoding(void)
{
    struct qg_config c = base_cfg();
    qgp_conninfo *ci = build(&c, "postgresql://u:p%40ss%2Fw%3Ard@[::1]:5433/d%20b", false);
    CHECK_STR(kv(ci, "host"), "::1");
    CHECK_STR(kv(ci, "port"), "5433");
    CHECK_STR(kv(ci, "password"), "p@ss/w:rd");
    CHECK_STR(kv(ci, "dbname"), "d b");
    CHECK(ci->local);
    CHECK(kv(ci, "sslmode") == NULL);
    CHECK_STR(ci->display, "postgresql://u:***@[::1]:5433/d%20b");
    qgp_conninfo_free(ci);

    ci = build(&c, "postgresql://u@[2001:db8::7]/d", false);
    CHECK_STR(kv(ci, "host"), "2001:db8::7");
    CHECK(!ci->local);
    CHECK_STR(kv(ci, "sslmode"), "require");
    qgp_conninfo_free(ci);

    ci = build(&c, "postgresql://u:p@h1:5432,h2:5433/db?target_session_attrs=read-write", false);
    CHECK_STR(kv(ci, "host"), "h1,h2");
    CHECK_STR(kv(ci, "port"), "5432,5433");
    CHECK_STR(kv(ci, "target_session_attrs"), "read-write");
    CHECK(!ci->local);
    CHECK_STR(ci->display, "postgresql://u:***@h1:5432,h2:5433/db?target_session_attrs=read-write");
    qgp_conninfo_free(ci);

    /* One remote host among local ones makes the set remote. */
    ci = build(&c, "postgresql://u@localhost,127.0.0.2,db.example.com/db", false);
    CHECK(!ci->local);
    CHECK_STR(kv(ci, "sslmode"), "require");
    qgp_conninfo_free(ci);
    ci = build(&c, "postgresql://u@localhost,127.0.0.2,[::1]/db", false);
    CHECK(ci->local);
    qgp_conninfo_free(ci);

    /* hostaddr decides where the connection goes. */
    ci = build(&c, "host=db.example.com hostaddr=127.0.0.1", false);
    CHECK(ci->local);
    qgp_conninfo_free(ci);
    ci = build(&c, "host=localhost hostaddr=10.1.2.3", false);
    CHECK(!ci->local);
    qgp_conninfo_free(ci);

    /* Query parameters, including a unix socket directory as host. */
    ci = build(&c, "postgresql:///db?host=/tmp&port=5999&connect_timeout=4&keepalives_idle=7", false);
    CHECK_STR(kv(ci, "host"), "/tmp");
    CHECK_STR(kv(ci, "port"), "5999");
    CHECK_STR(kv(ci, "connect_timeout"), "4"); /* the URL's own value wins */
    CHECK_STR(kv(ci, "keepalives_idle"), "7");
    CHECK_STR(kv(ci, "keepalives_count"), "3");
    CHECK(ci->local);
    qgp_conninfo_free(ci);
    qg_config_free(&c);
}

static void ssl_rules(void)
{
    struct qg_config c = base_cfg();
    /* Remote: require, unless the URL says otherwise. */
    qgp_conninfo *ci = build(&c, "postgresql://u@db.example.com/d?sslmode=verify-full", false);
    CHECK_STR(kv(ci, "sslmode"), "verify-full");
    qgp_conninfo_free(ci);
    ci = build(&c, "host=db.example.com sslmode=disable", false);
    CHECK_STR(kv(ci, "sslmode"), "disable");
    qgp_conninfo_free(ci);
    /* Local: the URL's sslmode is kept. */
    ci = build(&c, "postgresql://u@127.0.0.1/d?sslmode=require", false);
    CHECK_STR(kv(ci, "sslmode"), "require");
    qgp_conninfo_free(ci);
    /* PGSSLMODE beats the URL, local or remote. */
    c.sslmode = strdup("verify-ca");
    ci = build(&c, "postgresql://u@db.example.com/d?sslmode=disable", false);
    CHECK_STR(kv(ci, "sslmode"), "verify-ca");
    qgp_conninfo_free(ci);
    ci = build(&c, "postgresql://u@localhost/d", false);
    CHECK_STR(kv(ci, "sslmode"), "verify-ca");
    qgp_conninfo_free(ci);
    free(c.sslmode);
    c.sslmode = strdup("disable");
    ci = build(&c, "postgresql://u@db.example.com/d", false);
    CHECK_STR(kv(ci, "sslmode"), "disable");
    qgp_conninfo_free(ci);
    qg_config_free(&c);
}

static void options_and_timeouts(void)
{
    struct qg_config c = base_cfg();
    c.statement_timeout_ms = 1234;
    c.idle_tx_timeout_ms = 0;
    c.connect_timeout_s = 1.0; /* libpq treats < 2 as 2 */
    c.keepalives_idle = 11;
    qgp_conninfo *ci = build(&c, "postgresql://u@localhost/d", true);
    CHECK_STR(kv(ci, "options"), "-c statement_timeout=1234 -c idle_in_transaction_session_timeout=0 "
                                 "-c DateStyle=ISO -c IntervalStyle=iso_8601 -c TimeZone=UTC");
    CHECK_STR(kv(ci, "connect_timeout"), "2");
    CHECK_STR(kv(ci, "keepalives_idle"), "11");
    qgp_conninfo_free(ci);

    c.connect_timeout_s = 2.1; /* rounded up */
    ci = build(&c, "postgresql://u@localhost/d?options=-c%20search_path%3Dapp", true);
    CHECK_STR(kv(ci, "options"), "-c search_path=app -c statement_timeout=1234 "
                                 "-c idle_in_transaction_session_timeout=0 -c DateStyle=ISO "
                                 "-c IntervalStyle=iso_8601 -c TimeZone=UTC");
    CHECK_STR(kv(ci, "connect_timeout"), "3");
    qgp_conninfo_free(ci);

    /* Without startup options the URL's options pass through untouched. */
    ci = build(&c, "postgresql://u@localhost/d?options=-c%20search_path%3Dapp", false);
    CHECK_STR(kv(ci, "options"), "-c search_path=app");
    qgp_conninfo_free(ci);

    char *sql = qgp_session_settings_sql(&c);
    CHECK_STR(sql, "SELECT set_config('statement_timeout', '1234', true), "
                   "set_config('idle_in_transaction_session_timeout', '0', true), "
                   "set_config('DateStyle', 'ISO', true), set_config('IntervalStyle', 'iso_8601', true), "
                   "set_config('TimeZone', 'UTC', true)");
    free(sql);
    CHECK(qgp_session_settings_sql(NULL) == NULL);
    qg_config_free(&c);
}

static void bad_input(void)
{
    struct qg_config c = base_cfg();
    qgp_conninfo *ci = (qgp_conninfo *)&c; /* must be reset to NULL on failure */
    qg_error err;
    const char *bad[] = {"mysql://root:hunter2@h/db", "http://x:hunter2@h", "hunter2",
                         "postgresql://u:hunter2@h/db?bogus=1", "postgresql://u:hunter2%zz@h",
                         "host=h password = hunter2 bogus"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        c.database_url = strdup(bad[i]);
        qg_error_clear(&err);
        CHECK_INT(qgp_conninfo_new(&c, true, &ci, &err), QG_ERR_CONFIG);
        CHECK(ci == NULL);
        CHECK(strstr(err.message, "DATABASE_URL") != NULL);
        if (strstr(err.message, "hunter2"))
            fprintf(stderr, "   leaked: %s\n", err.message);
        CHECK(strstr(err.message, "hunter2") == NULL);
        free(c.database_url);
        c.database_url = NULL;
    }
    c.database_url = strdup("mysql://root:hunter2@h/db");
    qg_error_clear(&err);
    CHECK_INT(qgp_conninfo_new(&c, true, &ci, &err), QG_ERR_CONFIG);
    CHECK(strstr(err.message, "\"mysql\"") != NULL);
    CHECK_INT(qgp_conninfo_new(NULL, true, &ci, NULL), QG_ERR_INVALID_REQUEST);
    CHECK_INT(qgp_conninfo_new(&c, true, NULL, NULL), QG_ERR_INVALID_REQUEST);
    qg_config_free(&c);
}

static void host_is_local(void)
{
    CHECK(qgp_host_is_local(NULL));
    CHECK(qgp_host_is_local(""));
    CHECK(qgp_host_is_local("/var/run/postgresql"));
    CHECK(qgp_host_is_local("@abstract"));
    CHECK(qgp_host_is_local("localhost"));
    CHECK(qgp_host_is_local("LocalHost"));
    CHECK(qgp_host_is_local("127.0.0.1"));
    CHECK(qgp_host_is_local("127.255.3.4"));
    CHECK(qgp_host_is_local("::1"));
    CHECK(qgp_host_is_local("[::1]"));
    CHECK(qgp_host_is_local("0:0:0:0:0:0:0:1"));
    CHECK(qgp_host_is_local("::ffff:127.0.0.1"));
    CHECK(!qgp_host_is_local("128.0.0.1"));
    CHECK(!qgp_host_is_local("10.0.0.1"));
    CHECK(!qgp_host_is_local("::2"));
    CHECK(!qgp_host_is_local("::ffff:10.0.0.1"));
    CHECK(!qgp_host_is_local("localhost.example.com"));
    CHECK(!qgp_host_is_local("127.0.0.1.example.com"));
    CHECK(!qgp_host_is_local("db"));
    CHECK(!qgp_host_is_local("[::1"));
}

/* redact(in) must equal want, and never contain secret. */
static void redacts(const char *in, const char *want, const char *secret)
{
    char *r = qgp_redact_conninfo(in);
    CHECK_STR(r, want);
    if (r && secret && strstr(r, secret))
        fprintf(stderr, "   %s leaks %s\n", in, secret);
    CHECK(!r || !secret || !strstr(r, secret));
    free(r);
}

static void redaction(void)
{
    redacts("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db", "pw");
    redacts("postgres://u@h/db", "postgres://u@h/db", NULL);
    redacts("postgresql://h/db", "postgresql://h/db", NULL);
    redacts("postgresql://:pw@h", "postgresql://:***@h", "pw");
    redacts("postgresql://u:p%40ss%3A@h/db", "postgresql://u:***@h/db", "p%40");
    /* Raw @ : / ? in a password: everything to the last '@' is hidden. */
    redacts("postgresql://u:p@s:s/w?d@h/db", "postgresql://u:***@h/db", "s:s/w?d");
    redacts("postgresql://u:pa ss@h", "postgresql://u:***@h", "pa ss");
    /* '@' in a query password: found by the fuzzer (libpq reads password "secr\377@[:://"). */
    redacts("postgresql://u=pg\2364-0ssh/db?password=secr\377@[:://",
            "postgresql://u=pg\2364-0ssh/db?password=***", "secr");
    redacts("postgresql://h:5432/db?password=se@cret", "postgresql://h:***", "cret");
    redacts("postgresql://h/db?password=&x=1", "postgresql://h/db?password=&x=1", NULL);
    redacts("postgresql://u:s3@[::1]:5432,h2/db", "postgresql://u:***@[::1]:5432,h2/db", "s3");
    redacts("postgresql://u@h/db?sslmode=require&password=zz9&application_name=a",
            "postgresql://u@h/db?sslmode=require&password=***&application_name=a", "zz9");
    redacts("postgresql://h/db?pass%77ord=zz9", "postgresql://h/db?pass%77ord=***", "zz9");
    redacts("postgresql://h/db?sslpassword=zz9", "postgresql://h/db?sslpassword=***", "zz9");
    redacts("mysql://root:zz9@h/db", "mysql://root:***@h/db", "zz9");
    redacts("  postgresql://u:zz9@h", "  postgresql://u:***@h", "zz9");
    /* key=value */
    redacts("host=h password=zz9 dbname=d", "host=h password=*** dbname=d", "zz9");
    redacts("host=h password='z z\\' 9' dbname=d", "host=h password='***' dbname=d", "z z");
    redacts("host=h password = zz9", "host=h password = ***", "zz9");
    redacts("host=h PASSWORD=zz9", "host=h PASSWORD=***", "zz9");
    redacts("host=h password='unterminated zz9", "host=h password='***'", "zz9");
    redacts("host=h password zz9", "host=h password ***", "zz9");
    redacts("password=", "password=***", NULL);
    redacts("host=h dbname=postgresql://u:zz9@h2/d", "host=h dbname=postgresql://u:***@h2/d", "zz9");
    redacts("host=h user=a\\ b", "host=h user=a\\ b", NULL);
    redacts("", "", NULL);
    redacts("=x", "=x", NULL);
    char *r = qgp_redact_conninfo(NULL);
    CHECK_STR(r, "");
    free(r);
}

/* qg_conninfo_scrub(in) in place must give want: same length, each secret byte a '*'. */
static void scrubs(const char *in, const char *want)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", in);
    qg_conninfo_scrub(buf);
    CHECK_STR(buf, want);
}

static void scrubbing(void)
{
    scrubs("postgresql://u:pw@h:5432/db", "postgresql://u:**@h:5432/db");
    scrubs("postgres://u@h/db", "postgres://u@h/db");
    scrubs("postgresql://u:p@s:s/w?d@h/db", "postgresql://u:*********@h/db");
    scrubs("postgresql://u@h/db?sslmode=require&password=zz9&application_name=a",
           "postgresql://u@h/db?sslmode=require&password=***&application_name=a");
    scrubs("postgresql://h/db?sslpassword=zz9", "postgresql://h/db?sslpassword=***");
    scrubs("  postgresql://u:zz9@h", "  postgresql://u:***@h");
    scrubs("host=h password=zz9 dbname=d", "host=h password=*** dbname=d");
    scrubs("host=h password='z z\\' 9' dbname=d", "host=h password=********* dbname=d");
    scrubs("host=h password = zz9", "host=h password = ***");
    scrubs("host=h password='unterminated zz9", "host=h password=*****************");
    scrubs("host=h password zz9", "host=h password****");
    scrubs("password=", "password=");
    scrubs("host=h dbname=postgresql://u:zz9@h2/d", "host=h dbname=postgresql://u:***@h2/d");
    scrubs("", "");
    qg_conninfo_scrub(NULL);
}

int main(void)
{
    RUN(uri_form);
    RUN(keyword_value_form);
    RUN(ipv6_multihost_encoding);
    RUN(ssl_rules);
    RUN(options_and_timeouts);
    RUN(bad_input);
    RUN(host_is_local);
    RUN(redaction);
    RUN(scrubbing);
    return qgt_done();
}
