/*
 * The event loop (querygate/loop.h): level-triggered epoll, an eventfd that
 * wakes it for posts and stop, a min-heap of timers, and the process-wide
 * helper threads of qg_loop_offload. Linux only.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "querygate/loop.h"
#include "querygate/util.h"

#define NO_INDEX SIZE_MAX
#define MAX_HELPERS 16

/* A posted call; also an offloaded job, which becomes the post of its done. */
struct task {
    struct task *next;
    qg_loop *loop;
    qg_loop_fn work; /* offload only */
    qg_loop_fn fn;
    void *arg;
};

struct qg_loop_io {
    qg_loop *loop;
    int fd;
    unsigned events;
    bool in_epoll; /* out of the set while events is 0: a hung-up fd would wake it forever */
    bool dead;     /* freed during an iteration; fn is not called any more */
    qg_loop_io_fn fn;
    void *arg;
    qg_loop_io *next_dead;
};

struct qg_loop_timer {
    qg_loop *loop;
    double at;
    size_t index; /* in the heap, or NO_INDEX when disarmed */
    qg_loop_fn fn;
    void *arg;
};

struct qg_loop {
    int ep, wake;
    atomic_bool stop;
    bool dispatching;      /* in an iteration: io frees are deferred to its end */
    qg_loop_io *dead;
    qg_loop_timer **heap;
    size_t nheap, cap, ntimers; /* room for every timer: arming never allocates */
    pthread_mutex_t mu;    /* guards the posted queue */
    struct task *head, *tail;
};

static _Thread_local qg_loop *current;

qg_loop *qg_loop_current(void)
{
    return current;
}

static void wake(qg_loop *l)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: awake anyway. */
    while (write(l->wake, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

qg_status qg_loop_new(qg_loop **out, qg_error *err)
{
    *out = NULL;
    qg_loop *l = calloc(1, sizeof *l);
    if (!l)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory creating an event loop");
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    if (l->ep < 0) {
        int e = errno;
        free(l);
        return qg_error_set(err, QG_ERR_INTERNAL, "cannot create an event loop: epoll_create1: %s",
                            strerror(e));
    }
    l->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (l->wake < 0 || epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake, &ev) < 0) {
        int e = errno;
        if (l->wake >= 0)
            close(l->wake);
        close(l->ep);
        free(l);
        return qg_error_set(err, QG_ERR_INTERNAL, "cannot create an event loop's eventfd: %s",
                            strerror(e));
    }
    atomic_init(&l->stop, false);
    pthread_mutex_init(&l->mu, NULL);
    *out = l;
    return QG_OK;
}

static void free_dead(qg_loop *l)
{
    while (l->dead) {
        qg_loop_io *io = l->dead;
        l->dead = io->next_dead;
        free(io);
    }
}

void qg_loop_free(qg_loop *l)
{
    if (!l)
        return;
    free_dead(l);
    for (struct task *t = l->head, *next; t; t = next) {
        next = t->next;
        free(t);
    }
    for (size_t i = 0; i < l->nheap; i++)
        l->heap[i]->index = NO_INDEX;
    free(l->heap);
    pthread_mutex_destroy(&l->mu);
    close(l->wake);
    close(l->ep);
    free(l);
}

void qg_loop_stop(qg_loop *l)
{
    atomic_store(&l->stop, true);
    wake(l);
}

/* ---- posts --------------------------------------------------------------- */

static void post_task(qg_loop *l, struct task *t)
{
    t->next = NULL;
    pthread_mutex_lock(&l->mu);
    bool was_empty = !l->head;
    if (l->tail)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
    pthread_mutex_unlock(&l->mu);
    /* NOTE: the loop's own thread need not wake it: it looks before it sleeps. */
    if (was_empty && current != l)
        wake(l);
}

bool qg_loop_post(qg_loop *l, qg_loop_fn fn, void *arg)
{
    struct task *t = malloc(sizeof *t);
    if (!t)
        return false;
    *t = (struct task){.loop = l, .fn = fn, .arg = arg};
    post_task(l, t);
    return true;
}

static bool posts_pending(qg_loop *l)
{
    pthread_mutex_lock(&l->mu);
    bool pending = l->head != NULL;
    pthread_mutex_unlock(&l->mu);
    return pending;
}

/* Runs what was posted until now (woken: the eventfd said so); on stop, puts the rest
   back in front. */
static void run_posts(qg_loop *l, bool woken)
{
    uint64_t n;
    while (woken && read(l->wake, &n, sizeof n) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&l->mu);
    struct task *t = l->head;
    l->head = l->tail = NULL;
    pthread_mutex_unlock(&l->mu);
    while (t) {
        struct task *next = t->next;
        qg_loop_fn fn = t->fn;
        void *arg = t->arg;
        free(t);
        fn(arg);
        t = next;
        if (t && atomic_load(&l->stop)) {
            struct task *last = t;
            while (last->next)
                last = last->next;
            pthread_mutex_lock(&l->mu);
            last->next = l->head;
            l->head = t;
            if (!l->tail)
                l->tail = last;
            pthread_mutex_unlock(&l->mu);
            wake(l);
            return;
        }
    }
}

/* ---- io ------------------------------------------------------------------ */

static uint32_t to_epoll(unsigned events)
{
    return ((events & QG_LOOP_READ) ? EPOLLIN : 0u) | ((events & QG_LOOP_WRITE) ? EPOLLOUT : 0u) |
           ((events & QG_LOOP_HUP) ? EPOLLRDHUP : 0u);
}

static unsigned from_epoll(uint32_t ev)
{
    unsigned r = ((ev & EPOLLIN) ? QG_LOOP_READ : 0u) | ((ev & EPOLLOUT) ? QG_LOOP_WRITE : 0u) |
                 ((ev & EPOLLRDHUP) ? QG_LOOP_HUP : 0u);
    /* An error or a hang-up: whoever reads or writes next finds out what happened. */
    if (ev & (EPOLLERR | EPOLLHUP))
        r |= QG_LOOP_READ | QG_LOOP_WRITE | QG_LOOP_HUP;
    return r;
}

qg_loop_io *qg_loop_io_new(qg_loop *l, int fd, unsigned events, qg_loop_io_fn fn, void *arg)
{
    qg_loop_io *io = calloc(1, sizeof *io);
    if (!io) {
        errno = ENOMEM;
        return NULL;
    }
    *io = (qg_loop_io){.loop = l, .fd = fd, .fn = fn, .arg = arg};
    /* Added even when silent, so a bad fd is refused here and not later. */
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = errno;
        free(io);
        errno = e;
        return NULL;
    }
    io->in_epoll = true;
    if (!qg_loop_io_set(io, events)) {
        int e = errno;
        epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL);
        free(io);
        errno = e;
        return NULL;
    }
    return io;
}

