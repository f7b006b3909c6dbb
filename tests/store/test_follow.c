/* test_follow.c - integration: `ringd follow` against a real PostgreSQL 15: the initial copy, changes visible over
 * HTTP from a real `ringd serve` (and its feed metrics and /readyz), unchanged TOASTed values, ALTER TABLE mid-stream,
 * PostgreSQL restarted mid-stream, SIGTERM during a large transaction, arrays as JSON arrays. */
#include "tests/support/pg.h"
#include "tests/support/server.h"
#include "tests/support/tmpdir.h"

#include "store/feed.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct test_pg pg;
static char tmp[64], db[320], flog[128];
static pid_t follower = -1;

static void setup(void)
{
    if (!tpg_available())
        cr_skip_test("PostgreSQL 15 is not installed (./build.sh test installs postgresql-15)");
    ts_mkdtemp(tmp, sizeof(tmp), "follow");
    snprintf(db, sizeof(db), "%s/db", tmp);
    snprintf(flog, sizeof(flog), "%s/follow.log", tmp);
    cr_assert_eq(tpg_start(&pg), 0, "PostgreSQL did not start");
}

static void teardown(void)
{
    if (follower > 0)
        tf_stop(follower, 10000);
    follower = -1;
    tpg_stop(&pg);
    ts_rmtree(tmp);
}

static void start_follower(const char *table)
{
    follower = tf_spawn(&pg, db, table, flog, NULL);
}

/* Waits for the n-th "streaming" line (after the copy or a reconnect). */
static void wait_streaming(int n)
{
    if (!tf_wait_log(flog, "msg=follow_streaming", n, 30000)) {
        tf_print_log(flog);
        cr_assert_fail("the follower did not reach streaming #%d", n);
    }
}

static void expect_equal(const char *table, int timeout_ms)
{
    char why[1024];
    if (tf_wait_equal(&pg, db, table, "id", timeout_ms, why, sizeof(why)) != 0) {
        tf_print_log(flog);
        cr_assert_fail("store != table %s: %s", table, why);
    }
}

#define USERS_DDL                                                                                                                  \
    "CREATE TABLE users (id bigint PRIMARY KEY, name text, email varchar(80), n int NOT NULL DEFAULT 0, active bool,"              \
    " score numeric, price real, ratio double precision, small smallint, created timestamptz, born date, seen timestamp,"          \
    " uid uuid, ip inet, span interval, meta jsonb, doc json, note text)"

Test(follow, initial_copy_of_10000_rows, .init = setup, .fini = teardown, .timeout = 180)
{
    free(tpg_exec(&pg, USERS_DDL));
    free(tpg_exec(&pg, "INSERT INTO users SELECT i, 'User ' || i, 'user' || i || '@example.com', i % 7, i % 3 = 0,"
                       " CASE WHEN i % 11 = 0 THEN NULL ELSE i * 1.25 END, i / 4.0, 1.0 / i, i % 100,"
                       " timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute', date '2020-02-29' + i,"
                       " timestamp '2024-06-01 12:00:00.5' + i * interval '1 second', md5(i::text)::uuid, '10.0.0.1'::inet,"
                       " i * interval '1 hour', jsonb_build_object('k', i, 'tags', jsonb_build_array('a', i)), '{\"x\": [1, 2]}',"
                       " CASE WHEN i % 5 = 0 THEN E'tab\\tquote\" backslash\\\\ nl\\n é' ELSE NULL END"
                       " FROM generate_series(1, 10000) i"));
    start_follower("users");
    cr_assert(tf_wait_log(flog, "msg=follow_copy_done", 1, 60000), "no copy_done");
    wait_streaming(1);
    cr_assert_eq(tf_log_count(flog, "rows=10000"), 1, "the copy reports its rows");
    expect_equal("users", 10000);
    struct store_feed f;
    cr_assert_eq(tf_feed(db, &f), 0);
    cr_assert(f.present && f.lsn > 0, "the copy stores the slot's consistent point");
    cr_assert_eq(f.rows, 10000);
    cr_assert_eq(f.txns, 0);
    cr_assert_str_eq(f.slot, "ringd");
    cr_assert_str_eq(f.table, "public.users");
    /* Types the way row_to_json has them (tf_compare compares as JSON; spot-check the bytes). */
    char *rec = tf_record(db, 5);
    cr_assert_not_null(rec);
    cr_assert(strstr(rec, "\"created\":\"2024-01-01T00:05:00+00:00\"") != NULL, "%s", rec);
    cr_assert(strstr(rec, "\"active\":false") != NULL && strstr(rec, "\"score\":6.25") != NULL, "%s", rec);
    cr_assert(strstr(rec, "\"meta\":{\"k\":5,\"tags\":[\"a\",5]}") != NULL, "%s", rec);
    free(rec);
    cr_assert_eq(tf_stop(follower, 10000), 0);
    follower = -1;
    cr_assert_eq(tf_log_count(flog, "msg=follow_stopped"), 1);
}

