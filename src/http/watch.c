/* Client watcher: notices a client that hangs up while its request runs, and cancels its statement. */
#define _GNU_SOURCE /* POLLRDHUP */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"

/*
 * NOTE: libmicrohttpd does not look at a suspended connection, so nobody would
 * see its client leave until the worker resumes it. One thread polls the
 * sockets of the requests that run for POLLRDHUP (peer closed or shut down its
 * side; pipelined bytes do not wake it) and cancels their statements. A client
 * that half-closes and still waits for its answer counts as gone, as in nginx.
 */
struct qgh_watch {
    pthread_mutex_t mu;
    pthread_cond_t done;     /* a cancel in progress finished */
    struct qgh_watch_entry *head;
    int wake[2];             /* a byte here: the set changed, or stopping */
    bool stopping;
    pthread_t thread;
    struct pollfd *fds;      /* the poll set, rebuilt each round */
    struct qgh_watch_entry **polled;
    size_t cap;
};

/* Re-sent while the request still runs: a cancel that lands between statements is ignored. */
#define QGH_RECANCEL_MS 200

void qgh_cancel_init(struct qgh_cancel *cs)
{
    pthread_mutex_init(&cs->mu, NULL);
    cs->conn = NULL;
    atomic_init(&cs->gone, false);
}

void qgh_cancel_destroy(struct qgh_cancel *cs)
{
    pthread_mutex_destroy(&cs->mu);
}

qg_status qgh_exec(struct qgh_cancel *cs, qg_conn *c, const char *sql, const qg_params *params,
                   const struct qg_exec_options *opt, qg_result **out, qg_error *err)
{
    if (!cs)
        return qg_exec(c, sql, params, opt, out, err);
    *out = NULL;
    pthread_mutex_lock(&cs->mu);
    bool gone = atomic_load(&cs->gone);
    if (!gone)
        cs->conn = c;
    pthread_mutex_unlock(&cs->mu);
    if (gone)
        return qg_error_set(err, QG_ERR_STATEMENT_TIMEOUT,
                            "cancelled: the client closed the connection");
    qg_status s = qg_exec(c, sql, params, opt, out, err);
    pthread_mutex_lock(&cs->mu);
    cs->conn = NULL;
    pthread_mutex_unlock(&cs->mu);
    return s;
}

bool qgh_client_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void wake(qgh_watch *w)
{
    char b = 1;
    ssize_t n;
    do
        n = write(w->wake[1], &b, 1);
    while (n < 0 && errno == EINTR);
}

/* The sockets of requests whose clients are still there, the wake pipe first. Lock held. */
static size_t build_set(qgh_watch *w)
{
    size_t n = 1;
    for (struct qgh_watch_entry *e = w->head; e; e = e->next)
        n += !atomic_load(&e->cancel->gone);
    if (n > w->cap) {
        size_t cap = n * 2;
        struct pollfd *fds = realloc(w->fds, cap * sizeof *fds);
        if (fds)
            w->fds = fds;
        struct qgh_watch_entry **polled = realloc(w->polled, cap * sizeof *polled);
        if (polled)
            w->polled = polled;
        if (!fds || !polled)
            return 1; /* out of memory: watch nothing this round */
        w->cap = cap;
    }
    w->fds[0] = (struct pollfd){.fd = w->wake[0], .events = POLLIN};
    n = 1;
    for (struct qgh_watch_entry *e = w->head; e; e = e->next) {
        if (atomic_load(&e->cancel->gone))
            continue;
        w->polled[n] = e;
        w->fds[n++] = (struct pollfd){.fd = e->fd, .events = POLLRDHUP};
    }
    return n;
}

static bool registered(qgh_watch *w, const struct qgh_watch_entry *e)
{
    for (struct qgh_watch_entry *x = w->head; x; x = x->next)
        if (x == e)
            return true;
    return false;
}

/* Cancels the statements of gone clients; the lock is dropped around each cancel. */
static void cancel_gone(qgh_watch *w)
{
    for (struct qgh_watch_entry *e = w->head; e; e = e->next) {
        if (!atomic_load(&e->cancel->gone) || e->cancelling)
            continue;
        e->cancelling = true; /* pins e: remove waits for it */
        pthread_mutex_unlock(&w->mu);
        pthread_mutex_lock(&e->cancel->mu);
        if (e->cancel->conn)
            qg_conn_cancel(e->cancel->conn);
        pthread_mutex_unlock(&e->cancel->mu);
        pthread_mutex_lock(&w->mu);
        e->cancelling = false;
        pthread_cond_broadcast(&w->done);
    }
}

static void *watch_main(void *arg)
{
    qgh_watch *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stopping) {
        size_t n = build_set(w);
        bool any_gone = false;
        for (struct qgh_watch_entry *e = w->head; e && !any_gone; e = e->next)
            any_gone = atomic_load(&e->cancel->gone);
        pthread_mutex_unlock(&w->mu);
        int r = poll(w->fds, n, any_gone ? QGH_RECANCEL_MS : -1);
        pthread_mutex_lock(&w->mu);
        if (r > 0 && (w->fds[0].revents & POLLIN)) {
            char buf[64];
            while (read(w->wake[0], buf, sizeof buf) > 0) {
            }
        }
        /* NOTE: an entry removed during poll() may have had its fd reused: only
           entries still registered count. */
        for (size_t i = 1; r > 0 && i < n; i++)
            if ((w->fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) && registered(w, w->polled[i]))
                atomic_store(&w->polled[i]->cancel->gone, true);
        cancel_gone(w);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

qg_status qgh_watch_new(qgh_watch **out, qg_error *err)
{
    *out = NULL;
    qgh_watch *w = calloc(1, sizeof *w);
    if (!w)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory starting the client watcher");
    if (pipe2(w->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(w);
        return qg_error_set(err, QG_ERR_INTERNAL, "cannot create the client watcher's pipe: %s",
                            strerror(errno));
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->done, NULL);
    int rc = pthread_create(&w->thread, NULL, watch_main, w);
    if (rc) {
        close(w->wake[0]);
        close(w->wake[1]);
        pthread_cond_destroy(&w->done);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return qg_error_set(err, QG_ERR_INTERNAL, "cannot start the client watcher: %s",
                            strerror(rc));
    }
    *out = w;
    return QG_OK;
}

void qgh_watch_add(qgh_watch *w, struct qgh_watch_entry *e, int fd, struct qgh_cancel *cs)
{
    e->fd = fd;
    e->cancel = cs;
    e->cancelling = false;
    pthread_mutex_lock(&w->mu);
    e->next = w->head;
    w->head = e;
    pthread_mutex_unlock(&w->mu);
    wake(w);
}

void qgh_watch_remove(qgh_watch *w, struct qgh_watch_entry *e)
{
    pthread_mutex_lock(&w->mu);
    while (e->cancelling)
        pthread_cond_wait(&w->done, &w->mu);
    for (struct qgh_watch_entry **p = &w->head; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }
    e->next = NULL;
    pthread_mutex_unlock(&w->mu);
    /* No wake: a stale fd in the poll set is ignored (registered()) and dropped next round. */
}

void qgh_watch_free(qgh_watch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_mutex_unlock(&w->mu);
    wake(w);
    pthread_join(w->thread, NULL);
    close(w->wake[0]);
    close(w->wake[1]);
    free(w->fds);
    free(w->polled);
    pthread_cond_destroy(&w->done);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
