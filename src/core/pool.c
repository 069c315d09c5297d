/* The connection pool: QueuePool semantics (size, overflow, FIFO waiters, recycle, pre-ping). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manager_private.h"

static void link_all(qg_manager *m, qg_conn *c)
{
    c->prev_all = NULL;
    c->next_all = m->all;
    if (m->all)
        m->all->prev_all = c;
    m->all = c;
}

static void unlink_all(qg_manager *m, qg_conn *c)
{
    if (c->prev_all)
        c->prev_all->next_all = c->next_all;
    else if (m->all == c)
        m->all = c->next_all;
    if (c->next_all)
        c->next_all->prev_all = c->prev_all;
    c->prev_all = c->next_all = NULL;
}

/* Removes a closed slot: a waiter may now open one. Called with the lock held. */
static void release_slot_locked(qg_manager *m)
{
    m->open--;
    if (m->wait_head) {
        struct qgp_waiter *w = m->wait_head;
        m->wait_head = w->next;
        if (!m->wait_head)
            m->wait_tail = NULL;
        w->may_open = true;
        m->open++;
        pthread_cond_signal(&w->cv);
    }
}

static void remove_waiter_locked(qg_manager *m, struct qgp_waiter *w)
{
    struct qgp_waiter **p = &m->wait_head;
    struct qgp_waiter *prev = NULL;
    while (*p && *p != w) {
        prev = *p;
        p = &(*p)->next;
    }
    if (*p) {
        *p = w->next;
        if (m->wait_tail == w)
            m->wait_tail = prev;
    }
}

/*
 * Waits in line for a connection or a free slot. Returns with the lock held;
 * *conn set, or *may_open true, or an error (timeout, shutdown).
 */
static qg_status wait_locked(qg_manager *m, qg_conn **conn, bool *may_open, qg_error *err)
{
    struct qgp_waiter w;
    memset(&w, 0, sizeof w);
    qg_cond_init_monotonic(&w.cv);
    if (m->wait_tail)
        m->wait_tail->next = &w;
    else
        m->wait_head = &w;
    m->wait_tail = &w;
    m->waiting++;

    struct timespec until = qg_timespec(qg_now() + m->cfg->pool_timeout_s);
    int rc = 0;
    while (!w.conn && !w.may_open && !w.cancelled && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&w.cv, &m->lock, &until);
    m->waiting--;
    qg_status s = QG_OK;
    if (w.conn || w.may_open) {
        *conn = w.conn;
        *may_open = w.may_open;
    } else {
        remove_waiter_locked(m, &w);
        if (w.cancelled) {
            s = qg_error_set(err, QG_ERR_SHUTTING_DOWN, "the service is shutting down; retry on another instance");
        } else {
            m->timeouts++;
            s = qg_error_set(err, QG_ERR_POOL_TIMEOUT,
                             "no database connection became free within %gs (DB_POOL_TIMEOUT); all "
                             "%d connections (DB_POOL_SIZE %d + DB_MAX_OVERFLOW %d) are busy: retry "
                             "later, or raise DB_POOL_SIZE/DB_MAX_OVERFLOW",
                             m->cfg->pool_timeout_s, m->cfg->pool_size + m->cfg->max_overflow,
                             m->cfg->pool_size, m->cfg->max_overflow);
        }
    }
    pthread_cond_destroy(&w.cv);
    return s;
}

/* Takes a connection or a slot to open one; the lock is taken and released here. */
static qg_status acquire(qg_manager *m, qg_conn **conn, bool *may_open, qg_error *err)
{
    *conn = NULL;
    *may_open = false;
    pthread_mutex_lock(&m->lock);
    qg_status s = QG_OK;
    if (m->shutting_down) {
        s = qg_error_set(err, QG_ERR_SHUTTING_DOWN, "the service is shutting down; retry on another instance");
    } else if (m->idle && !m->wait_head) {
        *conn = m->idle;
        m->idle = (*conn)->next_idle;
        m->nidle--;
    } else if (m->open < m->cfg->pool_size + m->cfg->max_overflow && !m->wait_head) {
        m->open++;
        *may_open = true;
    } else {
        s = wait_locked(m, conn, may_open, err);
    }
    if (s == QG_OK)
        m->checked_out++;
    pthread_mutex_unlock(&m->lock);
    return s;
}

/* Closes a lent connection and gives its slot back. */
static void discard(qg_manager *m, qg_conn *c, bool recycled)
{
    pthread_mutex_lock(&m->lock);
    unlink_all(m, c);
    if (recycled)
        m->recycles++;
    pthread_mutex_unlock(&m->lock);
    qgp_conn_close(c);
}

