/* fuzz_h2_frames.c - libFuzzer target for the HTTP/2 frame layer (net/h2.c over net/h2_frame.c and net/hpack.c): any
 * bytes after the client preface, delivered in any split, the connection drained or not; never a crash, an over-read
 * or a leak, and the output is always whole, well-formed frames that keep to what the peer allowed (see check_output).
 * The shard and the router are stubs: the target runs the real protocol code and nothing else.
 * Input: octet 0 picks the read sizes and whether to drain (see below), the rest follows the preface and an empty SETTINGS.
 * Build: cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DRINGD_FUZZ=ON -DRINGD_TESTS=OFF && cmake --build build-fuzz --target
 * fuzz_h2_frames Run:   build-fuzz/fuzz_h2_frames -max_total_time=60 tests/fuzz/corpus/h2_frames */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/metrics.h"
#include "core/shard.h"
#include "net/conn.h"
#include "net/grpc.h"
#include "net/h2.h"
#include "net/h2_frame.h"
#include "net/hpack.h"
#include "net/router.h"

/* ---------- stubs for what h2.c calls outside net/ ---------- */

static bool closed_by_shard;
static char body[70000]; /* larger than a default window, so flow control holds answers back */

void shard_want_flush(struct shard *s, struct conn *c)
{
}

void shard_count_request(struct shard *s, enum metrics_proto proto, enum metrics_route route, int status)
{
    if (status < 100 || status > 599)
        abort();
}

void shard_log_request(struct shard *s, const struct conn *c, const struct request *req, const struct response *res,
                       enum metrics_proto proto, bool head)
{
}

void shard_close_conn(struct shard *s, struct conn *c, enum metrics_close reason)
{
    closed_by_shard = true;
}

void router_handle(struct shard *s, const struct request *req, struct response *res)
{
    /* The body's size follows the path, so some answers fit a window and some do not. */
    size_t n = req->path_len * 997 % sizeof(body);
    *res = (struct response){.status = req->path_len % 7 == 0 ? 404 : 200,
                             .route = ROUTE_USERS,
                             .content_type = "application/json",
                             .body = body,
                             .body_len = n};
    if (req->user_id != NULL && req->user_id_len > 0 && req->user_id[0] == '5')
        res->status = 405;
}

/* gRPC stays out of this target (check_output knows HTTP answers only: one
 * HEADERS with content-length per stream): nothing is classified as gRPC. */
enum grpc_ctype grpc_content_type(const char *v, size_t n)
{
    return GRPC_CT_NONE;
}

enum metrics_route grpc_method_of(const char *path, size_t len, bool *service)
{
    *service = false;
    return ROUTE_GRPC_OTHER;
}

int grpc_parse_timeout(const char *v, size_t n, uint64_t *ms)
{
    *ms = 0;
    return 0;
}

enum grpc_status grpc_call(struct shard *s, enum metrics_route method, const uint8_t *msg, size_t len, struct buf *out,
                           const char **message)
{
    abort(); /* unreachable: no request is gRPC here */
}

void shard_count_grpc(struct shard *s, enum metrics_route route, unsigned code)
{
    abort();
}

const char *router_error_body(int status, size_t *len)
{
    static const char e[] = "{\"error\":\"x\"}";
    *len = sizeof(e) - 1;
    return e;
}

/* ---------- output checks ---------- */

/* What the input could at most have allowed (from a best-effort parse of the
 * input's frames: an upper bound even where the server rejected them). */
struct allowance {
    uint32_t max_frame;  /* largest SETTINGS_MAX_FRAME_SIZE announced, or the default */
    int64_t max_initial; /* largest SETTINGS_INITIAL_WINDOW_SIZE, or the default */
    int64_t conn_credit; /* all connection WINDOW_UPDATE increments */
};

/* What the output said so far, per stream. */
struct sent_stream {
    uint32_t id;
    bool answered, ended, reset;
    int64_t content_length; /* from our HEADERS; -1 when absent */
    int64_t data;
    int64_t credit; /* the input's WINDOW_UPDATE increments for the stream */
};

#define MAX_TRACKED 1024
static struct sent_stream tracked[MAX_TRACKED];
static size_t ntracked;
static struct allowance allow;
static int64_t conn_data;
static bool goaway_error_sent;

