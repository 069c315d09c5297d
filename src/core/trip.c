/* One round trip: parts queued in a libpq pipeline, their results read as they arrive. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "trip.h"

qg_status qgp_server_error(qg_conn *c, const qgp_sql *ps, const PGresult *res, qg_error *err,
                           const char *doing)
{
    if (PQstatus(c->pg) != CONNECTION_OK || !res || !PQresultErrorField(res, PG_DIAG_SQLSTATE))
        return qgp_conn_lost(c, err, doing);
    if (qgp_result_fatal(res))
        qgp_conn_set_state(c, QGP_CONN_BROKEN);
    else if (qgp_conn_standby(c, PQresultErrorField(res, PG_DIAG_SQLSTATE), !ps))
        return qgp_standby_error(c, err); /* refused, so it did not run */
    qg_status s = qgp_error_from_result(err, res);
    if (err && err->position && ps)
        err->position = qgp_sql_map_position(ps, err->position);
    return s;
}

void qgp_trip_begin(struct qgp_trip *t, qg_conn *c, qgp_trip_take_fn take, void *arg,
                    qg_error *err)
{
    memset(t, 0, sizeof *t);
    t->c = c;
    t->take = take;
    t->arg = arg;
    t->err = err;
    t->parts = t->small;
    t->cap = sizeof t->small / sizeof *t->small;
    t->end = QGP_END_NONE;
    t->end_at = (size_t)-1;
    t->sent = PQenterPipelineMode(c->pg);
    qg_error_clear(&t->end_err);
}

static void add(struct qgp_trip *t, enum qgp_part_kind kind, void *item, bool ok)
{
    if (!ok)
        t->sent = false;
    if (!t->sent)
        return;
    if (t->n == t->cap) {
        size_t cap = t->cap * 2;
        struct qgp_part *p = malloc(cap * sizeof *p);
        if (!p) {
            t->sent = false;
            t->oom = true;
            return;
        }
        memcpy(p, t->parts, t->n * sizeof *p);
        if (t->parts != t->small)
            free(t->parts);
        t->parts = p;
        t->cap = cap;
    }
    t->parts[t->n++] = (struct qgp_part){kind, item};
}

void qgp_trip_text(struct qgp_trip *t, enum qgp_part_kind kind, const char *sql)
{
    add(t, kind, NULL, t->sent && qgp_send_command(t->c->pg, sql));
}

void qgp_trip_item(struct qgp_trip *t, enum qgp_part_kind kind, void *item, bool ok)
{
    add(t, kind, item, ok);
}

void qgp_trip_param(struct qgp_trip *t, const char *sql, const char *value)
{
    add(t, QGP_PART_COMMAND, NULL,
        t->sent && PQsendQueryParams(t->c->pg, sql, 1, NULL, &value, NULL, NULL, 0));
}

/* A part that could not be queued: as a connection lost while sending. */
static void send_failed(struct qgp_trip *t)
{
    t->done = true;
    if (t->oom) {
        qgp_conn_set_state(t->c, QGP_CONN_BROKEN);
        t->s = qg_error_set(t->err, QG_ERR_INTERNAL, "out of memory queueing the statements");
    } else {
        t->s = qgp_conn_lost(t->c, t->err, "sending the statement");
    }
    if (t->err && t->end == QGP_END_COMMIT && !t->oom)
        t->err->outcome_unknown = true; /* part of it may have gone out */
}

void qgp_trip_sync(struct qgp_trip *t)
{
    if (t->sent)
        t->sent = PQpipelineSync(t->c->pg);
    if (!t->sent)
        send_failed(t);
}

/* Our own command's result. */
static void take_command(struct qgp_trip *t, const struct qgp_part *p, const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    if (p->kind == QGP_PART_PING) {
        if (st != PGRES_EMPTY_QUERY)
            t->command_failed = true;
        return;
    }
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_PIPELINE_ABORTED)
        return;
    t->command_failed = true;
    qg_status s = qgp_server_error(t->c, NULL, res, t->err, "running the statement");
    if (t->s == QG_OK)
        t->s = s;
}

/* True for an answer that PQgetResult would repeat forever (a COPY). */
bool qgp_endless(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH;
}

static bool end_reached(const struct qgp_trip *t)
{
    return t->cur > t->end_at || (t->cur == t->end_at && t->in_part);
}

/*
 * The trip is over: read to its sync, or cut short by a lost connection. A
 * connection lost before COMMIT's answer arrived, without the server refusing
 * an earlier part, leaves the outcome unknown: the server may have committed.
 * Once COMMIT's success is read, the write stands whatever happens next.
 */
