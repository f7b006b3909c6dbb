/* tls.h - TLS 1.2/1.3 on the shard's byte path: the server context (certificate, ALPN, session tickets), its reload
 * and key rotation, and a per-connection engine driven over memory.
 *
 * Three levels, three owners:
 *   struct tls_server  the process's: built and replaced by the main thread only (start-up, SIGHUP, the hourly
 *                      ticket-key rotation). What new handshakes use is an immutable snapshot (SSL_CTX + ticket
 *                      keys) published through an atomic pointer and a generation counter.
 *   struct tls_shard   a shard's view: the snapshot it took at its last tls_shard_sync. It publishes the generation
 *                      it took, and the main thread frees a replaced snapshot only once every shard has taken a
 *                      later one (epoch reclamation: no lock, no reference count on the handshake path).
 *                      Established connections hold their SSL_CTX through their SSL, whatever is reclaimed.
 *   struct tls_conn    one connection's SSL over one custom BIO: it reads ciphertext from the window the caller
 *                      set for this call (tls_conn_input: the provided recv buffer, not copied) and appends
 *                      everything OpenSSL writes (handshake messages, records, alerts) to the connection's wire
 *                      buffer, which the shard sends in one send per loop turn. No socket BIO, no thread.
 *
 * The transport logic (when to handshake, read, seal, say close_notify; which protocol ALPN picked) lives in
 * net/conn.c; this file never sees HTTP. Error convention: start-up and reload fill the caller's err buffer and
 * return NULL/-1; per-connection calls return the enums below. Allocation failure aborts (core/alloc.h).
 */
#ifndef RINGD_TLS_H
#define RINGD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/metrics.h"

struct tls_server;
struct tls_shard;
struct tls_conn;

/* Largest plaintext one TLS record carries (RFC 8446 5.1): tls_conn_read never returns more. */
#define TLS_RECORD_MAX 16384

/* Ticket keys rotate this often without --tls-ticket-key-file; the previous key still decrypts for as long again. */
#define TLS_TICKET_ROTATE_S 3600

/* What the server context is built from; the strings must outlive the tls_server. */
struct tls_config {
    const char *cert_file;       /* PEM: the leaf certificate first, then its chain */
    const char *key_file;        /* PEM private key: ECDSA P-256/P-384 or RSA (2048 bits or more) */
    const char *ticket_key_file; /* NULL: random keys rotated hourly; else 80-byte keys, see tls_ticket_keys_load */
    unsigned nshards;
};

/* Process-wide counters, read by a scrape (relaxed loads of single-writer values). */
struct tls_stats {
    uint64_t reloads_ok, reloads_failed, key_rotations;
    int64_t cert_not_after; /* Unix time */
};

/* ---------- main thread ---------- */

/* Builds the first context from cfg and checks it (the key matches the certificate, the key type is one we
 * serve). Logs the certificate (subject, serial, expiry). Returns the server, or NULL with err filled. */
struct tls_server *tls_server_new(const struct tls_config *cfg, char *err, size_t errlen);

/* SIGHUP: builds a new context from the same files (and re-reads the ticket key file) off the shards, and
 * publishes it; new handshakes use it from each shard's next sync on, established connections keep theirs.
 * On any error the current context stays and the reason is logged. Returns 0 or -1. */
int tls_server_reload(struct tls_server *ts);

/* Periodic duties: rotates ticket keys when due, frees replaced snapshots no shard can still use. Returns the
 * milliseconds after which it wants to run again (at most 1000 while something waits to be freed). */
unsigned tls_server_maintain(struct tls_server *ts);

/* Fills st (any thread). */
void tls_server_stats(const struct tls_server *ts, struct tls_stats *st);

/* Frees everything; only after every shard has stopped and freed its connections and tls_shard. */
void tls_server_free(struct tls_server *ts);

/* Probes kernel TLS once (setsockopt TCP_ULP "tls" on a fresh TCP socket) and logs the result in one line.
 * Returns whether the kernel has it. ringd keeps TLS in user space either way. */
bool tls_probe_ktls(void);

/* ---------- a shard (its owner thread, after creation) ---------- */

/* A shard's view of ts, synced once; created by the main thread before the shard starts. */
struct tls_shard *tls_shard_new(struct tls_server *ts, unsigned shard_id);

