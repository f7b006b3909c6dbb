/* metrics.h - lock-free per-shard counters and latency histograms, summed into Prometheus text on scrape.
 *
 * Each shard owns one cache-line-aligned struct metrics_shard and is its only
 * writer: an increment is a relaxed load plus a relaxed store of the new value
 * (METRIC_ADD), no read-modify-write, no lock, no shared cache line with other
 * shards. A scrape, on any thread, reads every block with relaxed loads and
 * sums. A single writer storing increasing values means a reader can never see
 * a counter go backwards.
 */
#ifndef RINGD_METRICS_H
#define RINGD_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "store/feed.h"

typedef _Atomic uint64_t metric_t;

/* Single-writer add: relaxed load, relaxed store of the sum. A function, not an
 * expression repeating `field`, so the lvalue (e.g. an index computed by
 * metrics_code_of) is evaluated once. */
static inline void metric_add(metric_t *field, uint64_t n)
{
    atomic_store_explicit(field, atomic_load_explicit(field, memory_order_relaxed) + n, memory_order_relaxed);
}
#define METRIC_ADD(field, n) metric_add(&(field), (uint64_t)(n))
#define METRIC_INC(field) METRIC_ADD(field, 1)
#define METRIC_SET(field, v) atomic_store_explicit(&(field), (uint64_t)(v), memory_order_relaxed)
#define METRIC_GET(field) atomic_load_explicit(&(field), memory_order_relaxed)

/* The protocol label of a request. Protocols count PROTO_HTTP1 or PROTO_HTTP2;
 * the shard adds PROTO_TLS_OFFSET for a request that came over TLS
 * (shard_count_request), so the protocol code never asks. */
enum metrics_proto { PROTO_HTTP1, PROTO_HTTP2, PROTO_HTTP1_TLS, PROTO_HTTP2_TLS, PROTO__COUNT };
#define PROTO_TLS_OFFSET (PROTO_HTTP1_TLS - PROTO_HTTP1)
/* HTTP routes, then the gRPC methods (net/grpc.h): those are counted in
 * metrics_shard.grpc_requests by gRPC status code, and share the histogram. */
enum metrics_route {
    ROUTE_USERS, ROUTE_USER, ROUTE_METRICS, ROUTE_HEALTHZ, ROUTE_READYZ, ROUTE_LIVEZ, ROUTE_OTHER,
    ROUTE_GRPC_GET_USER, ROUTE_GRPC_BATCH_GET_USERS, ROUTE_GRPC_HEALTH_CHECK, ROUTE_GRPC_OTHER, ROUTE__COUNT
};
#define ROUTE_GRPC_FIRST ROUTE_GRPC_GET_USER
#define METRICS_GRPC_ROUTES (ROUTE__COUNT - ROUTE_GRPC_FIRST)
#define METRICS_GRPC_CODES 17 /* gRPC status codes 0 (OK) .. 16 (UNAUTHENTICATED) */
enum metrics_code {
    CODE_200, CODE_400, CODE_401, CODE_404, CODE_405, CODE_408, CODE_413, CODE_414, CODE_417, CODE_431,
    CODE_500, CODE_501, CODE_503, CODE_505, CODE_OTHER, CODE__COUNT
};
enum metrics_close {
    CLOSE_CLIENT, CLOSE_IDLE_TIMEOUT, CLOSE_HEADER_TIMEOUT, CLOSE_WRITE_TIMEOUT, CLOSE_ERROR, CLOSE_LIMIT,
    CLOSE_SHUTDOWN, CLOSE_BUDGET, CLOSE__COUNT
};

/* Why a TLS handshake did not complete (ringd_tls_handshake_errors_total{reason}). */
enum metrics_tls_error {
    TLS_ERR_NOT_TLS,      /* the first bytes were no TLS record (garbage) */
    TLS_ERR_HTTP,         /* a plain HTTP request on the TLS port (answered 400 in plain text) */
    TLS_ERR_VERSION,      /* the client offers no version from TLS 1.2 and 1.3 */
    TLS_ERR_CIPHER,       /* no cipher suite or group in common */
    TLS_ERR_PROTOCOL,     /* any other TLS failure: a malformed message, an alert from the client */
    TLS_ERR_TIMEOUT,      /* the handshake did not complete within --header-timeout-ms */
    TLS_ERR_CLOSED,       /* the client closed or reset, or the server shut down, mid-handshake */
    TLS_ERR__COUNT
};
/* Versions a handshake can end with (TLS 1.2 and 1.3 only). */
enum metrics_tls_version { TLS_V12, TLS_V13, TLS_V__COUNT };

/* Upper bounds of the latency buckets in ns; the last bucket is +Inf. */
#define METRICS_BUCKETS 13
extern const uint64_t metrics_bucket_ns[METRICS_BUCKETS];

