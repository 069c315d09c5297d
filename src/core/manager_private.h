/* Internals shared by the manager's files: pool, conn, exec, tx, health, manager. */
#ifndef QG_MANAGER_PRIVATE_H
#define QG_MANAGER_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "core_private.h"
#include "querygate/replicas.h"

/* How a trip ends a transaction (reset.c): after it, the session is reset. */
enum qgp_end { QGP_END_COMMIT, QGP_END_ROLLBACK, QGP_END_NONE };

/* One cached statement of a connection. */
struct qgp_stmt {
    char *sql;           /* the caller's text, the key */
    size_t len;
    uint64_t hash;
    qgp_sql *parsed;
    unsigned long last_use;
    unsigned uses;
    bool prepared;       /* exists on the server under name */
    bool rowless;        /* ran here before and returned no rows: a write may take
                            COMMIT along, as no result cap can fail after it */
    bool prepare_queued; /* a PREPARE under name is in the pipeline being sent */
    char name[24];
};

#define QGP_STMT_CACHE_SIZE 128

struct qgp_stmt_cache {
    struct qgp_stmt *e;
    int n;
    unsigned long tick;
    unsigned long next_id;
};

/*
 * The entry for sql, parsed on first sight. When the cache is full the least
 * recently used entry goes; if it was prepared its name is copied to evicted
 * (24 bytes) so the caller can DEALLOCATE it. *out is borrowed from sc.
 */
qg_status qgp_stmt_lookup(struct qgp_stmt_cache *sc, const char *sql, size_t len,
                          struct qgp_stmt **out, char *evicted, qg_error *err) QG_MUSTCHECK;
/* Marks every entry unprepared; true when some were prepared on the server. */
bool qgp_stmt_cache_forget_prepared(struct qgp_stmt_cache *sc);
void qgp_stmt_cache_free(struct qgp_stmt_cache *sc);

/*
 * The life of a pooled connection, as pgbouncer's server states: one value,
 * changed only by qgp_conn_set_state() (conn.c), so no two flags can disagree.
 */
enum qgp_conn_state {
    QGP_CONN_IDLE,      /* in the pool or just lent: no transaction, and the session holds
                           nothing of an earlier request but our own prepared statements */
    QGP_CONN_BEGIN,     /* a transaction scope started; BEGIN waits to travel with the
                           first statement (begin_sql), so nothing was sent yet */
    QGP_CONN_IN_TX,     /* our transaction is open on the server */
    QGP_CONN_ENDED,     /* the last statement's pipeline ended the transaction and reset
                           the session: nothing more may run in this scope */
    QGP_CONN_DIRTY,     /* statements ran outside a scope of ours, or a scope failed before
                           its reset ran: roll back and reset before anyone reuses it */
    QGP_CONN_BROKEN,    /* lost, or in a state the service did not put it in: closed at
                           checkin, never reused; no state leaves it */
};

/* A pooled connection. Owned by the pool; lent out by qg_checkout(). */
struct qg_conn {
    PGconn *pg;
    qg_manager *m;
    enum qgp_conn_state state;
    double created_at;   /* monotonic seconds, for DB_POOL_RECYCLE */
    double last_used;    /* when it was last checked in, for DB_PREPING_IDLE */
    bool pooler;         /* connected without startup options (behind a pooler) */
    pthread_mutex_t cancel_lock; /* guards cancel against close */
    PGcancel *cancel;
    struct qg_conn *next_idle;             /* idle stack (LIFO keeps hot ones hot) */
    struct qg_conn *prev_all, *next_all;   /* every open connection, for shutdown */
    struct qgp_stmt_cache stmts;
    uint64_t caller;     /* whose requests the prepared statements in stmts served */
    bool drop_prepared;  /* the server holds prepared statements the cache forgot (a stale
                            plan, another caller): DEALLOCATE ALL before anything runs */
    /* The transaction scope (tx.c) and statements (exec.c) share this so a
       one-statement request costs one round trip: BEGIN, the statement, then
       ROLLBACK or COMMIT and the session reset travel in one pipeline. */
    char begin_sql[96];  /* sent with the first statement (state QGP_CONN_BEGIN) */
    bool tx_read_only;
    const char *claims;  /* for request.jwt.claims, sent with begin_sql; borrowed */
    qg_lsn commit_lsn;   /* a WAL position at or after the scope's COMMIT (reset.c); 0: none */
};

/* A caller waiting for a connection; served strictly in arrival order. */
struct qgp_waiter {
    pthread_cond_t cv;   /* a blocking caller (qg_checkout) sleeps on it */
    /* Or, for a caller that must not block (run.c): called with the pool's lock
       held when w is served; it must only hand the news on (qg_loop_post). */
    void (*wake)(struct qgp_waiter *w);
    qg_conn *conn;       /* served with this connection */
    bool may_open;       /* or: with a slot to open a new one */
    bool cancelled;      /* or: with the shutdown */
    bool queued;         /* still in line */
    struct qgp_waiter *next;
};