static struct sent_stream *track(uint32_t id)
{
    for (size_t i = 0; i < ntracked; i++)
        if (tracked[i].id == id)
            return &tracked[i];
    if (ntracked == MAX_TRACKED)
        return NULL;
    tracked[ntracked] = (struct sent_stream){.id = id, .content_length = -1};
    return &tracked[ntracked++];
}

static void parse_input(const uint8_t *p, size_t len)
{
    allow = (struct allowance){.max_frame = H2_DEFAULT_FRAME_SIZE, .max_initial = H2_DEFAULT_WINDOW};
    ntracked = 0;
    conn_data = 0;
    goaway_error_sent = false;
    while (len >= H2_FRAME_HEADER_LEN) {
        struct h2_frame f;
        h2_frame_parse_header(p, &f);
        if (len - H2_FRAME_HEADER_LEN < f.len)
            break;
        if (f.type == H2_SETTINGS && !(f.flags & H2_FLAG_ACK)) {
            for (uint32_t i = 0; i + 6 <= f.len; i += 6) {
                uint16_t id = (uint16_t)(f.payload[i] << 8 | f.payload[i + 1]);
                uint32_t v = h2_get_u32(f.payload + i + 2);
                if (id == H2_SETTINGS_MAX_FRAME_SIZE && v > allow.max_frame)
                    allow.max_frame = v;
                if (id == H2_SETTINGS_INITIAL_WINDOW_SIZE && v > allow.max_initial)
                    allow.max_initial = v;
            }
        } else if (f.type == H2_WINDOW_UPDATE && f.len == 4) {
            uint32_t inc = h2_get_u32(f.payload) & 0x7fffffff;
            if (f.stream == 0) {
                allow.conn_credit += inc;
            } else {
                struct sent_stream *st = track(f.stream);
                if (st != NULL)
                    st->credit += inc;
            }
        }
        p += H2_FRAME_HEADER_LEN + f.len;
        len -= H2_FRAME_HEADER_LEN + f.len;
    }
}

static int64_t parse_length(const char *v, size_t n)
{
    int64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = x * 10 + (v[i] - '0');
    return x;
}

/* c->out must be whole, well-formed frames that keep to the rules the peer set:
 * header blocks a peer's decoder accepts, DATA only after HEADERS and before
 * END_STREAM, within the frame size and flow-control windows it allowed and
 * summing to the content-length announced; nothing after a GOAWAY with an error. */
static void check_output(struct conn *c, struct hpack_decoder *peer)
{
    const uint8_t *p = (const uint8_t *)c->out.data, *end = p + c->out.len;
    while (p < end) {
        if (end - p < H2_FRAME_HEADER_LEN)
            abort(); /* a partial frame header */
        struct h2_frame f;
        h2_frame_parse_header(p, &f);
        if ((size_t)(end - p) - H2_FRAME_HEADER_LEN < f.len)
            abort(); /* a partial frame */
        bool stream_error;
        if (h2_frame_check(&f, allow.max_frame, &stream_error) != 0)
            abort(); /* we broke the frame rules (PUSH_PROMISE included) */
        if (f.type > H2_CONTINUATION || goaway_error_sent)
            abort(); /* an unknown type, or anything after a connection error */
        struct sent_stream *st = f.stream != 0 ? track(f.stream) : NULL;
        switch (f.type) {
        case H2_HEADERS: {
            if (!(f.flags & H2_FLAG_END_HEADERS) || (f.stream & 1) == 0)
                abort(); /* our header blocks fit one frame, on client streams */
            if (st != NULL && (st->answered || st->reset))
                abort(); /* one response per stream */
            struct hpack_cursor cur;
            hpack_cursor_init(&cur, f.payload, f.len);
            struct hpack_field fl;
            int rv;
            bool status = false;
            int64_t clen = -1;
            while ((rv = hpack_decode(peer, &cur, &fl)) > 0) {
                status |= fl.token == HPACK_TOK_PSEUDO_OTHER && fl.name_len == 7;
                if (fl.token == HPACK_TOK_CONTENT_LENGTH)
                    clen = parse_length(fl.value, fl.value_len);
            }
            if (rv < 0 || !status || clen < 0)
                abort();
            if (st != NULL) {
                st->answered = true;
                st->content_length = clen;
                st->ended = f.flags & H2_FLAG_END_STREAM;
            }
            break;
        }
        case H2_DATA:
            if (st == NULL)
                break; /* too many streams to track */
            if (!st->answered || st->ended || st->reset)
                abort(); /* DATA before HEADERS, after END_STREAM or after RST_STREAM */
            st->data += f.len;
            conn_data += f.len;
            if (conn_data > H2_DEFAULT_WINDOW + allow.conn_credit || st->data > allow.max_initial + st->credit)
                abort(); /* past what the peer's windows could have allowed */
            if (st->data > st->content_length)
                abort();
            if (f.flags & H2_FLAG_END_STREAM) {
                if (st->data != st->content_length)
                    abort(); /* the body is not what content-length said */
                st->ended = true;
            }
            break;
        case H2_RST_STREAM:
            if (st != NULL)
                st->reset = true;
            break;
        case H2_GOAWAY:
            goaway_error_sent = h2_get_u32(f.payload + 4) != H2_NO_ERROR;
            break;
        default:
            break;
        }
        p += H2_FRAME_HEADER_LEN + f.len;
    }
}

