/* test_h1_parser.c - net/h1_parser.c: every bad-input rule of HTTP/1.1, each input cut at every byte, guard-paged. */
#include "net/h1_parser.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---------- inputs that end right before an unreadable page ---------- */

static char *guard_base; /* readable pages, then one PROT_NONE page at guard_end */
static char *guard_end;
static size_t guard_cap;

/* Returns where n bytes of src now sit, ending exactly at the unreadable page,
 * so that reading buf[n] faults (as picohttpparser's own tests do). */
static const char *at_guard(const char *src, size_t n)
{
    if (guard_base == NULL || n > guard_cap) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        if (guard_base != NULL)
            munmap(guard_base, guard_cap + page);
        guard_cap = (n + page - 1) / page * page;
        if (guard_cap == 0)
            guard_cap = page;
        guard_base = mmap(NULL, guard_cap + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        cr_assert_neq(guard_base, MAP_FAILED);
        guard_end = guard_base + guard_cap;
        cr_assert_eq(mprotect(guard_end, page, PROT_NONE), 0);
    }
    memcpy(guard_end - n, src, n);
    return guard_end - n;
}

static int parse_guarded(const char *src, size_t n, struct h1_request *req)
{
    return h1_parse(at_guard(src, n), n, req);
}

/* A growable input under construction. */
struct in {
    char *p;
    size_t len, cap;
};

static void in_add(struct in *in, const void *p, size_t n)
{
    if (in->len + n + 1 > in->cap) {
        in->cap = (in->len + n + 1) * 2;
        in->p = realloc(in->p, in->cap);
        cr_assert_not_null(in->p);
    }
    memcpy(in->p + in->len, p, n);
    in->len += n;
    in->p[in->len] = '\0';
}

static void in_str(struct in *in, const char *s)
{
    in_add(in, s, strlen(s));
}

static void in_fill(struct in *in, char c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        in_add(in, &c, 1);
}

/* ---------- the two properties every input is held to ---------- */

/* The whole input is answered with status; every prefix is either incomplete
 * (0) or the same status, never a success and never another status. */
static void expect_error_n(const char *what, const char *src, size_t n, int status)
{
    struct h1_request req;
    int rc = parse_guarded(src, n, &req);
    cr_assert_eq(rc, -status, "%s: whole input (%zu bytes): got %d, want %d", what, n, rc, -status);
    for (size_t k = 0; k < n; k++) {
        rc = parse_guarded(src, k, &req);
        cr_assert(rc == 0 || rc == -status, "%s: prefix of %zu/%zu bytes: got %d, want 0 or %d", what, k, n, rc, -status);
    }
}
#define EXPECT_ERROR(what, lit, status) expect_error_n(what, lit, sizeof(lit) - 1, status)

/* The whole input is one valid head of exactly n bytes; every prefix is incomplete.
 * *req holds the parse of the whole input (pointing into the guarded copy). */
static void expect_valid_n(const char *what, const char *src, size_t n, struct h1_request *req)
{
    for (size_t k = 0; k < n; k++) {
        int rc = parse_guarded(src, k, req);
        cr_assert_eq(rc, 0, "%s: prefix of %zu/%zu bytes: got %d, want 0", what, k, n, rc);
    }
    int rc = parse_guarded(src, n, req);
    cr_assert_eq(rc, (int)n, "%s: whole input: got %d, want %zu", what, rc, n);
}
#define EXPECT_VALID(what, lit, req) expect_valid_n(what, lit, sizeof(lit) - 1, req)

static bool field_is(const char *p, size_t n, const char *want)
{
    return p != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}

#define H "Host: example.com\r\n"

/* ---------- valid requests ---------- */

Test(h1_parser, simple_get_at_every_split)
{
    struct h1_request r;
    EXPECT_VALID("get", "GET /users/42 HTTP/1.1\r\n" H "Accept: */*\r\n\r\n", &r);
    cr_assert(field_is(r.method, r.method_len, "GET"));
    cr_assert_eq(r.method_kind, H1_GET);
    cr_assert(field_is(r.path, r.path_len, "/users/42"));
    cr_assert_eq(r.minor_version, 1);
    cr_assert(r.keep_alive);
    cr_assert_eq(r.content_length, 0);
    cr_assert_null(r.user_id);
    cr_assert_not(r.upgrade_h2c);
    cr_assert_eq(r.num_headers, 2);
    cr_assert(field_is(r.headers[0].name, r.headers[0].name_len, "Host"));
    cr_assert(field_is(r.headers[0].value, r.headers[0].value_len, "example.com"));
}

Test(h1_parser, fields_point_into_the_buffer)
{
    static const char in[] = "GET /healthz HTTP/1.1\r\n" H "\r\n";
    struct h1_request r;
    const char *buf = at_guard(in, sizeof(in) - 1);
    cr_assert_eq(h1_parse(buf, sizeof(in) - 1, &r), (int)sizeof(in) - 1);
    cr_assert_eq(r.method, buf);
    cr_assert_eq(r.path, buf + 4);
    cr_assert(r.headers[0].name > buf && r.headers[0].value < buf + sizeof(in));
}

