/* systemd.c - socket activation (LISTEN_FDS) and sd_notify readiness, spoken directly: no libsystemd dependency. */
#include "core/systemd.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_FDS_START 3

int systemd_listen_fds(struct systemd_fds *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *pid_s = getenv("LISTEN_PID"), *n_s = getenv("LISTEN_FDS"), *names = getenv("LISTEN_FDNAMES");
    int rc = 0;
    long pid = pid_s != NULL ? strtol(pid_s, NULL, 10) : 0;
    long n = n_s != NULL ? strtol(n_s, NULL, 10) : 0;
    if (pid_s == NULL || n_s == NULL || pid != (long)getpid() || n <= 0)
        goto out; /* not for us: a parent's sockets, or none */
    if (n > SYSTEMD_MAX_FDS) {
        snprintf(err, errlen, "LISTEN_FDS=%ld: at most %d sockets can be passed", n, SYSTEMD_MAX_FDS);
        rc = -1;
        goto out;
    }
    const char *p = names;
    for (long i = 0; i < n; i++) {
        int fd = LISTEN_FDS_START + (int)i;
        int listening = 0, type = 0;
        socklen_t l = sizeof(listening);
        socklen_t tl = sizeof(type);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) != 0 ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || !listening || type != SOCK_STREAM) {
            snprintf(err, errlen, "passed fd %d is not a listening stream socket (ListenStream= in the .socket unit)", fd);
            rc = -1;
            goto out;
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        out->fd[i] = fd;
        if (p != NULL) {
            size_t len = strcspn(p, ":");
            snprintf(out->name[i], sizeof(out->name[i]), "%.*s", (int)len, p);
            p = p[len] == ':' ? p + len + 1 : NULL;
        }
    }
    out->n = (unsigned)n;
    rc = (int)n;
out:
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return rc;
}

int systemd_fd_named(const struct systemd_fds *fds, const char *name)
{
    bool named = false;
    for (unsigned i = 0; i < fds->n; i++) {
        if (strcmp(fds->name[i], name) == 0)
            return fds->fd[i];
        /* systemd names an unnamed socket after its unit ("ringd.socket"): not one of ours. */
        if (strcmp(fds->name[i], "http") == 0 || strcmp(fds->name[i], "admin") == 0 || strcmp(fds->name[i], "https") == 0)
            named = true;
    }
    if (!named && fds->n > 0 && strcmp(name, "http") == 0)
        return fds->fd[0];
    return -1;
}

int systemd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, sl);
    close(fd);
    return n == (ssize_t)strlen(state) ? 0 : -1;
}
