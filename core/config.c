/* config.c - parsing of `ringd serve` flags and their environment equivalents. */
#include "core/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char config_serve_usage[] =
    "usage: ringd serve [options]\n"
    "  --listen ADDR:PORT|none    cleartext listener (RINGD_LISTEN, default 0.0.0.0:8080; port 0 picks one;\n"
    "                             none: no cleartext port, with --tls-listen)\n"
    "  --tls-listen ADDR:PORT     HTTPS listener, HTTP/1.1 and HTTP/2 by ALPN (RINGD_TLS_LISTEN; needs\n"
    "                             --tls-cert and --tls-key; SIGHUP reloads both)\n"
    "  --tls-cert FILE            PEM certificate chain, leaf first (RINGD_TLS_CERT)\n"
    "  --tls-key FILE             PEM private key, ECDSA P-256/P-384 or RSA (RINGD_TLS_KEY)\n"
    "  --tls-ticket-key-file FILE session ticket keys shared by instances: 80-byte keys, the first\n"
    "                             encrypts (RINGD_TLS_TICKET_KEY_FILE; default: random, rotated hourly)\n"
    "  --db DIR                   LMDB user database, which must exist (RINGD_DB; make one with\n"
    "                             ringd demo or ringd import). Without --db: ./ringd-data, created\n"
    "                             with 100,000 demo users when missing\n"
    "  --shards N                 reactor threads, one per CPU (RINGD_SHARDS, default: the CPUs of the\n"
    "                             affinity mask, capped by the cgroup v2 cpu.max quota, rounded up)\n"
    "  --admin-listen ADDR:PORT   serve /metrics only here (RINGD_ADMIN_LISTEN)\n"
    "  --reuse-port-join          share the port with the ringd already listening there, for a\n"
    "                             zero-downtime handover (RINGD_REUSE_PORT_JOIN=1); without it a\n"
    "                             port in use is an error\n"
    "  --max-conns N              open connections in total (RINGD_MAX_CONNS, default 10000)\n"
    "  --header-timeout-ms N      time to receive a request head (RINGD_HEADER_TIMEOUT_MS, default 10000)\n"
    "  --idle-timeout-ms N        keep-alive idle time (RINGD_IDLE_TIMEOUT_MS, default 60000)\n"
    "  --write-timeout-ms N       stalled write limit (RINGD_WRITE_TIMEOUT_MS, default 30000)\n"
    "  --drain-grace-ms N         after SIGTERM, /readyz answers 503 but the listeners still accept for N ms\n"
    "                             (for load balancers and a --reuse-port-join successor to take over),\n"
    "                             then close once their queues are empty (RINGD_DRAIN_GRACE_MS, default 0)\n"
    "  --drain-timeout-ms N       time in-flight requests get once the listeners closed\n"
    "                             (RINGD_DRAIN_TIMEOUT_MS, default 5000)\n"
    "  --refresh-ms N             read-transaction renew interval (RINGD_REFRESH_MS, default 50)\n"
    "  --h2-max-streams N         HTTP/2 MAX_CONCURRENT_STREAMS (RINGD_H2_MAX_STREAMS, default 100)\n"
    "  --paused-budget-mb N       memory connections paused for backpressure (clients not reading their\n"
    "                             answers) may hold in total; past it the longest paused are closed\n"
    "                             (RINGD_PAUSED_BUDGET_MB, default 64)\n"
    "  --batch-wait-us N          a busy shard waits up to N us to gather completions per wakeup\n"
    "                             (RINGD_BATCH_WAIT_US, default 0 = off; 0: wake per completion; Linux 6.12+)\n"
    "  --index-max-mb N           memory the in-memory id index may take (RINGD_INDEX_MAX_MB, default 1024;\n"
    "                             0 = off: every lookup walks the LMDB B-tree)\n"
    "  --max-feed-lag-ms N        /readyz answers 503 while the store is more than N ms behind the\n"
    "                             `ringd follow` feed's source, or has no feed (RINGD_MAX_FEED_LAG_MS, default 0 = off)\n"
    "  --access-log PATH|-        one JSON line per request, written by a background thread; shards\n"
    "                             never wait for it (RINGD_ACCESS_LOG, default off; -: standard output;\n"
    "                             SIGUSR1 reopens PATH after a rotation)\n"
    "  --access-log-sample N      log one request in N; errors (4xx, 5xx) and slow requests always\n"
    "                             (RINGD_ACCESS_LOG_SAMPLE, default 1)\n"
    "  --slow-ms N                requests slower than N ms are always logged (RINGD_SLOW_MS, default 100;\n"
    "                             0: no such rule)\n"
    "  -h, --help                 this text\n";

