/* test_serve_import.c - integration: `ringd import` while `ringd serve` runs: a commit becomes visible to every
 * shard, never half of it and never backwards on a connection; `kill -9` of an import leaves the old data served. */
#include "tests/support/server.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct test_server ts;

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* Writes ids first..last as {"id":i,"v":v} lines. */
static void write_lines(const char *path, unsigned first, unsigned last, int v)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    for (unsigned i = first; i <= last; i++)
        fprintf(f, "{\"id\":%u,\"v\":%d}\n", i, v);
    cr_assert_eq(fclose(f), 0);
}

static int run_import(const char *file)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "%s import --db %s %s >>%s/import.log 2>&1", RINGD_BIN, ts.db, file, ts.dir);
    return ts_sh(cmd);
}

/* ---- a thread-safe keep-alive HTTP/1.1 client (ts_read_response keeps static state) ---- */

struct conn {
    int fd;
    char buf[8192];
    size_t len; /* bytes in buf not yet consumed */
};

/* GET /users/id on c; fills status and body. Returns 0, or -1 on a transport error. */
static int conn_get_user(struct conn *c, unsigned id, int *status, char *body, size_t cap)
{
    char req[128];
    int n = snprintf(req, sizeof(req), "GET /users/%u HTTP/1.1\r\nHost: localhost\r\n\r\n", id);
    if (ts_send_all(c->fd, req, (size_t)n) != 0)
        return -1;
    for (;;) {
        c->buf[c->len] = '\0';
        char *end = strstr(c->buf, "\r\n\r\n");
        if (end != NULL) {
            size_t head = (size_t)(end - c->buf) + 4;
            const char *cl = strcasestr(c->buf, "\r\nContent-Length:");
            if (cl == NULL || cl > end || sscanf(c->buf, "HTTP/1.1 %d", status) != 1)
                return -1;
            size_t clen = strtoul(cl + strlen("\r\nContent-Length:"), NULL, 10);
            if (clen >= cap || head + clen >= sizeof(c->buf))
                return -1;
            if (c->len >= head + clen) {
                memcpy(body, c->buf + head, clen);
                body[clen] = '\0';
                memmove(c->buf, c->buf + head + clen, c->len - head - clen);
                c->len -= head + clen;
                return 0;
            }
        }
        if (c->len >= sizeof(c->buf) - 1)
            return -1;
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c->len += (size_t)r;
    }
}

/* ---- import visibility under load ---- */

#define NTHREADS 16
#define NIDS 2000
#define REQS_PER_CONN 150 /* then a new connection: many connections over both shards */
#define RUN_LIMIT_MS 60000

static atomic_bool stop;
static atomic_bool import_started;
static atomic_ullong import_done_ms; /* 0 until the import exited */

struct worker {
    pthread_t thread;
    unsigned seed;
    /* results, read after join (or the atomics while running) */
    atomic_ulong requests;
    atomic_ulong v2_seen_after_import; /* responses with v2 once the import exited */
    unsigned long connections;
    unsigned long errors;      /* transport errors, non-200, bad bodies */
    unsigned long regressions; /* v1 after v2 on one connection */
    unsigned long early_v2;    /* v2 before the import was even started */
    char first_error[256];
};

static struct worker workers[NTHREADS];

/* Keeps the first error. Bodies go in with a precision (%.160s) so the line
 * fits first_error: gcc -O2 checks these formats (-Wformat-truncation). */
static void worker_error(struct worker *w, const char *fmt, unsigned a, int b, const char *body)
{
    if (w->errors++ == 0)
        snprintf(w->first_error, sizeof(w->first_error), fmt, a, b, body);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char body[1024];
    uint64_t deadline = now_ms() + RUN_LIMIT_MS;
    while (!atomic_load(&stop) && now_ms() < deadline) {
        struct conn *c = calloc(1, sizeof(*c));
        c->fd = ts_connect(ts.port);
        if (c->fd < 0) {
            worker_error(w, "connect failed (%u %d%s)", 0, errno, "");
            free(c);
            break;
        }
        w->connections++;
        bool saw_v2 = false;
        for (int i = 0; i < REQS_PER_CONN && !atomic_load(&stop); i++) {
            unsigned id = 1 + (unsigned)(rand_r(&w->seed) % NIDS);
            bool started = atomic_load(&import_started);
            bool done = atomic_load(&import_done_ms) != 0;
            int status = 0;
            if (conn_get_user(c, id, &status, body, sizeof(body)) != 0) {
                worker_error(w, "id %u: transport error (errno %d)%s", id, errno, "");
                break;
            }
            atomic_fetch_add(&w->requests, 1);
            if (status != 200) {
                worker_error(w, "id %u: status %d %.160s", id, status, body);
                continue;
            }
            /* The whole body is one record of one snapshot: exactly {"id":id,"v":1} or {"id":id,"v":2}. */
            char want1[64], want2[64];
            snprintf(want1, sizeof(want1), "{\"id\":%u,\"v\":1}", id);
            snprintf(want2, sizeof(want2), "{\"id\":%u,\"v\":2}", id);
            if (strcmp(body, want2) == 0) {
                saw_v2 = true;
                if (!started)
                    w->early_v2++;
                if (done)
                    atomic_fetch_add(&w->v2_seen_after_import, 1);
            } else if (strcmp(body, want1) == 0) {
                if (saw_v2)
                    w->regressions++;
            } else {
                worker_error(w, "id %u: status %d, unexpected body %.160s", id, status, body);
            }
        }
        close(c->fd);
        free(c);
    }
    return NULL;
}

