/* router.c - routes and handlers: users from LMDB, metrics, health, readiness, liveness. The request path does no JSON work. */
#include "net/router.h"

#include <string.h>

#include "core/log.h"
#include "core/server.h"
#include "core/shard.h"
#include "net/tls.h"

#define JSON "application/json"

struct error_body {
    int status;
    const char *body;
};

static const struct error_body error_bodies[] = {
    {400, "{\"error\":\"bad request\"}"},
    {401, "{\"error\":\"unauthorized\"}"},
    {404, "{\"error\":\"not found\"}"},
    {405, "{\"error\":\"method not allowed\"}"},
    {408, "{\"error\":\"request timeout\"}"},
    {413, "{\"error\":\"payload too large\"}"},
    {415, "{\"error\":\"unsupported media type\"}"},
    {414, "{\"error\":\"uri too long\"}"},
    {417, "{\"error\":\"expectation failed\"}"},
    {431, "{\"error\":\"request header fields too large\"}"},
    {500, "{\"error\":\"internal error\"}"},
    {501, "{\"error\":\"not implemented\"}"},
    {503, "{\"error\":\"unavailable\"}"},
    {505, "{\"error\":\"http version not supported\"}"},
};

const char *router_error_body(int status, size_t *len)
{
    for (size_t i = 0; i < sizeof(error_bodies) / sizeof(error_bodies[0]); i++)
        if (error_bodies[i].status == status) {
            *len = strlen(error_bodies[i].body);
            return error_bodies[i].body;
        }
    *len = strlen(error_bodies[0].body);
    return error_bodies[0].body;
}

int router_parse_id(const char *s, size_t len, uint64_t *id)
{
    if (len == 0)
        return -1;
    while (len > 1 && s[0] == '0') { /* leading zeros: same id, any length */
        s++;
        len--;
    }
    if (len > 20)
        return -1;
    /* Up to 19 digits cannot overflow 64 bits: no check in the loop. */
    size_t fast = len < 19 ? len : 19;
    uint64_t v = 0;
    for (size_t i = 0; i < fast; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9)
            return -1;
        v = v * 10 + d;
    }
    if (len == 20) {
        unsigned d = (unsigned)(unsigned char)s[19] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -1; /* not a digit, or beyond 2^64-1 */
        v = v * 10 + d;
    }
    if (v == 0)
        return -1;
    *id = v;
    return 0;
}

uint64_t router_user_hint(const char *path, size_t len)
{
    if (len < 8 || memcmp(path, "/users/", 7) != 0)
        return 0;
    /* Up to 19 digits (no overflow); whatever follows is the parser's business. */
    size_t end = len < 7 + 19 ? len : 7 + 19;
    uint64_t id = 0;
    for (size_t i = 7; i < end; i++) {
        unsigned d = (unsigned)(unsigned char)path[i] - '0';
        if (d > 9)
            break;
        id = id * 10 + d;
    }
    return id;
}

static void set(struct response *res, int status, const char *ctype, const char *body, size_t len)
{
    res->status = status;
    res->content_type = ctype;
    res->body = body;
    res->body_len = len;
}

/* The status's generic error body (router_error_body). */
static void set_error(struct response *res, int status)
{
    size_t len;
    const char *body = router_error_body(status, &len);
    set(res, status, JSON, body, len);
}

/* An error whose body says more than the status's generic one. */
static void set_error_body(struct response *res, int status, const char *body)
{
    set(res, status, JSON, body, strlen(body));
}

static void lookup_user(struct shard *s, const char *id_s, size_t id_len, struct response *res)
{
    uint64_t id;
    if (router_parse_id(id_s, id_len, &id) != 0) {
        set_error_body(res, 400, "{\"error\":\"bad id\"}");
        return;
    }
    res->user_id = id;
    const char *val;
    size_t len;
    s->looked_up = true;
    int rc = store_get(&s->reader, id, &val, &len);
    if (s->reader.indexed) {
        METRIC_INC(s->metrics->store_index_lookups);
        if (s->reader.via == STORE_VIA_OVERLAY)
            METRIC_INC(s->metrics->store_overlay_lookups);
    } else if (s->reader.via == STORE_VIA_FALLBACK) {
        METRIC_INC(s->metrics->store_index_fallbacks);
    } else if (s->reader.via == STORE_VIA_CHANGED) {
        METRIC_INC(s->metrics->store_changed_lookups);
    }
    if (rc == 0) {
        METRIC_INC(s->metrics->store_hits);
        set(res, 200, JSON, val, len);
    } else if (rc == MDB_NOTFOUND) {
        METRIC_INC(s->metrics->store_misses);
        set_error(res, 404);
    } else {
        METRIC_INC(s->metrics->store_errors);
        log_error("store_get_failed", "shard=%u id=%llu err=\"%s\"", s->id, (unsigned long long)id, mdb_strerror(rc));
        set_error(res, 500);
    }
}