int config_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 2] = "0.0.0.0";
    const char *port_s;
    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
            return -1;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        port_s = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon != NULL) {
            if ((size_t)(colon - s) >= sizeof(host))
                return -1;
            if (colon != s) {
                memcpy(host, s, (size_t)(colon - s));
                host[colon - s] = '\0';
            }
            port_s = colon + 1;
        } else {
            port_s = s;
        }
    }
    char *end;
    errno = 0;
    if (*port_s < '0' || *port_s > '9')
        return -1;
    unsigned long port = strtoul(port_s, &end, 10);
    if (*end != '\0' || errno != 0 || port > 65535)
        return -1;
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*in6);
        return 0;
    }
    return -1;
}

void config_format_addr(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, ntohs(in4->sin_port));
    }
}

enum opt_kind { OPT_ADDR, OPT_ADMIN_ADDR, OPT_TLS_ADDR, OPT_STR, OPT_UINT, OPT_BOOL /* a flag alone; VAR=1|0 */ };

struct opt {
    const char *flag;
    const char *env;
    enum opt_kind kind;
    size_t offset;
    unsigned min, max;
};

#define OFF(f) offsetof(struct config, f)

static const struct opt opts[] = {
    {"--listen", "RINGD_LISTEN", OPT_ADDR, OFF(listen_addr), 0, 0},
    {"--admin-listen", "RINGD_ADMIN_LISTEN", OPT_ADMIN_ADDR, OFF(admin_addr), 0, 0},
    {"--tls-listen", "RINGD_TLS_LISTEN", OPT_TLS_ADDR, OFF(tls_addr), 0, 0},
    {"--tls-cert", "RINGD_TLS_CERT", OPT_STR, OFF(tls_cert), 0, 0},
    {"--tls-key", "RINGD_TLS_KEY", OPT_STR, OFF(tls_key), 0, 0},
    {"--tls-ticket-key-file", "RINGD_TLS_TICKET_KEY_FILE", OPT_STR, OFF(tls_ticket_key_file), 0, 0},
    {"--db", "RINGD_DB", OPT_STR, OFF(db), 0, 0},
    {"--shards", "RINGD_SHARDS", OPT_UINT, OFF(shards), 1, CONFIG_MAX_SHARDS},
    {"--max-conns", "RINGD_MAX_CONNS", OPT_UINT, OFF(max_conns), 1, 1000000},
    {"--header-timeout-ms", "RINGD_HEADER_TIMEOUT_MS", OPT_UINT, OFF(header_timeout_ms), 10, 3600000},
    {"--idle-timeout-ms", "RINGD_IDLE_TIMEOUT_MS", OPT_UINT, OFF(idle_timeout_ms), 10, 86400000},
    {"--write-timeout-ms", "RINGD_WRITE_TIMEOUT_MS", OPT_UINT, OFF(write_timeout_ms), 10, 3600000},
    {"--drain-timeout-ms", "RINGD_DRAIN_TIMEOUT_MS", OPT_UINT, OFF(drain_timeout_ms), 0, 3600000},
    {"--drain-grace-ms", "RINGD_DRAIN_GRACE_MS", OPT_UINT, OFF(drain_grace_ms), 0, 3600000},
    {"--refresh-ms", "RINGD_REFRESH_MS", OPT_UINT, OFF(refresh_ms), 1, 60000},
    {"--h2-max-streams", "RINGD_H2_MAX_STREAMS", OPT_UINT, OFF(h2_max_streams), 1, 10000},
    {"--paused-budget-mb", "RINGD_PAUSED_BUDGET_MB", OPT_UINT, OFF(paused_budget_mb), 1, 1048576},
    {"--batch-wait-us", "RINGD_BATCH_WAIT_US", OPT_UINT, OFF(batch_wait_us), 0, 10000},
    {"--index-max-mb", "RINGD_INDEX_MAX_MB", OPT_UINT, OFF(index_max_mb), 0, 1048576},
    {"--reuse-port-join", "RINGD_REUSE_PORT_JOIN", OPT_BOOL, OFF(reuse_port_join), 0, 0},
    {"--max-feed-lag-ms", "RINGD_MAX_FEED_LAG_MS", OPT_UINT, OFF(max_feed_lag_ms), 0, 86400000},
    {"--access-log", "RINGD_ACCESS_LOG", OPT_STR, OFF(access_log), 0, 0},
    {"--access-log-sample", "RINGD_ACCESS_LOG_SAMPLE", OPT_UINT, OFF(access_log_sample), 1, 1000000000},
    {"--slow-ms", "RINGD_SLOW_MS", OPT_UINT, OFF(slow_ms), 0, 3600000},
};

