/*
 * The HTTP threads: each runs a qg_loop that drives one libmicrohttpd daemon in
 * external-event-loop mode (its epoll fd watched, MHD_run when ready, a timer
 * from MHD_get_timeout), so that a request, its run and its answer stay on one
 * thread. All daemons accept from one listening socket made here.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "querygate/loop.h"
#include "log.h"
#include "loops.h"

/* One HTTP thread. */
struct lane {
    qgh_loops *owner;
    qg_loop *loop;
    struct MHD_Daemon *daemon;
    qg_loop_io *io;       /* the daemon's epoll fd */
    qg_loop_timer *timer; /* MHD_get_timeout's deadline, or now after a resume */
    pthread_t thread;
    bool started;
};

struct qgh_loops {
    int listen_fd; /* -1 once closed */
    int port;
    int n;
    struct lane *lanes;
    pthread_mutex_t mu;
    pthread_cond_t quiet; /* a daemon let go of the listening socket */
    int quiesced;
};

static _Thread_local struct lane *current_lane;

static void drive(struct lane *ln)
{
    MHD_run(ln->daemon);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(ln->daemon, &ms) == MHD_YES)
        qg_loop_timer_at(ln->timer, qg_now() + (double)ms / 1000.0);
    else
        qg_loop_timer_stop(ln->timer);
}

static void on_ready(void *arg, unsigned events)
{
    (void)events;
    drive(arg);
}

static void on_timer(void *arg)
{
    drive(arg);
}

void qgh_loops_resumed(void)
{
    if (current_lane)
        qg_loop_timer_at(current_lane->timer, qg_now());
}

static void *lane_main(void *arg)
{
    struct lane *ln = arg;
    current_lane = ln;
    /* The first MHD_run from inside the loop, where requests find it (qg_loop_current). */
    qg_loop_timer_at(ln->timer, qg_now());
    qg_loop_run(ln->loop);
    current_lane = NULL;
    return NULL;
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

/* The listening socket, non-blocking (every loop polls it; one wins each accept). */
static qg_status listen_on(qgh_loops *ls, const char *host, int port, bool *v6, qg_error *err)
{
    struct sockaddr_storage sa;
    qg_status st = resolve(host, port, &sa, err);
    if (st != QG_OK)
        return st;
    *v6 = sa.ss_family == AF_INET6;
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    socklen_t len = *v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    /* As libmicrohttpd would: an IPv6 address serves IPv6 only. */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        (*v6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one)) ||
        bind(fd, (struct sockaddr *)&sa, len) || listen(fd, SOMAXCONN) ||
        getsockname(fd, (struct sockaddr *)&sa, &len)) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return qg_error_set(err, QG_ERR_CONFIG, "cannot listen on %s port %d (%s); check HOST and PORT",
                            host && *host ? host : "0.0.0.0", port, strerror(e));
    }
    ls->listen_fd = fd;
    ls->port = ntohs(*v6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                         : ((struct sockaddr_in *)&sa)->sin_port);
    return QG_OK;
}

