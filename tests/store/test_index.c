/* test_index.c - store/index.c: the snapshot index answers exactly what LMDB answers, for its own snapshot only. */
#include "store/index.h"
#include "store/store.h"

#include "tests/support/import.h"
#include "tests/support/tmpdir.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/key.h"

static char tmp[64];
static char db[128];

static void tmp_setup(void)
{
    ts_mkdtemp(tmp, sizeof(tmp), "index");
    snprintf(db, sizeof(db), "%s/db", tmp);
}

static void tmp_teardown(void)
{
    ts_rmtree(tmp);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Acquires as shard 0 until the published index describes snapshot txn (10 s at most). */
static const struct store_index *wait_index(struct store_indexer *ix, uint64_t txn)
{
    for (int i = 0; i < 1000; i++) {
        const struct store_index *x = store_indexer_acquire(ix, 0);
        const char *v;
        size_t l;
        if (x != NULL && store_index_get(x, txn, 1, &v, &l) != 1)
            return x;
        sleep_ms(10);
    }
    cr_assert_fail("no index for snapshot %llu within 10 s", (unsigned long long)txn);
    return NULL;
}

/* Looks id up through the index and through LMDB alone; both must agree, and the index must have answered. */
static void expect_same(struct store_reader *r, uint64_t id, const char *want)
{
    const char *v1, *v2;
    size_t l1, l2;
    int rc1 = store_get(r, id, &v1, &l1);
    cr_assert(r->indexed, "id %llu was not answered by the index", (unsigned long long)id);
    const struct store_index *saved = r->index;
    r->index = NULL;
    int rc2 = store_get(r, id, &v2, &l2);
    cr_assert(!r->indexed);
    r->index = saved;
    cr_assert_eq(rc1, rc2, "id %llu: index says %d, LMDB %d", (unsigned long long)id, rc1, rc2);
    if (want == NULL) {
        cr_assert_eq(rc1, MDB_NOTFOUND, "id %llu should be absent", (unsigned long long)id);
        return;
    }
    cr_assert_eq(rc1, 0);
    cr_assert_eq(l1, strlen(want));
    cr_assert(v1 == v2, "the index must point at LMDB's own bytes");
    cr_assert(memcmp(v1, want, l1) == 0, "id %llu: %.*s", (unsigned long long)id, (int)l1, v1);
}

static void open_all(struct store *st, struct store_reader *r, struct store_indexer *ix, uint64_t max_bytes)
{
    char err[512];
    cr_assert_eq(store_open(st, db, true, false, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(store_reader_open(r, st), 0);
    cr_assert_eq(store_indexer_start(ix, st, 1, 5, max_bytes), 0);
}

static void close_all(struct store *st, struct store_reader *r, struct store_indexer *ix)
{
    r->index = NULL;
    store_indexer_leave(ix, 0);
    store_indexer_stop(ix);
    store_reader_close(r);
    store_close(st);
}

Test(index, dense_ids_answer_like_lmdb, .init = tmp_setup, .fini = tmp_teardown)
{
    char text[64 * 300] = "", line[64];
    for (int i = 1; i <= 300; i++) {
        snprintf(line, sizeof(line), "{\"id\":%d,\"n\":\"%0*d\"}\n", i, i % 40 + 1, i);
        strcat(text, line);
    }
    cr_assert_eq(ts_import_in_child(tmp, db, text, false), 0);
    struct store st;
    struct store_reader r;
    struct store_indexer ix;
    open_all(&st, &r, &ix, 1 << 20);
    r.index = wait_index(&ix, store_reader_txn_id(&r));
    cr_assert_eq(atomic_load(&ix.entries), 300);
    cr_assert_eq(atomic_load(&ix.txn_id), store_reader_txn_id(&r));
    for (int i = 1; i <= 300; i++) {
        snprintf(line, sizeof(line), "{\"id\":%d,\"n\":\"%0*d\"}", i, i % 40 + 1, i);
        expect_same(&r, (uint64_t)i, line);
    }
    expect_same(&r, 301, NULL);
    expect_same(&r, 1000000, NULL);
    expect_same(&r, UINT64_MAX, NULL);
    close_all(&st, &r, &ix);
}

Test(index, sparse_ids_use_the_hash_layout, .init = tmp_setup, .fini = tmp_teardown)
{
    cr_assert_eq(ts_import_in_child(tmp, db,
                                    "{\"id\":1}\n{\"id\":77}\n{\"id\":1000000000000}\n"
                                    "{\"id\":18446744073709551615}\n{\"id\":9223372036854775808}\n",
                                    false),
                 0);
    struct store st;
    struct store_reader r;
    struct store_indexer ix;
    open_all(&st, &r, &ix, 1 << 20);
    r.index = wait_index(&ix, store_reader_txn_id(&r));
    /* A dense table over 1 .. 2^64-1 is impossible: 16 pairs of 16 bytes it is. */
    cr_assert_leq(atomic_load(&ix.bytes), 2u << 20);
    expect_same(&r, 1, "{\"id\":1}");
    expect_same(&r, 77, "{\"id\":77}");
    expect_same(&r, 1000000000000ULL, "{\"id\":1000000000000}");
    expect_same(&r, UINT64_MAX, "{\"id\":18446744073709551615}");
    expect_same(&r, 9223372036854775808ULL, "{\"id\":9223372036854775808}");
    for (uint64_t id = 2; id < 500; id++)
        if (id != 77)
            expect_same(&r, id, NULL);
    expect_same(&r, 1000000000001ULL, NULL);
    close_all(&st, &r, &ix);
}

Test(index, another_snapshot_goes_to_lmdb_until_reindexed, .init = tmp_setup, .fini = tmp_teardown)
{
    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":1,\"v\":1}\n{\"id\":2,\"v\":1}\n", false), 0);
    struct store st;
    struct store_reader r;
    struct store_indexer ix;
    open_all(&st, &r, &ix, 1 << 20);
    uint64_t t1 = store_reader_txn_id(&r);
    r.index = wait_index(&ix, t1);
    expect_same(&r, 1, "{\"id\":1,\"v\":1}");

    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":1,\"v\":2}\n{\"id\":3,\"v\":2}\n", false), 0);
    /* Still at t1: the index keeps answering for it, with t1's bytes. */
    expect_same(&r, 1, "{\"id\":1,\"v\":1}");
    expect_same(&r, 3, NULL);
    cr_assert_eq(store_reader_refresh(&r), 0);
    uint64_t t2 = store_reader_txn_id(&r);
    cr_assert_gt(t2, t1);
    /* The held index is t1's: it must not answer for t2. */
    const char *v;
    size_t l;
    cr_assert_eq(store_get(&r, 3, &v, &l), 0);
    cr_assert(!r.indexed, "an index of snapshot %llu answered for %llu", (unsigned long long)t1, (unsigned long long)t2);
    cr_assert_eq(l, strlen("{\"id\":3,\"v\":2}"));
    /* The indexer notices the new snapshot (builds are at least 1 s apart). */
    r.index = wait_index(&ix, t2);
    expect_same(&r, 1, "{\"id\":1,\"v\":2}");
    expect_same(&r, 2, "{\"id\":2,\"v\":1}");
    expect_same(&r, 3, "{\"id\":3,\"v\":2}");
    cr_assert_geq(atomic_load(&ix.builds), 2);
    close_all(&st, &r, &ix);
}

