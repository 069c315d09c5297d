/* Rewrites :name parameters to $n by PostgreSQL's lexical rules, with a position map. */
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core_private.h"

/*
 * The rules, in one place (the contract lists the quoting rules; the rest is ours):
 *
 * - One left-to-right pass over PostgreSQL's tokens. Never a parameter inside
 *   '...' (with '' doubling; backslash is literal: standard_conforming_strings
 *   is on, PostgreSQL's default since 9.1, and the pool resets a session that
 *   changed it), E'...' (backslash escapes, \' included; E only at a token
 *   start: `type'x'` is a plain string after an identifier), "..." (with ""),
 *   $$...$$ and $tag$...$tag$ (tag = identifier chars, not starting with a
 *   digit; a `$` inside an identifier such as a$b$ starts nothing), -- line
 *   comments and nested block comments. U&'..' and N'..' lex as plain
 *   strings; B'..' and X'..' end at the first quote ('' does not double).
 * - `:name` (name [A-Za-z_][A-Za-z0-9_]*) is a parameter where the colon starts
 *   a token, so NOT when the colon directly follows another colon (`::` is a
 *   cast: `:id::int` is parameter id, then a cast; `x::text` has none) nor when
 *   it is glued to the end of an identifier or number: `arr[lo:hi]` and
 *   `arr[1:n]` are slices by columns, as PostgreSQL reads them. Replacing the
 *   colon there could only give broken SQL (`arr[1$1]`) or another identifier
 *   (`a:b` -> `a$1`). A parameter as a slice bound needs a space:
 *   `arr[1: :n]`. This is SQLAlchemy text()'s rule too, which callers of the
 *   seed service relied on (SQLAlchemy, unlike us, also matches in quotes).
 * - `\:` outside quotes and comments is a literal colon (the backslash goes).
 * - A name followed by `$` or a non-ASCII byte (`:café`) is refused rather than
 *   cut short; so is a positional `$1` (it would alias our numbering).
 * - The statement ends at the first `;` outside quotes and comments; after it
 *   only whitespace, comments and further `;` may follow, and all of that is
 *   dropped from the rewritten text. Anything else is multiple_statements.
 * - String literals continue across whitespace holding a newline (and --
 *   comments): 'a'<newline>'b' is one literal, and after E'..' the rest is
 *   read with E's escapes, as PostgreSQL does.
 * - Unterminated quotes, identifiers, dollar quotes and block comments are
 *   what the server would answer: sql_error, SQLSTATE 42601, at PostgreSQL's
 *   position (the literal's first character: B of B'.., U of U&'.., the first
 *   part of a continued literal). NUL bytes and empty statements are
 *   invalid_request here, with the 1-based character position of the culprit.
 */

#define QGP_MAX_SQL (256u * 1024 * 1024) /* keeps every offset and position in an int */
#define QGP_MAX_PARAMS 65535             /* the protocol's 16-bit parameter count */
#define QGP_HASH_FROM 16                 /* below this many names, linear search wins */
#define QGP_INLINE 32                    /* spans and names kept on the stack at first */

struct name_ref {
    size_t off, len; /* the name's bytes in the caller's SQL */
};

struct parser {
    const unsigned char *s;
    size_t n;
    qg_buf out;
    size_t copied;   /* input before this offset is already in out */
    bool has_token;  /* the statement holds more than whitespace and comments */
    bool ended;      /* a top-level ';' was seen */
    size_t word_end; /* where the last identifier or number ended: a colon there is glued */
    size_t out_end;  /* out.len at that ';' */
    struct name_ref words[3]; /* the statement's first three tokens, for qgp_sql.kind */
    size_t nwords;
    qg_error *err;

    struct qgp_sql_span *map;
    size_t nmap, map_cap;
    struct name_ref *names;
    size_t nnames, names_cap;
    uint32_t *hash; /* index + 1 into names, 0 = empty; built from QGP_HASH_FROM names */
    size_t hash_cap;

    struct qgp_sql_span map_inline[QGP_INLINE];
    struct name_ref names_inline[QGP_INLINE];
};

