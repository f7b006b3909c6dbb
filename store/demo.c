/* demo.c - `ringd demo`: generated users for first runs and benchmarks, written straight as compact JSON. */
#include "store/store.h"

#include "core/clock.h"
#include "core/log.h"
#include "store/cli.h"
#include "store/key.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STORE_DEMO_DEFAULT_USERS 100000
#define STORE_DEMO_MAX_USERS 1000000000ull /* ~120 GB of records: beyond that it is a typo */
#define STORE_DEMO_EPOCH 1704067200        /* 2024-01-01T00:00:00Z: every created_at falls in 2024 */

/* splitmix64's finaliser: a fixed, well-spread function of i, so the same id
 * always gets the same plan and date on every machine. */
static uint64_t store_demo_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Mostly free accounts, as in life: 60% free, 25% pro, 12% team, 3% enterprise. */
static const char *store_demo_plan(uint64_t h)
{
    unsigned p = (unsigned)(h % 100);
    return p < 60 ? "free" : p < 85 ? "pro" : p < 97 ? "team" : "enterprise";
}

/* Writes user id's record into buf and returns its length. Only digits and
 * fixed ASCII words go in, so snprintf yields valid compact JSON - the same
 * bytes store_record_normalize would produce - without a JSON encoder. */
static size_t store_demo_record(uint64_t id, char *buf, size_t cap)
{
    uint64_t h = store_demo_mix(id);
    time_t t = (time_t)(STORE_DEMO_EPOCH + (h >> 8) % (366u * 86400u));
    struct tm tm;
    gmtime_r(&t, &tm);
    int n =
        snprintf(buf, cap,
                 "{\"id\":%" PRIu64 ",\"name\":\"User %" PRIu64 "\",\"email\":\"user%" PRIu64
                 "@example.com\",\"plan\":\"%s\",\"created_at\":\"%04d-%02d-%02dT%02d:%02d:%02dZ\"}",
                 id, id, id, store_demo_plan(h), tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return (size_t)n; /* < cap: cap is sized for 20-digit ids */
}

int store_demo_create(const char *dir, uint64_t n, char *err, size_t errlen)
{
    struct store st;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    struct buf value = {0};
    int rc = store_open(&st, dir, false, true, err, errlen);
    if (rc != 0)
        return rc;
    if ((rc = mdb_txn_begin(st.env, NULL, 0, &txn)) != 0 || (rc = mdb_cursor_open(txn, st.users, &cur)) != 0) {
        snprintf(err, errlen, "%s: cannot begin the write transaction: %s", dir, mdb_strerror(rc));
        goto cleanup;
    }
    /* Ids above the largest stored one are appended (no tree search: the bulk
     * of the work for a fresh database); lower ones are overwritten in place. */
    MDB_val key, val;
    uint64_t last = 0;
    if (mdb_cursor_get(cur, &key, &val, MDB_LAST) == 0)
        last = store_key_decode(&key);
    char buf[256];
    for (uint64_t id = 1; id <= n; id++) {
        size_t slot;
        store_key_encode(id, &slot, &key);
        value.len = 0;
        if (store_value_build(id, buf, store_demo_record(id, buf, sizeof(buf)), &value, err, errlen) != 0) {
            rc = MDB_BAD_VALSIZE; /* cannot happen: the generated JSON is valid */
            goto cleanup;
        }
        val.mv_size = value.len;
        val.mv_data = value.data;
        rc = mdb_cursor_put(cur, &key, &val, id > last ? MDB_APPEND : 0);
        if (rc != 0) {
            snprintf(err, errlen, "%s: cannot store user %" PRIu64 ": %s", dir, id, mdb_strerror(rc));
            goto cleanup;
        }
    }
    mdb_cursor_close(cur);
    cur = NULL;
    struct store_changes all = {.all = true}; /* ids 1 .. n: "any" says it in 8 bytes */
    rc = store_commit(txn, &st, &all);
    txn = NULL;
    if (rc != 0)
        snprintf(err, errlen, "%s: commit failed: %s", dir, mdb_strerror(rc));

cleanup:
    buf_free(&value);
    if (cur != NULL)
        mdb_cursor_close(cur); /* before the abort that would free it */
    if (txn != NULL)
        mdb_txn_abort(txn);
    store_close(&st);
    return rc;
}

static void store_demo_usage(FILE *f)
{
    fputs("usage: ringd demo --db DIR [--users N]\n"
          "\n"
          "Creates (or extends) a database of N generated users with ids 1..N,\n"
          "about 120 bytes of JSON each, in one transaction.\n"
          "\n"
          "  --db DIR    database directory, created if missing (env RINGD_DB)\n"
          "  --users N   how many users (default 100000)\n"
          "  --help      this text\n",
          f);
}

int store_demo_main(int argc, char **argv)
{
    const char *db = getenv("RINGD_DB");
    const char *users_arg = NULL;
    uint64_t users = STORE_DEMO_DEFAULT_USERS;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            store_demo_usage(stdout);
            return 0;
        }
        int got = store_cli_flag_value(argc, argv, &i, "--db", &db);
        if (got == 0)
            got = store_cli_flag_value(argc, argv, &i, "--users", &users_arg);
        if (got < 0)
            return 2;
        if (got == 0) {
            fprintf(stderr, "ringd demo: unknown argument %s\n", argv[i]);
            store_demo_usage(stderr);
            return 2;
        }
    }
    if (users_arg != NULL && (store_cli_parse_u64(users_arg, &users) != 0 || users > STORE_DEMO_MAX_USERS)) {
        fprintf(stderr, "ringd demo: --users wants a count from 0 to %llu, not '%s'\n", STORE_DEMO_MAX_USERS, users_arg);
        return 2;
    }
    if (db == NULL || db[0] == '\0') {
        fprintf(stderr, "ringd demo: no --db DIR\n");
        store_demo_usage(stderr);
        return 2;
    }

    char err[512], safe[256];
    uint64_t start = clock_now_ns();
    if (store_demo_create(db, users, err, sizeof(err)) != 0) {
        log_error("demo_failed", "error=\"%s\"", store_cli_log_safe(err, safe, sizeof(safe)));
        return 1;
    }
    log_info("demo_done", "db=\"%s\" users=%" PRIu64 " seconds=%.3f", store_cli_log_safe(db, safe, sizeof(safe)), users,
             (double)(clock_now_ns() - start) / 1e9);
    return 0;
}
