/* grpc.c - the gRPC methods ringd serves: request parsing, lookups, answers built from stored bytes. */
#include "net/grpc.h"

#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/shard.h"
#include "net/router.h"
#include "store/pb.h"
#include "store/store.h"

#define USERS_SERVICE "/ringd.v1.Users/"
#define HEALTH_SERVICE "/grpc.health.v1.Health/"

/* grpc.health.v1.HealthCheckResponse.ServingStatus */
#define HEALTH_SERVING 1
#define HEALTH_NOT_SERVING 2

enum grpc_ctype grpc_content_type(const char *v, size_t n)
{
    static const char base[] = "application/grpc";
    size_t bn = sizeof(base) - 1;
    if (n < bn || strncasecmp(v, base, bn) != 0)
        return GRPC_CT_NONE;
    if (n == bn || v[bn] == ';')
        return GRPC_CT_PROTO;
    if (v[bn] != '+')
        return GRPC_CT_NONE; /* application/grpcfoo */
    const char *sub = v + bn + 1;
    size_t sn = n - bn - 1;
    const char *semi = memchr(sub, ';', sn);
    if (semi != NULL)
        sn = (size_t)(semi - sub);
    return sn == 5 && strncasecmp(sub, "proto", 5) == 0 ? GRPC_CT_PROTO : GRPC_CT_OTHER_CODEC;
}

#define PATH_IS(lit) (len == sizeof(lit) - 1 && memcmp(path, lit, sizeof(lit) - 1) == 0)
#define PATH_UNDER(lit) (len > sizeof(lit) - 1 && memcmp(path, lit, sizeof(lit) - 1) == 0)

enum metrics_route grpc_method_of(const char *path, size_t len, bool *service)
{
    *service = PATH_UNDER(USERS_SERVICE) || PATH_UNDER(HEALTH_SERVICE);
    if (PATH_IS(USERS_SERVICE "GetUser"))
        return ROUTE_GRPC_GET_USER;
    if (PATH_IS(USERS_SERVICE "BatchGetUsers"))
        return ROUTE_GRPC_BATCH_GET_USERS;
    if (PATH_IS(HEALTH_SERVICE "Check"))
        return ROUTE_GRPC_HEALTH_CHECK;
    return ROUTE_GRPC_OTHER;
}

#undef PATH_IS
#undef PATH_UNDER

int grpc_parse_timeout(const char *v, size_t n, uint64_t *ms)
{
    /* TimeoutValue: 1 to 8 ASCII digits; TimeoutUnit: one of H M S m u n. */
    if (n < 2 || n > 9)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned d = (unsigned)(unsigned char)v[i] - '0';
        if (d > 9)
            return -1;
        x = x * 10 + d;
    }
    switch (v[n - 1]) {
    case 'H':
        *ms = x * 3600000u;
        return 0;
    case 'M':
        *ms = x * 60000u;
        return 0;
    case 'S':
        *ms = x * 1000u;
        return 0;
    case 'm':
        *ms = x;
        return 0;
    case 'u':
        *ms = (x + 999) / 1000;
        return 0;
    case 'n':
        *ms = (x + 999999) / 1000000;
        return 0;
    default:
        return -1;
    }
}

/* Appends the 5-octet prefix for a message that will follow; returns its offset (grpc_close_message fills it). */
static size_t open_message(struct buf *out)
{
    static const uint8_t zero[GRPC_PREFIX];
    size_t at = out->len;
    buf_append(out, zero, GRPC_PREFIX);
    return at;
}

static void close_message(struct buf *out, size_t at)
{
    uint32_t n = (uint32_t)(out->len - at - GRPC_PREFIX);
    uint8_t *p = (uint8_t *)out->data + at;
    p[0] = 0; /* not compressed */
    p[1] = (uint8_t)(n >> 24);
    p[2] = (uint8_t)(n >> 16);
    p[3] = (uint8_t)(n >> 8);
    p[4] = (uint8_t)n;
}

