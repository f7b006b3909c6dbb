/* server.h - test support: start the real ringd binary on an ephemeral loopback port and talk to it over sockets. */
#ifndef RINGD_TEST_SERVER_H
#define RINGD_TEST_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct test_server {
    pid_t pid;
    int port;       /* main listener, 127.0.0.1; 0 with --listen none */
    int admin_port; /* 0 unless --admin-listen was passed */
    int tls_port;   /* 0 unless --tls-listen was passed */
    char dir[256];  /* temp dir: db/ and server.log inside; removed by ts_stop */
    char db[300];
    char log[300];
    int pass_fd;    /* > 0: ts_start passes this listening socket as systemd would (fd 3, LISTEN_FDS=1, name http) */
};

/* Makes a temp dir with a demo database of `users` users (ringd demo). Returns 0 or -1. */
int ts_prepare(struct test_server *ts, unsigned users);

/* Starts `ringd serve --listen 127.0.0.1:0 --db <db> <args...>` (args is a
 * NULL-terminated list, may be NULL; a later --listen wins) after ts_prepare,
 * and waits (up to 20 s) for its "msg=listening" line, taking the ports from
 * its addr=, tls= and admin= fields. Returns 0 or -1 (the log is printed). */
int ts_start(struct test_server *ts, const char *const *args);

/* ts_prepare + ts_start with the usual flags plus args. */
int ts_launch(struct test_server *ts, unsigned users, const char *const *args);

/* SIGTERM, then waits up to timeout_ms (SIGKILL after). Returns the exit status
 * (0..255), 128+signal when killed by one, -1 on error. Does not remove the dir. */
int ts_terminate(struct test_server *ts, int timeout_ms);

/* ts_terminate and remove the temp dir. Returns ts_terminate's value. */
int ts_stop(struct test_server *ts);

/* Whether the server's log contains needle. */
bool ts_log_contains(const struct test_server *ts, const char *needle);

/* A blocking TCP connection to 127.0.0.1:port with 10 s send/receive timeouts; -1 on error. */
int ts_connect(int port);

/* Sends all of buf. Returns 0 or -1. */
int ts_send_all(int fd, const void *buf, size_t len);

/* One parsed HTTP/1.1 response. */
struct ts_response {
    int status;
    char headers[4096]; /* raw header block, NUL-terminated */
    char body[65536];   /* NUL-terminated */
    size_t body_len;
    bool closed;        /* the server closed the connection after it (EOF seen or Connection: close) */
};

/* Reads one response from fd (Content-Length framed; head_only for HEAD).
 * Returns 0, or -1 on EOF/timeout before a whole response. */
int ts_read_response(int fd, struct ts_response *r, bool head_only);

/* Connects, sends raw request bytes, reads one response, closes. Returns 0 or -1. */
int ts_roundtrip(int port, const char *raw, struct ts_response *r);

/* GET path with optional extra header lines ("Name: v\r\n..." or NULL) on a new connection. */
int ts_get(int port, const char *path, const char *extra_headers, struct ts_response *r);

/* Value of header name (case-insensitive) in a raw response head ("HTTP/1.1 ...\r\nName: v\r\n...")
 * copied into out; returns 0 or -1 when absent. */
int ts_header_in(const char *head, const char *name, char *out, size_t outlen);

/* Value of header name in r (case-insensitive) copied into out; returns 0 or -1 when absent. */
int ts_header(const struct ts_response *r, const char *name, char *out, size_t outlen);

/* Whether the peer closed fd (read returns 0 or ECONNRESET within timeout_ms). */
bool ts_wait_closed(int fd, int timeout_ms);

/* GET /metrics on port and returns the value of the sample whose line starts
 * with `series` followed by a space (e.g. "ringd_connections_active{shard=\"0\"}"); -1 when absent. */
double ts_metric(int port, const char *series);

/* The whole /metrics text from port (malloc'd, caller frees), NULL on error. */
char *ts_metrics_text(int port);

/* The value of series (as in ts_metric) in a scrape's text; -1 when absent. */
double ts_metric_in(const char *text, const char *series);

/* Runs a shell command line; returns its exit status (0..255) or -1. */
int ts_sh(const char *cmdline);

#endif
