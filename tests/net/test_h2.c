/* test_h2.c - net/h2.c against the real server: prior knowledge, h2c upgrade, streams, flow control, limits, abuse, drain. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tests/support/h2client.h"
#include "tests/support/server.h"

#define USERS 1000

static struct test_server ts;

static void start_with(const char *const *args)
{
    cr_assert_eq(ts_launch(&ts, USERS, args), 0, "server starts");
}

static void start(void)
{
    start_with(NULL);
}

/* Cleanup for a test that stopped early (its assertion already failed). */
static void stop(void)
{
    ts_stop(&ts);
}

/* The end of every test: the server exits 0 on SIGTERM. A sanitizer report
 * (leak, overflow) makes the status non-zero and prints the server's log.
 * (Criterion does not fail a test for an assertion in .fini, hence here.) */
static void finish(void)
{
    cr_assert_eq(ts_stop(&ts), 0, "server exit status");
}

/* The body a user record starts with. */
static void expect_user(const struct h2c_stream *st, unsigned id)
{
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "{\"id\":%u,", id);
    cr_assert_eq(st->status, 200, "stream %d: status %d", st->id, st->status);
    cr_assert_not_null(st->body, "stream %d has a body", st->id);
    cr_assert_eq(strncmp(st->body, prefix, strlen(prefix)), 0, "stream %d body: %s", st->id, st->body);
    cr_assert_eq((size_t)atol(st->content_length), st->body_len, "content-length matches the body");
}

/* A fresh prior-knowledge connection still gets /users/1: the server survived. */
static void expect_served(void)
{
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, NULL, 0, false), 0, "a new client connects");
    int32_t id = h2c_request(&cl, "GET", "/users/1", NULL);
    cr_assert_eq(h2c_run(&cl), 0);
    expect_user(h2c_stream(&cl, id), 1);
    h2c_close(&cl);
}

static double metric(const char *series)
{
    return ts_metric(ts.port, series);
}

TestSuite(h2, .init = start, .fini = stop, .timeout = 120);

Test(h2, prior_knowledge_get)
{
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, NULL, 0, false), 0);
    cr_assert_eq(nghttp2_session_get_remote_settings(cl.ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 100);
    int32_t id = h2c_request(&cl, "GET", "/users/5", NULL);
    cr_assert_eq(h2c_run(&cl), 0);
    struct h2c_stream *st = h2c_stream(&cl, id);
    expect_user(st, 5);
    cr_assert_str_eq(st->content_type, "application/json");
    cr_assert_str_eq(st->server, "ringd");
    cr_assert_eq(strlen(st->date), 29, "IMF-fixdate: %s", st->date);
    cr_assert(strstr(st->date, " GMT") != NULL);
    h2c_close(&cl);
    cr_assert_geq(metric("ringd_requests_processed_total{protocol=\"http2\",route=\"users\",code=\"200\"}"), 1);
    cr_assert_geq(metric("ringd_http2_streams_opened_total"), 1);
    finish();
}

Test(h2, head_has_headers_no_body)
{
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, NULL, 0, false), 0);
    int32_t get = h2c_request(&cl, "GET", "/users/9", NULL);
    int32_t head = h2c_request(&cl, "HEAD", "/users/9", NULL);
    cr_assert_eq(h2c_run(&cl), 0);
    struct h2c_stream *g = h2c_stream(&cl, get), *h = h2c_stream(&cl, head);
    expect_user(g, 9);
    cr_assert_eq(h->status, 200);
    cr_assert_str_eq(h->content_length, g->content_length, "HEAD announces the GET's length");
    cr_assert_eq(h->body_len, 0);
    cr_assert_eq(h->data_frames, 0, "no DATA frame on HEAD");
    cr_assert(!h->reset);
    h2c_close(&cl);
    finish();
}

Test(h2, errors_are_json)
{
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, NULL, 0, false), 0);
    const char *uid[] = {"user-id", "7", NULL};
    int32_t missing = h2c_request(&cl, "GET", "/users/999999", NULL);
    int32_t bad = h2c_request(&cl, "GET", "/users/abc", NULL);
    int32_t unauth = h2c_request(&cl, "GET", "/user", NULL);
    int32_t byhdr = h2c_request(&cl, "GET", "/user", uid);
    int32_t post = h2c_request(&cl, "POST", "/users/5", NULL);
    int32_t other = h2c_request(&cl, "GET", "/nope", NULL);
    cr_assert_eq(h2c_run(&cl), 0);
    struct {
        int32_t id;
        int status;
        const char *body;
    } want[] = {
        {missing, 404, "{\"error\":\"not found\"}"},   {bad, 400, "{\"error\":\"bad id\"}"},
        {unauth, 401, "{\"error\":\"unauthorized\"}"}, {post, 405, "{\"error\":\"method not allowed\"}"},
        {other, 404, "{\"error\":\"not found\"}"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct h2c_stream *st = h2c_stream(&cl, want[i].id);
        cr_assert_eq(st->status, want[i].status, "stream %d: %d", st->id, st->status);
        cr_assert_str_eq(st->content_type, "application/json");
        cr_assert_str_eq(st->body, want[i].body);
        cr_assert_eq((size_t)atol(st->content_length), st->body_len);
    }
    cr_assert_str_eq(h2c_stream(&cl, post)->allow, "GET, HEAD");
    cr_assert_str_eq(h2c_stream(&cl, missing)->allow, "", "Allow only on 405");
    expect_user(h2c_stream(&cl, byhdr), 7);
    h2c_close(&cl);
    finish();
}

Test(h2, upgrade_h2c)
{
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
    struct h2c cl;
    int h1 = 0;
    cr_assert_eq(h2c_upgrade(&cl, ts.port, "GET", "/users/5", iv, 1, &h1), 0, "101 expected, got %d", h1);
    cr_assert_eq(h2c_run(&cl), 0);
    expect_user(h2c_stream(&cl, 1), 5);
    int32_t id = h2c_request(&cl, "GET", "/users/6", NULL);
    cr_assert_eq(id, 3);
    cr_assert_eq(h2c_run(&cl), 0);
    expect_user(h2c_stream(&cl, id), 6);
    h2c_close(&cl);
    finish();
}

