/* test_response.c - net/response.c: the exact bytes of HTTP/1.1 responses. */
#include "net/response.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"

#define DATE "Sun, 06 Nov 1994 08:49:37 GMT"

static struct buf out;

static void fini(void)
{
    buf_free(&out);
}

static void assert_bytes(const struct buf *b, const char *want, size_t want_len)
{
    cr_assert_eq(b->len, want_len, "length %zu, want %zu:\n%.*s", b->len, want_len, (int)b->len, b->data);
    cr_assert_eq(memcmp(b->data, want, want_len), 0, "got:\n%.*s\nwant:\n%s", (int)b->len, b->data, want);
}
#define ASSERT_BYTES(b, lit) assert_bytes((b), lit, sizeof(lit) - 1)

Test(response, date_fixture_matches_the_clock_format)
{
    char d[CLOCK_DATE_LEN + 1];
    clock_format_date(784111777, d);
    cr_assert_str_eq(d, DATE);
    cr_assert_eq(strlen(DATE), CLOCK_DATE_LEN);
}

Test(response, ok_200_exact_bytes, .fini = fini)
{
    struct response res = {
        .status = 200, .route = ROUTE_HEALTHZ, .content_type = "text/plain; charset=utf-8", .body = "ok\n", .body_len = 3};
    response_write_h1(&out, &res, false, RESP_CONN_DEFAULT, DATE);
    ASSERT_BYTES(&out, "HTTP/1.1 200 OK\r\n"
                       "Server: ringd\r\n"
                       "Date: " DATE "\r\n"
                       "Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Length: 3\r\n"
                       "\r\n"
                       "ok\n");
}

Test(response, method_not_allowed_405_exact_bytes, .fini = fini)
{
    static const char body[] = "{\"error\":\"method not allowed\"}";
    struct response res = {
        .status = 405, .route = ROUTE_OTHER, .content_type = "application/json", .body = body, .body_len = sizeof(body) - 1};
    response_write_h1(&out, &res, false, RESP_CONN_DEFAULT, DATE);
    ASSERT_BYTES(&out, "HTTP/1.1 405 Method Not Allowed\r\n"
                       "Server: ringd\r\n"
                       "Date: " DATE "\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 30\r\n"
                       "Allow: GET, HEAD\r\n"
                       "\r\n"
                       "{\"error\":\"method not allowed\"}");
}

Test(response, head_has_length_but_no_body, .fini = fini)
{
    struct response res = {.status = 404,
                           .route = ROUTE_OTHER,
                           .content_type = "application/json",
                           .body = "{\"error\":\"not found\"}",
                           .body_len = 21};
    response_write_h1(&out, &res, true, RESP_CONN_DEFAULT, DATE);
    ASSERT_BYTES(&out, "HTTP/1.1 404 Not Found\r\n"
                       "Server: ringd\r\n"
                       "Date: " DATE "\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 21\r\n"
                       "\r\n");
}

Test(response, connection_headers, .fini = fini)
{
    struct response res = {.status = 200, .route = ROUTE_HEALTHZ, .content_type = "text/plain", .body = "x", .body_len = 1};
    response_write_h1(&out, &res, false, RESP_CONN_CLOSE, DATE);
    ASSERT_BYTES(&out, "HTTP/1.1 200 OK\r\nServer: ringd\r\nDate: " DATE "\r\nContent-Type: text/plain\r\n"
                       "Content-Length: 1\r\nConnection: close\r\n\r\nx");
    out.len = 0;
    response_write_h1(&out, &res, false, RESP_CONN_KEEP_ALIVE, DATE);
    ASSERT_BYTES(&out, "HTTP/1.1 200 OK\r\nServer: ringd\r\nDate: " DATE "\r\nContent-Type: text/plain\r\n"
                       "Content-Length: 1\r\nConnection: keep-alive\r\n\r\nx");
    out.len = 0;
    res.status = 405;
    response_write_h1(&out, &res, true, RESP_CONN_CLOSE, DATE);
    ASSERT_BYTES(&out, "HTTP/1.1 405 Method Not Allowed\r\nServer: ringd\r\nDate: " DATE
                       "\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n");
}

