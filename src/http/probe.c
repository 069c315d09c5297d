/* querygate --probe: GET /health/ready on the configured HOST:PORT (HTTPS through GnuTLS), for container health checks. */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "probe.h"

struct probe_io {
    int fd;
    gnutls_session_t tls; /* NULL: plain HTTP */
    double deadline;      /* monotonic seconds */
};

/* Waits until fd is ready for events; false at the deadline. */
static bool wait_fd(const struct probe_io *io, short events)
{
    for (;;) {
        double left = io->deadline - qg_now();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = io->fd, .events = events};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
    }
}

/* The address the probe calls: a wildcard listen address means this host. */
static void probe_host(const char *host, char *out, size_t size)
{
    snprintf(out, size, "%s", host && *host ? host : "127.0.0.1");
    size_t n = strlen(out);
    if (n > 2 && out[0] == '[' && out[n - 1] == ']') {
        memmove(out, out + 1, n - 2);
        out[n - 2] = '\0';
    }
    if (!strcmp(out, "0.0.0.0") || !strcmp(out, "localhost"))
        snprintf(out, size, "127.0.0.1");
    else if (!strcmp(out, "::"))
        snprintf(out, size, "::1");
}

/* A non-blocking connect to each address of host:port in turn, within the deadline. */
static bool probe_connect(struct probe_io *io, const char *host, int port, char *why,
                          size_t size)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, service, &hints, &ai);
    if (rc || !ai) {
        snprintf(why, size, "cannot resolve %s (%s)", host, gai_strerror(rc));
        return false;
    }
    int e = ETIMEDOUT;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        io->fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        a->ai_protocol);
        if (io->fd < 0) {
            e = errno;
            continue;
        }
        if (connect(io->fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        e = errno;
        if (e == EINPROGRESS) {
            socklen_t len = sizeof e;
            e = ETIMEDOUT;
            if (wait_fd(io, POLLOUT) && !getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &e, &len) &&
                e == 0)
                break;
        }
        close(io->fd);
        io->fd = -1;
    }
    freeaddrinfo(ai);
    if (io->fd < 0)
        snprintf(why, size, "cannot connect: %s", strerror(e));
    return io->fd >= 0;
}

/* NOTE: no chain or name check: the probe calls its own process, by address; peer_is_ours pins. */
static bool tls_start(struct probe_io *io, gnutls_certificate_credentials_t cred, char *why,
                      size_t size)
{
    int rc = gnutls_init(&io->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
    if (rc == GNUTLS_E_SUCCESS)
        rc = gnutls_set_default_priority(io->tls);
    if (rc == GNUTLS_E_SUCCESS)
        rc = gnutls_credentials_set(io->tls, GNUTLS_CRD_CERTIFICATE, cred);
    if (rc != GNUTLS_E_SUCCESS) {
        snprintf(why, size, "cannot set up TLS: %s", gnutls_strerror(rc));
        return false;
    }
    gnutls_transport_set_int(io->tls, io->fd);
    while ((rc = gnutls_handshake(io->tls)) < 0) {
        if (gnutls_error_is_fatal(rc)) {
            snprintf(why, size, "TLS handshake failed: %s", gnutls_strerror(rc));
            return false;
        }
        if (!wait_fd(io, gnutls_record_get_direction(io->tls) ? POLLOUT : POLLIN)) {
            snprintf(why, size, "TLS handshake timed out");
            return false;
        }
    }
    return true;
}

/*
 * The probe's own service presents the first certificate of TLS_CERT_FILE; anything
 * else on that port is not us, whatever it answers.
 */
static bool peer_is_ours(const struct probe_io *io, const char *cert_file, char *why, size_t size)
{
    unsigned n = 0;
    const gnutls_datum_t *peer = gnutls_certificate_get_peers(io->tls, &n);
    gnutls_datum_t pem = {NULL, 0}, der = {NULL, 0};
    gnutls_x509_crt_t crt = NULL;
    int rc = gnutls_load_file(cert_file, &pem);
    if (rc >= 0)
        rc = gnutls_x509_crt_init(&crt);
    if (rc >= 0)
        rc = gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM);
    if (rc >= 0)
        rc = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der);
    bool same = rc >= 0 && peer && n > 0 && peer[0].size == der.size &&
                !memcmp(peer[0].data, der.data, der.size);
    if (rc < 0)
        snprintf(why, size, "cannot read TLS_CERT_FILE %s: %s", cert_file, gnutls_strerror(rc));
    else if (!same)
        snprintf(why, size, "the server's certificate is not the one in TLS_CERT_FILE (%s)",
                 cert_file);
    gnutls_free(der.data);
    gnutls_free(pem.data);
    if (crt)
        gnutls_x509_crt_deinit(crt);
    return same;
}

