/* stream.c: a read answered as NDJSON lines while it runs (Accept: application/x-ndjson). */
#ifndef QGH_STREAM_H
#define QGH_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include "handler.h"

typedef struct qgh_stream qgh_stream;
struct qgh_statement;

/* The end of the body, for qgh_stream_read. */
#define QGH_STREAM_END (-1L)
/* The body cannot end well (out of memory writing its last line): cut the connection. */
#define QGH_STREAM_ABORT (-2L)

/* True when an Accept header (NULL: none) asks for application/x-ndjson. */
bool qgh_wants_ndjson(const char *accept);

/*
 * Runs st (one statement, read only; taken: its sets and root are freed by the
 * stream, its sql is copied, so it may be borrowed for the call) as a stream on
 * call's loop. When its columns are known, call->reply becomes a 200 whose
 * body is the stream (reply->stream) and call->finish is called; an error
 * before that is the ordinary error answer. Then the server pulls the body
 * with qgh_stream_read and hears of more through call->wake. For /query and
 * for named read queries alike.
 */
void qgh_stream_statement(const struct qgh_ctx *ctx, struct qgh_call *call,
                          struct qgh_statement *st);

/* Up to max bytes of the body into buf: their count; 0 when nothing is ready yet (call->wake
   says when); QGH_STREAM_END; QGH_STREAM_ABORT. */
long qgh_stream_read(qgh_stream *s, char *buf, size_t max);

/* The request is over (sent, or the client left): its run, if still running, is cancelled;
   s frees itself once the run has ended. s may be NULL. */
void qgh_stream_detach(qgh_stream *s);

#endif
