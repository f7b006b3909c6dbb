/* h2client.c - test support: an nghttp2 client session over a blocking socket, and raw HTTP/2 frames for abuse tests. */
#include "h2client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server.h"

/* ---------- struct h2c ---------- */

static struct h2c_stream *slot(struct h2c *cl, int32_t id, bool create)
{
    if (id <= 0 || (id & 1) == 0)
        return NULL;
    size_t i = (size_t)(id - 1) / 2;
    if (i >= cl->nstreams) {
        if (!create)
            return NULL;
        size_t n = cl->nstreams ? cl->nstreams : 16;
        while (n <= i)
            n *= 2;
        cl->streams = realloc(cl->streams, n * sizeof(*cl->streams));
        if (cl->streams == NULL)
            abort();
        memset(cl->streams + cl->nstreams, 0, (n - cl->nstreams) * sizeof(*cl->streams));
        cl->nstreams = n;
    }
    struct h2c_stream *st = &cl->streams[i];
    if (!st->used && !create)
        return NULL;
    if (!st->used) {
        st->used = true;
        st->id = id;
    }
    return st;
}

struct h2c_stream *h2c_stream(struct h2c *cl, int32_t id)
{
    return slot(cl, id, false);
}

static void copy_value(char *dst, size_t cap, const uint8_t *v, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

static int cb_on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen, const uint8_t *value,
                        size_t valuelen, uint8_t flags, void *ud)
{
    struct h2c_stream *st = slot(ud, frame->hd.stream_id, true);
    if (st == NULL)
        return 0;
#define IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)
    if (IS(":status"))
        st->status = atoi((const char *)value); /* nghttp2 NUL-terminates header values */
    else if (IS("content-type"))
        copy_value(st->content_type, sizeof(st->content_type), value, valuelen);
    else if (IS("content-length"))
        copy_value(st->content_length, sizeof(st->content_length), value, valuelen);
    else if (IS("server"))
        copy_value(st->server, sizeof(st->server), value, valuelen);
    else if (IS("date"))
        copy_value(st->date, sizeof(st->date), value, valuelen);
    else if (IS("allow"))
        copy_value(st->allow, sizeof(st->allow), value, valuelen);
    else if (IS("x-request-id"))
        copy_value(st->request_id, sizeof(st->request_id), value, valuelen);
    else if (IS("traceparent"))
        copy_value(st->traceparent, sizeof(st->traceparent), value, valuelen);
#undef IS
    return 0;
}

static int cb_on_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data, size_t len, void *ud)
{
    struct h2c_stream *st = slot(ud, sid, true);
    if (st == NULL)
        return 0;
    st->body = realloc(st->body, st->body_len + len + 1);
    if (st->body == NULL)
        abort();
    memcpy(st->body + st->body_len, data, len);
    st->body_len += len;
    st->body[st->body_len] = '\0';
    return 0;
}

static int cb_on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct h2c *cl = ud;
    switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            cl->settings_received = true;
        break;
    case NGHTTP2_GOAWAY:
        cl->goaway = true;
        cl->goaway_error = frame->goaway.error_code;
        cl->goaway_last_id = frame->goaway.last_stream_id;
        break;
    case NGHTTP2_DATA: {
        struct h2c_stream *st = slot(cl, frame->hd.stream_id, true);
        if (st != NULL) {
            st->data_frames++;
            if (frame->hd.length > st->max_data_frame)
                st->max_data_frame = frame->hd.length;
        }
        break;
    }
    default:
        break;
    }
    return 0;
}

static int cb_on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t error_code, void *ud)
{
    struct h2c *cl = ud;
    struct h2c_stream *st = slot(cl, sid, true);
    if (st == NULL || st->done)
        return 0;
    st->done = true;
    if (st->sent && cl->inflight > 0)
        cl->inflight--;
    st->reset = error_code != NGHTTP2_NO_ERROR;
    st->error_code = error_code;
    if (cl->open > 0)
        cl->open--;
    return 0;
}

