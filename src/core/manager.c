/* The manager: creation, shutdown, the process-wide instance. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manager_private.h"

extern char **environ;

const char *qg_version(void)
{
    return QG_VERSION;
}

static qg_status create(const struct qg_config *cfg, const char *role, qg_manager **out,
                        qg_error *err)
{
    *out = NULL;
    if (!cfg || !cfg->database_url)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "DATABASE_URL is not set; set it to a postgresql:// URL "
                            "(or start the service with scripts/run for an embedded database)");
    qg_manager *m = calloc(1, sizeof *m);
    if (!m)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory creating the manager");
    m->cfg = cfg;
    /* NOTE: the connection parameters point at m->role: the manager owns its strings,
       the caller's may be gone before the pool opens its next connection. */
    qg_status s = QG_OK;
    if (role && !(m->role = strdup(role)))
        s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory creating the manager");
    if (s == QG_OK)
        s = qgp_conninfo_new_as(cfg, true, m->role, &m->ci_options, err);
    if (s == QG_OK)
        s = qgp_conninfo_new_as(cfg, false, m->role, &m->ci_plain, err);
    if (s == QG_OK && !(m->session_sql = qgp_session_settings_sql(cfg)))
        s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory creating the manager");
    if (s != QG_OK) {
        qgp_conninfo_free(m->ci_options);
        qgp_conninfo_free(m->ci_plain);
        free(m->session_sql);
        free(m->role);
        free(m);
        return s;
    }
    atomic_init(&m->pooler, cfg->pooler == QG_POOLER_ON);
    for (int i = 0; m->ci_plain->keywords[i]; i++)
        if (!strcmp(m->ci_plain->keywords[i], "target_session_attrs"))
            m->read_write_target = !strcmp(m->ci_plain->values[i], "read-write");
    atomic_init(&m->retries, 0);
    atomic_init(&m->cancelled_running, false);
    pthread_mutex_init(&m->lock, NULL);
    qg_cond_init_monotonic(&m->drained);
    pthread_mutex_init(&m->health_lock, NULL);
    pthread_mutex_init(&m->health_pg_lock, NULL);
    pthread_cond_init(&m->health_done, NULL);
    pthread_mutex_init(&m->roles_lock, NULL);
    *out = m;
    return QG_OK;
}

qg_status qg_manager_new(const struct qg_config *cfg, qg_manager **out, qg_error *err)
{
    qg_status s = create(cfg, NULL, out, err);
    if (s == QG_OK && cfg->read_urls && (s = qgp_replicas_new(*out, err)) != QG_OK) {
        qg_manager_free(*out);
        *out = NULL;
    }
    return s;
}

qg_status qg_manager_for_role(qg_manager *m, const char *role, qg_manager **out, qg_error *err)
{
    *out = NULL;
    if (!role || !*role)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "a role name is required");
    pthread_mutex_lock(&m->roles_lock);
    qg_status s = QG_OK;
    for (int i = 0; i < m->nroles && !*out; i++)
        if (!strcmp(m->roles[i].role, role))
            *out = m->roles[i].m;
    if (!*out) {
        struct qgp_role_pool *grown = realloc(m->roles, sizeof *grown * (size_t)(m->nroles + 1));
        if (!grown) {
            s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory adding a role pool");
        } else {
            m->roles = grown;
            qg_manager *child;
            s = create(m->cfg, role, &child, err);
            if (s == QG_OK && !(grown[m->nroles].role = strdup(role))) {
                qg_manager_free(child);
                s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory adding a role pool");
            }
            if (s == QG_OK) {
                qg_manager_set_log(child, m->log_fn, m->log_arg);
                child->parent = m;
                grown[m->nroles++].m = child;
                *out = child;
            }
        }
    }
    pthread_mutex_unlock(&m->roles_lock);
    return s;
}

void qg_manager_set_log(qg_manager *m, qg_log_fn fn, void *arg)
{
    m->log_fn = fn;
    m->log_arg = arg;
    qgp_replicas_set_log(m, fn, arg);
}

/* Waits until every lent connection is back or the deadline passes; lock held. */
static bool wait_drained_locked(qg_manager *m, double deadline)
{
    while (m->checked_out > 0) {
        if (qg_now() >= deadline)
            return false;
        struct timespec ts = qg_timespec(deadline);
        pthread_cond_timedwait(&m->drained, &m->lock, &ts);
    }
    return true;
}

void qg_manager_shutdown(qg_manager *m, double grace_s)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->roles_lock);
    for (int i = 0; i < m->nroles; i++)
        qg_manager_shutdown(m->roles[i].m, grace_s);
    pthread_mutex_unlock(&m->roles_lock);
    qgp_replicas_shutdown(m, grace_s);
    pthread_mutex_lock(&m->lock);
    m->shutting_down = true;
    qgp_pool_cancel_waiters_locked(m);
    if (!wait_drained_locked(m, qg_now() + grace_s)) {
        /* Past the grace period: cancel what still runs, so it rolls back and returns. */
        atomic_store(&m->cancelled_running, true);
        for (qg_conn *c = m->all; c; c = c->next_all)
            qg_conn_cancel(c);
        wait_drained_locked(m, qg_now() + 5.0);
    }
    pthread_mutex_unlock(&m->lock);
    qgp_pool_close_all(m);
}

void qg_manager_free(qg_manager *m)
{
    if (!m)
        return;
    qg_manager_shutdown(m, 0);
    qgp_replicas_free(m);
    for (int i = 0; i < m->nroles; i++) {
        qg_manager_free(m->roles[i].m);
        free(m->roles[i].role);
    }
    free(m->roles);
    free(m->role);
    pthread_mutex_destroy(&m->roles_lock);
    PQfinish(m->health_pg);
    qgp_conninfo_free(m->ci_options);
    qgp_conninfo_free(m->ci_plain);
    free(m->session_sql);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->drained);
    pthread_mutex_destroy(&m->health_lock);
    pthread_mutex_destroy(&m->health_pg_lock);
    pthread_cond_destroy(&m->health_done);
    free(m);
}

/* ---- the process-wide manager (Python's get_db_manager) ------------------ */

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static qg_manager *global_manager;
static struct qg_config global_config;

qg_status qg_manager_global(qg_manager **out, qg_error *err)
{
    pthread_mutex_lock(&global_lock);
    qg_status s = QG_OK;
    if (!global_manager) {
        s = qg_config_load(&global_config, environ, err);
        if (s == QG_OK && (s = qg_manager_new(&global_config, &global_manager, err)) != QG_OK)
            qg_config_free(&global_config);
    }
    *out = global_manager;
    pthread_mutex_unlock(&global_lock);
    return s;
}

void qg_manager_global_free(void)
{
    pthread_mutex_lock(&global_lock);
    if (global_manager) {
        qg_manager_free(global_manager);
        qg_config_free(&global_config);
        global_manager = NULL;
    }
    pthread_mutex_unlock(&global_lock);
}
