/* test_tls_engine.c - net/tls.c without sockets: a tls_conn and an OpenSSL client exchange bytes in memory. The
 * handshake (whole and one byte at a time), ALPN, records both ways, close_notify, resumption from one shard's
 * ticket on another, and the reload contract: a replaced context is freed only once every shard moved on, and a
 * shard that has not synced still hands out the old certificate. */
#include <criterion/criterion.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "net/tls.h"
#include "tests/support/tlsclient.h"
#include "tests/support/tmpdir.h"

/* A shell command's exit status (no server is started here: a unit test). */
static int sh_run(const char *cmd)
{
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char dir[256], crt[320], key[320];
static struct tls_server *srv;
static struct tls_shard *sh[2];

static void setup(void)
{
    ts_mkdtemp(dir, sizeof(dir), "tlsengine");
    cr_assert_eq(tc_make_cert(dir, "a", "engine-a", "ec"), 0);
    cr_assert_eq(tc_make_cert(dir, "b", "engine-b", "rsa"), 0);
    snprintf(crt, sizeof(crt), "%s/server.crt", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cp %s/a.crt %s && cp %s/a.key %s", dir, crt, dir, key);
    cr_assert_eq(sh_run(cmd), 0);
    struct tls_config cfg = {.cert_file = crt, .key_file = key, .ticket_key_file = NULL, .nshards = 2};
    char err[512];
    srv = tls_server_new(&cfg, err, sizeof(err));
    cr_assert_not_null(srv, "%s", err);
    sh[0] = tls_shard_new(srv, 0);
    sh[1] = tls_shard_new(srv, 1);
}

static void teardown(void)
{
    if (sh[0] != NULL)
        tls_shard_free(sh[0]);
    if (sh[1] != NULL)
        tls_shard_free(sh[1]);
    tls_server_free(srv);
    ts_rmtree(dir);
}

/* A client over memory BIOs. */
struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio, *wbio;
};

static void client_new(struct client *cl, const char *alpn, SSL_SESSION *resume)
{
    cl->ctx = SSL_CTX_new(TLS_client_method());
    cl->ssl = SSL_new(cl->ctx);
    cl->rbio = BIO_new(BIO_s_mem());
    cl->wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(cl->ssl, cl->rbio, cl->wbio);
    SSL_set_connect_state(cl->ssl);
    if (alpn != NULL)
        SSL_set_alpn_protos(cl->ssl, (const unsigned char *)alpn, (unsigned)strlen(alpn));
    if (resume != NULL)
        SSL_set_session(cl->ssl, resume);
}

static void client_free(struct client *cl)
{
    /* A client SSL freed without a shutdown marks its session not resumable. */
    SSL_shutdown(cl->ssl);
    SSL_free(cl->ssl);
    SSL_CTX_free(cl->ctx);
}

/* Moves the server's wire bytes to the client. */
static void to_client(struct tls_conn *t, struct client *cl)
{
    struct buf *w = tls_conn_wire(t);
    if (w->len > 0)
        BIO_write(cl->rbio, w->data, (int)w->len);
    w->len = 0;
}

/* Feeds the client's output to the server, in pieces of at most step bytes
 * (the input window lives for one call, as a recv buffer does). Returns the
 * handshake state after the last piece. */
static enum tls_hs to_server(struct client *cl, struct tls_conn *t, size_t step)
{
    char buf[32768];
    int n = BIO_read(cl->wbio, buf, sizeof(buf));
    enum tls_hs hs = tls_conn_established(t) ? TLS_HS_DONE : TLS_HS_MORE;
    for (int off = 0; off < n; off += (int)step) {
        size_t len = (size_t)(n - off) < step ? (size_t)(n - off) : step;
        tls_conn_input(t, buf + off, len);
        if (!tls_conn_established(t))
            hs = tls_conn_handshake(t);
        if (hs == TLS_HS_FAILED)
            return hs;
    }
    return hs;
}

/* Runs the handshake to completion on both sides. */
static void handshake(struct client *cl, struct tls_conn *t, size_t step)
{
    for (int round = 0; round < 10; round++) {
        int rc = SSL_do_handshake(cl->ssl);
        enum tls_hs hs = to_server(cl, t, step);
        cr_assert_neq(hs, TLS_HS_FAILED, "server handshake failed (reason %d)", tls_conn_error(t));
        to_client(t, cl);
        if (rc == 1 && hs == TLS_HS_DONE)
            return;
    }
    cr_assert_fail("handshake did not complete");
}

/* The CN of the certificate the client was shown. */
static void peer_cn(struct client *cl, char *out, size_t cap)
{
    X509 *x = SSL_get1_peer_certificate(cl->ssl);
    cr_assert_not_null(x);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)cap);
    X509_free(x);
}

