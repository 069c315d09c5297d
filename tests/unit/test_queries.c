/* Named queries (src/core/queries.c): a QUERIES_DIR read into a set; every bad file stops the load naming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "querygate/queries.h"
#include "qgtest.h"

static char top[64];

/* A fresh folder under top. */
static const char *folder(const char *name)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", top, name);
    CHECK(mkdir(path, 0700) == 0);
    return path;
}

static void put(const char *dir, const char *file, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Loading dir fails, naming `file` and saying `why`. */
static void refused(const char *dir, const char *file, const char *why)
{
    qg_queries *q = (qg_queries *)1;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_queries_load(dir, &q, &err), QG_ERR_CONFIG);
    CHECK(q == NULL);
    CHECK_INT(err.status, QG_ERR_CONFIG);
    if (!strstr(err.message, file) || !strstr(err.message, why) || !strstr(err.message, dir))
        fprintf(stderr, "    %s: want %s and \"%s\" in: %s\n", dir, file, why, err.message);
    CHECK(strstr(err.message, "QUERIES_DIR") && strstr(err.message, dir));
    CHECK(strstr(err.message, file) != NULL);
    CHECK(strstr(err.message, why) != NULL);
}

static void no_folder(void)
{
    qg_queries *q = NULL;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_queries_load(NULL, &q, &err), QG_OK);
    CHECK_INT(qg_queries_count(q), 0);
    CHECK(qg_queries_find(q, "x") == NULL && qg_queries_at(q, 0) == NULL);
    qg_queries_unref(q);
    CHECK_INT(qg_queries_load("", &q, &err), QG_OK);
    qg_queries_unref(q);
    qg_queries_unref(NULL);
    CHECK_INT(qg_queries_count(NULL), 0);
    CHECK(qg_queries_find(NULL, "x") == NULL);
}

static void good_folder(void)
{
    const char *d = folder("good");
    put(d, "by_owner.sql", "SELECT * FROM notes WHERE owner = :owner AND n > :min\n"
                           "  AND owner <> :owner::text -- :not_a_param\n");
    put(d, "add-note.sql", "-- querygate: write\nINSERT INTO notes VALUES (:owner, :body) "
                           "RETURNING *;\n");
    put(d, "Shout.sql", "  --  QueryGate :  WRITE \r\nUPDATE t SET x = 1;;  -- done\n");
    put(d, "a.sql", "\xEF\xBB\xBF-- querygate: read\nSELECT ':x', $$:y$$, \"a:b\" AS z");
    put(d, "plain.sql", "-- lists everything\nSELECT 1");
    put(d, "README.md", "not a query: SELECT 1; SELECT 2");
    put(d, ".hidden.sql", "SELECT 1; SELECT 2");
    put(d, ".#lock.sql", "");
    put(d, "notes.sql.orig", "SELECT 1; SELECT 2");
    qg_queries *q = NULL;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_queries_load(d, &q, &err), QG_OK);
    if (!q) {
        fprintf(stderr, "    %s\n", err.message);
        return;
    }
    CHECK_INT(qg_queries_count(q), 5);
    /* By name, as strcmp orders them ("a" before "add-note", though "a.sql" sorts after). */
    static const char *const order[] = {"Shout", "a", "add-note", "by_owner", "plain"};
    for (size_t i = 0; i < 5; i++) {
        const struct qg_query *e = qg_queries_at(q, i);
        CHECK(e != NULL);
        if (!e)
            continue;
        CHECK_STR(e->name, order[i]);
        CHECK(qg_queries_find(q, order[i]) == e);
    }
    CHECK(qg_queries_at(q, 5) == NULL);
    CHECK(qg_queries_find(q, "README") == NULL && qg_queries_find(q, "by_owner.sql") == NULL &&
          qg_queries_find(q, "") == NULL && qg_queries_find(q, "shout") == NULL);

    const struct qg_query *e = qg_queries_find(q, "by_owner");
    CHECK_INT(e->mode, QG_QUERY_READ);
    CHECK_INT(e->nparams, 2); /* distinct, in order of first use */
    CHECK_STR(e->params[0], "owner");
    CHECK_STR(e->params[1], "min");
    CHECK(!strncmp(e->sql, "SELECT * FROM notes", 19));
    e = qg_queries_find(q, "add-note");
    CHECK_INT(e->mode, QG_QUERY_WRITE);
    CHECK_INT(e->nparams, 2);
    CHECK_STR(qg_query_mode_name(e->mode), "write");
    e = qg_queries_find(q, "Shout");
    CHECK_INT(e->mode, QG_QUERY_WRITE);
    CHECK_INT(e->nparams, 0);
    e = qg_queries_find(q, "a"); /* the byte order mark goes; quotes hold no parameters */
    CHECK_INT(e->mode, QG_QUERY_READ);
    CHECK_INT(e->nparams, 0);
    CHECK(!strncmp(e->sql, "-- querygate: read\n", 19));
    e = qg_queries_find(q, "plain");
    CHECK_INT(e->mode, QG_QUERY_READ);
    CHECK_STR(qg_query_mode_name(e->mode), "read");

    /* A reference outlives the loader's. */
    qg_queries *held = qg_queries_ref(q);
    CHECK(held == q);
    qg_queries_unref(q);
    CHECK_STR(qg_queries_find(held, "plain")->name, "plain");
    qg_queries_unref(held);
}

