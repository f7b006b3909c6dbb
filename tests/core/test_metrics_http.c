/* test_metrics_http.c - /metrics of the real binary: labelled counters move by exactly what was sent, histograms are
 * consistent, promtool accepts the text, and --admin-listen moves /metrics off the main listener. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/server.h"

#define USERS 100
#define N404 37
#define N401 11
#define N200 23

static const char *const route_names[] = {"users", "user", "metrics", "healthz", "readyz", "livez", "other"};
static const char *const les[] = {"2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
                                  "0.005",   "0.01",  "0.025",  "0.1",     "1",      "10",    "+Inf"};

/* One request on its own connection with "Connection: close", read to EOF.
 * Returns the bytes received (the whole response), or -1; *status gets the code;
 * body (may be NULL) gets a malloc'ed copy of everything received. */
static long exchange(int port, const char *raw, int *status, char **all)
{
    int fd = ts_connect(port);
    if (fd < 0)
        return -1;
    if (ts_send_all(fd, raw, strlen(raw)) != 0) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (cap - len < 4096)
            buf = realloc(buf, cap *= 2);
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    *status = 0;
    sscanf(buf, "HTTP/1.1 %d", status);
    if (all != NULL)
        *all = buf;
    else
        free(buf);
    return (long)len;
}

/* A whole scrape: the response (headers + body) in *resp; the body returned points into it. */
struct scrape {
    char *resp;
    const char *body;
    long len;
    int status;
};

#define SCRAPE_REQ "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"

static void scrape(int port, struct scrape *s)
{
    s->len = exchange(port, SCRAPE_REQ, &s->status, &s->resp);
    cr_assert_gt(s->len, 0, "scrape on port %d failed", port);
    const char *b = strstr(s->resp, "\r\n\r\n");
    cr_assert_not_null(b);
    s->body = b + 4;
}

static double val(const struct scrape *s, const char *series)
{
    size_t sl = strlen(series);
    for (const char *line = s->body; line != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, series, sl) == 0 && line[sl] == ' ')
            return strtod(line + sl + 1, NULL);
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

/* Like val, but the series must be there. */
static double need(const struct scrape *s, const char *series)
{
    double v = val(s, series);
    cr_assert_geq(v, 0, "series %s missing from the scrape", series);
    return v;
}

/* Sum of every sample whose line starts with prefix (e.g. all codes of a route). */
static double sum_prefix(const struct scrape *s, const char *prefix)
{
    double total = 0;
    size_t pl = strlen(prefix);
    for (const char *line = s->body; line != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, prefix, pl) == 0) {
            const char *sp = strchr(line, ' ');
            if (sp != NULL && (nl == NULL || sp < nl))
                total += strtod(sp + 1, NULL);
        }
        line = nl ? nl + 1 : NULL;
    }
    return total;
}

static double req_series(const struct scrape *s, const char *route, const char *code)
{
    char series[200];
    snprintf(series, sizeof(series), "ringd_requests_processed_total{protocol=\"http1\",route=\"%s\",code=\"%s\"}", route, code);
    return need(s, series);
}

static double hist(const struct scrape *s, const char *what, const char *route, const char *le)
{
    char series[200];
    if (le != NULL)
        snprintf(series, sizeof(series), "ringd_request_duration_seconds_%s{route=\"%s\",le=\"%s\"}", what, route, le);
    else
        snprintf(series, sizeof(series), "ringd_request_duration_seconds_%s{route=\"%s\"}", what, route);
    return need(s, series);
}

/* Buckets non-decreasing, _count == +Inf == requests answered on the route (every
 * protocol and code): a response reaches the client only after its latency was observed. */
static void check_histograms(const struct scrape *s)
{
    for (size_t r = 0; r < sizeof(route_names) / sizeof(route_names[0]); r++) {
        const char *route = route_names[r];
        double prev = 0;
        for (size_t b = 0; b < sizeof(les) / sizeof(les[0]); b++) {
            double v = hist(s, "bucket", route, les[b]);
            cr_expect_geq(v, prev, "route %s: bucket le=%s (%.0f) below the previous (%.0f)", route, les[b], v, prev);
            prev = v;
        }
        double count = hist(s, "count", route, NULL);
        cr_expect_eq(count, prev, "route %s: _count %.0f != +Inf bucket %.0f", route, count, prev);
        double answered = 0;
        for (const char *proto[] = {"http1", "http2", NULL}, **p = proto; *p != NULL; p++) {
            char prefix[160];
            snprintf(prefix, sizeof(prefix), "ringd_requests_processed_total{protocol=\"%s\",route=\"%s\",", *p, route);
            answered += sum_prefix(s, prefix);
        }
        cr_expect_eq(count, answered, "route %s: _count %.0f != requests answered %.0f", route, count, answered);
        cr_expect_geq(hist(s, "sum", route, NULL), 0);
    }
}

