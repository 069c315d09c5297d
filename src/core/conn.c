/* One PostgreSQL connection: open (with the pooler fallback), ping, close. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trip.h"

static _Thread_local const char *log_tag;

const char *qg_log_tag(void)
{
    return log_tag;
}

const char *qgp_log_tag_set(const char *tag)
{
    const char *old = log_tag;
    log_tag = tag;
    return old;
}

void qgp_log(qg_manager *m, enum qg_log_level level, const char *fmt, ...)
{
    if (!m->log_fn || level < m->cfg->log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    m->log_fn(m->log_arg, level, msg);
}

bool qgp_send_command(PGconn *pg, const char *sql)
{
    return PQsendQueryParams(pg, sql, 0, NULL, NULL, NULL, NULL, 0);
}

bool qgp_stale_plan(const qg_error *e)
{
    return !strcmp(e->sqlstate, "26000") ||
           (!strcmp(e->sqlstate, "0A000") && strstr(e->message, "cached plan"));
}


qg_status qgp_conn_lost(qg_conn *c, qg_error *err, const char *doing)
{
    if (c)
        qgp_conn_set_state(c, QGP_CONN_BROKEN);
    const char *why = c && c->pg ? PQerrorMessage(c->pg) : "no connection";
    qg_status s = qg_error_set(err, QG_ERR_DB_UNAVAILABLE,
                               "the database connection failed while %s: %.300s", doing, why);
    if (err && err->status == QG_ERR_DB_UNAVAILABLE && !err->sqlstate[0])
        snprintf(err->sqlstate, sizeof err->sqlstate, "08006");
    return s;
}

/* libpq reports a pooler's refusal of the `options` startup parameter this way. */
static bool pooler_refused_options(const PGconn *pg)
{
    const char *msg = PQerrorMessage(pg);
    return strstr(msg, "unsupported startup parameter") != NULL;
}

static PGconn *connect_with(const qgp_conninfo *ci)
{
    return PQconnectdbParams((const char *const *)ci->keywords,
                             (const char *const *)ci->values, 0);
}

static qg_status connect_error(qg_manager *m, PGconn *pg, qg_error *err)
{
    char why[400];
    snprintf(why, sizeof why, "%s", pg ? PQerrorMessage(pg) : "out of memory");
    why[qg_trim_end(why, strlen(why), "\n ")] = '\0';
    qg_status s = m->role
        ? qg_error_set(err, QG_ERR_DB_UNAVAILABLE,
                       "could not connect to the database at %s as role \"%s\": %s; the role "
                       "needs LOGIN and its password in PGPASSFILE (or another libpq method)",
                       m->ci_options->display, m->role, why)
        : qg_error_set(err, QG_ERR_DB_UNAVAILABLE,
                       "could not connect to the database at %s: %s; check DATABASE_URL "
                       "and that the server is up",
                       m->ci_options->display, why);
    if (err && err->status == QG_ERR_DB_UNAVAILABLE && !err->sqlstate[0]) {
        snprintf(err->sqlstate, sizeof err->sqlstate, "08001");
        err->unreachable = true;
    }
    return s;
}

static PGconn *open_pg(qg_manager *m, bool *pooler)
{
    if (atomic_load(&m->pooler)) {
        *pooler = true;
        return connect_with(m->ci_plain);
    }
    PGconn *pg = connect_with(m->ci_options);
    if (pg && PQstatus(pg) != CONNECTION_OK && m->cfg->pooler == QG_POOLER_AUTO &&
        pooler_refused_options(pg)) {
        /* NOTE: PgBouncer rejects `options`; from now on every connection goes without. */
        PQfinish(pg);
        atomic_store(&m->pooler, true);
        qgp_log(m, QG_LOG_INFO, "the server refused startup options (a pooler such as "
                                "PgBouncer?); settings are now applied per transaction");
        *pooler = true;
        return connect_with(m->ci_plain);
    }
    *pooler = false;
    return pg;
}

/* Server notices (RAISE NOTICE, termination messages) go to the log, not stderr. */
static void notice_to_log(void *arg, const char *message)
{
    qgp_log(arg, QG_LOG_DEBUG, "server notice: %.900s", message);
}

/* A pool whose URL names several hosts says when its connections start reaching another:
   for the primary's pool, a failover followed. */
static void note_server(qg_manager *m, PGconn *pg)
{
    char now[96], was[96] = "";
    snprintf(now, sizeof now, "%s:%s", PQhost(pg), PQport(pg));
    pthread_mutex_lock(&m->lock);
    bool moved = strcmp(m->server, now) != 0;
    if (moved) {
        snprintf(was, sizeof was, "%s", m->server);
        snprintf(m->server, sizeof m->server, "%s", now);
    }
    pthread_mutex_unlock(&m->lock);
    if (moved && *was)
        qgp_log(m, QG_LOG_WARN, "%s connections now reach %s (was %s)%s",
                m->replica_of ? "a replica's" : "the primary's", now, was,
                m->replica_of ? "" : ": a failover was followed");
}

