/* Which Accept headers ask for a streamed answer (src/http/stream.c); the streams themselves are
   tested against the server in tests/http/test_stream.py. */
#include "stream.h"
#include "qgtest.h"

static void accept_header(void)
{
    CHECK(qgh_wants_ndjson("application/x-ndjson"));
    CHECK(qgh_wants_ndjson("Application/X-NDJSON"));
    CHECK(qgh_wants_ndjson("application/json;q=0.5, application/x-ndjson"));
    CHECK(qgh_wants_ndjson("application/x-ndjson ; q=0.9"));
    CHECK(qgh_wants_ndjson("text/html,application/x-ndjson;q=1"));
    CHECK(!qgh_wants_ndjson(NULL));
    CHECK(!qgh_wants_ndjson(""));
    CHECK(!qgh_wants_ndjson("*/*"));
    CHECK(!qgh_wants_ndjson("application/json"));
    CHECK(!qgh_wants_ndjson("application/x-ndjsonx"));
    CHECK(!qgh_wants_ndjson("xapplication/x-ndjson"));
    CHECK(!qgh_wants_ndjson("application/x-ndjson;q=0"));
    CHECK(!qgh_wants_ndjson("application/x-ndjson; q=0.000, application/json"));
    CHECK(qgh_wants_ndjson("application/x-ndjson;q=0.01"));
}

int main(void)
{
    RUN(accept_header);
    return qgt_done();
}
