/* tlsclient.h - test support: certificates made with `openssl req`, and a TLS client (OpenSSL over memory BIOs
 * on a blocking socket) that can send its first flight one byte per send and keep a connection open across calls. */
#ifndef RINGD_TEST_TLSCLIENT_H
#define RINGD_TEST_TLSCLIENT_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

/* Makes DIR/NAME.crt and DIR/NAME.key: a self-signed certificate for CN=cn (SAN localhost, 127.0.0.1), valid
 * two days; keyspec is "ec" (P-256) or "rsa" (2048 bits). Returns 0 or -1. */
int tc_make_cert(const char *dir, const char *name, const char *cn, const char *keyspec);

struct tc {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio, *wbio; /* memory BIOs: what came from the socket, what goes to it */
    bool peer_closed; /* the server's close_notify arrived */
};

/* Connects to 127.0.0.1:port and completes a TLS handshake. alpn: wire format ("\x02h2") or NULL (no ALPN);
 * max_version: 0 or TLS1_2_VERSION / TLS1_1_VERSION ...; bytewise: the ClientHello goes out one byte per send
 * (1 ms apart), so the server sees it in many reads. Returns 0, or -1 (t is cleaned up). */
int tc_connect(struct tc *t, int port, const char *alpn, int max_version, bool bytewise);

/* Sends raw plaintext (a whole request) and reads one HTTP/1.1 response (Content-Length framed) into out
 * (NUL-terminated). Returns the status code, or -1 on error/EOF. */
int tc_request(struct tc *t, const char *raw, char *out, size_t cap);

/* Reads until the server closes; returns true if its close_notify came first (then EOF), false on a bare
 * EOF, a reset or a 10 s timeout. */
bool tc_wait_close_notify(struct tc *t);

/* The selected ALPN protocol ("" when none), the negotiated version ("TLSv1.3"). */
const char *tc_alpn(struct tc *t, char *out, size_t cap);

void tc_close(struct tc *t);

#endif
