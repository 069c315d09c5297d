/* Fuzzes DATABASE_URL handling: libpq parse, our parameters, and that redaction and scrubbing hide what libpq calls the password. */
#include <stdbool.h>
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

/* The value libpq would read for keyword from conninfo s, or NULL; the caller frees it. */
static char *parsed_value(const char *s, const char *keyword)
{
    char *msg = NULL, *val = NULL;
    PQconninfoOption *opts = PQconninfoParse(s, &msg);
    PQfreemem(msg);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (o->val && !strcmp(o->keyword, keyword))
            val = strdup(o->val);
    PQconninfoFree(opts);
    return val;
}

/*
 * Two oracles for "redaction hides what libpq calls the password":
 * - libpq, reading the redacted text, never finds the original password;
 * - where the input has no '\' and no '%', a password's raw text is its value,
 *   so a value found once in the input is the password itself and must be gone.
 *   With escapes it can match other text: user=ab'cd password='ab\'cd'.
 */
static void check_redaction(const char *s)
{
    char *red = qgp_redact_conninfo(s);
    if (!red)
        abort();
    bool literal = !strpbrk(s, "\\%");
    static const char *const keys[] = {"password", "sslpassword"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        char *pw = parsed_value(s, keys[i]);
        char *again = pw && strlen(pw) >= 6 ? parsed_value(red, keys[i]) : NULL;
        if (again && !strcmp(again, pw))
            abort();
        /* A value that is part of the mask itself ("ssword=*" in "password=***") is no leak. */
        char mask[64];
        snprintf(mask, sizeof mask, "%s=*** %s='***'", keys[i], keys[i]);
        if (pw && strlen(pw) >= 6 && literal && occurrences(s, pw) == 1 && strstr(red, pw) &&
            !strstr(mask, pw))
            abort();
        free(again);
        free(pw);
    }
    free(red);
}

/* qg_conninfo_scrub: the same length, and libpq finds no password of 6+ characters in it. */
static void check_scrub(const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        return;
    qg_conninfo_scrub(copy);
    if (strlen(copy) != strlen(s))
        abort();
    static const char *const keys[] = {"password", "sslpassword"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        char *pw = parsed_value(s, keys[i]);
        char *again = pw && strlen(pw) >= 6 && strspn(pw, "*") < strlen(pw)
                          ? parsed_value(copy, keys[i])
                          : NULL;
        if (again && !strcmp(again, pw))
            abort();
        free(again);
        free(pw);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_redaction(s);
    check_scrub(s);

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
