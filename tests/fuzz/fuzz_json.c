/* libFuzzer: qg_json_parse on any bytes; what parses must dump to text that parses and dumps the same; qg_buf_json_string always makes JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core_private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The rewrite must not change what is JSON: plain jansson agrees, except that
 * it cannot hold some numbers (overflow), we refuse \u0000 ourselves, and
 * jansson accepts a top-level number followed by a NUL byte ("1\0"), which
 * the rewrite turns into a string, where jansson does see the NUL.
 */
static void same_verdict_as_jansson(const uint8_t *data, size_t size, bool ok, qg_status st)
{
    json_error_t je;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    bool jok = j != NULL;
    json_decref(j);
    if (st == QG_ERR_INVALID_REQUEST || ok == jok)
        return;
    if (ok && (strstr(je.text, "too big") || strstr(je.text, "overflow")))
        return;
    if (jok && memchr(data, '\0', size))
        return;
    abort();
}

/*
 * Any bytes as a JSON string: always text that jansson (which checks UTF-8)
 * loads, and the bytes themselves when they are UTF-8 already.
 */
static void escaped_is_json(const uint8_t *data, size_t size)
{
    qg_buf b;
    qg_buf_init(&b);
    qg_buf_json_string(&b, (const char *)data, size);
    json_t *s = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (b.oom || !json_is_string(s))
        abort();
    json_t *same = json_stringn((const char *)data, size); /* NULL unless UTF-8 */
    if (same && !json_equal(s, same))
        abort();
    if (!same && json_string_length(s) == size && !memcmp(json_string_value(s), data, size))
        abort(); /* not UTF-8, yet passed through */
    json_decref(same);
    json_decref(s);
    qg_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    escaped_is_json(data, size);
    qg_error e;
    qg_error_clear(&e);
    json_t *v = qg_json_parse((const char *)data, size, &e);
    same_verdict_as_jansson(data, size, v != NULL, e.status);
    if (!v) {
        if (e.status != QG_ERR_INVALID_JSON && e.status != QG_ERR_INVALID_REQUEST)
            abort();
        if (!memchr(e.message, '\0', sizeof e.message))
            abort();
        return 0;
    }
    size_t n1, n2;
    char *d1 = qg_json_dump(v, &n1);
    if (!d1)
        abort();
    json_t *again = qg_json_parse(d1, n1, NULL);
    if (!again)
        abort();
    char *d2 = qg_json_dump(again, &n2);
    if (!d2 || n1 != n2 || memcmp(d1, d2, n1))
        abort();
    if (json_is_array(v)) {
        char *pg = NULL;
        size_t pg_len;
        if (!qgp_json_pg_array(v, &pg, &pg_len) || (pg && strlen(pg) != pg_len))
            abort();
        free(pg);
    }
    qg_params *p = NULL;
    if (qg_params_from_json(v, &p, NULL) == QG_OK && !json_is_object(v))
        abort();
    qg_params_free(p);
    free(d1);
    free(d2);
    json_decref(again);
    json_decref(v);
    return 0;
}
