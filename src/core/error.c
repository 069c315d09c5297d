/* Error struct handling and the contract's SQLSTATE -> status mapping. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_private.h"

const char *qg_status_code(qg_status s)
{
    switch (s) {
    case QG_OK: return "ok";
    case QG_ERR_INVALID_JSON: return "invalid_json";
    case QG_ERR_INVALID_REQUEST: return "invalid_request";
    case QG_ERR_MISSING_PARAMETER: return "missing_parameter";
    case QG_ERR_UNKNOWN_PARAMETER: return "unknown_parameter";
    case QG_ERR_MULTIPLE_STATEMENTS: return "multiple_statements";
    case QG_ERR_TRANSACTION_CONTROL: return "transaction_control";
    case QG_ERR_UNSUPPORTED_STATEMENT: return "unsupported_statement";
    case QG_ERR_SQL: return "sql_error";
    case QG_ERR_FORBIDDEN: return "forbidden";
    case QG_ERR_READ_ONLY: return "read_only";
    case QG_ERR_CONFLICT: return "conflict";
    case QG_ERR_RESULT_TOO_LARGE: return "result_too_large";
    case QG_ERR_POOL_TIMEOUT: return "pool_timeout";
    case QG_ERR_DB_UNAVAILABLE: return "db_unavailable";
    case QG_ERR_SHUTTING_DOWN: return "shutting_down";
    case QG_ERR_STATEMENT_TIMEOUT: return "statement_timeout";
    case QG_ERR_CONFIG: return "config_error";
    case QG_ERR_INTERNAL: return "internal_error";
    }
    return "internal_error";
}

void qg_error_clear(qg_error *err)
{
    if (!err)
        return;
    memset(err, 0, sizeof *err);
    err->statement_index = -1;
}

qg_status qg_error_set(qg_error *err, qg_status s, const char *fmt, ...)
{
    if (!err || err->status != QG_OK)
        return s;
    err->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return s;
}

qg_status qg_status_from_sqlstate(const char *st)
{
    if (!st || strlen(st) != 5)
        return QG_ERR_SQL;
    if (!strcmp(st, "42501"))
        return QG_ERR_FORBIDDEN;
    if (!strcmp(st, "25006"))
        return QG_ERR_READ_ONLY;
    if (!strcmp(st, "57014"))
        return QG_ERR_STATEMENT_TIMEOUT;
    if (!strcmp(st, "40001") || !strcmp(st, "40P01") || !strncmp(st, "23", 2))
        return QG_ERR_CONFLICT;
    if (!strncmp(st, "08", 2) || !strncmp(st, "53", 2) || !strcmp(st, "57P01") ||
        !strcmp(st, "57P02") || !strcmp(st, "57P03"))
        return QG_ERR_DB_UNAVAILABLE;
    if (!strcmp(st, "XX000") || !strncmp(st, "XX", 2) || !strncmp(st, "58", 2))
        return QG_ERR_SQL;
    return QG_ERR_SQL;
}

static void copy_field(char *dst, size_t size, const char *src)
{
    if (!src) {
        dst[0] = '\0';
        return;
    }
    snprintf(dst, size, "%s", src);
    /* libpq ends primary messages with a newline in some paths; bodies should not. */
    dst[qg_trim_end(dst, strlen(dst), "\n ")] = '\0';
}

bool qgp_result_fatal(const PGresult *res)
{
    const char *sev = res ? PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED) : NULL;
    return sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC"));
}

qg_status qgp_error_from_result(qg_error *err, const PGresult *res)
{
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    /* NOTE: libpq may hand over the session's last words before it sees the
       socket close; whatever the SQLSTATE (25P03 is class 25), the connection is gone. */
    qg_status s = qgp_result_fatal(res) ? QG_ERR_DB_UNAVAILABLE : qg_status_from_sqlstate(st);
    if (!err || err->status != QG_OK)
        return s;
    err->status = s;
    copy_field(err->sqlstate, sizeof err->sqlstate, st);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    copy_field(err->message, sizeof err->message,
               primary ? primary : PQresultErrorMessage(res));
    copy_field(err->detail, sizeof err->detail, PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
    copy_field(err->hint, sizeof err->hint, PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
    const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
    err->position = pos ? atoi(pos) : 0;
    return s;
}