static qg_status lane_open(struct lane *ln, unsigned flags, qgh_daemon_open open, void *arg,
                           qg_error *err)
{
    if (qg_loop_new(&ln->loop, err) != QG_OK)
        return err ? err->status : QG_ERR_INTERNAL;
    qg_status st = open(arg, flags, ln->owner->listen_fd, &ln->daemon, err);
    if (st != QG_OK)
        return st;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(ln->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    ln->io = info ? qg_loop_io_new(ln->loop, info->epoll_fd, QG_LOOP_READ, on_ready, ln) : NULL;
    ln->timer = qg_loop_timer_new(ln->loop, on_timer, ln);
    if (!ln->io || !ln->timer)
        return qg_error_set(err, QG_ERR_INTERNAL, "cannot watch the HTTP daemon: %s",
                            info ? strerror(errno) : "it has no epoll descriptor");
    return QG_OK;
}

/* On the lane's thread: from now on the daemon accepts nothing. */
static void lane_quiesce(void *arg)
{
    struct lane *ln = arg;
    MHD_quiesce_daemon(ln->daemon); /* the listening socket it returns is closed once, by the owner */
    pthread_mutex_lock(&ln->owner->mu);
    ln->owner->quiesced++;
    pthread_cond_broadcast(&ln->owner->quiet);
    pthread_mutex_unlock(&ln->owner->mu);
}

/* With its thread gone (or never started). */
static void lane_close(struct lane *ln)
{
    if (ln->daemon) {
        /* NOTE: a daemon not quiesced closes its listening socket, which the others share. */
        MHD_quiesce_daemon(ln->daemon);
        MHD_stop_daemon(ln->daemon);
    }
    if (ln->io)
        qg_loop_io_free(ln->io);
    qg_loop_timer_free(ln->timer);
    if (ln->loop)
        qg_loop_free(ln->loop);
}

qg_status qgh_loops_start(const char *host, int port, int n, qgh_daemon_open open, void *arg,
                          qgh_loops **out, qg_error *err)
{
    *out = NULL;
    if (n < 1)
        n = 1;
    qgh_loops *ls = calloc(1, sizeof *ls);
    if (!ls || !(ls->lanes = calloc((size_t)n, sizeof *ls->lanes))) {
        free(ls);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory starting the server");
    }
    ls->n = n;
    ls->listen_fd = -1;
    pthread_mutex_init(&ls->mu, NULL);
    pthread_cond_init(&ls->quiet, NULL);
    bool v6 = false;
    qg_status st = listen_on(ls, host, port, &v6, err);
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | (v6 ? MHD_USE_IPv6 : 0);
    for (int i = 0; i < n && st == QG_OK; i++) {
        ls->lanes[i].owner = ls;
        st = lane_open(&ls->lanes[i], flags, open, arg, err);
    }
    for (int i = 0; i < n && st == QG_OK; i++) {
        int rc = pthread_create(&ls->lanes[i].thread, NULL, lane_main, &ls->lanes[i]);
        if (rc)
            st = qg_error_set(err, QG_ERR_INTERNAL, "cannot start HTTP thread %d of %d: %s",
                              i + 1, n, strerror(rc));
        ls->lanes[i].started = rc == 0;
    }
    if (st != QG_OK) {
        qgh_loops_free(ls);
        return st;
    }
    *out = ls;
    return QG_OK;
}

int qgh_loops_port(const qgh_loops *ls)
{
    return ls->port;
}

void qgh_loops_quiesce(qgh_loops *ls)
{
    int posted = 0;
    for (int i = 0; i < ls->n; i++)
        if (ls->lanes[i].started && qg_loop_post(ls->lanes[i].loop, lane_quiesce, &ls->lanes[i]))
            posted++;
    /* A loop that could not be asked keeps polling the socket: closing it under its daemon
       would let the descriptor's number be reused beneath it, so it stays open then. */
    pthread_mutex_lock(&ls->mu);
    while (ls->quiesced < posted)
        pthread_cond_wait(&ls->quiet, &ls->mu);
    pthread_mutex_unlock(&ls->mu);
    int started = 0;
    for (int i = 0; i < ls->n; i++)
        started += ls->lanes[i].started;
    if (posted == started && ls->listen_fd >= 0) {
        close(ls->listen_fd);
        ls->listen_fd = -1;
    } else if (posted < started) {
        qgh_log(QG_LOG_WARN, "%d HTTP thread(s) could not stop accepting; the port stays open "
                "until they stop", started - posted);
    }
}

void qgh_loops_free(qgh_loops *ls)
{
    if (!ls)
        return;
    for (int i = 0; i < ls->n; i++)
        if (ls->lanes[i].started)
            qg_loop_stop(ls->lanes[i].loop);
    for (int i = 0; i < ls->n; i++)
        if (ls->lanes[i].started)
            pthread_join(ls->lanes[i].thread, NULL);
    for (int i = 0; i < ls->n; i++)
        lane_close(&ls->lanes[i]);
    if (ls->listen_fd >= 0)
        close(ls->listen_fd);
    pthread_cond_destroy(&ls->quiet);
    pthread_mutex_destroy(&ls->mu);
    free(ls->lanes);
    free(ls);
}
