/*
 * A whole transaction of statements, run on an event loop without blocking it:
 * the HTTP server's way in. It keeps every rule of qg_transaction (pool wait
 * and timeout, BEGIN with the first statement, retries of what may be retried,
 * no write run twice, the unknown outcome, the session reset) and runs the
 * statements as qg_exec_many would, with opt.last set.
 */
#ifndef QUERYGATE_RUN_H
#define QUERYGATE_RUN_H

#include <stddef.h>
#include "querygate/loop.h"
#include "querygate/manager.h"
#include "querygate/replicas.h"

typedef struct qg_run qg_run;

struct qg_run_spec {
    size_t n;                        /* statements, at least 1 */
    const char *const *sql;          /* n texts; borrowed until done returns */
    const qg_params *const *params;  /* n parameter sets (entries may be NULL), or NULL */
    struct qg_tx_options tx;
    bool numbers_as_strings;         /* int8 and numeric as JSON strings */
    bool prepare;                    /* as qg_exec_options.prepare: prepared on first use */
    const char *log_tag;             /* what the core's log lines about this run give as
                                        qg_log_tag() (a request id); borrowed; may be NULL */
    /* Reads (tx.read_only) run on a usable replica when m's main pool has some
       (DATABASE_READ_URLS), else per DB_READ_FALLBACK. With min_lsn, only on one that
       replayed it: the run waits up to DB_READ_WAIT_MS for one, then takes the primary. */
    qg_lsn min_lsn;
};

/*
 * The end of a run, on the loop's thread. On QG_OK results[0..n-1] hold each
 * statement's result; they are borrowed: freed when done returns (take one by
 * setting its entry to NULL; free it with qg_result_free). On failure results
 * is NULL and err says why (err->statement_index names the statement).
 */
typedef void (*qg_run_done)(void *arg, qg_status s, qg_result **results, const qg_error *err);

/*
 * Starts spec on loop l (the calling thread's loop), on m's pool. done(arg, ...)
 * is called exactly once, later, on l's thread, never from inside this call;
 * after it the run is freed. spec's arrays are copied; the strings and params
 * they point to are borrowed until done. Returns false only when out of memory
 * (done is then not called).
 */
bool qg_run_start(qg_loop *l, qg_manager *m, const struct qg_run_spec *spec, qg_run_done done,
                  void *arg, qg_run **out);

/*
 * The caller left: the run stops as soon as it can. A statement running is
 * cancelled on the server, a run waiting for a connection or a retry stops
 * waiting; done then reports QG_ERR_STATEMENT_TIMEOUT with err->cancelled set.
 * What ended otherwise keeps its own answer: a statement that failed by
 * itself, a write whose COMMIT was already sent. On l's thread, before done
 * was called.
 */
void qg_run_cancel(qg_run *r);

/* Which kind of server ran r's last try, for done to read. */
enum qg_served { QG_SERVED_NONE, QG_SERVED_PRIMARY, QG_SERVED_REPLICA };
/* ... and for a replica its number in *replica (qg_replica_stats; -1 for none). */
enum qg_served qg_run_served_by(const qg_run *r, int *replica);
/* For done to read: a WAL position at or after a read-write run's COMMIT; 0: none. */
qg_lsn qg_run_commit_lsn(const qg_run *r);

/* Seconds r waited in the pool's line for a connection, over all its tries; for
   done to read (logs, metrics). */
double qg_run_pool_wait(const qg_run *r);
/*
 * A streamed read: one statement (spec->n == 1) whose rows reach the caller in
 * batches while it runs, with the same rules as qg_run_start (READ ONLY when
 * spec->tx says so, pool wait, retries, cancel, the reset at the end) except
 * two: no MAX_RESULT_ROWS/MAX_RESULT_BYTES cap, and no retry once the columns
 * went out. Memory stays bounded: after a batch the run reads at most one more
 * from the server, then stops reading (the server waits on its socket) until
 * the caller asks with qg_run_stream_more. All callbacks run on l's thread,
 * never from inside qg_run_stream_start, qg_run_stream_more or qg_run_cancel.
 */
struct qg_run_stream {
    /* Once, before any rows, when the result's columns are known: a JSON array as in
       qg_result_columns_json (borrowed for the call). On success always called before end
       ("[]" for a statement without rows). */
    void (*columns)(void *arg, const char *json, size_t len);
    /* A batch: n rows, each the JSON object an ordinary answer has, followed by '\n'.
       lines is the caller's (malloc'd; free it). The next batch waits for
       qg_run_stream_more; the first needs no asking. */
    void (*rows)(void *arg, char *lines, size_t len, long long n);
    /* Last, exactly once: QG_OK with the row count, or why it failed (err as qg_run_done's;
       rows may have gone out before). Then the run is freed. */
    void (*end)(void *arg, qg_status s, long long row_count, const qg_error *err);
    size_t batch_bytes; /* a batch is ready at this many bytes; 0: 64 KiB */
};

/* As qg_run_start, with cb instead of done; false also when spec->n is not 1. */
bool qg_run_stream_start(qg_loop *l, qg_manager *m, const struct qg_run_spec *spec,
                         const struct qg_run_stream *cb, void *arg, qg_run **out);

/* The caller took the last batch: the next may come. On l's thread, before end. */
void qg_run_stream_more(qg_run *r);

#endif