Test(h2, upgrade_head)
{
    struct h2c cl;
    int h1 = 0;
    cr_assert_eq(h2c_upgrade(&cl, ts.port, "HEAD", "/users/5", NULL, 0, &h1), 0, "101 expected, got %d", h1);
    cr_assert_eq(h2c_run(&cl), 0);
    struct h2c_stream *st = h2c_stream(&cl, 1);
    cr_assert_eq(st->status, 200);
    cr_assert_gt(atol(st->content_length), 0);
    cr_assert_eq(st->body_len, 0);
    h2c_close(&cl);
    finish();
}

Test(h2, upgrade_with_bad_settings_stays_http1)
{
    struct ts_response r;
    cr_assert_eq(ts_roundtrip(ts.port,
                              "GET /users/5 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                              "Upgrade: h2c\r\nHTTP2-Settings: !!not-base64!!\r\n\r\n",
                              &r),
                 0);
    cr_assert_eq(r.status, 200, "answered as HTTP/1.1, got %d", r.status);
    cr_assert(strncmp(r.body, "{\"id\":5,", 8) == 0);
    finish();
}

Test(h2, thousand_streams_one_connection)
{
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, NULL, 0, false), 0);
    int32_t ids[1000];
    char path[32];
    for (unsigned i = 0; i < 1000; i++) {
        snprintf(path, sizeof(path), "/users/%u", i + 1);
        ids[i] = h2c_request(&cl, "GET", path, NULL);
        cr_assert_gt(ids[i], 0);
    }
    cr_assert_eq(h2c_run(&cl), 0, "all streams done (eof=%d goaway=%d)", cl.eof, cl.goaway);
    for (unsigned i = 0; i < 1000; i++)
        expect_user(h2c_stream(&cl, ids[i]), i + 1);
    cr_assert_leq(cl.max_open, 100, "never more than MAX_CONCURRENT_STREAMS open: %u", cl.max_open);
    cr_assert(!cl.goaway);
    h2c_close(&cl);
    cr_assert_geq(metric("ringd_http2_streams_opened_total"), 1000);
    finish();
}

Test(h2_config, max_concurrent_streams_is_configurable, .fini = stop, .timeout = 120)
{
    const char *args[] = {"--h2-max-streams", "10", NULL};
    start_with(args);
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    uint8_t block[256];
    /* Eleven streams opened and left open (no END_STREAM): the eleventh is refused. */
    for (int32_t sid = 1; sid <= 21; sid += 2) {
        const char *nv[] = {":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/users/3", NULL};
        int n = h2raw_encode(&r, nv, block, sizeof(block));
        cr_assert_gt(n, 0);
        cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, sid, block, (size_t)n), 0);
    }
    struct h2raw_result res = {0};
    cr_assert_eq(h2raw_wait(&r, 21, &res), 0);
    cr_assert(res.reset, "stream 21 refused");
    cr_assert_eq(res.rst_error, NGHTTP2_REFUSED_STREAM);
    /* The open ones are still served once the client ends them. */
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, NULL, 0), 0);
    memset(&res, 0, sizeof(res));
    cr_assert_eq(h2raw_wait(&r, 1, &res), 0);
    cr_assert_eq(res.status, 200);
    cr_assert(strncmp(res.body, "{\"id\":3,", 8) == 0, "body: %s", res.body);
    h2raw_close(&r);
    finish();
}

Test(h2, tiny_client_window_completes_via_window_update)
{
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16}};
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, iv, 1, false), 0);
    int32_t ids[20];
    char path[32];
    for (unsigned i = 0; i < 20; i++) {
        snprintf(path, sizeof(path), "/users/%u", 100 + i);
        ids[i] = h2c_request(&cl, "GET", path, NULL);
    }
    cr_assert_eq(h2c_run(&cl), 0);
    for (unsigned i = 0; i < 20; i++) {
        struct h2c_stream *st = h2c_stream(&cl, ids[i]);
        expect_user(st, 100 + i);
        cr_assert_gt(st->body_len, 64, "records are bigger than the window");
        cr_assert_leq(st->max_data_frame, 16, "DATA frames respect the 16-byte window: %zu", st->max_data_frame);
        cr_assert_geq(st->data_frames, (st->body_len + 15) / 16);
    }
    h2c_close(&cl);
    finish();
}

Test(h2, headers_split_into_continuation_frames)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    const char *nv[] = {":method",    "GET",
                        ":scheme",    "http",
                        ":authority", "127.0.0.1",
                        ":path",      "/users/42",
                        "user-agent", "ringd-test-continuation",
                        "accept",     "application/json",
                        NULL};
    uint8_t block[512];
    int n = h2raw_encode(&r, nv, block, sizeof(block));
    cr_assert_gt(n, 9);
    size_t a = (size_t)n / 3, b = 2 * (size_t)n / 3;
    /* HEADERS (END_STREAM, no END_HEADERS), CONTINUATION, CONTINUATION (END_HEADERS): sent in one write. */
    uint8_t wire[1024];
    size_t len = h2raw_frame(wire, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 1, block, a);
    len += h2raw_frame(wire + len, NGHTTP2_CONTINUATION, 0, 1, block + a, b - a);
    len += h2raw_frame(wire + len, NGHTTP2_CONTINUATION, NGHTTP2_FLAG_END_HEADERS, 1, block + b, (size_t)n - b);
    cr_assert_eq(ts_send_all(r.fd, wire, len), 0);
    struct h2raw_result res = {0};
    cr_assert_eq(h2raw_wait(&r, 1, &res), 0, "stream 1 ends (goaway=%d eof=%d)", res.goaway, res.eof);
    cr_assert_eq(res.status, 200);
    cr_assert(strncmp(res.body, "{\"id\":42,", 9) == 0, "body: %s", res.body);
    h2raw_close(&r);
    finish();
}

