/* shard.c - the per-core reactor: ring set-up, the loop, accept/recv/send/close, timers, drain.
 *
 * One loop turn: observe the latency of last turn's answers, submit every
 * queued SQE and wait for at least one CQE in a single io_uring_enter
 * (uring_submit_and_wait, core/uring.c), then drain all CQEs, dispatching on the
 * user_data tag (core/tag.h), give the recv buffers back to the buffer ring,
 * queue one send per connection with output, run due timers, renew the LMDB
 * read transaction when due. Under load that is one syscall per turn.
 *
 * Connection lifetime: every SQE that names a connection counts in
 * c->_inflight; the connection is freed only when it is closing and that count
 * is zero, i.e. after the kernel has posted the last CQE that could name it.
 */
#include "core/shard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/access_log.h"
#include "core/alloc.h"
#include "core/cpus.h"
#include "core/log.h"
#include "core/server.h"
#include "core/tag.h"
#include "core/uring.h"
#include "net/conn.h"
#include "net/h1.h"
#include "net/h2.h"
#include "net/router.h"
#include "net/tls.h"

#define SHARD_SQ_ENTRIES 4096
#define SHARD_CQ_ENTRIES 65536 /* room for a completion per connection and more: no overflow */
#define ACCEPT_RETRY_MS 100
#define IDLE_WAIT_MS 1000 /* nothing due: the drain wakes shards over MSG_RING */
#define SEND_BUF_KEEP (64u * 1024) /* larger send buffers are freed once sent */
/* Completions a busy shard gathers per wakeup (with --batch-wait-us). */
#define SHARD_BATCH 32
#define READER_CHECK_MS 10000 /* how often shard 0 clears stale LMDB reader slots */
#define FEED_CHECK_MS 200      /* how often a shard reads the feed's state (/readyz, /metrics): a few syscalls */
#define SHARD_PREFETCH 32      /* lookups a turn prefetches at most */

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---------- SQE helpers ---------- */

/* An SQE, submitting queued ones first when the SQ is full (rare: a burst of
 * more than SHARD_SQ_ENTRIES operations in one turn). */
static struct io_uring_sqe *get_sqe(struct shard *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    while (sqe == NULL) {
        io_uring_submit(&s->ring);
        METRIC_INC(s->metrics->uring_submits);
        sqe = io_uring_get_sqe(&s->ring);
    }
    return sqe;
}

static void arm_accept(struct shard *s, enum listener_kind kind)
{
    if (s->listen_fd[kind] < 0 || s->accept_armed[kind] || s->draining)
        return;
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_multishot_accept(sqe, s->listen_fd[kind], NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag_make(TAG_ACCEPT, kind));
    s->accept_armed[kind] = true;
}

static void arm_recv(struct shard *s, struct conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = SHARD_BGID;
    io_uring_sqe_set_data64(sqe, tag_make_ptr(TAG_RECV, c));
    c->_recv_armed = true;
    c->_inflight++;
}

/* Gives a provided buffer back; published to the kernel once per turn. */
static void return_buffer(struct shard *s, unsigned bid)
{
    io_uring_buf_ring_add(s->_br, s->_bufs + (size_t)bid * SHARD_BUF_SIZE, SHARD_BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(SHARD_BUF_COUNT), (int)s->_br_returned++);
}

/* ---------- timers ---------- */

static void sync_recv(struct shard *s, struct conn *c);
static void send_output(struct shard *s, struct conn *c);

static void arm_timer(struct shard *s, struct conn *c, enum conn_timer kind, uint64_t deadline_ms)
{
    c->_timer_kind = kind;
    c->_deadline_ms = deadline_ms;
    /* Lazy: an earlier-firing node re-arms itself when it fires, so the common
     * case (deadline moved later, once per request) touches no list. */
    if (!timer_linked(&c->_timer) || timer_expire_ms(&c->_timer) > deadline_ms + TIMER_TICK_MS)
        timer_add(&s->wheel, &c->_timer, deadline_ms);
}

/* Picks the timer for c's state after it received or sent something. */
static void update_timer(struct shard *s, struct conn *c)
{
    if (c->_closing || c->_lingering || c->_send_inflight)
        return; /* linger and write deadlines were set when those began */
    if (c->proto == CONN_H2) {
        /* Only streams move HTTP/2's deadline: a peer that just PINGs, or
         * holds streams open without reading, is idle after the idle timeout
         * (or the header timeout while streams are open) and gets a GOAWAY. */
        unsigned ms = h2_idle(c) ? s->cfg->idle_timeout_ms : s->cfg->header_timeout_ms;
        arm_timer(s, c, CT_IDLE, c->request_start_ms + ms);
    } else if (c->in.len > 0 || c->body_left > 0 || !c->seen_request) {
        arm_timer(s, c, CT_HEADER, c->request_start_ms + s->cfg->header_timeout_ms);
    } else {
        /* Draining, an idle keep-alive connection goes after a short quiet
         * (its answer, if a request comes, says Connection: close). */
        unsigned ms = s->draining ? SHARD_DRAIN_QUIET_MS : s->cfg->idle_timeout_ms;
        arm_timer(s, c, CT_IDLE, s->clock.now_ms + ms);
    }
}

/* ---------- the paused budget ----------
 *
 * A paused connection (its client does not read its answers) keeps its
 * buffers until the client reads again. Its output is small
 * (CONN_OUT_HIGH_WATER); its input is whatever the multishot recv delivered
 * before the cancel took effect, which only the provided-buffer ring bounds.
 * Two rules keep that memory bounded whatever the clients do:
 *   - per connection: one that makes no send progress for CONN_STALL_MS while
 *     holding more than CONN_STALLED_MAX is closed (a sweep every
 *     PAUSED_SWEEP_MS), so a stalled connection holds tens of KiB;
 *   - in total: past the shard's share of --paused-budget-mb the connections
 *     that went longest without progress are closed first.
 * Both close with reason "budget". The shard keeps its paused connections in
 * the order of their last progress (pause or send) and counts their buffers'
 * capacity (what they cost) whenever backpressure is re-evaluated (sync_recv).
 * A client that reads moves to the back of the line on every send. */

#define PAUSED_SWEEP_MS 250

/* Takes c out of the line (list only). */
static void paused_unlink(struct shard *s, struct conn *c)
{
    if (c->_paused_prev != NULL)
        c->_paused_prev->_paused_next = c->_paused_next;
    else
        s->paused_head = c->_paused_next;
    if (c->_paused_next != NULL)
        c->_paused_next->_paused_prev = c->_paused_prev;
    else
        s->paused_tail = c->_paused_prev;
    c->_paused_prev = c->_paused_next = NULL;
}

