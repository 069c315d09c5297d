/*
 * qg_run (querygate/run.h): a transaction driven from an event loop. The
 * connection's socket is watched on the caller's loop and the same trips as
 * qg_transaction's (exec.c, reset.c) are stepped when it is ready; waits for
 * the pool and retry backoffs are timers. Only what libpq cannot do without
 * blocking goes to a helper thread: opening a connection (its DNS lookup
 * included) and PQcancel.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "querygate/run.h"

/*
 * Where a run is; one value, changed only by set_state(), as pgbouncer's
 * server states.
 */
enum run_state {
    RUN_STARTING,   /* made; its first attempt begins */
    RUN_LSN_WAIT,   /* a read waits for a replica to replay its min_lsn; the timer looks again */
    RUN_WAITING,    /* in the pool's line; the timer is DB_POOL_TIMEOUT */
    RUN_OPENING,    /* a helper thread opens a connection in the slot it was given */
    RUN_PINGING,    /* the idle connection it got answers a ping before use */
    RUN_EXEC,       /* the statements' trips are in flight */
    RUN_FINISHING,  /* COMMIT (or ROLLBACK) and the reset, in a trip of their own */
    RUN_CLEANING,   /* rolling back and resetting after a failure */
    RUN_RELEASING,  /* the body is over; a cancel request for the connection is still out,
                       so it cannot go back yet (the cancel would hit its next user) */
    RUN_BACKOFF,    /* no connection; the timer is the retry's backoff */
    RUN_DONE,       /* done is called, then the run is freed */
};

struct qg_run {
    enum run_state state;
    qg_loop *loop;
    qg_manager *home;        /* the pool the caller gave (the primary's, maybe a role's) */
    qg_manager *m;           /* this try's pool: home, or a replica's */
    int replica;             /* this try's replica, or -1 */
    int skip;                /* a replica a read failed on: not tried again, or -1 */
    enum qg_served served;
    qg_lsn min_lsn;
    double lsn_until;        /* a read waits for its min_lsn until then */
    bool lsn_waiting;        /* counted in qgp_replicas_want_lsn */
    qg_lsn commit_lsn;
    size_t n;
    const char **sql;
    const qg_params **params;
    struct qg_tx_options tx;
    bool numbers_as_strings;
    bool prepare;
    qg_run_done done;
    void *arg;
    qg_result **results;
    struct qgp_waiter w;
    qg_conn *c;              /* the connection lent to this attempt, or NULL */
    qg_loop_io *io;          /* c's socket on the loop */
    qg_loop_timer *timer;    /* pool timeout, retry backoff, re-sent cancel */
    struct qgp_exec *x;
    struct qgp_trip trip;    /* RUN_PINGING, RUN_FINISHING, RUN_CLEANING */
    struct qgp_tries tries;
    qg_status s;             /* this attempt's status, in e */
    qg_error e;
    bool cancel;             /* the caller left (qg_run_cancel) */
    double waited_s;         /* in the pool's line, over all attempts */
    double wait_from;        /* when this attempt joined it */
    int cancels_out;         /* PQcancel requests on a helper thread */
    bool in_start;           /* qg_run_start runs: done must wait for the loop's next turn */
    const char *log_tag;
    /* A stream (qg_run_stream_start): */
    bool is_stream;
    struct qg_run_stream cb;
    qg_loop_timer *wake;     /* a paused stream looks again: asked for more, cancelled, shutdown */
    bool paused;             /* a batch is ready and waits for qg_run_stream_more */
    bool credit;             /* the caller may take the next batch */
    bool streamed;           /* the columns went out: no retry from now on */
};

static void set_state(qg_run *r, enum run_state to)
{
    r->state = to;
}

/* A loop callback's way in: the core's log lines name r's request meanwhile. NOTE: fn
   may free r, so its tag is read first. */
static void as_run(qg_run *r, void (*fn)(qg_run *r))
{
    const char *old = qgp_log_tag_set(r->log_tag);
    fn(r);
    qgp_log_tag_set(old);
}

static void attempt(qg_run *r);
static void step(qg_run *r, bool readable);
static void on_socket(void *arg, unsigned events);
static void start_body(qg_run *r);
static void open_in_slot(qg_run *r);
static void open_over(qg_run *r);

static qg_status cancelled(qg_error *e)
{
    return qg_error_set(e, QG_ERR_STATEMENT_TIMEOUT,
                        "cancelled: the client closed the connection");
}

