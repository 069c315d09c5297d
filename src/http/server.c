/* The libmicrohttpd daemon: TLS, per-request state, body limits, hand-off to workers, drain and stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "cancel.h"
#include "conns.h"
#include "cors.h"
#include "early.h"
#include "handler.h"
#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "reqid.h"
#include "router.h"
#include "server.h"
#include "trace.h"
#include "watch.h"
#include "workers.h"

/*
 * Per connection, for the request line and headers, and the read buffer for
 * bodies. NOTE: twice QGH_HEAD_MAX, so that a head somewhat past our limit
 * reaches the router, which answers the contract's JSON 431. libmicrohttpd
 * 0.9.75 cannot replace the HTML pages it writes itself, so a head past this
 * still gets its page (431, connection closed). A kept-alive connection that
 * has answered a request holds all of it (measured: 500 such connections take
 * 16 MB at 32 KiB, 32 MB at 64 KiB, 64 MB at 128 KiB), hence not more.
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
/* TLS_CERT_FILE and TLS_KEY_FILE larger than this are not PEM files we want. */
#define MAX_PEM_BYTES (1024 * 1024)

struct qg_server {
    struct qgh_ctx ctx;
    qgh_workers *workers;
    qgh_cors *cors;
    qgh_conns *conns;
    qgh_watch *watch;
    struct MHD_Daemon *daemon;
    int port;
    atomic_bool draining;
    atomic_bool unready;  /* SHUTDOWN_DELAY: /health/ready says 503, the rest is served */
    atomic_int open_requests; /* request states not yet freed */
};

/* Where a request is in its life. */
enum req_state {
    REQ_BODY,   /* headers seen; the body (if any) is arriving */
    REQ_QUEUED, /* connection suspended: waiting for or running on a worker */
    REQ_DONE,   /* a reply is ready to queue */
    REQ_SENT    /* the reply is queued; waiting for completion */
};

struct request {
    struct qgh_job job; /* first member: the worker pool hands it back */
    qg_server *srv;
    struct MHD_Connection *conn;
    struct qgh_conn *guard;       /* the connection's deadline; may be NULL */
    const char *origin;           /* MHD's copy, valid while the request lives */
    const struct qgh_route *route; /* NULL when the head checks answered */
    size_t endpoint;
    enum req_state state;
    bool discard; /* the answer is decided; the rest of the body is ignored */
    bool early;   /* the answer went out before the body ended: close once it stops */
    size_t discarded;
    double start;
    double queued_at; /* 0 unless it went to the worker queue */
    double wait_s;    /* time in the worker queue: the pool wait */
    char method[16];
    char path[256];
    char request_id[QGH_REQUEST_ID_MAX + 1];
    char trace_id[QGH_TRACE_ID_LEN + 1]; /* of a valid traceparent header, else "" */
    struct qgh_principal who;
    qg_buf body;
    struct qgh_reply reply;
    struct qgh_cancel cancel;       /* the client hung up: cancel what runs */
    struct qgh_watch_entry watch;
};

/* Every decided request is counted and logged here, once: when queued, or when its client left first. */
static void count_and_log(qg_server *s, struct request *r)
{
    struct qgh_reply *rep = &r->reply;
    r->state = REQ_SENT;
    double secs = qg_now() - r->start;
    qgh_metrics_count(s->ctx.metrics, r->endpoint, rep->status, secs, rep->sqlstate);
    if (r->queued_at > 0)
        qgh_metrics_queue_wait(s->ctx.metrics, r->wait_s);
    if (rep->status == 500)
        qgh_log(QG_LOG_ERROR, "internal error in %s %s (request %s): %s", r->method, r->path,
                r->request_id, rep->message);
    qgh_log_access(r->method, r->path, rep->status, secs * 1000.0, r->wait_s * 1000.0,
                   r->request_id, r->trace_id);
}

static void add_header(void *arg, const char *name, const char *value)
{
    MHD_add_response_header(arg, name, value);
}

static enum MHD_Result send_reply(qg_server *s, struct request *r)
{
    struct qgh_reply *rep = &r->reply;
    qgh_reply_conditional(rep, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                           MHD_HTTP_HEADER_IF_NONE_MATCH));
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(rep->len, rep->body, MHD_RESPMEM_MUST_FREE);
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
    qgh_cors_headers(s->cors, r->origin, rep, add_header, resp);
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)rep->status, resp);
    MHD_destroy_response(resp);
    count_and_log(s, r);
    return ok;
}

