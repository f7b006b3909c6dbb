/* server.c - `ringd serve`: the store, the SO_REUSEPORT listeners, one pinned shard per CPU, signals and drain. */
#include "core/server.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/access_log.h"
#include "core/alloc.h"
#include "core/cpus.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/systemd.h"
#include "core/tag.h"
#include "net/tls.h"

#define LISTEN_BACKLOG 4096
#define LISTEN_RCVBUF (16 * 1024) /* the kernel doubles both for its bookkeeping */
#define LISTEN_SNDBUF (64 * 1024)
#define DEMO_USERS 100000

bool server_ready(struct server *srv)
{
    return atomic_load_explicit(&srv->shards_running, memory_order_relaxed) == srv->nshards &&
           !atomic_load_explicit(&srv->draining, memory_order_relaxed);
}

/* Says why io_uring is unavailable and how to allow it, before any thread starts. */
static int probe_io_uring(void)
{
    struct io_uring ring;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(4, &ring, &p);
    if (rc == 0) {
        io_uring_queue_exit(&ring);
        return 0;
    }
    if (rc == -ENOSYS) {
        log_error("io_uring_unavailable",
                  "cause=\"kernel built without io_uring (ENOSYS)\" fix=\"run on Linux 6.1 or later with CONFIG_IO_URING=y\"");
    } else if (rc == -EPERM || rc == -EACCES) {
        int disabled = 0;
        FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
        if (f != NULL) {
            if (fscanf(f, "%d", &disabled) != 1)
                disabled = 0;
            fclose(f);
        }
        if (disabled != 0)
            log_error("io_uring_unavailable",
                      "cause=\"kernel.io_uring_disabled=%d\" fix=\"sysctl -w kernel.io_uring_disabled=0 (or 1 and add "
                      "this user to kernel.io_uring_group)\"",
                      disabled);
        else
            log_error("io_uring_unavailable",
                      "cause=\"io_uring_setup denied (EPERM): a seccomp filter, e.g. a container runtime's default "
                      "profile\" fix=\"allow io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile\"");
    } else if (rc == -EINVAL) {
        log_error("io_uring_unavailable",
                  "cause=\"kernel lacks IORING_SETUP_SINGLE_ISSUER/DEFER_TASKRUN (EINVAL)\" fix=\"run on Linux 6.1 or later\"");
    } else {
        log_error("io_uring_unavailable", "cause=\"io_uring_setup: %s\"", strerror(-rc));
    }
    return -1;
}

/* A listening socket on addr; returns the fd, or -1 with errno set.
 *
 * join: bind with SO_REUSEPORT, i.e. join the group that may already listen
 * on addr: this process's first shard, or (--reuse-port-join) another process
 * of the same user. Otherwise the port must be free: SO_REUSEPORT is left off
 * for the bind, which then fails with EADDRINUSE if anything listens on addr,
 * whatever that socket's options (a second `ringd serve` on the same port used
 * to join silently and take half the connections). SO_REUSEADDR still lets a
 * restart reuse a port that only TIME_WAIT connections hold. SO_REUSEPORT is
 * set once the socket listens, so our other shards, and an operator's
 * explicit --reuse-port-join handover, can join it. Binding first and joining
 * after leaves no window: from the bind on, the port is ours alone. */
