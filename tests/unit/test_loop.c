/* The event loop (src/core/loop.c): fds, timers, posts, offloaded work, stop. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qgtest.h"
#include "querygate/loop.h"
#include "querygate/util.h"

static qg_loop *new_loop(void)
{
    qg_loop *l = NULL;
    qg_error err;
    qg_error_clear(&err);
    CHECK_INT(qg_loop_new(&l, &err), QG_OK);
    if (!l) {
        fprintf(stderr, "qg_loop_new: %s\n", err.message);
        exit(1);
    }
    return l;
}

static void stop_fn(void *arg)
{
    qg_loop_stop(arg);
}

/* A guard: the test fails rather than hangs when a loop never stops. */
static qg_loop_timer *guard(qg_loop *l)
{
    qg_loop_timer *t = qg_loop_timer_new(l, stop_fn, l);
    qg_loop_timer_at(t, qg_now() + 5);
    return t;
}

/* ---- io ------------------------------------------------------------------ */

struct io_state {
    qg_loop *l;
    qg_loop_io *io;
    int fd;
    unsigned seen;
    int calls;
};

static void on_read(void *arg, unsigned events)
{
    struct io_state *s = arg;
    s->seen |= events;
    s->calls++;
    char buf[16];
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n > 0) {
        CHECK_INT(n, 2);
        CHECK(memcmp(buf, "hi", 2) == 0);
    }
    qg_loop_stop(s->l);
}

static void on_write(void *arg, unsigned events)
{
    struct io_state *s = arg;
    s->seen |= events;
    s->calls++;
    /* Silent from now on: must not be called again, nor spin the loop. */
    CHECK(qg_loop_io_set(s->io, 0));
}

static void io_readiness(void)
{
    qg_loop *l = new_loop();
    qg_loop_timer *g = guard(l);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);

    struct io_state w = {.l = l, .fd = sv[0]};
    w.io = qg_loop_io_new(l, sv[0], QG_LOOP_WRITE, on_write, &w);
    CHECK(w.io != NULL);
    struct io_state r = {.l = l, .fd = sv[1]};
    r.io = qg_loop_io_new(l, sv[1], QG_LOOP_READ, on_read, &r);
    CHECK(r.io != NULL);
    CHECK(write(sv[0], "hi", 2) == 2);
    qg_loop_run(l);
    CHECK_INT(w.calls, 1);
    CHECK_INT(w.seen, QG_LOOP_WRITE);
    CHECK_INT(r.calls, 1);
    CHECK_INT(r.seen, QG_LOOP_READ);

    /* The peer closes: READ always, HUP only where asked for. */
    r.seen = 0;
    r.calls = 0;
    struct io_state h = {.l = l, .fd = sv[1]};
    qg_loop_io_free(r.io);
    h.io = qg_loop_io_new(l, sv[1], QG_LOOP_READ | QG_LOOP_HUP, on_read, &h);
    CHECK(h.io != NULL);
    qg_loop_io_free(w.io);
    close(sv[0]);
    qg_loop_run(l);
    CHECK(h.seen & QG_LOOP_READ);
    CHECK(h.seen & QG_LOOP_HUP);
    qg_loop_io_free(h.io);

    /* A silent io on a hung-up fd: the loop sleeps until its timer. */
    struct io_state q = {.l = l, .fd = sv[1]};
    q.io = qg_loop_io_new(l, sv[1], 0, on_read, &q);
    CHECK(q.io != NULL);
    qg_loop_timer *t = qg_loop_timer_new(l, stop_fn, l);
    qg_loop_timer_at(t, qg_now() + 0.02);
    qg_loop_run(l);
    CHECK_INT(q.calls, 0);
    qg_loop_io_free(q.io);
    qg_loop_timer_free(t);
    close(sv[1]);

    /* A regular file cannot be watched: NULL with errno. */
    FILE *f = tmpfile();
    errno = 0;
    CHECK(qg_loop_io_new(l, fileno(f), QG_LOOP_READ, on_read, NULL) == NULL);
    CHECK_INT(errno, EPERM);
    fclose(f);

    qg_loop_timer_free(g);
    qg_loop_free(l);
}

/* Two readable fds in one batch; whichever runs first frees the other, and itself. */
struct pair {
    qg_loop *l;
    qg_loop_io *io[2];
    int fd[2];
    int calls;
};

static void free_both(void *arg, unsigned events)
{
    (void)events;
    struct pair *p = arg;
    p->calls++;
    qg_loop_io_free(p->io[0]);
    qg_loop_io_free(p->io[1]);
}

static void io_free_in_batch(void)
{
    qg_loop *l = new_loop();
    qg_loop_timer *g = guard(l);
    int a[2], b[2];
    CHECK(pipe(a) == 0 && pipe(b) == 0);
    CHECK(write(a[1], "x", 1) == 1 && write(b[1], "y", 1) == 1);
    struct pair p = {.l = l};
    p.io[0] = qg_loop_io_new(l, a[0], QG_LOOP_READ, free_both, &p);
    p.io[1] = qg_loop_io_new(l, b[0], QG_LOOP_READ, free_both, &p);
    CHECK(p.io[0] && p.io[1]);
    /* Not stopped from the callback: that would end the batch before the second event. */
    qg_loop_timer *t = qg_loop_timer_new(l, stop_fn, l);
    qg_loop_timer_at(t, qg_now() + 0.02);
    qg_loop_run(l);
    CHECK_INT(p.calls, 1);
    qg_loop_timer_free(t);
    qg_loop_timer_free(g);
    qg_loop_free(l);
    close(a[0]), close(a[1]), close(b[0]), close(b[1]);
}

