/* test_changes.c - store/changes.c: every commit's change-log entry, trimming, and the reader's overlay (gaps, "any", older writers). */
#include "store/changes.h"
#include "store/key.h"
#include "store/store.h"

#include "tests/support/tmpdir.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tmp[64];
static char db[128];
static struct store st;

static void setup(void)
{
    char err[512];
    ts_mkdtemp(tmp, sizeof(tmp), "changes");
    snprintf(db, sizeof(db), "%s/db", tmp);
    cr_assert_eq(store_open(&st, db, false, true, err, sizeof(err)), 0, "%s", err);
    cr_assert(st.has_changes, "a writer's open creates the change log");
}

static void teardown(void)
{
    store_close(&st);
    ts_rmtree(tmp);
}

static void put_user(MDB_txn *txn, uint64_t id)
{
    char rec[64], err[128];
    int n = snprintf(rec, sizeof(rec), "{\"id\":%llu}", (unsigned long long)id);
    struct buf value = {0};
    cr_assert_eq(store_value_build(id, rec, (size_t)n, &value, err, sizeof(err)), 0, "%s", err);
    size_t slot;
    MDB_val key, val = {value.len, value.data};
    store_key_encode(id, &slot, &key);
    cr_assert_eq(mdb_put(txn, st.users, &key, &val, 0), 0);
    buf_free(&value);
}

/* One write transaction putting ids[0..n) and noting them; logged: through
 * store_commit (keeping keep entries), else a plain commit, as an older ringd
 * does. Returns its transaction id. */
static uint64_t commit_ids(const uint64_t *ids, size_t n, bool all, bool logged, uint64_t keep)
{
    MDB_txn *txn;
    struct store_changes c = {0};
    cr_assert_eq(mdb_txn_begin(st.env, NULL, 0, &txn), 0);
    uint64_t t = (uint64_t)mdb_txn_id(txn);
    for (size_t i = 0; i < n; i++) {
        put_user(txn, ids[i]);
        store_changes_note(&c, ids[i]);
    }
    if (all)
        store_changes_note_all(&c);
    if (n == 0 && !logged)
        put_user(txn, 999999); /* a plain commit of nothing would not take a transaction id */
    int rc = logged ? store_commit_keep(txn, &st, &c, keep) : mdb_txn_commit(txn);
    cr_assert_eq(rc, 0, "%s", mdb_strerror(rc));
    if (logged) {
        cr_assert_eq(c.n, 0, "the commit clears what was noted");
        cr_assert(!c.all);
    }
    store_changes_free(&c);
    return t;
}

static uint64_t commit_logged(const uint64_t *ids, size_t n)
{
    return commit_ids(ids, n, false, true, STORE_CHANGES_KEEP);
}

/* The entry of transaction t: its ids (malloc'd) and their count; -1 when absent. */
static long read_entry(uint64_t t, uint64_t **ids)
{
    MDB_txn *txn;
    cr_assert_eq(mdb_txn_begin(st.env, NULL, MDB_RDONLY, &txn), 0);
    size_t slot;
    MDB_val key, val;
    store_key_encode(t, &slot, &key);
    long n = -1;
    *ids = NULL;
    if (mdb_get(txn, st.changes, &key, &val) == 0) {
        cr_assert_eq(val.mv_size % 8, 0);
        n = (long)(val.mv_size / 8);
        *ids = malloc(val.mv_size + 1);
        memcpy(*ids, val.mv_data, val.mv_size);
    }
    mdb_txn_abort(txn);
    return n;
}