static void setup_server(void)
{
    cr_assert_eq(ts_prepare(&ts, 10), 0, "ringd demo failed");
}

static void teardown_server(void)
{
    cr_expect_eq(ts_stop(&ts), 0, "ringd serve should exit 0 on SIGTERM");
}

Test(serve_import, commit_under_load_visible_everywhere_never_backwards, .init = setup_server, .fini = teardown_server,
     .timeout = 300)
{
    char v1[400], v2[400];
    snprintf(v1, sizeof(v1), "%s/v1.jsonl", ts.dir);
    snprintf(v2, sizeof(v2), "%s/v2.jsonl", ts.dir);
    write_lines(v1, 1, NIDS, 1);
    write_lines(v2, 1, NIDS, 2);
    cr_assert_eq(run_import(v1), 0, "import v1 failed");
    const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_start(&ts, args), 0);

    for (int i = 0; i < NTHREADS; i++) {
        workers[i].seed = 12345u + (unsigned)i;
        cr_assert_eq(pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]), 0);
    }
    /* Load first: every thread has answers (on v1) before the import starts. */
    uint64_t until = now_ms() + 20000;
    for (int i = 0; i < NTHREADS && now_ms() < until; i++)
        while (atomic_load(&workers[i].requests) < 300 && now_ms() < until)
            usleep(10000);

    atomic_store(&import_started, true);
    int rc = run_import(v2);
    atomic_store(&import_done_ms, now_ms());

    /* Visible within a bound: every thread gets v2 answers, and fresh connections (either shard) get only v2. */
    bool all_see_v2 = false;
    bool fresh_all_v2 = false;
    uint64_t bound = now_ms() + 5000;
    while (rc == 0 && now_ms() < bound && !(all_see_v2 && fresh_all_v2)) {
        all_see_v2 = true;
        for (int i = 0; i < NTHREADS; i++)
            all_see_v2 = all_see_v2 && atomic_load(&workers[i].v2_seen_after_import) >= 20;
        fresh_all_v2 = true;
        for (unsigned k = 0; k < 16 && fresh_all_v2; k++) {
            char path[64], want[64];
            unsigned id = 1 + k * (NIDS / 16);
            struct ts_response r;
            snprintf(path, sizeof(path), "/users/%u", id);
            snprintf(want, sizeof(want), "{\"id\":%u,\"v\":2}", id);
            fresh_all_v2 = ts_get(ts.port, path, NULL, &r) == 0 && r.status == 200 && strcmp(r.body, want) == 0;
        }
        if (!(all_see_v2 && fresh_all_v2))
            usleep(20000);
    }
    uint64_t visible_ms = now_ms() - atomic_load(&import_done_ms);
    /* A little more load after the switch, so a shard going back would be caught. */
    usleep(300000);
    atomic_store(&stop, true);
    unsigned long total = 0, conns = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(workers[i].thread, NULL);
        total += atomic_load(&workers[i].requests);
        conns += workers[i].connections;
    }
    cr_assert_eq(rc, 0, "import v2 failed while serving");
    for (int i = 0; i < NTHREADS; i++) {
        struct worker *w = &workers[i];
        cr_expect_eq(w->errors, 0, "thread %d: %lu errors, first: %s", i, w->errors, w->first_error);
        cr_expect_eq(w->regressions, 0, "thread %d: %lu answers went back from v2 to v1 on one connection", i, w->regressions);
        cr_expect_eq(w->early_v2, 0, "thread %d: v2 served before the import started", i);
    }
    cr_expect(all_see_v2, "not every client saw v2 within 5 s of the commit");
    cr_expect(fresh_all_v2, "new connections still got v1 5 s after the commit");
    cr_log_info("%lu requests on %lu connections; v2 everywhere %llu ms after import exited", total, conns,
                (unsigned long long)visible_ms);
    /* The load really ran on both shards. */
    char *m = ts_metrics_text(ts.port);
    cr_assert_not_null(m);
    double s0 = ts_metric_in(m, "ringd_connections_accepted_total{shard=\"0\"}");
    double s1 = ts_metric_in(m, "ringd_connections_accepted_total{shard=\"1\"}");
    free(m);
    cr_expect_gt(s0, 0, "shard 0 served no connections (%g)", s0);
    cr_expect_gt(s1, 0, "shard 1 served no connections (%g)", s1);
}

