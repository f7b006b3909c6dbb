/* test_shard.c - the shard's backpressure over real sockets: clients that pipeline and never read
 * cost tens of KiB each, all of them together stay within --paused-budget-mb, and everyone else is
 * still served. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/conn.h"
#include "tests/support/server.h"

#define USERS 1000

static struct test_server ts;

/* Clients that write pipelined requests and never read. */
struct stallers {
    int n;
    int *fds;
    size_t *sent;
};
static struct stallers st;

static void fini(void)
{
    for (int i = 0; i < st.n; i++)
        if (st.fds[i] >= 0)
            close(st.fds[i]);
    free(st.fds);
    free(st.sent);
    memset(&st, 0, sizeof(st));
    if (ts.pid > 0)
        ts_terminate(&ts, 10000);
    if (ts.dir[0] != '\0') {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ts.dir);
        ts_sh(cmd);
    }
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* One client socket with small buffers of its own, so that what piles up is
 * ringd's (and the test does not hold megabytes of kernel memory per client). */
static int staller_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int rcv = 4096, snd = 16384;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Opens n clients, each writing pipelined GETs (up to cap bytes) and never
 * reading, until no client made progress for 1 s (ringd stopped reading them
 * all) or 90 s passed. Returns the bytes written in total. */
static size_t stall_clients(int port, int n, size_t cap)
{
    static char batch[200 * 40];
    size_t blen = 0;
    for (int i = 0; i < 200; i++)
        blen += (size_t)snprintf(batch + blen, sizeof(batch) - blen, "GET /users/%d HTTP/1.1\r\nHost: t\r\n\r\n", 1 + i % USERS);
    st.n = n;
    st.fds = calloc((size_t)n, sizeof(int));
    st.sent = calloc((size_t)n, sizeof(size_t));
    cr_assert(st.fds != NULL && st.sent != NULL);
    for (int i = 0; i < n; i++) {
        st.fds[i] = staller_connect(port);
        cr_assert_geq(st.fds[i], 0, "connect %d: %s", i, strerror(errno));
    }
    size_t total = 0;
    uint64_t start = now_ms(), last = start;
    while (now_ms() - last < 1000 && now_ms() - start < 90000) {
        for (int i = 0; i < n; i++) {
            if (st.fds[i] < 0 || st.sent[i] >= cap)
                continue;
            size_t off = st.sent[i] % blen;
            size_t want = blen - off < cap - st.sent[i] ? blen - off : cap - st.sent[i];
            ssize_t k = send(st.fds[i], batch + off, want, MSG_NOSIGNAL);
            if (k > 0) {
                st.sent[i] += (size_t)k;
                total += (size_t)k;
                last = now_ms();
            } else if (k < 0 && errno != EAGAIN && errno != EINTR) {
                close(st.fds[i]); /* closed by ringd (budget): it is not ours to hold any more */
                st.fds[i] = -1;
            }
        }
        usleep(10000);
    }
    return total;
}

/* VmRSS or VmHWM ("VmRSS:", "VmHWM:") of pid in KiB; -1 when unreadable. */
static long proc_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, field, strlen(field)) == 0)
            v = strtol(line + strlen(field), NULL, 10);
    if (f != NULL)
        fclose(f);
    return v;
}

/* Polls a gauge until pred holds for it (or 10 s passed); returns its last value. */
static double metric_until(const char *series, bool (*pred)(double, double), double arg)
{
    double v = -1;
    for (int i = 0; i < 200; i++) {
        v = ts_metric(ts.port, series);
        if (pred(v, arg))
            break;
        usleep(50000);
    }
    return v;
}
static bool at_least(double v, double want)
{
    return v >= want;
}
static bool equals(double v, double want)
{
    return v == want;
}

/* A fresh client gets its user; a client that pipelines and reads gets every answer, in order. */
static void others_are_served(void)
{
    struct ts_response r;
    cr_assert_eq(ts_get(ts.port, "/users/42", NULL, &r), 0, "a fresh client got no answer");
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.body, "\"id\":42") != NULL, "body %s", r.body);
    int fd = ts_connect(ts.port);
    cr_assert_geq(fd, 0);
    char req[64 * 40];
    size_t len = 0;
    for (int i = 0; i < 64; i++)
        len += (size_t)snprintf(req + len, sizeof(req) - len, "GET /users/%d HTTP/1.1\r\nHost: t\r\n\r\n", 100 + i);
    cr_assert_eq(ts_send_all(fd, req, len), 0);
    for (int i = 0; i < 64; i++) {
        cr_assert_eq(ts_read_response(fd, &r, false), 0, "pipelined answer %d missing", i);
        cr_assert_eq(r.status, 200);
        char want[32];
        snprintf(want, sizeof(want), "\"id\":%d", 100 + i);
        cr_assert(strstr(r.body, want) != NULL, "answer %d out of order: %s", i, r.body);
    }
    close(fd);
}

#define PAUSED "ringd_connections_paused"
#define PAUSED_BYTES "ringd_paused_buffer_bytes"
#define CLOSED_BUDGET "ringd_connections_closed_total{reason=\"budget\"}"