static qg_status open_new(qg_manager *m, qg_conn **out, qg_error *err)
{
    qg_status s = qgp_conn_open(m, out, err);
    pthread_mutex_lock(&m->lock);
    if (s == QG_OK) {
        m->connects++;
        link_all(m, *out);
    } else {
        m->errors++;
        m->checked_out--;
        release_slot_locked(m);
        pthread_cond_broadcast(&m->drained);
    }
    pthread_mutex_unlock(&m->lock);
    return s;
}

/* Recycle and pre-ping: replace an old or dead connection before the caller sees it. */
static bool usable(qg_manager *m, qg_conn *c)
{
    double now = qg_now();
    if (m->cfg->pool_recycle_s >= 0 && now - c->created_at > m->cfg->pool_recycle_s)
        return false;
    if (!qgp_conn_alive(c))
        return false;
    if (now - c->last_used >= m->cfg->preping_idle_s)
        return qgp_conn_ping(c, m->cfg->connect_timeout_s);
    return true;
}

qg_status qg_checkout(qg_manager *m, qg_conn **out, qg_error *err)
{
    *out = NULL;
    qg_conn *c;
    bool may_open;
    qg_status s = acquire(m, &c, &may_open, err);
    if (s != QG_OK)
        return s;
    if (c && !usable(m, c)) {
        discard(m, c, true);
        c = NULL;
    }
    if (!c) {
        s = open_new(m, &c, err);
        if (s != QG_OK)
            return s;
    }
    *out = c;
    return QG_OK;
}

/* Puts c back (or hands it to the first waiter); closes it when over size. */
static void give_back(qg_manager *m, qg_conn *c)
{
    c->last_used = qg_now();
    pthread_mutex_lock(&m->lock);
    m->checked_out--;
    if (m->wait_head && !m->shutting_down) {
        struct qgp_waiter *w = m->wait_head;
        m->wait_head = w->next;
        if (!m->wait_head)
            m->wait_tail = NULL;
        w->conn = c;
        pthread_cond_signal(&w->cv);
        c = NULL;
    } else if (m->open > m->cfg->pool_size || m->shutting_down) {
        unlink_all(m, c);
        m->open--;
    } else {
        c->next_idle = m->idle;
        m->idle = c;
        m->nidle++;
        c = NULL;
    }
    pthread_cond_broadcast(&m->drained);
    pthread_mutex_unlock(&m->lock);
    qgp_conn_close(c);
}

void qg_checkin(qg_manager *m, qg_conn *c)
{
    if (!c)
        return;
    /* Never pool a connection inside a transaction or holding a caller's state:
       roll back and reset it, or drop it. */
    if (c->state != QGP_CONN_IDLE || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        qgp_conn_clean(c);
    if (qgp_conn_broken(c) || PQstatus(c->pg) != CONNECTION_OK) {
        pthread_mutex_lock(&m->lock);
        unlink_all(m, c);
        m->checked_out--;
        release_slot_locked(m);
        pthread_cond_broadcast(&m->drained);
        pthread_mutex_unlock(&m->lock);
        qgp_conn_close(c);
        return;
    }
    give_back(m, c);
}

void qgp_pool_close_all(qg_manager *m)
{
    pthread_mutex_lock(&m->lock);
    qg_conn *c = m->idle;
    m->idle = NULL;
    m->nidle = 0;
    while (c) {
        qg_conn *next = c->next_idle;
        unlink_all(m, c);
        m->open--;
        pthread_mutex_unlock(&m->lock);
        qgp_conn_close(c);
        pthread_mutex_lock(&m->lock);
        c = next;
    }
    pthread_mutex_unlock(&m->lock);
}

void qg_pool_stats(qg_manager *m, struct qg_pool_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&m->lock);
    out->size = m->cfg->pool_size;
    out->max_overflow = m->cfg->max_overflow;
    out->checked_out = m->checked_out;
    out->idle = m->nidle;
    out->overflow = m->open - m->cfg->pool_size;
    out->waiting = m->waiting;
    out->connects = m->connects;
    out->recycles = m->recycles;
    out->timeouts = m->timeouts;
    out->errors = m->errors;
    pthread_mutex_unlock(&m->lock);
    out->timeout_s = m->cfg->pool_timeout_s;
    out->recycle_s = m->cfg->pool_recycle_s;
    out->retries = atomic_load(&m->retries);
    out->health_connection = atomic_load(&m->health_open);
}

void qg_pool_wait_begin(qg_manager *m)
{
    pthread_mutex_lock(&m->lock);
    m->waiting++;
    pthread_mutex_unlock(&m->lock);
}

void qg_pool_wait_end(qg_manager *m, bool gave_up)
{
    pthread_mutex_lock(&m->lock);
    m->waiting--;
    if (gave_up)
        m->timeouts++;
    pthread_mutex_unlock(&m->lock);
}