Test(h2, oversized_header_list_gets_431)
{
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, NULL, 0, false), 0);
    /* Too many fields. */
    static char names[150][16];
    const char *many[2 * 150 + 1];
    for (int i = 0; i < 150; i++) {
        snprintf(names[i], sizeof(names[i]), "x-h%d", i);
        many[2 * i] = names[i];
        many[2 * i + 1] = "v";
    }
    many[300] = NULL;
    int32_t a = h2c_request(&cl, "GET", "/users/5", many);
    /* Too many bytes, in few fields. */
    static char big[40000];
    memset(big, 'a', sizeof(big) - 1);
    const char *large[] = {"x-big", big, NULL};
    int32_t b = h2c_request(&cl, "GET", "/users/5", large);
    cr_assert_eq(h2c_run(&cl), 0);
    struct h2c_stream *sa = h2c_stream(&cl, a), *sb = h2c_stream(&cl, b);
    cr_assert(sa->status == 431 || sa->reset, "many fields: status %d", sa->status);
    cr_assert(sb->status == 431 || sb->reset, "many bytes: status %d", sb->status);
    cr_assert_eq(sa->status, 431, "answered, not just reset");
    cr_assert_str_eq(sa->body, "{\"error\":\"request header fields too large\"}");
    /* The connection itself is fine. */
    int32_t c = h2c_request(&cl, "GET", "/users/5", NULL);
    cr_assert_eq(h2c_run(&cl), 0);
    expect_user(h2c_stream(&cl, c), 5);
    h2c_close(&cl);
    finish();
}

Test(h2, rapid_reset_closes_connection)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    const char *nv[] = {":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/users/5", NULL};
    static uint8_t wire[100 * 64];
    uint8_t block[128];
    struct h2raw_result res = {0};
    const uint8_t cancel[4] = {0, 0, 0, NGHTTP2_CANCEL};
    int32_t sid = 1;
    unsigned pairs = 0;
    /* HEADERS + RST_STREAM pairs, 100 per write, reading what comes back in between. */
    while (pairs < 20000 && !res.eof) {
        size_t len = 0;
        for (int i = 0; i < 100; i++, sid += 2, pairs++) {
            int n = h2raw_encode(&r, nv, block, sizeof(block));
            cr_assert_gt(n, 0);
            len +=
                h2raw_frame(wire + len, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM | NGHTTP2_FLAG_END_HEADERS, sid, block, (size_t)n);
            len += h2raw_frame(wire + len, NGHTTP2_RST_STREAM, 0, sid, cancel, 4);
        }
        if (ts_send_all(r.fd, wire, len) != 0)
            break; /* reset by the server */
        h2raw_poll(&r, &res);
    }
    h2raw_wait(&r, 0, &res); /* to the end of the connection */
    cr_assert(res.eof, "the server closed the connection after %u pairs", pairs);
    cr_assert(res.goaway, "with a GOAWAY");
    cr_assert_neq(res.goaway_error, NGHTTP2_NO_ERROR);
    cr_assert_geq(pairs, 1000, "the token bucket allows a burst first");
    h2raw_close(&r);
    expect_served();
    cr_assert_geq(metric("ringd_http2_resets_received_total"), 1000);
    cr_assert_geq(metric("ringd_http2_goaways_sent_total"), 1);
    finish();
}

Test(h2, continuation_flood_closes_connection)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    const char *nv[] = {":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/users/5", NULL};
    uint8_t block[128];
    int n = h2raw_encode(&r, nv, block, sizeof(block));
    cr_assert_gt(n, 0);
    static uint8_t wire[200 * 16];
    size_t len = h2raw_frame(wire, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 1, block, (size_t)n);
    const uint8_t junk[4] = {0x40, 0x01, 'a', 0x01}; /* a literal, never finished: the block never ends */
    for (int i = 0; i < 150; i++)
        len += h2raw_frame(wire + len, NGHTTP2_CONTINUATION, 0, 1, junk, i == 0 ? 2 : 0);
    ts_send_all(r.fd, wire, len);
    struct h2raw_result res = {0};
    h2raw_wait(&r, 0, &res);
    cr_assert(res.eof, "connection closed");
    cr_assert(res.goaway, "GOAWAY first");
    cr_assert_eq(res.goaway_error, NGHTTP2_ENHANCE_YOUR_CALM, "error %u", res.goaway_error);
    cr_assert_eq(res.status, 0, "the request was never answered");
    h2raw_close(&r);
    expect_served();
    finish();
}

Test(h2, garbage_after_preface_gets_goaway)
{
    static const char garbage[] = "GARBAGE GARBAGE GARBAGE GARBAGE\r\n\r\n";
    for (int with_settings = 0; with_settings <= 1; with_settings++) {
        struct h2raw r;
        if (with_settings) {
            cr_assert_eq(h2raw_connect(&r, ts.port), 0);
        } else {
            memset(&r, 0, sizeof(r));
            r.fd = ts_connect(ts.port);
            cr_assert_geq(r.fd, 0);
            cr_assert_eq(ts_send_all(r.fd, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN), 0);
        }
        cr_assert_eq(ts_send_all(r.fd, garbage, sizeof(garbage) - 1), 0);
        struct h2raw_result res = {0};
        h2raw_wait(&r, 0, &res);
        cr_assert(res.eof, "closed (settings first: %d)", with_settings);
        cr_assert(res.goaway, "GOAWAY before closing (settings first: %d)", with_settings);
        cr_assert_neq(res.goaway_error, NGHTTP2_NO_ERROR);
        h2raw_close(&r);
    }
    expect_served();
    finish();
}

