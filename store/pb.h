/* pb.h - the protobuf wire format ringd needs: varints, the stored ringd.v1.User form of a record, request parsing.
 *
 * No protobuf library: the few shapes ringd reads and writes are spelled out
 * here (proto/ringd/v1/users.proto, google/protobuf/struct.proto).
 *
 * A record's gRPC form is the whole encoded `User { uint64 id = 1;
 * google.protobuf.Struct record = 2; }` message, built from its compact JSON
 * when the record is written (store_pb_user), so GetUser's answer is a copy
 * of stored bytes and BatchGetUsers' one is those bytes behind a tag and a length.
 */
#ifndef RINGD_STORE_PB_H
#define RINGD_STORE_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Wire types (protobuf encoding). */
#define PB_VARINT 0
#define PB_I64 1
#define PB_LEN 2
#define PB_I32 5

#define PB_VARINT_MAX 10 /* octets of the longest varint */

/* Writes v as a varint at p (room for PB_VARINT_MAX); returns the octets written. */
static inline size_t pb_put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Octets pb_put_varint writes for v. */
static inline size_t pb_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Reads a varint from p[0..end); returns the octets read, or 0 when it is
 * truncated or longer than 10 octets (malformed). */
size_t pb_get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v);

/* Skips the value of a field of wire type wt at p[0..end) (unknown fields
 * must be skipped, not refused). Returns the octets skipped or 0 when
 * malformed (truncated, or a group / unknown wire type). */
size_t pb_skip(const uint8_t *p, const uint8_t *end, unsigned wt);

/* Appends the encoded User message of user id whose record is json[0..len)
 * (compact JSON as store_record_normalize writes it; whitespace is allowed)
 * to out. Returns 0, or -1 with the reason in err when json is not valid
 * JSON or not an object (a record that passed normalization always encodes). */
int store_pb_user(uint64_t id, const char *json, size_t len, struct buf *out, char *err, size_t errlen);

#endif
