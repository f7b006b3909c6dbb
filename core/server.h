/* server.h - the process: listeners, the store, one shard per CPU, signals and drain. */
#ifndef RINGD_SERVER_H
#define RINGD_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "store/index.h"
#include "store/store.h"

struct shard;
struct tls_server;
struct alog;

/* Connection count of one shard, padded to its own cache line. Written by the
 * owner on open/close and by another shard that hands it a connection: a
 * per-connection event, never per request. */
struct server_load {
    _Alignas(64) atomic_uint conns;
};

/* Process-wide state. Everything here is read-only once the shards run, except
 * the atomics (ready/draining flags and load counters). */
struct server {
    const struct config *cfg;
    struct store store;
    struct store_indexer indexer;      /* the snapshot index the shards share (store/index.h) */
    unsigned nshards;
    struct shard **shards;
    struct server_load *load;          /* nshards entries */
    int *listen_fds;                   /* nshards entries, SO_REUSEPORT group; -1 with --listen none */
    int *tls_listen_fds;               /* nshards entries, a second group; -1 without --tls-listen */
    struct tls_server *tls;            /* the TLS context (net/tls.h); NULL without --tls-listen */
    bool ktls_available;               /* what the start-up probe found (logged; TLS stays in user space) */
    int admin_fd;                      /* -1 unless --admin-listen; served by shard 0 */
    /* Sockets systemd passed (core/systemd.h) and kept: a drain never shuts
     * them down, so connections wait in their queue for the next instance. */
    bool listen_inherited, tls_inherited, admin_inherited;
    struct sockaddr_storage bound;     /* the main listener's address, port resolved */
    struct sockaddr_storage tls_bound; /* the TLS listener's */
    double start_time;                 /* Unix time, for process_start_time_seconds */
    struct alog *alog;                 /* the access log (core/access_log.h); NULL without --access-log */
    uint64_t id_prefix;                /* random, read once: the first part of generated request ids (net/trace.h) */
    atomic_bool draining;              /* SIGTERM/SIGINT seen */
    atomic_uint shards_running;        /* shards whose loop has started */
    atomic_bool failed;                /* a shard could not start */
    atomic_uint total_conns;           /* open connections, all shards: the --max-conns budget */
};

/* Whether /readyz answers 200: every shard serves and no drain has begun. */
bool server_ready(struct server *srv);

/* `ringd serve`: parses argv, runs until SIGTERM/SIGINT and the drain. Returns the exit code.
 * allocator: key=value text naming the allocator (e.g. "name=mimalloc version=209"), logged once
 * the server listens, never before an option error; borrowed for the call. */
int server_main(int argc, char **argv, const char *allocator);

#endif