Test(index, over_the_memory_cap_nothing_is_built, .init = tmp_setup, .fini = tmp_teardown)
{
    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n", false), 0);
    struct store st;
    struct store_reader r;
    struct store_indexer ix;
    open_all(&st, &r, &ix, 16); /* three dense ids need 24 bytes */
    for (int i = 0; i < 1000 && atomic_load(&ix.skipped) == 0; i++)
        sleep_ms(10);
    cr_assert_eq(atomic_load(&ix.skipped), 1);
    cr_assert_eq(atomic_load(&ix.builds), 0);
    cr_assert_null(store_indexer_acquire(&ix, 0));
    const char *v;
    size_t l;
    cr_assert_eq(store_get(&r, 2, &v, &l), 0);
    cr_assert(!r.indexed);
    close_all(&st, &r, &ix);
}

Test(index, off_means_no_thread_and_no_index, .init = tmp_setup, .fini = tmp_teardown)
{
    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":1}\n", false), 0);
    struct store st;
    struct store_reader r;
    struct store_indexer ix;
    open_all(&st, &r, &ix, 0);
    cr_assert_null(store_indexer_acquire(&ix, 0));
    const char *v;
    size_t l;
    cr_assert_eq(store_index_get(NULL, store_reader_txn_id(&r), 1, &v, &l), 1);
    cr_assert_eq(store_get(&r, 1, &v, &l), 0);
    cr_assert(!r.indexed);
    close_all(&st, &r, &ix);
}

