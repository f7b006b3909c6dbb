/* pg.h - test support: a throwaway PostgreSQL 15 cluster (initdb + postgres in a temp dir, unix socket, wal_level=logical),
 * run as an unprivileged user, stopped by pid; SQL helpers; `ringd follow` as a child process. */
#ifndef RINGD_TEST_PG_H
#define RINGD_TEST_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct test_pg {
    pid_t pid;          /* the postmaster, our child; -1 when stopped */
    int port;           /* a free TCP port number, used for the socket's name (no TCP listener) */
    char dir[128];      /* temp dir owned by the server's user: data/, the socket, pg.log */
    char conninfo[256]; /* "host=DIR port=N user=postgres dbname=postgres" */
    uid_t uid;          /* who runs the server: nobody when we are root, else ourselves */
    gid_t gid;
};

/* Whether PostgreSQL 15's server binaries are installed (tests skip without them). */
bool tpg_available(void);

/* initdb + start, waiting until it accepts connections (up to 30 s). The
 * server gets SIGQUIT if the calling process dies. Returns 0 or -1 (its log
 * is printed). */
int tpg_start(struct test_pg *pg);

/* Starts the server again on the same data directory and port (after tpg_halt). */
int tpg_restart(struct test_pg *pg);

/* Fast shutdown (SIGINT to the postmaster's pid) and wait; keeps the data. */
void tpg_halt(struct test_pg *pg);

/* tpg_halt and remove the directory. */
void tpg_stop(struct test_pg *pg);

/* A new connection (asserts it works). */
PGconn *tpg_connect(const struct test_pg *pg);

/* Runs sql on a new connection, asserting success; returns the first value of the first row (malloc'd) or NULL. */
char *tpg_exec(const struct test_pg *pg, const char *sql);

/* Runs sql on c, asserting success. */
void tpg_run(PGconn *c, const char *sql);

/* ---- ringd follow as a child process ---- */

/* Starts `ringd follow --db db --pg pg->conninfo --table table [extra...]`
 * (extra NULL-terminated, may be NULL) with stderr appended to log. The
 * follower gets SIGKILL if the calling process dies. Returns its pid. */
pid_t tf_spawn(const struct test_pg *pg, const char *db, const char *table, const char *log, const char *const *extra);

/* Waits up to timeout_ms for the process to exit; returns its exit status
 * (0..255), 128+signal, or -1 on timeout (it keeps running). */
int tf_wait_exit(pid_t pid, int timeout_ms);

/* SIGTERM then tf_wait_exit (SIGKILL after timeout_ms, returning -1). */
int tf_stop(pid_t pid, int timeout_ms);

/* How many lines of log contain needle. */
int tf_log_count(const char *log, const char *needle);

/* Waits up to timeout_ms until log holds needle at least count times. */
bool tf_wait_log(const char *log, const char *needle, int count, int timeout_ms);

/* Prints the last lines of log to stderr. */
void tf_print_log(const char *log);

/* ---- the store against the table ---- */

/* Compares every record of the store at db with `SELECT row_to_json(t) FROM table t`
 * (as JSON values; ids from id_column). Returns 0 when equal, else writes the
 * first difference to why and returns -1. */
int tf_compare(const struct test_pg *pg, const char *db, const char *table, const char *id_column, char *why, size_t whylen);

/* Polls tf_compare until equal or timeout_ms; returns its last result. */
int tf_wait_equal(const struct test_pg *pg, const char *db, const char *table, const char *id_column, int timeout_ms, char *why,
                  size_t whylen);

/* The feed state of the store at db (store/feed.h); returns 0 or -1. */
struct store_feed;
int tf_feed(const char *db, struct store_feed *f);

/* The stored record of id (malloc'd) or NULL. */
char *tf_record(const char *db, uint64_t id);

#endif