/* Puts c last in line, as having progressed now (list only). */
static void paused_link(struct shard *s, struct conn *c)
{
    c->_paused_ms = s->clock.now_ms;
    c->_paused_next = NULL;
    c->_paused_prev = s->paused_tail;
    if (s->paused_tail != NULL)
        s->paused_tail->_paused_next = c;
    else
        s->paused_head = c;
    s->paused_tail = c;
    if (!timer_linked(&s->paused_sweep))
        timer_add(&s->wheel, &s->paused_sweep, s->clock.now_ms + PAUSED_SWEEP_MS);
}

/* Stops counting c (resumed or closing). */
static void paused_release(struct shard *s, struct conn *c)
{
    if (!c->_paused_linked)
        return;
    paused_unlink(s, c);
    c->_paused_linked = false;
    s->paused_bytes -= c->_held;
    c->_held = 0;
    s->npaused--;
    METRIC_SET(s->metrics->conns_paused, s->npaused);
    METRIC_SET(s->metrics->paused_bytes, s->paused_bytes);
}

/* Paused c sent something: its client reads, so it goes to the back of the line. */
static void paused_progress(struct shard *s, struct conn *c)
{
    paused_unlink(s, c);
    paused_link(s, c);
}

/* Counts paused c's buffers (linking it when it was not counted yet), then
 * closes the longest-waiting connections while over the budget. */
static void paused_hold(struct shard *s, struct conn *c)
{
    if (!c->_paused_linked) {
        c->_paused_linked = true;
        paused_link(s, c);
        s->npaused++;
        METRIC_SET(s->metrics->conns_paused, s->npaused);
    }
    size_t held = c->in.cap + c->out.cap + c->_sending.cap;
    s->paused_bytes = s->paused_bytes - c->_held + held;
    c->_held = held;
    while (s->paused_bytes > s->paused_budget && s->paused_head != NULL)
        shard_close_conn(s, s->paused_head, CLOSE_BUDGET); /* unlinks it */
    METRIC_SET(s->metrics->paused_bytes, s->paused_bytes);
}

/* The sweep: closes connections stalled for CONN_STALL_MS that hold more
 * than CONN_STALLED_MAX. The line is in progress order, so it stops at the
 * first one that progressed recently. */
static void paused_sweep(struct shard *s)
{
    struct conn *next;
    for (struct conn *c = s->paused_head; c != NULL; c = next) {
        next = c->_paused_next;
        if (s->clock.now_ms - c->_paused_ms < CONN_STALL_MS)
            break;
        if (c->_held > CONN_STALLED_MAX)
            shard_close_conn(s, c, CLOSE_BUDGET);
    }
    if (s->paused_head != NULL)
        timer_add(&s->wheel, &s->paused_sweep, s->clock.now_ms + PAUSED_SWEEP_MS);
}

/* ---------- connection lifetime ---------- */

static void load_add(struct shard *s, unsigned shard_id, int delta)
{
    if (delta > 0)
        atomic_fetch_add_explicit(&s->srv->load[shard_id].conns, (unsigned)delta, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&s->srv->load[shard_id].conns, (unsigned)-delta, memory_order_relaxed);
}

/* Gives back a client connection's place: in this shard's load and in
 * the --max-conns budget. (Admin connections hold neither.) */
static void release_slot(struct shard *s)
{
    load_add(s, s->id, -1);
    atomic_fetch_sub_explicit(&s->srv->total_conns, 1, memory_order_relaxed);
}

/* Frees c once it is closing and the kernel holds none of its operations.
 * Called only from flush_all, so no handler further up the stack still holds c. */
static void maybe_free(struct shard *s, struct conn *c)
{
    if (!c->_closing || c->_inflight != 0 || c->_in_flush)
        return;
    timer_del(&s->wheel, &c->_timer); /* a freed conn never stays in the wheel */
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_close(sqe, c->fd);
    io_uring_sqe_set_data64(sqe, tag_make(TAG_IGNORE, 0));
    if (c->_prev != NULL)
        c->_prev->_next = c->_next;
    else
        s->conns = c->_next;
    if (c->_next != NULL)
        c->_next->_prev = c->_prev;
    s->nconns--;
    conn_release(c);
    free(c);
}

void shard_close_conn(struct shard *s, struct conn *c, enum metrics_close reason)
{
    if (c->_closing)
        return;
    c->_closing = true;
    METRIC_INC(s->metrics->conns_closed[reason]);
    METRIC_SET(s->metrics->conns_active, METRIC_GET(s->metrics->conns_active) - 1);
    if (c->listener != LISTENER_ADMIN)
        release_slot(s);
    paused_release(s, c);
    timer_del(&s->wheel, &c->_timer);
    if (c->_recv_armed || c->_send_inflight) {
        struct io_uring_sqe *sqe = get_sqe(s);
        io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, tag_make(TAG_IGNORE, 0));
    }
    shard_want_flush(s, c); /* freed in flush_all once its operations are done */
}

/* An operation of c completed for good. */
static void op_done(struct shard *s, struct conn *c)
{
    c->_inflight--;
    if (c->_closing)
        shard_want_flush(s, c);
}

/* The protocol is done and its output sent: half-close and keep reading for a
 * moment (lingering close), so the client reads the last response before any
 * RST its unread bytes would trigger. */
static void graceful_close(struct shard *s, struct conn *c)
{
    if (c->_lingering || c->_closing)
        return;
    if (c->tls != NULL && conn_close_notify(c)) {
        /* TLS: close_notify leaves first; its send's completion brings c back here. */
        send_output(s, c);
        return;
    }
    if (!c->_recv_armed) {
        shard_close_conn(s, c, (enum metrics_close)c->close_reason);
        return;
    }
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_shutdown(sqe, c->fd, SHUT_WR);
    io_uring_sqe_set_data64(sqe, tag_make_ptr(TAG_SHUTDOWN, c));
    c->_inflight++;
    c->_lingering = true;
    arm_timer(s, c, CT_LINGER, s->clock.now_ms + CONN_LINGER_MS);
}

