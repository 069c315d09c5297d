/* JSON input that keeps numbers exact: jansson underneath, digits as sent. */
#ifndef QUERYGATE_JSON_H
#define QUERYGATE_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include "querygate/error.h"
#include "querygate/params.h"

/*
 * Parses text strictly (RFC 8259; duplicate object keys and the escape \u0000
 * are rejected, since PostgreSQL text cannot hold NUL). Numbers keep the exact
 * characters the caller sent: test them with qg_json_is_number() before
 * json_is_string(), because they are stored as jansson strings with a marker.
 * Returns a new reference (json_decref), or NULL with QG_ERR_INVALID_JSON
 * (message with line and column), QG_ERR_INVALID_REQUEST for \u0000 in valid
 * JSON, or QG_ERR_INTERNAL when out of memory.
 */
json_t *qg_json_parse(const char *text, size_t len, qg_error *err) QG_MUSTCHECK;

/* True for a number node made by qg_json_parse(). */
bool qg_json_is_number(const json_t *v);

/* The number's text as sent ("12345678901234567890.123456789"), borrowed. */
const char *qg_json_number_text(const json_t *v, size_t *len);

/* Compact JSON text of v with numbers as sent. malloc'd; caller frees. */
char *qg_json_dump(const json_t *v, size_t *len);

/*
 * Converts a request's `params` object into *out (new; qg_params_free) by the
 * contract's rules: string -> text, number -> its digits, true/false, null,
 * object -> JSON text, array -> JSON text plus PostgreSQL array literal.
 * obj may be NULL (no params). Not an object: QG_ERR_INVALID_REQUEST.
 */
qg_status qg_params_from_json(const json_t *obj, qg_params **out, qg_error *err) QG_MUSTCHECK;

#endif
