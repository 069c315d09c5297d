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

static void enqueue_locked(qg_manager *m, struct qgp_waiter *w)
{
    w->next = NULL;
    w->queued = true;
    if (m->wait_tail)
        m->wait_tail->next = w;
    else
        m->wait_head = w;
    m->wait_tail = w;
    m->waiting++;
}

/* w leaves the line; false when it was not in it. */
static bool remove_waiter_locked(qg_manager *m, struct qgp_waiter *w)
{
    if (!w->queued)
        return false;
    struct qgp_waiter **p = &m->wait_head, *prev = NULL;
    while (*p && *p != w) {
        prev = *p;
        p = &(*p)->next;
    }
    if (*p) {
        *p = w->next;
        if (m->wait_tail == w)
            m->wait_tail = prev;
    }
    w->queued = false;
    w->next = NULL;
    m->waiting--;
    return true;
}

/* The first in line gets conn, or (conn NULL) a slot to open one, or the shutdown. */
static void serve_head_locked(qg_manager *m, qg_conn *conn, bool cancelled)
{
    struct qgp_waiter *w = m->wait_head;
    remove_waiter_locked(m, w);
    w->conn = conn;
    w->may_open = !conn && !cancelled;
    w->cancelled = cancelled;
    if (w->wake)
        w->wake(w);
    else
        pthread_cond_signal(&w->cv);
}

void qgp_pool_cancel_waiters_locked(qg_manager *m)
{
    while (m->wait_head)
        serve_head_locked(m, NULL, true);
}

/* Removes a closed slot: a waiter may now open one. Called with the lock held. */
static void release_slot_locked(qg_manager *m)
{
    m->open--;
    if (m->wait_head) {
        m->open++;
        m->checked_out++;
        serve_head_locked(m, NULL, false);
    }
}

static qg_status shutting_down(qg_error *err)
{
    return qg_error_set(err, QG_ERR_SHUTTING_DOWN,
                        "the service is shutting down; retry on another instance");
}

static qg_status timed_out_locked(qg_manager *m, qg_error *err)
{
    m->timeouts++;
    return qg_error_set(err, QG_ERR_POOL_TIMEOUT,
                        "no database connection became free within %gs (DB_POOL_TIMEOUT); all "
                        "%d connections (DB_POOL_SIZE %d + DB_MAX_OVERFLOW %d) are busy: retry "
                        "later, or raise DB_POOL_SIZE/DB_MAX_OVERFLOW",
                        m->cfg->pool_timeout_s, m->cfg->pool_size + m->cfg->max_overflow,
                        m->cfg->pool_size, m->cfg->max_overflow);
}

/*
 * Waits in line for a connection or a free slot. Returns with the lock held;
 * w->conn set, or w->may_open true, or an error (timeout, shutdown).
 */
static qg_status wait_locked(qg_manager *m, struct qgp_waiter *w, qg_error *err)
{
    qg_cond_init_monotonic(&w->cv);
    enqueue_locked(m, w);
    struct timespec until = qg_timespec(qg_now() + m->cfg->pool_timeout_s);
    int rc = 0;
    while (w->queued && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&w->cv, &m->lock, &until);
    qg_status s = QG_OK;
    if (remove_waiter_locked(m, w))
        s = timed_out_locked(m, err);
    else if (w->cancelled)
        s = shutting_down(err);
    pthread_cond_destroy(&w->cv);
    return s;
}

/*
 * A connection, a slot to open one, or (w->wake set) a place in line: then
 * w->wake(w) is called, with the pool's lock held, when w is served.
 */
static qg_status take_locked(qg_manager *m, struct qgp_waiter *w, bool *queued, qg_error *err)
{
    w->conn = NULL;
    w->may_open = w->cancelled = w->queued = false;
    *queued = false;
    if (m->shutting_down)
        return shutting_down(err);
    if (m->idle && !m->wait_head) {
        w->conn = m->idle;
        m->idle = w->conn->next_idle;
        m->nidle--;
    } else if (m->open < m->cfg->pool_size + m->cfg->max_overflow && !m->wait_head) {
        m->open++;
        w->may_open = true;
    } else if (w->wake) {
        enqueue_locked(m, w);
        *queued = true;
        return QG_OK;
    } else {
        qg_status s = wait_locked(m, w, err);
        if (s != QG_OK)
            return s;
        return QG_OK; /* served: counted as checked out by who served it */
    }
    m->checked_out++;
    return QG_OK;
}

