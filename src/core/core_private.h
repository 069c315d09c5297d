/* Cross-file internals of the manager core (prefix qgp_); not installed. */
#ifndef QG_CORE_PRIVATE_H
#define QG_CORE_PRIVATE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "querygate/querygate.h"

/* ---- buf.c (the buffer itself is public: querygate/buf.h) --------------- */

/* Writes byte c JSON-escaped at o (room for 6 bytes); returns the new end. */
char *qgp_json_escape_byte(char *o, unsigned char c);
/* Writes the character at s[*i] JSON-escaped at o (room for 6 bytes) and moves *i past it;
   a byte that starts no valid UTF-8 character becomes U+FFFD. Returns the new end. */
char *qgp_json_escape_char(char *o, const char *s, size_t n, size_t *i);


/* ---- json.c: request JSON ---------------------------------------------- */

/*
 * The PostgreSQL array literal of a JSON array ({1,"a\"b",NULL,{2,3}}), or
 * *out = NULL when arr is not an array or holds an object. *out is malloc'd;
 * caller frees. Returns false only when out of memory.
 */
bool qgp_json_pg_array(const json_t *arr, char **out, size_t *len);

/* ---- params.c: :name -> $n, by PostgreSQL's lexical rules --------------- */

/* What a statement is, where the service must treat it apart. */
enum qgp_sql_kind {
    QGP_SQL_PLAIN,
    QGP_SQL_TRANSACTION_CONTROL, /* BEGIN, COMMIT, SAVEPOINT, SET TRANSACTION, ... */
    QGP_SQL_COPY,                /* COPY: the copy protocol is not spoken here */
};

typedef struct qgp_sql {
    char *text;     /* the rewritten statement, NUL-terminated */
    enum qgp_sql_kind kind;
    size_t len;
    int nparams;    /* distinct names; $1 is names[0] */
    char **names;
    /* Maps positions in text back to the caller's SQL (for error positions). */
    size_t nmap;
    struct qgp_sql_span { size_t out_off, in_off; } *map;
    char *orig;     /* a copy of the caller's SQL */
    size_t orig_len;
} qgp_sql;

/*
 * Rewrites sql; *out is new (qgp_sql_free). Errors: QG_ERR_MULTIPLE_STATEMENTS
 * for a second statement after a ';'; QG_ERR_SQL with SQLSTATE 42601 at
 * PostgreSQL's position for an unterminated quote/comment (what the server
 * would answer); QG_ERR_INVALID_REQUEST for an empty statement, a NUL byte, a
 * positional $1 or a bad :name (message says which and where).
 */
qg_status qgp_sql_parse(const char *sql, size_t len, qgp_sql **out, qg_error *err) QG_MUSTCHECK;
void qgp_sql_free(qgp_sql *s);
/* A server error position (1-based characters in text) as 1-based characters in the caller's SQL. */
int qgp_sql_map_position(const qgp_sql *s, int position);

/* ---- bind.c: qg_params matched to a parsed statement ------------------- */

/* One value as libpq wants it; for arrays both forms are kept. */
struct qgp_value {
    enum qg_param_kind kind;
    const char *text;     /* NULL for SQL NULL */
    int len;
    const char *pg_array; /* for JSON arrays with a PostgreSQL array form, else NULL */
    int pg_array_len;
    bool is_array;
};

/*
 * Fills values[i] for $i+1 of s from p (borrowed pointers into p).
 * QG_ERR_MISSING_PARAMETER / QG_ERR_UNKNOWN_PARAMETER name the parameter.
 * values must hold s->nparams entries. p may be NULL.
 */
qg_status qgp_bind(const qgp_sql *s, const qg_params *p, struct qgp_value *values,
                   qg_error *err) QG_MUSTCHECK;

/* ---- types.c / result_json.c: PostgreSQL values as JSON ----------------- */

/* The type name of a built-in OID ("int4"), or NULL if not built in. */
const char *qgp_type_name(Oid oid);
/* The element type of a built-in array type OID, or 0 if oid is not one. */
Oid qgp_array_elem(Oid array_oid);

/*
 * timestamp, timestamptz or timetz text (DateStyle ISO) in its RFC 3339 form,
 * written to buf (cap bytes, NUL-terminated): "2024-01-02T03:04:05.5",
 * "2024-01-02T03:04:05Z" (any offset is turned into UTC), "13:14:15+02:00".
 * Returns its length, or 0 when the text is to be kept as it is: infinity,
 * BC, a year past 9999, 24:00:00, a timetz offset with seconds, another
 * DateStyle, another type.
 */
size_t qgp_time_rfc3339(Oid type, const char *s, size_t n, char *buf, size_t cap);