/* Takes the newest snapshot if one was published: between loop turns and before a new handshake. Cheap
 * when nothing changed (one atomic load). */
void tls_shard_sync(struct tls_shard *sh);

/* Frees the view (not the snapshots: the server owns them); after the shard freed its connections. */
void tls_shard_free(struct tls_shard *sh);

/* ---------- a connection (its shard's thread) ---------- */

enum tls_hs { TLS_HS_DONE, TLS_HS_MORE, TLS_HS_FAILED };

/* tls_conn_read: plaintext bytes (> 0), or one of these. */
#define TLS_READ_MORE 0    /* the input window is used up: wait for more ciphertext */
#define TLS_READ_CLOSED -1 /* the client sent close_notify: it sends nothing more */
#define TLS_READ_ERROR -2  /* fatal (bad record, alert): an alert may wait in the wire buffer */

/* A server-side SSL on the shard's current context. Never NULL (aborts on OOM). */
struct tls_conn *tls_conn_new(struct tls_shard *sh);

/* Frees the SSL and the wire buffer. */
void tls_conn_free(struct tls_conn *t);

/* Sets the ciphertext the next calls read from: data[0..len) must stay valid until the caller is done with
 * this batch (handshake and reads); anything OpenSSL does not consume by then is lost, which never happens
 * because those calls return only once it is used up (or on a fatal error). */
void tls_conn_input(struct tls_conn *t, const void *data, size_t len);

/* Advances the handshake over the input. TLS_HS_FAILED: see tls_conn_error; an alert may wait in the wire. */
enum tls_hs tls_conn_handshake(struct tls_conn *t);

/* Decrypts the next record from the input into out[0..cap) (cap >= TLS_RECORD_MAX). See TLS_READ_*. */
ssize_t tls_conn_read(struct tls_conn *t, char *out, size_t cap);

/* Encrypts p[0..n) into records appended to the wire buffer. Returns 0, or -1 when the connection is in a
 * failed state (the bytes are dropped). Only after the handshake. */
int tls_conn_write(struct tls_conn *t, const void *p, size_t n);

/* Queues close_notify into the wire buffer once: returns true if it did now (false: already sent, the
 * handshake never finished, or the connection failed). */
bool tls_conn_close_notify(struct tls_conn *t);

/* The records waiting to be sent; the caller sends and empties it (the buffer is swapped, not the struct). */
struct buf *tls_conn_wire(struct tls_conn *t);

bool tls_conn_established(const struct tls_conn *t);
bool tls_conn_failed(const struct tls_conn *t);
/* Whether close_notify still has to go out on a graceful close (established, not failed, not sent). */
bool tls_conn_owes_close_notify(const struct tls_conn *t);
/* Whether the client's close_notify arrived. */
bool tls_conn_peer_closed(const struct tls_conn *t);
/* After TLS_HS_DONE: ALPN chose h2 (else HTTP/1.1), resumption from a ticket, the version. */
bool tls_conn_alpn_h2(const struct tls_conn *t);
bool tls_conn_resumed(const struct tls_conn *t);
enum metrics_tls_version tls_conn_version(const struct tls_conn *t);
/* After TLS_HS_FAILED: why (TLS_ERR_HTTP when the first bytes looked like a plain HTTP request). */
enum metrics_tls_error tls_conn_error(const struct tls_conn *t);

/* ---------- ticket keys (exposed for tests) ---------- */

/* One session ticket key: 16-byte name, 32-byte HMAC-SHA256 secret, 32-byte AES-256 key, in this order (the
 * layout of nginx's 80-byte ssl_session_ticket_key files). */
struct tls_ticket_key {
    unsigned char name[16];
    unsigned char hmac[32];
    unsigned char aes[32];
};
#define TLS_TICKET_KEY_BYTES 80
#define TLS_MAX_TICKET_KEYS 8

/* Reads path: 1 to TLS_MAX_TICKET_KEYS keys of 80 raw bytes each, concatenated; the first encrypts new
 * tickets, all decrypt. Returns the key count, or -1 with err filled (wrong size, unreadable, too many). */
int tls_ticket_keys_load(const char *path, struct tls_ticket_key *keys, char *err, size_t errlen);

#endif
