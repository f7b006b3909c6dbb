/* test_index_race.c - store/index.c + store/changes.c under continuous writes: a reader that renews while another
 * process commits without pause never gets a stale, torn or freed record, whichever way the lookup is answered
 * (its own snapshot's index, an older pinned index through the change log, or LMDB). */
#include "store/changes.h"
#include "store/index.h"
#include "store/key.h"
#include "store/store.h"

#include "tests/support/tmpdir.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define USERS 3000
#define WRITER_TXNS 1500

static char tmp[64];
static char db[128];
static pid_t writer = -1;

static void setup(void)
{
    ts_mkdtemp(tmp, sizeof(tmp), "index-race");
    snprintf(db, sizeof(db), "%s/db", tmp);
}

static void teardown(void)
{
    if (writer > 0) {
        kill(writer, SIGKILL);
        waitpid(writer, NULL, 0);
    }
    writer = -1;
    ts_rmtree(tmp);
}

/* What a record of id at version v must say: a torn or misplaced record fails it. */
static uint64_t check_of(uint64_t id, uint64_t v)
{
    uint64_t x = id * UINT64_C(0x9E3779B97F4A7C15) ^ (v + 0x632BE59BD9B4E019u);
    return (x ^ (x >> 29)) % 1000000007u;
}

static size_t record(char *buf, size_t cap, uint64_t id, uint64_t v)
{
    /* Sizes vary with the version, so pages split and merge as they are rewritten. */
    static const char pad[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    int padn = (int)((id + v) % 100);
    int n = snprintf(buf, cap, "{\"id\":%llu,\"v\":%llu,\"c\":%llu,\"p\":\"%.*s\"}", (unsigned long long)id,
                     (unsigned long long)v, (unsigned long long)check_of(id, v), padn, pad);
    return (size_t)n;
}

static int put(MDB_txn *txn, struct store *st, uint64_t id, uint64_t v)
{
    char buf[256], err[128];
    struct buf value = {0};
    if (store_value_build(id, buf, record(buf, sizeof(buf), id, v), &value, err, sizeof(err)) != 0)
        return -1;
    size_t slot;
    MDB_val key, val = {value.len, value.data};
    store_key_encode(id, &slot, &key);
    int rc = mdb_put(txn, st->users, &key, &val, 0);
    buf_free(&value);
    return rc;
}

/* The writer: USERS users at version 0, then (once the reader says go on fd go) WRITER_TXNS transactions of
 * 1-8 puts or deletes each, logged through store_commit except the one half-way (a plain commit, as an older
 * writer makes) and the one at three quarters, which says "any". */
static int writer_main(int go)
{
    struct store st;
    char err[512];
    if (store_open(&st, db, false, true, err, sizeof(err)) != 0)
        return 1;
    struct store_changes c = {0};
    MDB_txn *txn;
    if (mdb_txn_begin(st.env, NULL, 0, &txn) != 0)
        return 1;
    for (uint64_t id = 1; id <= USERS; id++)
        if (put(txn, &st, id, 0) != 0)
            return 1;
    store_changes_note_all(&c);
    if (store_commit(txn, &st, &c) != 0)
        return 1;
    /* Tell the parent the store is ready. */
    char b;
    if (write(STDOUT_FILENO, "r", 1) != 1 || read(go, &b, 1) != 1)
        return 1;
    uint64_t seed = 12345;
    for (uint64_t t = 1; t <= WRITER_TXNS; t++) {
        if (mdb_txn_begin(st.env, NULL, 0, &txn) != 0)
            return 1;
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        unsigned k = 1 + (unsigned)((seed >> 33) % 8);
        for (unsigned i = 0; i < k; i++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            uint64_t id = 1 + (seed >> 33) % USERS;
            int rc;
            if ((seed >> 20) % 10 == 0) {
                size_t slot;
                MDB_val key;
                store_key_encode(id, &slot, &key);
                rc = mdb_del(txn, st.users, &key, NULL);
                rc = rc == MDB_NOTFOUND ? 0 : rc;
            } else {
                rc = put(txn, &st, id, t);
            }
            if (rc != 0)
                return 1;
            store_changes_note(&c, id);
        }
        int rc;
        if (t == WRITER_TXNS / 2) {
            store_changes_clear(&c);
            rc = mdb_txn_commit(txn);
        } else {
            if (t == WRITER_TXNS * 3 / 4)
                store_changes_note_all(&c);
            rc = store_commit(txn, &st, &c);
        }
        if (rc != 0)
            return 1;
    }
    store_changes_free(&c);
    store_close(&st);
    return 0;
}

struct tally {
    uint64_t lookups, via[STORE_VIA_CHANGED + 1];
};

/* One lookup through the reader, against LMDB's own answer in the same transaction. */
static void check_one(struct store_reader *r, uint64_t id, struct tally *t)
{
    const char *v;
    size_t l;
    int rc = store_get(r, id, &v, &l);
    enum store_via via = r->via;
    size_t slot;
    MDB_val key, truth;
    store_key_encode(id, &slot, &key);
    int trc = mdb_get(r->txn, r->store->users, &key, &truth);
    cr_assert_eq(rc, trc, "id %llu at snapshot %llu via %d: %d, LMDB says %d", (unsigned long long)id,
                 (unsigned long long)r->txn_id, via, rc, trc);
    t->lookups++;
    t->via[via]++;
    if (rc != 0)
        return;
    struct store_user u;
    cr_assert_eq(store_value_split(truth.mv_data, truth.mv_size, &u), 0);
    cr_assert(l == u.json_len && memcmp(v, u.json, l) == 0, "id %llu at snapshot %llu via %d: %.*s, LMDB has %.*s",
              (unsigned long long)id, (unsigned long long)r->txn_id, via, (int)l, v, (int)u.json_len, u.json);
    char text[256];
    cr_assert_lt(l, sizeof(text));
    memcpy(text, v, l);
    text[l] = '\0';
    unsigned long long rid, rv, rcheck;
    cr_assert_eq(sscanf(text, "{\"id\":%llu,\"v\":%llu,\"c\":%llu", &rid, &rv, &rcheck), 3, "torn: %s", text);
    cr_assert_eq(rid, id, "%s", text);
    cr_assert_eq(rcheck, check_of(rid, rv), "torn: %s", text);
}

Test(index_race, readers_under_continuous_writes_see_exactly_their_snapshot, .init = setup, .fini = teardown, .timeout = 300)
{
    int ready[2], go[2];
    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(go), 0);
    fflush(NULL);
    writer = fork();
    cr_assert_geq(writer, 0);
    if (writer == 0) {
        close(ready[0]);
        close(go[1]);
        dup2(ready[1], STDOUT_FILENO);
        _exit(writer_main(go[0]));
    }
    close(ready[1]);
    close(go[0]);
    char b;
    cr_assert_eq(read(ready[0], &b, 1), 1, "the writer did not create the store");
    close(ready[0]);

    struct store st;
    struct store_reader r;
    struct store_indexer ix;
    char err[512];
    cr_assert_eq(store_open(&st, db, true, false, err, sizeof(err)), 0, "%s", err);
    cr_assert(st.has_changes);
    cr_assert_eq(store_reader_open(&r, &st), 0);
    cr_assert_eq(store_indexer_start(&ix, &st, 1, 2, 64 << 20), 0);
    cr_assert_eq(write(go[1], "g", 1), 1);
    close(go[1]);

    struct tally t = {0};
    uint64_t seed = 99, rounds = 0;
    bool done = false;
    int status = 0;
    while (!done) {
        done = waitpid(writer, &status, WNOHANG) == writer;
        /* A shard's refresh point: take the newest index, then the newest snapshot (and its overlay). */
        r.index = store_indexer_acquire(&ix, 0);
        cr_assert_eq(store_reader_refresh(&r), 0);
        for (int i = 0; i < 300; i++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            check_one(&r, 1 + (seed >> 33) % (USERS + 10), &t);
        }
        rounds++;
    }
    writer = -1;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the writer failed");
    uint64_t builds = atomic_load(&ix.builds), gaps = r.overlay.gaps;
    r.index = NULL;
    store_indexer_leave(&ix, 0);
    store_indexer_stop(&ix);
    store_reader_close(&r);
    store_close(&st);
    cr_log_info("rounds=%llu lookups=%llu index=%llu overlay=%llu fallback=%llu changed=%llu lmdb=%llu builds=%llu "
                "gaps=%llu",
                (unsigned long long)rounds, (unsigned long long)t.lookups, (unsigned long long)t.via[STORE_VIA_INDEX],
                (unsigned long long)t.via[STORE_VIA_OVERLAY], (unsigned long long)t.via[STORE_VIA_FALLBACK],
                (unsigned long long)t.via[STORE_VIA_CHANGED], (unsigned long long)t.via[STORE_VIA_LMDB],
                (unsigned long long)builds, (unsigned long long)gaps);
    /* The point of the exercise: lookups did go through an older, pinned index. */
    cr_assert_gt(t.via[STORE_VIA_OVERLAY], 0, "no lookup went through the overlay");
    cr_assert_gt(t.via[STORE_VIA_FALLBACK], 0, "no changed id went to LMDB");
    cr_assert_gt(t.via[STORE_VIA_CHANGED], 0, "no changed id was answered from the overlay's copy");
}
