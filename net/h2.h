/* h2.h - HTTP/2 on a connection: ringd's own frame layer and HPACK decoder over the shard's byte path (net/h2.c). */
#ifndef RINGD_H2_H
#define RINGD_H2_H

#include <stdbool.h>
#include <stddef.h>

struct conn;
struct h1_request;

/* The client connection preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"). */
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

/* Switches c to HTTP/2 by prior knowledge (the preface was seen at the start
 * of the connection; it is fed to h2_process with the rest) and queues our
 * SETTINGS. Returns 0 (it cannot fail: allocation failure aborts). */
int h2_start(struct conn *c);

/* The connection began with "PRI " (only an HTTP/2 client sends that) but not
 * with the whole preface: queues our SETTINGS and GOAWAY(PROTOCOL_ERROR) and
 * marks c to close once they are sent (RFC 9113 3.4). c stays HTTP/1.1 with
 * no HTTP/2 state; the caller drops the rest of the input. */
void h2_refuse_preface(struct conn *c);

/* HTTP/1.1 "Upgrade: h2c" with HTTP2-Settings: writes 101 and our SETTINGS
 * into c->out, applies the client's settings and answers req on stream 1
 * (req's strings are read only during the call). Returns 0 when c is now
 * HTTP/2 (the client's preface is expected next), -1 when the upgrade was
 * refused (bad HTTP2-Settings) and req should be answered as plain HTTP/1.1. */
int h2_upgrade(struct conn *c, const struct h1_request *req);

/* Reads the whole frames in data[0..len) (they live only for this call) and
 * answers complete requests into c->out. Returns the bytes consumed: up to
 * the last whole frame (the caller keeps the rest for the next call), or
 * less when c->out passed CONN_OUT_HIGH_WATER (c->paused is then set), or
 * len once the connection is finished. On a connection error a GOAWAY is
 * queued and c->close_after_send set; a control-frame flood closes c at once
 * through the shard. */
size_t h2_process(struct conn *c, const char *data, size_t len);

/* Sends what flow control or the high-water mark held back, as far as the
 * peer's windows allow (the shard calls it before each send of c->out). */
void h2_flush(struct conn *c);

/* Graceful shutdown: GOAWAY(2^31-1) and a PING now, the GOAWAY with the last
 * stream id when the PING is answered; streams in flight finish, then c
 * closes (c->close_after_send is set now). Idempotent. */
void h2_drain(struct conn *c);

/* No open streams: idle (the caller checks c->out for unsent bytes). */
bool h2_idle(const struct conn *c);

/* Nothing left to read or write: the connection can close once c->out is sent. */
bool h2_done(const struct conn *c);

/* Frees the HTTP/2 state (streams, held bodies, the HPACK table). */
void h2_free(struct conn *c);

#endif
