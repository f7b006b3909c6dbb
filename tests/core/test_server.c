/* test_server.c - process-level behaviour of `ringd serve`: io_uring refusal, port 0, shard balance, CLI errors,
 * one ringd per port unless --reuse-port-join. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/server.h"

/* Runs `ringd serve` with io_uring_setup failing with err (seccomp filter, as a
 * container runtime would install), capturing stderr. Returns the exit status. */
static int serve_without_io_uring(struct test_server *ts, int err, char *out, size_t outlen)
{
    char log[400];
    snprintf(log, sizeof(log), "%s/refused.log", ts->dir);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        struct sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {.len = sizeof(filter) / sizeof(filter[0]), .filter = filter};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
            _exit(99);
        execl(RINGD_BIN, RINGD_BIN, "serve", "--listen", "127.0.0.1:0", "--db", ts->db, (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    FILE *f = fopen(log, "r");
    size_t n = f ? fread(out, 1, outlen - 1, f) : 0;
    out[n] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(server, io_uring_denied_by_seccomp_exits_1_with_cause)
{
    struct test_server ts;
    cr_assert_eq(ts_prepare(&ts, 10), 0);
    char out[4096];
    int rc = serve_without_io_uring(&ts, EPERM, out, sizeof(out));
    cr_expect_eq(rc, 1, "exit status %d, stderr: %s", rc, out);
    cr_expect(strstr(out, "msg=io_uring_unavailable") != NULL, "stderr: %s", out);
    cr_expect(strstr(out, "seccomp") != NULL, "the message names the cause: %s", out);
    cr_expect(strstr(out, "fix=") != NULL, "the message says how to allow it: %s", out);
    ts_stop(&ts);
}

Test(server, io_uring_missing_exits_1_with_cause)
{
    struct test_server ts;
    cr_assert_eq(ts_prepare(&ts, 10), 0);
    char out[4096];
    int rc = serve_without_io_uring(&ts, ENOSYS, out, sizeof(out));
    cr_expect_eq(rc, 1, "exit status %d, stderr: %s", rc, out);
    cr_expect(strstr(out, "ENOSYS") != NULL, "stderr: %s", out);
    ts_stop(&ts);
}

Test(server, port_zero_is_shared_by_every_shard_and_logged)
{
    struct test_server ts;
    const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_launch(&ts, 10, args), 0);
    cr_expect(ts_log_contains(&ts, "msg=listening addr=127.0.0.1:"));
    cr_expect(ts_log_contains(&ts, "shards=2"));
    /* Connections spread over both shards' listeners; all of them answer on the one port. */
    for (int i = 0; i < 20; i++) {
        struct ts_response r;
        cr_assert_eq(ts_get(ts.port, "/healthz", NULL, &r), 0);
        cr_expect_eq(r.status, 200);
    }
    cr_expect_eq(ts_stop(&ts), 0);
}

Test(server, balance_64_connections_over_2_shards)
{
    struct test_server ts;
    const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_launch(&ts, 10, args), 0);
    enum { N = 64 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = ts_connect(ts.port);
        cr_assert_geq(fds[i], 0);
        /* A request on each proves the connection is adopted by a shard. */
        const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        struct ts_response r;
        cr_assert_eq(ts_send_all(fds[i], req, strlen(req)), 0);
        cr_assert_eq(ts_read_response(fds[i], &r, false), 0);
        cr_assert_eq(r.status, 200);
    }
    char *text = ts_metrics_text(ts.port);
    cr_assert_not_null(text);
    double s0 = ts_metric_in(text, "ringd_connections_active{shard=\"0\"}");
    double s1 = ts_metric_in(text, "ringd_connections_active{shard=\"1\"}");
    free(text);
    /* The scrape's own connection counts too. */
    cr_expect_eq(s0 + s1, N + 1, "shard0=%.0f shard1=%.0f", s0, s1);
    cr_expect_leq(s0, 0.6 * N + 1, "shard0=%.0f shard1=%.0f", s0, s1);
    cr_expect_leq(s1, 0.6 * N + 1, "shard0=%.0f shard1=%.0f", s0, s1);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    cr_expect_eq(ts_stop(&ts), 0);
}

Test(server, bad_flag_exits_2_with_message)
{
    char out[2048];
    FILE *p = popen(RINGD_BIN " serve --shards zero 2>&1; echo rc=$?", "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    pclose(p);
    cr_expect(strstr(out, "--shards") != NULL, "%s", out);
    cr_expect(strstr(out, "rc=2") != NULL, "%s", out);
}

Test(server, missing_db_dir_is_a_clear_error)
{
    char out[2048];
    FILE *p = popen(RINGD_BIN " serve --listen 127.0.0.1:0 --db /nonexistent/ringd-db 2>&1; echo rc=$?", "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    pclose(p);
    cr_expect(strstr(out, "msg=store_open_failed") != NULL, "%s", out);
    cr_expect(strstr(out, "rc=1") != NULL, "%s", out);
}

Test(server, help_lists_every_flag)
{
    char out[4096];
    FILE *p = popen(RINGD_BIN " serve --help; echo rc=$?", "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    pclose(p);
    const char *flags[] = {"--listen", "--db", "--shards", "--admin-listen", "--max-conns", "--header-timeout-ms",
                           "--idle-timeout-ms", "--drain-timeout-ms", "--drain-grace-ms", "--refresh-ms", "--paused-budget-mb", "--reuse-port-join", "rc=0"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        cr_expect(strstr(out, flags[i]) != NULL, "missing %s in: %s", flags[i], out);
}

Test(server, out_of_descriptors_on_accept_neither_spins_nor_stops_serving)
{
    struct test_server ts;
    cr_assert_eq(ts_prepare(&ts, 10), 0);
    /* The server inherits a tiny descriptor limit; the test keeps its own. */
    struct rlimit saved, tiny = {64, 64};
    getrlimit(RLIMIT_NOFILE, &saved);
    tiny.rlim_max = saved.rlim_max;
    setrlimit(RLIMIT_NOFILE, &tiny);
    const char *args[] = {"--shards", "1", NULL};
    int rc = ts_start(&ts, args);
    setrlimit(RLIMIT_NOFILE, &saved);
    cr_assert_eq(rc, 0);

    enum { N = 100 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = ts_connect(ts.port); /* the kernel completes handshakes the server cannot accept yet */
    struct ts_response r;
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(ts_send_all(fds[0], req, strlen(req)), 0);
    cr_expect_eq(ts_read_response(fds[0], &r, false), 0, "an accepted connection is still served");
    cr_expect_eq(r.status, 200);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    /* Once descriptors are free again, new connections are accepted and served. */
    int ok = 0;
    for (int i = 0; i < 50 && ok == 0; i++) {
        if (ts_get(ts.port, "/healthz", NULL, &r) == 0 && r.status == 200)
            ok = 1;
        else
            usleep(100000);
    }
    cr_expect_eq(ok, 1);
    cr_expect_gt(ts_metric(ts.port, "ringd_accept_errors_total"), 0.0);
    cr_expect_eq(ts_stop(&ts), 0);
}

struct flood {
    int fd;
    int requests;
    int sent;
};

static void *flood_writer(void *arg)
{
    struct flood *f = arg;
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    char batch[64 * (sizeof(req) - 1)];
    for (int i = 0; i < 64; i++)
        memcpy(batch + i * (sizeof(req) - 1), req, sizeof(req) - 1);
    for (f->sent = 0; f->sent < f->requests; f->sent += 64)
        if (ts_send_all(f->fd, batch, sizeof(batch)) != 0)
            break;
    return NULL;
}

/* A client that pipelines far more than ringd buffers (CONN_IN_MAX) before
 * reading anything is slowed by TCP flow control, not disconnected: the shard
 * stops reading while its output is backed up, and every request is answered. */
Test(server, pipelining_flood_is_slowed_not_dropped)
{
    struct test_server ts;
    const char *args[] = {"--shards", "1", NULL};
    cr_assert_eq(ts_launch(&ts, 10, args), 0);
    struct flood f = {.fd = ts_connect(ts.port), .requests = 64 * 1600}; /* whole batches */
    cr_assert_geq(f.fd, 0);
    pthread_t writer;
    pthread_create(&writer, NULL, flood_writer, &f);
    /* Let the writer run ahead until both directions' socket buffers are full. */
    usleep(500000);
    static const char mark[] = "HTTP/1.1 200 OK\r\n";
    const size_t ml = sizeof(mark) - 1;
    char buf[65536 + sizeof(mark)];
    size_t keep = 0;
    long seen = 0;
    while (seen < f.requests) {
        ssize_t n = recv(f.fd, buf + keep, sizeof(buf) - keep - 1, 0);
        if (n <= 0)
            break;
        size_t len = keep + (size_t)n;
        buf[len] = '\0';
        for (char *p = buf; (p = memmem(p, len - (size_t)(p - buf), mark, ml)) != NULL; p += ml)
            seen++;
        keep = len < ml - 1 ? len : ml - 1; /* a mark split across reads */
        memmove(buf, buf + len - keep, keep);
    }
    pthread_join(writer, NULL);
    cr_expect_eq(seen, f.requests, "answered %ld of %d", seen, f.requests);
    close(f.fd);
    cr_expect_eq(ts_metric(ts.port, "ringd_connections_closed_total{reason=\"error\"}"), 0.0);
    /* The connection did stop reading and start again (the backpressure path ran). */
    cr_expect_gt(ts_metric(ts.port, "ringd_recv_rearms_total"), 0.0);
    cr_expect_eq(ts_stop(&ts), 0);
}

/* ---------- the listening port belongs to one ringd unless the operator says otherwise ---------- */

/* The servers of the tests below, stopped by fini even when an assertion ends a test early. */
static struct test_server srv_a, srv_b;

static void stop_servers(void)
{
    if (srv_a.dir[0] != '\0')
        ts_stop(&srv_a);
    if (srv_b.dir[0] != '\0')
        ts_stop(&srv_b);
}

/* Runs `ringd serve --db db --shards 2 --listen listen extra` to its end (at
 * most 15 s: a server that starts keeps running and is then killed, rc 124),
 * capturing its output. Returns the exit status. */
static int serve_to_end(const char *db, const char *listen, const char *extra, char *out, size_t outlen)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "timeout 15 %s serve --db %s --shards 2 --listen '%s' %s 2>&1; echo rc=$?", RINGD_BIN, db,
             listen, extra);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    pclose(p);
    const char *rc = strstr(out, "rc=");
    return rc != NULL ? atoi(rc + 3) : -1;
}

/* GET /users/500 on n fresh connections: counts 200 (a server with 1000
 * users answered) and 404 (one with 10 users). */
static void count_answers(int port, int n, int *ok, int *missing)
{
    *ok = *missing = 0;
    for (int i = 0; i < n; i++) {
        struct ts_response r;
        cr_assert_eq(ts_get(port, "/users/500", NULL, &r), 0);
        *ok += r.status == 200;
        *missing += r.status == 404;
    }
}

Test(server, second_serve_on_a_served_port_exits_1_and_takes_nothing, .fini = stop_servers, .timeout = 60)
{
        const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_launch(&srv_a, 1000, args), 0);
    cr_assert_eq(ts_prepare(&srv_b, 10), 0);
    char listen[64], out[4096];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", srv_a.port);
    int rc = serve_to_end(srv_b.db, listen, "", out, sizeof(out));
    cr_expect_eq(rc, 1, "a second ringd on %s: exit %d\n%s", listen, rc, out);
    cr_expect(strstr(out, "address already in use") != NULL, "%s", out);
    cr_expect(strstr(out, "--reuse-port-join") != NULL, "the message names the way to share: %s", out);
    int ok, missing;
    count_answers(srv_a.port, 40, &ok, &missing);
    cr_expect_eq(ok, 40, "the first server answered %d of 40 (%d from the other database)", ok, missing);
    ts_stop(&srv_b);
    cr_expect_eq(ts_stop(&srv_a), 0);
}

Test(server, second_serve_on_a_served_ipv6_port_exits_1, .fini = stop_servers, .timeout = 60)
{
        const char *args[] = {"--shards", "2", "--listen", "[::1]:0", NULL};
    cr_assert_eq(ts_launch(&srv_a, 10, args), 0);
    cr_assert_eq(ts_prepare(&srv_b, 10), 0);
    char listen[64], out[4096];
    snprintf(listen, sizeof(listen), "[::1]:%d", srv_a.port);
    int rc = serve_to_end(srv_b.db, listen, "", out, sizeof(out));
    cr_expect_eq(rc, 1, "a second ringd on %s: exit %d\n%s", listen, rc, out);
    cr_expect(strstr(out, "address already in use") != NULL, "%s", out);
    ts_stop(&srv_b);
    cr_expect_eq(ts_stop(&srv_a), 0);
}

/* Any program of this user can join a SO_REUSEPORT group; ringd does not join one it did not ask for. */
Test(server, port_held_by_another_reuseport_listener_is_refused, .fini = stop_servers)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sl), 0);
    cr_assert_eq(listen(fd, 16), 0);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    cr_assert_eq(ts_prepare(&srv_b, 10), 0);
    char listen[64], out[4096];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", ntohs(sa.sin_port));
    int rc = serve_to_end(srv_b.db, listen, "", out, sizeof(out));
    cr_expect_eq(rc, 1, "exit %d\n%s", rc, out);
    cr_expect(strstr(out, "address already in use") != NULL, "%s", out);
    close(fd);
    ts_stop(&srv_b);
}

