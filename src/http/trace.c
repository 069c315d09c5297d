/* W3C Trace Context: the trace id of a traceparent header, so that a request's log line joins its trace. */
#include <string.h>

#include "trace.h"

/* n lowercase hex digits (the format allows no capitals), not all of them zero when nonzero is set. */
static bool hex_field(const char *s, size_t n, bool nonzero)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (!strchr("0123456789abcdef", s[i]) || !s[i])
            return false;
        any |= s[i] != '0';
    }
    return any || !nonzero;
}

/*
 * version "-" trace-id "-" parent-id "-" trace-flags: 2, 32, 16 and 2 hex
 * digits. Version ff is invalid; a later version than 00 may append fields
 * after another '-', which are ignored.
 */
bool qgh_traceparent(const char *value, char trace_id[QGH_TRACE_ID_LEN + 1])
{
    trace_id[0] = '\0';
    if (!value)
        return false;
    size_t n = strlen(value);
    if (n < 55 || !hex_field(value, 2, false) || !strncmp(value, "ff", 2) || value[2] != '-' ||
        !hex_field(value + 3, 32, true) || value[35] != '-' || !hex_field(value + 36, 16, true) ||
        value[52] != '-' || !hex_field(value + 53, 2, false))
        return false;
    if (!strncmp(value, "00", 2) ? n != 55 : n > 55 && value[55] != '-')
        return false;
    memcpy(trace_id, value + 3, QGH_TRACE_ID_LEN);
    trace_id[QGH_TRACE_ID_LEN] = '\0';
    return true;
}
