/* test_metrics.c - per-shard metric blocks: exact sums under concurrent scrapes, monotonic counters, consistent
 * histograms, the status-code mapping and the shape of the exposition text. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/server.h"

#include "core/buf.h"
#include "core/metrics.h"

#define WRITERS 4
#define ITERS 400000u    /* METRIC_INC per writer */
#define OBSERVE_EVERY 4u /* a metrics_observe of OBSERVE_EVERY requests every OBSERVE_EVERY increments */
#define MIN_SCRAPES 200  /* writers keep going (past ITERS) until this many scrapes overlapped them */

static struct metrics_shard *new_block(void)
{
    struct metrics_shard *m = aligned_alloc(64, sizeof(*m));
    cr_assert_not_null(m);
    memset(m, 0, sizeof(*m));
    return m;
}

/* ---------- reading the exposition text ---------- */

/* Value of the sample line "<series> <value>", or -1 when absent. */
static double sample(const char *text, const char *series)
{
    return ts_metric_in(text, series);
}

static const char *const les[] = {"2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
                                  "0.005",   "0.01",  "0.025",  "0.1",     "1",      "10",    "+Inf"};
#define NLES (sizeof(les) / sizeof(les[0]))

static double bucket(const char *text, const char *route, const char *le)
{
    char series[160];
    snprintf(series, sizeof(series), "ringd_request_duration_seconds_bucket{route=\"%s\",le=\"%s\"}", route, le);
    return sample(text, series);
}

static double hist_count(const char *text, const char *route)
{
    char series[160];
    snprintf(series, sizeof(series), "ringd_request_duration_seconds_count{route=\"%s\"}", route);
    return sample(text, series);
}

/* The series a concurrent scrape follows; all must be monotonic. */
#define REQ_SERIES "ringd_requests_processed_total{protocol=\"http1\",route=\"users\",code=\"200\"}"
#define REQ2_SERIES "ringd_requests_processed_total{protocol=\"http2\",route=\"other\",code=\"431\"}"
#define TRACKED (2 + 3 + NLES * 2 + 2)

/* Reads the tracked values of one scrape into v (absent = -1). */
static void tracked(const char *text, double *v)
{
    size_t k = 0;
    v[k++] = sample(text, REQ_SERIES);
    v[k++] = sample(text, REQ2_SERIES);
    v[k++] = sample(text, "ringd_bytes_sent_total");
    v[k++] = sample(text, "ringd_store_lookups_total{result=\"hit\"}");
    v[k++] = sample(text, "ringd_uring_cqes_total");
    for (size_t b = 0; b < NLES; b++) {
        v[k++] = bucket(text, "users", les[b]);
        v[k++] = bucket(text, "readyz", les[b]);
    }
    v[k++] = hist_count(text, "users");
    v[k++] = hist_count(text, "readyz");
}

/* Histogram invariants of one scrape for one route; returns a description of
 * the first violation or NULL. */
static const char *hist_violation(const char *text, const char *route)
{
    double prev = 0;
    for (size_t b = 0; b < NLES; b++) {
        double v = bucket(text, route, les[b]);
        if (v < 0)
            return "bucket missing";
        if (v < prev)
            return "buckets decrease with le";
        prev = v;
    }
    if (hist_count(text, route) != prev)
        return "_count differs from the +Inf bucket";
    return NULL;
}

/* Index of the first tracked value that went down from prev to cur, or -1. */
static int first_decrease(const double *prev, const double *cur, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cur[i] < prev[i])
            return (int)i;
    return -1;
}

/* ---------- concurrent writers and scrapers ---------- */

struct shared {
    struct metrics_shard *blocks[WRITERS];
    atomic_int started; /* writers wait for the scraper's first scrape, so the two overlap */
    atomic_int writers_done;
    atomic_uint scrapes; /* scrapes taken so far */
};

struct writer_arg {
    struct shared *sh;
    unsigned idx;
    unsigned done; /* iterations run, at least ITERS */
};