static void free_results(qg_run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        qg_result_free(r->results[i]);
        r->results[i] = NULL;
    }
}

static void run_free(qg_run *r)
{
    free_results(r);
    qg_loop_timer_free(r->timer);
    qg_loop_timer_free(r->wake);
    free(r->results);
    free(r->sql);
    free(r->params);
    free(r);
}

static void stream_end(qg_run *r, qg_status s)
{
    if (s == QG_OK && !r->streamed)
        r->cb.columns(r->arg, "[]", 2);
    r->cb.end(r->arg, s, s == QG_OK ? qg_result_row_count(r->results[0]) : 0, &r->e);
}

static void lsn_wait_end(qg_run *r)
{
    if (r->lsn_waiting)
        qgp_replicas_want_lsn(r->home, false);
    r->lsn_waiting = false;
}

/* The end: done once, on the loop, never inside qg_run_start. */
static void complete(qg_run *r)
{
    lsn_wait_end(r);
    /* NOTE: a backstop. A run ends with its statements over and its connection back; one
       that would end holding either gives them up here, the connection closed, rather
       than keep a pool slot forever. (The leak it was added for, a run served twice, is
       fixed in attempt.) */
    if (r->x) {
        long failed;
        (void)qgp_exec_end(r->x, &failed);
        r->x = NULL;
    }
    if (r->c) {
        qgp_conn_set_state(r->c, QGP_CONN_BROKEN);
        qg_loop_io_free(r->io);
        r->io = NULL;
        qg_checkin(r->m, r->c);
        r->c = NULL;
    }
    set_state(r, RUN_DONE);
    qg_status s = qgp_tx_outcome(r->m, r->s, &r->e);
    /* Only the cancel's own failure is the cancel's: a statement that failed by itself
       (or a COMMIT whose outcome is unknown) keeps its answer. */
    if (r->cancel && s == QG_ERR_STATEMENT_TIMEOUT)
        r->e.cancelled = true;
    if (r->is_stream)
        stream_end(r, s);
    else
        r->done(r->arg, s, s == QG_OK ? r->results : NULL, &r->e);
    run_free(r);
}

static void complete_later(void *arg)
{
    as_run(arg, complete);
}

/* later: from the caller's own call (qg_run_start, qg_run_cancel), so done must wait. */
static void finish(qg_run *r, bool later)
{
    if (!later && !r->in_start) {
        complete(r);
        return;
    }
    /* NOTE: only out of memory stops the post; r is then lost, not freed under its caller. */
    (void)qg_loop_post(r->loop, complete_later, r);
}

/* The attempt is over and the connection is back (or none was had): again, or the end. */
static void attempt_over(qg_run *r)
{
    /* NOTE: a read is safe to run again: a replica that failed it costs one more try,
       elsewhere, at once. */
    if (r->replica >= 0 && r->s == QG_ERR_DB_UNAVAILABLE && r->skip < 0 && !r->cancel &&
        !r->streamed) {
        qgp_replica_failed(r->home, r->replica, &r->e);
        r->skip = r->replica;
        attempt(r);
        return;
    }
    /* NOTE: rows that went out cannot be taken back: a stream is retried only before. */
    double delay = r->cancel || r->streamed ? -1 : qgp_retry_delay(r->m, &r->tries, r->s, &r->e);
    if (delay < 0) {
        finish(r, false);
        return;
    }
    set_state(r, RUN_BACKOFF);
    qg_loop_timer_at(r->timer, qg_now() + delay);
}

static void release(qg_run *r)
{
    /* NOTE: before the wait for a cancel too: nothing of this run is in flight on the
       socket any more, and a byte arriving there must not step a trip that is over. */
    qg_loop_io_free(r->io);
    r->io = NULL;
    if (r->cancels_out > 0) {
        set_state(r, RUN_RELEASING);
        return;
    }
    if (r->s == QG_OK && r->c->commit_lsn)
        r->commit_lsn = r->c->commit_lsn;
    qg_checkin(r->m, r->c);
    r->c = NULL;
    attempt_over(r);
}

/* The body is over: settle the connection (clean it when it must be), then release it. */
static void settle(qg_run *r)
{
    if (!qgp_tx_settle(r->c)) {
        release(r);
        return;
    }
    set_state(r, RUN_CLEANING);
    if (qgp_clean_start(&r->trip, r->c)) {
        step(r, false);
        return;
    }
    qgp_clean_result(&r->trip);
    qgp_trip_free(&r->trip);
    release(r);
}

