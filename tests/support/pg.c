/* pg.c - test support: a throwaway PostgreSQL cluster, SQL helpers, `ringd follow` as a child, the store against the table. */
#include "pg.h"
#include "tmpdir.h"

#include "store/feed.h"
#include "store/key.h"
#include "store/store.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG_BIN "/usr/lib/postgresql/15/bin"

bool tpg_available(void)
{
    return access(PG_BIN "/initdb", X_OK) == 0 && access(PG_BIN "/postgres", X_OK) == 0;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Forks argv as the server's user, stdout+stderr to log; dies with us. */
static pid_t run_as(const struct test_pg *pg, const char *const *argv, const char *log)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(pg->gid) != 0 || setuid(pg->uid) != 0))
        _exit(126);
    /* After setuid, which clears it: a crashed test takes its server along. */
    prctl(PR_SET_PDEATHSIG, SIGQUIT);
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

static int wait_child(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void print_pg_log(const struct test_pg *pg)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "tail -n 30 %s/pg.log >&2", pg->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "(no pg.log)\n");
}

static int wait_ready(struct test_pg *pg)
{
    for (int i = 0; i < 300; i++) {
        PGconn *c = PQconnectdb(pg->conninfo);
        bool ok = PQstatus(c) == CONNECTION_OK;
        PQfinish(c);
        if (ok)
            return 0;
        int st;
        if (waitpid(pg->pid, &st, WNOHANG) == pg->pid) {
            pg->pid = -1;
            break;
        }
        usleep(100000);
    }
    print_pg_log(pg);
    return -1;
}

int tpg_restart(struct test_pg *pg)
{
    char data[200], log[200];
    snprintf(data, sizeof(data), "%s/data", pg->dir);
    snprintf(log, sizeof(log), "%s/pg.log", pg->dir);
    const char *argv[] = {PG_BIN "/postgres", "-D", data, NULL};
    pg->pid = run_as(pg, argv, log);
    return pg->pid > 0 ? wait_ready(pg) : -1;
}

int tpg_start(struct test_pg *pg)
{
    memset(pg, 0, sizeof(*pg));
    pg->pid = -1;
    pg->uid = geteuid();
    pg->gid = getegid();
    if (geteuid() == 0) {
        /* PostgreSQL refuses root: nobody, in a directory it owns. */
        struct passwd *pw = getpwnam("nobody");
        if (pw == NULL)
            return -1;
        pg->uid = pw->pw_uid;
        pg->gid = pw->pw_gid;
    }
    ts_mkdtemp(pg->dir, sizeof(pg->dir), "pg");
    if (chown(pg->dir, pg->uid, pg->gid) != 0)
        return -1;
    pg->port = free_port();
    snprintf(pg->conninfo, sizeof(pg->conninfo), "host=%s port=%d user=postgres dbname=postgres", pg->dir, pg->port);
    char data[200], log[200];
    snprintf(data, sizeof(data), "%s/data", pg->dir);
    snprintf(log, sizeof(log), "%s/pg.log", pg->dir);
    const char *initdb[] = {PG_BIN "/initdb", "-D",         data,        "-U", "postgres", "--auth=trust", "-E",
                            "UTF8",           "--locale=C", "--no-sync", NULL};
    if (wait_child(run_as(pg, initdb, log)) != 0) {
        print_pg_log(pg);
        return -1;
    }
    char conf[256];
    snprintf(conf, sizeof(conf), "%s/postgresql.conf", data);
    FILE *f = fopen(conf, "a");
    if (f == NULL)
        return -1;
    /* Unix socket only (no port shared with anyone); fsync off: a test's
     * cluster dies with its directory, only a crash of the whole machine
     * would show the difference. */
    fprintf(f,
            "listen_addresses = ''\nunix_socket_directories = '%s'\nport = %d\n"
            "wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n"
            "fsync = off\nshared_buffers = 32MB\nmax_connections = 30\nlog_min_messages = warning\n",
            pg->dir, pg->port);
    fclose(f);
    return tpg_restart(pg);
}

void tpg_halt(struct test_pg *pg)
{
    if (pg->pid <= 0)
        return;
    kill(pg->pid, SIGINT); /* fast shutdown */
    for (int i = 0; i < 300; i++) {
        int st;
        if (waitpid(pg->pid, &st, WNOHANG) == pg->pid) {
            pg->pid = -1;
            return;
        }
        usleep(100000);
    }
    kill(pg->pid, SIGKILL);
    waitpid(pg->pid, NULL, 0);
    pg->pid = -1;
}

void tpg_stop(struct test_pg *pg)
{
    tpg_halt(pg);
    if (pg->dir[0] != '\0')
        ts_rmtree(pg->dir);
    pg->dir[0] = '\0';
}

PGconn *tpg_connect(const struct test_pg *pg)
{
    PGconn *c = PQconnectdb(pg->conninfo);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    return c;
}

void tpg_run(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%.200s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

char *tpg_exec(const struct test_pg *pg, const char *sql)
{
    PGconn *c = tpg_connect(pg);
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%.200s: %s", sql, PQresultErrorMessage(r));
    char *v = st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? strdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    PQfinish(c);
    return v;
}

pid_t tf_spawn(const struct test_pg *pg, const char *db, const char *table, const char *log, const char *const *extra)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = RINGD_BIN;
    argv[n++] = "follow";
    argv[n++] = "--db";
    argv[n++] = db;
    argv[n++] = "--pg";
    argv[n++] = pg->conninfo;
    argv[n++] = "--table";
    argv[n++] = table;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
            close(fd);
        }
        execv(RINGD_BIN, (char *const *)argv);
        _exit(127);
    }
    cr_assert_gt(pid, 0);
    return pid;
}

