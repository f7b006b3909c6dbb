/* test_router.c - net/router.c: id parsing, error bodies, and the routes that need no store. */
#include "net/router.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/server.h"
#include "core/shard.h"

static int parse(const char *s, uint64_t *id)
{
    *id = 0xdeadbeef;
    return router_parse_id(s, strlen(s), id);
}

Test(router_parse_id, accepts_decimal_in_range)
{
    uint64_t id;
    cr_assert_eq(parse("1", &id), 0);
    cr_assert_eq(id, 1);
    cr_assert_eq(parse("42", &id), 0);
    cr_assert_eq(id, 42);
    cr_assert_eq(parse("18446744073709551615", &id), 0, "2^64-1 is in range");
    cr_assert_eq(id, UINT64_MAX);
    cr_assert_eq(parse("18446744073709551610", &id), 0);
    cr_assert_eq(id, UINT64_MAX - 5);
    cr_assert_eq(parse("9999999999999999999", &id), 0);
    cr_assert_eq(id, UINT64_C(9999999999999999999));
}

Test(router_parse_id, leading_zeros_are_the_same_number)
{
    uint64_t id;
    cr_assert_eq(parse("007", &id), 0);
    cr_assert_eq(id, 7);
    cr_assert_eq(parse("01844674407370955161", &id), 0);
    cr_assert_eq(id, UINT64_C(1844674407370955161));
}

Test(router_parse_id, rejects)
{
    static const char *const bad[] = {
        "",    /* empty */
        "0",   /* ids start at 1 */
        "000", /* still zero */
        "-1",  /* sign */
        "+1",  /* plus */
        "-0",
        " 1", /* spaces */
        "1 ",
        "1a", /* trailing bytes */
        "a1",
        "12/",
        "1.0",
        "0x10",
        "1e3",
        "18446744073709551616", /* 2^64: overflow */
        "18446744073709551620",
        "99999999999999999999",  /* 20 digits, over */
        "184467440737095516150", /* 21 digits */
        "100000000000000000000000000000000",
        "\xd9\xa1", /* ARABIC-INDIC DIGIT ONE */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t id;
        cr_assert_eq(parse(bad[i], &id), -1, "'%s' accepted as %llu", bad[i], (unsigned long long)id);
        cr_assert_eq(id, 0xdeadbeef, "'%s': *id written on failure", bad[i]);
    }
}

Test(router_parse_id, honours_len_not_nul)
{
    uint64_t id = 0;
    cr_assert_eq(router_parse_id("123abc", 3, &id), 0);
    cr_assert_eq(id, 123);
    cr_assert_eq(router_parse_id("12\0"
                                 "3",
                                 4, &id),
                 -1, "an embedded NUL is a byte like any other");
    cr_assert_eq(router_parse_id("5", 0, &id), -1);
}

/* {"error":"<words without quotes or backslashes>"} */
static bool is_error_json(const char *body, size_t len)
{
    static const char pre[] = "{\"error\":\"";
    size_t pl = sizeof(pre) - 1;
    if (len < pl + 3 || memcmp(body, pre, pl) != 0 || memcmp(body + len - 2, "\"}", 2) != 0)
        return false;
    return memchr(body + pl, '"', len - pl - 2) == NULL && memchr(body + pl, '\\', len - pl - 2) == NULL;
}

Test(router_error_body, every_status_has_a_json_body)
{
    static const int statuses[] = {400, 401, 404, 405, 408, 413, 414, 431, 500, 501, 503};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        size_t len = 0;
        const char *b = router_error_body(statuses[i], &len);
        cr_assert_not_null(b);
        cr_assert_eq(len, strlen(b), "%d: length", statuses[i]);
        cr_assert(is_error_json(b, len), "%d: '%s'", statuses[i], b);
    }
    size_t len;
    cr_assert_str_eq(router_error_body(404, &len), "{\"error\":\"not found\"}");
    cr_assert_str_eq(router_error_body(401, &len), "{\"error\":\"unauthorized\"}");
    cr_assert_str_eq(router_error_body(405, &len), "{\"error\":\"method not allowed\"}");
    /* The HTTP/1.1 error statuses each get their own words. */
    const char *b413 = router_error_body(413, &len);
    const char *b414 = router_error_body(414, &len);
    const char *b431 = router_error_body(431, &len);
    const char *b501 = router_error_body(501, &len);
    cr_assert(strcmp(b413, b414) != 0 && strcmp(b414, b431) != 0 && strcmp(b431, b501) != 0);
}

