/*
 * Requests on the libmicrohttpd daemons (one per HTTP thread, loops.c):
 * per-request state, body limits, statements run on the request's own loop,
 * clients that leave, drain and stop.
 */
#define _GNU_SOURCE /* POLLRDHUP */
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "conns.h"
#include "cors.h"
#include "early.h"
#include "handler.h"
#include "log.h"
#include "loops.h"
#include "metrics.h"
#include "reply.h"
#include "reqid.h"
#include "router.h"
#include "server.h"
#include "stream.h"
#include "tls.h"
#include "trace.h"

/*
 * Per connection, for the request line and headers, and the read buffer for
 * bodies. NOTE: twice QGH_HEAD_MAX, so that a head somewhat past our limit
 * reaches the router, which answers the contract's JSON 431. libmicrohttpd
 * 0.9.75 cannot replace the HTML pages it writes itself, so a head past this
 * still gets its page (431, connection closed). A kept-alive connection that
 * has answered a request holds all of it, and libmicrohttpd zeroes it for each
 * request (measured: 500 such connections take 16 MB at 32 KiB, 32 MB at 64 KiB;
 * querygate's RSS at 256 connections is 22 MiB with 32 KiB, 30 MiB with 64 KiB),
 * hence a 16 KiB head limit, as Node's.
 */
#define CONNECTION_MEMORY (2 * QGH_HEAD_MAX)
/*
 * After an early answer (early.c), what still arrives of the body is read and
 * dropped for up to this long and this much, so that a client that reads only
 * once it has sent everything still gets the answer (nginx's lingering close);
 * then the connection is cut.
 */
#define LINGER_S 5.0
#define LINGER_BYTES (16 * 1024 * 1024)

struct qg_server {
    struct qgh_ctx ctx;
    qgh_cors *cors;
    qgh_conns *conns;
    qgh_loops *loops;
    const struct MHD_OptionItem *tls; /* while the daemons start: TLS's options, or NULL */
    atomic_bool draining;
    atomic_bool unready;  /* SHUTDOWN_DELAY: /health/ready says 503, the rest is served */
    atomic_int open_requests; /* request states not yet freed */
    atomic_int open_runs;     /* requests whose answer a run or a helper thread still owes */
    atomic_bool closing;      /* the HTTP threads are about to stop: nothing more may start */
};

/* Where a request is in its life. */
enum req_state {
    REQ_BODY,    /* headers seen; the body (if any) is arriving */
    REQ_RUNNING, /* connection suspended: its run, or a helper thread, works for it */
    REQ_DONE,    /* a reply is ready to queue */
    REQ_SENT     /* the reply is queued; waiting for completion */
};

struct request {
    qg_server *srv;
    struct MHD_Connection *conn;
    struct qgh_conn *guard;       /* the connection's deadline; may be NULL */
    const char *origin;           /* MHD's copy, valid while the request lives */
    const char *url;              /* MHD's (decoded), valid while the request lives */
    const struct qgh_route *route; /* NULL when the head checks answered */
    size_t endpoint;
    enum req_state state;
    bool discard; /* the answer is decided; the rest of the body is ignored */
    bool early;   /* the answer went out before the body ended: close once it stops */
    size_t discarded;
    double start;
    char method[16];
    char path[256];
    char request_id[QGH_REQUEST_ID_MAX + 1];
    char trace_id[QGH_TRACE_ID_LEN + 1]; /* of a valid traceparent header, else "" */
    struct qgh_principal who;
    qg_buf body;
    struct qgh_reply reply;
    struct qgh_call call;   /* what the handler got; lives while its run does */
    qg_loop_io *hangup;     /* the client's socket, watched while its run is in flight */
    bool gone;              /* the client closed or shut down its side */
    bool cancelled;         /* ... while its run was in flight: it was cancelled */
    bool in_handler;        /* the handler runs: a finish now has nothing to resume */
    bool stream_waiting;    /* suspended until its stream has more (reply.stream) */
};