Test(h1_parser, head_and_other_methods)
{
    struct h1_request r;
    EXPECT_VALID("head", "HEAD / HTTP/1.1\r\n" H "\r\n", &r);
    cr_assert_eq(r.method_kind, H1_HEAD);
    EXPECT_VALID("delete", "DELETE /users/1 HTTP/1.1\r\n" H "\r\n", &r);
    cr_assert_eq(r.method_kind, H1_OTHER);
    cr_assert(field_is(r.method, r.method_len, "DELETE"));
    /* Methods are case-sensitive: "get" is not GET. */
    EXPECT_VALID("lower get", "get / HTTP/1.1\r\n" H "\r\n", &r);
    cr_assert_eq(r.method_kind, H1_OTHER);
    EXPECT_VALID("GETX", "GETX / HTTP/1.1\r\n" H "\r\n", &r);
    cr_assert_eq(r.method_kind, H1_OTHER);
}

Test(h1_parser, bare_lf_line_ends)
{
    struct h1_request r;
    EXPECT_VALID("lf", "GET /a HTTP/1.1\nHost: x\nUser-Id: 7\n\n", &r);
    cr_assert(field_is(r.path, r.path_len, "/a"));
    cr_assert(field_is(r.user_id, r.user_id_len, "7"));
}

Test(h1_parser, one_leading_empty_line_is_ignored)
{
    struct h1_request r;
    EXPECT_VALID("crlf first", "\r\nGET /x HTTP/1.1\r\n" H "\r\n", &r);
    cr_assert(field_is(r.path, r.path_len, "/x"));
}

Test(h1_parser, post_with_body_length)
{
    static const char in[] = "POST /users HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\nhello";
    struct h1_request r;
    size_t head = sizeof(in) - 1 - 5;
    expect_valid_n("post", in, head, &r);
    cr_assert_eq(r.content_length, 5);
    cr_assert_eq(r.method_kind, H1_OTHER);
    /* With the body after it the head length is the same. */
    cr_assert_eq(parse_guarded(in, sizeof(in) - 1, &r), (int)head);
}

Test(h1_parser, content_length_forms)
{
    struct h1_request r;
    EXPECT_VALID("zero", "GET / HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n", &r);
    cr_assert_eq(r.content_length, 0);
    EXPECT_VALID("leading zeros", "GET / HTTP/1.1\r\n" H "Content-Length: 0007\r\n\r\n", &r);
    cr_assert_eq(r.content_length, 7);
    EXPECT_VALID("OWS", "GET / HTTP/1.1\r\n" H "Content-Length: \t 12 \t\r\n\r\n", &r);
    cr_assert_eq(r.content_length, 12);
    EXPECT_VALID("same twice", "GET / HTTP/1.1\r\n" H "Content-Length: 3\r\ncontent-length: 3\r\n\r\n", &r);
    cr_assert_eq(r.content_length, 3);
    EXPECT_VALID("max", "GET / HTTP/1.1\r\n" H "Content-Length: 1048576\r\n\r\n", &r);
    cr_assert_eq(r.content_length, 1048576);
}

Test(h1_parser, tab_and_obs_text_in_values)
{
    struct h1_request r;
    EXPECT_VALID("tab", "GET / HTTP/1.1\r\n" H "X-A: a\tb\r\n\r\n", &r);
    cr_assert(field_is(r.headers[1].value, r.headers[1].value_len, "a\tb"));
    EXPECT_VALID("obs-text", "GET / HTTP/1.1\r\n" H "X-A: caf\xc3\xa9\r\n\r\n", &r);
    cr_assert(field_is(r.headers[1].value, r.headers[1].value_len, "caf\xc3\xa9"));
    EXPECT_VALID("empty value", "GET / HTTP/1.1\r\n" H "X-A:\r\n\r\n", &r);
    cr_assert_eq(r.headers[1].value_len, 0);
}

Test(h1_parser, limits_exactly_at_the_edge_are_accepted)
{
    struct h1_request r;
    /* Request line of exactly H1_MAX_REQUEST_LINE bytes. */
    struct in in = {0};
    in_str(&in, "GET /");
    in_fill(&in, 'a', H1_MAX_REQUEST_LINE - strlen("GET / HTTP/1.1"));
    in_str(&in, " HTTP/1.1\r\n" H "\r\n");
    expect_valid_n("line at limit", in.p, in.len, &r);
    cr_assert_eq(r.path_len, H1_MAX_REQUEST_LINE - strlen("GET  HTTP/1.1"));
    free(in.p);

    /* Exactly H1_MAX_HEADERS fields. */
    in = (struct in){0};
    in_str(&in, "GET / HTTP/1.1\r\n" H);
    for (int i = 1; i < H1_MAX_HEADERS; i++) {
        char line[64];
        snprintf(line, sizeof(line), "X-%d: v\r\n", i);
        in_str(&in, line);
    }
    in_str(&in, "\r\n");
    expect_valid_n("100 fields", in.p, in.len, &r);
    cr_assert_eq(r.num_headers, H1_MAX_HEADERS);
    free(in.p);

    /* Header section of exactly H1_MAX_HEADER_BYTES (line ends and final CRLF included). */
    in = (struct in){0};
    in_str(&in, "GET / HTTP/1.1");
    size_t line_end = in.len;
    in_str(&in, "\r\n" H "X-Big: ");
    size_t used = in.len - line_end + 2 /* CRLF */ + 2 /* final CRLF */;
    in_fill(&in, 'b', H1_MAX_HEADER_BYTES - used);
    in_str(&in, "\r\n\r\n");
    cr_assert_eq(in.len - line_end, H1_MAX_HEADER_BYTES);
    expect_valid_n("32 KiB of headers", in.p, in.len, &r);
    free(in.p);
}

