/* response.c - HTTP/1.1 response serialisation into a connection's output buffer. */
#include "net/response.h"

#include <stdio.h>
#include <string.h>

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
    case 415: return "Unsupported Media Type";
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

/* Copies a string literal at p and moves p past it: a constant-size memcpy,
 * which the compiler turns into a few stores. */
#define PUT_LIT(p, lit) (memcpy((p), lit, sizeof(lit) - 1), (p) += sizeof(lit) - 1)

static inline char *put(char *p, const void *src, size_t n)
{
    memcpy(p, src, n);
    return p + n;
}

/* The head is at most 17 (status line) + 32 (reason) + 21 + 29 + 16 + ctype +
 * 18 + 20 + 19 + 24 + 4 bytes: HEAD_MAX with a content type of up to 64;
 * the request id and the traceparent are added to it. */
#define HEAD_MAX 320

void response_write_h1(struct buf *out, const struct response *res, bool head_only, enum response_connection conn,
                       const char *date)
{
    size_t ctype_len = strlen(res->content_type);
    /* One reservation, then every byte is written through p: no per-piece checks. */
    buf_reserve(out, HEAD_MAX + ctype_len + res->body_len + res->request_id_len + res->traceparent_len + 32);
    char *p = out->data + out->len;
    if (res->status == 200) {
        PUT_LIT(p, "HTTP/1.1 200 OK\r\nServer: ringd\r\nDate: ");
    } else {
        char num[20];
        size_t n = buf_fmt_u64(num, (uint64_t)(unsigned)res->status);
        const char *reason = response_reason(res->status);
        PUT_LIT(p, "HTTP/1.1 ");
        p = put(p, num + sizeof(num) - n, n);
        *p++ = ' ';
        p = put(p, reason, strlen(reason));
        PUT_LIT(p, "\r\nServer: ringd\r\nDate: ");
    }
    p = put(p, date, CLOCK_DATE_LEN);
    PUT_LIT(p, "\r\nContent-Type: ");
    p = put(p, res->content_type, ctype_len);
    PUT_LIT(p, "\r\nContent-Length: ");
    char num[20];
    size_t n = buf_fmt_u64(num, res->body_len);
    p = put(p, num + sizeof(num) - n, n);
    if (res->status == 405)
        PUT_LIT(p, "\r\nAllow: GET, HEAD");
    if (res->request_id != NULL) {
        PUT_LIT(p, "\r\nX-Request-Id: ");
        if (res->request_id_len == TRACE_GEN_LEN) /* a generated id: a constant-size copy, a few stores */
            p = put(p, res->request_id, TRACE_GEN_LEN);
        else
            p = put(p, res->request_id, res->request_id_len);
    }
    if (res->traceparent != NULL) {
        PUT_LIT(p, "\r\nTraceparent: ");
        p = put(p, res->traceparent, res->traceparent_len);
    }
    if (conn == RESP_CONN_CLOSE)
        PUT_LIT(p, "\r\nConnection: close");
    else if (conn == RESP_CONN_KEEP_ALIVE)
        PUT_LIT(p, "\r\nConnection: keep-alive");
    PUT_LIT(p, "\r\n\r\n");
    if (!head_only)
        p = put(p, res->body, res->body_len);
    out->len = (size_t)(p - out->data);
}
