/* Per-connection statement cache: parsed SQL and, on reuse, a server-side prepared statement. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager_private.h"

static void entry_free(struct qgp_stmt *e)
{
    free(e->sql);
    qgp_sql_free(e->parsed);
    memset(e, 0, sizeof *e);
}

void qgp_stmt_cache_free(struct qgp_stmt_cache *sc)
{
    for (int i = 0; i < sc->n; i++)
        entry_free(&sc->e[i]);
    free(sc->e);
    memset(sc, 0, sizeof *sc);
}

bool qgp_stmt_cache_forget_prepared(struct qgp_stmt_cache *sc)
{
    bool any = false;
    for (int i = 0; i < sc->n; i++) {
        any |= sc->e[i].prepared;
        sc->e[i].prepared = false;
    }
    return any;
}

/* The slot to fill: a free one, else the least recently used (its server name in evicted). */
static struct qgp_stmt *slot(struct qgp_stmt_cache *sc, char *evicted)
{
    if (sc->n < QGP_STMT_CACHE_SIZE)
        return &sc->e[sc->n++];
    struct qgp_stmt *lru = &sc->e[0];
    for (int i = 1; i < sc->n; i++)
        if (sc->e[i].last_use < lru->last_use)
            lru = &sc->e[i];
    if (lru->prepared)
        memcpy(evicted, lru->name, sizeof lru->name);
    entry_free(lru);
    return lru;
}

qg_status qgp_stmt_lookup(struct qgp_stmt_cache *sc, const char *sql, size_t len,
                          struct qgp_stmt **out, char *evicted, qg_error *err)
{
    evicted[0] = '\0';
    uint64_t h = qgp_fnv1a(sql, len);
    sc->tick++;
    for (int i = 0; i < sc->n; i++) {
        struct qgp_stmt *e = &sc->e[i];
        if (e->hash == h && e->len == len && !memcmp(e->sql, sql, len)) {
            e->last_use = sc->tick;
            e->uses++;
            *out = e;
            return QG_OK;
        }
    }
    qgp_sql *parsed;
    qg_status s = qgp_sql_parse(sql, len, &parsed, err);
    if (s != QG_OK)
        return s;
    if (!sc->e && !(sc->e = calloc(QGP_STMT_CACHE_SIZE, sizeof *sc->e))) {
        qgp_sql_free(parsed);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory caching a statement");
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        qgp_sql_free(parsed);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory caching a statement");
    }
    memcpy(copy, sql, len);
    copy[len] = '\0';
    struct qgp_stmt *e = slot(sc, evicted);
    e->sql = copy;
    e->len = len;
    e->hash = h;
    e->parsed = parsed;
    e->uses = 1;
    e->last_use = sc->tick;
    e->rowless = e->prepare_queued = false;
    snprintf(e->name, sizeof e->name, "qg_%lu", ++sc->next_id);
    *out = e;
    return QG_OK;
}
