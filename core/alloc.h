/* alloc.h - allocation that never returns NULL: out of memory is decided once, here (abort with a message). */
#ifndef RINGD_ALLOC_H
#define RINGD_ALLOC_H

#include <stddef.h>

/* Each returns usable memory or aborts the process after logging; never NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* Zeroed memory aligned to align (a power of two; n is rounded up to it). */
void *xaligned_zalloc(size_t align, size_t n);

#endif
