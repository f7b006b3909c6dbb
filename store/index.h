/* index.h - a read-only id -> record index over one LMDB snapshot, built off the shards and shared by them.
 *
 * Why: with a million users a B-tree lookup walks a branch page and a leaf
 * page scattered over a 131 MiB map: about ten dependent cache misses and two
 * TLB misses, ~1 µs on the VMs we measure on, which was a sixth of the whole
 * cost of a request. The index turns that into one load from a flat table in
 * huge pages plus the read of the value itself.
 *
 * What it holds: for every user of one snapshot (LMDB transaction id T), where
 * the record lives inside the environment's read-only map. It copies no
 * record: it is a few bytes per user (8 for ids that are dense, 16 per hash
 * slot otherwise, see index.c), kept next to the read transactions.
 *
 * Why it is safe: a pointer into the map is valid while some read transaction
 * of snapshot T is open, because LMDB never reuses a page a reader still
 * sees. Each index holds its own read transaction of T (its "pin") for as
 * long as it exists, i.e. until every shard has acquired its successor. A
 * shard on snapshot T uses it for every id; a shard on a newer snapshot S
 * uses it for the ids the change log (store/changes.h) says no transaction
 * in (T, S] touched, and asks LMDB for the others (once per change: the
 * shard's overlay keeps the answer until the id changes again), or for all
 * of them when the log cannot tell. The index is complete for T: an id it
 * lacks is not in T.
 *
 * The cost of the pin: while it holds T, pages freed after T are not reused,
 * so under writes the data file grows. A pin that holds back newer
 * snapshots longer than INDEX_MAX_PIN (index.c, 5 s) forces a rebuild
 * whatever the spacing below says; /metrics shows how long the current one
 * has been holding back (ringd_store_index_pin_seconds).
 *
 * Who builds it: the first one is built at start-up, before the shards run
 * (~50-250 ms per million users); then one background thread (the indexer)
 * keeps it current. It renews its own read
 * transaction every refresh interval, builds an index when the snapshot
 * changed (a cursor walk: ~50 ms per million users), publishes it, and frees
 * the previous one once every shard has acquired again (an epoch per shard:
 * a shard acquires at its refresh points and never holds an index pointer
 * across them). Builds are spaced at least max(1 s, 10 × the last build's
 * time) apart, so a store written continuously (`ringd follow`) costs at most
 * a tenth of a core; meanwhile lookups go through the older index and the
 * change log (above), and to LMDB for the ids changed since.
 */
#ifndef RINGD_STORE_INDEX_H
#define RINGD_STORE_INDEX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

struct store_index; /* one snapshot's index: opaque, immutable once published */

/* Per-shard acquisition epoch, on its own cache line (written by that shard only). */
struct store_index_seen {
    _Alignas(64) _Atomic uint64_t epoch;
};

/* The indexer: its thread, the published index, and figures for /metrics.
 * Every field after `_stop` is written by the indexer thread and read by any
 * thread with relaxed loads. */
struct store_indexer {
    struct store *store;
    unsigned nshards;
    unsigned refresh_ms;
    uint64_t max_bytes; /* an index that would need more is not built */
    pthread_t _thread;
    bool _started;
    pthread_mutex_t _mu;
    pthread_cond_t _cv;
    bool _stop;                        /* under _mu */
    MDB_txn *_txn;                     /* the indexer's read transaction, reset between looks */
    uint64_t _built_txn, _next_ns;     /* last snapshot looked at; no build before _next_ns */
    _Atomic(struct store_index *) _current;
    _Atomic uint64_t _epoch;           /* incremented after each publication */
    struct store_index_seen *_seen;    /* nshards entries */
    _Atomic uint64_t builds;           /* indexes built and published */
    _Atomic uint64_t skipped;          /* snapshots left unindexed (too large, or an LMDB error) */
    _Atomic uint64_t txn_id;           /* snapshot of the published index, 0 when none */
    _Atomic uint64_t entries;          /* users in it */
    _Atomic uint64_t bytes;            /* memory it takes */
    _Atomic uint64_t build_ns;         /* how long the last build took */
    _Atomic uint64_t pin_since_ns;     /* CLOCK_MONOTONIC since when the published index's snapshot is older than
                                          the newest (0: it is the newest, or no index) */
    _Atomic uint64_t pin_max_ns;       /* the longest any index's snapshot was held behind the newest */
};

/* Builds the first index of s (which must stay open until store_indexer_stop
 * returned) on the calling thread, then starts the indexer thread, for
 * nshards shards. max_bytes == 0 starts nothing: every acquire then returns
 * NULL. Returns 0, or an LMDB/errno code with nothing started. */
int store_indexer_start(struct store_indexer *ix, struct store *s, unsigned nshards, unsigned refresh_ms,
                        uint64_t max_bytes);

/* Stops and joins the thread and frees every index. Every shard must have
 * stopped looking up (its last acquire's pointer is freed here). Idempotent. */
void store_indexer_stop(struct store_indexer *ix);

/* Shard `shard`'s view of the newest index, or NULL. The pointer stays valid
 * until this shard's next store_indexer_acquire or store_indexer_leave: call
 * it only where the shard holds no pointer from the previous one (between
 * loop turns). Wait-free: two loads and a store. */
const struct store_index *store_indexer_acquire(struct store_indexer *ix, unsigned shard);

/* The shard stops using indexes for good (its thread ends): it never holds up
 * a free again. */
void store_indexer_leave(struct store_indexer *ix, unsigned shard);

/* Looks id up in idx for a reader whose transaction is snapshot txn_id.
 * Returns 0 with *val and *len pointing into the LMDB map (valid as long as that
 * reader's transaction stays at txn_id), MDB_NOTFOUND when snapshot txn_id has
 * no such user, or 1 when the index cannot answer (another snapshot, or a
 * record too large to describe): ask LMDB. */
int store_index_get(const struct store_index *idx, uint64_t txn_id, uint64_t id, const char **val, size_t *len);

/* The snapshot (LMDB transaction id) idx describes. idx must not be NULL. */
uint64_t store_index_txn(const struct store_index *idx);

/* How long the published index's snapshot has been older than the store's
 * newest (as the indexer last looked), in ns; 0 while it is the newest. */
uint64_t store_indexer_pin_ns(struct store_indexer *ix);

/* Prefetching, for a shard that knows the ids of a turn's requests before it
 * answers them: stage 1 starts loading id's index entry into the cache; stage
 * 2, some time later, reads that entry and starts loading the record itself.
 * Both are hints: no effect when idx is NULL or not of snapshot txn_id, no
 * fault for any id. Issued for several ids in a row, their cache misses
 * overlap instead of following one another. */
void store_index_prefetch(const struct store_index *idx, uint64_t id);
void store_index_prefetch_record(const struct store_index *idx, uint64_t txn_id, uint64_t id);

#endif
