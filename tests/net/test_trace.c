/* test_trace.c - request-id and traceparent checks, and the per-shard id generator. */
#include <criterion/criterion.h>
#include <string.h>

#include "net/trace.h"

#define OK(s) trace_request_id_ok((s), strlen(s))
#define TP(s) trace_parent_ok((s), strlen(s))

Test(trace, request_ids_kept_or_not)
{
    cr_assert(OK("a"));
    cr_assert(OK("abc-DEF_0.9"));
    char max[TRACE_ID_MAX + 2];
    memset(max, 'x', sizeof(max));
    max[TRACE_ID_MAX] = '\0';
    cr_assert(OK(max));
    max[TRACE_ID_MAX] = 'x';
    max[TRACE_ID_MAX + 1] = '\0';
    cr_assert_not(OK(max), "65 octets are too long");
    cr_assert_not(OK(""));
    const char *bad[] = {"a b", "a/b", "a\"b", "a\\b", "é", "a:b", "a,b", "{x}", "a\tb"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(OK(bad[i]), "%s", bad[i]);
    for (int c = 0; c < 256; c++) {
        char v[1] = {(char)c};
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        cr_assert_eq(trace_request_id_ok(v, 1), want, "octet %d", c);
    }
}

Test(trace, traceparent)
{
    cr_assert(TP("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    cr_assert(TP("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
    cr_assert(TP("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"), "a later version may be longer");
    cr_assert_not(TP("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"), "version 00 is exactly 55");
    cr_assert_not(TP("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"));
    cr_assert_not(TP("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), "version ff");
    cr_assert_not(TP("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), "zero trace-id");
    cr_assert_not(TP("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"), "zero parent-id");
    cr_assert_not(TP("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), "upper case");
    cr_assert_not(TP("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0"), "short");
    cr_assert_not(TP("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    cr_assert_not(TP("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"));
    cr_assert_not(TP("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    cr_assert_not(TP(""));
}

Test(trace, generated_ids_count_and_name_the_shard)
{
    struct trace_idgen g, h;
    trace_idgen_init(&g, UINT64_C(0x0123456789abcdef), 5);
    trace_idgen_init(&h, UINT64_C(0x0123456789abcdef), 6);
    char a[TRACE_GEN_LEN + 1] = {0};
    memcpy(a, trace_idgen_next(&g), TRACE_GEN_LEN);
    cr_assert_str_eq(a, "0123456789abcdef-05-000000000001");
    cr_assert(trace_request_id_ok(a, TRACE_GEN_LEN), "a generated id is a valid id");
    for (int i = 0; i < 8; i++)
        trace_idgen_next(&g);
    memcpy(a, trace_idgen_next(&g), TRACE_GEN_LEN);
    cr_assert_str_eq(a, "0123456789abcdef-05-00000000000a");
    for (int i = 0; i < 6; i++)
        trace_idgen_next(&g);
    memcpy(a, g.id, TRACE_GEN_LEN);
    cr_assert_str_eq(a, "0123456789abcdef-05-000000000010", "carry");
    memcpy(a, trace_idgen_next(&h), TRACE_GEN_LEN);
    cr_assert_str_eq(a, "0123456789abcdef-06-000000000001", "another shard, another id");
    /* 4096 in a row are all different and increasing as text. */
    char prev[TRACE_GEN_LEN + 1] = {0};
    memcpy(prev, g.id, TRACE_GEN_LEN);
    for (int i = 0; i < 4096; i++) {
        trace_idgen_next(&g);
        cr_assert(memcmp(g.id, prev, TRACE_GEN_LEN) > 0);
        memcpy(prev, g.id, TRACE_GEN_LEN);
    }
    memcpy(g.id + 20, "ffffffffffff", 12);
    memcpy(a, trace_idgen_next(&g), TRACE_GEN_LEN);
    cr_assert_str_eq(a, "0123456789abcdef-05-000000000000", "wraps within its 12 digits, prefix intact");
}