static void exec_over(qg_run *r)
{
    long failed = -1;
    qg_status s = qgp_exec_end(r->x, &failed);
    r->x = NULL;
    if (s != QG_OK && failed >= 0 && r->e.statement_index < 0)
        r->e.statement_index = (int)failed;
    if (r->s == QG_OK)
        r->s = s;
    enum qgp_end end = qgp_tx_finishing(r->c, r->s == QG_OK);
    if (end == QGP_END_NONE) {
        settle(r);
        return;
    }
    set_state(r, RUN_FINISHING);
    if (qgp_finish_start(&r->trip, r->c, end, &r->e)) {
        step(r, false);
        return;
    }
    r->s = r->trip.s;
    qgp_trip_free(&r->trip);
    settle(r);
}

static void cancel_work(void *arg)
{
    qg_run *r = arg;
    qg_conn_cancel(r->c);
}

static void cancel_done(void *arg);

/* Asks the server to stop the statement running; PQcancel blocks, so a helper thread does. */
static void request_cancel(void *arg)
{
    qg_run *r = arg;
    if (r->cancels_out > 0 || !r->c)
        return;
    r->cancels_out++;
    if (!qg_loop_offload(r->loop, cancel_work, cancel_done, r))
        r->cancels_out--;
}

/* NOTE: a cancel that reaches the server before the statement starts is ignored there,
   so it is sent again while the client is gone and the statements still run. */
#define RECANCEL_S 0.2

static void cancel_over(qg_run *r);

static void cancel_done(void *arg)
{
    as_run(arg, cancel_over);
}

static void cancel_over(qg_run *r)
{
    r->cancels_out--;
    if (r->state == RUN_RELEASING)
        release(r);
    else if (r->state == RUN_EXEC && r->cancel)
        qg_loop_timer_at(r->timer, qg_now() + RECANCEL_S);
}

/* A trip (or the statements) ended in state RUN_PINGING, RUN_FINISHING or RUN_CLEANING. */
static void trip_over(qg_run *r)
{
    switch (r->state) {
    case RUN_PINGING: {
        bool alive = r->trip.s == QG_OK && !r->trip.command_failed && r->trip.synced;
        qgp_trip_free(&r->trip);
        if (alive) {
            start_body(r);
            return;
        }
        qg_loop_io_free(r->io);
        r->io = NULL;
        qgp_pool_replace(r->m, r->c, true);
        r->c = NULL;
        open_in_slot(r);
        return;
    }
    case RUN_FINISHING:
        if (r->s == QG_OK)
            r->s = r->trip.s;
        qgp_trip_free(&r->trip);
        settle(r);
        return;
    case RUN_CLEANING:
        qgp_clean_result(&r->trip);
        qgp_trip_free(&r->trip);
        release(r);
        return;
    default:
        return;
    }
}

/* A paused stream looks again this often: the shutdown cancels what runs, and a server
   blocked on its send sees no cancel until its rows are read. */
#define PAUSE_POLL_S 0.1

static bool stopping(const qg_run *r)
{
    return r->cancel || atomic_load(&r->m->cancelled_running);
}

/* A stream's batch is ready: hand it over if the caller may take it; false: wait. */
static bool stream_go(qg_run *r)
{
    if (stopping(r)) {
        qgp_exec_stream_discard(r->x); /* read on, so that the server sees the cancel */
        return true;
    }
    if (!r->credit)
        return false;
    r->credit = false;
    size_t len;
    const char *cols = qgp_exec_stream_columns(r->x, &len);
    if (cols && !r->streamed) {
        r->streamed = true;
        r->cb.columns(r->arg, cols, len);
    }
    long long n;
    char *lines = qgp_exec_stream_rows(r->x, &len, &n);
    if (lines)
        r->cb.rows(r->arg, lines, len, n);
    qgp_exec_stream_resume(r->x);
    return true;
}

static void pause_stream(qg_run *r)
{
    r->paused = true;
    if (r->io)
        (void)qg_loop_io_set(r->io, 0);
    qg_loop_timer_at(r->wake, qg_now() + PAUSE_POLL_S);
}