Test(h2, metrics_over_h2)
{
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, NULL, 0, false), 0);
    int32_t id = h2c_request(&cl, "GET", "/metrics", NULL);
    cr_assert_eq(h2c_run(&cl), 0);
    struct h2c_stream *st = h2c_stream(&cl, id);
    cr_assert_eq(st->status, 200);
    cr_assert(strncmp(st->content_type, "text/plain", 10) == 0);
    cr_assert_not_null(strstr(st->body, "ringd_http2_streams_opened_total"));
    cr_assert_eq((size_t)atol(st->content_length), st->body_len, "a multi-frame body arrives whole");
    h2c_close(&cl);
    finish();
}

Test(h2, drain_sends_goaway_and_finishes_streams)
{
    /* A stream held in flight by the client's 16-byte window, SIGTERM, then the window opens. */
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16}};
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, iv, 1, true), 0);
    int32_t id = h2c_request(&cl, "GET", "/users/8", NULL);
    struct h2c_stream *st;
    do {
        cr_assert_eq(h2c_step(&cl), 0);
        st = h2c_stream(&cl, id);
    } while (st->body_len < 16);
    cr_assert(!st->done, "held by flow control");
    cr_assert_eq(kill(ts.pid, SIGTERM), 0);
    while (!cl.goaway)
        cr_assert_eq(h2c_step(&cl), 0, "GOAWAY arrives while the stream is open");
    cr_assert_eq(cl.goaway_error, NGHTTP2_NO_ERROR);
    cr_assert_geq(cl.goaway_last_id, id, "the in-flight stream is covered");
    /* Open the window as the bytes arrive, like an application reading them. */
    size_t consumed = 0;
    for (st = h2c_stream(&cl, id); !st->done; st = h2c_stream(&cl, id)) {
        if (st->body_len > consumed) {
            h2c_consume(&cl, id, st->body_len - consumed);
            consumed = st->body_len;
        }
        cr_assert_eq(h2c_step(&cl), 0, "the stream finishes after GOAWAY (%zu bytes so far)", st->body_len);
    }
    expect_user(st, 8);
    cr_assert(!st->reset);
    cr_assert(h2c_run_until_closed(&cl), "the server closes after the last stream");
    h2c_close(&cl);
    cr_assert_eq(ts_terminate(&ts, 10000), 0, "exit status 0 after drain");
}

Test(h2, drain_closes_idle_connection)
{
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, NULL, 0, false), 0);
    int32_t id = h2c_request(&cl, "GET", "/users/2", NULL);
    cr_assert_eq(h2c_run(&cl), 0);
    expect_user(h2c_stream(&cl, id), 2);
    cr_assert_eq(kill(ts.pid, SIGTERM), 0);
    cr_assert(h2c_run_until_closed(&cl), "closed on drain");
    cr_assert(cl.goaway, "with a GOAWAY");
    cr_assert_eq(cl.goaway_error, NGHTTP2_NO_ERROR);
    h2c_close(&cl);
    cr_assert_eq(ts_terminate(&ts, 10000), 0);
}

/* PINGs are not progress: a client that only pings is idle, gets a GOAWAY
 * (NO_ERROR) after the idle timeout and is closed, while a client doing
 * requests at the same pace keeps its connection. */
Test(h2_idle, pings_alone_do_not_keep_a_connection, .fini = stop, .timeout = 120)
{
    const char *args[] = {"--idle-timeout-ms", "300", NULL};
    start_with(args);
    struct h2raw pinger;
    cr_assert_eq(h2raw_connect(&pinger, ts.port), 0);
    struct h2c worker;
    cr_assert_eq(h2c_connect(&worker, ts.port, NULL, 0, false), 0);
    struct h2raw_result res;
    memset(&res, 0, sizeof(res));
    const uint8_t opaque[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    bool ended = false;
    int worker_ok = 0;
    /* At most 100 x 100 ms; the worker runs at least 10 rounds (past 3 idle timeouts). */
    for (int i = 0; i < 100 && (!ended || i < 10); i++) {
        if (!ended && h2raw_send_frame(&pinger, NGHTTP2_PING, 0, 0, opaque, sizeof(opaque)) != 0)
            ended = true;
        int32_t id = h2c_request(&worker, "GET", "/healthz", NULL);
        if (h2c_run(&worker) == 0 && h2c_stream(&worker, id)->status == 200)
            worker_ok++;
        usleep(100000);
        if (!ended && (h2raw_poll(&pinger, &res) != 0 || res.goaway))
            ended = true;
    }
    cr_expect(ended, "a ping-only connection was never closed");
    cr_expect(res.goaway, "it got a GOAWAY first");
    cr_expect_eq(res.goaway_error, NGHTTP2_NO_ERROR);
    cr_expect_geq(worker_ok, 5, "the requesting client kept being served (%d)", worker_ok);
    cr_expect(!worker.goaway, "the requesting client was not sent away");
    h2raw_close(&pinger);
    h2c_close(&worker);
    /* The close is counted when the lingering connection ends (after our close): poll, bounded. */
    double closed = 0;
    for (int i = 0; i < 100 && closed <= 0; i++) {
        closed = ts_metric(ts.port, "ringd_connections_closed_total{reason=\"idle_timeout\"}");
        if (closed <= 0)
            usleep(50000);
    }
    cr_expect_gt(closed, 0.0);
    finish();
}

/* ---------- stream states and connection errors (h2spec 3.5, 5.1, 5.1.1, 5.3.1, 6.3) ---------- */

static const char *const get_users_3[] = {":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/users/3", NULL};

/* One raw connection, its stream sid sent with END_STREAM and answered 200. */
static void raw_get(struct h2raw *r, int32_t sid)
{
    cr_assert_eq(h2raw_send_headers(r, sid, NGHTTP2_FLAG_END_STREAM, get_users_3), 0);
    struct h2raw_result res = {0};
    cr_assert_eq(h2raw_wait(r, sid, &res), 0, "stream %d answered (goaway=%d eof=%d)", sid, res.goaway, res.eof);
    cr_assert_eq(res.status, 200, "stream %d: %d", sid, res.status);
}

/* Reads to the end of the connection: a GOAWAY with code must come first. */
static void expect_goaway_and_close(struct h2raw *r, uint32_t code, const char *what)
{
    struct h2raw_result res = {0};
    h2raw_wait(r, 0, &res);
    cr_assert(res.goaway, "%s: a GOAWAY", what);
    cr_assert_eq(res.goaway_error, code, "%s: GOAWAY error %u, want %u", what, res.goaway_error, code);
    cr_assert(res.eof, "%s: the connection closed", what);
}

/* 3.5: a connection that starts with "PRI " but not the whole preface is an
 * HTTP/2 client that got it wrong: GOAWAY(PROTOCOL_ERROR), not an HTTP/1.1 400. */
Test(h2, broken_preface_gets_goaway)
{
    static const char *const broken[] = {"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", "PRI * HTTP/2.0\r\n\r\n\r\n\r\n",
                                         "PRI / HTTP/1.1\r\nHost: x\r\n\r\n"};
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        struct h2raw r;
        memset(&r, 0, sizeof(r));
        r.fd = ts_connect(ts.port);
        cr_assert_geq(r.fd, 0);
        cr_assert_eq(ts_send_all(r.fd, broken[i], strlen(broken[i])), 0);
        expect_goaway_and_close(&r, NGHTTP2_PROTOCOL_ERROR, broken[i]);
        h2raw_close(&r);
    }
    /* Not "PRI " and not HTTP/1.x either (h2spec's own "INVALID CONNECTION
     * PREFACE"): closed without an answer (net/h1.c, tests/net/test_http1.c). */
    int fd = ts_connect(ts.port);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ts_send_all(fd, "INVALID CONNECTION PREFACE\r\n\r\n", 30), 0);
    cr_assert(ts_wait_closed(fd, 10000), "not closed");
    close(fd);
    expect_served();
    finish();
}

