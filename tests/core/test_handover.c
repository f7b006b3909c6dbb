/* test_handover.c - restarts on one host that fail no request, under wrk (HTTP/1.1), h2load and h2retry (HTTP/2) load:
 * a --reuse-port-join successor then SIGTERM with a drain grace, and socket activation (LISTEN_FDS) across a
 * stop and a start; the start-up line that says what decided the shard count. */
#include <criterion/criterion.h>

#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/h2retry.h"
#include "tests/support/server.h"

#define USERS 1000
#define LOAD_S 8 /* each client's run; the restart happens inside it */

static struct test_server old_srv, new_srv;
static pid_t load_pids[3] = {-1, -1, -1}; /* wrk, h2load, h2retry */

static void cleanup(void)
{
    for (int i = 0; i < 3; i++) {
        if (load_pids[i] > 0) {
            kill(load_pids[i], SIGKILL);
            waitpid(load_pids[i], NULL, 0);
            load_pids[i] = -1;
        }
    }
    if (old_srv.dir[0] != '\0')
        ts_stop(&old_srv);
    if (new_srv.dir[0] != '\0')
        ts_stop(&new_srv);
}

static void need(const char *bin)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", bin);
    if (ts_sh(cmd) != 0)
        cr_skip_test("%s is not installed", bin);
}

/* Starts `sh -c cmdline` with its output into out_path; returns its pid. */
static pid_t spawn(const char *cmdline, const char *out_path)
{
    char full[2048];
    snprintf(full, sizeof(full), "exec %s >'%s' 2>&1", cmdline, out_path);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t *pid)
{
    int st = 0;
    waitpid(*pid, &st, 0);
    *pid = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void slurp(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(out, 1, cap - 1, f) : 0;
    out[n] = '\0';
    if (f != NULL)
        fclose(f);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls GET /readyz on port until 200 (up to 30 s). */
static bool wait_ready(int port)
{
    for (int i = 0; i < 3000; i++) {
        struct ts_response r;
        if (ts_get(port, "/readyz", NULL, &r) == 0 && r.status == 200)
            return true;
        sleep_ms(10);
    }
    return false;
}

/* A child running h2retry_run; its counts go to path as a struct h2retry_stats. */
static pid_t spawn_h2retry(int port, const char *path)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct h2retry_stats st;
        int rc = h2retry_run(port, "/users/44", 4, 10, LOAD_S, &st);
        FILE *f = fopen(path, "w");
        if (f != NULL) {
            fwrite(&st, sizeof(st), 1, f);
            fclose(f);
        }
        _exit(rc == 0 && f != NULL ? 0 : 1);
    }
    return pid;
}

/* wrk (HTTP/1.1 keep-alive), h2load and h2retry (HTTP/2, 10 streams a connection) against port for LOAD_S seconds. */
static void start_load(int port, const char *dir)
{
    char cmd[512], out[400];
    snprintf(cmd, sizeof(cmd), "wrk -t1 -c16 -d%ds --timeout 5s http://127.0.0.1:%d/users/42", LOAD_S, port);
    snprintf(out, sizeof(out), "%s/wrk.out", dir);
    load_pids[0] = spawn(cmd, out);
    snprintf(cmd, sizeof(cmd), "h2load -c4 -m10 -D %d -T 5 http://127.0.0.1:%d/users/43", LOAD_S, port);
    snprintf(out, sizeof(out), "%s/h2load.out", dir);
    load_pids[1] = spawn(cmd, out);
    snprintf(out, sizeof(out), "%s/h2retry.stats", dir);
    load_pids[2] = spawn_h2retry(port, out);
    sleep_ms(1500); /* connections established, requests flowing */
}

