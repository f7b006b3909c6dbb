/* conn.c - a connection's bytes in: the transport (plain, or TLS decrypting into plaintext), partial requests
 * kept, HTTP/2 detected (preface, upgrade, ALPN), the rest handed to HTTP/1.1 or HTTP/2; and the bytes out. */
#include "net/conn.h"

#include <string.h>

#include "core/shard.h"
#include "net/h1.h"
#include "net/h1_parser.h"
#include "net/h2.h"
#include "net/response.h"
#include "net/tls.h"

/* Runs the connection's protocol over data[0..len); returns the bytes consumed. */
static size_t process(struct conn *c, const char *data, size_t len)
{
    if (c->proto == CONN_H1 && !c->seen_request && c->h2 == NULL && len > 0 && data[0] == 'P') {
        /* Prior knowledge: the preface opens the connection. Wait for all 24 bytes if they may still be it. */
        size_t n = len < H2_PREFACE_LEN ? len : H2_PREFACE_LEN;
        if (memcmp(data, H2_PREFACE, n) == 0) {
            if (len < H2_PREFACE_LEN)
                return 0;
            if (h2_start(c) != 0) {
                shard_close_conn(c->shard, c, CLOSE_ERROR);
                return len;
            }
        } else if (n >= 4 && memcmp(data, "PRI ", 4) == 0) {
            /* The PRI method exists only to open the preface (RFC 9113 11.6): a broken one is an HTTP/2 error. */
            h2_refuse_preface(c);
            return len;
        }
    }
    if (c->proto == CONN_H2)
        return h2_process(c, data, len);
    size_t used = h1_process(c, data, len);
    if (c->proto == CONN_H2 && used < len) /* upgraded mid-read: the rest is HTTP/2 */
        used += h2_process(c, data + used, len - used);
    return used;
}

/* Whether the bytes added at buf[old..len) may end a request head or push it
 * past a size limit, i.e. whether parsing again can tell anything new. Keeps
 * a head trickled in byte by byte from being re-parsed from the start on every
 * read (quadratic work). The parser's verdict for a prefix is the same as for
 * the whole (h1_parser.c), so deferring the parse never changes the answer. */
