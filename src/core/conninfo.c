/* Connection parameters: DATABASE_URL through libpq's parser, our defaults and SSL rule, redaction. */
#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core_private.h"

/* What qgp_conninfo.storage points to. */
struct ci_store {
    PQconninfoOption *opts; /* the parsed URL; values point into it */
    const char **kw;
    const char **val;
    char *options;          /* the combined `options` value, or NULL */
    char num[4][24];        /* keepalives_idle, _interval, _count, connect_timeout */
};

/* ---- URIs and libpq's messages ----------------------------------------- */

/* Length of "scheme" when s starts with "scheme://", else 0. */
static size_t uri_scheme_len(const char *s, size_t len)
{
    size_t n = 0;
    if (!len || !isalpha((unsigned char)s[0]))
        return 0;
    while (n < len && (isalnum((unsigned char)s[n]) || s[n] == '+' || s[n] == '-' || s[n] == '.'))
        n++;
    return n + 3 <= len && !memcmp(s + n, "://", 3) ? n : 0;
}

static bool is_keyword(const PQconninfoOption *all, const char *s, size_t n)
{
    for (; all && all->keyword; all++)
        if (strlen(all->keyword) == n && !memcmp(all->keyword, s, n))
            return true;
    return false;
}

/*
 * libpq's message with each quoted part replaced by "..." unless it is a single
 * character or a connection keyword: libpq quotes pieces of the string it
 * parsed, and those may be pieces of the password.
 */
static void sanitize_libpq_message(const char *msg, char *dst, size_t size)
{
    char *e = NULL;
    PQconninfoOption *all = PQconninfoParse("", &e);
    PQfreemem(e);
    size_t o = 0;
    for (const char *p = msg; *p && o + 6 < size; p++) {
        const char *close = *p == '"' ? strchr(p + 1, '"') : NULL;
        if (!close) {
            dst[o++] = *p == '\n' ? ' ' : *p;
            continue;
        }
        size_t n = (size_t)(close - p - 1);
        bool keep = n == 1 || is_keyword(all, p + 1, n);
        int w = keep ? snprintf(dst + o, size - o, "\"%.*s\"", (int)n, p + 1)
                     : snprintf(dst + o, size - o, "\"...\"");
        o = w > 0 && (size_t)w < size - o ? o + (size_t)w : o;
        p = close;
    }
    while (o && dst[o - 1] == ' ')
        o--;
    dst[o] = '\0';
    PQconninfoFree(all);
}

/* The error for a DATABASE_URL libpq cannot parse; never quotes the value itself. */
static qg_status parse_error(const char *url, const char *libpq_msg, qg_error *err)
{
    size_t n = uri_scheme_len(url, strlen(url));
    if (n && strncmp(url, "postgresql://", 13) && strncmp(url, "postgres://", 11))
        return qg_error_set(err, QG_ERR_CONFIG,
                            "DATABASE_URL has the unknown scheme \"%.*s\"; use a postgresql:// "
                            "or postgres:// URI, or a libpq key=value string",
                            (int)(n > 32 ? 32 : n), url);
    if (!libpq_msg)
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory parsing DATABASE_URL");
    char clean[300];
    sanitize_libpq_message(libpq_msg, clean, sizeof clean);
    return qg_error_set(err, QG_ERR_CONFIG,
                        "DATABASE_URL is not a valid connection string (%s); use "
                        "postgresql://user:password@host:port/dbname or key=value pairs "
                        "(host=... dbname=...), with special characters percent-encoded in a URI",
                        clean);
}

/* ---- local or remote ---------------------------------------------------- */

static bool is_loopback_addr(const char *a)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, a, buf) == 1)
        return buf[0] == 127;
    if (inet_pton(AF_INET6, a, buf) != 1)
        return false;
    struct in6_addr *a6 = (struct in6_addr *)buf;
    return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && buf[12] == 127);
}

bool qgp_host_is_local(const char *host)
{
    if (!host || !*host || host[0] == '/' || host[0] == '@' || !strcasecmp(host, "localhost"))
        return true;
    size_t n = strlen(host);
    if (host[0] == '[' && n > 2 && n < 64 && host[n - 1] == ']') {
        char inner[64];
        memcpy(inner, host + 1, n - 2);
        inner[n - 2] = '\0';
        return is_loopback_addr(inner);
    }
    return is_loopback_addr(host);
}

