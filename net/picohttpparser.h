/* picohttpparser.h - the part of picohttpparser's API ringd uses. libh2o-evloop
 * exports these symbols but Debian installs no picohttpparser.h, so the
 * documented prototypes are declared here and the code links libh2o-evloop. */
#ifndef RINGD_PICOHTTPPARSER_H
#define RINGD_PICOHTTPPARSER_H

#include <stddef.h>

/* A header as pointer/length pairs into the caller's buffer (no copy).
 * name is NULL for an obs-fold continuation line (ringd rejects those). */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Parses a request head in buf[0..len). last_len is how much of buf was seen
 * by a previous call (0 on the first). *num_headers is the capacity on entry
 * and the count on return. Returns the number of bytes of the head (> 0),
 * -1 on a parse error (including more headers than the capacity) or -2 when
 * the head is incomplete. Accepts bare LF line ends. */
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path,
                      size_t *path_len, int *minor_version, struct phr_header *headers, size_t *num_headers,
                      size_t last_len);

#endif