TestSuite(tls_engine, .init = setup, .fini = teardown);

Test(tls_engine, handshake_alpn_records_and_close_notify)
{
    static const size_t steps[] = {65536, 1}; /* whole flights, then one byte per "recv" */
    for (size_t k = 0; k < 2; k++) {
        struct client cl;
        client_new(&cl, "\x08http/1.1\x02h2", NULL);
        struct tls_conn *t = tls_conn_new(sh[0]);
        handshake(&cl, t, steps[k]);
        cr_assert(tls_conn_alpn_h2(t), "h2 preferred by the server");
        cr_assert_eq(tls_conn_version(t), TLS_V13);
        cr_assert_not(tls_conn_resumed(t));

        /* Client to server: a request, decrypted record by record. */
        const char req[] = "GET /users/1 HTTP/1.1\r\nHost: x\r\n\r\n";
        cr_assert_gt(SSL_write(cl.ssl, req, sizeof(req) - 1), 0);
        char buf[32768];
        int n = BIO_read(cl.wbio, buf, sizeof(buf));
        cr_assert_gt(n, 0);
        char plain[TLS_RECORD_MAX];
        size_t got = 0;
        for (int off = 0; off < n; off += (int)steps[k]) {
            size_t len = (size_t)(n - off) < steps[k] ? (size_t)(n - off) : steps[k];
            tls_conn_input(t, buf + off, len);
            ssize_t r;
            while ((r = tls_conn_read(t, plain + got, sizeof(plain) - got)) > 0)
                got += (size_t)r;
            cr_assert_eq(r, TLS_READ_MORE);
        }
        cr_assert_eq(got, sizeof(req) - 1);
        cr_assert(memcmp(plain, req, got) == 0);

        /* Server to client: one write, read back. */
        const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        cr_assert_eq(tls_conn_write(t, resp, sizeof(resp) - 1), 0);
        to_client(t, &cl);
        n = SSL_read(cl.ssl, buf, sizeof(buf));
        cr_assert_eq(n, (int)sizeof(resp) - 1);

        /* close_notify once, and the client sees it. */
        cr_assert(tls_conn_owes_close_notify(t));
        cr_assert(tls_conn_close_notify(t));
        cr_assert_not(tls_conn_close_notify(t), "only once");
        to_client(t, &cl);
        n = SSL_read(cl.ssl, buf, sizeof(buf));
        cr_assert_eq(SSL_get_error(cl.ssl, n), SSL_ERROR_ZERO_RETURN);
        tls_conn_free(t);
        client_free(&cl);
    }
}