/* GET /users/id until the body contains want (or, want NULL, a 404); within timeout_ms. */
static bool poll_user(int port, unsigned id, const char *want, int timeout_ms, struct ts_response *r)
{
    char path[64];
    snprintf(path, sizeof(path), "/users/%u", id);
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (ts_get(port, path, NULL, r) == 0 &&
            ((want == NULL && r->status == 404) || (want != NULL && r->status == 200 && strstr(r->body, want) != NULL)))
            return true;
        usleep(20000);
    }
    return false;
}

Test(follow, changes_visible_over_http, .init = setup, .fini = teardown, .timeout = 180)
{
    struct test_server ts;
    cr_assert_eq(ts_prepare(&ts, 50), 0); /* a demo store: the copy replaces it with the table */
    snprintf(db, sizeof(db), "%s", ts.db);
    free(tpg_exec(&pg, "CREATE TABLE users (id int PRIMARY KEY, name text, n int)"));
    free(tpg_exec(&pg, "INSERT INTO users SELECT i, 'u' || i, 0 FROM generate_series(1, 3) i"));
    start_follower("users");
    wait_streaming(1);
    const char *args[] = {"--shards", "2", "--max-feed-lag-ms", "2000", "--refresh-ms", "20", NULL};
    cr_assert_eq(ts_start(&ts, args), 0);
    struct ts_response r;
    cr_assert(poll_user(ts.port, 1, "\"name\":\"u1\"", 5000, &r), "copied row: %d %s", r.status, r.body);
    cr_assert(poll_user(ts.port, 40, NULL, 5000, &r), "a demo user the copy replaced: %d %s", r.status, r.body);

    PGconn *c = tpg_connect(&pg);
    tpg_run(c, "INSERT INTO users VALUES (42, 'answer', 1)");
    cr_assert(poll_user(ts.port, 42, "{\"id\":42,\"name\":\"answer\",\"n\":1}", 5000, &r), "insert: %d %s", r.status, r.body);
    tpg_run(c, "UPDATE users SET name = 'forty-two', n = n + 1 WHERE id = 42");
    cr_assert(poll_user(ts.port, 42, "\"name\":\"forty-two\",\"n\":2", 5000, &r), "update: %d %s", r.status, r.body);
    tpg_run(c, "DELETE FROM users WHERE id = 42");
    cr_assert(poll_user(ts.port, 42, NULL, 5000, &r), "delete: %d %s", r.status, r.body);
    tpg_run(c, "BEGIN; UPDATE users SET n = 9 WHERE id = 2; UPDATE users SET id = 20 WHERE id = 3; COMMIT");
    cr_assert(poll_user(ts.port, 20, "\"id\":20,\"name\":\"u3\"", 5000, &r), "id change: %d %s", r.status, r.body);
    cr_assert(poll_user(ts.port, 3, NULL, 1000, &r), "the old id is gone: %d %s", r.status, r.body);
    cr_assert(poll_user(ts.port, 2, "\"n\":9", 1000, &r), "same transaction: %d %s", r.status, r.body);
    /* A row whose id is not a positive integer is skipped, counted and logged; the feed goes on. */
    tpg_run(c, "INSERT INTO users VALUES (-5, 'negative', 0)");
    tpg_run(c, "INSERT INTO users VALUES (7, 'after', 0)");
    cr_assert(poll_user(ts.port, 7, "after", 5000, &r), "after a skipped row: %d %s", r.status, r.body);
    cr_assert(tf_wait_log(flog, "msg=follow_row_skipped lsn=", 1, 2000), "the skip is logged with its LSN");

    /* What serve tells: the feed's position and lag, from the store. */
    usleep(300000);
    char *m = ts_metrics_text(ts.port);
    cr_assert_not_null(m);
    struct store_feed f;
    cr_assert_eq(tf_feed(db, &f), 0);
    cr_assert_gt(ts_metric_in(m, "ringd_feed_applied_lsn"), 0, "%s", m);
    cr_assert_eq(ts_metric_in(m, "ringd_feed_lag_seconds"), 0, "caught up");
    cr_assert_eq(ts_metric_in(m, "ringd_feed_follower_running"), 1);
    cr_assert_eq(ts_metric_in(m, "ringd_feed_skipped_rows_total"), 1);
    cr_assert_eq(ts_metric_in(m, "ringd_feed_applied_transactions_total"), (double)f.txns);
    cr_assert_eq(f.txns, 5, "insert, update, delete, the two-statement one and 7's (the skipped row's applied nothing)");
    double commit = ts_metric_in(m, "ringd_feed_last_commit_timestamp_seconds");
    cr_assert(commit > (double)time(NULL) - 60 && commit <= (double)time(NULL) + 1, "commit time %f", commit);
    free(m);
    cr_assert(ts_get(ts.port, "/readyz", NULL, &r) == 0 && r.status == 200, "readyz %d %s", r.status, r.body);

    tpg_run(c, "TRUNCATE users");
    cr_assert(poll_user(ts.port, 1, NULL, 5000, &r), "truncate: %d %s", r.status, r.body);
    cr_assert(poll_user(ts.port, 7, NULL, 1000, &r), "truncate: %d %s", r.status, r.body);
    tpg_run(c, "INSERT INTO users VALUES (8, 'after truncate', 0)");
    cr_assert(poll_user(ts.port, 8, "after truncate", 5000, &r), "insert after truncate: %d %s", r.status, r.body);
    PQfinish(c);
    expect_equal("users", 5000);

    /* A dead follower: the lag grows from its last heartbeat and /readyz routes around it. */
    kill(follower, SIGKILL);
    waitpid(follower, NULL, 0);
    follower = -1;
    bool unready = false;
    for (int i = 0; i < 100 && !unready; i++) {
        usleep(100000);
        unready = ts_get(ts.port, "/readyz", NULL, &r) == 0 && r.status == 503 && strstr(r.body, "feed behind") != NULL;
    }
    cr_assert(unready, "readyz with the follower dead: %d %s", r.status, r.body);
    cr_assert_gt(ts_metric(ts.port, "ringd_feed_lag_seconds"), 2.0);
    cr_assert_eq(ts_metric(ts.port, "ringd_feed_follower_running"), 0);
    /* A follower again: caught up, ready again. */
    start_follower("users");
    bool ready = false; /* a restarted ASan follower on a busy machine may take more than 10 s to catch up */
    for (int i = 0; i < 300 && !ready; i++) {
        usleep(100000);
        ready = ts_get(ts.port, "/readyz", NULL, &r) == 0 && r.status == 200;
    }
    cr_assert(ready, "readyz with the follower back: %d %s", r.status, r.body);
    cr_assert_eq(ts_stop(&ts), 0);
}

