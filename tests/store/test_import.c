/* test_import.c - store/import.c: `ringd import` is all or nothing, upserts by default, replaces with --replace. */
#include "store/store.h"

#include "tests/support/tmpdir.h"

#include "store/key.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmp[64];
static char db[128];
static char input[128];
static char errlog[128];

static void tmp_setup(void)
{
    ts_mkdtemp(tmp, sizeof(tmp), "import");
    snprintf(db, sizeof(db), "%s/db", tmp);
    snprintf(input, sizeof(input), "%s/in.jsonl", tmp);
    snprintf(errlog, sizeof(errlog), "%s/stderr", tmp);
    unsetenv("RINGD_DB");
}

static void tmp_teardown(void)
{
    ts_rmtree(tmp);
}

static void write_input(const char *text)
{
    FILE *f = fopen(input, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
}

/* Runs store_import_main with argv (NULL-terminated), stderr going to errlog. */
static int run_import(const char **args)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = "import";
    for (; args[argc - 1] != NULL; argc++)
        argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    int code = store_import_main(argc, argv);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    return code;
}

static int import_file(bool replace)
{
    const char *with[] = {"--db", db, "--replace", input, NULL};
    const char *without[] = {"--db", db, input, NULL};
    return run_import(replace ? with : without);
}

static char *read_errlog(void)
{
    static char buf[4096];
    FILE *f = fopen(errlog, "r");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Every stored record as "id=json\n" lines in key order (caller frees). */
static char *dump_db(void)
{
    char err[512];
    struct store st;
    cr_assert_eq(store_open(&st, db, true, false, err, sizeof(err)), 0, "%s", err);
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    cr_assert_eq(mdb_txn_begin(st.env, NULL, MDB_RDONLY, &txn), 0);
    cr_assert_eq(mdb_cursor_open(txn, st.users, &cur), 0);
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op) == 0; op = MDB_NEXT) {
        struct store_user u; /* the JSON form of the value (store.h's layout) */
        cr_assert_eq(store_value_split(v.mv_data, v.mv_size, &u), 0, "a v2 value");
        cr_assert_gt(u.pb_len, 0, "with its gRPC form");
        fprintf(m, "%llu=%.*s\n", (unsigned long long)store_key_decode(&k), (int)u.json_len, u.json);
    }
    fclose(m);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    store_close(&st);
    return out;
}

static void expect_db(const char *want)
{
    char *got = dump_db();
    cr_assert_str_eq(got, want);
    free(got);
}

static void seed(void)
{
    write_input("{\"id\":1,\"v\":\"a\"}\n{\"id\":2,\"v\":\"b\"}\n");
    cr_assert_eq(import_file(false), 0, "%s", read_errlog());
    expect_db("1={\"id\":1,\"v\":\"a\"}\n2={\"id\":2,\"v\":\"b\"}\n");
}

Test(import, basic_blank_lines_crlf_unsorted, .init = tmp_setup, .fini = tmp_teardown)
{
    write_input("\n{ \"id\" : 5, \"n\" : [1, 2] }\r\n   \n{\"id\":3}\n\t\n{\"id\":18446744073709551615}\n{\"id\":4}");
    cr_assert_eq(import_file(false), 0, "%s", read_errlog());
    expect_db("3={\"id\":3}\n4={\"id\":4}\n5={\"id\":5,\"n\":[1,2]}\n18446744073709551615={\"id\":18446744073709551615}\n");
    char *log = read_errlog();
    /* Three blank lines (empty, spaces, a tab) are skipped and counted, not passed over in silence. */
    cr_assert(strstr(log, "msg=import_done") != NULL && strstr(log, "records=4 blank_lines=3 replaced=no users=4") != NULL,
              "%s", log);
}

/* The check the atomicity tests rest on: a good import does change the dump. */
Test(import, control_good_import_changes_db, .init = tmp_setup, .fini = tmp_teardown)
{
    seed();
    char *before = dump_db();
    write_input("{\"id\":3}\n");
    cr_assert_eq(import_file(false), 0);
    char *after = dump_db();
    cr_assert_str_neq(before, after);
    free(before);
    free(after);
}

Test(import, bad_line_commits_nothing, .init = tmp_setup, .fini = tmp_teardown)
{
    seed();
    char *before = dump_db();
    write_input("{\"id\":3}\n{\"id\":1,\"v\":\"changed\"}\n\n{\"id\":4\n{\"id\":5}\n");
    cr_assert_eq(import_file(false), 1);
    char *log = read_errlog();
    cr_assert(strstr(log, "error=\"line 4: not JSON") != NULL, "%s", log);
    cr_assert(strstr(log, "import_done") == NULL, "%s", log);
    char *after = dump_db();
    cr_assert_str_eq(after, before);
    free(after);
    free(before);
}

