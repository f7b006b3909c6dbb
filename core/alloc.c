/* alloc.c - allocation wrappers that abort on exhaustion (one policy for the whole program). */
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static void oom(size_t n)
{
    log_error("out_of_memory", "bytes=%zu", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (p == NULL)
        oom(count * n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        oom(strlen(s) + 1);
    return p;
}

void *xaligned_zalloc(size_t align, size_t n)
{
    size_t rounded = (n + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded ? rounded : align);
    if (p == NULL)
        oom(rounded);
    memset(p, 0, rounded);
    return p;
}
