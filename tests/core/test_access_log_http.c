/* test_access_log_http.c - --access-log on the real binary: hostile bytes still give valid JSON lines (HTTP/1.1 and
 * HTTP/2), sampling, drops under a stopped writer without blocking the shards, SIGUSR1 reopens after a rename. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/h2client.h"
#include "tests/support/server.h"

#define USERS 100

static struct test_server ts;
static char alog[400];

static void stop(void)
{
    ts_stop(&ts);
}

static void launch(const char *const *extra)
{
    cr_assert_eq(ts_prepare(&ts, USERS), 0);
    snprintf(alog, sizeof(alog), "%s/access.log", ts.dir);
    const char *args[16] = {"--access-log", alog};
    int n = 2;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    cr_assert_eq(ts_start(&ts, args), 0, "server starts");
}

static void finish(void)
{
    cr_assert_eq(ts_stop(&ts), 0, "server exit status");
}

/* Lines in file (0 when it does not exist). */
static long lines(const char *file)
{
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return 0;
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Waits (up to 20 s) until file has at least n lines; returns the count. */
static long wait_lines(const char *file, long n)
{
    long have = 0;
    for (int i = 0; i < 2000 && (have = lines(file)) < n; i++)
        usleep(10000);
    return have;
}

/* Sends count pipelined GETs of path on one connection and reads every answer; returns how many were 200. */
static int pipeline(const char *path, int count)
{
    int fd = ts_connect(ts.port);
    cr_assert_geq(fd, 0);
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    for (int i = 0; i < count; i++)
        cr_assert_eq(ts_send_all(fd, req, (size_t)n), 0);
    int ok = 0;
    for (int i = 0; i < count; i++) {
        struct ts_response r;
        cr_assert_eq(ts_read_response(fd, &r, false), 0, "answer %d of %d", i, count);
        ok += r.status == 200;
    }
    close(fd);
    return ok;
}

/* Runs Debian's python3 on script with the log as its argument; 0 when it passes. */
static int check_py(const char *script)
{
    char py[450], cmd[2048];
    snprintf(py, sizeof(py), "%s/check.py", ts.dir);
    FILE *f = fopen(py, "w");
    cr_assert_not_null(f);
    fputs(script, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s %s", py, alog);
    return ts_sh(cmd);
}

TestSuite(access_log_http, .fini = stop, .timeout = 180);

Test(access_log_http, hostile_bytes_stay_valid_json)
{
    static const char *const args[] = {"--shards", "2", NULL};
    launch(args);
    /* HTTP/1.1: a target with quotes, backslashes, braces and every octet
     * from 0x80 to 0xff (picohttpparser takes them), with a request id and
     * a traceparent, plus a request the parser rejects. */
    char path[400];
    size_t n = 0;
    const char *start = "/users/\"1\\\\{}";
    memcpy(path, start, strlen(start));
    n = strlen(start);
    for (int c = 0x80; c <= 0xff; c++)
        path[n++] = (char)c;
    path[n] = '\0';
    char raw[1024];
    int len = snprintf(raw, sizeof(raw),
                       "GET %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: hostile-1\r\n"
                       "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n",
                       path);
    int fd = ts_connect(ts.port);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ts_send_all(fd, raw, (size_t)len), 0);
    struct ts_response r;
    cr_assert_eq(ts_read_response(fd, &r, false), 0);
    cr_assert_eq(r.status, 400, "not a decimal id");
    close(fd);
    cr_assert_eq(ts_roundtrip(ts.port, "GET /users/5 HTTP/1.1\r\nHost: x\r\nX-Request-Id: \"x\\\r\n\r\n", &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(ts_roundtrip(ts.port, "GET /\x01\x02\x1f HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0, "controls: a 400");
    cr_assert_eq(ts_roundtrip(ts.port, "BREW\"\\ /users/1 HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
    /* HTTP/2: hostile visible octets in :path and a request id. */
    struct h2c cl;
    cr_assert_eq(h2c_connect(&cl, ts.port, NULL, 0, false), 0);
    const char *const ids[] = {"x-request-id", "h2-hostile", NULL};
    h2c_request(&cl, "GET", "/users/\"\\\"\\u0000%00\xc3\x28\xff", ids);
    h2c_request(&cl, "GET", "/users/3", NULL);
    cr_assert_eq(h2c_run(&cl), 0);
    h2c_close(&cl);
    cr_assert_geq(wait_lines(alog, 6), 6, "every request is logged");
    /* Every line is JSON, with the fields an SRE asks for, and the hostile
     * path decodes back to its octets (read as Latin-1). */
    char script[2048];
    snprintf(script, sizeof(script),
             "import json,sys\n"
             "want=%s\n"
             "keys={'time','shard','remote','protocol','tls','method','path','status','bytes','duration_us','request_id','user_id',"
             "'trace_id'}\n"
             "rows=[json.loads(l) for l in open(sys.argv[1],'rb').read().decode('ascii').splitlines()]\n"
             "for r in rows:\n"
             "    assert keys <= set(r), r\n"
             "    assert r['remote'].startswith('127.0.0.1:'), r\n"
             "h=[r for r in rows if r['request_id']=='hostile-1']\n"
             "assert len(h)==1 and h[0]['path']==want and h[0]['status']==400, h\n"
             "assert h[0]['trace_id']=='4bf92f3577b34da6a3ce929d0e0e4736' and h[0]['protocol']=='http/1.1'\n"
             "g=[r for r in rows if r['path']=='/users/5']\n"
             "assert len(g)==1 and g[0]['user_id']==5 and g[0]['status']==200 and g[0]['request_id']!='\"x\\\\', g\n"
             "assert any(r['method']=='' and r['status']==400 for r in rows)\n"
             "b=[r for r in rows if r['method'].startswith('BREW')]\n"
             "assert b==[] or b[0]['method']=='BREW\"\\\\', b\n"
             "x=[r for r in rows if r['request_id']=='h2-hostile']\n"
             "assert len(x)==1 and x[0]['protocol']=='h2' and x[0]['path']=='/users/\"\\\\\"\\\\u0000%%00\\xc3(\\xff', x\n"
             "assert any(r['protocol']=='h2' and r['user_id']==3 and r['bytes']>0 for r in rows)\n",
             "''.join(chr(c) for c in b'/users/\"1\\\\\\\\{}'+bytes(range(0x80,0x100)))");
    cr_assert_eq(check_py(script), 0, "the log's lines check out (see above)");
    finish();
}

Test(access_log_http, standard_output)
{
    cr_assert_eq(ts_prepare(&ts, USERS), 0);
    static const char *const args[] = {"--access-log", "-", NULL};
    cr_assert_eq(ts_start(&ts, args), 0);
    struct ts_response r;
    cr_assert_eq(ts_get(ts.port, "/users/7", NULL, &r), 0);
    bool found = false;
    for (int i = 0; i < 2000 && !(found = ts_log_contains(&ts, "\"path\":\"/users/7\"")); i++)
        usleep(10000);
    cr_assert(found, "the line went to standard output");
    finish();
}

Test(access_log_http, sampling_keeps_errors)
{
    static const char *const args[] = {"--shards", "1", "--access-log-sample", "10", "--slow-ms", "0", NULL};
    launch(args);
    cr_assert_eq(pipeline("/users/1", 100), 100);
    cr_assert_eq(pipeline("/nope", 5), 0);
    /* Requests 1, 11, ..., 91 are sampled; every 404 is logged. */
    cr_assert_geq(wait_lines(alog, 15), 15);
    usleep(200000);
    cr_assert_eq(lines(alog), 15);
    finish();
}

/* The writer is stopped (test hook): shards keep answering, full rings drop and count, and once it resumes
 * the writer writes what the rings held and what comes after. */
Test(access_log_http, drops_when_the_writer_stops)
{
    char pause[400];
    cr_assert_eq(ts_prepare(&ts, USERS), 0);
    snprintf(pause, sizeof(pause), "%s/pause", ts.dir);
    FILE *f = fopen(pause, "w");
    cr_assert_not_null(f);
    fclose(f);
    setenv("RINGD_TEST_ACCESS_LOG_PAUSE", pause, 1);
    setenv("RINGD_TEST_ACCESS_LOG_RING", "64", 1);
    snprintf(alog, sizeof(alog), "%s/access.log", ts.dir);
    const char *args[] = {"--access-log", alog, "--shards", "1", NULL};
    cr_assert_eq(ts_start(&ts, args), 0);
    for (int k = 0; k < 10; k++)
        cr_assert_eq(pipeline("/users/2", 50), 50, "answered while the writer is stopped");
    double dropped = ts_metric(ts.port, "ringd_access_log_dropped_total");
    cr_assert_geq(dropped, 500 - 64, "dropped %.0f", dropped);
    cr_assert_eq(lines(alog), 0, "nothing written while stopped");
    unlink(pause);
    cr_assert_geq(wait_lines(alog, 64), 64, "the ring's entries are written once the writer resumes");
    cr_assert_eq(pipeline("/users/3", 10), 10);
    cr_assert_geq(wait_lines(alog, 74), 74, "and what comes after");
    finish();
}

Test(access_log_http, sigusr1_reopens_after_rename)
{
    static const char *const args[] = {"--shards", "1", NULL};
    launch(args);
    cr_assert_eq(pipeline("/users/1", 3), 3);
    cr_assert_eq(wait_lines(alog, 3), 3);
    char rotated[420];
    snprintf(rotated, sizeof(rotated), "%s.1", alog);
    cr_assert_eq(rename(alog, rotated), 0);
    cr_assert_eq(pipeline("/users/1", 2), 2); /* still written to the renamed file */
    cr_assert_eq(wait_lines(rotated, 5), 5);
    cr_assert_eq(kill(ts.pid, SIGUSR1), 0);
    bool reopened = false;
    for (int i = 0; i < 2000 && !(reopened = ts_log_contains(&ts, "msg=access_log_reopened")); i++)
        usleep(10000);
    cr_assert(reopened);
    cr_assert_eq(pipeline("/users/1", 4), 4);
    cr_assert_eq(wait_lines(alog, 4), 4, "a new file at the old name");
    usleep(100000);
    cr_assert_eq(lines(rotated), 5, "the rotated file is left alone");
    cr_assert_eq(lines(alog), 4);
    finish();
}

Test(access_log_http, off_by_default_and_bad_path)
{
    cr_assert_eq(ts_launch(&ts, USERS, NULL), 0);
    cr_assert_eq(ts_metric(ts.port, "ringd_access_log_dropped_total"), 0, "exported at 0 without the log");
    cr_assert_eq(ts_stop(&ts), 0);
    cr_assert_eq(ts_prepare(&ts, USERS), 0);
    static const char *const bad[] = {"--access-log", "/nonexistent-dir/x/access.log", NULL};
    cr_assert_neq(ts_start(&ts, bad), 0, "an access log that cannot be opened is a start-up error");
    cr_assert(ts_log_contains(&ts, "msg=access_log_failed"));
}
