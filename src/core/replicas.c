/*
 * Read replicas (DATABASE_READ_URLS): a pool each, a monitor thread that
 * measures how far each has replayed, and the choice of a replica for a read.
 *
 * NOTE: the lag is a time, measured without trusting any clock but ours: the
 * monitor notes when it first saw the primary at each WAL position, and a
 * replica's lag is the time since the primary first showed a position the
 * replica has not replayed yet (0 when it replayed everything seen). It is
 * exact to one monitor interval (HEALTH_CACHE_MS).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manager_private.h"
#include "querygate/replicas.h"

#define SAMPLES 4096
/* While a read waits for its LSN (DB_READ_WAIT_MS), replicas are asked this often. */
#define FAST_POLL_S 0.005

/* Replay position of a standby; a promoted replica (not in recovery) has replayed all it has. */
#define REPLAY_SQL                                                                  \
    "SELECT CASE WHEN pg_catalog.pg_is_in_recovery() "                              \
    "THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END"
#define PRIMARY_SQL "SELECT pg_catalog.pg_current_wal_lsn()"

struct sample {
    double t;   /* when the monitor first saw the primary at lsn */
    qg_lsn lsn;
};

/* Where a replica stands, as far as reads are concerned; changed by set_condition(). */
enum condition {
    COND_UNKNOWN,   /* not checked yet: no read goes there */
    COND_USABLE,    /* answers, lag within DB_REPLICA_MAX_LAG_MS (or unknown: no primary) */
    COND_LAGGING,   /* answers, but replays too far behind */
    COND_DOWN,      /* the monitor cannot reach it */
    COND_FAILED,    /* a read failed on it; set aside until the monitor reaches it again */
};

struct qgp_replica {
    struct qg_config cfg;  /* the service's, with this replica's URI and DB_READ_POOL_SIZE */
    char *url;
    qg_manager *m;         /* its pool */
    PGconn *mon;           /* the monitor's own connection (monitor thread only) */
    char display[256];
    char name[128];
    /* under the set's lock: */
    enum condition cond;
    double lag_ms;         /* -1: unknown */
    qg_lsn replay;
    char why[256];
};

struct qgp_replicas {
    qg_manager *primary;
    int n;
    struct qgp_replica *r;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    int lsn_waiters;       /* reads waiting for a position: the monitor polls fast */
    unsigned turn;         /* where the next pick starts: ties go round */
    bool fallback_logged;  /* "no replica is usable" said, not yet taken back */
    PGconn *mon_primary;   /* monitor thread only */
    struct sample ring[SAMPLES];
    int head, count;       /* ring[head] is the oldest */
};

static struct qgp_replicas *set_of(const qg_manager *m)
{
    return m->parent ? m->parent->replicas : m->replicas;
}

/* The first host:port of a URL as libpq reads it, for metric labels. */
static void host_port(const char *url, char *out, size_t size)
{
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    const char *host = NULL, *port = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!strcmp(o->keyword, "host"))
            host = o->val;
        else if (!strcmp(o->keyword, "port"))
            port = o->val;
    }
    int hn = host ? (int)strcspn(host, ",") : 0, pn = port ? (int)strcspn(port, ",") : 0;
    snprintf(out, size, "%.*s:%.*s", hn ? hn : 9, hn ? host : "localhost", pn ? pn : 4,
             pn ? port : "5432");
    PQconninfoFree(opts);
}

/* ---- the monitor thread ---------------------------------------------------- */

/* A WAL position asked with sql on *pg (opened from ci when NULL), answered within
   timeout_s; a NULL answer is 0. A connection that failed or timed out is closed. */
static bool ask_lsn(PGconn **pg, const qgp_conninfo *ci, const char *sql, double timeout_s,
                    qg_lsn *out, char *why, size_t size)
{
    if (*pg && PQstatus(*pg) != CONNECTION_OK) {
        PQfinish(*pg);
        *pg = NULL;
    }
    if (!*pg) {
        *pg = PQconnectdbParams(ci->keywords, ci->values, 0);
        if (!*pg || PQstatus(*pg) != CONNECTION_OK) {
            snprintf(why, size, "cannot connect: %s", *pg ? PQerrorMessage(*pg) : "out of memory");
            PQfinish(*pg);
            *pg = NULL;
            return false;
        }
    }
    char value[QG_LSN_BUF + 8];
    enum qgp_asked a = qgp_ask(*pg, sql, qg_now() + timeout_s, timeout_s, value, sizeof value,
                               why, size);
    bool ok = a == QGP_ASKED_OK && (!*value ? (*out = 0, true)
                                            : qg_lsn_parse(value, strlen(value), out));
    if (a == QGP_ASKED_OK && !ok)
        snprintf(why, size, "the check answered \"%.24s\", not a WAL position", value);
    if (a == QGP_ASKED_TIMEOUT || a == QGP_ASKED_LOST) {
        PQfinish(*pg);
        *pg = NULL;
    }
    for (char *p = why; *p; p++) /* one line */
        if (*p == '\n')
            *p = ' ';
    return ok;
}

