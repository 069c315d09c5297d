/* Request bodies decoded without a socket: statements, batches and transactions (src/http/request.c). */
#include "request.h"
#include "qgtest.h"

/* Parses body as a statement; on failure checks the status and that the message holds words. */
static qg_status statement(const char *body, bool allow_batch, bool default_nas,
                           struct qgh_statement *st, qg_error *err)
{
    qg_error_clear(err);
    return qgh_parse_statement(body, strlen(body), allow_batch, default_nas, st, err);
}

static void statement_fails(const char *body, bool allow_batch, qg_status want,
                            const char *words, int index)
{
    struct qgh_statement st;
    qg_error err;
    CHECK_INT(statement(body, allow_batch, false, &st, &err), want);
    CHECK_INT(err.status, want);
    CHECK_INT(err.statement_index, index);
    if (!strstr(err.message, words)) {
        fprintf(stderr, "    %s: message \"%s\" lacks \"%s\"\n", body, err.message, words);
        qgt_failures++;
    }
    qgh_statement_free(&st);
}

static void statements(void)
{
    struct qgh_statement st;
    qg_error err;
    CHECK_INT(statement("{\"sql\":\"SELECT :a, :b\",\"params\":{\"a\":1,\"b\":\"x\"}}", false,
                        false, &st, &err),
              QG_OK);
    CHECK_STR(st.sql, "SELECT :a, :b");
    CHECK_INT(st.nsets, 1);
    CHECK(!st.batch && !st.numbers_as_strings);
    CHECK_INT(qg_params_count(st.sets[0]), 2);
    qgh_statement_free(&st);
    CHECK(st.root == NULL && st.sets == NULL);

    /* No params: one empty set. numbers_as_strings: the default unless the body says. */
    CHECK_INT(statement("{\"sql\":\"SELECT 1\"}", true, true, &st, &err), QG_OK);
    CHECK_INT(st.nsets, 1);
    CHECK(!st.batch && st.numbers_as_strings);
    CHECK_INT(qg_params_count(st.sets[0]), 0);
    qgh_statement_free(&st);
    CHECK_INT(statement("{\"sql\":\"SELECT 1\",\"numbers_as_strings\":false}", false, true, &st,
                        &err),
              QG_OK);
    CHECK(!st.numbers_as_strings);
    qgh_statement_free(&st);

    statement_fails("[1]", false, QG_ERR_INVALID_REQUEST, "must be a JSON object, not array", -1);
    statement_fails("{\"sql\":", false, QG_ERR_INVALID_JSON, "", -1);
    statement_fails("", false, QG_ERR_INVALID_JSON, "", -1);
    statement_fails("{}", false, QG_ERR_INVALID_REQUEST, "needs \"sql\", a string", -1);
    statement_fails("{\"sql\":5}", false, QG_ERR_INVALID_REQUEST, "must be a string, not number",
                    -1);
    statement_fails("{\"sql\":\"\"}", false, QG_ERR_INVALID_REQUEST, "is empty", -1);
    statement_fails("{\"sql\":\"SELECT 1\",\"parms\":{}}", false, QG_ERR_INVALID_REQUEST,
                    "unknown key \"parms\" in the statement; allowed: sql, params, "
                    "numbers_as_strings",
                    -1);
    statement_fails("{\"sql\":\"SELECT 1\",\"numbers_as_strings\":1}", false,
                    QG_ERR_INVALID_REQUEST, "must be true or false, not number", -1);
    statement_fails("{\"sql\":\"SELECT 1\",\"params\":\"a\"}", false, QG_ERR_INVALID_REQUEST,
                    "\"params\" in the statement must be an object, not string", -1);
}

static void batches(void)
{
    struct qgh_statement st;
    qg_error err;
    const char *body = "{\"sql\":\"INSERT INTO t VALUES (:a)\",\"params\":[{\"a\":1},{\"a\":2},{}]}";
    CHECK_INT(statement(body, true, false, &st, &err), QG_OK);
    CHECK(st.batch);
    CHECK_INT(st.nsets, 3);
    CHECK_INT(qg_params_count(st.sets[1]), 1);
    CHECK_INT(qg_params_count(st.sets[2]), 0);
    qgh_statement_free(&st);

    /* Only where a batch is allowed (/update, /insert), and never empty. */
    statement_fails(body, false, QG_ERR_INVALID_REQUEST, "must be an object, not array", -1);
    statement_fails("{\"sql\":\"SELECT 1\",\"params\":[]}", true, QG_ERR_INVALID_REQUEST,
                    "empty batch", -1);
    /* An element's error names the element. */
    statement_fails("{\"sql\":\"SELECT 1\",\"params\":[{},{},3]}", true, QG_ERR_INVALID_REQUEST,
                    "\"params\"[2] must be an object, not number", 2);
}