static int cb_before_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct h2c *cl = ud;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        struct h2c_stream *st = slot(cl, frame->hd.stream_id, true);
        if (st != NULL && !st->sent) {
            st->sent = true;
            if (++cl->inflight > cl->max_open)
                cl->max_open = cl->inflight;
        }
    }
    return 0;
}

static int session_init(struct h2c *cl, bool manual_window)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
        abort();
    nghttp2_session_callbacks_set_on_header_callback(cbs, cb_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cb_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cb_on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb_on_stream_close);
    nghttp2_session_callbacks_set_before_frame_send_callback(cbs, cb_before_frame_send);
    nghttp2_option_set_no_auto_window_update(opt, manual_window);
    int rc = nghttp2_session_client_new2(&cl->ng, cbs, cl, opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    return rc == 0 ? 0 : -1;
}

static int send_pending(struct h2c *cl)
{
    for (;;) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(cl->ng, &p);
        if (n < 0) {
            cl->failed = true;
            return -1;
        }
        if (n == 0)
            return 0;
        if (ts_send_all(cl->fd, p, (size_t)n) != 0) {
            cl->failed = true;
            return -1;
        }
    }
}

static int feed(struct h2c *cl, const uint8_t *data, size_t len)
{
    ssize_t rv = nghttp2_session_mem_recv(cl->ng, data, len);
    if (rv < 0) {
        cl->failed = true;
        return -1;
    }
    return 0;
}

int h2c_step(struct h2c *cl)
{
    if (cl->eof || cl->failed)
        return -1;
    if (send_pending(cl) != 0)
        return -1;
    uint8_t buf[16384];
    ssize_t n = recv(cl->fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) {
        cl->eof = true;
        return -1;
    }
    if (n < 0) {
        cl->failed = true; /* timeout */
        return -1;
    }
    return feed(cl, buf, (size_t)n);
}

int h2c_connect(struct h2c *cl, int port, const nghttp2_settings_entry *iv, size_t niv, bool manual_window)
{
    memset(cl, 0, sizeof(*cl));
    cl->fd = ts_connect(port);
    if (cl->fd < 0)
        return -1;
    if (session_init(cl, manual_window) != 0 || nghttp2_submit_settings(cl->ng, NGHTTP2_FLAG_NONE, iv, niv) != 0)
        goto fail;
    while (!cl->settings_received)
        if (h2c_step(cl) != 0)
            goto fail;
    return 0;
fail:
    h2c_close(cl);
    return -1;
}