static const qgp_conninfo *conninfo(const qg_manager *m)
{
    return atomic_load(&m->pooler) ? m->ci_plain : m->ci_options;
}

/* Lag of a replica that replayed up to replay, at time now; lock held. */
static double lag_ms(const struct qgp_replicas *set, qg_lsn replay, double now)
{
    for (int k = 0; k < set->count; k++) {
        const struct sample *s = &set->ring[(set->head + k) % SAMPLES];
        if (s->lsn > replay)
            return (now - s->t) * 1000.0;
    }
    return 0;
}

static const char *const cond_names[] = {"not checked yet", "usable", "lagging", "down", "failed"};

/* Moves replica r to `to` (why says why when not usable); the set's lock held. The line to
   log, if any, goes to msg. */
static void set_condition(struct qgp_replica *r, enum condition to, const char *why, char *msg,
                          size_t size)
{
    enum condition from = r->cond;
    r->cond = to;
    if (to == COND_USABLE)
        r->why[0] = '\0';
    else if (why)
        snprintf(r->why, sizeof r->why, "%.250s", why);
    if (from == to || (from == COND_UNKNOWN && to == COND_USABLE))
        return;
    if (to == COND_USABLE)
        snprintf(msg, size, "replica %s is usable again (lag %.0f ms); reads go there", r->name,
                 r->lag_ms < 0 ? 0 : r->lag_ms);
    else
        snprintf(msg, size, "replica %s is set aside (%s): %s", r->name, cond_names[to], r->why);
}

/* Whether any replica is usable; logs the start and end of the fallback. Lock held; the
   line goes to msg. */
static void note_fallback(struct qgp_replicas *set, char *msg, size_t size)
{
    bool any = false;
    for (int i = 0; i < set->n && !any; i++)
        any = set->r[i].cond == COND_USABLE;
    if (!any && !set->fallback_logged) {
        set->fallback_logged = true;
        snprintf(msg, size, "no read replica is usable: reads %s",
                 set->primary->cfg->read_fallback == QG_READ_FALLBACK_NONE
                     ? "answer 503 db_unavailable (DB_READ_FALLBACK=none)"
                     : "go to the primary (DB_READ_FALLBACK=primary)");
    } else if (any && set->fallback_logged) {
        set->fallback_logged = false;
        snprintf(msg, size, "a read replica is usable again: reads leave the primary");
    }
}

/* Asks replica i where it is; full: also its lag and condition (have_primary: the primary was
   just sampled), else only its replay position (the fast polls for waiting reads). */
static void check_replica(struct qgp_replicas *set, int i, bool full, bool have_primary)
{
    struct qgp_replica *r = &set->r[i];
    char why[200] = "", msg[512] = "", msg2[256] = "";
    qg_lsn replay = 0;
    bool ok = ask_lsn(&r->mon, conninfo(r->m), REPLAY_SQL, set->primary->cfg->connect_timeout_s,
                      &replay, why, sizeof why);
    double now = qg_now();
    pthread_mutex_lock(&set->lock);
    if (!ok) {
        char shown[256];
        snprintf(shown, sizeof shown, "not answering: %.200s", why);
        set_condition(r, COND_DOWN, shown, msg, sizeof msg);
    } else {
        if (replay > r->replay)
            r->replay = replay;
        if (full) {
            r->lag_ms = have_primary ? lag_ms(set, replay, now) : -1;
            int max = set->primary->cfg->replica_max_lag_ms;
            if (r->lag_ms > max) {
                char shown[128];
                snprintf(shown, sizeof shown, "replay lag %.0f ms is over DB_REPLICA_MAX_LAG_MS=%d",
                         r->lag_ms, max);
                set_condition(r, COND_LAGGING, shown, msg, sizeof msg);
            } else {
                set_condition(r, COND_USABLE, NULL, msg, sizeof msg);
            }
        }
    }
    note_fallback(set, msg2, sizeof msg2);
    pthread_cond_broadcast(&set->cv);
    pthread_mutex_unlock(&set->lock);
    if (*msg)
        qgp_log(set->primary, ok ? QG_LOG_INFO : QG_LOG_WARN, "%s", msg);
    if (*msg2)
        qgp_log(set->primary, QG_LOG_WARN, "%s", msg2);
}

