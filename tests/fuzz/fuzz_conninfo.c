/* Fuzzes DATABASE_URL handling: libpq parse, our parameters, and that redaction hides what libpq calls the password. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t occurrences(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* A password libpq finds (6+ bytes, once in the input) must not survive redaction. */
static void check_redaction(const char *s)
{
    char *red = qgp_redact_conninfo(s);
    if (!red)
        abort();
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(s, &msg);
    PQfreemem(msg);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val || (strcmp(o->keyword, "password") && strcmp(o->keyword, "sslpassword")))
            continue;
        /* A value that is part of the mask itself ("ssword=*" in "password=***") is no leak. */
        char mask[64];
        snprintf(mask, sizeof mask, "%s=*** %s='***'", o->keyword, o->keyword);
        if (strlen(o->val) >= 6 && occurrences(s, o->val) == 1 && strstr(red, o->val) &&
            !strstr(mask, o->val))
            abort();
    }
    PQconninfoFree(opts);
    free(red);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_redaction(s);

    struct qg_config cfg;
    if (qg_config_load(&cfg, NULL, NULL) != QG_OK)
        abort();
    if (qg_config_set(&cfg, "DATABASE_URL", s, NULL) == QG_OK) {
        qgp_conninfo *ci = NULL;
        if (qgp_conninfo_new(&cfg, true, &ci, NULL) != QG_OK || !ci->display)
            abort();
        qgp_conninfo_free(ci);
    }
    /* The same bytes as a value of each kind of variable. */
    static const char *const names[] = {"DB_POOL_SIZE", "DB_POOL_TIMEOUT", "MAX_RESULT_BYTES",
                                        "DB_ECHO", "LOG_LEVEL", "PGSSLMODE", "HOST"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        (void)!qg_config_set(&cfg, names[i], s, NULL);
    char *d = qg_config_describe(&cfg);
    if (!d)
        abort();
    free(d);
    qg_config_free(&cfg);
    free(s);
    return 0;
}
