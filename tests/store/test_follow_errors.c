/* test_follow_errors.c - integration: `ringd follow`'s start-up errors (exit 1 with one line saying which and the SQL
 * that fixes it; exit 2 for bad usage), PostgreSQL unreachable at start (retries, then streams), a second follower. */
#include "tests/support/pg.h"
#include "tests/support/server.h"
#include "tests/support/tmpdir.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct test_pg pg;
static char tmp[64], db[128], flog[128];

static void setup(void)
{
    if (!tpg_available())
        cr_skip_test("PostgreSQL 15 is not installed (./build.sh test installs postgresql-15)");
    ts_mkdtemp(tmp, sizeof(tmp), "follow-err");
    snprintf(db, sizeof(db), "%s/db", tmp);
    snprintf(flog, sizeof(flog), "%s/follow.log", tmp);
    cr_assert_eq(tpg_start(&pg), 0, "PostgreSQL did not start");
}

static void teardown(void)
{
    tpg_stop(&pg);
    ts_rmtree(tmp);
}

/* Runs the follower to its exit (within 30 s) and returns the exit code. */
static int run_follower(const char *table, const char *const *extra)
{
    pid_t p = tf_spawn(&pg, db, table, flog, extra);
    int rc = tf_wait_exit(p, 30000);
    if (rc == -1) {
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
        tf_print_log(flog);
    }
    return rc;
}

/* Exactly one follow_failed line, containing each of the needles (NULL-terminated). */
static void expect_failure(const char *const *needles)
{
    cr_assert_eq(tf_log_count(flog, "level=error msg=follow_failed"), 1, "one line");
    for (int i = 0; needles[i] != NULL; i++)
        if (tf_log_count(flog, needles[i]) != 1) {
            tf_print_log(flog);
            cr_assert_fail("the failure line lacks '%s'", needles[i]);
        }
}

Test(follow_errors, missing_slot, .init = setup, .fini = teardown, .timeout = 120)
{
    free(tpg_exec(&pg, "CREATE TABLE users (id int PRIMARY KEY, name text)"));
    pid_t p = tf_spawn(&pg, db, "users", flog, NULL);
    cr_assert(tf_wait_log(flog, "msg=follow_streaming", 1, 30000));
    cr_assert_eq(tf_stop(p, 10000), 0);
    free(tpg_exec(&pg, "SELECT pg_drop_replication_slot('ringd')"));
    cr_assert_eq(run_follower("users", NULL), 1);
    const char *n[] = {"replication slot ringd does not exist", "fix=", "pg_create_logical_replication_slot('ringd', 'pgoutput')",
                       NULL};
    expect_failure(n);
}

