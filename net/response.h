/* response.h - serialising a response as HTTP/1.1 bytes. */
#ifndef RINGD_RESPONSE_H
#define RINGD_RESPONSE_H

#include <stdbool.h>

#include "core/buf.h"
#include "net/router.h"

/* Reason phrase of status ("OK", "Not Found", ...). */
const char *response_reason(int status);

/* The Connection header a response carries. */
enum response_connection {
    RESP_CONN_DEFAULT,    /* none: HTTP/1.1 keeps the connection open */
    RESP_CONN_CLOSE,      /* "Connection: close": this is the last response */
    RESP_CONN_KEEP_ALIVE, /* "Connection: keep-alive": an HTTP/1.0 client asked for it */
};

/* Appends status line, Server, Date, Content-Type, Content-Length (Allow on
 * 405), X-Request-Id (when res->request_id is set), Traceparent (when
 * res->traceparent is set), Connection as given and, unless head_only, the body.
 * date is the shard's cached IMF-fixdate. */
void response_write_h1(struct buf *out, const struct response *res, bool head_only, enum response_connection conn,
                       const char *date);

#endif
