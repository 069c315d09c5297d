/* Connection guard: refuses connections past HTTP_MAX_CONNECTIONS and cuts clients too slow to send a request. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "conns.h"
#include "log.h"

struct qgh_conn {
    struct qgh_conn *prev, *next;
    int fd;
    _Atomic long long deadline_ms; /* monotonic; 0 while a request is being answered */
    bool cut;
};

struct qgh_conns {
    int max;
    long long timeout_ms;
    pthread_mutex_t lock; /* the list; held while a socket is shut down */
    pthread_cond_t wake;
    struct qgh_conn *head;
    int open;             /* connections past the accept check */
    int reserved;         /* admitted, not yet open (see qgh_conns_admit) */
    long long refused;    /* since the last log line */
    double refused_logged;
    bool stopping;
    pthread_t sweeper;
};

static long long now_ms(void)
{
    return (long long)(qg_now() * 1000.0);
}

/*
 * NOTE: HTTP_IDLE_TIMEOUT alone (MHD's inactivity timeout) is reset by every
 * byte, so a slowloris client sending one byte a second would hold a slot
 * forever; the sweep gives each request a total deadline instead. shutdown()
 * rather than close(): the socket stays MHD's, which then sees EOF and frees
 * the connection on its own thread.
 */
static void *sweep(void *arg)
{
    qgh_conns *g = arg;
    long long period = g->timeout_ms / 8 < 250 ? g->timeout_ms / 8 : 250;
    pthread_mutex_lock(&g->lock);
    while (!g->stopping) {
        struct timespec ts = qg_timespec(qg_now() + (double)(period > 10 ? period : 10) / 1000.0);
        pthread_cond_timedwait(&g->wake, &g->lock, &ts);
        long long now = now_ms();
        int cut = 0;
        for (struct qgh_conn *c = g->head; c; c = c->next) {
            long long d = atomic_load(&c->deadline_ms);
            if (d && now > d && !c->cut) {
                shutdown(c->fd, SHUT_RDWR);
                c->cut = true;
                cut++;
            }
        }
        /* debug: idle keep-alive connections end here too, which is no news */
        if (cut)
            qgh_log(QG_LOG_DEBUG,
                    "closed %d connection(s) that sent no complete request within %lld s "
                    "(HTTP_IDLE_TIMEOUT)", cut, g->timeout_ms / 1000);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

qg_status qgh_conns_new(int max_connections, int timeout_s, qgh_conns **out, qg_error *err)
{
    *out = NULL;
    qgh_conns *g = calloc(1, sizeof *g);
    if (!g)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory starting the server");
    g->max = max_connections > 0 ? max_connections : 1;
    g->timeout_ms = (timeout_s > 0 ? timeout_s : 1) * 1000LL;
    pthread_mutex_init(&g->lock, NULL);
    qg_cond_init_monotonic(&g->wake);
    if (pthread_create(&g->sweeper, NULL, sweep, g)) {
        pthread_cond_destroy(&g->wake);
        pthread_mutex_destroy(&g->lock);
        free(g);
        return qg_error_set(err, QG_ERR_INTERNAL, "cannot start a thread; check ulimit -u");
    }
    *out = g;
    return QG_OK;
}

void qgh_conns_free(qgh_conns *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->stopping = true;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->sweeper, NULL);
    while (g->head) {
        struct qgh_conn *c = g->head;
        g->head = c->next;
        free(c);
    }
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

/*
 * NOTE: the HTTP threads accept at the same time, so the accept check reserves
 * the slot until the connection opens: libmicrohttpd calls both on the accepting
 * thread, one right after the other. A reservation still held at this thread's
 * next check belongs to a connection that never opened (out of memory, TLS).
 */
static _Thread_local qgh_conns *reserved_here;

static void unreserve(qgh_conns *g)
{
    if (reserved_here == g) {
        g->reserved--;
        reserved_here = NULL;
    }
}

bool qgh_conns_admit(qgh_conns *g)
{
    pthread_mutex_lock(&g->lock);
    unreserve(g);
    bool ok = g->open + g->reserved < g->max;
    if (ok) {
        g->reserved++;
        reserved_here = g;
    } else {
        g->refused++;
        /* At most one line every 10 s: a flood must not flood the log too. */
        double now = qg_now();
        if (now - g->refused_logged >= 10.0) {
            qgh_log(QG_LOG_WARN,
                    "refused %lld connection(s): %d open, the limit (HTTP_MAX_CONNECTIONS)",
                    g->refused, g->open);
            g->refused = 0;
            g->refused_logged = now;
        }
    }
    pthread_mutex_unlock(&g->lock);
    return ok;
}

struct qgh_conn *qgh_conns_open(qgh_conns *g, int fd)
{
    struct qgh_conn *c = fd >= 0 ? calloc(1, sizeof *c) : NULL;
    pthread_mutex_lock(&g->lock);
    unreserve(g);
    g->open++;
    if (c) {
        c->fd = fd;
        atomic_store(&c->deadline_ms, now_ms() + g->timeout_ms);
        c->next = g->head;
        if (g->head)
            g->head->prev = c;
        g->head = c;
    }
    pthread_mutex_unlock(&g->lock);
    if (!c && fd >= 0)
        shutdown(fd, SHUT_RDWR); /* untracked, so it may not stay */
    return c;
}

void qgh_conns_close(qgh_conns *g, struct qgh_conn *c)
{
    pthread_mutex_lock(&g->lock);
    g->open--;
    if (c) {
        if (c->prev)
            c->prev->next = c->next;
        else
            g->head = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    pthread_mutex_unlock(&g->lock);
    free(c);
}

void qgh_conns_arrived(struct qgh_conn *c)
{
    if (c)
        atomic_store(&c->deadline_ms, 0);
}

void qgh_conns_answered(qgh_conns *g, struct qgh_conn *c)
{
    if (c)
        atomic_store(&c->deadline_ms, now_ms() + g->timeout_ms);
}

void qgh_conns_linger(struct qgh_conn *c, double secs)
{
    if (!c)
        return;
    long long end = now_ms() + (long long)(secs * 1000.0);
    long long d = atomic_load(&c->deadline_ms);
    if (!d || end < d)
        atomic_store(&c->deadline_ms, end);
}