Test(follow_errors, table_without_usable_replica_identity, .init = setup, .fini = teardown, .timeout = 120)
{
    free(tpg_exec(&pg, "CREATE TABLE nopk (id int, name text)"));
    cr_assert_eq(run_follower("nopk", NULL), 1);
    const char *n[] = {"no usable replica identity", "ALTER TABLE public.nopk ADD PRIMARY KEY (id)",
                       "ALTER TABLE public.nopk REPLICA IDENTITY FULL", NULL};
    expect_failure(n);
    /* The fix works. */
    free(tpg_exec(&pg, "ALTER TABLE public.nopk REPLICA IDENTITY FULL"));
    free(tpg_exec(&pg, "INSERT INTO nopk VALUES (1, 'a')"));
    pid_t p = tf_spawn(&pg, db, "nopk", flog, NULL);
    cr_assert(tf_wait_log(flog, "msg=follow_streaming", 1, 30000));
    free(tpg_exec(&pg, "DELETE FROM nopk WHERE id = 1"));
    char why[512];
    cr_assert_eq(tf_wait_equal(&pg, db, "nopk", "id", 10000, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(tf_stop(p, 10000), 0);
}

Test(follow_errors, replica_identity_nothing, .init = setup, .fini = teardown, .timeout = 120)
{
    free(tpg_exec(&pg, "CREATE TABLE users (id int PRIMARY KEY); ALTER TABLE users REPLICA IDENTITY NOTHING"));
    cr_assert_eq(run_follower("users", NULL), 1);
    const char *n[] = {"REPLICA IDENTITY NOTHING", "REPLICA IDENTITY FULL", NULL};
    expect_failure(n);
}

Test(follow_errors, publication_without_the_table, .init = setup, .fini = teardown, .timeout = 120)
{
    free(tpg_exec(&pg, "CREATE TABLE users (id int PRIMARY KEY); CREATE TABLE other (id int PRIMARY KEY);"
                       " CREATE PUBLICATION ringd FOR TABLE other"));
    cr_assert_eq(run_follower("users", NULL), 1);
    const char *n[] = {"publication ringd does not publish table public.users", "ALTER PUBLICATION ringd ADD TABLE public.users",
                       NULL};
    expect_failure(n);
}

Test(follow_errors, publication_without_deletes, .init = setup, .fini = teardown, .timeout = 120)
{
    free(tpg_exec(&pg, "CREATE TABLE users (id int PRIMARY KEY);"
                       " CREATE PUBLICATION ringd FOR TABLE users WITH (publish = 'insert, update')"));
    cr_assert_eq(run_follower("users", NULL), 1);
    const char *n[] = {"does not publish deletes", "ALTER PUBLICATION ringd SET (publish = 'insert, update, delete, truncate')",
                       NULL};
    expect_failure(n);
}

Test(follow_errors, missing_table_and_column, .init = setup, .fini = teardown, .timeout = 120)
{
    cr_assert_eq(run_follower("nope", NULL), 1);
    const char *n1[] = {"table public.nope does not exist", NULL};
    expect_failure(n1);
    ts_rmtree(tmp);
    ts_mkdtemp(tmp, sizeof(tmp), "follow-err");
    snprintf(db, sizeof(db), "%s/db", tmp);
    snprintf(flog, sizeof(flog), "%s/follow.log", tmp);
    free(tpg_exec(&pg, "CREATE SCHEMA app; CREATE TABLE app.people (user_id int PRIMARY KEY, name text)"));
    cr_assert_eq(run_follower("app.people", NULL), 1);
    const char *n2[] = {"table app.people has no column id", "--id-column", NULL};
    expect_failure(n2);
    /* With --id-column it follows, keyed by that column. */
    free(tpg_exec(&pg, "INSERT INTO app.people VALUES (9, 'nine')"));
    const char *extra[] = {"--id-column", "user_id", "--slot", "people", "--publication", "people", NULL};
    pid_t p = tf_spawn(&pg, db, "app.people", flog, extra);
    cr_assert(tf_wait_log(flog, "msg=follow_streaming", 1, 30000));
    char why[512];
    cr_assert_eq(tf_wait_equal(&pg, db, "app.people", "user_id", 10000, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(tf_stop(p, 10000), 0);
}

Test(follow_errors, slot_taken_by_someone_else, .init = setup, .fini = teardown, .timeout = 120)
{
    free(tpg_exec(&pg, "CREATE TABLE users (id int PRIMARY KEY)"));
    free(tpg_exec(&pg, "SELECT pg_create_logical_replication_slot('ringd', 'pgoutput')"));
    cr_assert_eq(run_follower("users", NULL), 1);
    const char *n[] = {"replication slot ringd already exists", "pg_drop_replication_slot('ringd')", NULL};
    expect_failure(n);
}

Test(follow_errors, bad_usage, .timeout = 30)
{
    char out[256];
    ts_mkdtemp(tmp, sizeof(tmp), "follow-err");
    snprintf(out, sizeof(out), "%s/out", tmp);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "env -u RINGD_PG %s follow --db %s/db --table users 2>%s", RINGD_BIN, tmp, out);
    cr_assert_eq(ts_sh(cmd), 2);
    cr_assert_eq(tf_log_count(out, "no --pg CONNINFO"), 1);
    snprintf(cmd, sizeof(cmd), "%s follow --db %s/db --pg x --table users --slot Bad-Name 2>%s", RINGD_BIN, tmp, out);
    cr_assert_eq(ts_sh(cmd), 2);
    snprintf(cmd, sizeof(cmd), "%s follow --db %s/db --pg x --table a.b.c 2>%s", RINGD_BIN, tmp, out);
    cr_assert_eq(ts_sh(cmd), 2);
    snprintf(cmd, sizeof(cmd), "%s follow --help >%s", RINGD_BIN, out);
    cr_assert_eq(ts_sh(cmd), 0);
    cr_assert_eq(tf_log_count(out, "usage: ringd follow"), 1);
    /* The environment stands in for flags. */
    snprintf(cmd, sizeof(cmd), "RINGD_DB=%s/db RINGD_PG=x RINGD_TABLE=users RINGD_SLOT=Bad %s follow 2>%s", tmp, RINGD_BIN, out);
    cr_assert_eq(ts_sh(cmd), 2);
    cr_assert_eq(tf_log_count(out, "--slot wants"), 1);
    ts_rmtree(tmp);
}

Test(follow_errors, unreachable_at_start_then_up, .init = setup, .fini = teardown, .timeout = 120)
{
    free(tpg_exec(&pg, "CREATE TABLE users (id int PRIMARY KEY, name text); INSERT INTO users VALUES (1, 'a')"));
    tpg_halt(&pg);
    pid_t p = tf_spawn(&pg, db, "users", flog, NULL);
    cr_assert(tf_wait_log(flog, "msg=follow_connect_failed", 1, 10000), "says it cannot connect");
    cr_assert_eq(tf_wait_exit(p, 1500), -1, "and keeps trying");
    cr_assert_eq(tf_log_count(flog, "msg=follow_connect_failed"), 1, "one line per state change, not per retry");
    cr_assert_eq(tpg_restart(&pg), 0);
    cr_assert(tf_wait_log(flog, "msg=follow_streaming", 1, 30000), "streams once PostgreSQL is up");
    char why[512];
    cr_assert_eq(tf_wait_equal(&pg, db, "users", "id", 10000, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(tf_stop(p, 10000), 0);
}

Test(follow_errors, second_follower_on_one_store, .init = setup, .fini = teardown, .timeout = 120)
{
    free(tpg_exec(&pg, "CREATE TABLE users (id int PRIMARY KEY)"));
    pid_t p = tf_spawn(&pg, db, "users", flog, NULL);
    cr_assert(tf_wait_log(flog, "msg=follow_streaming", 1, 30000));
    cr_assert_eq(run_follower("users", NULL), 1);
    const char *n[] = {"another ringd follow is running", NULL};
    expect_failure(n);
    /* A store that follows one table refuses another. */
    cr_assert_eq(tf_stop(p, 10000), 0);
    free(tpg_exec(&pg, "CREATE TABLE other (id int PRIMARY KEY)"));
    cr_assert_eq(run_follower("other", NULL), 1);
    cr_assert_eq(tf_log_count(flog, "follows table public.users through slot ringd"), 1);
}

Test(follow_errors, kill_9_during_the_copy, .init = setup, .fini = teardown, .timeout = 180)
{
    free(tpg_exec(&pg, "CREATE TABLE users (id int PRIMARY KEY, name text);"
                       " INSERT INTO users SELECT i, repeat('y', 50) FROM generate_series(1, 300000) i"));
    pid_t p = tf_spawn(&pg, db, "users", flog, NULL);
    cr_assert(tf_wait_log(flog, "msg=follow_copy_started", 1, 30000));
    usleep(100000);
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    cr_assert_eq(tf_log_count(flog, "msg=follow_copy_done"), 0, "killed before the copy committed (make the table larger)");
    free(tpg_exec(&pg, "UPDATE users SET name = 'changed' WHERE id = 7"));
    /* The next run recognises its own half-made slot, drops it and starts over. */
    p = tf_spawn(&pg, db, "users", flog, NULL);
    cr_assert(tf_wait_log(flog, "msg=follow_streaming", 1, 60000));
    cr_assert_eq(tf_log_count(flog, "msg=follow_slot_dropped slot=ringd reason=copy_never_committed"), 1);
    char why[512];
    cr_assert_eq(tf_wait_equal(&pg, db, "users", "id", 20000, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(tf_stop(p, 10000), 0);
}
