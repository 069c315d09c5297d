/*
 * Statements on a connection: bound, cached and prepared, then sent in as few
 * round trips as can be (with BEGIN ahead and ROLLBACK or COMMIT and the reset
 * behind), their rows read into JSON as they arrive. One state machine
 * (struct qgp_exec) that qg_exec_many drives by waiting on the socket and
 * run.c drives from the event loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "reader.h"
#include "result_private.h"

/* The parameter types that take a JSON array as its JSON text, not as a PostgreSQL array. */
static bool wants_json_text(Oid type)
{
    return type == 0 || type == 114 /* json */ || type == 3802 /* jsonb */ ||
           type == 25 /* text */ || type == 1043 /* varchar */ || type == 705 /* unknown */;
}

/* One statement of a chunk. */
struct item {
    struct qgp_stmt *st;
    struct qgp_value *v;         /* bound values, borrowing from the caller's params */
    const char **vals;           /* the text sent for each $n */
    struct qgp_value small_v[8];
    const char *small_vals[8];
    bool arrays;                 /* a JSON array parameter: the server types it first */
    const char *name;            /* the prepared statement to run; NULL: run the text */
    bool prepare;                /* PREPARE name first */
    bool prepared;               /* the server accepted that PREPARE */
    bool started;                /* its results began arriving */
    char dealloc[48];            /* DEALLOCATE of what its cache lookup evicted, or "" */
    struct qgp_reader rd;
};

/* At most this many statements a round trip: fewer than the statement cache holds,
   so that no lookup of a chunk evicts another item of it. */
#define QGP_CHUNK_MAX 64

struct qgp_exec {
    qg_conn *c;
    size_t n;
    const char *const *sql;
    const qg_params *const *params;
    bool numbers_as_strings;
    bool last;                   /* opt->last: the transaction may end with the last trip */
    bool prepare;                /* opt->prepare: prepare on the first use */
    qg_result **out;
    qg_error *err;
    qg_status s;
    long failed_at;              /* the statement that failed, or -1 */
    void (*cancel)(void *arg);   /* asks the server to stop a statement (result too large) */
    void *cancel_arg;
    size_t done;                 /* statements of the chunks before this one */
    size_t base;                 /* their rows JSON, for the cap on the sum */
    struct item *items;          /* the chunk */
    struct item one;
    size_t k, ready;             /* its statements, and how many were bound */
    bool arrays;                 /* some item needs the server's types: one item a trip */
    size_t ai;                   /* then: the item whose trips run */
    bool describing;             /* its Describe trip is the one in flight */
    PGresult *described;
    size_t earlier;              /* rows JSON of the trip's earlier statements */
    struct qgp_trip trip;
    bool finished;
    /* A stream (qgp_exec_stream): its one statement's rows leave in batches. */
    bool stream;
    size_t batch;                /* a batch is ready at this many bytes of rows */
    bool columns_taken;
    long long rows_taken;
};

static void fail(struct qgp_exec *x, struct item *it, qg_status s)
{
    if (x->s == QG_OK && s != QG_OK) {
        x->s = s;
        if (it)
            x->failed_at = (long)(x->done + (size_t)(it - x->items));
    }
}

/* The trip's own failure (a lost connection, our command), kept with the item it named. */
static void fail_trip(struct qgp_exec *x)
{
    fail(x, x->trip.failed, x->trip.s);
}

