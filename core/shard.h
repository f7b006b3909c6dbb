/* shard.h - one reactor per core: a pinned thread driving its own io_uring ring.
 *
 * A shard owns its ring, its listener's multishot accept, a provided-buffer
 * ring for multishot recv, its connections, a timer wheel, an LMDB read
 * transaction and a metrics block. Nothing in it is touched by another thread
 * except the metrics block (read-only, relaxed loads) and MSG_RING handoffs.
 */
#ifndef RINGD_SHARD_H
#define RINGD_SHARD_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "core/timer.h"
#include "net/trace.h"
#include "store/feed.h"
#include "store/store.h"

struct server;
struct conn;
struct tls_shard;
struct alog_ring;
struct request;
struct response;

/* MAIN and TLS serve clients (both count against --max-conns and take part
 * in hand-offs); ADMIN (shard 0 only) serves probes and metrics in cleartext. */
enum listener_kind { LISTENER_MAIN = 0, LISTENER_ADMIN = 1, LISTENER_TLS = 2, LISTENER__COUNT };

#define SHARD_BUF_SIZE 4096   /* one provided recv buffer */
#define SHARD_BUF_COUNT 1024  /* buffers in the ring (power of two) */
#define SHARD_BGID 0
/* Once the listeners closed, an idle HTTP/1.1 connection closes after this
 * long without a request (a request may be on its way: closing at once would fail it). */
#define SHARD_DRAIN_QUIET_MS 250

struct shard {
    unsigned id;
    struct server *srv;
    const struct config *cfg;
    pthread_t thread;
    struct io_uring ring;
    _Atomic int ring_fd; /* for MSG_RING from other shards; -1 until the ring exists */
    int listen_fd[LISTENER__COUNT]; /* -1 when this shard has no such listener */
    bool accept_armed[LISTENER__COUNT];
    bool listen_keep[LISTENER__COUNT]; /* systemd's socket: a drain leaves it listening (its queue waits for the next instance) */
    struct timer_node accept_retry; /* re-arms accept after EMFILE/ENFILE */
    struct timer_node paused_sweep; /* closes stalled connections over CONN_STALLED_MAX */

    struct io_uring_buf_ring *_br;
    char *_bufs;
    unsigned _br_returned; /* buffers given back this turn, published once per turn */

    struct clock_cache clock;
    struct timer_wheel wheel;
    struct store_reader reader;
    uint64_t last_refresh_ms;
    uint64_t last_reader_check_ms;
    uint64_t last_feed_ms;
    struct store_feed_view feed; /* the feed's state (store/feed.h), refreshed every FEED_CHECK_MS for /readyz and /metrics */
    struct metrics_shard *metrics;

    struct conn *conns;       /* every live connection (for drain) */
    unsigned nconns;
    struct conn *flush_head;  /* connections with output to send this turn */
    struct conn *paused_head, *paused_tail; /* paused connections, longest paused first */
    unsigned npaused;
    size_t paused_bytes;      /* buffer bytes the paused connections hold */
    size_t paused_budget;     /* this shard's share of --paused-budget-mb */
    uint64_t turn_start_ns;   /* when this turn's completions were reaped */
    uint32_t answered[ROUTE__COUNT]; /* requests answered this turn, observed at submit */
    bool answered_any;
    bool looked_up;           /* a lookup used the read transaction since its last renew */
    bool min_wait_ok; /* the kernel honours min_wait_usec (batched wakeups) */
    /* The shard's wakeup: one IORING_OP_TIMEOUT (absolute, CLOCK_MONOTONIC) at
     * the timer wheel's next deadline, so that the waits carry no timeout of
     * their own (a waiting io_uring_enter with a timeout sets up and cancels a
     * kernel hrtimer each time it sleeps). */
    uint64_t wakeup_ms;       /* deadline of the armed timeout; 0: none armed */
    uint32_t wakeup_gen;      /* generation of the armed timeout (older CQEs are stale) */
    bool wakeup_sqe_ok;       /* false after a timeout SQE failed: waits carry their timeout again */
    struct __kernel_timespec wakeup_ts;
    /* A drain: SIGTERM turns /readyz 503 at once (server_ready), then for
     * --drain-grace-ms everything else goes on as before (in_grace), so load
     * balancers and a --reuse-port-join successor take the new traffic; then
     * draining: the listeners close, answers say Connection: close, HTTP/2
     * gets its GOAWAYs, and the shard ends with its last connection. */
    bool in_grace;
    bool draining;
    struct timer_node drain_grace; /* ends the grace */
    uint64_t drain_deadline_ms;
    struct buf scratch;       /* response bodies built on the fly (metrics text) */
    struct trace_idgen idgen; /* request ids for requests that bring none (net/trace.h) */
    struct alog_ring *alog;   /* this shard's access-log ring (core/access_log.h); NULL: no access log */
    unsigned alog_sample;     /* --access-log-sample */
    unsigned alog_left;       /* requests until the next sampled one */
    uint64_t alog_slow_ns;    /* --slow-ms */
    struct tls_shard *tls;    /* this shard's view of the TLS context; NULL without --tls-listen */
    /* Where shard_count_request counts: metrics->requests, or from its _tls
     * protocols on while net/conn.c feeds a TLS connection's plaintext
     * (shard_count_tls). A pointer, so that counting costs the cleartext
     * path nothing: the same one load as metrics->requests. */
    metric_t (*count_base)[ROUTE__COUNT][CODE__COUNT];
};

/* Allocates and initialises shard id (no thread, no ring yet). Aborts on OOM. */
struct shard *shard_new(struct server *srv, unsigned id);

/* Starts the pinned thread, which sets up its ring and runs the loop until the
 * drain completes. Returns 0 or -errno. */
int shard_start(struct shard *s);

/* Frees a shard whose thread has been joined. */
void shard_free(struct shard *s);

/* --- used by net/ while handling a connection (owner thread only) --- */

/* Queues c so its output is sent at the end of this loop turn (idempotent). */
void shard_want_flush(struct shard *s, struct conn *c);

/* Counts one answered request: status code, route, protocol (its _tls
 * variant after shard_count_tls(s, true)), and latency observed when this
 * turn's sends are submitted. */
void shard_count_request(struct shard *s, enum metrics_proto proto, enum metrics_route route, int status);

/* Counts one answered gRPC call: route is a ROUTE_GRPC_* method, code its
 * gRPC status code (0..16); over TLS as shard_count_request; latency as there. */
void shard_count_grpc(struct shard *s, enum metrics_route route, unsigned code);

/* Appends the answered request to the access log (call only when s->alog:
 * the check is the caller's, so that the log costs nothing when off). req
 * is NULL for a request that could not be parsed; head: a HEAD (no body
 * bytes). Never blocks: a full ring drops the entry and counts it. */
void shard_log_request(struct shard *s, const struct conn *c, const struct request *req, const struct response *res,
                       enum metrics_proto proto, bool head);

/* Requests counted from now on came over TLS (on) or not (off): set around
 * the protocol's work on a TLS connection's plaintext, reset after. */
static inline void shard_count_tls(struct shard *s, bool on)
{
    s->count_base = &s->metrics->requests[on ? PROTO_TLS_OFFSET : 0];
}

/* Closes c now: cancels its operations and frees it once the last one completes. */
void shard_close_conn(struct shard *s, struct conn *c, enum metrics_close reason);

#endif
