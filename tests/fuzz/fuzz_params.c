/* libFuzzer target: qgp_sql_parse, qgp_sql_map_position and qgp_bind on any bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_private.h"
#include "fuzz.h"

static size_t chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static void check_parsed(const qgp_sql *q, const char *sql, size_t size)
{
    size_t colons = 0;
    for (size_t i = 0; i < size; i++)
        colons += sql[i] == ':';
    ASSERT(q->text && strlen(q->text) == q->len);
    ASSERT(q->nparams >= 0 && (size_t)q->nparams <= colons);
    ASSERT(q->orig_len == size && memcmp(q->orig, sql, size) == 0);
    ASSERT(q->nmap >= 1 && q->map[0].out_off == 0 && q->map[0].in_off == 0);
    for (int i = 0; i < q->nparams; i++) {
        ASSERT(q->names[i][0] && !strchr(q->names[i], ':'));
        for (int j = 0; j < i && q->nparams < 64; j++)
            ASSERT(strcmp(q->names[i], q->names[j]) != 0);
    }
    size_t orig_chars = chars(sql, size), out_chars = chars(q->text, q->len);
    uint32_t seed = (uint32_t)size * 2654435761u;
    for (int k = 0; k < 8; k++) {
        seed = seed * 1103515245u + 12345u;
        int pos = (int)(seed % (out_chars + 3));
        int m = qgp_sql_map_position(q, pos);
        ASSERT(pos <= 0 ? m == 0 : (m >= 1 && (size_t)m <= orig_chars + 1));
    }
    /* the map is monotonic (checked on short texts: each call is linear) */
    if (q->len > 512)
        return;
    int prev = 0;
    for (size_t p = 1; p <= out_chars + 1; p++) {
        int m = qgp_sql_map_position(q, (int)p);
        ASSERT(m >= prev);
        prev = m;
    }
}

/* Parsing a result without parameters or escapes again gives the same text. */
static void check_stable(const qgp_sql *q, const char *sql, size_t size)
{
    if (q->nparams != 0 || memchr(sql, '\\', size))
        return;
    qgp_sql *again = NULL;
    qg_status st = qgp_sql_parse(q->text, q->len, &again, NULL);
    ASSERT(st == QG_OK);
    ASSERT(again->len == q->len && memcmp(again->text, q->text, q->len) == 0);
    ASSERT(again->nparams == 0);
    qgp_sql_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *sql = (const char *)data;
    qgp_sql *q = (qgp_sql *)1;
    qg_error e;
    qg_error_clear(&e);
    qg_status st = qgp_sql_parse(sql, size, &q, &e);
    if (st != QG_OK) {
        ASSERT(q == NULL && e.status == st && e.message[0]);
        ASSERT(e.position >= 0 && (size_t)e.position <= chars(sql, size) + 1);
        /* a literal or comment left open is the server's 42601 at a character of the text;
           the scanner's other refusals carry no SQLSTATE */
        if (st == QG_ERR_SQL)
            ASSERT(!strcmp(e.sqlstate, "42601") && e.position >= 1 &&
                   (size_t)e.position <= chars(sql, size) && strstr(e.message, "unterminated"));
        else
            ASSERT(e.sqlstate[0] == '\0' && (st == QG_ERR_INVALID_REQUEST ||
                                             st == QG_ERR_MULTIPLE_STATEMENTS ||
                                             st == QG_ERR_INTERNAL));
        return 0;
    }
    check_parsed(q, sql, size);
    check_stable(q, sql, size);

    qg_params *p = qg_params_new();
    struct qgp_value *v = calloc((size_t)q->nparams + 1, sizeof *v);
    ASSERT(p && v);
    qg_error_clear(&e);
    st = qgp_bind(q, p, v, &e);
    ASSERT(q->nparams == 0 ? st == QG_OK : st == QG_ERR_MISSING_PARAMETER);
    for (int i = 0; i < q->nparams; i++)
        ASSERT(qg_params_add(p, q->names[i], QG_PARAM_TEXT, "v", 1, NULL) == QG_OK);
    ASSERT(qgp_bind(q, p, v, NULL) == QG_OK);
    free(v);
    qg_params_free(p);
    qgp_sql_free(q);
    return 0;
}