/* Results of an item's parts; see qgp_trip_take_fn. */
static bool take(struct qgp_trip *t, struct qgp_part *p, PGresult *res)
{
    struct qgp_exec *x = t->arg;
    struct item *it = p->item;
    qg_status r = QG_OK;
    if (p->kind == QGP_PART_STATEMENT) {
        if (!it->started) {
            it->started = true;
            it->rd.before += x->earlier;
        }
        if (res) {
            r = qgp_reader_take(&it->rd, res, t->err);
        } else {
            if (t->s == QG_OK)
                r = qgp_reader_end(&it->rd, t->err);
            x->earlier += it->rd.rows.len;
        }
        if (x->stream && !it->rd.discard)
            t->pause |= it->rd.rows.len >= x->batch || (it->rd.keys && !x->columns_taken) ||
                        (!res && it->rd.rows.len);
    } else if (!res) {
        return false;
    } else if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        if (p->kind == QGP_PART_PREPARE && it->prepare)
            it->prepared = true;
        if (p->kind == QGP_PART_DESCRIBE && !x->described) {
            x->described = res;
            return true;
        }
    } else if (PQresultStatus(res) != PGRES_PIPELINE_ABORTED) {
        r = qgp_server_error(x->c, it->rd.ps, res, t->err, "preparing the statement");
    }
    if (r != QG_OK && t->s == QG_OK) {
        t->s = r;
        t->failed = it;
    }
    return false;
}

/*
 * What must run before a trip's statements: the DEALLOCATE of statements the
 * cache evicted, DEALLOCATE ALL when the server holds prepared statements the
 * cache forgot, BEGIN when it waits (and behind a pooler the session settings,
 * per transaction; and the caller's claims, transaction-local). Statements sent
 * outside a transaction scope of ours leave the session for qg_checkin to clean.
 */
/*
 * NOTE: a failover manager fences a promoted standby (pg_auto_failover) or a
 * demoted primary with default_transaction_read_only until it is sure only one
 * server takes writes, and our BEGIN READ WRITE would override it. A session
 * that connected just before the fence reads the new default only after its
 * first message (BEGIN's), so this runs after BEGIN and makes the transaction
 * read-only there: the write then fails with 25006, and the connection is taken
 * for a standby's (qgp_conn_standby).
 */
#define FENCE_SQL                                                                          \
    "SELECT pg_catalog.set_config('transaction_read_only', 'on', true) "                   \
    "WHERE pg_catalog.current_setting('default_transaction_read_only')::bool"

static void queue_prologue(struct qgp_exec *x)
{
    qg_conn *c = x->c;
    for (size_t i = 0; i < x->ready; i++)
        if (x->items[i].dealloc[0]) {
            qgp_trip_text(&x->trip, QGP_PART_COMMAND, x->items[i].dealloc);
            x->items[i].dealloc[0] = '\0';
        }
    if (c->drop_prepared) {
        c->drop_prepared = false;
        qgp_trip_text(&x->trip, QGP_PART_COMMAND, "DEALLOCATE ALL");
    }
    if (c->state == QGP_CONN_BEGIN) {
        qgp_conn_set_state(c, QGP_CONN_IN_TX);
        qgp_trip_text(&x->trip, QGP_PART_COMMAND, c->begin_sql);
        if (!c->tx_read_only && c->m->read_write_target)
            qgp_trip_text(&x->trip, QGP_PART_COMMAND, FENCE_SQL);
        if (c->pooler)
            qgp_trip_text(&x->trip, QGP_PART_COMMAND, c->m->session_sql);
        if (c->claims)
            qgp_trip_param(&x->trip, "SELECT pg_catalog.set_config('request.jwt.claims', $1, true)",
                           c->claims);
    } else if (c->state == QGP_CONN_IDLE) {
        qgp_conn_set_state(c, QGP_CONN_DIRTY);
    }
}

/* Which server-side statement an item runs, and whether it must be prepared first. */
static void choose_name(qg_conn *c, struct item *it, bool repeats)
{
    struct qgp_stmt *st = it->st;
    if (it->arrays) {
        it->name = ""; /* prepared and described by choose_array_forms */
    } else if (c->m->cfg->prepared_statements && !c->pooler) {
        /* NOTE: prepare on the second use: one-off SQL costs the server no extra work;
           SQL known to repeat (repeats: a named query) is prepared at once. */
        if (st->prepared || st->prepare_queued) {
            it->name = st->name;
        } else if (st->uses >= 2 || repeats) {
            it->name = st->name;
            it->prepare = st->prepare_queued = true;
        }
    }
}

