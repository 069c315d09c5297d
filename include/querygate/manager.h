/*
 * The connection manager: a pool of PostgreSQL connections with retry,
 * transaction scopes, statement helpers and a health check. The C counterpart
 * of the Python DatabaseConnectionManager. All functions are thread-safe.
 */
#ifndef QUERYGATE_MANAGER_H
#define QUERYGATE_MANAGER_H

#include <stdbool.h>
#include <stdint.h>
#include "querygate/config.h"
#include "querygate/error.h"
#include "querygate/params.h"
#include "querygate/result.h"

typedef struct qg_manager qg_manager;
typedef struct qg_conn qg_conn; /* a checked-out connection, owned by the pool */

/*
 * A manager for cfg, which must outlive it. Connects lazily: creating one
 * never touches the network, but for the thread that watches the read
 * replicas when DATABASE_READ_URLS is set. Free with qg_manager_free().
 */
qg_status qg_manager_new(const struct qg_config *cfg, qg_manager **out,
                         qg_error *err) QG_MUSTCHECK;

/*
 * Stops new checkouts (they fail with QG_ERR_SHUTTING_DOWN, waiters included),
 * cancels statements still running after grace_s seconds, and waits for every
 * checked-out connection to come back. Idempotent.
 */
void qg_manager_shutdown(qg_manager *m, double grace_s);

/* Shuts down (grace 0 if not done yet), closes every connection, frees m. NULL ok. */
void qg_manager_free(qg_manager *m);

/*
 * The pool that logs in as database role `role` (user=role, authenticated by
 * libpq's own means: PGPASSFILE/.pgpass, certificates, or trust; the password
 * in DATABASE_URL is never sent for it), made on first use with m's settings.
 * NOTE: logging in as the role, rather than SET ROLE, is what makes the role
 * final: a caller's RESET ROLE, SET ROLE or set_config('role') cannot reach
 * the service's own login. Borrowed: freed with m.
 */
qg_status qg_manager_for_role(qg_manager *m, const char *role, qg_manager **out,
                              qg_error *err) QG_MUSTCHECK;

/* Who gets the core's log lines (DB_ECHO statements, reconnects); NULL: nobody. */
typedef void (*qg_log_fn)(void *arg, enum qg_log_level level, const char *msg);
void qg_manager_set_log(qg_manager *m, qg_log_fn fn, void *arg);
/* In a qg_log_fn: the log_tag of the qg_run the line is about (its request), or NULL. */
const char *qg_log_tag(void);

/*
 * The process-wide manager (Python's get_db_manager): made on first use from
 * the environment, thread-safe. Borrowed; qg_manager_global_free() ends it.
 */
qg_status qg_manager_global(qg_manager **out, qg_error *err) QG_MUSTCHECK;
void qg_manager_global_free(void);

/* ---- pool ---------------------------------------------------------------- */

struct qg_pool_stats {
    int size;            /* DB_POOL_SIZE */
    int max_overflow;    /* DB_MAX_OVERFLOW */
    int checked_out;     /* connections in use */
    int idle;            /* open connections waiting in the pool */
    int overflow;        /* open connections beyond size (may be negative, as in SQLAlchemy) */
    int waiting;         /* callers waiting for a connection (qg_checkout, qg_run) */
    double timeout_s;
    double recycle_s;
    unsigned long long connects; /* connections opened */
    unsigned long long recycles; /* replaced for age or a failed pre-ping */
    unsigned long long timeouts; /* waits that gave up after DB_POOL_TIMEOUT */
    unsigned long long errors;   /* failed connection attempts */
    unsigned long long retries;  /* transactions run again */
    int health_connection;       /* 1 while the health check's own connection is open */
};
void qg_pool_stats(qg_manager *m, struct qg_pool_stats *out);

/*
 * A connection for the caller alone, waiting up to DB_POOL_TIMEOUT (FIFO).
 * Give it back with qg_checkin(), also after errors.
 */
qg_status qg_checkout(qg_manager *m, qg_conn **out, qg_error *err) QG_MUSTCHECK;

/* Returns c; an open or failed transaction is rolled back, a broken connection closed. */
void qg_checkin(qg_manager *m, qg_conn *c);

/* Asks the server to cancel what c is running (from another thread). */
void qg_conn_cancel(qg_conn *c);

/* ---- statements ---------------------------------------------------------- */

struct qg_exec_options {
    bool numbers_as_strings; /* int8 and numeric as JSON strings */
    bool last;               /* no statement follows in this transaction: it may end
                                in the same round trip (a read-write one only when the
                                statement returned no rows on this connection before:
                                then it is committed when qg_exec succeeds, so let
                                nothing after it fail) */
    bool prepare;            /* the SQL is known to repeat (a named query): prepare it on
                                its first use on a connection, not its second */
};

/*
 * Runs one statement with :name parameters on c (inside a transaction scope).
 * On success *out is a new result (qg_result_free). Rows past MAX_RESULT_ROWS
 * or MAX_RESULT_BYTES fail with QG_ERR_RESULT_TOO_LARGE; memory stays bounded.
 * opt may be NULL.
 */