static void *writer_run(void *p)
{
    struct writer_arg *a = p;
    struct metrics_shard *m = a->sh->blocks[a->idx];
    while (atomic_load(&a->sh->started) == 0)
        sched_yield();
    unsigned i;
    for (i = 1; i <= ITERS || atomic_load_explicit(&a->sh->scrapes, memory_order_relaxed) < MIN_SCRAPES; i++) {
        /* What the request path does per request: one counter ... */
        METRIC_INC(m->requests[PROTO_HTTP1][ROUTE_USERS][CODE_200]);
        METRIC_INC(m->store_hits);
        METRIC_ADD(m->bytes_sent, 3);
        METRIC_INC(m->uring_cqes);
        if (i % 1000 == 0)
            METRIC_INC(m->requests[PROTO_HTTP2][ROUTE_OTHER][CODE_431]);
        /* ... and the per-turn histogram observation, here every OBSERVE_EVERY requests,
         * spread over all buckets including +Inf (latencies from 1 us to ~17 s). */
        if (i % OBSERVE_EVERY == 0) {
            uint64_t ns = 1000ull << ((i / OBSERVE_EVERY) % 25);
            metrics_observe(m, ROUTE_USERS, ns, OBSERVE_EVERY);
            metrics_observe(m, ROUTE_READYZ, ns, 1);
        }
    }
    a->done = i - 1;
    atomic_fetch_add(&a->sh->writers_done, 1);
    return NULL;
}

struct scrape_result {
    unsigned scrapes;
    unsigned concurrent; /* scrapes taken while some writer was still running */
    char failure[256];
};

static void *scraper_render(void *p)
{
    struct shared *sh = p;
    static struct scrape_result res;
    memset(&res, 0, sizeof(res));
    struct metrics_scrape sc = {.shards = sh->blocks, .nshards = WRITERS};
    double prev[TRACKED], cur[TRACKED];
    for (size_t i = 0; i < TRACKED; i++)
        prev[i] = -1;
    struct buf out = {0};
    for (;;) {
        bool writing = atomic_load(&sh->writers_done) < WRITERS;
        out.len = 0;
        metrics_render(&out, &sc);
        buf_append(&out, "", 1);
        atomic_store(&sh->started, 1);
        atomic_fetch_add(&sh->scrapes, 1);
        res.scrapes++;
        res.concurrent += writing;
        tracked(out.data, cur);
        int d = first_decrease(prev, cur, TRACKED);
        if (d >= 0) {
            snprintf(res.failure, sizeof(res.failure), "scrape %u: tracked value %d went from %.0f to %.0f", res.scrapes, d,
                     prev[d], cur[d]);
            break;
        }
        const char *why = hist_violation(out.data, "users");
        if (why == NULL)
            why = hist_violation(out.data, "readyz");
        if (why != NULL) {
            snprintf(res.failure, sizeof(res.failure), "scrape %u: %s", res.scrapes, why);
            break;
        }
        memcpy(prev, cur, sizeof(prev));
        if (!writing)
            break;
    }
    atomic_store(&sh->scrapes, MIN_SCRAPES); /* on a failure, release the writers */
    buf_free(&out);
    return &res;
}

/* Sums straight from the blocks (what a scrape does, without the text). */
static void *scraper_sum(void *p)
{
    struct shared *sh = p;
    static struct scrape_result res;
    memset(&res, 0, sizeof(res));
    uint64_t prev_req = 0, prev_count = 0;
    for (;;) {
        bool writing = atomic_load(&sh->writers_done) < WRITERS;
        uint64_t req = 0, count = 0;
        for (unsigned w = 0; w < WRITERS; w++) {
            req += METRIC_GET(sh->blocks[w]->requests[PROTO_HTTP1][ROUTE_USERS][CODE_200]);
            for (unsigned b = 0; b <= METRICS_BUCKETS; b++)
                count += METRIC_GET(sh->blocks[w]->duration_bucket[ROUTE_USERS][b]);
        }
        res.scrapes++;
        res.concurrent += writing;
        if (req < prev_req || count < prev_count) {
            snprintf(res.failure, sizeof(res.failure), "sum went down: requests %llu -> %llu, count %llu -> %llu",
                     (unsigned long long)prev_req, (unsigned long long)req, (unsigned long long)prev_count,
                     (unsigned long long)count);
            atomic_store(&sh->scrapes, MIN_SCRAPES);
            break;
        }
        prev_req = req;
        prev_count = count;
        atomic_store(&sh->started, 1);
        atomic_fetch_add(&sh->scrapes, 1);
        if (!writing)
            break;
    }
    return &res;
}

