/* systemd.h - what a systemd service gets from its manager: listening sockets (socket activation) and readiness. */
#ifndef RINGD_SYSTEMD_H
#define RINGD_SYSTEMD_H

#include <stddef.h>

#define SYSTEMD_MAX_FDS 8

/* The sockets passed by socket activation (sd_listen_fds(3)'s protocol). */
struct systemd_fds {
    unsigned n;
    int fd[SYSTEMD_MAX_FDS];        /* 3, 4, ... (SD_LISTEN_FDS_START onwards) */
    char name[SYSTEMD_MAX_FDS][64]; /* FileDescriptorName= of each, "" when LISTEN_FDNAMES is absent */
};

/* Takes the sockets systemd passed: when LISTEN_PID is this process and
 * LISTEN_FDS is n > 0, fds 3 .. 3+n-1 with names from LISTEN_FDNAMES
 * (':'-separated). Each gets FD_CLOEXEC, and must be a listening stream
 * socket. The three variables are unset either way, so children do not
 * inherit them. Returns n (0: nothing passed), or -1 with err filled
 * (more than SYSTEMD_MAX_FDS, or an fd that is not a listening socket). The
 * fds are the caller's to close. */
int systemd_listen_fds(struct systemd_fds *out, char *err, size_t errlen);

/* The fd passed under name, or -1. When no fd has a name, "http" matches the
 * first: a .socket unit without FileDescriptorName= names it after the unit. */
int systemd_fd_named(const struct systemd_fds *fds, const char *name);

/* sd_notify(3) without libsystemd: sends state (e.g. "READY=1") to the
 * datagram socket NOTIFY_SOCKET names (a path, or '@' for the abstract
 * namespace). Does nothing outside a Type=notify unit. Returns 0, 1 when
 * there is no NOTIFY_SOCKET, -1 when the send failed. */
int systemd_notify(const char *state);

#endif
