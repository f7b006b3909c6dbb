/* test_grpc.c - net/grpc.c and gRPC on net/h2.c, frame by frame against the real server: the wire rules
 * (length prefix across DATA frames, Trailers-Only, 415, grpc-timeout, compression, 4 MiB), every status,
 * flow control of a large batch answer, health and UNAVAILABLE during a drain, and the metrics. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/pb.h"
#include "store/store.h"
#include "tests/support/h2client.h"
#include "tests/support/server.h"

#define USERS 2000

static struct test_server ts;

static void start(void)
{
    cr_assert_eq(ts_launch(&ts, USERS, NULL), 0, "server starts");
}

static void stop(void)
{
    ts_stop(&ts);
}

static void finish(void)
{
    cr_assert_eq(ts_stop(&ts), 0, "server exit status");
}

/* A gRPC request's header block on stream sid (path, then extra name/value pairs), END_STREAM when end. */
static void send_call_headers(struct h2raw *r, int32_t sid, const char *path, const char *ctype, const char *const *extra, bool end)
{
    const char *nv[32] = {":method",    "POST",      ":scheme",      "http", ":path", path,
                          ":authority", "localhost", "content-type", ctype,  "te",    "trailers"};
    size_t n = 12;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
        nv[n++] = extra[i];
    nv[n] = NULL;
    cr_assert_eq(h2raw_send_headers(r, sid, end ? NGHTTP2_FLAG_END_STREAM : 0, nv), 0);
}

/* msg[0..len) as one length-prefixed message in one DATA frame ending the stream. */
static void send_message(struct h2raw *r, int32_t sid, const void *msg, size_t len)
{
    uint8_t buf[16384];
    cr_assert_leq(len + 5, sizeof(buf));
    buf[0] = 0;
    buf[1] = (uint8_t)(len >> 24);
    buf[2] = (uint8_t)(len >> 16);
    buf[3] = (uint8_t)(len >> 8);
    buf[4] = (uint8_t)len;
    memcpy(buf + 5, msg, len);
    cr_assert_eq(h2raw_send_frame(r, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, sid, buf, len + 5), 0);
}

/* One unary call on a fresh connection: returns its result. */
static struct h2raw_result call(const char *path, const void *msg, size_t len)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    send_call_headers(&r, 1, path, "application/grpc", NULL, false);
    send_message(&r, 1, msg, len);
    struct h2raw_result res = {0};
    cr_assert_eq(h2raw_wait(&r, 1, &res), 0, "the call ends");
    h2raw_close(&r);
    return res;
}

/* GetUserRequest{id} */
static size_t get_user_request(uint64_t id, uint8_t *out)
{
    out[0] = 0x08;
    return 1 + pb_put_varint(out + 1, id);
}

/* Trailers-Only: one HEADERS ending the stream, :status 200, the code, no DATA. */
static void expect_trailers_only(const struct h2raw_result *res, int code)
{
    cr_assert_eq(res->status, 200, "gRPC errors are HTTP 200 (got %d)", res->status);
    cr_assert(res->has_grpc_status, "grpc-status is there");
    cr_assert_eq(res->grpc_status, code, "grpc-status %d, wanted %d", res->grpc_status, code);
    cr_assert_eq(res->header_blocks, 1, "Trailers-Only is one header block");
    cr_assert_eq(res->data_bytes, 0);
    cr_assert_str_eq(res->content_type, "application/grpc");
}

