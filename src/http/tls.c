/* TLS_CERT_FILE and TLS_KEY_FILE: read, checked to be PEM, handed to libmicrohttpd, wiped. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls.h"

/* Larger files are not PEM files we want. */
#define MAX_PEM_BYTES (1024 * 1024)

/* A PEM file, NUL-terminated, malloc'd into *out (the caller frees; wipe a key first). */
static qg_status read_pem(const char *var, const char *path, char **out, size_t *len,
                          qg_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > MAX_PEM_BYTES) {
        int e = fd < 0 ? errno : 0;
        if (fd >= 0)
            close(fd);
        return qg_error_set(err, QG_ERR_CONFIG, "%s=%s: cannot read it (%s)", var, path,
                            e ? strerror(e) : "not a regular file of at most 1 MiB");
    }
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
    int e = errno;
    close(fd);
    if (n < 0 || n != st.st_size) {
        free(buf);
        return qg_error_set(err, QG_ERR_CONFIG, "%s=%s: cannot read it (%s)", var, path,
                            n < 0 ? strerror(e) : "short read");
    }
    buf[n] = '\0';
    if (!strstr(buf, "-----BEGIN ")) {
        explicit_bzero(buf, (size_t)n);
        free(buf);
        return qg_error_set(err, QG_ERR_CONFIG, "%s=%s: not a PEM file (no -----BEGIN line)",
                            var, path);
    }
    *out = buf;
    *len = (size_t)n;
    return QG_OK;
}

static void wipe(char *p, size_t n)
{
    if (p)
        explicit_bzero(p, n);
    free(p);
}

qg_status qgh_tls_load(const struct qg_config *cfg, struct qgh_tls *out, qg_error *err)
{
    memset(out, 0, sizeof *out);
    if (!cfg->tls_cert_file || !*cfg->tls_cert_file)
        return QG_OK;
    qg_status st = read_pem("TLS_CERT_FILE", cfg->tls_cert_file, &out->cert, &out->cert_len, err);
    if (st == QG_OK)
        st = read_pem("TLS_KEY_FILE", cfg->tls_key_file, &out->key, &out->key_len, err);
    if (st != QG_OK) {
        qgh_tls_wipe(out);
        return st;
    }
    out->options[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, out->cert};
    out->options[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, out->key};
    out->options[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                              (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"};
    out->options[3] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return QG_OK;
}

const struct MHD_OptionItem *qgh_tls_options(const struct qgh_tls *t)
{
    return t->cert ? t->options : NULL;
}

void qgh_tls_wipe(struct qgh_tls *t)
{
    wipe(t->key, t->key_len);
    wipe(t->cert, t->cert_len);
    memset(t, 0, sizeof *t);
}