static void open_conn(struct shard *s, int fd, enum listener_kind kind)
{
    struct conn *c = xcalloc(1, sizeof(*c));
    c->shard = s;
    c->fd = fd;
    c->listener = (uint8_t)kind;
    c->proto = CONN_H1;
    c->request_start_ms = s->clock.now_ms;
    c->_next = s->conns;
    if (s->conns != NULL)
        s->conns->_prev = c;
    s->conns = c;
    s->nconns++;
    if (kind == LISTENER_TLS)
        conn_start_tls(c, s->tls);
    if (s->alog != NULL) {
        /* The client's address, for the access log: one getpeername per
         * connection, only with the log on (a multishot accept shares one
         * address buffer between its completions, so it cannot say). */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
            if (ss.ss_family == AF_INET) {
                const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;
                c->peer_family = AF_INET;
                c->peer_port = ntohs(in4->sin_port);
                memcpy(c->peer_addr, &in4->sin_addr, 4);
            } else if (ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
                c->peer_family = AF_INET6;
                c->peer_port = ntohs(in6->sin6_port);
                memcpy(c->peer_addr, &in6->sin6_addr, 16);
            }
        }
    }
    METRIC_INC(s->metrics->conns_accepted);
    METRIC_SET(s->metrics->conns_active, METRIC_GET(s->metrics->conns_active) + 1);
    arm_recv(s, c);
    update_timer(s, c);
}

/* ---------- sending ---------- */

void shard_want_flush(struct shard *s, struct conn *c)
{
    if (c->_in_flush)
        return;
    c->_in_flush = true;
    c->_flush_next = s->flush_head;
    s->flush_head = c;
}

/* Swaps src's bytes into c->_sending, which the kernel reads until the send's
 * CQE; new output goes to the other buffer. */
static inline void take_output(struct conn *c, struct buf *src)
{
    struct buf t = c->_sending;
    c->_sending = *src;
    *src = t;
    src->len = 0;
    c->_sent = 0;
}

/* Hands c's output to the kernel: one send SQE. Out of line, so that the
 * test in start_send, which most calls end at, stays inline in its callers. */
static __attribute__((noinline)) void send_output(struct shard *s, struct conn *c)
{
    if (c->tls == NULL) {
        take_output(c, &c->out); /* spelled out: the cleartext path copies no buffer through a pointer */
    } else {
        struct buf *src = conn_output(c); /* the TLS records sealed from c->out */
        if (src->len == 0)
            return;
        take_output(c, src);
    }
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_send(sqe, c->fd, c->_sending.data, c->_sending.len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag_make_ptr(TAG_SEND, c));
    c->_send_inflight = true;
    c->_inflight++;
    arm_timer(s, c, CT_WRITE, s->clock.now_ms + s->cfg->write_timeout_ms);
}

/* Sends c's output unless a send is in flight. A send's completion calls
 * this with nothing to send: that ends here, inlined, without a call. On TLS
 * this sends only when plaintext waits; flush_output also looks at bytes
 * TLS wrote by itself. */
static inline void start_send(struct shard *s, struct conn *c)
{
    if (c->_send_inflight || c->out.len == 0 || c->_closing || c->_lingering)
        return;
    /* TLS: what accumulated during the send is sealed with the rest of the
     * turn's output at its flush, in one record rather than two (each costs
     * OpenSSL a fixed few thousand instructions); a paused connection drains
     * at once, as in cleartext. */
    if (c->tls != NULL && !c->paused)
        return;
    send_output(s, c);
}

/* start_send for the turn's flush: a TLS connection may have handshake
 * messages, tickets or alerts to send and no plaintext (conn_on_data asks
 * for this flush whenever TLS wrote something). */
static inline void flush_output(struct shard *s, struct conn *c)
{
    if (c->tls != NULL && !c->_send_inflight && !c->_closing && !c->_lingering)
        send_output(s, c);
    else
        start_send(s, c);
}

static void flush_all(struct shard *s)
{
    while (s->flush_head != NULL) {
        struct conn *c = s->flush_head;
        s->flush_head = c->_flush_next;
        c->_in_flush = false;
        if (c->_closing) {
            maybe_free(s, c);
            continue;
        }
        if (c->proto == CONN_H2)
            h2_flush(c);
        flush_output(s, c);
        if (!c->close_after_send && !c->_send_inflight && c->out.len == 0) {
            if (c->peer_eof && !c->paused) {
                /* The client sent all it will and has every answer: what may
                 * remain in c->in is a request that can never complete. */
                c->close_after_send = true;
                c->close_reason = CLOSE_CLIENT;
            } else if (s->draining && (c->proto == CONN_H2 || s->cfg->drain_grace_ms == 0) &&
                       conn_is_idle(c)) {
                /* Draining: a connection that just finished its last exchange closes. */
                c->close_after_send = true;
                c->close_reason = CLOSE_SHUTDOWN;
            }
        }
        if (!c->_send_inflight && c->out.len == 0 && c->close_after_send && conn_done(c))
            graceful_close(s, c);
    }
}

static void on_send(struct shard *s, struct conn *c, int res)
{
    op_done(s, c);
    c->_send_inflight = false;
    if (c->_closing)
        return;
    if (res < 0) {
        shard_close_conn(s, c, res == -EPIPE || res == -ECONNRESET ? CLOSE_CLIENT : CLOSE_ERROR);
        return;
    }
    METRIC_ADD(s->metrics->bytes_sent, res);
    if (c->_paused_linked && res > 0)
        paused_progress(s, c);
    c->_sent += (size_t)res;
    if (c->_sent < c->_sending.len) {
        /* Short send (socket buffer full): the rest, from the same stable buffer. */
        struct io_uring_sqe *sqe = get_sqe(s);
        io_uring_prep_send(sqe, c->fd, c->_sending.data + c->_sent, c->_sending.len - c->_sent, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, tag_make_ptr(TAG_SEND, c));
        c->_send_inflight = true;
        c->_inflight++;
        arm_timer(s, c, CT_WRITE, s->clock.now_ms + s->cfg->write_timeout_ms);
        return;
    }
    c->_sending.len = 0;
    if (c->_sending.cap > SEND_BUF_KEEP)
        buf_free(&c->_sending);
    /* Hand what accumulated meanwhile to the kernel first, so a paused
     * connection resumes with an empty output buffer. */
    start_send(s, c);
    if (c->paused)
        conn_resume(c);
    sync_recv(s, c);
    shard_want_flush(s, c); /* more output (or an HTTP/2 window update) goes out this turn */
    update_timer(s, c);
}

/* ---------- receiving ---------- */

/* Backpressure: a paused connection (too much output unsent) stops reading,
 * so TCP flow control slows the client instead of ringd buffering without
 * bound; the multishot recv is cancelled and armed again on resume. While the
 * cancel is in flight, arriving bytes still land in c->in (CONN_IN_MAX caps them). */
