/* uring.h - io_uring helpers liburing 2.3 lacks: one-syscall submit-and-wait with a batching minimum wait. */
#ifndef RINGD_URING_H
#define RINGD_URING_H

#include <liburing.h>
#include <stdbool.h>

/* IORING_FEAT_MIN_TIMEOUT (Linux 6.12): io_uring_getevents_arg's former pad
 * field is min_wait_usec. liburing 2.3's headers predate it. */
#define URING_FEAT_MIN_TIMEOUT (1U << 15)

/* timeout_ms for uring_submit_and_wait: no timeout, wait for a completion
 * (the caller keeps a timeout SQE of its own in the ring). */
#define URING_WAIT_FOREVER ((unsigned)-1)

/* Submits every queued SQE and waits, in one io_uring_enter, until wait_nr
 * completions are ready or timeout_ms passes (URING_WAIT_FOREVER: until one
 * completion is ready; without min_wait_us only). With min_wait_us > 0 (and
 * min_wait_ok, the kernel's URING_FEAT_MIN_TIMEOUT) it returns as soon as
 * min_wait_us have passed with at least one completion ready: a busy shard
 * gathers a batch per wakeup, an idle one still answers its first request
 * without delay. Returns the number submitted, or -errno (-ETIME when the
 * timeout passed with nothing ready, -EINTR). */
int uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr, unsigned timeout_ms, unsigned min_wait_us,
                          bool min_wait_ok);

#endif