/* 5.1: after END_STREAM a DATA frame is STREAM_CLOSED, whether the answer was
 * already sent (closed) or not yet (half-closed remote); the connection lives on. */
Test(h2, data_after_end_stream_is_stream_closed)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    /* HEADERS(END_STREAM) and DATA in one write: the DATA meets a half-closed or just-closed stream. */
    uint8_t block[256], wire[512];
    int n = h2raw_encode(&r, get_users_3, block, sizeof(block));
    cr_assert_gt(n, 0);
    size_t len = h2raw_frame(wire, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM | NGHTTP2_FLAG_END_HEADERS, 1, block, (size_t)n);
    len += h2raw_frame(wire + len, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "test", 4);
    cr_assert_eq(ts_send_all(r.fd, wire, len), 0);
    struct h2raw_result res = {0};
    cr_assert_eq(h2raw_wait_error(&r, 1, &res), 0);
    cr_assert(res.reset, "RST_STREAM on stream 1 (goaway=%d, error %u)", res.goaway, res.goaway_error);
    cr_assert_eq(res.rst_error, NGHTTP2_STREAM_CLOSED);
    cr_assert_eq(res.status, 200, "the request itself was answered");
    /* Closed for a while now: the same. */
    raw_get(&r, 3);
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 3, "test", 4), 0);
    memset(&res, 0, sizeof(res));
    cr_assert_eq(h2raw_wait_error(&r, 3, &res), 0);
    cr_assert(res.reset && res.rst_error == NGHTTP2_STREAM_CLOSED, "reset %d error %u", res.reset, res.rst_error);
    raw_get(&r, 5); /* a stream error only */
    h2raw_close(&r);
    finish();
}

/* 5.1: a HEADERS after END_STREAM is a connection error STREAM_CLOSED. */
Test(h2, headers_after_end_stream_is_connection_error)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    raw_get(&r, 1);
    cr_assert_eq(h2raw_send_headers(&r, 1, NGHTTP2_FLAG_END_STREAM, get_users_3), 0);
    expect_goaway_and_close(&r, NGHTTP2_STREAM_CLOSED, "HEADERS on a closed stream");
    h2raw_close(&r);
    expect_served();
    finish();
}

/* 5.1: after the client's RST_STREAM, DATA is a stream error and HEADERS a connection error, both STREAM_CLOSED. */
Test(h2, frames_after_client_reset_are_stream_closed)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    const uint8_t cancel[4] = {0, 0, 0, NGHTTP2_CANCEL};
    cr_assert_eq(h2raw_send_headers(&r, 1, 0, get_users_3), 0); /* open: no END_STREAM */
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_RST_STREAM, 0, 1, cancel, 4), 0);
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "test", 4), 0);
    struct h2raw_result res = {0};
    cr_assert_eq(h2raw_wait_error(&r, 1, &res), 0);
    cr_assert(res.reset, "RST_STREAM (goaway=%d)", res.goaway);
    cr_assert_eq(res.rst_error, NGHTTP2_STREAM_CLOSED);
    cr_assert_eq(res.status, 0, "the reset request was not answered");
    raw_get(&r, 3);
    /* (Stream 1 is now one we reset: frames on it are ignored, RFC 9113 5.1.) A fresh one: */
    cr_assert_eq(h2raw_send_headers(&r, 5, 0, get_users_3), 0);
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_RST_STREAM, 0, 5, cancel, 4), 0);
    cr_assert_eq(h2raw_send_headers(&r, 5, NGHTTP2_FLAG_END_STREAM, get_users_3), 0);
    expect_goaway_and_close(&r, NGHTTP2_STREAM_CLOSED, "HEADERS after RST_STREAM");
    h2raw_close(&r);
    finish();
}

/* 5.1.1: a new stream id lower than one already used: PROTOCOL_ERROR, and the GOAWAY names the last stream. */
Test(h2, lower_stream_id_is_protocol_error)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    cr_assert_eq(h2raw_send_headers(&r, 5, NGHTTP2_FLAG_END_STREAM, get_users_3), 0);
    cr_assert_eq(h2raw_send_headers(&r, 3, NGHTTP2_FLAG_END_STREAM, get_users_3), 0);
    struct h2raw_result res = {0};
    h2raw_wait(&r, 0, &res);
    cr_assert(res.goaway && res.eof, "GOAWAY %d, closed %d", res.goaway, res.eof);
    cr_assert_eq(res.goaway_error, NGHTTP2_PROTOCOL_ERROR);
    cr_assert_eq(res.goaway_last[0], 5, "last stream %u", res.goaway_last[0]);
    h2raw_close(&r);
    expect_served();
    finish();
}

