/* store.c - the LMDB environment: one set of sizes for every opener, the format marker, clear start-up errors. */
#include "store/store.h"

#include "core/log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Named databases: "users", "meta" and "changes" (+1 spare so a later format can
 * add a table without every old opener failing on maxdbs; ringds older than
 * "changes" open up to 4 as well). */
#define STORE_MAX_DBS 4

/* Fills err with one sentence and returns rc, so callers write `return store_fail(...)`. */
static int store_fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int store_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

bool store_exists(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    int n = snprintf(path, sizeof(path), "%s/data.mdb", dir);
    if (n < 0 || (size_t)n >= sizeof(path))
        return false;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Looks at dir before LMDB does, so each way of pointing at the wrong place gets
 * its own sentence instead of LMDB's generic ENOENT. */
static int store_check_dir(const char *dir, bool create, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT)
            return store_fail(err, errlen, errno, "%s: %s", dir, strerror(errno));
        if (!create)
            return store_fail(err, errlen, ENOENT, "%s: no such directory", dir);
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            return store_fail(err, errlen, errno, "%s: cannot create directory: %s", dir, strerror(errno));
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return store_fail(err, errlen, ENOTDIR, "%s: not a directory", dir);
    if (!create && !store_exists(dir))
        return store_fail(err, errlen, ENOENT, "%s: not a ringd database (no data.mdb)", dir);
    return 0;
}

/* Turns mdb_env_open's failures into what an operator should read. */
static int store_env_open_error(const char *dir, int rc, char *err, size_t errlen)
{
    switch (rc) {
    case MDB_INVALID:
        return store_fail(err, errlen, rc, "%s: data.mdb is corrupt or not an LMDB file", dir);
    case MDB_VERSION_MISMATCH:
        return store_fail(err, errlen, rc, "%s: data.mdb was written by an incompatible LMDB version", dir);
    default:
        break;
    }
    /* An empty data.mdb (a first open that died before its first commit)
     * fails read-only opens with whatever errno LMDB met first. */
    char path[PATH_MAX];
    struct stat st;
    int n = snprintf(path, sizeof(path), "%s/data.mdb", dir);
    if (n > 0 && (size_t)n < sizeof(path) && stat(path, &st) == 0 && st.st_size == 0)
        return store_fail(err, errlen, MDB_INVALID, "%s: data.mdb is empty: corrupt or not an LMDB file", dir);
    return store_fail(err, errlen, rc, "%s: cannot open the LMDB environment: %s", dir, mdb_strerror(rc));
}

/* A data file shorter than its own meta page says (a partial copy, a full disk,
 * a truncation) would make the first lookup past its end die of SIGBUS inside
 * LMDB: refuse it here with a sentence instead. Committed pages are always on
 * disk before the meta page that names them, so a live writer never trips this. */
static int store_check_size(MDB_env *env, const char *dir, char *err, size_t errlen)
{
    MDB_envinfo info;
    MDB_stat ms;
    struct stat st;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/data.mdb", dir);
    if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &st) != 0 || mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &ms) != 0)
        return 0; /* nothing to compare: LMDB's own errors follow */
    uint64_t need = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    if ((uint64_t)st.st_size < need)
        return store_fail(err, errlen, MDB_CORRUPTED, "%s: data.mdb is corrupt: truncated to %lld bytes, its pages need %llu", dir,
                          (long long)st.st_size, (unsigned long long)need);
    return 0;
}

/* Whether the environment holds nothing yet (no named database, no key): only
 * then may a creating opener stamp it as ours. An LMDB file made by someone
 * else keeps failing with "not a ringd database". */
static bool store_env_is_empty(MDB_txn *txn)
{
    MDB_dbi main_db;
    MDB_stat st;
    if (mdb_dbi_open(txn, NULL, 0, &main_db) != 0 || mdb_stat(txn, main_db, &st) != 0)
        return false;
    return st.ms_entries == 0;
}

