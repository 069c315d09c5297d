/* What the contract lets us retry, and the backoff between tries. */
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manager_private.h"

bool qg_error_retryable(const qg_error *err)
{
    if (!err || err->outcome_unknown)
        return false;
    if (!strcmp(err->sqlstate, "40001") || !strcmp(err->sqlstate, "40P01"))
        return true;
    return err->status == QG_ERR_DB_UNAVAILABLE;
}

double qg_backoff_delay(double base_s, int attempt, double jitter01)
{
    if (base_s <= 0 || attempt < 0)
        return 0;
    if (attempt > 30)
        attempt = 30;
    if (jitter01 < 0)
        jitter01 = 0;
    if (jitter01 > 1)
        jitter01 = 1;
    return base_s * ldexp(1.0, attempt) * (1.0 + jitter01 / 4.0);
}

/* Jitter keeps many clients that failed together from retrying together. */
static double jitter(void)
{
    static _Thread_local unsigned int seed;
    if (!seed)
        seed = (unsigned int)time(NULL) ^ (unsigned int)(uintptr_t)&seed;
    return (double)rand_r(&seed) / (double)RAND_MAX;
}

void qgp_backoff_sleep(double base_s, int attempt)
{
    qgp_sleep(qg_backoff_delay(base_s, attempt, jitter()));
}

void qgp_tries_init(struct qgp_tries *t, const qg_manager *m, bool read_only)
{
    *t = (struct qgp_tries){.write = !read_only, .deadline = qg_now() + m->cfg->pool_timeout_s};
}

/* NOTE: while a standby is promoted, a write tries again at least this often, so that
   it resumes soon after the new primary accepts connections. */
#define WAIT_MAX_S 1.0
#define WAIT_MIN_S 0.05

/*
 * A write that reached no primary did not run: it waits for one (a failover) until
 * DB_POOL_TIMEOUT from its start, however many tries that takes. Every other
 * failure the contract lets run again counts against DB_RETRIES.
 */
static double wait_for_primary(qg_manager *m, struct qgp_tries *t, const qg_error *e)
{
    double left = t->deadline - qg_now();
    if (left <= 0)
        return -1;
    double base = m->cfg->retry_delay_s > WAIT_MIN_S ? m->cfg->retry_delay_s : WAIT_MIN_S;
    double d = qg_backoff_delay(base, t->waits, 0);
    d = (d > WAIT_MAX_S ? WAIT_MAX_S : d) * (1.0 + jitter() / 4.0);
    atomic_fetch_add(&m->retries, 1);
    qgp_log(m, t->waits ? QG_LOG_DEBUG : QG_LOG_INFO, "a write waits for a primary (up to "
            "%.1fs more, DB_POOL_TIMEOUT) after: %s", left, e->message);
    t->waits++;
    return d < left ? d : left;
}

double qgp_retry_delay(qg_manager *m, struct qgp_tries *t, qg_status s, const qg_error *e)
{
    if (s == QG_OK || m->cfg->retries == 0 || !(qg_error_retryable(e) || qgp_stale_plan(e)))
        return -1;
    if (t->write && e->unreachable)
        return wait_for_primary(m, t, e);
    if (t->failed >= m->cfg->retries)
        return -1;
    atomic_fetch_add(&m->retries, 1);
    qgp_log(m, QG_LOG_INFO, "retrying a transaction (try %d of %d) after: %s", t->failed + 2,
            m->cfg->retries + 1, e->message);
    return qg_backoff_delay(m->cfg->retry_delay_s, t->failed++, jitter());
}

qg_status qgp_tx_outcome(qg_manager *m, qg_status s, qg_error *e)
{
    if (s == QG_ERR_STATEMENT_TIMEOUT && atomic_load(&m->cancelled_running)) {
        /* Our own cancel, not the statement's fault: the caller should go elsewhere. */
        s = e->status = QG_ERR_SHUTTING_DOWN;
        snprintf(e->message, sizeof e->message, "the service shut down while the statement "
                 "ran; it was cancelled and rolled back: retry on another instance");
    }
    return s;
}

qg_status qg_with_retry(int retries, double delay_s, qg_retry_fn fn, void *arg, qg_error *err)
{
    qg_error e;
    qg_status s = QG_OK;
    for (int attempt = 0;; attempt++) {
        qg_error_clear(&e);
        s = fn(arg, &e);
        if (s == QG_OK || attempt >= retries || !qg_error_retryable(&e))
            break;
        qgp_backoff_sleep(delay_s, attempt);
    }
    if (s != QG_OK && err && err->status == QG_OK)
        *err = e;
    return s;
}