/* Called on a worker, or by the expirer: r may be freed as soon as the connection resumes. */
static void job_done(struct request *r)
{
    r->state = REQ_DONE;
    MHD_resume_connection(r->conn);
}

/* For the log and the metrics; only a client that half-closed its side may still read it. */
static void client_gone_reply(struct qgh_reply *rep)
{
    qgh_reply_fail(rep, "client_closed_request",
                   "the client closed the connection; its statement was cancelled and "
                   "nothing it ran was committed");
}

static void job_run(struct qgh_job *job)
{
    struct request *r = (struct request *)job;
    qg_server *s = r->srv;
    r->wait_s = qg_now() - r->queued_at;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int fd = ci ? (int)ci->connect_fd : -1;
    bool watched = false;
    if (fd >= 0 && qgh_client_gone(fd)) {
        atomic_store(&r->cancel.gone, true); /* left while queued: nothing to run */
    } else if (fd >= 0) {
        qgh_watch_add(s->watch, &r->watch, fd, &r->cancel);
        watched = true;
    }
    struct qgh_call call = {r->body.data ? r->body.data : "", r->body.len, r->request_id,
                            &r->who, &r->reply, &r->cancel};
    qgh_log_request(r->request_id);
    if (!atomic_load(&r->cancel.gone))
        r->route->handler(&s->ctx, &call);
    qgh_log_request(NULL);
    if (watched)
        qgh_watch_remove(s->watch, &r->watch);
    /* 499 only for what the client's leaving cancelled, or kept from running: any other
       outcome (a committed write's 200, a 503 "outcome": "unknown") is logged as it was. */
    if (atomic_load(&r->cancel.gone)) {
        bool cancelled = atomic_load(&r->cancel.cancelled) && r->reply.code &&
                         !strcmp(r->reply.code, "statement_timeout");
        if (r->reply.status == 0 || cancelled)
            client_gone_reply(&r->reply);
        r->reply.close = true;
    }
    if (!r->reply.status)
        qgh_reply_fail(&r->reply, "internal_error", "the handler gave no answer");
    job_done(r);
}

