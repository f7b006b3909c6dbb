/* h2_frame.c - HTTP/2 frame rules and serializers (RFC 9113 4.1, 4.2, 6). */
#include "net/h2_frame.h"

#include <string.h>

uint32_t h2_frame_check(const struct h2_frame *f, uint32_t max_frame_size, bool *stream_error)
{
    *stream_error = false;
    if (f->len > max_frame_size)
        return H2_FRAME_SIZE_ERROR; /* a connection error for every type: HEADERS would desynchronise HPACK */
    switch (f->type) {
    case H2_DATA:
    case H2_HEADERS:
    case H2_CONTINUATION:
        return f->stream == 0 ? H2_PROTOCOL_ERROR : 0;
    case H2_PRIORITY:
        if (f->stream == 0)
            return H2_PROTOCOL_ERROR;
        if (f->len != 5) {
            *stream_error = true;
            return H2_FRAME_SIZE_ERROR;
        }
        return 0;
    case H2_RST_STREAM:
        if (f->stream == 0)
            return H2_PROTOCOL_ERROR;
        return f->len != 4 ? H2_FRAME_SIZE_ERROR : 0;
    case H2_SETTINGS:
        if (f->stream != 0)
            return H2_PROTOCOL_ERROR;
        if ((f->flags & H2_FLAG_ACK) ? f->len != 0 : f->len % 6 != 0)
            return H2_FRAME_SIZE_ERROR;
        return 0;
    case H2_PUSH_PROMISE:
        return H2_PROTOCOL_ERROR; /* a client never pushes (RFC 9113 8.4) */
    case H2_PING:
        if (f->stream != 0)
            return H2_PROTOCOL_ERROR;
        return f->len != 8 ? H2_FRAME_SIZE_ERROR : 0;
    case H2_GOAWAY:
        if (f->stream != 0)
            return H2_PROTOCOL_ERROR;
        return f->len < 8 ? H2_FRAME_SIZE_ERROR : 0;
    case H2_WINDOW_UPDATE:
        return f->len != 4 ? H2_FRAME_SIZE_ERROR : 0;
    default:
        return 0;
    }
}

uint32_t h2_frame_data(const struct h2_frame *f, const uint8_t **data, uint32_t *len, struct h2_priority *prio)
{
    const uint8_t *p = f->payload;
    uint32_t n = f->len, pad = 0;
    if (f->flags & H2_FLAG_PADDED) {
        if (n < 1)
            return H2_FRAME_SIZE_ERROR;
        pad = p[0];
        p++;
        n--;
    }
    if (prio != NULL)
        memset(prio, 0, sizeof(*prio));
    if (f->type == H2_HEADERS && (f->flags & H2_FLAG_PRIORITY)) {
        if (n < 5)
            return H2_FRAME_SIZE_ERROR;
        if (prio != NULL) {
            uint32_t dep = h2_get_u32(p);
            prio->exclusive = dep >> 31;
            prio->depends_on = dep & 0x7fffffff;
            prio->weight = p[4];
        }
        p += 5;
        n -= 5;
    }
    if (pad > n)
        return H2_PROTOCOL_ERROR;
    *data = p;
    *len = n - pad;
    return 0;
}

void h2_frame_priority(const struct h2_frame *f, struct h2_priority *prio)
{
    uint32_t dep = h2_get_u32(f->payload);
    prio->exclusive = dep >> 31;
    prio->depends_on = dep & 0x7fffffff;
    prio->weight = f->payload[4];
}

size_t h2_frame_settings(uint8_t *out, const struct h2_setting *s, size_t n)
{
    uint8_t *p = h2_frame_put_header(out, (uint32_t)(6 * n), H2_SETTINGS, 0, 0);
    for (size_t i = 0; i < n; i++, p += 6) {
        p[0] = (uint8_t)(s[i].id >> 8);
        p[1] = (uint8_t)s[i].id;
        h2_put_u32(p + 2, s[i].value);
    }
    return (size_t)(p - out);
}

size_t h2_frame_settings_ack(uint8_t *out)
{
    h2_frame_put_header(out, 0, H2_SETTINGS, H2_FLAG_ACK, 0);
    return H2_FRAME_HEADER_LEN;
}

size_t h2_frame_ping(uint8_t *out, uint8_t flags, const uint8_t opaque[8])
{
    memcpy(h2_frame_put_header(out, 8, H2_PING, flags, 0), opaque, 8);
    return H2_PING_LEN;
}

size_t h2_frame_goaway(uint8_t *out, uint32_t last_stream, uint32_t error)
{
    uint8_t *p = h2_frame_put_header(out, 8, H2_GOAWAY, 0, 0);
    h2_put_u32(p, last_stream & 0x7fffffff);
    h2_put_u32(p + 4, error);
    return H2_GOAWAY_LEN;
}

size_t h2_frame_rst_stream(uint8_t *out, uint32_t stream, uint32_t error)
{
    h2_put_u32(h2_frame_put_header(out, 4, H2_RST_STREAM, 0, stream), error);
    return H2_RST_STREAM_LEN;
}

size_t h2_frame_window_update(uint8_t *out, uint32_t stream, uint32_t increment)
{
    h2_put_u32(h2_frame_put_header(out, 4, H2_WINDOW_UPDATE, 0, stream), increment & 0x7fffffff);
    return H2_WINDOW_UPDATE_LEN;
}
