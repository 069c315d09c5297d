/* Internals shared by the manager's files: pool, conn, exec, tx, health, manager. */
#ifndef QG_MANAGER_PRIVATE_H
#define QG_MANAGER_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include "core_private.h"

/* A pooled connection. Owned by the pool; lent out by qg_checkout(). */
struct qg_conn {
    PGconn *pg;
    qg_manager *m;
    double created_at;   /* monotonic seconds, for DB_POOL_RECYCLE */
    double last_used;    /* when it was last checked in, for DB_PREPING_IDLE */
    bool broken;         /* lost or unusable: closed at checkin, never reused */
    bool pooler;         /* connected without startup options (behind a pooler) */
    pthread_mutex_t cancel_lock; /* guards cancel against close */
    PGcancel *cancel;
    struct qg_conn *next_idle;             /* idle stack (LIFO keeps hot ones hot) */
    struct qg_conn *prev_all, *next_all;   /* every open connection, for shutdown */
    qgp_buf rows;        /* reused per statement: rows JSON */
};

/* A caller waiting in qg_checkout(); served strictly in arrival order. */
struct qgp_waiter {
    pthread_cond_t cv;
    qg_conn *conn;       /* handed over by checkin */
    bool may_open;       /* or: a slot freed, open a new connection */
    bool cancelled;      /* shutdown */
    struct qgp_waiter *next;
};

struct qg_manager {
    const struct qg_config *cfg;
    qgp_conninfo *ci_options;   /* with startup options */
    qgp_conninfo *ci_plain;     /* without (pooler mode) */
    atomic_bool pooler;         /* pooler detected or forced */
    char *session_sql;          /* SET LOCAL ... for pooler mode transactions */

    pthread_mutex_t lock;
    pthread_cond_t drained;     /* signalled when checked_out drops */
    qg_conn *idle;              /* stack */
    qg_conn *all;               /* list of every open connection */
    struct qgp_waiter *wait_head, *wait_tail;
    int open;                   /* open + being opened */
    int nidle;
    int checked_out;
    int waiting;
    bool shutting_down;
    unsigned long long connects, recycles, timeouts, errors;
    atomic_ullong retries;

    qg_log_fn log_fn;
    void *log_arg;

    /* health */
    pthread_mutex_t health_lock;
    pthread_cond_t health_done;
    bool health_running;
    double health_at;           /* monotonic time of the cached result; 0 = none */
    struct qg_health health_cached;
    pthread_mutex_t health_pg_lock;
    PGconn *health_pg;          /* dedicated: a probe never waits for the pool */
};

double qgp_now(void);                      /* monotonic seconds */
void qgp_sleep(double seconds);
void qgp_backoff_sleep(double base_s, int attempt); /* retry.c */
void qgp_log(qg_manager *m, enum qg_log_level level, const char *fmt, ...) QG_PRINTF(3, 4);

/* conn.c */
qg_status qgp_conn_open(qg_manager *m, qg_conn **out, qg_error *err) QG_MUSTCHECK;
void qgp_conn_close(qg_conn *c);
/* A round trip; false if the connection is dead. */
bool qgp_conn_ping(qg_conn *c, double timeout_s);
/* Without a round trip: false if the server already closed or terminated it. */
bool qgp_conn_alive(qg_conn *c);
/* Runs a utility statement (BEGIN, COMMIT, ...); fills err on failure. */
qg_status qgp_conn_command(qg_conn *c, const char *sql, qg_error *err);
/* The error for a connection that failed (PQerrorMessage), as db_unavailable. */
qg_status qgp_conn_lost(qg_conn *c, qg_error *err, const char *doing);

/* pool.c */
void qgp_pool_close_all(qg_manager *m);

#endif
