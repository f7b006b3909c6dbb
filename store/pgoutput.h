/* pgoutput.h - PostgreSQL's wire formats that `ringd follow` reads: the streaming replication framing (XLogData,
 * keepalive, standby status update), pgoutput protocol 1 messages, COPY text rows, and column text rendered as JSON.
 *
 * Decoders never copy: every name and value points into the message given,
 * and lives as long as it does. Arrays (columns, values) are the caller's,
 * PGOUT_MAX_COLS entries each, so a decode allocates nothing. They return 0,
 * or -1 for a malformed or truncated message (nothing is read past len).
 * Integers on the wire are big-endian; LSNs are uint64; times are µs since
 * 2000-01-01 (PostgreSQL's epoch).
 */
#ifndef RINGD_STORE_PGOUTPUT_H
#define RINGD_STORE_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define PGOUT_MAX_COLS 1664                          /* MaxTupleAttributeNumber */
#define PGOUT_EPOCH_UNIX_US INT64_C(946684800000000) /* 2000-01-01T00:00:00Z in Unix µs */
#define PGOUT_STATUS_LEN 34                          /* a standby status update */

/* Type OIDs the JSON rendering knows (pg_type.dat; fixed since forever). */
enum {
    PGOUT_BOOLOID = 16,
    PGOUT_INT8OID = 20,
    PGOUT_INT2OID = 21,
    PGOUT_INT4OID = 23,
    PGOUT_OIDOID = 26,
    PGOUT_JSONOID = 114,
    PGOUT_FLOAT4OID = 700,
    PGOUT_FLOAT8OID = 701,
    PGOUT_TIMESTAMPOID = 1114,
    PGOUT_TIMESTAMPTZOID = 1184,
    PGOUT_NUMERICOID = 1700,
    PGOUT_JSONBOID = 3802,
};

/* ---- streaming replication framing (the CopyData payloads of START_REPLICATION) ---- */

struct pgout_xlogdata {
    uint64_t start_lsn; /* WAL position of the message */
    uint64_t wal_end;   /* the server's WAL end when it sent it */
    int64_t send_time;
    const uint8_t *data; /* the pgoutput message */
    size_t len;
};

struct pgout_keepalive {
    uint64_t wal_end;
    int64_t send_time;
    bool reply_requested; /* answer now or be timed out */
};

/* Parses one CopyData payload from the walsender: 'w' (XLogData, fills *x) or
 * 'k' (keepalive, fills *k); sets *kind. Returns 0, or -1 (malformed, unknown kind). */
int pgout_parse_copydata(const uint8_t *buf, size_t len, char *kind, struct pgout_xlogdata *x, struct pgout_keepalive *k);

/* Writes a standby status update ('r') into out: written, flushed and
 * applied positions, the client's clock (PostgreSQL epoch µs), and whether the
 * server should answer at once with a keepalive. Returns PGOUT_STATUS_LEN. */
size_t pgout_standby_status(uint8_t out[PGOUT_STATUS_LEN], uint64_t written, uint64_t flushed, uint64_t applied, int64_t now,
                            bool reply);

/* ---- pgoutput protocol 1 ---- */

struct pgout_value {
    char kind; /* 'n' NULL, 'u' unchanged TOASTed value (no data), 't' text */
    const char *data;
    uint32_t len;
};

struct pgout_tuple {
    uint16_t ncols;
    struct pgout_value *vals;
};

struct pgout_column {
    uint8_t flags;    /* 1: part of the replica identity key */
    const char *name; /* NUL-terminated, inside the message */
    uint32_t typid;
    int32_t typmod;
};

struct pgout_relation {
    uint32_t relid;
    const char *nspname; /* "" for pg_catalog */
    const char *relname;
    char replident; /* 'd' default (primary key), 'n' nothing, 'f' full, 'i' index */
    uint16_t ncols;
    struct pgout_column *cols;
};

struct pgout_msg {
    char kind; /* 'B' begin, 'C' commit, 'R' relation, 'I' 'U' 'D' changes, 'T' truncate; anything else: skip */
    union {
        struct {
            uint64_t final_lsn; /* the commit record's LSN */
            int64_t commit_time;
            uint32_t xid;
        } begin;
        struct {
            uint8_t flags;
            uint64_t commit_lsn;
            uint64_t end_lsn; /* where the transaction ends: what a client confirms */
            int64_t commit_time;
        } commit;
        struct pgout_relation relation;
        struct {
            uint32_t relid;
            char old_kind; /* 0 none, 'K' key columns, 'O' the whole old row (REPLICA IDENTITY FULL) */
            struct pgout_tuple old_tuple;
            struct pgout_tuple new_tuple; /* ncols 0 for a delete */
        } change;
        struct {
            uint32_t nrels;
            uint8_t options;       /* 1 CASCADE, 2 RESTART IDENTITY */
            const uint8_t *relids; /* nrels big-endian uint32: pgout_truncate_relid */
        } truncate;
    };
};

/* Caller storage for one decode. */
struct pgout_scratch {
    struct pgout_column cols[PGOUT_MAX_COLS];
    struct pgout_value old_vals[PGOUT_MAX_COLS];
    struct pgout_value new_vals[PGOUT_MAX_COLS];
};

/* Decodes one pgoutput message into *m (pointers into msg and sc). Kinds
 * other than those above decode as themselves with nothing filled (origin,
 * type, logical message: a follower skips them). Returns 0 or -1. */
int pgout_decode(const uint8_t *msg, size_t len, struct pgout_scratch *sc, struct pgout_msg *m);

/* The i-th relation of a truncate message (i < nrels). */
uint32_t pgout_truncate_relid(const struct pgout_msg *m, uint32_t i);

/* ---- COPY ... TO STDOUT, text format ---- */

/* Splits one row (without or with its trailing newline) into at most cap
 * values, unescaping in place (\N is NULL; \b \f \n \r \t \v \\, octal and \x
 * escapes). Returns the column count, or -1 when there are more than cap. */
int pgout_copy_row(char *line, size_t len, struct pgout_value *vals, size_t cap);

/* ---- JSON ---- */

/* Appends the JSON of one column's text form the way row_to_json renders its
 * type: integers, numeric and floats as numbers (NaN and infinities as
 * strings), bool as true/false, json/jsonb embedded as they are, timestamp
 * and timestamptz in ISO 8601 with a 'T' and a "+HH:MM" offset, arrays of
 * the types pgout_array_elem knows as JSON arrays (nested for more
 * dimensions, NULL elements as null, each element as its type says),
 * everything else as a JSON string of its text. Valid UTF-8 in, valid JSON out. */
void pgout_json_value(struct buf *out, uint32_t typid, const char *text, size_t len);

/* The element type of array type typid, for the arrays rendered as JSON
 * arrays (25, text, for those whose elements are strings); 0 for any other type. */
uint32_t pgout_array_elem(uint32_t typid);

/* Appends array_out's text form of an array (`{1,NULL,"a b"}`, nested
 * braces for more dimensions, an optional `[lb:ub]=` prefix) as a JSON
 * array whose elements are rendered as pgout_json_value renders type elem.
 * Returns false, out unchanged, when text is not such a form. */
bool pgout_json_array(struct buf *out, uint32_t elem, const char *text, size_t len);

/* Appends s as a JSON string literal (quotes included). */
void pgout_json_string(struct buf *out, const char *s, size_t len);

#endif