/* The User message a record's JSON encodes to, to compare with the wire. */
static void expect_user_message(const struct h2raw_result *res, uint64_t id)
{
    cr_assert_eq(res->status, 200);
    cr_assert(res->has_grpc_status && res->grpc_status == 0, "grpc-status 0 (got %d)", res->grpc_status);
    cr_assert_eq(res->header_blocks, 2, "headers, then trailers");
    char path[64];
    snprintf(path, sizeof(path), "/users/%llu", (unsigned long long)id);
    struct ts_response http;
    cr_assert_eq(ts_get(ts.port, path, NULL, &http), 0);
    cr_assert_eq(http.status, 200);
    struct buf want = {0};
    char err[256];
    cr_assert_eq(store_pb_user(id, http.body, http.body_len, &want, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(res->data_bytes, 5 + want.len);
    const uint8_t *b = (const uint8_t *)res->body;
    cr_assert_eq(b[0], 0, "not compressed");
    cr_assert_eq((size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4], want.len, "length prefix");
    cr_assert(memcmp(b + 5, want.data, want.len) == 0, "the User message of the HTTP record");
    buf_free(&want);
}

Test(grpc, get_user_and_every_status_of_it, .init = start, .fini = stop)
{
    uint8_t req[16];
    size_t n = get_user_request(42, req);
    struct h2raw_result res = call("/ringd.v1.Users/GetUser", req, n);
    expect_user_message(&res, 42);

    n = get_user_request(USERS + 1, req);
    res = call("/ringd.v1.Users/GetUser", req, n);
    expect_trailers_only(&res, 5); /* NOT_FOUND */

    n = get_user_request(0, req);
    res = call("/ringd.v1.Users/GetUser", req, n);
    expect_trailers_only(&res, 3); /* INVALID_ARGUMENT: id 0 */
    res = call("/ringd.v1.Users/GetUser", "", 0);
    expect_trailers_only(&res, 3); /* no id at all is id 0 */

    const uint8_t truncated[] = {0x08, 0xff};
    res = call("/ringd.v1.Users/GetUser", truncated, sizeof(truncated));
    expect_trailers_only(&res, 3); /* malformed */
    const uint8_t wrong_type[] = {0x0a, 0x01, 'x'};
    res = call("/ringd.v1.Users/GetUser", wrong_type, sizeof(wrong_type));
    expect_trailers_only(&res, 3); /* id as a string: malformed */

    /* Unknown fields are skipped, as protobuf requires. */
    const uint8_t with_unknown[] = {0x1a, 0x02, 'h', 'i', 0x21, 1, 2, 3, 4, 5, 6, 7, 8, 0x08, 0x07};
    res = call("/ringd.v1.Users/GetUser", with_unknown, sizeof(with_unknown));
    expect_user_message(&res, 7);

    res = call("/ringd.v1.Users/DeleteUser", req, n);
    expect_trailers_only(&res, 12); /* UNIMPLEMENTED */
    res = call("/other.Service/Method", req, n);
    expect_trailers_only(&res, 12);
    finish();
}

Test(grpc, length_prefix_across_data_frames, .init = start, .fini = stop)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    send_call_headers(&r, 1, "/ringd.v1.Users/GetUser", "application/grpc", NULL, false);
    uint8_t msg[] = {0, 0, 0, 0, 2, 0x08, 0x09};
    /* one octet per frame, then an empty DATA with END_STREAM */
    for (size_t i = 0; i < sizeof(msg); i++)
        cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, 0, 1, msg + i, 1), 0);
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, NULL, 0), 0);
    struct h2raw_result res = {0};
    cr_assert_eq(h2raw_wait(&r, 1, &res), 0);
    expect_user_message(&res, 9);

    /* a message that ends before its length says: INVALID_ARGUMENT */
    send_call_headers(&r, 3, "/ringd.v1.Users/GetUser", "application/grpc", NULL, false);
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 3, msg, 6), 0);
    struct h2raw_result res3 = {0};
    cr_assert_eq(h2raw_wait(&r, 3, &res3), 0);
    expect_trailers_only(&res3, 3);

    /* two messages in a unary call: INVALID_ARGUMENT */
    send_call_headers(&r, 5, "/ringd.v1.Users/GetUser", "application/grpc", NULL, false);
    uint8_t two[14];
    memcpy(two, msg, 7);
    memcpy(two + 7, msg, 7);
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 5, two, 14), 0);
    struct h2raw_result res5 = {0};
    cr_assert_eq(h2raw_wait(&r, 5, &res5), 0);
    expect_trailers_only(&res5, 3);

    /* no message at all (END_STREAM on the HEADERS) */
    send_call_headers(&r, 7, "/ringd.v1.Users/GetUser", "application/grpc", NULL, true);
    struct h2raw_result res7 = {0};
    cr_assert_eq(h2raw_wait(&r, 7, &res7), 0);
    expect_trailers_only(&res7, 3);
    h2raw_close(&r);
    finish();
}

