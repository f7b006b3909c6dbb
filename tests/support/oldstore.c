/* oldstore.c - test support: a ringd-users-v1 database (see oldstore.h). */
#include "tests/support/oldstore.h"

#include <criterion/criterion.h>
#include <lmdb.h>
#include <string.h>
#include <sys/stat.h>

#include "store/key.h"
#include "store/store.h"

int ts_write_v1_store(const char *dir, const uint64_t *ids, const char *const *records, size_t n)
{
    if (mkdir(dir, 0755) != 0)
        return -1;
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, users;
    cr_assert_eq(mdb_env_create(&env), 0);
    /* The same sizes as every opener (store.h): the first opener fixes the reader table. */
    mdb_env_set_maxdbs(env, 4);
    mdb_env_set_mapsize(env, (size_t)STORE_MAP_SIZE);
    mdb_env_set_maxreaders(env, STORE_MAX_READERS);
    cr_assert_eq(mdb_env_open(env, dir, MDB_NOTLS, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, STORE_DB_META, MDB_CREATE, &meta), 0);
    MDB_val k = {strlen(STORE_FORMAT_KEY), STORE_FORMAT_KEY}, v = {strlen(STORE_FORMAT_V1), STORE_FORMAT_V1};
    cr_assert_eq(mdb_put(txn, meta, &k, &v, 0), 0);
    cr_assert_eq(mdb_dbi_open(txn, STORE_DB_USERS, MDB_CREATE | MDB_INTEGERKEY, &users), 0);
    for (size_t i = 0; i < n; i++) {
        size_t slot;
        store_key_encode(ids[i], &slot, &k);
        v = (MDB_val){strlen(records[i]), (void *)records[i]};
        cr_assert_eq(mdb_put(txn, users, &k, &v, 0), 0);
    }
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    return 0;
}
