/* test_tls.c - HTTPS against the real server with real clients and certificates made by `openssl req`: curl
 * (HTTP/1.1 and HTTP/2 by ALPN), openssl s_client (ALPN, resumption across shards and instances), h2load over
 * TLS, SIGHUP certificate reload, close_notify, --listen none and the start-up checks. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/server.h"
#include "tests/support/tlsclient.h"
#include "tests/support/tmpdir.h"

#define USERS 1000

static struct test_server ts, ts2;
static char certdir[256];
static char crt[320], key[320];

static void setup(void)
{
    ts_mkdtemp(certdir, sizeof(certdir), "tlscert");
    cr_assert_eq(tc_make_cert(certdir, "a", "ringd-a", "ec"), 0, "openssl req");
    /* The server's own copies, which the reload test overwrites. */
    snprintf(crt, sizeof(crt), "%s/server.crt", certdir);
    snprintf(key, sizeof(key), "%s/server.key", certdir);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cp %s/a.crt %s && cp %s/a.key %s", certdir, crt, certdir, key);
    cr_assert_eq(ts_sh(cmd), 0);
}

static void teardown(void)
{
    ts_stop(&ts);
    ts_stop(&ts2);
    ts_rmtree(certdir);
}

/* Starts ringd with the TLS listener on certificate a plus extra (NULL-terminated, may be NULL). */
static void launch(struct test_server *t, const char *shards, const char *const *extra)
{
    const char *args[32] = {"--tls-listen", "127.0.0.1:0", "--tls-cert", crt, "--tls-key", key, "--shards", shards};
    int n = 8;
    for (int i = 0; extra != NULL && extra[i] != NULL; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    cr_assert_eq(ts_launch(t, USERS, args), 0, "server starts");
    cr_assert_gt(t->tls_port, 0, "tls= port in the listening line");
}

static void finish(struct test_server *t)
{
    cr_assert_eq(ts_stop(t), 0, "server exit status");
}

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

static void need(const char *bin)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", bin);
    if (ts_sh(cmd) != 0)
        cr_skip_test("%s is not installed", bin);
}

/* A metric from the cleartext port, or (with --listen none) from the admin port. */
static double metric(const struct test_server *t, const char *series)
{
    return ts_metric(t->port > 0 ? t->port : t->admin_port, series);
}

/* The subject CN the server presents to a new connection (s_client), into out. */
static void presented_cn(int port, char *out, size_t cap)
{
    char cmd[512], text[16384];
    snprintf(cmd, sizeof(cmd), "openssl s_client -connect 127.0.0.1:%d </dev/null 2>/dev/null", port);
    capture(cmd, text, sizeof(text));
    const char *p = strstr(text, "subject=CN = ");
    out[0] = '\0';
    if (p != NULL)
        sscanf(p + strlen("subject=CN = "), "%63[^\n]", out);
    (void)cap;
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 300);

Test(tls, curl_http11_and_http2_by_alpn)
{
    need("curl");
    launch(&ts, "1", NULL);
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof(cmd), "curl -sS --cacert %s --http1.1 -w '\\n%%{http_version} %%{http_code}' https://localhost:%d/users/5",
             crt, ts.tls_port);
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0, "curl: %s", out);
    cr_assert(strncmp(out, "{\"id\":5,", 8) == 0, "body: %s", out);
    cr_assert_not_null(strstr(out, "\n1.1 200"), "HTTP/1.1 over TLS: %s", out);

    snprintf(cmd, sizeof(cmd), "curl -sS --cacert %s --http2 -w '\\n%%{http_version} %%{http_code}' https://localhost:%d/users/6",
             crt, ts.tls_port);
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0, "curl: %s", out);
    cr_assert(strncmp(out, "{\"id\":6,", 8) == 0, "body: %s", out);
    cr_assert_not_null(strstr(out, "\n2 200"), "HTTP/2 by ALPN: %s", out);

    /* No ALPN at all: HTTP/1.1. */
    snprintf(cmd, sizeof(cmd),
             "curl -sS --cacert %s --no-alpn -w '\\n%%{http_version} %%{http_code}' https://localhost:%d/user -H 'user-id: 7'", crt,
             ts.tls_port);
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0, "curl: %s", out);
    cr_assert_not_null(strstr(out, "\n1.1 200"), "no ALPN -> HTTP/1.1: %s", out);

    /* Several requests on one HTTP/2 connection, and HEAD. */
    snprintf(cmd, sizeof(cmd), "curl -sS --cacert %s --http2 -I https://localhost:%d/users/8", crt, ts.tls_port);
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0, "curl: %s", out);
    cr_assert_not_null(strstr(out, "HTTP/2 200"), "%s", out);
    cr_assert_not_null(strstr(out, "server: ringd"), "%s", out);

    cr_expect_eq(metric(&ts, "ringd_requests_processed_total{protocol=\"http1_tls\",route=\"users\",code=\"200\"}"), 1);
    cr_expect_eq(metric(&ts, "ringd_requests_processed_total{protocol=\"http2_tls\",route=\"users\",code=\"200\"}"), 2);
    cr_expect_eq(metric(&ts, "ringd_requests_processed_total{protocol=\"http1_tls\",route=\"user\",code=\"200\"}"), 1);
    cr_expect_eq(metric(&ts, "ringd_requests_processed_total{protocol=\"http1\",route=\"users\",code=\"200\"}"), 0,
                 "TLS requests are not counted as cleartext");
    cr_expect_geq(metric(&ts, "ringd_tls_handshakes_total{result=\"ok\",resumed=\"false\",version=\"TLSv1.3\"}"), 4);
    finish(&ts);
}