static void check_all(struct qgp_replicas *set)
{
    char why[200];
    qg_lsn p = 0;
    bool have = ask_lsn(&set->mon_primary, conninfo(set->primary), PRIMARY_SQL,
                        set->primary->cfg->connect_timeout_s, &p, why, sizeof why);
    double now = qg_now();
    pthread_mutex_lock(&set->lock);
    if (have) {
        const struct sample *last =
            set->count ? &set->ring[(set->head + set->count - 1) % SAMPLES] : NULL;
        if (!last || p > last->lsn) {
            if (set->count == SAMPLES) { /* the oldest goes: lags past it are lower bounds */
                set->head = (set->head + 1) % SAMPLES;
                set->count--;
            }
            set->ring[(set->head + set->count++) % SAMPLES] = (struct sample){now, p};
        }
    }
    pthread_mutex_unlock(&set->lock);
    for (int i = 0; i < set->n; i++)
        check_replica(set, i, true, have);
}

static void *monitor(void *arg)
{
    struct qgp_replicas *set = arg;
    double interval = set->primary->cfg->health_cache_ms / 1000.0;
    if (interval < 0.05)
        interval = 0.05;
    pthread_mutex_lock(&set->lock);
    while (!set->stop) {
        pthread_mutex_unlock(&set->lock);
        check_all(set);
        pthread_mutex_lock(&set->lock);
        double next = qg_now() + interval;
        while (!set->stop && qg_now() < next) {
            if (set->lsn_waiters > 0) {
                pthread_mutex_unlock(&set->lock);
                for (int i = 0; i < set->n; i++)
                    check_replica(set, i, false, false);
                pthread_mutex_lock(&set->lock);
            }
            double until = set->lsn_waiters > 0 ? qg_now() + FAST_POLL_S : next;
            struct timespec ts = qg_timespec(until < next ? until : next);
            pthread_cond_timedwait(&set->cv, &set->lock, &ts);
        }
    }
    pthread_mutex_unlock(&set->lock);
    return NULL;
}

/* ---- life ------------------------------------------------------------------- */

qg_status qgp_replicas_new(qg_manager *m, qg_error *err)
{
    char **urls;
    int n;
    qg_status s = qgp_url_list(m->cfg->read_urls, &urls, &n, err);
    if (s != QG_OK)
        return s;
    struct qgp_replicas *set = calloc(1, sizeof *set);
    if (set)
        set->r = calloc((size_t)(n ? n : 1), sizeof *set->r);
    if (!set || !set->r) {
        free(set);
        qgp_url_list_free(urls, n);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory making the replica pools");
    }
    set->primary = m;
    pthread_mutex_init(&set->lock, NULL);
    qg_cond_init_monotonic(&set->cv);
    m->replicas = set;
    for (int i = 0; i < n && s == QG_OK; i++) {
        struct qgp_replica *r = &set->r[i];
        r->url = urls[i];
        urls[i] = NULL;
        r->cfg = *m->cfg;
        r->cfg.database_url = r->url;
        r->cfg.read_urls = NULL;
        if (m->cfg->read_pool_size > 0)
            r->cfg.pool_size = m->cfg->read_pool_size;
        r->lag_ms = -1;
        snprintf(r->why, sizeof r->why, "not checked yet");
        char *shown = qgp_redact_conninfo(r->url);
        snprintf(r->display, sizeof r->display, "%s", shown ? shown : "***");
        free(shown);
        host_port(r->url, r->name, sizeof r->name);
        set->n++;
        s = qg_manager_new(&r->cfg, &r->m, err);
        if (s == QG_OK)
            r->m->replica_of = m;
    }
    qgp_url_list_free(urls, n);
    if (s == QG_OK && pthread_create(&set->thread, NULL, monitor, set) != 0)
        s = qg_error_set(err, QG_ERR_INTERNAL, "cannot start the replica monitor thread");
    set->started = s == QG_OK;
    return s;
}

void qgp_replicas_shutdown(qg_manager *m, double grace_s)
{
    struct qgp_replicas *set = m->replicas;
    if (!set)
        return;
    pthread_mutex_lock(&set->lock);
    set->stop = true;
    pthread_cond_broadcast(&set->cv);
    pthread_mutex_unlock(&set->lock);
    if (set->started)
        pthread_join(set->thread, NULL);
    set->started = false;
    for (int i = 0; i < set->n; i++)
        qg_manager_shutdown(set->r[i].m, grace_s);
}