static void sync_recv(struct shard *s, struct conn *c)
{
    if (c->_closing || c->_lingering)
        return;
    if (c->paused) {
        paused_hold(s, c);
        if (c->_closing)
            return; /* closed over the budget */
        if (c->_recv_armed && !c->_recv_stopping) {
            struct io_uring_sqe *sqe = get_sqe(s);
            io_uring_prep_cancel64(sqe, tag_make_ptr(TAG_RECV, c), 0);
            io_uring_sqe_set_data64(sqe, tag_make(TAG_IGNORE, 0));
            c->_recv_stopping = true;
        }
    } else {
        paused_release(s, c);
        if (!c->_recv_armed && !c->peer_eof) {
            METRIC_INC(s->metrics->recv_rearms);
            arm_recv(s, c);
        }
    }
}

static void on_recv(struct shard *s, struct conn *c, struct io_uring_cqe *cqe)
{
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more) {
        /* The multishot recv ended (cancelled, out of buffers, EOF, error):
         * sync_recv below arms a new one unless the connection must not read. */
        c->_recv_armed = false;
        c->_recv_stopping = false;
        op_done(s, c);
    }
    int res = cqe->res;
    if (res > 0) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        METRIC_ADD(s->metrics->bytes_received, res);
        if (!c->_closing && !c->_lingering)
            conn_on_data(c, s->_bufs + (size_t)bid * SHARD_BUF_SIZE, (size_t)res);
        return_buffer(s, bid);
        sync_recv(s, c);
        update_timer(s, c);
    } else if (res == 0) {
        /* EOF. A half-closed client still gets every response owed to it,
         * including those for requests waiting in c->in while output is
         * paused; flush_all closes once nothing is left to answer. */
        if (c->_lingering) {
            shard_close_conn(s, c, (enum metrics_close)c->close_reason);
        } else {
            c->peer_eof = true;
            shard_want_flush(s, c);
        }
    } else if (res == -ENOBUFS) {
        /* Out of provided buffers this instant: never a reason to drop a healthy connection. */
        METRIC_INC(s->metrics->recv_enobufs);
        sync_recv(s, c);
    } else if (res == -ECANCELED) {
        sync_recv(s, c); /* paused (stays stopped) or resumed meanwhile (armed again) */
    } else if (!c->_closing) {
        shard_close_conn(s, c, res == -ECONNRESET ? CLOSE_CLIENT : CLOSE_ERROR);
    }
}

/* ---------- accepting ---------- */

/* Least-loaded shard other than s when s holds clearly more than it: the
 * slack (2 + 1/8) keeps shards from handing bursts back and forth. -1 when
 * s should keep the connection. */
static int pick_handoff_target(struct shard *s)
{
    struct server *srv = s->srv;
    unsigned mine = atomic_load_explicit(&srv->load[s->id].conns, memory_order_relaxed);
    unsigned best = s->id, best_load = mine;
    for (unsigned i = 0; i < srv->nshards; i++) {
        unsigned l = atomic_load_explicit(&srv->load[i].conns, memory_order_relaxed);
        if (l < best_load) {
            best = i;
            best_load = l;
        }
    }
    if (best == s->id || mine <= best_load + 2 + best_load / 8)
        return -1;
    return (int)best;
}

/* TAG_HANDOFF_SENT's payload: listener kind << 48 | target shard << 32 | fd
 * (shards < 2^16, fds < 2^32; the tag keeps 56 bits). */
static uint64_t handoff_payload(unsigned target, enum listener_kind kind, int fd)
{
    return ((uint64_t)kind << 48) | ((uint64_t)target << 32) | (uint32_t)fd;
}

/* Adopts an accepted fd. reserved: its --max-conns place and this shard's
 * load were already taken (a handoff). Admin connections take neither, so
 * /metrics and /readyz still answer when the main listener is at its limit. */
static void accept_fd(struct shard *s, int fd, enum listener_kind kind, bool reserved)
{
    struct server *srv = s->srv;
    /* Draining, a connection accepted is still served (its answers say
     * Connection: close, or it gets a GOAWAY first): the client chose this
     * instance before it left the port, and closing it would fail a request. */
    if (kind != LISTENER_ADMIN && !reserved) {
        /* One reservation per connection against the process-wide limit. */
        unsigned total = atomic_fetch_add_explicit(&srv->total_conns, 1, memory_order_relaxed);
        if (total >= s->cfg->max_conns) {
            atomic_fetch_sub_explicit(&srv->total_conns, 1, memory_order_relaxed);
            close(fd);
            METRIC_INC(s->metrics->conns_closed[CLOSE_LIMIT]);
            return;
        }
        /* Balance: SO_REUSEPORT hashes flows and can pile them on one shard.
         * Hand the socket to the least loaded shard when this one is ahead. */
        int best = srv->nshards > 1 && !s->draining ? pick_handoff_target(s) : -1;
        int target_ring = best >= 0 ? atomic_load_explicit(&srv->shards[best]->ring_fd, memory_order_acquire) : -1;
        if (target_ring >= 0) {
            load_add(s, (unsigned)best, 1);
            struct io_uring_sqe *sqe = get_sqe(s);
            io_uring_prep_msg_ring(sqe, target_ring, (unsigned)fd, tag_make(TAG_HANDOFF, kind), 0);
            io_uring_sqe_set_data64(sqe, tag_make(TAG_HANDOFF_SENT, handoff_payload((unsigned)best, kind, fd)));
            return;
        }
        load_add(s, s->id, 1);
    }
    open_conn(s, fd, kind);
}

/* Accept errors a client causes (it went away before we accepted): try again at once. */
static bool accept_error_transient(int err)
{
    return err == ECONNABORTED || err == EINTR || err == EAGAIN || err == EPROTO || err == ENETDOWN ||
           err == EHOSTUNREACH || err == ENETUNREACH;
}

static void on_accept(struct shard *s, enum listener_kind kind, struct io_uring_cqe *cqe)
{
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more)
        s->accept_armed[kind] = false;
    if (cqe->res >= 0) {
        accept_fd(s, cqe->res, kind, false);
    } else if (s->draining) {
        return; /* the cancel, or the shut-down listener's error: accepting is over */
    } else if (cqe->res != -ECANCELED) {
        METRIC_INC(s->metrics->accept_errors);
        if (!more && !accept_error_transient(-cqe->res)) {
            /* Out of descriptors or memory, or a persistent error: back off
             * instead of spinning on the same failure. */
            if (!timer_linked(&s->accept_retry))
                timer_add(&s->wheel, &s->accept_retry, s->clock.now_ms + ACCEPT_RETRY_MS);
            return;
        }
    }
    if (!more)
        arm_accept(s, kind);
}

static void on_handoff_sent(struct shard *s, uint64_t payload, int res)
{
    unsigned target = (unsigned)(payload >> 32) & 0xffff;
    enum listener_kind kind = (enum listener_kind)(payload >> 48);
    int fd = (int)(uint32_t)payload;
    if (res >= 0) {
        METRIC_INC(s->metrics->conns_handed_off);
        return;
    }
    /* The target ring refused (e.g. it is gone): serve it here instead. */
    load_add(s, target, -1);
    load_add(s, s->id, 1);
    accept_fd(s, fd, kind, true);
}