struct qg_manager {
    const struct qg_config *cfg;
    qgp_conninfo *ci_options;   /* with startup options */
    qgp_conninfo *ci_plain;     /* without (pooler mode) */
    atomic_bool pooler;         /* pooler detected or forced */
    bool read_write_target;     /* the URL asks target_session_attrs=read-write: a server
                                   that refuses writes (a standby, or a primary its
                                   failover manager fenced) is not the primary */
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
    atomic_bool cancelled_running; /* shutdown's grace ran out: it cancelled what still ran */
    unsigned long long connects, recycles, timeouts, errors;
    atomic_ullong retries;

    qg_log_fn log_fn;
    void *log_arg;

    /* Pools that log in as a database role, made on first use (qg_manager_for_role). */
    char *role;                 /* NULL for the main pool */
    qg_manager *parent;         /* a role pool's main pool, else NULL */
    struct qgp_replicas *replicas; /* the main pool's read replicas (replicas.c), or NULL */
    qg_manager *replica_of;     /* a replica's pool: the primary's main pool, else NULL */
    char server[96];            /* host:port its last connection reached (under lock) */
    pthread_mutex_t roles_lock;
    struct qgp_role_pool { char *role; qg_manager *m; } *roles;
    int nroles;

    /* health */
    pthread_mutex_t health_lock;
    pthread_cond_t health_done;
    bool health_running;
    double health_at;           /* monotonic time of the cached result; 0 = none */
    struct qg_health health_cached;
    pthread_mutex_t health_pg_lock;
    PGconn *health_pg;          /* dedicated: a probe never waits for the pool */
    atomic_int health_open;     /* health_pg is connected, for qg_pool_stats */
};

/* health.c: one question on a connection of its own (the health check, the replica monitor). */
enum qgp_asked {
    QGP_ASKED_OK,      /* answered; value holds the first row's first column ("" if NULL) */
    QGP_ASKED_FAILED,  /* the server answered with an error */
    QGP_ASKED_LOST,    /* the connection failed */
    QGP_ASKED_TIMEOUT, /* no answer by the deadline: the connection is no longer usable */
};
/* Sends sql on pg and reads its answer by deadline (qg_now() seconds); why says what went
   wrong (timeout_s names the setting's value in it). value may be NULL. */
enum qgp_asked qgp_ask(PGconn *pg, const char *sql, double deadline, double timeout_s,
                       char *value, size_t vsize, char *why, size_t wsize);

/* replicas.c (m: any pool; its main pool's replicas count) */
qg_status qgp_replicas_new(qg_manager *m, qg_error *err) QG_MUSTCHECK;
void qgp_replicas_shutdown(qg_manager *m, double grace_s);
void qgp_replicas_free(qg_manager *m);
void qgp_replicas_set_log(qg_manager *m, qg_log_fn fn, void *arg);
/* True when reads of m may go to replicas. */
bool qgp_replicas_for(const qg_manager *m);
/* The usable replica with the fewest connections in use (and waiters) that has replayed
   min_lsn (0: any), other than skip; -1 when none. *short_lsn: some usable one has not
   replayed min_lsn yet (waiting may help). */
int qgp_replica_pick(qg_manager *m, qg_lsn min_lsn, int skip, bool *short_lsn);
/* Replica i's pool for m's role; NULL when out of memory. Borrowed. */
qg_manager *qgp_replica_pool(qg_manager *m, int i);
/* A read on replica i failed for want of the server (e): set aside until the monitor
   reaches it again. */
void qgp_replica_failed(qg_manager *m, int i, const qg_error *e);
/* A read starts (on) or stops waiting for a replica to replay its LSN: the monitor asks
   the replicas every few milliseconds while any waits. */
void qgp_replicas_want_lsn(qg_manager *m, bool on);

/* retry.c */
void qgp_backoff_sleep(double base_s, int attempt);
/* A transaction's tries so far, for qgp_retry_delay. */
struct qgp_tries {
    int failed;          /* tries that failed in a way DB_RETRIES counts */
    int waits;           /* tries of a write that reached no primary */
    double deadline;     /* a write waits for a primary until then (qg_now()) */
    bool write;
};
/* Before the first try of a transaction (read_only: its mode). */
void qgp_tries_init(struct qgp_tries *t, const qg_manager *m, bool read_only);
/* A try failed with s: the backoff before the next try, counted and logged, or -1 when
   the contract does not let it run again. */
double qgp_retry_delay(qg_manager *m, struct qgp_tries *t, qg_status s, const qg_error *e);
/* A transaction's last status as its caller sees it (our own shutdown's cancel is
   shutting_down, not statement_timeout). */