/* Every decided request is counted and logged here, once: when queued, or when its client left first. */
static void count_and_log(qg_server *s, struct request *r)
{
    struct qgh_reply *rep = &r->reply;
    r->state = REQ_SENT;
    double secs = qg_now() - r->start;
    qgh_metrics_count(s->ctx.metrics, r->endpoint, rep->status, secs, rep->sqlstate);
    if (rep->status == 500)
        qgh_log(QG_LOG_ERROR, "internal error in %s %s (request %s): %s", r->method, r->path,
                r->request_id, rep->message);
    if (r->route && (r->route->flags & QGH_RUNS)) {
        qgh_metrics_pool_wait(s->ctx.metrics, r->call.pool_wait_s);
        qgh_metrics_served(s->ctx.metrics, r->call.served, r->call.replica);
    }
    qgh_log_access(r->method, r->path, rep->status, secs * 1000.0, r->call.pool_wait_s * 1000.0,
                   r->request_id, r->trace_id);
}

static void add_header(void *arg, const char *name, const char *value)
{
    MHD_add_response_header(arg, name, value);
}

/*
 * A streamed body, pulled as the client reads. NOTE: a content reader that returns 0
 * is called again at once (libmicrohttpd's docs: only with a suspend), so the
 * connection is suspended until the stream has more (stream_wake).
 */
static ssize_t stream_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct request *r = cls;
    (void)pos;
    long n = qgh_stream_read(r->reply.stream, buf, max);
    if (n > 0)
        return n;
    if (n == QGH_STREAM_END)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n == QGH_STREAM_ABORT)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    r->stream_waiting = true;
    MHD_suspend_connection(r->conn);
    return 0;
}

/* call->wake: the stream has more of the body. */
static void stream_wake(struct qgh_call *call)
{
    struct request *r = (struct request *)((char *)call - offsetof(struct request, call));
    if (!r->stream_waiting)
        return;
    r->stream_waiting = false;
    MHD_resume_connection(r->conn);
    qgh_loops_resumed();
}

/* Small enough for the connection's memory (CONNECTION_MEMORY), which holds MHD's buffer. */
#define STREAM_BLOCK (8 * 1024)

static enum MHD_Result send_reply(qg_server *s, struct request *r)
{
    struct qgh_reply *rep = &r->reply;
    qgh_reply_conditional(rep, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                           MHD_HTTP_HEADER_IF_NONE_MATCH));
    struct MHD_Response *resp =
        rep->stream
            ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_body, r,
                                                NULL)
            : MHD_create_response_from_buffer(rep->len, rep->body, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        return MHD_NO;
    rep->body = NULL; /* the response owns it now */
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    if (rep->content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rep->content_type);
    if (rep->retry_after > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", rep->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (rep->allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rep->allow);
    if (rep->www_authenticate)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, rep->www_authenticate);
    if (rep->etag)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, rep->etag);
    if (rep->cache_control)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, rep->cache_control);
    if (rep->close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (r->call.served != QG_SERVED_NONE)
        MHD_add_response_header(resp, "X-Querygate-Served-By",
                                r->call.served == QG_SERVED_REPLICA ? "replica" : "primary");
    if (r->call.commit_lsn && rep->status == 200) {
        char lsn[QG_LSN_BUF];
        qg_lsn_format(r->call.commit_lsn, lsn);
        MHD_add_response_header(resp, "X-Querygate-LSN", lsn);
    }
    qgh_cors_headers(s->cors, r->origin, rep, add_header, resp);
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)rep->status, resp);
    MHD_destroy_response(resp);
    count_and_log(s, r);
    return ok;
}

/* For the log and the metrics; only a client that half-closed its side may still read it. */
static void client_gone_reply(struct qgh_reply *rep)
{
    qgh_reply_fail(rep, "client_closed_request",
                   "the client closed the connection; its statement was cancelled and "
                   "nothing it ran was committed");
}

/* True when the peer of socket fd closed or shut down its side (no wait). */
static bool client_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int client_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

