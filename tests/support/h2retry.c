/* h2retry.c - test support: an HTTP/2 load client over nghttp2 that re-issues refused requests on a new connection. */
#include "h2retry.h"

#include <errno.h>
#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

#define MAX_CONNS 64
#define MAX_ATTEMPTS 8
#define GRACE_MS 10000

struct conn;

/* One attempt of one request; owned by its connection's list until its stream closes or the connection ends. */
struct req {
    struct req *next, *prev;
    struct conn *c;
    int attempts; /* earlier attempts refused */
    int status;
    bool sent;  /* its HEADERS went out */
    bool ended; /* END_STREAM from the server */
};

struct conn {
    int fd; /* -1: a free slot */
    nghttp2_session *ng;
    struct req head; /* sentinel of the live requests */
    int live;
    bool goaway; /* takes no new request; closed once its streams are done */
    struct run *run;
};

struct run {
    int port;
    const char *path;
    int streams;
    bool accepting; /* new requests may start */
    int *owed;      /* attempts of the refused requests waiting to be re-issued */
    size_t nowed, owed_cap;
    struct h2retry_stats *st;
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void push_owed(struct run *r, int attempts)
{
    if (r->nowed == r->owed_cap) {
        r->owed_cap = r->owed_cap ? r->owed_cap * 2 : 64;
        r->owed = realloc(r->owed, r->owed_cap * sizeof(*r->owed));
        if (r->owed == NULL)
            abort();
    }
    r->owed[r->nowed++] = attempts;
}

/* A refused attempt: re-issued unless it was refused too often. */
static void owe(struct run *r, int attempts)
{
    if (attempts > MAX_ATTEMPTS) {
        r->st->given_up++;
        return;
    }
    r->st->refused++;
    push_owed(r, attempts);
}

static void unlink_req(struct req *q)
{
    q->prev->next = q->next;
    q->next->prev = q->prev;
    q->c->live--;
}

/* Where an attempt ends: answered, refused before the server took it
 * (never sent, or REFUSED_STREAM: re-issued), or lost. */
static void settle(struct req *q, uint32_t error_code)
{
    struct run *r = q->c->run;
    if (error_code == NGHTTP2_NO_ERROR && q->ended && q->status != 0) {
        if (q->status == 200)
            r->st->ok++;
        else
            r->st->non2xx++;
    } else if (!q->sent || error_code == NGHTTP2_REFUSED_STREAM) {
        owe(r, q->attempts + 1);
    } else {
        r->st->failed++;
    }
    unlink_req(q);
    free(q);
}

static ssize_t cb_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)ng, (void)flags;
    struct conn *c = ud;
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EINTR ? NGHTTP2_ERR_WOULDBLOCK : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static ssize_t cb_recv(nghttp2_session *ng, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)ng, (void)flags;
    struct conn *c = ud;
    ssize_t n = recv(c->fd, buf, len, 0);
    if (n > 0)
        return n;
    if (n == 0)
        return NGHTTP2_ERR_EOF;
    return errno == EAGAIN || errno == EINTR ? NGHTTP2_ERR_WOULDBLOCK : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int cb_header(nghttp2_session *ng, const nghttp2_frame *fr, const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags, (void)ud, (void)valuelen;
    struct req *q = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);
    if (q != NULL && namelen == 7 && memcmp(name, ":status", 7) == 0)
        q->status = atoi((const char *)value); /* nghttp2 NUL-terminates values */
    return 0;
}

static int cb_frame_recv(nghttp2_session *ng, const nghttp2_frame *fr, void *ud)
{
    struct conn *c = ud;
    if (fr->hd.type == NGHTTP2_GOAWAY) {
        c->run->st->goaways++;
        c->goaway = true;
        return 0;
    }
    if ((fr->hd.type == NGHTTP2_HEADERS || fr->hd.type == NGHTTP2_DATA) && (fr->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct req *q = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);
        if (q != NULL)
            q->ended = true;
    }
    return 0;
}

static int cb_frame_send(nghttp2_session *ng, const nghttp2_frame *fr, void *ud)
{
    (void)ud;
    if (fr->hd.type == NGHTTP2_HEADERS) {
        struct req *q = nghttp2_session_get_stream_user_data(ng, fr->hd.stream_id);
        if (q != NULL)
            q->sent = true;
    }
    return 0;
}

/* nghttp2 closes a stream whose HEADERS it refused to send (after a GOAWAY)
 * with REFUSED_STREAM, and the streams above a GOAWAY's last id likewise. */
static int cb_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud)
{
    (void)ud;
    struct req *q = nghttp2_session_get_stream_user_data(ng, id);
    if (q != NULL) {
        nghttp2_session_set_stream_user_data(ng, id, NULL);
        settle(q, error_code);
    }
    return 0;
}

static nghttp2_session_callbacks *callbacks(void)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        abort();
    nghttp2_session_callbacks_set_send_callback(cbs, cb_send);
    nghttp2_session_callbacks_set_recv_callback(cbs, cb_recv);
    nghttp2_session_callbacks_set_on_header_callback(cbs, cb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cb_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, cb_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb_stream_close);
    return cbs;
}

/* Connects slot c (ts_connect's blocking connect on loopback, then non-blocking I/O). Returns 0 or -1. */
static int conn_open(struct conn *c, nghttp2_session_callbacks *cbs)
{
    int fd = ts_connect(c->run->port);
    if (fd < 0) {
        c->run->st->connect_errors++;
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->fd = fd;
    c->goaway = false;
    c->live = 0;
    c->head.next = c->head.prev = &c->head;
    if (nghttp2_session_client_new(&c->ng, cbs, c) != 0)
        abort();
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}, {NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, 2);
    c->run->st->connections++;
    return 0;
}

