/* h2client.h - test support: an HTTP/2 client (an nghttp2 client session over a blocking socket) and raw-frame helpers. */
#ifndef RINGD_TEST_H2CLIENT_H
#define RINGD_TEST_H2CLIENT_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------- a well-behaved client: struct h2c ---------- */

/* What came back on one stream. */
struct h2c_stream {
    int32_t id;
    bool used;
    int status; /* :status, 0 until HEADERS */
    char content_type[128];
    char content_length[32]; /* "" when absent */
    char server[32];
    char date[64];
    char allow[64];
    char request_id[128];  /* x-request-id, "" when absent */
    char traceparent[160]; /* "" when absent */
    char *body; /* malloc'd, NUL-terminated; NULL when no DATA */
    size_t body_len;
    size_t data_frames;
    size_t max_data_frame; /* longest DATA payload seen */
    bool sent;             /* its HEADERS went out */
    bool done;             /* closed (END_STREAM received or reset) */
    bool reset;            /* closed with an error code */
    uint32_t error_code;
};

struct h2c {
    int fd;
    nghttp2_session *ng;
    struct h2c_stream *streams; /* indexed by (id - 1) / 2 */
    size_t nstreams;
    unsigned open;          /* submitted and not done */
    unsigned inflight;      /* streams whose HEADERS went out and that are not closed */
    unsigned max_open;      /* most of those at once */
    bool settings_received; /* the server's SETTINGS (not an ACK) */
    bool goaway;            /* a GOAWAY arrived */
    uint32_t goaway_error;
    int32_t goaway_last_id;
    bool eof;    /* the server closed the socket (EOF or reset) */
    bool failed; /* timeout, nghttp2 error or send failure */
};

/* Connects to 127.0.0.1:port by prior knowledge, sends the preface with the
 * given SETTINGS (iv may be NULL) and waits for the server's SETTINGS.
 * manual_window: the client sends no WINDOW_UPDATE unless h2c_consume is called.
 * Returns 0 or -1 (cl is then closed). */
int h2c_connect(struct h2c *cl, int port, const nghttp2_settings_entry *iv, size_t niv, bool manual_window);

/* Upgrades from HTTP/1.1 on a raw socket: sends "method path" with Upgrade: h2c
 * and HTTP2-Settings (iv packed, base64url), checks the 101, then continues as
 * HTTP/2 with the request as stream 1 (tracked like any other). Returns 0, or
 * -1 when no 101 came (then *h1_status holds the status seen, if any). */
int h2c_upgrade(struct h2c *cl, int port, const char *method, const char *path, const nghttp2_settings_entry *iv, size_t niv,
                int *h1_status);

/* Submits a request; extra is NULL or a NULL-terminated list of name, value
 * pairs. Returns the stream id (> 0) or -1. */
int32_t h2c_request(struct h2c *cl, const char *method, const char *path, const char *const *extra);

/* One exchange: sends everything pending, then (unless nothing is awaited and
 * block is false) reads once and feeds it in. Returns 0, or -1 on EOF/error. */
int h2c_step(struct h2c *cl);

/* Runs until every submitted stream is done. Returns 0, or -1 when the
 * connection ended (eof/failed) first. */
int h2c_run(struct h2c *cl);

/* Reads until the server closes the connection (true), or the 10 s socket timeout / error (false). */
bool h2c_run_until_closed(struct h2c *cl);

/* Marks n received bytes of stream id as read (manual window mode): nghttp2
 * then opens the stream and connection windows by at most what was received. */
void h2c_consume(struct h2c *cl, int32_t id, size_t n);

/* The stream's record (NULL when never used). Valid until the next call that reads. */
struct h2c_stream *h2c_stream(struct h2c *cl, int32_t id);

/* Frees the session and stream records and closes the socket. */
void h2c_close(struct h2c *cl);

/* ---------- raw frames: struct h2raw, for what a correct client never sends ---------- */

struct h2raw {
    int fd;
    nghttp2_hd_deflater *def; /* one HPACK state per direction, like a real peer */
    nghttp2_hd_inflater *inf;
    uint8_t *rbuf; /* received bytes not yet parsed into frames */
    size_t rlen, rcap;
};

struct h2raw_result {
    int status;
    char request_id[128];  /* x-request-id of the stream's HEADERS, "" when absent */
    char traceparent[160]; /* its traceparent, "" when absent */
    char body[8192];
    size_t body_len;
    bool done;  /* END_STREAM on the stream */
    bool reset; /* RST_STREAM on the stream */
    uint32_t rst_error;
    bool goaway;
    uint32_t goaway_error;   /* of the last GOAWAY */
    unsigned goaways;        /* GOAWAY frames seen ... */
    uint32_t goaway_last[4]; /* ... and the last stream id of the first four */
    bool ping;               /* a PING (not an ACK) from the server ... */
    uint8_t ping_opaque[8];  /* ... with this opaque data (the last one) */
    unsigned ends;           /* streams the server ended (END_STREAM), any stream */
    bool eof;
    /* gRPC, on the stream waited for */
    size_t data_bytes;      /* DATA payload octets received (body keeps the first 8 KiB) */
    unsigned header_blocks; /* HEADERS received (2 for an answer with trailers, 1 for Trailers-Only) */
    bool has_grpc_status;
    int grpc_status;
    char content_type[64];
};

/* Connects and sends the client preface plus an empty SETTINGS. Returns 0 or -1. */
int h2raw_connect(struct h2raw *r, int port);

/* HPACK-encodes nv (name, value, ..., NULL) with r's deflater into out. Returns the length or -1. */
int h2raw_encode(struct h2raw *r, const char *const *nv, uint8_t *out, size_t cap);

/* Writes one frame (9-byte header + payload) into out; returns its length. */
size_t h2raw_frame(uint8_t *out, uint8_t type, uint8_t flags, int32_t sid, const void *payload, size_t len);

/* Sends one frame. Returns 0 or -1. */
int h2raw_send_frame(struct h2raw *r, uint8_t type, uint8_t flags, int32_t sid, const void *payload, size_t len);

/* Reads frames until stream sid ends (END_STREAM or RST_STREAM), a GOAWAY with
 * an error arrives, or the connection ends (sid 0: until the connection ends).
 * HEADERS are decoded (:status) with r's inflater. Returns 0 when the stream
 * ended, -1 otherwise (see res: goaway/eof). */
int h2raw_wait(struct h2raw *r, int32_t sid, struct h2raw_result *res);

/* Reads frames until RST_STREAM on stream sid, any GOAWAY, or the end of the
 * connection, whatever else ends the stream first (an END_STREAM does not
 * stop it). Returns 0 when one of those came, -1 on timeout. */
int h2raw_wait_error(struct h2raw *r, int32_t sid, struct h2raw_result *res);

/* Sends HEADERS with the HPACK encoding of nv (see h2raw_encode) and END_HEADERS plus flags. Returns 0 or -1. */
int h2raw_send_headers(struct h2raw *r, int32_t sid, uint8_t flags, const char *const *nv);

/* Reads whatever is already buffered without blocking, updating res (for a
 * sender that must keep reading while it writes). Returns -1 once the connection ended. */
int h2raw_poll(struct h2raw *r, struct h2raw_result *res);

/* The same, with stream sid's frames recorded in res as h2raw_wait does. */
int h2raw_poll_stream(struct h2raw *r, int32_t sid, struct h2raw_result *res);

void h2raw_close(struct h2raw *r);

#endif