static void wake_over(qg_run *r)
{
    if (r->state != RUN_EXEC || !r->paused)
        return;
    if (!r->credit && !stopping(r)) {
        qg_loop_timer_at(r->wake, qg_now() + PAUSE_POLL_S);
        return;
    }
    r->paused = false;
    step(r, false);
}

static void on_wake(void *arg)
{
    as_run(arg, wake_over);
}

/* Steps what is in flight on the connection; waits on its socket for more. */
static void step(qg_run *r, bool readable)
{
    enum qgp_wait w;
    for (;;) {
        w = r->state == RUN_EXEC ? qgp_exec_step(r->x, readable)
                                 : qgp_trip_step(&r->trip, readable);
        if (w != QGP_WAIT_PAUSE)
            break;
        if (!stream_go(r)) {
            pause_stream(r);
            return;
        }
        readable = false;
    }
    if (w != QGP_WAIT_NONE) {
        unsigned ev = QG_LOOP_READ | (w == QGP_WAIT_WRITE ? QG_LOOP_WRITE : 0);
        if (!r->io)
            r->io = qg_loop_io_new(r->loop, PQsocket(r->c->pg), ev, on_socket, r);
        if (r->io && qg_loop_io_set(r->io, ev))
            return;
        /* NOTE: the socket cannot be watched (out of memory): wait for it here, as the
           blocking API does, rather than lose the request. */
        step(r, qgp_wait_socket(r->c->pg, w, 0) != 0);
        return;
    }
    if (r->state == RUN_EXEC)
        exec_over(r);
    else
        trip_over(r);
}

static void on_socket(void *arg, unsigned events)
{
    qg_run *r = arg;
    if (r->state != RUN_EXEC && r->state != RUN_PINGING && r->state != RUN_FINISHING &&
        r->state != RUN_CLEANING) {
        (void)qg_loop_io_set(r->io, 0); /* no trip in flight: nothing to read for */
        return;
    }
    const char *old = qgp_log_tag_set(r->log_tag);
    step(r, (events & (QG_LOOP_READ | QG_LOOP_HUP)) != 0);
    qgp_log_tag_set(old);
}

/* A connection in hand: the transaction's body starts. */
static void start_body(qg_run *r)
{
    if (r->cancel) {
        r->s = cancelled(&r->e);
        release(r);
        return;
    }
    qgp_tx_begin(r->c, &r->tx);
    struct qg_exec_options opt = {.numbers_as_strings = r->numbers_as_strings, .last = true,
                                  .prepare = r->prepare};
    free_results(r);
    r->s = qgp_exec_start(r->c, r->n, r->sql, r->params, &opt, r->results, request_cancel, r,
                          &r->e, &r->x);
    if (r->x && r->is_stream)
        qgp_exec_stream(r->x, r->cb.batch_bytes ? r->cb.batch_bytes : 65536);
    if (!r->x) {
        settle(r);
        return;
    }
    set_state(r, RUN_EXEC);
    step(r, false);
}

static void open_work(void *arg)
{
    qg_run *r = arg;
    r->s = qgp_conn_open(r->m, &r->c, &r->e);
}

static void open_done(void *arg)
{
    as_run(arg, open_over);
}

static void open_over(qg_run *r)
{
    qgp_pool_opened(r->m, r->s == QG_OK ? r->c : NULL);
    if (r->s != QG_OK) {
        r->c = NULL;
        attempt_over(r);
        return;
    }
    start_body(r);
}

/* Served by the pool: a connection to check, a slot to open one in, or the shutdown. */
static void open_in_slot(qg_run *r)
{
    set_state(r, RUN_OPENING);
    if (!qg_loop_offload(r->loop, open_work, open_done, r)) {
        r->s = qg_error_set(&r->e, QG_ERR_INTERNAL, "cannot start a thread to connect");
        qgp_pool_opened(r->m, NULL);
        attempt_over(r);
    }
}

/* The attempt left the pool's line (served, timed out or gone). */
static void stop_waiting(qg_run *r)
{
    if (r->state == RUN_WAITING)
        r->waited_s += qg_now() - r->wait_from;
}

