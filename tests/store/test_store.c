/* test_store.c - store/store.c: opening environments, the format marker, and the clear errors for everything else. */
#include "store/store.h"

#include "tests/support/tmpdir.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[64];
static char path[256];

static void tmp_setup(void)
{
    ts_mkdtemp(tmp, sizeof(tmp), "store");
}

static void tmp_teardown(void)
{
    ts_rmtree(tmp);
}

static const char *sub(const char *name)
{
    snprintf(path, sizeof(path), "%s/%s", tmp, name);
    return path;
}

/* Expects store_open to fail with a message containing want, and nothing left open. */
static void expect_open_error(const char *dir, bool readonly, bool create, const char *want)
{
    char err[512] = "";
    struct store st;
    int rc = store_open(&st, dir, readonly, create, err, sizeof(err));
    cr_assert_neq(rc, 0, "opening %s should fail (%s)", dir, want);
    cr_assert_null(st.env, "nothing stays open");
    cr_assert(strstr(err, want) != NULL, "message '%s' lacks '%s'", err, want);
}

/* Builds an LMDB environment ringd did not make: optionally with a meta table holding marker. */
static void make_foreign_env(const char *dir, const char *marker)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mkdir(dir, 0755), 0);
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 4);
    cr_assert_eq(mdb_env_open(env, dir, 0, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    MDB_val k, v = {1, "v"};
    if (marker != NULL) {
        cr_assert_eq(mdb_dbi_open(txn, STORE_DB_META, MDB_CREATE, &dbi), 0);
        k = (MDB_val){strlen(STORE_FORMAT_KEY), STORE_FORMAT_KEY};
        v = (MDB_val){strlen(marker), (void *)marker};
    } else {
        cr_assert_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
        k = (MDB_val){5, "hello"};
    }
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

Test(store, create_then_open_readonly, .init = tmp_setup, .fini = tmp_teardown)
{
    char err[512] = "";
    struct store st;
    const char *dir = sub("db");
    cr_assert_not(store_exists(dir));
    cr_assert_eq(store_open(&st, dir, false, true, err, sizeof(err)), 0, "%s", err);
    cr_assert_not_null(st.env);
    cr_assert_not(st.readonly);
    store_close(&st);
    cr_assert_null(st.env);
    cr_assert(store_exists(dir));

    cr_assert_eq(store_open(&st, dir, true, false, err, sizeof(err)), 0, "%s", err);
    cr_assert(st.readonly);
    unsigned flags = 0;
    mdb_env_get_flags(st.env, &flags);
    cr_assert_eq(flags & (MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD), MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD);
    MDB_envinfo info;
    mdb_env_info(st.env, &info);
    cr_assert_eq((uint64_t)info.me_mapsize, STORE_MAP_SIZE);
    cr_assert_eq(info.me_maxreaders, STORE_MAX_READERS);
    uint64_t used = store_used_bytes(&st);
    cr_assert_gt(used, 0);
    cr_assert_eq(used % 4096, 0, "whole pages: %llu", (unsigned long long)used);
    cr_assert_lt(used, 1 << 20);
    cr_assert_eq(store_reader_check(&st), 0, "no stale readers in a fresh environment");
    store_close(&st);

    /* a second creating open keeps what is there */
    cr_assert_eq(store_open(&st, dir, false, true, err, sizeof(err)), 0, "%s", err);
    store_close(&st);
}

Test(store, missing_dir, .init = tmp_setup, .fini = tmp_teardown)
{
    expect_open_error(sub("nope"), true, false, "no such directory");
    expect_open_error(sub("nope"), false, false, "no such directory");
    /* read-only never creates, even when asked to */
    expect_open_error(sub("nope"), true, true, "no such directory");
    struct stat sb;
    cr_assert_eq(stat(sub("nope"), &sb), -1);
}

Test(store, not_a_directory, .init = tmp_setup, .fini = tmp_teardown)
{
    FILE *f = fopen(sub("file"), "w");
    cr_assert_not_null(f);
    fclose(f);
    expect_open_error(sub("file"), true, false, "not a directory");
}

Test(store, dir_without_data, .init = tmp_setup, .fini = tmp_teardown)
{
    expect_open_error(tmp, true, false, "not a ringd database (no data.mdb)");
    cr_assert_not(store_exists(tmp));
}

Test(store, corrupt_data_file, .init = tmp_setup, .fini = tmp_teardown)
{
    char junk[65536];
    memset(junk, 'x', sizeof(junk));
    int fd = open(sub("data.mdb"), O_WRONLY | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    expect_open_error(tmp, true, false, "corrupt or not an LMDB file");
    expect_open_error(tmp, false, true, "corrupt or not an LMDB file");
}

Test(store, empty_data_file, .init = tmp_setup, .fini = tmp_teardown)
{
    int fd = open(sub("data.mdb"), O_WRONLY | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    expect_open_error(tmp, true, false, "corrupt or not an LMDB file");
}

Test(store, foreign_lmdb_without_marker, .init = tmp_setup, .fini = tmp_teardown)
{
    make_foreign_env(sub("other"), NULL);
    expect_open_error(path, true, false, "not a ringd database (no format marker)");
    /* creating does not stamp someone else's non-empty database */
    expect_open_error(path, false, true, "not a ringd database (no format marker)");
}

Test(store, wrong_format_marker, .init = tmp_setup, .fini = tmp_teardown)
{
    make_foreign_env(sub("v9"), "ringd-users-v9\n");
    expect_open_error(path, true, false, "format ringd-users-v9?, expected ringd-users-v2");
    expect_open_error(path, false, true, "format ringd-users-v9?, expected ringd-users-v2");
}

Test(store, right_marker_opens, .init = tmp_setup, .fini = tmp_teardown)
{
    /* the control for the two tests above: the same construction with the
     * right marker passes the format check (and fails only on the missing users table) */
    make_foreign_env(sub("v1"), STORE_FORMAT_VALUE);
    expect_open_error(path, true, false, "no users table");
    char err[512];
    struct store st;
    cr_assert_eq(store_open(&st, path, false, true, err, sizeof(err)), 0, "%s", err);
    store_close(&st);
    cr_assert_eq(store_open(&st, path, true, false, err, sizeof(err)), 0, "%s", err);
    store_close(&st);
}