static inline bool is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static inline bool is_digit(unsigned char c)
{
    return (unsigned)(c - '0') < 10u;
}

static inline bool is_alpha(unsigned char c)
{
    return (unsigned)((c | 0x20) - 'a') < 26u;
}

/* PostgreSQL's ident_start / dolq_start: letters, '_', any non-ASCII byte. */
static inline bool ident_start(unsigned char c)
{
    return is_alpha(c) || c == '_' || c >= 0x80;
}

static inline bool dolq_cont(unsigned char c)
{
    return ident_start(c) || is_digit(c);
}

static inline bool ident_cont(unsigned char c)
{
    return dolq_cont(c) || c == '$';
}

static inline bool name_start(unsigned char c)
{
    return is_alpha(c) || c == '_';
}

static inline bool name_cont(unsigned char c)
{
    return name_start(c) || is_digit(c);
}

/* Characters (UTF-8 code points: bytes that are not continuation bytes) in s[0..n). */
static size_t char_count(const char *s, size_t n)
{
    size_t chars = 0;
    for (size_t i = 0; i < n; i++)
        chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    return chars;
}

/* Sets err with the 1-based character position of byte `at`; returns st. */
static qg_status fail_at(struct parser *P, qg_status st, size_t at, const char *fmt, ...)
    QG_PRINTF(4, 5);