static void served(qg_run *r)
{
    stop_waiting(r);
    qg_loop_timer_stop(r->timer);
    r->c = r->w.conn;
    bool shutdown = r->w.cancelled;
    r->w.conn = NULL;
    r->w.may_open = r->w.cancelled = false;
    if (shutdown) {
        r->s = qg_error_set(&r->e, QG_ERR_SHUTTING_DOWN,
                            "the service is shutting down; retry on another instance");
        attempt_over(r);
        return;
    }
    if (r->c) {
        enum qgp_usable u = qgp_pool_check(r->m, r->c);
        if (u == QGP_USABLE) {
            start_body(r);
            return;
        }
        if (u == QGP_PING && qgp_ping_start(&r->trip, r->c)) {
            set_state(r, RUN_PINGING);
            step(r, false);
            return;
        }
        qgp_pool_replace(r->m, r->c, true);
        r->c = NULL;
    }
    open_in_slot(r);
}

static void served_later(void *arg)
{
    as_run(arg, served);
}

/* The pool's lock is held: only pass the news to the loop. */
static void wake(struct qgp_waiter *w)
{
    qg_run *r = (qg_run *)((char *)w - offsetof(qg_run, w));
    (void)qg_loop_post(r->loop, served_later, r);
}

/* NOTE: replicas report where they are every few milliseconds while a read waits. */
#define LSN_POLL_S 0.005

/*
 * Which server this try runs on: a read on a usable replica when there are
 * some, else on the primary per DB_READ_FALLBACK. False when the run waits for
 * a replica to replay its min_lsn (RUN_LSN_WAIT) or has ended.
 */
static bool choose(qg_run *r)
{
    r->m = r->home;
    r->replica = -1;
    r->served = QG_SERVED_PRIMARY;
    if (!r->tx.read_only || !qgp_replicas_for(r->home))
        return true;
    bool short_lsn;
    int i = qgp_replica_pick(r->home, r->min_lsn, r->skip, &short_lsn);
    qg_manager *pool = i >= 0 ? qgp_replica_pool(r->home, i) : NULL;
    if (pool) {
        lsn_wait_end(r);
        r->m = pool;
        r->replica = i;
        r->served = QG_SERVED_REPLICA;
        return true;
    }
    if (short_lsn && qg_now() < r->lsn_until) {
        if (!r->lsn_waiting)
            qgp_replicas_want_lsn(r->home, true);
        r->lsn_waiting = true;
        set_state(r, RUN_LSN_WAIT);
        qg_loop_timer_at(r->timer, qg_now() + LSN_POLL_S);
        return false;
    }
    lsn_wait_end(r);
    /* Replicas behind the caller's LSN: the primary has it. None usable: the fallback. */
    if (!short_lsn && r->home->cfg->read_fallback == QG_READ_FALLBACK_NONE) {
        r->served = QG_SERVED_NONE;
        r->s = qg_error_set(&r->e, QG_ERR_DB_UNAVAILABLE,
                            "no read replica is usable and DB_READ_FALLBACK=none keeps reads "
                            "off the primary; retry later");
        finish(r, false);
        return false;
    }
    return true;
}

static void attempt(qg_run *r)
{
    qg_error_clear(&r->e);
    r->s = QG_OK;
    if (!choose(r))
        return;
    r->w.wake = wake;
    /* NOTE: once in line, w is another thread's to serve the moment the pool's lock is
       let go (a connection checked in on another loop): what it holds then came by wake,
       and served_later is on its way. Read there, it was taken for a connection had at
       once and served twice, the run on two connections and the first lost (seen under
       ASan as a leaked exec after failover tests). */
    bool queued;
    r->s = qgp_pool_take(r->m, &r->w, &queued, &r->e);
    if (r->s != QG_OK) {
        attempt_over(r);
    } else if (!queued) {
        served(r);
    } else {
        set_state(r, RUN_WAITING);
        r->wait_from = qg_now();
        qg_loop_timer_at(r->timer, r->wait_from + r->m->cfg->pool_timeout_s);
    }
}

static void timer_over(qg_run *r);

static void on_timer(void *arg)
{
    as_run(arg, timer_over);
}

static void timer_over(qg_run *r)
{
    switch (r->state) {
    case RUN_WAITING:
        if (qgp_pool_leave(r->m, &r->w, true, &r->e)) {
            stop_waiting(r);
            r->s = QG_ERR_POOL_TIMEOUT;
            attempt_over(r);
        }
        return; /* else served meanwhile: served_later is on its way */
    case RUN_BACKOFF:
    case RUN_LSN_WAIT:
        attempt(r);
        return;
    case RUN_EXEC:
        request_cancel(r);
        return;
    default:
        return;
    }
}