static void job_expire(struct qgh_job *job, qg_status why)
{
    struct request *r = (struct request *)job;
    r->wait_s = qg_now() - r->queued_at;
    if (why == QG_ERR_POOL_TIMEOUT)
        qgh_reply_fail(&r->reply, "pool_timeout",
                       "no database worker became free within %g s (DB_POOL_TIMEOUT); "
                       "retry later or raise HTTP_THREADS / DB_POOL_SIZE",
                       r->srv->ctx.cfg->pool_timeout_s);
    else
        qgh_reply_fail(&r->reply, "shutting_down", "the service is shutting down; retry elsewhere");
    job_done(r);
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

/* The pool whose `waiting` a queued request counts in: its key's role's, else the main one. */
static qg_manager *queue_pool(qg_server *s, const struct request *r)
{
    struct qgh_call call = {.who = &r->who};
    qg_manager *m = NULL;
    if (qgh_manager_for(&s->ctx, &call, &m, NULL) != QG_OK || !m)
        m = s->ctx.m;
    return m;
}

/* The body is complete: answer inline, or suspend and hand it to a worker. */
static enum MHD_Result run(qg_server *s, struct request *r)
{
    if (!(r->route->flags & QGH_WORKER)) {
        struct qgh_call call = {r->body.data ? r->body.data : "", r->body.len, r->request_id,
                                &r->who, &r->reply, NULL};
        r->route->handler(&s->ctx, &call);
        if (!r->reply.status)
            qgh_reply_fail(&r->reply, "internal_error", "the handler gave no answer");
        return send_reply(s, r);
    }
    echo_body(s, r);
    /* NOTE: suspend before submitting, so a fast worker's resume cannot come first. */
    r->state = REQ_QUEUED;
    r->queued_at = qg_now();
    r->job.run = job_run;
    r->job.expire = job_expire;
    r->job.pool = queue_pool(s, r);
    MHD_suspend_connection(r->conn);
    if (!qgh_workers_submit(s->workers, &r->job)) {
        r->wait_s = 0;
        qgh_reply_fail(&r->reply, "shutting_down", "the service is shutting down; retry elsewhere");
        job_done(r);
    }
    return MHD_YES;
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
    qgh_cancel_init(&r->cancel);
    r->srv = s;
    r->conn = c;
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
    case REQ_QUEUED:
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
    qg_buf_free(&r->body);
    qgh_reply_reset(&r->reply);
    qgh_cancel_destroy(&r->cancel);
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

/* HOST as a socket address: IPv4 or IPv6 literal ([::1] too), or a name ("localhost": 127.0.0.1). */
static qg_status resolve(const char *host, int port, struct sockaddr_storage *sa, qg_error *err)
{
    char h[256];
    snprintf(h, sizeof h, "%s", host && *host ? host : "0.0.0.0");
    size_t n = strlen(h);
    if (n > 2 && h[0] == '[' && h[n - 1] == ']') {
        memmove(h, h + 1, n - 2);
        h[n - 2] = '\0';
    }
    if (!strcmp(h, "localhost"))
        strcpy(h, "127.0.0.1");
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(h, NULL, &hints, &ai);
    if (rc || !ai)
        return qg_error_set(err, QG_ERR_CONFIG, "HOST=%s: cannot resolve it (%s)", h,
                            gai_strerror(rc));
    memset(sa, 0, sizeof *sa);
    memcpy(sa, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (sa->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
    return QG_OK;
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

/* A PEM file, NUL-terminated, malloc'd into *out (the caller frees; wipe a key first). */
static qg_status read_pem(const char *var, const char *path, char **out, size_t *len,
                          qg_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > MAX_PEM_BYTES) {
        int e = fd < 0 ? errno : 0;
        if (fd >= 0)
            close(fd);
        return qg_error_set(err, QG_ERR_CONFIG, "%s=%s: cannot read it (%s)", var, path,
                            e ? strerror(e) : "not a regular file of at most 1 MiB");
    }
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
    int e = errno;
    close(fd);
    if (n < 0 || n != st.st_size) {
        free(buf);
        return qg_error_set(err, QG_ERR_CONFIG, "%s=%s: cannot read it (%s)", var, path,
                            n < 0 ? strerror(e) : "short read");
    }
    buf[n] = '\0';
    if (!strstr(buf, "-----BEGIN ")) {
        explicit_bzero(buf, (size_t)n);
        free(buf);
        return qg_error_set(err, QG_ERR_CONFIG, "%s=%s: not a PEM file (no -----BEGIN line)",
                            var, path);
    }
    *out = buf;
    *len = (size_t)n;
    return QG_OK;
}

static void wipe(char *p, size_t n)
{
    if (p)
        explicit_bzero(p, n);
    free(p);
}

static struct MHD_Daemon *open_daemon(qg_server *s, unsigned flags, struct sockaddr_storage *sa,
                                      struct MHD_OptionItem *tls)
{
    const struct qg_config *cfg = s->ctx.cfg;
    /* One more than ours, so that on_accept, not MHD, meets the limit. */
    unsigned limit = (unsigned)(cfg->http_max_connections > 0 ? cfg->http_max_connections : 1);
    return MHD_start_daemon(
        flags, (uint16_t)cfg->port, on_accept, s, on_request, s,
        /* first, so that MHD's own messages go through it too */
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)sa, MHD_OPTION_CONNECTION_LIMIT, limit + 1,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(cfg->http_idle_timeout_s > 0 ? cfg->http_idle_timeout_s : 0),
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_UNESCAPE_CALLBACK, unescape,
        NULL, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
}

static qg_status start_daemon(qg_server *s, qg_error *err)
{
    const struct qg_config *cfg = s->ctx.cfg;
    struct sockaddr_storage sa;
    qg_status st = resolve(cfg->host, cfg->port, &sa, err);
    if (st != QG_OK)
        return st;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    bool tls = cfg->tls_cert_file && *cfg->tls_cert_file;
    if (tls) {
        st = read_pem("TLS_CERT_FILE", cfg->tls_cert_file, &cert, &cert_len, err);
        if (st == QG_OK)
            st = read_pem("TLS_KEY_FILE", cfg->tls_key_file, &key, &key_len, err);
        if (st != QG_OK) {
            wipe(cert, cert_len);
            return st;
        }
        flags |= MHD_USE_TLS;
    }
    struct MHD_OptionItem options[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, key},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
        {MHD_OPTION_END, 0, NULL},
    };
    errno = 0;
    s->daemon = open_daemon(s, flags, &sa, tls ? options : options + 3);
    int e = errno;
    /* GnuTLS has its own copy by now. */
    wipe(key, key_len);
    wipe(cert, cert_len);
    if (!s->daemon && tls)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "cannot start HTTPS on %s port %d; check TLS_CERT_FILE and "
                            "TLS_KEY_FILE (a PEM certificate and its key) and the log above",
                            cfg->host ? cfg->host : "0.0.0.0", cfg->port);
    if (!s->daemon)
        return qg_error_set(err, QG_ERR_CONFIG,
                            "cannot listen on %s port %d (%s); check HOST and PORT",
                            cfg->host ? cfg->host : "0.0.0.0", cfg->port,
                            e ? strerror(e) : "see the log above");
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : cfg->port;
    return QG_OK;
}

qg_status qg_server_start(const struct qg_config *cfg, qg_manager *m, qgh_auth *auth,
                          qg_server **out, qg_error *err)
{
    *out = NULL;
    qg_server *s = calloc(1, sizeof *s);
    if (!s)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory starting the server");
    s->ctx.cfg = cfg;
    s->ctx.m = m;
    s->ctx.auth = auth;
    s->ctx.unready = &s->unready;
    const char *names[32];
    size_t n = qgh_route_count();
    for (size_t i = 0; i < n && i < 32; i++)
        names[i] = qgh_route_at(i)->path;
    s->ctx.metrics = qgh_metrics_new(n, names);
    if (!s->ctx.metrics) {
        free(s);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory starting the server");
    }
    /* NOTE: one worker per pooled connection. More workers than DB_POOL_SIZE keep
       overflow connections busy, and the pool closes those on return (QueuePool
       semantics): measured, 15 workers over a pool of 5 opened a new PostgreSQL
       session for nearly every request (~150 req/s); 5 workers, none (~14k req/s). */
    int threads = cfg->http_threads > 0 ? cfg->http_threads : cfg->pool_size;
    qg_status st = qgh_cors_new(cfg->cors_allow_origins, cfg->cors_allow_headers, &s->cors, err);
    if (st == QG_OK)
        st = qgh_conns_new(cfg->http_max_connections, cfg->http_idle_timeout_s, &s->conns, err);
    if (st == QG_OK)
        st = qgh_workers_new(threads, cfg->pool_timeout_s, &s->workers, err);
    if (st == QG_OK)
        st = qgh_watch_new(&s->watch, err);
    if (st == QG_OK)
        st = start_daemon(s, err);
    if (st != QG_OK) {
        qgh_workers_free(s->workers);
        qgh_conns_free(s->conns);
        qgh_cors_free(s->cors);
        qgh_watch_free(s->watch);
        qgh_metrics_free(s->ctx.metrics);
        free(s);
        return st;
    }
    *out = s;
    return QG_OK;
}

int qg_server_port(const qg_server *s)
{
    return s->port;
}

void qg_server_unready(qg_server *s)
{
    atomic_store(&s->unready, true);
}

/* Lets resumed connections send their answers before the daemon closes them. */
static void wait_requests(qg_server *s, double timeout_s)
{
    double end = qg_now() + timeout_s;
    while (atomic_load(&s->open_requests) > 0 && qg_now() < end) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void qg_server_stop(qg_server *s, double drain_s)
{
    if (!s)
        return;
    atomic_store(&s->draining, true);
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    if (!qgh_workers_wait_idle(s->workers, drain_s)) {
        qgh_log(QG_LOG_WARN,
                "requests still running after %g s (SHUTDOWN_TIMEOUT); cancelling them", drain_s);
        qg_manager_shutdown(s->ctx.m, 0);
    }
    qgh_workers_free(s->workers);
    qgh_watch_free(s->watch); /* after the workers: nothing is watched any more */
    wait_requests(s, 1.0);
    MHD_stop_daemon(s->daemon);
    qgh_conns_free(s->conns);
    qgh_cors_free(s->cors);
    qgh_metrics_free(s->ctx.metrics);
    free(s);
}
