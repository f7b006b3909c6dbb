/* test_demo.c - store/demo.c: generated users are valid, canonical, deterministic, and `ringd demo` parses its flags. */
#include "store/store.h"

#include "tests/support/tmpdir.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmp[64];
static char db[128];

static void tmp_setup(void)
{
    ts_mkdtemp(tmp, sizeof(tmp), "demo");
    snprintf(db, sizeof(db), "%s/db", tmp);
    unsetenv("RINGD_DB");
}

static void tmp_teardown(void)
{
    ts_rmtree(tmp);
}

/* A copy of user id's record in dir, or NULL when absent (caller frees). */
static char *lookup(const char *dir, uint64_t id)
{
    char err[512];
    struct store st;
    struct store_reader r;
    cr_assert_eq(store_open(&st, dir, true, false, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(store_reader_open(&r, &st), 0);
    const char *val;
    size_t len;
    char *copy = NULL;
    int rc = store_get(&r, id, &val, &len);
    cr_assert(rc == 0 || rc == MDB_NOTFOUND, "%s", mdb_strerror(rc));
    if (rc == 0)
        copy = strndup(val, len);
    store_reader_close(&r);
    store_close(&st);
    return copy;
}

static uint64_t count(const char *dir)
{
    char err[512];
    struct store st;
    MDB_txn *txn;
    MDB_stat ms;
    cr_assert_eq(store_open(&st, dir, true, false, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(mdb_txn_begin(st.env, NULL, MDB_RDONLY, &txn), 0);
    cr_assert_eq(mdb_stat(txn, st.users, &ms), 0);
    mdb_txn_abort(txn);
    store_close(&st);
    return ms.ms_entries;
}

static int run_demo(const char **args)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = "demo";
    for (; args[argc - 1] != NULL; argc++)
        argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    close(devnull);
    int code = store_demo_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    return code;
}

Test(demo, records_are_valid_canonical_users, .init = tmp_setup, .fini = tmp_teardown)
{
    char err[512];
    cr_assert_eq(store_demo_create(db, 1000, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(count(db), 1000);
    const uint64_t ids[] = {1, 2, 999, 1000};
    for (size_t i = 0; i < 4; i++) {
        char *rec = lookup(db, ids[i]);
        cr_assert_not_null(rec, "user %llu", (unsigned long long)ids[i]);
        /* what import would store for it, byte for byte */
        uint64_t id;
        char *norm;
        size_t len;
        cr_assert_eq(store_record_normalize(rec, strlen(rec), &id, &norm, &len, err, sizeof(err)), 0, "%s: %s", rec, err);
        cr_assert_eq(id, ids[i]);
        cr_assert_str_eq(norm, rec);
        free(norm);

        json_t *j = json_loads(rec, 0, NULL);
        char name[32], email[48];
        snprintf(name, sizeof(name), "User %llu", (unsigned long long)ids[i]);
        snprintf(email, sizeof(email), "user%llu@example.com", (unsigned long long)ids[i]);
        cr_assert_str_eq(json_string_value(json_object_get(j, "name")), name);
        cr_assert_str_eq(json_string_value(json_object_get(j, "email")), email);
        const char *plan = json_string_value(json_object_get(j, "plan"));
        cr_assert(plan != NULL && (strcmp(plan, "free") == 0 || strcmp(plan, "pro") == 0 || strcmp(plan, "team") == 0 ||
                                   strcmp(plan, "enterprise") == 0),
                  "%s", rec);
        const char *created = json_string_value(json_object_get(j, "created_at"));
        cr_assert(created != NULL && strlen(created) == 20 && strncmp(created, "2024-", 5) == 0 && created[19] == 'Z', "%s", rec);
        cr_assert_geq(strlen(rec), 90);
        cr_assert_leq(strlen(rec), 140);
        json_decref(j);
        free(rec);
    }
    char *none = lookup(db, 1001);
    cr_assert_null(none);
    char *zero = lookup(db, 0);
    cr_assert_null(zero);
}

Test(demo, deterministic_and_extends, .init = tmp_setup, .fini = tmp_teardown)
{
    char err[512], other[160];
    snprintf(other, sizeof(other), "%s/other", tmp);
    cr_assert_eq(store_demo_create(db, 10, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(store_demo_create(db, 20, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(store_demo_create(other, 20, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(count(db), 20);
    for (uint64_t id = 1; id <= 20; id++) {
        char *a = lookup(db, id), *b = lookup(other, id);
        cr_assert_not_null(a);
        cr_assert_str_eq(a, b);
        free(a);
        free(b);
    }
    char *one = lookup(db, 1), *two = lookup(db, 2);
    cr_assert_str_neq(one, two);
    free(one);
    free(two);
}

Test(demo, plans_vary, .init = tmp_setup, .fini = tmp_teardown)
{
    char err[512];
    cr_assert_eq(store_demo_create(db, 200, err, sizeof(err)), 0, "%s", err);
    int seen[4] = {0};
    const char *names[] = {"\"free\"", "\"pro\"", "\"team\"", "\"enterprise\""};
    for (uint64_t id = 1; id <= 200; id++) {
        char *rec = lookup(db, id);
        for (int p = 0; p < 4; p++)
            if (strstr(rec, names[p]) != NULL)
                seen[p]++;
        free(rec);
    }
    for (int p = 0; p < 4; p++)
        cr_assert_gt(seen[p], 0, "plan %s never generated", names[p]);
}

Test(demo, main_flags, .init = tmp_setup, .fini = tmp_teardown)
{
    const char *help[] = {"--help", NULL};
    const char *bad_n[] = {"--db", db, "--users", "-5", NULL};
    const char *big_n[] = {"--db", db, "--users", "99999999999", NULL};
    const char *no_db[] = {"--users", "5", NULL};
    const char *extra[] = {"--db", db, "stray", NULL};
    cr_assert_eq(run_demo(help), 0);
    cr_assert_eq(run_demo(bad_n), 2);
    cr_assert_eq(run_demo(big_n), 2);
    cr_assert_eq(run_demo(no_db), 2);
    cr_assert_eq(run_demo(extra), 2);
    cr_assert_not(store_exists(db));

    const char *ok[] = {"--db", db, "--users=7", NULL};
    cr_assert_eq(run_demo(ok), 0);
    cr_assert_eq(count(db), 7);
    setenv("RINGD_DB", db, 1);
    const char *env[] = {"--users", "9", NULL};
    cr_assert_eq(run_demo(env), 0);
    cr_assert_eq(count(db), 9);
}

Test(demo, refuses_a_foreign_directory, .init = tmp_setup, .fini = tmp_teardown)
{
    char err[512] = "";
    char path[160];
    snprintf(path, sizeof(path), "%s/data.mdb", tmp);
    FILE *f = fopen(path, "w");
    fputs("not lmdb at all, but long enough to have a header? no.", f);
    fclose(f);
    cr_assert_neq(store_demo_create(tmp, 5, err, sizeof(err)), 0);
    cr_assert(strstr(err, "corrupt or not an LMDB file") != NULL, "%s", err);
}
