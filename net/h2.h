/* h2.h - HTTP/2 on a connection, with nghttp2 as a pure protocol engine over the shard's byte path. */
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
 * of the connection; it is fed to h2_process with the rest). Returns 0, or -1
 * when the session could not be created (c should close). */
int h2_start(struct conn *c);

/* HTTP/1.1 "Upgrade: h2c" with HTTP2-Settings: writes 101 into c->out, starts
 * the session with nghttp2_session_upgrade2 and answers req on stream 1.
 * Returns 0 when c is now HTTP/2, -1 when the upgrade was refused (bad
 * HTTP2-Settings) and req should be answered as plain HTTP/1.1. */
int h2_upgrade(struct conn *c, const struct h1_request *req);

/* Feeds received bytes to nghttp2 and drains its output into c->out. Returns
 * the bytes consumed: len, or less when output passed CONN_OUT_HIGH_WATER
 * (c->paused; the caller keeps the rest). On a protocol error a GOAWAY is
 * queued and c->close_after_send set; a flood (NGHTTP2_ERR_FLOODED) closes c
 * at once through the shard. */
size_t h2_process(struct conn *c, const char *data, size_t len);

/* Drains nghttp2's pending output into c->out (after a send completed: flow
 * control may have let more through). */
void h2_flush(struct conn *c);

/* Graceful shutdown: GOAWAY with the last stream id; in-flight streams finish. */
void h2_drain(struct conn *c);

/* No open streams, nothing to send: idle. */
bool h2_idle(const struct conn *c);

/* nghttp2 wants neither to read nor to write: the connection can close. */
bool h2_done(const struct conn *c);

/* Frees the session. */
void h2_free(struct conn *c);

#endif
