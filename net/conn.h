/* conn.h - one client connection: its buffers, timers, transport (plain or TLS) and protocol state (HTTP/1.1 or HTTP/2).
 *
 * The shard (core/shard.c) owns the I/O: it feeds received bytes in with
 * conn_on_data() and sends what conn_output() gives it. The protocol code
 * here never touches the ring. Fields starting with _ belong to the shard.
 *
 * Transport: a cleartext connection's received bytes go straight to the
 * protocol, and its output is `out`. A TLS connection (tls != NULL) decrypts
 * what arrives into plaintext for the same protocol code, which still writes
 * plaintext into `out`; when the shard is about to send, conn_output() seals
 * `out` into records in the TLS wire buffer, behind any handshake messages
 * and alerts OpenSSL wrote meanwhile, and that buffer is what goes out: one
 * send per turn either way. Protocols never see ciphertext.
 */
#ifndef RINGD_CONN_H
#define RINGD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/metrics.h"
#include "core/timer.h"

struct shard;
struct h2_conn;
struct tls_conn;
struct tls_shard;

enum conn_proto { CONN_H1, CONN_H2 };

/* What the connection's single timer currently guards. */
enum conn_timer { CT_HEADER, CT_IDLE, CT_WRITE, CT_LINGER };

/* Output a connection may hold unsent before it stops reading requests.
 * Small, because a client that pipelines and never reads keeps this (twice:
 * the buffer in flight and the one filling behind it) until it times out.
 * Just under 16 KiB so that, for answers of typical size, each buffer stays
 * within 16 KiB (buf.c doubles capacity). It is far above one turn's answers
 * for a client pipelining as benchmarks do (16 requests: ~4 KiB), so those
 * still get all their answers in one send; a bigger burst goes out 16 KiB
 * per send, one send per turn. */
#define CONN_OUT_HIGH_WATER (15u * 1024)
/* Input a paused connection may buffer before it is closed as abusive. A
 * paused connection stops reading (its recv is cancelled), but what the
 * multishot recv delivered before the cancel took effect must be kept. The
 * listener's small receive buffer does not bound that: on loopback the peer
 * refills the socket while the kernel drains it, and one io_uring_enter was
 * seen to deliver ~400 KiB to one connection; only the provided-buffer ring
 * (SHARD_BUF_COUNT * SHARD_BUF_SIZE = 4 MiB per shard and turn) does. A client
 * that bursts like that and then reads is served in full; one that stops
 * reading is closed after CONN_STALL_MS (CONN_STALLED_MAX). */
#define CONN_IN_MAX (8u * 1024 * 1024)
/* What a paused connection may hold (input and output buffers, by capacity)
 * once it has made no send progress for CONN_STALL_MS; one holding more is
 * closed then (reason "budget") instead of at --write-timeout-ms. Output
 * takes at most two 16 KiB buffers (CONN_OUT_HIGH_WATER); input is what
 * arrived in the turn it paused, typically the listener's 32 KiB receive
 * window plus what the client had in flight, in a buffer of up to 64 KiB
 * (capacities are powers of two). A client bursting more than that and then
 * not reading is closed after CONN_STALL_MS. */
#define CONN_STALLED_MAX (96u * 1024)
#define CONN_STALL_MS 1000
/* An empty input buffer larger than this is freed rather than kept. */
#define CONN_IN_KEEP (16u * 1024)
/* Time a closing connection keeps reading after its last response (lingering close). */
#define CONN_LINGER_MS 2000