/* The answer as it is logged and counted: 499 only for what the client's leaving cancelled,
   or kept from running; any other outcome (a committed write's 200, a 503 "outcome":
   "unknown") keeps its status. */
static void settle(struct request *r)
{
    if (r->gone) {
        bool cancelled = r->cancelled && r->reply.code &&
                         !strcmp(r->reply.code, "statement_timeout");
        if (r->reply.status == 0 || cancelled)
            client_gone_reply(&r->reply);
        r->reply.close = true;
    }
    if (!r->reply.status)
        qgh_reply_fail(&r->reply, "internal_error", "the handler gave no answer");
}

/* call->finish, on the request's loop: its answer is ready. */
static void finish(struct qgh_call *call)
{
    struct request *r = (struct request *)((char *)call - offsetof(struct request, call));
    /* A stream's run goes on: its client is still watched, so that leaving cancels it. */
    if (r->hangup && !r->reply.stream) {
        qg_loop_io_free(r->hangup);
        r->hangup = NULL;
    }
    settle(r);
    r->state = REQ_DONE;
    atomic_fetch_sub(&r->srv->open_runs, 1);
    if (!r->in_handler) {
        MHD_resume_connection(r->conn);
        qgh_loops_resumed();
    }
}

/*
 * NOTE: libmicrohttpd does not look at a suspended connection, so nobody would
 * see its client leave until the run ends. The loop watches the socket for
 * EPOLLRDHUP (peer closed or shut down its side; pipelined bytes do not wake
 * it) and cancels the run. A client that half-closes and still waits for its
 * answer counts as gone, as in nginx.
 */
static void on_hangup(void *arg, unsigned events)
{
    struct request *r = arg;
    (void)events;
    qg_loop_io_set(r->hangup, 0); /* level-triggered: once is enough */
    r->gone = true;
    if (r->call.run) {
        r->cancelled = true;
        qg_run_cancel(r->call.run);
    }
}

/*
 * Counts a request that will be answered later; false once the server is
 * closing. NOTE: counted before closing is read, while qg_server_stop sets
 * closing before it reads the count: one of the two sees the other.
 */
static bool open_run(qg_server *s, struct request *r)
{
    atomic_fetch_add(&s->open_runs, 1);
    if (!atomic_load(&s->closing))
        return true;
    atomic_fetch_sub(&s->open_runs, 1);
    qgh_reply_fail(&r->reply, "shutting_down", "the service is shutting down; retry elsewhere");
    return false;
}

/* A QGH_RUNS route: the handler starts a run on this loop, whose end calls finish. */
static enum MHD_Result start_run(qg_server *s, struct request *r)
{
    int fd = client_fd(r->conn);
    if (client_gone(fd)) { /* left while its body was read: nothing to run */
        r->gone = true;
        settle(r);
        return send_reply(s, r);
    }
    if (!open_run(s, r))
        return send_reply(s, r);
    r->call.loop = qg_loop_current();
    r->call.finish = finish;
    r->in_handler = true;
    qgh_log_request(r->request_id);
    r->route->handler(&s->ctx, &r->call);
    qgh_log_request(NULL);
    r->in_handler = false;
    if (r->state == REQ_DONE) /* answered without a run */
        return send_reply(s, r);
    if (fd >= 0)
        r->hangup = qg_loop_io_new(r->call.loop, fd, QG_LOOP_HUP, on_hangup, r);
    r->state = REQ_RUNNING;
    MHD_suspend_connection(r->conn);
    return MHD_YES;
}

static void offloaded(void *arg)
{
    struct request *r = arg;
    qgh_log_request(r->request_id);
    r->route->handler(&r->srv->ctx, &r->call);
    qgh_log_request(NULL);
}

static void offload_done(void *arg)
{
    struct request *r = arg;
    finish(&r->call);
}