Test(tls, s_client_alpn_each_protocol)
{
    need("openssl");
    launch(&ts, "1", NULL);
    static const struct {
        const char *offer, *want;
    } cases[] = {
        {"-alpn h2", "ALPN protocol: h2"},
        {"-alpn http/1.1", "ALPN protocol: http/1.1"},
        {"-alpn http/1.1,h2", "ALPN protocol: h2"}, /* the server's preference */
        {"-alpn spdy/3", "No ALPN negotiated"},     /* no overlap: carry on, HTTP/1.1 */
        {"", "No ALPN negotiated"},
        {"-tls1_2 -alpn h2", "ALPN protocol: h2"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char cmd[512], out[32768];
        snprintf(cmd, sizeof(cmd), "openssl s_client -connect 127.0.0.1:%d %s </dev/null 2>&1", ts.tls_port, cases[i].offer);
        capture(cmd, out, sizeof(out));
        cr_expect_not_null(strstr(out, cases[i].want), "%s: want '%s' in:\n%s", cases[i].offer, cases[i].want, out);
    }
    /* TLS 1.1 is refused, and counted. */
    char cmd[512], out[32768];
    snprintf(cmd, sizeof(cmd), "openssl s_client -connect 127.0.0.1:%d -tls1_1 -cipher DEFAULT@SECLEVEL=0 </dev/null 2>&1",
             ts.tls_port);
    capture(cmd, out, sizeof(out));
    cr_expect_not_null(strstr(out, "alert protocol version"), "TLS 1.1 refused:\n%s", out);
    cr_expect_geq(metric(&ts, "ringd_tls_handshake_errors_total{reason=\"version\"}"), 1);
    finish(&ts);
}

/* s_client -sess_out then -sess_in on new connections: with two shards the
 * kernel spreads them, and every attempt must report Reused. */
static void resume_attempts(int port_out, int port_in, const char *version, int attempts)
{
    char sess[400];
    snprintf(sess, sizeof(sess), "%s/sess.pem", certdir);
    for (int i = 0; i < attempts; i++) {
        char cmd[1024], out[32768];
        /* The TLS 1.3 ticket comes after the handshake: keep stdin open a moment so s_client reads it. */
        snprintf(cmd, sizeof(cmd), "(sleep 0.3) | openssl s_client -connect 127.0.0.1:%d %s -sess_out %s 2>&1", port_out, version,
                 sess);
        capture(cmd, out, sizeof(out));
        cr_assert_not_null(strstr(out, "\nNew, "), "first connection: %s", out);
        snprintf(cmd, sizeof(cmd), "(sleep 0.3) | openssl s_client -connect 127.0.0.1:%d %s -sess_in %s 2>&1", port_in, version,
                 sess);
        capture(cmd, out, sizeof(out));
        cr_assert_not_null(strstr(out, "\nReused, "), "attempt %d (%s) not resumed:\n%s", i, version, out);
    }
}

Test(tls, resumption_across_shards)
{
    need("openssl");
    launch(&ts, "2", NULL);
    resume_attempts(ts.tls_port, ts.tls_port, "", 6);
    resume_attempts(ts.tls_port, ts.tls_port, "-tls1_2", 4);
    cr_expect_eq(metric(&ts, "ringd_tls_handshakes_total{result=\"ok\",resumed=\"true\",version=\"TLSv1.3\"}"), 6);
    cr_expect_eq(metric(&ts, "ringd_tls_handshakes_total{result=\"ok\",resumed=\"true\",version=\"TLSv1.2\"}"), 4);
    /* Both shards took connections (so resumptions crossed shards too). */
    cr_expect_gt(metric(&ts, "ringd_connections_accepted_total{shard=\"0\"}"), 0);
    cr_expect_gt(metric(&ts, "ringd_connections_accepted_total{shard=\"1\"}"), 0);
    finish(&ts);
}

/* Two instances behind a load balancer: the same --tls-ticket-key-file, so a
 * session from one resumes on the other; a third with other keys refuses it. */
Test(tls, ticket_key_file_shared_across_instances)
{
    need("openssl");
    char keyfile[400], other[400], cmd[2048];
    snprintf(keyfile, sizeof(keyfile), "%s/ticket.key", certdir);
    snprintf(other, sizeof(other), "%s/other.key", certdir);
    snprintf(cmd, sizeof(cmd), "openssl rand 80 > %s && openssl rand 80 > %s && openssl rand 80 >> %s", other, keyfile, keyfile);
    cr_assert_eq(ts_sh(cmd), 0);
    const char *extra[] = {"--tls-ticket-key-file", keyfile, NULL};
    launch(&ts, "1", extra);
    launch(&ts2, "1", extra);
    resume_attempts(ts.tls_port, ts2.tls_port, "", 2);
    resume_attempts(ts2.tls_port, ts.tls_port, "-tls1_2", 2);
    cr_assert(ts_log_contains(&ts, "msg=tls_ticket_keys source="), "key source logged");
    finish(&ts2);

    const char *extra2[] = {"--tls-ticket-key-file", other, NULL};
    launch(&ts2, "1", extra2);
    char sess[400], out[32768];
    snprintf(sess, sizeof(sess), "%s/sess.pem", certdir);
    snprintf(cmd, sizeof(cmd), "(sleep 0.3) | openssl s_client -connect 127.0.0.1:%d -sess_in %s 2>&1", ts2.tls_port, sess);
    capture(cmd, out, sizeof(out));
    cr_expect_not_null(strstr(out, "\nNew, "), "other keys: a full handshake:\n%s", out);
    finish(&ts2);
    finish(&ts);
}

Test(tls, bad_ticket_key_file_is_a_startup_error)
{
    char keyfile[400], cmd[600];
    snprintf(keyfile, sizeof(keyfile), "%s/short.key", certdir);
    snprintf(cmd, sizeof(cmd), "openssl rand 79 > %s", keyfile);
    cr_assert_eq(ts_sh(cmd), 0);
    cr_assert_eq(ts_prepare(&ts, 10), 0);
    const char *args[] = {"--tls-listen",          "127.0.0.1:0", "--tls-cert", crt, "--tls-key", key,
                          "--tls-ticket-key-file", keyfile,       NULL};
    cr_assert_neq(ts_start(&ts, args), 0, "refused");
    cr_assert(ts_log_contains(&ts, "msg=tls_setup_failed"), "says why");
    cr_assert(ts_log_contains(&ts, "79 bytes"), "names the size");
}

Test(tls, sighup_reloads_the_certificate)
{
    need("openssl");
    launch(&ts, "2", NULL);
    char cn[64];
    presented_cn(ts.tls_port, cn, sizeof(cn));
    cr_assert_str_eq(cn, "ringd-a");

    /* A connection opened before the reload keeps working after it. */
    struct tc old;
    cr_assert_eq(tc_connect(&old, ts.tls_port, "\x08http/1.1", 0, false), 0);
    char resp[8192];
    const char *req = "GET /users/3 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    cr_assert_eq(tc_request(&old, req, resp, sizeof(resp)), 200);

    /* New certificate and key in place, SIGHUP. */
    cr_assert_eq(tc_make_cert(certdir, "b", "ringd-b", "rsa"), 0);
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "cp %s/b.crt %s && cp %s/b.key %s", certdir, crt, certdir, key);
    cr_assert_eq(ts_sh(cmd), 0);
    kill(ts.pid, SIGHUP);
    for (int i = 0; i < 200 && !ts_log_contains(&ts, "msg=tls_reloaded"); i++)
        usleep(10000);
    cr_assert(ts_log_contains(&ts, "msg=tls_reloaded"), "reload logged");
    cr_assert(ts_log_contains(&ts, "subject=\"/CN=ringd-b\""), "new certificate logged");
    for (int i = 0; i < 4; i++) { /* whichever shard takes it */
        presented_cn(ts.tls_port, cn, sizeof(cn));
        cr_expect_str_eq(cn, "ringd-b", "a new connection sees the new certificate");
    }
    cr_assert_eq(tc_request(&old, req, resp, sizeof(resp)), 200, "the open connection keeps working");

    /* A broken key: the reload fails, says why, and the current certificate stays. */
    snprintf(cmd, sizeof(cmd), "echo broken > %s", key);
    cr_assert_eq(ts_sh(cmd), 0);
    kill(ts.pid, SIGHUP);
    for (int i = 0; i < 200 && !ts_log_contains(&ts, "msg=tls_reload_failed"); i++)
        usleep(10000);
    cr_assert(ts_log_contains(&ts, "msg=tls_reload_failed"), "failure logged");
    presented_cn(ts.tls_port, cn, sizeof(cn));
    cr_expect_str_eq(cn, "ringd-b", "a bad file keeps the old context");
    /* A key that does not match the certificate: refused too. */
    snprintf(cmd, sizeof(cmd), "cp %s/a.key %s", certdir, key);
    cr_assert_eq(ts_sh(cmd), 0);
    kill(ts.pid, SIGHUP);
    usleep(300000);
    presented_cn(ts.tls_port, cn, sizeof(cn));
    cr_expect_str_eq(cn, "ringd-b", "a mismatched key keeps the old context");
    cr_assert(ts_log_contains(&ts, "does not match certificate"), "mismatch logged");

    cr_assert_eq(tc_request(&old, req, resp, sizeof(resp)), 200, "still working");
    tc_close(&old);
    struct ts_response r;
    cr_assert_eq(ts_get(ts.port, "/readyz", NULL, &r), 0);
    cr_expect_eq(r.status, 200, "readiness never flickers");
    cr_expect_eq(metric(&ts, "ringd_tls_reloads_total{result=\"ok\"}"), 1);
    cr_expect_eq(metric(&ts, "ringd_tls_reloads_total{result=\"error\"}"), 2);
    finish(&ts);
}