/* ---- timers -------------------------------------------------------------- */

struct timers {
    qg_loop *l;
    qg_loop_timer *t[5], *end;
    char order[16];
    int n;
    int rearms;
};

static void tick(struct timers *s, char c)
{
    if (s->n < 15)
        s->order[s->n++] = c;
}

static void t_a(void *arg) /* re-arms itself twice, then arms the end */
{
    struct timers *s = arg;
    tick(s, 'a');
    if (s->rearms++ < 2)
        qg_loop_timer_at(s->t[0], qg_now() + 0.03);
    else
        qg_loop_timer_at(s->end, qg_now() + 0.01);
}

static void t_b(void *arg) /* stops d and frees itself */
{
    struct timers *s = arg;
    tick(s, 'b');
    qg_loop_timer_stop(s->t[3]);
    CHECK(!qg_loop_timer_armed(s->t[3]));
    qg_loop_timer_free(s->t[1]);
    s->t[1] = NULL;
}

static void t_c(void *arg) /* frees e, armed for the same moment */
{
    struct timers *s = arg;
    tick(s, 'c');
    qg_loop_timer_free(s->t[4]);
    s->t[4] = NULL;
}

static void t_d(void *arg)
{
    tick(arg, 'd');
}

static void t_end(void *arg)
{
    struct timers *s = arg;
    tick(s, 'z');
    qg_loop_stop(s->l);
}

static void timers(void)
{
    qg_loop *l = new_loop();
    qg_loop_timer *g = guard(l);
    struct timers s = {.l = l};
    s.t[0] = qg_loop_timer_new(l, t_a, &s);
    s.t[1] = qg_loop_timer_new(l, t_b, &s);
    s.t[2] = qg_loop_timer_new(l, t_c, &s);
    s.t[3] = qg_loop_timer_new(l, t_d, &s);
    s.t[4] = qg_loop_timer_new(l, t_d, &s);
    s.end = qg_loop_timer_new(l, t_end, &s);
    double now = qg_now();
    CHECK(!qg_loop_timer_armed(s.t[3]));
    qg_loop_timer_at(s.t[3], now + 0.05);
    qg_loop_timer_at(s.t[2], now + 0.02);
    qg_loop_timer_at(s.t[4], now + 0.02 + 1e-9);
    qg_loop_timer_at(s.t[1], now + 0.01);
    qg_loop_timer_at(s.t[0], now + 0.005);
    CHECK(qg_loop_timer_armed(s.t[3]));
    qg_loop_run(l);
    /* a at 5 ms, 35 ms, 65 ms; b at 10 ms stops d (50 ms); c at 20 ms frees e; the
       end comes after d's time. Late callbacks (a busy machine) keep this order. */
    CHECK_STR(s.order, "abcaaz");
    CHECK(qg_now() - now >= 0.065);
    for (int i = 0; i < 5; i++)
        qg_loop_timer_free(s.t[i]);
    qg_loop_timer_free(s.end);
    qg_loop_timer_free(g);
    qg_loop_free(l);
}

/* Many timers at random moments come out sorted (the heap's order). */
struct sorted {
    qg_loop *l;
    double last_at;
    int left;
    bool ordered;
};

struct one {
    struct sorted *s;
    double at;
};

static void t_one(void *arg)
{
    struct one *o = arg;
    if (o->at < o->s->last_at)
        o->s->ordered = false;
    o->s->last_at = o->at;
    if (--o->s->left == 0)
        qg_loop_stop(o->s->l);
}

static void timer_heap_order(void)
{
    enum { N = 200 };
    qg_loop *l = new_loop();
    qg_loop_timer *g = guard(l);
    struct sorted s = {.l = l, .left = N, .ordered = true};
    struct one ones[N];
    qg_loop_timer *t[N];
    double base = qg_now();
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        ones[i] = (struct one){&s, base + (double)(seed % 30000) / 1e6};
        t[i] = qg_loop_timer_new(l, t_one, &ones[i]);
        qg_loop_timer_at(t[i], ones[i].at);
    }
    /* Stopping some and re-arming others exercises removal from the middle. */
    for (int i = 0; i < N; i += 7)
        qg_loop_timer_stop(t[i]);
    for (int i = 0; i < N; i += 14) {
        ones[i].at = base + 0.031 + i / 1e6;
        qg_loop_timer_at(t[i], ones[i].at);
    }
    int stopped = 0;
    for (int i = 0; i < N; i++)
        stopped += !qg_loop_timer_armed(t[i]);
    s.left = N - stopped;
    qg_loop_run(l);
    CHECK_INT(s.left, 0);
    CHECK(s.ordered);
    for (int i = 0; i < N; i++)
        qg_loop_timer_free(t[i]);
    qg_loop_timer_free(g);
    qg_loop_free(l);
}