/* A QGH_BLOCKS route: its handler runs on a helper thread, its answer goes out from here. */
static enum MHD_Result start_offload(qg_server *s, struct request *r)
{
    if (!open_run(s, r))
        return send_reply(s, r);
    if (!qg_loop_offload(qg_loop_current(), offloaded, offload_done, r)) {
        atomic_fetch_sub(&s->open_runs, 1);
        qgh_reply_fail(&r->reply, "internal_error", "cannot start a helper thread");
        return send_reply(s, r);
    }
    r->state = REQ_RUNNING;
    MHD_suspend_connection(r->conn);
    return MHD_YES;
}

/* NOTE: parameter values reach the log only when asked for twice: DB_ECHO and LOG_LEVEL=debug. */
static void echo_body(qg_server *s, struct request *r)
{
    if (!s->ctx.cfg->echo || !r->body.len || !qgh_log_enabled(QG_LOG_DEBUG))
        return;
    qgh_log_request(r->request_id);
    qgh_log(QG_LOG_DEBUG, "body (DB_ECHO, LOG_LEVEL=debug): %.*s",
            (int)(r->body.len < 900 ? r->body.len : 900), r->body.data);
    qgh_log_request(NULL);
}

/* The body is complete: answer inline, or suspend until the answer is ready. */
static enum MHD_Result run(qg_server *s, struct request *r)
{
    r->call = (struct qgh_call){
        .body = r->body.data ? r->body.data : "",
        .len = r->body.len,
        .request_id = r->request_id,
        .path = r->url,
        .who = &r->who,
        .reply = &r->reply,
        .ndjson = qgh_wants_ndjson(MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                               MHD_HTTP_HEADER_ACCEPT)),
        .wake = stream_wake,
    };
    const char *min_lsn = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                      "X-Querygate-Min-LSN");
    if (min_lsn && (r->route->flags & QGH_RUNS) &&
        !qg_lsn_parse(min_lsn, strlen(min_lsn), &r->call.min_lsn)) {
        qgh_reply_fail(&r->reply, "invalid_request",
                       "X-Querygate-Min-LSN is not a WAL position; send the X-Querygate-LSN "
                       "value of a write as it came, in the form 16/B374D848");
        return send_reply(s, r);
    }
    if (!(r->route->flags & (QGH_RUNS | QGH_BLOCKS))) {
        r->route->handler(&s->ctx, &r->call);
        if (!r->reply.status)
            qgh_reply_fail(&r->reply, "internal_error", "the handler gave no answer");
        return send_reply(s, r);
    }
    echo_body(s, r);
    return r->route->flags & QGH_RUNS ? start_run(s, r) : start_offload(s, r);
}

/*
 * The answer is decided while the body still arrives: it goes out now, and the
 * rest of the body is dropped until LINGER_BYTES or LINGER_S. False: close now.
 */
static bool answer_early(qg_server *s, struct request *r)
{
    r->discard = true;
    r->early = true;
    r->reply.close = true;
    bool sent = qgh_answer_early(r->conn, s->cors, r->origin, r->request_id, &r->reply);
    count_and_log(s, r);
    qgh_conns_linger(r->guard, LINGER_S);
    return sent;
}

/* Appends a body chunk; past HTTP_MAX_BODY the answer is 413 and the connection closes. */
static bool take_body(qg_server *s, struct request *r, const char *data, size_t size)
{
    size_t max = (size_t)(s->ctx.cfg->http_max_body < 0 ? 0 : s->ctx.cfg->http_max_body);
    if (r->discard) {
        r->discarded += size;
        if (r->early)
            return r->discarded <= LINGER_BYTES;
        /* A 404, 405 or 415 with a big body: answered now rather than at its end. */
        if (r->discarded > max) {
            r->discarded = 0;
            return answer_early(s, r);
        }
        return true;
    }
    if (r->body.len + size > max) {
        qg_buf_free(&r->body);
        qgh_reply_fail(&r->reply, "payload_too_large",
                       "the body is larger than the limit of %zu bytes (HTTP_MAX_BODY)", max);
        return answer_early(s, r);
    }
    qg_buf_append(&r->body, data, size);
    if (r->body.oom) {
        qg_buf_free(&r->body);
        qgh_reply_fail(&r->reply, "internal_error", "out of memory reading the body");
        return answer_early(s, r);
    }
    return true;
}

