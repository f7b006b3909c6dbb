/* h2.c - HTTP/2 connections: nghttp2 as a pure protocol engine between the shard's recv bytes and the connection's output.
 *
 * Bytes in: h2_process hands what the shard received to nghttp2_session_mem_recv.
 * Its callbacks collect each request's :method, :path and user-id into the
 * stream's own memory, and at END_STREAM the request goes through the same
 * router as HTTP/1.1. The answer's body is copied into the stream (the
 * router's body lives only until its next call) and served by a data
 * provider. Bytes out: pump() drains nghttp2_session_mem_send into c->out and
 * asks the shard to flush; everything produced in a loop turn leaves in one
 * send. h2_flush runs before each send so frames that flow control held back
 * go out as soon as a WINDOW_UPDATE let them.
 *
 * Limits, since nghttp2 1.52 does not enforce all of them on receive:
 *   - header list: bytes (name + value + 32 per field, as RFC 9113 counts) and
 *     fields are counted in on_header; past the cap the stream is answered 431;
 *   - streams: SETTINGS_MAX_CONCURRENT_STREAMS = cfg->h2_max_streams;
 *   - rapid reset: nghttp2's RST_STREAM token bucket tears the session down;
 *   - CONTINUATION floods: at most H2_MAX_CONTINUATIONS per header block;
 *   - output: pump stops at CONN_OUT_HIGH_WATER and input pauses there too,
 *     so a peer that does not read cannot grow our memory.
 * A fatal nghttp2 error (< NGHTTP2_ERR_FATAL) leaves the session unusable: a
 * GOAWAY is written by hand (c->out only ever holds whole frames) and the
 * connection closes after it is sent; a flood closes at once.
 */
#include "net/h2.h"

#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/shard.h"
#include "net/conn.h"
#include "net/h1_parser.h"
#include "net/router.h"

#define H2_MAX_HEADER_BYTES H1_MAX_HEADER_BYTES /* same caps as HTTP/1.1 */
#define H2_MAX_HEADER_FIELDS H1_MAX_HEADERS
#define H2_MAX_BODY H1_MAX_BODY  /* request body bytes discarded before 413 */
#define H2_INITIAL_WINDOW 16384  /* requests carry no bodies; nothing is buffered */
#define H2_MAX_CONTINUATIONS 16  /* a 32 KiB header list needs at most 2 at 16 KiB frames */
#define H2_RESET_BURST 1000      /* RST_STREAM token bucket (nghttp2's defaults, explicit) */
#define H2_RESET_RATE 33         /* tokens per second */
#define H2_MAX_OUTBOUND_ACK 100  /* SETTINGS/PING ACKs queued before NGHTTP2_ERR_FLOODED */
#define H2_SETTINGS_B64_MAX 1024 /* HTTP2-Settings longer than this is refused */

/* One client-opened stream. Its request fields and, once answered, the
 * response body live in `mem` (offsets, since appends may move it). */
struct h2_stream {
    int32_t id;
    uint8_t method; /* enum router_method */
    bool has_method, has_path, has_user_id;
    bool too_large; /* header list over the caps: answered 431 */
    bool answered;
    bool request_done; /* the client's END_STREAM came: it sends nothing more on this stream */
    uint32_t hdr_bytes, hdr_fields;
    uint64_t body_in; /* request body bytes received (discarded) */
    size_t path_off, path_len, user_id_off, user_id_len;
    size_t body_off, body_len, body_sent;
    struct buf mem;
    struct h2_stream *prev, *next;
};

struct h2_conn {
    nghttp2_session *ng;
    struct conn *c;
    struct h2_stream *streams; /* every stream with our data: freed at close or with the session */
    unsigned nstreams;
    bool dead;     /* fatal nghttp2 error: the session must not be used again */
    bool draining; /* our shutdown GOAWAY is queued */
    bool error;    /* a GOAWAY with an error code was sent */
};

/* ---------- streams ---------- */

