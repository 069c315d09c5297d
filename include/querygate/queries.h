/*
 * Named queries (QUERIES_DIR): a folder of NAME.sql files, each one statement
 * with :name parameters, read into an immutable set. The set is reference
 * counted so that a reload (SIGHUP) can replace it while requests still run
 * statements of the old one.
 */
#ifndef QUERYGATE_QUERIES_H
#define QUERYGATE_QUERIES_H

#include <stddef.h>
#include "querygate/error.h"

typedef struct qg_queries qg_queries;

/* The file's first line `-- querygate: read` or `-- querygate: write`; read without one. */
enum qg_query_mode {
    QG_QUERY_READ,  /* runs as /query does: a READ ONLY transaction */
    QG_QUERY_WRITE  /* runs as /update does: read-write, committed */
};

/* One query of a set; every pointer is borrowed from the set. */
struct qg_query {
    const char *name;           /* NAME of NAME.sql: [A-Za-z0-9_-]+ */
    enum qg_query_mode mode;
    const char *sql;            /* the file's text (header line included: it is a comment) */
    size_t nparams;
    const char *const *params;  /* its distinct :names, in order of first use */
};

/* A file past this size is refused: a named query is one statement, not a dump. */
#define QG_QUERY_MAX_BYTES (1024 * 1024)

/*
 * Reads every NAME.sql of dir (other names and dot files are skipped; a .sql
 * entry that is no regular file, or whose NAME has other characters, is an
 * error). Each must
 * hold exactly one statement that qg_exec would accept, and a header, if any,
 * must name read or write. dir NULL or "" gives an empty set. On error
 * (QG_ERR_CONFIG) *out is NULL and err names the file and what is wrong with
 * it. On success *out is new with one reference: qg_queries_unref frees it.
 */
qg_status qg_queries_load(const char *dir, qg_queries **out, qg_error *err) QG_MUSTCHECK;

/* One more reference to q (returned); each needs its qg_queries_unref. Thread-safe. */
qg_queries *qg_queries_ref(qg_queries *q);

/* Drops a reference; the last one frees q and its queries. NULL is allowed. Thread-safe. */
void qg_queries_unref(qg_queries *q);

/* How many queries q holds (0 for NULL). */
size_t qg_queries_count(const qg_queries *q);

/* Query i (0 <= i < count), in the order of their names (strcmp). Borrowed from q. */
const struct qg_query *qg_queries_at(const qg_queries *q, size_t i);

/* The query named name, or NULL. Borrowed from q. */
const struct qg_query *qg_queries_find(const qg_queries *q, const char *name);

/* "read" or "write". Static. */
const char *qg_query_mode_name(enum qg_query_mode mode);

#endif