/* Looks id up and expects the answer want (NULL: absent), given the way it must have been answered. */
static void expect_via(struct store_reader *r, uint64_t id, const char *want, enum store_via via)
{
    const char *v;
    size_t l;
    int rc = store_get(r, id, &v, &l);
    cr_assert_eq(r->via, via, "id %llu answered via %d, want %d", (unsigned long long)id, r->via, via);
    cr_assert_eq(r->indexed, via == STORE_VIA_INDEX || via == STORE_VIA_OVERLAY);
    if (want == NULL) {
        cr_assert_eq(rc, MDB_NOTFOUND, "id %llu should be absent", (unsigned long long)id);
        return;
    }
    cr_assert_eq(rc, 0, "id %llu: %s", (unsigned long long)id, mdb_strerror(rc));
    cr_assert(l == strlen(want) && memcmp(v, want, l) == 0, "id %llu: %.*s, want %s", (unsigned long long)id, (int)l, v,
              want);
}

/* Imports ids 1..200 as {"id":i,"v":1}, opens the store with an indexer, and gives the reader the index
 * of that snapshot; returns the snapshot. */
static uint64_t open_indexed_200(struct store *st, struct store_reader *r, struct store_indexer *ix)
{
    char text[64 * 200] = "", line[64];
    for (int i = 1; i <= 200; i++) {
        snprintf(line, sizeof(line), "{\"id\":%d,\"v\":1}\n", i);
        strcat(text, line);
    }
    cr_assert_eq(ts_import_in_child(tmp, db, text, false), 0);
    open_all(st, r, ix, 1 << 20);
    cr_assert(st->has_changes);
    uint64_t t1 = store_reader_txn_id(r);
    r->index = wait_index(ix, t1);
    return t1;
}

Test(index, a_newer_snapshot_reads_unchanged_ids_through_the_older_index, .init = tmp_setup, .fini = tmp_teardown)
{
    char line[64];
    struct store st;
    struct store_reader r;
    struct store_indexer ix;
    uint64_t t1 = open_indexed_200(&st, &r, &ix);
    expect_via(&r, 2, "{\"id\":2,\"v\":1}", STORE_VIA_INDEX);

    /* Every id of the pages around 1 and 3 is rewritten by this import (copy-on-write): the pinned index keeps
     * pointing at t1's pages, which must still hold t1's bytes for the ids that did not change. */
    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":1,\"v\":2}\n{\"id\":3,\"v\":2}\n{\"id\":500,\"v\":2}\n", false), 0);
    cr_assert_eq(store_reader_refresh(&r), 0);
    uint64_t t2 = store_reader_txn_id(&r);
    cr_assert_gt(t2, t1);
    cr_assert_eq(store_index_txn(r.index), t1, "the shard still holds t1's index");
    expect_via(&r, 1, "{\"id\":1,\"v\":2}", STORE_VIA_FALLBACK);
    expect_via(&r, 3, "{\"id\":3,\"v\":2}", STORE_VIA_FALLBACK);
    expect_via(&r, 500, "{\"id\":500,\"v\":2}", STORE_VIA_FALLBACK);
    for (int i = 4; i <= 200; i++) {
        snprintf(line, sizeof(line), "{\"id\":%d,\"v\":1}", i);
        expect_via(&r, (uint64_t)i, line, STORE_VIA_OVERLAY);
    }
    expect_via(&r, 2, "{\"id\":2,\"v\":1}", STORE_VIA_OVERLAY);
    expect_via(&r, 201, NULL, STORE_VIA_OVERLAY);
    expect_via(&r, 0, NULL, STORE_VIA_FALLBACK);

    /* --replace may change any id: LMDB answers everything. */
    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":2,\"v\":3}\n", true), 0);
    cr_assert_eq(store_reader_refresh(&r), 0);
    expect_via(&r, 2, "{\"id\":2,\"v\":3}", STORE_VIA_FALLBACK);
    expect_via(&r, 4, NULL, STORE_VIA_FALLBACK);
    close_all(&st, &r, &ix);
}

