/* hpack.h - HPACK (RFC 7541) for a server: the request-header decoder and a small response encoder.
 *
 * The decoder keeps the dynamic table of one HTTP/2 connection and returns a
 * header block's fields one at a time, without copying what it can point at:
 * a field's name and value point into the static table, the dynamic table,
 * the block itself (plain literals) or the decoder's scratch memory (Huffman
 * literals), and stay valid until the next call on the same decoder.
 *
 * The response encoder is small on purpose: ringd's answers repeat the same
 * few fields (server, content-type, the date of the current second), so it
 * indexes just those in the peer's dynamic table and keeps an exact model of
 * that table (RFC 7541 4), at most HPACK_ENC_ENTRIES entries of ours. When the
 * model is about to be full it opens a block with a size update to 0 and back
 * (6.3), which empties the peer's table, and starts over. A steady answer then
 * costs four one-octet fields plus content-length instead of ~60 octets of
 * literals.
 */
#ifndef RINGD_HPACK_H
#define RINGD_HPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"

/* Our SETTINGS_HEADER_TABLE_SIZE: the protocol default, so it is never announced. */
#define HPACK_TABLE_SIZE 4096
/* Entries the table can hold at once (each costs at least 32 octets). */
#define HPACK_MAX_ENTRIES (HPACK_TABLE_SIZE / 32)
#define HPACK_STATIC_ENTRIES 61

/* What a field name means to HTTP/2 (RFC 9113 8.2 and 8.3) and to ringd.
 * Each name is classified once (static entries at build time, a literal name
 * when it is decoded, a dynamic entry when it is inserted), so the request
 * path switches on a byte instead of comparing strings. */
enum hpack_token {
    HPACK_TOK_OTHER = 0,           /* a valid field name with no meaning here */
    HPACK_TOK_AUTHORITY,           /* :authority */
    HPACK_TOK_METHOD,              /* :method */
    HPACK_TOK_PATH,                /* :path */
    HPACK_TOK_SCHEME,              /* :scheme */
    HPACK_TOK_PSEUDO_OTHER,        /* :status, :protocol or an unknown pseudo-header (none valid in a request here) */
    HPACK_TOK_CONTENT_LENGTH,      /* content-length */
    HPACK_TOK_TE,                  /* te */
    HPACK_TOK_CONNECTION_SPECIFIC, /* connection, keep-alive, proxy-connection, transfer-encoding, upgrade */
    HPACK_TOK_HOST,                /* host */
    HPACK_TOK_USER_ID,             /* user-id */
    HPACK_TOK_CONTENT_TYPE,        /* content-type (gRPC is routed by it) */
    HPACK_TOK_GRPC_TIMEOUT,        /* grpc-timeout */
    HPACK_TOK_REQUEST_ID,          /* x-request-id */
    HPACK_TOK_TRACEPARENT,         /* traceparent */
    HPACK_TOK_INVALID,             /* not a lowercase token (uppercase, separators, controls) or empty */
};

/* One decoded field. The strings are not NUL-terminated. */
struct hpack_field {
    const char *name;
    const char *value;
    uint32_t name_len;
    uint32_t value_len;
    uint8_t token;      /* enum hpack_token of the name */
    bool value_ok;      /* no NUL, CR or LF, and no leading or trailing SP/HTAB (RFC 9113 8.2.1) */
    bool value_visible; /* only octets above 0x20 but 0x7f: no spaces, no controls (what :path may hold) */
};

/* A dynamic-table entry: its bytes (name, then value) live in the decoder's
 * memory at a virtual offset (see hpack.c). */
struct hpack_entry {
    uint32_t off;
    uint16_t name_len;
    uint16_t value_len;
    uint8_t token;
    bool value_ok, value_visible;
};

struct hpack_decoder {
    struct hpack_entry _ent[HPACK_MAX_ENTRIES]; /* ring: the newest at _ent[(_head - 1) % N] */
    unsigned _head, _count;
    uint32_t _size;     /* RFC 7541 4.1 size of the entries */
    uint32_t _max_size; /* the limit the encoder last set (size updates), <= HPACK_TABLE_SIZE */
    char *_mem;         /* entry bytes, oldest first, between virtual offsets _start and _end */
    uint32_t _mem_cap, _base, _start, _end;
    struct buf _tmp; /* Huffman output, and a name copied out before its entry is evicted */
};

/* Where a header block is being read (one complete block: HEADERS plus any CONTINUATION). */
struct hpack_cursor {
    const uint8_t *p, *end;
    bool field_seen; /* a size update after a field is an error (RFC 7541 4.2) */
};

/* Sets up an empty table of HPACK_TABLE_SIZE. Never fails. */
void hpack_decoder_init(struct hpack_decoder *d);

/* Frees the table's memory (d can be initialised again). */
void hpack_decoder_free(struct hpack_decoder *d);

/* Gives back scratch memory a large block made the decoder grow (call between blocks). */
void hpack_decoder_trim(struct hpack_decoder *d);