/* ---------- timers ---------- */

static void begin_drain(struct shard *s);

static void on_timer(struct timer_node *node, void *arg)
{
    struct shard *s = arg;
    if (node == &s->accept_retry) {
        for (int k = 0; k < LISTENER__COUNT; k++)
            arm_accept(s, (enum listener_kind)k);
        return;
    }
    if (node == &s->paused_sweep) {
        paused_sweep(s);
        return;
    }
    if (node == &s->drain_grace) {
        s->draining = true;
        begin_drain(s);
        return;
    }
    struct conn *c = container_of(node, struct conn, _timer);
    if (c->_closing)
        return;
    if (s->clock.now_ms < c->_deadline_ms) {
        timer_add(&s->wheel, node, c->_deadline_ms);
        return;
    }
    switch ((enum conn_timer)c->_timer_kind) {
    case CT_HEADER:
        if (c->proto == CONN_H1 && c->in.len > 0 && !c->close_after_send && !c->_send_inflight) {
            /* Part of a request came: tell the client why before closing. */
            shard_count_tls(s, c->tls != NULL);
            h1_header_timeout(c);
            shard_count_tls(s, false);
            arm_timer(s, c, CT_LINGER, s->clock.now_ms + s->cfg->write_timeout_ms);
            break;
        }
        shard_close_conn(s, c, CLOSE_HEADER_TIMEOUT);
        break;
    case CT_IDLE:
        if (c->proto == CONN_H2 && !c->close_after_send) {
            /* Say goodbye properly: GOAWAY, then the lingering close. */
            h2_drain(c);
            if (c->_closing)
                break; /* the GOAWAY could not even be produced */
            c->close_reason = CLOSE_IDLE_TIMEOUT;
            arm_timer(s, c, CT_LINGER, s->clock.now_ms + CONN_LINGER_MS);
            shard_want_flush(s, c);
            break;
        }
        if (c->tls != NULL && !c->close_after_send) {
            /* TLS: close gracefully, so the client gets a close_notify (graceful_close). */
            c->close_after_send = true;
            c->close_reason = CLOSE_IDLE_TIMEOUT;
            arm_timer(s, c, CT_LINGER, s->clock.now_ms + CONN_LINGER_MS);
            shard_want_flush(s, c);
            break;
        }
        shard_close_conn(s, c, CLOSE_IDLE_TIMEOUT);
        break;
    case CT_WRITE:
        shard_close_conn(s, c, CLOSE_WRITE_TIMEOUT);
        break;
    case CT_LINGER:
        shard_close_conn(s, c, (enum metrics_close)c->close_reason);
        break;
    }
}

/* ---------- metrics hooks ---------- */

void shard_count_request(struct shard *s, enum metrics_proto proto, enum metrics_route route, int status)
{
    METRIC_INC(s->count_base[proto][route][metrics_code_of(status)]);
    s->answered[route]++;
    s->answered_any = true;
}

void shard_count_grpc(struct shard *s, enum metrics_route route, unsigned code)
{
    bool tls = s->count_base != s->metrics->requests; /* shard_count_tls moved it */
    METRIC_INC(s->metrics->grpc_requests[tls][route - ROUTE_GRPC_FIRST][code < METRICS_GRPC_CODES ? code : 2 /* UNKNOWN */]);
    s->answered[route]++;
    s->answered_any = true;
}

static const char *const method_names[] = {"GET", "HEAD", "OTHER"};

void shard_log_request(struct shard *s, const struct conn *c, const struct request *req, const struct response *res,
                       enum metrics_proto proto, bool head)
{
    bool keep = res->status >= 400;
    if (--s->alog_left == 0) {
        s->alog_left = s->alog_sample;
        keep = true;
    }
    if (!keep && s->alog_slow_ns == 0)
        return; /* sampled out, and no slow rule could bring it back */
    struct alog_entry *e = alog_slot(s->alog);
    if (e == NULL) {
        if (keep)
            METRIC_INC(s->metrics->access_log_dropped);
        return;
    }
    e->start_ns = s->turn_start_ns;
    e->user_id = res->user_id;
    e->bytes = head ? 0 : res->body_len;
    e->status = (uint16_t)res->status;
    e->shard = (uint16_t)s->id;
    e->proto = (uint8_t)(proto + (c->tls != NULL ? PROTO_TLS_OFFSET : 0));
    e->family = c->peer_family;
    e->port = c->peer_port;
    memcpy(e->addr, c->peer_addr, sizeof(e->addr));
    e->keep = keep;
    size_t n = 0;
    const char *m = "";
    size_t ml = 0;
    if (req != NULL) {
        n = req->path_len;
        if (req->method_name != NULL) {
            m = req->method_name;
            ml = req->method_name_len;
        } else {
            m = method_names[req->method];
            ml = strlen(m);
        }
    }
    e->path_truncated = n > ALOG_PATH_MAX;
    e->path_len = (uint16_t)(e->path_truncated ? ALOG_PATH_MAX : n);
    if (e->path_len > 0)
        memcpy(e->path, req->path, e->path_len);
    e->method_len = (uint8_t)(ml < ALOG_METHOD_MAX ? ml : ALOG_METHOD_MAX);
    memcpy(e->method, m, e->method_len);
    size_t rl = res->request_id_len < sizeof(e->rid) ? res->request_id_len : sizeof(e->rid);
    e->rid_len = (uint8_t)rl;
    if (rl > 0)
        memcpy(e->rid, res->request_id, rl);
    e->has_trace = res->traceparent != NULL;
    if (e->has_trace)
        memcpy(e->trace, res->traceparent + 3, TRACE_TRACE_ID_LEN);
    alog_commit(s->alog);
}

/* Latency of everything answered this turn: from the turn's reap (the
 * requests' last bytes were read then) to now, just before the sends are
 * handed to the kernel. Two clock reads per turn, whatever the request count. */
static void observe_answered(struct shard *s)
{
    if (!s->answered_any)
        return;
    uint64_t now = clock_now_ns();
    uint64_t ns = now - s->turn_start_ns;
    if (s->alog != NULL && alog_pending(s->alog)) {
        struct timespec wall; /* vDSO: no syscall */
        clock_gettime(CLOCK_REALTIME, &wall);
        alog_publish(s->alog, now, (uint64_t)wall.tv_sec * 1000000u + (uint64_t)wall.tv_nsec / 1000u, s->alog_slow_ns);
    }
    for (int r = 0; r < ROUTE__COUNT; r++) {
        if (s->answered[r] != 0) {
            metrics_observe(s->metrics, (enum metrics_route)r, ns, s->answered[r]);
            s->answered[r] = 0;
        }
    }
    s->answered_any = false;
}