/* Sends all of buf; false on error or at the deadline. */
static bool io_send(struct probe_io *io, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = io->tls ? gnutls_record_send(io->tls, buf, len)
                            : send(io->fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        bool again = io->tls ? (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
                             : (n < 0 && (errno == EAGAIN || errno == EINTR));
        if (!again || !wait_fd(io, POLLOUT))
            return false;
    }
    return true;
}

/* Reads until the peer closes, buf is full or the deadline; returns the bytes read. */
static size_t io_recv_all(struct probe_io *io, char *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t n = io->tls ? gnutls_record_recv(io->tls, buf + got, cap - got)
                            : recv(io->fd, buf + got, cap - got, 0);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0)
            break;
        bool again = io->tls ? (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
                             : (errno == EAGAIN || errno == EINTR);
        short dir = io->tls && gnutls_record_get_direction(io->tls) ? POLLOUT : POLLIN;
        if (!again || !wait_fd(io, dir))
            break; /* a TLS peer closing without close_notify ends up here too */
    }
    return got;
}

/* The answer's status; a one-line reason in why unless it is 200. */
static int judge(char *resp, size_t len, char *why, size_t size)
{
    resp[len] = '\0';
    int status = 0;
    if (sscanf(resp, "HTTP/%*d.%*d %3d", &status) != 1) {
        snprintf(why, size, "no HTTP answer (%zu bytes)", len);
        return 0;
    }
    if (status == 200)
        return status;
    char *body = strstr(resp, "\r\n\r\n");
    body = body ? body + 4 : resp + len;
    for (char *p = body; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    snprintf(why, size, "answered %d: %.300s", status, body);
    return status;
}

static bool probe_exchange(struct probe_io *io, const char *host, int port, char *why,
                           size_t size)
{
    bool v6 = strchr(host, ':') != NULL;
    char req[512];
    snprintf(req, sizeof req,
             "GET /health/ready HTTP/1.1\r\nHost: %s%s%s:%d\r\nUser-Agent: querygate-probe\r\n"
             "Accept: application/json\r\nConnection: close\r\n\r\n",
             v6 ? "[" : "", host, v6 ? "]" : "", port);
    if (!io_send(io, req, strlen(req))) {
        snprintf(why, size, "cannot send the request");
        return false;
    }
    char resp[4096];
    size_t len = io_recv_all(io, resp, sizeof resp - 1);
    if (!len) {
        snprintf(why, size, "no answer within the timeout");
        return false;
    }
    return judge(resp, len, why, size) == 200;
}

int qgh_probe(const struct qg_config *cfg, double timeout_s, FILE *out)
{
    char host[256], why[512] = "";
    probe_host(cfg->host, host, sizeof host);
    bool tls = cfg->tls_cert_file && *cfg->tls_cert_file;
    struct probe_io io = {.fd = -1, .tls = NULL, .deadline = qg_now() + timeout_s};
    gnutls_certificate_credentials_t cred = NULL;
    bool ok = cfg->port > 0;
    if (!ok)
        snprintf(why, sizeof why, "PORT is %d; give the service's port with --port",
                 cfg->port);
    if (ok && tls && gnutls_certificate_allocate_credentials(&cred) != GNUTLS_E_SUCCESS) {
        snprintf(why, sizeof why, "cannot set up TLS credentials");
        ok = false;
    }
    ok = ok && probe_connect(&io, host, cfg->port, why, sizeof why);
    ok = ok && (!tls || tls_start(&io, cred, why, sizeof why));
    ok = ok && (!tls || peer_is_ours(&io, cfg->tls_cert_file, why, sizeof why));
    ok = ok && probe_exchange(&io, host, cfg->port, why, sizeof why);
    if (io.tls)
        gnutls_deinit(io.tls);
    if (cred)
        gnutls_certificate_free_credentials(cred);
    if (io.fd >= 0)
        close(io.fd);
    if (!ok) {
        bool v6 = strchr(host, ':') != NULL;
        fprintf(out, "querygate --probe: %s://%s%s%s:%d/health/ready: %s\n",
                tls ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "", cfg->port, why);
    }
    return ok ? 0 : 1;
}
