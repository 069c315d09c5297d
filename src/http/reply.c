/* Replies: the contract's error codes mapped to HTTP statuses, JSON error bodies, and If-None-Match. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "log.h"
#include "reply.h"

/* The error codes of the contract that no qg_status has (the rest: qg_status_info). */
static const struct qg_status_info http_codes[] = {
    {"unauthorized", 401, 0},
    {"not_found", 404, 0},
    {"method_not_allowed", 405, 0},
    {"payload_too_large", 413, 0},
    {"header_too_large", 431, 0},
    {"unsupported_media_type", 415, 0},
    {"client_closed_request", 499, 0}, /* nginx's: for the log and metrics */
};

/* The row of code; internal_error's for a code that is no answer of the contract. */
static const struct qg_status_info *code_info(const char *code)
{
    for (size_t i = 0; i < sizeof http_codes / sizeof http_codes[0]; i++)
        if (!strcmp(http_codes[i].code, code))
            return &http_codes[i];
    const struct qg_status_info *info = qg_status_info_by_code(code);
    return info && info->http_status ? info : qg_status_info(QG_ERR_INTERNAL);
}

void qgh_reply_reset(struct qgh_reply *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

void qgh_reply_body(struct qgh_reply *r, int status, const char *content_type, qg_buf *b)
{
    free(r->body);
    r->body = qg_buf_steal(b, &r->len);
    if (!r->body) {
        qgh_reply_fail(r, "internal_error", "out of memory building the response");
        return;
    }
    r->status = status;
    r->content_type = content_type;
}

void qgh_reply_json(struct qgh_reply *r, int status, qg_buf *b)
{
    qgh_reply_body(r, status, "application/json", b);
}

/* Sets status, code and headers of an error; body built by the caller. */
static void set_error(struct qgh_reply *r, const char *code)
{
    const struct qg_status_info *info = code_info(code);
    free(r->body);
    r->body = NULL;
    r->len = 0;
    r->code = info->code;
    r->status = info->http_status;
    r->retry_after = info->retry_after;
    r->content_type = "application/json";
}

/* The last resort when even an error body cannot be allocated. */
static void static_oom(struct qgh_reply *r)
{
    static const char body[] =
        "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}";
    set_error(r, "internal_error");
    r->body = malloc(sizeof body);
    if (r->body) {
        memcpy(r->body, body, sizeof body);
        r->len = sizeof body - 1;
    }
    snprintf(r->message, sizeof r->message, "out of memory");
}

static void finish(struct qgh_reply *r, qg_buf *b)
{
    qg_buf_puts(b, "}}");
    r->body = qg_buf_steal(b, &r->len);
    if (!r->body)
        static_oom(r);
}

static void put_field(qg_buf *b, const char *key, const char *val)
{
    if (!val[0])
        return;
    qg_buf_printf(b, ",\"%s\":", key);
    qg_buf_json_string(b, val, strlen(val));
}

void qgh_reply_error(struct qgh_reply *r, const qg_error *err)
{
    const char *code = qg_status_code(err->status);
    if (err->status == QG_OK || err->status == QG_ERR_CONFIG)
        code = "internal_error";
    set_error(r, code);
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", err->sqlstate);
    snprintf(r->message, sizeof r->message, "%.255s", err->message);
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_printf(&b, "{\"error\":{\"code\":\"%s\",\"message\":", r->code);
    const char *msg = err->message[0] ? err->message : "no message";
    qg_buf_json_string(&b, msg, strlen(msg));
    put_field(&b, "sqlstate", err->sqlstate);
    put_field(&b, "detail", err->detail);
    put_field(&b, "hint", err->hint);
    if (err->position > 0)
        qg_buf_printf(&b, ",\"position\":%d", err->position);
    if (err->statement_index >= 0)
        qg_buf_printf(&b, ",\"statement_index\":%d", err->statement_index);
    if (err->outcome_unknown)
        qg_buf_puts(&b, ",\"outcome\":\"unknown\"");
    finish(r, &b);
}

/*
 * NOTE: db_unavailable's cause names the database's host and port, the
 * service's login and role names (libpq's "connection to server at ...").
 * That is for operators: an admin key and the log get it, other callers a
 * plain sentence, as /health/ready does. The service's own 503 messages
 * (pool_timeout, shutting_down) name none of these.
 */
void qgh_reply_error_as(struct qgh_reply *r, const qg_error *err,
                        const struct qgh_principal *who)
{
    if (err->status != QG_ERR_DB_UNAVAILABLE) {
        qgh_reply_error(r, err);
        return;
    }
    qgh_log(QG_LOG_WARN, "db_unavailable: %s%s%s", err->message, err->detail[0] ? "; " : "",
            err->detail);
    if (who && (who->scopes & QGH_SCOPE_ADMIN)) {
        qgh_reply_error(r, err);
        return;
    }
    qg_error plain;
    qg_error_clear(&plain);
    plain.status = err->status;
    plain.outcome_unknown = err->outcome_unknown;
    plain.statement_index = err->statement_index;
    snprintf(plain.sqlstate, sizeof plain.sqlstate, "%s", err->sqlstate);
    snprintf(plain.message, sizeof plain.message,
             "the database is unavailable%s; retry later. The service's log has the cause "
             "under this answer's X-Request-Id",
             err->outcome_unknown ? "; the write may or may not have been applied" : "");
    qgh_reply_error(r, &plain);
}

void qgh_reply_fail(struct qgh_reply *r, const char *code, const char *fmt, ...)
{
    set_error(r, code);
    r->sqlstate[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_printf(&b, "{\"error\":{\"code\":\"%s\",\"message\":", r->code);
    qg_buf_json_string(&b, r->message, strlen(r->message));
    finish(r, &b);
}

/* Whether an If-None-Match list ("*", or entity tags, weak or not) names etag (weak comparison). */
static bool etag_listed(const char *list, const char *etag)
{
    size_t n = strlen(etag);
    for (const char *p = list; *p;) {
        p += strspn(p, " \t,");
        if (*p == '*')
            return true;
        if (!strncmp(p, "W/", 2))
            p += 2;
        if (*p != '"')
            return false;
        const char *end = strchr(p + 1, '"');
        if (!end)
            return false;
        if ((size_t)(end + 1 - p) == n && !memcmp(p, etag, n))
            return true;
        p = end + 1;
    }
    return false;
}

/*
 * NOTE: libmicrohttpd 0.9.75 adds "Content-Length: 0" to the 304 whatever we
 * do (RFC 9110 would have none, or the 200's); caches ignore a 304's
 * Content-Length (RFC 9111 3.2), and clients read no body after a 304.
 */
void qgh_reply_conditional(struct qgh_reply *r, const char *if_none_match)
{
    if (!r->etag || r->status != 200 || !if_none_match || !etag_listed(if_none_match, r->etag))
        return;
    free(r->body);
    r->body = NULL;
    r->len = 0;
    r->status = 304;
    r->content_type = NULL;
}