qg_status qgp_tx_outcome(qg_manager *m, qg_status s, qg_error *e);

/* tx.c: a transaction's start and end, for qg_transaction and run.c alike. */
/* The scope begins: BEGIN (with its options) waits to travel with the first statement. */
void qgp_tx_begin(qg_conn *c, const struct qg_tx_options *opt);
/* The body ended (ok: without error): COMMIT or ROLLBACK, if a trip of its own must end it. */
enum qgp_end qgp_tx_finishing(const qg_conn *c, bool ok);
/* Then: true when c must be rolled back and reset (qgp_clean_start) before it goes back. */
bool qgp_tx_settle(qg_conn *c);
void qgp_log(qg_manager *m, enum qg_log_level level, const char *fmt, ...) QG_PRINTF(3, 4);
/* The tag qg_log_tag() gives on this thread from now on; returns the one before. */
const char *qgp_log_tag_set(const char *tag);

/* conn.c */
qg_status qgp_conn_open(qg_manager *m, qg_conn **out, qg_error *err) QG_MUSTCHECK;
void qgp_conn_close(qg_conn *c);
/* A round trip; false if the connection is dead. */
bool qgp_conn_ping(qg_conn *c, double timeout_s);
/* Without a round trip: false if the server already closed or terminated it. */
bool qgp_conn_alive(qg_conn *c);
/* The error for a connection that failed (PQerrorMessage), as db_unavailable. */
qg_status qgp_conn_lost(qg_conn *c, qg_error *err, const char *doing);
/* True when c, inside a read-write transaction scope, is on a server that cannot write:
   in_hot_standby is on, or it refused a statement with sqlstate 25006 (may be NULL)
   and does not say that it is no standby (or the URL asks for read-write servers), or
   one of our own commands (ours) with 0A000. */
bool qgp_conn_standby(const qg_conn *c, const char *sqlstate, bool ours);
/* c is on a standby: it is never reused, and the write is to run again on the primary
   (db_unavailable, err->unreachable: the server refused it, so it did not run). */
qg_status qgp_standby_error(qg_conn *c, qg_error *err);

/* Moves c to state `to` (a broken connection stays broken). */
void qgp_conn_set_state(qg_conn *c, enum qgp_conn_state to);
static inline bool qgp_conn_broken(const qg_conn *c)
{
    return c->state == QGP_CONN_BROKEN;
}
/* Inside a transaction scope of qg_transaction(); outside it a library caller that
   checked a connection out runs its own transactions. */
static inline bool qgp_conn_in_scope(const qg_conn *c)
{
    return c->state == QGP_CONN_BEGIN || c->state == QGP_CONN_IN_TX;
}
/* Rolls back whatever is open and resets the session in one round trip (state
   IDLE after), or marks c broken; false then. */
bool qgp_conn_clean(qg_conn *c);
/* Queues a command without parameters on pg, which is in pipeline mode. */
bool qgp_send_command(PGconn *pg, const char *sql);
/* Our own prepared statement went stale (DDL, a reset): running again is safe. */
bool qgp_stale_plan(const qg_error *e);


/* pool.c */
void qgp_pool_close_all(qg_manager *m);
/*
 * Checkout in halves, for callers that must not block. On QG_OK w has a
 * connection (w->conn), a slot to open one (w->may_open: open it, then
 * qgp_pool_opened), or its place in line (*queued: w->wake tells when it is
 * served). NOTE: *queued, not w, says which: a waiter in line may be served on
 * another thread before qgp_pool_take returns, and w then holds what the wake
 * brings. queued may be NULL for blocking callers (w->wake NULL). Errors:
 * QG_ERR_SHUTTING_DOWN (and, for blocking callers, the timeout).
 */
qg_status qgp_pool_take(qg_manager *m, struct qgp_waiter *w, bool *queued,
                        qg_error *err) QG_MUSTCHECK;
/* w gives up its place (DB_POOL_TIMEOUT when timed_out: counted, and err says so).
   False when it was served meanwhile: its wake was called, and the connection or
   slot is its to use or give back. */
bool qgp_pool_leave(qg_manager *m, struct qgp_waiter *w, bool timed_out, qg_error *err);
/* A slot's new connection c is open, or (NULL) it failed to open: the slot is freed. */
void qgp_pool_opened(qg_manager *m, qg_conn *c);
/* Closes a lent connection whose slot its caller fills with a new one (qgp_pool_opened). */
void qgp_pool_replace(qg_manager *m, qg_conn *c, bool recycled);
/* Whether an idle connection just taken may serve, without a round trip. */
enum qgp_usable { QGP_USABLE, QGP_PING, QGP_REPLACE };
enum qgp_usable qgp_pool_check(qg_manager *m, qg_conn *c);
/* Serves every waiter with the shutdown; lock held. */
void qgp_pool_cancel_waiters_locked(qg_manager *m);

#endif
