/* Error struct handling, the contract's table of statuses and its SQLSTATE -> status mapping. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_private.h"

/*
 * The contract's error table, by status; the HTTP layer adds only the codes no
 * status has (unauthorized, not_found, ...). NOTE: Retry-After is 1 s where the
 * cause is momentary (a busy pool, a draining instance: another instance or a
 * moment later will do) and 2 s for db_unavailable, since the core already spent
 * its retries with backoff before giving up. ok and config_error are never an
 * answer (HTTP status 0).
 */
static const struct qg_status_info infos[] = {
    [QG_OK] = {"ok", 0, 0},
    [QG_ERR_INVALID_JSON] = {"invalid_json", 400, 0},
    [QG_ERR_INVALID_REQUEST] = {"invalid_request", 400, 0},
    [QG_ERR_MISSING_PARAMETER] = {"missing_parameter", 400, 0},
    [QG_ERR_UNKNOWN_PARAMETER] = {"unknown_parameter", 400, 0},
    [QG_ERR_MULTIPLE_STATEMENTS] = {"multiple_statements", 400, 0},
    [QG_ERR_TRANSACTION_CONTROL] = {"transaction_control", 400, 0},
    [QG_ERR_UNSUPPORTED_STATEMENT] = {"unsupported_statement", 400, 0},
    [QG_ERR_SQL] = {"sql_error", 400, 0},
    [QG_ERR_FORBIDDEN] = {"forbidden", 403, 0},
    [QG_ERR_READ_ONLY] = {"read_only", 403, 0},
    [QG_ERR_RAW_SQL_DISABLED] = {"raw_sql_disabled", 403, 0},
    [QG_ERR_CONFLICT] = {"conflict", 409, 0},
    [QG_ERR_RESULT_TOO_LARGE] = {"result_too_large", 422, 0},
    [QG_ERR_POOL_TIMEOUT] = {"pool_timeout", 503, 1},
    [QG_ERR_DB_UNAVAILABLE] = {"db_unavailable", 503, 2},
    [QG_ERR_SHUTTING_DOWN] = {"shutting_down", 503, 1},
    [QG_ERR_STATEMENT_TIMEOUT] = {"statement_timeout", 504, 0},
    [QG_ERR_CONFIG] = {"config_error", 0, 0},
    [QG_ERR_INTERNAL] = {"internal_error", 500, 0},
};

#define NINFOS (sizeof infos / sizeof infos[0])

const struct qg_status_info *qg_status_info(qg_status s)
{
    return (size_t)s < NINFOS ? &infos[s] : &infos[QG_ERR_INTERNAL];
}

const struct qg_status_info *qg_status_info_by_code(const char *code)
{
    for (size_t i = 0; i < NINFOS; i++)
        if (!strcmp(infos[i].code, code))
            return &infos[i];
    return NULL;
}

const char *qg_status_code(qg_status s)
{
    return qg_status_info(s)->code;
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
