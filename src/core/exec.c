/* Statements on a connection: bind, send in one pipeline (with BEGIN and ROLLBACK or COMMIT), stream rows into JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager_private.h"
#include "result_private.h"

/* The parameter types that take a JSON array as its JSON text, not as a PostgreSQL array. */
static bool wants_json_text(Oid type)
{
    return type == 0 || type == 114 /* json */ || type == 3802 /* jsonb */ ||
           type == 25 /* text */ || type == 1043 /* varchar */ || type == 705 /* unknown */;
}

static qg_status server_error(qg_conn *c, const qgp_sql *ps, const PGresult *res, qg_error *err,
                              const char *doing)
{
    if (PQstatus(c->pg) != CONNECTION_OK || !res || !PQresultErrorField(res, PG_DIAG_SQLSTATE))
        return qgp_conn_lost(c, err, doing);
    if (qgp_result_fatal(res))
        qgp_conn_set_state(c, QGP_CONN_BROKEN);
    qg_status s = qgp_error_from_result(err, res);
    if (err && err->position && ps)
        err->position = qgp_sql_map_position(ps, err->position);
    return s;
}

/* Inside a transaction scope of qg_transaction(); outside it a library caller that
   checked a connection out runs its own transactions. */
static bool in_scope(const qg_conn *c)
{
    return c->state == QGP_CONN_BEGIN || c->state == QGP_CONN_IN_TX;
}

static qg_status refuse_transaction_control(qg_error *err)
{
    return qg_error_set(err, QG_ERR_TRANSACTION_CONTROL,
                        "the statement controls the transaction (BEGIN, COMMIT, ROLLBACK, "
                        "SAVEPOINT, SET TRANSACTION...); the service runs each request in its "
                        "own transaction: send the statements alone (several at once through "
                        "/transaction, with its isolation and read_only options)");
}

static qg_status refuse_copy(qg_error *err)
{
    return qg_error_set(err, QG_ERR_UNSUPPORTED_STATEMENT,
                        "COPY is not supported over this API; read with SELECT and write "
                        "with INSERT (a batch: params as an array)");
}

/*
 * What must run before a pipeline's statements: DEALLOCATE ALL when the server
 * holds prepared statements the cache forgot, BEGIN when it waits. Returns how
 * many commands were queued, or -1 when sending failed. Statements sent outside
 * a transaction scope of ours leave the session for qg_checkin to clean.
 */
static int send_prologue(qg_conn *c)
{
    int n = 0;
    if (c->drop_prepared) {
        c->drop_prepared = false;
        if (!qgp_send_command(c->pg, "DEALLOCATE ALL"))
            return -1;
        n++;
    }
    if (c->state == QGP_CONN_BEGIN) {
        qgp_conn_set_state(c, QGP_CONN_IN_TX);
        if (!qgp_send_command(c->pg, c->begin_sql))
            return -1;
        n++;
    } else if (c->state == QGP_CONN_IDLE) {
        qgp_conn_set_state(c, QGP_CONN_DIRTY);
    }
    return n;
}

/*
 * A JSON array can be a json value or a PostgreSQL array; only the server knows
 * which type it inferred, so ask it: the prologue, Parse and Describe of the
 * unnamed statement, in one round trip.
 */
