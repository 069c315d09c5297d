/* probe.c: querygate --probe, a health check of a running instance. */
#ifndef QGH_PROBE_H
#define QGH_PROBE_H

#include <stdio.h>
#include "querygate/querygate.h"

/*
 * GET /health/ready on cfg->host:cfg->port (a wildcard address means loopback),
 * over TLS when TLS_CERT_FILE is set, all within timeout_s. Returns 0 on a 200,
 * else 1 after writing one line saying why to out.
 */
int qgh_probe(const struct qg_config *cfg, double timeout_s, FILE *out);

#endif
