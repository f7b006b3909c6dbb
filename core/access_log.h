/* access_log.h - the access log (--access-log): one JSON line per logged request, written by one thread, never by a shard.
 *
 * Each shard appends fixed-size entries to its own bounded ring and never
 * waits, locks or makes a syscall for it; one writer thread drains every ring
 * in batches, formats the JSON (escaping is done there, off the request
 * path) and writes each batch with one write(2).
 *
 *     shard (producer)                          writer (consumer)
 *     stage: fill e[staged], staged++           h = head; t = tail (acquire)
 *     ... the rest of the turn ...              format e[h..t), head = t (release)
 *     publish (once a turn, at the latency      write(2) the batch
 *     clock read): durations filled in,
 *     unsampled entries of a fast turn
 *     compacted away, tail = staged (release)
 *
 * A full ring drops the entry and the shard counts it
 * (ringd_access_log_dropped_total); the writer catches up on its own. Entries
 * carry their turn's start, so a request's duration is what the latency
 * histogram observes (from the turn that read its last bytes to its answer
 * handed to the kernel), and a request is "slow" (--slow-ms, always logged
 * like errors) when its turn was.
 */
#ifndef RINGD_ACCESS_LOG_H
#define RINGD_ACCESS_LOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct config;

#define ALOG_PATH_MAX 256      /* longest path kept (longer: cut, "path_truncated":true) */
#define ALOG_METHOD_MAX 16     /* longest method kept */
#define ALOG_RING_ENTRIES 4096 /* per shard, a power of two (test hook: RINGD_TEST_ACCESS_LOG_RING) */

/* One logged request, written by its shard, read by the writer. */
struct alog_entry {
    uint64_t start_ns; /* CLOCK_MONOTONIC start of the turn that answered it */
    uint64_t time_us;  /* Unix time of that start, µs (publish) */
    uint64_t dur_us;   /* (publish) */
    uint64_t user_id;  /* 0: none looked up */
    uint64_t bytes;    /* response body bytes */
    uint16_t status;
    uint16_t shard;
    uint16_t path_len;
    uint16_t port;  /* the client's, host order */
    uint8_t proto;  /* enum metrics_proto */
    uint8_t family; /* AF_INET, AF_INET6, 0: unknown */
    uint8_t method_len, rid_len;
    bool keep;           /* sampled or an error: logged whatever the turn's duration */
    bool path_truncated; /* the path was longer than ALOG_PATH_MAX */
    bool has_trace;
    uint8_t addr[16];
    char method[ALOG_METHOD_MAX];
    char rid[64];
    char trace[32]; /* trace-id of a valid traceparent */
    char path[ALOG_PATH_MAX];
};

/* One shard's ring. head is the writer's, tail and everything below it the shard's. */
struct alog_ring {
    _Alignas(64) _Atomic uint64_t head; /* entries below it were read by the writer */
    _Alignas(64) _Atomic uint64_t tail; /* entries below it are complete (published) */
    uint64_t staged;                    /* shard only: entries written, published at the end of the turn */
    uint64_t head_seen;                 /* shard only: the last head it loaded */
    uint64_t cap;                       /* a power of two */
    struct alog_entry *e;
};

/* The access log of the process: settings, rings and the writer thread. */
struct alog {
    const char *path; /* "-": standard output (not reopened) */
    int fd;
    unsigned sample;  /* log 1 request in sample (errors and slow ones always) */
    uint64_t slow_ns; /* 0: no slow rule */
    unsigned nrings;
    struct alog_ring *rings;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    atomic_bool reopen;
    const char *pause_file;       /* test hook (RINGD_TEST_ACCESS_LOG_PAUSE): while this file exists, the writer reads nothing */
    atomic_uint_fast64_t written; /* lines written */
    atomic_uint_fast64_t write_errors;
    struct buf out; /* writer only */
};

/* Opens cfg->access_log (append, created 0640) and makes nshards rings.
 * Returns 0, or -1 with err filled (a start-up error). */
int alog_open(struct alog *a, const struct config *cfg, unsigned nshards, char *err, size_t errlen);

/* Starts the writer thread. Returns 0 or -errno. */
int alog_start(struct alog *a);

/* Asks the writer to reopen the file (SIGUSR1, after logrotate renamed it); async-signal-safe. */
void alog_reopen(struct alog *a);

/* Stops the writer after it wrote everything published (call once the
 * shards have stopped), closes the file and frees the rings. */
void alog_close(struct alog *a);

/* The slot for the next entry of r, or NULL when r is full (owner shard only).
 * Fill it, then alog_commit. */
static inline struct alog_entry *alog_slot(struct alog_ring *r)
{
    if (r->staged - r->head_seen >= r->cap) {
        r->head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
        if (r->staged - r->head_seen >= r->cap)
            return NULL;
    }
    return &r->e[r->staged & (r->cap - 1)];
}

static inline void alog_commit(struct alog_ring *r)
{
    r->staged++;
}

/* Whether entries wait for alog_publish. */
static inline bool alog_pending(const struct alog_ring *r)
{
    return r->staged != atomic_load_explicit(&r->tail, memory_order_relaxed);
}

/* End of the shard's turn: fills durations (now_ns - start) and times
 * (wall_us: Unix µs at now_ns), drops entries that are neither kept nor
 * slow (slow_ns, 0: none are), and publishes the rest to the writer. */
void alog_publish(struct alog_ring *r, uint64_t now_ns, uint64_t wall_us, uint64_t slow_ns);

/* Appends e as one JSON object and a newline to out. Every byte of the
 * path, method and request id is escaped so that the line is valid JSON
 * (and plain ASCII) whatever the client sent. */
void alog_format(struct buf *out, const struct alog_entry *e);

/* Appends v[0..n) as the inside of a JSON string: '"' and '\\' escaped,
 * controls, DEL and every octet above 0x7f as \u00XX (octets read as Latin-1). */
void alog_json_escape(struct buf *out, const char *v, size_t n);

#endif