Test(grpc, wire_rules, .init = start, .fini = stop)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    uint8_t req[16];
    size_t n = get_user_request(3, req);

    /* a wrong content-type on a gRPC path: HTTP 415, not a gRPC answer */
    send_call_headers(&r, 1, "/ringd.v1.Users/GetUser", "application/json", NULL, false);
    send_message(&r, 1, req, n);
    struct h2raw_result res = {0};
    cr_assert_eq(h2raw_wait(&r, 1, &res), 0);
    cr_assert_eq(res.status, 415);
    cr_assert_not(res.has_grpc_status);

    /* application/grpc+proto and parameters are gRPC with protobuf; +json is another codec */
    send_call_headers(&r, 3, "/ringd.v1.Users/GetUser", "application/grpc+proto; charset=x", NULL, false);
    send_message(&r, 3, req, n);
    struct h2raw_result res3 = {0};
    cr_assert_eq(h2raw_wait(&r, 3, &res3), 0);
    expect_user_message(&res3, 3);
    send_call_headers(&r, 5, "/ringd.v1.Users/GetUser", "application/grpc+json", NULL, false);
    send_message(&r, 5, req, n);
    struct h2raw_result res5 = {0};
    cr_assert_eq(h2raw_wait(&r, 5, &res5), 0);
    expect_trailers_only(&res5, 12);

    /* grpc-timeout: parsed; malformed is INVALID_ARGUMENT, a generous one is served */
    const char *bad_timeout[] = {"grpc-timeout", "10", NULL};
    send_call_headers(&r, 7, "/ringd.v1.Users/GetUser", "application/grpc", bad_timeout, false);
    send_message(&r, 7, req, n);
    struct h2raw_result res7 = {0};
    cr_assert_eq(h2raw_wait(&r, 7, &res7), 0);
    expect_trailers_only(&res7, 3);
    const char *bad_unit[] = {"grpc-timeout", "5x", NULL};
    send_call_headers(&r, 9, "/ringd.v1.Users/GetUser", "application/grpc", bad_unit, false);
    send_message(&r, 9, req, n);
    struct h2raw_result res9 = {0};
    cr_assert_eq(h2raw_wait(&r, 9, &res9), 0);
    expect_trailers_only(&res9, 3);
    const char *long_timeout[] = {"grpc-timeout", "30S", NULL};
    send_call_headers(&r, 11, "/ringd.v1.Users/GetUser", "application/grpc", long_timeout, false);
    send_message(&r, 11, req, n);
    struct h2raw_result res11 = {0};
    cr_assert_eq(h2raw_wait(&r, 11, &res11), 0);
    expect_user_message(&res11, 3);

    /* the compressed flag without a supported encoding: UNIMPLEMENTED, at once */
    send_call_headers(&r, 13, "/ringd.v1.Users/GetUser", "application/grpc", NULL, false);
    uint8_t compressed[] = {1, 0, 0, 0, 2, 0x08, 0x03};
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 13, compressed, sizeof(compressed)), 0);
    struct h2raw_result res13 = {0};
    cr_assert_eq(h2raw_wait(&r, 13, &res13), 0);
    expect_trailers_only(&res13, 12);

    /* a message announced over 4 MiB: RESOURCE_EXHAUSTED as soon as its prefix is in, then RST_STREAM(NO_ERROR) */
    send_call_headers(&r, 15, "/ringd.v1.Users/GetUser", "application/grpc", NULL, false);
    uint32_t big = (4u << 20) + 1;
    uint8_t prefix[] = {0, (uint8_t)(big >> 24), (uint8_t)(big >> 16), (uint8_t)(big >> 8), (uint8_t)big};
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, 0, 15, prefix, sizeof(prefix)), 0);
    struct h2raw_result res15 = {0};
    cr_assert_eq(h2raw_wait(&r, 15, &res15), 0);
    cr_assert(res15.done, "answered before the message arrived");
    expect_trailers_only(&res15, 8);

    /* not POST: UNIMPLEMENTED */
    const char *get[] = {
        ":method",          "GET", ":scheme",  "http", ":path", "/ringd.v1.Users/GetUser", ":authority", "x", "content-type",
        "application/grpc", "te",  "trailers", NULL};
    cr_assert_eq(h2raw_send_headers(&r, 17, NGHTTP2_FLAG_END_STREAM, get), 0);
    struct h2raw_result res17 = {0};
    cr_assert_eq(h2raw_wait(&r, 17, &res17), 0);
    expect_trailers_only(&res17, 12);

    /* without te: trailers */
    const char *no_te[] = {":method", "POST",         ":scheme",          "http", ":path", "/ringd.v1.Users/GetUser", ":authority",
                           "x",       "content-type", "application/grpc", NULL};
    cr_assert_eq(h2raw_send_headers(&r, 19, 0, no_te), 0);
    send_message(&r, 19, req, n);
    struct h2raw_result res19 = {0};
    cr_assert_eq(h2raw_wait(&r, 19, &res19), 0);
    expect_trailers_only(&res19, 3);

    /* the connection served all of that and still serves HTTP on it */
    const char *http[] = {":method", "GET", ":scheme", "http", ":path", "/users/5", ":authority", "x", NULL};
    cr_assert_eq(h2raw_send_headers(&r, 21, NGHTTP2_FLAG_END_STREAM, http), 0);
    struct h2raw_result res21 = {0};
    cr_assert_eq(h2raw_wait(&r, 21, &res21), 0);
    cr_assert_eq(res21.status, 200);
    cr_assert(strncmp(res21.body, "{\"id\":5,", 8) == 0, "%s", res21.body);
    h2raw_close(&r);
    finish();
}

