/* Named queries: the NAME.sql files of QUERIES_DIR, checked with the statement parser, kept as a reference-counted set. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core_private.h"
#include "querygate/queries.h"

struct entry {
    struct qg_query q; /* what callers see; points at the fields below */
    char *name;
    char *sql;
    char **params;
};

struct qg_queries {
    atomic_uint refs;
    size_t n;
    struct entry *e; /* sorted by name */
};

const char *qg_query_mode_name(enum qg_query_mode mode)
{
    return mode == QG_QUERY_WRITE ? "write" : "read";
}

static void entry_free(struct entry *e)
{
    for (size_t i = 0; e->params && i < e->q.nparams; i++)
        free(e->params[i]);
    free(e->params);
    free(e->name);
    free(e->sql);
}

static void set_free(qg_queries *q)
{
    for (size_t i = 0; i < q->n; i++)
        entry_free(&q->e[i]);
    free(q->e);
    free(q);
}

qg_queries *qg_queries_ref(qg_queries *q)
{
    if (q)
        atomic_fetch_add_explicit(&q->refs, 1, memory_order_relaxed);
    return q;
}

void qg_queries_unref(qg_queries *q)
{
    if (q && atomic_fetch_sub_explicit(&q->refs, 1, memory_order_acq_rel) == 1)
        set_free(q);
}

size_t qg_queries_count(const qg_queries *q)
{
    return q ? q->n : 0;
}

const struct qg_query *qg_queries_at(const qg_queries *q, size_t i)
{
    return q && i < q->n ? &q->e[i].q : NULL;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

const struct qg_query *qg_queries_find(const qg_queries *q, const char *name)
{
    if (!q || !q->n || !name)
        return NULL;
    struct entry key = {.name = (char *)name};
    const struct entry *e = bsearch(&key, q->e, q->n, sizeof *q->e, by_name);
    return e ? &e->q : NULL;
}

/* ---- one file ------------------------------------------------------------- */

/* What one file's messages start with. */
struct where {
    const char *dir, *file;
};

static qg_status fail(qg_error *err, const struct where *w, const char *what)
{
    return qg_error_set(err, QG_ERR_CONFIG, "QUERIES_DIR %.200s: %.100s: %s", w->dir, w->file,
                        what);
}

/* NAME of NAME.sql: it becomes a path segment, /queries/NAME. */
static bool valid_name(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* The whole file; *text is malloc'd and NUL-terminated. */
static qg_status read_file(const char *path, const struct where *w, char **text, size_t *len,
                           qg_error *err)
{
    char why[160];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, sizeof why, "cannot open it (%s)", strerror(errno));
        if (fd >= 0)
            close(fd);
        return fail(err, w, why);
    }
    if (!S_ISREG(st.st_mode) || st.st_size > QG_QUERY_MAX_BYTES) {
        close(fd);
        snprintf(why, sizeof why, "%s", "not a regular file");
        if (S_ISREG(st.st_mode))
            snprintf(why, sizeof why, "larger than %d bytes", QG_QUERY_MAX_BYTES);
        return fail(err, w, why);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    int e = errno;
    close(fd);
    if (!buf)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory reading QUERIES_DIR");
    if (got < (size_t)st.st_size) {
        free(buf);
        snprintf(why, sizeof why, "cannot read it (%s)", e ? strerror(e) : "it got shorter");
        return fail(err, w, why);
    }
    buf[got] = '\0';
    *text = buf;
    *len = got;
    return QG_OK;
}

static const char *skip_blanks(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/*
 * The mode of the header line `-- querygate: read|write` (any case, any
 * blanks). A first line that is no such header means read; one that starts
 * like it but names neither mode is an error, so that a typo never turns a
 * write into a read.
 */
static qg_status header_mode(const char *s, size_t n, const struct where *w,
                             enum qg_query_mode *mode, qg_error *err)
{
    *mode = QG_QUERY_READ;
    const char *nl = memchr(s, '\n', n);
    const char *end = nl ? nl : s + n;
    const char *p = skip_blanks(s, end);
    if (end - p < 2 || p[0] != '-' || p[1] != '-')
        return QG_OK;
    p = skip_blanks(p + 2, end);
    if (end - p < 9 || strncasecmp(p, "querygate", 9))
        return QG_OK;
    p = skip_blanks(p + 9, end);
    if (p == end || *p != ':')
        return QG_OK;
    p = skip_blanks(p + 1, end);
    const char *word = p;
    while (p < end && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'))
        p++;
    size_t wlen = (size_t)(p - word);
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    if (p == end && wlen == 4 && !strncasecmp(word, "read", 4))
        return QG_OK;
    if (p == end && wlen == 5 && !strncasecmp(word, "write", 5)) {
        *mode = QG_QUERY_WRITE;
        return QG_OK;
    }
    return fail(err, w, "the first line must be \"-- querygate: read\" or "
                        "\"-- querygate: write\" (or no such header: read)");
}

/* The 1-based line of a 1-based character position in s. */
static int line_of(const char *s, size_t n, int position)
{
    int line = 1, chars = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) == 0x80)
            continue;
        if (++chars >= position)
            break;
        line += s[i] == '\n';
    }
    return line;
}