/* ---------- the target ---------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    /* Octet 0: bits 0-2 the read size (1 .. 4096), bit 3 drain halfway, bit 4 the peer half-closes at the end,
     * bits 5-7 SETTINGS_MAX_CONCURRENT_STREAMS (1 .. 8, so the limit is reached). */
    static const size_t reads[8] = {1, 2, 7, 9, 64, 512, 4096, 100000};
    size_t chunk = reads[data[0] & 7];
    bool drain = data[0] & 8, half_close = data[0] & 16;
    struct config cfg = {.h2_max_streams = 1u + (data[0] >> 5)};
    struct metrics_shard *metrics = calloc(1, sizeof(*metrics));
    struct shard *s = calloc(1, sizeof(*s));
    s->cfg = &cfg;
    s->metrics = metrics;
    memcpy(s->clock.date, "Mon, 21 Oct 2013 20:13:21 GMT", CLOCK_DATE_LEN + 1);
    struct conn *c = calloc(1, sizeof(*c));
    c->shard = s;
    c->fd = -1;
    closed_by_shard = false;

    struct buf wire = {0};
    buf_append(&wire, H2_PREFACE, H2_PREFACE_LEN);
    static const uint8_t settings[9] = {0, 0, 0, H2_SETTINGS, 0, 0, 0, 0, 0};
    buf_append(&wire, settings, sizeof(settings));
    if (size > 1)
        buf_append(&wire, data + 1, size - 1);

    parse_input((const uint8_t *)wire.data + H2_PREFACE_LEN, wire.len - H2_PREFACE_LEN);
    struct hpack_decoder peer;
    hpack_decoder_init(&peer);
    h2_start(c);
    check_output(c, &peer);
    c->out.len = 0;

    /* What conn.c and the shard do: hand in reads, keep what was not consumed, send (here: check and drop) output. */
    struct buf in = {0};
    size_t off = 0;
    bool drained = false;
    while (off < wire.len && !closed_by_shard) {
        size_t n = wire.len - off < chunk ? wire.len - off : chunk;
        buf_append(&in, wire.data + off, n);
        off += n;
        if (drain && !drained && off >= wire.len / 2) {
            h2_drain(c);
            drained = true;
        }
        for (int rounds = 0; rounds < 64 && in.len > 0 && !closed_by_shard; rounds++) {
            size_t used = h2_process(c, in.data, in.len);
            if (used > in.len)
                abort();
            buf_consume(&in, used);
            if (closed_by_shard)
                break;
            check_output(c, &peer);
            c->out.len = 0; /* sent */
            h2_flush(c);    /* what the shard calls before each send */
            check_output(c, &peer);
            c->out.len = 0;
            bool was_paused = c->paused;
            c->paused = false; /* conn_resume */
            if (!was_paused)
                break; /* the rest waits for more bytes */
        }
        if (c->close_after_send && h2_done(c))
            break;
    }
    if (half_close && !closed_by_shard) {
        c->peer_eof = true;
        h2_flush(c);
        check_output(c, &peer);
        (void)h2_done(c);
        (void)h2_idle(c);
    }
    h2_free(c);
    hpack_decoder_free(&peer);
    buf_free(&in);
    buf_free(&wire);
    buf_free(&c->out);
    free(c);
    free(s);
    free(metrics);
    return 0;
}
