/* server.c - test support: spawn ringd, wait for its listening line, HTTP/1.1 over raw sockets. */
#include "server.h"
#include "tmpdir.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int ts_sh(const char *cmdline)
{
    int rc = system(cmdline);
    if (rc == -1 || !WIFEXITED(rc))
        return -1;
    return WEXITSTATUS(rc);
}

int ts_prepare(struct test_server *ts, unsigned users)
{
    memset(ts, 0, sizeof(*ts));
    ts->pid = -1;
    ts_mkdtemp(ts->dir, sizeof(ts->dir), "serve");
    snprintf(ts->db, sizeof(ts->db), "%s/db", ts->dir);
    snprintf(ts->log, sizeof(ts->log), "%s/server.log", ts->dir);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s demo --db %s --users %u >%s/demo.log 2>&1", RINGD_BIN, ts->db, users, ts->dir);
    return ts_sh(cmd) == 0 ? 0 : -1;
}

static void print_log(const struct test_server *ts)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "echo '--- %s'; tail -n 40 %s >&2", ts->log, ts->log);
    ts_sh(cmd);
}

int ts_start(struct test_server *ts, const char *const *args)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = RINGD_BIN;
    argv[n++] = "serve";
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--db";
    argv[n++] = ts->db;
    for (int i = 0; args != NULL && args[i] != NULL && n < 62; i++)
        argv[n++] = args[i];
    argv[n] = NULL;

    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(ts->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
            close(fd);
        }
        if (ts->pass_fd > 0) {
            /* Socket activation's protocol (sd_listen_fds(3)): fds from 3, this pid, their names. */
            if (ts->pass_fd != 3)
                dup2(ts->pass_fd, 3);
            fcntl(3, F_SETFD, 0);
            char self[32];
            snprintf(self, sizeof(self), "%d", (int)getpid());
            setenv("LISTEN_PID", self, 1);
            setenv("LISTEN_FDS", "1", 1);
            setenv("LISTEN_FDNAMES", "http", 1);
        }
        execv(RINGD_BIN, (char *const *)argv);
        _exit(127);
    }
    ts->pid = pid;
    for (int i = 0; i < 2000; i++) {
        FILE *f = fopen(ts->log, "r");
        char line[1024];
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            const char *p = strstr(line, "msg=listening addr=");
            if (p == NULL)
                continue;
            /* addr=127.0.0.1:PORT or addr=[::1]:PORT: the port follows the token's last colon. */
            const char *tok = p + strlen("msg=listening addr="), *colon = NULL;
            for (const char *q = tok; *q != '\0' && *q != ' '; q++)
                if (*q == ':')
                    colon = q;
            ts->port = colon ? atoi(colon + 1) : 0; /* addr=none: no cleartext port */
            const char *a = strstr(line, " admin=");
            if (a != NULL && (colon = strchr(a, ':')) != NULL)
                ts->admin_port = atoi(colon + 1);
            const char *t = strstr(line, " tls=");
            if (t != NULL) {
                colon = NULL;
                for (const char *q = t + 5; *q != '\0' && *q != ' '; q++)
                    if (*q == ':')
                        colon = q;
                ts->tls_port = colon ? atoi(colon + 1) : 0;
            }
            fclose(f);
            return ts->port > 0 || ts->tls_port > 0 ? 0 : -1;
        }
        if (f != NULL)
            fclose(f);
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            ts->pid = -1;
            print_log(ts);
            return -1;
        }
        usleep(10000);
    }
    print_log(ts);
    return -1;
}

int ts_launch(struct test_server *ts, unsigned users, const char *const *args)
{
    if (ts_prepare(ts, users) != 0)
        return -1;
    return ts_start(ts, args);
}

int ts_terminate(struct test_server *ts, int timeout_ms)
{
    if (ts->pid <= 0)
        return -1;
    kill(ts->pid, SIGTERM);
    int status = 0;
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(ts->pid, &status, WNOHANG);
        if (r == ts->pid)
            break;
        if (r < 0)
            return -1;
        if (waited >= timeout_ms) {
            kill(ts->pid, SIGKILL);
            waitpid(ts->pid, &status, 0);
            break;
        }
        usleep(10000);
    }
    ts->pid = -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

int ts_stop(struct test_server *ts)
{
    bool running = ts->pid > 0;
    int rc = ts_terminate(ts, 10000);
    if (running && rc != 0)
        print_log(ts);
    if (ts->dir[0] != '\0') {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ts->dir);
        ts_sh(cmd);
        ts->dir[0] = '\0';
    }
    return rc;
}