static qg_status fail_at(struct parser *P, qg_status st, size_t at, const char *fmt, ...)
{
    if (!P->err || P->err->status != QG_OK)
        return st;
    char msg[sizeof P->err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    qg_error_set(P->err, st, "%s", msg);
    P->err->position = (int)char_count((const char *)P->s, at) + 1;
    return st;
}

static qg_status oom(qg_error *err)
{
    return qg_error_set(err, QG_ERR_INTERNAL, "out of memory while parsing the sql string");
}

/* Grows an array that starts in inline storage; false when out of memory. */
static bool grow(void **arr, size_t *cap, const void *inline_arr, size_t elem)
{
    size_t ncap = *cap * 2;
    if (ncap > SIZE_MAX / elem)
        return false;
    void *p;
    if (*arr == inline_arr) {
        p = malloc(ncap * elem);
        if (p)
            memcpy(p, *arr, *cap * elem);
    } else {
        p = realloc(*arr, ncap * elem);
    }
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

/* Copies input up to `upto` into out, unchanged. */
static void flush(struct parser *P, size_t upto)
{
    qg_buf_append(&P->out, (const char *)P->s + P->copied, upto - P->copied);
    P->copied = upto;
}

/* Output from here on maps to input offset in_off (after a replacement). */
static bool add_span(struct parser *P, size_t in_off)
{
    if (P->nmap == P->map_cap &&
        !grow((void **)&P->map, &P->map_cap, P->map_inline, sizeof *P->map))
        return false;
    P->map[P->nmap].out_off = P->out.len;
    P->map[P->nmap].in_off = in_off;
    P->nmap++;
    return true;
}

static bool name_eq(const struct parser *P, size_t idx, const unsigned char *name, size_t len)
{
    const struct name_ref *r = &P->names[idx];
    return r->len == len && memcmp(P->s + r->off, name, len) == 0;
}

/* (Re)builds the hash index over all names at twice their count, rounded up to 2^k. */
static bool rehash(struct parser *P)
{
    size_t cap = 64;
    while (cap < P->nnames * 4)
        cap *= 2;
    uint32_t *h = calloc(cap, sizeof *h);
    if (!h)
        return false;
    for (size_t i = 0; i < P->nnames; i++) {
        size_t k = (size_t)qgp_fnv1a(P->s + P->names[i].off, P->names[i].len) & (cap - 1);
        while (h[k])
            k = (k + 1) & (cap - 1);
        h[k] = (uint32_t)i + 1;
    }
    free(P->hash);
    P->hash = h;
    P->hash_cap = cap;
    return true;
}

/* The 0-based number of name (first appearance order), adding it if new; -1 on error. */
static long intern(struct parser *P, size_t off, size_t len)
{
    const unsigned char *name = P->s + off;
    size_t slot = 0;
    if (P->hash) {
        slot = (size_t)qgp_fnv1a(name, len) & (P->hash_cap - 1);
        for (; P->hash[slot]; slot = (slot + 1) & (P->hash_cap - 1))
            if (name_eq(P, P->hash[slot] - 1, name, len))
                return (long)P->hash[slot] - 1;
    } else {
        for (size_t i = 0; i < P->nnames; i++)
            if (name_eq(P, i, name, len))
                return (long)i;
    }
    if (P->nnames == QGP_MAX_PARAMS) {
        fail_at(P, QG_ERR_INVALID_REQUEST, off - 1,
                "the sql string uses more than %d distinct parameters, the most PostgreSQL "
                "accepts; pass a JSON array as one parameter instead", QGP_MAX_PARAMS);
        return -1;
    }
    if (P->nnames == P->names_cap &&
        !grow((void **)&P->names, &P->names_cap, P->names_inline, sizeof *P->names)) {
        oom(P->err);
        return -1;
    }
    P->names[P->nnames].off = off;
    P->names[P->nnames].len = len;
    P->nnames++;
    if (P->hash && P->nnames * 2 <= P->hash_cap)
        P->hash[slot] = (uint32_t)P->nnames;
    else if (P->nnames >= QGP_HASH_FROM && !rehash(P)) {
        oom(P->err);
        return -1;
    }
    return (long)P->nnames - 1;
}

/* `:name` at *pi: replaced by $n. */
static qg_status take_param(struct parser *P, size_t *pi)
{
    size_t i = *pi, j = i + 2;
    while (j < P->n && name_cont(P->s[j]))
        j++;
    if (j < P->n && (P->s[j] == '$' || P->s[j] >= 0x80))
        return fail_at(P, QG_ERR_INVALID_REQUEST, i,
                       "the parameter name at character %zu has a character outside "
                       "[A-Za-z0-9_]; use only ASCII letters, digits and _ in :names",
                       char_count((const char *)P->s, i) + 1);
    long idx = intern(P, i + 1, j - i - 1);
    if (idx < 0)
        return P->err ? P->err->status : QG_ERR_INVALID_REQUEST;
    char num[16];
    int w = snprintf(num, sizeof num, "$%ld", idx + 1);
    flush(P, i);
    qg_buf_append(&P->out, num, (size_t)w);
    P->copied = j;
    if (!add_span(P, j))
        return oom(P->err);
    *pi = j;
    return QG_OK;
}

/* The quoted tokens, by how they end. */
enum quoted {
    Q_STRING, /* '..', U&'..', N'..' ('' is a quote) */
    Q_ESCAPE, /* E'..': backslash escapes too */
    Q_BITS,   /* B'..': '' ends it, no doubling */
    Q_HEX,    /* X'..': as B'..' */
    Q_IDENT,  /* "..", U&".." ("" is a quote) */
};

/*
 * After a literal's closing quote at i - 1: the index of the quote that
 * continues it (PostgreSQL's quotecontinue: whitespace holding a newline, --
 * comments allowed), or 0.
 */
static size_t continued(const unsigned char *s, size_t i, size_t n)
{
    bool newline = false;
    while (i < n) {
        if (s[i] == '-' && i + 1 < n && s[i + 1] == '-') {
            while (i < n && s[i] != '\n' && s[i] != '\r')
                i++;
        } else if (is_space(s[i])) {
            newline |= s[i] == '\n' || s[i] == '\r';
            i++;
        } else {
            break;
        }
    }
    return newline && i < n && s[i] == '\'' ? i : 0;
}

/* PostgreSQL's answer to a literal or comment left open at `at`: 42601, at that character. */
static qg_status unterminated(struct parser *P, size_t at, const char *what, const char *close)
{
    if (!P->err || P->err->status != QG_OK)
        return QG_ERR_SQL;
    fail_at(P, QG_ERR_SQL, at, "the sql string has an unterminated %s starting at character %zu; %s",
            what, char_count((const char *)P->s, at) + 1, close);
    memcpy(P->err->sqlstate, "42601", 6);
    return QG_ERR_SQL;
}

/* A quoted token of kind k opening at `start`, its text from `from`. */
static qg_status skip_quoted(struct parser *P, size_t start, size_t from, enum quoted k,
                             size_t *pi)
{
    const unsigned char *s = P->s;
    unsigned char q = k == Q_IDENT ? '"' : '\'';
    bool esc = k == Q_ESCAPE, doubled = k != Q_BITS && k != Q_HEX;
    size_t i = from, more;
    while (i < P->n) {
        unsigned char c = s[i];
        if (esc && c == '\\') {
            i += 2;
        } else if (c == q) {
            if (doubled && i + 1 < P->n && s[i + 1] == q) {
                i += 2;
                continue;
            }
            if (k == Q_IDENT || !(more = continued(s, i + 1, P->n))) {
                *pi = i + 1;
                return QG_OK;
            }
            i = more + 1;
        } else if (!esc) {
            const unsigned char *e = memchr(s + i, q, P->n - i);
            i = e ? (size_t)(e - s) : P->n;
        } else {
            i++;
        }
    }
    switch (k) {
    case Q_IDENT: return unterminated(P, start, "quoted identifier", "close it with \"");
    case Q_BITS: return unterminated(P, start, "bit string literal", "close it with '");
    case Q_HEX: return unterminated(P, start, "hexadecimal string literal", "close it with '");
    case Q_ESCAPE:
        return unterminated(P, start, "quoted string",
                            "close it with ' (in E'...' a backslash escapes the next character)");
    case Q_STRING: break;
    }
    return unterminated(P, start, "quoted string", "close it with '");
}

/* B'.., X'.., E'.., U&'.. or U&".. at i (a token start): its kind and where its text begins. */
static bool prefixed_quote(const unsigned char *s, size_t i, size_t n, enum quoted *k,
                           size_t *from)
{
    unsigned char c = s[i] | 0x20, next = i + 1 < n ? s[i + 1] : 0;
    if (next == '\'' && (c == 'e' || c == 'b' || c == 'x')) {
        *k = c == 'e' ? Q_ESCAPE : c == 'b' ? Q_BITS : Q_HEX;
        *from = i + 2;
        return true;
    }
    if (c == 'u' && next == '&' && i + 2 < n && (s[i + 2] == '\'' || s[i + 2] == '"')) {
        *k = s[i + 2] == '"' ? Q_IDENT : Q_STRING;
        *from = i + 3;
        return true;
    }
    return false;
}

static qg_status skip_block_comment(struct parser *P, size_t *pi)
{
    const unsigned char *s = P->s;
    size_t start = *pi, i = start + 2, depth = 1;
    while (i + 1 < P->n) {
        if (s[i] == '/' && s[i + 1] == '*') {
            depth++;
            i += 2;
        } else if (s[i] == '*' && s[i + 1] == '/') {
            i += 2;
            if (--depth == 0) {
                *pi = i;
                return QG_OK;
            }
        } else {
            i++;
        }
    }
    return unterminated(P, start, "/* comment",
                        "block comments nest in PostgreSQL: each /* needs its */");
}

/* `$` at a token start: a dollar quote, a refused positional parameter, or an operator char. */
static qg_status take_dollar(struct parser *P, size_t *pi)
{
    const unsigned char *s = P->s;
    size_t i = *pi, j = i + 1, n = P->n;
    if (j < n && is_digit(s[j])) {
        while (j < n && is_digit(s[j]) && j - i < 12)
            j++;
        return fail_at(P, QG_ERR_INVALID_REQUEST, i,
                       "positional parameter %.*s at character %zu is not supported; "
                       "use named parameters such as :id", (int)(j - i),
                       (const char *)s + i, char_count((const char *)s, i) + 1);
    }
    if (j < n && ident_start(s[j]))
        while (j < n && dolq_cont(s[j]))
            j++;
    if (j >= n || s[j] != '$') {
        *pi = i + 1; /* as PostgreSQL does: `$`, then whatever follows */
        return QG_OK;
    }
    size_t tag_len = j - i + 1;
    for (size_t k = j + 1; k + tag_len <= n; k++) {
        const unsigned char *d = memchr(s + k, '$', n - k);
        if (!d)
            break;
        k = (size_t)(d - s);
        if (k + tag_len <= n && memcmp(s + k, s + i, tag_len) == 0) {
            *pi = k + tag_len;
            return QG_OK;
        }
    }
    char close[80];
    snprintf(close, sizeof close, "close it with %.*s", (int)(tag_len > 64 ? 64 : tag_len),
             (const char *)s + i);
    return unterminated(P, i, "dollar-quoted string", close);
}

/* A number's extent, so that a `$` or quote right after it starts a new token. */
static size_t skip_number(const unsigned char *s, size_t i, size_t n)
{
    while (i < n && (is_digit(s[i]) || s[i] == '.'))
        i++;
    if (i < n && (s[i] | 0x20) == 'e') {
        size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-'))
            j++;
        if (j < n && is_digit(s[j])) {
            i = j;
            while (i < n && is_digit(s[i]))
                i++;
        }
    }
    return i;
}

/* One token that is not whitespace, a comment or ';', starting at *pi. */
static qg_status take_token(struct parser *P, size_t *pi)
{
    const unsigned char *s = P->s;
    size_t i = *pi, n = P->n;
    unsigned char c = s[i], next = i + 1 < n ? s[i + 1] : 0;
    switch (c) {
    case '\'':
        return skip_quoted(P, i, i + 1, Q_STRING, pi);
    case '"':
        return skip_quoted(P, i, i + 1, Q_IDENT, pi);
    case '$':
        return take_dollar(P, pi);
    case ':':
        if (name_start(next) && i != P->word_end && !(i > 0 && s[i - 1] == ':'))
            return take_param(P, pi);
        *pi = i + 1;
        return QG_OK;
    case '\\':
        if (next != ':')
            break;
        flush(P, i);
        qg_buf_putc(&P->out, ':');
        P->copied = i + 2;
        *pi = i + 2;
        return add_span(P, i + 2) ? QG_OK : oom(P->err);
    default:
        if (is_digit(c) || (c == '.' && is_digit(next))) {
            *pi = P->word_end = skip_number(s, i, n);
            return QG_OK;
        }
        if (!ident_start(c))
            break;
        enum quoted k;
        size_t from;
        if (prefixed_quote(s, i, n, &k, &from))
            return skip_quoted(P, i, from, k, pi);
        for (i++; i < n && ident_cont(s[i]); i++)
            ;
        *pi = P->word_end = i;
        return QG_OK;
    }
    *pi = i + 1;
    return QG_OK;
}

static qg_status scan(struct parser *P)
{
    const unsigned char *s = P->s;
    size_t i = 0, n = P->n;
    while (i < n) {
        unsigned char c = s[i], next = i + 1 < n ? s[i + 1] : 0;
        qg_status st = QG_OK;
        if (is_space(c)) {
            i++;
        } else if (c == '-' && next == '-') {
            while (i < n && s[i] != '\n' && s[i] != '\r')
                i++;
        } else if (c == '/' && next == '*') {
            st = skip_block_comment(P, &i);
        } else if (c == ';') {
            if (!P->ended) {
                flush(P, i);
                P->out_end = P->out.len;
                P->ended = true;
            }
            i++;
        } else if (P->ended) {
            return fail_at(P, QG_ERR_MULTIPLE_STATEMENTS, i,
                           "the sql string holds more than one statement; send one statement "
                           "per request (use /transaction for several)");
        } else {
            P->has_token = true;
            size_t start = i;
            st = take_token(P, &i);
            if (P->nwords < 3)
                P->words[P->nwords++] = (struct name_ref){start, i - start};
        }
        if (st != QG_OK)
            return st;
    }
    return QG_OK;
}

static bool word_is(const struct parser *P, size_t w, const char *kw)
{
    size_t n = strlen(kw);
    return w < P->nwords && P->words[w].len == n &&
           !strncasecmp((const char *)P->s + P->words[w].off, kw, n);
}

/* transaction_read_only and its kin (also "quoted"): they would turn READ ONLY off. */
static bool setting_is_transactions(const struct parser *P, size_t w)
{
    if (w >= P->nwords)
        return false;
    const char *t = (const char *)P->s + P->words[w].off;
    size_t n = P->words[w].len;
    if (n && *t == '"') {
        t++;
        n--;
    }
    return n > 12 && !strncasecmp(t, "transaction_", 12);
}

/*
 * NOTE: judged by the first keywords, as PostgreSQL's grammar reads them: a
 * comment or a quoted identifier (U&"COMMIT") cannot pose as one, and these
 * statements have no other spelling. Dynamic SQL cannot end a transaction block.
 */
static enum qgp_sql_kind classify(const struct parser *P)
{
    static const char *const tx_words[] = {"begin", "start", "commit", "end", "rollback",
                                           "abort", "savepoint", "release"};
    for (size_t i = 0; i < sizeof tx_words / sizeof *tx_words; i++)
        if (word_is(P, 0, tx_words[i]))
            return QGP_SQL_TRANSACTION_CONTROL;
    if (word_is(P, 0, "prepare") && word_is(P, 1, "transaction"))
        return QGP_SQL_TRANSACTION_CONTROL;
    if (word_is(P, 0, "set") || word_is(P, 0, "reset")) {
        size_t w = word_is(P, 1, "session") || word_is(P, 1, "local") ? 2 : 1;
        if (word_is(P, w, "transaction") || word_is(P, w, "characteristics") ||
            setting_is_transactions(P, w))
            return QGP_SQL_TRANSACTION_CONTROL;
    }
    if (word_is(P, 0, "copy"))
        return QGP_SQL_COPY;
    return QGP_SQL_PLAIN;
}

static size_t align_up(size_t x)
{
    size_t a = _Alignof(max_align_t);
    return (x + a - 1) / a * a;
}

/* One block holds the struct, map, names and orig, so qgp_sql_free frees two pointers. */
static qgp_sql *assemble(struct parser *P)
{
    size_t names_bytes = 0;
    for (size_t i = 0; i < P->nnames; i++)
        names_bytes += P->names[i].len + 1;
    size_t off_map = align_up(sizeof(qgp_sql));
    size_t off_names = align_up(off_map + P->nmap * sizeof *P->map);
    size_t off_chars = off_names + P->nnames * sizeof(char *);
    size_t total = off_chars + P->n + 1 + names_bytes;
    char *block = malloc(total);
    if (!block)
        return NULL;
    qgp_sql *q = (qgp_sql *)(void *)block;
    q->map = (struct qgp_sql_span *)(void *)(block + off_map);
    q->names = (char **)(void *)(block + off_names);
    q->orig = block + off_chars;
    memcpy(q->map, P->map, P->nmap * sizeof *P->map);
    q->nmap = P->nmap;
    memcpy(q->orig, P->s, P->n);
    q->orig[P->n] = '\0';
    q->orig_len = P->n;
    char *w = q->orig + P->n + 1;
    for (size_t i = 0; i < P->nnames; i++) {
        q->names[i] = w;
        memcpy(w, P->s + P->names[i].off, P->names[i].len);
        w += P->names[i].len;
        *w++ = '\0';
    }
    q->nparams = (int)P->nnames;
    q->kind = classify(P);
    q->text = NULL;
    q->len = 0;
    return q;
}

static void parser_free(struct parser *P)
{
    qg_buf_free(&P->out);
    if (P->map != P->map_inline)
        free(P->map);
    if (P->names != P->names_inline)
        free(P->names);
    free(P->hash);
}

static qg_status check_input(struct parser *P, const char *sql, size_t len)
{
    if (!sql)
        return qg_error_set(P->err, QG_ERR_INVALID_REQUEST, "the sql string is missing");
    if (len > QGP_MAX_SQL)
        return qg_error_set(P->err, QG_ERR_INVALID_REQUEST,
                            "the sql string is %zu bytes, more than the %u this service "
                            "accepts; shorten it", len, QGP_MAX_SQL);
    const char *z = memchr(sql, '\0', len);
    if (z)
        return fail_at(P, QG_ERR_INVALID_REQUEST, (size_t)(z - sql),
                       "the sql string holds a NUL character at character %zu; remove it",
                       char_count(sql, (size_t)(z - sql)) + 1);
    return QG_OK;
}

qg_status qgp_sql_parse(const char *sql, size_t len, qgp_sql **out, qg_error *err)
{
    if (!out)
        return qg_error_set(err, QG_ERR_INVALID_REQUEST, "qgp_sql_parse: out is NULL");
    *out = NULL;
    struct parser parser;
    struct parser *P = &parser;
    memset(P, 0, offsetof(struct parser, map_inline));
    P->s = (const unsigned char *)sql;
    P->n = len;
    P->err = err;
    P->word_end = SIZE_MAX;
    P->map = P->map_inline;
    P->map_cap = QGP_INLINE;
    P->names = P->names_inline;
    P->names_cap = QGP_INLINE;
    qg_buf_init(&P->out);

    qg_status st = check_input(P, sql, len);
    if (st == QG_OK && (!qg_buf_reserve(&P->out, len + 16) || !add_span(P, 0)))
        st = oom(err);
    if (st == QG_OK)
        st = scan(P);
    if (st == QG_OK && !P->has_token)
        st = qg_error_set(err, QG_ERR_INVALID_REQUEST,
                          "the sql string holds no statement (only whitespace, comments or "
                          "';'); send one SQL statement");
    if (st == QG_OK) {
        if (P->ended)
            P->out.len = P->out_end;
        else
            flush(P, len);
        qgp_sql *q = P->out.oom ? NULL : assemble(P);
        if (q) {
            q->text = qg_buf_steal(&P->out, &q->len);
            q->text[q->len] = '\0';
            *out = q;
        } else {
            st = oom(err);
        }
    }
    parser_free(P);
    return st;
}

void qgp_sql_free(qgp_sql *s)
{
    if (!s)
        return;
    free(s->text);
    free(s);
}

/* Byte offset in s->text of 1-based character `position`; *beyond = characters past the end. */
static size_t text_offset(const qgp_sql *s, size_t position, size_t *beyond)
{
    size_t want = position - 1, seen = 0;
    for (size_t ob = 0; ob < s->len; ob++) {
        if (((unsigned char)s->text[ob] & 0xC0) == 0x80)
            continue;
        if (seen == want) {
            *beyond = 0;
            return ob;
        }
        seen++;
    }
    *beyond = want - seen;
    return s->len;
}

int qgp_sql_map_position(const qgp_sql *s, int position)
{
    if (position <= 0)
        return 0;
    if (!s || !s->map || s->nmap == 0)
        return position;
    size_t beyond;
    size_t ob = text_offset(s, (size_t)position, &beyond);
    size_t lo = 0, hi = s->nmap; /* last span with out_off <= ob */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->map[mid].out_off <= ob)
            lo = mid;
        else
            hi = mid;
    }
    size_t in = s->map[lo].in_off + (ob - s->map[lo].out_off);
    /* Inside a replaced token ($12 for :a), stay within the original token. */
    if (lo + 1 < s->nmap && in >= s->map[lo + 1].in_off)
        in = s->map[lo + 1].in_off - 1;
    if (in > s->orig_len)
        in = s->orig_len;
    size_t orig_chars = char_count(s->orig, s->orig_len);
    size_t res = char_count(s->orig, in) + 1 + beyond;
    if (res > orig_chars + 1)
        res = orig_chars + 1;
    return res > INT_MAX ? INT_MAX : (int)res;
}
