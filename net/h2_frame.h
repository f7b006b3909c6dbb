/* h2_frame.h - HTTP/2 frames (RFC 9113 4 and 6): the wire format, the per-type rules a frame must meet, and serializers.
 *
 * Pure functions over bytes: no connection state. Parsing never copies (a
 * frame's payload points into the caller's buffer) and reads only the bytes
 * it is given. Errors are HTTP/2 error codes (enum h2_error), 0 meaning none.
 */
#ifndef RINGD_H2_FRAME_H
#define RINGD_H2_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum h2_frame_type {
    H2_DATA = 0x0,
    H2_HEADERS = 0x1,
    H2_PRIORITY = 0x2,
    H2_RST_STREAM = 0x3,
    H2_SETTINGS = 0x4,
    H2_PUSH_PROMISE = 0x5,
    H2_PING = 0x6,
    H2_GOAWAY = 0x7,
    H2_WINDOW_UPDATE = 0x8,
    H2_CONTINUATION = 0x9,
};

enum {
    H2_FLAG_END_STREAM = 0x1, /* DATA, HEADERS */
    H2_FLAG_ACK = 0x1,        /* SETTINGS, PING */
    H2_FLAG_END_HEADERS = 0x4,
    H2_FLAG_PADDED = 0x8,
    H2_FLAG_PRIORITY = 0x20,
};

enum h2_error {
    H2_NO_ERROR = 0x0,
    H2_PROTOCOL_ERROR = 0x1,
    H2_INTERNAL_ERROR = 0x2,
    H2_FLOW_CONTROL_ERROR = 0x3,
    H2_SETTINGS_TIMEOUT = 0x4,
    H2_STREAM_CLOSED = 0x5,
    H2_FRAME_SIZE_ERROR = 0x6,
    H2_REFUSED_STREAM = 0x7,
    H2_CANCEL = 0x8,
    H2_COMPRESSION_ERROR = 0x9,
    H2_CONNECT_ERROR = 0xa,
    H2_ENHANCE_YOUR_CALM = 0xb,
    H2_INADEQUATE_SECURITY = 0xc,
    H2_HTTP_1_1_REQUIRED = 0xd,
};

enum h2_setting_id {
    H2_SETTINGS_HEADER_TABLE_SIZE = 0x1,
    H2_SETTINGS_ENABLE_PUSH = 0x2,
    H2_SETTINGS_MAX_CONCURRENT_STREAMS = 0x3,
    H2_SETTINGS_INITIAL_WINDOW_SIZE = 0x4,
    H2_SETTINGS_MAX_FRAME_SIZE = 0x5,
    H2_SETTINGS_MAX_HEADER_LIST_SIZE = 0x6,
    H2_SETTINGS_NO_RFC7540_PRIORITIES = 0x9,
};

#define H2_FRAME_HEADER_LEN 9
#define H2_DEFAULT_FRAME_SIZE 16384u /* SETTINGS_MAX_FRAME_SIZE's initial value and smallest allowed */
#define H2_MAX_FRAME_SIZE 16777215u  /* 2^24-1, its largest */
#define H2_DEFAULT_WINDOW 65535      /* initial flow-control windows */
#define H2_MAX_WINDOW 2147483647     /* 2^31-1 */
#define H2_RST_STREAM_LEN (H2_FRAME_HEADER_LEN + 4)
#define H2_WINDOW_UPDATE_LEN (H2_FRAME_HEADER_LEN + 4)
#define H2_GOAWAY_LEN (H2_FRAME_HEADER_LEN + 8) /* without debug data */
#define H2_PING_LEN (H2_FRAME_HEADER_LEN + 8)

/* A frame header and where its payload is (the caller's buffer). */
struct h2_frame {
    uint32_t len; /* payload length */
    uint8_t type;
    uint8_t flags;
    uint32_t stream; /* the reserved bit cleared */
    const uint8_t *payload;
};

static inline uint32_t h2_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void h2_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Reads the 9-octet header at p (p must hold 9 octets); payload is set to p + 9. */
static inline void h2_frame_parse_header(const uint8_t *p, struct h2_frame *f)
{
    f->len = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
    f->type = p[3];
    f->flags = p[4];
    f->stream = h2_get_u32(p + 5) & 0x7fffffff;
    f->payload = p + H2_FRAME_HEADER_LEN;
}

/* Writes a 9-octet frame header at out (len < 2^24, stream < 2^31); returns out + 9. */
static inline uint8_t *h2_frame_put_header(uint8_t *out, uint32_t len, uint8_t type, uint8_t flags, uint32_t stream)
{
    out[0] = (uint8_t)(len >> 16);
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
    out[3] = type;
    out[4] = flags;
    h2_put_u32(out + 5, stream & 0x7fffffff);
    return out + H2_FRAME_HEADER_LEN;
}

/* Checks what RFC 9113 6 requires of a frame's length and stream identifier
 * for its type, given our SETTINGS_MAX_FRAME_SIZE. Returns 0, or the error
 * code; *stream_error is set to true when the error is a stream error (of
 * f->stream; only a PRIORITY frame of the wrong length), false when it is a
 * connection error. Unknown types pass (they are ignored, RFC 9113 4.1). */
uint32_t h2_frame_check(const struct h2_frame *f, uint32_t max_frame_size, bool *stream_error);

/* A HEADERS frame's PRIORITY fields. */
struct h2_priority {
    uint32_t depends_on;
    bool exclusive;
    uint8_t weight; /* as sent: weight - 1 */
};

/* The data of a DATA or HEADERS frame without its padding (PADDED) and, for
 * HEADERS, its priority fields (PRIORITY; *prio filled when prio is not NULL,
 * zeroed when the flag is absent). Returns 0, H2_FRAME_SIZE_ERROR when the
 * payload cannot hold those fields, or H2_PROTOCOL_ERROR when the padding
 * is longer than what remains of the payload (RFC 9113 6.1, 6.2; both connection errors). */
uint32_t h2_frame_data(const struct h2_frame *f, const uint8_t **data, uint32_t *len, struct h2_priority *prio);

/* A PRIORITY frame's payload (f->len must be 5: see h2_frame_check). */
void h2_frame_priority(const struct h2_frame *f, struct h2_priority *prio);

struct h2_setting {
    uint16_t id;
    uint32_t value;
};

/* Serializers: each writes one whole frame at out and returns its length. */

/* A SETTINGS frame with n entries (out holds 9 + 6n octets). */
size_t h2_frame_settings(uint8_t *out, const struct h2_setting *s, size_t n);
/* An empty SETTINGS with ACK (9 octets). */
size_t h2_frame_settings_ack(uint8_t *out);
/* PING with 8 opaque octets; flags H2_FLAG_ACK or 0 (H2_PING_LEN). */
size_t h2_frame_ping(uint8_t *out, uint8_t flags, const uint8_t opaque[8]);
/* GOAWAY without debug data (H2_GOAWAY_LEN). */
size_t h2_frame_goaway(uint8_t *out, uint32_t last_stream, uint32_t error);
/* RST_STREAM (H2_RST_STREAM_LEN). */
size_t h2_frame_rst_stream(uint8_t *out, uint32_t stream, uint32_t error);
/* WINDOW_UPDATE, increment 1 .. 2^31-1 (H2_WINDOW_UPDATE_LEN). */
size_t h2_frame_window_update(uint8_t *out, uint32_t stream, uint32_t increment);

#endif
