/* test_upgrade.c - a database of the older format (JSON values only) is refused by every opener with the
 * command that upgrades it, never misread; `ringd upgrade` rewrites it once, records and marker together. */
#include "store/pb.h"
#include "store/store.h"

#include "tests/support/oldstore.h"
#include "tests/support/server.h"
#include "tests/support/tmpdir.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tmp[64];
static char db[128];

static const uint64_t ids[] = {1, 2, 300, 18446744073709551615ull};
static const char *const recs[] = {
    "{\"id\":1,\"name\":\"Ann\"}",
    "{\"id\":2,\"tags\":[\"a\",{\"b\":null}],\"n\":1.5}",
    "{\"id\":300,\"city\":\"Z\xc3\xbcrich\"}",
    "{\"id\":18446744073709551615}",
};
#define NRECS (sizeof(ids) / sizeof(ids[0]))

static void tmp_setup(void)
{
    ts_mkdtemp(tmp, sizeof(tmp), "upgrade");
    snprintf(db, sizeof(db), "%s/db", tmp);
    cr_assert_eq(ts_write_v1_store(db, ids, recs, NRECS), 0);
}

static void tmp_teardown(void)
{
    ts_rmtree(tmp);
}

/* Runs `ringd ARGS` with stdout and stderr into tmp/out.log; returns the exit status and the log in out. */
static int run(const char *args, char *out, size_t outlen)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "env -u RINGD_DB %s %s >%s/out.log 2>&1", RINGD_BIN, args, tmp);
    int rc = ts_sh(cmd);
    char path[256];
    snprintf(path, sizeof(path), "%s/out.log", tmp);
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(out, 1, outlen - 1, f) : 0;
    out[n] = '\0';
    if (f != NULL)
        fclose(f);
    return rc;
}

Test(upgrade, old_format_is_refused_with_the_command, .init = tmp_setup, .fini = tmp_teardown)
{
    char err[512] = "", want[256];
    snprintf(want, sizeof(want), "upgrade it once with: ringd upgrade --db %s", db);
    struct store st;
    cr_assert_neq(store_open(&st, db, true, false, err, sizeof(err)), 0, "a v1 store must not open for reading");
    cr_assert(strstr(err, want) != NULL, "%s", err);
    cr_assert(strstr(err, STORE_FORMAT_V1) != NULL, "%s", err);
    cr_assert_neq(store_open(&st, db, false, true, err, sizeof(err)), 0, "nor for writing (import, demo, follow)");
    cr_assert(strstr(err, want) != NULL, "%s", err);

    /* The binary: serve and import exit 1 with the same sentence. */
    char out[8192], args[512];
    snprintf(args, sizeof(args), "serve --listen 127.0.0.1:0 --db %s", db);
    cr_assert_eq(run(args, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "ringd upgrade --db") != NULL, "%s", out);
    snprintf(args, sizeof(args), "demo --db %s --users 3", db);
    cr_assert_eq(run(args, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "ringd upgrade --db") != NULL, "%s", out);
}

