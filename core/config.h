/* config.h - `ringd serve` settings: flags, their RINGD_* environment equivalents, defaults. Read-only once shards start. */
#ifndef RINGD_CONFIG_H
#define RINGD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/cpus.h"

/* Shards at most (the default, one per online CPU, is capped here too). */
#define CONFIG_MAX_SHARDS 256

struct config {
    bool listen_enabled; /* false with --listen none: no cleartext client listener */
    struct sockaddr_storage listen_addr;
    socklen_t listen_len;
    bool tls_enabled; /* --tls-listen given */
    struct sockaddr_storage tls_addr;
    socklen_t tls_len;
    const char *tls_cert;            /* --tls-cert: PEM chain, leaf first */
    const char *tls_key;             /* --tls-key: PEM private key */
    const char *tls_ticket_key_file; /* --tls-ticket-key-file, or NULL: random keys rotated hourly */
    bool admin_enabled; /* --admin-listen given: /metrics only there */
    struct sockaddr_storage admin_addr;
    socklen_t admin_len;
    const char *db;      /* --db; default "./ringd-data" */
    bool db_is_default;  /* no --db/RINGD_DB: create a demo database when missing (never a given one) */
    unsigned shards;     /* default: cpus.count (affinity mask capped by the cgroup's cpu.max) */
    bool shards_given;   /* --shards or RINGD_SHARDS set it */
    struct cpus_limit cpus; /* what the default came from, for the start-up log */
    unsigned max_conns;  /* total over all shards */
    unsigned header_timeout_ms;
    unsigned idle_timeout_ms;
    unsigned write_timeout_ms;
    unsigned drain_timeout_ms;
    unsigned drain_grace_ms; /* after SIGTERM: /readyz 503 but still accepting, before the listeners close */
    unsigned refresh_ms;
    unsigned h2_max_streams;
    unsigned paused_budget_mb; /* buffers all paused connections may hold; split evenly over shards */
    bool reuse_port_join;      /* share the listening port with a process already on it (handover) */
    unsigned batch_wait_us; /* at most this long a busy shard waits to gather completions; 0: wake per completion */
    unsigned index_max_mb;  /* the snapshot index (store/index.h) may take this much memory; 0: no index */
    unsigned max_feed_lag_ms; /* /readyz answers 503 while the feed (store/feed.h) is further behind; 0: off */
    const char *access_log;      /* --access-log PATH, "-" for standard output; NULL: off (core/access_log.h) */
    unsigned access_log_sample;  /* log one request in N (errors and slow requests always); default 1 */
    unsigned slow_ms;            /* requests slower than this are always logged; 0: no such rule */
};

/* Fills c from defaults, then RINGD_* variables, then flags (flags win).
 * argv[0] is "serve". Checks that the TLS flags come together (--tls-listen
 * with --tls-cert and --tls-key) and that something is served (--listen none
 * needs --tls-listen). Returns 0; 1 when --help was printed (exit 0);
 * -1 with err filled on a bad flag or value (exit 2). Strings in c point into
 * argv or the environment, which outlive the process's use of c. */
int config_parse_serve(struct config *c, int argc, char **argv, char *err, size_t errlen);

/* Parses "HOST:PORT", "[V6]:PORT" or ":PORT"/"PORT" (0.0.0.0). Returns 0 or -1. */
int config_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Formats ss as "ip:port" / "[ip6]:port" into out. */
void config_format_addr(const struct sockaddr_storage *ss, char *out, size_t outlen);

/* Usage text of `ringd serve`. */
extern const char config_serve_usage[];

#endif
