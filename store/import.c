/* import.c - `ringd import`: JSON Lines into the store in one write transaction (all or nothing), with progress. */
#include "store/store.h"

#include "core/clock.h"
#include "core/log.h"
#include "store/cli.h"
#include "store/key.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define STORE_IMPORT_PROGRESS_NS 250000000ull /* redraw the progress line at most 4 times a second */

struct store_import_opts {
    const char *db;
    const char *file; /* "-" is standard input */
    bool replace;
};

/* The progress line: on a terminal only, redrawn in place with \r. */
struct store_import_progress {
    bool on;
    uint64_t start_ns;
    uint64_t last_ns;
    uint64_t total_bytes; /* 0 when unknown (a pipe) */
};

static void store_import_usage(FILE *f)
{
    fputs("usage: ringd import --db DIR [--replace] FILE|-\n"
          "\n"
          "Loads JSON Lines, one user object with a positive integer \"id\" per line,\n"
          "in one transaction: a bad line stops the import and nothing is committed.\n"
          "Readers (a running `ringd serve`) see the whole import after its commit.\n"
          "\n"
          "  --db DIR    database directory, created if missing (env RINGD_DB)\n"
          "  --replace   the database ends up holding exactly the file's users\n"
          "              (default: add new users, overwrite existing ids)\n"
          "  FILE        input file, or - for standard input\n"
          "  --help      this text\n",
          f);
}

/* Returns 0 to run, 1 after --help, 2 on bad usage (message printed). */
static int store_import_parse(int argc, char **argv, struct store_import_opts *o)
{
    o->db = getenv("RINGD_DB");
    o->file = NULL;
    o->replace = false;
    bool only_files = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!only_files && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)) {
            store_import_usage(stdout);
            return 1;
        }
        int got = only_files ? 0 : store_cli_flag_value(argc, argv, &i, "--db", &o->db);
        if (got < 0)
            return 2;
        if (got > 0)
            continue;
        if (!only_files && strcmp(arg, "--replace") == 0) {
            o->replace = true;
        } else if (!only_files && strcmp(arg, "--") == 0) {
            only_files = true;
        } else if (!only_files && arg[0] == '-' && arg[1] != '\0') {
            fprintf(stderr, "ringd import: unknown option %s\n", arg);
            store_import_usage(stderr);
            return 2;
        } else if (o->file != NULL) {
            fprintf(stderr, "ringd import: one input only (got %s and %s)\n", o->file, arg);
            return 2;
        } else {
            o->file = arg;
        }
    }
    if (o->db == NULL || o->db[0] == '\0' || o->file == NULL) {
        fprintf(stderr, "ringd import: %s\n", o->file == NULL ? "no input file (use - for standard input)" : "no --db DIR");
        store_import_usage(stderr);
        return 2;
    }
    return 0;
}

static void store_import_progress_start(struct store_import_progress *p, FILE *in)
{
    struct stat st;
    p->on = isatty(STDERR_FILENO);
    p->start_ns = clock_now_ns();
    p->last_ns = p->start_ns;
    p->total_bytes = fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
}

static void store_import_progress_tick(struct store_import_progress *p, uint64_t records, uint64_t bytes)
{
    uint64_t now = clock_now_ns();
    if (now - p->last_ns < STORE_IMPORT_PROGRESS_NS)
        return;
    p->last_ns = now;
    double secs = (double)(now - p->start_ns) / 1e9;
    double rate = (double)records / secs;
    if (p->total_bytes > 0 && bytes > 0 && bytes <= p->total_bytes) {
        double eta = secs * (double)(p->total_bytes - bytes) / (double)bytes; /* at the byte rate so far */
        fprintf(stderr, "\rimport: %llu records, %.0f records/s, %3.0f%%, ETA %.0fs\033[K", (unsigned long long)records, rate,
                100.0 * (double)bytes / (double)p->total_bytes, eta);
    } else {
        fprintf(stderr, "\rimport: %llu records, %.0f records/s\033[K", (unsigned long long)records, rate);
    }
}

static void store_import_progress_end(struct store_import_progress *p)
{
    if (p->on)
        fputs("\r\033[K", stderr);
}

/* The largest id already stored, 0 when none: puts of larger ids may use MDB_APPEND. */
static uint64_t store_import_last_id(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    MDB_val key, val;
    uint64_t last = 0;
    if (mdb_cursor_open(txn, dbi, &cur) != 0)
        return UINT64_MAX; /* no appends then */
    if (mdb_cursor_get(cur, &key, &val, MDB_LAST) == 0)
        last = store_key_decode(&key);
    mdb_cursor_close(cur);
    return last;
}

static bool store_import_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

static void store_import_failed(const struct store_import_opts *o, uint64_t line_no, const char *reason)
{
    char db[256], file[256], why[512];
    store_cli_log_safe(o->db, db, sizeof(db));
    store_cli_log_safe(o->file, file, sizeof(file));
    store_cli_log_safe(reason, why, sizeof(why));
    if (line_no > 0)
        log_error("import_failed", "db=\"%s\" file=\"%s\" error=\"line %llu: %s\" committed=0", db, file,
                  (unsigned long long)line_no, why);
    else
        log_error("import_failed", "db=\"%s\" file=\"%s\" error=\"%s\" committed=0", db, file, why);
}

/* Reads every line into one write transaction and commits once at the end:
 * LMDB's commit is atomic, so readers and a kill -9 see all of it or none. */
