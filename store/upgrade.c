/* upgrade.c - `ringd upgrade`: rewrites a store of an older format as the current one, in one write transaction. */
#include "store/store.h"

#include "core/clock.h"
#include "core/log.h"
#include "store/cli.h"
#include "store/key.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void store_upgrade_usage(FILE *f)
{
    fputs("usage: ringd upgrade --db DIR\n"
          "\n"
          "Rewrites a database written by an older ringd (format " STORE_FORMAT_V1 ", JSON records\n"
          "only) as format " STORE_FORMAT_VALUE " (each record with its gRPC form), in one\n"
          "transaction (a kill -9 leaves the old database as it was). `ringd serve`, import,\n"
          "demo and follow refuse the old format until then. A current database is left alone.\n"
          "\n"
          "  --db DIR    database directory (env RINGD_DB)\n"
          "  --help      this text\n",
          f);
}

#define STORE_UPGRADE_BATCH 1024 /* records read (copied) before they are rewritten */

/* Every v1 value (bare compact JSON) becomes a v2 value, then the marker
 * changes: all in txn. Records are read in batches (copied out of the map),
 * then rewritten with plain puts and the cursor placed again after the last
 * one: no cursor walks a tree that its own puts are reshaping. Returns 0 or
 * an LMDB code / -1 with err filled. */
static int store_upgrade_txn(struct store *st, MDB_txn *txn, uint64_t *records, char *err, size_t errlen)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->users, &cur);
    if (rc != 0) {
        snprintf(err, errlen, "cannot open a cursor: %s", mdb_strerror(rc));
        return rc;
    }
    uint64_t ids[STORE_UPGRADE_BATCH];
    size_t offs[STORE_UPGRADE_BATCH + 1];
    struct buf json = {0}, value = {0};
    char why[256];
    MDB_val key, val;
    size_t slot;
    rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
    while (rc == 0) {
        size_t n = 0;
        json.len = 0;
        for (; rc == 0 && n < STORE_UPGRADE_BATCH; rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
            ids[n] = store_key_decode(&key);
            offs[n] = json.len;
            if (val.mv_size > 0)
                buf_append(&json, val.mv_data, val.mv_size);
            n++;
        }
        offs[n] = json.len;
        if (rc != 0 && rc != MDB_NOTFOUND)
            break;
        int walk = rc; /* 0: more records after this batch */
        for (size_t i = 0; i < n; i++) {
            value.len = 0;
            if (ids[i] == 0 ||
                store_value_build(ids[i], json.data + offs[i], offs[i + 1] - offs[i], &value, why, sizeof(why)) != 0) {
                snprintf(err, errlen, "record %" PRIu64 " cannot be upgraded: %s", ids[i], ids[i] == 0 ? "not a user key" : why);
                rc = -1;
                goto out;
            }
            store_key_encode(ids[i], &slot, &key);
            MDB_val nv = {value.len, value.data};
            rc = mdb_put(txn, st->users, &key, &nv, 0);
            if (rc != 0) {
                snprintf(err, errlen, "cannot rewrite record %" PRIu64 ": %s", ids[i], mdb_strerror(rc));
                goto out;
            }
            (*records)++;
        }
        rc = walk;
        if (rc == 0) { /* on to the first record after the batch */
            store_key_encode(ids[n - 1], &slot, &key);
            rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
            if (rc == 0 && store_key_decode(&key) == ids[n - 1])
                rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
        }
    }
    if (rc != MDB_NOTFOUND) {
        if (rc > 0 || rc < -1)
            snprintf(err, errlen, "cannot read the users table: %s", mdb_strerror(rc));
        goto out;
    }
    MDB_val mk = {strlen(STORE_FORMAT_KEY), STORE_FORMAT_KEY};
    MDB_val mv = {strlen(STORE_FORMAT_VALUE), STORE_FORMAT_VALUE};
    rc = mdb_put(txn, st->meta, &mk, &mv, 0);
    if (rc != 0)
        snprintf(err, errlen, "cannot write the format marker: %s", mdb_strerror(rc));
out:
    mdb_cursor_close(cur);
    buf_free(&json);
    buf_free(&value);
    return rc;
}

int store_upgrade_main(int argc, char **argv)
{
    const char *db = getenv("RINGD_DB");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            store_upgrade_usage(stdout);
            return 0;
        }
        int got = store_cli_flag_value(argc, argv, &i, "--db", &db);
        if (got < 0)
            return 2;
        if (got == 0) {
            fprintf(stderr, "ringd upgrade: unknown argument %s\n", argv[i]);
            store_upgrade_usage(stderr);
            return 2;
        }
    }
    if (db == NULL || db[0] == '\0') {
        fprintf(stderr, "ringd upgrade: no --db DIR\n");
        store_upgrade_usage(stderr);
        return 2;
    }

    char err[512], safe[512], dbsafe[256];
    struct store st;
    store_cli_log_safe(db, dbsafe, sizeof(dbsafe));
    if (store_open_upgrade(&st, db, err, sizeof(err)) != 0) {
        log_error("upgrade_failed", "db=\"%s\" error=\"%s\"", dbsafe, store_cli_log_safe(err, safe, sizeof(safe)));
        return 1;
    }
    if (!st.old_format) {
        log_info("upgrade_done", "db=\"%s\" format=%s records=0 already_current=yes", dbsafe, STORE_FORMAT_VALUE);
        store_close(&st);
        return 0;
    }
    uint64_t start = clock_now_ns(), records = 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(st.env, NULL, 0, &txn);
    if (rc != 0) {
        snprintf(err, sizeof(err), "cannot begin the write transaction: %s", mdb_strerror(rc));
    } else {
        rc = store_upgrade_txn(&st, txn, &records, err, sizeof(err));
        if (rc == 0) {
            rc = mdb_txn_commit(txn);
            if (rc != 0)
                snprintf(err, sizeof(err), "commit failed: %s", mdb_strerror(rc));
        } else {
            mdb_txn_abort(txn);
        }
    }
    store_close(&st);
    if (rc != 0) {
        log_error("upgrade_failed", "db=\"%s\" error=\"%s\" committed=0", dbsafe, store_cli_log_safe(err, safe, sizeof(safe)));
        return 1;
    }
    log_info("upgrade_done", "db=\"%s\" from=%s format=%s records=%" PRIu64 " seconds=%.3f", dbsafe, STORE_FORMAT_V1,
             STORE_FORMAT_VALUE, records, (double)(clock_now_ns() - start) / 1e9);
    return 0;
}