static enum MHD_Result scan_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    struct qgh_head *h = cls;
    h->head_bytes += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " CRLF; "=" "&" */
    if (kind == MHD_HEADER_KIND &&
        (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) ||
         !strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)))
        h->framing_headers++;
    return MHD_YES;
}

/* The head's size (about: its line, arguments included, and its headers) and how many
   headers frame its body. */
static void scan_head(struct MHD_Connection *c, const char *url, const char *version,
                      struct qgh_head *h)
{
    h->head_bytes = strlen(h->method) + strlen(url) + strlen(version) + 4;
    MHD_get_connection_values(c, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, scan_value, h);
}

static long long content_length(struct MHD_Connection *c)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!v)
        return -1;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    return (errno || end == v || n < 0) ? -1 : n;
}

/* First call for a request: only its head is known. */
static enum MHD_Result begin(qg_server *s, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, void **req_cls)
{
    struct request *r = calloc(1, sizeof *r);
    if (!r)
        return MHD_NO;
    atomic_fetch_add(&s->open_requests, 1);
    *req_cls = r;
    r->srv = s;
    r->conn = c;
    r->url = url;
    r->start = qg_now();
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", url);
    qgh_request_id(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id"),
                   r->request_id);
    (void)qgh_traceparent(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "traceparent"),
                          r->trace_id);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->guard = ci ? ci->socket_context : NULL;
    r->origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    long long len = content_length(c);
    struct qgh_head head = {
        .method = method,
        .path = url,
        .content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                    MHD_HTTP_HEADER_CONTENT_TYPE),
        .content_length = len,
        .transfer_encoding = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_TRANSFER_ENCODING),
        .draining = atomic_load(&s->draining),
        .max_body = s->ctx.cfg->http_max_body,
        .raw_sql_off = !s->ctx.cfg->allow_raw_sql,
        .auth = s->ctx.auth,
        .authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_AUTHORIZATION),
        .cors = s->cors,
        .origin = r->origin,
        .cors_method = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                   "Access-Control-Request-Method"),
        .cors_headers = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                    "Access-Control-Request-Headers"),
    };
    scan_head(c, url, version, &head);
    r->route = qgh_dispatch_head(&head, &r->endpoint, &r->who, &r->reply);
    if (r->route) {
        /* NOTE: capped, so that many slow clients announcing big bodies cost little. */
        if (len > 0)
            qg_buf_reserve(&r->body, (size_t)(len < 65536 ? len : 65536));
        return MHD_YES;
    }
    r->discard = true;
    /* An answer that closes the connection goes out now, before any body is read. */
    if (r->reply.close)
        return send_reply(s, r);
    return MHD_YES;
}

/* Set before a deliberate MHD_NO, so that libmicrohttpd's line about it is no warning. */
static _Thread_local bool closing_on_purpose;

static enum MHD_Result close_on_purpose(void)
{
    closing_on_purpose = true;
    return MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **req_cls)
{
    qg_server *s = cls;
    struct request *r = *req_cls;
    closing_on_purpose = false;
    if (!r)
        return begin(s, c, url, method, version, req_cls);
    if (*upload_size) {
        bool go_on = take_body(s, r, upload_data, *upload_size);
        *upload_size = 0;
        return go_on ? MHD_YES : close_on_purpose();
    }
    /* The body ended after an early answer: nothing is left to send. */
    if (r->early)
        return close_on_purpose();
    switch (r->state) {
    case REQ_BODY:
        qgh_conns_arrived(r->guard);
        return r->discard ? send_reply(s, r) : run(s, r);
    case REQ_DONE:
        return send_reply(s, r);
    case REQ_RUNNING:
    case REQ_SENT:
        break;
    }
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode why)
{
    qg_server *s = cls;
    struct request *r = *req_cls;
    (void)c;
    (void)why;
    if (!r)
        return;
    qgh_conns_answered(s->conns, r->guard);
    if (r->state == REQ_DONE)
        count_and_log(s, r); /* answered, but the connection closed before it went out */
    if (r->hangup)
        qg_loop_io_free(r->hangup);
    qgh_stream_detach(r->reply.stream); /* sent, or its client left: a run still going stops */
    r->reply.stream = NULL;
    qg_buf_free(&r->body);
    qgh_reply_reset(&r->reply);
    qgh_principal_clear(&r->who);
    free(r);
    *req_cls = NULL;
    atomic_fetch_sub(&s->open_requests, 1);
}

