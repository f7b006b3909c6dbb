/* floor.c - the io_uring floor for bench/run.sh: the least a server on this ring design can do per request.
 *
 * One thread, one ring (SINGLE_ISSUER | DEFER_TASKRUN, as ringd), multishot
 * accept, multishot recv into a provided-buffer ring, one send per
 * connection per loop turn. It parses nothing: it counts "\r\n\r\n" (across
 * reads) and answers each with the same canned 200 whose body is the file
 * given with --body, under headers shaped like ringd's. No routing, no
 * lookup, no timers, no metrics. Whatever ringd costs above this is ringd's.
 *
 *   floor --listen 127.0.0.1:PORT --body FILE
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NBUFS 1024
#define BUFSZ 4096
#define OUT_CAP (1u << 20) /* per-connection output; a connection that exceeds it is closed */

enum { T_ACCEPT = 1, T_RECV = 2, T_SEND = 3, T_CLOSE = 4, T_SIGNAL = 5 };

struct conn {
    int fd, inflight;
    unsigned match; /* bytes of "\r\n\r\n" matched at the end of the last read */
    int closing, sending;
    size_t out_len, send_len, sent;
    char *out, *send;
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static char resp[1024];
static size_t resp_len;

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe;
    while ((sqe = io_uring_get_sqe(&ring)) == NULL)
        io_uring_submit(&ring);
    return sqe;
}

static uint64_t tag(int kind, void *p)
{
    return ((uint64_t)kind << 56) | (uint64_t)(uintptr_t)p;
}

static void arm_recv(struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, tag(T_RECV, c));
    c->inflight++;
}

static void start_send(struct conn *c)
{
    if (c->sending || c->out_len == 0 || c->closing)
        return;
    char *t = c->send;
    c->send = c->out;
    c->out = t;
    c->send_len = c->out_len;
    c->out_len = 0;
    c->sent = 0;
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_send(sqe, c->fd, c->send, c->send_len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(T_SEND, c));
    c->sending = 1;
    c->inflight++;
}

static void conn_close(struct conn *c)
{
    if (!c->closing) {
        c->closing = 1;
        struct io_uring_sqe *sqe = sqe_get();
        io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, 0);
    }
    if (c->inflight == 0) {
        struct io_uring_sqe *sqe = sqe_get();
        io_uring_prep_close(sqe, c->fd);
        io_uring_sqe_set_data64(sqe, 0);
        free(c->out);
        free(c->send);
        free(c);
    }
}

/* Counts request ends in data and appends one canned response for each. */
static void on_data(struct conn *c, const char *data, size_t len)
{
    static const char end[] = "\r\n\r\n";
    unsigned m = c->match;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == end[m]) {
            if (++m == 4) {
                m = 0;
                if (c->out_len + resp_len > OUT_CAP) {
                    conn_close(c);
                    return;
                }
                memcpy(c->out + c->out_len, resp, resp_len);
                c->out_len += resp_len;
            }
        } else {
            m = data[i] == '\r' ? 1 : 0;
        }
    }
    c->match = m;
    start_send(c);
}

static int listen_on(const char *spec)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || (size_t)(colon - spec) >= sizeof(host))
        return -1;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 4096) != 0)
        return -1;
    return fd;
}

static void load_response(const char *path)
{
    static char body[512];
    FILE *f = fopen(path, "rb");
    size_t n = f != NULL ? fread(body, 1, sizeof(body), f) : 0;
    if (f != NULL)
        fclose(f);
    while (n > 0 && (body[n - 1] == '\n' || body[n - 1] == '\r'))
        n--;
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime(&now));
    int h = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nServer: ringd\r\nDate: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     date, n);
    memcpy(resp + h, body, n);
    resp_len = (size_t)h + n;
}