/* One lookup, counted as the router counts its lookups. */
static int lookup(struct shard *s, uint64_t id, struct store_user *u)
{
    s->looked_up = true;
    int rc = store_get_user(&s->reader, id, u);
    if (s->reader.indexed)
        METRIC_INC(s->metrics->store_index_lookups);
    if (rc == 0)
        METRIC_INC(s->metrics->store_hits);
    else if (rc == MDB_NOTFOUND)
        METRIC_INC(s->metrics->store_misses);
    else {
        METRIC_INC(s->metrics->store_errors);
        log_error("store_get_failed", "shard=%u id=%llu err=\"%s\"", s->id, (unsigned long long)id, mdb_strerror(rc));
    }
    return rc;
}

/* GetUserRequest { uint64 id = 1; } */
static enum grpc_status get_user(struct shard *s, const uint8_t *p, const uint8_t *end, struct buf *out, const char **message)
{
    uint64_t id = 0;
    while (p < end) {
        uint64_t key;
        size_t n = pb_get_varint(p, end, &key);
        if (n == 0)
            goto malformed;
        p += n;
        if (key == (1 << 3 | PB_VARINT)) {
            n = pb_get_varint(p, end, &id); /* the last one wins, as protobuf has it */
        } else {
            if (key >> 3 == 1) /* id with another wire type */
                goto malformed;
            n = pb_skip(p, end, (unsigned)(key & 7));
        }
        if (n == 0)
            goto malformed;
        p += n;
    }
    if (id == 0) {
        *message = "id must be a user id from 1 to 2^64-1";
        return GRPC_INVALID_ARGUMENT;
    }
    struct store_user u;
    int rc = lookup(s, id, &u);
    if (rc == MDB_NOTFOUND) {
        *message = "user not found";
        return GRPC_NOT_FOUND;
    }
    if (rc != 0) {
        *message = "store error";
        return GRPC_INTERNAL;
    }
    size_t at = open_message(out);
    buf_append(out, u.pb, u.pb_len); /* the User message, as stored */
    close_message(out, at);
    return GRPC_OK;

malformed:
    *message = "malformed GetUserRequest";
    return GRPC_INVALID_ARGUMENT;
}

/* BatchGetUsersRequest { repeated uint64 ids = 1; }: packed (the proto3 default) or not, or both. */
static enum grpc_status batch_get_users(struct shard *s, const uint8_t *p, const uint8_t *end, struct buf *out,
                                        const char **message)
{
    uint64_t ids[GRPC_MAX_BATCH];
    size_t nids = 0;
    while (p < end) {
        uint64_t key, v;
        size_t n = pb_get_varint(p, end, &key);
        if (n == 0)
            goto malformed;
        p += n;
        if (key == (1 << 3 | PB_VARINT)) {
            n = pb_get_varint(p, end, &v);
            if (n == 0)
                goto malformed;
            if (nids == GRPC_MAX_BATCH)
                goto too_many;
            ids[nids++] = v;
        } else if (key == (1 << 3 | PB_LEN)) {
            uint64_t plen;
            n = pb_get_varint(p, end, &plen);
            if (n == 0 || plen > (uint64_t)(end - p - (ptrdiff_t)n))
                goto malformed;
            const uint8_t *q = p + n, *qend = q + plen;
            while (q < qend) {
                size_t m = pb_get_varint(q, qend, &v);
                if (m == 0)
                    goto malformed;
                if (nids == GRPC_MAX_BATCH)
                    goto too_many;
                ids[nids++] = v;
                q += m;
            }
            n += (size_t)plen;
        } else {
            if (key >> 3 == 1)
                goto malformed;
            n = pb_skip(p, end, (unsigned)(key & 7));
            if (n == 0)
                goto malformed;
        }
        p += n;
    }
    for (size_t i = 0; i < nids; i++)
        if (ids[i] == 0) {
            *message = "ids must be user ids from 1 to 2^64-1";
            return GRPC_INVALID_ARGUMENT;
        }

    /* users (field 1) in request order as they are found; the missing ids are
     * gathered over the found ones' slots in ids (nothing reads those again). */
    size_t at = open_message(out);
    size_t nmissing = 0, missing_bytes = 0;
    for (size_t i = 0; i < nids; i++) {
        if (i + 1 < nids)
            store_prefetch(&s->reader, ids[i + 1]);
        struct store_user u;
        int rc = lookup(s, ids[i], &u);
        if (rc == MDB_NOTFOUND) {
            missing_bytes += pb_varint_len(ids[i]);
            ids[nmissing++] = ids[i];
            continue;
        }
        if (rc != 0) {
            out->len = at;
            *message = "store error";
            return GRPC_INTERNAL;
        }
        uint8_t hdr[1 + PB_VARINT_MAX];
        hdr[0] = 1 << 3 | PB_LEN;
        size_t hn = 1 + pb_put_varint(hdr + 1, u.pb_len);
        buf_append(out, hdr, hn);
        buf_append(out, u.pb, u.pb_len);
    }
    if (nmissing > 0) { /* missing_ids (field 2), packed */
        uint8_t tmp[PB_VARINT_MAX];
        tmp[0] = 2 << 3 | PB_LEN;
        buf_append(out, tmp, 1);
        buf_append(out, tmp, pb_put_varint(tmp, missing_bytes));
        for (size_t i = 0; i < nmissing; i++)
            buf_append(out, tmp, pb_put_varint(tmp, ids[i]));
    }
    close_message(out, at);
    return GRPC_OK;

too_many:
    *message = "at most 1000 ids";
    return GRPC_INVALID_ARGUMENT;
malformed:
    *message = "malformed BatchGetUsersRequest";
    return GRPC_INVALID_ARGUMENT;
}

