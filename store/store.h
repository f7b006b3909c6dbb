/* store.h - the user store: one LMDB environment, per-shard read transactions, lookups.
 *
 * Error convention of this layer: functions return 0 on success or an error
 * code as LMDB returns them (an errno value > 0, or an MDB_* code < 0; both
 * print with mdb_strerror); start-up functions also fill the
 * caller's err buffer with one human sentence. Allocation failure aborts.
 */
#ifndef RINGD_STORE_H
#define RINGD_STORE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "store/changes.h"

/* The one place that sizes every environment. The first process to open an
 * environment fixes the reader table for everyone, so server, import, demo and
 * tests all open through store_open() with these values.
 * The map is sparse: 32 GiB of address space reserves no disk or memory, and a
 * running server never sees MDB_MAP_RESIZED while the database grows up to it
 * (about 250 million users of ~120 bytes: 1,000,000 take 131 MiB). It is not
 * larger because valgrind, the only instruction counter on our VMs, cannot map
 * 64 GiB: profiling the real server matters more than headroom nobody uses. */
#define STORE_MAP_SIZE (1ULL << 35)
#define STORE_MAX_READERS 512
/* Name of the named database holding users, and of the one holding the format marker. */
#define STORE_DB_USERS "users"
#define STORE_DB_META "meta"
#define STORE_FORMAT_KEY "format"
/* v2: a value holds the JSON record and its gRPC form (see "The stored value" below).
 * v1 (JSON only) is refused with the command that upgrades it (store_upgrade_main). */
#define STORE_FORMAT_VALUE "ringd-users-v2"
#define STORE_FORMAT_V1 "ringd-users-v1"

/* The stored value of a user (format v2):
 *
 *   +----------------------+----------------------+-------------------------------+
 *   | json_len (u32, LE)   | JSON record          | ringd.v1.User, protobuf       |
 *   | 4 octets             | json_len octets      | the rest of the value         |
 *   +----------------------+----------------------+-------------------------------+
 *
 * Both forms are made once, when a record is written (store_value_build), so
 * either protocol's lookup is a pointer into the map and a copy: HTTP sends
 * the JSON, gRPC the User message (store/pb.h). */
#define STORE_VALUE_HEADER 4

struct store {
    MDB_env *env;
    bool old_format; /* opened by store_open_upgrade on a v1 store: values are bare JSON */
    MDB_dbi users; /* MDB_INTEGERKEY: key is a native-endian uint64_t (size_t on LP64) */
    MDB_dbi meta;  /* the format marker and writers' state (store/feed.h) */
    MDB_dbi changes; /* the change log (store/changes.h), when has_changes */
    bool has_changes; /* false: a store last written by a ringd without the log, opened read-only */
    bool readonly;
};

/* Opens the environment in dir. readonly: MDB_RDONLY|MDB_NOTLS|MDB_NORDAHEAD
 * (the server); otherwise read-write (import, demo), creating the directory,
 * the named databases and the format marker when create is true.
 * Checks the format marker: a directory that is not a ringd database, is
 * corrupt, or holds another format version fails with a clear message in err.
 * A read-write opener creates the change log (store/changes.h) when missing;
 * a read-only one uses it when present (has_changes).
 * Runs mdb_reader_check once. Returns 0 or an error code; on error nothing
 * stays open. The store must be closed with store_close(). */
int store_open(struct store *s, const char *dir, bool readonly, bool create, char *err, size_t errlen);

/* store_open for `ringd upgrade`: read-write, accepts a v1 store too
 * (s->old_format is then set; the caller rewrites every value and the marker
 * with store_upgrade_txn). Returns 0 or an error code with err filled. */
int store_open_upgrade(struct store *s, const char *dir, char *err, size_t errlen);

/* Closes the environment. Every reader must have been released first. */
void store_close(struct store *s);

/* Removes stale reader slots left by killed processes; returns how many were cleared. */
int store_reader_check(struct store *s);

/* Whether dir holds an LMDB data file (used by `serve` to decide to create the demo db). */
bool store_exists(const char *dir);

struct store_index; /* store/index.h */

/* How the last store_get was answered. */
enum store_via {
    STORE_VIA_LMDB,     /* no index: the B-tree */
    STORE_VIA_INDEX,    /* the index of the reader's own snapshot */
    STORE_VIA_OVERLAY,  /* the index of an older, pinned snapshot, for an id the change log says is unchanged since */
    STORE_VIA_FALLBACK, /* an index was held but could not answer (id changed since, no usable change log, a record too large): the B-tree */
    STORE_VIA_CHANGED,  /* an id changed since the index's snapshot, looked up before since its last change: the overlay's copy of that answer */
};

/* A long-lived read transaction owned by one shard (MDB_NOTLS lets it live on
 * any thread, but only one thread uses a reader at a time). */
struct store_reader {
    struct store *store;
    MDB_txn *txn;
    bool active;     /* false between mdb_txn_reset and mdb_txn_renew */
    bool indexed;    /* the last store_get was answered (found or not) by the index (via INDEX or OVERLAY) */
    enum store_via via; /* how the last store_get was answered */
    uint64_t txn_id; /* snapshot of txn while active, 0 when parked */
    const struct store_index *index; /* set by the shard (store_indexer_acquire); NULL: LMDB only */
    struct store_overlay overlay;    /* ids changed since index's snapshot, synced at each renew */
};

