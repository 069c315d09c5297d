/*
 * exec.c: a list of statements on one connection as a state machine, so that
 * the blocking API (qg_exec_many) and the event loop (run.c) share it.
 * Not installed.
 */
#ifndef QG_EXEC_H
#define QG_EXEC_H

#include "trip.h"

struct qgp_exec;

/*
 * Starts statements [0, n) on c as qg_exec_many would; out[0..n-1] receive
 * the results. cancel(cancel_arg) is called when the server should stop a
 * statement (its rows passed a cap); it must not block a loop. On QG_OK *xout
 * is new: step it to its end with qgp_exec_step, then qgp_exec_end frees it.
 * Otherwise (a bad argument, out of memory) *xout is NULL and err says why.
 */
qg_status qgp_exec_start(qg_conn *c, size_t n, const char *const *sql,
                         const qg_params *const *params, const struct qg_exec_options *opt,
                         qg_result **out, void (*cancel)(void *arg), void *cancel_arg,
                         qg_error *err, struct qgp_exec **xout) QG_MUSTCHECK;
/*
 * Makes x (one statement, just started) a stream: its rows are not collected
 * into out[0] (whose row_count still counts them) but kept as JSON lines, and
 * the trip pauses (QGP_WAIT_PAUSE) when its columns become known, when
 * batch_bytes of lines are ready and at the statement's end with lines left.
 * Take them, then resume (or discard the rest: a stream nobody reads).
 */
void qgp_exec_stream(struct qgp_exec *x, size_t batch_bytes);
/* The columns' JSON once known (borrowed, valid while the statement runs), else NULL. */
const char *qgp_exec_stream_columns(struct qgp_exec *x, size_t *len);
/* The rows ready (*nrows lines, *len bytes; malloc'd, the caller frees), or NULL. */
char *qgp_exec_stream_rows(struct qgp_exec *x, size_t *len, long long *nrows);
void qgp_exec_stream_resume(struct qgp_exec *x);
/* Rows from now on are dropped and the trip never pauses again. */
void qgp_exec_stream_discard(struct qgp_exec *x);
/* See qgp_trip_step; QGP_WAIT_NONE: all done. */
enum qgp_wait qgp_exec_step(struct qgp_exec *x, bool readable);
/* The outcome (out[] freed on failure; *failed_at the statement that failed, or -1).
   Frees x. */
qg_status qgp_exec_end(struct qgp_exec *x, long *failed_at);

#endif