static inline void hpack_cursor_init(struct hpack_cursor *cur, const uint8_t *block, size_t len)
{
    cur->p = block;
    cur->end = block + len;
    cur->field_seen = false;
}

/* Decodes the next field of the block at cur, updating the dynamic table.
 * Returns 1 with *f filled (valid until the next call on d), 0 at the end of
 * the block, or -1 on any decoding error (a connection error of type
 * COMPRESSION_ERROR: the table can no longer be trusted, so d must not be used
 * for another block). A block must be decoded to its end even when its
 * fields are not wanted, or the table falls out of step with the peer's. */
int hpack_decode(struct hpack_decoder *d, struct hpack_cursor *cur, struct hpack_field *f);

/* The dynamic table, for tests and diagnostics: its RFC 7541 size, its
 * entries, and entry i (0 = the newest, HPACK index 62 + i) into *f (valid
 * until the next decode). Returns false when there is no entry i. */
size_t hpack_table_size(const struct hpack_decoder *d);
unsigned hpack_table_count(const struct hpack_decoder *d);
bool hpack_table_entry(const struct hpack_decoder *d, unsigned i, struct hpack_field *f);

/* Decodes len Huffman-coded octets (RFC 7541 5.2) into out, which must hold
 * hpack_huffman_max(len) octets. Returns the decoded length, or -1 when the
 * input holds the EOS symbol or ends in padding that is longer than 7 bits or
 * not all ones. */
ssize_t hpack_huffman_decode(const uint8_t *in, size_t len, char *out);

/* The most octets len Huffman-coded octets can decode to (the shortest code is 5 bits). */
static inline size_t hpack_huffman_max(size_t len)
{
    return len * 8 / 5 + 1;
}

/* Encodes v as an HPACK integer with an n-bit prefix (1..8) into out (at most
 * 6 octets); the bits of first above the prefix are kept. Returns the length. */
static inline size_t hpack_encode_int(uint8_t *out, uint8_t first, unsigned n, uint32_t v)
{
    uint32_t max = (1u << n) - 1;
    if (v < max) {
        out[0] = (uint8_t)(first | v);
        return 1;
    }
    out[0] = (uint8_t)(first | max);
    v -= max;
    size_t i = 1;
    while (v >= 128) {
        out[i++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[i++] = (uint8_t)v;
    return i;
}

/* ---------- the response encoder ---------- */

#define HPACK_ENC_ENTRIES 8 /* entries of ours the model tracks; a block inserts at most 3 */

/* Static-table names (Appendix A) of the fields responses carry. */
enum hpack_static_name {
    HPACK_NAME_ALLOW = 22,
    HPACK_NAME_CONTENT_LENGTH = 28,
    HPACK_NAME_CONTENT_TYPE = 31,
    HPACK_NAME_DATE = 33,
    HPACK_NAME_SERVER = 54,
};

/* One connection's model of the peer's decoder table, which only we fill. */
struct hpack_encoder {
    uint32_t cap;      /* table size we use: the peer's SETTINGS_HEADER_TABLE_SIZE, at most HPACK_TABLE_SIZE */
    uint32_t size;     /* octets in the table (name + value + 32 per entry, RFC 7541 4.1) */
    bool update_due;   /* the next block must open with a size update (cap changed) */
    unsigned n;        /* entries, oldest first */
    struct {
        uint64_t key;  /* which value: the caller's identity for it (a string's address, a second) */
        uint16_t size;
        uint8_t name;  /* enum hpack_static_name */
    } e[HPACK_ENC_ENTRIES];
};

/* A fresh encoder for a peer whose table has the protocol default size (4096). */
void hpack_encoder_init(struct hpack_encoder *e);

/* The peer's SETTINGS_HEADER_TABLE_SIZE changed to v: the next block says so. */
void hpack_encoder_set_peer_max(struct hpack_encoder *e, uint32_t v);

/* Opens a header block: writes any size update the model needs (at most 12
 * octets) into out and returns its length. Call once per block, first. */
size_t hpack_encoder_begin(struct hpack_encoder *e, uint8_t *out);

/* Writes the field (static name, value[0..len)) into out and returns its
 * length (at most 8 + len octets). key identifies the value: equal keys must
 * mean equal values for as long as an entry may live (a static string's
 * address, the second a date shows). When index is true the field is indexed
 * and later blocks name it with one octet; else it is a literal without indexing. */
size_t hpack_encode_field(struct hpack_encoder *e, uint8_t *out, enum hpack_static_name name, uint64_t key,
                          const char *value, size_t len, bool index);

/* Classifies a field name (enum hpack_token). */
uint8_t hpack_name_token(const char *name, size_t len);

/* Checks a field value: sets *ok and *visible as hpack_field.value_ok and .value_visible. */
void hpack_check_value(const char *value, size_t len, bool *ok, bool *visible);

#endif
