/* test_access_log.c - the access log's pieces without a server: JSON escaping of every octet, line format, the
 * ring's full/empty rules and the end-of-turn publish (durations, sampling, the slow rule). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/access_log.h"
#include "core/metrics.h"

static void ring_init(struct alog_ring *r, uint64_t cap)
{
    memset(r, 0, sizeof(*r));
    r->cap = cap;
    r->e = calloc(cap, sizeof(struct alog_entry));
}

Test(access_log, escape_every_octet)
{
    struct buf out = {0};
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    alog_json_escape(&out, all, sizeof(all));
    /* Plain ASCII, no raw control, every quote and backslash escaped. */
    for (size_t i = 0; i < out.len; i++) {
        unsigned char c = (unsigned char)out.data[i];
        cr_assert(c >= 0x20 && c < 0x7f, "octet %u at %zu", c, i);
        if (c == '"')
            cr_assert(i > 0 && out.data[i - 1] == '\\', "bare quote at %zu", i);
    }
    cr_assert_eq(out.len, 0x20 * 6 + (0x7f - 0x20) + 2 + (256 - 0x7f) * 6, "length %zu", out.len);
    cr_assert(memmem(out.data, out.len, "\\u0000", 6) != NULL);
    cr_assert(memmem(out.data, out.len, "\\u00ff", 6) != NULL);
    cr_assert(memmem(out.data, out.len, "\\\"", 2) != NULL);
    cr_assert(memmem(out.data, out.len, "\\\\", 2) != NULL);
    buf_free(&out);
}

/* Every line of text parses as a JSON object (checked by Debian's python3) and the values round-trip. */
Test(access_log, lines_parse_as_json)
{
    struct alog_entry e;
    memset(&e, 0, sizeof(e));
    e.time_us = UINT64_C(1764700000123456);
    e.dur_us = 42;
    e.user_id = 7;
    e.bytes = 99;
    e.status = 200;
    e.shard = 1;
    e.proto = PROTO_HTTP2_TLS;
    e.family = AF_INET;
    e.port = 4242;
    e.addr[0] = 127;
    e.addr[3] = 1;
    memcpy(e.method, "GET", 3);
    e.method_len = 3;
    for (int i = 0; i < 256; i++)
        e.path[i] = (char)(255 - i);
    e.path_len = 256;
    e.path_truncated = true;
    memcpy(e.rid, "abc", 3);
    e.rid_len = 3;
    e.has_trace = true;
    memcpy(e.trace, "4bf92f3577b34da6a3ce929d0e0e4736", 32);
    struct buf out = {0};
    alog_format(&out, &e);
    e.user_id = 0;
    e.has_trace = false;
    e.proto = PROTO_HTTP1;
    e.family = 0;
    e.path_truncated = false;
    e.path_len = 0;
    alog_format(&out, &e);
    char path[] = "/tmp/ringd-alog-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, out.data, out.len), (ssize_t)out.len);
    close(fd);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 -c '\n"
             "import json,sys\n"
             "ls=[json.loads(l) for l in open(sys.argv[1],encoding=\"ascii\")]\n"
             "a,b=ls\n"
             "assert len(ls)==2\n"
             "assert a[\"time\"]==\"2025-12-02T18:26:40.123456Z\", a[\"time\"]\n"
             "assert a[\"path\"]==\"\".join(chr(255-i) for i in range(256))\n"
             "assert a[\"path_truncated\"] is True and a[\"protocol\"]==\"h2\" and a[\"tls\"] is True\n"
             "assert a[\"remote\"]==\"127.0.0.1:4242\" and a[\"user_id\"]==7 and a[\"status\"]==200\n"
             "assert a[\"trace_id\"]==\"4bf92f3577b34da6a3ce929d0e0e4736\" and a[\"request_id\"]==\"abc\"\n"
             "assert a[\"duration_us\"]==42 and a[\"bytes\"]==99 and a[\"shard\"]==1 and a[\"method\"]==\"GET\"\n"
             "assert b[\"user_id\"] is None and b[\"trace_id\"] is None and b[\"path\"]==\"\" and \"path_truncated\" not in b\n"
             "assert b[\"protocol\"]==\"http/1.1\" and b[\"tls\"] is False and b[\"remote\"]==\"\"\n"
             "' %s",
             path);
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    unlink(path);
    buf_free(&out);
    cr_assert_eq(rc, 0, "python3 rejected the lines");
}

Test(access_log, ring_full_and_publish)
{
    struct alog_ring r;
    ring_init(&r, 4);
    for (int i = 0; i < 4; i++) {
        struct alog_entry *e = alog_slot(&r);
        cr_assert_not_null(e);
        e->start_ns = 1000;
        e->keep = i != 1; /* entry 1 is sampled out */
        e->status = (uint16_t)(200 + i);
        alog_commit(&r);
    }
    cr_assert_null(alog_slot(&r), "four entries fill a ring of four");
    cr_assert(alog_pending(&r));
    /* A fast turn (no slow rule): the sampled-out entry goes, the rest are published. */
    alog_publish(&r, 1000 + 5000, 2000000000, 0);
    cr_assert_eq(atomic_load(&r.tail), 3);
    cr_assert_eq(r.e[0].status, 200);
    cr_assert_eq(r.e[1].status, 202, "compacted");
    cr_assert_eq(r.e[2].status, 203);
    cr_assert_eq(r.e[0].dur_us, 5);
    cr_assert_eq(r.e[0].time_us, 2000000000 - 5);
    cr_assert_not(alog_pending(&r));
    cr_assert_not_null(alog_slot(&r), "one place left");
    /* The writer reads two: two more places. */
    atomic_store(&r.head, 2);
    for (int i = 0; i < 3; i++) {
        struct alog_entry *e = alog_slot(&r);
        cr_assert_not_null(e, "place %d", i);
        e->start_ns = 0;
        e->keep = false;
        e->status = (uint16_t)(300 + i);
        alog_commit(&r);
    }
    cr_assert_null(alog_slot(&r));
    /* A slow turn: sampled-out entries are kept too. */
    alog_publish(&r, 2000000, 5000000000, 1000000);
    cr_assert_eq(atomic_load(&r.tail), 6);
    cr_assert_eq(r.e[3 & 3].status, 300);
    cr_assert_eq(r.e[5 & 3].status, 302);
    cr_assert_eq(r.e[5 & 3].dur_us, 2000);
    free(r.e);
}

Test(access_log, fast_turn_drops_unsampled_under_the_slow_rule)
{
    struct alog_ring r;
    ring_init(&r, 8);
    for (int i = 0; i < 5; i++) {
        struct alog_entry *e = alog_slot(&r);
        e->start_ns = 0;
        e->keep = i == 4;
        e->status = (uint16_t)(200 + i);
        alog_commit(&r);
    }
    alog_publish(&r, 999999, 1, 1000000); /* just under 1 ms */
    cr_assert_eq(atomic_load(&r.tail), 1);
    cr_assert_eq(r.e[0].status, 204);
    cr_assert_eq(r.staged, 1, "the dropped ones give their places back");
    free(r.e);
}