static int store_import_run(const struct store_import_opts *o)
{
    char err[512];
    FILE *in = NULL;
    struct store st = {0};
    MDB_txn *txn = NULL;
    struct store_changes changes = {0}; /* the ids this import writes: the change log's entry */
    char *line = NULL;
    size_t cap = 0;
    struct buf value = {0}; /* the stored value being built (store_value_build), reused */
    uint64_t line_no = 0, records = 0, blank = 0, bytes = 0;
    int code = 1;
    int rc;

    in = strcmp(o->file, "-") == 0 ? stdin : fopen(o->file, "r");
    if (in == NULL) {
        snprintf(err, sizeof(err), "%s: %s", o->file, strerror(errno));
        store_import_failed(o, 0, err);
        goto cleanup;
    }
    if (store_open(&st, o->db, false, true, err, sizeof(err)) != 0) {
        store_import_failed(o, 0, err);
        goto cleanup;
    }
    if ((rc = mdb_txn_begin(st.env, NULL, 0, &txn)) != 0) {
        snprintf(err, sizeof(err), "cannot begin the write transaction: %s", mdb_strerror(rc));
        store_import_failed(o, 0, err);
        goto cleanup;
    }
    /* --replace empties the table inside the same transaction: readers go from
     * the old users straight to the new ones. */
    if (o->replace)
        store_changes_note_all(&changes);
    if (o->replace && (rc = mdb_drop(txn, st.users, 0)) != 0) {
        snprintf(err, sizeof(err), "cannot empty the users table: %s", mdb_strerror(rc));
        store_import_failed(o, 0, err);
        goto cleanup;
    }
    uint64_t last_id = store_import_last_id(txn, st.users);

    struct store_import_progress progress;
    store_import_progress_start(&progress, in);
    ssize_t n;
    while ((n = getline(&line, &cap, in)) > 0) {
        line_no++;
        bytes += (uint64_t)n;
        if (store_import_blank(line, (size_t)n)) {
            blank++; /* skipped, but said in the summary: a file of blank lines is not "0 users" by accident */
            continue;
        }
        uint64_t id;
        char *rec;
        size_t rec_len;
        if (store_record_normalize(line, (size_t)n, &id, &rec, &rec_len, err, sizeof(err)) != 0) {
            store_import_progress_end(&progress);
            store_import_failed(o, line_no, err);
            goto cleanup;
        }
        value.len = 0;
        int vrc = store_value_build(id, rec, rec_len, &value, err, sizeof(err));
        free(rec);
        if (vrc != 0) {
            store_import_progress_end(&progress);
            store_import_failed(o, line_no, err);
            goto cleanup;
        }
        size_t slot;
        MDB_val key, val = {value.len, value.data};
        store_key_encode(id, &slot, &key);
        /* Sorted input (the common case for exports) appends to the last page
         * instead of searching the tree; an id out of order falls back to a
         * normal put, which also overwrites an existing id. */
        unsigned flags = id > last_id ? MDB_APPEND : 0;
        rc = mdb_put(txn, st.users, &key, &val, flags);
        if (rc != 0) {
            store_import_progress_end(&progress);
            snprintf(err, sizeof(err), "cannot store id %llu: %s", (unsigned long long)id, mdb_strerror(rc));
            store_import_failed(o, line_no, err);
            goto cleanup;
        }
        store_changes_note(&changes, id);
        if (id > last_id)
            last_id = id;
        records++;
        if (progress.on)
            store_import_progress_tick(&progress, records, bytes);
    }
    store_import_progress_end(&progress);
    if (ferror(in)) {
        snprintf(err, sizeof(err), "reading %s: %s", o->file, strerror(errno));
        store_import_failed(o, 0, err);
        goto cleanup;
    }

    if (progress.on) /* the commit's fsync can take a moment on a large import */
        fprintf(stderr, "import: %llu records read, committing\033[K", (unsigned long long)records);
    MDB_stat ms;
    uint64_t users = mdb_stat(txn, st.users, &ms) == 0 ? ms.ms_entries : 0;
    rc = store_commit(txn, &st, &changes);
    txn = NULL;
    store_import_progress_end(&progress);
    if (rc != 0) {
        snprintf(err, sizeof(err), "commit failed: %s", mdb_strerror(rc));
        store_import_failed(o, 0, err);
        goto cleanup;
    }
    double secs = (double)(clock_now_ns() - progress.start_ns) / 1e9;
    char db[256];
    log_info("import_done",
             "db=\"%s\" records=%llu blank_lines=%llu replaced=%s users=%llu seconds=%.3f records_per_sec=%.0f",
             store_cli_log_safe(o->db, db, sizeof(db)), (unsigned long long)records, (unsigned long long)blank,
             o->replace ? "yes" : "no",
             (unsigned long long)users, secs, secs > 0 ? (double)records / secs : 0.0);
    code = 0;

cleanup:
    if (txn != NULL)
        mdb_txn_abort(txn);
    store_close(&st);
    store_changes_free(&changes);
    if (in != NULL && in != stdin)
        fclose(in);
    free(line);
    buf_free(&value);
    return code;
}

int store_import_main(int argc, char **argv)
{
    struct store_import_opts o;
    int rc = store_import_parse(argc, argv, &o);
    if (rc == 1)
        return 0;
    if (rc != 0)
        return rc;
    return store_import_run(&o);
}
