/* test_serve_users.c - integration: `ringd import` JSON Lines, `ringd serve`, then the user routes over real
 * loopback sockets: bodies compared as parsed JSON, HEAD, and the 400/401/404 answers. */
#include "tests/support/server.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* One input line and the id it holds (as text: some do not fit in jansson's long long). */
struct rec {
    const char *id;
    const char *line;
};

/* Raw UTF-8 in the first line; escapes, nesting, numbers, odd spacing and ids up to 2^64-1 in the others. */
static const struct rec recs[] = {
    {"1", "{\"id\":1,\"name\":\"Zo\xc3\xab \xc3\x85ngstr\xc3\xb6m\",\"city\":\"\xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0\","
          "\"greeting\":\"\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf\",\"emoji\":\"\xf0\x9f\x98\x80\"}"},
    {"2", "{\"id\":2,\"name\":\"quote \\\" backslash \\\\ newline \\n tab \\t slash \\/ e-acute \\u00e9 grin \\ud83d\\ude00"
          " ctrl \\u0001 ls \\u2028\",\"k\\\"ey\":\"v\"}"},
    {"3", "{\"id\":3,\"tags\":[\"a\",[\"b\",[\"c\",[]]],{\"k\":[1,2.5,-3,1e10,true,false,null]}],"
          "\"profile\":{\"address\":{\"geo\":{\"lat\":48.85,\"lon\":2.35}},\"empty\":{},\"none\":null}}"},
    {"7", "{\"id\":7,\"name\":\"overwrites demo user 7\"}"},
    {"42", "{\"name\":\"id not first\",\"id\":42,\"z\":{\"id\":\"x\"}}"},
    {"43", "  {  \"id\" : 43 ,\t\"a\" : [ 1 , 2 ] , \"s\" : \"  spaced  \" }  "},
    {"9223372036854775807", "{\"id\":9223372036854775807,\"name\":\"2^63-1\"}"},
    {"9223372036854775808", "{\"id\":9223372036854775808,\"name\":\"2^63\"}"},
    {"18446744073709551615", "{\"id\":18446744073709551615,\"name\":\"2^64-1\",\"nested\":{\"id\":5,\"list\":[{\"id\":6}]}}"},
};
#define NRECS (sizeof(recs) / sizeof(recs[0]))

static struct test_server ts;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    cr_assert_eq(fclose(f), 0);
}

/* Demo db of 10 users, the records above imported over it with the real binary, then served by 2 shards. */
static void setup(void)
{
    cr_assert_eq(ts_prepare(&ts, 10), 0, "ringd demo failed");
    char path[400], text[8192] = "", cmd[1200];
    for (size_t i = 0; i < NRECS; i++) {
        strcat(text, recs[i].line);
        strcat(text, "\n");
    }
    snprintf(path, sizeof(path), "%s/in.jsonl", ts.dir);
    write_file(path, text);
    snprintf(cmd, sizeof(cmd), "%s import --db %s %s >%s/import.log 2>&1", RINGD_BIN, ts.db, path, ts.dir);
    cr_assert_eq(ts_sh(cmd), 0, "ringd import failed (see %s/import.log)", ts.dir);
    const char *args[] = {"--shards", "2", NULL};
    cr_assert_eq(ts_start(&ts, args), 0, "ringd serve did not start");
}

static void teardown(void)
{
    cr_expect_eq(ts_stop(&ts), 0, "ringd serve should exit 0 on SIGTERM");
}

/* Replaces the first occurrence of needle in s (malloc'd result). */
static char *replace_first(const char *s, const char *needle, const char *with)
{
    const char *p = strstr(s, needle);
    cr_assert_not_null(p, "'%s' not in '%s'", needle, s);
    size_t n = strlen(s) - strlen(needle) + strlen(with) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(p - s), s, with, p + strlen(needle));
    return out;
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    cr_assert_not_null(j, "not JSON (%s): %s", e.text, text);
    return j;
}

/* The served body means the same as the input line, and is compact. An id beyond
 * long long (jansson's integer) is checked literally, then both sides compared with it set to 0. */