/* Ends slot c. nghttp2 has already closed (REFUSED_STREAM) the streams a
 * GOAWAY excluded; of what is left, the unsent are re-issued and the sent are lost. */
static void conn_close(struct conn *c)
{
    while (c->head.next != &c->head)
        settle(c->head.next, NGHTTP2_CANCEL);
    nghttp2_session_del(c->ng);
    c->ng = NULL;
    close(c->fd);
    c->fd = -1;
}

/* Starts requests on c while it may: re-issues first, then new ones while the run accepts. */
static void conn_fill(struct conn *c)
{
    struct run *r = c->run;
    static const char *const nv_names[] = {":method", ":scheme", ":authority", ":path"};
    while (c->live < r->streams && !c->goaway && nghttp2_session_check_request_allowed(c->ng)) {
        int attempts;
        if (r->nowed > 0)
            attempts = r->owed[--r->nowed];
        else if (r->accepting) {
            attempts = 0;
            r->st->issued++;
        } else
            break;
        struct req *q = calloc(1, sizeof(*q));
        if (q == NULL)
            abort();
        q->c = c;
        q->attempts = attempts;
        const char *values[] = {"GET", "http", "127.0.0.1", r->path};
        nghttp2_nv nv[4];
        for (int i = 0; i < 4; i++)
            nv[i] = (nghttp2_nv){(uint8_t *)nv_names[i], (uint8_t *)values[i], strlen(nv_names[i]), strlen(values[i]),
                                 NGHTTP2_NV_FLAG_NONE};
        if (nghttp2_submit_request(c->ng, NULL, nv, 4, NULL, q) < 0) {
            free(q);
            push_owed(r, attempts);
            break;
        }
        q->next = &c->head;
        q->prev = c->head.prev;
        c->head.prev->next = q;
        c->head.prev = q;
        c->live++;
    }
}

int h2retry_run(int port, const char *path, int conns, int streams, int seconds, struct h2retry_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (conns > MAX_CONNS)
        conns = MAX_CONNS;
    struct run r = {.port = port, .path = path, .streams = streams, .accepting = true, .st = st};
    r.owed_cap = 64;
    r.owed = malloc(r.owed_cap * sizeof(*r.owed));
    if (r.owed == NULL)
        abort();
    struct conn cs[MAX_CONNS];
    for (int i = 0; i < conns; i++)
        cs[i] = (struct conn){.fd = -1, .run = &r};
    nghttp2_session_callbacks *cbs = callbacks();
    long start = now_ms(), end = start + seconds * 1000L, hard_end = end + GRACE_MS;

    for (;;) {
        long t = now_ms();
        if (t >= end)
            r.accepting = false;
        int busy = 0;
        for (int i = 0; i < conns; i++)
            busy += cs[i].fd >= 0 ? cs[i].live : 0;
        if ((!r.accepting && r.nowed == 0 && busy == 0) || t >= hard_end)
            break;

        struct pollfd pfd[MAX_CONNS];
        bool want_connect = false;
        for (int i = 0; i < conns; i++) {
            struct conn *c = &cs[i];
            if (c->fd < 0 && (r.accepting || r.nowed > 0) && conn_open(c, cbs) != 0)
                want_connect = true;
            pfd[i] = (struct pollfd){.fd = c->fd, .events = 0};
            if (c->fd < 0)
                continue;
            conn_fill(c);
            if (nghttp2_session_send(c->ng) != 0 || (c->goaway && c->live == 0) ||
                (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng))) {
                conn_close(c); /* drained after a GOAWAY, or broken: a new connection takes its place */
                pfd[i].fd = -1;
                continue;
            }
            pfd[i].events = POLLIN | (nghttp2_session_want_write(c->ng) ? POLLOUT : 0);
        }
        if (st->connections == 0 && t - start > 5000)
            break;
        poll(pfd, (nfds_t)conns, want_connect ? 10 : 100);
        for (int i = 0; i < conns; i++) {
            struct conn *c = &cs[i];
            if (c->fd < 0 || pfd[i].fd < 0 || pfd[i].revents == 0)
                continue;
            if (nghttp2_session_recv(c->ng) != 0)
                conn_close(c); /* EOF or reset: what it held is settled by its state */
        }
    }
    for (int i = 0; i < conns; i++) {
        if (cs[i].fd >= 0) {
            st->unanswered += cs[i].live;
            while (cs[i].head.next != &cs[i].head) {
                struct req *q = cs[i].head.next;
                unlink_req(q);
                free(q);
            }
            nghttp2_session_del(cs[i].ng);
            close(cs[i].fd);
        }
    }
    st->unanswered += (long)r.nowed;
    nghttp2_session_callbacks_del(cbs);
    free(r.owed);
    return st->connections > 0 ? 0 : -1;
}

void h2retry_format(const struct h2retry_stats *st, char *out, int cap)
{
    snprintf(out, (size_t)cap,
             "h2retry: issued %ld ok %ld non2xx %ld failed %ld refused %ld given_up %ld goaways %ld connections %ld "
             "connect_errors %ld unanswered %ld",
             st->issued, st->ok, st->non2xx, st->failed, st->refused, st->given_up, st->goaways, st->connections,
             st->connect_errors, st->unanswered);
}