Test(h1_parser, http10_needs_no_host)
{
    struct h1_request r;
    EXPECT_VALID("1.0", "GET / HTTP/1.0\r\n\r\n", &r);
    cr_assert_eq(r.minor_version, 0);
    cr_assert_not(r.keep_alive);
}

Test(h1_parser, higher_minor_version_is_served_as_1_1)
{
    struct h1_request r;
    EXPECT_VALID("1.2", "GET / HTTP/1.2\r\n" H "\r\n", &r);
    cr_assert_eq(r.minor_version, 1, "the contract says 0 or 1");
    cr_assert(r.keep_alive);
    EXPECT_ERROR("1.2 without host", "GET / HTTP/1.2\r\n\r\n", 400);
}

/* ---------- keep-alive ---------- */

static bool keep_alive_of(const char *in)
{
    struct h1_request r;
    expect_valid_n(in, in, strlen(in), &r);
    return r.keep_alive;
}

Test(h1_parser, keep_alive_semantics)
{
    cr_assert(keep_alive_of("GET / HTTP/1.1\r\n" H "\r\n"), "1.1 default");
    cr_assert_not(keep_alive_of("GET / HTTP/1.1\r\n" H "Connection: close\r\n\r\n"));
    cr_assert_not(keep_alive_of("GET / HTTP/1.1\r\n" H "Connection: CLOSE\r\n\r\n"));
    cr_assert_not(keep_alive_of("GET / HTTP/1.1\r\n" H "Connection: Upgrade, close\r\n\r\n"));
    cr_assert_not(keep_alive_of("GET / HTTP/1.1\r\n" H "Connection: foo ,\t close \r\n\r\n"));
    cr_assert_not(keep_alive_of("GET / HTTP/1.1\r\n" H "Connection: keep-alive\r\nConnection: close\r\n\r\n"));
    cr_assert(keep_alive_of("GET / HTTP/1.1\r\n" H "Connection: closed\r\n\r\n"), "not the token close");
    cr_assert(keep_alive_of("GET / HTTP/1.1\r\n" H "Connection: keep-alive\r\n\r\n"));
    cr_assert(keep_alive_of("GET / HTTP/1.1\r\n" H "Connection:\r\n\r\n"));
    cr_assert(keep_alive_of("GET / HTTP/1.1\r\n" H "X-Connection: close\r\n\r\n"));

    cr_assert_not(keep_alive_of("GET / HTTP/1.0\r\n\r\n"), "1.0 default");
    cr_assert(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    cr_assert(keep_alive_of("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    cr_assert(keep_alive_of("GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n"));
    cr_assert_not(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
    cr_assert_not(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alived\r\n\r\n"));
}

/* ---------- user id, absolute form, h2c ---------- */

Test(h1_parser, user_id_capture)
{
    struct h1_request r;
    EXPECT_VALID("user-id", "GET /user HTTP/1.1\r\n" H "user-id: 12345\r\n\r\n", &r);
    cr_assert(field_is(r.user_id, r.user_id_len, "12345"));
    EXPECT_VALID("case", "GET /user HTTP/1.1\r\n" H "USER-ID: 9\r\n\r\n", &r);
    cr_assert(field_is(r.user_id, r.user_id_len, "9"));
    EXPECT_VALID("ows trimmed", "GET /user HTTP/1.1\r\n" H "User-Id: \t 42 \t \r\n\r\n", &r);
    cr_assert(field_is(r.user_id, r.user_id_len, "42"), "got '%.*s'", (int)r.user_id_len, r.user_id);
    EXPECT_VALID("empty", "GET /user HTTP/1.1\r\n" H "User-Id:\r\n\r\n", &r);
    cr_assert_not_null(r.user_id);
    cr_assert_eq(r.user_id_len, 0);
    EXPECT_VALID("other names", "GET /user HTTP/1.1\r\n" H "user-idx: 1\r\nx-user-id: 2\r\n\r\n", &r);
    cr_assert_null(r.user_id);
}

Test(h1_parser, absolute_form)
{
    struct h1_request r;
    EXPECT_VALID("abs", "GET http://example.com/users/7 HTTP/1.1\r\n" H "\r\n", &r);
    cr_assert(field_is(r.path, r.path_len, "/users/7"), "got '%.*s'", (int)r.path_len, r.path);
    EXPECT_VALID("abs port query", "GET HTTP://example.com:8080/healthz?x=1 HTTP/1.1\r\n" H "\r\n", &r);
    cr_assert(field_is(r.path, r.path_len, "/healthz?x=1"));
    EXPECT_VALID("https", "GET https://h/p HTTP/1.1\r\n" H "\r\n", &r);
    cr_assert(field_is(r.path, r.path_len, "/p"));
    EXPECT_VALID("no path", "GET http://example.com HTTP/1.1\r\n" H "\r\n", &r);
    cr_assert(field_is(r.path, r.path_len, "/"));
    EXPECT_VALID("asterisk", "OPTIONS * HTTP/1.1\r\n" H "\r\n", &r);
    cr_assert(field_is(r.path, r.path_len, "*"));
    EXPECT_ERROR("not a scheme", "GET host/p HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("ftp", "GET ftp://h/p HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("h-word", "GET hello HTTP/1.1\r\n" H "\r\n", 400);
}

Test(h1_parser, h2c_upgrade_detection)
{
    struct h1_request r;
    EXPECT_VALID("h2c",
                 "GET / HTTP/1.1\r\n" H "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                 "HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
                 &r);
    cr_assert(r.upgrade_h2c);
    cr_assert(field_is(r.h2_settings, r.h2_settings_len, "AAMAAABkAAQAAP__"));
    cr_assert(r.keep_alive);

    EXPECT_VALID("no settings", "GET / HTTP/1.1\r\n" H "Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n", &r);
    cr_assert_not(r.upgrade_h2c);
    EXPECT_VALID("no connection token", "GET / HTTP/1.1\r\n" H "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n", &r);
    cr_assert_not(r.upgrade_h2c);
    EXPECT_VALID("websocket",
                 "GET / HTTP/1.1\r\n" H "Connection: upgrade\r\nUpgrade: websocket\r\n"
                 "HTTP2-Settings: AAMAAABk\r\n\r\n",
                 &r);
    cr_assert_not(r.upgrade_h2c);
    EXPECT_VALID("h2c case",
                 "GET / HTTP/1.1\r\n" H "connection: UPGRADE\r\nupgrade: H2C \r\n"
                 "http2-settings: \r\n\r\n",
                 &r);
    cr_assert(r.upgrade_h2c);
}

Test(h1_parser, fields_are_reset_between_parses)
{
    struct h1_request r;
    EXPECT_VALID("first", "GET /user HTTP/1.1\r\n" H "user-id: 5\r\nContent-Length: 9\r\n\r\n", &r);
    cr_assert_not_null(r.user_id);
    EXPECT_VALID("second", "GET /user HTTP/1.1\r\n" H "\r\n", &r);
    cr_assert_null(r.user_id);
    cr_assert_eq(r.content_length, 0);
    cr_assert_null(r.h2_settings);
}

/* ---------- 400: syntax ---------- */

Test(h1_parser, malformed_request_line_400)
{
    EXPECT_ERROR("two spaces", "GET /  HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("leading space", " GET / HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("empty method", " / HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("tab separator", "GET\t/ HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("no version", "GET /\r\n" H "\r\n", 400);
    EXPECT_ERROR("no target", "GET HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("empty target", "GET  HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("version without minor", "GET / HTTP/2\r\n" H "\r\n", 400);
    EXPECT_ERROR("two-digit major", "GET / HTTP/20.0\r\n" H "\r\n", 400);
    EXPECT_ERROR("unsupported version, then a word", "GET / HTTP/2.0 x\r\n" H "\r\n", 400);
    EXPECT_ERROR("unsupported version, bad target", "GET /a\x01 HTTP/2.0\r\n" H "\r\n", 400);
    EXPECT_ERROR("unsupported version, bare CR", "GET / HTTP/2.0\rX" H "\r\n", 400);
    EXPECT_ERROR("lower version", "GET / http/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("garbage version", "GET / HTTX/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("trailing word", "GET / HTTP/1.1 x\r\n" H "\r\n", 400);
    EXPECT_ERROR("ctl in method", "G\x01T / HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("colon in method", "GE:T / HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("ctl in target", "GET /a\x01 HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("del in target", "GET /a\x7f HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("nul in target", "GET /a\0b HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("two empty lines first", "\r\n\r\nGET / HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("binary", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400);
}

Test(h1_parser, malformed_header_400)
{
    EXPECT_ERROR("no colon", "GET / HTTP/1.1\r\n" H "Foo bar\r\n\r\n", 400);
    EXPECT_ERROR("bare name", "GET / HTTP/1.1\r\n" H "Foo\r\n\r\n", 400);
    EXPECT_ERROR("empty name", "GET / HTTP/1.1\r\n" H ": v\r\n\r\n", 400);
    EXPECT_ERROR("quote in name", "GET / HTTP/1.1\r\n" H "\"x\": v\r\n\r\n", 400);
    EXPECT_ERROR("slash in name", "GET / HTTP/1.1\r\n" H "a/b: v\r\n\r\n", 400);
    EXPECT_ERROR("high byte in name", "GET / HTTP/1.1\r\n" H "X\xff: v\r\n\r\n", 400);
    EXPECT_ERROR("nul in name", "GET / HTTP/1.1\r\n" H "X\0Y: v\r\n\r\n", 400);
}

Test(h1_parser, obs_fold_400)
{
    EXPECT_ERROR("space fold", "GET / HTTP/1.1\r\n" H "X-A: a\r\n b\r\n\r\n", 400);
    EXPECT_ERROR("tab fold", "GET / HTTP/1.1\r\n" H "X-A: a\r\n\tb\r\n\r\n", 400);
    EXPECT_ERROR("fold of host", "GET / HTTP/1.1\r\nHost:\r\n example.com\r\n\r\n", 400);
    EXPECT_ERROR("first line folded", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400);
    EXPECT_ERROR("lf fold", "GET / HTTP/1.1\n" H "X-A: a\n b\n\n", 400);
}

Test(h1_parser, bare_cr_400)
{
    EXPECT_ERROR("in value", "GET / HTTP/1.1\r\n" H "X-A: a\rb\r\n\r\n", 400);
    EXPECT_ERROR("before crlf", "GET / HTTP/1.1\r\n" H "X-A: a\r\r\n\r\n", 400);
    EXPECT_ERROR("ends request line", "GET / HTTP/1.1\r" H "\r\n", 400);
    EXPECT_ERROR("in target", "GET /a\rb HTTP/1.1\r\n" H "\r\n", 400);
    EXPECT_ERROR("in name", "GET / HTTP/1.1\r\n" H "X\rA: a\r\n\r\n", 400);
    EXPECT_ERROR("end of head", "GET / HTTP/1.1\r\n" H "\rX", 400);
    EXPECT_ERROR("cr cr", "GET / HTTP/1.1\r\n" H "\r\r\n", 400);
}

Test(h1_parser, control_bytes_in_value_400)
{
    static const char ctl[] = {0x00, 0x01, 0x07, 0x08, 0x0b, 0x0c, 0x0e, 0x1b, 0x1f, 0x7f};
    for (size_t i = 0; i < sizeof(ctl); i++) {
        struct in in = {0};
        in_str(&in, "GET / HTTP/1.1\r\n" H "X-A: a");
        in_add(&in, &ctl[i], 1);
        in_str(&in, "b\r\n\r\n");
        char what[32];
        snprintf(what, sizeof(what), "ctl 0x%02x", (unsigned)(unsigned char)ctl[i]);
        expect_error_n(what, in.p, in.len, 400);
        /* Also as the value's first and last byte. */
        in.len = 0;
        in_str(&in, "GET / HTTP/1.1\r\n" H "X-A: ");
        in_add(&in, &ctl[i], 1);
        in_str(&in, "\r\n\r\n");
        expect_error_n(what, in.p, in.len, 400);
        in.len = 0;
        in_str(&in, "GET / HTTP/1.1\r\nHost: x");
        in_add(&in, &ctl[i], 1);
        in_str(&in, "\r\n\r\n");
        expect_error_n(what, in.p, in.len, 400);
        free(in.p);
    }
}

Test(h1_parser, space_before_colon_400)
{
    EXPECT_ERROR("space", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400);
    EXPECT_ERROR("tab", "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 400);
    EXPECT_ERROR("cl", "GET / HTTP/1.1\r\n" H "Content-Length : 5\r\n\r\n", 400);
    EXPECT_ERROR("te", "GET / HTTP/1.1\r\n" H "Transfer-Encoding : chunked\r\n\r\n", 400);
    EXPECT_ERROR("inside name", "GET / HTTP/1.1\r\n" H "X A: v\r\n\r\n", 400);
}

Test(h1_parser, host_rules_400)
{
    EXPECT_ERROR("1.1 without host", "GET / HTTP/1.1\r\n\r\n", 400);
    EXPECT_ERROR("1.1 without host, other fields", "GET / HTTP/1.1\r\nX-Host: a\r\nHostname: b\r\n\r\n", 400);
    EXPECT_ERROR("two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    EXPECT_ERROR("two hosts 1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400);
}

Test(h1_parser, empty_host_400)
{
    EXPECT_ERROR("empty", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400);
    EXPECT_ERROR("only spaces", "GET / HTTP/1.1\r\nHost:  \t \r\n\r\n", 400);
    EXPECT_ERROR("1.0", "GET / HTTP/1.0\r\nHost: \r\n\r\n", 400);
    EXPECT_ERROR("empty and another", "GET / HTTP/1.1\r\nHost:\r\nHost: a\r\n\r\n", 400);
}

Test(h1_parser, repeated_user_id_400)
{
    EXPECT_ERROR("twice", "GET /user HTTP/1.1\r\n" H "user-id: 1\r\nuser-id: 2\r\n\r\n", 400);
    EXPECT_ERROR("same value, other case", "GET /user HTTP/1.1\r\n" H "User-Id: 1\r\nUSER-ID: 1\r\n\r\n", 400);
    EXPECT_ERROR("one empty", "GET /user HTTP/1.1\r\n" H "user-id:\r\nuser-id: 2\r\n\r\n", 400);
}

/* ---------- 505: versions we do not speak ---------- */

Test(h1_parser, other_major_versions_505)
{
    EXPECT_ERROR("2.0", "GET / HTTP/2.0\r\n" H "\r\n", 505);
    EXPECT_ERROR("3.1", "GET /users/1 HTTP/3.1\r\n" H "\r\n", 505);
    EXPECT_ERROR("0.9", "GET / HTTP/0.9\r\n" H "\r\n", 505);
    EXPECT_ERROR("9.9", "GET / HTTP/9.9\r\n" H "\r\n", 505);
    EXPECT_ERROR("bare lf", "GET / HTTP/2.0\n" H "\n", 505);
    EXPECT_ERROR("leading empty line", "\r\nHEAD / HTTP/2.0\r\n" H "\r\n", 505);
    EXPECT_ERROR("whatever follows the line", "GET / HTTP/2.0\r\n\x01\x02 garbage\r\n\r\n", 505);
    EXPECT_ERROR("the h2 preface after a request", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);
    /* HTTP/1.x stays HTTP/1.1 (RFC 9112 2.3). */
    struct h1_request r;
    EXPECT_VALID("1.9", "GET / HTTP/1.9\r\n" H "\r\n", &r);
}

/* ---------- Expect ---------- */

Test(h1_parser, expect_100_continue)
{
    struct h1_request r;
    EXPECT_VALID("plain", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n", &r);
    cr_assert(r.expect_continue);
    cr_assert_eq(r.content_length, 5);
    EXPECT_VALID("case", "POST / HTTP/1.1\r\n" H "expect: 100-Continue\r\n\r\n", &r);
    cr_assert(r.expect_continue);
    EXPECT_VALID("none", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\n", &r);
    cr_assert_not(r.expect_continue);
    /* RFC 9110 10.1.1: a server MUST ignore 100-continue in an HTTP/1.0 request. */
    EXPECT_VALID("1.0", "POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", &r);
    cr_assert_not(r.expect_continue);
    EXPECT_VALID("empty list", "GET / HTTP/1.1\r\n" H "Expect:\r\n\r\n", &r);
    cr_assert_not(r.expect_continue);
}

Test(h1_parser, unknown_expectation_417)
{
    EXPECT_ERROR("other", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nExpect: 200-ok\r\n\r\n", 417);
    EXPECT_ERROR("in a list", "GET / HTTP/1.1\r\n" H "Expect: 100-continue, foo\r\n\r\n", 417);
    EXPECT_ERROR("parameter", "GET / HTTP/1.1\r\n" H "Expect: 100-continue;x=1\r\n\r\n", 417);
    EXPECT_ERROR("second field", "GET / HTTP/1.1\r\n" H "Expect: 100-continue\r\nExpect: x\r\n\r\n", 417);
    EXPECT_ERROR("1.0 too", "GET / HTTP/1.0\r\nExpect: x\r\n\r\n", 417);
}

/* ---------- 414 / 431: sizes ---------- */

static void long_line(struct in *in, size_t line_len, const char *eol)
{
    in_str(in, "GET /");
    in_fill(in, 'a', line_len - strlen("GET / HTTP/1.1"));
    in_str(in, " HTTP/1.1");
    in_str(in, eol);
    in_str(in, H);
    in_str(in, eol);
}

Test(h1_parser, request_line_over_8k_414)
{
    size_t lens[] = {H1_MAX_REQUEST_LINE + 1, H1_MAX_REQUEST_LINE + 2, H1_MAX_REQUEST_LINE + 100, 20000};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        struct in in = {0};
        long_line(&in, lens[i], "\r\n");
        char what[48];
        snprintf(what, sizeof(what), "line %zu crlf", lens[i]);
        expect_error_n(what, in.p, in.len, 414);
        in.len = 0;
        long_line(&in, lens[i], "\n");
        snprintf(what, sizeof(what), "line %zu lf", lens[i]);
        expect_error_n(what, in.p, in.len, 414);
        free(in.p);
    }
    /* A line that never ends. */
    struct in in = {0};
    in_str(&in, "GET /");
    in_fill(&in, 'z', 3 * H1_MAX_REQUEST_LINE);
    expect_error_n("endless line", in.p, in.len, 414);
    free(in.p);
}

Test(h1_parser, long_line_with_late_garbage_is_414_whatever_the_split)
{
    /* The bad byte sits beyond the 8 KiB the parser may examine: every split must agree. */
    struct in in = {0};
    in_str(&in, "GET /");
    in_fill(&in, 'a', H1_MAX_REQUEST_LINE + 500);
    in_add(&in, "\x01", 1);
    in_str(&in, " HTTP/1.1\r\n" H "\r\n");
    expect_error_n("late ctl", in.p, in.len, 414);
    free(in.p);
    /* Early garbage in a long line: 400 at every split that shows it. */
    in = (struct in){0};
    in_str(&in, "GET /a\x01");
    in_fill(&in, 'a', H1_MAX_REQUEST_LINE + 500);
    in_str(&in, " HTTP/1.1\r\n" H "\r\n");
    expect_error_n("early ctl", in.p, in.len, 400);
    free(in.p);
}

Test(h1_parser, header_section_over_32k_431)
{
    /* One huge field. */
    struct in in = {0};
    in_str(&in, "GET / HTTP/1.1");
    size_t line_end = in.len;
    in_str(&in, "\r\n" H "X-Big: ");
    in_fill(&in, 'b', H1_MAX_HEADER_BYTES - (in.len - line_end) - 4 + 1);
    in_str(&in, "\r\n\r\n");
    cr_assert_eq(in.len - line_end, H1_MAX_HEADER_BYTES + 1);
    expect_error_n("one byte over", in.p, in.len, 431);
    free(in.p);

    /* Many medium fields adding up. */
    in = (struct in){0};
    in_str(&in, "GET / HTTP/1.1\r\n" H);
    for (int i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof(name), "X-F%d: ", i);
        in_str(&in, name);
        in_fill(&in, 'v', 900);
        in_str(&in, "\r\n");
    }
    in_str(&in, "\r\n");
    expect_error_n("40 x 900", in.p, in.len, 431);
    free(in.p);

    /* A head that never ends. */
    in = (struct in){0};
    in_str(&in, "GET / HTTP/1.1\r\n" H "X-Endless: ");
    in_fill(&in, 'e', H1_MAX_HEAD + 1000);
    expect_error_n("endless header", in.p, in.len, 431);
    free(in.p);
}

static void many_fields(struct in *in, int n, const char *bad_line_at_20)
{
    in_str(in, "GET / HTTP/1.1\r\n" H);
    for (int i = 1; i < n; i++) {
        char line[64];
        snprintf(line, sizeof(line), "X-%d: v\r\n", i);
        in_str(in, i == 20 && bad_line_at_20 ? bad_line_at_20 : line);
    }
    in_str(in, "\r\n");
}

Test(h1_parser, more_than_100_fields_431)
{
    int counts[] = {H1_MAX_HEADERS + 1, H1_MAX_HEADERS + 2, 150, 1000};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        struct in in = {0};
        many_fields(&in, counts[i], NULL);
        char what[32];
        snprintf(what, sizeof(what), "%d fields", counts[i]);
        expect_error_n(what, in.p, in.len, 431);
        free(in.p);
    }
    struct in in = {0};
    in_str(&in, "GET / HTTP/1.1\n" H);
    for (int i = 0; i < 200; i++)
        in_str(&in, "a:b\n");
    in_str(&in, "\n");
    expect_error_n("200 fields, lf", in.p, in.len, 431);
    free(in.p);
}

Test(h1_parser, syntax_error_among_many_fields_is_400_whatever_the_split)
{
    /* A malformed line within the first 100 fields decides, however many lines follow. */
    struct in in = {0};
    many_fields(&in, 300, "Bad Line\r\n");
    expect_error_n("bad line then 280 fields", in.p, in.len, 400);
    free(in.p);
    in = (struct in){0};
    many_fields(&in, 300, "X-Fold: a\r\n b\r\n");
    expect_error_n("fold then 280 fields", in.p, in.len, 400);
    free(in.p);
    /* Beyond the 101st field the count decides. */
    in = (struct in){0};
    in_str(&in, "GET / HTTP/1.1\r\n" H);
    for (int i = 0; i < 120; i++)
        in_str(&in, i == 110 ? "Bad Line\r\n" : "a: b\r\n");
    in_str(&in, "\r\n");
    expect_error_n("120 fields, bad 111th", in.p, in.len, 431);
    free(in.p);
}

/* ---------- framing: Content-Length and Transfer-Encoding ---------- */

Test(h1_parser, content_length_with_transfer_encoding_400)
{
    EXPECT_ERROR("cl then te", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    EXPECT_ERROR("te then cl", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400);
    EXPECT_ERROR("te then cl 0", "GET / HTTP/1.1\r\n" H "transfer-encoding: identity\r\ncontent-length: 0\r\n\r\n", 400);
    EXPECT_ERROR("huge cl and te", "POST / HTTP/1.1\r\n" H "Content-Length: 99999999\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

Test(h1_parser, differing_content_lengths_400)
{
    EXPECT_ERROR("5 and 6", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
    EXPECT_ERROR("0 and 1", "POST / HTTP/1.1\r\n" H "Content-Length: 0\r\nContent-Length: 1\r\n\r\n", 400);
    EXPECT_ERROR("5 and huge", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 5000000\r\n\r\n", 400);
    EXPECT_ERROR("huge and 5", "POST / HTTP/1.1\r\n" H "Content-Length: 5000000\r\nContent-Length: 5\r\n\r\n", 400);
    EXPECT_ERROR("list", "POST / HTTP/1.1\r\n" H "Content-Length: 5, 6\r\n\r\n", 400);
}

Test(h1_parser, non_decimal_or_negative_content_length_400)
{
    static const char *const bad[] = {"-1",  "-0",  "+5",   "5x",           "x5",  "0x10", "5.0",
                                      "1e3", "5 5", "five", "\xef\xbc\x95", "5,5", "",     " "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char in[256];
        int n = snprintf(in, sizeof(in), "POST / HTTP/1.1\r\n" H "Content-Length: %s\r\n\r\n", bad[i]);
        char what[64];
        snprintf(what, sizeof(what), "cl '%s'", bad[i]);
        expect_error_n(what, in, (size_t)n, 400);
    }
}

Test(h1_parser, any_transfer_encoding_501)
{
    EXPECT_ERROR("chunked", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n", 501);
    EXPECT_ERROR("identity", "GET / HTTP/1.1\r\n" H "Transfer-Encoding: identity\r\n\r\n", 501);
    EXPECT_ERROR("list", "POST / HTTP/1.1\r\n" H "transfer-encoding: gzip, chunked\r\n\r\n", 501);
    EXPECT_ERROR("empty", "POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n", 501);
    EXPECT_ERROR("1.0", "POST / HTTP/1.0\r\nTRANSFER-ENCODING: chunked\r\n\r\n", 501);
}

Test(h1_parser, content_length_over_1mib_413)
{
    EXPECT_ERROR("1 MiB + 1", "POST / HTTP/1.1\r\n" H "Content-Length: 1048577\r\n\r\n", 413);
    EXPECT_ERROR("10 GB", "POST / HTTP/1.1\r\n" H "Content-Length: 10000000000\r\n\r\n", 413);
    EXPECT_ERROR("2^64", "POST / HTTP/1.1\r\n" H "Content-Length: 18446744073709551616\r\n\r\n", 413);
    EXPECT_ERROR("way past 2^64", "POST / HTTP/1.1\r\n" H "Content-Length: 999999999999999999999999999999\r\n\r\n", 413);
    EXPECT_ERROR("same twice", "POST / HTTP/1.1\r\n" H "Content-Length: 2000000\r\nContent-Length: 2000000\r\n\r\n", 413);
    EXPECT_ERROR("GET", "GET / HTTP/1.1\r\n" H "Content-Length: 2000000\r\n\r\n", 413);
}

/* ---------- exhaustive small mutations ---------- */

/* Every single byte of a valid request replaced by every byte value: the
 * parser must return a status it may return (never crash, never over-read),
 * and every prefix must agree with the whole. */
Test(h1_parser, single_byte_mutations_are_consistent)
{
    static const char base[] = "GET /users/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    char in[sizeof(base)];
    size_t n = sizeof(base) - 1;
    for (size_t pos = 0; pos < n; pos++) {
        for (int b = 0; b < 256; b++) {
            memcpy(in, base, n);
            in[pos] = (char)b;
            struct h1_request r;
            int whole = parse_guarded(in, n, &r);
            cr_assert(whole == 0 || whole > 0 || whole == -400 || whole == -413 || whole == -501 || whole == -414 || whole == -431 ||
                          whole == -505,
                      "pos %zu byte 0x%02x: %d", pos, b, whole);
            if (whole > 0)
                cr_assert_leq((size_t)whole, n);
            for (size_t k = 0; k < n; k++) {
                int rc = parse_guarded(in, k, &r);
                if (whole <= 0)
                    cr_assert(rc == 0 || rc == whole, "pos %zu byte 0x%02x prefix %zu: %d vs whole %d", pos, b, k, rc, whole);
                else
                    cr_assert(rc == 0 || rc == whole, "pos %zu byte 0x%02x prefix %zu: %d vs whole %d", pos, b, k, rc, whole);
            }
        }
    }
}

/* h1_parse relies on picohttpparser to refuse every non-tchar byte in a
 * field name (it does not check names itself): pin that for all 256 byte
 * values, first, inside and last in the name. */
Test(h1_parser, every_non_tchar_byte_in_a_name_is_400)
{
    static const char tchars[] = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for (int b = 0; b < 256; b++) {
        bool tchar = b != 0 && strchr(tchars, b) != NULL;
        for (int pos = 0; pos < 3; pos++) {
            char in[64] = "GET / HTTP/1.1\r\nHost: a\r\nXY: v\r\n\r\n";
            size_t at = strlen("GET / HTTP/1.1\r\nHost: a\r\n");
            /* "cXY", "XcY", "XYc" */
            memmove(in + at + pos + 1, in + at + pos, strlen(in + at + pos) + 1);
            in[at + pos] = (char)b;
            size_t n = strlen("GET / HTTP/1.1\r\nHost: a\r\nXY: v\r\n\r\n") + 1;
            struct h1_request r;
            int rc = parse_guarded(in, n, &r);
            if (tchar)
                cr_assert_eq(rc, (int)n, "byte 0x%02x at %d: got %d, want a valid head", b, pos, rc);
            else if (b == '\n' && pos == 0)
                cr_assert_eq(rc, (int)at + 1, "a bare LF there ends the head (got %d)", rc);
            else if (b == ':' && pos > 0)
                cr_assert_eq(rc, (int)n, "a colon inside ends the name: a valid field (got %d)", rc);
            else
                cr_assert_eq(rc, -400, "byte 0x%02x at %d: got %d, want -400", b, pos, rc);
        }
    }
}