static void expect_same_record(const struct rec *r, const char *body)
{
    char *want_text = strdup(r->line), *got_text = strdup(body);
    errno = 0;
    unsigned long long id = strtoull(r->id, NULL, 10);
    if (id > INT64_MAX) {
        char lit[64];
        snprintf(lit, sizeof(lit), "\"id\":%s", r->id);
        cr_assert(strstr(body, lit) != NULL, "body of %s lacks %s: %s", r->id, lit, body);
        free(want_text);
        free(got_text);
        want_text = replace_first(r->line, r->id, "0");
        got_text = replace_first(body, lit, "\"id\":0");
    }
    json_t *want = parse(want_text), *got = parse(got_text);
    cr_assert(json_equal(want, got), "id %s: served %s, imported %s", r->id, body, r->line);
    /* Compact: re-serialising the served text compactly in its own key order gives it back unchanged. */
    char *again = json_dumps(got, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (id <= INT64_MAX)
        cr_assert_str_eq(again, body, "stored record is not compact JSON");
    free(again);
    json_decref(want);
    json_decref(got);
    free(want_text);
    free(got_text);
}

static void expect_json_content_type(const struct ts_response *r, const char *what)
{
    char ct[128];
    cr_assert_eq(ts_header(r, "Content-Type", ct, sizeof(ct)), 0, "%s: no Content-Type\n%s", what, r->headers);
    cr_assert(strcasecmp(ct, "application/json") == 0 || strncasecmp(ct, "application/json;", 17) == 0, "%s: Content-Type %s", what,
              ct);
}

/* Non-fatal, so one run lists every wrong answer. */
static void expect_error(const struct ts_response *r, int status, const char *error, const char *what)
{
    cr_expect_eq(r->status, status, "%s: status %d, want %d; body %s", what, r->status, status, r->body);
    if (r->status != status)
        return;
    expect_json_content_type(r, what);
    json_t *want = json_pack("{ss}", "error", error), *got = parse(r->body);
    cr_expect(json_equal(want, got), "%s: body %s, want {\"error\":\"%s\"}", what, r->body, error);
    json_decref(want);
    json_decref(got);
}

/* The header block without its Date line (the clock may tick between two requests). */
static void headers_without_date(const char *h, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *line = h; *line != '\0';) {
        const char *end = strstr(line, "\r\n");
        size_t len = end ? (size_t)(end - line) + 2 : strlen(line);
        if (strncasecmp(line, "Date:", 5) != 0 && n + len < cap) {
            memcpy(out + n, line, len);
            n += len;
        }
        line += len;
    }
    out[n] = '\0';
}