static void bad_files(void)
{
    /* One bad file (next to a good one) in a folder of its own: the file and why. */
    static const struct {
        const char *file, *text, *why;
    } cases[] = {
        {"two.sql", "SELECT 1;\n\nSELECT 2",
         "more than one statement (the second starts on line 3)"},
        {"quote.sql", "-- querygate: read\nSELECT 1\n, 'open", "line 3: "},
        {"h.sql", "-- querygate: delete\nDELETE FROM t", "-- querygate: write"},
        {"h2.sql", "-- querygate: write please\nDELETE FROM t", "the first line"},
        {"empty.sql", "-- querygate: write\n", "no statement"},
        {"top 10.sql", "SELECT 1", "A-Z a-z 0-9 _ -"},
        {"begin.sql", "BEGIN", "transaction"},
        {"pos.sql", "SELECT $1", "line 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu", i);
        const char *d = folder(name);
        put(d, "fine.sql", "SELECT 1");
        put(d, cases[i].file, cases[i].text);
        refused(d, cases[i].file, cases[i].why);
    }

    const char *d = folder("sub");
    char path[256];
    snprintf(path, sizeof path, "%s/dir.sql", d);
    CHECK(mkdir(path, 0700) == 0);
    refused(d, "dir.sql", "not a regular file");

    d = folder("big");
    char *text = malloc(QG_QUERY_MAX_BYTES + 2);
    if (text) {
        memset(text, ' ', QG_QUERY_MAX_BYTES + 1);
        memcpy(text, "SELECT 1", 8);
        text[QG_QUERY_MAX_BYTES + 1] = '\0';
        put(d, "big.sql", text);
        free(text);
        refused(d, "big.sql", "larger than");
    }

    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing", top);
    refused(missing, "missing", "cannot open it");

    /* Of several bad files, the first by name is named, every time. */
    d = folder("several");
    put(d, "b.sql", "SELECT 1; SELECT 2");
    put(d, "a.sql", "SELECT 'x");
    put(d, "c.sql", "SELECT 1; SELECT 2");
    refused(d, "a.sql", "unterminated");
}

int main(void)
{
    snprintf(top, sizeof top, "/tmp/qgt-queries-XXXXXX");
    if (!mkdtemp(top)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(no_folder);
    RUN(good_folder);
    RUN(bad_files);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", top);
    return qgt_done();
}