static qg_status choose_array_forms(qg_conn *c, const qgp_sql *ps, const char **vals,
                                    const struct qgp_value *v, qg_error *err)
{
    PGconn *pg = c->pg;
    int prologue = PQenterPipelineMode(pg) ? send_prologue(c) : -1;
    if (prologue < 0 || !PQsendPrepare(pg, "", ps->text, ps->nparams, NULL) ||
        !PQsendDescribePrepared(pg, "") || !PQpipelineSync(pg))
        return qgp_conn_lost(c, err, "preparing the statement");
    qg_status s = QG_OK;
    PGresult *described = NULL;
    for (int part = 0; part < prologue + 2 && PQstatus(pg) == CONNECTION_OK; part++) {
        PGresult *res;
        while ((res = PQgetResult(pg)) != NULL) {
            ExecStatusType st = PQresultStatus(res);
            if (st == PGRES_COMMAND_OK && part == prologue + 1 && !described) {
                described = res;
                continue;
            }
            if (st != PGRES_COMMAND_OK && st != PGRES_PIPELINE_ABORTED && s == QG_OK)
                s = server_error(c, ps, res, err, "preparing the statement");
            PQclear(res);
        }
    }
    if (!qgp_pipeline_end(pg) && s == QG_OK)
        s = qgp_conn_lost(c, err, "describing the statement");
    if (s == QG_OK && !described)
        s = qgp_conn_lost(c, err, "describing the statement");
    for (int i = 0; s == QG_OK && i < ps->nparams; i++)
        if (v[i].is_array && v[i].pg_array && !wants_json_text(PQparamtype(described, i)))
            vals[i] = v[i].pg_array;
    PQclear(described);
    return s;
}

/* What the reader has seen so far of one statement's results. */
struct reader {
    qg_conn *c;
    const qgp_sql *ps;
    struct qgp_json_opts jopts;
    size_t before;       /* rows JSON of the earlier statements: the cap is on the sum */
    qg_buf rows;
    qg_buf columns;
    qg_buf first;
    char **keys;
    int nkeys;
    long long nrows;
    bool too_large;
    qg_result *out;
};

static void start_rows(struct reader *rd, const PGresult *res)
{
    rd->nkeys = PQnfields(res);
    rd->keys = qgp_json_keys(res);
    qgp_json_columns(&rd->columns, res);
    qg_buf_putc(&rd->rows, '[');
}

static void take_row(struct reader *rd, const PGresult *res)
{
    const struct qg_config *cfg = rd->c->m->cfg;
    if (rd->too_large)
        return;
    if (!rd->keys)
        start_rows(rd, res);
    if (rd->nrows)
        qg_buf_putc(&rd->rows, ',');
    qgp_json_row(&rd->rows, res, 0, rd->keys, &rd->jopts);
    if (rd->nrows == 0 && PQnfields(res) > 0) {
        if (PQgetisnull(res, 0, 0))
            qg_buf_puts(&rd->first, "null");
        else
            qgp_json_value(&rd->first, PQftype(res, 0), PQgetvalue(res, 0, 0),
                           (size_t)PQgetlength(res, 0, 0), &rd->jopts);
    }
    rd->nrows++;
    if (rd->nrows > cfg->max_result_rows ||
        rd->before + rd->rows.len > (size_t)cfg->max_result_bytes) {
        /* NOTE: stop the server producing rows nobody will read; the error it then
           reports (57014) is ours and is swallowed below. */
        rd->too_large = true;
        qg_conn_cancel(rd->c);
    }
}

/*
 * NOTE: the backstop behind the keyword check (qgp_sql.kind): the server's own
 * command tag says what ran, whatever spelling got it there.
 */
static bool ends_transactions(const char *tag)
{
    static const char *const tags[] = {"BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK",
                                       "SAVEPOINT", "RELEASE", "PREPARE TRANSACTION",
                                       "COMMIT PREPARED", "ROLLBACK PREPARED"};
    for (size_t i = 0; i < sizeof tags / sizeof *tags; i++)
        if (!strcmp(tag, tags[i]))
            return true;
    return false;
}

static qg_status take_command(struct reader *rd, const PGresult *res, qg_error *err)
{
    const char *tag = PQcmdStatus((PGresult *)res);
    if (ends_transactions(tag) && in_scope(rd->c)) {
        qgp_conn_set_state(rd->c, QGP_CONN_BROKEN);
        return refuse_transaction_control(err);
    }
    size_t n = strcspn(tag, " ");
    if (n >= sizeof rd->out->command)
        n = sizeof rd->out->command - 1;
    memcpy(rd->out->command, tag, n);
    rd->out->command[n] = '\0';
    const char *tuples = PQcmdTuples((PGresult *)res);
    rd->out->affected = *tuples ? atoll(tuples) : rd->nrows;
    if (!rd->keys && PQresultStatus(res) == PGRES_TUPLES_OK)
        start_rows(rd, res);
    return QG_OK;
}