static void b64url(const uint8_t *in, size_t len, char *out)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = al[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = al[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

int h2c_upgrade(struct h2c *cl, int port, const char *method, const char *path, const nghttp2_settings_entry *iv, size_t niv,
                int *h1_status)
{
    memset(cl, 0, sizeof(*cl));
    *h1_status = 0;
    uint8_t payload[256];
    char token[400], req[1024];
    ssize_t plen = nghttp2_pack_settings_payload(payload, sizeof(payload), iv, niv);
    if (plen < 0)
        return -1;
    b64url(payload, (size_t)plen, token);
    snprintf(req, sizeof(req),
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
             "HTTP2-Settings: %s\r\n\r\n",
             method, path, token);
    cl->fd = ts_connect(port);
    if (cl->fd < 0 || ts_send_all(cl->fd, req, strlen(req)) != 0)
        goto fail;
    /* Read the 101 head; what follows it already is HTTP/2. */
    char buf[16384];
    size_t len = 0;
    char *end = NULL;
    while (end == NULL) {
        ssize_t n = recv(cl->fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            goto fail;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end == NULL && len == sizeof(buf) - 1)
            goto fail;
    }
    if (strncmp(buf, "HTTP/1.1 ", 9) == 0)
        *h1_status = atoi(buf + 9);
    if (*h1_status != 101)
        goto fail;
    if (session_init(cl, false) != 0 ||
        nghttp2_session_upgrade2(cl->ng, payload, (size_t)plen, strcmp(method, "HEAD") == 0, NULL) != 0 ||
        nghttp2_submit_settings(cl->ng, NGHTTP2_FLAG_NONE, iv, niv) != 0)
        goto fail;
    slot(cl, 1, true);
    cl->open = 1;
    size_t head = (size_t)(end + 4 - buf);
    if (len > head && feed(cl, (const uint8_t *)buf + head, len - head) != 0)
        goto fail;
    return 0;
fail:
    h2c_close(cl);
    return -1;
}

int32_t h2c_request(struct h2c *cl, const char *method, const char *path, const char *const *extra)
{
    nghttp2_nv nva[160];
    size_t n = 0;
#define NV(name, value)                                                                                                            \
    nva[n++] = (nghttp2_nv){(uint8_t *)(name), (uint8_t *)(value), strlen(name), strlen(value), NGHTTP2_NV_FLAG_NONE}
    NV(":method", method);
    NV(":scheme", "http");
    NV(":authority", "127.0.0.1");
    NV(":path", path);
    for (size_t i = 0; extra != NULL && extra[i] != NULL && extra[i + 1] != NULL && n < 160; i += 2)
        NV(extra[i], extra[i + 1]);
#undef NV
    int32_t id = nghttp2_submit_request(cl->ng, NULL, nva, n, NULL, NULL);
    if (id < 0)
        return -1;
    slot(cl, id, true);
    cl->open++;
    return id;
}

int h2c_run(struct h2c *cl)
{
    while (cl->open > 0)
        if (h2c_step(cl) != 0)
            return -1;
    return send_pending(cl);
}

bool h2c_run_until_closed(struct h2c *cl)
{
    while (h2c_step(cl) == 0)
        ;
    return cl->eof;
}

void h2c_consume(struct h2c *cl, int32_t id, size_t n)
{
    nghttp2_session_consume(cl->ng, id, n);
}

void h2c_close(struct h2c *cl)
{
    if (cl->ng != NULL)
        nghttp2_session_del(cl->ng);
    for (size_t i = 0; i < cl->nstreams; i++)
        free(cl->streams[i].body);
    free(cl->streams);
    if (cl->fd >= 0)
        close(cl->fd);
    memset(cl, 0, sizeof(*cl));
    cl->fd = -1;
}

/* ---------- struct h2raw ---------- */

size_t h2raw_frame(uint8_t *out, uint8_t type, uint8_t flags, int32_t sid, const void *payload, size_t len)
{
    out[0] = (uint8_t)(len >> 16);
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
    out[3] = type;
    out[4] = flags;
    out[5] = (uint8_t)((uint32_t)sid >> 24 & 0x7f);
    out[6] = (uint8_t)((uint32_t)sid >> 16);
    out[7] = (uint8_t)((uint32_t)sid >> 8);
    out[8] = (uint8_t)sid;
    if (len > 0)
        memcpy(out + 9, payload, len);
    return 9 + len;
}

int h2raw_send_frame(struct h2raw *r, uint8_t type, uint8_t flags, int32_t sid, const void *payload, size_t len)
{
    uint8_t *f = malloc(9 + len);
    if (f == NULL)
        abort();
    size_t n = h2raw_frame(f, type, flags, sid, payload, len);
    int rc = ts_send_all(r->fd, f, n);
    free(f);
    return rc;
}

int h2raw_connect(struct h2raw *r, int port)
{
    memset(r, 0, sizeof(*r));
    r->fd = ts_connect(port);
    if (r->fd < 0)
        return -1;
    if (nghttp2_hd_deflate_new(&r->def, 4096) != 0 || nghttp2_hd_inflate_new(&r->inf) != 0)
        abort();
    if (ts_send_all(r->fd, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN) != 0 ||
        h2raw_send_frame(r, NGHTTP2_SETTINGS, 0, 0, NULL, 0) != 0) {
        h2raw_close(r);
        return -1;
    }
    return 0;
}

int h2raw_encode(struct h2raw *r, const char *const *nv, uint8_t *out, size_t cap)
{
    nghttp2_nv nva[256];
    size_t n = 0;
    for (size_t i = 0; nv[i] != NULL && nv[i + 1] != NULL && n < 256; i += 2, n++)
        nva[n] = (nghttp2_nv){(uint8_t *)nv[i], (uint8_t *)nv[i + 1], strlen(nv[i]), strlen(nv[i + 1]), NGHTTP2_NV_FLAG_NONE};
    ssize_t len = nghttp2_hd_deflate_hd(r->def, out, cap, nva, n);
    return len < 0 ? -1 : (int)len;
}

/* Handles one whole frame from the server. */
static void raw_frame(struct h2raw *r, const uint8_t *f, size_t len, int32_t sid, struct h2raw_result *res)
{
    uint8_t type = f[3], flags = f[4];
    int32_t id = (int32_t)(((uint32_t)f[5] & 0x7f) << 24 | (uint32_t)f[6] << 16 | (uint32_t)f[7] << 8 | f[8]);
    const uint8_t *p = f + 9;
    switch (type) {
    case NGHTTP2_HEADERS: {
        /* Decode every block, whatever its stream, to keep the HPACK state in step. */
        size_t off = 0;
        for (;;) {
            nghttp2_nv nv;
            int fl = 0;
            ssize_t rv = nghttp2_hd_inflate_hd2(r->inf, &nv, &fl, p + off, len - off, 1);
            if (rv < 0)
                return;
            off += (size_t)rv;
            if ((fl & NGHTTP2_HD_INFLATE_EMIT) && id == sid && nv.namelen == 7 && memcmp(nv.name, ":status", 7) == 0)
                res->status = atoi((const char *)nv.value);
            if ((fl & NGHTTP2_HD_INFLATE_EMIT) && id == sid && nv.namelen == 11 && memcmp(nv.name, "grpc-status", 11) == 0) {
                res->has_grpc_status = true;
                res->grpc_status = atoi((const char *)nv.value);
            }
            if ((fl & NGHTTP2_HD_INFLATE_EMIT) && id == sid && nv.namelen == 12 && memcmp(nv.name, "content-type", 12) == 0)
                snprintf(res->content_type, sizeof(res->content_type), "%.*s", (int)nv.valuelen, (const char *)nv.value);
            if ((fl & NGHTTP2_HD_INFLATE_EMIT) && id == sid && nv.namelen == 12 && memcmp(nv.name, "x-request-id", 12) == 0)
                copy_value(res->request_id, sizeof(res->request_id), nv.value, nv.valuelen);
            if ((fl & NGHTTP2_HD_INFLATE_EMIT) && id == sid && nv.namelen == 11 && memcmp(nv.name, "traceparent", 11) == 0)
                copy_value(res->traceparent, sizeof(res->traceparent), nv.value, nv.valuelen);
            if (fl & NGHTTP2_HD_INFLATE_FINAL) {
                nghttp2_hd_inflate_end_headers(r->inf);
                break;
            }
            if (rv == 0 && off == len)
                break;
        }
        if (flags & NGHTTP2_FLAG_END_STREAM)
            res->ends++;
        if (id == sid)
            res->header_blocks++;
        if (id == sid && (flags & NGHTTP2_FLAG_END_STREAM))
            res->done = true;
        break;
    }
    case NGHTTP2_DATA:
        if (flags & NGHTTP2_FLAG_END_STREAM)
            res->ends++;
        if (id == sid) {
            res->data_bytes += len;
            size_t n = len < sizeof(res->body) - 1 - res->body_len ? len : sizeof(res->body) - 1 - res->body_len;
            memcpy(res->body + res->body_len, p, n);
            res->body_len += n;
            res->body[res->body_len] = '\0';
            if (flags & NGHTTP2_FLAG_END_STREAM)
                res->done = true;
        }
        break;
    case NGHTTP2_RST_STREAM:
        if (id == sid && len >= 4) {
            res->reset = true;
            res->rst_error = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        }
        break;
    case NGHTTP2_GOAWAY:
        if (len >= 8) {
            res->goaway = true;
            res->goaway_error = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
            if (res->goaways < 4)
                res->goaway_last[res->goaways] = ((uint32_t)p[0] & 0x7f) << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            res->goaways++;
        }
        break;
    case NGHTTP2_PING:
        if (len == 8 && !(flags & NGHTTP2_FLAG_ACK)) {
            res->ping = true;
            memcpy(res->ping_opaque, p, 8);
        }
        break;
    default:
        break;
    }
}

/* Parses whole frames out of r->rbuf. */
static void raw_parse(struct h2raw *r, int32_t sid, struct h2raw_result *res)
{
    size_t off = 0;
    while (r->rlen - off >= 9) {
        const uint8_t *f = r->rbuf + off;
        size_t len = (size_t)f[0] << 16 | (size_t)f[1] << 8 | f[2];
        if (r->rlen - off < 9 + len)
            break;
        raw_frame(r, f, len, sid, res);
        off += 9 + len;
    }
    if (off > 0) {
        memmove(r->rbuf, r->rbuf + off, r->rlen - off);
        r->rlen -= off;
    }
}

/* One recv into rbuf. Returns bytes read, 0 at EOF, -1 on timeout/EAGAIN. */
static ssize_t raw_recv(struct h2raw *r, int flags, struct h2raw_result *res)
{
    if (r->rcap - r->rlen < 16384) {
        r->rcap = r->rcap ? r->rcap * 2 : 65536;
        r->rbuf = realloc(r->rbuf, r->rcap);
        if (r->rbuf == NULL)
            abort();
    }
    ssize_t n = recv(r->fd, r->rbuf + r->rlen, r->rcap - r->rlen, flags);
    if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) {
        res->eof = true;
        return 0;
    }
    if (n < 0)
        return -1;
    r->rlen += (size_t)n;
    return n;
}

int h2raw_wait(struct h2raw *r, int32_t sid, struct h2raw_result *res)
{
    for (;;) {
        raw_parse(r, sid, res);
        if (sid != 0 && (res->done || res->reset))
            return 0;
        if (res->eof)
            return sid == 0 ? 0 : -1;
        if (sid != 0 && res->goaway && res->goaway_error != 0)
            return -1;
        if (raw_recv(r, 0, res) < 0)
            return -1; /* timeout */
    }
}

int h2raw_wait_error(struct h2raw *r, int32_t sid, struct h2raw_result *res)
{
    for (;;) {
        raw_parse(r, sid, res);
        if (res->reset || res->goaway || res->eof)
            return 0;
        if (raw_recv(r, 0, res) < 0)
            return -1; /* timeout */
    }
}

int h2raw_send_headers(struct h2raw *r, int32_t sid, uint8_t flags, const char *const *nv)
{
    uint8_t block[4096];
    int n = h2raw_encode(r, nv, block, sizeof(block));
    if (n < 0)
        return -1;
    return h2raw_send_frame(r, NGHTTP2_HEADERS, (uint8_t)(flags | NGHTTP2_FLAG_END_HEADERS), sid, block, (size_t)n);
}

int h2raw_poll(struct h2raw *r, struct h2raw_result *res)
{
    return h2raw_poll_stream(r, 0, res);
}

int h2raw_poll_stream(struct h2raw *r, int32_t sid, struct h2raw_result *res)
{
    while (!res->eof && raw_recv(r, MSG_DONTWAIT, res) > 0)
        raw_parse(r, sid, res);
    return res->eof ? -1 : 0;
}

void h2raw_close(struct h2raw *r)
{
    if (r->def != NULL)
        nghttp2_hd_deflate_del(r->def);
    if (r->inf != NULL)
        nghttp2_hd_inflate_del(r->inf);
    free(r->rbuf);
    if (r->fd >= 0)
        close(r->fd);
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}
