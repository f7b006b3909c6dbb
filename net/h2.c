/* h2.c - HTTP/2 connections: frames in from the shard's recv bytes, requests through the router, frames out into c->out.
 *
 * ringd speaks HTTP/2 with its own codec (net/h2_frame for the wire format,
 * net/hpack for header compression) rather than a general-purpose library:
 * a request is a HEADERS frame ending its stream, an answer is one HEADERS
 * and a DATA frame or two, and everything a library adds around that
 * (callbacks, per-stream queues, priority trees, copies of every header) was
 * most of what an HTTP/2 request cost (bench/results/2026-12-02-h2-codec.md).
 *
 * Bytes in: h2_process walks whole frames in what the shard received (a
 * partial frame stays in c->in for the next read). A request whose header
 * block ends its stream is decoded, checked and answered on the spot: no
 * stream record is allocated, the router's body goes straight into c->out
 * as DATA when the peer's flow-control windows allow, and the stream is
 * closed before the next frame is read. A record (struct h2_stream) exists
 * only for a request still sending (HEADERS without END_STREAM: bodies are
 * read and dropped) or an answer the windows hold back (the rest of its body
 * is copied into the record and sent on WINDOW_UPDATE).
 *
 * Stream states without a table of closed streams: client streams are
 * numbered upwards, so an id above the highest seen is idle, an id in the
 * table is open (or half-closed), and any other id below is closed. Two
 * 64-bit windows over the ids just below the highest say which of those were
 * opened by a request (so a HEADERS there is STREAM_CLOSED rather than an
 * out-of-order id, PROTOCOL_ERROR) and which we reset ourselves (frames the
 * peer sent before it saw our RST_STREAM are ignored, RFC 9113 5.1).
 *
 * Errors: a connection error queues GOAWAY(last stream, code) and closes
 * once it is sent; a stream error sends RST_STREAM and forgets the stream.
 * c->out only ever holds whole frames.
 *
 * Limits and abuse:
 *   - header list: name + value + 32 per field (RFC 9113's count) and the
 *     field count are capped; past the cap the request is answered 431, the
 *     block still decoded to keep HPACK in step;
 *   - a header block is at most H2_MAX_HEADER_BLOCK octets in at most
 *     H2_MAX_CONTINUATIONS CONTINUATION frames (CONTINUATION floods);
 *   - streams: SETTINGS_MAX_CONCURRENT_STREAMS = cfg->h2_max_streams, more
 *     are refused (REFUSED_STREAM);
 *   - rapid reset: RST_STREAMs from the peer draw on a token bucket;
 *   - control floods: ACKs and RST_STREAMs we owe while our output is not
 *     being read are counted; past H2_MAX_CONTROL_UNSENT the connection is
 *     closed at once (the peer does not read what it asks for);
 *   - output: frames are read only while c->out is below CONN_OUT_HIGH_WATER,
 *     so a peer that does not read cannot grow our memory.
 */
#include "net/h2.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/shard.h"
#include "net/conn.h"
#include "net/grpc.h"
#include "net/h1_parser.h"
#include "net/h2_frame.h"
#include "net/hpack.h"
#include "net/router.h"

#define H2_MAX_HEADER_BYTES H1_MAX_HEADER_BYTES /* same caps as HTTP/1.1 */
#define H2_MAX_HEADER_FIELDS H1_MAX_HEADERS
#define H2_MAX_BODY H1_MAX_BODY          /* request body bytes dropped before 413 */
#define H2_MAX_CONTINUATIONS 16          /* a 32 KiB header list needs at most 2 at 16 KiB frames */
#define H2_MAX_HEADER_BLOCK (64u * 1024) /* octets of one block spread over CONTINUATION frames */
#define H2_RESET_BURST 1000              /* RST_STREAM token bucket: burst ... */
#define H2_RESET_RATE 33                 /* ... and tokens per second */
#define H2_MAX_CONTROL_UNSENT 100        /* SETTINGS/PING ACKs and RST_STREAMs owed while output is unsent */
#define H2_SETTINGS_B64_MAX 1024         /* HTTP2-Settings longer than this is refused */
#define H2_RECV_WINDOW H2_DEFAULT_WINDOW /* our windows stay at the default: bodies are dropped, not buffered */
#define H2_LAST_STREAM_MAX 0x7fffffffu   /* the first, "shutting down" GOAWAY of a drain */
#define H2_GRPC_CONN_MAX (8u << 20)      /* gRPC request octets one connection may have buffered at once */

/* The opaque data of the PINGs that follow the first GOAWAY of a drain.
 * The first one's ACK is not enough to know that every stream the peer
 * opened before it read that GOAWAY has reached us: nghttp2 (h2load, curl)
 * sends a PING ACK ahead of the HEADERS it had queued when it read them
 * (control frames first), so those can arrive just after the ACK. They
 * leave in the same write as that ACK, though, so the ACK of a second PING,
 * sent once the first ACK is in, comes after them: then the last stream is
 * known, and the final GOAWAY names it. */
static const uint8_t drain_ping[8] = {'r', 'i', 'n', 'g', 'd', 'g', 'o', 0};
static const uint8_t drain_ping2[8] = {'r', 'i', 'n', 'g', 'd', 'g', 'o', 1};

enum h2_phase {
    PH_PREFACE,  /* the client's 24-octet preface is due */
    PH_SETTINGS, /* its first frame must be SETTINGS (RFC 9113 3.4) */
    PH_FRAMES,
};

/* A stream that outlives the frame that opened it. */
struct h2_stream {
    uint32_t id;
    uint8_t method;   /* enum router_method */
    bool head;        /* HEAD: headers only */
    bool client_done; /* END_STREAM received: half-closed (remote) */
    bool answered;    /* our HEADERS went out; body_len - body_off octets still to send */
    bool reset_after; /* answered before the client finished: RST_STREAM(NO_ERROR) after the last DATA */
    bool has_user_id;
    bool user_id_dup;       /* more than one user-id header: 400 */
    int64_t content_length; /* of the request, -1 when absent */
    uint64_t body_in;       /* request body octets received (dropped) */
    int64_t send_window;    /* may go negative when the peer lowers SETTINGS_INITIAL_WINDOW_SIZE */
    int64_t recv_window;
    uint32_t recv_unacked; /* received octets not yet given back with WINDOW_UPDATE */
    char *req;             /* path, user-id, x-request-id, traceparent, until answered */
    uint32_t path_len, user_id_len;
    int32_t request_id_len, traceparent_len; /* -1: absent */
    char *body; /* the rest of the response body (a copy: the router's lives until its next call) */
    size_t body_len, body_off;
    struct h2_stream *pend_prev, *pend_next; /* in h2_conn.pend while body octets wait for window */
    bool pending;
    bool grpc;                 /* a gRPC call (net/grpc.h): its body is the request message, kept in gin */
    bool grpc_trailers;        /* its held answer ends with the trailers (grpc-status 0), not END_STREAM on DATA */
    uint8_t grpc_route;        /* enum metrics_route: the method */
    uint64_t grpc_deadline_ms; /* from grpc-timeout on the shard's clock; 0: none */
    struct buf gin;            /* the request message as received, prefix included */
};

/* One header block's request fields as decoded. Offsets are into h2_conn.rq. */
struct h2_request {
    uint8_t method; /* enum router_method */
    bool has_method, has_scheme, has_path, has_authority;
    bool is_connect, is_options;
    bool regular_seen; /* a regular field came: pseudo-headers must precede them */
    bool too_large, malformed;
    bool is_post, te_trailers;     /* for gRPC's wire rules */
    bool has_timeout, timeout_bad; /* grpc-timeout */
    uint8_t ctype;                 /* enum grpc_ctype of content-type */
    uint64_t timeout_ms;
    unsigned user_ids, request_ids, traceparents;
    uint32_t path_off, path_len, user_id_off, user_id_len;
    uint32_t request_id_off, request_id_len, traceparent_off, traceparent_len;
    int64_t content_length;
    uint32_t bytes, fields;
};

struct h2_conn {
    struct conn *c;
    uint8_t phase;         /* enum h2_phase */
    bool dead;             /* a connection error was sent: input is dropped, c closes after its output */
    bool error;            /* a GOAWAY with an error code went out */
    bool draining;         /* the first GOAWAY of a drain and its PING went out */
    bool goaway_final;     /* the GOAWAY with the real last stream went out: no new streams */
    bool peer_goaway;      /* the peer sent GOAWAY */
    struct hpack_encoder enc; /* our model of the peer's decoder table (responses) */

    uint32_t max_frame_out; /* the peer's SETTINGS_MAX_FRAME_SIZE */
    int64_t initial_window; /* the peer's SETTINGS_INITIAL_WINDOW_SIZE */
    int64_t send_window;    /* connection flow control, our sending */
    int64_t recv_window;    /* and the peer's */
    uint32_t recv_unacked;

    uint32_t max_seen;    /* highest client stream id a HEADERS used */
    uint32_t last_opened; /* highest stream accepted (GOAWAY's last stream id) */
    uint64_t opened_bits; /* bit k: stream max_seen - 2k was opened by a request */
    uint64_t reset_bits;  /* bit k: we reset stream max_seen - 2k (or ignored it) */
    uint32_t reset_ahead[4]; /* idle ids above max_seen we reset (a PRIORITY on itself), newest last; 0: none */

    /* a header block spread over HEADERS + CONTINUATION */
    bool hb_active;
    bool hb_self_dep; /* its HEADERS depended on its own stream */
    uint8_t hb_flags; /* its HEADERS' flags */
    uint32_t hb_stream;
    unsigned hb_frames;
    struct buf hb;