Test(router_error_body, unknown_status_still_json)
{
    size_t len = 0;
    const char *b = router_error_body(299, &len);
    cr_assert(is_error_json(b, len), "'%s'", b);
}

/* ---------- router_handle on the routes that do not touch the store ---------- */

static struct config cfg;
static struct server srv;
static struct shard sh;

static void fake_setup(void)
{
    memset(&cfg, 0, sizeof(cfg));
    memset(&srv, 0, sizeof(srv));
    memset(&sh, 0, sizeof(sh));
    srv.cfg = &cfg;
    srv.nshards = 1;
    atomic_store(&srv.shards_running, 1);
    sh.srv = &srv;
    sh.cfg = &cfg;
    sh.metrics = calloc(1, sizeof(*sh.metrics));
}

static void fake_teardown(void)
{
    free(sh.metrics);
    buf_free(&sh.scratch);
}

static struct response handle(enum router_method m, const char *path, const char *user_id, uint8_t listener)
{
    struct request req = {.method = m, .path = path, .path_len = strlen(path), .listener = listener};
    if (user_id != NULL) {
        req.user_id = user_id;
        req.user_id_len = strlen(user_id);
    }
    struct response res;
    memset(&res, 0xa5, sizeof(res));
    router_handle(&sh, &req, &res);
    return res;
}

static void assert_json_error(const struct response *res, int status)
{
    cr_assert_eq(res->status, status);
    cr_assert_str_eq(res->content_type, "application/json");
    cr_assert(is_error_json(res->body, res->body_len), "%d: '%.*s'", status, (int)res->body_len, res->body);
}

Test(router_handle, health_and_not_found, .init = fake_setup, .fini = fake_teardown)
{
    struct response r = handle(METHOD_GET, "/healthz", NULL, LISTENER_MAIN);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.route, ROUTE_HEALTHZ);
    cr_assert_eq(r.body_len, 3);
    cr_assert_eq(memcmp(r.body, "ok\n", 3), 0);
    r = handle(METHOD_HEAD, "/healthz?probe=1", NULL, LISTENER_MAIN);
    cr_assert_eq(r.status, 200, "the query string takes no part in routing");

    static const char *const missing[] = {"/", "/healthz/", "/healthzz", "/users", "/userx", "/metricsx", "*", "/HEALTHZ"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        r = handle(METHOD_GET, missing[i], NULL, LISTENER_MAIN);
        assert_json_error(&r, 404);
        cr_assert_str_eq(r.body, "{\"error\":\"not found\"}", "%s", missing[i]);
        cr_assert_eq(r.route, ROUTE_OTHER, "%s", missing[i]);
    }
}

Test(router_handle, other_methods_405, .init = fake_setup, .fini = fake_teardown)
{
    static const char *const paths[] = {"/healthz", "/users/1", "/user", "/metrics", "/nope"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct response r = handle(METHOD_OTHER, paths[i], "1", LISTENER_MAIN);
        assert_json_error(&r, 405);
    }
}

Test(router_handle, user_routes_without_store, .init = fake_setup, .fini = fake_teardown)
{
    static const char *const bad_ids[] = {"/users/abc", "/users/0", "/users/-1", "/users/18446744073709551616",
                                          "/users/1/x", "/users/+1"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        struct response r = handle(METHOD_GET, bad_ids[i], NULL, LISTENER_MAIN);
        assert_json_error(&r, 400);
        cr_assert_str_eq(r.body, "{\"error\":\"bad id\"}");
        cr_assert_eq(r.route, ROUTE_USERS);
    }
    struct response r = handle(METHOD_GET, "/user", NULL, LISTENER_MAIN);
    assert_json_error(&r, 401);
    cr_assert_eq(r.route, ROUTE_USER);
    r = handle(METHOD_GET, "/user", "x7", LISTENER_MAIN);
    assert_json_error(&r, 400);
    r = handle(METHOD_GET, "/user", "", LISTENER_MAIN);
    assert_json_error(&r, 400);
    cr_assert_not(sh.looked_up, "no store lookup for a bad id");
}