/* Commits {"id":id,"v":v} (v < 0: deletes id) from a child, logged as ringd's writers do (store_commit), or
 * unlogged the way a ringd without the change log does (a plain commit). */
static void write_in_child(uint64_t id, int v, bool logged)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct store w;
        char err[512], rec[64];
        MDB_txn *txn;
        if (store_open(&w, db, false, false, err, sizeof(err)) != 0 || mdb_txn_begin(w.env, NULL, 0, &txn) != 0)
            _exit(1);
        size_t slot;
        MDB_val key;
        store_key_encode(id, &slot, &key);
        int rc;
        if (v < 0) {
            rc = mdb_del(txn, w.users, &key, NULL);
        } else {
            int n = snprintf(rec, sizeof(rec), "{\"id\":%llu,\"v\":%d}", (unsigned long long)id, v);
            struct buf value = {0};
            if (store_value_build(id, rec, (size_t)n, &value, err, sizeof(err)) != 0)
                _exit(1);
            MDB_val val = {value.len, value.data};
            rc = mdb_put(txn, w.users, &key, &val, 0);
            buf_free(&value);
        }
        if (rc != 0) {
            mdb_txn_abort(txn);
        } else if (logged) {
            struct store_changes c = {0};
            store_changes_note(&c, id);
            rc = store_commit(txn, &w, &c);
            store_changes_free(&c);
        } else {
            rc = mdb_txn_commit(txn);
        }
        store_close(&w);
        _exit(rc == 0 ? 0 : 1);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

Test(index, a_changed_id_goes_to_lmdb_once_per_change, .init = tmp_setup, .fini = tmp_teardown)
{
    char line[64];
    struct store st;
    struct store_reader r;
    struct store_indexer ix;
    uint64_t t1 = open_indexed_200(&st, &r, &ix);

    write_in_child(1, 2, true);
    write_in_child(3, -1, true);
    cr_assert_eq(store_reader_refresh(&r), 0);
    expect_via(&r, 1, "{\"id\":1,\"v\":2}", STORE_VIA_FALLBACK);
    expect_via(&r, 1, "{\"id\":1,\"v\":2}", STORE_VIA_CHANGED);
    expect_via(&r, 3, NULL, STORE_VIA_FALLBACK);
    expect_via(&r, 3, NULL, STORE_VIA_CHANGED);
    expect_via(&r, 2, "{\"id\":2,\"v\":1}", STORE_VIA_OVERLAY);

    /* Rewrites of the neighbours copy the pages of 1's and 3's old places (copy-on-write) many times over:
     * the copy of id 1's answer points into a page of an older snapshot, which the index's pin keeps. */
    for (int round = 3; round <= 12; round++) {
        for (uint64_t id = 2; id <= 40; id += 2)
            write_in_child(id, round, true);
        cr_assert_eq(store_reader_refresh(&r), 0);
        expect_via(&r, 1, "{\"id\":1,\"v\":2}", STORE_VIA_CHANGED);
        expect_via(&r, 3, NULL, STORE_VIA_CHANGED);
        snprintf(line, sizeof(line), "{\"id\":2,\"v\":%d}", round);
        expect_via(&r, 2, line, STORE_VIA_FALLBACK);
        expect_via(&r, 2, line, STORE_VIA_CHANGED);
        expect_via(&r, 5, "{\"id\":5,\"v\":1}", STORE_VIA_OVERLAY);
    }
    cr_assert_eq(store_index_txn(r.index), t1, "the shard still holds t1's index");

    /* A new change of the id: the copy is forgotten, LMDB answers once again. */
    write_in_child(1, 13, true);
    write_in_child(3, 13, true);
    cr_assert_eq(store_reader_refresh(&r), 0);
    expect_via(&r, 1, "{\"id\":1,\"v\":13}", STORE_VIA_FALLBACK);
    expect_via(&r, 1, "{\"id\":1,\"v\":13}", STORE_VIA_CHANGED);
    expect_via(&r, 3, "{\"id\":3,\"v\":13}", STORE_VIA_FALLBACK);
    expect_via(&r, 3, "{\"id\":3,\"v\":13}", STORE_VIA_CHANGED);
    close_all(&st, &r, &ix);
}