/* 5.3.1: a stream cannot depend on itself: a stream error, not silence. */
Test(h2, priority_on_itself_resets_the_stream)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    const uint8_t self[5] = {0, 0, 0, 3, 15}; /* stream 3 depends on 3 */
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_PRIORITY, 0, 3, self, 5), 0);
    struct h2raw_result res = {0};
    cr_assert_eq(h2raw_wait_error(&r, 3, &res), 0);
    cr_assert(res.reset, "RST_STREAM (goaway=%d eof=%d)", res.goaway, res.eof);
    cr_assert_eq(res.rst_error, NGHTTP2_PROTOCOL_ERROR);
    /* PRIORITY frames do not use stream ids: stream 1 may still open, and 5 after it. */
    raw_get(&r, 1);
    const uint8_t other[5] = {0, 0, 0, 1, 15};
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_PRIORITY, 0, 7, other, 5), 0);
    raw_get(&r, 5);
    /* On an even (server) id: reset, and no client stream is taken for it. */
    const uint8_t self4[5] = {0, 0, 0, 4, 15};
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_PRIORITY, 0, 4, self4, 5), 0);
    memset(&res, 0, sizeof(res));
    cr_assert_eq(h2raw_wait_error(&r, 4, &res), 0);
    cr_assert(res.reset && res.rst_error == NGHTTP2_PROTOCOL_ERROR, "stream 4: reset %d", res.reset);
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 5, "x", 1), 0);
    memset(&res, 0, sizeof(res));
    cr_assert_eq(h2raw_wait_error(&r, 5, &res), 0);
    cr_assert(res.reset && res.rst_error == NGHTTP2_STREAM_CLOSED, "stream 5 is closed, not ignored: reset %d", res.reset);
    h2raw_close(&r);
    finish();
}

/* A stream we reset while it was idle (PRIORITY on itself) is closed: a HEADERS
 * that comes for it later is refused with STREAM_CLOSED, never answered, and
 * the connection goes on (found by fuzz_h2_frames). */
Test(h2, headers_after_our_reset_of_an_idle_stream_are_refused)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    const uint8_t self[5] = {0, 0, 0, 5, 15}; /* stream 5 depends on 5 */
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_PRIORITY, 0, 5, self, 5), 0);
    struct h2raw_result res = {0};
    cr_assert_eq(h2raw_wait_error(&r, 5, &res), 0);
    cr_assert(res.reset && res.rst_error == NGHTTP2_PROTOCOL_ERROR, "stream 5: reset %d", res.reset);
    cr_assert_eq(h2raw_send_headers(&r, 5, NGHTTP2_FLAG_END_STREAM, get_users_3), 0);
    memset(&res, 0, sizeof(res));
    cr_assert_eq(h2raw_wait_error(&r, 5, &res), 0);
    cr_assert(res.reset, "stream 5 after our RST_STREAM: reset %d, status %d", res.reset, res.status);
    cr_assert_eq(res.rst_error, NGHTTP2_STREAM_CLOSED);
    cr_assert_eq(res.status, 0, "stream 5 must not be answered");
    /* The HPACK state stayed in step and the connection serves on. */
    raw_get(&r, 7);
    h2raw_close(&r);
    finish();
}

/* 6.3: PRIORITY on stream 0 is a connection error. */
Test(h2, priority_on_stream_zero_is_connection_error)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    const uint8_t prio[5] = {0, 0, 0, 1, 15};
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_PRIORITY, 0, 0, prio, 5), 0);
    expect_goaway_and_close(&r, NGHTTP2_PROTOCOL_ERROR, "PRIORITY on stream 0");
    h2raw_close(&r);
    expect_served();
    finish();
}

/* ---------- requests ---------- */

/* Two user-id headers: which one is the caller? Neither: 400, like HTTP/1.1's own rule. */
Test(h2, duplicate_user_id_is_400)
{
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, NULL, 0, false), 0);
    const char *two[] = {"user-id", "7", "user-id", "8", NULL};
    const char *same[] = {"user-id", "7", "user-id", "7", NULL};
    const char *one[] = {"user-id", "7", NULL};
    int32_t a = h2c_request(&cl, "GET", "/user", two);
    int32_t b = h2c_request(&cl, "GET", "/user", same);
    int32_t c = h2c_request(&cl, "GET", "/user", one);
    int32_t d = h2c_request(&cl, "HEAD", "/user", two);
    cr_assert_eq(h2c_run(&cl), 0);
    cr_assert_eq(h2c_stream(&cl, a)->status, 400);
    cr_assert_str_eq(h2c_stream(&cl, a)->body, "{\"error\":\"bad request\"}");
    cr_assert_eq(h2c_stream(&cl, b)->status, 400, "even when they agree");
    expect_user(h2c_stream(&cl, c), 7);
    cr_assert_eq(h2c_stream(&cl, d)->status, 400);
    cr_assert_eq(h2c_stream(&cl, d)->body_len, 0, "HEAD: no body");
    h2c_close(&cl);
    finish();
}