void qgp_replicas_free(qg_manager *m)
{
    struct qgp_replicas *set = m->replicas;
    if (!set)
        return;
    qgp_replicas_shutdown(m, 0);
    for (int i = 0; i < set->n; i++) {
        qg_manager_free(set->r[i].m);
        PQfinish(set->r[i].mon);
        free(set->r[i].url);
    }
    PQfinish(set->mon_primary);
    pthread_mutex_destroy(&set->lock);
    pthread_cond_destroy(&set->cv);
    free(set->r);
    free(set);
    m->replicas = NULL;
}

void qgp_replicas_set_log(qg_manager *m, qg_log_fn fn, void *arg)
{
    for (int i = 0; m->replicas && i < m->replicas->n; i++)
        qg_manager_set_log(m->replicas->r[i].m, fn, arg);
}

/* ---- reads ------------------------------------------------------------------ */

bool qgp_replicas_for(const qg_manager *m)
{
    return set_of(m) != NULL;
}

int qgp_replica_pick(qg_manager *m, qg_lsn min_lsn, int skip, bool *short_lsn)
{
    struct qgp_replicas *set = set_of(m);
    *short_lsn = false;
    if (!set)
        return -1;
    int best = -1, best_load = 0;
    pthread_mutex_lock(&set->lock);
    unsigned first = set->turn++;
    for (int k = 0; k < set->n; k++) {
        int i = (int)((first + (unsigned)k) % (unsigned)set->n);
        struct qgp_replica *r = &set->r[i];
        if (i == skip || r->cond != COND_USABLE)
            continue;
        if (min_lsn && r->replay < min_lsn) {
            *short_lsn = true;
            continue;
        }
        pthread_mutex_lock(&r->m->lock);
        int load = r->m->checked_out + r->m->waiting;
        pthread_mutex_unlock(&r->m->lock);
        if (best < 0 || load < best_load) {
            best = i;
            best_load = load;
        }
    }
    if (best >= 0)
        *short_lsn = false;
    pthread_mutex_unlock(&set->lock);
    return best;
}

qg_manager *qgp_replica_pool(qg_manager *m, int i)
{
    struct qgp_replicas *set = set_of(m);
    if (!set || i < 0 || i >= set->n)
        return NULL;
    qg_manager *out = set->r[i].m;
    qg_error err;
    if (m->role && qg_manager_for_role(out, m->role, &out, &err) != QG_OK)
        return NULL;
    return out;
}

void qgp_replica_failed(qg_manager *m, int i, const qg_error *e)
{
    struct qgp_replicas *set = set_of(m);
    if (!set || i < 0 || i >= set->n)
        return;
    char why[300], msg[512] = "", msg2[256] = "";
    snprintf(why, sizeof why, "a read failed on it: %.200s", e->message);
    pthread_mutex_lock(&set->lock);
    if (set->r[i].cond == COND_USABLE)
        set_condition(&set->r[i], COND_FAILED, why, msg, sizeof msg);
    note_fallback(set, msg2, sizeof msg2);
    pthread_mutex_unlock(&set->lock);
    if (*msg)
        qgp_log(set->primary, QG_LOG_WARN, "%s", msg);
    if (*msg2)
        qgp_log(set->primary, QG_LOG_WARN, "%s", msg2);
}

void qgp_replicas_want_lsn(qg_manager *m, bool on)
{
    struct qgp_replicas *set = set_of(m);
    if (!set)
        return;
    pthread_mutex_lock(&set->lock);
    set->lsn_waiters += on ? 1 : -1;
    pthread_cond_broadcast(&set->cv);
    pthread_mutex_unlock(&set->lock);
}

/* ---- observability ------------------------------------------------------------ */

int qg_replica_count(qg_manager *m)
{
    struct qgp_replicas *set = set_of(m);
    return set ? set->n : 0;
}

bool qg_replica_stats(qg_manager *m, int i, struct qg_replica_stats *out)
{
    struct qgp_replicas *set = set_of(m);
    memset(out, 0, sizeof *out);
    if (!set || i < 0 || i >= set->n)
        return false;
    struct qgp_replica *r = &set->r[i];
    snprintf(out->url, sizeof out->url, "%s", r->display);
    snprintf(out->name, sizeof out->name, "%s", r->name);
    pthread_mutex_lock(&set->lock);
    out->usable = r->cond == COND_USABLE;
    out->lag_ms = r->lag_ms;
    out->replay_lsn = r->replay;
    snprintf(out->why, sizeof out->why, "%s", r->why);
    pthread_mutex_unlock(&set->lock);
    qg_pool_stats(r->m, &out->pool);
    return true;
}