qg_status qg_exec(qg_conn *c, const char *sql, const qg_params *params,
                  const struct qg_exec_options *opt, qg_result **out,
                  qg_error *err) QG_MUSTCHECK;

/*
 * Runs n statements on c in order, as qg_exec would one by one, but in as few
 * round trips as it can: one libpq pipeline per 64 statements (one statement a
 * trip where a parameter is a JSON array, whose type the server must tell
 * first). The first error stops the rest and sets err->statement_index. On
 * success out[0..n-1] are new results (qg_result_free each); on failure none.
 * MAX_RESULT_BYTES caps the rows of all n together. params may be NULL (no
 * parameters anywhere); opt->last is about the last statement.
 */
qg_status qg_exec_many(qg_conn *c, size_t n, const char *const *sql,
                       const qg_params *const *params, const struct qg_exec_options *opt,
                       qg_result **out, qg_error *err) QG_MUSTCHECK;

/* ---- transactions -------------------------------------------------------- */

enum qg_isolation {
    QG_ISOLATION_DEFAULT,         /* the server's default */
    QG_ISOLATION_READ_COMMITTED,
    QG_ISOLATION_REPEATABLE_READ,
    QG_ISOLATION_SERIALIZABLE
};

struct qg_tx_options {
    enum qg_isolation isolation;
    bool read_only;
    /* Who asks (an API key's id, say; 0 for one anonymous caller). Requests of
       different callers never share server-side prepared statements, which
       pg_prepared_statements would show them, SQL text included. */
    uint64_t caller;
    /* JSON text the transaction sees as current_setting('request.jwt.claims') (set
       transaction-local, with BEGIN: no extra round trip), or NULL. Borrowed until
       the transaction ends. */
    const char *claims;
};

typedef qg_status (*qg_tx_fn)(qg_conn *c, void *arg, qg_error *err);

/*
 * The session scope: checks out a connection, BEGINs, calls fn, COMMITs when fn
 * returns QG_OK and rolls back otherwise; the connection always goes back.
 * The whole transaction is run again (fn called again, so fn must start its
 * output afresh) after a connection failure before COMMIT was sent, and after
 * 40001/40P01, up to DB_RETRIES times with backoff. A read-write transaction
 * that reaches no primary (no connection opens, or the server is a standby:
 * err->unreachable) waits for one, trying again with backoff until
 * DB_POOL_TIMEOUT from its start (unless DB_RETRIES is 0). A connection lost during
 * the COMMIT of a read-write transaction is never retried: QG_ERR_DB_UNAVAILABLE
 * with err->outcome_unknown set. opt may be NULL (read-write, default isolation).
 * Statements that control the transaction (BEGIN, COMMIT, SAVEPOINT, SET
 * TRANSACTION...) are refused with QG_ERR_TRANSACTION_CONTROL, COPY with
 * QG_ERR_UNSUPPORTED_STATEMENT. Before the connection goes back, the session is
 * reset to what DISCARD ALL gives (but for the service's own prepared
 * statements); a connection that cannot be reset is closed.
 */
qg_status qg_transaction(qg_manager *m, const struct qg_tx_options *opt, qg_tx_fn fn,
                         void *arg, qg_error *err) QG_MUSTCHECK;

/* ---- helpers, each one transaction (Python's execute_*) ------------------- */

/* A read-only query; *out holds the rows (qg_result_free). */
qg_status qg_query(qg_manager *m, const char *sql, const qg_params *params,
                   qg_result **out, qg_error *err) QG_MUSTCHECK;

/* An UPDATE/DELETE; *affected gets the row count. */
qg_status qg_update(qg_manager *m, const char *sql, const qg_params *params,
                    long long *affected, qg_error *err) QG_MUSTCHECK;

/* An INSERT; *out has the RETURNING rows, the id is its first value (qg_result_free). */
qg_status qg_insert(qg_manager *m, const char *sql, const qg_params *params,
                    qg_result **out, qg_error *err) QG_MUSTCHECK;

/*
 * Python's with_retry: calls fn, and again after a retryable failure (connection
 * lost, 40001, 40P01; never an unknown outcome) up to retries more times,
 * sleeping delay_s, 2*delay_s, ... each with up to 25% jitter.
 */
typedef qg_status (*qg_retry_fn)(void *arg, qg_error *err);
qg_status qg_with_retry(int retries, double delay_s, qg_retry_fn fn, void *arg,
                        qg_error *err) QG_MUSTCHECK;

/* True when a failure may be retried per the contract. */
bool qg_error_retryable(const qg_error *err);

/* The delay before retry number attempt (0-based): base_s * 2^attempt * (1 + jitter01/4). */
double qg_backoff_delay(double base_s, int attempt, double jitter01);

/* ---- health -------------------------------------------------------------- */

struct qg_health {
    bool healthy;
    int connection_count; /* open connections of the pool */
    double latency_ms;    /* the check's round trip */
    char error[256];      /* why unhealthy; never a secret */
};

/* One round trip to the database, bounded by DB_CONNECT_TIMEOUT. */
void qg_health_check(qg_manager *m, struct qg_health *out);

/* The last check if younger than max_age_ms, else a new one; concurrent callers share it. */
void qg_health_cached(qg_manager *m, int max_age_ms, struct qg_health *out);

#endif