static void render_metrics(struct shard *s, struct response *res)
{
    struct server *srv = s->srv;
    /* The scrape path may read the store: the feed's figures as of this scrape, not of the last refresh. */
    store_feed_observe(&s->reader, s->cfg->db, &s->feed);
    MDB_envinfo info;
    mdb_env_info(srv->store.env, &info);
    struct metrics_scrape sc = {
        .nshards = srv->nshards,
        .store_used_bytes = store_used_bytes(&srv->store),
        .store_map_bytes = info.me_mapsize,
        .start_time_seconds = srv->start_time,
        .index_builds = atomic_load_explicit(&srv->indexer.builds, memory_order_relaxed),
        .index_skipped = atomic_load_explicit(&srv->indexer.skipped, memory_order_relaxed),
        .index_txn_id = atomic_load_explicit(&srv->indexer.txn_id, memory_order_relaxed),
        .index_users = atomic_load_explicit(&srv->indexer.entries, memory_order_relaxed),
        .index_bytes = atomic_load_explicit(&srv->indexer.bytes, memory_order_relaxed),
        .index_build_seconds = (double)atomic_load_explicit(&srv->indexer.build_ns, memory_order_relaxed) / 1e9,
        .index_pin_seconds = (double)store_indexer_pin_ns(&srv->indexer) / 1e9,
        .index_pin_max_seconds = (double)atomic_load_explicit(&srv->indexer.pin_max_ns, memory_order_relaxed) / 1e9,
        .tls_enabled = srv->tls != NULL,
        .tls_ktls_available = srv->ktls_available,
        .feed = &s->feed,
        .now_us = store_feed_now_us(),
        .shards_ready = atomic_load_explicit(&srv->draining, memory_order_relaxed)
                            ? 0
                            : atomic_load_explicit(&srv->shards_running, memory_order_relaxed),
    };
    if (srv->tls != NULL) {
        struct tls_stats st;
        tls_server_stats(srv->tls, &st);
        sc.tls_reloads_ok = st.reloads_ok;
        sc.tls_reloads_failed = st.reloads_failed;
        sc.tls_ticket_key_rotations = st.key_rotations;
        sc.tls_cert_not_after = st.cert_not_after;
    }
    struct metrics_shard *blocks[CONFIG_MAX_SHARDS];
    for (unsigned i = 0; i < srv->nshards; i++)
        blocks[i] = srv->shards[i]->metrics;
    sc.shards = blocks;
    s->scratch.len = 0;
    metrics_render(&s->scratch, &sc);
    set(res, 200, "text/plain; version=0.0.4; charset=utf-8", s->scratch.data, s->scratch.len);
}

const char *router_unready(struct shard *s)
{
    if (!server_ready(s->srv) || s->draining)
        return s->draining ? "{\"error\":\"draining\"}" : "{\"error\":\"not ready\"}";
    if (s->cfg->max_feed_lag_ms > 0 && !s->feed.present)
        return "{\"error\":\"no feed\"}";
    if (s->cfg->max_feed_lag_ms > 0 &&
        store_feed_lag_seconds(&s->feed, store_feed_now_us()) * 1000.0 > (double)s->cfg->max_feed_lag_ms)
        return "{\"error\":\"feed behind\"}";
    return NULL;
}

#define PATH_IS(p, n, lit) ((n) == sizeof(lit) - 1 && memcmp((p), lit, sizeof(lit) - 1) == 0)

void router_handle(struct shard *s, const struct request *req, struct response *res)
{
    /* The query string never takes part in routing. */
    const char *path = req->path;
    size_t n = req->path_len;
    const char *q = memchr(path, '?', n);
    if (q != NULL)
        n = (size_t)(q - path);

    res->user_id = 0;
    bool admin_only = s->cfg->admin_enabled;
    bool on_admin = req->listener == LISTENER_ADMIN;
    if (n >= 7 && memcmp(path, "/users/", 7) == 0 && !on_admin)
        res->route = ROUTE_USERS;
    else if (PATH_IS(path, n, "/user") && !on_admin)
        res->route = ROUTE_USER;
    else if (PATH_IS(path, n, "/metrics") && (on_admin || !admin_only))
        res->route = ROUTE_METRICS;
    else if (PATH_IS(path, n, "/healthz"))
        res->route = ROUTE_HEALTHZ;
    else if (PATH_IS(path, n, "/readyz"))
        res->route = ROUTE_READYZ;
    else if (PATH_IS(path, n, "/livez"))
        res->route = ROUTE_LIVEZ;
    else
        res->route = ROUTE_OTHER;

    if (req->method == METHOD_OTHER) {
        set_error(res, 405);
        return;
    }
    switch (res->route) {
    case ROUTE_USERS:
        lookup_user(s, path + 7, n - 7, res);
        return;
    case ROUTE_USER:
        if (req->user_id == NULL)
            set_error(res, 401);
        else
            lookup_user(s, req->user_id, req->user_id_len, res);
        return;
    case ROUTE_METRICS:
        render_metrics(s, res);
        return;
    case ROUTE_HEALTHZ:
        set(res, 200, "text/plain; charset=utf-8", "ok\n", 3);
        return;
    case ROUTE_LIVEZ:
        /* Liveness: this thread answers, nothing else is asked (not the
         * store, not readiness, not draining), so a probe restarts ringd only
         * when it is really stuck. */
        set(res, 200, "text/plain; charset=utf-8", "ok\n", 3);
        return;
    case ROUTE_READYZ: {
        const char *why = router_unready(s);
        if (why != NULL)
            set_error_body(res, 503, why);
        else
            set(res, 200, "text/plain; charset=utf-8", "ready\n", 6);
        return;
    }
    default:
        set_error(res, 404);
        return;
    }
}
