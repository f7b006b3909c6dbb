/* h1.c - HTTP/1.1 connections: requests in, responses appended to the connection's output, pipelined in order. */
#include "net/h1.h"

#include <string.h>

#include "core/server.h"
#include "core/shard.h"
#include "net/conn.h"
#include "net/h1_parser.h"
#include "net/h2.h"
#include "net/response.h"
#include "net/router.h"

/* Answers a request that could not be parsed or violates framing; the byte
 * stream can no longer be trusted, so the connection closes after it. */
static void answer_error(struct conn *c, int status, bool head_only, enum metrics_close reason)
{
    struct shard *s = c->shard;
    struct response res = {.status = status, .route = ROUTE_OTHER, .content_type = "application/json"};
    res.body = router_error_body(status, &res.body_len);
    res.request_id = trace_idgen_next(&s->idgen); /* nothing of the request can be trusted */
    res.request_id_len = TRACE_GEN_LEN;
    response_write_h1(&c->out, &res, head_only, RESP_CONN_CLOSE, s->clock.date);
    shard_count_request(s, PROTO_HTTP1, ROUTE_OTHER, status);
    if (s->alog != NULL)
        shard_log_request(s, c, NULL, &res, PROTO_HTTP1, head_only);
    c->close_after_send = true;
    c->close_reason = reason;
    shard_want_flush(s, c);
}

void h1_header_timeout(struct conn *c)
{
    bool head = c->in.len >= 5 && memcmp(c->in.data, "HEAD ", 5) == 0;
    answer_error(c, 408, head, CLOSE_HEADER_TIMEOUT);
}

static void answer(struct conn *c, const struct h1_request *hr)
{
    struct shard *s = c->shard;
    struct request req = {
        .method = hr->method_kind == H1_GET ? METHOD_GET : hr->method_kind == H1_HEAD ? METHOD_HEAD : METHOD_OTHER,
        .path = hr->path,
        .path_len = hr->path_len,
        .user_id = hr->user_id,
        .user_id_len = hr->user_id_len,
        .listener = c->listener,
        .request_id = hr->request_id,
        .request_id_len = hr->request_id_len,
        .traceparent = hr->traceparent,
        .traceparent_len = hr->traceparent_len,
        .method_name = hr->method,
        .method_name_len = hr->method_len,
    };
    struct response res;
    router_handle(s, &req, &res);
    router_set_ids(&s->idgen, &req, &res);

    enum response_connection ch = RESP_CONN_DEFAULT;
    if (!hr->keep_alive || s->draining) {
        ch = RESP_CONN_CLOSE;
        c->close_after_send = true;
        c->close_reason = s->draining ? CLOSE_SHUTDOWN : CLOSE_CLIENT;
    } else if (hr->minor_version == 0) {
        ch = RESP_CONN_KEEP_ALIVE;
    }
    response_write_h1(&c->out, &res, req.method == METHOD_HEAD, ch, s->clock.date);
    shard_count_request(s, PROTO_HTTP1, res.route, res.status);
    if (s->alog != NULL)
        shard_log_request(s, c, &req, &res, PROTO_HTTP1, req.method == METHOD_HEAD);
    c->seen_request = true;
    shard_want_flush(s, c);
}

uint64_t h1_user_hint(const char *data, size_t len)
{
    if (len < 12 || memcmp(data, "GET ", 4) != 0)
        return 0;
    return router_user_hint(data + 4, len - 4);
}

/* Whether the first line of data[0..len) (all of it when no LF came yet)
 * holds "HTTP/": a request line of any HTTP/1.x version, well-formed or not. */
static bool first_line_has_version(const char *data, size_t len)
{
    const char *nl = memchr(data, '\n', len);
    size_t n = nl != NULL ? (size_t)(nl - data) : len;
    return memmem(data, n, "HTTP/", 5) != NULL;
}

size_t h1_process(struct conn *c, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        if (c->close_after_send)
            return len; /* nothing after the last response is read */
        if (c->body_left > 0) {
            size_t skip = len - off < c->body_left ? len - off : (size_t)c->body_left;
            off += skip;
            c->body_left -= skip;
            if (c->body_left == 0)
                c->request_start_ms = c->shard->clock.now_ms; /* the next head starts here */
            continue;
        }
        if (c->out.len >= CONN_OUT_HIGH_WATER) {
            c->paused = true;
            break;
        }
        struct h1_request req;
        int rc = h1_parse(data + off, len - off, &req);
        if (rc == 0)
            break;
        if (rc < 0) {
            if (rc == -400 && !c->seen_request && off == 0 && !first_line_has_version(data, len)) {
                /* The connection's first bytes are not HTTP/1.x at all: a
                 * client of another protocol (an HTTP/2 client whose preface
                 * is broken, h2spec 3.5 #2; TLS on the cleartext port). An
                 * HTTP/1.1 answer would be garbage to it: just close. */
                c->close_after_send = true;
                c->close_reason = CLOSE_ERROR;
                shard_want_flush(c->shard, c);
                return len;
            }
            bool head = len - off >= 5 && memcmp(data + off, "HEAD ", 5) == 0;
            answer_error(c, -rc, head, CLOSE_ERROR);
            return len;
        }
        off += (size_t)rc;
        c->body_left = req.content_length;
        if (req.expect_continue && req.content_length > len - off) {
            /* The client waits for this before sending its body (RFC 9110
             * 10.1.1); the final answer follows at once, and the body is
             * then read and discarded like any other. Not sent once the
             * whole body is already here. */
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            buf_append(&c->out, cont, sizeof(cont) - 1);
        }
        /* h2c is cleartext only (RFC 9113 3.1): over TLS, HTTP/2 comes by ALPN. */
        if (req.upgrade_h2c && c->tls == NULL && req.content_length == 0 && !c->shard->draining &&
            h2_upgrade(c, &req) == 0)
            return off; /* the rest of the bytes are HTTP/2 frames */
        if (req.content_length == 0) {
            /* A pipelined request behind this one: its index entry and
             * overlay word start loading now and arrive while this one is
             * answered (the turn's prefetch saw only each read's first). */
            uint64_t next = h1_user_hint(data + off, len - off);
            if (next != 0)
                store_prefetch(&c->shard->reader, next);
        }
        answer(c, &req);
        c->request_start_ms = c->shard->clock.now_ms; /* the next head starts here */
    }
    return off;
}
