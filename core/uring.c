/* uring.c - submit-and-wait with IORING_ENTER_EXT_ARG built by hand, so the kernel's min_wait_usec can be used. */
#include "core/uring.h"

#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Publishes the SQEs queued with io_uring_get_sqe to the kernel: exactly what
 * liburing 2.3 does inside io_uring_submit (not exported). The release store
 * orders the SQE contents before the new tail the kernel reads. Returns how
 * many SQEs the kernel has yet to consume. */
static unsigned flush_sq(struct io_uring *ring)
{
    struct io_uring_sq *sq = &ring->sq;
    unsigned tail = sq->sqe_tail;
    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        io_uring_smp_store_release(sq->ktail, tail);
    }
    return tail - IO_URING_READ_ONCE(*sq->khead);
}

int uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr, unsigned timeout_ms, unsigned min_wait_us,
                          bool min_wait_ok)
{
    if (timeout_ms == URING_WAIT_FOREVER && (min_wait_us == 0 || !min_wait_ok))
        return io_uring_submit_and_wait(ring, 1);
    if (timeout_ms == URING_WAIT_FOREVER)
        timeout_ms = 1000; /* min_wait_usec needs an overall timeout */
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    if (min_wait_us == 0 || !min_wait_ok) {
        struct io_uring_cqe *cqe;
        return io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
    }
    struct io_uring_getevents_arg arg = {
        .sigmask = 0,
        .sigmask_sz = _NSIG / 8,
        .pad = min_wait_us, /* min_wait_usec since Linux 6.12 */
        .ts = (__u64)(uintptr_t)&ts,
    };
    unsigned submit = flush_sq(ring);
    /* A registered ring fd (io_uring_register_ring_fd) spares the kernel the
     * file lookup of every enter; liburing's own calls use it the same way. */
    unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
    if (ring->enter_ring_fd != ring->ring_fd)
        flags |= IORING_ENTER_REGISTERED_RING;
    long rc = syscall(__NR_io_uring_enter, ring->enter_ring_fd, submit, wait_nr, flags, &arg, sizeof(arg));
    return rc < 0 ? -errno : (int)rc;
}