static int apply(struct config *c, const struct opt *o, const char *value, const char *src, char *err, size_t errlen)
{
    char *base = (char *)c;
    switch (o->kind) {
    case OPT_ADDR:
        if (strcmp(value, "none") == 0) {
            c->listen_enabled = false;
            return 0;
        }
        if (config_parse_addr(value, &c->listen_addr, &c->listen_len) != 0)
            goto bad;
        c->listen_enabled = true;
        return 0;
    case OPT_TLS_ADDR:
        if (config_parse_addr(value, &c->tls_addr, &c->tls_len) != 0)
            goto bad;
        c->tls_enabled = true;
        return 0;
    case OPT_ADMIN_ADDR:
        if (config_parse_addr(value, &c->admin_addr, &c->admin_len) != 0)
            goto bad;
        c->admin_enabled = true;
        return 0;
    case OPT_STR:
        if (value[0] == '\0')
            goto bad;
        *(const char **)(base + o->offset) = value;
        if (o->offset == OFF(db))
            c->db_is_default = false;
        return 0;
    case OPT_UINT: {
        char *end;
        errno = 0;
        unsigned long v = strtoul(value, &end, 10);
        if (value[0] < '0' || value[0] > '9' || *end != '\0' || errno != 0 || v < o->min || v > o->max) {
            snprintf(err, errlen, "%s: '%s' is not an integer from %u to %u", src, value, o->min, o->max);
            return -1;
        }
        *(unsigned *)(base + o->offset) = (unsigned)v;
        if (o->offset == OFF(shards))
            c->shards_given = true;
        return 0;
    }
    case OPT_BOOL:
        if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0)
            *(bool *)(base + o->offset) = true;
        else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0 || strcmp(value, "no") == 0)
            *(bool *)(base + o->offset) = false;
        else
            goto bad;
        return 0;
    }
bad:
    snprintf(err, errlen, "%s: bad value '%s'", src, value);
    return -1;
}

int config_parse_serve(struct config *c, int argc, char **argv, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    config_parse_addr("0.0.0.0:8080", &c->listen_addr, &c->listen_len);
    c->listen_enabled = true;
    c->db = "./ringd-data";
    c->db_is_default = true;
    /* A container's share, not the host's: the affinity mask (cpuset), capped by the CFS quota (cpu.max). */
    cpus_detect(&c->cpus);
    c->shards = c->cpus.count;
    if (c->shards > CONFIG_MAX_SHARDS)
        c->shards = CONFIG_MAX_SHARDS;
    c->max_conns = 10000;
    c->header_timeout_ms = 10000;
    c->idle_timeout_ms = 60000;
    c->write_timeout_ms = 30000;
    c->drain_timeout_ms = 5000;
    c->refresh_ms = 50;
    c->h2_max_streams = 100;
    c->paused_budget_mb = 64;
    c->batch_wait_us = 0;
    c->index_max_mb = 1024;
    c->access_log_sample = 1;
    c->slow_ms = 100;

    const size_t nopts = sizeof(opts) / sizeof(opts[0]);
    for (size_t i = 0; i < nopts; i++) {
        const char *v = getenv(opts[i].env);
        if (v != NULL && v[0] != '\0' && apply(c, &opts[i], v, opts[i].env, err, errlen) != 0)
            return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(config_serve_usage, stdout);
            return 1;
        }
        const struct opt *o = NULL;
        const char *value = NULL;
        for (size_t k = 0; k < nopts && o == NULL; k++) {
            size_t fl = strlen(opts[k].flag);
            if (strcmp(arg, opts[k].flag) == 0 && opts[k].kind == OPT_BOOL) {
                o = &opts[k];
                value = "1";
            } else if (strcmp(arg, opts[k].flag) == 0) {
                o = &opts[k];
                if (i + 1 >= argc) {
                    snprintf(err, errlen, "%s needs a value", arg);
                    return -1;
                }
                value = argv[++i];
            } else if (strncmp(arg, opts[k].flag, fl) == 0 && arg[fl] == '=') {
                o = &opts[k];
                value = arg + fl + 1;
            }
        }
        if (o == NULL) {
            snprintf(err, errlen, "unknown option '%s' (see ringd serve --help)", arg);
            return -1;
        }
        if (apply(c, o, value, o->flag, err, errlen) != 0)
            return -1;
    }
    if (c->tls_enabled && (c->tls_cert == NULL || c->tls_key == NULL)) {
        snprintf(err, errlen, "--tls-listen needs --tls-cert and --tls-key");
        return -1;
    }
    if (!c->tls_enabled && (c->tls_cert != NULL || c->tls_key != NULL || c->tls_ticket_key_file != NULL)) {
        snprintf(err, errlen, "--tls-cert, --tls-key and --tls-ticket-key-file need --tls-listen");
        return -1;
    }
    if (!c->listen_enabled && !c->tls_enabled) {
        snprintf(err, errlen, "--listen none needs --tls-listen: nothing would be served");
        return -1;
    }
    return 0;
}
