/* h1_parser.h - HTTP/1.1 request heads: picohttpparser plus the framing and safety rules it leaves to us. */
#ifndef RINGD_H1_PARSER_H
#define RINGD_H1_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/picohttpparser.h"

#define H1_MAX_HEADERS 100
#define H1_MAX_REQUEST_LINE 8192  /* longer: 414 */
#define H1_MAX_HEADER_BYTES 32768 /* header fields after the request line; more: 431 */
#define H1_MAX_HEAD (H1_MAX_REQUEST_LINE + H1_MAX_HEADER_BYTES + 4)
#define H1_MAX_BODY (1u << 20) /* a Content-Length above this: 413 */

enum h1_method { H1_GET, H1_HEAD, H1_OTHER };

/* One parsed request head. Every pointer points into the buffer given to
 * h1_parse and is valid while that buffer is unchanged. */
struct h1_request {
    const char *method;
    size_t method_len;
    enum h1_method method_kind;
    const char *path;
    size_t path_len;
    int minor_version;     /* 0 or 1 */
    bool keep_alive;       /* after the version default and Connection tokens */
    uint64_t content_length;
    const char *user_id;   /* value of the user-id header, NULL when absent */
    size_t user_id_len;
    const char *request_id; /* x-request-id value, NULL when absent; length 0 when repeated */
    size_t request_id_len;
    const char *traceparent; /* traceparent value, NULL when absent; length 0 when repeated */
    size_t traceparent_len;
    bool expect_continue;  /* HTTP/1.1 with Expect: 100-continue (ignored in HTTP/1.0, RFC 9110 10.1.1) */
    bool upgrade_h2c;      /* Upgrade: h2c with Connection: Upgrade, HTTP2-Settings */
    const char *h2_settings;
    size_t h2_settings_len;
    size_t num_headers;
    struct phr_header headers[H1_MAX_HEADERS + 1];
};

/* Parses and checks the request head at the start of buf[0..len).
 * Returns the head's length (> 0; the body of content_length bytes follows),
 * 0 when more bytes are needed (len is then below H1_MAX_HEAD), or a negative
 * HTTP status for a request that must be answered with that status, after
 * which the connection is closed because the byte stream can no longer be
 * trusted: -400 (syntax, framing, Host, a repeated user-id), -413 (body over
 * H1_MAX_BODY), -414, -417 (an expectation other than 100-continue), -431,
 * -501 (Transfer-Encoding), -505 (a well-formed request line whose HTTP major
 * version is not 1). The verdict for a prefix of an input is 0 or the
 * verdict for the whole. Never reads past buf + len. */
int h1_parse(const char *buf, size_t len, struct h1_request *req);

#endif
