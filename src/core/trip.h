/*
 * trip.c: one round trip to the server. Its parts go out in one libpq pipeline
 * and their results are read one at a time, as they arrive, by qgp_trip_step:
 * the same code serves the blocking API (qgp_trip_wait polls the socket) and
 * the event loop (run.c steps it when the socket is ready). Not installed.
 */
#ifndef QG_TRIP_H
#define QG_TRIP_H

#include "manager_private.h"

enum qgp_part_kind {
    QGP_PART_COMMAND,   /* ours (DEALLOCATE, BEGIN, SET LOCAL): must succeed */
    QGP_PART_PREPARE,   /* PREPARE of a caller's statement under our name */
    QGP_PART_DESCRIBE,  /* Describe of the unnamed statement: the server's parameter types */
    QGP_PART_STATEMENT, /* a caller's statement, its rows one at a time */
    QGP_PART_END,       /* COMMIT or ROLLBACK */
    QGP_PART_RESET,     /* one statement of the session reset */
    QGP_PART_AUDIT,     /* the audit that ends every request (reset.c) */
    QGP_PART_PING,      /* an empty statement: is the connection alive? */
};

struct qgp_part {
    enum qgp_part_kind kind;
    void *item;         /* exec.c's statement, for PREPARE, DESCRIBE and STATEMENT */
};

/* What the socket must become before the next qgp_trip_step; QGP_WAIT_PAUSE: nothing,
   a stream's batch is ready (t->pause) and the trip reads no more until it is cleared. */
enum qgp_wait { QGP_WAIT_NONE, QGP_WAIT_READ, QGP_WAIT_WRITE, QGP_WAIT_PAUSE };

struct qgp_trip;
/*
 * A result of an item's part (PREPARE, DESCRIBE, STATEMENT). Returns true when
 * it keeps res (then it PQclears it later). NULL res: the part's results ended.
 */
typedef bool (*qgp_trip_take_fn)(struct qgp_trip *t, struct qgp_part *p, PGresult *res);

struct qgp_trip {
    qg_conn *c;
    qgp_trip_take_fn take;
    void *arg;                 /* the take function's */
    struct qgp_part *parts;
    struct qgp_part small[24];
    size_t n, cap;
    size_t cur;                /* the part whose results are read now */
    bool in_part;              /* cur's first result was asked for */
    bool sent;                 /* every part and the sync were queued */
    bool done;                 /* the sync was read (or the connection failed) */
    bool synced;               /* ... and it was: the connection is fit for more */
    bool refused;              /* the server answered a part with an error */
    bool command_failed;       /* one of our own commands failed */
    bool oom;
    bool pause;                /* set by take: stop reading results (a stream's batch is full) */
    qg_status s;               /* the first error, in err */
    qg_error *err;
    void *failed;              /* the item whose part failed first, or NULL */
    /* The end (reset.c): */
    enum qgp_end end;
    size_t end_at;             /* index of the first part of the end; n when none */
    bool end_done;             /* COMMIT or ROLLBACK answered with success */
    bool end_aborted;          /* it did not run: an earlier part failed */
    bool reset_failed, reset_skipped, audited;
    bool committed;            /* COMMIT's success was read */
    qg_error end_err;          /* the end's own error, kept apart until the trip ends */
};

/*
 * Starts a trip on c (pipeline mode); err receives the first error (may be
 * NULL). take reads items' results. Parts are queued with the functions below;
 * a part that cannot be queued makes the trip fail as a lost connection.
 */
void qgp_trip_begin(struct qgp_trip *t, qg_conn *c, qgp_trip_take_fn take, void *arg,
                    qg_error *err);
/* Queues a statement of ours without parameters: COMMAND, END, RESET, AUDIT or PING. */
void qgp_trip_text(struct qgp_trip *t, enum qgp_part_kind kind, const char *sql);
/* Queues a COMMAND of ours with one text parameter, $1 = value (copied by libpq). */
void qgp_trip_param(struct qgp_trip *t, const char *sql, const char *value);
/* Queues part p (kind PREPARE, DESCRIBE or STATEMENT) with its own libpq call already made:
   ok is that call's return value. */
void qgp_trip_item(struct qgp_trip *t, enum qgp_part_kind kind, void *item, bool ok);
/* Queues the sync: nothing more can be added. */
void qgp_trip_sync(struct qgp_trip *t);
/*
 * Reads what has arrived (readable: the socket said so) and sends what is
 * queued. QGP_WAIT_NONE: the trip is done (t->done), with t->s its status.
 */
enum qgp_wait qgp_trip_step(struct qgp_trip *t, bool readable);
/* Waits until pg's socket is ready for w, or deadline (qg_now(); 0: none) passes.
   1: ready; 0: the deadline passed; -1: the socket cannot be waited on. */
int qgp_wait_socket(PGconn *pg, enum qgp_wait w, double deadline);
/* Steps t to its end, waiting on the socket; past deadline (qg_now(), 0: none) the
   connection counts as lost. Returns t->s. */
qg_status qgp_trip_wait(struct qgp_trip *t, double deadline);
/* Frees what the trip allocated (not the items). */
void qgp_trip_free(struct qgp_trip *t);

/* True for an answer that PQgetResult would repeat forever (a COPY). */
bool qgp_endless(const PGresult *res);
/* The error for a server's error result, mapped to the caller's SQL where ps is given
   (NULL: the statement was one of our own commands). */
qg_status qgp_server_error(qg_conn *c, const qgp_sql *ps, const PGresult *res, qg_error *err,
                           const char *doing);

/* reset.c: the end of a transaction and the reset, as parts of a trip. */
void qgp_end_queue(struct qgp_trip *t, enum qgp_end end);
void qgp_end_take(struct qgp_trip *t, const struct qgp_part *p, const PGresult *res);
/* At the trip's end: the end's outcome into t->s and c's state. */
void qgp_end_finish(struct qgp_trip *t);

/*
 * Trips the transaction's life needs besides statements, each in two halves so
 * that the loop can run them: *_start queues (false: nothing to send, and the
 * result is already in err / c's state), then step the trip, then *_result.
 */
/* COMMIT (or ROLLBACK) and the reset, when the last statement did not take them along. */
bool qgp_finish_start(struct qgp_trip *t, qg_conn *c, enum qgp_end end, qg_error *err);
/* Rolls back whatever is open and resets the session: IDLE after, or BROKEN. */
bool qgp_clean_start(struct qgp_trip *t, qg_conn *c);
void qgp_clean_result(struct qgp_trip *t);
/* conn.c: an empty statement on an idle connection; alive when it ends with t->s == QG_OK. */
bool qgp_ping_start(struct qgp_trip *t, qg_conn *c);

#endif
