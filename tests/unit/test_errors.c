/* Error struct and SQLSTATE mapping. */
#include "core_private.h"
#include "qgtest.h"

static void sqlstate_mapping(void)
{
    CHECK_INT(qg_status_from_sqlstate("23505"), QG_ERR_CONFLICT);
    CHECK_INT(qg_status_from_sqlstate("40001"), QG_ERR_CONFLICT);
    CHECK_INT(qg_status_from_sqlstate("40P01"), QG_ERR_CONFLICT);
    CHECK_INT(qg_status_from_sqlstate("42501"), QG_ERR_FORBIDDEN);
    CHECK_INT(qg_status_from_sqlstate("25006"), QG_ERR_READ_ONLY);
    CHECK_INT(qg_status_from_sqlstate("57014"), QG_ERR_STATEMENT_TIMEOUT);
    CHECK_INT(qg_status_from_sqlstate("08006"), QG_ERR_DB_UNAVAILABLE);
    CHECK_INT(qg_status_from_sqlstate("53300"), QG_ERR_DB_UNAVAILABLE);
    CHECK_INT(qg_status_from_sqlstate("57P01"), QG_ERR_DB_UNAVAILABLE);
    CHECK_INT(qg_status_from_sqlstate("57P03"), QG_ERR_DB_UNAVAILABLE);
    CHECK_INT(qg_status_from_sqlstate("42P01"), QG_ERR_SQL);
    CHECK_INT(qg_status_from_sqlstate("22012"), QG_ERR_SQL);
    CHECK_INT(qg_status_from_sqlstate(NULL), QG_ERR_SQL);
    CHECK_INT(qg_status_from_sqlstate("bad"), QG_ERR_SQL);
}

static void first_error_kept(void)
{
    qg_error e;
    qg_error_clear(&e);
    CHECK_INT(e.statement_index, -1);
    CHECK_INT(qg_error_set(&e, QG_ERR_SQL, "first %d", 1), QG_ERR_SQL);
    CHECK_INT(qg_error_set(&e, QG_ERR_INTERNAL, "second"), QG_ERR_INTERNAL);
    CHECK_INT(e.status, QG_ERR_SQL);
    CHECK_STR(e.message, "first 1");
    CHECK_INT(qg_error_set(NULL, QG_ERR_CONFLICT, "ignored"), QG_ERR_CONFLICT);
    CHECK_STR(qg_status_code(QG_ERR_MULTIPLE_STATEMENTS), "multiple_statements");
    CHECK_STR(qg_status_code(QG_ERR_TRANSACTION_CONTROL), "transaction_control");
    CHECK_STR(qg_status_code(QG_ERR_UNSUPPORTED_STATEMENT), "unsupported_statement");
    CHECK_STR(qg_status_code((qg_status)999), "internal_error");
}

/* One row per status, each code once; only ok and config_error are never answered. */
static void status_table(void)
{
    for (int s = QG_OK; s <= QG_ERR_INTERNAL; s++) {
        const struct qg_status_info *info = qg_status_info((qg_status)s);
        CHECK(info->code != NULL);
        CHECK(qg_status_info_by_code(info->code) == info);
        CHECK_INT(info->http_status == 0, s == QG_OK || s == QG_ERR_CONFIG);
    }
    CHECK_INT(qg_status_info(QG_ERR_INVALID_JSON)->http_status, 400);
    CHECK_INT(qg_status_info(QG_ERR_RESULT_TOO_LARGE)->http_status, 422);
    CHECK_INT(qg_status_info(QG_ERR_RAW_SQL_DISABLED)->http_status, 403);
    CHECK_STR(qg_status_code(QG_ERR_RAW_SQL_DISABLED), "raw_sql_disabled");
    CHECK_INT(qg_status_info(QG_ERR_STATEMENT_TIMEOUT)->http_status, 504);
    CHECK_INT(qg_status_info(QG_ERR_POOL_TIMEOUT)->http_status, 503);
    CHECK_INT(qg_status_info(QG_ERR_POOL_TIMEOUT)->retry_after, 1);
    CHECK_INT(qg_status_info(QG_ERR_DB_UNAVAILABLE)->retry_after, 2);
    CHECK_INT(qg_status_info(QG_ERR_SQL)->retry_after, 0);
    CHECK_STR(qg_status_info((qg_status)999)->code, "internal_error");
    CHECK(qg_status_info_by_code("not_found") == NULL);
}

static void json_strings(void)
{
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_json_string(&b, "a\"b\\c\n\x01\t\xc3\xa9", 10);
    CHECK_STR(b.data, "\"a\\\"b\\\\c\\n\\u0001\\t\xc3\xa9\"");
    /* Not UTF-8 (a lone byte, a cut sequence, overlong, a surrogate, past U+10FFFF):
       each byte becomes U+FFFD; valid 2-, 3- and 4-byte characters pass. */
    static const struct {
        const char *in, *out;
    } utf8[] = {
        {"/h\xffx", "\"/h\xef\xbf\xbdx\""},
        {"a\xc3", "\"a\xef\xbf\xbd\""},
        {"\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\""},
        {"\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
        {"\xf4\x90\x80\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
        {"\xe2\x82", "\"\xef\xbf\xbd\xef\xbf\xbd\""},
        {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf",
         "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\""},
    };
    for (size_t i = 0; i < sizeof utf8 / sizeof utf8[0]; i++) {
        qg_buf_reset(&b);
        qg_buf_json_string(&b, utf8[i].in, strlen(utf8[i].in));
        CHECK_STR(b.data, utf8[i].out);
    }
    CHECK_INT(qg_utf8_char_len("\xf0\x9f\x98\x80", 4), 4);
    CHECK_INT(qg_utf8_char_len("\xf0\x9f\x98\x80", 3), 0);
    CHECK_INT(qg_utf8_char_len("\xe0\x9f\x80", 3), 0); /* overlong */
    CHECK_INT(qg_utf8_char_len("\xef\xbf\xbd", 3), 3);
    CHECK_INT(qg_utf8_char_len("\x80", 1), 0);
    CHECK_INT(qg_utf8_char_len("", 0), 0);
    qg_buf_reset(&b);
    qg_buf_printf(&b, "%d-%s", 42, "x");
    CHECK_STR(b.data, "42-x");
    size_t n;
    char *s = qg_buf_steal(&b, &n);
    CHECK_STR(s, "42-x");
    CHECK_INT(n, 4);
    CHECK(b.data == NULL);
    free(s);
    qg_buf_free(&b);
}

int main(void)
{
    RUN(sqlstate_mapping);
    RUN(first_error_kept);
    RUN(status_table);
    RUN(json_strings);
    return qgt_done();
}