Test(import, bad_last_line_with_replace_commits_nothing, .init = tmp_setup, .fini = tmp_teardown)
{
    seed();
    char *before = dump_db();
    write_input("{\"id\":7}\n{\"id\":8}\n{\"id\":0}\n");
    cr_assert_eq(import_file(true), 1);
    cr_assert(strstr(read_errlog(), "line 3: id must be a positive integer") != NULL, "%s", read_errlog());
    char *after = dump_db();
    cr_assert_str_eq(after, before);
    free(after);
    free(before);
}

Test(import, reasons_name_the_line, .init = tmp_setup, .fini = tmp_teardown)
{
    const char *cases[][2] = {
        {"[1]\n", "line 1: not an object"},
        {"{\"id\":1}\n{\"name\":\"x\"}\n", "line 2: no id"},
        {"{\"id\":1}\n\n{\"id\":\"1\"}\n", "line 3: id must be a positive integer, not a string"},
        {"{\"id\":1,\"id\":1}\n", "line 1: not JSON: duplicate object key"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_input(cases[i][0]);
        cr_assert_eq(import_file(false), 1, "case %zu", i);
        cr_assert(strstr(read_errlog(), cases[i][1]) != NULL, "want '%s' in %s", cases[i][1], read_errlog());
    }
}

Test(import, upsert_by_default, .init = tmp_setup, .fini = tmp_teardown)
{
    seed();
    write_input("{\"id\":2,\"v\":\"B\"}\n{\"id\":3,\"v\":\"c\"}\n");
    cr_assert_eq(import_file(false), 0, "%s", read_errlog());
    expect_db("1={\"id\":1,\"v\":\"a\"}\n2={\"id\":2,\"v\":\"B\"}\n3={\"id\":3,\"v\":\"c\"}\n");
}

Test(import, replace_holds_exactly_the_file, .init = tmp_setup, .fini = tmp_teardown)
{
    seed();
    write_input("{\"id\":3,\"v\":\"c\"}\n{\"id\":2,\"v\":\"B\"}\n{\"id\":3,\"v\":\"C\"}\n");
    cr_assert_eq(import_file(true), 0, "%s", read_errlog());
    expect_db("2={\"id\":2,\"v\":\"B\"}\n3={\"id\":3,\"v\":\"C\"}\n");
    cr_assert(strstr(read_errlog(), "records=3 blank_lines=0 replaced=yes users=2") != NULL, "%s", read_errlog());
}

Test(import, stdin_and_env_db, .init = tmp_setup, .fini = tmp_teardown)
{
    write_input("{\"id\":9}\n");
    cr_assert_not_null(freopen(input, "r", stdin));
    setenv("RINGD_DB", db, 1);
    const char *args[] = {"-", NULL};
    cr_assert_eq(run_import(args), 0, "%s", read_errlog());
    expect_db("9={\"id\":9}\n");
}

Test(import, long_line, .init = tmp_setup, .fini = tmp_teardown)
{
    size_t n = 4 << 20;
    char *text = malloc(n + 64);
    int k = sprintf(text, "{\"id\":1}\n{\"id\":2,\"s\":\"");
    memset(text + k, 'y', n);
    strcpy(text + k + n, "\"}\n");
    write_input(text);
    cr_assert_eq(import_file(false), 0, "%s", read_errlog());
    char *got = dump_db();
    cr_assert_eq(strlen(got), strlen("1={\"id\":1}\n2=") + strlen(text + 9), "whole 4 MiB record stored");
    free(got);
    free(text);
}

Test(import, usage, .init = tmp_setup, .fini = tmp_teardown)
{
    const char *help[] = {"--help", NULL};
    const char *none[] = {NULL};
    const char *no_db[] = {input, NULL};
    const char *no_file[] = {"--db", db, NULL};
    const char *unknown[] = {"--db", db, "--frobnicate", input, NULL};
    const char *two[] = {"--db", db, input, input, NULL};
    const char *dangling[] = {input, "--db", NULL};
    cr_assert_eq(run_import(help), 0);
    cr_assert_eq(run_import(none), 2);
    cr_assert_eq(run_import(no_db), 2);
    cr_assert_eq(run_import(no_file), 2);
    cr_assert_eq(run_import(unknown), 2);
    cr_assert_eq(run_import(two), 2);
    cr_assert_eq(run_import(dangling), 2);
    cr_assert_not(store_exists(db), "usage errors touch nothing");
}

Test(import, missing_input_and_foreign_db, .init = tmp_setup, .fini = tmp_teardown)
{
    const char *missing[] = {"--db", db, "/nonexistent/users.jsonl", NULL};
    cr_assert_eq(run_import(missing), 1);
    cr_assert(strstr(read_errlog(), "No such file") != NULL, "%s", read_errlog());
    write_input("{\"id\":1}\n");
    const char *not_db[] = {"--db", input, input, NULL};
    cr_assert_eq(run_import(not_db), 1);
    cr_assert(strstr(read_errlog(), "not a directory") != NULL, "%s", read_errlog());
}
