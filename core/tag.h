/* tag.h - what a CQE is about: the io_uring user_data tag and its encode/decode helpers.
 *
 * Every SQE carries a 64-bit user_data that comes back in its CQE. ringd packs
 * the operation kind into the top byte and a pointer or small value below it:
 *
 *   63        56 55                                                    0
 *  +------------+-------------------------------------------------------+
 *  |    kind    |  payload: struct conn * (x86-64/arm64 user pointers    |
 *  |  (8 bits)  |  fit in 48 bits), or a small integer (listener index)  |
 *  +------------+-------------------------------------------------------+
 *
 * Kind 0 is never used, so a zeroed user_data is recognisably bogus.
 * A connection pointer in a tag stays valid because a connection is freed only
 * after every operation that carries it has produced its final CQE
 * (struct conn counts them in _inflight).
 */
#ifndef RINGD_TAG_H
#define RINGD_TAG_H

#include <stdint.h>

enum tag_kind {
    TAG_NONE = 0,
    TAG_ACCEPT = 1,   /* multishot accept; payload: listener index (LISTENER_*) */
    TAG_RECV = 2,     /* multishot recv; payload: struct conn * */
    TAG_SEND = 3,     /* send of a connection's output; payload: struct conn * */
    TAG_SHUTDOWN = 4, /* shutdown(SHUT_WR) before a lingering close; payload: struct conn * */
    TAG_IGNORE = 5,   /* fire-and-forget (close of a freed conn's fd, cancels); payload unused */
    TAG_HANDOFF = 6,  /* MSG_RING from another shard: res is an accepted fd; payload: listener index */
    TAG_HANDOFF_SENT = 7, /* our MSG_RING completed; payload: listener kind << 48 | target shard << 32 | fd */
    TAG_WAKE = 8,         /* MSG_RING from the main thread: look at the process flags (drain) now */
    TAG_WAKEUP = 9,       /* the shard's own timeout (the timer wheel's next deadline); payload: generation */
};

#define TAG_KIND_SHIFT 56
#define TAG_PAYLOAD_MASK ((UINT64_C(1) << TAG_KIND_SHIFT) - 1)

static inline uint64_t tag_make(enum tag_kind kind, uint64_t payload)
{
    return ((uint64_t)kind << TAG_KIND_SHIFT) | (payload & TAG_PAYLOAD_MASK);
}

static inline uint64_t tag_make_ptr(enum tag_kind kind, const void *p)
{
    return tag_make(kind, (uint64_t)(uintptr_t)p);
}

static inline enum tag_kind tag_kind(uint64_t tag)
{
    return (enum tag_kind)(tag >> TAG_KIND_SHIFT);
}

static inline uint64_t tag_payload(uint64_t tag)
{
    return tag & TAG_PAYLOAD_MASK;
}

static inline void *tag_ptr(uint64_t tag)
{
    return (void *)(uintptr_t)tag_payload(tag);
}

#endif