/* Begins the reader's read transaction. Returns 0 or an LMDB error. */
int store_reader_open(struct store_reader *r, struct store *s);

/* mdb_txn_reset + mdb_txn_renew: afterwards the reader sees the newest commit,
 * and its overlay is synced from the change log for r->index (set it first).
 * Invalidates every pointer store_get() returned before. Returns 0 or an LMDB error. */
int store_reader_refresh(struct store_reader *r);

/* Resets the transaction without renewing (an idle shard stops pinning pages);
 * the next store_get() renews it. */
void store_reader_park(struct store_reader *r);

/* The id of the snapshot the reader sees (mdb_txn_id), 0 when parked. */
uint64_t store_reader_txn_id(const struct store_reader *r);

/* Ends the transaction. */
void store_reader_close(struct store_reader *r);

/* A stored value split into its two forms; both point into the value. */
struct store_user {
    const char *json;
    size_t json_len;
    const uint8_t *pb; /* the encoded ringd.v1.User */
    size_t pb_len;
};

/* Splits a stored value (the layout above). Returns 0, or MDB_CORRUPTED when
 * val[0..len) cannot be one. Constant time: one load of the header. */
static inline int store_value_split(const void *val, size_t len, struct store_user *u)
{
    const unsigned char *p = val;
    if (len < STORE_VALUE_HEADER)
        return MDB_CORRUPTED;
    size_t jl = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
    if (jl > len - STORE_VALUE_HEADER)
        return MDB_CORRUPTED;
    u->json = (const char *)p + STORE_VALUE_HEADER;
    u->json_len = jl;
    u->pb = p + STORE_VALUE_HEADER + jl;
    u->pb_len = len - STORE_VALUE_HEADER - jl;
    return 0;
}

/* Appends the stored value of user id whose normalized JSON is json[0..len)
 * (what store_record_normalize returned) to out: header, JSON, User message.
 * Returns 0, or -1 with err filled (JSON the encoder cannot read, or a record over 4 GiB). */
int store_value_build(uint64_t id, const char *json, size_t len, struct buf *out, char *err, size_t errlen);

/* Looks up user id like store_get, with both forms of the record in *u
 * (pointers into the map, valid as store_get's). Returns 0, MDB_NOTFOUND,
 * MDB_CORRUPTED (a value that is no v2 value), or another LMDB code. */
int store_get_user(struct store_reader *r, uint64_t id, struct store_user *u);

/* Looks up user id: through r->index when it describes the reader's snapshot,
 * or an older one and the overlay says id has not changed since; else with
 * mdb_get. On success returns 0 and points *val and *len at the record's
 * compact JSON inside the map: valid only until the next store_reader_refresh,
 * store_reader_park or store_reader_close on this reader, and until r->index
 * is replaced (an index pins its snapshot only until the shard's next
 * store_indexer_acquire). Copy it before then. Sets r->via and r->indexed.
 * Returns MDB_NOTFOUND when absent, another LMDB code on error. */
int store_get(struct store_reader *r, uint64_t id, const char **val, size_t *len);

/* Hints that user id will be looked up soon (store_index_prefetch and
 * store_index_prefetch_record through the reader's index, for its snapshot). */
void store_prefetch(const struct store_reader *r, uint64_t id);
void store_prefetch_record(const struct store_reader *r, uint64_t id);

/* Bytes of the map in use (last page number * page size), for /metrics. */
uint64_t store_used_bytes(struct store *s);

/* Validates one JSON object and re-serialises it compactly (jansson).
 * On success returns 0, sets *id and *out (malloc'd, NUL-terminated, caller
 * frees) and *out_len. On failure returns -1 and writes the reason to err. */
int store_record_normalize(const char *json, size_t len, uint64_t *id, char **out, size_t *out_len, char *err, size_t errlen);

/* The same record path with the key taken from the member id_field instead of
 * "id" (`ringd follow --id-column`): the record must hold id_field as an
 * integer > 0, which becomes *id. store_record_normalize is this with "id". */
int store_record_normalize_keyed(const char *json, size_t len, const char *id_field, uint64_t *id, char **out, size_t *out_len,
                                 char *err, size_t errlen);

/* `ringd import --db DIR [--replace] FILE|-` and `ringd demo --db DIR [--users N]`:
 * the subcommands' whole CLI (argv[0] is the subcommand name). Return the process exit code. */
int store_import_main(int argc, char **argv);
int store_demo_main(int argc, char **argv);

/* `ringd upgrade --db DIR`: rewrites a v1 store (JSON values) as v2 (JSON
 * and gRPC form) in one write transaction, marker included; a v2 store is
 * left alone. Return the process exit code. */
int store_upgrade_main(int argc, char **argv);

/* Creates (or extends) dir with n generated users in one transaction. Returns 0
 * or an error code with err filled. Used by `demo` and by `serve` on first run. */
int store_demo_create(const char *dir, uint64_t n, char *err, size_t errlen);

#endif
