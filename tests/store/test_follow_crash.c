/* test_follow_crash.c - integration: exactly once under kill -9. A writer commits 5,000 transactions to PostgreSQL
 * while the follower is killed with SIGKILL at random moments and restarted; afterwards the store equals the table,
 * row by row, and the store's count of applied transactions is exactly 5,000 (none lost, none applied twice). */
#include "tests/support/pg.h"
#include "tests/support/tmpdir.h"

#include "store/feed.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TXNS 5000
#define BASE_ROWS 200 /* rows 1..200 are updated, never deleted; later ids come and go */

static struct test_pg pg;
static char tmp[64], db[128], flog[128];
static atomic_int committed;
static atomic_bool writer_failed;

static void setup(void)
{
    if (!tpg_available())
        cr_skip_test("PostgreSQL 15 is not installed (./build.sh test installs postgresql-15)");
    ts_mkdtemp(tmp, sizeof(tmp), "follow-crash");
    snprintf(db, sizeof(db), "%s/db", tmp);
    snprintf(flog, sizeof(flog), "%s/follow.log", tmp);
    cr_assert_eq(tpg_start(&pg), 0, "PostgreSQL did not start");
}

static void teardown(void)
{
    tpg_stop(&pg);
    ts_rmtree(tmp);
}

/* Every transaction changes the table (so each is one the follower must
 * count): a counter bump, sometimes with an insert, a delete or more rows. */
static void *writer(void *arg)
{
    (void)arg;
    PGconn *c = PQconnectdb(pg.conninfo);
    unsigned seed = 12345;
    char sql[512];
    for (int t = 0; t < TXNS && PQstatus(c) == CONNECTION_OK; t++) {
        int row = 1 + (int)(rand_r(&seed) % BASE_ROWS);
        int kind = (int)(rand_r(&seed) % 10);
        if (kind == 0)
            snprintf(sql, sizeof(sql),
                     "BEGIN; UPDATE counters SET n = n + 1, note = md5(random()::text) WHERE id = %d;"
                     " INSERT INTO counters VALUES (%d, 1, 'new') ON CONFLICT (id) DO UPDATE SET n = counters.n + 1; COMMIT",
                     row, 1000 + t % 300);
        else if (kind == 1)
            snprintf(sql, sizeof(sql),
                     "BEGIN; UPDATE counters SET n = n + 1 WHERE id = %d; DELETE FROM counters WHERE id = %d; COMMIT", row,
                     1000 + (t * 7) % 300);
        else if (kind == 2)
            snprintf(sql, sizeof(sql), "UPDATE counters SET n = n + 1 WHERE id BETWEEN %d AND %d", row, row + 20);
        else
            snprintf(sql, sizeof(sql), "UPDATE counters SET n = n + 1 WHERE id = %d", row);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "writer: %s: %s", sql, PQresultErrorMessage(r));
            atomic_store(&writer_failed, true);
            PQclear(r);
            break;
        }
        PQclear(r);
        atomic_fetch_add(&committed, 1);
        if (t % 4 == 0)
            usleep(1000); /* ~5 s in all: time for a dozen kills in the middle of it */
    }
    PQfinish(c);
    return NULL;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

Test(follow_crash, kill_9_during_a_5000_transaction_burst, .init = setup, .fini = teardown, .timeout = 300)
{
    free(tpg_exec(&pg, "CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL, note text)"));
    free(tpg_exec(&pg, "INSERT INTO counters SELECT i, 0, 'start' FROM generate_series(1, 200) i"));
    pid_t f = tf_spawn(&pg, db, "counters", flog, NULL);
    cr_assert(tf_wait_log(flog, "msg=follow_streaming", 1, 30000), "no streaming");

    pthread_t w;
    pthread_create(&w, NULL, writer, NULL);
    unsigned seed = (unsigned)time(NULL);
    fprintf(stderr, "follow_crash: seed %u\n", seed);
    int kills = 0;
    /* Kill at random points while the burst goes on, and a few more times
     * while the follower catches up with what it missed. */
    while (atomic_load(&committed) < TXNS && !atomic_load(&writer_failed) && kills < 200) {
        sleep_ms(30 + rand_r(&seed) % 300);
        kill(f, SIGKILL);
        waitpid(f, NULL, 0);
        kills++;
        sleep_ms(rand_r(&seed) % 100);
        f = tf_spawn(&pg, db, "counters", flog, NULL);
    }
    pthread_join(w, NULL);
    cr_assert(!atomic_load(&writer_failed), "the writer failed");
    cr_assert_eq(atomic_load(&committed), TXNS);
    int streams = 0;
    for (int i = 0; i < 3; i++) {
        sleep_ms(100 + rand_r(&seed) % 300);
        kill(f, SIGKILL);
        waitpid(f, NULL, 0);
        kills++;
        streams = tf_log_count(flog, "msg=follow_streaming");
        f = tf_spawn(&pg, db, "counters", flog, NULL);
    }
    fprintf(stderr, "follow_crash: %d kills\n", kills);
    cr_assert_geq(kills, 8, "the burst was long enough for several kills");

    char why[1024];
    int rc = tf_wait_equal(&pg, db, "counters", "id", 60000, why, sizeof(why));
    if (rc != 0)
        tf_print_log(flog);
    cr_assert_eq(rc, 0, "store != table: %s", why);
    struct store_feed feed;
    cr_assert_eq(tf_feed(db, &feed), 0);
    cr_assert_eq(feed.txns, TXNS, "transactions applied: %llu, committed %d", (unsigned long long)feed.txns, TXNS);
    /* Every counter bump arrived once: the sum over the table matches in the store (tf_compare checked each row). */
    char *sum = tpg_exec(&pg, "SELECT sum(n) FROM counters");
    fprintf(stderr, "follow_crash: sum(n) = %s, %llu row changes\n", sum, (unsigned long long)feed.rows);
    free(sum);
    /* The last follower (up since the store matched) stops cleanly. */
    cr_assert(tf_wait_log(flog, "msg=follow_streaming", streams + 1, 10000));
    cr_assert_eq(tf_stop(f, 20000), 0);
    cr_assert_eq(tf_log_count(flog, "msg=follow_copy_done"), 1, "one copy, however often it was killed");
}