/* Copies the index-th comma-separated piece of list into dst; false when too long. */
static bool list_item(const char *list, size_t index, char *dst, size_t size)
{
    dst[0] = '\0';
    for (; list && index; list++) {
        if (!*list)
            return true;
        if (*list == ',')
            index--;
    }
    if (!list)
        return true;
    size_t n = strcspn(list, ",");
    if (n >= size)
        return false;
    memcpy(dst, list, n);
    dst[n] = '\0';
    return true;
}

static size_t list_count(const char *list)
{
    size_t n = 1;
    for (; list && *list; list++)
        n += *list == ',';
    return n;
}

/* Entry i connects to hostaddr[i] when given, else host[i] (libpq's rule). */
static bool all_hosts_local(const char *host, const char *hostaddr)
{
    size_t n = list_count(host), na = list_count(hostaddr);
    char h[256], a[256];
    for (size_t i = 0; i < (n > na ? n : na); i++) {
        if (!list_item(host, i, h, sizeof h) || !list_item(hostaddr, i, a, sizeof a))
            return false;
        if (*a ? !is_loopback_addr(a) : !qgp_host_is_local(h))
            return false;
    }
    return true;
}

/* ---- the parameter arrays ----------------------------------------------- */

static const char *opt_val(const PQconninfoOption *o, const char *kw)
{
    for (; o->keyword; o++)
        if (!strcmp(o->keyword, kw))
            return o->val;
    return NULL;
}

/* The URL's options, then ours (later -c settings win). malloc'd; NULL when out of memory. */
static char *startup_options(const struct qg_config *cfg, const char *url_options)
{
    qg_buf b;
    qg_buf_init(&b);
    if (url_options && *url_options)
        qg_buf_printf(&b, "%s ", url_options);
    qg_buf_printf(&b, "-c statement_timeout=%d -c idle_in_transaction_session_timeout=%d "
                       "-c DateStyle=ISO -c IntervalStyle=iso_8601 -c TimeZone=UTC",
                   cfg->statement_timeout_ms, cfg->idle_tx_timeout_ms);
    return qg_buf_steal(&b, NULL);
}

static void add(struct ci_store *st, size_t *n, const char *k, const char *v)
{
    st->kw[*n] = k;
    st->val[*n] = v;
    (*n)++;
}

/*
 * The URL's own values first; then ours for what it left out.
 * NOTE: the URL wins for application_name, keepalives* and connect_timeout
 * (it is the more specific statement); PGSSLMODE wins over the URL's sslmode,
 * and `options` is the URL's followed by ours, as documented in config.h.
 */
static bool fill_arrays(struct ci_store *st, const struct qg_config *cfg, bool startup,
                        bool local, const char *role)
{
    const PQconninfoOption *o = st->opts;
    size_t n = 0;
    for (; o->keyword; o++) {
        /* NOTE: a role logs in as itself; the URL's password is never sent for it. */
        if (role && (!strcmp(o->keyword, "user") || !strcmp(o->keyword, "password")))
            continue;
        if (!o->val || (!strcmp(o->keyword, "sslmode") && cfg->sslmode) ||
            (!strcmp(o->keyword, "options") && startup) || !strcmp(o->keyword, "client_encoding"))
            continue;
        add(st, &n, o->keyword, o->val);
    }
    if (role)
        add(st, &n, "user", role);
    /* JSON is UTF-8: results must arrive in it whatever the URL asks. */
    add(st, &n, "client_encoding", "UTF8");
    if (!opt_val(st->opts, "application_name"))
        add(st, &n, "application_name", "querygate");
    if (!opt_val(st->opts, "keepalives"))
        add(st, &n, "keepalives", "1");
    static const char *const ka[] = {"keepalives_idle", "keepalives_interval", "keepalives_count",
                                     "connect_timeout"};
    double timeout = ceil(cfg->connect_timeout_s);
    int nums[] = {cfg->keepalives_idle, cfg->keepalives_interval, cfg->keepalives_count,
                  timeout < 2 ? 2 : (int)timeout};
    for (int i = 0; i < 4; i++) {
        if (opt_val(st->opts, ka[i]))
            continue;
        snprintf(st->num[i], sizeof st->num[i], "%d", nums[i]);
        add(st, &n, ka[i], st->num[i]);
    }
    if (cfg->sslmode)
        add(st, &n, "sslmode", cfg->sslmode);
    else if (!opt_val(st->opts, "sslmode") && !local)
        add(st, &n, "sslmode", "require");
    if (startup) {
        st->options = startup_options(cfg, opt_val(st->opts, "options"));
        if (!st->options)
            return false;
        add(st, &n, "options", st->options);
    }
    add(st, &n, NULL, NULL);
    return true;
}