Test(router_handle, readyz, .init = fake_setup, .fini = fake_teardown)
{
    struct response r = handle(METHOD_GET, "/readyz", NULL, LISTENER_MAIN);
    cr_assert_eq(r.status, 200);
    atomic_store(&srv.shards_running, 0);
    r = handle(METHOD_GET, "/readyz", NULL, LISTENER_MAIN);
    assert_json_error(&r, 503);
    atomic_store(&srv.shards_running, 1);
    sh.draining = true;
    r = handle(METHOD_GET, "/readyz", NULL, LISTENER_MAIN);
    assert_json_error(&r, 503);
    r = handle(METHOD_GET, "/healthz", NULL, LISTENER_MAIN);
    cr_assert_eq(r.status, 200, "healthz stays 200 while draining");
}

Test(router_handle, livez_asks_nothing, .init = fake_setup, .fini = fake_teardown)
{
    for (uint8_t l = LISTENER_MAIN; l <= LISTENER_ADMIN; l++) {
        struct response r = handle(METHOD_GET, "/livez", NULL, l);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(r.route, ROUTE_LIVEZ);
        cr_assert_eq(memcmp(r.body, "ok\n", 3), 0);
    }
    atomic_store(&srv.shards_running, 0);
    sh.draining = true;
    struct response r = handle(METHOD_HEAD, "/livez", NULL, LISTENER_MAIN);
    cr_assert_eq(r.status, 200, "neither readiness nor a drain makes ringd not alive");
    cr_assert_not(sh.looked_up, "no store access");
    r = handle(METHOD_OTHER, "/livez", NULL, LISTENER_MAIN);
    assert_json_error(&r, 405);
}

Test(router_handle, admin_listener_split, .init = fake_setup, .fini = fake_teardown)
{
    cfg.admin_enabled = true;
    struct response r = handle(METHOD_GET, "/metrics", NULL, LISTENER_MAIN);
    assert_json_error(&r, 404);
    r = handle(METHOD_GET, "/users/abc", NULL, LISTENER_ADMIN);
    assert_json_error(&r, 404);
    r = handle(METHOD_GET, "/user", NULL, LISTENER_ADMIN);
    assert_json_error(&r, 404);
    r = handle(METHOD_GET, "/healthz", NULL, LISTENER_ADMIN);
    cr_assert_eq(r.status, 200);
    r = handle(METHOD_GET, "/readyz", NULL, LISTENER_ADMIN);
    cr_assert_eq(r.status, 200);
    r = handle(METHOD_GET, "/livez", NULL, LISTENER_ADMIN);
    cr_assert_eq(r.status, 200);
}

/* The prefetch hint names the user GET /users/{id} will look up, and 0 for anything it cannot be sure of. */
Test(router_user_hint, names_the_user_of_users_paths_only)
{
    cr_assert_eq(router_user_hint("/users/42", 9), 42);
    cr_assert_eq(router_user_hint("/users/42 HTTP/1.1\r\n", 20), 42);
    cr_assert_eq(router_user_hint("/users/7?x=1", 12), 7);
    cr_assert_eq(router_user_hint("/users/0042", 11), 42);
    cr_assert_eq(router_user_hint("/users/9999999999999999999", 26), 9999999999999999999ULL);
    cr_assert_eq(router_user_hint("/users/", 7), 0);
    cr_assert_eq(router_user_hint("/users/x1", 9), 0);
    cr_assert_eq(router_user_hint("/user", 5), 0);
    cr_assert_eq(router_user_hint("/metrics", 8), 0);
    cr_assert_eq(router_user_hint("/usersX42", 9), 0);
    /* Only the bytes given count. */
    cr_assert_eq(router_user_hint("/users/123", 8), 1);
}
