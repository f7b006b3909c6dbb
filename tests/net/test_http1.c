/* test_http1.c - HTTP/1.1 against the real binary over loopback sockets: keep-alive, pipelining, splits,
 * concurrency, timeouts, limits, malformed input, drain on SIGTERM, SIGPIPE. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/server.h"

#define USERS 1000

/* ---------- the server under test ---------- */

static struct test_server ts;

static void launch(const char *const *args)
{
    cr_assert_eq(ts_launch(&ts, USERS, args), 0, "server did not start");
}
#define LAUNCH(...) launch((const char *const[]){"--shards", "2", __VA_ARGS__, NULL})

struct client;
static void cl_close(struct client *c);
#define MAX_CLIENTS 1024
static struct client *open_clients[MAX_CLIENTS];

static void fini(void)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        cl_close(open_clients[i]);
    if (ts.pid > 0)
        ts_terminate(&ts, 10000);
    if (ts.dir[0] != '\0') {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ts.dir);
        ts_sh(cmd);
    }
}

/* SIGTERM and wait: the server must exit 0 (also how sanitizer findings in the server surface). */
static void finish(void)
{
    int rc = ts_terminate(&ts, 15000);
    if (rc != 0) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "tail -n 60 '%s' >&2", ts.log);
        ts_sh(cmd);
    }
    cr_assert_eq(rc, 0, "server exit status %d", rc);
}

/* ---------- a client with its own read buffer (no shared statics) ---------- */

#define CLIENT_BUF (64u * 1024)

struct client {
    int fd;
    size_t len;
    char buf[CLIENT_BUF];
};

struct resp {
    int status;
    char head[4096];
    long content_length; /* -1 when absent */
    size_t body_len;
    char body[16384];
};

/* open_clients (above) holds every open client, so a failed assertion, which ends the test early,
 * still frees them in fini. */

static struct client *cl_open(int port)
{
    struct client *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    c->fd = ts_connect(port);
    if (c->fd < 0) {
        int e = errno;
        free(c);
        cr_assert_fail("connect: %s", strerror(e));
    }
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (open_clients[i] == NULL) {
            open_clients[i] = c;
            break;
        }
    return c;
}

static void cl_close(struct client *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (open_clients[i] == c)
            open_clients[i] = NULL;
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static void cl_send_n(struct client *c, const void *p, size_t n)
{
    cr_assert_eq(ts_send_all(c->fd, p, n), 0, "send: %s", strerror(errno));
}

static void cl_send(struct client *c, const char *s)
{
    cl_send_n(c, s, strlen(s));
}

/* Receives more bytes; returns what recv returned. */
static ssize_t cl_fill(struct client *c)
{
    if (c->len >= sizeof(c->buf))
        return -1;
    ssize_t n;
    do
        n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

static int resp_header(const struct resp *r, const char *name, char *out, size_t outlen)
{
    return ts_header_in(r->head, name, out, outlen);
}

/* Reads one Content-Length-framed response (no body for HEAD). Returns 0, or -1 on EOF/timeout/garbage. */
static int cl_read(struct client *c, struct resp *r, bool head_only)
{
    memset(r, 0, offsetof(struct resp, body));
    r->body[0] = '\0';
    char *end;
    for (;;) {
        end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end != NULL)
            break;
        if (cl_fill(c) <= 0)
            return -1;
    }
    size_t head = (size_t)(end - c->buf) + 4;
    if (head >= sizeof(r->head))
        return -1;
    memcpy(r->head, c->buf, head);
    r->head[head] = '\0';
    if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1)
        return -1;
    char v[64];
    r->content_length = -1;
    if (resp_header(r, "Content-Length", v, sizeof(v)) == 0)
        r->content_length = strtol(v, NULL, 10);
    size_t body = head_only || r->content_length < 0 ? 0 : (size_t)r->content_length;
    if (body >= sizeof(r->body))
        return -1;
    while (c->len < head + body)
        if (cl_fill(c) <= 0)
            return -1;
    memcpy(r->body, c->buf + head, body);
    r->body[body] = '\0';
    r->body_len = body;
    memmove(c->buf, c->buf + head + body, c->len - head - body);
    c->len -= head + body;
    return 0;
}

/* Whether the server closed the connection (EOF or RST) within timeout_ms, with no further bytes. */
static bool cl_closed(struct client *c, int timeout_ms)
{
    if (c->len > 0)
        return false;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        if (poll(&p, 1, 50) <= 0)
            continue;
        char b[512];
        ssize_t n = recv(c->fd, b, sizeof(b), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
            return true;
        if (n > 0)
            return false; /* bytes instead of a close */
    }
    return false;
}

/* A header timeout with part of a request received: the server answers 408
 * (Connection: close) and closes. True when the close came, after nothing or
 * after exactly such a 408. */
static bool cl_closed_after_408(struct client *c, int timeout_ms)
{
    char got[4096];
    size_t len = 0;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t n = recv(c->fd, got + len, sizeof(got) - 1 - len, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) {
            got[len] = '\0';
            return len == 0 || (strncmp(got, "HTTP/1.1 408 ", 13) == 0 && strstr(got, "Connection: close\r\n"));
        }
        if (n > 0 && (len += (size_t)n) >= sizeof(got) - 1)
            return false;
    }
    return false;
}

