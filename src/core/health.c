/* Health: a round trip on a dedicated connection, and a cache so probe storms stay cheap. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "manager_private.h"

static void close_health(qg_manager *m)
{
    PQfinish(m->health_pg);
    m->health_pg = NULL;
}

/*
 * NOTE: the check has its own connection so that a busy pool (every connection
 * lent out) does not make a healthy instance look dead to its load balancer.
 */
static bool open_health(qg_manager *m, char *why, size_t size)
{
    const qgp_conninfo *ci = atomic_load(&m->pooler) ? m->ci_plain : m->ci_options;
    m->health_pg = PQconnectdbParams((const char *const *)ci->keywords,
                                     (const char *const *)ci->values, 0);
    if (!m->health_pg || PQstatus(m->health_pg) != CONNECTION_OK) {
        snprintf(why, size, "cannot connect to the database: %s",
                 m->health_pg ? PQerrorMessage(m->health_pg) : "out of memory");
        return false;
    }
    return true;
}

enum qgp_asked qgp_ask(PGconn *pg, const char *sql, double deadline, double timeout_s,
                       char *value, size_t vsize, char *why, size_t wsize)
{
    if (value && vsize)
        value[0] = '\0';
    if (!PQsendQuery(pg, sql)) {
        snprintf(why, wsize, "the database connection failed: %s", PQerrorMessage(pg));
        return QGP_ASKED_LOST;
    }
    bool ok = false, first = true;
    for (;;) {
        while (PQisBusy(pg)) {
            double left = deadline - qg_now();
            struct pollfd p = {.fd = PQsocket(pg), .events = POLLIN};
            int r = left > 0 ? poll(&p, 1, (int)(left * 1000) + 1) : 0;
            if (r == 0) {
                snprintf(why, wsize, "the database did not answer within %gs (DB_CONNECT_TIMEOUT)",
                         timeout_s);
                return QGP_ASKED_TIMEOUT;
            }
            if ((r < 0 && errno != EINTR) || (r > 0 && !PQconsumeInput(pg)))
                break;
        }
        PGresult *res = PQgetResult(pg);
        if (!res)
            break;
        ok = PQresultStatus(res) == PGRES_TUPLES_OK;
        if (!ok)
            snprintf(why, wsize, "the database failed the check: %s", PQerrorMessage(pg));
        else if (first && value && vsize && PQntuples(res) > 0 && PQnfields(res) > 0)
            snprintf(value, vsize, "%s", PQgetvalue(res, 0, 0));
        first = false;
        PQclear(res);
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(why, wsize, "the database connection failed: %s", PQerrorMessage(pg));
        return QGP_ASKED_LOST;
    }
    return ok ? QGP_ASKED_OK : QGP_ASKED_FAILED;
}

/* SELECT 1 on the open health connection, answered by deadline (monotonic seconds). */
static enum qgp_asked ask(qg_manager *m, double deadline, char *why, size_t size)
{
    enum qgp_asked a = qgp_ask(m->health_pg, "SELECT 1", deadline, m->cfg->connect_timeout_s,
                               NULL, 0, why, size);
    if (a == QGP_ASKED_TIMEOUT)
        close_health(m);
    return a;
}

static bool round_trip(qg_manager *m, char *why, size_t size)
{
    double deadline = qg_now() + m->cfg->connect_timeout_s;
    if (m->health_pg && PQstatus(m->health_pg) != CONNECTION_OK)
        close_health(m);
    bool kept = m->health_pg != NULL;
    if (!kept && !open_health(m, why, size))
        return false;
    enum qgp_asked a = ask(m, deadline, why, size);
    /* NOTE: a kept connection's backend may have ended while the database stayed up
       (failover, pg_terminate_backend, a restart between probes): that says nothing
       about the database now, so one new connection gets the same question. A
       database that is gone refuses it at once; a timeout is never asked again. */
    if (a == QGP_ASKED_LOST && kept) {
        close_health(m);
        if (!open_health(m, why, size))
            return false;
        a = ask(m, deadline, why, size);
    }
    return a == QGP_ASKED_OK;
}

void qg_health_check(qg_manager *m, struct qg_health *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&m->health_pg_lock);
    double t0 = qg_now();
    out->healthy = round_trip(m, out->error, sizeof out->error);
    out->latency_ms = (qg_now() - t0) * 1000.0;
    atomic_store(&m->health_open, m->health_pg && PQstatus(m->health_pg) == CONNECTION_OK);
    pthread_mutex_unlock(&m->health_pg_lock);
    out->error[qg_trim_end(out->error, strlen(out->error), "\n ")] = '\0';
    pthread_mutex_lock(&m->lock);
    out->connection_count = m->checked_out + m->nidle;
    pthread_mutex_unlock(&m->lock);
}

void qg_health_cached(qg_manager *m, int max_age_ms, struct qg_health *out)
{
    pthread_mutex_lock(&m->health_lock);
    for (;;) {
        if (m->health_at > 0 && (qg_now() - m->health_at) * 1000.0 < max_age_ms) {
            *out = m->health_cached;
            break;
        }
        if (m->health_running) {
            /* Someone is asking the database right now: share their answer. */
            while (m->health_running)
                pthread_cond_wait(&m->health_done, &m->health_lock);
            *out = m->health_cached;
            break;
        }
        m->health_running = true;
        pthread_mutex_unlock(&m->health_lock);
        qg_health_check(m, out);
        pthread_mutex_lock(&m->health_lock);
        m->health_cached = *out;
        m->health_at = qg_now();
        m->health_running = false;
        pthread_cond_broadcast(&m->health_done);
        break;
    }
    pthread_mutex_unlock(&m->health_lock);
}