static struct h2_stream *stream_new(struct h2_conn *h, int32_t id)
{
    struct h2_stream *st = xcalloc(1, sizeof(*st));
    st->id = id;
    st->method = METHOD_OTHER;
    st->next = h->streams;
    if (h->streams != NULL)
        h->streams->prev = st;
    h->streams = st;
    h->nstreams++;
    h->c->request_start_ms = h->c->shard->clock.now_ms; /* stream progress (see conn.h) */
    METRIC_INC(h->c->shard->metrics->h2_streams);
    return st;
}

static void stream_free(struct h2_conn *h, struct h2_stream *st)
{
    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        h->streams = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
    h->nstreams--;
    buf_free(&st->mem);
    free(st);
}

/* ---------- answering ---------- */

static ssize_t read_body(nghttp2_session *ng, int32_t sid, uint8_t *out, size_t cap, uint32_t *flags, nghttp2_data_source *src,
                         void *ud)
{
    struct h2_stream *st = src->ptr;
    size_t n = st->body_len - st->body_sent;
    if (n > cap)
        n = cap;
    memcpy(out, st->mem.data + st->body_off + st->body_sent, n);
    st->body_sent += n;
    if (st->body_sent == st->body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV_STATIC(n, v)                                                                                                            \
    {                                                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE \
    }

/* Answers st: through the router, or with status when it is not 0 (an error
 * decided here). The body is copied into the stream; nghttp2 copies the
 * header values it does not get as static strings. */
static void answer(struct h2_conn *h, struct h2_stream *st, int status)
{
    struct conn *c = h->c;
    struct shard *s = c->shard;
    struct response res;
    if (status == 0 && (!st->has_path || !st->has_method))
        status = 400; /* nghttp2's checks make this unreachable; stay safe */
    if (status != 0) {
        res = (struct response){.status = status, .route = ROUTE_OTHER, .content_type = "application/json"};
        res.body = router_error_body(status, &res.body_len);
    } else {
        struct request req = {
            .method = (enum router_method)st->method,
            .path = st->mem.data + st->path_off,
            .path_len = st->path_len,
            .user_id = st->has_user_id ? st->mem.data + st->user_id_off : NULL,
            .user_id_len = st->user_id_len,
            .listener = c->listener,
        };
        router_handle(s, &req, &res);
    }
    st->answered = true;
    bool head = st->method == METHOD_HEAD;
    if (!head && res.body_len > 0) {
        st->body_off = st->mem.len;
        st->body_len = res.body_len;
        buf_append(&st->mem, res.body, res.body_len);
    }

    char status_s[3], len_s[20];
    status_s[0] = (char)('0' + res.status / 100 % 10); /* statuses are three digits */
    status_s[1] = (char)('0' + res.status / 10 % 10);
    status_s[2] = (char)('0' + res.status % 10);
    size_t len_n = buf_fmt_u64(len_s, res.body_len);
    nghttp2_nv nva[6] = {
        {(uint8_t *)":status", (uint8_t *)status_s, 7, 3, NGHTTP2_NV_FLAG_NO_COPY_NAME},
        NV_STATIC("server", "ringd"),
        {(uint8_t *)"date", (uint8_t *)s->clock.date, 4, CLOCK_DATE_LEN, NGHTTP2_NV_FLAG_NO_COPY_NAME},
        /* content types are string literals: no copy */
        {(uint8_t *)"content-type", (uint8_t *)res.content_type, 12, strlen(res.content_type),
         NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE},
        {(uint8_t *)"content-length", (uint8_t *)len_s + sizeof(len_s) - len_n, 14, len_n, NGHTTP2_NV_FLAG_NO_COPY_NAME},
        NV_STATIC("allow", "GET, HEAD"),
    };
    size_t nvlen = res.status == 405 ? 6 : 5;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    int rv = nghttp2_submit_response(h->ng, st->id, nva, nvlen, st->body_len > 0 ? &prd : NULL);
    if (rv != 0) /* only on a stream nghttp2 already closed: nothing to answer */
        return;
    shard_count_request(s, PROTO_HTTP2, res.route, res.status);
    c->seen_request = true;
    c->request_start_ms = s->clock.now_ms; /* stream progress */
}

/* ---------- nghttp2 callbacks ---------- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct h2_conn *h = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_stream *st = stream_new(h, frame->hd.stream_id);
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *ud)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (st == NULL || st->too_large)
        return 0;
    /* nghttp2 1.52 does not enforce a header list size on receive: count here. */
    st->hdr_bytes += (uint32_t)(namelen + valuelen + 32);
    st->hdr_fields++;
    if (st->hdr_bytes > H2_MAX_HEADER_BYTES || st->hdr_fields > H2_MAX_HEADER_FIELDS) {
        st->too_large = true;
        return 0;
    }
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: counted, otherwise ignored */
    if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
        st->has_method = true;
        if (valuelen == 3 && memcmp(value, "GET", 3) == 0)
            st->method = METHOD_GET;
        else if (valuelen == 4 && memcmp(value, "HEAD", 4) == 0)
            st->method = METHOD_HEAD;
        else
            st->method = METHOD_OTHER;
    } else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        st->has_path = true;
        st->path_off = st->mem.len;
        st->path_len = valuelen;
        buf_append(&st->mem, value, valuelen);
    } else if (namelen == 7 && memcmp(name, "user-id", 7) == 0 && !st->has_user_id) {
        st->has_user_id = true;
        st->user_id_off = st->mem.len;
        st->user_id_len = valuelen;
        buf_append(&st->mem, value, valuelen);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data, size_t len, void *ud)
{
    struct h2_conn *h = ud;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, sid);
    if (st == NULL || st->answered)
        return 0;
    st->body_in += len;
    if (st->body_in > H2_MAX_BODY) /* like HTTP/1.1: bodies are discarded, but not without end */
        answer(h, st, 413);
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct h2_conn *h = ud;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA: {
        struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
        if (st != NULL && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
            st->request_done = true;
        if (st == NULL || st->answered)
            return 0;
        if (st->too_large)
            answer(h, st, 431); /* at the end of the header block, whether or not a body follows */
        else if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            answer(h, st, 0);
        return 0;
    }
    case NGHTTP2_RST_STREAM:
        METRIC_INC(h->c->shard->metrics->h2_resets_received);
        return 0;
    default:
        return 0;
    }
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct h2_conn *h = ud;
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        /* Answered early (413, 431) while the client may still be sending:
         * RST_STREAM(NO_ERROR) after our last frame frees the stream's slot
         * and stops the upload (RFC 9113, 8.1). */
        struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
        if (st != NULL && !st->request_done)
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        METRIC_INC(h->c->shard->metrics->h2_goaways_sent);
        if (frame->goaway.error_code != NGHTTP2_NO_ERROR)
            h->error = true;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t error_code, void *ud)
{
    struct h2_conn *h = ud;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, sid);
    if (st != NULL) {
        nghttp2_session_set_stream_user_data(ng, sid, NULL);
        stream_free(h, st);
    }
    return 0;
}