int main(int argc, char **argv)
{
    const char *listen_spec = "127.0.0.1:29080", *body = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0)
            listen_spec = argv[i + 1];
        else if (strcmp(argv[i], "--body") == 0)
            body = argv[i + 1];
    }
    if (body == NULL) {
        fprintf(stderr, "usage: floor --listen ADDR:PORT --body FILE\n");
        return 2;
    }
    load_response(body);
    signal(SIGPIPE, SIG_IGN);
    /* SIGTERM/SIGINT arrive as a read on a signalfd, so the loop can cancel its
     * accept and close the listener before exiting: a ring torn down by exit
     * alone keeps the listening socket alive a moment after the process. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    static struct signalfd_siginfo si;
    int lfd = listen_on(listen_spec);
    if (lfd < 0) {
        fprintf(stderr, "floor: cannot listen on %s: %s\n", listen_spec, strerror(errno));
        return 1;
    }
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                         IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL,
                                .cq_entries = 65536};
    int rc = io_uring_queue_init_params(4096, &ring, &p);
    if (rc < 0) {
        fprintf(stderr, "floor: io_uring: %s\n", strerror(-rc));
        return 1;
    }
    br = mmap(NULL, NBUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    bufs = malloc((size_t)NBUFS * BUFSZ);
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br, .ring_entries = NBUFS, .bgid = 0};
    if (br == MAP_FAILED || bufs == NULL || io_uring_register_buf_ring(&ring, &reg, 0) != 0) {
        fprintf(stderr, "floor: cannot register the buffer ring\n");
        return 1;
    }
    io_uring_buf_ring_init(br);
    for (int i = 0; i < NBUFS; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * BUFSZ, BUFSZ, (unsigned short)i, io_uring_buf_ring_mask(NBUFS), i);
    io_uring_buf_ring_advance(br, NBUFS);

    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag(T_ACCEPT, NULL));
    sqe = sqe_get();
    io_uring_prep_read(sqe, sfd, &si, sizeof(si), 0);
    io_uring_sqe_set_data64(sqe, tag(T_SIGNAL, NULL));
    fprintf(stderr, "floor: listening on %s\n", listen_spec);

    for (bool stop = false; !stop;) {
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        int returned = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            n++;
            int kind = (int)(cqe->user_data >> 56);
            struct conn *c = (struct conn *)(uintptr_t)(cqe->user_data & ((1ULL << 56) - 1));
            bool more = cqe->flags & IORING_CQE_F_MORE;
            if (kind == T_SIGNAL) {
                stop = true;
            } else if (kind == T_ACCEPT) {
                if (cqe->res >= 0) {
                    c = calloc(1, sizeof(*c));
                    c->fd = cqe->res;
                    c->out = malloc(OUT_CAP);
                    c->send = malloc(OUT_CAP);
                    arm_recv(c);
                }
                if (!more) {
                    sqe = sqe_get();
                    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
                    io_uring_sqe_set_data64(sqe, tag(T_ACCEPT, NULL));
                }
            } else if (kind == T_RECV) {
                if (cqe->res > 0) {
                    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                    if (!c->closing)
                        on_data(c, bufs + (size_t)bid * BUFSZ, (size_t)cqe->res);
                    io_uring_buf_ring_add(br, bufs + (size_t)bid * BUFSZ, BUFSZ, (unsigned short)bid,
                                          io_uring_buf_ring_mask(NBUFS), returned++);
                }
                if (!more) {
                    c->inflight--; /* only now: on_data may have closed c, which must not free it under us */
                    if (c->closing || cqe->res == 0 || (cqe->res < 0 && cqe->res != -ENOBUFS))
                        conn_close(c);
                    else
                        arm_recv(c);
                }
            } else if (kind == T_SEND) {
                c->inflight--;
                c->sending = 0;
                if (cqe->res < 0 || c->closing) {
                    conn_close(c);
                } else if ((size_t)cqe->res < c->send_len - c->sent) {
                    c->sent += (size_t)cqe->res;
                    sqe = sqe_get();
                    io_uring_prep_send(sqe, c->fd, c->send + c->sent, c->send_len - c->sent, MSG_NOSIGNAL);
                    io_uring_sqe_set_data64(sqe, tag(T_SEND, c));
                    c->sending = 1;
                    c->inflight++;
                } else {
                    start_send(c);
                }
            }
        }
        io_uring_cq_advance(&ring, n);
        if (returned)
            io_uring_buf_ring_advance(br, returned);
    }
    /* Cancel the accept and wait for it, so the listener is gone when we exit. */
    struct io_uring_sqe *c = sqe_get();
    io_uring_prep_cancel64(c, tag(T_ACCEPT, NULL), 0);
    io_uring_sqe_set_data64(c, 0);
    for (bool accept_done = false; !accept_done;) {
        struct io_uring_cqe *cqe;
        if (io_uring_submit_and_wait(&ring, 1) < 0 || io_uring_peek_cqe(&ring, &cqe) != 0)
            break;
        accept_done = cqe->user_data == tag(T_ACCEPT, NULL) && !(cqe->flags & IORING_CQE_F_MORE);
        io_uring_cqe_seen(&ring, cqe);
    }
    close(lfd);
    return 0;
}
