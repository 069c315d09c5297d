/*
 * A read answered as NDJSON while it runs: {"columns": [...]}, one row object a
 * line, then {"row_count": N}, or {"error": {...}} when it fails after the first
 * line. The run's batches (qg_run_stream_start) are pulled by the server as the
 * client reads; the next batch is asked for only once this one is sent, so a
 * slow client slows the database instead of filling memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "reqid.h"
#include "request.h"
#include "stream.h"

struct qgh_stream {
    struct qgh_call *call;    /* NULL once the server is done with the request */
    const struct qgh_ctx *ctx;
    struct qgh_statement st;
    char *sql;                /* st.sql's copy: a named query's text may be reloaded meanwhile */
    char *claims;             /* the token's, copied: the run may outlive its request */
    qg_run *run;              /* NULL once it ended */
    qg_buf out;               /* body bytes not yet handed to the server */
    size_t sent;              /* of out */
    bool started;             /* the columns' line is out: the answer is a 200 */
    bool ended;               /* the last line is in out */
    bool aborted;             /* ... or could not be written */
    long long rows;
    size_t bytes;
    char request_id[QGH_REQUEST_ID_MAX + 1]; /* for the log line at its end */
};

/* True when an Accept element's parameters (from just after its type) say q=0: refused. */
static bool q_zero(const char *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != ';')
            continue;
        size_t j = i + 1 + strspn(p + i + 1, " \t");
        if (j + 2 < n && (p[j] == 'q' || p[j] == 'Q') && p[j + 1] == '=') {
            j += 2;
            if (p[j] != '0')
                return false;
            for (j++; j < n && (p[j] == '0' || p[j] == '.'); j++)
                ;
            return j == n || p[j] == ';' || p[j] == ' ' || p[j] == '\t';
        }
    }
    return false;
}

bool qgh_wants_ndjson(const char *accept)
{
    for (const char *p = accept; p && *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        size_t t = strcspn(p, ",;");
        while (t && (p[t - 1] == ' ' || p[t - 1] == '\t'))
            t--;
        if (t == 20 && !strncasecmp(p, "application/x-ndjson", 20) && !q_zero(p + t, n - t))
            return true;
        p += n;
    }
    return false;
}

static void stream_free(qgh_stream *s)
{
    qgh_statement_free(&s->st);
    free(s->sql);
    free(s->claims);
    qg_buf_free(&s->out);
    free(s);
}

static void wake(qgh_stream *s)
{
    if (s->call && s->call->wake)
        s->call->wake(s->call);
}

static void put(qgh_stream *s, const char *data, size_t len)
{
    qg_buf_append(&s->out, data, len);
    s->bytes += len;
    qgh_metrics_stream(s->ctx->metrics, 0, len);
}

static void on_columns(void *arg, const char *json, size_t len)
{
    qgh_stream *s = arg;
    s->started = true;
    put(s, "{\"columns\":", 11);
    put(s, json, len);
    put(s, "}\n", 2);
    if (!s->call)
        return;
    qgh_call_ran(s->call, s->run);
    struct qgh_reply *rep = s->call->reply;
    rep->status = 200;
    rep->content_type = "application/x-ndjson";
    rep->stream = s;
    s->call->finish(s->call);
}

static void on_rows(void *arg, char *lines, size_t len, long long n)
{
    qgh_stream *s = arg;
    put(s, lines, len);
    s->rows += n;
    qgh_metrics_stream(s->ctx->metrics, n, 0);
    free(lines);
    wake(s);
}

/* The error as its last line: the body an ordinary answer would have had. */
static void error_line(qgh_stream *s, qg_status st, const qg_error *err)
{
    struct qgh_reply line, *keep = s->call->reply;
    memset(&line, 0, sizeof line);
    s->call->reply = &line;
    qgh_reply_run_error(s->call, st, err, "the statement failed", false);
    s->call->reply = keep;
    if (line.body) {
        put(s, line.body, line.len);
        put(s, "\n", 1);
    }
    qgh_reply_reset(&line);
}

/* The access line was written when the stream began (200): how it ended, for the log
   (no error message: it may quote a value). */