/* ---------- drain ---------- */

/* Accepts stop, the queue of each listener is emptied and the listener shut
 * down, so that only its own connections keep the shard running.
 *
 * Why in this order: closing (or shutting down) a SO_REUSEPORT listener
 * resets the connections still in its accept queue, connections the kernel
 * gave this instance although a successor listens on the same port. So the
 * queue is first taken with non-blocking accepts, and what was taken is
 * served; only what completes its handshake in the microseconds between the
 * last accept and the shutdown can still be reset, unless
 * net.ipv4.tcp_migrate_req is on (the kernel then moves it to another
 * listener of the group). The grace before (--drain-grace-ms) is what makes
 * that window quiet: clients keep their connections and load balancers have
 * moved on, so hardly any connection is being opened to us when it comes. A
 * socket systemd passed is never shut down: its queue is the next instance's. */
static void stop_accepting(struct shard *s)
{
    timer_del(&s->wheel, &s->accept_retry);
    for (int k = 0; k < LISTENER__COUNT; k++) {
        int lfd = s->listen_fd[k];
        if (lfd < 0)
            continue;
        if (s->accept_armed[k]) {
            struct io_uring_sqe *sqe = get_sqe(s);
            io_uring_prep_cancel64(sqe, tag_make(TAG_ACCEPT, (uint64_t)k), 0);
            io_uring_sqe_set_data64(sqe, tag_make(TAG_IGNORE, 0));
        }
        if (s->listen_keep[k])
            continue;
        int fl = fcntl(lfd, F_GETFL);
        unsigned taken = 0;
        if (fl >= 0 && fcntl(lfd, F_SETFL, fl | O_NONBLOCK) == 0) {
            for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0) {
                    taken++;
                    METRIC_INC(s->metrics->conns_drained_from_queue);
                    accept_fd(s, fd, (enum listener_kind)k, false);
                } else if (errno != ECONNABORTED && errno != EINTR) {
                    break; /* EAGAIN: the queue is empty */
                }
            }
        }
        if (taken > 0)
            log_info("accept_queue_drained", "shard=%u listener=%d conns=%u", s->id, k, taken);
        /* Stop listening now (the server closes the fd after the threads
         * end): from here the port's other listeners, a successor's, get
         * every new connection, and without one new clients are refused at
         * once instead of waiting in a backlog nobody will accept from. */
        shutdown(lfd, SHUT_RDWR);
    }
}

/* The drain proper, after the grace (s->draining is already set; called
 * after a turn's completions were handled, so responses produced in that
 * turn said Connection: close). */
static void begin_drain(struct shard *s)
{
    s->drain_deadline_ms = s->clock.now_ms + s->cfg->drain_timeout_ms;
    stop_accepting(s);
    bool grace = s->cfg->drain_grace_ms > 0;
    uint64_t quiet = s->clock.now_ms + SHARD_DRAIN_QUIET_MS;
    struct conn *next;
    for (struct conn *c = s->conns; c != NULL; c = next) {
        next = c->_next;
        if (c->_closing || c->_lingering)
            continue; /* already on its way out: let the linger finish */
        conn_begin_drain(c);
        if (!conn_is_idle(c) || c->proto != CONN_H1) {
            shard_want_flush(s, c);
        } else if (!grace && c->seen_request) {
            shard_close_conn(s, c, CLOSE_SHUTDOWN);
        } else if (!c->close_after_send) {
            /* Closing an idle HTTP/1.1 connection races with a request its
             * client may be sending: a connection just taken from the queue
             * always has one on the way, and with a grace asked for (a
             * zero-downtime drain) a keep-alive one may too. It gets a short
             * while; its answer says Connection: close. */
            if (!timer_linked(&c->_timer) || c->_deadline_ms > quiet)
                arm_timer(s, c, c->seen_request ? CT_IDLE : CT_HEADER, quiet);
        } else {
            shard_want_flush(s, c);
        }
    }
}

/* ---------- set-up and the loop ---------- */

struct shard *shard_new(struct server *srv, unsigned id)
{
    struct shard *s = xcalloc(1, sizeof(*s));
    s->id = id;
    s->srv = srv;
    s->cfg = srv->cfg;
    s->ring_fd = -1;
    s->listen_fd[LISTENER_MAIN] = srv->listen_fds[id];
    s->listen_fd[LISTENER_ADMIN] = id == 0 ? srv->admin_fd : -1;
    s->listen_fd[LISTENER_TLS] = srv->tls_listen_fds[id];
    s->listen_keep[LISTENER_MAIN] = srv->listen_inherited;
    s->listen_keep[LISTENER_ADMIN] = srv->admin_inherited;
    s->listen_keep[LISTENER_TLS] = srv->tls_inherited;
    if (srv->tls != NULL)
        s->tls = tls_shard_new(srv->tls, id);
    s->metrics = xaligned_zalloc(64, sizeof(struct metrics_shard));
    shard_count_tls(s, false);
    trace_idgen_init(&s->idgen, srv->id_prefix, id);
    if (srv->alog != NULL) {
        s->alog = &srv->alog->rings[id];
        s->alog_sample = srv->alog->sample;
        s->alog_left = 1; /* the first request is logged */
        s->alog_slow_ns = srv->alog->slow_ns;
    }
    s->paused_budget = (size_t)srv->cfg->paused_budget_mb * 1024 * 1024 / srv->nshards;
    return s;
}

static int setup_ring(struct shard *s)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    p.cq_entries = SHARD_CQ_ENTRIES;
    int rc = io_uring_queue_init_params(SHARD_SQ_ENTRIES, &s->ring, &p);
    if (rc < 0) {
        log_error("io_uring_setup_failed", "shard=%u err=\"%s\"", s->id, strerror(-rc));
        return rc;
    }
    s->min_wait_ok = p.features & URING_FEAT_MIN_TIMEOUT;
    s->wakeup_sqe_ok = true;
    /* Registering the ring's own fd saves a file lookup on every io_uring_enter
     * (Linux 5.18+). Best effort: without it liburing enters with the plain fd.
     * MSG_RING from other shards still targets ring.ring_fd, which stays open. */
    if (io_uring_register_ring_fd(&s->ring) < 0)
        log_debug("uring_ring_fd_not_registered", "shard=%u", s->id);
    atomic_store_explicit(&s->ring_fd, s->ring.ring_fd, memory_order_release);

    size_t ring_bytes = SHARD_BUF_COUNT * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (br == MAP_FAILED) {
        rc = -errno;
        goto fail_ring;
    }
    s->_br = br;
    s->_bufs = xmalloc((size_t)SHARD_BUF_COUNT * SHARD_BUF_SIZE);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = SHARD_BUF_COUNT;
    reg.bgid = SHARD_BGID;
    rc = io_uring_register_buf_ring(&s->ring, &reg, 0);
    if (rc < 0) {
        log_error("buf_ring_register_failed", "shard=%u err=\"%s\"", s->id, strerror(-rc));
        goto fail_bufs;
    }
    io_uring_buf_ring_init(s->_br);
    for (unsigned i = 0; i < SHARD_BUF_COUNT; i++)
        return_buffer(s, i);
    io_uring_buf_ring_advance(s->_br, (int)s->_br_returned);
    s->_br_returned = 0;
    return 0;