/* The handover an operator asks for: both serve the port (two databases tell them apart). */
Test(server, reuse_port_join_shares_the_port_when_asked, .fini = stop_servers, .timeout = 60)
{
        const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_launch(&srv_a, 1000, args), 0);
    cr_assert_eq(ts_prepare(&srv_b, 10), 0);
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", srv_a.port);
    const char *bargs[] = {"--shards", "2", "--listen", listen, "--reuse-port-join", NULL};
    cr_assert_eq(ts_start(&srv_b, bargs), 0, "a ringd asked to join did not start");
    cr_expect(ts_log_contains(&srv_b, "msg=reuse_port_join"), "joining is logged");
    int ok, missing;
    count_answers(srv_a.port, 64, &ok, &missing);
    cr_expect(ok > 0 && missing > 0, "answers: %d from the first, %d from the joined one", ok, missing);
    cr_expect_eq(ts_stop(&srv_b), 0);
    /* The old one alone again. */
    count_answers(srv_a.port, 20, &ok, &missing);
    cr_expect_eq(ok, 20);
    cr_expect_eq(ts_stop(&srv_a), 0);
}

/* The port of a ringd that stopped is free again at once, though connections it closed linger in TIME_WAIT. */
Test(server, restart_on_the_same_port_succeeds, .fini = stop_servers, .timeout = 60)
{
    const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_launch(&srv_a, 10, args), 0);
    for (int i = 0; i < 20; i++) {
        struct ts_response r; /* Connection: close: the server closes first, its side waits in TIME_WAIT */
        cr_assert_eq(ts_roundtrip(srv_a.port, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r), 0);
    }
    int port = srv_a.port;
    cr_assert_eq(ts_terminate(&srv_a, 10000), 0);
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    unlink(srv_a.log); /* ts_start waits for a listening line: not the last run's */
    const char *again[] = {"--shards", "2", "--listen", listen, NULL};
    cr_assert_eq(ts_start(&srv_a, again), 0, "restart on %s failed", listen);
    struct ts_response r;
    cr_expect_eq(ts_get(port, "/healthz", NULL, &r), 0);
    cr_expect_eq(ts_stop(&srv_a), 0);
}