bool qg_loop_io_set(qg_loop_io *io, unsigned events)
{
    if (events == io->events)
        return true;
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};
    int op = !events ? EPOLL_CTL_DEL : io->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if ((events || io->in_epoll) && epoll_ctl(io->loop->ep, op, io->fd, &ev) < 0)
        return false;
    io->in_epoll = events != 0;
    io->events = events;
    return true;
}

void qg_loop_io_free(qg_loop_io *io)
{
    if (!io)
        return;
    qg_loop *l = io->loop;
    if (io->in_epoll)
        epoll_ctl(l->ep, EPOLL_CTL_DEL, io->fd, NULL);
    if (!l->dispatching) {
        free(io);
        return;
    }
    /* Events already taken from epoll_wait may still point to it. */
    io->dead = true;
    io->next_dead = l->dead;
    l->dead = io;
}

/* ---- timers: a binary min-heap on `at` ------------------------------------ */

static void heap_place(qg_loop *l, qg_loop_timer *t, size_t i)
{
    l->heap[i] = t;
    t->index = i;
}

static void sift_up(qg_loop *l, size_t i)
{
    qg_loop_timer *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->at <= t->at)
            break;
        heap_place(l, l->heap[parent], i);
        i = parent;
    }
    heap_place(l, t, i);
}

static void sift_down(qg_loop *l, size_t i)
{
    qg_loop_timer *t = l->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->nheap)
            break;
        if (c + 1 < l->nheap && l->heap[c + 1]->at < l->heap[c]->at)
            c++;
        if (t->at <= l->heap[c]->at)
            break;
        heap_place(l, l->heap[c], i);
        i = c;
    }
    heap_place(l, t, i);
}

qg_loop_timer *qg_loop_timer_new(qg_loop *l, qg_loop_fn fn, void *arg)
{
    if (l->ntimers == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        qg_loop_timer **heap = realloc(l->heap, cap * sizeof *heap);
        if (!heap)
            return NULL;
        l->heap = heap;
        l->cap = cap;
    }
    qg_loop_timer *t = malloc(sizeof *t);
    if (!t)
        return NULL;
    *t = (qg_loop_timer){.loop = l, .index = NO_INDEX, .fn = fn, .arg = arg};
    l->ntimers++;
    return t;
}

void qg_loop_timer_stop(qg_loop_timer *t)
{
    if (!t || t->index == NO_INDEX)
        return;
    qg_loop *l = t->loop;
    size_t i = t->index;
    t->index = NO_INDEX;
    qg_loop_timer *last = l->heap[--l->nheap];
    if (last == t)
        return;
    heap_place(l, last, i);
    sift_up(l, i);
    sift_down(l, last->index);
}

