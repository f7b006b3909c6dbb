/* follow.c - `ringd follow`: the store kept in step with a PostgreSQL table by logical replication (pgoutput), exactly once.
 *
 * How exactly-once holds. The store keeps, under metadata keys (store/feed.h),
 * the end LSN of the last source transaction it applied, written in the same
 * LMDB transaction as that transaction's rows. A source transaction is never
 * split: its rows and its LSN commit together or not at all. The server is
 * told a position is flushed only after the LMDB commit that holds it has
 * returned (LMDB's commit is durable: fsync), so the slot never forgets a
 * change the store lacks. After any crash or lost connection the follower
 * starts again from the stored LSN, and skips a transaction whose commit lies
 * below it. So kill -9 of either side, at any moment, loses nothing and
 * applies nothing twice.
 *
 * Group commit. An LMDB commit costs two fsyncs (a few ms here): one per
 * source transaction would cap a busy feed at a few hundred transactions a
 * second. When more of the stream is already waiting, the next source
 * transactions join the open LMDB transaction, up to FOLLOW_GROUP_ROWS rows
 * or FOLLOW_GROUP_NS, and commit together with the last one's LSN; when the
 * stream is drained the group commits at once. Readers still see whole source
 * transactions only, and a quiet feed commits each one as it comes.
 *
 * First run: the publication is created if missing, then the slot, with an
 * exported snapshot; a second, ordinary connection copies the table under that
 * snapshot into the store in one LMDB transaction (replacing whatever the
 * users table held) with the slot's consistent point as the LSN. A crash
 * before that commit leaves "copy pending" in the store: the next run drops
 * the half-made slot and starts over.
 *
 * Rows become records as row_to_json would render them (store/pgoutput.h),
 * then go through the one record path (store_record_normalize_keyed), keyed
 * by the id column.
 */
#include "store/follow.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "store/cli.h"
#include "store/feed.h"
#include "store/key.h"
#include "store/pgoutput.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define FOLLOW_STATUS_NS 1000000000ull    /* a standby status update at least this often */
#define FOLLOW_HEARTBEAT_NS 1000000000ull /* the lock file's mtime, while caught up */
#define FOLLOW_PROGRESS_NS 500000000ull   /* the terminal progress line */
#define FOLLOW_GROUP_NS 20000000ull       /* a group of source transactions commits within this */
#define FOLLOW_GROUP_ROWS 20000           /* ... or at this many row changes */
#define FOLLOW_RECENT_US 100000           /* a transaction this fresh, with nothing left to read: caught up */
#define FOLLOW_BACKOFF_MIN_MS 100
#define FOLLOW_BACKOFF_MAX_MS 5000
#define FOLLOW_SKIP_LOG_MAX 1000 /* then one line per 1000 skipped rows */
#define FOLLOW_NAME_MAX 63       /* NAMEDATALEN - 1 */

/* What a session ends with. */
enum follow_end { FOLLOW_RETRY, FOLLOW_FATAL, FOLLOW_STOP };

struct follow_opts {
    const char *db, *pg, *table, *id_column, *slot, *publication;
};

struct follow_col {
    char *name;
    uint32_t typid;
};

/* The followed table as the catalog (copy) or the last Relation message (stream) describes it. */
struct follow_rel {
    uint32_t relid;
    unsigned ncols;
    struct follow_col *cols;
    int id_col; /* index of the id column, -1 when absent */
};

struct follow {
    struct follow_opts o;
    char schema[FOLLOW_NAME_MAX + 1], name[FOLLOW_NAME_MAX + 1];
    char display[2 * FOLLOW_NAME_MAX + 2]; /* schema.name, as logged and stored */
    struct store st;
    int lock_fd;
    int sig_fd;
    bool stopping;
    bool tty;
    PGconn *repl;
    uint32_t relid; /* the table's oid, from the catalog at session start */
    struct follow_rel rel;
    struct pgout_scratch *sc;
    struct buf json;
    struct buf value;   /* the stored value being built (store_value_build) */
    char last_err[512]; /* the last connection error logged: repeats go to debug */

    struct store_feed feed;    /* as last committed */
    struct store_feed pending; /* as the open group will commit it */
    MDB_txn *txn;              /* the open group, NULL when none */
    struct store_changes changes; /* the ids the open group changed: its change-log entry */
    uint64_t group_start_ns;
    uint64_t group_rows;
    bool in_xact, skip_xact;
    bool idle_keepalive; /* a keepalive came outside any transaction: the server had nothing more to send */
    uint64_t xact_rows;

    uint64_t received; /* newest WAL position seen */
    uint64_t flushed;  /* everything up to here is in the store (or not ours) */
    uint64_t last_status_ns, last_heartbeat_ns, last_progress_ns;
    bool caught_up;          /* in memory: nothing left to apply, as of synced_us */
    uint64_t synced_us;      /* last moment the store was known to hold everything */
    uint64_t state_since_ns; /* when caught_up last changed */
    uint64_t skipped_logged;
    uint64_t rate_rows, rate_start_ns;
};

/* ---- options ---- */

static void follow_usage(FILE *f)
{
    fputs("usage: ringd follow --db DIR --pg CONNINFO --table [SCHEMA.]NAME [--id-column id]\n"
          "                    [--slot ringd] [--publication ringd]\n"
          "\n"
          "Keeps the store in step with a PostgreSQL table by logical replication\n"
          "(pgoutput): the first run creates the publication if missing and the slot,\n"
          "copies the table, then streams every committed change, exactly once.\n"
          "Later runs resume from the position stored in the database.\n"
          "\n"
          "  --db DIR            database directory, created if missing (env RINGD_DB)\n"
          "  --pg CONNINFO       libpq connection string or URI (env RINGD_PG)\n"
          "  --table NAME        source table, SCHEMA.NAME or NAME in public (env RINGD_TABLE)\n"
          "  --id-column NAME    integer key column (env RINGD_ID_COLUMN, default id)\n"
          "  --slot NAME         logical replication slot (env RINGD_SLOT, default ringd)\n"
          "  --publication NAME  publication (env RINGD_PUBLICATION, default ringd)\n"
          "  --help              this text\n",
          f);
}

static const char *follow_env(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : def;
}

/* A name PostgreSQL would take unquoted for a slot, and that we can quote anywhere else. */
static bool follow_plain_name(const char *s, bool lower_only)
{
    size_t n = strlen(s);
    if (n == 0 || n > FOLLOW_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (!lower_only && c >= 'A' && c <= 'Z');
        if (!ok)
            return false;
    }
    return true;
}

/* Returns 0 to run, 1 after --help, 2 on bad usage (message printed). */
static int follow_parse(int argc, char **argv, struct follow *f)
{
    struct follow_opts *o = &f->o;
    o->db = follow_env("RINGD_DB", NULL);
    o->pg = follow_env("RINGD_PG", NULL);
    o->table = follow_env("RINGD_TABLE", NULL);
    o->id_column = follow_env("RINGD_ID_COLUMN", "id");
    o->slot = follow_env("RINGD_SLOT", "ringd");
    o->publication = follow_env("RINGD_PUBLICATION", "ringd");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            follow_usage(stdout);
            return 1;
        }
        int got = store_cli_flag_value(argc, argv, &i, "--db", &o->db);
        if (got == 0)
            got = store_cli_flag_value(argc, argv, &i, "--pg", &o->pg);
        if (got == 0)
            got = store_cli_flag_value(argc, argv, &i, "--table", &o->table);
        if (got == 0)
            got = store_cli_flag_value(argc, argv, &i, "--id-column", &o->id_column);
        if (got == 0)
            got = store_cli_flag_value(argc, argv, &i, "--slot", &o->slot);
        if (got == 0)
            got = store_cli_flag_value(argc, argv, &i, "--publication", &o->publication);
        if (got < 0)
            return 2;
        if (got == 0) {
            fprintf(stderr, "ringd follow: unknown argument %s\n", argv[i]);
            follow_usage(stderr);
            return 2;
        }
    }
    const char *missing = o->db == NULL || o->db[0] == '\0'         ? "--db DIR"
                          : o->pg == NULL || o->pg[0] == '\0'       ? "--pg CONNINFO"
                          : o->table == NULL || o->table[0] == '\0' ? "--table NAME"
                                                                    : NULL;
    if (missing != NULL) {
        fprintf(stderr, "ringd follow: no %s\n", missing);
        follow_usage(stderr);
        return 2;
    }
    const char *dot = strchr(o->table, '.');
    const char *schema = dot != NULL ? o->table : "public";
    size_t schema_len = dot != NULL ? (size_t)(dot - o->table) : strlen("public");
    const char *name = dot != NULL ? dot + 1 : o->table;
    if (schema_len == 0 || schema_len > FOLLOW_NAME_MAX || strlen(name) == 0 || strlen(name) > FOLLOW_NAME_MAX ||
        strchr(name, '.') != NULL) {
        fprintf(stderr, "ringd follow: --table wants SCHEMA.NAME or NAME (each 1 to 63 bytes), not '%s'\n", o->table);
        return 2;
    }
    memcpy(f->schema, schema, schema_len);
    f->schema[schema_len] = '\0';
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->display, sizeof(f->display), "%s.%s", f->schema, f->name);
    if (!follow_plain_name(o->slot, true)) {
        fprintf(stderr, "ringd follow: --slot wants 1 to 63 of a-z, 0-9 and _ (PostgreSQL's rule), not '%s'\n", o->slot);
        return 2;
    }
    if (!follow_plain_name(o->publication, false)) {
        fprintf(stderr, "ringd follow: --publication wants 1 to 63 of A-Z, a-z, 0-9 and _, not '%s'\n", o->publication);
        return 2;
    }
    if (strlen(o->id_column) == 0 || strlen(o->id_column) > FOLLOW_NAME_MAX) {
        fprintf(stderr, "ringd follow: --id-column wants 1 to 63 bytes\n");
        return 2;
    }
    return 0;
}

