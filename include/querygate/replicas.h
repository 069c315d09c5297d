/*
 * Read replicas (DATABASE_READ_URLS) and read-your-writes: WAL positions, and
 * what the background monitor knows of each replica. Reads reach replicas
 * through qg_run (querygate/run.h: qg_run_spec.min_lsn, qg_run_served_by).
 */
#ifndef QUERYGATE_REPLICAS_H
#define QUERYGATE_REPLICAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "querygate/manager.h"

/* A WAL position (PostgreSQL's pg_lsn) as a number; 0: none. */
typedef uint64_t qg_lsn;

/* Parses n bytes of PostgreSQL's "X/Y" form (1 to 8 hex digits each). False when malformed. */
bool qg_lsn_parse(const char *s, size_t n, qg_lsn *out);
/* The "X/Y" form, upper-case hex as PostgreSQL prints it; buf holds at least QG_LSN_BUF. */
#define QG_LSN_BUF 20
void qg_lsn_format(qg_lsn lsn, char *buf);

/* The number of replicas of m's main pool (0 without DATABASE_READ_URLS). */
int qg_replica_count(qg_manager *m);

struct qg_replica_stats {
    char url[256];       /* its URI, password as *** */
    char name[128];      /* host:port of its first host, for metric labels */
    bool usable;         /* reads may go there now */
    double lag_ms;       /* replay lag at the last check; -1: unknown (no primary answered) */
    qg_lsn replay_lsn;   /* what it had replayed at the last check; 0: unknown */
    char why[256];       /* why not usable; never a secret */
    struct qg_pool_stats pool;
};

/* Replica i (0-based) of m's main pool; false when there is no such replica. */
bool qg_replica_stats(qg_manager *m, int i, struct qg_replica_stats *out);

#endif