/* NOTE: %00 stays encoded, so that the router sees and refuses it: decoded, the NUL
   would end the C string and "/query%00x" would reach /query. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strstr(s, "%00") ? strlen(s) : MHD_http_unescape(s);
}

/* The format attribute, so that clang's -Wformat-nonliteral accepts the vsnprintf. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) QG_PRINTF(2, 0);

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[qg_trim_end(msg, strlen(msg), "\n ")] = '\0';
    if (closing_on_purpose && strstr(msg, "Application reported internal error")) {
        closing_on_purpose = false;
        qgh_log(QG_LOG_DEBUG, "http: connection closed after an early answer");
        return;
    }
    qgh_log(QG_LOG_WARN, "http: %s", msg);
}

/* Refusing here (accept, then close at once) rather than at MHD's own limit,
   where it stops accepting and the extra clients wait in the backlog. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
    qg_server *s = cls;
    (void)addr;
    (void)len;
    return qgh_conns_admit(s->conns) ? MHD_YES : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    qg_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = qgh_conns_open(s->conns, ci ? ci->connect_fd : -1);
    } else {
        qgh_conns_close(s->conns, *socket_context);
        *socket_context = NULL;
    }
}

/* qgh_daemon_open: one HTTP thread's daemon, with every option of the service. */
static qg_status open_daemon(void *arg, unsigned flags, int listen_fd, struct MHD_Daemon **out,
                             qg_error *err)
{
    qg_server *s = arg;
    const struct qg_config *cfg = s->ctx.cfg;
    /* One more than ours, so that on_accept, not MHD, meets the limit. */
    unsigned limit = (unsigned)(cfg->http_max_connections > 0 ? cfg->http_max_connections : 1);
    flags |= MHD_USE_ERROR_LOG | (s->tls ? MHD_USE_TLS : 0);
    struct MHD_OptionItem none[] = {{MHD_OPTION_END, 0, NULL}};
    errno = 0;
    *out = MHD_start_daemon(
        flags, 0, on_accept, s, on_request, s,
        /* first, so that MHD's own messages go through it too */
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, MHD_OPTION_LISTEN_SOCKET, listen_fd,
        MHD_OPTION_CONNECTION_LIMIT, limit + 1,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(cfg->http_idle_timeout_s > 0 ? cfg->http_idle_timeout_s : 0),
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_UNESCAPE_CALLBACK, unescape,
        NULL, MHD_OPTION_ARRAY, s->tls ? s->tls : (const struct MHD_OptionItem *)none,
        MHD_OPTION_END);
    int e = errno;
    if (*out)
        return QG_OK;
    if (s->tls)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "cannot start HTTPS on %s port %d; check TLS_CERT_FILE and "
                            "TLS_KEY_FILE (a PEM certificate and its key) and the log above",
                            cfg->host ? cfg->host : "0.0.0.0", cfg->port);
    return qg_error_set(err, QG_ERR_CONFIG, "cannot serve HTTP on %s port %d (%s)",
                        cfg->host ? cfg->host : "0.0.0.0", cfg->port,
                        e ? strerror(e) : "see the log above");
}

/* The HTTP threads: HTTP_THREADS, 0 for one per online CPU. */
static int http_threads(const struct qg_config *cfg)
{
    if (cfg->http_threads > 0)
        return cfg->http_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n < 1024 ? n : 1024) : 1;
}

