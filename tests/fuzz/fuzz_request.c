/* libFuzzer target: the HTTP request decoder (qgh_parse_statement, qgh_parse_named, qgh_parse_transaction) and the X-Querygate-Min-LSN header (qg_lsn_parse) on any bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"
#include "fuzz.h"

/* A failure is a request error with a message; never a crash, never "internal". */
static void check_failure(qg_status st, const qg_error *e)
{
    ASSERT(st == e->status);
    ASSERT(st == QG_ERR_INVALID_JSON || st == QG_ERR_INVALID_REQUEST);
    ASSERT(memchr(e->message, '\0', sizeof e->message) != NULL);
    ASSERT(e->message[0] != '\0');
}

static void statement(const char *body, size_t size, bool allow_batch)
{
    qg_error e;
    qg_error_clear(&e);
    struct qgh_statement st;
    qg_status s = qgh_parse_statement(body, size, allow_batch, size & 1, &st, &e);
    if (s == QG_OK) {
        ASSERT(st.sql && st.sql[0]);
        ASSERT(st.nsets >= 1 && st.sets);
        ASSERT(st.batch || st.nsets == 1);
        ASSERT(allow_batch || !st.batch);
        for (size_t i = 0; i < st.nsets; i++)
            ASSERT(st.sets[i] != NULL);
    } else {
        check_failure(s, &e);
        ASSERT(e.statement_index < 0 || (st.batch && (size_t)e.statement_index == st.nsets));
    }
    qgh_statement_free(&st);
    ASSERT(st.root == NULL && st.sets == NULL && st.nsets == 0);
}

/* POST /queries/NAME's body: the statement decoder with the SQL given, never "sql". */
static void named(const char *body, size_t size, bool write)
{
    static const char sql[] = "SELECT :a";
    qg_error e;
    qg_error_clear(&e);
    struct qgh_statement st;
    qg_status s = qgh_parse_named(body, size, sql, write, size & 1, &st, &e);
    if (s == QG_OK) {
        ASSERT(st.sql == sql);
        ASSERT(st.nsets >= 1 && st.sets);
        ASSERT(write || !st.batch);
    } else {
        check_failure(s, &e);
    }
    qgh_statement_free(&st);
    ASSERT(st.root == NULL && st.sets == NULL && st.nsets == 0);
}

static void transaction(const char *body, size_t size)
{
    qg_error e;
    qg_error_clear(&e);
    struct qgh_tx_body tx;
    qg_status s = qgh_parse_transaction(body, size, size & 2, &tx, &e);
    if (s == QG_OK) {
        ASSERT(tx.n >= 1 && tx.stmts);
        for (size_t i = 0; i < tx.n; i++)
            ASSERT(tx.stmts[i].sql && tx.stmts[i].sql[0]);
    } else {
        check_failure(s, &e);
        ASSERT(e.statement_index < 0 || (size_t)e.statement_index + 1 == tx.n);
    }
    qgh_tx_body_free(&tx);
    ASSERT(tx.root == NULL && tx.stmts == NULL && tx.n == 0);
}

/* A position that parses prints as one that parses to the same number. */
static void min_lsn(const char *s, size_t size)
{
    qg_lsn l;
    if (!qg_lsn_parse(s, size, &l))
        return;
    char text[QG_LSN_BUF];
    qg_lsn_format(l, text);
    qg_lsn again;
    ASSERT(qg_lsn_parse(text, strlen(text), &again) && again == l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The server hands bodies over NUL-terminated (they may hold NULs too). */
    char *body = malloc(size + 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    body[size] = '\0';
    statement(body, size, false);
    statement(body, size, true);
    named(body, size, false);
    named(body, size, true);
    transaction(body, size);
    min_lsn(body, size);
    free(body);
    return 0;
}
