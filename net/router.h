/* router.h - one place decides what a request gets: routes, handlers, the user lookups. Shared by HTTP/1.1 and HTTP/2. */
#ifndef RINGD_ROUTER_H
#define RINGD_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/metrics.h"

struct shard;

enum router_method { METHOD_GET, METHOD_HEAD, METHOD_OTHER };

struct request {
    enum router_method method;
    const char *path; /* as received, query string included */
    size_t path_len;
    const char *user_id; /* user-id header value, NULL when absent */
    size_t user_id_len;
    uint8_t listener; /* enum listener_kind */
};

struct response {
    int status;
    enum metrics_route route;
    const char *content_type;
    const char *body; /* valid until the shard's next router_handle or read-transaction refresh: copy it */
    size_t body_len;
};

/* Answers req into *res. Never fails: errors are responses. */
void router_handle(struct shard *s, const struct request *req, struct response *res);

/* The user a request target (path[0..len), query string allowed) will look up
 * when it is GET /users/{id}, for prefetching; 0 when it is not one, or not
 * certainly. Cheap, and never wrong in a way that matters: it is a hint. */
uint64_t router_user_hint(const char *path, size_t len);

/* Parses a user id: decimal digits only, 1 .. 2^64-1. Returns 0 or -1. */
int router_parse_id(const char *s, size_t len, uint64_t *id);

/* Readiness as /readyz reports it: NULL when ready, else the JSON body of the
 * 503 ("draining", "not ready", "no feed", "feed behind"). gRPC health uses it too. */
const char *router_unready(struct shard *s);

/* A fixed JSON error body for status ("{\"error\":\"...\"}"), with its length. */
const char *router_error_body(int status, size_t *len);

#endif
