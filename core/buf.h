/* buf.h - a growable byte buffer (connection input/output, scratch text). */
#ifndef RINGD_BUF_H
#define RINGD_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Ensures room for extra more bytes; may move data (pointers into it die). Aborts on OOM. */
void buf_reserve(struct buf *b, size_t extra);

/* Appends n bytes (may move data). */
static inline void buf_append(struct buf *b, const void *p, size_t n)
{
    if (b->cap - b->len < n)
        buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* Writes v in decimal at the end of out[20]; returns the digit count
 * (the digits are out[20 - n .. 20)). No printf on the request path. */
static inline size_t buf_fmt_u64(char out[20], uint64_t v)
{
    size_t n = 0;
    do {
        out[19 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return n;
}

/* Appends v in decimal. */
static inline void buf_append_u64(struct buf *b, uint64_t v)
{
    char tmp[20];
    size_t n = buf_fmt_u64(tmp, v);
    buf_append(b, tmp + sizeof(tmp) - n, n);
}

/* Drops the first n bytes, moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);

/* printf-style append; returns bytes appended. */
size_t buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Frees the storage (len and cap become 0); shrinks to nothing so idle connections stay small. */
void buf_free(struct buf *b);

#endif
