/* watch.c: one thread that notices clients hanging up while their request runs. */
#ifndef QGH_WATCH_H
#define QGH_WATCH_H

#include <stdbool.h>
#include <stdint.h>
#include "querygate/querygate.h"

struct qgh_cancel;

/* True when the peer of socket fd closed or shut down its side (no wait). */
bool qgh_client_gone(int fd);

/* One watched request; lives in the request, linked while it runs. */
struct qgh_watch_entry {
    struct qgh_watch_entry *next;
    uint64_t id;     /* names it in the epoll set: a stale event cannot hit a new entry */
    int fd;
    struct qgh_cancel *cancel;
    bool cancelling; /* the watcher is cancelling its statement right now */
};

typedef struct qgh_watch qgh_watch;

/* One thread watching the sockets of running requests. Free with qgh_watch_free. */
qg_status qgh_watch_new(qgh_watch **out, qg_error *err) QG_MUSTCHECK;
/* From now until qgh_watch_remove: a hang-up on fd sets cs->gone and cancels cs->conn. */
void qgh_watch_add(qgh_watch *w, struct qgh_watch_entry *e, int fd, struct qgh_cancel *cs);
/* Stops watching e; once it returns the watcher no longer touches e or its cancel. */
void qgh_watch_remove(qgh_watch *w, struct qgh_watch_entry *e);
/* Stops the thread (nothing may be watched any more) and frees w. NULL is allowed. */
void qgh_watch_free(qgh_watch *w);

#endif