/* Every response carries Server, Date and Content-Length (the body's length unless HEAD). */
static void check_common(const struct resp *r, bool head_only)
{
    char v[128];
    cr_assert_eq(resp_header(r, "Server", v, sizeof(v)), 0, "no Server:\n%s", r->head);
    cr_assert_str_eq(v, "ringd");
    cr_assert_eq(resp_header(r, "Date", v, sizeof(v)), 0, "no Date:\n%s", r->head);
    cr_assert_eq(strlen(v), 29, "Date '%s'", v);
    cr_assert_str_eq(v + 25, " GMT", "Date '%s'", v);
    cr_assert_eq(v[3], ',', "Date '%s'", v);
    cr_assert_geq(r->content_length, 0, "no Content-Length:\n%s", r->head);
    if (!head_only)
        cr_assert_eq((size_t)r->content_length, r->body_len);
    cr_assert_eq(resp_header(r, "Content-Type", v, sizeof(v)), 0, "no Content-Type:\n%s", r->head);
}

static void expect(struct client *c, struct resp *r, int status, bool head_only)
{
    cr_assert_eq(cl_read(c, r, head_only), 0, "no response (want %d)", status);
    cr_assert_eq(r->status, status, "status %d, want %d:\n%s%s", r->status, status, r->head, r->body);
    check_common(r, head_only);
}

/* The JSON body of user id. */
static void expect_user(const struct resp *r, unsigned id)
{
    char want[48];
    snprintf(want, sizeof(want), "{\"id\":%u,", id);
    cr_assert_eq(strncmp(r->body, want, strlen(want)), 0, "want user %u, got %s", id, r->body);
    char v[64];
    cr_assert_eq(resp_header(r, "Content-Type", v, sizeof(v)), 0);
    cr_assert_not_null(strstr(v, "application/json"));
}

static void expect_json_error(const struct resp *r)
{
    cr_assert_eq(strncmp(r->body, "{\"error\":\"", 10), 0, "body %s", r->body);
    cr_assert_eq(r->body[r->body_len - 1], '}');
}

static bool has_connection_close(const struct resp *r)
{
    char v[64];
    return resp_header(r, "Connection", v, sizeof(v)) == 0 && strcasecmp(v, "close") == 0;
}

