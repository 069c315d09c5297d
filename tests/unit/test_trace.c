/* traceparent validation (src/http/trace.c), cases from the W3C Trace Context spec and its test suite. */
#include "trace.h"
#include "qgtest.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"

static void valid(const char *v, const char *want)
{
    char id[QGH_TRACE_ID_LEN + 1] = "x";
    bool ok = qgh_traceparent(v, id);
    if (!ok || strcmp(id, want))
        fprintf(stderr, "   %s: refused or wrong id %s\n", v, id);
    CHECK(ok);
    CHECK_STR(id, want);
}

static void invalid(const char *v)
{
    char id[QGH_TRACE_ID_LEN + 1] = "x";
    bool ok = qgh_traceparent(v, id);
    if (ok)
        fprintf(stderr, "   %s: accepted\n", v ? v : "NULL");
    CHECK(!ok);
    CHECK_STR(id, "");
}

static void accepted(void)
{
    valid("00-" TID "-00f067aa0ba902b7-01", TID);
    valid("00-" TID "-00f067aa0ba902b7-00", TID);
    valid("00-" TID "-00f067aa0ba902b7-ff", TID); /* unknown flags are kept */
    /* A later version may add fields after a '-'. */
    valid("01-" TID "-00f067aa0ba902b7-01", TID);
    valid("cc-" TID "-00f067aa0ba902b7-01-what-the-future-will-be-like", TID);
}

static void refused(void)
{
    invalid(NULL);
    invalid("");
    invalid("00-" TID "-00f067aa0ba902b7");                    /* no flags */
    invalid("00-" TID "-00f067aa0ba902b7-01-extra");           /* version 00 has 4 fields */
    invalid("00-" TID "-00f067aa0ba902b7-01 ");
    invalid("cc-" TID "-00f067aa0ba902b7-01.x");               /* a later field needs a '-' */
    invalid("ff-" TID "-00f067aa0ba902b7-01");                 /* version ff */
    invalid("00-00000000000000000000000000000000-00f067aa0ba902b7-01"); /* zero trace id */
    invalid("00-" TID "-0000000000000000-01");                 /* zero parent id */
    invalid("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"); /* capitals */
    invalid("00-" TID "-00F067AA0BA902B7-01");
    invalid("0G-" TID "-00f067aa0ba902b7-01");
    invalid("00-" TID "-00f067aa0ba902b7-0x");
    invalid("00_" TID "-00f067aa0ba902b7-01");
    invalid("00-" TID "_00f067aa0ba902b7-01");
    invalid("00-" TID "-00f067aa0ba902b7_01");
    invalid("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"); /* short trace id */
    invalid("00-" TID "-00f067aa0ba902b-01");
    invalid("00-4bf92f3577b34da6a3ce929d0e0e4736\"-00f067aa0ba902b7-01");
}

int main(void)
{
    RUN(accepted);
    RUN(refused);
    return qgt_done();
}