/* The daemons, with TLS when TLS_CERT_FILE is set. */
static qg_status start_loops(qg_server *s, qg_error *err)
{
    const struct qg_config *cfg = s->ctx.cfg;
    struct qgh_tls tls;
    qg_status st = qgh_tls_load(cfg, &tls, err);
    if (st != QG_OK)
        return st;
    s->tls = qgh_tls_options(&tls);
    st = qgh_loops_start(cfg->host, cfg->port, http_threads(cfg), open_daemon, s, &s->loops,
                         err);
    s->tls = NULL;
    qgh_tls_wipe(&tls); /* GnuTLS has its own copies by now */
    return st;
}

qg_status qg_server_start(const struct qg_config *cfg, qg_manager *m, qgh_auth *auth,
                          struct qgh_named *named, qg_server **out, qg_error *err)
{
    *out = NULL;
    qg_server *s = calloc(1, sizeof *s);
    if (!s)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory starting the server");
    s->ctx.cfg = cfg;
    s->ctx.m = m;
    s->ctx.auth = auth;
    s->ctx.named = named;
    s->ctx.unready = &s->unready;
    s->ctx.open_runs = &s->open_runs;
    const char *names[32];
    size_t n = qgh_route_count();
    for (size_t i = 0; i < n && i < 32; i++)
        names[i] = qgh_route_at(i)->path;
    s->ctx.metrics = qgh_metrics_new(n, names, qg_replica_count(m));
    if (!s->ctx.metrics) {
        free(s);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory starting the server");
    }
    qg_status st = qgh_cors_new(cfg->cors_allow_origins, cfg->cors_allow_headers, &s->cors, err);
    if (st == QG_OK)
        st = qgh_conns_new(cfg->http_max_connections, cfg->http_idle_timeout_s, &s->conns, err);
    if (st == QG_OK)
        st = start_loops(s, err);
    if (st != QG_OK) {
        qgh_conns_free(s->conns);
        qgh_cors_free(s->cors);
        qgh_metrics_free(s->ctx.metrics);
        free(s);
        return st;
    }
    *out = s;
    return QG_OK;
}

int qg_server_port(const qg_server *s)
{
    return qgh_loops_port(s->loops);
}

void qg_server_unready(qg_server *s)
{
    atomic_store(&s->unready, true);
}

/* Waits up to timeout_s (< 0: for good) for *n to reach 0; true when it did. */
static bool wait_zero(atomic_int *n, double timeout_s)
{
    double end = qg_now() + timeout_s;
    while (atomic_load(n) > 0 && (timeout_s < 0 || qg_now() < end)) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return atomic_load(n) <= 0;
}

/* Every run ends now: its statement is cancelled, its wait for a connection refused. */
static void end_runs(qg_server *s)
{
    qg_manager_shutdown(s->ctx.m, 0);
    wait_zero(&s->open_runs, -1);
}

void qg_server_stop(qg_server *s, double drain_s)
{
    if (!s)
        return;
    atomic_store(&s->draining, true);
    qgh_loops_quiesce(s->loops);
    if (!wait_zero(&s->open_runs, drain_s > 0 ? drain_s : 0)) {
        qgh_log(QG_LOG_WARN,
                "requests still running after %g s (SHUTDOWN_TIMEOUT); cancelling them", drain_s);
        end_runs(s);
    }
    /* Lets resumed connections send their answers before the daemons close them, and
       bodies still arriving end. */
    wait_zero(&s->open_requests, 1.0);
    /* NOTE: no suspended connection may outlive its loop: what such a body started ends too. */
    atomic_store(&s->closing, true);
    if (atomic_load(&s->open_runs) > 0) {
        end_runs(s);
        wait_zero(&s->open_requests, 1.0);
    }
    qgh_loops_free(s->loops);
    qgh_conns_free(s->conns);
    qgh_cors_free(s->cors);
    qgh_metrics_free(s->ctx.metrics);
    free(s);
}