/* HealthCheckRequest { string service = 1; } -> HealthCheckResponse { ServingStatus status = 1; } */
static enum grpc_status health_check(struct shard *s, const uint8_t *p, const uint8_t *end, struct buf *out, const char **message)
{
    const uint8_t *svc = NULL;
    uint64_t svc_len = 0;
    while (p < end) {
        uint64_t key;
        size_t n = pb_get_varint(p, end, &key);
        if (n == 0)
            goto malformed;
        p += n;
        if (key == (1 << 3 | PB_LEN)) {
            n = pb_get_varint(p, end, &svc_len);
            if (n == 0 || svc_len > (uint64_t)(end - p - (ptrdiff_t)n))
                goto malformed;
            svc = p + n;
            n += (size_t)svc_len;
        } else {
            if (key >> 3 == 1)
                goto malformed;
            n = pb_skip(p, end, (unsigned)(key & 7));
            if (n == 0)
                goto malformed;
        }
        p += n;
    }
    /* "" is the server as a whole; ringd.v1.Users is the one service behind it. */
    if (svc_len != 0 && !(svc_len == 14 && memcmp(svc, "ringd.v1.Users", 14) == 0)) {
        *message = "unknown service";
        return GRPC_NOT_FOUND;
    }
    size_t at = open_message(out);
    uint8_t msg[2] = {1 << 3 | PB_VARINT, router_unready(s) == NULL ? HEALTH_SERVING : HEALTH_NOT_SERVING};
    buf_append(out, msg, 2);
    close_message(out, at);
    return GRPC_OK;

malformed:
    *message = "malformed HealthCheckRequest";
    return GRPC_INVALID_ARGUMENT;
}

enum grpc_status grpc_call(struct shard *s, enum metrics_route method, const uint8_t *msg, size_t len, struct buf *out,
                           const char **message)
{
    *message = NULL;
    const uint8_t *end = msg + len;
    switch (method) {
    case ROUTE_GRPC_GET_USER:
    case ROUTE_GRPC_BATCH_GET_USERS:
        if (s->draining) { /* the GOAWAY is on its way: the client moves on to another server */
            *message = "draining";
            return GRPC_UNAVAILABLE;
        }
        return method == ROUTE_GRPC_GET_USER ? get_user(s, msg, end, out, message) : batch_get_users(s, msg, end, out, message);
    case ROUTE_GRPC_HEALTH_CHECK:
        return health_check(s, msg, end, out, message);
    default:
        *message = "unknown method";
        return GRPC_UNIMPLEMENTED;
    }
}