/* ---------- session set-up (callbacks and options are built once, read-only after) ---------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static nghttp2_session_callbacks *g_callbacks;
static nghttp2_option *g_option;

static void init_once(void)
{
    if (nghttp2_session_callbacks_new(&g_callbacks) != 0 || nghttp2_option_new(&g_option) != 0)
        abort();
    nghttp2_session_callbacks_set_on_begin_headers_callback(g_callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(g_callbacks, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(g_callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(g_callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(g_callbacks, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(g_callbacks, on_stream_close);

    nghttp2_option_set_no_closed_streams(g_option, 1); /* no priority tree: closed streams are dropped */
    nghttp2_option_set_stream_reset_rate_limit(g_option, H2_RESET_BURST, H2_RESET_RATE);
    nghttp2_option_set_max_continuations(g_option, H2_MAX_CONTINUATIONS);
    nghttp2_option_set_max_outbound_ack(g_option, H2_MAX_OUTBOUND_ACK);
    nghttp2_option_set_max_send_header_block_length(g_option, 16384); /* ours are a few hundred bytes */
    nghttp2_option_set_max_deflate_dynamic_table_size(g_option, 4096);
}

/* Creates c's session and queues our SETTINGS. Returns NULL on failure. */
static struct h2_conn *session_new(struct conn *c)
{
    pthread_once(&g_once, init_once);
    struct h2_conn *h = xcalloc(1, sizeof(*h));
    h->c = c;
    if (nghttp2_session_server_new2(&h->ng, g_callbacks, h, g_option) != 0) {
        free(h);
        return NULL;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->shard->cfg->h2_max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_INITIAL_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_BYTES},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0) {
        nghttp2_session_del(h->ng);
        free(h);
        return NULL;
    }
    return h;
}

