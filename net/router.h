/* router.h - one place decides what a request gets: routes, handlers, the user lookups. Shared by HTTP/1.1 and HTTP/2. */
#ifndef RINGD_ROUTER_H
#define RINGD_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/metrics.h"
#include "net/trace.h"

struct shard;

enum router_method { METHOD_GET, METHOD_HEAD, METHOD_OTHER };

struct request {
    enum router_method method;
    const char *path; /* as received, query string included */
    size_t path_len;
    const char *user_id; /* user-id header value, NULL when absent */
    size_t user_id_len;
    uint8_t listener; /* enum listener_kind */
    const char *request_id; /* x-request-id as received, NULL when absent (checked by router_set_ids) */
    size_t request_id_len;
    const char *traceparent; /* traceparent as received, NULL when absent */
    size_t traceparent_len;
    const char *method_name; /* the method as received (access log), NULL: named by method */
    size_t method_name_len;
};

struct response {
    int status;
    enum metrics_route route;
    const char *content_type;
    const char *body; /* valid until the shard's next router_handle or read-transaction refresh: copy it */
    size_t body_len;
    uint64_t user_id; /* the user looked up (for the access log), 0 when none */
    /* Set by the protocol (router_set_ids), echoed on the response: the
     * request's id, the client's or a generated one (valid until the shard's
     * next request), and its traceparent when valid (NULL otherwise). */
    const char *request_id;
    size_t request_id_len;
    const char *traceparent;
    size_t traceparent_len;
};

/* Fills res's request id and traceparent from req: the client's id when
 * trace_request_id_ok, else the next of g; the traceparent when
 * trace_parent_ok, else none. Inline: with neither header, this is a
 * counter increment on the request path. */
static inline void router_set_ids(struct trace_idgen *g, const struct request *req, struct response *res)
{
    if (req->request_id != NULL && trace_request_id_ok(req->request_id, req->request_id_len)) {
        res->request_id = req->request_id;
        res->request_id_len = req->request_id_len;
    } else {
        res->request_id = trace_idgen_next(g);
        res->request_id_len = TRACE_GEN_LEN;
    }
    if (req->traceparent != NULL && trace_parent_ok(req->traceparent, req->traceparent_len)) {
        res->traceparent = req->traceparent;
        res->traceparent_len = req->traceparent_len;
    } else {
        res->traceparent = NULL;
        res->traceparent_len = 0;
    }
}

/* Answers req into *res (status, route, content type, body, user_id; not the ids). Never fails: errors are responses. */
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