void qg_loop_timer_at(qg_loop_timer *t, double at)
{
    qg_loop *l = t->loop;
    qg_loop_timer_stop(t);
    t->at = at;
    heap_place(l, t, l->nheap++);
    sift_up(l, t->index);
}

bool qg_loop_timer_armed(const qg_loop_timer *t)
{
    return t->index != NO_INDEX;
}

void qg_loop_timer_free(qg_loop_timer *t)
{
    if (!t)
        return;
    qg_loop_timer_stop(t);
    t->loop->ntimers--;
    free(t);
}

/* Runs the timers due now, at most as many as were armed (one re-arming itself for the past
   waits for the next iteration instead of starving the fds). */
static void run_timers(qg_loop *l)
{
    double now = qg_now();
    for (size_t n = l->nheap; n > 0 && l->nheap > 0 && l->heap[0]->at <= now; n--) {
        qg_loop_timer *t = l->heap[0];
        qg_loop_timer_stop(t);
        t->fn(t->arg); /* may re-arm or free t */
        if (atomic_load(&l->stop))
            return;
    }
}

static int timeout_ms(const qg_loop *l)
{
    if (!l->nheap)
        return -1;
    double ms = ceil((l->heap[0]->at - qg_now()) * 1000.0);
    if (ms <= 0)
        return 0;
    return ms >= INT_MAX ? INT_MAX : (int)ms;
}

/* ---- the loop ------------------------------------------------------------ */

void qg_loop_run(qg_loop *l)
{
    qg_loop *outer = current;
    current = l;
    struct epoll_event evs[64];
    while (!atomic_load(&l->stop)) {
        int n = epoll_wait(l->ep, evs, 64, posts_pending(l) ? 0 : timeout_ms(l));
        if (n < 0 && errno != EINTR)
            break; /* a bad epoll fd: nothing left to wait on */
        l->dispatching = true;
        bool woken = false;
        for (int i = 0; i < n && !atomic_load(&l->stop); i++) {
            qg_loop_io *io = evs[i].data.ptr;
            if (!io) {
                woken = true;
                continue;
            }
            unsigned ready = io->dead ? 0 : from_epoll(evs[i].events) & io->events;
            if (ready)
                io->fn(io->arg, ready);
        }
        if (!atomic_load(&l->stop))
            run_posts(l, woken);
        if (!atomic_load(&l->stop))
            run_timers(l);
        l->dispatching = false;
        free_dead(l);
    }
    atomic_store(&l->stop, false);
    current = outer;
}

/* ---- offload: helper threads shared by all loops --------------------------- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct task *head, *tail;
    size_t queued, busy, nthreads;
    bool stopping;
    pthread_t threads[MAX_HELPERS];
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *helper_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (!pool.head && !pool.stopping)
            pthread_cond_wait(&pool.cv, &pool.mu);
        struct task *t = pool.head;
        if (!t)
            break;
        pool.head = t->next;
        if (!pool.head)
            pool.tail = NULL;
        pool.queued--;
        pool.busy++;
        pthread_mutex_unlock(&pool.mu);
        t->work(t->arg);
        post_task(t->loop, t); /* the same node: done cannot fail for want of memory */
        pthread_mutex_lock(&pool.mu);
        pool.busy--;
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

bool qg_loop_offload(qg_loop *l, qg_loop_fn work, qg_loop_fn done, void *arg)
{
    struct task *t = malloc(sizeof *t);
    if (!t)
        return false;
    *t = (struct task){.loop = l, .work = work, .fn = done, .arg = arg};
    pthread_mutex_lock(&pool.mu);
    if (pool.tail)
        pool.tail->next = t;
    else
        pool.head = t;
    pool.tail = t;
    pool.queued++;
    if (pool.queued > pool.nthreads - pool.busy && pool.nthreads < MAX_HELPERS &&
        pthread_create(&pool.threads[pool.nthreads], NULL, helper_main, NULL) == 0)
        pool.nthreads++;
    if (!pool.nthreads) {
        /* t is the only job: nobody else could have queued behind it without a thread. */
        pool.head = pool.tail = NULL;
        pool.queued = 0;
        pthread_mutex_unlock(&pool.mu);
        free(t);
        return false;
    }
    pthread_cond_signal(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    return true;
}

void qg_loop_offload_shutdown(void)
{
    pthread_mutex_lock(&pool.mu);
    pool.stopping = true;
    pthread_cond_broadcast(&pool.cv);
    size_t n = pool.nthreads;
    pthread_mutex_unlock(&pool.mu);
    for (size_t i = 0; i < n; i++)
        pthread_join(pool.threads[i], NULL);
    pthread_mutex_lock(&pool.mu);
    pool.nthreads = 0;
    pool.stopping = false;
    pthread_mutex_unlock(&pool.mu);
}