Test(follow, toasted_column_unchanged_in_an_update, .init = setup, .fini = teardown, .timeout = 180)
{
    /* EXTERNAL: stored out of line, uncompressed, so an update that leaves it alone sends it as 'u'. */
    free(tpg_exec(&pg, "CREATE TABLE docs (id int PRIMARY KEY, n int, body text, small text)"));
    free(tpg_exec(&pg, "ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL"));
    free(tpg_exec(&pg, "INSERT INTO docs VALUES (1, 0, 'before', 'x')"));
    start_follower("docs");
    wait_streaming(1);
    PGconn *c = tpg_connect(&pg);
    tpg_run(c, "INSERT INTO docs SELECT i, 0, (SELECT string_agg(md5(i::text || g::text), '') FROM generate_series(1, 3000) g),"
               " 's' FROM generate_series(2, 4) i");
    tpg_run(c, "UPDATE docs SET body = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 3000) g) WHERE id = 1");
    expect_equal("docs", 10000);
    tpg_run(c, "UPDATE docs SET n = n + 1, small = 'changed' WHERE id IN (1, 2)");
    tpg_run(c, "BEGIN; UPDATE docs SET n = 5 WHERE id = 3; UPDATE docs SET id = 30 WHERE id = 4; COMMIT");
    PQfinish(c);
    expect_equal("docs", 10000);
    char *rec = tf_record(db, 30);
    cr_assert(rec != NULL && strlen(rec) > 90000, "the moved row keeps its TOASTed body");
    free(rec);
}