/*
 * The last statement may end the transaction in the same round trip: a
 * read-only one with ROLLBACK; a read-write one with COMMIT only when every
 * statement of the trip returned no rows here before. Rows are capped as they
 * arrive, after the server ran the statement, and a COMMIT already sent would
 * stand even when the cap then failed the request.
 */
static enum qgp_end choose_end(const qg_conn *c, const struct item *items, size_t n, bool last)
{
    if (!last || (c->state != QGP_CONN_BEGIN && c->state != QGP_CONN_IN_TX))
        return QGP_END_NONE;
    if (c->tx_read_only)
        return QGP_END_ROLLBACK;
    for (size_t i = 0; i < n; i++)
        if (!items[i].st->rowless)
            return QGP_END_NONE;
    return QGP_END_COMMIT;
}

/*
 * A JSON array can be a json value or a PostgreSQL array; only the server knows
 * which type it inferred, so ask it: Parse and Describe of the unnamed
 * statement, in a trip of their own.
 */
static void describe_trip(struct qgp_exec *x, struct item *it)
{
    PGconn *pg = x->c->pg;
    const qgp_sql *ps = it->st->parsed;
    qgp_trip_begin(&x->trip, x->c, take, x, x->err);
    queue_prologue(x);
    qgp_trip_item(&x->trip, QGP_PART_PREPARE, it,
                  x->trip.sent && PQsendPrepare(pg, "", ps->text, ps->nparams, NULL));
    qgp_trip_item(&x->trip, QGP_PART_DESCRIBE, it,
                  x->trip.sent && PQsendDescribePrepared(pg, ""));
    qgp_trip_sync(&x->trip);
    x->describing = true;
}

static bool send_statement(qg_conn *c, const struct item *it)
{
    const qgp_sql *ps = it->st->parsed;
    return it->name
               ? PQsendQueryPrepared(c->pg, it->name, ps->nparams, it->vals, NULL, NULL, 0)
               : PQsendQueryParams(c->pg, ps->text, ps->nparams, NULL, it->vals, NULL, NULL, 0);
}

/* One round trip: the prologue, items [first, first+count) (each prepared first where
   chosen), and the end when the transaction may end here. */
static void statement_trip(struct qgp_exec *x, size_t first, size_t count, bool last)
{
    qg_conn *c = x->c;
    struct item *items = x->items + first;
    enum qgp_end end = choose_end(c, items, count, last);
    qgp_trip_begin(&x->trip, c, take, x, x->err);
    queue_prologue(x);
    for (size_t i = 0; i < count; i++) {
        struct item *it = &items[i];
        choose_name(c, it, x->prepare);
        if (it->prepare) {
            const qgp_sql *ps = it->st->parsed;
            qgp_trip_item(&x->trip, QGP_PART_PREPARE, it,
                          x->trip.sent && PQsendPrepare(c->pg, it->name, ps->text, ps->nparams, NULL));
        }
        qgp_trip_item(&x->trip, QGP_PART_STATEMENT, it, x->trip.sent && send_statement(c, it));
    }
    if (end != QGP_END_NONE)
        qgp_end_queue(&x->trip, end);
    qgp_trip_sync(&x->trip);
    x->earlier = 0;
    x->describing = false;
}

