/* Client watcher: notices a client that hangs up while its request runs, and cancels its statement. */
#define _GNU_SOURCE /* POLLRDHUP */
#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cancel.h"
#include "watch.h"

/*
 * NOTE: libmicrohttpd does not look at a suspended connection, so nobody would
 * see its client leave until the worker resumes it. One thread watches the
 * sockets of the requests that run for EPOLLRDHUP (peer closed or shut down its
 * side; pipelined bytes do not wake it) and cancels their statements. A client
 * that half-closes and still waits for its answer counts as gone, as in nginx.
 */
struct qgh_watch {
    pthread_mutex_t mu;
    pthread_cond_t done;     /* a cancel in progress finished */
    struct qgh_watch_entry *head;
    uint64_t next_id;
    int epfd;                /* the sockets of running requests, for EPOLLRDHUP */
    int stopfd;              /* an eventfd: written once, to stop */
    bool stopping;
    pthread_t thread;
};

/* Re-sent while the request still runs: a cancel that lands between statements is ignored. */
#define QGH_RECANCEL_MS 200

bool qgh_client_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static struct qgh_watch_entry *find(qgh_watch *w, uint64_t id)
{
    for (struct qgh_watch_entry *e = w->head; e; e = e->next)
        if (e->id == id)
            return e;
    return NULL;
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
        if (e->cancel->conn) {
            atomic_store(&e->cancel->cancelled, true);
            qg_conn_cancel(e->cancel->conn);
        }
        pthread_mutex_unlock(&e->cancel->mu);
        pthread_mutex_lock(&w->mu);
        e->cancelling = false;
        pthread_cond_broadcast(&w->done);
    }
}

static bool any_gone(qgh_watch *w)
{
    for (struct qgh_watch_entry *e = w->head; e; e = e->next)
        if (atomic_load(&e->cancel->gone))
            return true;
    return false;
}

/*
 * NOTE: the set lives in the kernel (epoll), so adding and removing a request
 * costs its worker one epoll_ctl each and never wakes this thread; it wakes only
 * when a client hangs up (or to re-send cancels while a gone client's request runs).
 */
static void *watch_main(void *arg)
{
    qgh_watch *w = arg;
    bool pending = false;
    for (;;) {
        struct epoll_event ev[16];
        int n = epoll_wait(w->epfd, ev, 16, pending ? QGH_RECANCEL_MS : -1);
        pthread_mutex_lock(&w->mu);
        if (w->stopping) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        for (int i = 0; i < n; i++) {
            struct qgh_watch_entry *e = find(w, ev[i].data.u64);
            if (!e || !(ev[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                continue;
            atomic_store(&e->cancel->gone, true);
            /* Level-triggered, and HUP cannot be masked: out of the set, or it would
               fire until the request ends. Cancels are re-sent by the timeout. */
            epoll_ctl(w->epfd, EPOLL_CTL_DEL, e->fd, NULL);
            e->fd = -1;
        }
        cancel_gone(w);
        pending = any_gone(w);
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

qg_status qgh_watch_new(qgh_watch **out, qg_error *err)
{
    *out = NULL;
    qgh_watch *w = calloc(1, sizeof *w);
    if (!w)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory starting the client watcher");
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event stop = {.events = EPOLLIN, .data.u64 = 0}; /* ids start at 1 */
    if (w->epfd < 0 || w->stopfd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stopfd, &stop)) {
        int e = errno;
        if (w->epfd >= 0)
            close(w->epfd);
        if (w->stopfd >= 0)
            close(w->stopfd);
        free(w);
        return qg_error_set(err, QG_ERR_INTERNAL, "cannot set up the client watcher: %s", strerror(e));
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->done, NULL);
    int rc = pthread_create(&w->thread, NULL, watch_main, w);
    if (rc) {
        close(w->epfd);
        close(w->stopfd);
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
    e->id = ++w->next_id;
    e->next = w->head;
    w->head = e;
    pthread_mutex_unlock(&w->mu);
    /* NOTE: outside the lock, which the workers share; an event can only name an
       id that is already in the list. */
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.u64 = e->id};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        pthread_mutex_lock(&w->mu);
        e->fd = -1; /* not watched (e.g. out of memory): the request just runs */
        pthread_mutex_unlock(&w->mu);
    }
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
    int fd = e->fd; /* -1 when the watcher already took it out */
    e->fd = -1;
    pthread_mutex_unlock(&w->mu);
    /* An event already collected for it finds its id gone from the list. */
    if (fd >= 0)
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
}

void qgh_watch_free(qgh_watch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_mutex_unlock(&w->mu);
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(w->stopfd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
    pthread_join(w->thread, NULL);
    close(w->epfd);
    close(w->stopfd);
    pthread_cond_destroy(&w->done);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