static void run_concurrent(void *(*scraper)(void *), const char *what)
{
    struct shared sh;
    memset(&sh, 0, sizeof(sh));
    for (unsigned w = 0; w < WRITERS; w++)
        sh.blocks[w] = new_block();

    pthread_t wt[WRITERS], st;
    struct writer_arg args[WRITERS];
    for (unsigned w = 0; w < WRITERS; w++) {
        args[w] = (struct writer_arg){.sh = &sh, .idx = w};
        cr_assert_eq(pthread_create(&wt[w], NULL, writer_run, &args[w]), 0);
    }
    cr_assert_eq(pthread_create(&st, NULL, scraper, &sh), 0);
    for (unsigned w = 0; w < WRITERS; w++)
        pthread_join(wt[w], NULL);
    void *rv;
    pthread_join(st, &rv);
    struct scrape_result *res = rv;
    cr_log_info("%s: %u scrapes, %u while writers ran", what, res->scrapes, res->concurrent);
    cr_assert_str_empty(res->failure, "%s: %s", what, res->failure);
    cr_assert_geq(res->concurrent, MIN_SCRAPES - 1, "scrapes overlapped the writers");

    /* Final sums are exact. */
    struct metrics_scrape sc = {.shards = sh.blocks, .nshards = WRITERS};
    struct buf out = {0};
    metrics_render(&out, &sc);
    buf_append(&out, "", 1);
    /* Replay what the writers did. */
    uint64_t n = 0, n2 = 0, observed = 0, observations = 0, sum_ns = 0;
    for (unsigned w = 0; w < WRITERS; w++) {
        n += args[w].done;
        n2 += args[w].done / 1000;
        for (unsigned i = OBSERVE_EVERY; i <= args[w].done; i += OBSERVE_EVERY) {
            observed += OBSERVE_EVERY;
            observations++;
            sum_ns += (1000ull << ((i / OBSERVE_EVERY) % 25)) * OBSERVE_EVERY;
        }
    }
    cr_log_info("%s: %llu increments", what, (unsigned long long)n);
    cr_expect_eq(sample(out.data, REQ_SERIES), (double)n);
    cr_expect_eq(sample(out.data, REQ2_SERIES), (double)n2);
    cr_expect_eq(sample(out.data, "ringd_store_lookups_total{result=\"hit\"}"), (double)n);
    cr_expect_eq(sample(out.data, "ringd_bytes_sent_total"), 3.0 * (double)n);
    cr_expect_eq(sample(out.data, "ringd_uring_cqes_total"), (double)n);
    cr_expect_eq(hist_count(out.data, "users"), (double)observed);
    cr_expect_eq(bucket(out.data, "users", "+Inf"), (double)observed);
    cr_expect_eq(hist_count(out.data, "readyz"), (double)observations);
    cr_expect_null(hist_violation(out.data, "users"));
    char want[64];
    snprintf(want, sizeof(want), "%.9f", (double)sum_ns / 1e9);
    cr_expect_eq(sample(out.data, "ringd_request_duration_seconds_sum{route=\"users\"}"), strtod(want, NULL));
    buf_free(&out);
    for (unsigned w = 0; w < WRITERS; w++)
        free(sh.blocks[w]);
}

Test(metrics, concurrent_render_monotonic_and_exact, .timeout = 300)
{
    run_concurrent(scraper_render, "render");
}

Test(metrics, concurrent_sum_monotonic_and_exact, .timeout = 300)
{
    run_concurrent(scraper_sum, "sum");
}