/* ---------- output ---------- */

static enum metrics_close close_reason(const struct h2_conn *h)
{
    return h->error ? CLOSE_ERROR : h->draining ? CLOSE_SHUTDOWN : CLOSE_CLIENT;
}

/* The session is unusable: queue a hand-made GOAWAY (c->out holds only whole
 * frames, so it is well-formed) and close once it is sent. */
static void fail(struct h2_conn *h, uint32_t error_code)
{
    struct conn *c = h->c;
    h->dead = true;
    h->error = true;
    uint32_t last = (uint32_t)nghttp2_session_get_last_proc_stream_id(h->ng);
    uint8_t f[17] = {0, 0, 8, NGHTTP2_GOAWAY, 0, 0, 0, 0, 0};
    f[9] = (uint8_t)(last >> 24 & 0x7f);
    f[10] = (uint8_t)(last >> 16);
    f[11] = (uint8_t)(last >> 8);
    f[12] = (uint8_t)last;
    f[13] = (uint8_t)(error_code >> 24);
    f[14] = (uint8_t)(error_code >> 16);
    f[15] = (uint8_t)(error_code >> 8);
    f[16] = (uint8_t)error_code;
    buf_append(&c->out, f, sizeof(f));
    METRIC_INC(c->shard->metrics->h2_goaways_sent);
    c->close_after_send = true;
    c->close_reason = CLOSE_ERROR;
    shard_want_flush(c->shard, c);
}

/* Drains nghttp2's output into c->out (up to the high-water mark; the rest
 * after the next send) and, when the session is finished, marks c to close
 * once its output is sent. */
static void pump(struct h2_conn *h)
{
    struct conn *c = h->c;
    if (h->dead)
        return;
    size_t before = c->out.len;
    while (c->out.len < CONN_OUT_HIGH_WATER) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(h->ng, &p);
        if (n < 0) {
            h->dead = true;
            shard_close_conn(c->shard, c, CLOSE_ERROR);
            return;
        }
        if (n == 0)
            break;
        buf_append(&c->out, p, (size_t)n);
    }
    if (c->out.len != before)
        shard_want_flush(c->shard, c);
    if (!c->close_after_send && !nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng)) {
        c->close_after_send = true;
        c->close_reason = (uint8_t)close_reason(h);
        shard_want_flush(c->shard, c);
    }
}

/* ---------- the interface ---------- */

int h2_start(struct conn *c)
{
    struct h2_conn *h = session_new(c);
    if (h == NULL)
        return -1;
    c->h2 = h;
    c->proto = CONN_H2;
    return 0;
}

/* Decodes base64url (padding optional) into out; returns the length or -1. */
static int b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    while (len > 0 && in[len - 1] == '=')
        len--;
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        int v;
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '-' || ch == '+')
            v = 62;
        else if (ch == '_' || ch == '/')
            v = 63;
        else
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap)
                return -1;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits >= 6) /* a lone trailing character encodes no whole byte */
        return -1;
    return (int)n;
}