Test(upgrade, rewrites_every_record_once, .init = tmp_setup, .fini = tmp_teardown)
{
    char out[8192], args[512];
    snprintf(args, sizeof(args), "upgrade --db %s", db);
    cr_assert_eq(run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "msg=upgrade_done") != NULL && strstr(out, "records=4") != NULL, "%s", out);

    char err[512];
    struct store st;
    struct store_reader r;
    cr_assert_eq(store_open(&st, db, true, false, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(store_reader_open(&r, &st), 0);
    for (size_t i = 0; i < NRECS; i++) {
        struct store_user u;
        int grc = store_get_user(&r, ids[i], &u);
        cr_assert_eq(grc, 0, "id %llu: %d", (unsigned long long)ids[i], grc);
        cr_assert_eq(u.json_len, strlen(recs[i]));
        cr_assert(memcmp(u.json, recs[i], u.json_len) == 0, "the JSON is kept byte for byte: %.*s", (int)u.json_len, u.json);
        struct buf want = {0};
        cr_assert_eq(store_pb_user(ids[i], recs[i], strlen(recs[i]), &want, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(u.pb_len, want.len);
        cr_assert(memcmp(u.pb, want.data, want.len) == 0, "the gRPC form is the record's");
        buf_free(&want);
        const char *val;
        size_t len;
        cr_assert_eq(store_get(&r, ids[i], &val, &len), 0);
        cr_assert_eq(len, strlen(recs[i]), "store_get gives the JSON alone");
    }
    store_reader_close(&r);
    store_close(&st);

    /* A second run finds nothing to do. */
    cr_assert_eq(run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "already_current=yes") != NULL, "%s", out);
}

Test(upgrade, refuses_what_is_no_ringd_database, .init = tmp_setup, .fini = tmp_teardown)
{
    char out[8192], args[512];
    snprintf(args, sizeof(args), "upgrade --db %s/nothing", tmp);
    cr_assert_eq(run(args, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "msg=upgrade_failed") != NULL, "%s", out);
    cr_assert_eq(run("upgrade", out, sizeof(out)), 2, "no --db: usage");
}

Test(upgrade, a_record_that_cannot_be_encoded_commits_nothing, .init = tmp_setup, .fini = tmp_teardown)
{
    /* A v1 store with one value that is not JSON (never written by ringd, but a disk can hold anything). */
    char bad[160];
    snprintf(bad, sizeof(bad), "%s/bad", tmp);
    const uint64_t bid[] = {1, 2};
    const char *const brec[] = {"{\"id\":1}", "not json"};
    cr_assert_eq(ts_write_v1_store(bad, bid, brec, 2), 0);
    char out[8192], args[512];
    snprintf(args, sizeof(args), "upgrade --db %s", bad);
    cr_assert_eq(run(args, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "record 2 cannot be upgraded") != NULL, "%s", out);
    char err[512] = "";
    struct store st;
    cr_assert_neq(store_open(&st, bad, true, false, err, sizeof(err)), 0, "still v1: nothing was committed");
    cr_assert(strstr(err, STORE_FORMAT_V1) != NULL, "%s", err);
}

Test(upgrade, more_records_than_one_batch, .init = tmp_setup, .fini = tmp_teardown)
{
    /* 2,500 records (batches of 1,024), ids sparse so the tree has several levels of pages. */
    enum { N = 2500 };
    static uint64_t mids[N];
    static char texts[N][64];
    static const char *mrecs[N];
    for (size_t i = 0; i < N; i++) {
        mids[i] = 1 + i * 7919;
        snprintf(texts[i], sizeof(texts[i]), "{\"id\":%llu,\"pad\":\"%0*d\"}", (unsigned long long)mids[i], (int)(i % 40), 0);
        mrecs[i] = texts[i];
    }
    char many[160];
    snprintf(many, sizeof(many), "%s/many", tmp);
    cr_assert_eq(ts_write_v1_store(many, mids, mrecs, N), 0);
    char out[8192], args[512];
    snprintf(args, sizeof(args), "upgrade --db %s", many);
    cr_assert_eq(run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "records=2500") != NULL, "%s", out);
    char err[512];
    struct store st;
    struct store_reader r;
    cr_assert_eq(store_open(&st, many, true, false, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(store_reader_open(&r, &st), 0);
    for (size_t i = 0; i < N; i++) {
        const char *val;
        size_t len;
        int grc = store_get(&r, mids[i], &val, &len);
        cr_assert_eq(grc, 0, "id %llu: %d", (unsigned long long)mids[i], grc);
        cr_assert(len == strlen(mrecs[i]) && memcmp(val, mrecs[i], len) == 0, "id %llu", (unsigned long long)mids[i]);
    }
    MDB_stat ms;
    cr_assert_eq(mdb_stat(r.txn, st.users, &ms), 0);
    cr_assert_eq(ms.ms_entries, N, "no record lost or added");
    store_reader_close(&r);
    store_close(&st);
}
