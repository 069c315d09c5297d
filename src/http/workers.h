/* workers.c: a FIFO of jobs for a fixed set of threads. */
#ifndef QGH_WORKERS_H
#define QGH_WORKERS_H

#include <stdbool.h>
#include "querygate/querygate.h"

struct qgh_job {
    struct qgh_job *next;
    double deadline;                                  /* monotonic seconds */
    qg_manager *pool; /* while queued, counted as waiting for this pool; NULL: not counted */
    void (*run)(struct qgh_job *job);                 /* on a worker */
    void (*expire)(struct qgh_job *job, qg_status why); /* never ran: timeout or shutdown */
};

typedef struct qgh_workers qgh_workers;

/* nthreads workers; a job waiting longer than timeout_s is expired with QG_ERR_POOL_TIMEOUT
   (and counted in its pool's timeouts). */
qg_status qgh_workers_new(int nthreads, double timeout_s, qgh_workers **out,
                          qg_error *err) QG_MUSTCHECK;
/* Queues job; false once stopping (the job was not taken). */
bool qgh_workers_submit(qgh_workers *w, struct qgh_job *job);
/* Waits up to timeout_s for the queue to empty and every worker to be idle. */
bool qgh_workers_wait_idle(qgh_workers *w, double timeout_s);
/* Expires what is queued with QG_ERR_SHUTTING_DOWN, joins the threads, frees w. */
void qgh_workers_free(qgh_workers *w);

#endif