/* RFC 9113 8.2, 8.3: malformed requests are stream errors (PROTOCOL_ERROR); the connection is fine. */
Test(h2, malformed_requests_are_reset)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    static const char *const cases[][12] = {
        {":method", "GET", ":scheme", "http", ":path", "/users/1", "User-Id", "1", NULL},        /* uppercase name */
        {":method", "GET", ":scheme", "http", ":path", "/users/1", "connection", "close", NULL}, /* connection-specific */
        {":method", "GET", ":scheme", "http", ":path", "/users/1", "te", "gzip", NULL},          /* te other than trailers */
        {":method", "GET", ":scheme", "http", NULL},                                             /* no :path */
        {":method", "GET", ":path", "/users/1", NULL},                                           /* no :scheme */
        {":method", "GET", ":scheme", "http", ":path", "", NULL},                                /* empty :path */
        {":method", "GET", ":scheme", "http", ":path", "/a b", NULL},                            /* space in :path */
        {":method", "GET", ":scheme", "http", "x-a", "1", ":path", "/users/1", NULL},            /* pseudo after regular */
        {":method", "GET", ":scheme", "http", ":path", "/users/1", ":path", "/users/2", NULL},   /* duplicate :path */
        {":method", "GET", ":scheme", "http", ":path", "/users/1", ":status", "200", NULL},      /* response pseudo */
        {":method", "GET", ":scheme", "http", ":path", "/users/1", "x-a", " v", NULL},           /* leading space */
    };
    int32_t sid = 1;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++, sid += 2) {
        cr_assert_eq(h2raw_send_headers(&r, sid, NGHTTP2_FLAG_END_STREAM, cases[i]), 0);
        struct h2raw_result res = {0};
        cr_assert_eq(h2raw_wait(&r, sid, &res), 0, "case %zu: stream ends", i);
        cr_assert(res.reset, "case %zu: reset (status %d)", i, res.status);
        cr_assert_eq(res.rst_error, NGHTTP2_PROTOCOL_ERROR, "case %zu", i);
        cr_assert_eq(res.status, 0, "case %zu: not answered", i);
    }
    raw_get(&r, sid);
    /* content-length that DATA does not match (8.1.1) */
    const char *const post[] = {":method", "POST", ":scheme", "http", ":path", "/users/1", "content-length", "10", NULL};
    sid += 2;
    cr_assert_eq(h2raw_send_headers(&r, sid, 0, post), 0);
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, sid, "12345", 5), 0);
    struct h2raw_result res = {0};
    cr_assert_eq(h2raw_wait(&r, sid, &res), 0);
    cr_assert(res.reset && res.rst_error == NGHTTP2_PROTOCOL_ERROR, "content-length mismatch: reset %d", res.reset);
    /* ... and one that does, with trailers: answered (405: POST) */
    sid += 2;
    const char *const trailers[] = {"x-checksum", "1", NULL};
    cr_assert_eq(h2raw_send_headers(&r, sid, 0, post), 0);
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_DATA, 0, sid, "1234567890", 10), 0);
    cr_assert_eq(h2raw_send_headers(&r, sid, NGHTTP2_FLAG_END_STREAM, trailers), 0);
    memset(&res, 0, sizeof(res));
    cr_assert_eq(h2raw_wait(&r, sid, &res), 0);
    cr_assert_eq(res.status, 405, "status %d reset %d", res.status, res.reset);
    h2raw_close(&r);
    finish();
}

/* ---------- floods and drain ---------- */