/* Waits for both clients and checks that no request failed. Prints the counts (the report). */
static void expect_no_failures(const char *dir, const char *scenario)
{
    static char out[65536];
    char path[400];
    int rc = wait_exit(&load_pids[0]);
    snprintf(path, sizeof(path), "%s/wrk.out", dir);
    slurp(path, out, sizeof(out));
    cr_expect_eq(rc, 0, "wrk: %s", out);
    long reqs = 0;
    const char *p = strstr(out, " requests in ");
    if (p != NULL) {
        while (p > out && p[-1] != '\n' && p[-1] != ' ')
            p--;
        reqs = atol(p);
    }
    const char *errs = strstr(out, "Socket errors:");
    const char *non2xx = strstr(out, "Non-2xx");
    fprintf(stderr, "handover[%s] wrk: %ld requests, %s%s\n", scenario, reqs, errs ? "" : "no socket errors", errs ? errs : "");
    cr_expect_gt(reqs, 0, "wrk made no requests: %s", out);
    cr_expect_null(errs, "wrk saw failed requests during the handover: %s", out);
    cr_expect_null(non2xx, "wrk saw non-2xx answers during the handover: %s", out);

    rc = wait_exit(&load_pids[1]);
    snprintf(path, sizeof(path), "%s/h2load.out", dir);
    slurp(path, out, sizeof(out));
    cr_expect_eq(rc, 0, "h2load: %s", out);
    long total = -1, started = -1, done = -1, ok = -1, failed = -1, errored = -1;
    p = strstr(out, "\nrequests: ");
    cr_assert_not_null(p, "no requests line from h2load: %s", out);
    sscanf(p, "\nrequests: %ld total, %ld started, %ld done, %ld succeeded, %ld failed, %ld errored", &total, &started, &done, &ok,
           &failed, &errored);
    fprintf(stderr, "handover[%s] h2load: %ld done, %ld succeeded, %ld failed, %ld errored\n", scenario, done, ok, failed, errored);
    cr_expect_gt(ok, 0, "%s", out);
    /* h2load's "failed" are requests that never reached ringd: nghttp2
     * refuses to send the HEADERS it had queued when it reads a GOAWAY
     * (session_predicate_request_headers_send), h2load counts them failed
     * and does not reconnect. It queues them for the answers it read just
     * before the GOAWAY in the same read; ringd cannot tell which of its
     * answers the client has read. h2retry below is the client that does
     * what RFC 9113 8.7 allows (re-issues what was refused or never sent)
     * and must lose nothing. At most one connection's worth (-m10) per
     * connection drained, each of the 4 drained at most twice. */
    cr_expect_leq(failed, 2 * 4 * 10, "h2load: more failed than the streams queued at GOAWAYs: %s", out);
    cr_expect_eq(failed, errored, "%s", out);

    rc = wait_exit(&load_pids[2]);
    cr_expect_eq(rc, 0, "h2retry made no connection or could not write its counts");
    struct h2retry_stats st = {0};
    snprintf(path, sizeof(path), "%s/h2retry.stats", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    cr_assert_eq(fread(&st, sizeof(st), 1, f), 1);
    fclose(f);
    h2retry_format(&st, out, sizeof(out));
    fprintf(stderr, "handover[%s] %s\n", scenario, out);
    cr_expect_gt(st.ok, 0, "%s", out);
    cr_expect_eq(st.failed, 0, "requests ringd took and lost: %s", out);
    cr_expect_eq(st.non2xx, 0, "%s", out);
    cr_expect_eq(st.given_up + st.unanswered, 0, "%s", out);
    cr_expect_eq(st.ok, st.issued, "every request answered 200: %s", out);
    cr_expect_geq(st.goaways, 1, "the drained connections were told by GOAWAY: %s", out);
    cr_expect_gt(st.connections, 4, "and replaced: %s", out);
}

/* The two phases of a drain, one connection at a time: in the grace only
 * readiness changes; after it the port is closed and a keep-alive
 * connection is closed after its next answer. */
Test(handover, grace_keeps_serving_then_closes_after_the_next_answer, .fini = cleanup, .timeout = 60)
{
    const char *args[] = {"--shards", "1", "--drain-grace-ms", "1500", "--admin-listen", "127.0.0.1:0", NULL};
    cr_assert_eq(ts_launch(&old_srv, 100, args), 0);
    const char *req = "GET /users/7 HTTP/1.1\r\nHost: t\r\n\r\n";
    int k = ts_connect(old_srv.port);
    cr_assert_geq(k, 0);
    struct ts_response r;
    cr_assert_eq(ts_send_all(k, req, strlen(req)), 0);
    cr_assert_eq(ts_read_response(k, &r, false), 0);
    cr_assert_eq(r.status, 200);

    kill(old_srv.pid, SIGTERM);
    sleep_ms(300);
    cr_expect_eq(ts_get(old_srv.admin_port, "/readyz", NULL, &r), 0);
    cr_expect_eq(r.status, 503, "readiness is off from SIGTERM on");
    cr_assert_eq(ts_send_all(k, req, strlen(req)), 0);
    cr_assert_eq(ts_read_response(k, &r, false), 0);
    cr_expect_eq(r.status, 200);
    cr_expect_not(r.closed, "in the grace a keep-alive connection stays open");
    cr_expect_eq(ts_get(old_srv.port, "/users/8", NULL, &r), 0, "in the grace new connections are still served");
    cr_expect_eq(r.status, 200);
    /* Half a request head on k: busy, not idle, when the grace ends. */
    const char *head = "GET /users/9 HTTP/1.1\r\nHost: t\r\n";
    cr_assert_eq(ts_send_all(k, head, strlen(head)), 0);

    /* The grace ends: the listener is shut, new connections are refused. */
    bool refused = false;
    for (int i = 0; i < 1000 && !refused; i++) {
        int fd = ts_connect(old_srv.port);
        refused = fd < 0;
        if (fd >= 0) {
            close(fd);
            sleep_ms(10);
        }
    }
    cr_expect(refused, "after the grace nobody listens any more");
    cr_assert_eq(ts_send_all(k, "\r\n", 2), 0);
    cr_assert_eq(ts_read_response(k, &r, false), 0, "the request finished after the grace is answered");
    cr_expect_eq(r.status, 200);
    cr_expect(r.closed, "with Connection: close");
    cr_expect(ts_wait_closed(k, 5000), "and the connection is closed after it");
    close(k);
    cr_expect_eq(ts_terminate(&old_srv, 10000), 0);
    cr_expect(ts_log_contains(&old_srv, "drain_grace_ms=1500"));
}

/* The successor joins the port, turns ready, the old one gets SIGTERM: it
 * keeps serving through its grace (readiness off), then takes what waits in
 * its accept queue, shuts its listeners and closes each connection after
 * its next answer (HTTP/1.1 Connection: close, HTTP/2 two GOAWAYs). */
Test(handover, reuse_port_join_then_sigterm_fails_nothing, .fini = cleanup, .timeout = 120)
{
    need("wrk");
    need("h2load");
    const char *a_args[] = {"--shards", "2", "--drain-grace-ms", "1000", "--admin-listen", "127.0.0.1:0", NULL};
    cr_assert_eq(ts_launch(&old_srv, USERS, a_args), 0);
    int port = old_srv.port;
    start_load(port, old_srv.dir);

    cr_assert_eq(ts_prepare(&new_srv, USERS), 0);
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    const char *b_args[] = {"--shards",       "2",           "--listen",         listen, "--reuse-port-join",
                            "--admin-listen", "127.0.0.1:0", "--drain-grace-ms", "1000", NULL};
    cr_assert_eq(ts_start(&new_srv, b_args), 0);
    cr_assert(wait_ready(new_srv.admin_port), "the successor never turned ready");

    struct ts_response r;
    kill(old_srv.pid, SIGTERM);
    sleep_ms(200);
    cr_expect_eq(ts_get(old_srv.admin_port, "/readyz", NULL, &r), 0, "the old one still answers in its grace");
    cr_expect_eq(r.status, 503, "readiness is off from SIGTERM on");
    cr_expect_eq(ts_terminate(&old_srv, 20000), 0, "the old instance drains and exits 0");
    cr_expect(ts_log_contains(&old_srv, "msg=stopped"));
    expect_no_failures(old_srv.dir, "reuse-port-join");

    /* The successor serves alone. */
    cr_expect_eq(ts_get(port, "/users/42", NULL, &r), 0);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(ts_stop(&new_srv), 0);
}

/* Socket activation: the socket, and its queue, outlive each instance, as
 * systemd's does across `systemctl restart`. Connections made while no
 * instance runs wait in the queue and are answered by the next one. */
Test(handover, socket_activation_restart_fails_nothing, .fini = cleanup, .timeout = 120)
{
    need("wrk");
    need("h2load");
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sl), 0);
    cr_assert_eq(listen(lfd, 4096), 0);
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    int port = ntohs(sa.sin_port);

    const char *args[] = {"--shards", "2", "--drain-grace-ms", "300", "--admin-listen", "127.0.0.1:0", NULL};
    cr_assert_eq(ts_prepare(&old_srv, USERS), 0);
    old_srv.pass_fd = lfd;
    cr_assert_eq(ts_start(&old_srv, args), 0);
    cr_expect_eq(old_srv.port, port, "the passed socket is the one served");
    cr_expect(ts_log_contains(&old_srv, "msg=socket_activation"));
    start_load(port, old_srv.dir);

    cr_expect_eq(ts_terminate(&old_srv, 20000), 0);
    cr_expect(ts_log_contains(&old_srv, "msg=stopped"));
    /* No instance now: the port still takes connections (systemd's socket). */
    cr_assert_eq(ts_prepare(&new_srv, USERS), 0);
    new_srv.pass_fd = lfd;
    cr_assert_eq(ts_start(&new_srv, args), 0);
    expect_no_failures(old_srv.dir, "socket-activation");
    struct ts_response r;
    cr_expect_eq(ts_get(port, "/users/42", NULL, &r), 0);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(ts_stop(&new_srv), 0);
    close(lfd);
}