struct metrics_shard {
    _Alignas(64) metric_t requests[PROTO__COUNT][ROUTE__COUNT][CODE__COUNT];
    /* gRPC calls by [over TLS][method][status code]: ringd_requests_processed_total{protocol="grpc"|"grpc_tls"} */
    metric_t grpc_requests[2][METRICS_GRPC_ROUTES][METRICS_GRPC_CODES];
    metric_t duration_bucket[ROUTE__COUNT][METRICS_BUCKETS + 1]; /* per bucket, not cumulative */
    metric_t duration_sum_ns[ROUTE__COUNT];
    metric_t conns_active; /* a gauge, still single-writer */
    metric_t conns_accepted;
    metric_t conns_closed[CLOSE__COUNT];
    metric_t conns_handed_off;
    metric_t conns_drained_from_queue; /* taken from a listener's accept queue as the drain closed it */
    metric_t conns_paused;  /* gauge: connections not read because their answers are not read */
    metric_t paused_bytes;  /* gauge: buffer bytes those connections hold */
    metric_t accept_errors;
    metric_t bytes_received;
    metric_t bytes_sent;
    metric_t store_hits;
    metric_t store_misses;
    metric_t store_errors;
    metric_t store_index_lookups; /* lookups the snapshot index answered (hit or miss) */
    metric_t store_overlay_lookups; /* of which for a newer snapshot, the id unchanged since (store/changes.h) */
    metric_t store_index_fallbacks; /* lookups that went to LMDB although an index was held */
    metric_t store_changed_lookups; /* ids changed since the index, answered by the overlay's copy (store/changes.h) */
    metric_t store_overlay_gaps;    /* mirrors the reader's count of change-log ranges it could not use */
    metric_t store_renewals;
    metric_t store_txn_id; /* gauge */
    metric_t uring_submits;
    metric_t uring_cqes;
    metric_t uring_cq_overflow; /* mirrors the kernel's monotonic overflow count */
    metric_t recv_enobufs;
    metric_t recv_rearms;
    metric_t h2_streams;
    metric_t h2_resets_received;
    metric_t h2_goaways_sent;
    metric_t tls_handshakes[2][TLS_V__COUNT]; /* completed, by [resumed][version] */
    metric_t tls_handshake_errors[TLS_ERR__COUNT];
    metric_t tls_eof_without_close_notify; /* clients that closed without a close_notify */
    metric_t tls_close_notify_sent;
    metric_t access_log_dropped; /* entries a full access-log ring could not take */
};

/* Maps an HTTP status to its label slot (inline: it is on the request path). */
static inline enum metrics_code metrics_code_of(int status)
{
    switch (status) {
    case 200: return CODE_200;
    case 400: return CODE_400;
    case 401: return CODE_401;
    case 404: return CODE_404;
    case 405: return CODE_405;
    case 408: return CODE_408;
    case 413: return CODE_413;
    case 414: return CODE_414;
    case 417: return CODE_417;
    case 431: return CODE_431;
    case 500: return CODE_500;
    case 501: return CODE_501;
    case 503: return CODE_503;
    case 505: return CODE_505;
    default: return CODE_OTHER;
    }
}

/* Adds n requests of one route that took ns each to the histogram (owner only). */
void metrics_observe(struct metrics_shard *m, enum metrics_route route, uint64_t ns, uint64_t n);

/* What a scrape needs besides the shard blocks. */
struct metrics_scrape {
    struct metrics_shard *const *shards; /* nshards blocks, read with relaxed loads */
    unsigned nshards;
    uint64_t store_used_bytes;
    uint64_t store_map_bytes;
    double start_time_seconds; /* Unix time the process started */
    /* The snapshot index (store/index.h), as the indexer last reported it. */
    uint64_t index_builds;
    uint64_t index_skipped;
    uint64_t index_txn_id;
    uint64_t index_users;
    uint64_t index_bytes;
    double index_build_seconds;
    double index_pin_seconds;     /* how long the published index has held back newer snapshots */
    double index_pin_max_seconds; /* the longest any did */
    /* TLS (all zero without --tls-listen; then no ringd_tls_* family is rendered). */
    bool tls_enabled;
    uint64_t tls_reloads_ok;
    uint64_t tls_reloads_failed;
    uint64_t tls_ticket_key_rotations;
    int64_t tls_cert_not_after; /* Unix time the served certificate expires */
    uint64_t tls_ktls_available; /* what the start-up probe found: 1 or 0 */
    /* The feed `ringd follow` keeps in the store (shown only when present), and the wall clock (Unix µs) for its lag. */
    const struct store_feed_view *feed;
    uint64_t now_us;
    unsigned shards_ready; /* shards whose loop runs, 0 once a drain began (what /readyz needs of them) */
};

/* Appends the Prometheus text exposition (0.0.4) of everything to out. */
void metrics_render(struct buf *out, const struct metrics_scrape *sc);

#endif
