/* access_log.c - the access log's rings, its writer thread and its JSON lines (see access_log.h). */
#include "core/access_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"

#define ALOG_BATCH 1024 /* entries the writer takes from one ring before it writes */
#define ALOG_IDLE_MS 5  /* the writer's sleep when every ring was empty */
#define ALOG_FLUSH_AT (256u * 1024)

static int open_file(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int alog_open(struct alog *a, const struct config *cfg, unsigned nshards, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    a->path = cfg->access_log;
    a->sample = cfg->access_log_sample > 0 ? cfg->access_log_sample : 1;
    a->slow_ns = (uint64_t)cfg->slow_ms * 1000000u;
    if (strcmp(a->path, "-") == 0) {
        a->fd = STDOUT_FILENO;
    } else {
        a->fd = open_file(a->path);
        if (a->fd < 0) {
            snprintf(err, errlen, "--access-log %s: %s", a->path, strerror(errno));
            return -1;
        }
    }
    uint64_t cap = ALOG_RING_ENTRIES;
    const char *t = getenv("RINGD_TEST_ACCESS_LOG_RING");
    if (t != NULL && atoi(t) >= 2) {
        cap = 2;
        while (cap < (uint64_t)atoi(t))
            cap <<= 1;
    }
    a->pause_file = getenv("RINGD_TEST_ACCESS_LOG_PAUSE");
    if (a->pause_file != NULL && a->pause_file[0] == '\0')
        a->pause_file = NULL;
    a->nrings = nshards;
    a->rings = xaligned_zalloc(64, sizeof(struct alog_ring) * nshards);
    for (unsigned i = 0; i < nshards; i++) {
        a->rings[i].cap = cap;
        a->rings[i].e = xcalloc(cap, sizeof(struct alog_entry));
    }
    return 0;
}

void alog_publish(struct alog_ring *r, uint64_t now_ns, uint64_t wall_us, uint64_t slow_ns)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t mask = r->cap - 1, w = tail;
    for (uint64_t i = tail; i != r->staged; i++) {
        struct alog_entry *e = &r->e[i & mask];
        uint64_t ns = now_ns - e->start_ns;
        if (!e->keep && (slow_ns == 0 || ns < slow_ns))
            continue; /* sampled out, and not slow */
        e->dur_us = ns / 1000u;
        e->time_us = wall_us - e->dur_us;
        if (w != i)
            r->e[w & mask] = *e;
        w++;
    }
    r->staged = w;
    atomic_store_explicit(&r->tail, w, memory_order_release);
}

/* ---------- JSON ---------- */

void alog_json_escape(struct buf *out, const char *v, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    buf_reserve(out, n * 6);
    char *p = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else if (c >= 0x20 && c < 0x7f) {
            *p++ = (char)c;
        } else {
            memcpy(p, "\\u00", 4);
            p[4] = hex[c >> 4];
            p[5] = hex[c & 15];
            p += 6;
        }
    }
    out->len = (size_t)(p - out->data);
}

static const char *const proto_names[] = {"http/1.1", "h2", "http/1.1", "h2"};

void alog_format(struct buf *out, const struct alog_entry *e)
{
    time_t sec = (time_t)(e->time_us / 1000000u);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char remote[INET6_ADDRSTRLEN + 8] = "";
    if (e->family == AF_INET || e->family == AF_INET6) {
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(e->family, e->addr, ip, sizeof(ip));
        snprintf(remote, sizeof(remote), e->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, (unsigned)e->port);
    }
    buf_printf(out,
               "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06uZ\",\"shard\":%u,\"remote\":\"%s\",\"protocol\":\"%s\","
               "\"tls\":%s,\"method\":\"",
               tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(e->time_us % 1000000u),
               (unsigned)e->shard, remote, proto_names[e->proto < PROTO__COUNT ? e->proto : 0],
               e->proto >= PROTO_TLS_OFFSET ? "true" : "false");
    alog_json_escape(out, e->method, e->method_len);
    buf_append(out, "\",\"path\":\"", 10);
    alog_json_escape(out, e->path, e->path_len);
    buf_printf(out, "\",%s\"status\":%u,\"bytes\":%llu,\"duration_us\":%llu,\"request_id\":\"",
               e->path_truncated ? "\"path_truncated\":true," : "", (unsigned)e->status, (unsigned long long)e->bytes,
               (unsigned long long)e->dur_us);
    alog_json_escape(out, e->rid, e->rid_len);
    buf_append(out, "\",\"user_id\":", 12);
    if (e->user_id != 0)
        buf_append_u64(out, e->user_id);
    else
        buf_append(out, "null", 4);
    buf_append(out, ",\"trace_id\":", 12);
    if (e->has_trace) {
        buf_append(out, "\"", 1);
        alog_json_escape(out, e->trace, sizeof(e->trace));
        buf_append(out, "\"}\n", 3);
    } else {
        buf_append(out, "null}\n", 6);
    }
}

