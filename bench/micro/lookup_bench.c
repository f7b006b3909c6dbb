/* lookup_bench.c - what a lookup costs a shard while a feed writes: ns per store_get, with the snapshot index
 * answering directly and with the index older than the reader's snapshot by K changed ids (change log overlay).
 *
 * Under `ringd follow` every shard's read transaction moves past the index's snapshot at each refresh, and
 * until the next index (at most one per second) every lookup first asks the overlay whether its id changed
 * since (store/changes.h). This measures that path on its own, with no network: one thread, one reader,
 * the store `ringd demo` makes (N users, ids 1..N), the index built by the indexer, then K ids of random
 * users rewritten in transactions of 50 (as the follower's group commits do) while the index stays where it
 * was (the indexer thread is told to look again only in an hour). Lookups are of uniformly random ids,
 * in turns of 8 with the shard's two prefetch stages first (a pipelined turn), or one at a time.
 *
 * A benchmark, not a test: it prints numbers and asserts nothing.
 * usage: lookup_bench [users] [lookups] [K ...]   (defaults: 100000 users, 20000000 lookups, K 0 1000 5000 20000)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/clock.h"
#include "store/changes.h"
#include "store/index.h"
#include "store/key.h"
#include "store/store.h"
#include "tests/support/tmpdir.h"

#define TURN 8   /* ids per pipelined turn, as --depth 8 gives the shard */
#define GROUP 50 /* ids per write transaction */

static uint64_t rng = 0x9E3779B97F4A7C15u;
static volatile uint64_t sink; /* keeps the record loads */

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "lookup_bench: %s: %s\n", what, mdb_strerror(rc));
    exit(1);
}

/* Rewrites k random users (their own values, so lookups stay valid) in transactions of GROUP, each logged. */
static void rewrite(struct store *st, uint64_t users, uint64_t k)
{
    struct store_changes ch = {0};
    struct buf copy = {0};
    for (uint64_t done = 0; done < k;) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
        if (rc != 0)
            die("begin", rc);
        for (unsigned i = 0; i < GROUP && done < k; i++, done++) {
            uint64_t id = 1 + next_rand() % users;
            size_t slot;
            MDB_val key, val;
            store_key_encode(id, &slot, &key);
            if ((rc = mdb_get(txn, st->users, &key, &val)) != 0)
                die("get", rc);
            copy.len = 0; /* val points into the map, which mdb_put may change under it */
            buf_append(&copy, val.mv_data, val.mv_size);
            MDB_val nv = {copy.len, copy.data};
            if ((rc = mdb_put(txn, st->users, &key, &nv, 0)) != 0)
                die("put", rc);
            store_changes_note(&ch, id);
        }
        if ((rc = store_commit(txn, st, &ch)) != 0)
            die("commit", rc);
        store_changes_clear(&ch);
    }
    buf_free(&copy);
    store_changes_free(&ch);
}

/* ns per lookup over n random ids; counts how the lookups were answered into via (NULL: not counted). */
static double run(struct store_reader *r, const uint64_t *ids, size_t n, bool turns, size_t *via)
{
    uint64_t sum = 0;
    uint64_t t0 = clock_now_ns();
    for (size_t i = 0; i < n; i += TURN) {
        size_t m = n - i < TURN ? n - i : TURN;
        if (turns) {
            for (size_t j = 0; j < m; j++)
                store_prefetch(r, ids[i + j]);
            for (size_t j = 0; j < m; j++)
                store_prefetch_record(r, ids[i + j]);
        }
        for (size_t j = 0; j < m; j++) {
            const char *v;
            size_t len;
            if (store_get(r, ids[i + j], &v, &len) == 0)
                sum += (unsigned char)v[len / 2];
            if (via != NULL)
                via[r->via]++;
        }
    }
    uint64_t t1 = clock_now_ns();
    sink += sum;
    return (double)(t1 - t0) / (double)n;
}

int main(int argc, char **argv)
{
    uint64_t users = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    size_t lookups = argc > 2 ? strtoull(argv[2], NULL, 10) : 20000000;
    uint64_t ks_default[] = {0, 1000, 5000, 20000};
    uint64_t ks[16];
    size_t nk = 0;
    for (int i = 3; i < argc && nk < 16; i++)
        ks[nk++] = strtoull(argv[i], NULL, 10);
    if (nk == 0) {
        memcpy(ks, ks_default, sizeof(ks_default));
        nk = sizeof(ks_default) / sizeof(ks_default[0]);
    }
    if (users == 0 || lookups == 0) {
        fprintf(stderr, "usage: lookup_bench [users] [lookups] [K ...]\n");
        return 2;
    }
    char dir[128];
    ts_mkdtemp(dir, sizeof(dir), "lookup-bench");
    char err[256];
    if (store_demo_create(dir, users, err, sizeof(err)) != 0) {
        fprintf(stderr, "lookup_bench: %s\n", err);
        return 1;
    }
    struct store st;
    if (store_open(&st, dir, false, false, err, sizeof(err)) != 0) {
        fprintf(stderr, "lookup_bench: %s\n", err);
        return 1;
    }
    struct store_indexer ix;
    int rc = store_indexer_start(&ix, &st, 1, 3600u * 1000u, 1024u << 20); /* looks again in an hour */
    if (rc != 0)
        die("indexer", rc);
    struct store_reader r;
    if ((rc = store_reader_open(&r, &st)) != 0)
        die("reader", rc);
    uint64_t *ids = malloc(lookups * sizeof(*ids));
    for (size_t i = 0; i < lookups; i++)
        ids[i] = 1 + next_rand() % users;

    printf("# lookup_bench: %" PRIu64 " users, %zu lookups per figure, ns per lookup (via: index / overlay / B-tree)\n", users,
           lookups);
    printf("%-8s %-10s %-10s %s\n", "changed", "turns_of_8", "one_by_one", "via (turns of 8)");
    uint64_t changed = 0;
    for (size_t k = 0; k < nk; k++) {
        if (ks[k] > changed) {
            rewrite(&st, users, ks[k] - changed);
            changed = ks[k];
        }
        r.index = store_indexer_acquire(&ix, 0);
        if ((rc = store_reader_refresh(&r)) != 0)
            die("refresh", rc);
        size_t via[4] = {0};
        run(&r, ids, lookups / 10, true, NULL); /* warm */
        double t8 = run(&r, ids, lookups, true, via);
        double t1 = run(&r, ids, lookups, false, NULL);
        printf("%-8" PRIu64 " %-10.1f %-10.1f %.1f%% / %.1f%% / %.1f%% (overlay %zu ids)\n", changed, t8, t1,
               100.0 * (double)via[STORE_VIA_INDEX] / (double)lookups, 100.0 * (double)via[STORE_VIA_OVERLAY] / (double)lookups,
               100.0 * (double)(via[STORE_VIA_FALLBACK] + via[STORE_VIA_LMDB]) / (double)lookups, r.overlay.n);
    }
    free(ids);
    store_reader_close(&r);
    store_indexer_leave(&ix, 0);
    store_indexer_stop(&ix);
    store_close(&st);
    ts_rmtree(dir);
    return 0;
}