/* ---- posts and offload ---------------------------------------------------- */

enum { POSTS = 2000 };

struct posts {
    qg_loop *l;
    int next[2];
    int got;
    bool in_order;
    bool on_loop;
};

struct post_item {
    struct posts *s;
    int from, seq;
};

static struct post_item items[2][POSTS];

static void on_post(void *arg)
{
    struct post_item *it = arg;
    struct posts *s = it->s;
    if (qg_loop_current() != s->l)
        s->on_loop = false;
    if (it->seq != s->next[it->from])
        s->in_order = false;
    s->next[it->from]++;
    if (++s->got == 2 * POSTS)
        qg_loop_stop(s->l);
}

struct poster {
    qg_loop *l;
    int from;
};

static void *poster_main(void *arg)
{
    struct poster *p = arg;
    for (int i = 0; i < POSTS; i++)
        CHECK(qg_loop_post(p->l, on_post, &items[p->from][i]));
    return NULL;
}

static void posts_in_order(void)
{
    qg_loop *l = new_loop();
    qg_loop_timer *g = guard(l);
    struct posts s = {.l = l, .in_order = true, .on_loop = true};
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < POSTS; i++)
            items[f][i] = (struct post_item){&s, f, i};
    CHECK(qg_loop_current() == NULL);
    pthread_t th[2];
    struct poster p[2] = {{l, 0}, {l, 1}};
    for (int f = 0; f < 2; f++)
        CHECK(pthread_create(&th[f], NULL, poster_main, &p[f]) == 0);
    qg_loop_run(l);
    for (int f = 0; f < 2; f++)
        pthread_join(th[f], NULL);
    CHECK(qg_loop_current() == NULL);
    CHECK_INT(s.got, 2 * POSTS);
    CHECK(s.in_order);
    CHECK(s.on_loop);

    /* Posted while stopped: kept for the next run, still in order; a posted stop ends
       that run. */
    s.got = 0;
    s.next[0] = 0;
    CHECK(qg_loop_post(l, on_post, &items[0][0]));
    CHECK(qg_loop_post(l, on_post, &items[0][1]));
    CHECK(qg_loop_post(l, stop_fn, l));
    qg_loop_run(l);
    CHECK_INT(s.got, 2);
    CHECK(s.in_order);
    /* Left in the queue: freed with the loop (ASan checks). */
    CHECK(qg_loop_post(l, on_post, &items[0][2]));
    qg_loop_timer_free(g);
    qg_loop_free(l);
}

struct job {
    qg_loop *l;
    pthread_t loop_thread;
    bool work_off_loop;
    bool done_on_loop;
    int value;
};

static atomic_int jobs_left;

static void job_work(void *arg)
{
    struct job *j = arg;
    j->work_off_loop = !pthread_equal(pthread_self(), j->loop_thread) && qg_loop_current() == NULL;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    j->value *= 2;
}

static void job_done(void *arg)
{
    struct job *j = arg;
    j->done_on_loop = pthread_equal(pthread_self(), j->loop_thread) && qg_loop_current() == j->l;
    if (atomic_fetch_sub(&jobs_left, 1) == 1)
        qg_loop_stop(j->l);
}

static void offload(void)
{
    enum { N = 40 }; /* more than the 16 helper threads: the rest wait their turn */
    qg_loop *l = new_loop();
    qg_loop_timer *g = guard(l);
    struct job jobs[N];
    atomic_store(&jobs_left, N);
    for (int round = 0; round < 2; round++) {
        atomic_store(&jobs_left, N);
        for (int i = 0; i < N; i++) {
            jobs[i] = (struct job){.l = l, .loop_thread = pthread_self(), .value = i};
            CHECK(qg_loop_offload(l, job_work, job_done, &jobs[i]));
        }
        qg_loop_run(l);
        CHECK_INT(atomic_load(&jobs_left), 0);
        for (int i = 0; i < N; i++) {
            CHECK(jobs[i].work_off_loop);
            CHECK(jobs[i].done_on_loop);
            CHECK_INT(jobs[i].value, 2 * i);
        }
        /* Shut down, and then the pool starts again on demand. */
        qg_loop_offload_shutdown();
        qg_loop_offload_shutdown();
    }
    qg_loop_timer_free(g);
    qg_loop_free(l);
}

/* qg_loop_stop from another thread wakes a loop with nothing to do. */
static void *stopper_main(void *arg)
{
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    qg_loop_stop(arg);
    return NULL;
}

static void stop_from_thread(void)
{
    qg_loop *l = new_loop();
    pthread_t th;
    CHECK(pthread_create(&th, NULL, stopper_main, l) == 0);
    qg_loop_run(l);
    pthread_join(th, NULL);
    qg_loop_free(l);
}

int main(void)
{
    RUN(io_readiness);
    RUN(io_free_in_batch);
    RUN(timers);
    RUN(timer_heap_order);
    RUN(posts_in_order);
    RUN(offload);
    RUN(stop_from_thread);
    return qgt_done();
}