Test(follow, alter_table_add_column_mid_stream, .init = setup, .fini = teardown, .timeout = 180)
{
    free(tpg_exec(&pg, "CREATE TABLE users (id int PRIMARY KEY, name text)"));
    free(tpg_exec(&pg, "INSERT INTO users VALUES (1, 'one'), (2, 'two')"));
    start_follower("users");
    wait_streaming(1);
    PGconn *c = tpg_connect(&pg);
    tpg_run(c, "INSERT INTO users VALUES (3, 'three')");
    tpg_run(c, "ALTER TABLE users ADD COLUMN plan text DEFAULT 'free', ADD COLUMN level int");
    tpg_run(c, "INSERT INTO users VALUES (4, 'four', 'pro', 7)");
    tpg_run(c, "UPDATE users SET name = 'ONE' WHERE id = 1");
    PQfinish(c);
    char *rec = NULL;
    for (int i = 0; i < 250 && rec == NULL; i++) {
        usleep(20000);
        char *r1 = tf_record(db, 1);
        if (r1 != NULL && strstr(r1, "ONE") != NULL)
            rec = r1;
        else
            free(r1);
    }
    cr_assert_not_null(rec, "the update after ALTER TABLE arrived");
    cr_assert_str_eq(rec, "{\"id\":1,\"name\":\"ONE\",\"plan\":\"free\",\"level\":null}");
    free(rec);
    rec = tf_record(db, 4);
    cr_assert_str_eq(rec, "{\"id\":4,\"name\":\"four\",\"plan\":\"pro\",\"level\":7}");
    free(rec);
    /* Rows nobody touched since keep the shape they were written with (ADD COLUMN writes no WAL for them). */
    rec = tf_record(db, 2);
    cr_assert_str_eq(rec, "{\"id\":2,\"name\":\"two\"}");
    free(rec);
    cr_assert_eq(tf_log_count(flog, "msg=follow_relation_changed"), 1);
}

Test(follow, postgresql_restarted_mid_stream, .init = setup, .fini = teardown, .timeout = 180)
{
    free(tpg_exec(&pg, "CREATE TABLE users (id int PRIMARY KEY, n int)"));
    free(tpg_exec(&pg, "INSERT INTO users SELECT i, 0 FROM generate_series(1, 100) i"));
    start_follower("users");
    wait_streaming(1);
    free(tpg_exec(&pg, "UPDATE users SET n = 1 WHERE id <= 50"));
    expect_equal("users", 10000);
    tpg_halt(&pg);
    cr_assert(tf_wait_log(flog, "msg=follow_disconnected", 1, 10000), "the follower notices");
    usleep(700000); /* a few retries against a server that is down */
    cr_assert_eq(tf_wait_exit(follower, 0), -1, "the follower keeps running while PostgreSQL is down");
    cr_assert_eq(tpg_restart(&pg), 0);
    free(tpg_exec(&pg, "UPDATE users SET n = 2 WHERE id > 50"));
    free(tpg_exec(&pg, "DELETE FROM users WHERE id = 100"));
    wait_streaming(2);
    expect_equal("users", 15000);
    struct store_feed f;
    cr_assert_eq(tf_feed(db, &f), 0);
    cr_assert_eq(f.txns, 3, "each transaction applied once");
}