qg_status qgp_pool_take(qg_manager *m, struct qgp_waiter *w, bool *queued, qg_error *err)
{
    bool in_line;
    pthread_mutex_lock(&m->lock);
    qg_status s = take_locked(m, w, queued ? queued : &in_line, err);
    pthread_mutex_unlock(&m->lock);
    return s;
}

bool qgp_pool_leave(qg_manager *m, struct qgp_waiter *w, bool timed_out, qg_error *err)
{
    pthread_mutex_lock(&m->lock);
    bool left = remove_waiter_locked(m, w);
    if (left && timed_out)
        timed_out_locked(m, err);
    pthread_mutex_unlock(&m->lock);
    return left;
}

/* Closes a lent connection whose slot its caller fills with a new one. */
void qgp_pool_replace(qg_manager *m, qg_conn *c, bool recycled)
{
    pthread_mutex_lock(&m->lock);
    unlink_all(m, c);
    if (recycled)
        m->recycles++;
    pthread_mutex_unlock(&m->lock);
    qgp_conn_close(c);
}

void qgp_pool_opened(qg_manager *m, qg_conn *c)
{
    pthread_mutex_lock(&m->lock);
    if (c) {
        m->connects++;
        link_all(m, c);
    } else {
        m->errors++;
        m->checked_out--;
        release_slot_locked(m);
        pthread_cond_broadcast(&m->drained);
    }
    pthread_mutex_unlock(&m->lock);
}

enum qgp_usable qgp_pool_check(qg_manager *m, qg_conn *c)
{
    double now = qg_now();
    if (m->cfg->pool_recycle_s >= 0 && now - c->created_at > m->cfg->pool_recycle_s)
        return QGP_REPLACE;
    if (!qgp_conn_alive(c))
        return QGP_REPLACE;
    return now - c->last_used >= m->cfg->preping_idle_s ? QGP_PING : QGP_USABLE;
}

qg_status qg_checkout(qg_manager *m, qg_conn **out, qg_error *err)
{
    *out = NULL;
    struct qgp_waiter w = {.wake = NULL};
    qg_status s = qgp_pool_take(m, &w, NULL, err);
    if (s != QG_OK)
        return s;
    qg_conn *c = w.conn;
    if (c) {
        enum qgp_usable u = qgp_pool_check(m, c);
        if (u == QGP_REPLACE ||
            (u == QGP_PING && !qgp_conn_ping(c, m->cfg->connect_timeout_s))) {
            qgp_pool_replace(m, c, true);
            c = NULL;
        }
    }
    if (!c) {
        s = qgp_conn_open(m, &c, err);
        qgp_pool_opened(m, s == QG_OK ? c : NULL);
        if (s != QG_OK)
            return s;
    }
    *out = c;
    return QG_OK;
}

/*
 * NOTE: an overflow connection is closed once it sat idle DB_OVERFLOW_IDLE,
 * not as soon as it comes back (SQLAlchemy's QueuePool): with requests no
 * longer capped by worker threads, a steady load above DB_POOL_SIZE would open
 * and close a server session per request. Looked at whenever a connection
 * comes back. The idle stack is LIFO, so its bottom is the longest idle.
 */
/* An idle connection past DB_POOL_SIZE that lingered too long, unlinked; or NULL. */
static qg_conn *reap_locked(qg_manager *m)
{
    if (m->open <= m->cfg->pool_size || !m->idle)
        return NULL;
    qg_conn **p = &m->idle;
    while ((*p)->next_idle)
        p = &(*p)->next_idle;
    qg_conn *c = *p;
    if (qg_now() - c->last_used < m->cfg->overflow_idle_s)
        return NULL;
    *p = NULL;
    m->nidle--;
    unlink_all(m, c);
    m->open--;
    return c;
}

/* Puts c back (or hands it to the first waiter); closes it when over size. */
static void give_back(qg_manager *m, qg_conn *c)
{
    c->last_used = qg_now();
    pthread_mutex_lock(&m->lock);
    m->checked_out--;
    if (m->wait_head && !m->shutting_down) {
        m->checked_out++;
        serve_head_locked(m, c, false);
        c = NULL;
    } else if (m->shutting_down) {
        unlink_all(m, c);
        m->open--;
    } else {
        c->next_idle = m->idle;
        m->idle = c;
        m->nidle++;
        c = reap_locked(m);
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