    struct h2_stream **tab; /* open addressing by id, power-of-two size */
    uint32_t tab_mask;
    unsigned nstreams;
    struct h2_stream *pend_head, *pend_tail; /* answers waiting for flow-control window, oldest first */

    unsigned reset_tokens;
    uint64_t reset_refill_ms;
    unsigned control_unsent;
    /* Our preface (SETTINGS, after a 101 for h2c) is still in c->out, in
     * [0, preface_end): nothing may go before it. Cleared once c->out is
     * seen empty (handed to the kernel). */
    bool preface_in_out;
    size_t preface_end;

    struct hpack_decoder dec;
    struct buf rq; /* path, user-id, x-request-id and traceparent of the block being decoded */
    struct buf gout; /* a gRPC answer being built (grpc_call) */
    size_t grpc_in;  /* octets of gRPC request messages buffered in this connection's streams */
};

/* ---------- output primitives (each appends whole frames to c->out) ---------- */

static inline uint8_t *out_reserve(struct conn *c, size_t n)
{
    if (c->out.cap - c->out.len < n)
        buf_reserve(&c->out, n);
    return (uint8_t *)c->out.data + c->out.len;
}

static void put_settings(struct h2_conn *h)
{
    const struct h2_setting iv[] = {
        {H2_SETTINGS_MAX_CONCURRENT_STREAMS, h->c->shard->cfg->h2_max_streams},
        {H2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_BYTES},
        {H2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    uint8_t *p = out_reserve(h->c, H2_FRAME_HEADER_LEN + 6 * 3);
    h->c->out.len += h2_frame_settings(p, iv, 3);
}

static void put_goaway(struct conn *c, uint32_t last, uint32_t code)
{
    c->out.len += h2_frame_goaway(out_reserve(c, H2_GOAWAY_LEN), last, code);
    METRIC_INC(c->shard->metrics->h2_goaways_sent);
}

static void put_window_update(struct conn *c, uint32_t stream, uint32_t inc)
{
    c->out.len += h2_frame_window_update(out_reserve(c, H2_WINDOW_UPDATE_LEN), stream, inc);
}

/* ---------- stream ids ---------- */

/* Where client stream id sits in the bit windows below max_seen; -1 outside
 * them (and for even ids: those are the server's, never opened here). */
static inline int id_bit(const struct h2_conn *h, uint32_t id)
{
    uint32_t k = (h->max_seen - id) >> 1;
    return (id & 1) && id <= h->max_seen && k < 64 ? (int)k : -1;
}

/* A HEADERS used a new id: every idle id below it is now closed (RFC 9113 5.1.1). */
static void see_id(struct h2_conn *h, uint32_t id, bool opened)
{
    uint32_t shift = (id - h->max_seen) >> 1;
    if (h->max_seen == 0 || shift >= 64) {
        h->opened_bits = 0;
        h->reset_bits = 0;
    } else {
        h->opened_bits <<= shift;
        h->reset_bits <<= shift;
    }
    h->max_seen = id;
    if (opened)
        h->opened_bits |= 1;
}

static void mark_reset(struct h2_conn *h, uint32_t id)
{
    int k = id_bit(h, id);
    if (k >= 0)
        h->reset_bits |= (uint64_t)1 << k;
}

/* ---------- the stream table ---------- */

static struct h2_stream *stream_find(const struct h2_conn *h, uint32_t id)
{
    if (h->nstreams == 0)
        return NULL;
    for (uint32_t i = (id >> 1) & h->tab_mask;; i = (i + 1) & h->tab_mask) {
        struct h2_stream *st = h->tab[i];
        if (st == NULL || st->id == id)
            return st;
    }
}

static void tab_insert(struct h2_stream **tab, uint32_t mask, struct h2_stream *st)
{
    uint32_t i = (st->id >> 1) & mask;
    while (tab[i] != NULL)
        i = (i + 1) & mask;
    tab[i] = st;
}

static struct h2_stream *stream_new(struct h2_conn *h, uint32_t id)
{
    if (2 * (h->nstreams + 1) > h->tab_mask + 1 || h->tab == NULL) {
        uint32_t size = h->tab == NULL ? 16 : 2 * (h->tab_mask + 1);
        struct h2_stream **tab = xcalloc(size, sizeof(*tab));
        for (uint32_t i = 0; h->tab != NULL && i <= h->tab_mask; i++)
            if (h->tab[i] != NULL)
                tab_insert(tab, size - 1, h->tab[i]);
        free(h->tab);
        h->tab = tab;
        h->tab_mask = size - 1;
    }
    struct h2_stream *st = xcalloc(1, sizeof(*st));
    st->id = id;
    st->method = METHOD_OTHER;
    st->content_length = -1;
    st->send_window = h->initial_window;
    st->recv_window = H2_RECV_WINDOW;
    tab_insert(h->tab, h->tab_mask, st);
    h->nstreams++;
    return st;
}

static void pend_unlink(struct h2_conn *h, struct h2_stream *st)
{
    if (!st->pending)
        return;
    if (st->pend_prev != NULL)
        st->pend_prev->pend_next = st->pend_next;
    else
        h->pend_head = st->pend_next;
    if (st->pend_next != NULL)
        st->pend_next->pend_prev = st->pend_prev;
    else
        h->pend_tail = st->pend_prev;
    st->pending = false;
}

/* Removes st from the table (linear probing: later entries of its run move up) and frees it. */
static void stream_free(struct h2_conn *h, struct h2_stream *st)
{
    uint32_t mask = h->tab_mask, i = (st->id >> 1) & mask;
    while (h->tab[i] != st)
        i = (i + 1) & mask;
    h->tab[i] = NULL;
    for (uint32_t j = (i + 1) & mask; h->tab[j] != NULL; j = (j + 1) & mask) {
        uint32_t home = (h->tab[j]->id >> 1) & mask;
        /* the entry at j may move to the hole at i unless its home lies cyclically in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            h->tab[i] = h->tab[j];
            h->tab[j] = NULL;
            i = j;
        }
    }
    h->nstreams--;
    pend_unlink(h, st);
    h->grpc_in -= st->gin.len;
    buf_free(&st->gin);
    free(st->req);
    free(st->body);
    free(st);
}

/* ---------- errors ---------- */

static enum metrics_close close_reason(const struct h2_conn *h)
{
    return h->error ? CLOSE_ERROR : h->draining ? CLOSE_SHUTDOWN : CLOSE_CLIENT;
}

/* A connection error (RFC 9113 5.4.1): GOAWAY, then close once it is sent. */
static void conn_error(struct h2_conn *h, uint32_t code)
{
    struct conn *c = h->c;
    if (h->dead)
        return;
    put_goaway(c, h->last_opened, code);
    h->dead = true;
    h->error = code != H2_NO_ERROR;
    c->close_after_send = true;
    c->close_reason = CLOSE_ERROR;
    shard_want_flush(c->shard, c);
}

/* The peer does not read what it asks for (ACKs, resets): nothing more is worth sending. */
static bool flooded(struct h2_conn *h)
{
    if (++h->control_unsent <= H2_MAX_CONTROL_UNSENT)
        return false;
    h->dead = true;
    shard_close_conn(h->c->shard, h->c, CLOSE_ERROR);
    return true;
}

/* A stream error (RFC 9113 5.4.2): RST_STREAM, and the stream is forgotten. */
static void stream_error(struct h2_conn *h, uint32_t id, uint32_t code)
{
    if (flooded(h))
        return;
    struct conn *c = h->c;
    c->out.len += h2_frame_rst_stream(out_reserve(c, H2_RST_STREAM_LEN), id, code);
    struct h2_stream *st = stream_find(h, id);
    if (st != NULL)
        stream_free(h, st);
    mark_reset(h, id);
}

/* ---------- answering ---------- */

/* Appends DATA frames carrying data[0..n) on stream id, END_STREAM on the last when end. */
static void put_data(struct h2_conn *h, uint32_t id, const char *data, size_t n, bool end)
{
    struct conn *c = h->c;
    size_t frames = (n + h->max_frame_out - 1) / h->max_frame_out;
    uint8_t *p = out_reserve(c, n + frames * H2_FRAME_HEADER_LEN);
    while (n > 0) {
        size_t chunk = n < h->max_frame_out ? n : h->max_frame_out;
        p = h2_frame_put_header(p, (uint32_t)chunk, H2_DATA, chunk == n && end ? H2_FLAG_END_STREAM : 0, id);
        memcpy(p, data, chunk);
        p += chunk;
        data += chunk;
        n -= chunk;
    }
    c->out.len = (size_t)((char *)p - c->out.data);
}

/* The stream is closed on our side: if the client is still sending, stop it. */
static void stream_sent(struct h2_conn *h, struct h2_stream *st, uint32_t id, bool client_done)
{
    if (!client_done) {
        /* Answered early (413, 431): RST_STREAM(NO_ERROR) after our last frame
         * frees the slot and stops the upload (RFC 9113 8.1). */
        struct conn *c = h->c;
        c->out.len += h2_frame_rst_stream(out_reserve(c, H2_RST_STREAM_LEN), id, H2_NO_ERROR);
        mark_reset(h, id);
    }
    if (st != NULL)
        stream_free(h, st);
}

/* The octets of the body that may go now: the smaller window, never below 0. */
static inline size_t window_allows(int64_t stream_window, int64_t conn_window, size_t want)
{
    int64_t w = stream_window < conn_window ? stream_window : conn_window;
    if (w <= 0)
        return 0;
    return (uint64_t)w < want ? (size_t)w : want;
}

static void hold(struct h2_conn *h, uint32_t id, struct h2_stream *st, const char *rest, size_t len, int64_t window,
                 bool client_done, bool grpc_trailers);

/* Writes HEADERS for res on stream id and as much of the body as the windows
 * allow; the rest is copied into the stream (created when st is NULL) and
 * sent as the peer opens its windows. client_done: the request's END_STREAM came. */
static void respond(struct h2_conn *h, uint32_t id, struct h2_stream *st, const struct response *res, bool head, bool client_done)
{
    struct conn *c = h->c;
    struct shard *s = c->shard;
    size_t body_len = head ? 0 : res->body_len;
    size_t ctype_len = strlen(res->content_type);
    uint8_t *f = out_reserve(c, H2_FRAME_HEADER_LEN + 128 + ctype_len + 2 * (1 + 6 + 12 + 6) + res->request_id_len +
                                    res->traceparent_len);
    uint8_t *p = f + H2_FRAME_HEADER_LEN;

    /* The header block: server, date and content-type are indexed in the
     * peer's table (one octet each once there, see hpack.h), content-length
     * and allow are literals without indexing. */
    p += hpack_encoder_begin(&h->enc, p);
    switch (res->status) { /* the statuses of the static table (Appendix A, 8-14) are one octet */
    case 200:
        *p++ = 0x88;
        break;
    case 204:
        *p++ = 0x89;
        break;
    case 206:
        *p++ = 0x8a;
        break;
    case 304:
        *p++ = 0x8b;
        break;
    case 400:
        *p++ = 0x8c;
        break;
    case 404:
        *p++ = 0x8d;
        break;
    case 500:
        *p++ = 0x8e;
        break;
    default: /* literal with the name :status (8); statuses are three digits */
        *p++ = 0x08;
        *p++ = 3;
        *p++ = (uint8_t)('0' + res->status / 100 % 10);
        *p++ = (uint8_t)('0' + res->status / 10 % 10);
        *p++ = (uint8_t)('0' + res->status % 10);
        break;
    }
    static const char server[] = "ringd";
    p += hpack_encode_field(&h->enc, p, HPACK_NAME_SERVER, 0, server, sizeof(server) - 1, true);
    /* The date string changes once a second: the second is its identity. */
    p += hpack_encode_field(&h->enc, p, HPACK_NAME_DATE, (uint64_t)s->clock._date_sec, s->clock.date, CLOCK_DATE_LEN,
                            true);
    /* Content types are the router's string literals: the address is the identity. */
    p += hpack_encode_field(&h->enc, p, HPACK_NAME_CONTENT_TYPE, (uint64_t)(uintptr_t)res->content_type,
                            res->content_type, ctype_len, ctype_len <= 64);
    /* content-length (28) */
    char digits[20];
    size_t nd = buf_fmt_u64(digits, res->body_len);
    *p++ = 0x0f;
    *p++ = 0x0d;
    *p++ = (uint8_t)nd;
    memcpy(p, digits + sizeof(digits) - nd, nd);
    p += nd;
    if (res->status == 405) { /* allow (22) */
        memcpy(p, "\x0f\x07\x09GET, HEAD", 12);
        p += 12;
    }
    /* x-request-id and traceparent: literals without indexing with a literal
     * name (RFC 7541 6.2.2): each id is new, so indexing it would only evict
     * the fields worth keeping. Lengths are HPACK integers with a 7-bit
     * prefix (one octet below 127, more above). */
    if (res->request_id != NULL && res->request_id_len == TRACE_GEN_LEN) {
        /* The common case, a generated id: constant sizes, so both copies are a few stores. */
        _Static_assert(TRACE_GEN_LEN == 0x20, "the length octet below");
        memcpy(p, "\x00\x0cx-request-id\x20", 15);
        memcpy(p + 15, res->request_id, TRACE_GEN_LEN);
        p += 15 + TRACE_GEN_LEN;
    } else if (res->request_id != NULL) {
        memcpy(p, "\x00\x0cx-request-id", 14);
        p += 14;
        p += hpack_encode_int(p, 0x00, 7, (uint32_t)res->request_id_len);
        memcpy(p, res->request_id, res->request_id_len);
        p += res->request_id_len;
    }
    if (res->traceparent != NULL) {
        memcpy(p, "\x00\x0btraceparent", 13);
        p += 13;
        p += hpack_encode_int(p, 0x00, 7, (uint32_t)res->traceparent_len);
        memcpy(p, res->traceparent, res->traceparent_len);
        p += res->traceparent_len;
    }
    uint32_t blen = (uint32_t)(p - f - H2_FRAME_HEADER_LEN);
    h2_frame_put_header(f, blen, H2_HEADERS, H2_FLAG_END_HEADERS | (body_len == 0 ? H2_FLAG_END_STREAM : 0), id);
    c->out.len += H2_FRAME_HEADER_LEN + blen;

    shard_count_request(s, PROTO_HTTP2, res->route, res->status);
    c->seen_request = true;
    c->request_start_ms = s->clock.now_ms; /* stream progress (see conn.h) */

    int64_t window = st != NULL ? st->send_window : h->initial_window;
    size_t n = window_allows(window, h->send_window, body_len);
    if (n > 0) {
        put_data(h, id, res->body, n, n == body_len);
        h->send_window -= (int64_t)n;
        window -= (int64_t)n;
    }
    if (n == body_len) {
        stream_sent(h, st, id, client_done);
        return;
    }
    hold(h, id, st, res->body + n, body_len - n, window, client_done, false);
}

/* Flow control holds rest[0..len) of an answer's body: keep a copy in the
 * stream (created when st is NULL) and queue it for send_pending.
 * grpc_trailers: the trailers follow the last DATA. */
static void hold(struct h2_conn *h, uint32_t id, struct h2_stream *st, const char *rest, size_t len, int64_t window,
                 bool client_done, bool grpc_trailers)
{
    if (st == NULL)
        st = stream_new(h, id);
    free(st->req);
    st->req = NULL;
    h->grpc_in -= st->gin.len; /* the request message was answered */
    buf_free(&st->gin);
    st->answered = true;
    st->grpc_trailers = grpc_trailers;
    st->client_done = client_done;
    st->reset_after = !client_done;
    st->send_window = window;
    st->body_len = len;
    st->body_off = 0;
    st->body = xmalloc(st->body_len);
    memcpy(st->body, rest, st->body_len);
    st->pending = true;
    st->pend_next = NULL;
    st->pend_prev = h->pend_tail;
    if (h->pend_tail != NULL)
        h->pend_tail->pend_next = st;
    else
        h->pend_head = st;
    h->pend_tail = st;
}

/* Answers with an error status decided here (400, 413, 431). */
static void respond_error(struct h2_conn *h, uint32_t id, struct h2_stream *st, int status, bool head, bool client_done)
{
    struct response res = {.status = status, .route = ROUTE_OTHER, .content_type = "application/json"};
    res.body = router_error_body(status, &res.body_len);
    res.request_id = trace_idgen_next(&h->c->shard->idgen);
    res.request_id_len = TRACE_GEN_LEN;
    if (h->c->shard->alog != NULL)
        shard_log_request(h->c->shard, h->c, NULL, &res, PROTO_HTTP2, head);
    respond(h, id, st, &res, head, client_done);
}

/* A complete request goes through the router (the body is copied at once: see router.h).
 * Always inlined into its three callers: as a call it cost ~30 instructions a request (callgrind). */
static inline __attribute__((always_inline)) void respond_request(struct h2_conn *h, uint32_t id, struct h2_stream *st,
                                                                const struct request *req, bool user_id_dup)
{
    bool head = req->method == METHOD_HEAD;
    struct response res;
    if (user_id_dup) { /* which one would be the caller? Neither: like a bad request line */
        res = (struct response){.status = 400, .route = ROUTE_OTHER, .content_type = "application/json"};
        res.body = router_error_body(400, &res.body_len);
    } else {
        router_handle(h->c->shard, req, &res);
    }
    struct shard *s = h->c->shard;
    router_set_ids(&s->idgen, req, &res);
    if (s->alog != NULL) /* before respond, which may free the stream that holds req's strings */
        shard_log_request(s, h->c, req, &res, PROTO_HTTP2, head);
    respond(h, id, st, &res, head, true);
}

/* ---------- gRPC answers ---------- */

static const char grpc_ctype_value[] = "application/grpc";

/* A literal field without indexing with a literal name (RFC 7541 6.2.2);
 * name and value under 127 octets (the gRPC fields ringd sends). */
static uint8_t *put_literal(uint8_t *p, const char *name, size_t nlen, const char *value, size_t vlen)
{
    *p++ = 0x00;
    *p++ = (uint8_t)nlen;
    memcpy(p, name, nlen);
    p += nlen;
    *p++ = (uint8_t)vlen;
    memcpy(p, value, vlen);
    return p + vlen;
}

#define GRPC_MESSAGE_MAX 120 /* octets of a grpc-message ringd sends (its own fixed sentences) */

/* grpc-status and, unless NULL, grpc-message (printable ASCII without '%': no percent-encoding needed). */
static uint8_t *put_grpc_status(uint8_t *p, unsigned code, const char *why)
{
    char digits[20];
    size_t nd = buf_fmt_u64(digits, code);
    p = put_literal(p, "grpc-status", 11, digits + sizeof(digits) - nd, nd);
    if (why != NULL) {
        size_t wl = strlen(why);
        p = put_literal(p, "grpc-message", 12, why, wl < GRPC_MESSAGE_MAX ? wl : GRPC_MESSAGE_MAX);
    }
    return p;
}

/* The trailers of a call that succeeded: HEADERS(grpc-status 0) ending the stream. */
static void put_grpc_trailers(struct h2_conn *h, uint32_t id)
{
    struct conn *c = h->c;
    uint8_t *f = out_reserve(c, H2_FRAME_HEADER_LEN + 32);
    uint8_t *p = f + H2_FRAME_HEADER_LEN;
    p += hpack_encoder_begin(&h->enc, p);
    p = put_grpc_status(p, GRPC_OK, NULL);
    uint32_t blen = (uint32_t)(p - f - H2_FRAME_HEADER_LEN);
    h2_frame_put_header(f, blen, H2_HEADERS, H2_FLAG_END_HEADERS | H2_FLAG_END_STREAM, id);
    c->out.len += H2_FRAME_HEADER_LEN + blen;
}

/* Answers a gRPC call on stream id: for GRPC_OK the response headers, the
 * message msg[0..len) (prefix included) as DATA as far as the windows allow
 * (the rest held, as HTTP bodies are) and the trailers; for any other code
 * Trailers-Only (one HEADERS: :status 200, content-type, grpc-status,
 * grpc-message, END_STREAM). client_done: the request's END_STREAM came
 * (otherwise RST_STREAM(NO_ERROR) follows, as for an early HTTP answer). */
static void grpc_respond(struct h2_conn *h, uint32_t id, struct h2_stream *st, uint8_t route, unsigned code, const char *why,
                         const char *msg, size_t len, bool client_done)
{
    struct conn *c = h->c;
    struct shard *s = c->shard;
    bool trailers_only = code != GRPC_OK;
    uint8_t *f = out_reserve(c, H2_FRAME_HEADER_LEN + 80 + GRPC_MESSAGE_MAX);
    uint8_t *p = f + H2_FRAME_HEADER_LEN;
    p += hpack_encoder_begin(&h->enc, p);
    *p++ = 0x88; /* :status 200 */
    p += hpack_encode_field(&h->enc, p, HPACK_NAME_CONTENT_TYPE, (uint64_t)(uintptr_t)grpc_ctype_value, grpc_ctype_value,
                            sizeof(grpc_ctype_value) - 1, true);
    if (trailers_only)
        p = put_grpc_status(p, code, why);
    uint32_t blen = (uint32_t)(p - f - H2_FRAME_HEADER_LEN);
    h2_frame_put_header(f, blen, H2_HEADERS, H2_FLAG_END_HEADERS | (trailers_only ? H2_FLAG_END_STREAM : 0), id);
    c->out.len += H2_FRAME_HEADER_LEN + blen;

    shard_count_grpc(s, (enum metrics_route)route, code);
    c->seen_request = true;
    c->request_start_ms = s->clock.now_ms; /* stream progress (see conn.h) */
    if (trailers_only) {
        stream_sent(h, st, id, client_done);
        return;
    }
    int64_t window = st != NULL ? st->send_window : h->initial_window;
    size_t n = window_allows(window, h->send_window, len);
    if (n > 0) {
        put_data(h, id, msg, n, false);
        h->send_window -= (int64_t)n;
        window -= (int64_t)n;
    }
    if (n == len) {
        put_grpc_trailers(h, id);
        stream_sent(h, st, id, client_done);
        return;
    }
    hold(h, id, st, msg + n, len - n, window, client_done, true);
}

/* A gRPC request's header block was read: refuse what breaks the wire rules
 * at once, else keep a stream for its message. */
static void grpc_open(struct h2_conn *h, uint32_t id, const struct h2_request *rq, enum metrics_route route, bool end_stream)
{
    if (rq->ctype == GRPC_CT_NONE) { /* a POST to a gRPC service without gRPC's content-type */
        respond_error(h, id, NULL, 415, false, end_stream);
        return;
    }
    unsigned code = GRPC_OK;
    const char *why = NULL;
    if (!rq->is_post) {
        code = GRPC_UNIMPLEMENTED;
        why = "gRPC calls are POST requests";
    } else if (rq->ctype == GRPC_CT_OTHER_CODEC) {
        code = GRPC_UNIMPLEMENTED;
        why = "only application/grpc+proto is served";
    } else if (!rq->te_trailers) {
        code = GRPC_INVALID_ARGUMENT;
        why = "te: trailers is required";
    } else if (rq->timeout_bad) {
        code = GRPC_INVALID_ARGUMENT;
        why = "malformed grpc-timeout";
    } else if (route == ROUTE_GRPC_OTHER) {
        code = GRPC_UNIMPLEMENTED;
        why = "unknown method";
    } else if (end_stream) {
        code = GRPC_INVALID_ARGUMENT;
        why = "no request message";
    }
    if (code != GRPC_OK) {
        grpc_respond(h, id, NULL, (uint8_t)route, code, why, NULL, 0, end_stream);
        return;
    }
    struct h2_stream *st = stream_new(h, id);
    st->grpc = true;
    st->grpc_route = (uint8_t)route;
    st->method = METHOD_OTHER;
    if (rq->has_timeout)
        st->grpc_deadline_ms = h->c->shard->clock.now_ms + rq->timeout_ms + 1; /* + 1: never 0 */
}

static inline uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void grpc_finish_message(struct h2_conn *h, struct h2_stream *st, const uint8_t *p, size_t n);

/* DATA of a gRPC call: appended to its message, checked as soon as the
 * prefix is in. Returns false when the call was answered here: an error, or
 * (the usual case) a whole call in one DATA frame, answered from the frame
 * itself without a copy. */
static bool grpc_data(struct h2_conn *h, struct h2_stream *st, const uint8_t *data, uint32_t len, bool end_stream)
{
    unsigned code = GRPC_OK;
    const char *why = NULL;
    if (end_stream && st->gin.len == 0 && len > 0) {
        st->client_done = true;
        if (st->content_length >= 0 && st->body_in != (uint64_t)st->content_length) /* RFC 9113 8.1.1 */
            stream_error(h, st->id, H2_PROTOCOL_ERROR);
        else
            grpc_finish_message(h, st, data, len);
        return false;
    }
    if (h->grpc_in + len > H2_GRPC_CONN_MAX) {
        code = GRPC_RESOURCE_EXHAUSTED;
        why = "too much request data in flight on this connection";
    } else if (len > 0) {
        buf_append(&st->gin, data, len);
        h->grpc_in += len;
        const uint8_t *p = (const uint8_t *)st->gin.data;
        if (st->gin.len >= GRPC_PREFIX) {
            uint32_t mlen = get_be32(p + 1);
            if (p[0] == 1) {
                code = GRPC_UNIMPLEMENTED;
                why = "compressed messages are not supported (send grpc-encoding identity)";
            } else if (p[0] != 0) {
                code = GRPC_INVALID_ARGUMENT;
                why = "bad message flags";
            } else if (mlen > GRPC_MAX_MESSAGE) {
                code = GRPC_RESOURCE_EXHAUSTED;
                why = "request message larger than 4 MiB";
            } else if (st->gin.len > GRPC_PREFIX + (size_t)mlen) {
                code = GRPC_INVALID_ARGUMENT;
                why = "more than one request message in a unary call";
            }
        }
    }
    if (code == GRPC_OK)
        return true;
    grpc_respond(h, st->id, st, st->grpc_route, code, why, NULL, 0, end_stream);
    return false;
}

/* The call's request ended with p[0..n) received: one whole message, then the method. */
static void grpc_finish_message(struct h2_conn *h, struct h2_stream *st, const uint8_t *p, size_t n)
{
    struct shard *s = h->c->shard;
    const char *why = NULL;
    unsigned code = GRPC_INVALID_ARGUMENT;
    size_t mlen = n >= GRPC_PREFIX ? (size_t)get_be32(p + 1) : 0;
    h->gout.len = 0;
    if (n < GRPC_PREFIX) {
        why = n == 0 ? "no request message" : "truncated request message";
    } else if (p[0] == 1) {
        code = GRPC_UNIMPLEMENTED;
        why = "compressed messages are not supported (send grpc-encoding identity)";
    } else if (p[0] != 0) {
        why = "bad message flags";
    } else if (mlen > GRPC_MAX_MESSAGE) {
        code = GRPC_RESOURCE_EXHAUSTED;
        why = "request message larger than 4 MiB";
    } else if (n < GRPC_PREFIX + mlen) {
        why = "truncated request message";
    } else if (n > GRPC_PREFIX + mlen) {
        why = "more than one request message in a unary call";
    } else if (st->grpc_deadline_ms != 0 && s->clock.now_ms > st->grpc_deadline_ms) {
        code = GRPC_DEADLINE_EXCEEDED;
        why = "deadline exceeded";
    } else {
        code = grpc_call(s, (enum metrics_route)st->grpc_route, p + GRPC_PREFIX, mlen, &h->gout, &why);
    }
    grpc_respond(h, st->id, st, st->grpc_route, code, why, h->gout.data, code == GRPC_OK ? h->gout.len : 0, true);
    if (h->gout.cap > 64 * 1024) /* a large batch's buffer is not kept for the connection's life */
        buf_free(&h->gout);
}

/* The call's request ended (END_STREAM on DATA or trailers): what was gathered is its message. */
static void grpc_finish(struct h2_conn *h, struct h2_stream *st)
{
    grpc_finish_message(h, st, (const uint8_t *)st->gin.data, st->gin.len);
}

/* Sends what flow control held back, oldest answer first, while windows and the high-water mark allow. */
static void send_pending(struct h2_conn *h)
{
    struct conn *c = h->c;
    struct h2_stream *st = h->pend_head;
    while (st != NULL && h->send_window > 0 && c->out.len < CONN_OUT_HIGH_WATER) {
        struct h2_stream *next = st->pend_next;
        size_t rest = st->body_len - st->body_off;
        size_t n = window_allows(st->send_window, h->send_window, rest);
        if (n > 0) {
            put_data(h, st->id, st->body + st->body_off, n, n == rest && !st->grpc_trailers);
            st->body_off += n;
            st->send_window -= (int64_t)n;
            h->send_window -= (int64_t)n;
            if (n == rest) {
                if (st->grpc_trailers)
                    put_grpc_trailers(h, st->id);
                c->request_start_ms = c->shard->clock.now_ms; /* stream progress */
                stream_sent(h, st, st->id, !st->reset_after);
            }
        }
        st = next;
    }
}

/* Whether output waits only for the high-water mark (not for the peer's windows). */
static bool can_send(const struct h2_conn *h)
{
    if (h->send_window <= 0)
        return false;
    for (const struct h2_stream *st = h->pend_head; st != NULL; st = st->pend_next)
        if (st->send_window > 0)
            return true;
    return false;
}

/* ---------- header blocks ---------- */

static int64_t parse_length(const char *v, size_t n)
{
    if (n == 0 || n > 18)
        return -1;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(uint8_t)v[i] - '0';
        if (d > 9)
            return -1;
        x = x * 10 + d;
    }
    return x;
}

/* One field of a request's header block (trailers: of its trailer block). */
static void request_field(struct h2_conn *h, struct h2_request *rq, const struct hpack_field *f, bool trailers)
{
    rq->bytes += f->name_len + f->value_len + 32;
    if (++rq->fields > H2_MAX_HEADER_FIELDS || rq->bytes > H2_MAX_HEADER_BYTES)
        rq->too_large = true;
    if (rq->too_large || rq->malformed)
        return;
    if (!f->value_ok) {
        rq->malformed = true;
        return;
    }
    /* Pseudo-headers come first, and only in the request's head (RFC 9113 8.3). */
    bool pseudo_misplaced = trailers || rq->regular_seen;
    switch (f->token) {
    case HPACK_TOK_METHOD:
        if (pseudo_misplaced || rq->has_method || f->value_len == 0) {
            rq->malformed = true;
            return;
        }
        rq->has_method = true;
        if (f->value_len == 3 && memcmp(f->value, "GET", 3) == 0) {
            rq->method = METHOD_GET;
        } else if (f->value_len == 4 && memcmp(f->value, "HEAD", 4) == 0) {
            rq->method = METHOD_HEAD;
        } else {
            rq->method = METHOD_OTHER;
            rq->is_post = f->value_len == 4 && memcmp(f->value, "POST", 4) == 0;
            rq->is_connect = f->value_len == 7 && memcmp(f->value, "CONNECT", 7) == 0;
            rq->is_options = f->value_len == 7 && memcmp(f->value, "OPTIONS", 7) == 0;
        }
        return;
    case HPACK_TOK_PATH:
        /* Visible octets only: percent-encoding is the router's business, spaces and controls are not. */
        if (pseudo_misplaced || rq->has_path || f->value_len == 0 || !f->value_visible) {
            rq->malformed = true;
            return;
        }
        rq->has_path = true;
        rq->path_off = (uint32_t)h->rq.len;
        rq->path_len = f->value_len;
        buf_append(&h->rq, f->value, f->value_len);
        return;
    case HPACK_TOK_SCHEME:
        if (pseudo_misplaced || rq->has_scheme || f->value_len == 0)
            rq->malformed = true;
        rq->has_scheme = true;
        return;
    case HPACK_TOK_AUTHORITY:
        if (pseudo_misplaced || rq->has_authority)
            rq->malformed = true;
        rq->has_authority = true;
        return;
    case HPACK_TOK_PSEUDO_OTHER:        /* :status, :protocol (no extended CONNECT here), unknown */
    case HPACK_TOK_CONNECTION_SPECIFIC: /* RFC 9113 8.2.2 */
    case HPACK_TOK_INVALID:             /* uppercase or not a token */
        rq->malformed = true;
        return;
    case HPACK_TOK_TE:
        rq->regular_seen = true;
        if (f->value_len != 8 || memcmp(f->value, "trailers", 8) != 0)
            rq->malformed = true;
        rq->te_trailers = true;
        return;
    case HPACK_TOK_CONTENT_TYPE:
        rq->regular_seen = true;
        if (!trailers)
            rq->ctype = (uint8_t)grpc_content_type(f->value, f->value_len);
        return;
    case HPACK_TOK_GRPC_TIMEOUT:
        rq->regular_seen = true;
        if (!trailers) {
            rq->has_timeout = true;
            rq->timeout_bad = grpc_parse_timeout(f->value, f->value_len, &rq->timeout_ms) != 0;
        }
        return;
    case HPACK_TOK_CONTENT_LENGTH: {
        rq->regular_seen = true;
        int64_t v = parse_length(f->value, f->value_len);
        if (v < 0 || (rq->content_length >= 0 && v != rq->content_length))
            rq->malformed = true;
        rq->content_length = v;
        return;
    }
    case HPACK_TOK_USER_ID:
        rq->regular_seen = true;
        if (trailers)
            return; /* the request was decided by its head */
        if (rq->user_ids++ == 0) {
            rq->user_id_off = (uint32_t)h->rq.len;
            rq->user_id_len = f->value_len;
            if (f->value_len > 0) /* buf_append of nothing to an empty buffer would memcpy to NULL */
                buf_append(&h->rq, f->value, f->value_len);
        }
        return;
    case HPACK_TOK_REQUEST_ID:
    case HPACK_TOK_TRACEPARENT: {
        rq->regular_seen = true;
        if (trailers)
            return;
        bool rid = f->token == HPACK_TOK_REQUEST_ID;
        /* Kept only when short enough to be valid (net/trace.h); a repeated one is never used. */
        unsigned *count = rid ? &rq->request_ids : &rq->traceparents;
        uint32_t *len = rid ? &rq->request_id_len : &rq->traceparent_len;
        if ((*count)++ > 0 || f->value_len > (rid ? TRACE_ID_MAX : TRACE_PARENT_MAX)) {
            *len = 0; /* repeated (which one?) or too long to be valid: not used (net/trace.h) */
            return;
        }
        *(rid ? &rq->request_id_off : &rq->traceparent_off) = (uint32_t)h->rq.len;
        *len = f->value_len;
        if (f->value_len == 0)
            return;
        buf_append(&h->rq, f->value, f->value_len);
        return;
    }
    default:
        rq->regular_seen = true;
        return;
    }
}

/* Decodes a whole block into rq (trailers: as a trailer block). Returns 0,
 * or -1 after a connection error (the block could not be decoded). */
static int decode_request(struct h2_conn *h, const uint8_t *block, uint32_t len, struct h2_request *rq, bool trailers)
{
    memset(rq, 0, sizeof(*rq));
    rq->method = METHOD_OTHER;
    rq->content_length = -1;
    h->rq.len = 0;
    struct hpack_cursor cur;
    hpack_cursor_init(&cur, block, len);
    struct hpack_field f;
    int rv;
    while ((rv = hpack_decode(&h->dec, &cur, &f)) > 0)
        request_field(h, rq, &f, trailers);
    if (rv < 0) {
        conn_error(h, H2_COMPRESSION_ERROR);
        return -1;
    }
    if (!trailers && !rq->too_large && !rq->malformed) {
        if (rq->is_connect) /* RFC 9113 8.5: no :scheme or :path, an :authority */
            rq->malformed = rq->has_scheme || rq->has_path || !rq->has_authority;
        else if (!rq->has_method || !rq->has_scheme || !rq->has_path)
            rq->malformed = true;
        else if (h->rq.data[rq->path_off] != '/' && !(rq->is_options && rq->path_len == 1 && h->rq.data[rq->path_off] == '*'))
            rq->malformed = true;
    }
    if (len > 4096)
        hpack_decoder_trim(&h->dec);
    return 0;
}

/* Decodes a block nobody will answer, only to keep the HPACK table in step. Returns 0 or -1 (connection error). */
static int discard_block(struct h2_conn *h, const uint8_t *block, uint32_t len)
{
    struct hpack_cursor cur;
    hpack_cursor_init(&cur, block, len);
    struct hpack_field f;
    int rv;
    while ((rv = hpack_decode(&h->dec, &cur, &f)) > 0)
        ;
    if (rv < 0) {
        conn_error(h, H2_COMPRESSION_ERROR);
        return -1;
    }
    return 0;
}

/* A request opening a stream (id above every id seen). */
static void new_stream_block(struct h2_conn *h, uint32_t id, bool end_stream, bool self_dep, const uint8_t *block, uint32_t len)
{
    struct conn *c = h->c;
    bool was_reset = false;
    for (unsigned i = 0; i < 4; i++)
        was_reset |= h->reset_ahead[i] == id;
    if (was_reset) { /* we reset it while it was idle: closed, a frame after our RST_STREAM (RFC 9113 5.4.2) */
        see_id(h, id, false);
        mark_reset(h, id);
        if (discard_block(h, block, len) == 0)
            stream_error(h, id, H2_STREAM_CLOSED);
        return;
    }
    if (h->goaway_final || h->nstreams >= c->shard->cfg->h2_max_streams) {
        see_id(h, id, false);
        if (discard_block(h, block, len) != 0)
            return;
        if (h->goaway_final)
            mark_reset(h, id); /* past our last stream: ignored, the client knows from the GOAWAY */
        else
            stream_error(h, id, H2_REFUSED_STREAM);
        return;
    }
    see_id(h, id, true);
    h->last_opened = id;
    METRIC_INC(c->shard->metrics->h2_streams);
    c->request_start_ms = c->shard->clock.now_ms; /* stream progress (see conn.h) */
    struct h2_request rq;
    if (decode_request(h, block, len, &rq, false) != 0)
        return;
    if (self_dep) { /* RFC 9113 5.3.1 */
        stream_error(h, id, H2_PROTOCOL_ERROR);
        return;
    }
    bool head = rq.method == METHOD_HEAD;
    if (rq.too_large) { /* at the end of the header block, whether or not a body follows */
        respond_error(h, id, NULL, 431, head, end_stream);
        return;
    }
    if (rq.malformed || (end_stream && rq.content_length > 0)) { /* RFC 9113 8.1.1 */
        stream_error(h, id, H2_PROTOCOL_ERROR);
        return;
    }
    /* gRPC: by content-type, or a POST to one of its services (415 without it). */
    bool service = false;
    enum metrics_route groute = rq.has_path ? grpc_method_of(h->rq.data + rq.path_off, rq.path_len, &service) : ROUTE_GRPC_OTHER;
    if (rq.ctype != GRPC_CT_NONE || (service && rq.is_post)) {
        grpc_open(h, id, &rq, groute, end_stream);
        return;
    }
    if (end_stream) {
        const char *b = h->rq.data;
        struct request req = {
            .method = (enum router_method)rq.method,
            .path = b + rq.path_off,
            .path_len = rq.path_len,
            .user_id = rq.user_ids > 0 ? b + rq.user_id_off : NULL,
            .user_id_len = rq.user_id_len,
            .listener = h->c->listener,
            .request_id = rq.request_ids > 0 ? b + rq.request_id_off : NULL,
            .request_id_len = rq.request_id_len,
            .traceparent = rq.traceparents > 0 ? b + rq.traceparent_off : NULL,
            .traceparent_len = rq.traceparent_len,
        };
        respond_request(h, id, NULL, &req, rq.user_ids > 1);
        return;
    }
    /* A body follows: keep what the answer needs. */
    struct h2_stream *st = stream_new(h, id);
    st->method = rq.method;
    st->head = head;
    st->content_length = rq.content_length;
    st->has_user_id = rq.user_ids > 0;
    st->user_id_dup = rq.user_ids > 1;
    st->path_len = rq.path_len;
    st->user_id_len = st->has_user_id ? rq.user_id_len : 0;
    st->request_id_len = rq.request_ids > 0 ? (int32_t)rq.request_id_len : -1;
    st->traceparent_len = rq.traceparents > 0 ? (int32_t)rq.traceparent_len : -1;
    size_t rid_n = rq.request_ids > 0 ? rq.request_id_len : 0, tp_n = rq.traceparents > 0 ? rq.traceparent_len : 0;
    char *p = st->req = xmalloc(st->path_len + st->user_id_len + rid_n + tp_n + 1);
    memcpy(p, h->rq.data + rq.path_off, st->path_len);
    p += st->path_len;
    if (st->has_user_id)
        memcpy(p, h->rq.data + rq.user_id_off, st->user_id_len);
    p += st->user_id_len;
    if (rid_n > 0)
        memcpy(p, h->rq.data + rq.request_id_off, rid_n);
    p += rid_n;
    if (tp_n > 0)
        memcpy(p, h->rq.data + rq.traceparent_off, tp_n);
}

/* The request on st is complete (END_STREAM): check its length and answer. */
static void finish_request(struct h2_conn *h, struct h2_stream *st)
{
    st->client_done = true;
    if (st->content_length >= 0 && st->body_in != (uint64_t)st->content_length) { /* RFC 9113 8.1.1 */
        stream_error(h, st->id, H2_PROTOCOL_ERROR);
        return;
    }
    if (st->grpc) {
        grpc_finish(h, st);
        return;
    }
    const char *p = st->req;
    const char *rid = p + st->path_len + st->user_id_len;
    const char *tp = rid + (st->request_id_len > 0 ? st->request_id_len : 0);
    struct request req = {
        .method = (enum router_method)st->method,
        .path = p,
        .path_len = st->path_len,
        .user_id = st->has_user_id ? p + st->path_len : NULL,
        .user_id_len = st->user_id_len,
        .listener = h->c->listener,
        .request_id = st->request_id_len >= 0 ? rid : NULL,
        .request_id_len = st->request_id_len > 0 ? (size_t)st->request_id_len : 0,
        .traceparent = st->traceparent_len >= 0 ? tp : NULL,
        .traceparent_len = st->traceparent_len > 0 ? (size_t)st->traceparent_len : 0,
    };
    respond_request(h, st->id, st, &req, st->user_id_dup);
}

/* A complete header block (HEADERS plus any CONTINUATION) on stream id. */
static void header_block(struct h2_conn *h, uint32_t id, uint8_t flags, bool self_dep, const uint8_t *block, uint32_t len)
{
    bool end_stream = flags & H2_FLAG_END_STREAM;
    if (id > h->max_seen) {
        new_stream_block(h, id, end_stream, self_dep, block, len);
        return;
    }
    struct h2_stream *st = stream_find(h, id);
    int k = id_bit(h, id);
    bool ignored = k >= 0 && (h->reset_bits >> k & 1);
    if (st == NULL && !ignored) {
        /* A closed stream: after its END_STREAM (STREAM_CLOSED), or an id
         * lower than one already used that never opened (PROTOCOL_ERROR, RFC 9113 5.1.1). */
        bool opened = k < 0 || (h->opened_bits >> k & 1);
        conn_error(h, opened ? H2_STREAM_CLOSED : H2_PROTOCOL_ERROR);
        return;
    }
    if (st != NULL && st->client_done) { /* half-closed (remote): nothing may follow END_STREAM (RFC 9113 5.1) */
        conn_error(h, H2_STREAM_CLOSED);
        return;
    }
    if (st == NULL || st->answered) { /* we reset it or answered it early: the peer had not seen that yet */
        discard_block(h, block, len);
        return;
    }
    /* Trailers. */
    struct h2_request rq;
    if (decode_request(h, block, len, &rq, true) != 0)
        return;
    if (self_dep || !end_stream || rq.malformed) { /* trailers end the stream (RFC 9113 8.1) */
        stream_error(h, id, H2_PROTOCOL_ERROR);
        return;
    }
    if (rq.too_large) {
        st->client_done = true;
        respond_error(h, id, st, 431, st->head, true);
        return;
    }
    finish_request(h, st);
}

/* ---------- frames ---------- */

static void on_headers(struct h2_conn *h, const struct h2_frame *f)
{
    const uint8_t *block;
    uint32_t len;
    struct h2_priority prio;
    uint32_t err = h2_frame_data(f, &block, &len, &prio);
    if (err != 0) {
        conn_error(h, err);
        return;
    }
    if ((f->stream & 1) == 0) { /* even ids are the server's */
        conn_error(h, H2_PROTOCOL_ERROR);
        return;
    }
    bool self_dep = (f->flags & H2_FLAG_PRIORITY) && prio.depends_on == f->stream;
    if (f->flags & H2_FLAG_END_HEADERS) {
        header_block(h, f->stream, f->flags, self_dep, block, len);
        return;
    }
    h->hb_active = true;
    h->hb_stream = f->stream;
    h->hb_flags = f->flags;
    h->hb_self_dep = self_dep;
    h->hb_frames = 0;
    h->hb.len = 0;
    if (len > 0)
        buf_append(&h->hb, block, len);
}

static void on_continuation(struct h2_conn *h, const struct h2_frame *f)
{
    if (!h->hb_active || f->stream != h->hb_stream) {
        conn_error(h, H2_PROTOCOL_ERROR);
        return;
    }
    if (++h->hb_frames > H2_MAX_CONTINUATIONS || h->hb.len + f->len > H2_MAX_HEADER_BLOCK) {
        conn_error(h, H2_ENHANCE_YOUR_CALM);
        return;
    }
    if (f->len > 0)
        buf_append(&h->hb, f->payload, f->len);
    if (!(f->flags & H2_FLAG_END_HEADERS))
        return;
    h->hb_active = false;
    static const uint8_t empty[1];
    const uint8_t *block = h->hb.data != NULL ? (const uint8_t *)h->hb.data : empty; /* no arithmetic on NULL */
    header_block(h, h->hb_stream, h->hb_flags, h->hb_self_dep, block, (uint32_t)h->hb.len);
    if (h->hb.cap > 16384)
        buf_free(&h->hb);
    else
        h->hb.len = 0;
}

/* Gives the connection's receive window back once half of it was used (the octets are dropped, not kept). */
static void recv_window_used(struct h2_conn *h, uint32_t n)
{
    h->recv_unacked += n;
    if (h->recv_unacked >= H2_RECV_WINDOW / 2) {
        put_window_update(h->c, 0, h->recv_unacked);
        h->recv_window += h->recv_unacked;
        h->recv_unacked = 0;
    }
}

static void on_data(struct h2_conn *h, const struct h2_frame *f)
{
    const uint8_t *data;
    uint32_t len;
    uint32_t err = h2_frame_data(f, &data, &len, NULL);
    if (err != 0) {
        conn_error(h, err);
        return;
    }
    /* Flow control counts the whole payload, padding included (RFC 9113 6.9.1). */
    if ((int64_t)f->len > h->recv_window) {
        conn_error(h, H2_FLOW_CONTROL_ERROR);
        return;
    }
    h->recv_window -= f->len;
    recv_window_used(h, f->len);
    if (f->stream > h->max_seen || (f->stream & 1) == 0) { /* idle (RFC 9113 5.1) */
        conn_error(h, H2_PROTOCOL_ERROR);
        return;
    }
    struct h2_stream *st = stream_find(h, f->stream);
    if (st == NULL) {
        int k = id_bit(h, f->stream);
        if (k < 0 || !(h->reset_bits >> k & 1))
            stream_error(h, f->stream, H2_STREAM_CLOSED); /* closed (RFC 9113 5.1, 6.1) */
        return;
    }
    if (st->client_done) { /* half-closed (remote) */
        stream_error(h, f->stream, H2_STREAM_CLOSED);
        return;
    }
    if (st->answered)
        return; /* answered early: the rest of the upload is dropped */
    if ((int64_t)f->len > st->recv_window) {
        stream_error(h, f->stream, H2_FLOW_CONTROL_ERROR);
        return;
    }
    st->recv_window -= f->len;
    st->body_in += len;
    if (st->content_length >= 0 && st->body_in > (uint64_t)st->content_length) {
        stream_error(h, f->stream, H2_PROTOCOL_ERROR);
        return;
    }
    bool end_stream = f->flags & H2_FLAG_END_STREAM;
    if (st->grpc) {
        if (!grpc_data(h, st, data, len, end_stream))
            return;
    } else if (st->body_in > H2_MAX_BODY) { /* like HTTP/1.1: bodies are dropped, but not without end */
        respond_error(h, st->id, st, 413, st->head, end_stream);
        return;
    }
    if (end_stream) {
        finish_request(h, st);
        return;
    }
    st->recv_unacked += f->len;
    if (st->recv_unacked >= H2_RECV_WINDOW / 2) {
        put_window_update(h->c, st->id, st->recv_unacked);
        st->recv_window += st->recv_unacked;
        st->recv_unacked = 0;
    }
}

/* Applies a SETTINGS payload (len a multiple of 6). Returns 0 or the connection error's code. */
static uint32_t apply_settings(struct h2_conn *h, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i + 6 <= len; i += 6) {
        uint16_t id = (uint16_t)(p[i] << 8 | p[i + 1]);
        uint32_t v = h2_get_u32(p + i + 2);
        switch (id) {
        case H2_SETTINGS_ENABLE_PUSH:
            if (v > 1)
                return H2_PROTOCOL_ERROR;
            break;
        case H2_SETTINGS_INITIAL_WINDOW_SIZE: {
            if (v > H2_MAX_WINDOW)
                return H2_FLOW_CONTROL_ERROR;
            /* Every stream's window moves by the change (RFC 9113 6.9.2). */
            int64_t delta = (int64_t)v - h->initial_window;
            for (uint32_t j = 0; delta != 0 && h->nstreams > 0 && j <= h->tab_mask; j++) {
                struct h2_stream *st = h->tab[j];
                if (st == NULL)
                    continue;
                st->send_window += delta;
                if (st->send_window > H2_MAX_WINDOW)
                    return H2_FLOW_CONTROL_ERROR;
            }
            h->initial_window = v;
            break;
        }
        case H2_SETTINGS_MAX_FRAME_SIZE:
            if (v < H2_DEFAULT_FRAME_SIZE || v > H2_MAX_FRAME_SIZE)
                return H2_PROTOCOL_ERROR;
            h->max_frame_out = v;
            break;
        case H2_SETTINGS_HEADER_TABLE_SIZE: /* our next header block tells the peer what we use of it */
            hpack_encoder_set_peer_max(&h->enc, v);
            break;
        default: /* advice, or unknown */
            break;
        }
    }
    return 0;
}

static void on_settings(struct h2_conn *h, const struct h2_frame *f)
{
    if (f->flags & H2_FLAG_ACK)
        return;
    uint32_t err = apply_settings(h, f->payload, f->len);
    if (err != 0) {
        conn_error(h, err);
        return;
    }
    if (flooded(h))
        return;
    struct conn *c = h->c;
    c->out.len += h2_frame_settings_ack(out_reserve(c, H2_FRAME_HEADER_LEN));
    send_pending(h); /* a larger initial window may have opened held streams */
}

static void on_ping(struct h2_conn *h, const struct h2_frame *f)
{
    struct conn *c = h->c;
    if (f->flags & H2_FLAG_ACK) {
        if (h->draining && !h->goaway_final && memcmp(f->payload, drain_ping, 8) == 0) {
            /* The peer has read our GOAWAY: one more round trip for the streams it had queued. */
            c->out.len += h2_frame_ping(out_reserve(c, H2_PING_LEN), 0, drain_ping2);
            shard_want_flush(c->shard, c);
        } else if (h->draining && !h->goaway_final && memcmp(f->payload, drain_ping2, 8) == 0) {
            /* Every stream opened before our first GOAWAY has arrived: say which is the last. */
            put_goaway(c, h->last_opened, H2_NO_ERROR);
            h->goaway_final = true;
        }
        return;
    }
    if (flooded(h))
        return;
    c->out.len += h2_frame_ping(out_reserve(c, H2_PING_LEN), H2_FLAG_ACK, f->payload);
}

/* Takes a token for a RST_STREAM from the peer; false when the bucket is empty. */
static bool reset_token(struct h2_conn *h)
{
    uint64_t now = h->c->shard->clock.now_ms;
    uint64_t add = (now - h->reset_refill_ms) * H2_RESET_RATE / 1000;
    if (add > 0) {
        h->reset_tokens = h->reset_tokens + add > H2_RESET_BURST ? H2_RESET_BURST : h->reset_tokens + (unsigned)add;
        h->reset_refill_ms = now;
    }
    if (h->reset_tokens == 0)
        return false;
    h->reset_tokens--;
    return true;
}

static void on_rst_stream(struct h2_conn *h, const struct h2_frame *f)
{
    METRIC_INC(h->c->shard->metrics->h2_resets_received);
    if (f->stream > h->max_seen || (f->stream & 1) == 0) { /* idle */
        conn_error(h, H2_PROTOCOL_ERROR);
        return;
    }
    if (!reset_token(h)) { /* rapid reset (CVE-2023-44487) */
        conn_error(h, H2_ENHANCE_YOUR_CALM);
        return;
    }
    struct h2_stream *st = stream_find(h, f->stream);
    if (st != NULL)
        stream_free(h, st); /* closed by the peer: later frames on it are errors, not ignored */
}

static void on_priority(struct h2_conn *h, const struct h2_frame *f)
{
    struct h2_priority prio;
    h2_frame_priority(f, &prio);
    if (prio.depends_on == f->stream) { /* RFC 9113 5.3.1: a stream error, even on an idle stream */
        stream_error(h, f->stream, H2_PROTOCOL_ERROR);
        if (f->stream > h->max_seen) {
            /* That id is closed now, but no HEADERS moved max_seen past it:
             * remember it, so a HEADERS that comes for it later is refused. */
            memmove(h->reset_ahead, h->reset_ahead + 1, sizeof(h->reset_ahead) - sizeof(h->reset_ahead[0]));
            h->reset_ahead[3] = f->stream;
        }
    }
    /* Otherwise ignored: we announced SETTINGS_NO_RFC7540_PRIORITIES and answer in order. */
}

static void on_window_update(struct h2_conn *h, const struct h2_frame *f)
{
    uint32_t inc = h2_get_u32(f->payload) & 0x7fffffff;
    if (f->stream == 0) {
        if (inc == 0) {
            conn_error(h, H2_PROTOCOL_ERROR);
            return;
        }
        if (h->send_window + inc > H2_MAX_WINDOW) {
            conn_error(h, H2_FLOW_CONTROL_ERROR);
            return;
        }
        h->send_window += inc;
        send_pending(h);
        return;
    }
    if (f->stream > h->max_seen || (f->stream & 1) == 0) { /* idle */
        conn_error(h, H2_PROTOCOL_ERROR);
        return;
    }
    struct h2_stream *st = stream_find(h, f->stream);
    if (st == NULL)
        return; /* closed: a window update may still be on its way (RFC 9113 6.9) */
    if (inc == 0) {
        stream_error(h, f->stream, H2_PROTOCOL_ERROR);
        return;
    }
    if (st->send_window + inc > H2_MAX_WINDOW) {
        stream_error(h, f->stream, H2_FLOW_CONTROL_ERROR);
        return;
    }
    st->send_window += inc;
    if (st->pending)
        send_pending(h);
}

static void on_frame(struct h2_conn *h, const struct h2_frame *f)
{
    if (h->hb_active && f->type != H2_CONTINUATION) { /* a header block is one run of frames (RFC 9113 4.3) */
        conn_error(h, H2_PROTOCOL_ERROR);
        return;
    }
    bool stream_err;
    uint32_t err = h2_frame_check(f, H2_DEFAULT_FRAME_SIZE, &stream_err);
    if (err != 0) {
        if (stream_err)
            stream_error(h, f->stream, err);
        else
            conn_error(h, err);
        return;
    }
    if (h->phase == PH_SETTINGS) {
        if (f->type != H2_SETTINGS || (f->flags & H2_FLAG_ACK)) {
            conn_error(h, H2_PROTOCOL_ERROR);
            return;
        }
        h->phase = PH_FRAMES;
    }
    switch (f->type) {
    case H2_HEADERS:
        on_headers(h, f);
        break;
    case H2_DATA:
        on_data(h, f);
        break;
    case H2_CONTINUATION:
        on_continuation(h, f);
        break;
    case H2_SETTINGS:
        on_settings(h, f);
        break;
    case H2_PING:
        on_ping(h, f);
        break;
    case H2_WINDOW_UPDATE:
        on_window_update(h, f);
        break;
    case H2_RST_STREAM:
        on_rst_stream(h, f);
        break;
    case H2_PRIORITY:
        on_priority(h, f);
        break;
    case H2_GOAWAY:
        h->peer_goaway = true; /* the peer opens nothing more: close once its streams are answered */
        break;
    default: /* unknown types are ignored (RFC 9113 4.1, 5.5) */
        break;
    }
}

/* ---------- session lifetime ---------- */

static struct h2_conn *session_new(struct conn *c)
{
    struct h2_conn *h = xcalloc(1, sizeof(*h));
    h->c = c;
    h->phase = PH_PREFACE;
    h->max_frame_out = H2_DEFAULT_FRAME_SIZE;
    h->initial_window = H2_DEFAULT_WINDOW;
    h->send_window = H2_DEFAULT_WINDOW;
    h->recv_window = H2_RECV_WINDOW;
    h->reset_tokens = H2_RESET_BURST;
    h->reset_refill_ms = c->shard->clock.now_ms;
    hpack_decoder_init(&h->dec);
    hpack_encoder_init(&h->enc);
    return h;
}

static void session_free(struct h2_conn *h)
{
    for (uint32_t i = 0; h->nstreams > 0 && i <= h->tab_mask; i++)
        while (h->tab[i] != NULL) /* the removal may move a later entry of the run here */
            stream_free(h, h->tab[i]);
    free(h->tab);
    hpack_decoder_free(&h->dec);
    buf_free(&h->hb);
    buf_free(&h->rq);
    buf_free(&h->gout);
    free(h);
}

/* After input or output: close once the connection has nothing left to do. */
static void maybe_finish(struct h2_conn *h)
{
    struct conn *c = h->c;
    if (h->dead || c->close_after_send)
        return;
    if ((h->goaway_final || h->peer_goaway) && h->nstreams == 0) {
        c->close_after_send = true;
        c->close_reason = (uint8_t)close_reason(h);
        shard_want_flush(c->shard, c);
    }
}

/* ---------- the interface ---------- */

int h2_start(struct conn *c)
{
    struct h2_conn *h = session_new(c);
    c->h2 = h;
    c->proto = CONN_H2;
    put_settings(h); /* the server's preface may go at once (RFC 9113 3.4) */
    h->preface_in_out = true;
    h->preface_end = c->out.len;
    shard_want_flush(c->shard, c);
    if (c->shard->draining)
        h2_drain(c); /* accepted during a drain's grace: the shutdown notice follows the preface */
    return 0;
}

void h2_refuse_preface(struct conn *c)
{
    /* Our preface (an empty SETTINGS), then the connection error it calls for (RFC 9113 3.4). */
    h2_frame_put_header(out_reserve(c, H2_FRAME_HEADER_LEN), 0, H2_SETTINGS, 0, 0);
    c->out.len += H2_FRAME_HEADER_LEN;
    put_goaway(c, 0, H2_PROTOCOL_ERROR);
    c->close_after_send = true;
    c->close_reason = CLOSE_ERROR;
    shard_want_flush(c->shard, c);
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
    /* HTTP2-Settings is the client's first SETTINGS; the 101 acknowledges it (RFC 7540 3.2.1). */
    if (apply_settings(h, settings, (size_t)slen) != 0) {
        session_free(h);
        return -1;
    }
    static const char switching[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    buf_append(&c->out, switching, sizeof(switching) - 1);
    c->h2 = h;
    c->proto = CONN_H2;
    put_settings(h);

    /* Stream 1 is the upgrading request, half-closed (remote) from the start. */
    see_id(h, 1, true);
    h->last_opened = 1;
    METRIC_INC(c->shard->metrics->h2_streams);
    struct request rq = {
        .method = req->method_kind == H1_GET ? METHOD_GET : req->method_kind == H1_HEAD ? METHOD_HEAD : METHOD_OTHER,
        .path = req->path,
        .path_len = req->path_len,
        .user_id = req->user_id,
        .user_id_len = req->user_id_len,
        .listener = c->listener,
        .request_id = req->request_id,
        .request_id_len = req->request_id_len,
        .traceparent = req->traceparent,
        .traceparent_len = req->traceparent_len,
    };
    respond_request(h, 1, NULL, &rq, false);
    shard_want_flush(c->shard, c);
    return 0;
}

size_t h2_process(struct conn *c, const char *data, size_t len)
{
    struct h2_conn *h = c->h2;
    if (h->dead || ((h->goaway_final || h->peer_goaway) && h->nstreams == 0 && c->close_after_send))
        return len; /* finished: what the peer still sends is dropped */
    if (c->out.len == 0) {
        h->control_unsent = 0; /* everything owed was handed to the kernel */
        h->preface_in_out = false;
    }
    const uint8_t *p = (const uint8_t *)data, *end = p + len;
    size_t out_before = c->out.len;
    if (h->phase == PH_PREFACE) {
        size_t n = len < H2_PREFACE_LEN ? len : H2_PREFACE_LEN;
        if (memcmp(p, H2_PREFACE, n) != 0) {
            conn_error(h, H2_PROTOCOL_ERROR);
            return len;
        }
        if (n < H2_PREFACE_LEN)
            return 0;
        p += H2_PREFACE_LEN;
        h->phase = PH_SETTINGS;
    }
    while (end - p >= H2_FRAME_HEADER_LEN) {
        if (c->out.len >= CONN_OUT_HIGH_WATER) {
            c->paused = true; /* the peer is not reading: stop taking frames until output drains */
            break;
        }
        struct h2_frame f;
        h2_frame_parse_header(p, &f);
        if (f.len > H2_DEFAULT_FRAME_SIZE) { /* our SETTINGS_MAX_FRAME_SIZE: do not wait for it */
            conn_error(h, H2_FRAME_SIZE_ERROR);
            break;
        }
        if ((size_t)(end - p) - H2_FRAME_HEADER_LEN < f.len)
            break;
        on_frame(h, &f);
        if (h->dead)
            break;
        p += H2_FRAME_HEADER_LEN + f.len;
    }
    if (h->dead)
        return len;
    if (c->out.len != out_before) /* all of this read's answers leave in one send */
        shard_want_flush(c->shard, c);
    maybe_finish(h);
    return (size_t)((const char *)p - data);
}

void h2_flush(struct conn *c)
{
    struct h2_conn *h = c->h2;
    if (h == NULL || h->dead)
        return;
    if (c->out.len == 0) {
        h->control_unsent = 0;
        h->preface_in_out = false;
    }
    if (h->pend_head != NULL)
        send_pending(h);
    maybe_finish(h);
}

void h2_drain(struct conn *c)
{
    struct h2_conn *h = c->h2;
    if (h == NULL || h->dead || h->draining)
        return;
    /* Two GOAWAYs (RFC 9113 6.8): the first, with the largest id, says no
     * new streams after those in flight; the PING's ACK proves those have
     * arrived, and the second names the last one. */
    h->draining = true;
    /* The notice goes before the answers already queued (after our preface
     * if that is still queued): a client that reads answers first opens new
     * streams for the requests it still has, which, once it reads the GOAWAY,
     * it may no longer send (nghttp2 drops them: h2load counts them failed).
     * Read first, the GOAWAY tells it to open its next streams elsewhere. */
    if (c->out.len == 0)
        h->preface_in_out = false;
    size_t at = h->preface_in_out ? h->preface_end : 0, n = H2_GOAWAY_LEN + H2_PING_LEN;
    out_reserve(c, n);
    uint8_t *base = (uint8_t *)c->out.data;
    memmove(base + at + n, base + at, c->out.len - at);
    h2_frame_goaway(base + at, H2_LAST_STREAM_MAX, H2_NO_ERROR);
    h2_frame_ping(base + at + H2_GOAWAY_LEN, 0, drain_ping);
    c->out.len += n;
    METRIC_INC(c->shard->metrics->h2_goaways_sent);
    if (!c->close_after_send) {
        c->close_after_send = true; /* once in-flight streams finish and the last GOAWAY is out (h2_done) */
        c->close_reason = CLOSE_SHUTDOWN;
    }
    shard_want_flush(c->shard, c);
}

bool h2_idle(const struct conn *c)
{
    const struct h2_conn *h = c->h2;
    return h == NULL || h->dead || h->nstreams == 0;
}

bool h2_done(const struct conn *c)
{
    const struct h2_conn *h = c->h2;
    if (h == NULL || h->dead)
        return true;
    if (can_send(h))
        return false;
    if (c->peer_eof) /* nothing more will arrive, not even a WINDOW_UPDATE */
        return true;
    return (h->goaway_final || h->peer_goaway) && h->nstreams == 0;
}

void h2_free(struct conn *c)
{
    if (c->h2 == NULL)
        return;
    session_free(c->h2);
    c->h2 = NULL;
}
