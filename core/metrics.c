/* metrics.c - per-shard metric blocks summed into the Prometheus text format on scrape. */
#include "core/metrics.h"

#include <dirent.h>
#include <lmdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

const uint64_t metrics_bucket_ns[METRICS_BUCKETS] = {
    25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 25000000, 100000000,
    1000000000, 10000000000ull,
};
static const char *const bucket_le[METRICS_BUCKETS] = {
    "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.1", "1", "10",
};

static const char *const proto_names[PROTO__COUNT] = {"http1", "http2", "http1_tls", "http2_tls"};
static const char *const tls_error_names[TLS_ERR__COUNT] = {"not_tls", "http_request", "version", "no_shared_cipher",
                                                            "protocol", "timeout",      "closed"};
static const char *const tls_version_names[TLS_V__COUNT] = {"TLSv1.2", "TLSv1.3"};
static const char *const route_names[ROUTE__COUNT] = {"users",
                                                      "user",
                                                      "metrics",
                                                      "healthz",
                                                      "readyz",
                                                      "livez",
                                                      "other",
                                                      "ringd.v1.Users/GetUser",
                                                      "ringd.v1.Users/BatchGetUsers",
                                                      "grpc.health.v1.Health/Check",
                                                      "grpc_unknown"};
static const char *const grpc_code_names[METRICS_GRPC_CODES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};
static const char *const code_names[CODE__COUNT] = {"200", "400", "401", "404", "405", "408", "413", "414",
                                                    "417", "431", "500", "501", "503", "505", "other"};
static const char *const close_names[CLOSE__COUNT] = {"client", "idle_timeout", "header_timeout", "write_timeout",
                                                      "error",  "limit",        "shutdown",      "budget"};

/* The (route, code) pairs the router answers in normal operation, per route a
 * bit set over enum metrics_code. Their series are exported from the first
 * scrape on, at 0, so rate()/increase() also count a series' first requests
 * (a series that appears at 5 reads as "no increase" to Prometheus). Any other
 * pair appears once it is non-zero; the label set stays bounded by the enums. */
#define C(code) (1u << (code))
static const uint32_t expected_codes[ROUTE__COUNT] = {
    [ROUTE_USERS] = C(CODE_200) | C(CODE_400) | C(CODE_404) | C(CODE_405) | C(CODE_500),
    [ROUTE_USER] = C(CODE_200) | C(CODE_400) | C(CODE_401) | C(CODE_404) | C(CODE_405) | C(CODE_500),
    [ROUTE_METRICS] = C(CODE_200) | C(CODE_405),
    [ROUTE_HEALTHZ] = C(CODE_200) | C(CODE_405),
    [ROUTE_READYZ] = C(CODE_200) | C(CODE_405) | C(CODE_503),
    [ROUTE_LIVEZ] = C(CODE_200) | C(CODE_405),
    [ROUTE_OTHER] = C(CODE_400) | C(CODE_404) | C(CODE_405),
};
/* The same for gRPC methods, over gRPC status codes. */
static const uint32_t grpc_expected_codes[METRICS_GRPC_ROUTES] = {
    [ROUTE_GRPC_GET_USER - ROUTE_GRPC_FIRST] = C(0) | C(3) | C(5) | C(14),
    [ROUTE_GRPC_BATCH_GET_USERS - ROUTE_GRPC_FIRST] = C(0) | C(3) | C(14),
    [ROUTE_GRPC_HEALTH_CHECK - ROUTE_GRPC_FIRST] = C(0) | C(5),
    [ROUTE_GRPC_OTHER - ROUTE_GRPC_FIRST] = C(12),
};
#undef C
_Static_assert(CODE__COUNT <= 32, "expected_codes is a 32-bit set");

void metrics_observe(struct metrics_shard *m, enum metrics_route route, uint64_t ns, uint64_t n)
{
    unsigned b = 0;
    while (b < METRICS_BUCKETS && ns > metrics_bucket_ns[b])
        b++;
    METRIC_ADD(m->duration_bucket[route][b], n);
    METRIC_ADD(m->duration_sum_ns[route], ns * n);
}

/* Sum of one field over every shard: offset-based so one helper serves all counters. */
static uint64_t sum_at(const struct metrics_scrape *sc, size_t offset)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < sc->nshards; i++)
        total += atomic_load_explicit((metric_t *)((char *)sc->shards[i] + offset), memory_order_relaxed);
    return total;
}
#define SUM(sc, field) sum_at((sc), offsetof(struct metrics_shard, field))