Test(tls, h2load_over_tls_no_failures)
{
    need("h2load");
    launch(&ts, "2", NULL);
    char cmd[512], out[16384];
    snprintf(cmd, sizeof(cmd), "h2load -n 20000 -c 16 -m 10 https://127.0.0.1:%d/users/9 2>&1", ts.tls_port);
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0, "h2load: %s", out);
    cr_assert_not_null(strstr(out, "20000 succeeded, 0 failed, 0 errored"), "%s", out);
    cr_assert_not_null(strstr(out, "Application protocol: h2"), "%s", out);
    snprintf(cmd, sizeof(cmd), "h2load --h1 -n 5000 -c 16 https://127.0.0.1:%d/users/9 2>&1", ts.tls_port);
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0, "h2load: %s", out);
    cr_assert_not_null(strstr(out, "5000 succeeded, 0 failed, 0 errored"), "%s", out);
    /* A new connection per request: handshakes, resumed from the first one's ticket. */
    snprintf(cmd, sizeof(cmd), "h2load --h1 -n 500 -c 8 -H 'Connection: close' https://127.0.0.1:%d/users/9 2>&1", ts.tls_port);
    cr_assert_eq(capture(cmd, out, sizeof(out)), 0, "h2load: %s", out);
    cr_assert_not_null(strstr(out, "500 succeeded, 0 failed, 0 errored"), "%s", out);
    cr_expect_geq(metric(&ts, "ringd_requests_processed_total{protocol=\"http2_tls\",route=\"users\",code=\"200\"}"), 20000);
    cr_expect_geq(metric(&ts, "ringd_tls_close_notify_sent_total"), 500);
    finish(&ts);
}