fail_bufs:
    free(s->_bufs);
    s->_bufs = NULL;
    munmap(br, ring_bytes);
    s->_br = NULL;
fail_ring:
    atomic_store_explicit(&s->ring_fd, -1, memory_order_release);
    io_uring_queue_exit(&s->ring);
    return rc;
}

static void teardown(struct shard *s)
{
    /* Submit what is queued (closes of freed connections), then exiting the
     * ring cancels and reaps whatever the kernel still holds, so afterwards no
     * operation can touch a connection: free them all. */
    atomic_store_explicit(&s->ring_fd, -1, memory_order_release); /* no more handoffs to us */
    io_uring_submit(&s->ring);
    io_uring_queue_exit(&s->ring);
    struct conn *next;
    for (struct conn *c = s->conns; c != NULL; c = next) {
        next = c->_next;
        if (!c->_closing) {
            METRIC_INC(s->metrics->conns_closed[CLOSE_SHUTDOWN]);
            METRIC_SET(s->metrics->conns_active, METRIC_GET(s->metrics->conns_active) - 1);
        }
        close(c->fd);
        conn_release(c);
        free(c);
    }
    s->conns = NULL;
    s->nconns = 0;
    munmap(s->_br, SHARD_BUF_COUNT * sizeof(struct io_uring_buf));
    free(s->_bufs);
    s->_bufs = NULL;
    s->reader.index = NULL;
    store_indexer_leave(&s->srv->indexer, s->id);
    store_reader_close(&s->reader);
    buf_free(&s->scratch);
}

static void refresh_store(struct shard *s)
{
    if (s->clock.now_ms - s->last_refresh_ms < s->cfg->refresh_ms)
        return;
    s->last_refresh_ms = s->clock.now_ms;
    /* Between turns no handshake is under way: take a reloaded TLS context (or rotated keys), so the old
     * one can be freed even when no client connects here. */
    if (s->tls != NULL)
        tls_shard_sync(s->tls);
    /* Between turns no lookup holds a record or an index pointer: take the newest index. */
    s->reader.index = store_indexer_acquire(&s->srv->indexer, s->id);
    /* Stale reader slots of killed processes (an import, another server)
     * would pin old pages forever: shard 0 sweeps them now and then. */
    if (s->id == 0 && s->clock.now_ms - s->last_reader_check_ms >= READER_CHECK_MS) {
        s->last_reader_check_ms = s->clock.now_ms;
        store_reader_check(&s->srv->store);
    }
    /* Here and not per request: /readyz and /metrics answer from this view. */
    if (s->clock.now_ms - s->last_feed_ms >= FEED_CHECK_MS) {
        s->last_feed_ms = s->clock.now_ms;
        store_feed_observe(&s->reader, s->cfg->db, &s->feed);
    }
    if (!s->reader.active)
        return; /* parked: the next lookup renews */
    if (!s->looked_up) {
        store_reader_park(&s->reader); /* idle: stop pinning old pages */
        return;
    }
    s->looked_up = false;
    int rc = store_reader_refresh(&s->reader);
    if (rc != 0)
        log_error("store_refresh_failed", "shard=%u err=\"%s\"", s->id, mdb_strerror(rc));
    METRIC_INC(s->metrics->store_renewals);
    METRIC_SET(s->metrics->store_txn_id, store_reader_txn_id(&s->reader));
    METRIC_SET(s->metrics->store_overlay_gaps, s->reader.overlay.gaps);
}

/* Makes sure the shard's timeout fires no later than deadline_ms: arms one
 * when none is armed, or replaces the armed one when it is due later (a
 * timeout removed or fired late answers with a stale generation). */
static void arm_wakeup(struct shard *s, uint64_t deadline_ms)
{
    if (s->wakeup_ms != 0 && s->wakeup_ms <= deadline_ms)
        return;
    if (s->wakeup_ms != 0) {
        struct io_uring_sqe *sqe = get_sqe(s);
        io_uring_prep_timeout_remove(sqe, tag_make(TAG_WAKEUP, s->wakeup_gen), 0);
        io_uring_sqe_set_data64(sqe, tag_make(TAG_IGNORE, 0));
    }
    s->wakeup_gen++;
    s->wakeup_ms = deadline_ms;
    s->wakeup_ts.tv_sec = (long long)(deadline_ms / 1000);
    s->wakeup_ts.tv_nsec = (long long)(deadline_ms % 1000) * 1000000;
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_timeout(sqe, &s->wakeup_ts, 0, IORING_TIMEOUT_ABS);
    io_uring_sqe_set_data64(sqe, tag_make(TAG_WAKEUP, s->wakeup_gen));
}

static void on_wakeup(struct shard *s, uint32_t gen, int res)
{
    if (gen != s->wakeup_gen)
        return; /* replaced by an earlier deadline */
    s->wakeup_ms = 0;
    if (res != -ETIME && res != -ECANCELED) {
        /* The kernel refused the timeout: wait with a timeout from now on
         * rather than arming a failing SQE every turn. */
        log_warn("uring_timeout_failed", "shard=%u err=\"%s\"", s->id, strerror(-res));
        s->wakeup_sqe_ok = false;
    }
}

static void dispatch(struct shard *s, struct io_uring_cqe *cqe)
{
    uint64_t tag = cqe->user_data;
    switch (tag_kind(tag)) {
    case TAG_ACCEPT:
        on_accept(s, (enum listener_kind)tag_payload(tag), cqe);
        break;
    case TAG_RECV:
        on_recv(s, tag_ptr(tag), cqe);
        break;
    case TAG_SEND:
        on_send(s, tag_ptr(tag), cqe->res);
        break;
    case TAG_SHUTDOWN:
        op_done(s, tag_ptr(tag));
        break;
    case TAG_HANDOFF:
        if (cqe->res >= 0)
            accept_fd(s, cqe->res, (enum listener_kind)tag_payload(tag), true);
        break;
    case TAG_HANDOFF_SENT:
        on_handoff_sent(s, tag_payload(tag), cqe->res);
        break;
    case TAG_WAKEUP:
        on_wakeup(s, (uint32_t)tag_payload(tag), cqe->res);
        break;
    case TAG_WAKE: /* the flags are read after every wait */
    case TAG_IGNORE:
    case TAG_NONE:
        break;
    }
}