/* Looks up the item's SQL in the statement cache and binds its parameters. */
static qg_status bind_item(struct qgp_exec *x, struct item *it, size_t i)
{
    qg_conn *c = x->c;
    const char *sql = x->sql[x->done + i];
    char evicted[sizeof it->st->name];
    qg_status s = qgp_stmt_lookup(&c->stmts, sql, strlen(sql), &it->st, evicted, x->err);
    if (s != QG_OK)
        return s;
    if (evicted[0])
        snprintf(it->dealloc, sizeof it->dealloc, "DEALLOCATE %s", evicted);
    const qgp_sql *ps = it->st->parsed;
    if (ps->kind == QGP_SQL_TRANSACTION_CONTROL && qgp_conn_in_scope(c))
        return qgp_refuse_transaction_control(x->err);
    if (ps->kind == QGP_SQL_COPY)
        return qgp_refuse_copy(x->err);
    it->v = it->small_v;
    it->vals = it->small_vals;
    if (ps->nparams > 8) {
        it->v = calloc((size_t)ps->nparams, sizeof *it->v);
        it->vals = calloc((size_t)ps->nparams, sizeof *it->vals);
        if (!it->v || !it->vals)
            return qg_error_set(x->err, QG_ERR_INTERNAL, "out of memory binding parameters");
    }
    const qg_params *params = x->params ? x->params[x->done + i] : NULL;
    if ((s = qgp_bind(ps, params, it->v, x->err)) != QG_OK)
        return s;
    for (int j = 0; j < ps->nparams; j++) {
        it->vals[j] = it->v[j].text;
        it->arrays |= it->v[j].is_array;
    }
    if (c->m->cfg->echo)
        qgp_log(c->m, QG_LOG_INFO, "sql: %.900s", ps->text);
    if (!qgp_reader_init(&it->rd, c, ps, x->base, x->numbers_as_strings))
        return qg_error_set(x->err, QG_ERR_INTERNAL, "out of memory");
    it->rd.cancel = x->cancel;
    it->rd.cancel_arg = x->cancel_arg;
    return QG_OK;
}

static void item_free(struct item *it)
{
    if (it->v != it->small_v)
        free(it->v);
    if (it->vals != it->small_vals)
        free(it->vals);
    qgp_reader_free(&it->rd);
}

/* Rows JSON so far, for the cap on the sum. */
static size_t rows_bytes(qg_result *const *out, size_t n)
{
    size_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += out[i] ? out[i]->rows_len : 0;
    return sum;
}

/* A plan that failed because the server dropped or outdated our prepared statement. */
static void note_stale_plan(qg_conn *c, struct qgp_stmt *st, const qg_error *err)
{
    if (!err || !st->prepared || !qgp_stale_plan(err))
        return;
    /* The transaction may run again: with every statement prepared anew. */
    if (qgp_stmt_cache_forget_prepared(&c->stmts))
        c->drop_prepared = true;
}

static void start_chunk(struct qgp_exec *x);

/* The chunk ended: its results become out[], and the next chunk starts. */
static void end_chunk(struct qgp_exec *x)
{
    for (size_t i = 0; i < x->k && x->s == QG_OK; i++) {
        struct item *it = &x->items[i];
        it->st->rowless = !it->rd.keys;
        fail(x, NULL, qgp_reader_finish(&it->rd, x->err));
        x->out[x->done + i] = it->rd.out;
        it->rd.out = NULL;
    }
    for (size_t i = 0; i < x->ready; i++)
        item_free(&x->items[i]);
    if (x->items != &x->one)
        free(x->items);
    x->items = NULL;
    x->ready = 0;
    x->done += x->k;
    start_chunk(x);
}

/* The next trip of a chunk run one item at a time, or its end. */
static void next_item(struct qgp_exec *x)
{
    if (x->s != QG_OK || x->ai == x->k) {
        end_chunk(x);
        return;
    }
    struct item *it = &x->items[x->ai];
    it->rd.before = x->base;
    for (size_t i = 0; i < x->ai; i++)
        it->rd.before += x->items[i].rd.rows.len;
    if (it->arrays)
        describe_trip(x, it);
    else
        statement_trip(x, x->ai, 1, x->last && x->done + x->ai + 1 == x->n);
}

static void start_chunk(struct qgp_exec *x)
{
    if (x->s != QG_OK || x->done == x->n) {
        x->finished = true;
        return;
    }
    x->k = x->n - x->done < QGP_CHUNK_MAX ? x->n - x->done : QGP_CHUNK_MAX;
    x->items = x->k == 1 ? &x->one : calloc(x->k, sizeof *x->items);
    if (!x->items) {
        x->k = 0;
        fail(x, NULL, qg_error_set(x->err, QG_ERR_INTERNAL, "out of memory planning the statements"));
        x->finished = true;
        return;
    }
    memset(x->items, 0, x->k * sizeof *x->items);
    x->base = rows_bytes(x->out, x->done);
    x->arrays = false;
    for (; x->ready < x->k && x->s == QG_OK; x->ready++) {
        struct item *it = &x->items[x->ready];
        fail(x, it, bind_item(x, it, x->ready));
        x->arrays |= it->arrays;
    }
    if (x->s != QG_OK) {
        end_chunk(x);
    } else if (!x->arrays) {
        statement_trip(x, 0, x->k, x->last && x->done + x->k == x->n);
    } else {
        x->ai = 0;
        next_item(x);
    }
}

