/* response.c - HTTP/1.1 response serialisation into a connection's output buffer. */
#include "net/response.h"

#include <stdio.h>

#include "core/clock.h"

const char *response_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

#define APPEND_LIT(out, lit) buf_append((out), lit, sizeof(lit) - 1)

void response_write_h1(struct buf *out, const struct response *res, bool head_only, enum response_connection conn,
                       const char *date)
{
    /* One reservation up front so the appends below never reallocate. */
    buf_reserve(out, 256 + res->body_len);
    if (res->status == 200) {
        APPEND_LIT(out, "HTTP/1.1 200 OK\r\n");
    } else {
        APPEND_LIT(out, "HTTP/1.1 ");
        buf_append_u64(out, (uint64_t)res->status);
        buf_append(out, " ", 1);
        const char *reason = response_reason(res->status);
        buf_append(out, reason, strlen(reason));
        APPEND_LIT(out, "\r\n");
    }
    APPEND_LIT(out, "Server: ringd\r\nDate: ");
    buf_append(out, date, CLOCK_DATE_LEN);
    APPEND_LIT(out, "\r\nContent-Type: ");
    buf_append(out, res->content_type, strlen(res->content_type));
    APPEND_LIT(out, "\r\nContent-Length: ");
    buf_append_u64(out, res->body_len);
    if (res->status == 405)
        APPEND_LIT(out, "\r\nAllow: GET, HEAD");
    if (conn == RESP_CONN_CLOSE)
        APPEND_LIT(out, "\r\nConnection: close");
    else if (conn == RESP_CONN_KEEP_ALIVE)
        APPEND_LIT(out, "\r\nConnection: keep-alive");
    APPEND_LIT(out, "\r\n\r\n");
    if (!head_only)
        buf_append(out, res->body, res->body_len);
}