static qg_status transaction(const char *body, struct qgh_tx_body *tx, qg_error *err)
{
    qg_error_clear(err);
    return qgh_parse_transaction(body, strlen(body), false, tx, err);
}

static void transaction_fails(const char *body, const char *words, int index)
{
    struct qgh_tx_body tx;
    qg_error err;
    CHECK_INT(transaction(body, &tx, &err), QG_ERR_INVALID_REQUEST);
    CHECK_INT(err.statement_index, index);
    if (!strstr(err.message, words)) {
        fprintf(stderr, "    %s: message \"%s\" lacks \"%s\"\n", body, err.message, words);
        qgt_failures++;
    }
    qgh_tx_body_free(&tx);
    CHECK(tx.root == NULL && tx.stmts == NULL && tx.n == 0);
}

static void transactions(void)
{
    struct qgh_tx_body tx;
    qg_error err;
    CHECK_INT(transaction("{\"statements\":[{\"sql\":\"UPDATE t SET a = :a\",\"params\":{\"a\":1}},"
                          "{\"sql\":\"SELECT 1\"}],\"isolation\":\"Serializable\","
                          "\"read_only\":true,\"numbers_as_strings\":true}",
                          &tx, &err),
              QG_OK);
    CHECK_INT(tx.n, 2);
    CHECK_STR(tx.stmts[0].sql, "UPDATE t SET a = :a");
    CHECK_INT(qg_params_count(tx.stmts[0].params), 1);
    CHECK_STR(tx.stmts[1].sql, "SELECT 1");
    CHECK_INT(tx.opt.isolation, QG_ISOLATION_SERIALIZABLE);
    CHECK(tx.opt.read_only && tx.numbers_as_strings);
    qgh_tx_body_free(&tx);

    CHECK_INT(transaction("{\"statements\":[{\"sql\":\"SELECT 1\"}],"
                          "\"isolation\":\"repeatable read\"}",
                          &tx, &err),
              QG_OK);
    CHECK_INT(tx.opt.isolation, QG_ISOLATION_REPEATABLE_READ);
    CHECK(!tx.opt.read_only && !tx.numbers_as_strings);
    qgh_tx_body_free(&tx);

    transaction_fails("{}", "non-empty array", -1);
    transaction_fails("{\"statements\":[]}", "non-empty array", -1);
    transaction_fails("{\"statements\":{\"sql\":\"SELECT 1\"}}", "non-empty array", -1);
    transaction_fails("{\"statements\":[{\"sql\":\"SELECT 1\"}],\"isolation\":\"snapshot\"}",
                      "\"isolation\" must be", -1);
    transaction_fails("{\"statements\":[{\"sql\":\"SELECT 1\"}],\"isolation\":3}",
                      "\"isolation\" must be", -1);
    transaction_fails("{\"statements\":[{\"sql\":\"SELECT 1\"}],\"timeout\":3}",
                      "unknown key \"timeout\" in the transaction", -1);
    transaction_fails("{\"statements\":[{\"sql\":\"SELECT 1\"}],\"read_only\":\"yes\"}",
                      "\"read_only\" must be true or false", -1);
    /* A statement's error names it, by message and by statement_index. */
    transaction_fails("{\"statements\":[{\"sql\":\"SELECT 1\"},\"SELECT 2\"]}",
                      "statements[1] must be an object, not string", 1);
    transaction_fails("{\"statements\":[{\"sql\":\"SELECT 1\"},{\"sql\":\"SELECT 2\","
                      "\"numbers_as_strings\":true}]}",
                      "unknown key \"numbers_as_strings\" in statements[1]; allowed: sql, params",
                      1);
    transaction_fails("{\"statements\":[{\"params\":{}}]}", "statements[0] needs \"sql\"", 0);
    transaction_fails("{\"statements\":[{\"sql\":\"SELECT 1\"},{\"sql\":\"SELECT 2\","
                      "\"params\":[{}]}]}",
                      "\"params\" in statements[1] must be an object, not array", 1);
}

int main(void)
{
    RUN(statements);
    RUN(batches);
    RUN(transactions);
    return qgt_done();
}