int tf_wait_exit(pid_t pid, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        if (r < 0 || waited >= timeout_ms)
            return -1;
        usleep(10000);
    }
}

int tf_stop(pid_t pid, int timeout_ms)
{
    kill(pid, SIGTERM);
    int rc = tf_wait_exit(pid, timeout_ms);
    if (rc == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return rc;
}

int tf_log_count(const char *log, const char *needle)
{
    FILE *f = fopen(log, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

bool tf_wait_log(const char *log, const char *needle, int count, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (tf_log_count(log, needle) >= count)
            return true;
        usleep(20000);
    }
    return false;
}

void tf_print_log(const char *log)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "echo '--- %s' >&2; tail -n 40 '%s' >&2", log, log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

int tf_feed(const char *db, struct store_feed *f)
{
    struct store st;
    char err[256];
    if (store_open(&st, db, true, false, err, sizeof(err)) != 0)
        return -1;
    MDB_txn *txn;
    int rc = mdb_txn_begin(st.env, NULL, MDB_RDONLY, &txn);
    if (rc == 0) {
        rc = store_feed_read(txn, &st, f);
        mdb_txn_abort(txn);
    }
    store_close(&st);
    return rc == 0 ? 0 : -1;
}

char *tf_record(const char *db, uint64_t id)
{
    struct store st;
    char err[256];
    if (store_open(&st, db, true, false, err, sizeof(err)) != 0)
        return NULL;
    MDB_txn *txn;
    char *out = NULL;
    if (mdb_txn_begin(st.env, NULL, MDB_RDONLY, &txn) == 0) {
        size_t slot;
        MDB_val k, v;
        store_key_encode(id, &slot, &k);
        struct store_user u;
        if (mdb_get(txn, st.users, &k, &v) == 0 && store_value_split(v.mv_data, v.mv_size, &u) == 0)
            out = strndup(u.json, u.json_len);
        mdb_txn_abort(txn);
    }
    store_close(&st);
    return out;
}

/* Points v at the JSON part of a stored value (store.h's layout); a value that is none stays as it is. */
static void value_json(MDB_val *v)
{
    struct store_user u;
    if (store_value_split(v->mv_data, v->mv_size, &u) == 0) {
        v->mv_data = (void *)u.json;
        v->mv_size = u.json_len;
    }
}

int tf_compare(const struct test_pg *pg, const char *db, const char *table, const char *id_column, char *why, size_t whylen)
{
    int rc = -1;
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT t.\"%s\", row_to_json(t)::text FROM %s t ORDER BY 1", id_column, table);
    PGconn *c = PQconnectdb(pg->conninfo);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    struct store st;
    char err[256];
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(why, whylen, "query: %s", PQerrorMessage(c));
        goto out_pg;
    }
    if (store_open(&st, db, true, false, err, sizeof(err)) != 0) {
        snprintf(why, whylen, "store: %s", err);
        goto out_pg;
    }
    if (mdb_txn_begin(st.env, NULL, MDB_RDONLY, &txn) != 0 || mdb_cursor_open(txn, st.users, &cur) != 0) {
        snprintf(why, whylen, "store txn");
        goto out;
    }
    MDB_val k, v;
    int i = 0, n = PQntuples(r);
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    if (mrc == 0)
        value_json(&v);
    for (; i < n || mrc == 0; i++) {
        uint64_t want = i < n ? strtoull(PQgetvalue(r, i, 0), NULL, 10) : 0;
        uint64_t have = mrc == 0 ? store_key_decode(&k) : 0;
        if (i >= n || (mrc == 0 && have < want)) {
            snprintf(why, whylen, "store has id %llu, the table does not (%.*s)", (unsigned long long)have,
                     (int)(v.mv_size > 200 ? 200 : v.mv_size), (const char *)v.mv_data);
            goto out;
        }
        if (mrc != 0 || have > want) {
            snprintf(why, whylen, "table has id %llu, the store does not (%d rows, %d compared)", (unsigned long long)want, n, i);
            goto out;
        }
        json_t *a = json_loads(PQgetvalue(r, i, 1), 0, NULL);
        json_t *b = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        bool eq = a != NULL && b != NULL && json_equal(a, b);
        json_decref(a);
        json_decref(b);
        if (!eq) {
            snprintf(why, whylen, "id %llu: table %.300s, store %.*s", (unsigned long long)want, PQgetvalue(r, i, 1),
                     (int)(v.mv_size > 300 ? 300 : v.mv_size), (const char *)v.mv_data);
            goto out;
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        if (mrc == 0)
            value_json(&v);
    }
    rc = 0;
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    if (txn != NULL)
        mdb_txn_abort(txn);
    store_close(&st);
out_pg:
    PQclear(r);
    PQfinish(c);
    return rc;
}

int tf_wait_equal(const struct test_pg *pg, const char *db, const char *table, const char *id_column, int timeout_ms, char *why,
                  size_t whylen)
{
    int rc = -1;
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        if ((rc = tf_compare(pg, db, table, id_column, why, whylen)) == 0)
            return 0;
        usleep(100000);
    }
    return rc;
}