/* The trip in flight ended. */
static void trip_done(struct qgp_exec *x)
{
    struct qgp_trip *t = &x->trip;
    fail_trip(x);
    if (x->describing) {
        struct item *it = &x->items[x->ai];
        if (x->s == QG_OK && !x->described)
            fail(x, it, qgp_conn_lost(x->c, x->err, "describing the statement"));
        for (int i = 0; x->s == QG_OK && i < it->st->parsed->nparams; i++)
            if (it->v[i].is_array && it->v[i].pg_array &&
                !wants_json_text(PQparamtype(x->described, i)))
                it->vals[i] = it->v[i].pg_array;
        PQclear(x->described);
        x->described = NULL;
        qgp_trip_free(t);
        if (x->s == QG_OK)
            statement_trip(x, x->ai, 1, x->last && x->done + x->ai + 1 == x->n);
        else
            end_chunk(x);
        return;
    }
    size_t first = x->arrays ? x->ai : 0, count = x->arrays ? 1 : x->k;
    for (size_t i = first; i < first + count; i++) {
        x->items[i].st->prepared |= x->items[i].prepared;
        x->items[i].st->prepare_queued = false;
    }
    if (t->s != QG_OK && t->failed)
        note_stale_plan(x->c, ((struct item *)t->failed)->st, x->err);
    qgp_trip_free(t);
    if (x->arrays) {
        x->ai++;
        next_item(x);
    } else {
        end_chunk(x);
    }
}

qg_status qgp_exec_start(qg_conn *c, size_t n, const char *const *sql,
                         const qg_params *const *params, const struct qg_exec_options *opt,
                         qg_result **out, void (*cancel)(void *arg), void *cancel_arg,
                         qg_error *err, struct qgp_exec **xout)
{
    *xout = NULL;
    for (size_t i = 0; out && i < n; i++)
        out[i] = NULL;
    if (!c || !sql || !out)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "qg_exec needs a connection and an SQL text");
    for (size_t i = 0; i < n; i++)
        if (!sql[i])
            return qg_error_set(err, QG_ERR_INVALID_REQUEST, "statement %zu has no SQL text", i);
    if (qgp_conn_broken(c))
        return qgp_conn_lost(c, err, "starting the statement");
    /* Nothing was sent yet: BEGIN travels with the first statement. */
    if (c->state == QGP_CONN_BEGIN && qgp_conn_standby(c, NULL, false))
        return qgp_standby_error(c, err);
    if (c->state == QGP_CONN_ENDED)
        return qg_error_set(err, QG_ERR_INTERNAL,
                            "a statement after the one marked last in its transaction");
    struct qgp_exec *x = calloc(1, sizeof *x);
    if (!x)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory starting the statements");
    x->c = c;
    x->n = n;
    x->sql = sql;
    x->params = params;
    x->numbers_as_strings = opt ? opt->numbers_as_strings : c->m->cfg->numbers_as_strings;
    x->last = opt && opt->last;
    x->prepare = opt && opt->prepare;
    x->out = out;
    x->err = err;
    x->failed_at = -1;
    x->cancel = cancel;
    x->cancel_arg = cancel_arg;
    start_chunk(x);
    *xout = x;
    return QG_OK;
}

void qgp_exec_stream(struct qgp_exec *x, size_t batch_bytes)
{
    x->stream = true;
    x->batch = batch_bytes ? batch_bytes : 1;
    if (x->items)
        x->items[0].rd.stream = true;
}