Test(tls, graceful_close_sends_close_notify)
{
    launch(&ts, "1", NULL);
    struct tc t;
    char resp[8192];
    cr_assert_eq(tc_connect(&t, ts.tls_port, NULL, 0, false), 0);
    cr_assert_eq(tc_request(&t, "GET /users/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp, sizeof(resp)), 200);
    cr_expect(tc_wait_close_notify(&t), "close_notify before the close");
    tc_close(&t);

    /* The idle timeout closes gracefully too. */
    finish(&ts);
    const char *extra[] = {"--idle-timeout-ms", "200", NULL};
    launch(&ts, "1", extra);
    cr_assert_eq(tc_connect(&t, ts.tls_port, NULL, 0, false), 0);
    cr_assert_eq(tc_request(&t, "GET /users/2 HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp)), 200);
    cr_expect(tc_wait_close_notify(&t), "close_notify on the idle timeout");
    tc_close(&t);

    /* A client that goes away without close_notify is counted, not an error. */
    cr_assert_eq(tc_connect(&t, ts.tls_port, NULL, 0, false), 0);
    cr_assert_eq(tc_request(&t, "GET /users/2 HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp)), 200);
    tc_close(&t);
    usleep(200000);
    cr_expect_geq(metric(&ts, "ringd_tls_eof_without_close_notify_total"), 1);
    cr_expect(!ts_log_contains(&ts, "level=error"), "nothing logged as an error");
    finish(&ts);
}

Test(tls, listen_none_serves_tls_only)
{
    const char *extra[] = {"--listen", "none", "--admin-listen", "127.0.0.1:0", NULL};
    launch(&ts, "1", extra);
    cr_expect_eq(ts.port, 0, "no cleartext port");
    cr_assert(ts_log_contains(&ts, "msg=listening addr=none tls=127.0.0.1:"), "listening line");
    struct tc t;
    char resp[8192];
    cr_assert_eq(tc_connect(&t, ts.tls_port, "\x02h2\x08http/1.1", 0, false), 0);
    char alpn[32];
    cr_expect_str_eq(tc_alpn(&t, alpn, sizeof(alpn)), "h2");
    tc_close(&t);
    cr_assert_eq(tc_connect(&t, ts.tls_port, NULL, 0, false), 0);
    cr_assert_eq(tc_request(&t, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp)), 200);
    tc_close(&t);
    cr_expect(ts_log_contains(&ts, "msg=ktls_probe available="), "kTLS probe logged once");
    cr_expect_eq(metric(&ts, "ringd_tls_ktls_available") >= 0, 1);
    finish(&ts);
}

Test(tls, startup_checks)
{
    cr_assert_eq(ts_prepare(&ts, 10), 0);
    char cmd[4096];
    /* Flag errors: exit 2 with the reason. */
    static const char *const bad[] = {
        "--tls-listen 127.0.0.1:0",
        "--tls-cert /nonexistent",
        "--listen none",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(cmd, sizeof(cmd), "%s serve --db %s %s >/dev/null 2>&1", RINGD_BIN, ts.db, bad[i]);
        cr_expect_eq(ts_sh(cmd), 2, "%s", bad[i]);
    }
    /* Bad files: exit 1, the log says which. */
    snprintf(cmd, sizeof(cmd),
             "%s serve --db %s --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0 --tls-cert %s --tls-key %s/missing.key "
             ">%s/bad.log 2>&1",
             RINGD_BIN, ts.db, crt, certdir, certdir);
    cr_expect_eq(ts_sh(cmd), 1);
    snprintf(cmd, sizeof(cmd), "grep -q 'msg=tls_setup_failed.*missing.key' %s/bad.log", certdir);
    cr_expect_eq(ts_sh(cmd), 0, "names the key file");
    cr_assert_eq(tc_make_cert(certdir, "c", "ringd-c", "ec"), 0);
    snprintf(cmd, sizeof(cmd),
             "%s serve --db %s --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0 --tls-cert %s --tls-key %s/c.key "
             ">%s/bad.log 2>&1",
             RINGD_BIN, ts.db, crt, certdir, certdir);
    cr_expect_eq(ts_sh(cmd), 1);
    snprintf(cmd, sizeof(cmd), "grep -q 'does not match' %s/bad.log", certdir);
    cr_expect_eq(ts_sh(cmd), 0, "key mismatch named");
    /* Environment equivalents. */
    snprintf(cmd, sizeof(cmd),
             "RINGD_TLS_LISTEN=127.0.0.1:0 RINGD_TLS_CERT=%s RINGD_TLS_KEY=%s timeout -s TERM 3 %s serve --db %s "
             "--listen none >%s/env.log 2>&1; grep -q 'msg=listening addr=none tls=' %s/env.log",
             crt, key, RINGD_BIN, ts.db, certdir, certdir);
    cr_expect_eq(ts_sh(cmd), 0, "RINGD_TLS_* honoured");
}
