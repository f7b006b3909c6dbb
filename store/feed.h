/* feed.h - a feed's state under metadata keys: written by `ringd follow` in every apply, read by `serve` for /metrics and /readyz.
 *
 * A writer that follows a source (PostgreSQL logical replication) keeps, in
 * the "meta" named database of the same environment, where it is: the end
 * LSN of the last source transaction it applied, that transaction's commit
 * time, and when it last knew it had applied everything the source had
 * sent. These keys are written in the very LMDB transaction that applies the
 * rows, so the store and its position never disagree, and `serve` reports
 * them without talking to the follower.
 *
 * Whether a follower is alive is not state but a fact about a process, so it
 * is not in LMDB: the follower holds an open file description lock on
 * DIR/follow.lock for its whole life (a second follower of the same store is
 * refused) and touches the file's mtime, at most once a second, while it is
 * caught up. A reader tests the lock with F_OFD_GETLK, which takes nothing.
 *
 * Values are native-endian uint64 (8 bytes) or text (slot, table).
 */
#ifndef RINGD_STORE_FEED_H
#define RINGD_STORE_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define STORE_FEED_LOCK_FILE "follow.lock"

struct store_feed {
    bool present;       /* feed.lsn exists: the initial copy has committed */
    uint64_t lsn;       /* end LSN of the last applied source transaction (after the copy: the slot's consistent point) */
    uint64_t commit_us; /* that transaction's commit time at the source, Unix µs (after the copy: the copy's start) */
    uint64_t synced_us; /* the last moment the follower knew it had applied all the source had sent, Unix µs */
    bool caught_up;     /* at that write nothing was left to apply */
    uint64_t txns;      /* source transactions applied that changed the table */
    uint64_t rows;      /* row changes applied (inserts, updates, deletes; a truncate counts one) */
    uint64_t skipped;   /* rows left out: id not a positive integer, or not a valid record */
    char slot[64];      /* replication slot the store is fed from ("" when none) */
    char table[160];    /* "schema.name" of the source table ("" when none) */
};

/* Reads the feed keys visible to txn (read or write) into f; a store never
 * fed leaves f zeroed (present false, slot ""). Returns 0 or an LMDB code. */
int store_feed_read(MDB_txn *txn, const struct store *s, struct store_feed *f);

/* Writes every key of f in txn (a write transaction); present is implied
 * (feed.lsn is written) unless f->present is false, in which case only slot
 * and table are written and feed.lsn is deleted: "copy not done yet".
 * Returns 0 or an LMDB code. */
int store_feed_write(MDB_txn *txn, const struct store *s, const struct store_feed *f);

/* Follower side: takes the lock on DIR/follow.lock. Returns the open fd
 * (keep it open for the process's life), -EBUSY when another process holds
 * it, or another -errno. */
int store_feed_lock(const char *dir);

/* Follower side: marks "alive and caught up now" (futimens on the lock fd). */
void store_feed_heartbeat(int lock_fd);

/* Reader side: whether a follower holds DIR/follow.lock, and its last
 * heartbeat (Unix µs, 0 when there is no lock file). Takes no lock. */
void store_feed_probe(const char *dir, bool *alive, uint64_t *heartbeat_us);

/* What `serve` shows, refreshed at its refresh points (never per request). */
struct store_feed_view {
    bool present;
    bool alive; /* a follower holds the lock */
    uint64_t lsn;
    uint64_t commit_us;
    uint64_t since_us; /* 0: caught up (alive and nothing left); else the last moment it was known caught up */
    uint64_t skipped;
    uint64_t txns; /* source transactions applied */
    uint64_t rows; /* row changes applied, the copy's rows included */
};

/* The view of f for a follower that is (or not) alive with its heartbeat.
 * Caught up and alive: since_us = 0. Otherwise since_us is the last moment
 * the store was known to hold everything: the stored synced time, or the
 * heartbeat if later and the follower was caught up when it stopped. */
void store_feed_view_of(const struct store_feed *f, bool alive, uint64_t heartbeat_us, struct store_feed_view *v);

/* Fills v from r's snapshot and DIR/follow.lock. A parked reader is renewed
 * for the read and parked again (pointers from store_get die either way). */
void store_feed_observe(struct store_reader *r, const char *dir, struct store_feed_view *v);

/* Seconds the store may be behind its source at now_us (0 while caught up). */
double store_feed_lag_seconds(const struct store_feed_view *v, uint64_t now_us);

/* Wall-clock time, Unix µs. */
uint64_t store_feed_now_us(void);

#endif