bool ts_log_contains(const struct test_server *ts, const char *needle)
{
    FILE *f = fopen(ts->log, "r");
    if (f == NULL)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

int ts_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int ts_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Per-fd read-ahead so that pipelined responses can be read one at a time. */
#define TS_MAX_FD 65536
static struct {
    char *data;
    size_t len;
} pending[TS_MAX_FD];

static ssize_t fill(int fd, char *dst, size_t cap)
{
    if (fd < TS_MAX_FD && pending[fd].len > 0) {
        size_t n = pending[fd].len < cap ? pending[fd].len : cap;
        memcpy(dst, pending[fd].data, n);
        memmove(pending[fd].data, pending[fd].data + n, pending[fd].len - n);
        pending[fd].len -= n;
        return (ssize_t)n;
    }
    ssize_t n;
    do
        n = recv(fd, dst, cap, 0);
    while (n < 0 && errno == EINTR);
    return n;
}

static void unread(int fd, const char *p, size_t n)
{
    if (n == 0 || fd >= TS_MAX_FD)
        return;
    pending[fd].data = realloc(pending[fd].data, pending[fd].len + n);
    memmove(pending[fd].data + n, pending[fd].data, pending[fd].len);
    memcpy(pending[fd].data, p, n);
    pending[fd].len += n;
}

int ts_header_in(const char *head, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (const char *p = strchr(head, '\n'); p != NULL; p = strchr(p + 1, '\n')) {
        const char *line = p + 1;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t n = strcspn(v, "\r\n");
            if (n >= outlen)
                n = outlen - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 0;
        }
    }
    return -1;
}

int ts_header(const struct ts_response *r, const char *name, char *out, size_t outlen)
{
    return ts_header_in(r->headers, name, out, outlen);
}

int ts_read_response(int fd, struct ts_response *r, bool head_only)
{
    static char buf[sizeof(r->headers) + sizeof(r->body) + 1024];
    size_t len = 0;
    memset(r->headers, 0, sizeof(r->headers));
    r->status = 0;
    r->body_len = 0;
    r->body[0] = '\0';
    r->closed = false;
    char *end = NULL;
    while (end == NULL) {
        if (len >= sizeof(buf) - 1)
            return -1;
        ssize_t n = fill(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head = (size_t)(end - buf) + 4;
    if (head >= sizeof(r->headers))
        return -1;
    memcpy(r->headers, buf, head);
    r->headers[head] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    char v[64];
    size_t clen = 0;
    if (ts_header(r, "Content-Length", v, sizeof(v)) == 0)
        clen = strtoul(v, NULL, 10);
    if (ts_header(r, "Connection", v, sizeof(v)) == 0 && strcasecmp(v, "close") == 0)
        r->closed = true;
    if (head_only || r->status == 101)
        clen = 0;
    if (clen >= sizeof(r->body))
        return -1;
    while (len - head < clen) {
        ssize_t n = fill(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
    }
    memcpy(r->body, buf + head, clen);
    r->body[clen] = '\0';
    r->body_len = clen;
    unread(fd, buf + head + clen, len - head - clen);
    return 0;
}

int ts_roundtrip(int port, const char *raw, struct ts_response *r)
{
    int fd = ts_connect(port);
    if (fd < 0)
        return -1;
    int rc = ts_send_all(fd, raw, strlen(raw));
    if (rc == 0)
        rc = ts_read_response(fd, r, strncmp(raw, "HEAD ", 5) == 0);
    if (fd < TS_MAX_FD)
        pending[fd].len = 0;
    close(fd);
    return rc;
}

int ts_get(int port, const char *path, const char *extra_headers, struct ts_response *r)
{
    char req[8192];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n", path, extra_headers ? extra_headers : "");
    return ts_roundtrip(port, req, r);
}

bool ts_wait_closed(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        int n = poll(&p, 1, 50);
        if (n > 0) {
            char b[4096];
            ssize_t r = recv(fd, b, sizeof(b), MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno == ECONNRESET))
                return true;
        }
    }
    return false;
}

char *ts_metrics_text(int port)
{
    int fd = ts_connect(port);
    if (fd < 0)
        return NULL;
    const char *req = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    ts_send_all(fd, req, strlen(req));
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    ssize_t n;
    while (len < cap - 1 && (n = recv(fd, text + len, cap - 1 - len, 0)) > 0)
        len += (size_t)n;
    text[len] = '\0';
    close(fd);
    return text;
}

double ts_metric_in(const char *text, const char *series)
{
    size_t sl = strlen(series);
    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, series, sl) == 0 && line[sl] == ' ')
            return strtod(line + sl + 1, NULL);
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

double ts_metric(int port, const char *series)
{
    char *text = ts_metrics_text(port);
    if (text == NULL)
        return -1;
    double v = ts_metric_in(text, series);
    free(text);
    return v;
}