/* ---- logging ---- */

/* One line, "level=error msg=follow_failed error=... fix=...", for a set-up
 * problem only an operator can solve; the session then ends FOLLOW_FATAL. */
static enum follow_end follow_fatal(const char *fix, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static enum follow_end follow_fatal(const char *fix, const char *fmt, ...)
{
    char why[768], safe_why[768], safe_fix[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    store_cli_log_safe(why, safe_why, sizeof(safe_why));
    if (fix != NULL)
        log_error("follow_failed", "error=\"%s\" fix=\"%s\"", safe_why, store_cli_log_safe(fix, safe_fix, sizeof(safe_fix)));
    else
        log_error("follow_failed", "error=\"%s\"", safe_why);
    return FOLLOW_FATAL;
}

/* libpq's message without its trailing newline, log-safe. */
static const char *follow_pq_error(PGconn *c, char *out, size_t cap)
{
    const char *m = c != NULL ? PQerrorMessage(c) : "out of memory";
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s", m);
    size_t n = strlen(tmp);
    while (n > 0 && (tmp[n - 1] == '\n' || tmp[n - 1] == ' '))
        tmp[--n] = '\0';
    for (char *p = tmp; *p != '\0'; p++)
        if (*p == '\n')
            *p = ' ';
    return store_cli_log_safe(tmp, out, cap);
}

static void follow_lsn_text(uint64_t lsn, char *out, size_t cap)
{
    snprintf(out, cap, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
}

static int follow_parse_lsn(const char *s, uint64_t *lsn)
{
    unsigned hi, lo;
    char end;
    if (sscanf(s, "%X/%X%c", &hi, &lo, &end) != 2)
        return -1;
    *lsn = ((uint64_t)hi << 32) | lo;
    return 0;
}

/* PostgreSQL epoch µs -> Unix µs (0 stays 0). */
static uint64_t follow_unix_us(int64_t pg_us)
{
    int64_t u = pg_us + PGOUT_EPOCH_UNIX_US;
    return pg_us == 0 || u < 0 ? 0 : (uint64_t)u;
}

static void follow_progress_clear(struct follow *f)
{
    if (f->tty)
        fputs("\r\033[K", stderr);
}

/* ---- connections ---- */

/* Connects with the user's conninfo (a string or URI, expanded in place of
 * dbname) between our defaults, which it may override, and what it may not:
 * replication mode and UTF-8, which the JSON needs. */
static PGconn *follow_connect(const struct follow *f, bool replication)
{
    const char *keys[] = {"connect_timeout",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "fallback_application_name",
                          "dbname",
                          "client_encoding",
                          replication ? "replication" : NULL,
                          NULL};
    const char *vals[] = {"10", "10", "5", "3", "ringd-follow", f->o.pg, "UTF8", replication ? "database" : NULL, NULL};
    return PQconnectdbParams(keys, vals, 1);
}

/* Runs sql expecting want; on failure logs nothing, copies libpq's error. Returns the result or NULL. */
static PGresult *follow_exec(PGconn *c, const char *sql, ExecStatusType want, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    if (r != NULL && PQresultStatus(r) == want)
        return r;
    if (r != NULL && PQresultErrorMessage(r)[0] != '\0') {
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "%s", PQresultErrorMessage(r));
        size_t n = strlen(tmp);
        while (n > 0 && tmp[n - 1] == '\n')
            tmp[--n] = '\0';
        store_cli_log_safe(tmp, err, errlen);
    } else {
        follow_pq_error(c, err, errlen);
    }
    PQclear(r);
    return NULL;
}

/* Output of the types the JSON rendering parses must not depend on the
 * server's defaults: ISO dates on both connections, as row_to_json uses. */
static int follow_session_setup(PGconn *c, char *err, size_t errlen)
{
    PGresult *r = follow_exec(c, "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'", PGRES_COMMAND_OK, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

/* A literal or identifier quoted by libpq into a malloc'd string (PQfreemem). */
static char *follow_lit(PGconn *c, const char *s)
{
    char *q = PQescapeLiteral(c, s, strlen(s));
    if (q == NULL) {
        fprintf(stderr, "ringd follow: out of memory quoting a literal\n");
        abort();
    }
    return q;
}

static char *follow_ident(PGconn *c, const char *s)
{
    char *q = PQescapeIdentifier(c, s, strlen(s));
    if (q == NULL) {
        fprintf(stderr, "ringd follow: out of memory quoting an identifier\n");
        abort();
    }
    return q;
}

/* An identifier as an operator would type it in a fix: bare when PostgreSQL
 * takes it bare, else in double quotes (which a log value shows as '). */
static const char *follow_sql_name(const char *s, char *out, size_t cap)
{
    bool bare = s[0] != '\0' && !(s[0] >= '0' && s[0] <= '9');
    for (const char *p = s; bare && *p != '\0'; p++)
        bare = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
    if (bare)
        snprintf(out, cap, "%s", s);
    else
        snprintf(out, cap, "\"%s\"", s);
    return out;
}

/* ---- the relation ---- */

static void follow_rel_free(struct follow_rel *rel)
{
    for (unsigned i = 0; i < rel->ncols; i++)
        free(rel->cols[i].name);
    free(rel->cols);
    memset(rel, 0, sizeof(*rel));
    rel->id_col = -1;
}

static void follow_rel_add(struct follow_rel *rel, const char *name, uint32_t typid, const char *id_column)
{
    rel->cols = xrealloc(rel->cols, (rel->ncols + 1) * sizeof(*rel->cols));
    rel->cols[rel->ncols].name = xstrdup(name);
    rel->cols[rel->ncols].typid = typid;
    if (strcmp(name, id_column) == 0)
        rel->id_col = (int)rel->ncols;
    rel->ncols++;
}

/* ---- set-up checks (every session: the operator may have changed things) ---- */

struct follow_table_info {
    uint32_t relid;
    char replident;
    bool id_found;
    uint32_t id_typid;
    bool id_in_identity;
};

static enum follow_end follow_check_table(struct follow *f, char *err, size_t errlen)
{
    char fix[512];
    char *nsp = follow_lit(f->repl, f->schema), *rel = follow_lit(f->repl, f->name), *idc = follow_lit(f->repl, f->o.id_column);
    char sql[2048];
    /* Whether the id column is in the replica identity: the primary key's
     * columns under REPLICA IDENTITY DEFAULT, the chosen index's under
     * USING INDEX, every column under FULL. */
    snprintf(sql, sizeof(sql),
             "SELECT c.oid, c.relreplident, a.atttypid, "
             "  c.relreplident = 'f' OR EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND a.attnum = ANY (i.indkey) "
             "    AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))), "
             "  c.relkind "
             "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
             "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped "
             "WHERE n.nspname = %s AND c.relname = %s",
             idc, nsp, rel);
    PQfreemem(nsp);
    PQfreemem(rel);
    PQfreemem(idc);
    PGresult *r = follow_exec(f->repl, sql, PGRES_TUPLES_OK, err, errlen);
    if (r == NULL)
        return FOLLOW_RETRY;
    enum follow_end end = FOLLOW_RETRY;
    if (PQntuples(r) == 0) {
        end = follow_fatal(NULL, "table %s does not exist (or this role cannot see it)", f->display);
        goto out;
    }
    const char *kind = PQgetvalue(r, 0, 4);
    if (kind[0] != 'r' && kind[0] != 'p') {
        end = follow_fatal(NULL, "%s is not a table (relkind %s)", f->display, kind);
        goto out;
    }
    if (PQgetisnull(r, 0, 2)) {
        end = follow_fatal(NULL, "table %s has no column %s: name its integer key column with --id-column", f->display,
                           f->o.id_column);
        goto out;
    }
    uint32_t typid = (uint32_t)strtoul(PQgetvalue(r, 0, 2), NULL, 10);
    if (typid != PGOUT_INT2OID && typid != PGOUT_INT4OID && typid != PGOUT_INT8OID && typid != PGOUT_NUMERICOID) {
        end = follow_fatal(NULL, "column %s of %s is not an integer (type oid %u): name the key column with --id-column",
                           f->o.id_column, f->display, typid);
        goto out;
    }
    char ident = PQgetvalue(r, 0, 1)[0];
    bool usable = PQgetvalue(r, 0, 3)[0] == 't';
    if (!usable) {
        const char *what = ident == 'n'   ? "REPLICA IDENTITY NOTHING"
                           : ident == 'd' ? "no primary key on it (REPLICA IDENTITY DEFAULT)"
                                          : "a replica identity index without it";
        snprintf(fix, sizeof(fix), "ALTER TABLE %s ADD PRIMARY KEY (%s); or: ALTER TABLE %s REPLICA IDENTITY FULL;", f->display,
                 f->o.id_column, f->display);
        end = follow_fatal(fix, "table %s has no usable replica identity for column %s (%s): deletes could not be followed",
                           f->display, f->o.id_column, what);
        goto out;
    }
    f->relid = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
    end = FOLLOW_STOP; /* "fine": the caller goes on */
out:
    PQclear(r);
    return end;
}

static enum follow_end follow_check_publication(struct follow *f, char *err, size_t errlen)
{
    char sql[1024], fix[1100];
    char *pub = follow_lit(f->repl, f->o.publication);
    snprintf(sql, sizeof(sql), "SELECT pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = %s", pub);
    PGresult *r = follow_exec(f->repl, sql, PGRES_TUPLES_OK, err, errlen);
    enum follow_end end = FOLLOW_RETRY;
    if (r == NULL)
        goto out;
    char *pub_id = follow_ident(f->repl, f->o.publication);
    char *nsp_id = follow_ident(f->repl, f->schema), *rel_id = follow_ident(f->repl, f->name);
    char pub_n[FOLLOW_NAME_MAX + 3], nsp_n[FOLLOW_NAME_MAX + 3], rel_n[FOLLOW_NAME_MAX + 3];
    follow_sql_name(f->o.publication, pub_n, sizeof(pub_n));
    follow_sql_name(f->schema, nsp_n, sizeof(nsp_n));
    follow_sql_name(f->name, rel_n, sizeof(rel_n));
    if (PQntuples(r) == 0) {
        PQclear(r);
        /* Before the slot: pgoutput reads the publication as of the WAL it decodes. */
        snprintf(sql, sizeof(sql), "CREATE PUBLICATION %s FOR TABLE %s.%s", pub_id, nsp_id, rel_id);
        r = follow_exec(f->repl, sql, PGRES_COMMAND_OK, err, errlen);
        if (r == NULL) {
            snprintf(fix, sizeof(fix), "CREATE PUBLICATION %s FOR TABLE %s.%s; (as the table's owner)", pub_n, nsp_n, rel_n);
            end = follow_fatal(fix, "cannot create publication %s: %s", f->o.publication, err);
        } else {
            log_info("follow_publication_created", "publication=%s table=%s", f->o.publication, f->display);
            end = FOLLOW_STOP;
        }
        goto out_ids;
    }
    static const char *const actions[] = {"inserts", "updates", "deletes", "truncates"};
    for (int i = 0; i < 4; i++)
        if (PQgetvalue(r, 0, i)[0] != 't') {
            snprintf(fix, sizeof(fix), "ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate');", pub_n);
            end = follow_fatal(fix, "publication %s does not publish %s", f->o.publication, actions[i]);
            goto out_ids;
        }
    PQclear(r);
    char *nsp = follow_lit(f->repl, f->schema), *rel = follow_lit(f->repl, f->name);
    snprintf(sql, sizeof(sql), "SELECT 1 FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s AND tablename = %s", pub,
             nsp, rel);
    PQfreemem(nsp);
    PQfreemem(rel);
    r = follow_exec(f->repl, sql, PGRES_TUPLES_OK, err, errlen);
    if (r == NULL)
        goto out_ids;
    if (PQntuples(r) == 0) {
        snprintf(fix, sizeof(fix), "ALTER PUBLICATION %s ADD TABLE %s.%s;", pub_n, nsp_n, rel_n);
        end = follow_fatal(fix, "publication %s does not publish table %s", f->o.publication, f->display);
        goto out_ids;
    }
    end = FOLLOW_STOP;
out_ids:
    PQfreemem(pub_id);
    PQfreemem(nsp_id);
    PQfreemem(rel_id);
out:
    PQclear(r);
    PQfreemem(pub);
    return end;
}

/* Whether the slot exists (1), not (0), or the query failed (-1); a slot of another plugin or database is fatal (-2). */
static int follow_slot_exists(struct follow *f, char *err, size_t errlen)
{
    char sql[512];
    char *slot = follow_lit(f->repl, f->o.slot);
    snprintf(sql, sizeof(sql),
             "SELECT plugin, slot_type, database = current_database(), %s FROM pg_replication_slots WHERE slot_name = %s",
             PQserverVersion(f->repl) >= 130000 ? "wal_status" : "NULL", slot);
    PQfreemem(slot);
    PGresult *r = follow_exec(f->repl, sql, PGRES_TUPLES_OK, err, errlen);
    if (r == NULL)
        return -1;
    int rc = PQntuples(r) > 0 ? 1 : 0;
    if (rc == 1 && (strcmp(PQgetvalue(r, 0, 0), "pgoutput") != 0 || PQgetvalue(r, 0, 2)[0] != 't')) {
        char fix[256];
        snprintf(fix, sizeof(fix), "choose another --slot, or: SELECT pg_drop_replication_slot('%s');", f->o.slot);
        follow_fatal(fix, "replication slot %s exists but is not a pgoutput slot of this database (plugin %s, type %s)", f->o.slot,
                     PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
        rc = -2;
    } else if (rc == 1 && f->feed.present && strcmp(PQgetvalue(r, 0, 3), "lost") == 0) {
        /* max_slot_wal_keep_size removed WAL the slot still needed. */
        char fix[256], l[32];
        follow_lsn_text(f->feed.lsn, l, sizeof(l));
        snprintf(fix, sizeof(fix), "SELECT pg_drop_replication_slot('%s'); then follow again into a new --db (the table is copied)",
                 f->o.slot);
        follow_fatal(fix, "replication slot %s has lost WAL it needed (max_slot_wal_keep_size): the changes after LSN %s are gone",
                     f->o.slot, l);
        rc = -2;
    }
    PQclear(r);
    return rc;
}

/* ---- LMDB side ---- */

static void follow_group_abort(struct follow *f)
{
    if (f->txn != NULL)
        mdb_txn_abort(f->txn);
    f->txn = NULL;
    store_changes_clear(&f->changes);
    f->pending = f->feed;
    f->group_rows = 0;
}

static int follow_group_begin(struct follow *f)
{
    if (f->txn != NULL)
        return 0;
    int rc = mdb_txn_begin(f->st.env, NULL, 0, &f->txn);
    if (rc != 0) {
        f->txn = NULL;
        return rc;
    }
    f->group_start_ns = clock_now_ns();
    f->group_rows = 0;
    return 0;
}

/* Commits the open group with the feed state; caught_up says whether nothing
 * was left to read. Only after this returns is pending.lsn reported flushed. */
static int follow_group_commit(struct follow *f, bool drained)
{
    uint64_t now = store_feed_now_us();
    /* Caught up: nothing left to read, and what was applied is fresh. Else the
     * store is complete up to its newest transaction's commit time. */
    bool caught_up = drained && (f->idle_keepalive || now < f->pending.commit_us + FOLLOW_RECENT_US);
    f->pending.caught_up = caught_up;
    uint64_t synced = caught_up ? now : f->pending.commit_us;
    f->pending.synced_us = synced > f->synced_us ? synced : f->synced_us;
    int rc = store_feed_write(f->txn, &f->st, &f->pending);
    if (rc == 0) {
        rc = store_commit(f->txn, &f->st, &f->changes);
    } else {
        mdb_txn_abort(f->txn);
        store_changes_clear(&f->changes);
    }
    f->txn = NULL;
    if (rc != 0) {
        f->pending = f->feed;
        return rc;
    }
    f->feed = f->pending;
    f->synced_us = f->feed.synced_us;
    if (f->feed.lsn > f->flushed)
        f->flushed = f->feed.lsn;
    f->rate_rows += f->group_rows;
    f->group_rows = 0;
    return 0;
}

/* A state-only write (no rows): the caught-up flag and its time. */
static int follow_write_state(struct follow *f, bool caught_up, uint64_t synced_us)
{
    if (!f->feed.present)
        return 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(f->st.env, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    struct store_feed next = f->feed;
    next.caught_up = caught_up;
    next.synced_us = synced_us;
    rc = store_feed_write(txn, &f->st, &next);
    if (rc == 0)
        rc = store_commit(txn, &f->st, NULL); /* no user changed */
    else
        mdb_txn_abort(txn);
    if (rc == 0) {
        f->feed = next;
        f->pending = next;
    }
    return rc;
}

static void follow_skip(struct follow *f, uint64_t lsn, const char *what, const char *why)
{
    f->pending.skipped++;
    f->skipped_logged++;
    if (f->skipped_logged <= FOLLOW_SKIP_LOG_MAX || f->skipped_logged % 1000 == 0) {
        char l[32], safe[512];
        follow_lsn_text(lsn, l, sizeof(l));
        log_warn("follow_row_skipped", "lsn=%s table=%s %s reason=\"%s\" skipped_total=%" PRIu64, l, f->display, what,
                 store_cli_log_safe(why, safe, sizeof(safe)), f->pending.skipped);
    }
}

/* Parses an id column's text: a decimal integer > 0. */
static bool follow_parse_id(const struct pgout_value *v, uint64_t *id)
{
    if (v->kind != 't' || v->len == 0 || v->len > 20)
        return false;
    char tmp[21];
    memcpy(tmp, v->data, v->len);
    tmp[v->len] = '\0';
    return store_cli_parse_u64(tmp, id) == 0 && *id > 0;
}

/* The stored record of id, parsed (NULL when absent or unreadable). */
static json_t *follow_stored(struct follow *f, uint64_t id)
{
    size_t slot;
    MDB_val key, val;
    store_key_encode(id, &slot, &key);
    struct store_user u;
    if (mdb_get(f->txn, f->st.users, &key, &val) != 0 || store_value_split(val.mv_data, val.mv_size, &u) != 0)
        return NULL;
    return json_loadb(u.json, u.json_len, 0, NULL);
}

/* Builds the record of one row in f->json and stores it under its id.
 * vals[i] describes rel->cols[i]; an 'u' (unchanged TOASTed) value is taken
 * from old (the old row under REPLICA IDENTITY FULL), else from the stored
 * record of merge_id. Returns 0 (stored or skipped) or an LMDB error. */
static int follow_put_row(struct follow *f, uint64_t lsn, const struct pgout_value *vals, unsigned n, const struct pgout_tuple *old,
                          uint64_t merge_id, bool append, uint64_t *stored_id)
{
    const struct follow_rel *rel = &f->rel;
    json_t *stored = NULL;
    bool stored_loaded = false;
    struct buf *b = &f->json;
    b->len = 0;
    buf_append(b, "{", 1);
    for (unsigned i = 0; i < n; i++) {
        if (i > 0)
            buf_append(b, ",", 1);
        pgout_json_string(b, rel->cols[i].name, strlen(rel->cols[i].name));
        buf_append(b, ":", 1);
        const struct pgout_value *v = &vals[i];
        if (v->kind == 'u' && old != NULL && i < old->ncols && old->vals[i].kind != 'u')
            v = &old->vals[i];
        if (v->kind == 't') {
            pgout_json_value(b, rel->cols[i].typid, v->data, v->len);
        } else if (v->kind == 'u') {
            if (!stored_loaded) {
                stored = merge_id != 0 ? follow_stored(f, merge_id) : NULL;
                stored_loaded = true;
            }
            json_t *kept = stored != NULL ? json_object_get(stored, rel->cols[i].name) : NULL;
            char *text = kept != NULL ? json_dumps(kept, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            if (text != NULL) {
                buf_append(b, text, strlen(text));
                free(text);
            } else {
                buf_append(b, "null", 4); /* nothing stored to keep: the value is unknown here */
            }
        } else {
            buf_append(b, "null", 4);
        }
    }
    buf_append(b, "}", 1);
    json_decref(stored);

    uint64_t id;
    char *rec;
    size_t rec_len;
    char err[256];
    *stored_id = 0;
    if (store_record_normalize_keyed(b->data, b->len, f->o.id_column, &id, &rec, &rec_len, err, sizeof(err)) != 0) {
        char what[64] = "id=?";
        if (rel->id_col >= 0 && (unsigned)rel->id_col < n && vals[rel->id_col].kind == 't')
            snprintf(what, sizeof(what), "id=\"%.*s\"", (int)(vals[rel->id_col].len > 40 ? 40 : vals[rel->id_col].len),
                     vals[rel->id_col].data);
        char safe[64];
        follow_skip(f, lsn, store_cli_log_safe(what, safe, sizeof(safe)), err);
        return 0;
    }
    f->value.len = 0;
    int vrc = store_value_build(id, rec, rec_len, &f->value, err, sizeof(err));
    free(rec);
    if (vrc != 0) {
        follow_skip(f, lsn, "id=?", err);
        return 0;
    }
    size_t slot;
    MDB_val key, val = {f->value.len, f->value.data};
    store_key_encode(id, &slot, &key);
    int rc = mdb_put(f->txn, f->st.users, &key, &val, append ? MDB_APPEND : 0);
    if (rc == MDB_KEYEXIST && append) /* not in order after all */
        rc = mdb_put(f->txn, f->st.users, &key, &val, 0);
    if (rc == 0) {
        store_changes_note(&f->changes, id);
        *stored_id = id;
    }
    return rc;
}

static int follow_del(struct follow *f, uint64_t id)
{
    size_t slot;
    MDB_val key;
    store_key_encode(id, &slot, &key);
    int rc = mdb_del(f->txn, f->st.users, &key, NULL);
    if (rc == 0)
        store_changes_note(&f->changes, id);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- first run: slot + snapshot + copy ---- */

/* Copies the table under snapshot into the store in one LMDB transaction,
 * committed with feed.lsn = consistent. */
static enum follow_end follow_copy(struct follow *f, const char *snapshot, uint64_t consistent, char *err, size_t errlen)
{
    enum follow_end end = FOLLOW_RETRY;
    PGresult *r = NULL;
    char *sql = NULL;
    uint64_t start_ns = clock_now_ns(), start_us = store_feed_now_us();
    uint64_t rows = 0, skipped_before = f->pending.skipped;
    PGconn *c = follow_connect(f, false);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        follow_pq_error(c, err, errlen);
        goto out;
    }
    if (follow_session_setup(c, err, errlen) != 0)
        goto out;
    char buf[2048];
    char *snap = follow_lit(c, snapshot);
    snprintf(buf, sizeof(buf), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT %s", snap);
    PQfreemem(snap);
    if ((r = follow_exec(c, buf, PGRES_COMMAND_OK, err, errlen)) == NULL)
        goto out;
    PQclear(r);

    /* The columns pgoutput will send: not dropped, not generated (12+), in
     * the publication's column list (15+); and its row filter (15+). */
    int ver = PQserverVersion(c);
    char *nsp = follow_lit(c, f->schema), *rel = follow_lit(c, f->name), *pub = follow_lit(c, f->o.publication);
    char pubjoin[512] = "";
    if (ver >= 150000)
        snprintf(pubjoin, sizeof(pubjoin),
                 "JOIN pg_publication_tables p ON p.pubname = %s AND p.schemaname = n.nspname AND p.tablename = c.relname "
                 "AND a.attname = ANY (p.attnames)",
                 pub);
    snprintf(buf, sizeof(buf),
             "SELECT a.attname, a.atttypid, %s FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
             "JOIN pg_namespace n ON n.oid = c.relnamespace %s "
             "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped %s ORDER BY a.attnum",
             ver >= 150000 ? "p.rowfilter" : "NULL", pubjoin, nsp, rel, ver >= 120000 ? "AND a.attgenerated = ''" : "");
    PQfreemem(nsp);
    PQfreemem(rel);
    PQfreemem(pub);
    if ((r = follow_exec(c, buf, PGRES_TUPLES_OK, err, errlen)) == NULL)
        goto out;
    follow_rel_free(&f->rel);
    struct buf cols = {0};
    for (int i = 0; i < PQntuples(r); i++) {
        follow_rel_add(&f->rel, PQgetvalue(r, i, 0), (uint32_t)strtoul(PQgetvalue(r, i, 1), NULL, 10), f->o.id_column);
        char *q = follow_ident(c, PQgetvalue(r, i, 0));
        if (i > 0)
            buf_append(&cols, ", ", 2);
        buf_append(&cols, q, strlen(q));
        PQfreemem(q);
    }
    char *filter = PQntuples(r) > 0 && !PQgetisnull(r, 0, 2) ? xstrdup(PQgetvalue(r, 0, 2)) : NULL;
    PQclear(r);
    r = NULL;
    if (f->rel.id_col < 0) {
        buf_free(&cols);
        free(filter);
        end = follow_fatal(NULL, "publication %s does not carry column %s of %s", f->o.publication, f->o.id_column, f->display);
        goto out;
    }
    f->rel.relid = f->relid;
    char *nsp_id = follow_ident(c, f->schema), *rel_id = follow_ident(c, f->name), *idc = follow_ident(c, f->o.id_column);
    size_t need = cols.len + strlen(nsp_id) + strlen(rel_id) + strlen(idc) + (filter ? strlen(filter) : 0) + 128;
    sql = xmalloc(need);
    /* In key order, so the store appends instead of searching its tree. */
    snprintf(sql, need, "COPY (SELECT %.*s FROM %s.%s%s%s%s ORDER BY %s) TO STDOUT", (int)cols.len, cols.data, nsp_id, rel_id,
             filter ? " WHERE (" : "", filter ? filter : "", filter ? ")" : "", idc);
    PQfreemem(nsp_id);
    PQfreemem(rel_id);
    PQfreemem(idc);
    buf_free(&cols);
    free(filter);
    if ((r = follow_exec(c, sql, PGRES_COPY_OUT, err, errlen)) == NULL)
        goto out;
    PQclear(r);
    r = NULL;

    int rc = follow_group_begin(f);
    if (rc == 0)
        rc = mdb_drop(f->txn, f->st.users, 0); /* the store becomes exactly the table */
    if (rc == 0)
        store_changes_note_all(&f->changes);
    if (rc != 0) {
        end = follow_fatal(NULL, "cannot start the copy in %s: %s", f->o.db, mdb_strerror(rc));
        goto out;
    }
    log_info("follow_copy_started", "table=%s snapshot=%s", f->display, snapshot);
    uint64_t last_id = 0;
    char *line;
    int n;
    while ((n = PQgetCopyData(c, &line, 0)) > 0) {
        int nv = pgout_copy_row(line, (size_t)n, f->sc->new_vals, PGOUT_MAX_COLS);
        uint64_t id = 0;
        if (nv != (int)f->rel.ncols) {
            PQfreemem(line);
            snprintf(err, errlen, "COPY row with %d columns, expected %u", nv, f->rel.ncols);
            goto out;
        }
        rc = follow_put_row(f, consistent, f->sc->new_vals, f->rel.ncols, NULL, 0, true, &id);
        PQfreemem(line);
        if (rc != 0) {
            end = follow_fatal(NULL, "cannot store row %" PRIu64 " in %s: %s", id, f->o.db, mdb_strerror(rc));
            goto out;
        }
        if (id > last_id)
            last_id = id;
        rows++;
        if ((rows & 1023) == 0) {
            struct pollfd p = {.fd = f->sig_fd, .events = POLLIN};
            if (poll(&p, 1, 0) > 0) {
                f->stopping = true;
                follow_progress_clear(f);
                log_info("follow_stopped", "phase=copy rows=%" PRIu64 " committed=0", rows);
                end = FOLLOW_STOP;
                goto out;
            }
            uint64_t now = clock_now_ns();
            if (f->tty && now - f->last_progress_ns >= FOLLOW_PROGRESS_NS) {
                f->last_progress_ns = now;
                fprintf(stderr, "\rfollow: copying %s: %" PRIu64 " rows, %.0f rows/s\033[K", f->display, rows,
                        (double)rows / ((double)(now - start_ns) / 1e9));
            }
        }
    }
    follow_progress_clear(f);
    if (n == -2) {
        follow_pq_error(c, err, errlen);
        goto out;
    }
    r = PQgetResult(c); /* the COPY's own result, after its last row */
    if (r != NULL && PQresultStatus(r) != PGRES_COMMAND_OK) {
        store_cli_log_safe(PQresultErrorMessage(r), err, errlen);
        goto out;
    }
    PQclear(r);
    r = NULL;

    f->pending.present = true;
    f->pending.lsn = consistent;
    f->pending.commit_us = start_us; /* the snapshot is the table as of the copy's start */
    f->pending.rows = rows;
    f->pending.txns = 0;
    f->synced_us = start_us;
    f->group_rows = rows;
    rc = follow_group_commit(f, false);
    if (rc != 0) {
        end = follow_fatal(NULL, "cannot commit the copy in %s: %s", f->o.db, mdb_strerror(rc));
        goto out;
    }
    char l[32];
    follow_lsn_text(consistent, l, sizeof(l));
    log_info("follow_copy_done", "table=%s rows=%" PRIu64 " skipped=%" PRIu64 " seconds=%.3f lsn=%s", f->display, rows,
             f->feed.skipped - skipped_before, (double)(clock_now_ns() - start_ns) / 1e9, l);
    end = FOLLOW_STOP; /* "done": the caller streams */
out:
    if (end != FOLLOW_STOP || f->stopping)
        follow_group_abort(f);
    PQclear(r);
    free(sql);
    PQfinish(c);
    return end;
}

/* ---- streaming ---- */

static void follow_set_caught_up(struct follow *f, bool caught_up)
{
    if (caught_up == f->caught_up)
        return;
    uint64_t now = clock_now_ns();
    char l[32];
    follow_lsn_text(f->feed.lsn, l, sizeof(l));
    /* A state change is a log line; a blip under load (shorter than a second) is debug. */
    enum log_level lvl = now - f->state_since_ns >= 1000000000ull ? LOG_INFO : LOG_DEBUG;
    follow_progress_clear(f);
    log_write(lvl, caught_up ? "follow_caught_up" : "follow_behind", "table=%s lsn=%s", f->display, l);
    f->caught_up = caught_up;
    f->state_since_ns = now;
}

static int follow_send_status(struct follow *f, bool force)
{
    uint64_t now = clock_now_ns();
    if (!force && now - f->last_status_ns < FOLLOW_STATUS_NS)
        return 0;
    uint8_t msg[PGOUT_STATUS_LEN];
    uint64_t written = f->received > f->flushed ? f->received : f->flushed;
    /* flushed: in the store after a returned LMDB commit, or not ours. */
    pgout_standby_status(msg, written, f->flushed, f->flushed, (int64_t)store_feed_now_us() - PGOUT_EPOCH_UNIX_US, false);
    if (PQputCopyData(f->repl, (const char *)msg, sizeof(msg)) <= 0 || PQflush(f->repl) != 0)
        return -1;
    f->last_status_ns = now;
    return 0;
}

static void follow_progress(struct follow *f)
{
    uint64_t now = clock_now_ns();
    if (!f->tty || now - f->last_progress_ns < FOLLOW_PROGRESS_NS)
        return;
    double secs = (double)(now - f->rate_start_ns) / 1e9;
    char l[32];
    follow_lsn_text(f->feed.lsn, l, sizeof(l));
    struct store_feed_view v;
    store_feed_view_of(&f->feed, true, 0, &v);
    fprintf(stderr, "\rfollow: %s at %s: %" PRIu64 " changes applied, %.0f changes/s, lag %.0f ms\033[K", f->display, l,
            f->feed.rows, secs > 0 ? (double)f->rate_rows / secs : 0.0, store_feed_lag_seconds(&v, store_feed_now_us()) * 1e3);
    f->last_progress_ns = now;
    f->rate_start_ns = now;
    f->rate_rows = 0;
}

/* Takes a Relation message for the followed table as the new column mapping. */
static enum follow_end follow_on_relation(struct follow *f, const struct pgout_relation *r)
{
    bool changed = f->rel.relid != 0 && f->rel.ncols != r->ncols;
    for (unsigned i = 0; !changed && f->rel.relid != 0 && i < r->ncols; i++)
        changed = strcmp(f->rel.cols[i].name, r->cols[i].name) != 0 || f->rel.cols[i].typid != r->cols[i].typid;
    follow_rel_free(&f->rel);
    f->rel.relid = r->relid;
    for (unsigned i = 0; i < r->ncols; i++)
        follow_rel_add(&f->rel, r->cols[i].name, r->cols[i].typid, f->o.id_column);
    if (changed) {
        follow_progress_clear(f);
        log_info("follow_relation_changed", "table=%s columns=%u", f->display, f->rel.ncols);
    }
    if (f->rel.id_col < 0)
        return follow_fatal(NULL, "table %s no longer sends column %s (dropped, renamed or left out of publication %s)", f->display,
                            f->o.id_column, f->o.publication);
    return FOLLOW_STOP;
}

/* Applies one insert, update or delete of the followed table into the open group. */
static int follow_on_change(struct follow *f, uint64_t lsn, const struct pgout_msg *m, char *err, size_t errlen)
{
    const struct pgout_tuple *old = &m->change.old_tuple, *nw = &m->change.new_tuple;
    if (f->rel.relid != f->relid) {
        snprintf(err, errlen, "a change of %s before its Relation message", f->display);
        return -1;
    }
    if ((m->kind != 'D' && nw->ncols != f->rel.ncols) || (m->change.old_kind != 0 && old->ncols != f->rel.ncols)) {
        snprintf(err, errlen, "a change of %s with %u columns, its relation has %u", f->display,
                 m->kind == 'D' ? old->ncols : nw->ncols, f->rel.ncols);
        return -1;
    }
    int rc = follow_group_begin(f);
    if (rc != 0)
        return rc;
    unsigned idc = (unsigned)f->rel.id_col;
    uint64_t old_id = 0, new_id = 0, stored = 0;
    bool changed = false; /* a row skipped (bad id) is not a change applied */
    bool old_ok = m->change.old_kind != 0 && follow_parse_id(&old->vals[idc], &old_id);
    switch (m->kind) {
    case 'I':
        rc = follow_put_row(f, lsn, nw->vals, nw->ncols, NULL, 0, false, &stored);
        changed = stored != 0;
        break;
    case 'U':
        follow_parse_id(&nw->vals[idc], &new_id);
        /* Unchanged TOASTed values come from the row as stored before: under
         * the old id when the update changed the id. */
        rc = follow_put_row(f, lsn, nw->vals, nw->ncols, m->change.old_kind == 'O' ? old : NULL, old_ok ? old_id : new_id, false,
                            &stored);
        changed = stored != 0;
        if (rc == 0 && old_ok && old_id != stored) {
            rc = follow_del(f, old_id); /* the row moved to another id (or to none) */
            changed = true;
        }
        break;
    case 'D':
        if (!old_ok) {
            char what[80];
            const struct pgout_value *v = m->change.old_kind != 0 ? &old->vals[idc] : NULL;
            if (v != NULL && v->kind == 't')
                snprintf(what, sizeof(what), "id=\"%.*s\"", (int)(v->len > 40 ? 40 : v->len), v->data);
            else
                snprintf(what, sizeof(what), "id=null");
            char safe[80];
            follow_skip(f, lsn, store_cli_log_safe(what, safe, sizeof(safe)), "a delete whose id is not a positive integer");
            break;
        }
        rc = follow_del(f, old_id);
        changed = true;
        break;
    }
    if (rc == 0 && changed) {
        f->xact_rows++;
        f->group_rows++;
    }
    return rc;
}

/* One XLogData message. Returns FOLLOW_STOP to go on, else how the session ends. */
static enum follow_end follow_on_xlog(struct follow *f, const struct pgout_xlogdata *x, char *err, size_t errlen)
{
    struct pgout_msg m;
    char l[32];
    follow_lsn_text(x->start_lsn, l, sizeof(l));
    if (pgout_decode(x->data, x->len, f->sc, &m) != 0) {
        snprintf(err, errlen, "malformed pgoutput message at %s", l);
        return FOLLOW_RETRY;
    }
    int rc = 0;
    switch (m.kind) {
    case 'B':
        f->in_xact = true;
        f->idle_keepalive = false;
        f->xact_rows = 0;
        /* Its commit record lies below the stored end LSN: applied before. */
        f->skip_xact = f->pending.present && m.begin.final_lsn < f->pending.lsn;
        break;
    case 'C':
        if (!f->in_xact) {
            snprintf(err, errlen, "a commit without a begin at %s", l);
            return FOLLOW_RETRY;
        }
        f->in_xact = false;
        if (f->skip_xact || m.commit.end_lsn <= f->pending.lsn) {
            log_debug("follow_txn_skipped", "lsn=%s reason=applied_before", l);
            break;
        }
        if (f->xact_rows == 0 && f->txn == NULL) {
            /* Nothing of ours (another table of the publication): no write. */
            if (m.commit.end_lsn > f->flushed)
                f->flushed = m.commit.end_lsn;
            break;
        }
        f->pending.lsn = m.commit.end_lsn;
        if (f->xact_rows > 0) {
            f->pending.commit_us = follow_unix_us(m.commit.commit_time);
            f->pending.txns++;
            f->pending.rows += f->xact_rows;
        }
        if (f->stopping || f->group_rows >= FOLLOW_GROUP_ROWS || clock_now_ns() - f->group_start_ns >= FOLLOW_GROUP_NS) {
            rc = follow_group_commit(f, false);
            if (rc == 0)
                follow_set_caught_up(f, f->feed.caught_up);
        }
        break;
    case 'R':
        if (m.relation.relid == f->relid)
            return follow_on_relation(f, &m.relation);
        break;
    case 'I':
    case 'U':
    case 'D':
        if (f->skip_xact || m.change.relid != f->relid)
            break;
        rc = follow_on_change(f, x->start_lsn, &m, err, errlen);
        if (rc < 0)
            return FOLLOW_RETRY;
        break;
    case 'T':
        if (f->skip_xact)
            break;
        for (uint32_t i = 0; i < m.truncate.nrels && rc == 0; i++)
            if (pgout_truncate_relid(&m, i) == f->relid) {
                rc = follow_group_begin(f);
                if (rc == 0)
                    rc = mdb_drop(f->txn, f->st.users, 0);
                if (rc == 0) {
                    store_changes_note_all(&f->changes);
                    f->xact_rows++;
                    f->group_rows++;
                }
            }
        break;
    default:
        break; /* origin, type, logical decoding message */
    }
    if (rc != 0)
        return follow_fatal(NULL, "cannot apply the transaction at %s to %s: %s", l, f->o.db, mdb_strerror(rc));
    return FOLLOW_STOP;
}

/* Nothing more to read for now: commit the group (if between transactions),
 * or, idle, take everything received as flushed. */
static enum follow_end follow_on_drained(struct follow *f)
{
    if (f->in_xact)
        return FOLLOW_STOP; /* the rest of the transaction is on its way */
    if (f->txn != NULL) {
        int rc = follow_group_commit(f, true);
        if (rc != 0)
            return follow_fatal(NULL, "cannot commit to %s: %s", f->o.db, mdb_strerror(rc));
        follow_set_caught_up(f, f->feed.caught_up);
    } else if (f->received > f->flushed) {
        /* Between transactions, with nothing open: every change before what
         * the server last sent is applied or is not ours. */
        f->flushed = f->received;
    }
    if (f->caught_up && clock_now_ns() - f->last_heartbeat_ns >= FOLLOW_HEARTBEAT_NS) {
        store_feed_heartbeat(f->lock_fd);
        f->last_heartbeat_ns = clock_now_ns();
    }
    return FOLLOW_STOP;
}

/* A keepalive outside a transaction: the server waits for WAL, so everything
 * committed so far has been sent and, once applied, the store is current. */
static enum follow_end follow_on_keepalive(struct follow *f, const struct pgout_keepalive *k)
{
    if (k->wal_end > f->received)
        f->received = k->wal_end;
    if (k->reply_requested && follow_send_status(f, true) != 0)
        return FOLLOW_RETRY;
    if (f->in_xact)
        return FOLLOW_STOP;
    f->idle_keepalive = true;
    if (f->txn != NULL)
        return FOLLOW_STOP; /* the group commits at the drain, as caught up */
    f->synced_us = store_feed_now_us();
    if (!f->feed.caught_up) {
        int rc = follow_write_state(f, true, f->synced_us);
        if (rc != 0)
            return follow_fatal(NULL, "cannot write the feed state to %s: %s", f->o.db, mdb_strerror(rc));
    }
    follow_set_caught_up(f, true);
    return FOLLOW_STOP;
}

static void follow_read_signal(struct follow *f)
{
    struct signalfd_siginfo si;
    while (read(f->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            if (!f->stopping) {
                follow_progress_clear(f);
                log_info("follow_stopping", "signal=%s in_transaction=%s", si.ssi_signo == SIGTERM ? "TERM" : "INT",
                         f->in_xact ? "yes" : "no");
            }
            f->stopping = true;
        }
}

static enum follow_end follow_stream(struct follow *f, bool *streamed, char *err, size_t errlen)
{
    char sql[512], l[32];
    follow_lsn_text(f->feed.lsn, l, sizeof(l));
    snprintf(sql, sizeof(sql), "START_REPLICATION SLOT \"%s\" LOGICAL %s (proto_version '1', publication_names '\"%s\"')",
             f->o.slot, l, f->o.publication);
    PGresult *r = PQexec(f->repl, sql);
    if (PQresultStatus(r) != PGRES_COPY_BOTH) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        store_cli_log_safe(r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(f->repl), err, errlen);
        bool missing = state != NULL && strcmp(state, "42704") == 0; /* undefined_object: the slot is gone */
        PQclear(r);
        if (missing) {
            char fix[256];
            snprintf(fix, sizeof(fix),
                     "recreate the slot and copy again: a new --db (or SELECT pg_create_logical_replication_slot("
                     "'%s', 'pgoutput'); and accept the gap)",
                     f->o.slot);
            return follow_fatal(fix, "replication slot %s does not exist: the changes after LSN %s are gone", f->o.slot, l);
        }
        return FOLLOW_RETRY;
    }
    PQclear(r);
    *streamed = true;
    f->received = f->flushed = f->feed.lsn;
    f->pending = f->feed;
    f->in_xact = false;
    f->idle_keepalive = false;
    f->last_status_ns = 0;
    f->rate_start_ns = clock_now_ns();
    f->rate_rows = 0;
    follow_progress_clear(f);
    log_info("follow_streaming", "table=%s slot=%s from_lsn=%s", f->display, f->o.slot, l);

    for (;;) {
        if (f->stopping && !f->in_xact) {
            if (f->txn != NULL) {
                int rc = follow_group_commit(f, false);
                if (rc != 0)
                    return follow_fatal(NULL, "cannot commit to %s: %s", f->o.db, mdb_strerror(rc));
            }
            if (follow_send_status(f, true) != 0)
                log_warn("follow_status_failed", "err=\"%s\"", follow_pq_error(f->repl, err, errlen));
            return FOLLOW_STOP;
        }
        char *buf;
        int n = PQgetCopyData(f->repl, &buf, 1);
        if (n == 0) {
            /* libpq's buffer is empty: take what the socket holds, then look again. */
            if (!PQconsumeInput(f->repl)) {
                follow_pq_error(f->repl, err, errlen);
                return FOLLOW_RETRY;
            }
            n = PQgetCopyData(f->repl, &buf, 1);
        }
        if (n == 0) {
            enum follow_end end = follow_on_drained(f);
            if (end != FOLLOW_STOP)
                return end;
            if (follow_send_status(f, false) != 0) {
                follow_pq_error(f->repl, err, errlen);
                return FOLLOW_RETRY;
            }
            follow_progress(f);
            uint64_t since = clock_now_ns() - f->last_status_ns;
            int wait_ms = since >= FOLLOW_STATUS_NS ? 0 : (int)((FOLLOW_STATUS_NS - since) / 1000000u) + 1;
            struct pollfd p[2] = {{.fd = PQsocket(f->repl), .events = POLLIN}, {.fd = f->sig_fd, .events = POLLIN}};
            if (poll(p, 2, wait_ms) < 0 && errno != EINTR) {
                snprintf(err, errlen, "poll: %s", strerror(errno));
                return FOLLOW_RETRY;
            }
            if (p[1].revents & POLLIN)
                follow_read_signal(f);
            continue;
        }
        if (n == -1) {
            r = PQgetResult(f->repl);
            store_cli_log_safe(r != NULL && PQresultErrorMessage(r)[0] != '\0' ? PQresultErrorMessage(r)
                                                                               : "the server ended the stream",
                               err, errlen);
            PQclear(r);
            return FOLLOW_RETRY;
        }
        if (n < 0) {
            follow_pq_error(f->repl, err, errlen);
            return FOLLOW_RETRY;
        }
        char kind;
        struct pgout_xlogdata x;
        struct pgout_keepalive k;
        enum follow_end end = FOLLOW_STOP;
        if (pgout_parse_copydata((const uint8_t *)buf, (size_t)n, &kind, &x, &k) != 0) {
            snprintf(err, errlen, "malformed replication message (%d bytes, kind 0x%02x)", n, (unsigned char)buf[0]);
            end = FOLLOW_RETRY;
        } else if (kind == 'k') {
            end = follow_on_keepalive(f, &k);
        } else {
            if (x.start_lsn > f->received)
                f->received = x.start_lsn;
            end = follow_on_xlog(f, &x, err, errlen);
        }
        PQfreemem(buf);
        if (end != FOLLOW_STOP)
            return end;
        /* A long stream of data never drains: keep the server informed anyway. */
        if (follow_send_status(f, false) != 0) {
            follow_pq_error(f->repl, err, errlen);
            return FOLLOW_RETRY;
        }
    }
}

/* ---- sessions ---- */

static enum follow_end follow_first_run(struct follow *f, int slot_exists, char *err, size_t errlen)
{
    char sql[256], fix[256];
    if (slot_exists) {
        if (strcmp(f->feed.slot, f->o.slot) != 0) {
            snprintf(fix, sizeof(fix),
                     "SELECT pg_drop_replication_slot('%s'); (if no other follower uses it) or choose another --slot", f->o.slot);
            return follow_fatal(fix, "replication slot %s already exists and the store at %s was never fed from it", f->o.slot,
                                f->o.db);
        }
        /* Ours, from a copy that never committed: its snapshot is gone, start over. */
        snprintf(sql, sizeof(sql), "DROP_REPLICATION_SLOT \"%s\"", f->o.slot);
        PGresult *r = follow_exec(f->repl, sql, PGRES_COMMAND_OK, err, errlen);
        if (r == NULL)
            return FOLLOW_RETRY; /* e.g. still active for a walsender that has not noticed a kill */
        PQclear(r);
        log_info("follow_slot_dropped", "slot=%s reason=copy_never_committed", f->o.slot);
    }
    /* "Copy pending" first: a crash from here on is recognised as ours. */
    struct store_feed mark = {0};
    snprintf(mark.slot, sizeof(mark.slot), "%s", f->o.slot);
    snprintf(mark.table, sizeof(mark.table), "%s", f->display);
    MDB_txn *txn;
    int rc = mdb_txn_begin(f->st.env, NULL, 0, &txn);
    if (rc == 0) {
        rc = store_feed_write(txn, &f->st, &mark);
        rc = rc == 0 ? store_commit(txn, &f->st, NULL) : (mdb_txn_abort(txn), rc);
    }
    if (rc != 0)
        return follow_fatal(NULL, "cannot write to %s: %s", f->o.db, mdb_strerror(rc));
    f->feed = mark;
    f->pending = mark;

    snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput EXPORT_SNAPSHOT", f->o.slot);
    PGresult *r = PQexec(f->repl, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) < 3) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        store_cli_log_safe(r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(f->repl), err, errlen);
        bool full = state != NULL && strcmp(state, "53400") == 0; /* configuration_limit_exceeded */
        PQclear(r);
        if (full)
            return follow_fatal("ALTER SYSTEM SET max_replication_slots = <more>; then restart PostgreSQL",
                                "cannot create replication slot %s: %s", f->o.slot, err);
        return FOLLOW_RETRY;
    }
    uint64_t consistent;
    if (follow_parse_lsn(PQgetvalue(r, 0, 1), &consistent) != 0) {
        snprintf(err, errlen, "CREATE_REPLICATION_SLOT returned consistent point '%s'", PQgetvalue(r, 0, 1));
        PQclear(r);
        return FOLLOW_RETRY;
    }
    char snapshot[128], l[32];
    snprintf(snapshot, sizeof(snapshot), "%s", PQgetvalue(r, 0, 2));
    PQclear(r);
    follow_lsn_text(consistent, l, sizeof(l));
    log_info("follow_slot_created", "slot=%s consistent_point=%s snapshot=%s", f->o.slot, l, snapshot);
    /* The replication connection stays idle until the copy is done: its next
     * command would end the exported snapshot. */
    return follow_copy(f, snapshot, consistent, err, errlen);
}

static enum follow_end follow_session(struct follow *f, bool *streamed)
{
    char err[512] = "", fix[256];
    enum follow_end end = FOLLOW_RETRY;
    f->repl = follow_connect(f, true);
    if (f->repl == NULL || PQstatus(f->repl) != CONNECTION_OK) {
        follow_pq_error(f->repl, err, sizeof(err));
        goto out;
    }
    if (follow_session_setup(f->repl, err, sizeof(err)) != 0)
        goto out;
    if (PQserverVersion(f->repl) < 100000) {
        end = follow_fatal(NULL, "PostgreSQL %d is too old: logical replication with pgoutput needs 10 or later",
                           PQserverVersion(f->repl));
        goto out;
    }
    PGresult *r = follow_exec(f->repl, "SHOW wal_level", PGRES_TUPLES_OK, err, sizeof(err));
    if (r == NULL)
        goto out;
    bool logical = strcmp(PQgetvalue(r, 0, 0), "logical") == 0;
    snprintf(fix, sizeof(fix), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!logical) {
        end = follow_fatal("ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL",
                           "wal_level is %s: logical replication needs logical", fix);
        goto out;
    }
    if ((end = follow_check_table(f, err, sizeof(err))) != FOLLOW_STOP)
        goto out;
    if ((end = follow_check_publication(f, err, sizeof(err))) != FOLLOW_STOP)
        goto out;
    end = FOLLOW_RETRY;
    int slot = follow_slot_exists(f, err, sizeof(err));
    if (slot < 0) {
        end = slot == -2 ? FOLLOW_FATAL : FOLLOW_RETRY;
        goto out;
    }
    if (!f->feed.present) {
        end = follow_first_run(f, slot, err, sizeof(err));
        if (end != FOLLOW_STOP || f->stopping)
            goto out;
    } else if (!slot) {
        char l[32];
        follow_lsn_text(f->feed.lsn, l, sizeof(l));
        snprintf(fix, sizeof(fix),
                 "recreate the slot and copy again: a new --db (or SELECT pg_create_logical_replication_slot('%s', 'pgoutput'); "
                 "and accept the gap)",
                 f->o.slot);
        end = follow_fatal(fix, "replication slot %s does not exist: the changes after LSN %s are gone", f->o.slot, l);
        goto out;
    }
    end = follow_stream(f, streamed, err, sizeof(err));

out:
    if (end == FOLLOW_RETRY && !f->stopping) {
        char l[32];
        follow_lsn_text(f->feed.lsn, l, sizeof(l));
        follow_progress_clear(f);
        /* One line per state change: the same error again goes to debug. */
        enum log_level lvl = strcmp(err, f->last_err) != 0 || *streamed ? LOG_WARN : LOG_DEBUG;
        log_write(lvl, *streamed ? "follow_disconnected" : "follow_connect_failed", "lsn=%s err=\"%s\"", l, err);
        snprintf(f->last_err, sizeof(f->last_err), "%s", err);
    }
    follow_group_abort(f);
    f->in_xact = false;
    if (end == FOLLOW_RETRY && f->feed.present && f->feed.caught_up) {
        /* Disconnected: the store was complete until the last moment we knew. */
        int rc = follow_write_state(f, false, f->synced_us);
        if (rc != 0)
            log_warn("follow_state_write_failed", "err=\"%s\"", mdb_strerror(rc));
    }
    if (end == FOLLOW_RETRY)
        follow_set_caught_up(f, false);
    PQfinish(f->repl);
    f->repl = NULL;
    return end;
}

static int follow_run(struct follow *f)
{
    char err[512], safe[512];
    int code = 1;
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    f->sig_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    f->lock_fd = -1;
    if (f->sig_fd < 0) {
        follow_fatal(NULL, "signalfd: %s", strerror(errno));
        goto out;
    }
    if (store_open(&f->st, f->o.db, false, true, err, sizeof(err)) != 0) {
        follow_fatal(NULL, "%s", err);
        goto out;
    }
    f->lock_fd = store_feed_lock(f->o.db);
    if (f->lock_fd < 0) {
        if (f->lock_fd == -EBUSY)
            follow_fatal(NULL, "another ringd follow is running on %s (it holds %s/%s)", f->o.db, f->o.db, STORE_FEED_LOCK_FILE);
        else
            follow_fatal(NULL, "%s/%s: %s", f->o.db, STORE_FEED_LOCK_FILE, strerror(-f->lock_fd));
        goto out;
    }
    MDB_txn *txn;
    int rc = mdb_txn_begin(f->st.env, NULL, MDB_RDONLY, &txn);
    if (rc == 0) {
        rc = store_feed_read(txn, &f->st, &f->feed);
        mdb_txn_abort(txn);
    }
    if (rc != 0) {
        follow_fatal(NULL, "cannot read the feed state of %s: %s", f->o.db, mdb_strerror(rc));
        goto out;
    }
    if (f->feed.slot[0] != '\0' && (strcmp(f->feed.slot, f->o.slot) != 0 || strcmp(f->feed.table, f->display) != 0)) {
        char fix[512];
        snprintf(fix, sizeof(fix), "run with --slot %s --table %s, or give this feed a new --db", f->feed.slot, f->feed.table);
        follow_fatal(fix, "the store at %s follows table %s through slot %s, not %s through %s", f->o.db, f->feed.table,
                     f->feed.slot, f->display, f->o.slot);
        goto out;
    }
    f->pending = f->feed;
    f->synced_us = f->feed.synced_us;
    f->state_since_ns = clock_now_ns();
    if (f->feed.present && f->feed.caught_up) {
        /* Until this run has seen the stream, the store is current only as of
         * the previous follower's last heartbeat: say so, or serve would read
         * "caught up" from the stored flag and this process's lock. */
        struct stat lst;
        if (fstat(f->lock_fd, &lst) == 0) {
            uint64_t hb = (uint64_t)lst.st_mtim.tv_sec * 1000000u + (uint64_t)lst.st_mtim.tv_nsec / 1000u;
            if (hb > f->synced_us)
                f->synced_us = hb;
        }
        rc = follow_write_state(f, false, f->synced_us);
        if (rc != 0) {
            follow_fatal(NULL, "cannot write the feed state of %s: %s", f->o.db, mdb_strerror(rc));
            goto out;
        }
    }
    unsigned backoff = FOLLOW_BACKOFF_MIN_MS;
    char l[32];
    follow_lsn_text(f->feed.lsn, l, sizeof(l));
    log_info("follow_starting", "db=\"%s\" table=%s slot=%s publication=%s lsn=%s", store_cli_log_safe(f->o.db, safe, sizeof(safe)),
             f->display, f->o.slot, f->o.publication, f->feed.present ? l : "none");
    for (;;) {
        bool streamed = false;
        enum follow_end end = follow_session(f, &streamed);
        if (end == FOLLOW_FATAL)
            goto out;
        if (end == FOLLOW_STOP || f->stopping)
            break;
        if (streamed)
            backoff = FOLLOW_BACKOFF_MIN_MS;
        struct pollfd p = {.fd = f->sig_fd, .events = POLLIN};
        if (poll(&p, 1, (int)backoff) > 0)
            follow_read_signal(f);
        if (f->stopping)
            break;
        backoff = backoff * 2 > FOLLOW_BACKOFF_MAX_MS ? FOLLOW_BACKOFF_MAX_MS : backoff * 2;
    }
    follow_progress_clear(f);
    follow_lsn_text(f->feed.lsn, l, sizeof(l));
    log_info("follow_stopped", "table=%s lsn=%s txns=%" PRIu64 " rows=%" PRIu64 " skipped=%" PRIu64, f->display,
             f->feed.present ? l : "none", f->feed.txns, f->feed.rows, f->feed.skipped);
    code = 0;
out:
    follow_group_abort(f);
    if (f->repl != NULL)
        PQfinish(f->repl);
    if (f->lock_fd >= 0)
        close(f->lock_fd);
    if (f->sig_fd >= 0)
        close(f->sig_fd);
    store_close(&f->st);
    return code;
}

int follow_main(int argc, char **argv)
{
    struct follow *f = xcalloc(1, sizeof(*f));
    f->rel.id_col = -1;
    f->sig_fd = -1;
    f->lock_fd = -1;
    int rc = follow_parse(argc, argv, f);
    if (rc == 0) {
        f->tty = isatty(STDERR_FILENO);
        f->sc = xmalloc(sizeof(*f->sc));
        rc = follow_run(f);
    } else if (rc == 1) {
        rc = 0;
    }
    follow_rel_free(&f->rel);
    buf_free(&f->json);
    buf_free(&f->value);
    store_changes_free(&f->changes);
    free(f->sc);
    free(f);
    return rc;
}