Test(changes, each_commit_writes_its_entry, .init = setup, .fini = teardown)
{
    uint64_t a_ids[] = {5, 7, 5};
    uint64_t ta = commit_logged(a_ids, 3);
    uint64_t tb = commit_logged(NULL, 0); /* a state-only write: an empty entry */
    uint64_t tc = commit_ids(NULL, 0, true, true, STORE_CHANGES_KEEP);
    uint64_t *many = malloc(sizeof(*many) * (STORE_CHANGES_MAX_IDS + 1));
    for (uint64_t i = 0; i <= STORE_CHANGES_MAX_IDS; i++)
        many[i] = i + 1;
    uint64_t td = commit_logged(many, STORE_CHANGES_MAX_IDS + 1);
    free(many);
    cr_assert(tb == ta + 1 && tc == tb + 1 && td == tc + 1, "each commit takes the next transaction id");

    uint64_t *ids;
    cr_assert_eq(read_entry(ta, &ids), 3);
    cr_assert(ids[0] == 5 && ids[1] == 7 && ids[2] == 5);
    free(ids);
    cr_assert_eq(read_entry(tb, &ids), 0);
    free(ids);
    cr_assert_eq(read_entry(tc, &ids), 1, "'any' is one id");
    cr_assert_eq(ids[0], STORE_CHANGES_ALL);
    free(ids);
    cr_assert_eq(read_entry(td, &ids), 1, "past STORE_CHANGES_MAX_IDS ids an entry says 'any'");
    cr_assert_eq(ids[0], STORE_CHANGES_ALL);
    free(ids);
}

Test(changes, commits_trim_old_entries, .init = setup, .fini = teardown)
{
    uint64_t last = 0;
    for (uint64_t i = 1; i <= 20; i++)
        last = commit_ids(&i, 1, false, true, 5);
    MDB_txn *txn;
    MDB_stat ms;
    cr_assert_eq(mdb_txn_begin(st.env, NULL, MDB_RDONLY, &txn), 0);
    cr_assert_eq(mdb_stat(txn, st.changes, &ms), 0);
    mdb_txn_abort(txn);
    cr_assert_eq(ms.ms_entries, 5, "the newest 5 entries stay, got %zu", ms.ms_entries);
    uint64_t *ids;
    cr_assert_eq(read_entry(last - 4, &ids), 1);
    free(ids);
    cr_assert_eq(read_entry(last - 5, &ids), -1);
}

/* Whether o lists id as changed since its base. */
static bool changed(struct store_overlay *o, uint64_t id)
{
    return store_overlay_find(o, id) != NULL;
}

/* Syncs o from a read transaction of the newest snapshot; returns that snapshot. */
static uint64_t sync_newest(struct store_overlay *o, uint64_t base)
{
    MDB_txn *txn;
    cr_assert_eq(mdb_txn_begin(st.env, NULL, MDB_RDONLY, &txn), 0);
    uint64_t upto = (uint64_t)mdb_txn_id(txn);
    store_overlay_sync(o, txn, &st, base, upto);
    mdb_txn_abort(txn);
    return upto;
}

Test(changes, overlay_holds_the_ids_changed_since_its_base, .init = setup, .fini = teardown)
{
    uint64_t a[] = {5, 7}, c[] = {9}, d[] = {11};
    uint64_t ta = commit_logged(a, 2);
    uint64_t base = ta - 1; /* the snapshot an index would describe */
    commit_logged(NULL, 0);
    commit_logged(c, 1);
    struct store_overlay o = {0};
    uint64_t upto = sync_newest(&o, base);
    cr_assert(store_overlay_covers(&o, base, upto));
    cr_assert(!store_overlay_covers(&o, base, upto + 1));
    cr_assert(!store_overlay_covers(&o, base + 1, upto));
    cr_assert(changed(&o, 5) && changed(&o, 7) && changed(&o, 9));
    cr_assert(!changed(&o, 6) && !changed(&o, 11));
    cr_assert(!changed(&o, 0), "id 0 is never in the set (slot 0 means empty): the reader sends it to LMDB itself");

    /* Incrementally: one more transaction. */
    commit_logged(d, 1);
    upto = sync_newest(&o, base);
    cr_assert(store_overlay_covers(&o, base, upto));
    cr_assert(changed(&o, 11) && changed(&o, 5));

    /* A newer base (a new index) starts over: 5 and 7 changed before it. */
    uint64_t base2 = ta;
    upto = sync_newest(&o, base2);
    cr_assert(store_overlay_covers(&o, base2, upto));
    cr_assert(!changed(&o, 5) && !changed(&o, 7));
    cr_assert(changed(&o, 9) && changed(&o, 11));

    /* The reader's own snapshot older than the index: unusable. */
    MDB_txn *txn;
    cr_assert_eq(mdb_txn_begin(st.env, NULL, MDB_RDONLY, &txn), 0);
    store_overlay_sync(&o, txn, &st, upto + 1, upto);
    mdb_txn_abort(txn);
    cr_assert(!store_overlay_covers(&o, upto + 1, upto));
    store_overlay_free(&o);
}

