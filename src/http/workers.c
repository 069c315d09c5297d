/*
 * Worker pool: a FIFO of jobs run by a fixed set of threads; an expirer answers jobs that waited too long.
 * NOTE: with one worker per pooled connection, this queue is where requests wait for a
 * connection, so a queued job counts in its pool's `waiting` and an expired one in `timeouts`.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "workers.h"

struct qgh_workers {
    pthread_mutex_t mu;
    pthread_cond_t work;    /* a job was queued, or stopping */
    pthread_cond_t expirer; /* the head of the queue changed, or stopping */
    pthread_cond_t idle;    /* a job finished */
    struct qgh_job *head, *tail;
    size_t queued;
    int running;
    bool stopping;
    double timeout_s;
    int nthreads;        /* started workers */
    pthread_t *threads;
    pthread_t expirer_thread;
    bool expirer_started;
};

/* Takes the head of the queue; called with mu held. */
static struct qgh_job *pop(qgh_workers *w)
{
    struct qgh_job *j = w->head;
    if (j) {
        w->head = j->next;
        if (!w->head)
            w->tail = NULL;
        w->queued--;
        j->next = NULL;
        /* NOTE: no wake-up for the expirer: the new head's deadline is later than the
           one it sleeps until, so it finds the new head when it wakes anyway. */
    }
    return j;
}

/* The job left the queue; before run() or expire(), which may free it. */
static void stop_waiting(struct qgh_job *j, bool gave_up)
{
    if (j->pool)
        qg_pool_wait_end(j->pool, gave_up);
}

static void *worker_main(void *arg)
{
    qgh_workers *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->work, &w->mu);
        struct qgh_job *j = pop(w);
        if (!j)
            break; /* stopping and nothing left */
        w->running++;
        pthread_mutex_unlock(&w->mu);
        stop_waiting(j, false);
        /* NOTE: j may be freed once run() returns (the connection resumed). */
        j->run(j);
        pthread_mutex_lock(&w->mu);
        w->running--;
        pthread_cond_broadcast(&w->idle);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* FIFO with one timeout for all, so the head always has the oldest deadline. */
static void *expirer_main(void *arg)
{
    qgh_workers *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stopping) {
        if (!w->head) {
            pthread_cond_wait(&w->expirer, &w->mu);
            continue;
        }
        double deadline = w->head->deadline;
        if (qg_now() < deadline) {
            struct timespec ts = qg_timespec(deadline);
            pthread_cond_timedwait(&w->expirer, &w->mu, &ts);
            continue;
        }
        struct qgh_job *j = pop(w);
        pthread_mutex_unlock(&w->mu);
        stop_waiting(j, true);
        j->expire(j, QG_ERR_POOL_TIMEOUT);
        pthread_mutex_lock(&w->mu);
        pthread_cond_broadcast(&w->idle);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void init_sync(qgh_workers *w)
{
    pthread_mutex_init(&w->mu, NULL);
    qg_cond_init_monotonic(&w->work);
    qg_cond_init_monotonic(&w->expirer);
    qg_cond_init_monotonic(&w->idle);
}

qg_status qgh_workers_new(int nthreads, double timeout_s, qgh_workers **out, qg_error *err)
{
    *out = NULL;
    if (nthreads < 1)
        nthreads = 1;
    qgh_workers *w = calloc(1, sizeof *w);
    if (!w || !(w->threads = calloc((size_t)nthreads, sizeof *w->threads))) {
        free(w);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory starting the worker pool");
    }
    init_sync(w);
    w->timeout_s = timeout_s;
    for (int i = 0; i < nthreads; i++) {
        int rc = pthread_create(&w->threads[i], NULL, worker_main, w);
        if (rc) {
            qgh_workers_free(w);
            return qg_error_set(err, QG_ERR_INTERNAL, "cannot start worker thread %d of %d: %s",
                                i + 1, nthreads, strerror(rc));
        }
        w->nthreads = i + 1;
    }
    int rc = pthread_create(&w->expirer_thread, NULL, expirer_main, w);
    if (rc) {
        qgh_workers_free(w);
        return qg_error_set(err, QG_ERR_INTERNAL, "cannot start the expirer thread: %s",
                            strerror(rc));
    }
    w->expirer_started = true;
    *out = w;
    return QG_OK;
}

bool qgh_workers_submit(qgh_workers *w, struct qgh_job *job)
{
    /* Before the job is visible: a worker may take it at once. */
    if (job->pool)
        qg_pool_wait_begin(job->pool);
    pthread_mutex_lock(&w->mu);
    if (w->stopping) {
        pthread_mutex_unlock(&w->mu);
        stop_waiting(job, false);
        return false;
    }
    job->next = NULL;
    job->deadline = qg_now() + w->timeout_s;
    if (w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    w->queued++;
    pthread_cond_signal(&w->work);
    if (w->head == job)
        pthread_cond_signal(&w->expirer);
    pthread_mutex_unlock(&w->mu);
    return true;
}

bool qgh_workers_wait_idle(qgh_workers *w, double timeout_s)
{
    double end = qg_now() + (timeout_s > 0 ? timeout_s : 0);
    pthread_mutex_lock(&w->mu);
    while ((w->queued || w->running) && qg_now() < end) {
        struct timespec ts = qg_timespec(end);
        pthread_cond_timedwait(&w->idle, &w->mu, &ts);
    }
    bool idle = !w->queued && !w->running;
    pthread_mutex_unlock(&w->mu);
    return idle;
}

void qgh_workers_free(qgh_workers *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    struct qgh_job *j;
    while ((j = pop(w))) {
        pthread_mutex_unlock(&w->mu);
        stop_waiting(j, false);
        j->expire(j, QG_ERR_SHUTTING_DOWN);
        pthread_mutex_lock(&w->mu);
    }
    pthread_cond_broadcast(&w->work);
    pthread_cond_broadcast(&w->expirer);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    if (w->expirer_started)
        pthread_join(w->expirer_thread, NULL);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->expirer);
    pthread_cond_destroy(&w->idle);
    pthread_mutex_destroy(&w->mu);
    free(w->threads);
    free(w);
}