void qgp_conninfo_free(qgp_conninfo *ci)
{
    if (!ci)
        return;
    struct ci_store *st = ci->storage;
    if (st) {
        PQconninfoFree(st->opts);
        free(st->kw);
        free(st->val);
        free(st->options);
        free(st);
    }
    free(ci->display);
    free(ci);
}

qg_status qgp_conninfo_new(const struct qg_config *cfg, bool startup, qgp_conninfo **out,
                           qg_error *err)
{
    return qgp_conninfo_new_as(cfg, startup, NULL, out, err);
}

qg_status qgp_conninfo_new_as(const struct qg_config *cfg, bool startup, const char *role,
                              qgp_conninfo **out, qg_error *err)
{
    if (out)
        *out = NULL;
    if (!cfg || !out)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "qgp_conninfo_new: cfg and out are required");
    const char *url = cfg->database_url ? cfg->database_url : "";
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &msg);
    if (!opts) {
        qg_status s = parse_error(url, msg, err);
        PQfreemem(msg);
        return s;
    }
    qgp_conninfo *ci = calloc(1, sizeof *ci);
    struct ci_store *st = calloc(1, sizeof *st);
    size_t cap = 12; /* our additions and the terminator */
    for (const PQconninfoOption *o = opts; o->keyword; o++)
        cap++;
    if (ci && st) {
        ci->storage = st;
        st->opts = opts;
        opts = NULL;
        st->kw = calloc(cap, sizeof *st->kw);
        st->val = calloc(cap, sizeof *st->val);
        ci->display = qgp_redact_conninfo(url);
    }
    PQconninfoFree(opts);
    if (!ci || !st || !st->kw || !st->val || !ci->display) {
        if (!ci)
            free(st); /* else ci->storage holds it */
        qgp_conninfo_free(ci);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory building connection parameters");
    }
    ci->local = all_hosts_local(opt_val(st->opts, "host"), opt_val(st->opts, "hostaddr"));
    if (!fill_arrays(st, cfg, startup, ci->local, role)) {
        qgp_conninfo_free(ci);
        return qg_error_set(err, QG_ERR_INTERNAL, "out of memory building connection parameters");
    }
    ci->keywords = st->kw;
    ci->values = st->val;
    *out = ci;
    return QG_OK;
}

char *qgp_session_settings_sql(const struct qg_config *cfg)
{
    if (!cfg)
        return NULL;
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_printf(&b, "SELECT set_config('statement_timeout', '%d', true), "
                       "set_config('idle_in_transaction_session_timeout', '%d', true), "
                       "set_config('DateStyle', 'ISO', true), set_config('IntervalStyle', 'iso_8601', true), "
                       "set_config('TimeZone', 'UTC', true)",
                   cfg->statement_timeout_ms, cfg->idle_tx_timeout_ms);
    return qg_buf_steal(&b, NULL);
}

/* ---- redaction ------------------------------------------------------------ */

/* True for keys whose value is a secret: password, sslpassword, *secret*. */
static bool secret_key(const char *k, size_t n)
{
    char low[128];
    if (n >= sizeof low)
        return true; /* no real keyword is this long; hide rather than guess */
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)k[i]);
    low[n] = '\0';
    return strstr(low, "password") || strstr(low, "secret");
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* secret_key() on a percent-encoded URI query key. */
static bool secret_uri_key(const char *k, size_t n)
{
    char dec[128];
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o >= sizeof dec)
            return true;
        int hi, lo;
        if (k[i] == '%' && i + 2 < n && (hi = hexval(k[i + 1])) >= 0 &&
            (lo = hexval(k[i + 2])) >= 0) {
            dec[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            dec[o++] = k[i];
        }
    }
    return secret_key(dec, o);
}

