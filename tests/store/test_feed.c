/* test_feed.c - store/feed.c: the feed's keys in the meta table, the follower's lock and heartbeat, the lag serve shows. */
#include "store/feed.h"

#include "tests/support/tmpdir.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char tmp[64], db[128];

static void setup(void)
{
    ts_mkdtemp(tmp, sizeof(tmp), "feed");
    snprintf(db, sizeof(db), "%s/db", tmp);
}

static void teardown(void)
{
    ts_rmtree(tmp);
}

static int write_feed(struct store *st, const struct store_feed *f)
{
    MDB_txn *txn;
    cr_assert_eq(mdb_txn_begin(st->env, NULL, 0, &txn), 0);
    int rc = store_feed_write(txn, st, f);
    cr_assert_eq(rc, 0);
    return mdb_txn_commit(txn);
}

static void read_feed(struct store *st, struct store_feed *f)
{
    MDB_txn *txn;
    cr_assert_eq(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn), 0);
    cr_assert_eq(store_feed_read(txn, st, f), 0);
    mdb_txn_abort(txn);
}

Test(feed, keys_round_trip, .init = setup, .fini = teardown)
{
    struct store st;
    char err[256];
    cr_assert_eq(store_open(&st, db, false, true, err, sizeof(err)), 0, "%s", err);
    struct store_feed f;
    read_feed(&st, &f);
    cr_assert(!f.present, "a new store has no feed");
    cr_assert_str_eq(f.slot, "");

    struct store_feed pending = {0};
    strcpy(pending.slot, "ringd");
    strcpy(pending.table, "public.users");
    cr_assert_eq(write_feed(&st, &pending), 0);
    read_feed(&st, &f);
    cr_assert(!f.present, "copy pending: not a feed yet");
    cr_assert_str_eq(f.slot, "ringd");

    struct store_feed w = {.present = true,
                           .lsn = 0x1234ABCDull,
                           .commit_us = 111,
                           .synced_us = 222,
                           .caught_up = true,
                           .txns = 5,
                           .rows = 50,
                           .skipped = 2};
    strcpy(w.slot, "ringd");
    strcpy(w.table, "public.users");
    cr_assert_eq(write_feed(&st, &w), 0);
    read_feed(&st, &f);
    cr_assert(f.present && f.caught_up);
    cr_assert_eq(f.lsn, 0x1234ABCDull);
    cr_assert_eq(f.commit_us, 111);
    cr_assert_eq(f.synced_us, 222);
    cr_assert_eq(f.txns, 5);
    cr_assert_eq(f.rows, 50);
    cr_assert_eq(f.skipped, 2);
    cr_assert_str_eq(f.table, "public.users");
    store_close(&st);

    /* The server (read-only) reads the same. */
    cr_assert_eq(store_open(&st, db, true, false, err, sizeof(err)), 0, "%s", err);
    read_feed(&st, &f);
    cr_assert_eq(f.lsn, 0x1234ABCDull);
    store_close(&st);
}

Test(feed, lock_probe_heartbeat, .init = setup, .fini = teardown)
{
    struct store st;
    char err[256];
    cr_assert_eq(store_open(&st, db, false, true, err, sizeof(err)), 0, "%s", err);
    store_close(&st);
    bool alive;
    uint64_t hb;
    store_feed_probe(db, &alive, &hb);
    cr_assert(!alive && hb == 0, "no lock file: no follower");
    int fd = store_feed_lock(db);
    cr_assert_geq(fd, 0);
    cr_assert_eq(store_feed_lock(db), -EBUSY, "a second follower is refused");
    store_feed_probe(db, &alive, &hb);
    cr_assert(alive, "held");
    uint64_t before = hb;
    usleep(20000);
    store_feed_heartbeat(fd);
    store_feed_probe(db, &alive, &hb);
    cr_assert_gt(hb, before, "the heartbeat moves the mtime");
    close(fd);
    store_feed_probe(db, &alive, &hb);
    cr_assert(!alive, "released with the process's fd");
    fd = store_feed_lock(db);
    cr_assert_geq(fd, 0, "taken again");
    close(fd);
}

Test(feed, view_and_lag)
{
    struct store_feed f = {.present = true, .lsn = 9, .commit_us = 1000000, .synced_us = 5000000, .caught_up = true};
    struct store_feed_view v;
    store_feed_view_of(&f, true, 0, &v);
    cr_assert_eq(v.since_us, 0, "alive and caught up");
    cr_assert_eq(store_feed_lag_seconds(&v, 99000000), 0);
    /* Dead while caught up: current until its last heartbeat. */
    store_feed_view_of(&f, false, 7000000, &v);
    cr_assert_eq(v.since_us, 7000000);
    cr_assert_float_eq(store_feed_lag_seconds(&v, 9500000), 2.5, 1e-9);
    store_feed_view_of(&f, false, 1000, &v);
    cr_assert_eq(v.since_us, 5000000, "an older heartbeat does not count");
    /* Behind (alive or not): the stored time, heartbeats do not count. */
    f.caught_up = false;
    store_feed_view_of(&f, true, 8000000, &v);
    cr_assert_eq(v.since_us, 5000000);
    cr_assert_float_eq(store_feed_lag_seconds(&v, 6000000), 1.0, 1e-9);
    cr_assert_eq(store_feed_lag_seconds(&v, 4000000), 0, "a clock behind reads as no lag");
    f.present = false;
    store_feed_view_of(&f, true, 0, &v);
    cr_assert(!v.present);
    cr_assert_eq(store_feed_lag_seconds(&v, 6000000), 0);
}