/* A peer that sends PINGs (or SETTINGS) and never reads the ACKs is closed, not buffered for. */
static void unread_acks_close(uint8_t type)
{
    struct h2raw r;
    memset(&r, 0, sizeof(r));
    r.fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(r.fd, 0);
    int small = 4096; /* a tiny receive buffer, so the server's sends stall quickly */
    setsockopt(r.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ts.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(r.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(r.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    cr_assert_eq(ts_send_all(r.fd, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN), 0);
    static uint8_t wire[100 * 17];
    const uint8_t opaque[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    size_t len = h2raw_frame(wire, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
    bool closed = ts_send_all(r.fd, wire, len) != 0;
    len = 0;
    for (int i = 0; i < 100; i++)
        len += type == NGHTTP2_PING ? h2raw_frame(wire + len, NGHTTP2_PING, 0, 0, opaque, 8)
                                    : h2raw_frame(wire + len, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
    unsigned frames = 0;
    for (int round = 0; round < 20000 && !closed; round++, frames += 100)
        closed = ts_send_all(r.fd, wire, len) != 0; /* fails once the server has reset the connection */
    cr_assert(closed, "still open after %u unread %s frames", frames, type == NGHTTP2_PING ? "PING" : "SETTINGS");
    h2raw_close(&r);
}

Test(h2, unread_acks_close_the_connection)
{
    unread_acks_close(NGHTTP2_PING);
    unread_acks_close(NGHTTP2_SETTINGS);
    expect_served();
    finish();
}

struct sender {
    int fd;
    const uint8_t *wire;
    size_t len;
    int rc;
};

static void *send_all_thread(void *arg)
{
    struct sender *sd = arg;
    sd->rc = ts_send_all(sd->fd, sd->wire, sd->len);
    return NULL;
}

/* A client that sends requests and does not read: past CONN_OUT_HIGH_WATER
 * of answers the server stops reading (its recv is cancelled, TCP pushes
 * back), and when the client reads again every request is answered. */
Test(h2, unread_answers_pause_reading_then_resume)
{
    struct h2raw r;
    memset(&r, 0, sizeof(r));
    r.fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(r.fd, 0);
    int small = 4096; /* a tiny receive buffer: the answers back up into the server quickly */
    setsockopt(r.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ts.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(r.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(r.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_assert_eq(nghttp2_hd_deflate_new(&r.def, 4096), 0);
    cr_assert_eq(nghttp2_hd_inflate_new(&r.inf), 0);
    double rearms = metric("ringd_recv_rearms_total");

    /* Preface, SETTINGS opening the stream windows, a connection WINDOW_UPDATE: flow control never holds answers. */
    enum { N = 12000 };
    size_t cap = 64 + (size_t)N * 40, len = 0;
    uint8_t *wire = malloc(cap);
    memcpy(wire, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
    len = NGHTTP2_CLIENT_MAGIC_LEN;
    const uint8_t iv[6] = {0, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0x7f, 0xff, 0xff, 0xff};
    len += h2raw_frame(wire + len, NGHTTP2_SETTINGS, 0, 0, iv, sizeof(iv));
    const uint8_t inc[4] = {0x7f, 0xff, 0x00, 0x00};
    len += h2raw_frame(wire + len, NGHTTP2_WINDOW_UPDATE, 0, 0, inc, 4);
    for (int i = 0; i < N; i++) {
        uint8_t block[64];
        int n = h2raw_encode(&r, get_users_3, block, sizeof(block));
        cr_assert_gt(n, 0);
        cr_assert_leq(len + 9 + (size_t)n, cap);
        len += h2raw_frame(wire + len, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM | NGHTTP2_FLAG_END_HEADERS, 2 * i + 1, block,
                           (size_t)n);
    }
    /* The requests go from another thread: once the server stops reading, this send blocks too. */
    struct sender sd = {.fd = r.fd, .wire = wire, .len = len};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, send_all_thread, &sd), 0);
    usleep(300000); /* answers pile up unread meanwhile */
    struct h2raw_result res = {0};
    for (int idle = 0; res.ends < N && !res.eof && !res.goaway;) {
        unsigned before = res.ends;
        h2raw_poll(&r, &res);
        if (res.ends != before) {
            idle = 0;
            continue;
        }
        cr_assert_lt(++idle, 1000, "no progress for 10 s: %u answers", res.ends);
        usleep(10000);
    }
    pthread_join(th, NULL);
    cr_assert_eq(sd.rc, 0, "every request was sent");
    cr_assert_eq(res.ends, N, "answered %u of %d (goaway %d eof %d)", res.ends, N, res.goaway, res.eof);
    cr_assert(!res.goaway);
    cr_assert_gt(metric("ringd_recv_rearms_total"), rearms, "the recv was stopped and armed again (backpressure)");
    free(wire);
    h2raw_close(&r);
    finish();
}

/* Drain: GOAWAY(2^31-1) and a PING; once the PING is answered, a second
 * PING; once that is answered, the GOAWAY with the last stream; the
 * connection then closes. */
Test(h2, drain_sends_two_goaways)
{
    struct h2raw r;
    cr_assert_eq(h2raw_connect(&r, ts.port), 0);
    raw_get(&r, 1);
    raw_get(&r, 3);
    cr_assert_eq(kill(ts.pid, SIGTERM), 0);
    struct h2raw_result res = {0};
    for (int i = 0; i < 100 && !(res.goaway && res.ping); i++) {
        cr_assert_eq(h2raw_poll(&r, &res), 0);
        usleep(20000);
    }
    cr_assert(res.goaway, "the first GOAWAY");
    cr_assert_eq(res.goaway_last[0], 0x7fffffff, "first GOAWAY's last stream: %u", res.goaway_last[0]);
    cr_assert_eq(res.goaway_error, NGHTTP2_NO_ERROR);
    cr_assert(res.ping, "a PING with it");
    cr_assert_eq(res.goaways, 1, "no second GOAWAY before the PING is answered");
    /* Streams opened before the client saw the GOAWAY are still served. */
    raw_get(&r, 5);
    uint8_t first[8];
    memcpy(first, res.ping_opaque, 8);
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_PING, NGHTTP2_FLAG_ACK, 0, first, 8), 0);
    /* A second round trip: nghttp2 sends a PING ACK ahead of HEADERS it had
     * queued, so only the next ACK proves those have arrived. */
    for (int i = 0; i < 100 && memcmp(res.ping_opaque, first, 8) == 0; i++) {
        cr_assert_eq(h2raw_poll(&r, &res), 0);
        usleep(20000);
    }
    cr_assert_neq(memcmp(res.ping_opaque, first, 8), 0, "a second PING after the first ACK");
    cr_assert_eq(res.goaways, 1, "no second GOAWAY before the second PING is answered");
    raw_get(&r, 7); /* queued by the client before it read the GOAWAY, sent after its ACK */
    cr_assert_eq(h2raw_send_frame(&r, NGHTTP2_PING, NGHTTP2_FLAG_ACK, 0, res.ping_opaque, 8), 0);
    h2raw_wait(&r, 0, &res);
    cr_assert_eq(res.goaways, 2, "GOAWAYs: %u", res.goaways);
    cr_assert_eq(res.goaway_last[1], 7, "second GOAWAY's last stream: %u", res.goaway_last[1]);
    cr_assert(res.eof, "closed after the last GOAWAY");
    h2raw_close(&r);
    cr_assert_eq(ts_terminate(&ts, 10000), 0, "exit status 0 after drain");
}

/* SETTINGS_HEADER_TABLE_SIZE below the default, at the start or later: the
 * client's decoder needs a size update from us (RFC 7541 4.2), which our
 * first header block always carries (our encoder never indexes). */
Test(h2, client_header_table_size_is_respected)
{
    nghttp2_settings_entry zero[] = {{NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 0}};
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, zero, 1, false), 0);
    int32_t a = h2c_request(&cl, "GET", "/users/1", NULL);
    int32_t b = h2c_request(&cl, "GET", "/users/2", NULL);
    cr_assert_eq(h2c_run(&cl), 0, "failed %d eof %d", cl.failed, cl.eof);
    expect_user(h2c_stream(&cl, a), 1);
    expect_user(h2c_stream(&cl, b), 2);
    h2c_close(&cl);

    cr_assert_eq(h2c_connect(&cl, ts.port, NULL, 0, false), 0);
    a = h2c_request(&cl, "GET", "/users/3", NULL);
    cr_assert_eq(h2c_run(&cl), 0);
    expect_user(h2c_stream(&cl, a), 3);
    nghttp2_settings_entry small[] = {{NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 100}};
    cr_assert_eq(nghttp2_submit_settings(cl.ng, NGHTTP2_FLAG_NONE, small, 1), 0);
    b = h2c_request(&cl, "GET", "/users/4", NULL);
    cr_assert_eq(h2c_run(&cl), 0, "failed %d eof %d", cl.failed, cl.eof);
    expect_user(h2c_stream(&cl, b), 4);
    h2c_close(&cl);
    finish();
}
