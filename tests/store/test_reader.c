/* test_reader.c - store/reader.c: a shard's read transaction sees one snapshot until refreshed; parking and lookups. */
#include "store/store.h"

#include "tests/support/import.h"
#include "tests/support/tmpdir.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmp[64];
static char db[128];

static void tmp_setup(void)
{
    ts_mkdtemp(tmp, sizeof(tmp), "reader");
    snprintf(db, sizeof(db), "%s/db", tmp);
}

static void tmp_teardown(void)
{
    ts_rmtree(tmp);
}


static void expect_record(struct store_reader *r, uint64_t id, const char *want)
{
    const char *val;
    size_t len;
    int rc = store_get(r, id, &val, &len);
    if (want == NULL) {
        cr_assert_eq(rc, MDB_NOTFOUND, "id %llu should be absent (rc %d)", (unsigned long long)id, rc);
        return;
    }
    cr_assert_eq(rc, 0, "id %llu: %s", (unsigned long long)id, mdb_strerror(rc));
    cr_assert_eq(len, strlen(want));
    cr_assert(memcmp(val, want, len) == 0, "id %llu: %.*s", (unsigned long long)id, (int)len, val);
}

Test(reader, lookups_park_and_renew, .init = tmp_setup, .fini = tmp_teardown)
{
    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":1,\"a\":1}\n{\"id\":18446744073709551615}\n", false), 0);
    char err[512];
    struct store st;
    struct store_reader r;
    cr_assert_eq(store_open(&st, db, true, false, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(store_reader_open(&r, &st), 0);
    cr_assert(r.active);
    cr_assert_gt(store_reader_txn_id(&r), 0);
    expect_record(&r, 1, "{\"id\":1,\"a\":1}");
    expect_record(&r, UINT64_MAX, "{\"id\":18446744073709551615}");
    expect_record(&r, 2, NULL);

    store_reader_park(&r);
    cr_assert_not(r.active);
    cr_assert_eq(store_reader_txn_id(&r), 0);
    store_reader_park(&r); /* twice is harmless */
    expect_record(&r, 1, "{\"id\":1,\"a\":1}");
    cr_assert(r.active, "store_get renewed the parked reader");

    cr_assert_eq(store_reader_refresh(&r), 0);
    cr_assert(r.active);
    store_reader_close(&r);
    cr_assert_null(r.txn);
    cr_assert_eq(store_reader_refresh(&r), EINVAL, "a closed reader cannot renew");
    store_reader_close(&r); /* twice is harmless */
    store_close(&st);
}

Test(reader, sees_an_import_only_after_refresh, .init = tmp_setup, .fini = tmp_teardown)
{
    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":1,\"v\":\"old\"}\n{\"id\":2}\n", false), 0);
    char err[512];
    struct store st;
    struct store_reader r, parked;
    cr_assert_eq(store_open(&st, db, true, false, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(store_reader_open(&r, &st), 0);
    cr_assert_eq(store_reader_open(&parked, &st), 0);
    store_reader_park(&parked);
    uint64_t before = store_reader_txn_id(&r);

    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":1,\"v\":\"new\"}\n{\"id\":3}\n", true), 0);

    /* the old snapshot, whole: neither the new record nor the replace's deletion */
    expect_record(&r, 1, "{\"id\":1,\"v\":\"old\"}");
    expect_record(&r, 2, "{\"id\":2}");
    expect_record(&r, 3, NULL);
    cr_assert_eq(store_reader_txn_id(&r), before);

    cr_assert_eq(store_reader_refresh(&r), 0);
    cr_assert_gt(store_reader_txn_id(&r), before);
    expect_record(&r, 1, "{\"id\":1,\"v\":\"new\"}");
    expect_record(&r, 2, NULL);
    expect_record(&r, 3, "{\"id\":3}");
    /* a parked reader renews into the newest snapshot on its next lookup */
    expect_record(&parked, 3, "{\"id\":3}");

    /* a failed import changes nothing a reader can see after refresh */
    cr_assert_eq(ts_import_in_child(tmp, db, "{\"id\":4}\nnot json\n", false), 1);
    cr_assert_eq(store_reader_refresh(&r), 0);
    expect_record(&r, 4, NULL);
    expect_record(&r, 3, "{\"id\":3}");

    store_reader_close(&parked);
    store_reader_close(&r);
    store_close(&st);
}
