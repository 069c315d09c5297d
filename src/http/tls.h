/* tls.c: TLS_CERT_FILE and TLS_KEY_FILE read for the daemons. */
#ifndef QGH_TLS_H
#define QGH_TLS_H

#include <microhttpd.h>
#include "querygate/querygate.h"

/* The PEM files in memory and the libmicrohttpd options that name them. */
struct qgh_tls {
    char *cert, *key;
    size_t cert_len, key_len;
    struct MHD_OptionItem options[4];
};

/* Reads the files when TLS_CERT_FILE is set; qgh_tls_wipe clears and frees them (also on error). */
qg_status qgh_tls_load(const struct qg_config *cfg, struct qgh_tls *out,
                       qg_error *err) QG_MUSTCHECK;
/* The options for MHD_OPTION_ARRAY (ending in MHD_OPTION_END), or NULL without TLS. */
const struct MHD_OptionItem *qgh_tls_options(const struct qgh_tls *t);
void qgh_tls_wipe(struct qgh_tls *t);

#endif
