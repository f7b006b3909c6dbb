/* test_tls_malformed.c - what a TLS port gets that is not a well-behaved TLS client: garbage instead of a
 * ClientHello, a ClientHello one byte per read, a handshake that stalls, a broken handshake record, plain HTTP.
 * Each gets a clean close (plain HTTP a readable 400), is counted by reason, and never disturbs a bystander
 * connection that keeps making requests on the same shard. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/server.h"
#include "tests/support/tlsclient.h"
#include "tests/support/tmpdir.h"

static struct test_server ts;
static char certdir[256], crt[320], key[320];
static struct tc bystander;

static const char *const REQ = "GET /users/4 HTTP/1.1\r\nHost: localhost\r\n\r\n";

static void setup(void)
{
    ts_mkdtemp(certdir, sizeof(certdir), "tlsbad");
    cr_assert_eq(tc_make_cert(certdir, "s", "ringd-s", "ec"), 0);
    snprintf(crt, sizeof(crt), "%s/s.crt", certdir);
    snprintf(key, sizeof(key), "%s/s.key", certdir);
    const char *args[] = {"--tls-listen", "127.0.0.1:0", "--tls-cert",          crt,    "--tls-key", key,
                          "--shards",     "1",           "--header-timeout-ms", "1500", NULL};
    cr_assert_eq(ts_launch(&ts, 100, args), 0);
    /* A client on the same (only) shard, in the middle of its keep-alive connection. */
    cr_assert_eq(tc_connect(&bystander, ts.tls_port, NULL, 0, false), 0);
    char resp[4096];
    cr_assert_eq(tc_request(&bystander, REQ, resp, sizeof(resp)), 200);
}

static void teardown(void)
{
    tc_close(&bystander);
    ts_stop(&ts);
    ts_rmtree(certdir);
}

/* The bystander still gets answers. */
static void bystander_ok(void)
{
    char resp[4096];
    cr_assert_eq(tc_request(&bystander, REQ, resp, sizeof(resp)), 200, "the other connection is undisturbed");
}

/* Reads everything until the server closes (within ms); returns the bytes read, -1 when it did not close. */
static ssize_t read_until_closed(int fd, char *out, size_t cap, int ms)
{
    size_t len = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (int waited = 0; waited < ms; waited += 20) {
        if (poll(&p, 1, 20) <= 0)
            continue;
        ssize_t n = recv(fd, out + len, cap - 1 - len, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            out[len] = '\0';
            return (ssize_t)len;
        }
        if (n > 0 && len + (size_t)n < cap - 1)
            len += (size_t)n;
    }
    return -1;
}

static double errors(const char *reason)
{
    char series[128];
    snprintf(series, sizeof(series), "ringd_tls_handshake_errors_total{reason=\"%s\"}", reason);
    return ts_metric(ts.port, series);
}

TestSuite(tls_malformed, .init = setup, .fini = teardown, .timeout = 120);

Test(tls_malformed, garbage_instead_of_client_hello)
{
    int fd = ts_connect(ts.tls_port);
    cr_assert_geq(fd, 0);
    char junk[600];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 37 + 1);
    junk[0] = 0x01;
    ts_send_all(fd, junk, sizeof(junk));
    char out[4096];
    ssize_t n = read_until_closed(fd, out, sizeof(out), 3000);
    cr_assert_geq(n, 0, "closed");
    cr_expect_eq(n, 0, "nothing sent back to garbage");
    close(fd);
    cr_expect_eq(errors("not_tls"), 1);
    bystander_ok();
}

Test(tls_malformed, plain_http_gets_a_plain_400)
{
    int fd = ts_connect(ts.tls_port);
    cr_assert_geq(fd, 0);
    ts_send_all(fd, REQ, strlen(REQ));
    char out[4096];
    cr_assert_geq(read_until_closed(fd, out, sizeof(out), 3000), 0, "closed");
    close(fd);
    cr_expect(strncmp(out, "HTTP/1.1 400 Bad Request\r\n", 26) == 0, "plain-text 400: %s", out);
    cr_expect_not_null(strstr(out, "Connection: close\r\n"), "%s", out);
    cr_expect_not_null(strstr(out, "{\"error\":\"bad request\"}"), "%s", out);
    cr_expect_eq(errors("http_request"), 1);
    bystander_ok();
}

Test(tls_malformed, client_hello_one_byte_per_read)
{
    struct tc t;
    cr_assert_eq(tc_connect(&t, ts.tls_port, "\x08http/1.1", 0, true), 0, "handshake over a trickled ClientHello");
    char resp[4096];
    cr_assert_eq(tc_request(&t, REQ, resp, sizeof(resp)), 200);
    tc_close(&t);
    bystander_ok();
}

Test(tls_malformed, stalled_handshake_times_out)
{
    int fd = ts_connect(ts.tls_port);
    cr_assert_geq(fd, 0);
    /* The start of a handshake record, then nothing. */
    const unsigned char head[] = {0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00};
    ts_send_all(fd, head, sizeof(head));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bystander_ok(); /* served while the other handshake hangs */
    char out[4096];
    ssize_t n = read_until_closed(fd, out, sizeof(out), 5000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    close(fd);
    cr_assert_geq(n, 0, "closed by the header timeout");
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_expect(s > 1.0 && s < 3.5, "closed after %.2f s (--header-timeout-ms 1500)", s);
    usleep(100000);
    cr_expect_eq(errors("timeout"), 1);
    /* A connection that says nothing at all is closed the same way. */
    fd = ts_connect(ts.tls_port);
    cr_assert_geq(read_until_closed(fd, out, sizeof(out), 5000), 0, "silent connection closed");
    close(fd);
    bystander_ok();
}

Test(tls_malformed, broken_handshake_record_gets_an_alert)
{
    int fd = ts_connect(ts.tls_port);
    cr_assert_geq(fd, 0);
    /* A handshake record whose message is no ClientHello. */
    const unsigned char rec[] = {0x16, 0x03, 0x01, 0x00, 0x08, 0x63, 0x00, 0x00, 0x04, 'j', 'u', 'n', 'k'};
    ts_send_all(fd, rec, sizeof(rec));
    char out[4096];
    ssize_t n = read_until_closed(fd, out, sizeof(out), 3000);
    close(fd);
    cr_assert_geq(n, 7, "an alert record, then the close");
    cr_expect_eq((unsigned char)out[0], 0x15, "alert record");
    usleep(50000);
    cr_expect_eq(errors("protocol") + errors("not_tls") + errors("version"), 1);
    bystander_ok();
}

Test(tls_malformed, tls11_client_refused)
{
    struct tc t;
    cr_expect_neq(tc_connect(&t, ts.tls_port, NULL, TLS1_1_VERSION, false), 0, "TLS 1.1 refused");
    usleep(50000);
    cr_expect_eq(errors("version"), 1);
    bystander_ok();
}

Test(tls_malformed, http2_preface_in_cleartext_on_tls_port)
{
    int fd = ts_connect(ts.tls_port);
    cr_assert_geq(fd, 0);
    ts_send_all(fd, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    char out[4096];
    cr_assert_geq(read_until_closed(fd, out, sizeof(out), 3000), 0, "closed");
    close(fd);
    cr_expect(strncmp(out, "HTTP/1.1 400", 12) == 0, "%s", out);
    bystander_ok();
}