qg_status qgp_conn_open(qg_manager *m, qg_conn **out, qg_error *err)
{
    *out = NULL;
    bool pooler = false;
    PGconn *pg = open_pg(m, &pooler);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        qg_status s = connect_error(m, pg, err);
        PQfinish(pg);
        return s;
    }
    qg_conn *c = calloc(1, sizeof *c);
    if (!c) {
        PQfinish(pg);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory opening a connection");
    }
    note_server(m, pg);
    c->pg = pg;
    c->m = m;
    c->pooler = pooler;
    c->created_at = c->last_used = qg_now();
    c->cancel = PQgetCancel(pg);
    /* NOTE: the event loop must never wait on a send; the blocking API polls. */
    PQsetnonblocking(pg, 1);
    PQsetNoticeProcessor(pg, notice_to_log, m);
    pthread_mutex_init(&c->cancel_lock, NULL);
    *out = c;
    return QG_OK;
}

void qgp_conn_close(qg_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->cancel_lock);
    PQfreeCancel(c->cancel);
    c->cancel = NULL;
    pthread_mutex_unlock(&c->cancel_lock);
    pthread_mutex_destroy(&c->cancel_lock);
    PQfinish(c->pg);
    qgp_stmt_cache_free(&c->stmts);
    free(c);
}

void qg_conn_cancel(qg_conn *c)
{
    if (!c)
        return;
    char errbuf[256];
    pthread_mutex_lock(&c->cancel_lock);
    if (c->cancel)
        (void)PQcancel(c->cancel, errbuf, sizeof errbuf);
    pthread_mutex_unlock(&c->cancel_lock);
}

bool qgp_conn_alive(qg_conn *c)
{
    if (c->state != QGP_CONN_IDLE || PQstatus(c->pg) != CONNECTION_OK ||
        PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        return false;
    /* An idle connection has nothing to say. Readable means the server spoke
       anyway (a termination notice, possibly SSL-wrapped) or hung up: either way
       it is not to be trusted. Costs a poll(), not a round trip. */
    struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
    return p.fd >= 0 && poll(&p, 1, 0) == 0;
}

void qgp_conn_set_state(qg_conn *c, enum qgp_conn_state to)
{
    if (c->state == QGP_CONN_BROKEN)
        return;
    c->state = to;
}


bool qgp_conn_standby(const qg_conn *c, const char *sqlstate, bool ours)
{
    if (!qgp_conn_in_scope(c) || c->tx_read_only)
        return false;
    const char *hot = PQparameterStatus(c->pg, "in_hot_standby");
    if (hot && !strcmp(hot, "on"))
        return true;
    if (!sqlstate)
        return false;
    /* NOTE: in_hot_standby comes from PostgreSQL 14 on, and a pooler passes on the value
       of the server it first met, which may since have become a standby. Our own BEGIN
       READ WRITE fails with 0A000 only there ("during recovery"). */
    if (ours && !strcmp(sqlstate, "0A000"))
        return true;
    /* NOTE: with target_session_attrs=read-write a server whose default is read-only is no
       primary either (libpq would not connect to it): a failover manager's fence
       (FENCE_SQL in exec.c) makes our transaction read-only there. */
    return !strcmp(sqlstate, "25006") &&
           (c->m->read_write_target || !(hot && !strcmp(hot, "off")));
}

qg_status qgp_standby_error(qg_conn *c, qg_error *err)
{
    qgp_conn_set_state(c, QGP_CONN_BROKEN);
    qgp_log(c->m, QG_LOG_WARN, "a connection is on a server that does not accept writes (a "
                               "read-only standby after a failover, or a primary its failover "
                               "manager fenced); it is closed and the write goes to the primary");
    qg_status s = qg_error_set(err, QG_ERR_DB_UNAVAILABLE,
                               "the database server does not accept writes (a read-only standby, "
                               "or fenced by a failover manager): no primary accepted the write; "
                               "list every host in DATABASE_URL with "
                               "target_session_attrs=read-write");
    if (err && err->status == QG_ERR_DB_UNAVAILABLE && !err->sqlstate[0]) {
        snprintf(err->sqlstate, sizeof err->sqlstate, "25006");
        err->unreachable = true;
    }
    return s;
}

bool qgp_ping_start(struct qgp_trip *t, qg_conn *c)
{
    qgp_trip_begin(t, c, NULL, NULL, NULL);
    qgp_trip_text(t, QGP_PART_PING, "");
    qgp_trip_sync(t);
    return !t->done;
}

bool qgp_conn_ping(qg_conn *c, double timeout_s)
{
    if (!qgp_conn_alive(c))
        return false;
    struct qgp_trip t;
    if (qgp_ping_start(&t, c))
        (void)qgp_trip_wait(&t, qg_now() + timeout_s);
    qgp_trip_free(&t);
    return t.s == QG_OK && !t.command_failed && t.synced;
}