/* Copies an untrusted marker into out for a message: printable ASCII only, bounded. */
static void store_printable(const MDB_val *v, char *out, size_t outlen)
{
    size_t n = v->mv_size < outlen - 1 ? v->mv_size : outlen - 1;
    const unsigned char *p = v->mv_data;
    for (size_t i = 0; i < n; i++)
        out[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
    out[n] = '\0';
}

/* Checks the meta/format marker; when create is set and the environment is
 * brand new, writes it (txn is then a write transaction). A v1 marker is
 * accepted only when *old can take it (store_open_upgrade): *old is set then. */
static int store_check_format(MDB_txn *txn, const char *dir, bool create, bool *old, char *err, size_t errlen)
{
    MDB_val key = {strlen(STORE_FORMAT_KEY), STORE_FORMAT_KEY};
    MDB_val val;
    MDB_dbi meta;
    int rc = mdb_dbi_open(txn, STORE_DB_META, 0, &meta);
    if (rc == MDB_NOTFOUND && create && store_env_is_empty(txn)) {
        rc = mdb_dbi_open(txn, STORE_DB_META, MDB_CREATE, &meta);
        if (rc == 0) {
            val.mv_size = strlen(STORE_FORMAT_VALUE);
            val.mv_data = STORE_FORMAT_VALUE;
            rc = mdb_put(txn, meta, &key, &val, 0);
        }
        if (rc != 0)
            return store_fail(err, errlen, rc, "%s: cannot write the format marker: %s", dir, mdb_strerror(rc));
        return 0;
    }
    /* MDB_INCOMPATIBLE: "meta" exists as a plain key of someone else's database. */
    if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
        return store_fail(err, errlen, MDB_INCOMPATIBLE, "%s: not a ringd database (no format marker)", dir);
    if (rc != 0)
        return store_fail(err, errlen, rc, "%s: cannot open the meta table: %s", dir, mdb_strerror(rc));
    rc = mdb_get(txn, meta, &key, &val);
    if (rc == MDB_NOTFOUND)
        return store_fail(err, errlen, MDB_INCOMPATIBLE, "%s: not a ringd database (no format marker)", dir);
    if (rc != 0)
        return store_fail(err, errlen, rc, "%s: cannot read the format marker: %s", dir, mdb_strerror(rc));
    if (val.mv_size == strlen(STORE_FORMAT_V1) && memcmp(val.mv_data, STORE_FORMAT_V1, val.mv_size) == 0) {
        if (old != NULL) {
            *old = true;
            return 0;
        }
        /* Never misread: a v1 value is bare JSON, without the gRPC form. */
        return store_fail(err, errlen, MDB_INCOMPATIBLE,
                          "%s: format %s was written by an older ringd (records without their gRPC form); "
                          "upgrade it once with: ringd upgrade --db %s",
                          dir, STORE_FORMAT_V1, dir);
    }
    if (val.mv_size != strlen(STORE_FORMAT_VALUE) || memcmp(val.mv_data, STORE_FORMAT_VALUE, val.mv_size) != 0) {
        char found[65];
        store_printable(&val, found, sizeof(found));
        return store_fail(err, errlen, MDB_INCOMPATIBLE, "%s: format %s, expected %s", dir, found, STORE_FORMAT_VALUE);
    }
    return 0;
}

static int store_open_mode(struct store *s, const char *dir, bool readonly, bool create, bool upgrade, char *err, size_t errlen)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    memset(s, 0, sizeof(*s));
    if (readonly)
        create = false;

    int rc = store_check_dir(dir, create, err, errlen);
    if (rc != 0)
        return rc;
    rc = mdb_env_create(&env);
    if (rc != 0)
        return store_fail(err, errlen, rc, "%s: cannot create an LMDB environment: %s", dir, mdb_strerror(rc));
    /* Sizes before mdb_env_open, identical for every opener (see store.h). */
    if ((rc = mdb_env_set_maxdbs(env, STORE_MAX_DBS)) != 0 || (rc = mdb_env_set_mapsize(env, (size_t)STORE_MAP_SIZE)) != 0 ||
        (rc = mdb_env_set_maxreaders(env, STORE_MAX_READERS)) != 0) {
        store_fail(err, errlen, rc, "%s: cannot size the LMDB environment: %s", dir, mdb_strerror(rc));
        goto cleanup;
    }
    /* MDB_NOTLS everywhere: a reader's slot belongs to its transaction, not to
     * a thread, so a shard (or a test) may hold several and move them. */
    unsigned flags = MDB_NOTLS;
    if (readonly)
        flags |= MDB_RDONLY | MDB_NORDAHEAD; /* random lookups: readahead only evicts useful pages */
    rc = mdb_env_open(env, dir, flags, 0644);
    if (rc != 0) {
        store_env_open_error(dir, rc, err, errlen);
        goto cleanup;
    }

    rc = store_check_size(env, dir, err, errlen);
    if (rc != 0)
        goto cleanup;

    /* DBI handles opened in a transaction that commits stay valid for the
     * environment's lifetime, so this is the only dbi_open ever done. */
    rc = mdb_txn_begin(env, NULL, readonly ? MDB_RDONLY : 0, &txn);
    if (rc != 0) {
        store_fail(err, errlen, rc, "%s: cannot begin a transaction: %s", dir, mdb_strerror(rc));
        goto cleanup;
    }
    bool old = false;
    rc = store_check_format(txn, dir, create, upgrade ? &old : NULL, err, errlen);
    if (rc != 0)
        goto cleanup;
    rc = mdb_dbi_open(txn, STORE_DB_META, 0, &s->meta); /* exists: store_check_format saw it */
    if (rc != 0) {
        store_fail(err, errlen, rc, "%s: cannot open the meta table: %s", dir, mdb_strerror(rc));
        goto cleanup;
    }
    rc = mdb_dbi_open(txn, STORE_DB_USERS, MDB_INTEGERKEY | (create ? MDB_CREATE : 0), &s->users);
    if (rc != 0) {
        if (rc == MDB_NOTFOUND)
            store_fail(err, errlen, rc, "%s: not a ringd database (no users table)", dir);
        else
            store_fail(err, errlen, rc, "%s: cannot open the users table: %s", dir, mdb_strerror(rc));
        goto cleanup;
    }
    /* The change log: a writer creates it (a store made by an older ringd
     * gains it here, which older ringds ignore); the server uses it when it
     * is there, and without it simply never reads an older index through an
     * overlay (store/changes.h). Its creation needs no entry of its own: any
     * index is of a later snapshot. */
    rc = mdb_dbi_open(txn, STORE_DB_CHANGES, MDB_INTEGERKEY | (readonly ? 0 : MDB_CREATE), &s->changes);
    if (rc == 0) {
        s->has_changes = true;
    } else if (rc == MDB_NOTFOUND && readonly) {
        s->has_changes = false;
    } else {
        store_fail(err, errlen, rc, "%s: cannot open the change log: %s", dir, mdb_strerror(rc));
        goto cleanup;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        store_fail(err, errlen, rc, "%s: cannot commit: %s", dir, mdb_strerror(rc));
        goto cleanup;
    }

    s->env = env;
    s->readonly = readonly;
    s->old_format = old;
    env = NULL;
    store_reader_check(s);
    return 0;

cleanup:
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (env != NULL)
        mdb_env_close(env); /* also required after a failed mdb_env_open */
    memset(s, 0, sizeof(*s));
    return rc;
}

int store_open(struct store *s, const char *dir, bool readonly, bool create, char *err, size_t errlen)
{
    return store_open_mode(s, dir, readonly, create, false, err, errlen);
}

int store_open_upgrade(struct store *s, const char *dir, char *err, size_t errlen)
{
    return store_open_mode(s, dir, false, false, true, err, errlen);
}

void store_close(struct store *s)
{
    if (s->env != NULL)
        mdb_env_close(s->env);
    memset(s, 0, sizeof(*s));
}

int store_reader_check(struct store *s)
{
    int dead = 0;
    int rc = mdb_reader_check(s->env, &dead);
    if (rc != 0) {
        log_warn("store_reader_check_failed", "error=\"%s\"", mdb_strerror(rc));
        return 0;
    }
    if (dead > 0)
        log_info("store_stale_readers_cleared", "count=%d", dead);
    return dead;
}

uint64_t store_used_bytes(struct store *s)
{
    MDB_envinfo info;
    MDB_stat st;
    if (mdb_env_info(s->env, &info) != 0 || mdb_env_stat(s->env, &st) != 0)
        return 0;
    return ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
}