static double sum_shards(const struct scrape *s, const char *family, unsigned shards)
{
    double total = 0;
    for (unsigned i = 0; i < shards; i++) {
        char series[160];
        snprintf(series, sizeof(series), "%s{shard=\"%u\"}", family, i);
        total += need(s, series);
    }
    return total;
}

static void free_scrape(struct scrape *s)
{
    free(s->resp);
    s->resp = NULL;
}

Test(metrics_http, known_mix_moves_each_counter_exactly, .timeout = 120)
{
    struct test_server ts;
    const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_launch(&ts, USERS, args), 0);

    struct scrape a, b;
    scrape(ts.port, &a);
    cr_assert_eq(a.status, 200);
    char ct[128];
    const char *h = strcasestr(a.resp, "\r\ncontent-type: ");
    cr_assert_not_null(h);
    sscanf(h + strlen("\r\ncontent-type: "), "%127[^\r]", ct);
    cr_expect_str_eq(ct, "text/plain; version=0.0.4; charset=utf-8");
    cr_expect_eq(need(&a, "ringd_store_lookups_total{result=\"hit\"}"), 0);

    long sent = 0, received = 0;
    char raw[256];
    int st;
    for (int i = 0; i < N404; i++) {
        snprintf(raw, sizeof(raw), "GET /users/%d HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 999999999 - i);
        long n = exchange(ts.port, raw, &st, NULL);
        cr_assert_eq(st, 404);
        sent += (long)strlen(raw);
        received += n;
    }
    for (int i = 0; i < N401; i++) {
        snprintf(raw, sizeof(raw), "GET /user HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        long n = exchange(ts.port, raw, &st, NULL);
        cr_assert_eq(st, 401);
        sent += (long)strlen(raw);
        received += n;
    }
    for (int i = 1; i <= N200; i++) {
        /* Both routes: /users/{id} and /user with the header. */
        if (i % 2)
            snprintf(raw, sizeof(raw), "GET /users/%d HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", i);
        else
            snprintf(raw, sizeof(raw), "GET /user HTTP/1.1\r\nHost: localhost\r\nuser-id: %d\r\nConnection: close\r\n\r\n", i);
        long n = exchange(ts.port, raw, &st, NULL);
        cr_assert_eq(st, 200);
        sent += (long)strlen(raw);
        received += n;
    }
    const int n200_users = (N200 + 1) / 2, n200_user = N200 / 2;
    scrape(ts.port, &b);

    /* Labelled counters moved by exactly the mix. */
    cr_expect_eq(req_series(&b, "users", "404") - req_series(&a, "users", "404"), N404);
    cr_expect_eq(req_series(&b, "user", "401") - req_series(&a, "user", "401"), N401);
    cr_expect_eq(req_series(&b, "users", "200") - req_series(&a, "users", "200"), n200_users);
    cr_expect_eq(req_series(&b, "user", "200") - req_series(&a, "user", "200"), n200_user);
    cr_expect_eq(req_series(&b, "user", "404") - req_series(&a, "user", "404"), 0);
    cr_expect_eq(req_series(&b, "users", "400") - req_series(&a, "users", "400"), 0);
    /* Scrape a was answered before b rendered, b itself is counted after it. */
    cr_expect_eq(req_series(&b, "metrics", "200") - req_series(&a, "metrics", "200"), 1);
    cr_expect_eq(sum_prefix(&b, "ringd_requests_processed_total{") - sum_prefix(&a, "ringd_requests_processed_total{"),
                 N404 + N401 + N200 + 1);

    /* Store: the 401s never reach it. */
    cr_expect_eq(need(&b, "ringd_store_lookups_total{result=\"hit\"}") - need(&a, "ringd_store_lookups_total{result=\"hit\"}"),
                 N200);
    cr_expect_eq(need(&b, "ringd_store_lookups_total{result=\"miss\"}") - need(&a, "ringd_store_lookups_total{result=\"miss\"}"),
                 N404);
    cr_expect_eq(need(&b, "ringd_store_lookups_total{result=\"error\"}"), 0);

    /* Histograms, per route, over the mix. */
    cr_expect_eq(hist(&b, "count", "users", NULL) - hist(&a, "count", "users", NULL), N404 + n200_users);
    cr_expect_eq(hist(&b, "count", "user", NULL) - hist(&a, "count", "user", NULL), N401 + n200_user);
    cr_expect_gt(hist(&b, "sum", "users", NULL), hist(&a, "sum", "users", NULL));
    check_histograms(&a);
    check_histograms(&b);

    /* Bytes: everything read between the scrapes is the mix plus scrape b's request;
     * everything sent is the mix's responses plus scrape a's (each read to EOF, so
     * its send had completed). */
    cr_expect_eq(need(&b, "ringd_bytes_received_total") - need(&a, "ringd_bytes_received_total"),
                 (double)(sent + (long)strlen(SCRAPE_REQ)));
    cr_expect_eq(need(&b, "ringd_bytes_sent_total") - need(&a, "ringd_bytes_sent_total"), (double)(received + a.len));

    /* Connections: one per request plus scrape b's, spread over both shards' series. */
    cr_expect_eq(sum_shards(&b, "ringd_connections_accepted_total", 2) - sum_shards(&a, "ringd_connections_accepted_total", 2),
                 N404 + N401 + N200 + 1);
    cr_expect_eq(val(&b, "ringd_connections_accepted_total{shard=\"2\"}"), -1, "only shards 0 and 1 exist");
    cr_expect_geq(sum_shards(&b, "ringd_connections_active", 2), 1, "scrape b's own connection is open");
    /* Once the clients' closes are processed, only the scraping connection is active and
     * every other accepted connection is counted as closed. */
    bool settled = false;
    double active = -1, accepted = -1, closed = -1;
    for (int i = 0; i < 500 && !settled; i++) {
        struct scrape c;
        scrape(ts.port, &c);
        active = sum_shards(&c, "ringd_connections_active", 2);
        accepted = sum_shards(&c, "ringd_connections_accepted_total", 2);
        closed = sum_prefix(&c, "ringd_connections_closed_total{");
        settled = active == 1 && accepted - closed == 1;
        free_scrape(&c);
        if (!settled)
            usleep(10000);
    }
    cr_expect(settled, "active %.0f, accepted %.0f, closed %.0f: expected 1 active and accepted - closed == 1", active, accepted,
              closed);

    /* Process and store families are live values. */
    cr_expect_gt(need(&b, "process_resident_memory_bytes"), 0);
    cr_expect_gt(need(&b, "process_open_fds"), 0);
    cr_expect_geq(need(&b, "process_threads"), 3, "main thread + 2 shards");
    cr_expect_gt(need(&b, "process_start_time_seconds"), 1.5e9);
    cr_expect_gt(need(&b, "ringd_store_map_used_bytes"), 0);
    cr_expect_gt(need(&b, "ringd_store_last_txn_id"), 0);
    cr_expect_gt(need(&b, "ringd_uring_cqes_total"), need(&a, "ringd_uring_cqes_total"));
    cr_expect_gt(need(&b, "ringd_uring_submit_calls_total"), need(&a, "ringd_uring_submit_calls_total"));

    free_scrape(&a);
    free_scrape(&b);
    cr_expect_eq(ts_stop(&ts), 0);
}

Test(metrics_http, ts_metric_reads_one_sample, .timeout = 60)
{
    struct test_server ts;
    cr_assert_eq(ts_launch(&ts, USERS, NULL), 0);
    struct ts_response r;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(ts_get(ts.port, "/users/999999999", NULL, &r), 0);
    cr_expect_eq(ts_metric(ts.port, "ringd_requests_processed_total{protocol=\"http1\",route=\"users\",code=\"404\"}"), 3);
    cr_expect_eq(
        ts_metric(ts.port, "ringd_build_info{version=\"" RINGD_VERSION "\",liburing=\"2.3\",lmdb=\"0.9.24\"}"),
        1, "build info labels (versions of Debian 12's packages)");
    cr_expect_eq(ts_stop(&ts), 0);
}

Test(metrics_http, promtool_accepts_a_real_scrape, .timeout = 60)
{
    if (ts_sh("command -v promtool >/dev/null 2>&1") != 0)
        cr_skip_test("promtool not found on PATH: install Debian's 'prometheus' package to run this check");
    struct test_server ts;
    const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_launch(&ts, USERS, args), 0);
    /* Traffic on every route and a few codes, so every family has samples. */
    const char *paths[] = {"/users/1", "/users/999999999", "/users/abc", "/user", "/healthz", "/readyz", "/nope"};
    struct ts_response r;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        cr_assert_eq(ts_get(ts.port, paths[i], NULL, &r), 0);
    cr_assert_eq(ts_get(ts.port, "/user", "user-id: 2\r\n", &r), 0);
    cr_assert_eq(ts_roundtrip(ts.port, "DELETE /users/1 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
    cr_assert_eq(r.status, 405);
    cr_assert_eq(ts_get(ts.port, "/metrics", NULL, &r), 0);

    struct scrape s;
    scrape(ts.port, &s);
    char file[400], cmd[1600];
    snprintf(file, sizeof(file), "%s/scrape.txt", ts.dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs(s.body, f);
    fclose(f);
    /* promtool prints lint problems and exits non-zero on any; show them. */
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s > %s.out 2>&1; rc=$?; cat %s.out >&2; exit $rc", file, file, file);
    int rc = ts_sh(cmd);
    cr_expect_eq(rc, 0, "promtool check metrics failed (rc %d) on the scrape in %s", rc, file);
    /* And that it can fail: a counter without _total and a sample with no TYPE. */
    snprintf(cmd, sizeof(cmd),
             "printf '# HELP bad_counter x\\n# TYPE bad_counter counter\\nbad_counter 1\\n' | "
             "promtool check metrics >/dev/null 2>&1");
    cr_expect_neq(ts_sh(cmd), 0, "promtool did not flag a counter without _total");
    free_scrape(&s);
    cr_expect_eq(ts_stop(&ts), 0);
}

Test(metrics_http, admin_listener_owns_metrics, .timeout = 60)
{
    struct test_server ts;
    const char *args[] = {"--shards", "2", "--admin-listen", "127.0.0.1:0", NULL};
    cr_assert_eq(ts_launch(&ts, USERS, args), 0);
    cr_assert_gt(ts.admin_port, 0, "no admin=127.0.0.1:PORT in the listening line");
    cr_assert_neq(ts.admin_port, ts.port);

    struct ts_response r;
    cr_assert_eq(ts_get(ts.port, "/metrics", NULL, &r), 0);
    cr_expect_eq(r.status, 404, "the main listener must not serve /metrics when --admin-listen is given");
    cr_expect(strstr(r.body, "ringd_") == NULL);
    cr_assert_eq(ts_get(ts.port, "/users/1", NULL, &r), 0);
    cr_expect_eq(r.status, 200);

    struct scrape s;
    scrape(ts.admin_port, &s);
    cr_expect_eq(s.status, 200);
    cr_expect(strstr(s.resp, "text/plain; version=0.0.4; charset=utf-8") != NULL);
    cr_expect(strstr(s.body, "# TYPE ringd_requests_processed_total counter\n") != NULL);
    /* The main listener's refusal was counted as a 404 on route other; the lookup as a 200. */
    cr_expect_eq(req_series(&s, "other", "404"), 1);
    cr_expect_eq(req_series(&s, "users", "200"), 1);
    cr_expect_eq(req_series(&s, "metrics", "200"), 0);
    cr_expect_eq(need(&s, "ringd_store_lookups_total{result=\"hit\"}"), 1);
    check_histograms(&s);
    free_scrape(&s);

    /* User routes stay on the main listener. */
    cr_assert_eq(ts_get(ts.admin_port, "/users/1", NULL, &r), 0);
    cr_expect_eq(r.status, 404);
    cr_expect_eq(ts_metric(ts.admin_port, "ringd_requests_processed_total{protocol=\"http1\",route=\"metrics\",code=\"200\"}"), 1);
    cr_expect_eq(ts_stop(&ts), 0);
}

/* process_threads is what the README says: the main thread, one per shard, and
 * io_uring workers (iou-wrk-*) the kernel adds for work it does not complete
 * inline, such as the shutdown of a lingering close. */
Test(metrics_http, process_threads_are_main_shards_indexer_and_io_uring_workers, .timeout = 60)
{
    struct test_server ts;
    const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_launch(&ts, USERS, args), 0);
    for (int i = 0; i < 10; i++) {
        struct ts_response r; /* Connection: close: a lingering close, its shutdown(2) on an io_uring worker */
        cr_assert_eq(ts_roundtrip(ts.port, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r), 0);
    }
    double threads = ts_metric(ts.port, "process_threads");
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)ts.pid);
    DIR *d = opendir(path);
    cr_expect_not_null(d, "%s", path);
    int ours = 0, workers = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char comm_path[384], comm[32] = "";
        snprintf(comm_path, sizeof(comm_path), "%s/%s/comm", path, e->d_name);
        FILE *f = fopen(comm_path, "r");
        if (f == NULL)
            continue; /* a worker that just exited */
        if (fgets(comm, sizeof(comm), f) == NULL)
            comm[0] = '\0';
        fclose(f);
        if (strncmp(comm, "iou-wrk-", 8) == 0)
            workers++;
        else
            ours++;
    }
    if (d != NULL)
        closedir(d);
    cr_log_info("process_threads %.0f: %d of ringd's own, %d io_uring workers", threads, ours, workers);
    cr_expect_eq(ours, 4, "threads other than io_uring workers: %d, want main + 2 shards + the index builder", ours);
    cr_expect_geq(threads, 3);
    cr_expect_eq(ts_stop(&ts), 0);
}
