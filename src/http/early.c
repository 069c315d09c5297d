/* Early answers: an answer written while the request body still arrives, beside libmicrohttpd. */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cors.h"
#include "early.h"
#include "reply.h"

/*
 * NOTE: libmicrohttpd 0.9.75 queues an answer only before the body or after
 * its end (MHD_queue_response fails in between, suspended or not). A chunked
 * body past HTTP_MAX_BODY has no length to refuse it by beforehand, and after
 * its end is too late: a client that sends everything before it reads would
 * have its connection cut first. So the answer is written here, on the
 * connection's own thread while libmicrohttpd only reads from it; the caller
 * then drops what still arrives and closes (lingering close, as nginx does).
 */

static void add_raw_header(void *arg, const char *name, const char *value)
{
    qg_buf_printf(arg, "%s: %s\r\n", name, value);
}

/* The whole answer, head and body, as HTTP/1.1 puts it on the wire. */
static void serialize(const qgh_cors *cors, const char *origin, const char *request_id,
                      const struct qgh_reply *rep, qg_buf *out)
{
    const char *reason = MHD_get_reason_phrase_for((unsigned)rep->status);
    char date[64];
    struct tm tm;
    time_t now = time(NULL);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
    qg_buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: close\r\n", rep->status,
                  reason && *reason ? reason : "Error", date);
    add_raw_header(out, "X-Request-Id", request_id);
    if (rep->content_type)
        add_raw_header(out, "Content-Type", rep->content_type);
    qgh_cors_headers(cors, origin, rep, add_raw_header, out);
    qg_buf_printf(out, "Content-Length: %zu\r\n\r\n", rep->len);
    qg_buf_append(out, rep->body ? rep->body : "", rep->len);
}

/* Writes what the socket takes at once; the buffers are empty while a body arrives. */
static bool write_all(struct MHD_Connection *c, const char *p, size_t n)
{
    const union MHD_ConnectionInfo *tls =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    while (n) {
        ssize_t k;
        if (tls && tls->tls_session) {
            k = gnutls_record_send(tls->tls_session, p, n);
            if (k == GNUTLS_E_INTERRUPTED)
                continue;
        } else {
            if (!fd)
                return false;
            k = send(fd->connect_fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (k < 0 && errno == EINTR)
                continue;
        }
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

bool qgh_answer_early(struct MHD_Connection *c, const qgh_cors *cors, const char *origin,
                      const char *request_id, const struct qgh_reply *rep)
{
    qg_buf b;
    qg_buf_init(&b);
    serialize(cors, origin, request_id, rep, &b);
    bool ok = !b.oom && write_all(c, b.data, b.len);
    qg_buf_free(&b);
    return ok;
}
