/* loops.c: the HTTP threads, each an event loop driving one libmicrohttpd daemon, and the listening socket they share. */
#ifndef QGH_LOOPS_H
#define QGH_LOOPS_H

#include "querygate/querygate.h"

struct MHD_Daemon;
typedef struct qgh_loops qgh_loops;

/*
 * Starts one daemon on listen_fd with flags (external event loop, suspend and
 * resume, IPv6 as the socket is) plus the caller's own; fills err when it cannot.
 */
typedef qg_status (*qgh_daemon_open)(void *arg, unsigned flags, int listen_fd,
                                     struct MHD_Daemon **out, qg_error *err);

/*
 * Binds host:port (port 0: a free one), then starts n threads, each running a
 * qg_loop that drives the daemon open() made for it. *out is new; qgh_loops_free
 * stops and frees it.
 */
qg_status qgh_loops_start(const char *host, int port, int n, qgh_daemon_open open, void *arg,
                          qgh_loops **out, qg_error *err) QG_MUSTCHECK;

/* The port bound. */
int qgh_loops_port(const qgh_loops *ls);

/*
 * After MHD_resume_connection on a loop's thread: its daemon runs once the
 * current callback returns (external mode has no wake-up of its own).
 */
void qgh_loops_resumed(void);

/* Stops accepting: every daemon lets go of the listening socket, which then closes. */
void qgh_loops_quiesce(qgh_loops *ls);

/* Stops the loops and their daemons (no connection may still be suspended), frees ls. */
void qgh_loops_free(qgh_loops *ls);

#endif
