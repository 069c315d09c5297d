/*
 * An event loop: one thread's epoll set, timers, and work posted to it from
 * other threads. The HTTP server runs one per thread and drives its
 * libmicrohttpd daemon and its PostgreSQL connections on it (qg_run), so that
 * no request crosses a thread. Blocking work that libpq offers no
 * non-blocking form of (a connect with its DNS lookup, PQcancel) goes to a
 * small shared pool of helper threads (qg_loop_offload) and comes back.
 *
 * Everything but qg_loop_post, qg_loop_offload and qg_loop_stop must be called
 * on the loop's own thread (the one in qg_loop_run), or before it runs.
 */
#ifndef QUERYGATE_LOOP_H
#define QUERYGATE_LOOP_H

#include <stdbool.h>
#include "querygate/error.h"

typedef struct qg_loop qg_loop;
typedef struct qg_loop_io qg_loop_io;       /* one watched file descriptor */
typedef struct qg_loop_timer qg_loop_timer; /* one timer, armed or not */

/* Event bits, for qg_loop_io_set and the callbacks. */
enum {
    QG_LOOP_READ = 1,  /* readable (or the peer hung up: a read will tell) */
    QG_LOOP_WRITE = 2, /* writable */
    QG_LOOP_HUP = 4,   /* the peer closed or shut down its side (EPOLLRDHUP/HUP/ERR);
                          reported only when asked for */
};

typedef void (*qg_loop_fn)(void *arg);
typedef void (*qg_loop_io_fn)(void *arg, unsigned events);

/* A loop; free with qg_loop_free (not while it runs; its ios and timers first). */
qg_status qg_loop_new(qg_loop **out, qg_error *err) QG_MUSTCHECK;
void qg_loop_free(qg_loop *l);

/* Runs callbacks on the calling thread until qg_loop_stop; then returns. */
void qg_loop_run(qg_loop *l);
/* Makes qg_loop_run return after the callback it runs now. Any thread. */
void qg_loop_stop(qg_loop *l);
/* The loop running on this thread, or NULL. */
qg_loop *qg_loop_current(void);

/*
 * Watches fd (not owned: the caller closes it, after qg_loop_io_free). events
 * is a mask of QG_LOOP_*; 0 keeps it registered but silent. Level-triggered:
 * fn(arg, ready) is called while the condition holds. NULL when the kernel
 * refuses (errno set). Free with qg_loop_io_free, which also stops watching.
 */
qg_loop_io *qg_loop_io_new(qg_loop *l, int fd, unsigned events, qg_loop_io_fn fn, void *arg);
bool qg_loop_io_set(qg_loop_io *io, unsigned events);
void qg_loop_io_free(qg_loop_io *io);

/* A disarmed timer; fn(arg) runs once per arming. Free with qg_loop_timer_free (NULL ok). */
qg_loop_timer *qg_loop_timer_new(qg_loop *l, qg_loop_fn fn, void *arg);
/* Arms (or re-arms) the timer for monotonic time `at` (qg_now() seconds). */
void qg_loop_timer_at(qg_loop_timer *t, double at);
void qg_loop_timer_stop(qg_loop_timer *t);
bool qg_loop_timer_armed(const qg_loop_timer *t);
void qg_loop_timer_free(qg_loop_timer *t);

/*
 * Runs fn(arg) on l's thread soon, in the order posted. Any thread. False when
 * out of memory or l is freed/stopping for good (fn is then not called).
 */
bool qg_loop_post(qg_loop *l, qg_loop_fn fn, void *arg);

/*
 * Runs work(arg) on a helper thread, then done(arg) on l's thread. For what
 * must block: a connect, a cancel request, a health check. Helper threads are
 * shared by all loops and started on demand (at most 16; more work waits in
 * order). False when a thread cannot be started and none runs.
 */
bool qg_loop_offload(qg_loop *l, qg_loop_fn work, qg_loop_fn done, void *arg);
/* Stops the helper threads once their queue is empty (at exit; tests). */
void qg_loop_offload_shutdown(void);

#endif