/* True for an answer that PQgetResult would repeat forever (a COPY). */
static bool endless(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH;
}

/* One result of the caller's statement. */
static qg_status take_result(struct reader *rd, const PGresult *res, qg_error *err)
{
    if (endless(res)) {
        qgp_conn_set_state(rd->c, QGP_CONN_BROKEN); /* the copy never ends: drop it */
        return refuse_copy(err);
    }
    switch (PQresultStatus(res)) {
    case PGRES_SINGLE_TUPLE:
        take_row(rd, res);
        return QG_OK;
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
        return take_command(rd, res, err);
    case PGRES_EMPTY_QUERY:
    case PGRES_PIPELINE_ABORTED:
        return QG_OK;
    case PGRES_BAD_RESPONSE:
    case PGRES_FATAL_ERROR:
    default: {
        const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (rd->too_large && st && !strcmp(st, "57014"))
            return QG_OK;
        return server_error(rd->c, rd->ps, res, err, "running the statement");
    }
    }
}

static qg_status too_large(const struct reader *rd, qg_error *err)
{
    const struct qg_config *cfg = rd->c->m->cfg;
    return qg_error_set(err, QG_ERR_RESULT_TOO_LARGE,
                        "the result is larger than the service returns at once (MAX_RESULT_ROWS "
                        "%ld rows, MAX_RESULT_BYTES %ld bytes%s); add a LIMIT or a WHERE clause, "
                        "page with keyset pagination, or raise the caps",
                        cfg->max_result_rows, cfg->max_result_bytes,
                        rd->before ? " over all statements" : "");
}

/* The reader's buffers become its result. */
static qg_status finish(struct reader *rd, qg_error *err)
{
    if (rd->keys)
        qg_buf_putc(&rd->rows, ']');
    if (rd->rows.oom || rd->columns.oom || rd->first.oom)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory building the result");
    qg_result *r = rd->out;
    r->row_count = rd->nrows;
    if (rd->keys)
        r->rows = qg_buf_steal(&rd->rows, &r->rows_len);
    r->columns = qg_buf_steal(&rd->columns, &r->columns_len);
    r->first = qg_buf_steal(&rd->first, &r->first_len);
    return QG_OK;
}

/* One statement of a pipeline. */
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
    struct reader rd;
};

/* A pipeline's parts, in the order they were sent. */
enum part_kind { PART_PROLOGUE, PART_PREPARE, PART_STATEMENT, PART_END };

struct part {
    enum part_kind kind;
    struct item *it; /* for PREPARE and STATEMENT */
};

static bool send_part(qg_conn *c, const struct part *p, enum qgp_end end)
{
    PGconn *pg = c->pg;
    const qgp_sql *ps = p->it ? p->it->st->parsed : NULL;
    switch (p->kind) {
    case PART_PROLOGUE:
        return true; /* sent by send_prologue */
    case PART_PREPARE:
        return PQsendPrepare(pg, p->it->name, ps->text, ps->nparams, NULL);
    case PART_STATEMENT:
        return p->it->name
                   ? PQsendQueryPrepared(pg, p->it->name, ps->nparams, p->it->vals, NULL, NULL, 0)
                   : PQsendQueryParams(pg, ps->text, ps->nparams, NULL, p->it->vals, NULL, NULL, 0);
    case PART_END:
        return qgp_end_send(c, end);
    }
    return false;
}

/*
 * Reads every part's results up to the sync; the first error wins and *failed
 * names its statement. With COMMIT in the pipeline, a connection lost before
 * COMMIT's answer arrived, without the server refusing an earlier part, leaves
 * the outcome unknown: the server may have committed, and a reset connection
 * loses the answers still in flight. Once COMMIT's success is read, the write
 * stands whatever happens to the connection afterwards.
 */