struct conn {
    struct shard *shard;
    int fd;
    uint8_t listener;       /* enum listener_kind it was accepted on */
    uint8_t proto;          /* enum conn_proto */
    bool close_after_send;  /* protocol is done: close once `out` is sent */
    bool paused;            /* too much output pending: input waits in `in` */
    bool seen_request;      /* at least one request answered (for the timer choice) */
    bool peer_eof;          /* the client half-closed: answer what is buffered, then close */
    uint8_t close_reason;   /* enum metrics_close used by close_after_send */
    uint8_t peer_family;    /* the client's address (AF_INET, AF_INET6), only with the access log; 0: unknown */
    uint16_t peer_port;
    uint8_t peer_addr[16];
    uint64_t body_left;     /* HTTP/1.1: request body bytes still to discard */
    uint64_t request_start_ms; /* HTTP/1.1: first byte of the request being received;
                                * HTTP/2: the last stream opened or answered (PINGs
                                * and SETTINGS do not count as progress) */
    struct buf in;          /* received bytes not yet consumed (a partial request) */
    struct buf out;         /* responses produced, not yet handed to the kernel */
    struct h2_conn *h2;     /* HTTP/2 state, NULL on HTTP/1.1 */
    struct tls_conn *tls;   /* TLS transport (net/tls.h), NULL on a cleartext connection */

    /* --- shard-owned I/O state --- */
    uint8_t _inflight;      /* operations the kernel still holds (recv, send, shutdown) */
    bool _recv_armed;
    bool _recv_stopping;    /* a cancel of the recv is in flight (backpressure) */
    bool _send_inflight;
    bool _closing;          /* shard_close_conn ran: free when _inflight reaches 0 */
    bool _lingering;        /* SHUT_WR sent; reading until EOF or CONN_LINGER_MS */
    bool _in_flush;
    bool _paused_linked;    /* in the shard's list of paused connections */
    size_t _held;           /* bytes counted against the shard's paused budget */
    uint64_t _paused_ms;    /* paused, or last sent something while paused, at this time */
    struct buf _sending;    /* bytes of the in-flight send: stable until its CQE */
    size_t _sent;
    uint8_t _timer_kind;    /* enum conn_timer */
    uint64_t _deadline_ms;  /* lazily enforced: the wheel node may fire early, then re-arms */
    struct timer_node _timer;
    struct conn *_flush_next;
    struct conn *_paused_prev, *_paused_next; /* oldest paused first */
    struct conn *_prev, *_next;
};

/* Feeds bytes received on c (they live only for this call: whatever must be
 * kept is copied into c->in). Produces responses into c->out and may set
 * close_after_send, or close c through the shard. On a TLS connection the
 * bytes are ciphertext: they advance the handshake or are decrypted first,
 * and whatever TLS itself must send (handshake messages, tickets, alerts) is
 * queued and the shard asked to flush. */
void conn_on_data(struct conn *c, const char *data, size_t len);

/* Makes c, just accepted on the TLS listener, a TLS connection on the
 * shard's current context: its first bytes must be a ClientHello. */
void conn_start_tls(struct conn *c, struct tls_shard *sh);

/* TLS: seals c->out (plaintext, emptied) into records and returns the wire
 * buffer; use conn_output(). */
struct buf *conn_tls_output(struct conn *c);

/* The bytes to hand to the kernel now: c->out on a cleartext connection,
 * the TLS records sealed from it (and any handshake bytes) otherwise. The
 * shard swaps the returned buffer's contents into its send buffer. */
static inline struct buf *conn_output(struct conn *c)
{
    return c->tls == NULL ? &c->out : conn_tls_output(c);
}

/* On a graceful close, before the half-close: queues the transport's own
 * goodbye (TLS close_notify) once. Returns whether bytes were queued, which
 * the shard sends first; false on a cleartext connection. */
bool conn_close_notify(struct conn *c);

/* The user that the bytes data[0..len), about to be fed to c with
 * conn_on_data, will look up first, or 0: a prefetching hint, read-only. */
uint64_t conn_user_hint(const struct conn *c, const char *data, size_t len);

/* Called by the shard when c's output went out and it is below the high-water
 * mark again: resumes parsing what waits in c->in. */
void conn_resume(struct conn *c);

/* Whether c is between requests (nothing received, nothing to send): drain closes such connections at once. */
bool conn_is_idle(const struct conn *c);

/* The server begins draining: HTTP/1.1 closes after the current response,
 * HTTP/2 sends GOAWAY and closes once its streams finish. */
void conn_begin_drain(struct conn *c);

/* Whether the protocol has nothing left to do and c may close after its output is sent. */
bool conn_done(const struct conn *c);

/* Frees protocol state (not the struct, not the fd). */
void conn_release(struct conn *c);

#endif