/* ---------- probes ---------- */

/* At --max-conns the main listener refuses new connections, /healthz included;
 * the admin listener sits outside the limit, so probes pointed there still
 * get their answers. /livez is on both. */
Test(server, probes_answer_on_the_admin_listener_at_max_conns, .fini = stop_servers, .timeout = 60)
{
    const char *args[] = {"--shards", "2", "--max-conns", "2", "--admin-listen", "127.0.0.1:0", NULL};
    cr_assert_eq(ts_launch(&srv_a, 10, args), 0);
    cr_assert_gt(srv_a.admin_port, 0);
    struct ts_response r;
    cr_assert_eq(ts_get(srv_a.port, "/livez", NULL, &r), 0);
    cr_expect_eq(r.status, 200, "/livez on the main listener");
    cr_expect_str_eq(r.body, "ok\n");
    int held[2];
    const char *req = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    for (int i = 0; i < 2; i++) {
        /* The previous /livez connection's slot may take a moment to be given back. */
        for (int tries = 0;; tries++) {
            held[i] = ts_connect(srv_a.port);
            cr_assert_geq(held[i], 0);
            if (ts_send_all(held[i], req, strlen(req)) == 0 && ts_read_response(held[i], &r, false) == 0)
                break;
            close(held[i]);
            cr_assert_lt(tries, 100, "connection %d never accepted", i);
            usleep(50000);
        }
        cr_assert_eq(r.status, 200);
    }
    int refused = ts_connect(srv_a.port);
    cr_assert_geq(refused, 0);
    cr_expect(ts_wait_closed(refused, 10000), "a third connection over --max-conns 2 was not closed");
    close(refused);
    static const char *const probes[] = {"/healthz", "/livez", "/readyz"};
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        cr_assert_eq(ts_get(srv_a.admin_port, probes[i], NULL, &r), 0, "%s on the admin listener: no answer", probes[i]);
        cr_expect_eq(r.status, 200, "%s on the admin listener at the limit: %d", probes[i], r.status);
    }
    for (int i = 0; i < 2; i++)
        close(held[i]);
    cr_expect_eq(ts_stop(&srv_a), 0);
}