Test(tls_engine, client_close_notify_and_garbage)
{
    struct client cl;
    client_new(&cl, NULL, NULL);
    struct tls_conn *t = tls_conn_new(sh[1]);
    handshake(&cl, t, 65536);
    cr_assert_not(tls_conn_alpn_h2(t), "no ALPN: HTTP/1.1");
    SSL_shutdown(cl.ssl);
    char buf[4096], plain[TLS_RECORD_MAX];
    int n = BIO_read(cl.wbio, buf, sizeof(buf));
    tls_conn_input(t, buf, (size_t)n);
    cr_assert_eq(tls_conn_read(t, plain, sizeof(plain)), TLS_READ_CLOSED);
    cr_assert(tls_conn_peer_closed(t));
    tls_conn_free(t);
    client_free(&cl);

    t = tls_conn_new(sh[1]);
    tls_conn_input(t, "GET / HTTP/1.1\r\n", 16);
    cr_assert_eq(tls_conn_handshake(t), TLS_HS_FAILED);
    cr_assert_eq(tls_conn_error(t), TLS_ERR_HTTP);
    cr_assert_not(tls_conn_owes_close_notify(t));
    tls_conn_free(t);
    t = tls_conn_new(sh[1]);
    tls_conn_input(t, "\x01\x02\x03", 3);
    cr_assert_eq(tls_conn_handshake(t), TLS_HS_FAILED);
    cr_assert_eq(tls_conn_error(t), TLS_ERR_NOT_TLS);
    tls_conn_free(t);
}

Test(tls_engine, ticket_from_one_shard_resumes_on_the_other)
{
    struct client cl;
    client_new(&cl, NULL, NULL);
    struct tls_conn *t = tls_conn_new(sh[0]);
    handshake(&cl, t, 65536);
    /* The TLS 1.3 ticket came with the server's last flight: the client takes it on its next read. */
    char buf[64];
    SSL_read(cl.ssl, buf, sizeof(buf));
    SSL_SESSION *sess = SSL_get1_session(cl.ssl);
    cr_assert(SSL_SESSION_is_resumable(sess), "one ticket issued");
    tls_conn_free(t);
    client_free(&cl);

    client_new(&cl, NULL, sess);
    t = tls_conn_new(sh[1]);
    handshake(&cl, t, 65536);
    cr_assert(tls_conn_resumed(t), "resumed on the other shard");
    cr_assert(SSL_session_reused(cl.ssl));
    tls_conn_free(t);
    client_free(&cl);
    SSL_SESSION_free(sess);
}

Test(tls_engine, reload_frees_the_old_context_only_after_every_shard_moved_on)
{
    cr_assert_geq(tls_server_maintain(srv), 1001, "nothing waits to be freed");
    char cmd[2048], cn[64];
    snprintf(cmd, sizeof(cmd), "cp %s/b.crt %s && cp %s/b.key %s", dir, crt, dir, key);
    cr_assert_eq(sh_run(cmd), 0);
    cr_assert_eq(tls_server_reload(srv), 0);

    /* Shard 1 has not synced: it still uses (and keeps alive) the old context. */
    tls_shard_sync(sh[0]);
    cr_assert_eq(tls_server_maintain(srv), 1000, "the old context waits for shard 1");
    struct client cl;
    client_new(&cl, NULL, NULL);
    struct tls_conn *old = tls_conn_new(sh[1]);
    handshake(&cl, old, 65536);
    peer_cn(&cl, cn, sizeof(cn));
    cr_assert_str_eq(cn, "engine-a");
    client_free(&cl);

    tls_shard_sync(sh[1]);
    cr_assert_geq(tls_server_maintain(srv), 1001, "freed once both shards moved on");
    /* The connection made on the old context still works: its SSL holds that context. */
    cr_assert_eq(tls_conn_write(old, "x", 1), 0);
    tls_conn_free(old);

    client_new(&cl, NULL, NULL);
    struct tls_conn *t = tls_conn_new(sh[1]);
    handshake(&cl, t, 65536);
    peer_cn(&cl, cn, sizeof(cn));
    cr_assert_str_eq(cn, "engine-b");
    tls_conn_free(t);
    client_free(&cl);

    /* A broken key: refused, the current context stays, nothing to free. */
    snprintf(cmd, sizeof(cmd), "echo broken > %s", key);
    cr_assert_eq(sh_run(cmd), 0);
    cr_assert_eq(tls_server_reload(srv), -1);
    cr_assert_geq(tls_server_maintain(srv), 1001);
    struct tls_stats st;
    tls_server_stats(srv, &st);
    cr_assert_eq(st.reloads_ok, 1);
    cr_assert_eq(st.reloads_failed, 1);
    cr_assert_gt(st.cert_not_after, 0);
}
