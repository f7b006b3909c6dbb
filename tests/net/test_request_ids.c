/* test_request_ids.c - x-request-id and traceparent on HTTP/1.1 and HTTP/2 against the real server: echoed when
 * valid, replaced (id) or dropped (traceparent) otherwise, generated ids unique across requests, shards and runs. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/trace.h"
#include "tests/support/h2client.h"
#include "tests/support/server.h"

#define USERS 100
#define TP_OK "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static struct test_server ts;

static void start(void)
{
    static const char *const args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_launch(&ts, USERS, args), 0, "server starts");
}

static void stop(void)
{
    ts_stop(&ts);
}

static void finish(void)
{
    cr_assert_eq(ts_stop(&ts), 0, "server exit status");
}

TestSuite(request_ids, .init = start, .fini = stop, .timeout = 120);

/* Whether id has the generated shape: 16 hex, '-', 2 hex, '-', 12 hex. */
static bool generated(const char *id)
{
    if (strlen(id) != TRACE_GEN_LEN || id[16] != '-' || id[19] != '-')
        return false;
    for (int i = 0; i < TRACE_GEN_LEN; i++)
        if (i != 16 && i != 19 && strchr("0123456789abcdef", id[i]) == NULL)
            return false;
    return true;
}

/* GET path over HTTP/1.1 with extra header lines; the X-Request-Id and Traceparent answered ("" when absent). */
static int h1(const char *path, const char *extra, char *rid, size_t rlen, char *tp, size_t tlen)
{
    struct ts_response r;
    cr_assert_eq(ts_get(ts.port, path, extra, &r), 0, "GET %s", path);
    rid[0] = tp[0] = '\0';
    ts_header(&r, "x-request-id", rid, rlen);
    ts_header(&r, "traceparent", tp, tlen);
    return r.status;
}

Test(request_ids, h1_echo_replace_generate)
{
    char rid[256], tp[256];
    cr_assert_eq(h1("/users/1", "X-Request-Id: abc-123_x.y\r\n", rid, sizeof(rid), tp, sizeof(tp)), 200);
    cr_assert_str_eq(rid, "abc-123_x.y", "a valid id is echoed");
    cr_assert_str_eq(tp, "", "no traceparent sent, none answered");

    char longid[80];
    memset(longid, 'a', 64);
    longid[64] = '\0';
    char hdr[200];
    snprintf(hdr, sizeof(hdr), "x-request-id: %s\r\n", longid);
    h1("/users/1", hdr, rid, sizeof(rid), tp, sizeof(tp));
    cr_assert_str_eq(rid, longid, "64 octets are kept");
    snprintf(hdr, sizeof(hdr), "x-request-id: %sa\r\n", longid);
    h1("/users/1", hdr, rid, sizeof(rid), tp, sizeof(tp));
    cr_assert(generated(rid), "65 octets are replaced: %s", rid);

    const char *bad[] = {"X-Request-Id: a/b\r\n", "X-Request-Id: a b\r\n", "X-Request-Id: \"x\"\r\n", "X-Request-Id: \xff\xfe\r\n",
                         "X-Request-Id: a\r\nX-Request-Id: b\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        h1("/users/1", bad[i], rid, sizeof(rid), tp, sizeof(tp));
        cr_assert(generated(rid), "case %zu replaced: %s", i, rid);
    }

    /* Without one: generated, different every time, on every route and status. */
    char seen[64][64];
    const char *paths[] = {"/users/1", "/users/999999", "/users/x", "/healthz", "/nope", "/metrics"};
    for (int i = 0; i < 64; i++) {
        h1(paths[i % 6], NULL, rid, sizeof(rid), tp, sizeof(tp));
        cr_assert(generated(rid), "%s", rid);
        for (int k = 0; k < i; k++)
            cr_assert_str_neq(seen[k], rid, "ids repeat");
        strcpy(seen[i], rid);
    }
    finish();
}

Test(request_ids, h1_traceparent)
{
    char rid[256], tp[256];
    h1("/users/2", "traceparent: " TP_OK "\r\n", rid, sizeof(rid), tp, sizeof(tp));
    cr_assert_str_eq(tp, TP_OK, "a valid traceparent is echoed");
    cr_assert(generated(rid));
    const char *bad[] = {
        "traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n",
        "traceparent: ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7\r\n",
        "traceparent: garbage\r\n",
        "traceparent: " TP_OK "\r\ntraceparent: " TP_OK "\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(h1("/users/2", bad[i], rid, sizeof(rid), tp, sizeof(tp)), 200, "an invalid one is ignored");
        cr_assert_str_eq(tp, "", "case %zu not echoed: %s", i, tp);
    }
    finish();
}

Test(request_ids, h1_unparseable_request_gets_an_id)
{
    struct ts_response r;
    cr_assert_eq(ts_roundtrip(ts.port, "GET /users/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", &r),
                 0);
    cr_assert_eq(r.status, 400);
    char rid[128];
    cr_assert_eq(ts_header(&r, "x-request-id", rid, sizeof(rid)), 0);
    cr_assert(generated(rid));
    finish();
}

