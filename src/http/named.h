/* named.c: the named queries in force (QUERIES_DIR), replaced whole on SIGHUP. */
#ifndef QGH_NAMED_H
#define QGH_NAMED_H

#include <stddef.h>
#include "querygate/querygate.h"
#include "querygate/queries.h"

typedef struct qgh_named qgh_named;

/*
 * Reads cfg->queries_dir (unset: no queries); cfg must outlive *out.
 * QG_ERR_CONFIG names the file that is wrong. *out is new; free with
 * qgh_named_free once no request uses it.
 */
qg_status qgh_named_new(const struct qg_config *cfg, qgh_named **out, qg_error *err) QG_MUSTCHECK;
void qgh_named_free(qgh_named *n);
/*
 * Reads the folder again. Only a set whose every file is good replaces the
 * one in force; on error the old set stays. *count gets the new set's size.
 */
qg_status qgh_named_reload(qgh_named *n, size_t *count, qg_error *err) QG_MUSTCHECK;
/* The set in force, with a reference for the caller (qg_queries_unref it when done:
   a reload meanwhile does not free it). Never NULL for a non-NULL n. */
qg_queries *qgh_named_get(qgh_named *n);

#endif