/* BatchGetUsersRequest with ids (packed). */
static size_t batch_request(const uint64_t *ids, size_t n, uint8_t *out)
{
    uint8_t packed[12000];
    size_t pl = 0;
    for (size_t i = 0; i < n; i++)
        pl += pb_put_varint(packed + pl, ids[i]);
    out[0] = 0x0a;
    size_t k = 1 + pb_put_varint(out + 1, pl);
    memcpy(out + k, packed, pl);
    return k + pl;
}

Test(grpc, batch_limits_and_flow_control, .init = start, .fini = stop)
{
    static uint64_t ids[1001];
    static uint8_t req[13000];
    for (size_t i = 0; i < 1001; i++)
        ids[i] = i + 1;
    size_t n = batch_request(ids, 1001, req);
    struct h2raw_result res = call("/ringd.v1.Users/BatchGetUsers", req, n);
    expect_trailers_only(&res, 3); /* 1001 ids */
    ids[5] = 0;
    n = batch_request(ids, 10, req);
    res = call("/ringd.v1.Users/BatchGetUsers", req, n);
    expect_trailers_only(&res, 3); /* an id 0 */
    ids[5] = 6;

    /* 1000 users: about 150 KB, more than the default 65,535-octet windows */
    n = batch_request(ids, 1000, req);
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    send_call_headers(&r, 1, "/ringd.v1.Users/BatchGetUsers", "application/grpc", NULL, false);
    uint8_t frame[16384];
    /* the request is larger than one frame: split it */
    uint8_t msg[13005];
    msg[0] = 0;
    msg[1] = (uint8_t)(n >> 24);
    msg[2] = (uint8_t)(n >> 16);
    msg[3] = (uint8_t)(n >> 8);
    msg[4] = (uint8_t)n;
    memcpy(msg + 5, req, n);
    size_t total = n + 5, off = 0;
    while (off < total) {
        size_t chunk = total - off < 8000 ? total - off : 8000;
        memcpy(frame, msg + off, chunk);
        off += chunk;
        cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, off == total ? NGHTTP2_FLAG_END_STREAM : 0, 1, frame, chunk), 0);
    }
    struct h2raw_result part = {0};
    /* Whatever has arrived by now, never more than the window. */
    usleep(200 * 1000);
    h2raw_poll_stream(&r, 1, &part);
    cr_assert_leq(part.data_bytes, 65535, "flow control: %zu octets before any WINDOW_UPDATE", part.data_bytes);
    cr_assert_not(part.done);
    uint8_t inc[4] = {0x00, 0x10, 0x00, 0x00}; /* 1 MiB */
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_WINDOW_UPDATE, 0, 0, inc, 4), 0);
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_WINDOW_UPDATE, 0, 1, inc, 4), 0);
    cr_assert_eq(h2raw_wait(&r, 1, &part), 0);
    cr_assert(part.has_grpc_status && part.grpc_status == 0);
    cr_assert_eq(part.header_blocks, 2);
    cr_assert_gt(part.data_bytes, 100000, "every user came: %zu octets", part.data_bytes);
    /* The message's length is what arrived. */
    const uint8_t *b = (const uint8_t *)part.body;
    size_t mlen = (size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4];
    cr_assert_eq(mlen + 5, part.data_bytes);
    h2raw_close(&r);
    finish();
}

/* HealthCheckRequest{service} */
static size_t health_request(const char *service, uint8_t *out)
{
    size_t n = strlen(service);
    if (n == 0)
        return 0;
    out[0] = 0x0a;
    out[1] = (uint8_t)n;
    memcpy(out + 2, service, n);
    return n + 2;
}