/* The start-up line names what decided the shard count (RINGD_CGROUP_DIR stands for the container's cgroup). */
Test(handover, startup_logs_what_decided_the_shard_count, .fini = cleanup, .timeout = 60)
{
    cr_assert_eq(ts_launch(&old_srv, 10, NULL), 0);
    cr_expect(ts_log_contains(&old_srv, "msg=shards count="), "no shards line");
    cr_expect(ts_log_contains(&old_srv, "decided_by=affinity") || ts_log_contains(&old_srv, "decided_by=cpu_max"));
    cr_expect_eq(ts_stop(&old_srv), 0);

    char dir[] = "/tmp/ringd-cgXXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char file[64], cmd[128];
    snprintf(file, sizeof(file), "%s/cpu.max", dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("100000 100000\n", f);
    fclose(f);
    setenv("RINGD_CGROUP_DIR", dir, 1);
    cr_assert_eq(ts_launch(&old_srv, 10, NULL), 0);
    unsetenv("RINGD_CGROUP_DIR");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu > 1)
        cr_expect(ts_log_contains(&old_srv, "msg=shards count=1 decided_by=cpu_max"), "the quota of 1 CPU decided");
    cr_expect(ts_log_contains(&old_srv, "shards=1 "), "one shard listens");
    cr_expect_eq(ts_stop(&old_srv), 0);

    const char *flag[] = {"--shards", "2", NULL};
    setenv("RINGD_CGROUP_DIR", dir, 1);
    cr_assert_eq(ts_launch(&old_srv, 10, flag), 0);
    unsetenv("RINGD_CGROUP_DIR");
    cr_expect(ts_log_contains(&old_srv, "msg=shards count=2 decided_by=flag"));
    cr_expect_eq(ts_stop(&old_srv), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ts_sh(cmd);
}
