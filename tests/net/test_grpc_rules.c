/* test_grpc_rules.c - net/grpc.c's pure rules: content-types, method paths, grpc-timeout values. */
#include "net/grpc.h"

#include <criterion/criterion.h>
#include <string.h>

static enum grpc_ctype ct(const char *v)
{
    return grpc_content_type(v, strlen(v));
}

Test(grpc_rules, content_types)
{
    cr_assert_eq(ct("application/grpc"), GRPC_CT_PROTO);
    cr_assert_eq(ct("application/grpc+proto"), GRPC_CT_PROTO);
    cr_assert_eq(ct("Application/GRPC+Proto"), GRPC_CT_PROTO, "media types are case-insensitive");
    cr_assert_eq(ct("application/grpc;charset=utf-8"), GRPC_CT_PROTO);
    cr_assert_eq(ct("application/grpc+proto; q=1"), GRPC_CT_PROTO);
    cr_assert_eq(ct("application/grpc+json"), GRPC_CT_OTHER_CODEC);
    cr_assert_eq(ct("application/grpc+"), GRPC_CT_OTHER_CODEC);
    cr_assert_eq(ct("application/grpcx"), GRPC_CT_NONE);
    cr_assert_eq(ct("application/grpc-web"), GRPC_CT_NONE);
    cr_assert_eq(ct("application/json"), GRPC_CT_NONE);
    cr_assert_eq(ct("application/grp"), GRPC_CT_NONE);
    cr_assert_eq(ct(""), GRPC_CT_NONE);
}

static enum metrics_route method(const char *path, bool *service)
{
    return grpc_method_of(path, strlen(path), service);
}

Test(grpc_rules, methods)
{
    bool svc;
    cr_assert_eq(method("/ringd.v1.Users/GetUser", &svc), ROUTE_GRPC_GET_USER);
    cr_assert(svc);
    cr_assert_eq(method("/ringd.v1.Users/BatchGetUsers", &svc), ROUTE_GRPC_BATCH_GET_USERS);
    cr_assert_eq(method("/grpc.health.v1.Health/Check", &svc), ROUTE_GRPC_HEALTH_CHECK);
    cr_assert(svc);
    cr_assert_eq(method("/grpc.health.v1.Health/Watch", &svc), ROUTE_GRPC_OTHER);
    cr_assert(svc, "under a served service");
    cr_assert_eq(method("/ringd.v1.Users/GetUserX", &svc), ROUTE_GRPC_OTHER);
    cr_assert_eq(method("/ringd.v1.Users/getuser", &svc), ROUTE_GRPC_OTHER, "method names are case-sensitive");
    cr_assert_eq(method("/ringd.v1.Users/", &svc), ROUTE_GRPC_OTHER);
    cr_assert_not(svc, "the service itself names no method");
    cr_assert_eq(method("/users/1", &svc), ROUTE_GRPC_OTHER);
    cr_assert_not(svc);
}

static int timeout(const char *v, uint64_t *ms)
{
    return grpc_parse_timeout(v, strlen(v), ms);
}

Test(grpc_rules, timeouts)
{
    uint64_t ms = 0;
    cr_assert_eq(timeout("1H", &ms), 0);
    cr_assert_eq(ms, 3600000);
    cr_assert_eq(timeout("2M", &ms), 0);
    cr_assert_eq(ms, 120000);
    cr_assert_eq(timeout("30S", &ms), 0);
    cr_assert_eq(ms, 30000);
    cr_assert_eq(timeout("250m", &ms), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(timeout("1500u", &ms), 0);
    cr_assert_eq(ms, 2, "rounded up");
    cr_assert_eq(timeout("1n", &ms), 0);
    cr_assert_eq(ms, 1);
    cr_assert_eq(timeout("0m", &ms), 0);
    cr_assert_eq(ms, 0);
    cr_assert_eq(timeout("99999999S", &ms), 0, "8 digits");
    const char *bad[] = {"", "S", "10", "123456789S", "1s", "1x", "-1S", "1 S", "1.5S", "m1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(timeout(bad[i], &ms), -1, "'%s' is malformed", bad[i]);
}
