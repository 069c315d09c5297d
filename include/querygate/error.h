/* Status codes and the error struct every fallible querygate function fills. */
#ifndef QUERYGATE_ERROR_H
#define QUERYGATE_ERROR_H

#include <stdbool.h>

#if defined(__GNUC__)
#define QG_MUSTCHECK __attribute__((warn_unused_result))
#define QG_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define QG_MUSTCHECK
#define QG_PRINTF(fmt, args)
#endif

/* Each status is one error code of the HTTP contract (see qg_status_code()). */
typedef enum qg_status {
    QG_OK = 0,
    QG_ERR_INVALID_JSON,        /* body is not JSON */
    QG_ERR_INVALID_REQUEST,     /* JSON, but not the shape asked for; bad argument */
    QG_ERR_MISSING_PARAMETER,   /* :name in the SQL, absent from params */
    QG_ERR_UNKNOWN_PARAMETER,   /* key in params the SQL does not use */
    QG_ERR_MULTIPLE_STATEMENTS, /* more than one statement in one sql string */
    QG_ERR_TRANSACTION_CONTROL, /* BEGIN, COMMIT, SAVEPOINT...: the service owns the transaction */
    QG_ERR_UNSUPPORTED_STATEMENT, /* COPY: not spoken over this API */
    QG_ERR_SQL,                 /* the server rejected the statement (22, 42, ...) */
    QG_ERR_FORBIDDEN,           /* 42501 insufficient privilege */
    QG_ERR_READ_ONLY,           /* 25006 write in a read-only transaction */
    QG_ERR_RAW_SQL_DISABLED,    /* ALLOW_RAW_SQL=false: only named queries, but for admin */
    QG_ERR_CONFLICT,            /* class 23; 40001/40P01 after retries */
    QG_ERR_RESULT_TOO_LARGE,    /* result past MAX_RESULT_ROWS / MAX_RESULT_BYTES */
    QG_ERR_POOL_TIMEOUT,        /* no connection within DB_POOL_TIMEOUT */
    QG_ERR_DB_UNAVAILABLE,      /* 08, 53, 57P01-57P03 after retries */
    QG_ERR_SHUTTING_DOWN,       /* manager is closing */
    QG_ERR_STATEMENT_TIMEOUT,   /* 57014 */
    QG_ERR_CONFIG,              /* bad configuration value */
    QG_ERR_INTERNAL             /* a bug or out of memory */
} qg_status;

/*
 * Filled by fallible functions; pass NULL when the details do not matter.
 * The first error is kept: a later qg_error_set() on a set error does nothing,
 * so the cause is not overwritten by a failure during clean-up.
 */
typedef struct qg_error {
    qg_status status;
    char sqlstate[6];      /* "" unless the server reported one (or would: 42601 for an
                              unterminated quote the :name scanner found first) */
    int position;          /* 1-based character in the caller's SQL; 0 if none */
    int statement_index;   /* which statement of a batch/transaction; -1 if none */
    bool outcome_unknown;  /* a write may or may not have been applied */
    bool cancelled;        /* the caller cancelled it (qg_run_cancel) */
    bool unreachable;      /* no server that could run it was reached (no connection could
                              be opened, or the server was a read-only standby): nothing ran */
    char message[512];
    char detail[512];
    char hint[256];
} qg_error;

/* A status's row of the contract's error table. */
struct qg_status_info {
    const char *code; /* the error code ("invalid_json", ...) */
    int http_status;  /* its HTTP status; 0 for the two that are never answered: ok, config_error */
    int retry_after;  /* seconds for Retry-After; 0: none */
};

/* The row of s; an unknown s gets internal_error's. Static. */
const struct qg_status_info *qg_status_info(qg_status s);
/* The row of an error code, or NULL when no status has it. Static. */
const struct qg_status_info *qg_status_info_by_code(const char *code);
/* The contract's error code for a status ("invalid_json", ...). Static string. */
const char *qg_status_code(qg_status s);

/* Resets *err to "no error" (statement_index -1). NULL is allowed. */
void qg_error_clear(qg_error *err);

/* Sets status and message unless an error is already set. Returns s. */
qg_status qg_error_set(qg_error *err, qg_status s, const char *fmt, ...) QG_PRINTF(3, 4);

/* The status an SQLSTATE maps to per the contract (e.g. "23505" -> QG_ERR_CONFLICT). */
qg_status qg_status_from_sqlstate(const char *sqlstate);

#endif