static bool run_begin(qg_loop *l, qg_manager *m, const struct qg_run_spec *spec, qg_run_done done,
                      const struct qg_run_stream *cb, void *arg, qg_run **out)
{
    if (out)
        *out = NULL;
    qg_run *r = calloc(1, sizeof *r);
    if (!r)
        return false;
    if (cb) {
        r->is_stream = r->credit = true;
        r->cb = *cb;
        if (!(r->wake = qg_loop_timer_new(l, on_wake, r))) {
            free(r);
            return false;
        }
    }
    r->n = spec->n;
    r->sql = calloc(r->n ? r->n : 1, sizeof *r->sql);
    r->params = spec->params ? calloc(r->n ? r->n : 1, sizeof *r->params) : NULL;
    r->results = calloc(r->n ? r->n : 1, sizeof *r->results);
    r->timer = qg_loop_timer_new(l, on_timer, r);
    if (!r->sql || (spec->params && !r->params) || !r->results || !r->timer) {
        run_free(r);
        return false;
    }
    memcpy(r->sql, spec->sql, r->n * sizeof *r->sql);
    if (spec->params)
        memcpy(r->params, spec->params, r->n * sizeof *r->params);
    r->loop = l;
    r->home = r->m = m;
    r->replica = r->skip = -1;
    r->min_lsn = spec->min_lsn;
    r->lsn_until = qg_now() + m->cfg->read_wait_ms / 1000.0;
    r->tx = spec->tx;
    qgp_tries_init(&r->tries, m, spec->tx.read_only);
    r->numbers_as_strings = spec->numbers_as_strings;
    r->prepare = spec->prepare;
    r->done = done;
    r->arg = arg;
    qg_error_clear(&r->e);
    set_state(r, RUN_STARTING);
    if (out)
        *out = r;
    r->log_tag = spec->log_tag;
    const char *old = qgp_log_tag_set(r->log_tag);
    r->in_start = true;
    attempt(r);
    r->in_start = false;
    qgp_log_tag_set(old);
    return true;
}

bool qg_run_start(qg_loop *l, qg_manager *m, const struct qg_run_spec *spec, qg_run_done done,
                  void *arg, qg_run **out)
{
    return run_begin(l, m, spec, done, NULL, arg, out);
}

bool qg_run_stream_start(qg_loop *l, qg_manager *m, const struct qg_run_spec *spec,
                         const struct qg_run_stream *cb, void *arg, qg_run **out)
{
    if (out)
        *out = NULL;
    if (spec->n != 1 || !cb || !cb->columns || !cb->rows || !cb->end)
        return false;
    return run_begin(l, m, spec, NULL, cb, arg, out);
}

void qg_run_stream_more(qg_run *r)
{
    if (!r || r->state == RUN_DONE)
        return;
    r->credit = true;
    if (r->paused)
        qg_loop_timer_at(r->wake, qg_now());
}

void qg_run_cancel(qg_run *r)
{
    if (!r || r->cancel || r->state == RUN_DONE)
        return;
    r->cancel = true;
    switch (r->state) {
    case RUN_WAITING:
        if (qgp_pool_leave(r->m, &r->w, false, NULL)) {
            stop_waiting(r);
            qg_loop_timer_stop(r->timer);
            r->s = cancelled(&r->e);
            finish(r, true);
        }
        return; /* else served meanwhile: start_body gives the connection back */
    case RUN_LSN_WAIT:
        r->s = cancelled(&r->e);
        /* fall through */
    case RUN_BACKOFF:
        qg_loop_timer_stop(r->timer);
        lsn_wait_end(r);
        finish(r, true);
        return;
    case RUN_EXEC:
        request_cancel(r);
        if (r->paused)
            qg_loop_timer_at(r->wake, qg_now());
        return;
    default:
        return; /* it stops at the next step, or its COMMIT is already out */
    }
}

enum qg_served qg_run_served_by(const qg_run *r, int *replica)
{
    if (replica)
        *replica = r && r->served == QG_SERVED_REPLICA ? r->replica : -1;
    return r ? r->served : QG_SERVED_NONE;
}

qg_lsn qg_run_commit_lsn(const qg_run *r)
{
    return r ? r->commit_lsn : 0;
}

double qg_run_pool_wait(const qg_run *r)
{
    return r ? r->waited_s : 0;
}