int h2_upgrade(struct conn *c, const struct h1_request *req)
{
    uint8_t settings[H2_SETTINGS_B64_MAX];
    if (req->h2_settings_len > H2_SETTINGS_B64_MAX)
        return -1;
    int slen = b64url_decode(req->h2_settings, req->h2_settings_len, settings, sizeof(settings));
    if (slen < 0 || slen % 6 != 0)
        return -1;
    struct h2_conn *h = session_new(c);
    if (h == NULL)
        return -1;
    bool head = req->method_kind == H1_HEAD;
    if (nghttp2_session_upgrade2(h->ng, settings, (size_t)slen, head, NULL) != 0) {
        nghttp2_session_del(h->ng);
        free(h);
        return -1;
    }
    static const char switching[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    buf_append(&c->out, switching, sizeof(switching) - 1);
    c->h2 = h;
    c->proto = CONN_H2;

    /* Stream 1 is the upgrading request, already half-closed by the client. */
    struct h2_stream *st = stream_new(h, 1);
    nghttp2_session_set_stream_user_data(h->ng, 1, st);
    st->has_method = st->has_path = true;
    st->method = req->method_kind == H1_GET ? METHOD_GET : head ? METHOD_HEAD : METHOD_OTHER;
    st->path_off = st->mem.len;
    st->path_len = req->path_len;
    buf_append(&st->mem, req->path, req->path_len);
    if (req->user_id != NULL) {
        st->has_user_id = true;
        st->user_id_off = st->mem.len;
        st->user_id_len = req->user_id_len;
        buf_append(&st->mem, req->user_id, req->user_id_len);
    }
    answer(h, st, 0);
    pump(h);
    shard_want_flush(c->shard, c);
    return 0;
}

size_t h2_process(struct conn *c, const char *data, size_t len)
{
    struct h2_conn *h = c->h2;
    if (h->dead || !nghttp2_session_want_read(h->ng))
        return len; /* finished: what the peer still sends is dropped */
    if (c->out.len >= CONN_OUT_HIGH_WATER) {
        c->paused = true; /* the peer is not reading: stop taking requests until output drains */
        return 0;
    }
    ssize_t rv = nghttp2_session_mem_recv(h->ng, (const uint8_t *)data, len);
    if (rv < 0) {
        if (rv == NGHTTP2_ERR_FLOODED) {
            /* The peer does not read what it asks for (ACKs): nothing more is worth sending. */
            h->dead = true;
            shard_close_conn(c->shard, c, CLOSE_ERROR);
        } else {
            fail(h, rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
        }
        return len;
    }
    pump(h);
    return len;
}

void h2_flush(struct conn *c)
{
    if (c->h2 != NULL)
        pump(c->h2);
}

void h2_drain(struct conn *c)
{
    struct h2_conn *h = c->h2;
    if (h == NULL || h->dead || h->draining)
        return;
    h->draining = true;
    nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng), NGHTTP2_NO_ERROR, NULL, 0);
    if (!c->close_after_send) {
        c->close_after_send = true; /* once in-flight streams finish and the GOAWAY is out (h2_done) */
        c->close_reason = CLOSE_SHUTDOWN;
    }
    pump(h);
}

bool h2_idle(const struct conn *c)
{
    const struct h2_conn *h = c->h2;
    return h == NULL || h->dead || (h->nstreams == 0 && !nghttp2_session_want_write(h->ng));
}

bool h2_done(const struct conn *c)
{
    const struct h2_conn *h = c->h2;
    if (h == NULL || h->dead)
        return true;
    if (nghttp2_session_want_write(h->ng))
        return false;
    /* The peer closed its side: nothing more will arrive. */
    if (c->peer_eof)
        return true;
    return !nghttp2_session_want_read(h->ng);
}

void h2_free(struct conn *c)
{
    struct h2_conn *h = c->h2;
    if (h == NULL)
        return;
    /* nghttp2_session_del calls no stream-close callbacks: free our streams here. */
    nghttp2_session_del(h->ng);
    while (h->streams != NULL)
        stream_free(h, h->streams);
    free(h);
    c->h2 = NULL;
}