struct qgp_json_opts {
    bool numbers_as_strings;
};

/*
 * Appends one value in its text form (as libpq returns it) as JSON by type:
 * numbers with their exact digits, NaN/Infinity as strings, bool, embedded
 * json/jsonb, arrays parsed into JSON arrays, timestamps in RFC 3339 form
 * (qgp_time_rfc3339), everything else a JSON string.
 */
void qgp_json_value(qg_buf *out, Oid type, const char *val, size_t len,
                    const struct qgp_json_opts *opt);

/*
 * Object keys for res's columns, each already escaped and quoted with its ':'
 * ("\"id\":"), duplicates suffixed _2, _3. Returns a malloc'd array of
 * malloc'd strings, nfields long; free with qgp_json_keys_free.
 */
char **qgp_json_keys(const PGresult *res);
void qgp_json_keys_free(char **keys, int n);

/* Appends row `row` of res as a JSON object using keys from qgp_json_keys(). */
void qgp_json_row(qg_buf *out, const PGresult *res, int row, char *const *keys,
                  const struct qgp_json_opts *opt);

/*
 * Appends [{"name":...,"type":...}] for res's columns (suffixed names, as keys).
 * type is qgp_type_name(), or "oid:<number>" for a type that is not built in.
 */
void qgp_json_columns(qg_buf *out, const PGresult *res);

/* ---- conninfo.c: connection parameters ---------------------------------- */

typedef struct qgp_conninfo {
    const char *const *keywords; /* NULL-terminated, for PQconnectdbParams(.., 0) */
    const char *const *values;
    bool local;                  /* every host is loopback or a unix socket */
    char *display;               /* redacted: no password, safe for logs */
    void *storage;               /* owned strings */
} qgp_conninfo;

/*
 * Connection parameters from cfg: DATABASE_URL parsed by libpq (URI or
 * key=value), plus application_name=querygate (unless set), keepalives,
 * connect_timeout, sslmode (PGSSLMODE, else the URL's, else require for a
 * remote host), and - when startup_options - an `options` parameter setting
 * statement_timeout, idle_in_transaction_session_timeout, DateStyle,
 * IntervalStyle and TimeZone. *out is new (qgp_conninfo_free).
 */
qg_status qgp_conninfo_new(const struct qg_config *cfg, bool startup_options,
                           qgp_conninfo **out, qg_error *err) QG_MUSTCHECK;
/* The same, logging in as role (user=role, without the URL's password). role is
   borrowed, not copied: it must outlive *out. */
qg_status qgp_conninfo_new_as(const struct qg_config *cfg, bool startup_options, const char *role,
                              qgp_conninfo **out, qg_error *err) QG_MUSTCHECK;
void qgp_conninfo_free(qgp_conninfo *ci);

/*
 * One statement that applies the startup options for the current transaction only
 * (set_config(..., true) is SET LOCAL), for use behind a transaction pooler.
 * malloc'd; NULL when out of memory or cfg is NULL.
 */
char *qgp_session_settings_sql(const struct qg_config *cfg);

/* True when host (a libpq host value) is loopback or a unix-socket path. */
bool qgp_host_is_local(const char *host);

/*
 * DATABASE_READ_URLS split into its URIs. NOTE: a multi-host URI has commas of
 * its own, so an entry ends only where the next begins with postgresql:// or
 * postgres://. On QG_OK *urls holds *n malloc'd strings (qgp_url_list_free);
 * QG_ERR_CONFIG when an entry is not such a URI (err names it, redacted).
 */
qg_status qgp_url_list(const char *list, char ***urls, int *n, qg_error *err) QG_MUSTCHECK;
void qgp_url_list_free(char **urls, int n);

/* A copy of a URI or key=value string with the password replaced by ***. malloc'd. */
char *qgp_redact_conninfo(const char *conninfo);

/* ---- error.c ------------------------------------------------------------ */

/*
 * Fills err from a failed PGresult (sqlstate, message, detail, hint, position).
 * A FATAL or PANIC error (the server ended the session: 57P01, 25P03 idle in
 * transaction timeout, ...) is QG_ERR_DB_UNAVAILABLE whatever its SQLSTATE.
 */
qg_status qgp_error_from_result(qg_error *err, const PGresult *res);
/* True when res is an error that ended the session (severity FATAL or PANIC). */
bool qgp_result_fatal(const PGresult *res);

/* ---- util.c (qg_now and the rest are public: querygate/util.h) ---------- */

void qgp_sleep(double seconds);
/* 64-bit FNV-1a of n bytes: for hash tables, not for anything an attacker must not collide. */
uint64_t qgp_fnv1a(const void *data, size_t n);

#endif
