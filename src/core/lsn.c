/* WAL positions in PostgreSQL's text form. */
#include <stdio.h>

#include "querygate/replicas.h"

static bool hex_part(const char *s, size_t n, uint32_t *out)
{
    if (n == 0 || n > 8)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return false;
        v = v << 4 | d;
    }
    *out = v;
    return true;
}

bool qg_lsn_parse(const char *s, size_t n, qg_lsn *out)
{
    size_t slash = 0;
    while (slash < n && s[slash] != '/')
        slash++;
    uint32_t hi, lo;
    if (slash == n || !hex_part(s, slash, &hi) || !hex_part(s + slash + 1, n - slash - 1, &lo))
        return false;
    *out = (qg_lsn)hi << 32 | lo;
    return true;
}

void qg_lsn_format(qg_lsn lsn, char *buf)
{
    snprintf(buf, QG_LSN_BUF, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
}
