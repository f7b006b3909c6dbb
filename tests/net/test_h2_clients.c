/* test_h2_clients.c - real HTTP/2 clients against the real server: curl (prior knowledge, upgrade), nghttp, h2load. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/server.h"

#define USERS 1000

static struct test_server ts;

static void start(void)
{
    cr_assert_eq(ts_launch(&ts, USERS, NULL), 0, "server starts");
}

static void stop(void)
{
    ts_stop(&ts);
}

/* The server exits 0 on SIGTERM (a sanitizer report would make it non-zero). */
static void finish(void)
{
    cr_assert_eq(ts_stop(&ts), 0, "server exit status");
}

/* Skips the test unless the client binary exists. */
static void need(const char *bin)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", bin);
    if (ts_sh(cmd) != 0)
        cr_skip_test("%s is not installed", bin);
}

/* Runs cmdline, captures stdout (and stderr when merged by the caller) into
 * out. Returns the exit status, -1 on error. */
static int capture(const char *cmdline, char *out, size_t cap)
{
    FILE *p = popen(cmdline, "r");
    if (p == NULL)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TestSuite(h2_clients, .init = start, .fini = stop, .timeout = 300);

Test(h2_clients, curl_prior_knowledge)
{
    need("curl");
    char cmd[512], out[8192];
    snprintf(cmd, sizeof(cmd),
             "curl -sS --http2-prior-knowledge -w '\\n%%{http_version} %%{http_code}' http://127.0.0.1:%d/users/5", ts.port);
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0, "curl: %s", out);
    cr_assert(strncmp(out, "{\"id\":5,", 8) == 0, "body: %s", out);
    cr_assert_not_null(strstr(out, "\n2 200"), "HTTP/2 200: %s", out);

    snprintf(cmd, sizeof(cmd), "curl -sS --http2-prior-knowledge -I http://127.0.0.1:%d/users/5", ts.port);
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0);
    cr_assert_not_null(strstr(out, "HTTP/2 200"), "%s", out);
    cr_assert_not_null(strstr(out, "server: ringd"), "%s", out);
    cr_assert_not_null(strstr(out, "content-length: "), "%s", out);
    cr_assert_not_null(strstr(out, "date: "), "%s", out);
    finish();
}

Test(h2_clients, curl_upgrade)
{
    need("curl");
    char cmd[512], out[8192];
    snprintf(cmd, sizeof(cmd), "curl -sS -v --http2 -w '\\n%%{http_version} %%{http_code}' http://127.0.0.1:%d/users/7 2>&1",
             ts.port);
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0, "curl: %s", out);
    cr_assert_not_null(strstr(out, "< HTTP/1.1 101"), "switched protocols: %s", out);
    cr_assert_not_null(strstr(out, "{\"id\":7,"), "body: %s", out);
    cr_assert_not_null(strstr(out, "\n2 200"), "answered over HTTP/2: %s", out);
    finish();
}

Test(h2_clients, nghttp)
{
    need("nghttp");
    char cmd[512], out[65536];
    snprintf(cmd, sizeof(cmd), "nghttp -v http://127.0.0.1:%d/users/11 2>&1", ts.port);
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0, "nghttp: %s", out);
    cr_assert_not_null(strstr(out, ":status: 200"), "%s", out);
    cr_assert_not_null(strstr(out, "{\"id\":11,"), "%s", out);
    cr_assert_not_null(strstr(out, "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100"), "%s", out);

    /* -u: the h2c upgrade, with a second request multiplexed after it. */
    snprintf(cmd, sizeof(cmd), "nghttp -u http://127.0.0.1:%d/users/12 http://127.0.0.1:%d/user 2>&1", ts.port, ts.port);
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0, "nghttp -u: %s", out);
    cr_assert_not_null(strstr(out, "{\"id\":12,"), "%s", out);
    cr_assert_not_null(strstr(out, "{\"error\":\"unauthorized\"}"), "%s", out);
    finish();
}

/* Parses h2load's "requests: T total, S started, D done, OK succeeded, F failed, E errored, ..." line. */
static void h2load_counts(const char *out, long *total, long *ok, long *failed, long *errored)
{
    const char *p = strstr(out, "\nrequests: ");
    cr_assert_not_null(p, "no requests line: %s", out);
    long started, done;
    cr_assert_eq(sscanf(p, "\nrequests: %ld total, %ld started, %ld done, %ld succeeded, %ld failed, %ld errored", total, &started,
                        &done, ok, failed, errored),
                 6, "%s", p);
}

Test(h2_clients, h2load_100k_no_errors)
{
    need("h2load");
    char uris[300], cmd[700];
    snprintf(uris, sizeof(uris), "%s/uris.txt", ts.dir);
    FILE *f = fopen(uris, "w");
    cr_assert_not_null(f);
    srand(42);
    for (int i = 0; i < 1000; i++)
        fprintf(f, "http://127.0.0.1:%d/users/%d\n", ts.port, 1 + rand() % USERS);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "h2load -n 100000 -c 10 -m 100 -i %s 2>&1", uris);
    static char out[65536];
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0, "h2load: %s", out);
    long total, ok, failed, errored;
    h2load_counts(out, &total, &ok, &failed, &errored);
    cr_assert_eq(total, 100000);
    cr_assert_eq(ok, 100000, "%s", out);
    cr_assert_eq(failed, 0, "%s", out);
    cr_assert_eq(errored, 0, "%s", out);
    cr_assert_not_null(strstr(out, "status codes: 100000 2xx"), "%s", out);
    cr_assert_geq(ts_metric(ts.port, "ringd_requests_processed_total{protocol=\"http2\",route=\"users\",code=\"200\"}"), 100000);
    finish();
}
