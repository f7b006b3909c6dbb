/* tlsclient.c - test support: `openssl req` certificates and a memory-BIO TLS client on a blocking socket. */
#include "tlsclient.h"
#include "server.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int tc_make_cert(const char *dir, const char *name, const char *cn, const char *keyspec)
{
    char cmd[1024];
    const char *newkey = strcmp(keyspec, "rsa") == 0 ? "-newkey rsa:2048" : "-newkey ec -pkeyopt ec_paramgen_curve:P-256";
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 %s -nodes -keyout %s/%s.key -out %s/%s.crt -days 2 -subj /CN=%s "
             "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1",
             newkey, dir, name, dir, name, cn);
    return ts_sh(cmd) == 0 ? 0 : -1;
}

/* Sends what the SSL wrote; bytewise: one byte per send. Returns 0 or -1. */
static int flush_out(struct tc *t, bool bytewise)
{
    char buf[16384];
    int n;
    while ((n = BIO_read(t->wbio, buf, sizeof(buf))) > 0) {
        if (!bytewise) {
            if (ts_send_all(t->fd, buf, (size_t)n) != 0)
                return -1;
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (ts_send_all(t->fd, buf + i, 1) != 0)
                return -1;
            usleep(1000);
        }
    }
    return 0;
}

/* Reads once from the socket into the SSL. Returns bytes read, 0 on EOF, -1 on error/timeout. */
static int fill_in(struct tc *t)
{
    char buf[16384];
    ssize_t n;
    do
        n = recv(t->fd, buf, sizeof(buf), 0);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        BIO_write(t->rbio, buf, (int)n);
    return (int)n;
}

int tc_connect(struct tc *t, int port, const char *alpn, int max_version, bool bytewise)
{
    memset(t, 0, sizeof(*t));
    t->fd = ts_connect(port);
    if (t->fd < 0)
        return -1;
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (max_version != 0) {
        SSL_CTX_set_min_proto_version(t->ctx, 0);
        SSL_CTX_set_max_proto_version(t->ctx, max_version);
        SSL_CTX_set_security_level(t->ctx, 0); /* let old versions be offered, to be refused by the server */
    }
    t->ssl = SSL_new(t->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_connect_state(t->ssl);
    SSL_set_tlsext_host_name(t->ssl, "localhost");
    if (alpn != NULL)
        SSL_set_alpn_protos(t->ssl, (const unsigned char *)alpn, (unsigned)strlen(alpn));
    bool first = true;
    for (;;) {
        int rc = SSL_do_handshake(t->ssl);
        if (flush_out(t, bytewise && first) != 0)
            break;
        first = false;
        if (rc == 1)
            return 0;
        if (SSL_get_error(t->ssl, rc) != SSL_ERROR_WANT_READ || fill_in(t) <= 0)
            break;
    }
    ERR_clear_error();
    tc_close(t);
    return -1;
}

int tc_request(struct tc *t, const char *raw, char *out, size_t cap)
{
    if (SSL_write(t->ssl, raw, (int)strlen(raw)) <= 0 || flush_out(t, false) != 0)
        return -1;
    size_t len = 0;
    out[0] = '\0';
    for (;;) {
        int n = SSL_read(t->ssl, out + len, (int)(cap - 1 - len));
        if (n > 0) {
            len += (size_t)n;
            out[len] = '\0';
            char *end = strstr(out, "\r\n\r\n");
            const char *cl = strstr(out, "Content-Length: ");
            if (end != NULL && cl != NULL && cl < end) {
                size_t want = (size_t)(end - out) + 4 + strtoul(cl + 16, NULL, 10);
                if (len >= want)
                    break;
            }
            if (len + 1 >= cap)
                return -1;
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        flush_out(t, false); /* e.g. a key update */
        if (e != SSL_ERROR_WANT_READ || fill_in(t) <= 0) {
            ERR_clear_error();
            return -1;
        }
    }
    int status = 0;
    sscanf(out, "HTTP/1.%*d %d", &status);
    return status;
}

bool tc_wait_close_notify(struct tc *t)
{
    char buf[4096];
    for (;;) {
        int n = SSL_read(t->ssl, buf, sizeof(buf));
        if (n > 0)
            continue;
        int e = SSL_get_error(t->ssl, n);
        if (e == SSL_ERROR_ZERO_RETURN) {
            t->peer_closed = true;
            return true;
        }
        if (e != SSL_ERROR_WANT_READ || fill_in(t) <= 0) {
            ERR_clear_error();
            return false;
        }
    }
}

const char *tc_alpn(struct tc *t, char *out, size_t cap)
{
    const unsigned char *p;
    unsigned len;
    SSL_get0_alpn_selected(t->ssl, &p, &len);
    snprintf(out, cap, "%.*s", (int)len, (const char *)p);
    return out;
}

void tc_close(struct tc *t)
{
    if (t->ssl != NULL)
        SSL_free(t->ssl); /* frees both BIOs */
    if (t->ctx != NULL)
        SSL_CTX_free(t->ctx);
    if (t->fd >= 0)
        close(t->fd);
    t->ssl = NULL;
    t->ctx = NULL;
    t->fd = -1;
}