/*
 * Where redaction goes: text for a log (b set: a secret becomes its stand-in,
 * "***"), or the string itself, each secret byte overwritten with '*' (scrub
 * set: scrub and base are the same string, base read, scrub written).
 */
struct sink {
    qg_buf *b;
    char *scrub;
    const char *base;
};

static void keep(struct sink *o, const char *s, size_t n)
{
    if (o->b)
        qg_buf_append(o->b, s, n);
}

static void hide(struct sink *o, const char *s, size_t n, const char *stand_in)
{
    if (o->b)
        qg_buf_puts(o->b, stand_in);
    else
        memset(o->scrub + (s - o->base), '*', n);
}

/* Marks hide[from, to) for redact_uri. */
static void mark(bool *hide, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        hide[i] = true;
}

/*
 * A URI (s, n), with two things hidden:
 * - the password: from the first ':' of the credentials to the last '@'. libpq
 *   ends them at the first '@' before a '/', but a password may hold a raw '@'
 *   (the user's mistake, still a secret); hiding too much beats showing some;
 * - the value of every secret query key (password=, sslpassword=) up to the
 *   next '&', after any '?' or '&', since '?' may itself be in a password.
 * Returns false when out of memory (nothing written).
 */
static bool redact_uri(struct sink *o, const char *s, size_t n, size_t scheme_len)
{
    size_t start = scheme_len + 3, at = n;
    bool *hidden = calloc(n + 1, sizeof *hidden);
    if (!hidden)
        return false;
    for (size_t i = start; i < n; i++)
        if (s[i] == '@')
            at = i;
    const char *colon = at < n ? memchr(s + start, ':', at - start) : NULL;
    if (colon)
        mark(hidden, (size_t)(colon - s) + 1, at);
    for (size_t i = start; i < n; i++) {
        if (s[i] != '?' && s[i] != '&')
            continue;
        size_t k = i + 1, end = k;
        while (end < n && s[end] != '&')
            end++;
        const char *eq = memchr(s + k, '=', end - k);
        if (eq && secret_uri_key(s + k, (size_t)(eq - s) - k))
            mark(hidden, (size_t)(eq - s) + 1, end);
    }
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && hidden[j] == hidden[i])
            j++;
        if (hidden[i])
            hide(o, s + i, j - i, "***");
        else
            keep(o, s + i, j - i);
        i = j;
    }
    free(hidden);
    return true;
}

/* A key=value token that is not a secret; a URI inside one (dbname=postgresql://...) is redacted too. */
static bool put_token(struct sink *o, const char *s, size_t n)
{
    const char *sep = NULL;
    for (size_t i = 0; i + 2 < n && !sep; i++)
        if (!memcmp(s + i, "://", 3))
            sep = s + i;
    if (!sep) {
        keep(o, s, n);
        return true;
    }
    size_t before = (size_t)(sep - s);
    size_t from = before; /* the scheme starts after the last non-scheme character */
    while (from && (isalnum((unsigned char)s[from - 1]) || strchr("+-.", s[from - 1])))
        from--;
    keep(o, s, from);
    return redact_uri(o, s + from, n - from, before - from);
}

/* Length of a key=value value at s: quoted ('...' with \ escapes) or up to whitespace. */
static size_t kv_value_len(const char *s)
{
    size_t i = 0;
    if (s[0] == '\'') {
        for (i = 1; s[i] && s[i] != '\''; i++)
            if (s[i] == '\\' && s[i + 1])
                i++;
        return s[i] ? i + 1 : i;
    }
    for (; s[i] && !isspace((unsigned char)s[i]); i++)
        if (s[i] == '\\' && s[i + 1])
            i++;
    return i;
}