Test(follow, sigterm_finishes_the_transaction_in_progress, .init = setup, .fini = teardown, .timeout = 180)
{
    free(tpg_exec(&pg, "CREATE TABLE users (id int PRIMARY KEY, name text)"));
    start_follower("users");
    wait_streaming(1);
    free(tpg_exec(&pg, "INSERT INTO users SELECT i, repeat('x', 100) FROM generate_series(1, 60000) i"));
    usleep(50000); /* the follower is receiving it (or about to) */
    cr_assert_eq(tf_stop(follower, 60000), 0, "SIGTERM exits 0");
    follower = -1;
    struct store_feed f;
    cr_assert_eq(tf_feed(db, &f), 0);
    /* All of the transaction or none of it, and the log says where it stopped. */
    cr_assert(f.rows == 0 || f.rows == 60000, "rows %llu", (unsigned long long)f.rows);
    char want[96];
    snprintf(want, sizeof(want), "msg=follow_stopped table=public.users lsn=%X/%X ", (unsigned)(f.lsn >> 32), (unsigned)f.lsn);
    cr_assert_eq(tf_log_count(flog, want), 1, "follow_stopped reports %s", want);
    /* Restarted, it goes on from there and ends equal. */
    start_follower("users");
    expect_equal("users", 30000);
}

Test(follow, arrays_become_json_arrays_like_row_to_json, .init = setup, .fini = teardown, .timeout = 180)
{
    free(tpg_exec(&pg, "CREATE TABLE users (id bigint PRIMARY KEY, ints int[], bigs bigint[], flags bool[], nums numeric[],"
                       " reals float8[], names text[], tags varchar(20)[], stamps timestamptz[], docs jsonb[], grid int[][],"
                       " uids uuid[])"));
    free(tpg_exec(&pg, "INSERT INTO users VALUES (1, '{1,2,3}', '{9223372036854775807,NULL}', '{t,f}', '{1.5,NaN}',"
                       " '{1e100,-0.5}', '{\"a b\",\"\",NULL,\"NULL\",\"q\\\"uote\",\"back\\\\slash\",é}', '{x,y}',"
                       " '{\"2024-01-01 00:00:00+00\"}', ARRAY['{\"k\": [1, 2]}'::jsonb, NULL], '{{1,2},{3,4}}',"
                       " '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'),"
                       " (2, '{}', NULL, NULL, NULL, NULL, '{}', NULL, NULL, NULL, NULL, NULL)"));
    start_follower("users");
    wait_streaming(1);
    expect_equal("users", 10000); /* the copy, compared with row_to_json as JSON */
    char *rec = tf_record(db, 1);
    cr_assert_not_null(rec);
    cr_assert(strstr(rec, "\"ints\":[1,2,3]") != NULL && strstr(rec, "\"grid\":[[1,2],[3,4]]") != NULL, "%s", rec);
    cr_assert(strstr(rec, "\"names\":[\"a b\",\"\",null,\"NULL\",\"q\\\"uote\",\"back\\\\slash\",\"é\"]") != NULL, "%s", rec);
    free(rec);

    /* Streamed: an insert with bounds other than 1, an update of two arrays. */
    free(tpg_exec(&pg, "INSERT INTO users (id, ints, flags) VALUES (3, '[0:1]={7,8}', '{NULL,true}')"));
    free(tpg_exec(&pg, "UPDATE users SET names = '{\"new, name\",NULL}', ints = ints || 4 WHERE id = 1"));
    expect_equal("users", 10000);
    rec = tf_record(db, 1);
    cr_assert_not_null(rec);
    cr_assert(strstr(rec, "\"ints\":[1,2,3,4]") != NULL && strstr(rec, "\"names\":[\"new, name\",null]") != NULL, "%s", rec);
    free(rec);
    rec = tf_record(db, 3);
    cr_assert_not_null(rec);
    cr_assert(strstr(rec, "\"ints\":[7,8]") != NULL && strstr(rec, "\"flags\":[null,true]") != NULL, "%s", rec);
    free(rec);
}
