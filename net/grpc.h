/* grpc.h - gRPC's rules and handlers: ringd.v1.Users (GetUser, BatchGetUsers) and grpc.health.v1.Health/Check.
 *
 * HTTP/2 carries the calls (net/h2.c routes a request here by its
 * content-type and gathers its one length-prefixed message); this module
 * knows the methods, parses the requests and writes the answers. The answer
 * to a lookup is stored bytes: each record's ringd.v1.User encoding is made
 * when it is written (store/pb.h), so no JSON and no protobuf encoding of a
 * record happens here.
 */
#ifndef RINGD_GRPC_H
#define RINGD_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/metrics.h"

struct shard;

/* gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
enum grpc_status {
    GRPC_OK = 0,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_NOT_FOUND = 5,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
};

#define GRPC_MAX_MESSAGE (4u << 20) /* larger request messages: RESOURCE_EXHAUSTED (gRPC's default limit) */
#define GRPC_MAX_BATCH 1000         /* ids in one BatchGetUsers */
#define GRPC_PREFIX 5               /* a message's prefix: compressed flag, 4-octet big-endian length */

/* What a request's content-type says: gRPC with protobuf, gRPC with another
 * codec (application/grpc+json: unsupported), or not gRPC at all. */
enum grpc_ctype { GRPC_CT_NONE, GRPC_CT_PROTO, GRPC_CT_OTHER_CODEC };
enum grpc_ctype grpc_content_type(const char *v, size_t n);

/* The method a :path names: a ROUTE_GRPC_* value (ROUTE_GRPC_OTHER for any
 * other path). *service is set when the path lies under one of the services
 * ringd serves (a POST there without gRPC's content-type gets HTTP 415). */
enum metrics_route grpc_method_of(const char *path, size_t len, bool *service);

/* Parses a grpc-timeout value (1 to 8 digits and a unit H M S m u n) into
 * milliseconds, rounded up. Returns 0, or -1 when malformed. */
int grpc_parse_timeout(const char *v, size_t n, uint64_t *ms);

/* Answers one unary call of method with its request message msg[0..len):
 * on GRPC_OK the whole response message, its 5-octet prefix included, is
 * appended to out (empty on errors). *message gets a static grpc-message for
 * errors (NULL on OK). The store pointers it copies from are valid for this
 * call only. */
enum grpc_status grpc_call(struct shard *s, enum metrics_route method, const uint8_t *msg, size_t len, struct buf *out,
                           const char **message);

#endif