static void log_end(const qgh_stream *s, qg_status st, const qg_error *err)
{
    qgh_log_request(s->request_id);
    if (!s->call)
        qgh_log(QG_LOG_INFO, "stream cut after %lld rows, %zu bytes: the client left",
                s->rows, s->bytes);
    else if (st == QG_OK)
        qgh_log(QG_LOG_INFO, "stream complete: %lld rows, %zu bytes", s->rows, s->bytes);
    else
        qgh_log(QG_LOG_INFO, "stream ended by an error after %lld rows, %zu bytes: %s%s%s",
                s->rows, s->bytes, qg_status_code(st), err && err->sqlstate[0] ? " " : "",
                err ? err->sqlstate : "");
    qgh_log_request(NULL);
}

static void on_end(void *arg, qg_status st, long long row_count, const qg_error *err)
{
    qgh_stream *s = arg;
    qg_run *run = s->run; /* still alive during this call */
    s->run = NULL;
    atomic_fetch_sub(s->ctx->open_runs, 1);
    if (s->call)
        s->call->run = NULL;
    if (!s->started) { /* nothing went out: the ordinary answer */
        if (s->call) {
            qgh_call_ran(s->call, run);
            qgh_reply_run_error(s->call, st, err, "the statement failed", false);
            s->call->finish(s->call);
        }
        stream_free(s);
        return;
    }
    log_end(s, st, err);
    if (!s->call) {
        stream_free(s);
        return;
    }
    if (st == QG_OK) {
        char last[48];
        int n = snprintf(last, sizeof last, "{\"row_count\":%lld}\n", row_count);
        put(s, last, (size_t)n);
    } else {
        error_line(s, st, err);
    }
    s->ended = true;
    s->aborted = s->out.oom;
    wake(s);
}

static const struct qg_run_stream callbacks = {on_columns, on_rows, on_end, 65536};

void qgh_stream_statement(const struct qgh_ctx *ctx, struct qgh_call *call,
                          struct qgh_statement *st)
{
    qg_error err;
    qg_error_clear(&err);
    qgh_stream *s = calloc(1, sizeof *s);
    if (!s) {
        qgh_statement_free(st);
        qgh_reply_fail(call->reply, "internal_error", "out of memory starting the stream");
        call->finish(call);
        return;
    }
    s->call = call;
    s->ctx = ctx;
    snprintf(s->request_id, sizeof s->request_id, "%s", call->request_id);
    s->st = *st;
    memset(st, 0, sizeof *st);
    s->sql = strdup(s->st.sql ? s->st.sql : "");
    const char *claims = qgh_claims(call);
    s->claims = claims ? strdup(claims) : NULL;
    const char *sql = s->sql;
    struct qg_run_spec spec = {
        .n = 1,
        .sql = &sql,
        .params = (const qg_params *const *)s->st.sets,
        .tx = {.isolation = QG_ISOLATION_DEFAULT, .read_only = true, .caller = qgh_caller(call),
               .claims = s->claims},
        .numbers_as_strings = s->st.numbers_as_strings,
        .log_tag = s->request_id,
        .min_lsn = call->min_lsn,
    };
    qg_manager *m = NULL;
    qg_status rc = s->sql && (s->claims || !claims) ? qgh_manager_for(ctx, call, &m, &err)
                          : qg_error_set(&err, QG_ERR_INTERNAL, "out of memory starting the stream");
    if (rc == QG_OK && !qg_run_stream_start(call->loop, m, &spec, &callbacks, s, &s->run))
        rc = qg_error_set(&err, QG_ERR_INTERNAL, "out of memory starting the stream");
    if (rc != QG_OK) {
        qgh_reply_run_error(call, rc, &err, "the statement failed", false);
        stream_free(s);
        call->finish(call);
        return;
    }
    /* NOTE: the run counts as in flight until it ends, after the request's finish. */
    atomic_fetch_add(ctx->open_runs, 1);
    call->run = s->run;
}

long qgh_stream_read(qgh_stream *s, char *buf, size_t max)
{
    size_t left = s->out.len - s->sent;
    if (left && !s->out.oom) {
        size_t n = left < max ? left : max;
        memcpy(buf, s->out.data + s->sent, n);
        s->sent += n;
        if (s->sent == s->out.len) {
            qg_buf_reset(&s->out);
            s->sent = 0;
            if (s->run)
                qg_run_stream_more(s->run);
        }
        return (long)n;
    }
    if (s->out.oom)
        return QGH_STREAM_ABORT;
    if (s->ended)
        return s->aborted ? QGH_STREAM_ABORT : QGH_STREAM_END;
    return 0;
}

void qgh_stream_detach(qgh_stream *s)
{
    if (!s)
        return;
    s->call = NULL;
    if (s->run)
        qg_run_cancel(s->run);
    else
        stream_free(s);
}