/* The stream's statement while its trip runs, else NULL. */
static struct qgp_reader *stream_reader(struct qgp_exec *x)
{
    return x->stream && x->items && x->ready ? &x->items[0].rd : NULL;
}

const char *qgp_exec_stream_columns(struct qgp_exec *x, size_t *len)
{
    struct qgp_reader *rd = stream_reader(x);
    if (!rd || !rd->keys)
        return NULL;
    if (rd->columns.oom) { /* no rows may go out without their columns */
        fail(x, x->items, qg_error_set(x->err, QG_ERR_INTERNAL, "out of memory streaming rows"));
        qgp_exec_stream_discard(x);
        return NULL;
    }
    x->columns_taken = true;
    *len = rd->columns.len;
    return rd->columns.data;
}

char *qgp_exec_stream_rows(struct qgp_exec *x, size_t *len, long long *nrows)
{
    struct qgp_reader *rd = stream_reader(x);
    *len = 0;
    *nrows = 0;
    if (!rd || !rd->rows.len)
        return NULL;
    if (rd->rows.oom) {
        fail(x, x->items, qg_error_set(x->err, QG_ERR_INTERNAL, "out of memory streaming rows"));
        qgp_exec_stream_discard(x);
        return NULL;
    }
    *nrows = rd->nrows - x->rows_taken;
    x->rows_taken = rd->nrows;
    return qg_buf_steal(&rd->rows, len);
}

void qgp_exec_stream_discard(struct qgp_exec *x)
{
    struct qgp_reader *rd = stream_reader(x);
    if (rd) {
        rd->discard = true;
        qg_buf_free(&rd->rows);
    }
    x->trip.pause = false;
}

void qgp_exec_stream_resume(struct qgp_exec *x)
{
    x->trip.pause = false;
}

enum qgp_wait qgp_exec_step(struct qgp_exec *x, bool readable)
{
    while (!x->finished) {
        enum qgp_wait w = qgp_trip_step(&x->trip, readable);
        if (w != QGP_WAIT_NONE)
            return w;
        trip_done(x);
        readable = false;
    }
    return QGP_WAIT_NONE;
}

qg_status qgp_exec_end(struct qgp_exec *x, long *failed_at)
{
    qg_status s = x->s;
    if (failed_at)
        *failed_at = x->failed_at;
    if (s != QG_OK)
        for (size_t i = 0; i < x->n; i++) {
            qg_result_free(x->out[i]);
            x->out[i] = NULL;
        }
    free(x);
    return s;
}

/* Asks the server itself to stop: the blocking API has no loop to hand it to. */
static void cancel_now(void *arg)
{
    qg_conn_cancel(arg);
}

static qg_status exec_wait(qg_conn *c, size_t n, const char *const *sql,
                           const qg_params *const *params, const struct qg_exec_options *opt,
                           qg_result **out, long *failed_at, qg_error *err)
{
    struct qgp_exec *x;
    qg_status s = qgp_exec_start(c, n, sql, params, opt, out, cancel_now, c, err, &x);
    if (!x)
        return s;
    bool readable = false;
    enum qgp_wait w;
    while ((w = qgp_exec_step(x, readable)) != QGP_WAIT_NONE)
        readable = qgp_wait_socket(c->pg, w, 0) != 0; /* -1: PQconsumeInput will tell */
    return qgp_exec_end(x, failed_at);
}

qg_status qg_exec_many(qg_conn *c, size_t n, const char *const *sql,
                       const qg_params *const *params, const struct qg_exec_options *opt,
                       qg_result **out, qg_error *err)
{
    long failed = -1;
    qg_status s = exec_wait(c, n, sql, params, opt, out, &failed, err);
    if (s != QG_OK && err && failed >= 0 && err->statement_index < 0)
        err->statement_index = (int)failed;
    return s;
}

qg_status qg_exec(qg_conn *c, const char *sql, const qg_params *params,
                  const struct qg_exec_options *opt, qg_result **out, qg_error *err)
{
    return exec_wait(c, 1, &sql, &params, opt, out, NULL, err);
}