static int open_listener(const struct sockaddr_storage *addr, socklen_t len, bool join)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (join)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    /* Accepted sockets inherit TCP_NODELAY: each response is one send already. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Fixed socket buffers (inherited too) bound what a client that pipelines
     * and never reads can make us hold. Receive: what a multishot recv pulls
     * into the connection's input after it pauses for backpressure (without
     * it TCP autotuning lets a client park up to tcp_rmem[2], 32 MiB here);
     * requests are small GETs, and a 16 KiB window still fills a 4 KiB
     * provided buffer per read. Send: the kernel's own copy of unread
     * answers, which autotuning grows to tcp_wmem[2] (4 MiB) per connection
     * on loopback; 64 KiB holds a few hundred answers, more than one turn
     * produces for any connection (CONN_OUT_HIGH_WATER). */
    int rcvbuf = LISTEN_RCVBUF, sndbuf = LISTEN_SNDBUF;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    if (bind(fd, (const struct sockaddr *)addr, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0 ||
        (!join && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Logs why addr could not be listened on (errno). */
static void log_listen_failed(const struct sockaddr_storage *addr, bool join)
{
    char text[80];
    config_format_addr(addr, text, sizeof(text));
    if (errno == EADDRINUSE && !join)
        log_error("listen_failed",
                  "addr=%s err=\"address already in use\" hint=\"another process listens there; pass "
                  "--reuse-port-join (RINGD_REUSE_PORT_JOIN=1) only to share the port with another ringd for a handover\"",
                  text);
    else
        log_error("listen_failed", "addr=%s err=\"%s\"", text, strerror(errno));
}

/* One SO_REUSEPORT group: a listener per shard on addr into fds, the
 * address the first one got (port 0 resolved) into bound. Returns 0 or -1. */
static int open_group(struct server *srv, const struct sockaddr_storage *want, socklen_t len, int *fds,
                      struct sockaddr_storage *bound, int inherited)
{
    if (inherited >= 0) {
        /* Socket activation: one socket, systemd's, whose queue outlives us.
         * Every shard accepts from it (a dup each, so each closes its own). */
        for (unsigned i = 0; i < srv->nshards; i++) {
            fds[i] = i == 0 ? inherited : fcntl(inherited, F_DUPFD_CLOEXEC, 3);
            if (fds[i] < 0) {
                log_error("listen_failed", "err=\"dup of the passed socket: %s\"", strerror(errno));
                return -1;
            }
        }
        socklen_t l = sizeof(*bound);
        getsockname(inherited, (struct sockaddr *)bound, &l);
        return 0;
    }
    struct sockaddr_storage addr = *want;
    for (unsigned i = 0; i < srv->nshards; i++) {
        /* Shard 0 takes the port (alone unless --reuse-port-join); the others join it. */
        bool join = i > 0 || srv->cfg->reuse_port_join;
        int fd = open_listener(&addr, len, join);
        if (fd < 0) {
            log_listen_failed(&addr, join);
            return -1;
        }
        fds[i] = fd;
        if (i == 0) {
            /* Port 0: every other shard binds the port the first one got. */
            socklen_t l = sizeof(addr);
            getsockname(fd, (struct sockaddr *)&addr, &l);
            *bound = addr;
        }
    }
    return 0;
}

/* The sockets systemd passed, by name: "http" (or the only, unnamed one),
 * "https" and "admin" (FileDescriptorName= in ringd.socket). Each replaces
 * the listener its flag would open; one without its flag turns it on
 * (admin, http) or is an error (https: no certificate). fds: -1 or the
 * socket for main, tls, admin. Returns 0 or -1. */
static int take_systemd_sockets(struct server *srv, struct config *cfg, int fds[3])
{
    char err[256];
    struct systemd_fds sd;
    fds[0] = fds[1] = fds[2] = -1;
    int n = systemd_listen_fds(&sd, err, sizeof(err));
    if (n < 0) {
        log_error("socket_activation_failed", "err=\"%s\"", err);
        return -1;
    }
    if (n == 0)
        return 0;
    fds[0] = systemd_fd_named(&sd, "http");
    fds[1] = systemd_fd_named(&sd, "https");
    fds[2] = systemd_fd_named(&sd, "admin");
    for (unsigned i = 0; i < sd.n; i++) {
        if (sd.fd[i] != fds[0] && sd.fd[i] != fds[1] && sd.fd[i] != fds[2]) {
            log_warn("socket_activation_unused", "fd=%d name=%s note=\"name it http, https or admin\"", sd.fd[i],
                     sd.name[i]);
            close(sd.fd[i]);
        }
    }
    if (fds[1] >= 0 && !cfg->tls_enabled) {
        log_error("socket_activation_failed", "%s", "err=\"an https socket was passed without --tls-cert/--tls-key\"");
        return -1;
    }
    if (fds[0] >= 0)
        cfg->listen_enabled = srv->listen_inherited = true;
    if (fds[1] >= 0)
        srv->tls_inherited = true;
    if (fds[2] >= 0)
        cfg->admin_enabled = srv->admin_inherited = true;
    log_info("socket_activation", "sockets=%d http=%d https=%d admin=%d", n, fds[0], fds[1], fds[2]);
    return 0;
}

static int open_listeners(struct server *srv, const int inherited[3])
{
    const struct config *cfg = srv->cfg;
    if (cfg->listen_enabled &&
        open_group(srv, &cfg->listen_addr, cfg->listen_len, srv->listen_fds, &srv->bound, inherited[0]) != 0)
        return -1;
    /* The TLS port: its own group, same scheme, same shards and rings. */
    if (cfg->tls_enabled &&
        open_group(srv, &cfg->tls_addr, cfg->tls_len, srv->tls_listen_fds, &srv->tls_bound, inherited[1]) != 0)
        return -1;
    if (inherited[2] >= 0) {
        srv->admin_fd = inherited[2];
    } else if (cfg->admin_enabled) {
        srv->admin_fd = open_listener(&cfg->admin_addr, cfg->admin_len, cfg->reuse_port_join);
        if (srv->admin_fd < 0) {
            log_listen_failed(&cfg->admin_addr, cfg->reuse_port_join);
            return -1;
        }
    }
    if (cfg->reuse_port_join) {
        char text[80];
        config_format_addr(cfg->listen_enabled ? &srv->bound : &srv->tls_bound, text, sizeof(text));
        log_info("reuse_port_join", "addr=%s note=\"sharing the port with any process of this user listening there\"",
                 text);
    }
    return 0;
}

static int open_store(struct server *srv)
{
    const struct config *cfg = srv->cfg;
    char err[512];
    if (cfg->db_is_default && !store_exists(cfg->db)) {
        log_info("creating_demo_db", "db=%s users=%d", cfg->db, DEMO_USERS);
        if (store_demo_create(cfg->db, DEMO_USERS, err, sizeof(err)) != 0) {
            log_error("demo_db_failed", "db=%s err=\"%s\"", cfg->db, err);
            return -1;
        }
    }
    if (store_open(&srv->store, cfg->db, true, false, err, sizeof(err)) != 0) {
        /* Only the default is created: a typo in --db must not serve demo users. */
        bool missing = !cfg->db_is_default && !store_exists(cfg->db);
        log_error("store_open_failed", "db=%s err=\"%s\"%s", cfg->db, err,
                  missing ? " hint=\"a database given with --db or RINGD_DB is never created: make it with ringd demo "
                            "--db DIR or ringd import --db DIR\""
                          : "");
        return -1;
    }
    return 0;
}

/* Wakes every shard out of its wait with a MSG_RING completion, so a drain
 * starts now rather than at the shard's next timeout. Best effort: a shard
 * that misses it still sees the flag within its wait limit. */
static void wake_shards(struct server *srv)
{
    struct io_uring ring;
    if (io_uring_queue_init(8, &ring, 0) != 0)
        return;
    for (unsigned i = 0; i < srv->nshards; i++) {
        int fd = atomic_load(&srv->shards[i]->ring_fd);
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        if (fd < 0 || sqe == NULL)
            continue;
        io_uring_prep_msg_ring(sqe, fd, 0, tag_make(TAG_WAKE, 0), 0);
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *cqe;
        if (io_uring_peek_cqe(&ring, &cqe) == 0)
            io_uring_cqe_seen(&ring, cqe);
    }
    io_uring_queue_exit(&ring);
}

/* Waits until every shard runs or one failed. */
static int wait_started(struct server *srv)
{
    for (;;) {
        if (atomic_load(&srv->failed))
            return -1;
        if (atomic_load(&srv->shards_running) == srv->nshards)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* net.ipv4.tcp_migrate_req: 1 when closing a SO_REUSEPORT listener moves
 * its queued connections to another listener of the group instead of
 * resetting them (Linux 5.14+); 0 when off, -1 when the kernel lacks it. */
static int tcp_migrate_req(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_migrate_req", "r");
    if (f == NULL)
        return -1;
    int v = -1;
    if (fscanf(f, "%d", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

/* Says where the shard count came from: the flag, or which limit decided the default. */
static void log_shards(const struct config *cfg)
{
    char quota[32] = "none";
    if (cfg->cpus.quota != 0)
        snprintf(quota, sizeof(quota), "%u", cfg->cpus.quota);
    log_info("shards", "count=%u decided_by=%s affinity_cpus=%u cpu_max_cpus=%s%s%s", cfg->shards,
             cfg->shards_given ? "flag" : cfg->cpus.decided_by, cfg->cpus.affinity, quota,
             cfg->cpus.quota_file[0] != '\0' ? " cpu_max_file=" : "", cfg->cpus.quota_file);
}

int server_main(int argc, char **argv, const char *allocator)
{
    struct config cfg;
    char err[512];
    int rc = config_parse_serve(&cfg, argc, argv, err, sizeof(err));
    if (rc == 1)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "ringd serve: %s\n", err);
        return 2;
    }

    /* SIGPIPE never kills us (sends also pass MSG_NOSIGNAL). SIGTERM/SIGINT are
     * taken synchronously by the main thread; shards inherit the mask. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);  /* reloads the TLS certificate; never the default (exit) */
    sigaddset(&sigs, SIGUSR1); /* reopens the access log (logrotate); never the default (exit) */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    if (probe_io_uring() != 0)
        return 1;
    log_shards(&cfg);

    struct server *srv = xcalloc(1, sizeof(*srv));
    srv->cfg = &cfg;
    srv->nshards = cfg.shards;
    srv->admin_fd = -1;
    srv->listen_fds = xcalloc(cfg.shards, sizeof(int));
    srv->tls_listen_fds = xcalloc(cfg.shards, sizeof(int));
    for (unsigned i = 0; i < cfg.shards; i++)
        srv->listen_fds[i] = srv->tls_listen_fds[i] = -1;
    srv->load = xaligned_zalloc(64, sizeof(struct server_load) * cfg.shards);
    srv->shards = xcalloc(cfg.shards, sizeof(struct shard *));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    srv->start_time = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    /* Generated request ids start with these 64 bits: unique across restarts
     * without a syscall per request. Without getrandom, the start time and
     * pid still tell two runs apart. */
    if (getrandom(&srv->id_prefix, sizeof(srv->id_prefix), 0) != (ssize_t)sizeof(srv->id_prefix))
        srv->id_prefix = ((uint64_t)now.tv_sec << 32) ^ (uint64_t)now.tv_nsec ^ ((uint64_t)getpid() << 16);

    int exit_code = 1;
    unsigned started = 0;
    bool store_open_ok = false;
    if (open_store(srv) != 0)
        goto out;
    store_open_ok = true;
    if (cfg.tls_enabled) {
        /* Built and checked before any listener opens: a bad certificate is a start-up error. */
        struct tls_config tc = {.cert_file = cfg.tls_cert,
                                .key_file = cfg.tls_key,
                                .ticket_key_file = cfg.tls_ticket_key_file,
                                .nshards = cfg.shards};
        srv->tls = tls_server_new(&tc, err, sizeof(err));
        if (srv->tls == NULL) {
            log_error("tls_setup_failed", "err=\"%s\"", err);
            goto out;
        }
        srv->ktls_available = tls_probe_ktls();
    }
    if (cfg.access_log != NULL) {
        srv->alog = xcalloc(1, sizeof(*srv->alog));
        if (alog_open(srv->alog, &cfg, cfg.shards, err, sizeof(err)) != 0) {
            log_error("access_log_failed", "err=\"%s\"", err);
            free(srv->alog);
            srv->alog = NULL;
            goto out;
        }
        rc = alog_start(srv->alog);
        if (rc != 0) {
            log_error("thread_failed", "what=access_log err=\"%s\"", strerror(-rc));
            goto out;
        }
        log_info("access_log", "path=\"%s\" sample=%u slow_ms=%u", cfg.access_log, cfg.access_log_sample, cfg.slow_ms);
    }
    int inherited[3];
    if (take_systemd_sockets(srv, &cfg, inherited) != 0 || open_listeners(srv, inherited) != 0)
        goto out;
    /* Before the shards: they acquire the index from their first turn on. */
    rc = store_indexer_start(&srv->indexer, &srv->store, cfg.shards, cfg.refresh_ms,
                             (uint64_t)cfg.index_max_mb << 20);
    if (rc != 0)
        log_warn("store_index_unavailable", "err=\"%s\"", strerror(rc));
    for (unsigned i = 0; i < cfg.shards; i++)
        srv->shards[i] = shard_new(srv, i);
    for (; started < cfg.shards; started++) {
        rc = shard_start(srv->shards[started]);
        if (rc != 0) {
            log_error("thread_failed", "shard=%u err=\"%s\"", started, strerror(-rc));
            atomic_store(&srv->failed, true);
            break;
        }
    }
    if (started < cfg.shards || wait_started(srv) != 0) {
        atomic_store(&srv->draining, true);
        goto join;
    }

    char addr[80] = "none", admin[80] = "", tls[88] = "";
    if (cfg.listen_enabled)
        config_format_addr(&srv->bound, addr, sizeof(addr));
    if (cfg.tls_enabled) {
        strcpy(tls, " tls=");
        config_format_addr(&srv->tls_bound, tls + 5, sizeof(tls) - 5);
    }
    if (cfg.admin_enabled) {
        struct sockaddr_storage a;
        socklen_t l = sizeof(a);
        getsockname(srv->admin_fd, (struct sockaddr *)&a, &l);
        strcpy(admin, " admin=");
        config_format_addr(&a, admin + 7, sizeof(admin) - 7);
    }
    log_info("listening", "addr=%s%s shards=%u%s db=%s", addr, tls, cfg.shards, admin, cfg.db);
    log_info("allocator", "%s", allocator);
    systemd_notify("READY=1");

    for (;;) {
        siginfo_t si;
        int sig;
        if (srv->tls != NULL) {
            /* Ticket-key rotation and freeing replaced contexts are the main thread's, between signals. */
            unsigned ms = tls_server_maintain(srv->tls);
            struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
            sig = sigtimedwait(&sigs, &si, &ts);
        } else {
            sig = sigwaitinfo(&sigs, &si);
        }
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (sig == SIGUSR1) {
            if (srv->alog != NULL)
                alog_reopen(srv->alog); /* the writer reopens and logs it */
            else
                log_info("sigusr1", "%s", "note=\"nothing to reopen without --access-log\"");
        }
        if (sig == SIGHUP) {
            if (srv->tls != NULL)
                tls_server_reload(srv->tls); /* logs the outcome; a failure keeps the old context */
            else
                log_info("sighup", "%s", "note=\"nothing to reload without --tls-listen\"");
        }
    }
    log_info("draining", "drain_grace_ms=%u drain_timeout_ms=%u tcp_migrate_req=%d", cfg.drain_grace_ms,
             cfg.drain_timeout_ms, tcp_migrate_req());
    systemd_notify("STOPPING=1");
    atomic_store(&srv->draining, true);
    wake_shards(srv);
    exit_code = 0;

join:
    for (unsigned i = 0; i < started; i++)
        pthread_join(srv->shards[i]->thread, NULL);
    if (exit_code == 0)
        log_info("stopped", "%s", "");
out:
    for (unsigned i = 0; i < cfg.shards; i++) {
        if (srv->shards[i] != NULL)
            shard_free(srv->shards[i]);
        if (srv->listen_fds[i] >= 0)
            close(srv->listen_fds[i]);
        if (srv->tls_listen_fds[i] >= 0)
            close(srv->tls_listen_fds[i]);
    }
    tls_server_free(srv->tls); /* every shard has ended and freed its connections */
    if (srv->alog != NULL) {
        alog_close(srv->alog); /* every shard has ended: what they published is written */
        free(srv->alog);
    }
    if (srv->admin_fd >= 0)
        close(srv->admin_fd);
    store_indexer_stop(&srv->indexer); /* every shard has ended: nothing holds an index */
    if (store_open_ok)
        store_close(&srv->store);
    free(srv->shards);
    free(srv->load);
    free(srv->listen_fds);
    free(srv->tls_listen_fds);
    free(srv);
    return exit_code;
}
