/* buf.h - a growable byte buffer (connection input/output, scratch text). */
#ifndef RINGD_BUF_H
#define RINGD_BUF_H

#include <stddef.h>
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

/* Drops the first n bytes, moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);

/* printf-style append; returns bytes appended. */
size_t buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Frees the storage (len and cap become 0); shrinks to nothing so idle connections stay small. */
void buf_free(struct buf *b);

#endif