/* Each client that stops reading holds at most CONN_STALLED_MAX once stalled
 * (main held ~1 MB each: 256 KiB of output twice and what it had read). */
Test(shard, a_client_that_never_reads_costs_tens_of_kib, .fini = fini, .timeout = 120)
{
    const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_launch(&ts, USERS, args), 0);
    enum { N = 100 };
    long before = proc_kib(ts.pid, "VmRSS:");
    stall_clients(ts.port, N, 4u << 20);
    double paused = metric_until(PAUSED, at_least, N);
    cr_expect_eq(paused, N, "%.0f of %d non-reading clients are paused", paused, N);
    usleep((CONN_STALL_MS + 500) * 1000); /* past the stall limit and a sweep */
    double bytes = ts_metric(ts.port, PAUSED_BYTES);
    paused = ts_metric(ts.port, PAUSED);
    cr_expect_gt(bytes, 0);
    cr_expect_leq(bytes, paused * CONN_STALLED_MAX, "%.0f bytes held by %.0f paused connections", bytes, paused);
    long after = proc_kib(ts.pid, "VmRSS:");
    cr_log_info("100 non-reading clients: ringd RSS %ld -> %ld KiB, %.0f paused holding %.0f bytes", before, after, paused, bytes);
#ifndef __SANITIZE_ADDRESS__
    cr_expect_lt((after - before) / N, 128, "RSS %ld -> %ld KiB: %ld KiB per non-reading client", before, after,
                 (after - before) / N);
#endif
    others_are_served();
    for (int i = 0; i < st.n; i++)
        if (st.fds[i] >= 0)
            close(st.fds[i]);
    st.n = 0;
    double left = metric_until(PAUSED_BYTES, equals, 0);
    cr_expect_eq(left, 0, "paused bytes after the clients left: %.0f", left);
    cr_expect_eq(ts_metric(ts.port, PAUSED), 0);
    cr_expect_eq(ts_stop(&ts), 0);
}

/* The figure: 2,000 of them keep ringd under 256 MB, and everyone else is served. */
Test(shard, two_thousand_non_reading_pipeliners_stay_under_256_mb, .fini = fini, .timeout = 300)
{
    const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_launch(&ts, USERS, args), 0);
    enum { N = 2000 };
    long before = proc_kib(ts.pid, "VmRSS:");
    size_t sent = stall_clients(ts.port, N, 256u * 1024);
    double paused = metric_until(PAUSED, at_least, N / 2);
    double bytes = ts_metric(ts.port, PAUSED_BYTES);
    long rss = proc_kib(ts.pid, "VmRSS:"), hwm = proc_kib(ts.pid, "VmHWM:");
    cr_log_info("2000 non-reading clients wrote %zu KiB; ringd RSS %ld -> %ld KiB (peak %ld), %.0f paused holding %.0f "
                "bytes, %.0f closed over the budget",
                sent / 1024, before, rss, hwm, paused, bytes, ts_metric(ts.port, CLOSED_BUDGET));
    double evicted = ts_metric(ts.port, CLOSED_BUDGET);
    /* ringd stopped reading them: each one is paused, or was closed for holding too much. */
    cr_expect_geq(paused + evicted, N, "%.0f paused + %.0f closed over the budget of %d", paused, evicted, N);
    cr_expect_gt(paused, 0);
    cr_expect_leq(bytes, 64.0 * 1024 * 1024, "the default budget is 64 MiB; paused connections hold %.0f", bytes);
    others_are_served();
#ifndef __SANITIZE_ADDRESS__
    /* ASan's allocator keeps freed memory in quarantine and redzones around
     * each buffer: the figure means something for the shipped allocator only
     * (./build.sh test also runs this test in its Release tree). */
    cr_expect_lt(rss, 256 * 1024, "RSS %ld KiB", rss);
    cr_expect_lt(hwm, 256 * 1024, "peak RSS %ld KiB", hwm);
#endif
    cr_expect_eq(ts_stop(&ts), 0);
}

/* Past --paused-budget-mb the connections that waited longest are closed, and the rest stay under it. */
Test(shard, over_the_budget_the_longest_paused_are_closed, .fini = fini, .timeout = 120)
{
    const char *args[] = {"--shards", "1", "--paused-budget-mb", "1", NULL};
    cr_assert_eq(ts_launch(&ts, USERS, args), 0);
    stall_clients(ts.port, 60, 1u << 20); /* ~48 KiB each: about three times the budget */
    double closed = metric_until(CLOSED_BUDGET, at_least, 1);
    cr_expect_geq(closed, 1, "nothing was closed over a 1 MiB budget");
    double bytes = ts_metric(ts.port, PAUSED_BYTES);
    cr_expect_gt(bytes, 0);
    cr_expect_leq(bytes, 1024.0 * 1024, "%.0f bytes held over a 1 MiB budget", bytes);
    double paused = ts_metric(ts.port, PAUSED);
    cr_expect_gt(paused, 0, "every paused client was closed, not just enough of them");
    others_are_served();
    cr_expect_eq(ts_stop(&ts), 0);
}