static qg_status read_parts(qg_conn *c, struct part *parts, size_t nparts, enum qgp_end end,
                            struct item **failed, qg_error *err)
{
    PGconn *pg = c->pg;
    qg_status s = QG_OK;
    bool refused = false;   /* the server answered a part before COMMIT with an error */
    bool committed = false; /* COMMIT's success was read */
    size_t earlier = 0;     /* rows JSON of this pipeline's earlier statements */
    for (size_t i = 0; i < nparts; i++) {
        struct part *p = &parts[i];
        if (p->kind == PART_END) {
            /* After a failed part the end did not run; its results only need reading. */
            qg_error ignored;
            qg_error_clear(&ignored);
            qg_status r = qgp_end_read(c, end, &committed, s == QG_OK ? err : &ignored);
            if (s == QG_OK)
                s = r;
            break;
        }
        struct reader *rd = p->it ? &p->it->rd : NULL;
        if (p->kind == PART_STATEMENT) {
            rd->before += earlier;
            PQsetSingleRowMode(pg);
        }
        PGresult *res;
        while ((res = PQgetResult(pg)) != NULL) {
            qg_status r = QG_OK;
            if (PQresultErrorField(res, PG_DIAG_SQLSTATE))
                refused = true;
            if (p->kind == PART_STATEMENT)
                r = take_result(rd, res, err);
            else if (p->kind == PART_PREPARE && PQresultStatus(res) == PGRES_COMMAND_OK)
                p->it->prepared = true;
            else if (PQresultStatus(res) != PGRES_COMMAND_OK &&
                     PQresultStatus(res) != PGRES_PIPELINE_ABORTED)
                r = server_error(c, rd ? rd->ps : NULL, res, err, "running the statement");
            if (s == QG_OK && r != QG_OK) {
                s = r;
                *failed = p->it;
            }
            bool stop = endless(res);
            PQclear(res);
            if (stop)
                goto lost; /* the connection is broken; nothing more can be read */
        }
        if (s == QG_OK && rd && rd->too_large) {
            s = too_large(rd, err);
            *failed = p->it;
        }
        if (p->kind == PART_STATEMENT)
            earlier += rd->rows.len;
        if (PQstatus(pg) != CONNECTION_OK)
            break;
    }
    if (qgp_pipeline_end(pg))
        return s;
lost:
    qgp_conn_set_state(c, QGP_CONN_BROKEN);
    if (committed)
        return s;
    if (s == QG_OK)
        s = qgp_conn_lost(c, err, "reading the result");
    if (end == QGP_END_COMMIT && !refused && err && err->status == QG_ERR_DB_UNAVAILABLE)
        err->outcome_unknown = true;
    return s;
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

/* Which server-side statement an item runs, and whether it must be prepared first. */
static void choose_name(qg_conn *c, struct item *it)
{
    struct qgp_stmt *st = it->st;
    if (it->arrays) {
        it->name = ""; /* prepared and described by choose_array_forms */
    } else if (c->m->cfg->prepared_statements && !c->pooler) {
        /* NOTE: prepare on the second use: one-off SQL costs the server no extra work. */
        if (st->prepared || st->prepare_queued) {
            it->name = st->name;
        } else if (st->uses >= 2) {
            it->name = st->name;
            it->prepare = st->prepare_queued = true;
        }
    }
}

/* One round trip: the prologue, the items (each prepared first where chosen), the end. */
static qg_status run_pipeline(qg_conn *c, struct item *items, size_t n, enum qgp_end end,
                              struct item **failed, qg_error *err)
{
    struct part small[20];
    size_t max = 2 * n + 3, np = 0;
    struct part *parts = max <= 20 ? small : calloc(max, sizeof *parts);
    if (!parts)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory planning the statements");
    bool sent = PQenterPipelineMode(c->pg);
    int prologue = sent ? send_prologue(c) : -1;
    sent = prologue >= 0;
    for (int i = 0; i < prologue; i++)
        parts[np++] = (struct part){PART_PROLOGUE, NULL};
    for (size_t i = 0; i < n; i++) {
        choose_name(c, &items[i]);
        if (items[i].prepare)
            parts[np++] = (struct part){PART_PREPARE, &items[i]};
        parts[np++] = (struct part){PART_STATEMENT, &items[i]};
    }
    if (end != QGP_END_NONE)
        parts[np++] = (struct part){PART_END, NULL};
    for (size_t i = 0; sent && i < np; i++)
        sent = send_part(c, &parts[i], end);
    qg_status s;
    if (!sent || !PQpipelineSync(c->pg)) {
        s = qgp_conn_lost(c, err, "sending the statement");
        if (err && end == QGP_END_COMMIT)
            err->outcome_unknown = true; /* part of it may have gone out */
    } else {
        s = read_parts(c, parts, np, end, failed, err);
    }
    for (size_t i = 0; i < n; i++) {
        items[i].st->prepared |= items[i].prepared;
        items[i].st->prepare_queued = false;
    }
    if (s != QG_OK && *failed)
        note_stale_plan(c, (*failed)->st, err);
    if (parts != small)
        free(parts);
    return s;
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

/* Looks up sql in the statement cache and binds params into it. */
static qg_status bind_item(qg_conn *c, struct item *it, const char *sql, const qg_params *params,
                              const struct qg_exec_options *opt, size_t before, qg_error *err)
{
    char evicted[sizeof it->st->name];
    qg_status s = qgp_stmt_lookup(&c->stmts, sql, strlen(sql), &it->st, evicted, err);
    if (s != QG_OK)
        return s;
    if (evicted[0]) {
        char sql_dealloc[sizeof evicted + 16];
        snprintf(sql_dealloc, sizeof sql_dealloc, "DEALLOCATE %s", evicted);
        if ((s = qgp_conn_command(c, sql_dealloc, err)) != QG_OK)
            return s;
    }
    const qgp_sql *ps = it->st->parsed;
    if (ps->kind == QGP_SQL_TRANSACTION_CONTROL && in_scope(c))
        return refuse_transaction_control(err);
    if (ps->kind == QGP_SQL_COPY)
        return refuse_copy(err);
    it->v = it->small_v;
    it->vals = it->small_vals;
    if (ps->nparams > 8) {
        it->v = calloc((size_t)ps->nparams, sizeof *it->v);
        it->vals = calloc((size_t)ps->nparams, sizeof *it->vals);
        if (!it->v || !it->vals)
            return qg_error_set(err, QG_ERR_INTERNAL, "out of memory binding parameters");
    }
    if ((s = qgp_bind(ps, params, it->v, err)) != QG_OK)
        return s;
    for (int i = 0; i < ps->nparams; i++) {
        it->vals[i] = it->v[i].text;
        it->arrays |= it->v[i].is_array;
    }
    if (c->m->cfg->echo)
        qgp_log(c->m, QG_LOG_INFO, "sql: %.900s", ps->text);
    struct reader *rd = &it->rd;
    rd->c = c;
    rd->ps = ps;
    rd->before = before;
    rd->jopts.numbers_as_strings = opt ? opt->numbers_as_strings : c->m->cfg->numbers_as_strings;
    qg_buf_init(&rd->rows);
    qg_buf_init(&rd->columns);
    qg_buf_init(&rd->first);
    if (!(rd->out = calloc(1, sizeof *rd->out)))
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory");
    return QG_OK;
}

static void item_free(struct item *it)
{
    if (it->v != it->small_v)
        free(it->v);
    if (it->vals != it->small_vals)
        free(it->vals);
    qgp_json_keys_free(it->rd.keys, it->rd.nkeys);
    qg_buf_free(&it->rd.rows);
    qg_buf_free(&it->rd.columns);
    qg_buf_free(&it->rd.first);
    qg_result_free(it->rd.out);
}

/* Rows JSON so far, for the cap on the sum. */
static size_t rows_bytes(qg_result *const *out, size_t n)
{
    size_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += out[i] ? out[i]->rows_len : 0;
    return sum;
}

/*
 * Statements [0, n) in one round trip when it can: a JSON array parameter needs
 * the server's types first (choose_array_forms), so then one statement a trip.
 * NOTE: n stays below the statement cache's size, so no lookup evicts another item.
 */
static qg_status run_chunk(qg_conn *c, size_t n, const char *const *sql,
                           const qg_params *const *params, const struct qg_exec_options *opt,
                           bool last, qg_result **out, size_t done_bytes, long *failed_at,
                           qg_error *err)
{
    struct item one;
    struct item *items = n == 1 ? &one : calloc(n, sizeof *items);
    if (!items)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory planning the statements");
    memset(items, 0, n * sizeof *items);
    qg_status s = QG_OK;
    size_t ready = 0;
    bool arrays = false;
    for (; ready < n && s == QG_OK; ready++) {
        s = bind_item(c, &items[ready], sql[ready], params ? params[ready] : NULL, opt,
                         done_bytes, err);
        arrays |= items[ready].arrays;
        if (s != QG_OK)
            *failed_at = (long)ready;
    }
    struct item *failed = NULL;
    if (s == QG_OK && !arrays) {
        s = run_pipeline(c, items, n, choose_end(c, items, n, last), &failed, err);
    } else if (s == QG_OK) {
        size_t before = done_bytes;
        for (size_t i = 0; i < n && s == QG_OK; i++) {
            struct item *it = &items[i];
            it->rd.before = before;
            if (it->arrays)
                s = choose_array_forms(c, it->st->parsed, it->vals, it->v, err);
            if (s == QG_OK)
                s = run_pipeline(c, it, 1, choose_end(c, it, 1, last && i + 1 == n), &failed, err);
            if (s != QG_OK && !failed)
                failed = it;
            before += it->rd.rows.len;
        }
    }
    if (failed)
        *failed_at = failed - items;
    for (size_t i = 0; i < n && s == QG_OK; i++) {
        items[i].st->rowless = !items[i].rd.keys;
        s = finish(&items[i].rd, err);
        out[i] = items[i].rd.out;
        items[i].rd.out = NULL;
    }
    for (size_t i = 0; i < ready; i++)
        item_free(&items[i]);
    if (items != &one)
        free(items);
    return s;
}

/* At most this many statements a round trip: fewer than the statement cache holds. */
#define QGP_PIPELINE_MAX 64

static qg_status exec_list(qg_conn *c, size_t n, const char *const *sql,
                           const qg_params *const *params, const struct qg_exec_options *opt,
                           qg_result **out, long *failed_at, qg_error *err)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    if (!c || !sql)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "qg_exec needs a connection and an SQL text");
    for (size_t i = 0; i < n; i++)
        if (!sql[i])
            return qg_error_set(err, QG_ERR_INVALID_REQUEST, "statement %zu has no SQL text", i);
    if (qgp_conn_broken(c))
        return qgp_conn_lost(c, err, "starting the statement");
    if (c->state == QGP_CONN_ENDED)
        return qg_error_set(err, QG_ERR_INTERNAL,
                            "a statement after the one marked last in its transaction");
    qg_status s = QG_OK;
    for (size_t done = 0; done < n && s == QG_OK;) {
        size_t k = n - done < QGP_PIPELINE_MAX ? n - done : QGP_PIPELINE_MAX;
        long failed = -1;
        s = run_chunk(c, k, sql + done, params ? params + done : NULL, opt,
                      opt && opt->last && done + k == n, out + done, rows_bytes(out, done),
                      &failed, err);
        if (s != QG_OK && failed >= 0)
            *failed_at = (long)done + failed;
        done += k;
    }
    if (s != QG_OK)
        for (size_t i = 0; i < n; i++) {
            qg_result_free(out[i]);
            out[i] = NULL;
        }
    return s;
}

qg_status qg_exec_many(qg_conn *c, size_t n, const char *const *sql,
                       const qg_params *const *params, const struct qg_exec_options *opt,
                       qg_result **out, qg_error *err)
{
    long failed = -1;
    qg_status s = exec_list(c, n, sql, params, opt, out, &failed, err);
    if (s != QG_OK && err && failed >= 0 && err->statement_index < 0)
        err->statement_index = (int)failed;
    return s;
}

qg_status qg_exec(qg_conn *c, const char *sql, const qg_params *params,
                  const struct qg_exec_options *opt, qg_result **out, qg_error *err)
{
    long failed = -1;
    return exec_list(c, 1, &sql, &params, opt, out, &failed, err);
}