Test(changes, overlay_grows_past_its_first_table, .init = setup, .fini = teardown)
{
    uint64_t ids[1000];
    for (int i = 0; i < 1000; i++)
        ids[i] = (uint64_t)i * 7919 + 1;
    uint64_t t1 = commit_logged(ids, 500);
    commit_logged(ids + 500, 500);
    struct store_overlay o = {0};
    uint64_t upto = sync_newest(&o, t1 - 1);
    cr_assert(store_overlay_covers(&o, t1 - 1, upto));
    cr_assert_eq(o.n, 1000);
    for (int i = 0; i < 1000; i++)
        cr_assert(changed(&o, ids[i]), "id %llu", (unsigned long long)ids[i]);
    for (uint64_t id = 2; id < 7919; id++)
        cr_assert(!changed(&o, id));
    store_overlay_free(&o);
}

Test(changes, a_gap_or_any_makes_the_overlay_give_up, .init = setup, .fini = teardown)
{
    uint64_t a[] = {1}, b[] = {2}, c[] = {3};
    uint64_t ta = commit_logged(a, 1);
    uint64_t base = ta - 1;
    uint64_t tb = commit_ids(b, 1, false, false, 0); /* an older writer: no entry */
    commit_logged(c, 1);
    struct store_overlay o = {0};
    uint64_t upto = sync_newest(&o, base);
    cr_assert(!store_overlay_covers(&o, base, upto), "transaction %llu has no entry", (unsigned long long)tb);
    cr_assert_eq(o.gaps, 1);
    commit_logged(c, 1);
    upto = sync_newest(&o, base);
    cr_assert(!store_overlay_covers(&o, base, upto), "the gap stays a gap");
    cr_assert_eq(o.gaps, 1, "counted once per base");

    /* From a base after the gap the log tells again. */
    upto = sync_newest(&o, tb);
    cr_assert(store_overlay_covers(&o, tb, upto));
    cr_assert(changed(&o, 3) && !changed(&o, 2) && !changed(&o, 1));

    /* "Any id may have changed" (a drop, a truncate). */
    commit_ids(NULL, 0, true, true, STORE_CHANGES_KEEP);
    upto = sync_newest(&o, tb);
    cr_assert(!store_overlay_covers(&o, tb, upto));
    cr_assert_eq(o.gaps, 2);
    store_overlay_free(&o);
}

Test(changes, trimmed_entries_make_the_overlay_give_up, .init = setup, .fini = teardown)
{
    uint64_t one = 1;
    uint64_t t1 = commit_ids(&one, 1, false, true, 3);
    for (int i = 0; i < 6; i++)
        commit_ids(&one, 1, false, true, 3);
    struct store_overlay o = {0};
    uint64_t upto = sync_newest(&o, t1 - 1);
    cr_assert(!store_overlay_covers(&o, t1 - 1, upto), "entries from %llu on are trimmed", (unsigned long long)t1);
    upto = sync_newest(&o, upto - 2);
    cr_assert(store_overlay_covers(&o, upto - 2, upto), "the newest 3 are there");
    store_overlay_free(&o);
}

Test(changes, a_store_without_the_log_reads_as_none, .init = setup, .fini = teardown)
{
    /* Remove the table, as in a store no ringd with the log ever wrote. */
    MDB_txn *txn;
    cr_assert_eq(mdb_txn_begin(st.env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_drop(txn, st.changes, 1), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    store_close(&st);
    char err[512];
    cr_assert_eq(store_open(&st, db, true, false, err, sizeof(err)), 0, "%s", err);
    cr_assert(!st.has_changes, "a read-only open does not create it");
    struct store_overlay o = {0};
    cr_assert_eq(mdb_txn_begin(st.env, NULL, MDB_RDONLY, &txn), 0);
    uint64_t t = (uint64_t)mdb_txn_id(txn);
    store_overlay_sync(&o, txn, &st, t > 1 ? t - 1 : 1, t);
    mdb_txn_abort(txn);
    cr_assert(!o.usable);
    store_overlay_free(&o);
    store_close(&st);
    /* A writer's open brings it back. */
    cr_assert_eq(store_open(&st, db, false, false, err, sizeof(err)), 0, "%s", err);
    cr_assert(st.has_changes);
}