Test(response, appends_pipelined_responses_in_order, .fini = fini)
{
    struct response a = {.status = 200, .route = ROUTE_HEALTHZ, .content_type = "t", .body = "A", .body_len = 1};
    struct response b = {.status = 404, .route = ROUTE_OTHER, .content_type = "t", .body = "BB", .body_len = 2};
    response_write_h1(&out, &a, false, RESP_CONN_DEFAULT, DATE);
    size_t first = out.len;
    response_write_h1(&out, &b, false, RESP_CONN_DEFAULT, DATE);
    cr_assert_eq(memcmp(out.data, "HTTP/1.1 200 OK\r\n", 17), 0);
    cr_assert_eq(out.data[first - 1], 'A');
    cr_assert_eq(memcmp(out.data + first, "HTTP/1.1 404 Not Found\r\n", 24), 0);
    cr_assert_eq(memcmp(out.data + out.len - 6, "\r\n\r\nBB", 6), 0);
}

Test(response, big_and_empty_bodies, .fini = fini)
{
    size_t n = 300000;
    char *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)('a' + i % 26);
    struct response res = {.status = 200, .route = ROUTE_METRICS, .content_type = "t", .body = body, .body_len = n};
    response_write_h1(&out, &res, false, RESP_CONN_DEFAULT, DATE);
    const char *cl = memmem(out.data, out.len, "Content-Length: 300000\r\n\r\n", 26);
    cr_assert_not_null(cl);
    size_t head = (size_t)(cl - out.data) + 26;
    cr_assert_eq(out.len, head + n);
    cr_assert_eq(memcmp(out.data + head, body, n), 0);
    free(body);

    out.len = 0;
    struct response empty = {.status = 200, .route = ROUTE_HEALTHZ, .content_type = "t", .body = "", .body_len = 0};
    response_write_h1(&out, &empty, false, RESP_CONN_DEFAULT, DATE);
    cr_assert_not_null(memmem(out.data, out.len, "Content-Length: 0\r\n\r\n", 21));
    cr_assert_eq(memcmp(out.data + out.len - 4, "\r\n\r\n", 4), 0);
}

Test(response, status_lines_for_every_status_ringd_sends, .fini = fini)
{
    static const struct {
        int status;
        const char *line;
    } cases[] = {
        {101, "HTTP/1.1 101 Switching Protocols\r\n"},   {400, "HTTP/1.1 400 Bad Request\r\n"},
        {401, "HTTP/1.1 401 Unauthorized\r\n"},          {404, "HTTP/1.1 404 Not Found\r\n"},
        {408, "HTTP/1.1 408 Request Timeout\r\n"},       {413, "HTTP/1.1 413 Content Too Large\r\n"},
        {414, "HTTP/1.1 414 URI Too Long\r\n"},          {431, "HTTP/1.1 431 Request Header Fields Too Large\r\n"},
        {500, "HTTP/1.1 500 Internal Server Error\r\n"}, {501, "HTTP/1.1 501 Not Implemented\r\n"},
        {503, "HTTP/1.1 503 Service Unavailable\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        out.len = 0;
        struct response res = {.status = cases[i].status, .content_type = "application/json", .body = "{}", .body_len = 2};
        response_write_h1(&out, &res, false, RESP_CONN_DEFAULT, DATE);
        size_t l = strlen(cases[i].line);
        cr_assert(out.len > l && memcmp(out.data, cases[i].line, l) == 0, "%d: %.*s", cases[i].status, (int)l, out.data);
        cr_assert_null(memmem(out.data, out.len, "Allow:", 6), "%d has no Allow", cases[i].status);
    }
}