/* Looks ahead over the turn's completions before handling any: the users its
 * fresh HTTP/1.1 requests will look up. Their index entries are prefetched
 * first, then (by which time they have mostly arrived) their records, so the
 * turn's cache misses overlap instead of each request waiting for its own in
 * turn: about four requests a turn at 64 connections, one miss chain instead
 * of four. Read-only: the requests are parsed for real afterwards. */
static void prefetch_turn(struct shard *s)
{
    if (s->reader.index == NULL)
        return;
    uint64_t ids[SHARD_PREFETCH];
    unsigned n = 0, head;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&s->ring, head, cqe)
    {
        if (tag_kind(cqe->user_data) != TAG_RECV || cqe->res <= 0 || !(cqe->flags & IORING_CQE_F_BUFFER))
            continue;
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        uint64_t id = conn_user_hint(tag_ptr(cqe->user_data), s->_bufs + (size_t)bid * SHARD_BUF_SIZE, (size_t)cqe->res);
        if (id == 0)
            continue;
        store_prefetch(&s->reader, id);
        ids[n++] = id;
        if (n == SHARD_PREFETCH)
            break;
    }
    if (n < 2)
        return; /* one lookup has nothing to overlap with: the record load would only wait for the entry */
    for (unsigned i = 0; i < n; i++)
        store_prefetch_record(&s->reader, ids[i]);
}

/* Whether a multishot accept may still post a connection (its cancel has not completed). */
static bool accepts_armed(const struct shard *s)
{
    for (int k = 0; k < LISTENER__COUNT; k++)
        if (s->accept_armed[k])
            return true;
    return false;
}

static void run(struct shard *s)
{
    for (;;) {
        if (s->draining && ((s->nconns == 0 && !accepts_armed(s)) || s->clock.now_ms >= s->drain_deadline_ms))
            break;
        flush_all(s);
        observe_answered(s);

        uint64_t limit = s->clock.now_ms + (s->draining ? TIMER_TICK_MS : IDLE_WAIT_MS);
        if (s->reader.active && s->last_refresh_ms + s->cfg->refresh_ms < limit)
            limit = s->last_refresh_ms + s->cfg->refresh_ms;
        uint64_t next = timer_next_ms(&s->wheel, limit);
        uint64_t wait_ms = next > s->clock.now_ms ? next - s->clock.now_ms : 0;
        if (wait_ms > 0 && s->wakeup_sqe_ok && (s->cfg->batch_wait_us == 0 || !s->min_wait_ok)) {
            arm_wakeup(s, next);
            wait_ms = URING_WAIT_FOREVER;
        }
        int rc = uring_submit_and_wait(&s->ring, SHARD_BATCH, (unsigned)wait_ms, s->cfg->batch_wait_us,
                                       s->min_wait_ok);
        METRIC_INC(s->metrics->uring_submits);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
            log_warn("uring_wait_failed", "shard=%u err=\"%s\"", s->id, strerror(-rc));

        clock_update(&s->clock);
        s->turn_start_ns = s->clock.now_ns;
        /* The main thread wakes every shard (MSG_RING) when a drain begins. */
        bool drain_now = !s->draining && !s->in_grace && atomic_load_explicit(&s->srv->draining, memory_order_relaxed);
        if (drain_now && s->cfg->drain_grace_ms > 0) {
            s->in_grace = true; /* /readyz already says 503; the rest waits for the grace timer */
            timer_add(&s->wheel, &s->drain_grace, s->clock.now_ms + s->cfg->drain_grace_ms);
            drain_now = false;
        }
        if (drain_now)
            s->draining = true;
        prefetch_turn(s);
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&s->ring, head, cqe)
        {
            dispatch(s, cqe);
            n++;
        }
        io_uring_cq_advance(&s->ring, n);
        METRIC_ADD(s->metrics->uring_cqes, n);
        if (s->_br_returned != 0) {
            io_uring_buf_ring_advance(s->_br, (int)s->_br_returned);
            s->_br_returned = 0;
        }
        if (drain_now)
            begin_drain(s);
        timer_advance(&s->wheel, s->clock.now_ms, on_timer, s);
        refresh_store(s);
        METRIC_SET(s->metrics->uring_cq_overflow, *s->ring.cq.koverflow);
    }
}

static void pin(struct shard *s)
{
    /* Within the process's affinity mask (a container's cpuset), not CPU ids from 0. */
    int cpu = cpus_nth(s->id);
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc != 0)
        log_warn("pin_failed", "shard=%u err=\"%s\"", s->id, strerror(rc));
}

static void *shard_thread(void *arg)
{
    struct shard *s = arg;
    pin(s);
    clock_update(&s->clock);
    timer_wheel_init(&s->wheel, s->clock.now_ms);
    if (setup_ring(s) != 0) {
        atomic_store(&s->srv->failed, true);
        return NULL;
    }
    int rc = store_reader_open(&s->reader, &s->srv->store);
    if (rc != 0) {
        log_error("store_reader_failed", "shard=%u err=\"%s\"", s->id, mdb_strerror(rc));
        atomic_store(&s->srv->failed, true);
        teardown(s);
        return NULL;
    }
    s->last_refresh_ms = s->clock.now_ms;
    s->last_feed_ms = s->clock.now_ms;
    store_feed_observe(&s->reader, s->cfg->db, &s->feed);
    s->reader.index = store_indexer_acquire(&s->srv->indexer, s->id);
    METRIC_SET(s->metrics->store_txn_id, store_reader_txn_id(&s->reader));
    for (int k = 0; k < LISTENER__COUNT; k++)
        arm_accept(s, (enum listener_kind)k);
    atomic_fetch_add(&s->srv->shards_running, 1);
    run(s);
    observe_answered(s); /* the last turn's answers: counted, and published to the access log */
    teardown(s);
    return NULL;
}

int shard_start(struct shard *s)
{
    int rc = pthread_create(&s->thread, NULL, shard_thread, s);
    return -rc;
}

void shard_free(struct shard *s)
{
    if (s->tls != NULL)
        tls_shard_free(s->tls);
    free(s->metrics);
    free(s);
}
