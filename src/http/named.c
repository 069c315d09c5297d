/* The named queries in force: one reference-counted set, swapped whole on reload, so a request keeps the set it started with. */
#include <pthread.h>
#include <stdlib.h>

#include "named.h"

struct qgh_named {
    const char *dir;       /* QUERIES_DIR, borrowed from the config; NULL: none */
    pthread_mutex_t lock;  /* guards set: readers take a reference, reload swaps it */
    qg_queries *set;
};

qg_status qgh_named_new(const struct qg_config *cfg, qgh_named **out, qg_error *err)
{
    *out = NULL;
    qgh_named *n = calloc(1, sizeof *n);
    if (!n)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory loading QUERIES_DIR");
    n->dir = cfg->queries_dir;
    qg_status s = qg_queries_load(n->dir, &n->set, err);
    if (s != QG_OK) {
        free(n);
        return s;
    }
    pthread_mutex_init(&n->lock, NULL);
    *out = n;
    return QG_OK;
}

void qgh_named_free(qgh_named *n)
{
    if (!n)
        return;
    qg_queries_unref(n->set);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

qg_status qgh_named_reload(qgh_named *n, size_t *count, qg_error *err)
{
    qg_queries *fresh;
    qg_status s = qg_queries_load(n->dir, &fresh, err);
    if (s != QG_OK)
        return s;
    if (count)
        *count = qg_queries_count(fresh);
    pthread_mutex_lock(&n->lock);
    qg_queries *old = n->set;
    n->set = fresh;
    pthread_mutex_unlock(&n->lock);
    /* Requests that took the old set hold their own references: it lives until they end. */
    qg_queries_unref(old);
    return QG_OK;
}

qg_queries *qgh_named_get(qgh_named *n)
{
    pthread_mutex_lock(&n->lock);
    qg_queries *q = qg_queries_ref(n->set);
    pthread_mutex_unlock(&n->lock);
    return q;
}
