/* metrics_bench.c - what counting a request costs on ringd's request path, in ns per request.
 *
 * Per request the path does what shard_count_request does (core/shard.c):
 *   METRIC_INC(m->requests[proto][route][metrics_code_of(status)]); answered[route]++;
 * and once per loop turn what observe_answered does: one clock read and a
 * metrics_observe per route answered in that turn. The turn's cost is spread
 * over the requests of that turn, so it is measured for several batch sizes.
 * A baseline loop walks the same request mix and reads the clock once per turn
 * (the loop's clock_update, which happens with or without metrics) without
 * counting; the difference is what metrics cost the request path.
 *
 * A benchmark, not a test: it prints numbers and asserts nothing.
 * usage: metrics_bench [iterations] [batch ...]   (defaults: 100000000, batches 1 16 64)
 *        metrics_bench ir counted|baseline ITERATIONS BATCH   (one pass, for valgrind instruction counts)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/metrics.h"

#define MIX 1024 /* a repeating request mix: mostly 200 on /users, some 404, 401, other */

static enum metrics_route mix_route[MIX];
static int mix_status[MIX];

static void make_mix(void)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < MIX; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned p = (unsigned)(x % 100);
        if (p < 70) {
            mix_route[i] = ROUTE_USERS, mix_status[i] = 200;
        } else if (p < 85) {
            mix_route[i] = ROUTE_USERS, mix_status[i] = 404;
        } else if (p < 95) {
            mix_route[i] = ROUTE_USER, mix_status[i] = 401;
        } else {
            mix_route[i] = ROUTE_OTHER, mix_status[i] = 404;
        }
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The shard state the hooks touch (struct shard's answered[] / answered_any / turn_start_ns). */
struct turn {
    uint32_t answered[ROUTE__COUNT];
    int answered_any;
    uint64_t turn_start_ns;
};

static volatile uint64_t sink;

/* Baseline: the same loop, same mix, same turn structure, no counting. */
__attribute__((noinline)) static double run_baseline(uint64_t iters, unsigned batch)
{
    uint64_t acc = 0;
    double t0 = now_s();
    for (uint64_t i = 0; i < iters;) {
        acc += clock_now_ns(); /* the loop's clock_update at reap happens with or without metrics */
        for (unsigned k = 0; k < batch && i < iters; k++, i++) {
            unsigned j = (unsigned)(i & (MIX - 1));
            acc += (uint64_t)mix_route[j] + (uint64_t)mix_status[j];
        }
        __asm__ volatile("" ::: "memory");
    }
    double t = now_s() - t0;
    sink = acc;
    return t;
}

__attribute__((noinline)) static double run_counted(struct metrics_shard *m, struct turn *s, uint64_t iters, unsigned batch)
{
    double t0 = now_s();
    for (uint64_t i = 0; i < iters;) {
        s->turn_start_ns = clock_now_ns(); /* the loop's clock_update at reap (one read per turn) */
        for (unsigned k = 0; k < batch && i < iters; k++, i++) {
            unsigned j = (unsigned)(i & (MIX - 1));
            /* shard_count_request */
            METRIC_INC(m->requests[PROTO_HTTP1][mix_route[j]][metrics_code_of(mix_status[j])]);
            s->answered[mix_route[j]]++;
            s->answered_any = 1;
        }
        /* observe_answered, once per turn */
        if (s->answered_any) {
            uint64_t ns = clock_now_ns() - s->turn_start_ns;
            for (int r = 0; r < ROUTE__COUNT; r++)
                if (s->answered[r] != 0) {
                    metrics_observe(m, (enum metrics_route)r, ns, s->answered[r]);
                    s->answered[r] = 0;
                }
            s->answered_any = 0;
        }
    }
    return now_s() - t0;
}

int main(int argc, char **argv)
{
    make_mix();
    if (argc == 5 && strcmp(argv[1], "ir") == 0) {
        struct metrics_shard *m = aligned_alloc(64, sizeof(*m));
        memset(m, 0, sizeof(*m));
        struct turn s;
        memset(&s, 0, sizeof(s));
        uint64_t n = strtoull(argv[3], NULL, 10);
        unsigned batch = (unsigned)strtoul(argv[4], NULL, 10);
        if (strcmp(argv[2], "counted") == 0)
            run_counted(m, &s, n, batch);
        else
            run_baseline(n, batch);
        free(m);
        return 0;
    }
    uint64_t iters = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000000ull;
    unsigned batches[16] = {1, 16, 64};
    unsigned nb = 3;
    if (argc > 2) {
        nb = 0;
        for (int a = 2; a < argc && nb < 16; a++)
            batches[nb++] = (unsigned)strtoul(argv[a], NULL, 10);
    }
    struct metrics_shard *m = aligned_alloc(64, sizeof(*m));
    memset(m, 0, sizeof(*m));
    struct turn s;
    memset(&s, 0, sizeof(s));

    printf("# ringd metrics micro-benchmark: %llu requests per run, ns per counted request\n", (unsigned long long)iters);
    printf("%-18s %12s %12s %12s\n", "requests/turn", "counted", "baseline", "metrics");
    for (unsigned b = 0; b < nb; b++) {
        /* Warm-up, then best of 3 (least disturbed by the rest of the machine). */
        run_counted(m, &s, iters / 10 + 1, batches[b]);
        double best_c = 1e99, best_b = 1e99;
        for (int rep = 0; rep < 3; rep++) {
            double c = run_counted(m, &s, iters, batches[b]);
            double z = run_baseline(iters, batches[b]);
            best_c = c < best_c ? c : best_c;
            best_b = z < best_b ? z : best_b;
        }
        double c_ns = best_c * 1e9 / (double)iters, b_ns = best_b * 1e9 / (double)iters;
        printf("%-18u %9.2f ns %9.2f ns %9.2f ns/op\n", batches[b], c_ns, b_ns, c_ns - b_ns);
    }

    /* For scale: one whole scrape (all shards summed, text rendered, /proc read). */
    struct metrics_shard *blocks[2] = {m, m};
    struct metrics_scrape sc = {.shards = blocks, .nshards = 2};
    struct buf out = {0};
    int scrapes = 2000;
    double t0 = now_s();
    for (int i = 0; i < scrapes; i++) {
        out.len = 0;
        metrics_render(&out, &sc);
    }
    double t = now_s() - t0;
    printf("# one scrape (2 shards): %.1f us, %zu bytes of text\n", t * 1e6 / scrapes, out.len);
    buf_free(&out);
    free(m);
    return 0;
}