/* ---------- the writer ---------- */

static void write_out(struct alog *a)
{
    size_t off = 0;
    while (off < a->out.len) {
        ssize_t n = write(a->fd, a->out.data + off, a->out.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* A full disk must not stop the writer (the rings would fill and
             * drop anyway): the batch is lost, counted and logged once per streak. */
            if (atomic_fetch_add_explicit(&a->write_errors, 1, memory_order_relaxed) == 0 || errno != ENOSPC)
                log_error("access_log_write_failed", "path=\"%s\" err=\"%s\"", a->path, strerror(errno));
            break;
        }
        off += (size_t)n;
    }
    a->out.len = 0;
}

static void reopen_file(struct alog *a)
{
    if (a->fd == STDOUT_FILENO)
        return;
    int fd = open_file(a->path);
    if (fd < 0) {
        log_error("access_log_reopen_failed", "path=\"%s\" err=\"%s\"", a->path, strerror(errno));
        return; /* keep writing to the old file */
    }
    close(a->fd);
    a->fd = fd;
    log_info("access_log_reopened", "path=\"%s\"", a->path);
}

/* Formats up to ALOG_BATCH published entries of r into a->out. Returns how many. */
static size_t drain(struct alog *a, struct alog_ring *r)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    size_t n = 0;
    for (; head != tail && n < ALOG_BATCH; head++, n++)
        alog_format(&a->out, &r->e[head & (r->cap - 1)]);
    /* The slots are read: the shard may reuse them. */
    atomic_store_explicit(&r->head, head, memory_order_release);
    return n;
}

static void *writer(void *arg)
{
    struct alog *a = arg;
    for (;;) {
        bool stopping = atomic_load_explicit(&a->stop, memory_order_acquire);
        if (atomic_exchange_explicit(&a->reopen, false, memory_order_acq_rel))
            reopen_file(a);
        size_t n = 0;
        bool paused = a->pause_file != NULL && !stopping && access(a->pause_file, F_OK) == 0;
        if (!paused) {
            for (unsigned i = 0; i < a->nrings; i++) {
                n += drain(a, &a->rings[i]);
                if (a->out.len >= ALOG_FLUSH_AT)
                    write_out(a);
            }
            if (a->out.len > 0)
                write_out(a);
            atomic_fetch_add_explicit(&a->written, n, memory_order_relaxed);
        }
        if (stopping && n == 0)
            return NULL;
        if (n == 0) {
            struct timespec ts = {0, ALOG_IDLE_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

int alog_start(struct alog *a)
{
    int rc = pthread_create(&a->thread, NULL, writer, a);
    if (rc != 0)
        return -rc;
    a->started = true;
    return 0;
}

void alog_reopen(struct alog *a)
{
    atomic_store_explicit(&a->reopen, true, memory_order_release);
}

void alog_close(struct alog *a)
{
    if (a->started) {
        atomic_store_explicit(&a->stop, true, memory_order_release);
        pthread_join(a->thread, NULL);
    }
    if (a->fd >= 0 && a->fd != STDOUT_FILENO)
        close(a->fd);
    a->fd = -1;
    for (unsigned i = 0; i < a->nrings; i++)
        free(a->rings[i].e);
    free(a->rings);
    a->rings = NULL;
    buf_free(&a->out);
}