/* The parser's verdict on the file, as a start-up message. */
static qg_status parse_failed(const char *text, size_t len, const struct where *w,
                              const qg_error *perr, qg_error *err)
{
    if (perr->status == QG_ERR_INTERNAL)
        return qg_error_set(err, QG_ERR_INTERNAL, "%s", perr->message);
    char why[sizeof err->message];
    int line = perr->position > 0 ? line_of(text, len, perr->position) : 0;
    if (perr->status == QG_ERR_MULTIPLE_STATEMENTS)
        snprintf(why, sizeof why, "holds more than one statement (the second starts on line "
                                  "%d); put each in a file of its own", line);
    else if (line)
        snprintf(why, sizeof why, "line %d: %.300s", line, perr->message);
    else
        snprintf(why, sizeof why, "%.300s", perr->message);
    return fail(err, w, why);
}

/* Parses text into e (which takes it): mode, the statement's parameter names. */
static qg_status parse_query(char *text, size_t len, const struct where *w, struct entry *e,
                             qg_error *err)
{
    e->sql = text;
    /* An editor's UTF-8 byte order mark is no SQL. */
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
        memmove(text, text + 3, (len -= 3) + 1);
    qg_status s = header_mode(text, len, w, &e->q.mode, err);
    if (s != QG_OK)
        return s;
    qgp_sql *ps = NULL;
    qg_error perr;
    qg_error_clear(&perr);
    if (qgp_sql_parse(text, len, &ps, &perr) != QG_OK)
        return parse_failed(text, len, w, &perr, err);
    if (ps->kind != QGP_SQL_PLAIN) {
        qgp_sql_free(ps);
        return fail(err, w, "holds a statement the service does not run (transaction "
                            "control such as BEGIN or COMMIT, or COPY)");
    }
    e->params = calloc((size_t)ps->nparams + 1, sizeof *e->params);
    for (int i = 0; e->params && i < ps->nparams; i++) {
        if (!(e->params[i] = strdup(ps->names[i]))) {
            s = QG_ERR_INTERNAL;
            break;
        }
        e->q.nparams = (size_t)i + 1;
    }
    qgp_sql_free(ps);
    if (!e->params || s != QG_OK)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory reading QUERIES_DIR");
    /* The strings are the entry's own, so moving the entry (the sort) keeps these valid. */
    e->q.name = e->name;
    e->q.sql = e->sql;
    e->q.params = (const char *const *)e->params;
    return QG_OK;
}

static qg_status load_one(const char *dir, const char *file, struct entry *e, qg_error *err)
{
    struct where w = {dir, file};
    size_t n = strlen(file) - 4; /* ".sql" */
    if (!valid_name(file, n))
        return fail(err, &w, "the name before .sql may hold only A-Z a-z 0-9 _ - "
                             "(it becomes the path /queries/NAME)");
    if (!(e->name = strndup(file, n)))
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory reading QUERIES_DIR");
    size_t plen = strlen(dir) + strlen(file) + 2;
    char *path = malloc(plen);
    if (!path)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory reading QUERIES_DIR");
    snprintf(path, plen, "%s/%s", dir, file);
    char *text = NULL;
    size_t len = 0;
    qg_status s = read_file(path, &w, &text, &len, err);
    free(path);
    return s == QG_OK ? parse_query(text, len, &w, e, err) : s;
}

/* ---- the folder ----------------------------------------------------------- */

static bool is_query_file(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 4 && !strcmp(name + n - 4, ".sql");
}

/* The NAME.sql file names of dir, sorted (*names malloc'd, each entry too). */
static qg_status list_files(const char *dir, char ***names, size_t *count, qg_error *err)
{
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return qg_error_set(err, QG_ERR_CONFIG, "QUERIES_DIR %.200s: cannot open it (%s)", dir,
                            strerror(errno));
    qg_status s = QG_OK;
    size_t cap = 0;
    for (struct dirent *de; s == QG_OK && (de = readdir(d));) {
        if (!is_query_file(de->d_name))
            continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(*names, cap * sizeof *grown);
            if (!grown) {
                s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory reading QUERIES_DIR");
                break;
            }
            *names = grown;
        }
        if (!((*names)[*count] = strdup(de->d_name)))
            s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory reading QUERIES_DIR");
        else
            (*count)++;
    }
    closedir(d);
    return s;
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

qg_status qg_queries_load(const char *dir, qg_queries **out, qg_error *err)
{
    *out = NULL;
    qg_queries *q = calloc(1, sizeof *q);
    if (!q)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory reading QUERIES_DIR");
    atomic_init(&q->refs, 1);
    if (!dir || !*dir) {
        *out = q;
        return QG_OK;
    }
    char **files;
    size_t n;
    qg_status s = list_files(dir, &files, &n, err);
    if (s == QG_OK && n && !(q->e = calloc(n, sizeof *q->e)))
        s = qg_error_set(err, QG_ERR_INTERNAL, "out of memory reading QUERIES_DIR");
    /* Sorted, so that of several bad files the same one is named every time. */
    if (s == QG_OK)
        qsort(files, n, sizeof *files, by_string);
    for (size_t i = 0; s == QG_OK && i < n; i++) {
        s = load_one(dir, files[i], &q->e[i], err);
        q->n = i + 1; /* a failed entry is freed with the rest */
    }
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
    if (s != QG_OK) {
        set_free(q);
        return s;
    }
    /* By NAME for qg_queries_find: "a-b.sql" sorts before "a.sql", but "a" before "a-b". */
    if (q->n)
        qsort(q->e, q->n, sizeof *q->e, by_name);
    *out = q;
    return QG_OK;
}
