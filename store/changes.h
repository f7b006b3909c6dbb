/* changes.h - the change log: which user ids each write transaction changed, so a reader on a newer snapshot can still use an older snapshot's index.
 *
 * Why: the snapshot index (store/index.h) describes one snapshot T. Under a
 * feed that commits continuously every shard's read transaction moves past T
 * at every refresh, and without more knowledge every lookup would walk the
 * B-tree again. But a record that no transaction after T touched is the same
 * record, at the same place in the map, in every later snapshot, as long as
 * snapshot T stays pinned by a read transaction (LMDB never reuses a page a
 * reader still sees; the indexer keeps one open per index). So a shard on
 * snapshot S > T needs only the set of ids changed in (T, S]: for those it
 * asks LMDB, for every other id the index of T answers.
 *
 * Layout: the named database "changes" (MDB_INTEGERKEY). Key: the id of the
 * write transaction (mdb_txn_id of a write transaction is the snapshot id
 * readers see once it committed). Value: the user ids it put or deleted,
 * native-endian uint64 each, in any order, possibly repeated; empty when it
 * changed no user (a feed state write); exactly one id 0 ("STORE_CHANGES_ALL")
 * when any id may have changed (a drop, --replace, TRUNCATE, or more than
 * STORE_CHANGES_MAX_IDS ids).
 *
 * Completeness: every write transaction a ringd writer commits goes through
 * store_commit, which writes its entry. LMDB gives each committed write
 * transaction the next id, so a reader that wants the changes of (T, S]
 * requires every key T+1 .. S: a missing one is a transaction of a writer
 * that keeps no log (an older ringd), or an entry already trimmed, and the
 * reader then answers every lookup from LMDB until the next index. Missing
 * knowledge therefore costs speed, never correctness.
 *
 * Trimming: each commit deletes the entries at or below its own id minus
 * STORE_CHANGES_KEEP, so the log holds at most that many entries. Indexes are
 * rebuilt within seconds, long before their snapshot leaves the window.
 */
#ifndef RINGD_STORE_CHANGES_H
#define RINGD_STORE_CHANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <lmdb.h>
#include <stdint.h>

struct store; /* store/store.h, which includes this header */

#define STORE_DB_CHANGES "changes"
#define STORE_CHANGES_KEEP 65536u    /* entries (write transactions) kept */
#define STORE_CHANGES_MAX_IDS 4096u  /* ids one entry lists; more and it says "any" */
#define STORE_CHANGES_ALL UINT64_C(0) /* the one id of an entry that says "any id may have changed" */

/* Writer side: the ids one write transaction changed, collected as it goes. */
struct store_changes {
    uint64_t *ids; /* malloc'd; n used of cap */
    size_t n, cap;
    bool all; /* any id may have changed */
};

/* Notes that the transaction put or deleted user id. Past
 * STORE_CHANGES_MAX_IDS ids the set becomes "any" (and stops growing). */
void store_changes_note(struct store_changes *c, uint64_t id);

/* Notes that any id may have changed (a drop of the users table). */
void store_changes_note_all(struct store_changes *c);

/* Forgets what was noted (after an abort); keeps the memory. */
void store_changes_clear(struct store_changes *c);

/* Frees the memory. The struct may be reused afterwards (zeroed). */
void store_changes_free(struct store_changes *c);

/* Commits the write transaction txn of store s after writing its change-log
 * entry (c's ids; c NULL: the transaction changed no user) and trimming the
 * log. A store without the change-log table (opened read-only) commits
 * without either. On an error of the entry, the transaction is aborted.
 * Either way txn is ended and c cleared. Returns 0 or an LMDB code. */
int store_commit(MDB_txn *txn, const struct store *s, struct store_changes *c);

/* store_commit keeping the newest `keep` entries instead of STORE_CHANGES_KEEP (tests). */
int store_commit_keep(MDB_txn *txn, const struct store *s, struct store_changes *c, uint64_t keep);

/* What a shard learnt of one changed id, kept beside its overlay slot: its
 * value in the shard's snapshot at the first lookup after the id's last
 * change (one B-tree lookup per change, not one per request). The pointer
 * stays valid in every later snapshot up to the next change of the id (the
 * sync then forgets it): the page it points into is visible in a snapshot
 * newer than the overlay's base, and LMDB reuses no page freed after the
 * base while the index of the base pins it (index.h). */
struct store_overlay_val {
    const char *data; /* NULL: not looked up since the id's last change */
    size_t len;       /* STORE_OVERLAY_ABSENT: the id has no record (deleted) */
};
#define STORE_OVERLAY_ABSENT SIZE_MAX

/* Reader side: the set of ids changed in (base, upto], one shard's, rebuilt
 * from the change log at its refresh points (never on the request path). */
struct store_overlay {
    uint64_t base;   /* index snapshot the set is relative to (0: none yet) */
    uint64_t upto;   /* the set holds the changes of (base, upto] */
    bool usable;     /* false: the log could not tell (a gap, an "any", too many ids) */
    uint64_t *slots; /* open addressing, 0 = empty slot; cap a power of two, n ids, load <= 1/2 */
    struct store_overlay_val *vals; /* cap entries, beside slots: each changed id's value once looked up */
    size_t cap, n;
    /* A Bloom filter over the same ids in front of slots: cap / 8 words (16+
     * bits per id), two bits per id in one word. Most lookups are of ids that
     * did not change, and slots (16 bytes per id) does not stay in the cache
     * between a shard's turns: under 5,000 updates/s its probe took 9 % of
     * serve's CPU samples (bench/follow.sh with perf), nearly all of it the
     * first load. The filter is an eighth of the size and answers "not
     * changed" with one load for all but ~2 % of the unchanged ids: 2-6 % of
     * the samples, still nearly all of it that first load (the filter is no
     * more cached between turns than the slots): store_prefetch starts that
     * load with the index entry's (store_overlay_prefetch). */
    uint64_t *filter;
    uint64_t gaps; /* times the log could not tell (for /metrics, written by the owner only) */
};

/* Maximum ids an overlay holds; more and it gives up until the next index. */
#define STORE_OVERLAY_MAX_IDS 65536u

/* Brings o to the changes of (base, upto] as the change log in txn (a read
 * transaction whose snapshot is upto) says: incrementally when o already
 * covers (base, u] with u <= upto, else from scratch. Leaves o unusable
 * (every lookup then goes to LMDB) when upto < base, when s keeps no change
 * log, or when the log does not cover the range. Never fails otherwise. */
void store_overlay_sync(struct store_overlay *o, MDB_txn *txn, const struct store *s, uint64_t base, uint64_t upto);

/* Whether o answers for an index of snapshot base and a reader on snapshot txn. */
static inline bool store_overlay_covers(const struct store_overlay *o, uint64_t base, uint64_t txn)
{
    return o->usable && o->base == base && o->upto == txn;
}

/* The cached value of id when it changed in (base, upto] (its data NULL
 * until the shard stores what LMDB answered), NULL when it did not change.
 * Always NULL for id 0, which the set cannot hold (0 marks an empty slot):
 * the reader sends id 0 to LMDB. Only meaningful while store_overlay_covers. */
struct store_overlay_val *store_overlay_find(struct store_overlay *o, uint64_t id);

/* Starts loading the filter word store_overlay_find(o, id) will read, for a
 * shard that prefetches a turn's index entries (store_prefetch). */
void store_overlay_prefetch(const struct store_overlay *o, uint64_t id);

/* Frees o's memory; o is then an empty, unusable overlay. */
void store_overlay_free(struct store_overlay *o);

#endif
