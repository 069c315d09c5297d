/* reqid.c: the X-Request-Id of a request. */
#ifndef QGH_REQID_H
#define QGH_REQID_H


#define QGH_REQUEST_ID_MAX 200
/* Copies the caller's id into out if it is sane (1..200 printable ASCII), else a new one. */
void qgh_request_id(const char *given, char out[QGH_REQUEST_ID_MAX + 1]);

#endif