static enum qgp_wait finish(struct qgp_trip *t)
{
    t->done = true;
    if (end_reached(t))
        qgp_end_finish(t);
    if (t->synced)
        return QGP_WAIT_NONE;
    qgp_conn_set_state(t->c, QGP_CONN_BROKEN);
    if (t->committed)
        return QGP_WAIT_NONE;
    if (t->s == QG_OK)
        t->s = qgp_conn_lost(t->c, t->err, "reading the result");
    if (t->end == QGP_END_COMMIT && !t->refused && t->err &&
        t->err->status == QG_ERR_DB_UNAVAILABLE)
        t->err->outcome_unknown = true;
    return QGP_WAIT_NONE;
}

static void part_result(struct qgp_trip *t, struct qgp_part *p, PGresult *res)
{
    bool kept = false;
    switch (p->kind) {
    case QGP_PART_COMMAND:
    case QGP_PART_PING:
        take_command(t, p, res);
        break;
    case QGP_PART_PREPARE:
    case QGP_PART_DESCRIBE:
    case QGP_PART_STATEMENT:
        kept = t->take(t, p, res);
        break;
    case QGP_PART_END:
    case QGP_PART_RESET:
    case QGP_PART_AUDIT:
        qgp_end_take(t, p, res);
        break;
    }
    if (!kept)
        PQclear(res);
}

enum qgp_wait qgp_trip_step(struct qgp_trip *t, bool readable)
{
    if (t->done)
        return QGP_WAIT_NONE;
    PGconn *pg = t->c->pg;
    if (readable)
        (void)PQconsumeInput(pg); /* a failure shows in PQstatus */
    int unsent = PQflush(pg);
    if (unsent < 0)
        return finish(t);
    enum qgp_wait wait = unsent ? QGP_WAIT_WRITE : QGP_WAIT_READ;
    for (;;) {
        /* NOTE: a stream's back-pressure: what libpq has not read stays in the socket,
           so the server blocks on its send and memory stays bounded. */
        if (t->pause)
            return QGP_WAIT_PAUSE;
        /* NOTE: on a failed connection PQgetResult never blocks: it reports and ends. */
        bool bad = PQstatus(pg) != CONNECTION_OK;
        if (t->cur == t->n) {
            if (!bad && PQisBusy(pg))
                return wait;
            PGresult *sync = bad ? NULL : PQgetResult(pg);
            t->synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC &&
                        PQexitPipelineMode(pg);
            PQclear(sync);
            return finish(t);
        }
        struct qgp_part *p = &t->parts[t->cur];
        if (!t->in_part) {
            t->in_part = true;
            if (p->kind == QGP_PART_STATEMENT)
                PQsetSingleRowMode(pg);
        }
        if (!bad && PQisBusy(pg))
            return wait;
        PGresult *res = PQgetResult(pg);
        if (!res) {
            if (p->kind == QGP_PART_PREPARE || p->kind == QGP_PART_DESCRIBE ||
                p->kind == QGP_PART_STATEMENT)
                (void)t->take(t, p, NULL);
            t->in_part = false;
            t->cur++;
            if (PQstatus(pg) != CONNECTION_OK)
                return finish(t);
            continue;
        }
        if (PQresultErrorField(res, PG_DIAG_SQLSTATE))
            t->refused = true;
        bool stop = qgp_endless(res);
        part_result(t, p, res);
        if (stop)
            return finish(t); /* the copy never ends: the connection is dropped */
    }
}

int qgp_wait_socket(PGconn *pg, enum qgp_wait w, double deadline)
{
    struct pollfd p = {.fd = PQsocket(pg), .events = POLLIN | (w == QGP_WAIT_WRITE ? POLLOUT : 0)};
    if (p.fd < 0)
        return -1;
    for (;;) {
        int ms = -1;
        if (deadline > 0) {
            double left = deadline - qg_now();
            if (left <= 0)
                return 0;
            ms = (int)(left * 1000) + 1;
        }
        int r = poll(&p, 1, ms);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

qg_status qgp_trip_wait(struct qgp_trip *t, double deadline)
{
    bool readable = false;
    enum qgp_wait w;
    while ((w = qgp_trip_step(t, readable)) != QGP_WAIT_NONE) {
        int r = qgp_wait_socket(t->c->pg, w, deadline);
        if (r <= 0) {
            (void)finish(t); /* as lost: too late, or the socket cannot be waited on */
            break;
        }
        readable = true;
    }
    return t->s;
}

void qgp_trip_free(struct qgp_trip *t)
{
    if (t->parts != t->small)
        free(t->parts);
    t->parts = t->small;
    t->n = 0;
}
