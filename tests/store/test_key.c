/* test_key.c - store/key.h: id <-> MDB_INTEGERKEY encoding, and that LMDB orders such keys numerically. */
#include "store/key.h"
#include "store/store.h"

#include "tests/support/tmpdir.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tmp[64];

static void tmp_setup(void)
{
    ts_mkdtemp(tmp, sizeof(tmp), "key");
}

static void tmp_teardown(void)
{
    ts_rmtree(tmp);
}

Test(key, round_trip_edges)
{
    const uint64_t ids[] = {1, 255, 256, 1ull << 32, (1ull << 63) - 1, 1ull << 63, UINT64_MAX};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        size_t slot;
        MDB_val key;
        store_key_encode(ids[i], &slot, &key);
        cr_assert_eq(key.mv_size, 8);
        cr_assert_eq(key.mv_data, (void *)&slot, "the key points at the caller's slot");
        cr_assert_eq(store_key_decode(&key), ids[i], "id %llu", (unsigned long long)ids[i]);
    }
}

Test(key, native_endian_size_t)
{
    size_t slot;
    MDB_val key;
    store_key_encode(0x0102030405060708ull, &slot, &key);
    size_t expect = 0x0102030405060708ull;
    cr_assert(memcmp(key.mv_data, &expect, 8) == 0, "MDB_INTEGERKEY wants the native size_t bytes");
}

Test(key, wrong_size_decodes_to_zero)
{
    uint32_t small = 7;
    MDB_val key = {sizeof(small), &small};
    cr_assert_eq(store_key_decode(&key), 0);
}

/* LMDB must order the keys as numbers (not as bytes, which on little endian
 * would put 256 before 1): MDB_APPEND in import and demo relies on it. */
Test(key, lmdb_orders_numerically, .init = tmp_setup, .fini = tmp_teardown)
{
    char err[256];
    struct store st;
    cr_assert_eq(store_open(&st, tmp, false, true, err, sizeof(err)), 0, "%s", err);
    const uint64_t ids[] = {UINT64_MAX, 256, 1ull << 40, 1, 1ull << 63, 2};
    const uint64_t sorted[] = {1, 2, 256, 1ull << 40, 1ull << 63, UINT64_MAX};
    MDB_txn *txn;
    cr_assert_eq(mdb_txn_begin(st.env, NULL, 0, &txn), 0);
    for (size_t i = 0; i < 6; i++) {
        size_t slot;
        MDB_val key, val = {1, "x"};
        store_key_encode(ids[i], &slot, &key);
        cr_assert_eq(mdb_put(txn, st.users, &key, &val, 0), 0);
    }
    MDB_cursor *cur;
    MDB_val key, val;
    cr_assert_eq(mdb_cursor_open(txn, st.users, &cur), 0);
    size_t n = 0;
    for (int op = MDB_FIRST; mdb_cursor_get(cur, &key, &val, (MDB_cursor_op)op) == 0; op = MDB_NEXT, n++) {
        cr_assert_lt(n, 6);
        cr_assert_eq(store_key_decode(&key), sorted[n], "position %zu", n);
    }
    cr_assert_eq(n, 6);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    store_close(&st);
}