/* Pipelined requests on one connection, and connections spread over both shards: every id differs. */
Test(request_ids, generated_ids_unique_across_connections_and_shards)
{
    enum { CONNS = 16, PER = 8 };
    static char ids[CONNS * PER][64];
    int n = 0;
    for (int k = 0; k < CONNS; k++) {
        int fd = ts_connect(ts.port);
        cr_assert_geq(fd, 0);
        char req[PER * 64];
        req[0] = '\0';
        for (int i = 0; i < PER; i++)
            strcat(req, "GET /users/3 HTTP/1.1\r\nHost: x\r\n\r\n");
        cr_assert_eq(ts_send_all(fd, req, strlen(req)), 0);
        for (int i = 0; i < PER; i++) {
            struct ts_response r;
            cr_assert_eq(ts_read_response(fd, &r, false), 0);
            cr_assert_eq(ts_header(&r, "x-request-id", ids[n], sizeof(ids[n])), 0);
            cr_assert(generated(ids[n]));
            for (int j = 0; j < n; j++)
                cr_assert_str_neq(ids[j], ids[n]);
            n++;
        }
        close(fd);
    }
    finish();
}

Test(request_ids, h2_echo_replace_generate_traceparent)
{
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, NULL, 0, false), 0);
    char longid[65];
    memset(longid, 'z', 64);
    longid[64] = '\0';
    const char *const with_id[] = {"x-request-id", "req-42", "traceparent", TP_OK, NULL};
    const char *const with_long[] = {"x-request-id", longid, NULL};
    const char *const bad[] = {"x-request-id", "no spaces", "traceparent", "00-nope", NULL};
    const char *const dup[] = {"x-request-id", "a", "x-request-id", "b", NULL};
    int32_t a = h2c_request(&cl, "GET", "/users/1", with_id);
    int32_t b = h2c_request(&cl, "GET", "/users/1", with_long);
    int32_t c = h2c_request(&cl, "GET", "/users/1", bad);
    int32_t d = h2c_request(&cl, "GET", "/users/1", NULL);
    int32_t e = h2c_request(&cl, "GET", "/nope", NULL);
    int32_t f = h2c_request(&cl, "GET", "/users/1", dup);
    int32_t g = h2c_request(&cl, "POST", "/users/1", with_id); /* 405, with a body-less POST */
    cr_assert_eq(h2c_run(&cl), 0);
    struct h2c_stream *s = h2c_stream(&cl, a);
    cr_assert_eq(s->status, 200);
    cr_assert_str_eq(s->request_id, "req-42");
    cr_assert_str_eq(s->traceparent, TP_OK);
    cr_assert_str_eq(h2c_stream(&cl, b)->request_id, longid, "64 octets: HPACK length in one octet");
    cr_assert(generated(h2c_stream(&cl, c)->request_id));
    cr_assert_str_eq(h2c_stream(&cl, c)->traceparent, "");
    cr_assert(generated(h2c_stream(&cl, d)->request_id));
    cr_assert(generated(h2c_stream(&cl, e)->request_id));
    cr_assert_eq(h2c_stream(&cl, e)->status, 404);
    cr_assert(generated(h2c_stream(&cl, f)->request_id), "a repeated id is replaced");
    cr_assert_str_neq(h2c_stream(&cl, c)->request_id, h2c_stream(&cl, d)->request_id);
    cr_assert_str_neq(h2c_stream(&cl, d)->request_id, h2c_stream(&cl, e)->request_id);
    cr_assert_eq(h2c_stream(&cl, g)->status, 405);
    cr_assert_str_eq(h2c_stream(&cl, g)->request_id, "req-42");
    cr_assert_str_eq(h2c_stream(&cl, g)->traceparent, TP_OK);
    /* Many answers on one connection: the HPACK table stays in step (nghttp2 would fail the session otherwise). */
    for (int i = 0; i < 200; i++)
        h2c_request(&cl, "GET", "/users/2", i % 2 ? with_id : NULL);
    cr_assert_eq(h2c_run(&cl), 0);
    h2c_close(&cl);
    finish();
}

/* A request with a body keeps its ids in the stream until END_STREAM. */
Test(request_ids, h2_request_with_body)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    const char *const nv[] = {":method", "GET",          ":scheme",  "http",        ":path", "/users/4", ":authority",
                              "x",       "x-request-id", "body-req", "traceparent", TP_OK,   NULL};
    cr_assert_eq(h2raw_send_headers(&r, 1, 0, nv), 0);
    cr_assert_eq(h2raw_send_frame(&r, 0 /* DATA */, 1 /* END_STREAM */, 1, "abc", 3), 0);
    struct h2raw_result res;
    memset(&res, 0, sizeof(res));
    cr_assert_eq(h2raw_wait(&r, 1, &res), 0);
    cr_assert_eq(res.status, 200);
    cr_assert_str_eq(res.request_id, "body-req");
    cr_assert_str_eq(res.traceparent, TP_OK);
    h2raw_close(&r);
    finish();
}