static bool head_may_be_complete(const char *buf, size_t old, size_t len)
{
    if ((old <= H1_MAX_REQUEST_LINE + 2 && len > H1_MAX_REQUEST_LINE + 2) || len >= H1_MAX_HEAD)
        return true;
    size_t from = old >= 3 ? old - 3 : 0;
    for (size_t i = from; i + 1 < len; i++)
        if (buf[i] == '\n' && (buf[i + 1] == '\n' || (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')))
            return true;
    return false;
}

/* Drops the first used bytes of c->in. A buffer that grew while parsing was
 * paused is freed once empty, so a connection that caught up holds no input
 * memory between requests. */
static void in_consume(struct conn *c, size_t used)
{
    buf_consume(&c->in, used);
    if (c->in.len == 0 && c->in.cap > CONN_IN_KEEP)
        buf_free(&c->in);
}

/* Plaintext bytes to the protocol. new_head: whether bytes that start a
 * request head restart the header timeout (a TLS connection's first request
 * shares it with the handshake). Inlined into both transports' paths. */
static inline __attribute__((always_inline)) void feed(struct conn *c, const char *data, size_t len, bool new_head)
{
    if (c->close_after_send && c->proto == CONN_H1)
        return; /* the last response is written: lingering, ignore the rest */
    if (c->proto == CONN_H1 && c->in.len == 0 && c->body_left == 0 && new_head)
        c->request_start_ms = c->shard->clock.now_ms; /* a new head starts */
    if (c->in.len == 0 && !c->paused) {
        /* Fast path: parse straight from the provided buffer; copy only a partial tail. */
        size_t used = process(c, data, len);
        if (used < len && !c->_closing)
            buf_append(&c->in, data + used, len - used);
    } else {
        size_t old = c->in.len;
        buf_append(&c->in, data, len);
        if (c->proto == CONN_H1 && c->body_left == 0 && !head_may_be_complete(c->in.data, old, c->in.len))
            return; /* a head trickling in: no re-parse until it can have ended */
        if (!c->paused) {
            size_t used = process(c, c->in.data, c->in.len);
            in_consume(c, used);
        }
    }
    if (!c->_closing && c->in.len > CONN_IN_MAX)
        shard_close_conn(c->shard, c, CLOSE_ERROR);
}

static void tls_on_data(struct conn *c, const char *data, size_t len);
static void tls_release(struct conn *c);

void conn_on_data(struct conn *c, const char *data, size_t len)
{
    if (c->_closing)
        return;
    if (c->tls != NULL) {
        tls_on_data(c, data, len);
        return;
    }
    feed(c, data, len, true);
}

uint64_t conn_user_hint(const struct conn *c, const char *data, size_t len)
{
    /* Only a request that starts these bytes: the common case, and certain.
     * TLS ciphertext needs no test: every record starts with a content type
     * byte (20..24), never "GET ", so the hint is 0 for it. */
    if (c->proto != CONN_H1 || c->in.len != 0 || c->body_left != 0 || c->_closing || c->paused)
        return 0;
    return h1_user_hint(data, len);
}

void conn_resume(struct conn *c)
{
    if (!c->paused || c->_closing)
        return;
    c->paused = false;
    if (c->in.len == 0)
        return;
    if (c->tls != NULL)
        shard_count_tls(c->shard, true);
    size_t used = process(c, c->in.data, c->in.len);
    if (c->tls != NULL)
        shard_count_tls(c->shard, false);
    in_consume(c, used);
}

bool conn_is_idle(const struct conn *c)
{
    if (c->in.len != 0 || c->body_left != 0 || c->out.len != 0 || c->_send_inflight)
        return false;
    if (c->tls != NULL && c->close_after_send && tls_conn_owes_close_notify(c->tls))
        return false; /* a close_notify still has to go out */
    return c->proto == CONN_H1 || h2_idle(c);
}

void conn_begin_drain(struct conn *c)
{
    if (c->proto == CONN_H2) {
        h2_drain(c);
        return;
    }
    /* HTTP/1.1: the response being worked on carries Connection: close (h1.c checks the shard's draining flag).
     * An idle TLS connection closes now, but gracefully: close_notify first (conn_is_idle says it is not idle). */
    if (c->tls != NULL && tls_conn_established(c->tls) && !c->close_after_send && c->in.len == 0 && c->body_left == 0 &&
        c->out.len == 0 && !c->_send_inflight) {
        c->close_after_send = true;
        c->close_reason = CLOSE_SHUTDOWN;
    }
}

bool conn_done(const struct conn *c)
{
    if (c->proto == CONN_H2)
        return h2_done(c);
    return c->close_after_send;
}

void conn_release(struct conn *c)
{
    if (c->tls != NULL) {
        tls_release(c);
        c->tls = NULL;
    }
    if (c->h2 != NULL)
        h2_free(c);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->_sending);
}

/* ---------- the TLS transport ---------- */

void conn_start_tls(struct conn *c, struct tls_shard *sh)
{
    tls_shard_sync(sh); /* a certificate reloaded a moment ago is used from this handshake on */
    c->tls = tls_conn_new(sh);
}

/* The handshake failed: the alert OpenSSL wrote (or, for plain HTTP on this
 * port, a readable 400) goes out, then the connection closes without
 * close_notify (there is no session to close). */
static void tls_failed(struct conn *c, enum metrics_tls_error why)
{
    struct shard *s = c->shard;
    METRIC_INC(s->metrics->tls_handshake_errors[why]);
    if (why == TLS_ERR_HTTP) {
        /* As nginx does: a client that spoke plain HTTP to the TLS port reads why it failed. */
        struct response res = {.status = 400, .route = ROUTE_OTHER, .content_type = "application/json"};
        res.body = router_error_body(400, &res.body_len);
        response_write_h1(tls_conn_wire(c->tls), &res, false, RESP_CONN_CLOSE, s->clock.date);
    }
    c->close_after_send = true;
    c->close_reason = CLOSE_ERROR;
    shard_want_flush(s, c);
}

/* The handshake completed: count it, and start the protocol ALPN chose. */
static int tls_established(struct conn *c)
{
    struct tls_conn *t = c->tls;
    METRIC_INC(c->shard->metrics->tls_handshakes[tls_conn_resumed(t)][tls_conn_version(t)]);
    if (tls_conn_alpn_h2(t) && h2_start(c) != 0) {
        shard_close_conn(c->shard, c, CLOSE_ERROR);
        return -1;
    }
    return 0;
}

/* Ciphertext in: handshake, then decrypt record by record into the protocol.
 * Every byte of data is consumed before returning (OpenSSL keeps a partial
 * record), since the provided buffer goes back to the kernel afterwards. */
static void tls_on_data(struct conn *c, const char *data, size_t len)
{
    struct tls_conn *t = c->tls;
    struct shard *s = c->shard;
    if (c->close_after_send && c->proto == CONN_H1)
        return; /* the last response (or the alert) is written: ignore the rest */
    tls_conn_input(t, data, len);
    if (!tls_conn_established(t)) {
        enum tls_hs hs = tls_conn_handshake(t);
        if (hs == TLS_HS_FAILED) {
            tls_failed(c, tls_conn_error(t));
            return;
        }
        if (hs == TLS_HS_MORE || tls_established(c) != 0)
            goto flush;
    }
    char plain[TLS_RECORD_MAX];
    shard_count_tls(s, true);
    for (;;) {
        ssize_t n = tls_conn_read(t, plain, sizeof(plain));
        if (n > 0) {
            feed(c, plain, (size_t)n, c->seen_request);
            if (c->_closing)
                break;
            continue;
        }
        if (n == TLS_READ_CLOSED) {
            /* close_notify: the client sends nothing more; answer what is owed, then close (flush_all). */
            c->peer_eof = true;
        } else if (n == TLS_READ_ERROR && c->proto == CONN_H2) {
            shard_close_conn(s, c, CLOSE_ERROR); /* HTTP/2 cannot finish its streams over a broken session */
        } else if (n == TLS_READ_ERROR && !c->close_after_send) {
            c->close_after_send = true; /* a bad record: the alert goes out, then the close */
            c->close_reason = CLOSE_ERROR;
        }
        break;
    }
    shard_count_tls(s, false);
flush:
    if (tls_conn_wire(t)->len > 0 || c->peer_eof || c->close_after_send)
        shard_want_flush(s, c);
}

struct buf *conn_tls_output(struct conn *c)
{
    struct tls_conn *t = c->tls;
    if (c->out.len > 0 && tls_conn_established(t)) {
        /* One SSL_write for the turn's output: its records land behind any
         * handshake bytes already in the wire buffer, and leave in one send. */
        if (tls_conn_write(t, c->out.data, c->out.len) != 0 && !c->close_after_send) {
            c->close_after_send = true;
            c->close_reason = CLOSE_ERROR;
        }
        c->out.len = 0;
    }
    return tls_conn_wire(t);
}

bool conn_close_notify(struct conn *c)
{
    if (c->tls == NULL || !tls_conn_owes_close_notify(c->tls))
        return false;
    if (c->peer_eof && !tls_conn_peer_closed(c->tls)) {
        /* The client closed first, without close_notify: common (browsers,
         * load generators), so counted, not logged. Ours still goes out. */
        METRIC_INC(c->shard->metrics->tls_eof_without_close_notify);
    }
    if (!tls_conn_close_notify(c->tls))
        return false;
    METRIC_INC(c->shard->metrics->tls_close_notify_sent);
    return true;
}

/* Counts how the TLS session ended, then frees it. */
static void tls_release(struct conn *c)
{
    struct tls_conn *t = c->tls;
    struct shard *s = c->shard;
    if (!tls_conn_established(t) && !tls_conn_failed(t)) {
        /* Never completed and never failed: the client gave up, or the header timeout hit. */
        bool timed_out = c->_timer_kind == CT_HEADER && s->clock.now_ms >= c->_deadline_ms;
        METRIC_INC(s->metrics->tls_handshake_errors[timed_out ? TLS_ERR_TIMEOUT : TLS_ERR_CLOSED]);
    }
    tls_conn_free(t);
}