Test(index, a_writer_without_the_change_log_sends_every_lookup_to_lmdb, .init = tmp_setup, .fini = tmp_teardown)
{
    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":1,\"v\":1}\n{\"id\":2,\"v\":1}\n", false), 0);
    struct store st;
    struct store_reader r;
    struct store_indexer ix;
    open_all(&st, &r, &ix, 1 << 20);
    r.index = wait_index(&ix, store_reader_txn_id(&r));
    write_in_child(1, 2, false);
    cr_assert_eq(store_reader_refresh(&r), 0);
    /* Nothing says id 1 changed: the index must not answer for it, nor for any id. */
    expect_via(&r, 1, "{\"id\":1,\"v\":2}", STORE_VIA_FALLBACK);
    expect_via(&r, 2, "{\"id\":2,\"v\":1}", STORE_VIA_FALLBACK);
    cr_assert_eq(r.overlay.gaps, 1);
    /* A later logged write does not bring it back for that index. */
    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":3,\"v\":1}\n", false), 0);
    cr_assert_eq(store_reader_refresh(&r), 0);
    expect_via(&r, 2, "{\"id\":2,\"v\":1}", STORE_VIA_FALLBACK);
    close_all(&st, &r, &ix);
}

Test(index, a_store_opened_without_the_change_log_never_uses_an_older_index, .init = tmp_setup, .fini = tmp_teardown)
{
    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":1,\"v\":1}\n{\"id\":2,\"v\":1}\n", false), 0);
    /* As an older ringd left it: no change log. */
    {
        struct store w;
        char err[512];
        MDB_txn *txn;
        cr_assert_eq(store_open(&w, db, false, false, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(mdb_txn_begin(w.env, NULL, 0, &txn), 0);
        cr_assert_eq(mdb_drop(txn, w.changes, 1), 0);
        cr_assert_eq(mdb_txn_commit(txn), 0);
        store_close(&w);
    }
    struct store st;
    struct store_reader r;
    struct store_indexer ix;
    open_all(&st, &r, &ix, 1 << 20);
    cr_assert(!st.has_changes);
    r.index = wait_index(&ix, store_reader_txn_id(&r));
    expect_via(&r, 2, "{\"id\":2,\"v\":1}", STORE_VIA_INDEX);
    /* A new writer recreates the log, but this server opened the store without it. */
    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":1,\"v\":2}\n", false), 0);
    cr_assert_eq(store_reader_refresh(&r), 0);
    expect_via(&r, 1, "{\"id\":1,\"v\":2}", STORE_VIA_FALLBACK);
    expect_via(&r, 2, "{\"id\":2,\"v\":1}", STORE_VIA_FALLBACK);
    close_all(&st, &r, &ix);
}