static void family(struct buf *out, const char *name, const char *type, const char *help)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void simple(struct buf *out, const char *name, const char *type, const char *help, uint64_t v)
{
    family(out, name, type, help);
    buf_printf(out, "%s %llu\n", name, (unsigned long long)v);
}

/* Process figures from /proc/self, as the Prometheus client libraries name them. */
static void render_process(struct buf *out, double start_time)
{
    char stat[1024];
    unsigned long long utime = 0, stime = 0, vsize = 0;
    long long rss = 0, threads = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f != NULL) {
        size_t n = fread(stat, 1, sizeof(stat) - 1, f);
        fclose(f);
        stat[n] = '\0';
        const char *p = strrchr(stat, ')'); /* comm may hold spaces */
        if (p != NULL)
            sscanf(p + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %lld %*d %*u %llu %lld",
                   &utime, &stime, &threads, &vsize, &rss);
    }
    long tck = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    unsigned fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                fds++;
        closedir(d);
        fds--; /* the directory stream's own fd */
    }
    struct rlimit rl = {0, 0};
    getrlimit(RLIMIT_NOFILE, &rl);

    family(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    buf_printf(out, "process_cpu_seconds_total %.2f\n", (double)(utime + stime) / (double)(tck > 0 ? tck : 100));
    simple(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
           (uint64_t)rss * (uint64_t)page);
    simple(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsize);
    simple(out, "process_open_fds", "gauge", "Number of open file descriptors.", fds);
    simple(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.", (uint64_t)rl.rlim_cur);
    family(out, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
    buf_printf(out, "process_start_time_seconds %.3f\n", start_time);
    simple(out, "process_threads", "gauge", "Number of OS threads in the process.", (uint64_t)threads);
}

/* The ringd_tls_* families (only with --tls-listen). */
static void render_tls(struct buf *out, const struct metrics_scrape *sc)
{
    family(out, "ringd_tls_handshakes_total", "counter",
           "TLS handshakes, by result; completed ones by resumption (session ticket) and version.");
    uint64_t failed = 0;
    for (int e = 0; e < TLS_ERR__COUNT; e++)
        failed += SUM(sc, tls_handshake_errors[e]);
    for (int r = 0; r < 2; r++)
        for (int v = 0; v < TLS_V__COUNT; v++)
            buf_printf(out, "ringd_tls_handshakes_total{result=\"ok\",resumed=\"%s\",version=\"%s\"} %llu\n",
                       r ? "true" : "false", tls_version_names[v], (unsigned long long)SUM(sc, tls_handshakes[r][v]));
    buf_printf(out, "ringd_tls_handshakes_total{result=\"error\",resumed=\"false\",version=\"none\"} %llu\n",
               (unsigned long long)failed);
    family(out, "ringd_tls_handshake_errors_total", "counter",
           "TLS handshakes that did not complete, by reason (http_request: plain HTTP on the TLS port, answered 400).");
    for (int e = 0; e < TLS_ERR__COUNT; e++)
        buf_printf(out, "ringd_tls_handshake_errors_total{reason=\"%s\"} %llu\n", tls_error_names[e],
                   (unsigned long long)SUM(sc, tls_handshake_errors[e]));
    simple(out, "ringd_tls_eof_without_close_notify_total", "counter",
           "TLS clients that closed the connection without a close_notify (counted, not an error).",
           SUM(sc, tls_eof_without_close_notify));
    simple(out, "ringd_tls_close_notify_sent_total", "counter", "close_notify alerts sent on graceful closes.",
           SUM(sc, tls_close_notify_sent));
    family(out, "ringd_tls_reloads_total", "counter",
           "Certificate reloads (SIGHUP), by result; a failed one keeps the previous certificate.");
    buf_printf(out, "ringd_tls_reloads_total{result=\"ok\"} %llu\n", (unsigned long long)sc->tls_reloads_ok);
    buf_printf(out, "ringd_tls_reloads_total{result=\"error\"} %llu\n", (unsigned long long)sc->tls_reloads_failed);
    simple(out, "ringd_tls_ticket_key_rotations_total", "counter",
           "Session ticket keys replaced (hourly, or a changed --tls-ticket-key-file).", sc->tls_ticket_key_rotations);
    family(out, "ringd_tls_certificate_not_after_seconds", "gauge",
           "Unix time the certificate served to new handshakes expires.");
    buf_printf(out, "ringd_tls_certificate_not_after_seconds %lld\n", (long long)sc->tls_cert_not_after);
    simple(out, "ringd_tls_ktls_available", "gauge",
           "1 when the start-up probe found kernel TLS (TCP_ULP \"tls\"); TLS runs in user space either way.",
           sc->tls_ktls_available);
}

void metrics_render(struct buf *out, const struct metrics_scrape *sc)
{
    family(out, "ringd_requests_processed_total", "counter", "Requests answered, by protocol, route and status code.");
    for (int p = 0; p < PROTO__COUNT; p++)
        for (int r = 0; r < ROUTE__COUNT; r++)
            for (int c = 0; c < CODE__COUNT; c++) {
                uint64_t v = SUM(sc, requests[p][r][c]);
                /* The _tls protocols are exported at 0 only where TLS is served. */
                bool expected = (expected_codes[r] & (1u << c)) != 0 && (p < PROTO_HTTP1_TLS || sc->tls_enabled);
                if (v != 0 || expected)
                    buf_printf(out, "ringd_requests_processed_total{protocol=\"%s\",route=\"%s\",code=\"%s\"} %llu\n",
                               proto_names[p], route_names[r], code_names[c], (unsigned long long)v);
            }
    /* gRPC: route is the method, code the gRPC status's name. */
    for (int t = 0; t < 2; t++)
        for (int r = 0; r < METRICS_GRPC_ROUTES; r++)
            for (int c = 0; c < METRICS_GRPC_CODES; c++) {
                uint64_t v = SUM(sc, grpc_requests[t][r][c]);
                bool expected = (grpc_expected_codes[r] & (1u << c)) != 0 && (t == 0 || sc->tls_enabled);
                if (v != 0 || expected)
                    buf_printf(out, "ringd_requests_processed_total{protocol=\"%s\",route=\"%s\",code=\"%s\"} %llu\n",
                               t ? "grpc_tls" : "grpc", route_names[ROUTE_GRPC_FIRST + r], grpc_code_names[c],
                               (unsigned long long)v);
            }

    family(out, "ringd_request_duration_seconds", "histogram",
           "Time from a request's last byte read to its response handed to the kernel.");
    for (int r = 0; r < ROUTE__COUNT; r++) {
        /* Read each bucket once and derive count from the same reads, so
         * _count equals the +Inf bucket in every scrape. */
        uint64_t cum = 0;
        for (int b = 0; b <= METRICS_BUCKETS; b++) {
            cum += SUM(sc, duration_bucket[r][b]);
            buf_printf(out, "ringd_request_duration_seconds_bucket{route=\"%s\",le=\"%s\"} %llu\n", route_names[r],
                       b < METRICS_BUCKETS ? bucket_le[b] : "+Inf", (unsigned long long)cum);
        }
        buf_printf(out, "ringd_request_duration_seconds_sum{route=\"%s\"} %.9f\n", route_names[r],
                   (double)SUM(sc, duration_sum_ns[r]) / 1e9);
        buf_printf(out, "ringd_request_duration_seconds_count{route=\"%s\"} %llu\n", route_names[r],
                   (unsigned long long)cum);
    }

    family(out, "ringd_connections_active", "gauge", "Open client connections, by shard.");
    for (unsigned i = 0; i < sc->nshards; i++)
        /* Signed: the gauge is stored as a wrapped uint64, so a close counted
         * twice would show as -1 rather than as 1.8e19. */
        buf_printf(out, "ringd_connections_active{shard=\"%u\"} %lld\n", i,
                   (long long)METRIC_GET(sc->shards[i]->conns_active));
    family(out, "ringd_connections_accepted_total", "counter", "Connections accepted, by the shard that serves them.");
    for (unsigned i = 0; i < sc->nshards; i++)
        buf_printf(out, "ringd_connections_accepted_total{shard=\"%u\"} %llu\n", i,
                   (unsigned long long)METRIC_GET(sc->shards[i]->conns_accepted));
    family(out, "ringd_connections_closed_total", "counter",
           "Connections closed, by reason; limit: refused at accept over --max-conns (never counted as accepted); "
           "budget: a paused connection held more than CONN_STALLED_MAX after 1 s without progress, or had waited "
           "longest when paused connections held more than --paused-budget-mb.");
    for (int c = 0; c < CLOSE__COUNT; c++)
        buf_printf(out, "ringd_connections_closed_total{reason=\"%s\"} %llu\n", close_names[c],
                   (unsigned long long)SUM(sc, conns_closed[c]));
    simple(out, "ringd_connections_handed_off_total", "counter",
           "Accepted connections passed to a less loaded shard over MSG_RING.", SUM(sc, conns_handed_off));
    simple(out, "ringd_connections_drained_from_queue_total", "counter",
           "Connections still in a listener's accept queue when a drain closed it, accepted and served (not reset).",
           SUM(sc, conns_drained_from_queue));
    simple(out, "ringd_connections_paused", "gauge",
           "Connections not being read because their client does not read its answers (backpressure).",
           SUM(sc, conns_paused));
    simple(out, "ringd_paused_buffer_bytes", "gauge",
           "Bytes of input and output buffers held by paused connections (bounded by --paused-budget-mb).",
           SUM(sc, paused_bytes));
    simple(out, "ringd_accept_errors_total", "counter", "Failed accepts (EMFILE, ENFILE, ...).", SUM(sc, accept_errors));

    simple(out, "ringd_bytes_received_total", "counter", "Bytes read from clients.", SUM(sc, bytes_received));
    simple(out, "ringd_bytes_sent_total", "counter", "Bytes written to clients.", SUM(sc, bytes_sent));

    family(out, "ringd_store_lookups_total", "counter", "User lookups in LMDB, by result.");
    buf_printf(out, "ringd_store_lookups_total{result=\"hit\"} %llu\n", (unsigned long long)SUM(sc, store_hits));
    buf_printf(out, "ringd_store_lookups_total{result=\"miss\"} %llu\n", (unsigned long long)SUM(sc, store_misses));
    buf_printf(out, "ringd_store_lookups_total{result=\"error\"} %llu\n", (unsigned long long)SUM(sc, store_errors));
    simple(out, "ringd_store_txn_renewals_total", "counter", "Read transactions renewed to see new imports.",
           SUM(sc, store_renewals));
    uint64_t txn = 0;
    for (unsigned i = 0; i < sc->nshards; i++) {
        uint64_t t = METRIC_GET(sc->shards[i]->store_txn_id);
        txn = t > txn ? t : txn;
    }
    simple(out, "ringd_store_last_txn_id", "gauge", "Newest LMDB transaction id any shard reads.", txn);
    simple(out, "ringd_store_index_lookups_total", "counter",
           "Lookups answered by the in-memory snapshot index instead of the LMDB B-tree.",
           SUM(sc, store_index_lookups));
    simple(out, "ringd_store_index_builds_total", "counter", "Snapshot indexes built and published.", sc->index_builds);
    simple(out, "ringd_store_index_skipped_total", "counter",
           "Snapshots left without an index (over --index-max-mb, out of memory, or an LMDB error).", sc->index_skipped);
    simple(out, "ringd_store_index_txn_id", "gauge", "LMDB transaction id the published index describes (0: none).",
           sc->index_txn_id);
    simple(out, "ringd_store_index_users", "gauge", "Users in the published index.", sc->index_users);
    simple(out, "ringd_store_index_bytes", "gauge", "Memory the published index takes.", sc->index_bytes);
    family(out, "ringd_store_index_build_seconds", "gauge", "How long the last index build took.");
    buf_printf(out, "ringd_store_index_build_seconds %.6f\n", sc->index_build_seconds);
    simple(out, "ringd_store_index_overlay_lookups_total", "counter",
           "Lookups the index of an older snapshot answered for a newer one (the id unchanged since, per the change log).",
           SUM(sc, store_overlay_lookups));
    simple(out, "ringd_store_index_fallbacks_total", "counter",
           "Lookups that went to the LMDB B-tree although an index was held (id changed since, no usable change log).",
           SUM(sc, store_index_fallbacks));
    simple(out, "ringd_store_index_changed_lookups_total", "counter",
           "Lookups of ids changed since the index's snapshot, answered by the shard's copy of LMDB's answer since their last change.",
           SUM(sc, store_changed_lookups));
    simple(out, "ringd_store_index_overlay_gaps_total", "counter",
           "Times a shard could not use the change log for its index (a writer without the log, trimmed, too many changes).",
           SUM(sc, store_overlay_gaps));
    family(out, "ringd_store_index_pin_seconds", "gauge",
           "How long the published index's snapshot has been pinned behind the newest one (the data file grows meanwhile).");
    buf_printf(out, "ringd_store_index_pin_seconds %.6f\n", sc->index_pin_seconds);
    family(out, "ringd_store_index_pin_max_seconds", "gauge", "The longest an index's snapshot was pinned behind the newest.");
    buf_printf(out, "ringd_store_index_pin_max_seconds %.6f\n", sc->index_pin_max_seconds);
    simple(out, "ringd_store_map_used_bytes", "gauge", "Bytes of the LMDB map in use.", sc->store_used_bytes);
    simple(out, "ringd_store_map_size_bytes", "gauge", "Size of the LMDB map (sparse address space).",
           sc->store_map_bytes);

    if (sc->feed != NULL && sc->feed->present) {
        const struct store_feed_view *f = sc->feed;
        simple(out, "ringd_feed_applied_lsn", "gauge", "End LSN of the last source transaction in the store (ringd follow).",
               f->lsn);
        family(out, "ringd_feed_last_commit_timestamp_seconds", "gauge",
               "Commit time at the source of the last applied transaction (Unix seconds).");
        buf_printf(out, "ringd_feed_last_commit_timestamp_seconds %.6f\n", (double)f->commit_us / 1e6);
        family(out, "ringd_feed_lag_seconds", "gauge",
               "How far the store may be behind its source: 0 while the follower runs and is caught up, else the time since "
               "the store was last known complete.");
        buf_printf(out, "ringd_feed_lag_seconds %.3f\n", store_feed_lag_seconds(f, sc->now_us));
        simple(out, "ringd_feed_follower_running", "gauge", "1 while a ringd follow process holds the store's feed lock.",
               f->alive ? 1 : 0);
        simple(out, "ringd_feed_applied_transactions_total", "counter",
               "Source transactions applied that changed the table (the initial copy is not one).", f->txns);
        simple(out, "ringd_feed_applied_rows_total", "counter",
               "Row changes applied: rows of the initial copy, inserts, updates, deletes (a truncate counts one).", f->rows);
        simple(out, "ringd_feed_skipped_rows_total", "counter",
               "Source rows left out of the store (id not a positive integer, or not a valid record).", f->skipped);
    }

    simple(out, "ringd_uring_submit_calls_total", "counter",
           "io_uring submit calls: one submit-and-wait per loop turn, plus a submit when the SQ fills.",
           SUM(sc, uring_submits));
    simple(out, "ringd_uring_cqes_total", "counter", "Completions handled.", SUM(sc, uring_cqes));
    simple(out, "ringd_uring_cq_overflows_total", "counter", "Completions the kernel could not post (CQ overflow).",
           SUM(sc, uring_cq_overflow));
    simple(out, "ringd_recv_enobufs_total", "counter", "Multishot recvs that ran out of provided buffers.",
           SUM(sc, recv_enobufs));
    simple(out, "ringd_recv_rearms_total", "counter", "Multishot recvs armed again after ending.", SUM(sc, recv_rearms));

    simple(out, "ringd_http2_streams_opened_total", "counter", "HTTP/2 streams opened by clients.", SUM(sc, h2_streams));
    simple(out, "ringd_http2_resets_received_total", "counter", "RST_STREAM frames received.",
           SUM(sc, h2_resets_received));
    simple(out, "ringd_http2_goaways_sent_total", "counter", "GOAWAY frames sent.", SUM(sc, h2_goaways_sent));

    simple(out, "ringd_shards", "gauge", "Shards (reactor threads) configured.", sc->nshards);
    simple(out, "ringd_shards_ready", "gauge",
           "Shards serving: their loop runs and no drain has begun (all of them, for /readyz to answer 200).",
           sc->shards_ready);
    simple(out, "ringd_access_log_dropped_total", "counter",
           "Access-log entries dropped because a shard's ring was full (the writer fell behind); 0 without --access-log.",
           SUM(sc, access_log_dropped));

    if (sc->tls_enabled)
        render_tls(out, sc);

    int lmdb_major, lmdb_minor, lmdb_patch;
    mdb_version(&lmdb_major, &lmdb_minor, &lmdb_patch);
    family(out, "ringd_build_info", "gauge", "Build and library versions.");
    buf_printf(out, "ringd_build_info{version=\"%s\",liburing=\"%s\",lmdb=\"%d.%d.%d\"} 1\n", RINGD_VERSION,
               RINGD_LIBURING_VERSION, lmdb_major, lmdb_minor, lmdb_patch);

    render_process(out, sc->start_time_seconds);
}
