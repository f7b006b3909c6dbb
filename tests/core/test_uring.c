/* test_uring.c - core/uring.c: one-syscall submit-and-wait, with and without the batching minimum wait. */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/uring.h"

static struct io_uring ring;
static bool min_wait_ok;

static void setup(void)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(8, &ring, &p);
    if (rc == -EINVAL || rc == -ENOSYS || rc == -EPERM)
        cr_skip_test("io_uring with DEFER_TASKRUN is not available here (%s)", strerror(-rc));
    cr_assert_eq(rc, 0);
    min_wait_ok = p.features & URING_FEAT_MIN_TIMEOUT;
}

static void teardown(void)
{
    io_uring_queue_exit(&ring);
}

static void queue_nops(int n, uint64_t first)
{
    for (int i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        cr_assert_not_null(sqe);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, first + (uint64_t)i);
    }
}

/* Reaps every ready CQE; returns how many, checking their user_data run from first. */
static unsigned reap(uint64_t first)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&ring, head, cqe)
    {
        cr_expect_eq(cqe->user_data, first + n);
        n++;
    }
    io_uring_cq_advance(&ring, n);
    return n;
}

Test(uring, submits_queued_sqes_and_returns_with_their_completions, .init = setup, .fini = teardown)
{
    for (unsigned batch_us = 0; batch_us <= 50; batch_us += 50) {
        queue_nops(3, 100);
        int rc = uring_submit_and_wait(&ring, 32, 1000, batch_us, min_wait_ok);
        cr_expect_eq(rc, 3, "submitted count with batch %u us: %d", batch_us, rc);
        cr_expect_eq(reap(100), 3u);
    }
}

Test(uring, times_out_with_nothing_ready, .init = setup, .fini = teardown)
{
    for (unsigned batch_us = 0; batch_us <= 50; batch_us += 50) {
        int rc = uring_submit_and_wait(&ring, 1, 20, batch_us, min_wait_ok);
        cr_expect_eq(rc, -ETIME, "batch %u us: %d", batch_us, rc);
        cr_expect_eq(reap(0), 0u);
    }
}

/* With fewer completions than wait_nr, the minimum wait returns once it has
 * passed and one is ready, instead of sleeping to the full timeout. */
Test(uring, min_wait_returns_with_fewer_than_wait_nr, .init = setup, .fini = teardown)
{
    if (!min_wait_ok)
        cr_skip_test("the kernel lacks IORING_FEAT_MIN_TIMEOUT (Linux 6.12)");
    queue_nops(1, 7);
    uint64_t t0 = clock_now_ms();
    int rc = uring_submit_and_wait(&ring, 32, 10000, 100, true);
    uint64_t took = clock_now_ms() - t0;
    cr_expect_eq(rc, 1);
    cr_expect_eq(reap(7), 1u);
    /* Not a timing assertion on speed: only that it did not wait out the 10 s timeout. */
    cr_expect_lt(took, 5000u, "waited %llu ms for 32 of 1 completions", (unsigned long long)took);
}