/* Sends raw on a new connection and reads until the server closes it: all the bytes it sent. */
static size_t exchange_until_close(const char *raw, char *out, size_t cap)
{
    int fd = ts_connect(ts.port);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ts_send_all(fd, raw, strlen(raw)), 0);
    size_t len = 0;
    ssize_t n;
    while (len < cap - 1 && (n = read(fd, out + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fd);
    return len;
}

/* HEAD of path (with extra header lines) gives GET's status and headers (Date aside) and not one body byte. */
static void expect_head_matches_get(const char *path, const char *extra)
{
    /* The same request id on both, or each would get its own (X-Request-Id is echoed). */
    char ids[512];
    snprintf(ids, sizeof(ids), "X-Request-Id: head-vs-get\r\n%s", extra ? extra : "");
    struct ts_response get;
    cr_assert_eq(ts_get(ts.port, path, ids, &get), 0, "GET %s", path);
    char req[1024], raw[16384];
    snprintf(req, sizeof(req), "HEAD %s HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n", path, ids);
    size_t len = exchange_until_close(req, raw, sizeof(raw));
    const char *end = strstr(raw, "\r\n\r\n");
    cr_assert_not_null(end, "HEAD %s: no whole response: %s", path, raw);
    cr_assert_eq(len, (size_t)(end - raw) + 4, "HEAD %s: %zu bytes after the headers: %s", path, len - (size_t)(end - raw) - 4,
                 end + 4);
    int status = 0;
    cr_assert_eq(sscanf(raw, "HTTP/1.1 %d", &status), 1);
    cr_assert_eq(status, get.status, "HEAD %s: %d, GET: %d", path, status, get.status);

    char head_h[4096], get_h[4096];
    raw[len - 2] = '\0'; /* keep the last header's CRLF, drop the blank line */
    headers_without_date(raw, head_h, sizeof(head_h));
    headers_without_date(get.headers, get_h, sizeof(get_h));
    /* HEAD asked for Connection: close: the server may say so; GET did not. */
    char *c = strcasestr(head_h, "Connection: close\r\n");
    if (c != NULL)
        memmove(c, c + strlen("Connection: close\r\n"), strlen(c + strlen("Connection: close\r\n")) + 1);
    get_h[strlen(get_h) - 2] = '\0';
    cr_assert_str_eq(head_h, get_h, "HEAD %s headers differ from GET's", path);
    char cl[32];
    cr_assert_eq(ts_header(&get, "Content-Length", cl, sizeof(cl)), 0);
    cr_assert_eq(strtoull(cl, NULL, 10), get.body_len);
}

TestSuite(serve_users, .init = setup, .fini = teardown, .timeout = 120);

Test(serve_users, imported_records_served_as_imported)
{
    for (size_t i = 0; i < NRECS; i++) {
        char path[64], hdr[96];
        struct ts_response r;

        snprintf(path, sizeof(path), "/users/%s", recs[i].id);
        cr_assert_eq(ts_get(ts.port, path, NULL, &r), 0, "GET %s", path);
        cr_assert_eq(r.status, 200, "GET %s: %d %s", path, r.status, r.body);
        expect_json_content_type(&r, path);
        expect_same_record(&recs[i], r.body);

        snprintf(hdr, sizeof(hdr), "user-id: %s\r\n", recs[i].id);
        cr_assert_eq(ts_get(ts.port, "/user", hdr, &r), 0);
        cr_assert_eq(r.status, 200, "GET /user %s: %d %s", hdr, r.status, r.body);
        expect_json_content_type(&r, "/user");
        expect_same_record(&recs[i], r.body);
    }
}

Test(serve_users, demo_users_not_in_the_file_are_still_there)
{
    struct ts_response r;
    cr_assert_eq(ts_get(ts.port, "/users/5", NULL, &r), 0);
    cr_assert_eq(r.status, 200, "%d %s", r.status, r.body);
    json_t *j = parse(r.body);
    cr_assert_eq(json_integer_value(json_object_get(j, "id")), 5);
    cr_assert_str_eq(json_string_value(json_object_get(j, "name")), "User 5");
    json_decref(j);
}

Test(serve_users, head_same_headers_no_body)
{
    expect_head_matches_get("/users/1", NULL);
    expect_head_matches_get("/users/18446744073709551615", NULL);
    expect_head_matches_get("/user", "user-id: 2\r\n");
    expect_head_matches_get("/users/999", NULL); /* 404 */
    expect_head_matches_get("/users/abc", NULL); /* 400 */
    expect_head_matches_get("/user", NULL);      /* 401 */
}

Test(serve_users, bad_ids_are_400)
{
    const char *bad[] = {"", "0", "-1", "+1", "18446744073709551616", "99999999999999999999", "12a", "1.0", "%201", "0x10", "1%20"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[128];
        struct ts_response r;
        snprintf(path, sizeof(path), "/users/%s", bad[i]);
        cr_assert_eq(ts_get(ts.port, path, NULL, &r), 0, "GET %s", path);
        expect_error(&r, 400, "bad id", path);
    }
}

Test(serve_users, missing_ids_are_404)
{
    const char *missing[] = {"11", "999", "18446744073709551614", "9223372036854775806"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        char path[64], hdr[96];
        struct ts_response r;
        snprintf(path, sizeof(path), "/users/%s", missing[i]);
        cr_assert_eq(ts_get(ts.port, path, NULL, &r), 0);
        expect_error(&r, 404, "not found", path);
        snprintf(hdr, sizeof(hdr), "user-id: %s\r\n", missing[i]);
        cr_assert_eq(ts_get(ts.port, "/user", hdr, &r), 0);
        expect_error(&r, 404, "not found", hdr);
    }
}

Test(serve_users, user_route_header_rules)
{
    struct ts_response r;
    cr_assert_eq(ts_get(ts.port, "/user", NULL, &r), 0);
    expect_error(&r, 401, "unauthorized", "/user without user-id");
    cr_assert_eq(ts_get(ts.port, "/user", "x-user-id: 1\r\nuser-idx: 1\r\n", &r), 0);
    expect_error(&r, 401, "unauthorized", "/user with look-alike headers only");

    const char *bad[] = {"abc", "0", "-1", "+1", "18446744073709551616", "12a", "1.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char hdr[96];
        snprintf(hdr, sizeof(hdr), "user-id: %s\r\n", bad[i]);
        cr_assert_eq(ts_get(ts.port, "/user", hdr, &r), 0);
        expect_error(&r, 400, "bad id", hdr);
    }

    const char *names[] = {"USER-ID", "User-Id", "uSeR-iD"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char hdr[96];
        snprintf(hdr, sizeof(hdr), "%s: 3\r\n", names[i]);
        cr_assert_eq(ts_get(ts.port, "/user", hdr, &r), 0);
        cr_assert_eq(r.status, 200, "%s: %d %s", names[i], r.status, r.body);
        expect_same_record(&recs[2], r.body);
    }
}

Test(serve_users, query_string_ignored)
{
    struct ts_response r;
    const char *paths[] = {"/users/42?x=1", "/users/42?", "/users/42?id=7&user-id=1"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        cr_assert_eq(ts_get(ts.port, paths[i], NULL, &r), 0);
        cr_assert_eq(r.status, 200, "%s: %d %s", paths[i], r.status, r.body);
        expect_same_record(&recs[4], r.body);
    }
    cr_assert_eq(ts_get(ts.port, "/user?user-id=1", "user-id: 42\r\n", &r), 0);
    cr_assert_eq(r.status, 200, "%d %s", r.status, r.body);
    expect_same_record(&recs[4], r.body);
    cr_assert_eq(ts_get(ts.port, "/users/12a?x=1", NULL, &r), 0);
    expect_error(&r, 400, "bad id", "/users/12a?x=1");
}

/* The same records, once the snapshot index is published: every lookup is answered from it
 * (ringd_store_index_lookups_total counts each), hits and misses alike, with the same bytes. */
Test(serve_users, served_through_the_snapshot_index)
{
    /* 10 demo users, 5 of the file's ids beyond them. */
    double users = -1;
    for (int i = 0; i < 200 && users != 15; i++) {
        users = ts_metric(ts.port, "ringd_store_index_users");
        if (users != 15)
            usleep(50000);
    }
    cr_assert_eq(users, 15, "the index holds %.0f users, want 15", users);
    cr_assert_gt(ts_metric(ts.port, "ringd_store_index_txn_id"), 0);
    /* Shards take the index at their next refresh (--refresh-ms, 50 by default). */
    usleep(300000);
    double before = ts_metric(ts.port, "ringd_store_index_lookups_total");
    for (size_t i = 0; i < NRECS; i++) {
        char path[64];
        struct ts_response r;
        snprintf(path, sizeof(path), "/users/%s", recs[i].id);
        cr_assert_eq(ts_get(ts.port, path, NULL, &r), 0, "GET %s", path);
        cr_assert_eq(r.status, 200, "GET %s: %d %s", path, r.status, r.body);
        expect_same_record(&recs[i], r.body);
    }
    struct ts_response r;
    cr_assert_eq(ts_get(ts.port, "/users/11", NULL, &r), 0);
    expect_error(&r, 404, "not found", "/users/11");
    double after = ts_metric(ts.port, "ringd_store_index_lookups_total");
    cr_assert_eq(after - before, NRECS + 1, "%.0f of %zu lookups went through the index", after - before, NRECS + 1);
}