/* The checkers themselves catch what they look for (so the tests above can fail). */
Test(metrics, checkers_catch_violations)
{
    double a[3] = {1, 5, 7}, b[3] = {1, 4, 8};
    cr_assert_eq(first_decrease(a, b, 3), 1);
    cr_assert_eq(first_decrease(b, b, 3), -1);

    struct metrics_shard *m = new_block();
    struct metrics_shard *blocks[1] = {m};
    struct metrics_scrape sc = {.shards = blocks, .nshards = 1};
    metrics_observe(m, ROUTE_USERS, 30000, 2);
    struct buf out = {0};
    metrics_render(&out, &sc);
    buf_append(&out, "", 1);
    cr_assert_null(hist_violation(out.data, "users"));
    /* Corrupt the text: _count no longer matches +Inf. */
    char *p = strstr(out.data, "ringd_request_duration_seconds_count{route=\"users\"} 2");
    cr_assert_not_null(p);
    p[strlen("ringd_request_duration_seconds_count{route=\"users\"} ")] = '3';
    cr_assert_str_eq(hist_violation(out.data, "users"), "_count differs from the +Inf bucket");
    buf_free(&out);
    free(m);
}

/* ---------- single-threaded behaviour ---------- */

Test(metrics, code_of_maps_every_slot)
{
    static const struct {
        int status;
        enum metrics_code code;
    } map[] = {
        {200, CODE_200},   {400, CODE_400},   {401, CODE_401},   {404, CODE_404},   {405, CODE_405},
        {408, CODE_408},   {413, CODE_413},   {414, CODE_414},   {417, CODE_417},   {431, CODE_431},
        {500, CODE_500},   {501, CODE_501},   {503, CODE_503},   {505, CODE_505},   {0, CODE_OTHER},   {-1, CODE_OTHER},  {100, CODE_OTHER},
        {101, CODE_OTHER}, {201, CODE_OTHER}, {204, CODE_OTHER}, {301, CODE_OTHER}, {402, CODE_OTHER},
        {429, CODE_OTHER}, {502, CODE_OTHER}, {504, CODE_OTHER}, {599, CODE_OTHER}, {1000, CODE_OTHER},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        cr_expect_eq(metrics_code_of(map[i].status), map[i].code, "status %d", map[i].status);
    /* Every named slot is reachable from exactly one status. */
    bool seen[CODE__COUNT] = {0};
    for (int st = -5; st < 1000; st++)
        if (metrics_code_of(st) != CODE_OTHER) {
            cr_expect_not(seen[metrics_code_of(st)], "two statuses map to slot %d", metrics_code_of(st));
            seen[metrics_code_of(st)] = true;
        }
    for (int c = 0; c < CODE_OTHER; c++)
        cr_expect(seen[c], "slot %d unreachable", c);
}

Test(metrics, observe_bucket_bounds_are_inclusive)
{
    struct metrics_shard *m = new_block();
    struct metrics_shard *blocks[1] = {m};
    struct metrics_scrape sc = {.shards = blocks, .nshards = 1};
    metrics_observe(m, ROUTE_USER, 0, 1);              /* le 2.5e-05 */
    metrics_observe(m, ROUTE_USER, 25000, 1);          /* le 2.5e-05: bounds are inclusive */
    metrics_observe(m, ROUTE_USER, 25001, 1);          /* le 5e-05 */
    metrics_observe(m, ROUTE_USER, 1000000, 2);        /* le 0.001, twice */
    metrics_observe(m, ROUTE_USER, 10000000000ull, 1); /* le 10 */
    metrics_observe(m, ROUTE_USER, 10000000001ull, 1); /* +Inf only */
    struct buf out = {0};
    metrics_render(&out, &sc);
    buf_append(&out, "", 1);
    const char *t = out.data;
    cr_expect_eq(bucket(t, "user", "2.5e-05"), 2);
    cr_expect_eq(bucket(t, "user", "5e-05"), 3);
    cr_expect_eq(bucket(t, "user", "0.0005"), 3);
    cr_expect_eq(bucket(t, "user", "0.001"), 5);
    cr_expect_eq(bucket(t, "user", "1"), 5);
    cr_expect_eq(bucket(t, "user", "10"), 6);
    cr_expect_eq(bucket(t, "user", "+Inf"), 7);
    cr_expect_eq(hist_count(t, "user"), 7);
    cr_expect_eq(sample(t, "ringd_request_duration_seconds_sum{route=\"user\"}"),
                 (25000.0 + 25001 + 2000000 + 10000000000.0 + 10000000001.0) / 1e9);
    cr_expect_eq(hist_count(t, "users"), 0);
    buf_free(&out);
    free(m);
}

/* Whether text has "# HELP name " and "# TYPE name type\n". */
static bool has_family(const char *text, const char *name, const char *type)
{
    char help[200], typ[200];
    snprintf(help, sizeof(help), "# HELP %s ", name);
    snprintf(typ, sizeof(typ), "# TYPE %s %s\n", name, type);
    return strstr(text, help) != NULL && strstr(text, typ) != NULL;
}

Test(metrics, exposition_shape)
{
    struct metrics_shard *a = new_block(), *b = new_block();
    struct metrics_shard *blocks[2] = {a, b};
    struct metrics_scrape sc = {.shards = blocks, .nshards = 2, .store_used_bytes = 4096, .store_map_bytes = 1 << 20,
                                .index_pin_seconds = 1.5, .index_pin_max_seconds = 2.25};
    METRIC_ADD(a->store_overlay_lookups, 4);
    METRIC_ADD(b->store_overlay_lookups, 6);
    METRIC_ADD(b->store_index_fallbacks, 2);
    METRIC_ADD(a->store_changed_lookups, 7);
    METRIC_SET(a->store_overlay_gaps, 1);
    METRIC_ADD(a->conns_accepted, 3);
    METRIC_ADD(b->conns_accepted, 5);
    METRIC_SET(b->conns_active, 2);
    METRIC_INC(a->requests[PROTO_HTTP1][ROUTE_OTHER][CODE_408]);
    METRIC_SET(a->store_txn_id, 7);
    METRIC_SET(b->store_txn_id, 9);
    struct buf out = {0};
    metrics_render(&out, &sc);
    buf_append(&out, "", 1);
    const char *t = out.data;

    static const struct {
        const char *name, *type;
    } families[] = {
        {"ringd_requests_processed_total", "counter"},
        {"ringd_request_duration_seconds", "histogram"},
        {"ringd_connections_active", "gauge"},
        {"ringd_connections_accepted_total", "counter"},
        {"ringd_connections_closed_total", "counter"},
        {"ringd_bytes_received_total", "counter"},
        {"ringd_bytes_sent_total", "counter"},
        {"ringd_store_lookups_total", "counter"},
        {"ringd_store_txn_renewals_total", "counter"},
        {"ringd_store_last_txn_id", "gauge"},
        {"ringd_store_map_used_bytes", "gauge"},
        {"ringd_store_index_overlay_lookups_total", "counter"},
        {"ringd_store_index_fallbacks_total", "counter"},
        {"ringd_store_index_changed_lookups_total", "counter"},
        {"ringd_store_index_overlay_gaps_total", "counter"},
        {"ringd_store_index_pin_seconds", "gauge"},
        {"ringd_store_index_pin_max_seconds", "gauge"},
        {"ringd_uring_submit_calls_total", "counter"},
        {"ringd_uring_cqes_total", "counter"},
        {"ringd_uring_cq_overflows_total", "counter"},
        {"ringd_recv_enobufs_total", "counter"},
        {"ringd_http2_streams_opened_total", "counter"},
        {"ringd_http2_resets_received_total", "counter"},
        {"ringd_http2_goaways_sent_total", "counter"},
        {"ringd_shards", "gauge"},
        {"ringd_shards_ready", "gauge"},
        {"ringd_access_log_dropped_total", "counter"},
        {"ringd_build_info", "gauge"},
        {"process_cpu_seconds_total", "counter"},
        {"process_resident_memory_bytes", "gauge"},
        {"process_virtual_memory_bytes", "gauge"},
        {"process_open_fds", "gauge"},
        {"process_max_fds", "gauge"},
        {"process_start_time_seconds", "gauge"},
        {"process_threads", "gauge"},
    };
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        cr_expect(has_family(t, families[i].name, families[i].type), "family %s (%s) lacks HELP/TYPE", families[i].name,
                  families[i].type);

    /* Every sample belongs to a family announced before it by a TYPE line. */
    for (const char *line = t; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        cr_assert_not_null(nl, "the text ends with a newline");
        if (*line != '#') {
            char name[128];
            size_t n = strcspn(line, "{ ");
            cr_assert_lt(n, sizeof(name));
            memcpy(name, line, n);
            name[n] = '\0';
            for (const char *suf[] = {"_bucket", "_sum", "_count", NULL}, **s = suf; *s != NULL; s++) {
                size_t sl = strlen(*s);
                if (n > sl && strcmp(name + n - sl, *s) == 0 && strstr(name, "ringd_request_duration_seconds") == name)
                    name[n - sl] = '\0';
            }
            char want[160];
            snprintf(want, sizeof(want), "# TYPE %s ", name);
            const char *ty = strstr(t, want);
            cr_expect(ty != NULL && ty < line, "sample %.*s has no TYPE before it", (int)(nl - line), line);
        }
        line = nl + 1;
    }

    /* Per-shard series, summed series, gauges. */
    cr_expect_eq(sample(t, "ringd_connections_accepted_total{shard=\"0\"}"), 3);
    cr_expect_eq(sample(t, "ringd_connections_accepted_total{shard=\"1\"}"), 5);
    cr_expect_eq(sample(t, "ringd_connections_active{shard=\"0\"}"), 0);
    cr_expect_eq(sample(t, "ringd_connections_active{shard=\"1\"}"), 2);
    cr_expect_eq(sample(t, "ringd_store_last_txn_id"), 9);
    cr_expect_eq(sample(t, "ringd_store_map_used_bytes"), 4096);
    cr_expect_eq(sample(t, "ringd_store_index_overlay_lookups_total"), 10);
    cr_expect_eq(sample(t, "ringd_store_index_fallbacks_total"), 2);
    cr_expect_eq(sample(t, "ringd_store_index_changed_lookups_total"), 7);
    cr_expect_eq(sample(t, "ringd_store_index_overlay_gaps_total"), 1);
    cr_expect_eq(sample(t, "ringd_store_index_pin_seconds"), 1.5);
    cr_expect_eq(sample(t, "ringd_store_index_pin_max_seconds"), 2.25);
    cr_expect_eq(sample(t, "ringd_connections_closed_total{reason=\"idle_timeout\"}"), 0);
    /* The pairs the router produces are there from the start (at 0); other pairs once non-zero. */
    cr_expect_eq(sample(t, "ringd_requests_processed_total{protocol=\"http1\",route=\"users\",code=\"200\"}"), 0);
    cr_expect_eq(sample(t, "ringd_requests_processed_total{protocol=\"http1\",route=\"user\",code=\"401\"}"), 0);
    cr_expect_eq(sample(t, "ringd_requests_processed_total{protocol=\"http1\",route=\"other\",code=\"408\"}"), 1);
    cr_expect_eq(sample(t, "ringd_requests_processed_total{protocol=\"http1\",route=\"users\",code=\"431\"}"), -1);
    cr_expect_eq(sample(t, "ringd_requests_processed_total{protocol=\"http1\",route=\"other\",code=\"200\"}"), -1);
    /* No user ids or other unbounded labels: only the fixed label names appear. */
    for (const char *p = strchr(t, '{'); p != NULL; p = strchr(p + 1, '{')) {
        const char *lab = p + 1;
        while (*lab != '}') {
            size_t n = strcspn(lab, "=");
            bool known = false;
            for (const char *names[] = {"protocol", "route", "code", "le", "shard", "reason", "result", "version", "liburing",
                                        "lmdb", NULL},
                            **nm = names;
                 *nm != NULL; nm++)
                known |= strlen(*nm) == n && strncmp(*nm, lab, n) == 0;
            cr_expect(known, "unexpected label %.*s", (int)n, lab);
            const char *q = strchr(lab + n + 2, '"'); /* closing quote of the value */
            cr_assert_not_null(q);
            lab = q + 1;
            if (*lab == ',')
                lab++;
        }
    }
    cr_expect(strstr(t, "ringd_build_info{version=\"" RINGD_VERSION "\",liburing=\"") != NULL);
    cr_expect_gt(sample(t, "process_resident_memory_bytes"), 0);
    cr_expect_gt(sample(t, "process_open_fds"), 0);
    cr_expect_gt(sample(t, "process_threads"), 0);
    buf_free(&out);
    free(a);
    free(b);
}
