/* h1.h - HTTP/1.1 on a connection: parse every complete request in the bytes, answer each in order into the output. */
#ifndef RINGD_H1_H
#define RINGD_H1_H

#include <stddef.h>
#include <stdint.h>

struct conn;

/* Answers every complete request in data[0..len) into c->out, in order
 * (pipelining), discarding request bodies. Stops early when c must close, when
 * output passed CONN_OUT_HIGH_WATER (c->paused), or when an HTTP/2 upgrade
 * switched c to HTTP/2 (the rest is then HTTP/2's). Returns the bytes
 * consumed; data[ret..len) is an incomplete request the caller keeps. */
size_t h1_process(struct conn *c, const char *data, size_t len);

/* The user the request starting at data[0..len) will look up (GET
 * /users/{id}), for prefetching; 0 when it is another request or unclear. */
uint64_t h1_user_hint(const char *data, size_t len);

/* The header timeout hit c with a partial request buffered: answers 408 with
 * Connection: close and marks c to close once it is sent. */
void h1_header_timeout(struct conn *c);

#endif