static void fresh_connection_gets_200(void)
{
    struct client *c = cl_open(ts.port);
    cl_send(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    struct resp r;
    expect(c, &r, 200, false);
    cr_assert_str_eq(r.body, "ok\n");
    cl_close(c);
}

/* A metric, retried until the server accepts the scrape (bounded). */
static double metric(const char *series)
{
    for (int i = 0; i < 200; i++) {
        double v = ts_metric(ts.port, series);
        if (v >= 0)
            return v;
        usleep(50000);
    }
    return -1;
}

/* Polls series until it reaches at least want (bounded); returns the last value. */
static double metric_reaches(const char *series, double want)
{
    double v = -1;
    for (int i = 0; i < 200; i++) {
        v = metric(series);
        if (v >= want)
            break;
        usleep(50000);
    }
    return v;
}

#define CLOSED(reason) "ringd_connections_closed_total{reason=\"" reason "\"}"

static char *repeat_into(const char *prefix, char fill, size_t n, const char *suffix, size_t *len);

/* ---------- keep-alive, pipelining, splits ---------- */

Test(http1, keep_alive_serves_many_requests_on_one_connection, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    struct client *c = cl_open(ts.port);
    struct resp r;
    for (unsigned i = 1; i <= 20; i++) {
        char req[256];
        switch (i % 5) {
        case 0:
            snprintf(req, sizeof(req), "GET /users/%u HTTP/1.1\r\nHost: t\r\n\r\n", i);
            cl_send(c, req);
            expect(c, &r, 200, false);
            expect_user(&r, i);
            break;
        case 1:
            snprintf(req, sizeof(req), "GET /user HTTP/1.1\r\nHost: t\r\nUser-Id: %u\r\n\r\n", i);
            cl_send(c, req);
            expect(c, &r, 200, false);
            expect_user(&r, i);
            break;
        case 2:
            cl_send(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
            expect(c, &r, 200, false);
            cr_assert_str_eq(r.body, "ok\n");
            break;
        case 3:
            cl_send(c, "GET /no/such/thing HTTP/1.1\r\nHost: t\r\n\r\n");
            expect(c, &r, 404, false);
            expect_json_error(&r);
            break;
        case 4:
            cl_send(c, "HEAD /users/4 HTTP/1.1\r\nHost: t\r\n\r\n");
            expect(c, &r, 200, true);
            break;
        }
        cr_assert_not(has_connection_close(&r), "request %u closed the connection", i);
    }
    cl_send(c, "GET /users/999999 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 404, false);
    cl_send(c, "GET /users/abc HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 400, false);
    cl_send(c, "GET /user HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 401, false);
    cl_send(c, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    expect(c, &r, 200, false);
    cr_assert(has_connection_close(&r));
    cr_assert(cl_closed(c, 10000), "Connection: close was not honoured");
    cl_close(c);
    finish();
}

Test(http1, hundred_pipelined_requests_in_one_write, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    struct client *c = cl_open(ts.port);
    static char batch[100 * 128];
    size_t len = 0;
    for (unsigned i = 0; i < 100; i++) {
        unsigned id = 1 + (i * 37) % USERS;
        if (i % 10 == 9)
            len += (size_t)snprintf(batch + len, sizeof(batch) - len, "HEAD /users/%u HTTP/1.1\r\nHost: t\r\n\r\n", id);
        else if (i % 10 == 4)
            len += (size_t)snprintf(batch + len, sizeof(batch) - len, "GET /nope/%u HTTP/1.1\r\nHost: t\r\n\r\n", i);
        else
            len += (size_t)snprintf(batch + len, sizeof(batch) - len, "GET /users/%u HTTP/1.1\r\nHost: t\r\n\r\n", id);
    }
    cl_send_n(c, batch, len);
    struct resp r;
    for (unsigned i = 0; i < 100; i++) {
        unsigned id = 1 + (i * 37) % USERS;
        if (i % 10 == 9) {
            expect(c, &r, 200, true);
        } else if (i % 10 == 4) {
            expect(c, &r, 404, false);
        } else {
            expect(c, &r, 200, false);
            expect_user(&r, id);
        }
    }
    /* The connection is still usable and nothing extra was sent. */
    cr_assert_eq(c->len, 0, "extra bytes after 100 responses");
    cl_send(c, "GET /users/1 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 200, false);
    expect_user(&r, 1);
    cl_close(c);
    finish();
}

/* Builds n pipelined GET /users/{1 + i % USERS} requests; returns a malloc'ed buffer. */
static char *user_batch(int n, size_t *len)
{
    size_t cap = (size_t)n * 64, l = 0;
    char *p = malloc(cap);
    cr_assert_not_null(p);
    for (int i = 0; i < n; i++)
        l += (size_t)snprintf(p + l, cap - l, "GET /users/%d HTTP/1.1\r\nHost: t\r\n\r\n", 1 + i % USERS);
    *len = l;
    return p;
}

Test(http1, big_pipeline_with_backpressure_is_answered_in_order, .fini = fini)
{
    /* About 1 MB of answers: well past the output high-water mark, so parsing pauses and resumes. */
    LAUNCH("--idle-timeout-ms", "60000");
    enum { N = 4000 };
    size_t len;
    char *batch = user_batch(N, &len);
    struct client *c = cl_open(ts.port);
    cl_send_n(c, batch, len);
    free(batch);
    struct resp r;
    for (int i = 0; i < N; i++) {
        expect(c, &r, 200, false);
        expect_user(&r, 1 + (unsigned)(i % USERS));
    }
    cl_close(c);
    finish();
}

Test(http1, half_closed_client_gets_every_answer_owed, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    struct resp r;
    /* Small: all requests parsed before the FIN is seen. */
    struct client *c = cl_open(ts.port);
    cl_send(c, "GET /users/71 HTTP/1.1\r\nHost: t\r\n\r\nGET /users/72 HTTP/1.1\r\nHost: t\r\n\r\n");
    shutdown(c->fd, SHUT_WR);
    expect(c, &r, 200, false);
    expect_user(&r, 71);
    expect(c, &r, 200, false);
    expect_user(&r, 72);
    cr_assert(cl_closed(c, 10000));
    cl_close(c);
    /* Large: the FIN arrives while parsing is paused behind unsent output. */
    enum { N = 4000 };
    size_t len;
    char *batch = user_batch(N, &len);
    c = cl_open(ts.port);
    cl_send_n(c, batch, len);
    free(batch);
    shutdown(c->fd, SHUT_WR);
    int got = 0;
    for (int i = 0; i < N; i++) {
        if (cl_read(c, &r, false) != 0)
            break;
        cr_assert_eq(r.status, 200);
        expect_user(&r, 1 + (unsigned)(i % USERS));
        got++;
    }
    cr_assert_eq(got, N, "a half-closed client got %d of %d pipelined answers", got, N);
    cr_assert(cl_closed(c, 10000));
    cl_close(c);
    finish();
}

Test(http1, request_forms_over_the_wire, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    struct client *c = cl_open(ts.port);
    struct resp r;
    /* A valid 30 KiB head spans many receive buffers. */
    size_t big_len;
    char *big = repeat_into("GET /users/81 HTTP/1.1\r\nHost: t\r\nCookie: ", 'c', 30 * 1024, "\r\n\r\n", &big_len);
    cl_send_n(c, big, big_len);
    free(big);
    expect(c, &r, 200, false);
    expect_user(&r, 81);
    cl_send(c, "GET http://example.com/users/82 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    expect(c, &r, 200, false);
    expect_user(&r, 82);
    cl_send(c, "GET /user HTTP/1.1\r\nHost: t\r\nUser-Id:  83 \t\r\n\r\n");
    expect(c, &r, 200, false);
    expect_user(&r, 83);
    cl_send(c, "GET /users/84?fields=all HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 200, false);
    expect_user(&r, 84);
    cl_send(c, "GET /users/85 HTTP/1.1\nHost: t\n\n");
    expect(c, &r, 200, false);
    expect_user(&r, 85);
    cl_send(c, "GET /users/0086 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 200, false);
    expect_user(&r, 86);
    cl_send(c, "GET /users/18446744073709551616 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 400, false);
    cr_assert_str_eq(r.body, "{\"error\":\"bad id\"}");
    cl_send(c, "GET /users/18446744073709551615 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 404, false);
    cr_assert_str_eq(r.body, "{\"error\":\"not found\"}");
    cr_assert_not(has_connection_close(&r));
    cl_close(c);
    finish();
}

Test(http1, one_byte_per_write, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    struct client *c = cl_open(ts.port);
    static const char reqs[] = "GET /users/7 HTTP/1.1\r\nHost: t\r\nUser-Agent: slow\r\n\r\n"
                               "POST /users HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabcdef"
                               "GET /user HTTP/1.1\nHost: t\nUser-Id: 8\n\n"
                               "HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    for (size_t i = 0; i < sizeof(reqs) - 1; i++)
        cl_send_n(c, reqs + i, 1);
    struct resp r;
    expect(c, &r, 200, false);
    expect_user(&r, 7);
    expect(c, &r, 405, false);
    expect(c, &r, 200, false);
    expect_user(&r, 8);
    expect(c, &r, 200, true);
    cr_assert_eq(r.content_length, 3);
    /* Again with a read between every byte so the server sees one byte per recv. */
    static const char one[] = "GET /users/9 HTTP/1.1\r\nHost: t\r\n\r\n";
    for (size_t i = 0; i < sizeof(one) - 1; i++) {
        cl_send_n(c, one + i, 1);
        if (i + 1 < sizeof(one) - 1) {
            struct pollfd p = {.fd = c->fd, .events = POLLIN};
            cr_assert_eq(poll(&p, 1, 2), 0, "answered after only %zu bytes", i + 1);
        }
    }
    expect(c, &r, 200, false);
    expect_user(&r, 9);
    cl_close(c);
    finish();
}

Test(http1, five_hundred_concurrent_connections, .fini = fini)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2200 && rl.rlim_max >= 2200) {
        rl.rlim_cur = 2200;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 1100)
        cr_skip_test("RLIMIT_NOFILE %lu too low for 500 connections", (unsigned long)rl.rlim_cur);
    LAUNCH("--idle-timeout-ms", "60000");
    enum { N = 500, ROUNDS = 3 };
    static struct client *cs[N];
    for (int i = 0; i < N; i++)
        cs[i] = cl_open(ts.port);
    struct resp r;
    for (int round = 0; round < ROUNDS; round++) {
        /* Every connection has a request in flight before any answer is read. */
        for (int i = 0; i < N; i++) {
            char req[128];
            unsigned id = 1 + (unsigned)(i * 7 + round * 131) % USERS;
            snprintf(req, sizeof(req), "GET /users/%u HTTP/1.1\r\nHost: t\r\n\r\n", id);
            cl_send(cs[i], req);
        }
        for (int i = 0; i < N; i++) {
            unsigned id = 1 + (unsigned)(i * 7 + round * 131) % USERS;
            expect(cs[i], &r, 200, false);
            expect_user(&r, id);
        }
    }
    double active = 0;
    for (int shard = 0; shard < 2; shard++) {
        char series[64];
        snprintf(series, sizeof(series), "ringd_connections_active{shard=\"%d\"}", shard);
        active += metric(series);
    }
    cr_assert_geq(active, N, "active connections %.0f while %d are open", active, N);
    for (int i = 0; i < N; i++)
        cl_close(cs[i]);
    fresh_connection_gets_200();
    finish();
}

/* ---------- timeouts and limits ---------- */

Test(http1, header_timeout_closes_slow_heads, .fini = fini)
{
    LAUNCH("--header-timeout-ms", "200", "--idle-timeout-ms", "60000");
    double before = metric(CLOSED("header_timeout"));
    cr_assert_geq(before, 0);

    struct client *partial = cl_open(ts.port);
    cl_send(partial, "GET /users/1 HTTP/1.1\r\nHost: t\r\n");
    struct client *silent = cl_open(ts.port);
    struct client *trickle = cl_open(ts.port);
    cl_send(trickle, "GET /");
    /* Slowloris: a byte every 50 ms keeps arriving, but the head never completes in time. */
    bool trickle_closed = false;
    for (int i = 0; i < 400 && !trickle_closed; i++) {
        if (ts_send_all(trickle->fd, "a", 1) != 0) {
            trickle_closed = true;
            break;
        }
        trickle_closed = cl_closed_after_408(trickle, 50);
    }
    cr_assert(trickle_closed, "a head trickled in byte by byte was never timed out");
    cr_assert(cl_closed_after_408(partial, 10000), "partial head not timed out with a 408");
    cr_assert(cl_closed(silent, 10000), "silent connection not timed out");
    cl_close(partial);
    cl_close(silent);
    cl_close(trickle);
    double after = metric_reaches(CLOSED("header_timeout"), before + 3);
    cr_assert_geq(after, before + 3, "header_timeout closes %.0f -> %.0f", before, after);

    /* Between requests the idle timeout applies, not the header one. */
    struct client *c = cl_open(ts.port);
    struct resp r;
    cl_send(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 200, false);
    usleep(800 * 1000);
    cl_send(c, "GET /users/2 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 200, false);
    expect_user(&r, 2);
    cl_close(c);
    finish();
}

Test(http1, idle_timeout_closes_quiet_keep_alive_connections, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "300", "--header-timeout-ms", "60000");
    double before = metric(CLOSED("idle_timeout"));
    cr_assert_geq(before, 0);
    struct client *c = cl_open(ts.port);
    struct resp r;
    cl_send(c, "GET /users/3 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 200, false);
    cr_assert(cl_closed(c, 15000), "idle keep-alive connection never closed");
    cl_close(c);
    double after = metric_reaches(CLOSED("idle_timeout"), before + 1);
    cr_assert_geq(after, before + 1, "idle_timeout closes %.0f -> %.0f", before, after);
    finish();
}

Test(http1, max_conns_enforced, .fini = fini)
{
    LAUNCH("--max-conns", "5", "--idle-timeout-ms", "60000");
    struct client *cs[5];
    struct resp r;
    for (int i = 0; i < 5; i++) {
        cs[i] = cl_open(ts.port);
        cl_send(cs[i], "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        expect(cs[i], &r, 200, false); /* accepted and counted */
    }
    struct client *sixth = cl_open(ts.port); /* the kernel completes the handshake; ringd closes it */
    cr_assert(cl_closed(sixth, 10000), "6th connection was not closed");
    cl_close(sixth);
    /* The five still work. */
    for (int i = 0; i < 5; i++) {
        cl_send(cs[i], "GET /users/5 HTTP/1.1\r\nHost: t\r\n\r\n");
        expect(cs[i], &r, 200, false);
        expect_user(&r, 5);
    }
    cl_close(cs[4]); /* room for the scrape once the server has seen the close */
    double limit = metric(CLOSED("limit"));
    cr_assert_geq(limit, 1, "closed{reason=\"limit\"} = %.0f", limit);
    for (int i = 0; i < 4; i++)
        cl_close(cs[i]);
    /* All slots free again: a new connection is served. */
    struct client *c = NULL;
    for (int i = 0; i < 100; i++) {
        c = cl_open(ts.port);
        cl_send(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        if (cl_read(c, &r, false) == 0)
            break;
        cl_close(c);
        c = NULL;
        usleep(50000);
    }
    cr_assert_not_null(c, "no connection accepted after the others closed");
    cr_assert_eq(r.status, 200);
    cl_close(c);
    finish();
}

/* ---------- malformed input over a real socket ---------- */

struct bad_case {
    const char *name;
    char *raw;
    size_t len;
    int status;
};

static char *repeat_into(const char *prefix, char fill, size_t n, const char *suffix, size_t *len)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    char *p = malloc(pl + n + sl + 1);
    memcpy(p, prefix, pl);
    memset(p + pl, fill, n);
    memcpy(p + pl + n, suffix, sl + 1);
    *len = pl + n + sl;
    return p;
}

static char *many_fields(int n, size_t *len)
{
    size_t cap = 64 + (size_t)n * 32, l = 0;
    char *p = malloc(cap);
    l += (size_t)snprintf(p + l, cap - l, "GET / HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < n; i++)
        l += (size_t)snprintf(p + l, cap - l, "X-%d: v\r\n", i);
    l += (size_t)snprintf(p + l, cap - l, "\r\n");
    *len = l;
    return p;
}

#define LIT(name, s, st)                                                                                                           \
    {                                                                                                                              \
        name, s, sizeof(s) - 1, st                                                                                                 \
    }

Test(http1, malformed_input_gets_its_status_and_closes, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    struct bad_case cases[] = {
        LIT("bad request line", "GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        LIT("bad version", "GET / HTTP/1.x\r\nHost: t\r\n\r\n", 400),
        LIT("HTTP/2.0", "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        LIT("HTTP/3.1", "GET /users/1 HTTP/3.1\r\nHost: t\r\n\r\n", 505),
        LIT("HTTP/9.9", "GET / HTTP/9.9\r\nHost: t\r\n\r\n", 505),
        LIT("empty Host", "GET /healthz HTTP/1.1\r\nHost:\r\n\r\n", 400),
        LIT("blank Host", "GET /healthz HTTP/1.1\r\nHost:  \r\n\r\n", 400),
        LIT("two user-ids", "GET /user HTTP/1.1\r\nHost: t\r\nuser-id: 1\r\nuser-id: 2\r\n\r\n", 400),
        LIT("unknown expectation", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 200-ok\r\n\r\n", 417),
        LIT("garbage after a request line", "GET / HTTP/1.1\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400),
        LIT("bad header", "GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", 400),
        LIT("obs-fold", "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n  b\r\n\r\n", 400),
        LIT("bare CR", "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n", 400),
        LIT("NUL in value", "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n", 400),
        LIT("ESC in value", "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x1b[0mb\r\n\r\n", 400),
        LIT("DEL in value", "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x7f\r\n\r\n", 400),
        LIT("space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
        LIT("CL with TE", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 400),
        LIT("differing CLs", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        LIT("hex CL", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x3\r\n\r\nabc", 400),
        LIT("negative CL", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
        LIT("TE", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        LIT("CL over 1 MiB", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n", 413),
        LIT("1.1 without Host", "GET /healthz HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
        LIT("two Hosts", "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        {"request line 9000", NULL, 0, 414},
        {"headers 40 KiB", NULL, 0, 431},
        {"150 fields", NULL, 0, 431},
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    cases[n - 3].raw = repeat_into("GET /", 'a', 9000, " HTTP/1.1\r\nHost: t\r\n\r\n", &cases[n - 3].len);
    cases[n - 2].raw = repeat_into("GET / HTTP/1.1\r\nHost: t\r\nX-Big: ", 'b', 40 * 1024, "\r\n\r\n", &cases[n - 2].len);
    cases[n - 1].raw = many_fields(150, &cases[n - 1].len);

    double before = metric(CLOSED("error"));
    for (size_t i = 0; i < n; i++) {
        struct client *c = cl_open(ts.port);
        cl_send_n(c, cases[i].raw, cases[i].len);
        struct resp r;
        cr_assert_eq(cl_read(c, &r, false), 0, "%s: no response", cases[i].name);
        cr_assert_eq(r.status, cases[i].status, "%s: status %d, want %d", cases[i].name, r.status, cases[i].status);
        check_common(&r, false);
        expect_json_error(&r);
        cr_assert(has_connection_close(&r), "%s: no Connection: close", cases[i].name);
        cr_assert(cl_closed(c, 10000), "%s: connection left open", cases[i].name);
        cl_close(c);
        fresh_connection_gets_200();
    }
    for (size_t i = n - 3; i < n; i++)
        free(cases[i].raw);
    double after = metric_reaches(CLOSED("error"), before + (double)n);
    cr_assert_geq(after, before + (double)n, "closed{reason=\"error\"} %.0f -> %.0f", before, after);
    finish();
}

/* First bytes that are not HTTP/1.x at all (no HTTP-version on the first
 * line) come from a client of another protocol: the connection closes without
 * an HTTP/1.1 answer that it could only take for garbage (h2spec 3.5 #2 sends
 * "INVALID CONNECTION PREFACE"), and the server serves on. */
Test(http1, not_http1_at_all_is_closed_without_an_answer, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    static const struct {
        const char *name, *raw;
        size_t len;
    } cases[] = {
#define RAW(n, lit) {n, lit, sizeof(lit) - 1}
        RAW("h2spec's invalid preface", "INVALID CONNECTION PREFACE\r\n\r\n"),
        RAW("a TLS ClientHello", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n"),
        RAW("HTTP/0.9", "GET /\r\n\r\n"),
#undef RAW
    };
    double before = metric(CLOSED("error"));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct client *c = cl_open(ts.port);
        cl_send_n(c, cases[i].raw, cases[i].len);
        cr_assert(cl_closed(c, 10000), "%s: not closed, or bytes came back", cases[i].name);
        cl_close(c);
        fresh_connection_gets_200();
    }
    double after = metric_reaches(CLOSED("error"), before + 3);
    cr_assert_geq(after, before + 3, "closed{reason=\"error\"} %.0f -> %.0f", before, after);
    /* Once a connection spoke HTTP/1.1, garbage on it is still a 400. */
    struct client *c = cl_open(ts.port);
    cl_send(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nINVALID\r\n\r\n");
    struct resp r;
    cr_assert_eq(cl_read(c, &r, false), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(cl_read(c, &r, false), 0, "no 400 after a good request");
    cr_assert_eq(r.status, 400);
    cl_close(c);
    finish();
}

Test(http1, error_after_good_pipelined_requests, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    struct client *c = cl_open(ts.port);
    cl_send(c, "GET /users/11 HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET /users/12 HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n"
               "GET /users/13 HTTP/1.1\r\nHost: t\r\n\r\n");
    struct resp r;
    expect(c, &r, 200, false);
    expect_user(&r, 11);
    expect(c, &r, 200, false);
    expect_user(&r, 12);
    expect(c, &r, 400, false);
    cr_assert(has_connection_close(&r));
    cr_assert(cl_closed(c, 10000), "nothing after the error may be answered");
    cl_close(c);
    finish();
}

/* ---------- bodies ---------- */

Test(http1, body_is_discarded_and_next_request_answered, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    struct client *c = cl_open(ts.port);
    struct resp r;
    /* The body looks like a request: it must not be answered. */
    static const char smuggle[] = "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n";
    char req[512];
    snprintf(req, sizeof(req),
             "POST /users HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n%sGET /users/21 HTTP/1.1\r\nHost: t\r\n\r\n",
             sizeof(smuggle) - 1, smuggle);
    cl_send(c, req);
    expect(c, &r, 405, false);
    char v[64];
    cr_assert_eq(resp_header(&r, "Allow", v, sizeof(v)), 0);
    cr_assert_str_eq(v, "GET, HEAD");
    expect(c, &r, 200, false);
    expect_user(&r, 21);

    /* GET with a body. */
    cl_send(c, "GET /users/22 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 200, false);
    expect_user(&r, 22);
    expect(c, &r, 200, false);
    cr_assert_str_eq(r.body, "ok\n");

    /* Exactly 1 MiB of body across many segments, then a request. */
    const size_t big = 1u << 20;
    cl_send(c, "PUT /users/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n");
    char *body = malloc(65536);
    memset(body, 'G', 65536); /* 'G' as in GET: still body */
    for (size_t sent = 0; sent < big; sent += 65536)
        cl_send_n(c, body, 65536);
    free(body);
    cl_send(c, "GET /users/23 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 405, false);
    expect(c, &r, 200, false);
    expect_user(&r, 23);
    cl_close(c);
    finish();
}

/* RFC 9110 10.1.1: a client that sends Expect: 100-continue waits for 100
 * (or a final status) before its body. It gets 100, then the answer; its
 * body is read and dropped, and the connection carries on. */
Test(http1, expect_100_continue_gets_100_before_the_body, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    struct client *c = cl_open(ts.port);
    cl_send(c, "POST /users/7 HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    while (c->len < sizeof(cont) - 1)
        cr_assert_gt(cl_fill(c), 0, "no 100 Continue before the body (got %zu bytes)", c->len);
    cr_assert_eq(memcmp(c->buf, cont, sizeof(cont) - 1), 0, "first bytes: %.*s", (int)c->len, c->buf);
    memmove(c->buf, c->buf + sizeof(cont) - 1, c->len - (sizeof(cont) - 1));
    c->len -= sizeof(cont) - 1;
    cl_send(c, "0123456789");
    struct resp r;
    expect(c, &r, 405, false); /* the final answer to the POST */
    cl_send(c, "GET /users/8 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 200, false); /* the body was not taken for a request */
    expect_user(&r, 8);
    /* Body already sent along: no 100, just the answer. */
    cl_send(c, "GET /users/9 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nab"
               "GET /users/10 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 200, false);
    expect_user(&r, 9);
    expect(c, &r, 200, false);
    expect_user(&r, 10);
    /* HTTP/1.0: the expectation is ignored (no 1xx to a 1.0 client). */
    cl_close(c);
    c = cl_open(ts.port);
    cl_send(c, "GET /users/11 HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    usleep(200000);
    cl_send(c, "ab");
    expect(c, &r, 200, false);
    expect_user(&r, 11);
    cl_close(c);
    finish();
}

Test(http1, content_length_over_1mib_is_413_and_closes, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    struct client *c = cl_open(ts.port);
    cl_send(c, "POST /users HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n");
    struct resp r;
    expect(c, &r, 413, false);
    expect_json_error(&r);
    cr_assert(has_connection_close(&r));
    cr_assert(cl_closed(c, 10000));
    cl_close(c);
    fresh_connection_gets_200();
    finish();
}

/* ---------- versions, methods, HEAD ---------- */

Test(http1, http10_closes_unless_keep_alive, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    struct client *c = cl_open(ts.port);
    struct resp r;
    cl_send(c, "GET /users/31 HTTP/1.0\r\n\r\n");
    expect(c, &r, 200, false);
    expect_user(&r, 31);
    cr_assert(has_connection_close(&r));
    cr_assert(cl_closed(c, 10000), "HTTP/1.0 left open");
    cl_close(c);

    c = cl_open(ts.port);
    cl_send(c, "GET /users/32 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    expect(c, &r, 200, false);
    char v[64];
    cr_assert_eq(resp_header(&r, "Connection", v, sizeof(v)), 0);
    cr_assert_str_eq(v, "keep-alive");
    cl_send(c, "GET /users/33 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    expect(c, &r, 200, false);
    expect_user(&r, 33);
    cl_send(c, "GET /users/34 HTTP/1.0\r\n\r\n");
    expect(c, &r, 200, false);
    cr_assert(has_connection_close(&r));
    cr_assert(cl_closed(c, 10000));
    cl_close(c);
    finish();
}

Test(http1, head_has_headers_but_no_body, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    struct client *c = cl_open(ts.port);
    struct resp get, head;
    cl_send(c, "GET /users/41 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &get, 200, false);
    /* HEAD then GET in one write: if HEAD carried a body the GET's status line would not come next. */
    cl_send(c, "HEAD /users/41 HTTP/1.1\r\nHost: t\r\n\r\nHEAD /missing HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &head, 200, true);
    cr_assert_eq(head.content_length, get.content_length, "HEAD Content-Length differs from GET's");
    expect(c, &head, 404, true);
    cr_assert_gt(head.content_length, 0);
    cr_assert_eq(c->len > 0 ? memcmp(c->buf, "HTTP/1.1 ", 9) : 0, 0, "bytes after a HEAD response: %.20s", c->buf);
    expect(c, &get, 200, false);
    cr_assert_str_eq(get.body, "ok\n");
    cl_close(c);
    finish();
}

Test(http1, other_methods_get_405_with_allow, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    static const char *const methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get", "TRACE", "CONNECT"};
    struct client *c = cl_open(ts.port);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        char req[128];
        snprintf(req, sizeof(req), "%s /users/1 HTTP/1.1\r\nHost: t\r\n\r\n", methods[i]);
        cl_send(c, req);
        struct resp r;
        expect(c, &r, 405, false);
        char v[64];
        cr_assert_eq(resp_header(&r, "Allow", v, sizeof(v)), 0, "%s: no Allow", methods[i]);
        cr_assert_str_eq(v, "GET, HEAD");
        expect_json_error(&r);
    }
    struct resp r;
    cl_send(c, "GET /users/1 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 200, false);
    cr_assert_eq(resp_header(&r, "Allow", (char[8]){0}, 8), -1, "Allow on a 200");
    cl_close(c);
    finish();
}

/* ---------- drain and SIGPIPE ---------- */

#define METRICS_REQ_LEN (sizeof("GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n") - 1)

Test(http1, sigterm_drains_in_flight_requests_and_exits_0, .fini = fini)
{
    /* One shard: the idle connections closing proves the shard that holds the
     * in-flight ones has begun draining (another shard may notice later). */
    LAUNCH("--shards", "1", "--idle-timeout-ms", "60000", "--drain-timeout-ms", "10000");
    struct resp r;
    struct client *idle = cl_open(ts.port);
    cl_send(idle, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(idle, &r, 200, false);
    struct client *silent = cl_open(ts.port);

    /* Two requests in flight: all but their last CRLF has arrived. */
    static const char part_user[] = "GET /users/51 HTTP/1.1\r\nHost: t\r\n";
    static const char part_ready[] = "GET /readyz HTTP/1.1\r\nHost: t\r\n";
    double base = metric("ringd_bytes_received_total");
    cr_assert_geq(base, 0);
    struct client *a = cl_open(ts.port);
    struct client *b = cl_open(ts.port);
    cl_send(a, part_user);
    cl_send(b, part_ready);
    /* Make sure the server has read them before the signal (each scrape adds its own request). */
    bool seen = false;
    for (int k = 1; k <= 200 && !seen; k++) {
        double v = metric("ringd_bytes_received_total");
        seen = v >= base + (double)(k * METRICS_REQ_LEN + sizeof(part_user) - 1 + sizeof(part_ready) - 1);
        if (!seen)
            usleep(20000);
    }
    cr_assert(seen, "server never read the partial requests");

    cr_assert_eq(kill(ts.pid, SIGTERM), 0);
    cr_assert(cl_closed(idle, 10000), "idle keep-alive connection not closed on drain");
    cr_assert(cl_closed(silent, 10000), "never-used connection not closed on drain");
    cl_send(a, "\r\n");
    cl_send(b, "\r\n");
    expect(a, &r, 200, false);
    expect_user(&r, 51);
    cr_assert(has_connection_close(&r), "a response during drain must close the connection");
    expect(b, &r, 503, false);
    cr_assert(cl_closed(a, 10000));
    cr_assert(cl_closed(b, 10000));
    cl_close(a);
    cl_close(b);
    cl_close(idle);
    cl_close(silent);
    finish();
    cr_assert(ts_log_contains(&ts, "msg=draining"));
}

Test(http1, client_vanishing_mid_batch_does_not_kill_the_server, .fini = fini)
{
    LAUNCH("--idle-timeout-ms", "60000");
    enum { N = 4000 };
    size_t cap = (size_t)N * 64, len = 0;
    char *batch = malloc(cap);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(batch + len, cap - len, "GET /users/%d HTTP/1.1\r\nHost: t\r\n\r\n", 1 + i % USERS);
    for (int round = 0; round < 3; round++) {
        struct client *c = cl_open(ts.port);
        cl_send_n(c, batch, len);
        /* Wait until answers flow, then vanish without reading them (RST on close). */
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 10000), 1, "no answer to the batch");
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        if (round == 2)
            shutdown(c->fd, SHUT_RD); /* plain close without reading */
        cl_close(c);
    }
    free(batch);
    usleep(200 * 1000);
    cr_assert_eq(kill(ts.pid, 0), 0, "server gone");
    fresh_connection_gets_200();
    struct client *c = cl_open(ts.port);
    struct resp r;
    cl_send(c, "GET /users/61 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(c, &r, 200, false);
    expect_user(&r, 61);
    cl_close(c);
    finish();
}
