/* test_serve_open.c - integration: what `ringd serve` does with the --db it is given: wrong directories fail
 * at start-up with exit 1 and a clear message; no --db creates ./ringd-data with 100,000 demo users. */
#include "tests/support/server.h"

#include "tests/support/tmpdir.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <lmdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmp[64];

static void tmp_setup(void)
{
    ts_mkdtemp(tmp, sizeof(tmp), "serve-open");
}

static void tmp_teardown(void)
{
    ts_rmtree(tmp);
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return strdup("");
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

/* Starts `ringd serve` with args (NULL-terminated, after "serve") in cwd, stdout+stderr to log. */
static pid_t spawn_serve(const char *cwd, const char *log, const char *const *args)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = RINGD_BIN;
    argv[n++] = "serve";
    for (int i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    /* Emptied here, not in the child: a reader must never see a previous run's listening line. */
    int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (lfd < 0)
        return -1;
    close(lfd);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_APPEND);
        if (fd < 0 || chdir(cwd) != 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        const char *env[] = {"RINGD_DB", "RINGD_LISTEN", "RINGD_SHARDS", "RINGD_ADMIN_LISTEN", NULL};
        for (int i = 0; env[i] != NULL; i++)
            unsetenv(env[i]);
        execv(RINGD_BIN, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits up to timeout_ms for pid; returns its exit status, 128+signal, or -1 when still running (then SIGKILLed). */
static int wait_exit(pid_t pid, int timeout_ms)
{
    int status;
    for (uint64_t until = now_ms() + (uint64_t)timeout_ms; now_ms() < until; usleep(10000)) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* `ringd serve --db dir` must exit 1 promptly, never listen, and log store_open_failed with reason in it. */
static void expect_refused(const char *dir, const char *reason)
{
    char log[256];
    snprintf(log, sizeof(log), "%s/serve.log", tmp);
    const char *args[] = {"--listen", "127.0.0.1:0", "--shards", "2", "--db", dir, NULL};
    pid_t pid = spawn_serve(tmp, log, args);
    cr_assert_gt(pid, 0);
    int rc = wait_exit(pid, 20000);
    char *out = read_all(log);
    cr_expect_eq(rc, 1, "--db %s: exit %d, want 1; log:\n%s", dir, rc, out);
    cr_expect(strstr(out, "msg=store_open_failed") != NULL, "--db %s: no msg=store_open_failed in:\n%s", dir, out);
    cr_expect(strstr(out, reason) != NULL, "--db %s: reason '%s' not in:\n%s", dir, reason, out);
    cr_expect(strstr(out, "msg=listening") == NULL, "--db %s: it listened anyway:\n%s", dir, out);
    free(out);
}

static const char *sub(const char *name)
{
    static char path[4][256];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof(path[0]), "%s/%s", tmp, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

TestSuite(serve_open, .init = tmp_setup, .fini = tmp_teardown, .timeout = 180);

Test(serve_open, empty_directory)
{
    cr_assert_eq(mkdir(sub("empty"), 0755), 0);
    expect_refused(sub("empty"), "not a ringd database");
    /* Read-only open: nothing was created in it. */
    cr_expect_neq(access(sub("empty/data.mdb"), F_OK), 0, "serve created data.mdb in the directory");
}

Test(serve_open, directory_of_random_files)
{
    cr_assert_eq(mkdir(sub("files"), 0755), 0);
    write_bytes(sub("files/notes.txt"), "hello\n", 6);
    write_bytes(sub("files/users.json"), "{\"id\":1}\n", 9);
    cr_assert_eq(mkdir(sub("files/sub"), 0755), 0);
    expect_refused(sub("files"), "not a ringd database");
}

Test(serve_open, not_a_directory)
{
    write_bytes(sub("plain"), "x", 1);
    expect_refused(sub("plain"), "not a directory");
}

Test(serve_open, corrupt_data_file)
{
    cr_assert_eq(mkdir(sub("corrupt"), 0755), 0);
    static unsigned char junk[256 * 1024];
    unsigned seed = 7;
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (unsigned char)rand_r(&seed);
    write_bytes(sub("corrupt/data.mdb"), junk, sizeof(junk));
    expect_refused(sub("corrupt"), "corrupt");
}

/* A real ringd database whose data file lost everything after its first `keep` bytes. */
static void make_truncated(const char *name, long keep)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s demo --db %s --users 1000 >/dev/null 2>&1 && truncate -s %ld %s", RINGD_BIN, sub(name), keep,
             sub(name));
    strcat(cmd, "/data.mdb");
    cr_assert_eq(ts_sh(cmd), 0);
}

Test(serve_open, truncated_to_one_page)
{
    make_truncated("trunc1", 4096);
    expect_refused(sub("trunc1"), "corrupt");
}

Test(serve_open, truncated_after_the_meta_pages)
{
    /* Both meta pages intact, the tree they point at gone: reading it would be SIGBUS. */
    make_truncated("trunc3", 3 * 4096);
    expect_refused(sub("trunc3"), "corrupt");
}

Test(serve_open, empty_data_file)
{
    cr_assert_eq(mkdir(sub("zero"), 0755), 0);
    write_bytes(sub("zero/data.mdb"), "", 0);
    expect_refused(sub("zero"), "corrupt");
}

Test(serve_open, foreign_lmdb_environment)
{
    /* An LMDB environment someone else made: one key in the main database. */
    const char *dir = sub("foreign");
    cr_assert_eq(mkdir(dir, 0755), 0);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_open(env, dir, 0, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_val k = {5, "hello"}, v = {5, "world"};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    expect_refused(dir, "not a ringd database");

    /* Left as it was: still exactly its one key. */
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_open(env, dir, MDB_RDONLY, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_stat st;
    cr_assert_eq(mdb_stat(txn, dbi, &st), 0);
    cr_expect_eq(st.ms_entries, 1, "the foreign environment was modified");
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

Test(serve_open, foreign_lmdb_with_meta_table_of_another_format)
{
    const char *dir = sub("otherfmt");
    cr_assert_eq(mkdir(dir, 0755), 0);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 4);
    cr_assert_eq(mdb_env_open(env, dir, 0, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "meta", MDB_CREATE, &dbi), 0);
    MDB_val k = {6, "format"}, v = {14, "ringd-users-v9"};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_dbi_open(txn, "users", MDB_CREATE | MDB_INTEGERKEY, &dbi), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    expect_refused(dir, "ringd-users-v9");
}

/* ---- no --db: ./ringd-data with 100,000 demo users ---- */

/* Waits for the listening line in log; returns the port or -1. */
static int wait_listening(pid_t pid, const char *log, int timeout_ms)
{
    for (uint64_t until = now_ms() + (uint64_t)timeout_ms; now_ms() < until; usleep(20000)) {
        char *out = read_all(log);
        const char *p = strstr(out, "msg=listening addr=");
        int port = -1;
        if (p != NULL) {
            const char *colon = strchr(p + strlen("msg=listening addr="), ':');
            port = colon ? atoi(colon + 1) : -1;
        }
        free(out);
        if (port > 0)
            return port;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return -1;
    }
    return -1;
}

static int stop_serve(pid_t pid)
{
    kill(pid, SIGTERM);
    return wait_exit(pid, 15000);
}

static void expect_user(int port, unsigned id, int status)
{
    char path[64];
    struct ts_response r;
    snprintf(path, sizeof(path), "/users/%u", id);
    cr_assert_eq(ts_get(port, path, NULL, &r), 0, "GET %s", path);
    cr_assert_eq(r.status, status, "GET %s: %d %s", path, r.status, r.body);
    if (status != 200)
        return;
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    cr_assert_not_null(j, "%s", r.body);
    cr_expect_eq(json_integer_value(json_object_get(j, "id")), id, "%s", r.body);
    json_decref(j);
}

Test(serve_open, no_db_flag_creates_demo_db_in_cwd)
{
    char log[256];
    snprintf(log, sizeof(log), "%s/serve.log", tmp);
    const char *args[] = {"--listen", "127.0.0.1:0", "--shards", "2", NULL};
    pid_t pid = spawn_serve(tmp, log, args);
    cr_assert_gt(pid, 0);
    int port = wait_listening(pid, log, 120000);
    if (port < 0) {
        char *out = read_all(log);
        int rc = wait_exit(pid, 0);
        cr_assert_fail("serve without --db did not start (exit %d):\n%s", rc, out);
    }
    char *out = read_all(log);
    cr_expect(strstr(out, "msg=creating_demo_db") != NULL, "creation not logged:\n%s", out);
    cr_expect(strstr(out, "users=100000") != NULL, "user count not logged:\n%s", out);
    free(out);
    struct stat st;
    cr_expect_eq(stat(sub("ringd-data/data.mdb"), &st), 0, "no ./ringd-data/data.mdb in the cwd");
    expect_user(port, 1, 200);
    expect_user(port, 54321, 200);
    expect_user(port, 100000, 200);
    expect_user(port, 100001, 404);
    cr_assert_eq(stop_serve(pid), 0, "SIGTERM: serve should exit 0");

    /* Second start in the same cwd: opens the existing database, creates nothing. */
    pid = spawn_serve(tmp, log, args);
    cr_assert_gt(pid, 0);
    port = wait_listening(pid, log, 60000);
    out = read_all(log);
    if (port < 0) {
        wait_exit(pid, 0);
        cr_assert_fail("second start failed:\n%s", out);
    }
    cr_expect(strstr(out, "msg=creating_demo_db") == NULL, "created the demo db again:\n%s", out);
    free(out);
    expect_user(port, 100000, 200);
    cr_assert_eq(stop_serve(pid), 0);
}

/* ---- a database that is named is never created: the help says so, and so does the error ---- */

Test(serve_open, a_named_db_is_never_created_and_help_says_so)
{
    /* Even ./ringd-data, when named. */
    static const char *const names[] = {"missing-db", "ringd-data"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        expect_refused(sub(names[i]), "no such directory");
        char *out = read_all(sub("serve.log"));
        cr_expect(strstr(out, "is never created") != NULL, "no hint in:\n%s", out);
        cr_expect(strstr(out, "creating_demo_db") == NULL, "%s", out);
        free(out);
        struct stat st;
        cr_expect_neq(stat(sub(names[i]), &st), 0, "--db %s was created", names[i]);
    }
    char cmd[512], help[4096];
    snprintf(cmd, sizeof(cmd), "%s serve --help", RINGD_BIN);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(help, 1, sizeof(help) - 1, p);
    help[n] = '\0';
    pclose(p);
    const char *db = strstr(help, "--db DIR");
    cr_assert_not_null(db, "%s", help);
    cr_expect(strstr(db, "must exist") != NULL, "the help does not say a given --db must exist:\n%s", help);
    cr_expect(strstr(db, "Without --db: ./ringd-data, created") != NULL, "%s", help);
}