static void expect_health(const struct h2raw_result *res, int serving)
{
    cr_assert(res->has_grpc_status && res->grpc_status == 0, "grpc-status %d", res->grpc_status);
    cr_assert_eq(res->data_bytes, 7);
    const uint8_t want[] = {0, 0, 0, 0, 2, 0x08, (uint8_t)serving};
    cr_assert(memcmp(res->body, want, 7) == 0, "ServingStatus %d", res->body[6]);
}

Test(grpc, health_and_drain, .init = start, .fini = stop)
{
    uint8_t req[64] = {0};
    size_t n = health_request("", req);
    struct h2raw_result res = call("/grpc.health.v1.Health/Check", req, n);
    expect_health(&res, 1); /* SERVING */
    n = health_request("ringd.v1.Users", req);
    res = call("/grpc.health.v1.Health/Check", req, n);
    expect_health(&res, 1);
    n = health_request("no.Such", req);
    res = call("/grpc.health.v1.Health/Check", req, n);
    expect_trailers_only(&res, 5); /* NOT_FOUND */
    res = call("/grpc.health.v1.Health/Watch", req, 0);
    expect_trailers_only(&res, 12); /* streaming Watch is not served */

    /* Two calls open when the drain starts: their messages come after the GOAWAY. */
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    send_call_headers(&r, 1, "/grpc.health.v1.Health/Check", "application/grpc", NULL, false);
    send_call_headers(&r, 3, "/ringd.v1.Users/GetUser", "application/grpc", NULL, false);
    /* make sure both streams are open before the signal: a call answered on this connection */
    send_call_headers(&r, 5, "/grpc.health.v1.Health/Check", "application/grpc", NULL, false);
    send_message(&r, 5, "", 0);
    struct h2raw_result res5 = {0};
    cr_assert_eq(h2raw_wait(&r, 5, &res5), 0);
    expect_health(&res5, 1);

    cr_assert_eq(kill(ts.pid, SIGTERM), 0);
    struct h2raw_result g = {0};
    cr_assert_eq(h2raw_wait_error(&r, 0, &g), 0);
    cr_assert(g.goaway, "a GOAWAY announces the drain");
    send_message(&r, 1, "", 0);
    struct h2raw_result res1 = {0};
    cr_assert_eq(h2raw_wait(&r, 1, &res1), 0, "the open call is answered");
    expect_health(&res1, 2); /* NOT_SERVING */
    uint8_t greq[16];
    size_t gn = get_user_request(4, greq);
    send_message(&r, 3, greq, gn);
    struct h2raw_result res3 = {0};
    cr_assert_eq(h2raw_wait(&r, 3, &res3), 0);
    expect_trailers_only(&res3, 14); /* UNAVAILABLE */
    h2raw_close(&r);
    cr_assert_eq(ts_stop(&ts), 0, "the drain ends with exit 0");
}

Test(grpc, metrics_count_calls_by_method_and_code, .init = start, .fini = stop)
{
    uint8_t req[16];
    size_t n = get_user_request(1, req);
    for (int i = 0; i < 3; i++) {
        struct h2raw_result res = call("/ringd.v1.Users/GetUser", req, n);
        cr_assert_eq(res.grpc_status, 0);
    }
    n = get_user_request(USERS + 5, req);
    struct h2raw_result res = call("/ringd.v1.Users/GetUser", req, n);
    cr_assert_eq(res.grpc_status, 5);
    char *text = ts_metrics_text(ts.port);
    cr_assert_not_null(text);
    cr_expect_eq(
        ts_metric_in(text, "ringd_requests_processed_total{protocol=\"grpc\",route=\"ringd.v1.Users/GetUser\",code=\"OK\"}"), 3,
        "%s", text);
    cr_expect_eq(
        ts_metric_in(text, "ringd_requests_processed_total{protocol=\"grpc\",route=\"ringd.v1.Users/GetUser\",code=\"NOT_FOUND\"}"),
        1);
    cr_expect_eq(
        ts_metric_in(text, "ringd_requests_processed_total{protocol=\"grpc\",route=\"ringd.v1.Users/BatchGetUsers\",code=\"OK\"}"),
        0, "expected series are there at 0");
    cr_expect_eq(ts_metric_in(text, "ringd_request_duration_seconds_count{route=\"ringd.v1.Users/GetUser\"}"), 4,
                 "the histogram covers every call");
    free(text);
    finish();
}