/* ---- kill -9 mid-import ---- */

Test(serve_import, kill_9_mid_import_keeps_old_data_and_db_usable, .init = setup_server, .fini = teardown_server, .timeout = 300)
{
    const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_start(&ts, args), 0);
    /* The old data: demo users 1..10. */
    char old[10][512];
    for (unsigned id = 1; id <= 10; id++) {
        char path[64];
        struct ts_response r;
        snprintf(path, sizeof(path), "/users/%u", id);
        cr_assert_eq(ts_get(ts.port, path, NULL, &r), 0);
        cr_assert_eq(r.status, 200);
        cr_assert_lt(r.body_len, sizeof(old[0]));
        memcpy(old[id - 1], r.body, r.body_len + 1);
    }

    /* 2,000,000 lines that would change every old user and add many. */
    char big[400];
    snprintf(big, sizeof(big), "%s/big.jsonl", ts.dir);
    FILE *f = fopen(big, "w");
    cr_assert_not_null(f);
    for (unsigned i = 1; i <= 2000000; i++)
        fprintf(f, "{\"id\":%u,\"name\":\"new %u\",\"v\":\"killed\"}\n", i, i);
    cr_assert_eq(fclose(f), 0);

    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char logp[400];
        snprintf(logp, sizeof(logp), "%s/killed-import.log", ts.dir);
        int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(RINGD_BIN, RINGD_BIN, "import", "--db", ts.db, big, (char *)NULL);
        _exit(127);
    }
    usleep(300000);
    int status;
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w != 0) {
        /* Finished (or failed) before the kill: the test would prove nothing. */
        cr_assert_fail("the import exited within 0.3 s (status 0x%x): it was not killed mid-way", status);
    }
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "import was not killed by SIGKILL (0x%x)", status);

    /* Several refresh intervals later, both shards still serve exactly the old data. */
    usleep(300000);
    for (int round = 0; round < 4; round++) {
        for (unsigned id = 1; id <= 10; id++) {
            char path[64];
            struct ts_response r;
            snprintf(path, sizeof(path), "/users/%u", id);
            cr_assert_eq(ts_get(ts.port, path, NULL, &r), 0);
            cr_assert_eq(r.status, 200, "id %u: %d %s", id, r.status, r.body);
            cr_assert_str_eq(r.body, old[id - 1], "id %u changed by a killed import", id);
        }
        struct ts_response r;
        cr_assert_eq(ts_get(ts.port, "/users/11", NULL, &r), 0);
        cr_assert_eq(r.status, 404, "id 11 appeared after a killed import: %s", r.body);
        cr_assert_eq(ts_get(ts.port, "/users/1999999", NULL, &r), 0);
        cr_assert_eq(r.status, 404, "id 1999999 appeared after a killed import: %s", r.body);
    }

    /* The database still takes an import (the killed writer's lock is recovered) and the server shows it. */
    char small[400];
    snprintf(small, sizeof(small), "%s/small.jsonl", ts.dir);
    write_lines(small, 1, 3, 3);
    cr_assert_eq(run_import(small), 0, "import after the killed one failed (see %s/import.log)", ts.dir);
    bool seen = false;
    for (uint64_t until = now_ms() + 5000; !seen && now_ms() < until; usleep(20000)) {
        seen = true;
        for (unsigned id = 1; id <= 3 && seen; id++) {
            char path[64], want[64];
            struct ts_response r;
            snprintf(path, sizeof(path), "/users/%u", id);
            snprintf(want, sizeof(want), "{\"id\":%u,\"v\":3}", id);
            seen = ts_get(ts.port, path, NULL, &r) == 0 && r.status == 200 && strcmp(r.body, want) == 0;
        }
    }
    cr_assert(seen, "the import after the killed one is not served within 5 s");
    struct ts_response r;
    cr_assert_eq(ts_get(ts.port, "/users/4", NULL, &r), 0);
    cr_assert_str_eq(r.body, old[3], "upsert of 1..3 must leave 4 alone");
}
