/* trace.h - request ids (x-request-id) and W3C trace context (traceparent): checking what a client sent, generating ids.
 *
 * A request id a client sends is kept when it is 1..TRACE_ID_MAX octets of
 * [A-Za-z0-9._-]; anything else (absent, empty, too long, another octet) is
 * replaced by a generated one. Generated ids are TRACE_GEN_LEN characters:
 *
 *     rrrrrrrrrrrrrrrr-ss-cccccccccccc
 *     |                |  `- per-shard counter, 12 hex digits, incremented in place
 *     |                `---- shard number, 2 hex digits
 *     `--------------------- 64 random bits read once per process (getrandom)
 *
 * so ids are unique across shards (the shard field) and restarts (the random
 * prefix), and making one costs a few instructions: the counter is kept as
 * text and incremented like an odometer, no formatting, no syscall.
 */
#ifndef RINGD_TRACE_H
#define RINGD_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACE_ID_MAX 64      /* longest request id accepted from a client */
#define TRACE_GEN_LEN 32     /* length of a generated id */
#define TRACE_PARENT_LEN 55  /* "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>" */
#define TRACE_PARENT_MAX 128 /* longest traceparent of a future version we echo */
#define TRACE_TRACE_ID_LEN 32

/* One shard's id generator (owner thread only). */
struct trace_idgen {
    char id[TRACE_GEN_LEN];
};

/* Sets g up for shard (its low 8 bits name it) with the process's random prefix; the counter starts at 0. */
void trace_idgen_init(struct trace_idgen *g, uint64_t prefix, unsigned shard);

/* The next id: g->id, TRACE_GEN_LEN characters (not NUL-terminated), valid
 * until the next call. The counter wraps after 2^48 ids of one shard. */
static inline const char *trace_idgen_next(struct trace_idgen *g)
{
    char *p = g->id + TRACE_GEN_LEN - 1;
    for (;;) {
        char c = *p;
        if (c == '9') {
            *p = 'a';
            break;
        }
        if (c != 'f') {
            *p = (char)(c + 1);
            break;
        }
        *p = '0';
        if (p == g->id + TRACE_GEN_LEN - 12)
            break; /* wrapped */
        p--;
    }
    return g->id;
}

/* Whether v[0..n) may be used as a request id as it is (1..TRACE_ID_MAX of [A-Za-z0-9._-]). */
bool trace_request_id_ok(const char *v, size_t n);

/* Whether v[0..n) is a traceparent we accept (W3C Trace Context, level 1):
 * version, trace-id, parent-id and flags in lower-case hex separated by '-';
 * version ff is invalid; an all-zero trace-id or parent-id is invalid;
 * version 00 is exactly TRACE_PARENT_LEN octets; a later version may carry
 * more after a '-' (up to TRACE_PARENT_MAX). Its trace-id is v + 3. */
bool trace_parent_ok(const char *v, size_t n);

#endif
