/* probe.c - end-to-end lag of `ringd follow`: commit an update in PostgreSQL, then poll ringd over HTTP until the
 * new value is served; the time between the commit's return and the first answer that shows it.
 *
 *   probe CONNINFO PORT COUNT INTERVAL_MS FIRST_ID IDS
 *
 * Each probe bumps n of one row (FIRST_ID .. FIRST_ID+IDS-1, round robin) with
 * UPDATE ... RETURNING n, then GETs /users/{id} on one keep-alive connection
 * every 200 µs until the body holds "n":<new>. Prints one line:
 *   PROBE count=.. p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. timeouts=..
 * after one line "LAG <ms>" per probe (for merging several runs).
 * A probe not visible within 5 s counts as a timeout (and as 5000 ms). Every probe slower than 100 ms is
 * also printed on stderr as "SLOW at=<unix seconds of its commit> lag_ms=.. id=..", to be lined up with
 * the other logs of the run. */
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double unix_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int connect_http(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        perror("connect");
        exit(1);
    }
    return fd;
}

/* One GET; the whole response into buf (Content-Length framed). Returns its length or -1. */
static int get(int fd, long id, char *buf, size_t cap)
{
    char req[128];
    int n = snprintf(req, sizeof(req), "GET /users/%ld HTTP/1.1\r\nHost: probe\r\n\r\n", id);
    if (write(fd, req, (size_t)n) != n)
        return -1;
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        char *cl = strstr(buf, "Content-Length: ");
        if (end != NULL && cl != NULL && len >= (size_t)(end + 4 - buf) + strtoul(cl + 16, NULL, 10))
            return (int)len;
    }
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: probe CONNINFO PORT COUNT INTERVAL_MS FIRST_ID IDS\n");
        return 2;
    }
    int port = atoi(argv[2]), count = atoi(argv[3]);
    double interval = atof(argv[4]);
    long first = atol(argv[5]), ids = atol(argv[6]);
    PGconn *c = PQconnectdb(argv[1]);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "probe: %s", PQerrorMessage(c));
        return 1;
    }
    int fd = connect_http(port);
    double *lag = calloc((size_t)count, sizeof(double));
    int timeouts = 0;
    char buf[65536], sql[128], want[64];
    double next = now_ms();
    for (int i = 0; i < count; i++) {
        long id = first + i % ids;
        snprintf(sql, sizeof(sql), "UPDATE users SET n = n + 1 WHERE id = %ld RETURNING n", id);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            fprintf(stderr, "probe: %s", PQresultErrorMessage(r));
            return 1;
        }
        double t0 = now_ms(), at = unix_s();
        snprintf(want, sizeof(want), "\"n\":%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        size_t wl = strlen(want);
        for (;;) {
            int n = get(fd, id, buf, sizeof(buf));
            if (n < 0) {
                fprintf(stderr, "probe: HTTP failed\n");
                return 1;
            }
            char *p = strstr(buf, want);
            if (p != NULL && (p[wl] == ',' || p[wl] == '}')) {
                lag[i] = now_ms() - t0;
                break;
            }
            if (now_ms() - t0 > 5000) {
                lag[i] = 5000;
                timeouts++;
                break;
            }
            usleep(200);
        }
        if (lag[i] > 100)
            fprintf(stderr, "SLOW at=%.3f lag_ms=%.2f id=%ld\n", at, lag[i], id);
        next += interval;
        double w = next - now_ms();
        if (w > 0)
            usleep((useconds_t)(w * 1000));
    }
    for (int i = 0; i < count; i++)
        printf("LAG %.3f\n", lag[i]);
    qsort(lag, (size_t)count, sizeof(double), cmp);
#define PCT(p) lag[(size_t)((double)(count - 1) * (p))]
    printf("PROBE count=%d p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f timeouts=%d\n", count, PCT(0.50), PCT(0.90), PCT(0.99),
           lag[count - 1], timeouts);
    PQfinish(c);
    close(fd);
    free(lag);
    return 0;
}
