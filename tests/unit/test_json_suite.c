/* qg_json_parse against JSONTestSuite's test_parsing files (y_ accept, n_ reject, i_ no crash). */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "core_private.h"
#include "qgtest.h"

/* Valid JSON that the contract refuses: \u0000 cannot be stored by PostgreSQL. */
static const char *const nul_files[] = {
    "y_object_escaped_null_in_key.json", /* {"foo\u0000bar": 42} */
    "y_string_null_escape.json",         /* ["\u0000"] */
};

/* Valid JSON that the header refuses: with a key twice, which value is meant is a guess. */
static const char *const duplicate_files[] = {
    "y_object_duplicated_key.json",           /* {"a":"b","a":"c"} */
    "y_object_duplicated_key_and_value.json", /* {"a":"b","a":"b"} */
};

#define IN_LIST(name, list) in_list(name, list, sizeof list / sizeof *list)

static bool in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(name, list[i]))
            return true;
    return false;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    qg_buf b;
    qg_buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        qg_buf_append(&b, chunk, n);
    fclose(f);
    qg_buf_append(&b, "", 0); /* an empty file is still a (zero-length) text */
    return qg_buf_steal(&b, len);
}

/* A successful parse must also dump to text that parses and dumps the same. */
static void check_roundtrip(const char *name, const json_t *v)
{
    size_t n1, n2;
    char *d1 = qg_json_dump(v, &n1);
    json_t *again = d1 ? qg_json_parse(d1, n1, NULL) : NULL;
    char *d2 = again ? qg_json_dump(again, &n2) : NULL;
    if (!d2 || n1 != n2 || memcmp(d1, d2, n1)) {
        fprintf(stderr, "%s: dump does not round-trip\n", name);
        qgt_failures++;
    }
    free(d1);
    free(d2);
    json_decref(again);
}

static void check_file(const char *dir, const char *name, int *counts)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof path) {
        fprintf(stderr, "%s/%s: path too long\n", dir, name);
        qgt_failures++;
        return;
    }
    size_t len;
    char *text = slurp(path, &len);
    if (!text) {
        fprintf(stderr, "%s: cannot read\n", path);
        qgt_failures++;
        return;
    }
    qg_error e;
    qg_error_clear(&e);
    json_t *v = qg_json_parse(text, len, &e);
    if (v)
        check_roundtrip(name, v);
    if (IN_LIST(name, nul_files)) {
        if (v || e.status != QG_ERR_INVALID_REQUEST) {
            fprintf(stderr, "%s: want invalid_request (NUL), got status %d\n", name, e.status);
            qgt_failures++;
        }
    } else if (IN_LIST(name, duplicate_files)) {
        if (v || e.status != QG_ERR_INVALID_JSON || !strstr(e.message, "duplicate")) {
            fprintf(stderr, "%s: want invalid_json (duplicate key), got %d\n", name, e.status);
            qgt_failures++;
        }
    } else if (name[0] == 'y' && !v) {
        fprintf(stderr, "%s: rejected: %s\n", name, e.message);
        qgt_failures++;
    } else if (name[0] == 'n' && v) {
        fprintf(stderr, "%s: accepted\n", name);
        qgt_failures++;
    } else if (name[0] == 'n' && e.status != QG_ERR_INVALID_JSON &&
               e.status != QG_ERR_INVALID_REQUEST) {
        fprintf(stderr, "%s: status %d: %s\n", name, e.status, e.message);
        qgt_failures++;
    }
    counts[name[0] == 'y' ? 0 : name[0] == 'n' ? 1 : 2]++;
    json_decref(v);
    free(text);
}

int main(void)
{
    const char *src = getenv("QG_SOURCE_DIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/../shared/testdata/JSONTestSuite/test_parsing", src ? src : ".");
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "SKIP: ../shared/testdata/JSONTestSuite not found (plain clone); "
                        "test_json covers the same ground\n");
        return 77;
    }
    int counts[3] = {0, 0, 0};
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        const char *n = ent->d_name;
        size_t l = strlen(n);
        if (l > 5 && !strcmp(n + l - 5, ".json") && strchr("yni", n[0]) && n[1] == '_')
            check_file(dir, n, counts);
    }
    closedir(d);
    fprintf(stderr, "y_: %d, n_: %d, i_: %d files\n", counts[0], counts[1], counts[2]);
    CHECK(counts[0] > 50 && counts[1] > 50);
    return qgt_done();
}