/* key=value pairs as libpq reads them, kept as written except secret values. */
static bool redact_kv(struct sink *o, const char *s)
{
    bool ok = true;
    while (*s && ok) {
        size_t ws = strspn(s, " \t\n\r\f\v");
        keep(o, s, ws);
        s += ws;
        size_t k = strcspn(s, "= \t\n\r\f\v");
        bool secret = k && secret_key(s, k);
        ok = put_token(o, s, k);
        s += k;
        size_t ws2 = strspn(s, " \t\n\r\f\v");
        if (s[ws2] != '=') {
            if (secret && *s) { /* "password secret": the value's '=' is missing */
                hide(o, s, strlen(s), " ***");
                break;
            }
            continue;
        }
        if (!k && !ws2) { /* a '=' without a key */
            keep(o, s, 1);
            s++;
            continue;
        }
        ws = ws2 + 1 + strspn(s + ws2 + 1, " \t\n\r\f\v");
        keep(o, s, ws);
        s += ws;
        size_t v = kv_value_len(s);
        if (secret)
            hide(o, s, v, s[0] == '\'' ? "'***'" : "***");
        else
            ok = put_token(o, s, v);
        s += v;
    }
    return ok;
}

/* DATABASE_URL in either of libpq's forms. */
static bool redact(struct sink *o, const char *s)
{
    size_t ws = strspn(s, " \t\n\r\f\v"), n = strlen(s);
    size_t scheme = uri_scheme_len(s + ws, n - ws);
    if (!scheme)
        return redact_kv(o, s);
    keep(o, s, ws);
    return redact_uri(o, s + ws, n - ws, scheme);
}

char *qgp_redact_conninfo(const char *conninfo)
{
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_puts(&b, "");
    struct sink o = {.b = &b};
    if (!redact(&o, conninfo ? conninfo : ""))
        b.oom = true;
    return qg_buf_steal(&b, NULL);
}

void qg_conninfo_scrub(char *conninfo)
{
    if (!conninfo)
        return;
    struct sink o = {.scrub = conninfo, .base = conninfo};
    /* NOTE: out of memory, all of it goes: a password must not stay for want of a copy. */
    if (!redact(&o, conninfo))
        memset(conninfo, '*', strlen(conninfo));
}

/* The length of a postgresql:// or postgres:// prefix, else 0. */
static size_t pg_uri_prefix(const char *s)
{
    if (!strncmp(s, "postgresql://", 13))
        return 13;
    return strncmp(s, "postgres://", 11) ? 0 : 11;
}

void qgp_url_list_free(char **urls, int n)
{
    for (int i = 0; urls && i < n; i++)
        free(urls[i]);
    free(urls);
}

qg_status qgp_url_list(const char *list, char ***urls, int *n, qg_error *err)
{
    *urls = NULL;
    *n = 0;
    char **out = NULL;
    int count = 0;
    const char *p = list;
    while (p && *p) {
        p += strspn(p, " \t");
        if (!*p)
            break;
        if (!pg_uri_prefix(p)) {
            char *shown = qgp_redact_conninfo(p);
            qg_error_set(err, QG_ERR_CONFIG,
                         "DATABASE_READ_URLS: \"%.80s\" is not a postgresql:// URI; list one "
                         "URI per replica, separated by commas", shown ? shown : "?");
            free(shown);
            qgp_url_list_free(out, count);
            return QG_ERR_CONFIG;
        }
        const char *end = p + pg_uri_prefix(p);
        while (*end) {
            if (*end == ',') {
                const char *next = end + 1 + strspn(end + 1, " \t");
                if (pg_uri_prefix(next) || !*next)
                    break;
            }
            end++;
        }
        size_t len = (size_t)(end - p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        char **grown = realloc(out, sizeof *out * (size_t)(count + 1));
        char *one = grown ? strndup(p, len) : NULL;
        if (!one) {
            qgp_url_list_free(grown ? grown : out, count);
            return qg_error_set(err, QG_ERR_INTERNAL, "out of memory reading DATABASE_READ_URLS");
        }
        out = grown;
        out[count++] = one;
        p = *end ? end + 1 : end;
    }
    *urls = out;
    *n = count;
    return QG_OK;
}
