/* test_record.c - store/record.c: what a user record may be, and the compact bytes ringd stores for it. */
#include "store/store.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Normalises s; on success checks the id and returns the output (caller frees), on failure NULL with err filled. */
static char *norm(const char *s, uint64_t *id, char *err, size_t errlen)
{
    char *out = NULL;
    size_t len = 0;
    err[0] = '\0';
    if (store_record_normalize(s, strlen(s), id, &out, &len, err, errlen) != 0) {
        cr_assert_null(out, "no output on failure");
        cr_assert_neq(err[0], '\0', "a failure says why");
        return NULL;
    }
    cr_assert_eq(strlen(out), len, "out_len is the string length");
    return out;
}

static void expect_ok(const char *in, uint64_t want_id, const char *want_out)
{
    char err[256];
    uint64_t id = 0;
    char *out = norm(in, &id, err, sizeof(err));
    cr_assert_not_null(out, "%s: %s", in, err);
    cr_assert_eq(id, want_id, "%s: id %llu", in, (unsigned long long)id);
    cr_assert_str_eq(out, want_out, "%s", in);
    free(out);
}

static void expect_fail(const char *in, const char *reason)
{
    char err[256];
    uint64_t id = 0;
    char *out = norm(in, &id, err, sizeof(err));
    cr_assert_null(out, "%s should be refused, got %s", in, out);
    cr_assert(strstr(err, reason) != NULL, "%s: reason '%s' lacks '%s'", in, err, reason);
}

Test(record, compacts_and_keeps_order)
{
    expect_ok("{\"id\":1}", 1, "{\"id\":1}");
    expect_ok("{ \"z\" : 1 ,\n\t\"id\" : 2 , \"a\" : [1, 2, {\"b\": null, \"c\": [[], {}]}] }\n", 2,
              "{\"z\":1,\"id\":2,\"a\":[1,2,{\"b\":null,\"c\":[[],{}]}]}");
    expect_ok("{\"id\":3,\"f\":1.5,\"t\":true,\"n\":null,\"neg\":-7}", 3, "{\"id\":3,\"f\":1.5,\"t\":true,\"n\":null,\"neg\":-7}");
}

Test(record, not_json)
{
    expect_fail("{\"id\":1", "not JSON");
    expect_fail("", "not JSON");
    expect_fail("{\"id\":1} x", "not JSON");
    expect_fail("{'id':1}", "not JSON");
    expect_fail("{\"id\":1,\"s\":\"\xff\"}", "not JSON"); /* invalid UTF-8 */
    expect_fail("{\"id\":1,\"s\":\"a\\u0000b\"}", "not JSON");
}

Test(record, not_object)
{
    expect_fail("[1,2]", "not an object (an array)");
    expect_fail("5", "not an object (an integer)");
    expect_fail("\"x\"", "not an object (a string)");
    expect_fail("null", "not an object (null)");
}

Test(record, id_must_be_positive_integer)
{
    expect_fail("{\"name\":\"x\"}", "no id");
    expect_fail("{\"ID\":1}", "no id");
    expect_fail("{\"id\":0}", "positive integer, not 0");
    expect_fail("{\"id\":-5}", "positive integer, not -5");
    expect_fail("{\"id\":\"5\"}", "not a string");
    expect_fail("{\"id\":1.0}", "not a real number");
    expect_fail("{\"id\":1e3}", "not a real number");
    expect_fail("{\"id\":null}", "not null");
    expect_fail("{\"id\":true}", "not a boolean");
    expect_fail("{\"id\":[1]}", "not an array");
    expect_fail("{\"x\":{\"id\":1}}", "no id");
}

Test(record, duplicate_keys_refused)
{
    expect_fail("{\"id\":1,\"a\":1,\"a\":2}", "duplicate");
    expect_fail("{\"id\":1,\"id\":2}", "duplicate");
}

Test(record, ids_up_to_2_64_minus_1)
{
    expect_ok("{\"id\":9223372036854775807}", 9223372036854775807ull, "{\"id\":9223372036854775807}");
    expect_ok("{\"id\":9223372036854775808}", 9223372036854775808ull, "{\"id\":9223372036854775808}");
    expect_ok("{ \"a\" : \"x\" , \"id\" : 18446744073709551615 , \"b\" : [1] }", UINT64_MAX,
              "{\"a\":\"x\",\"id\":18446744073709551615,\"b\":[1]}");
    expect_ok("{\"n\":{\"k\":\"\xc3\xa9\"},\"id\":10000000000000000000}", 10000000000000000000ull,
              "{\"n\":{\"k\":\"\xc3\xa9\"},\"id\":10000000000000000000}");
}

Test(record, huge_numbers_refused)
{
    expect_fail("{\"id\":18446744073709551616}", "out of range");
    expect_fail("{\"id\":99999999999999999999999}", "out of range");
    expect_fail("{\"id\":-9223372036854775809}", "out of range");
    /* a big number that is not the top-level id */
    expect_fail("{\"id\":1,\"x\":18446744073709551615}", "out of range");
    expect_fail("{\"id\":0,\"x\":18446744073709551615}", "out of range");
    expect_fail("{\"id\":1,\"n\":{\"id\":18446744073709551615}}", "out of range");
    expect_fail("{\"id\":18446744073709551615,\"x\":18446744073709551615}", "out of range");
    expect_fail("[18446744073709551615]", "not an object");
    /* the big-id path still validates everything else */
    expect_fail("{\"id\":18446744073709551615,\"id\":2}", "duplicate");
    expect_fail("{\"id\":18446744073709551615,", "not JSON");
}

/* Escapes and non-ASCII survive in meaning: the stored bytes parse to the same
 * value as the input, and non-ASCII stays UTF-8 rather than \u escapes. */
Test(record, unicode_and_escapes_preserved)
{
    const char *in = "{\"id\":7,\"name\":\"Zo\xc3\xab \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x8e\x89\","
                     "\"esc\":\"q\\\"b\\\\s\\/n\\nt\\tu\\u00e9\\ud83c\\udf89\\u001f\",\"arr\":[[1,[2,[3]]],{\"k\":[]}]}";
    char err[256];
    uint64_t id;
    char *out = norm(in, &id, err, sizeof(err));
    cr_assert_not_null(out, "%s", err);
    cr_assert_eq(id, 7);
    json_t *a = json_loads(in, 0, NULL), *b = json_loads(out, 0, NULL);
    cr_assert_not_null(a);
    cr_assert_not_null(b, "stored bytes are JSON: %s", out);
    cr_assert(json_equal(a, b), "same meaning: %s", out);
    cr_assert(strstr(out, "Zo\xc3\xab \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x8e\x89") != NULL, "UTF-8 kept raw: %s", out);
    cr_assert(strstr(out, "u\xc3\xa9\xf0\x9f\x8e\x89\\u001F") != NULL || strstr(out, "u\xc3\xa9\xf0\x9f\x8e\x89\\u001f") != NULL,
              "escapes decoded to UTF-8, control chars stay escaped: %s", out);
    json_decref(a);
    json_decref(b);
    free(out);
}

Test(record, long_record)
{
    size_t n = 1 << 20;
    char *in = malloc(n + 32);
    int k = sprintf(in, "{\"id\":9,\"s\":\"");
    memset(in + k, 'a', n);
    strcpy(in + k + n, "\"}");
    char err[256];
    uint64_t id;
    char *out = norm(in, &id, err, sizeof(err));
    cr_assert_not_null(out, "%s", err);
    cr_assert_str_eq(out, in);
    free(out);
    free(in);
}

Test(record, keyed_by_another_member)
{
    char *out = NULL;
    size_t len;
    uint64_t id = 0;
    char err[256];
    const char *in = "{\"user_id\": 12, \"id\": \"not the key\"}";
    cr_assert_eq(store_record_normalize_keyed(in, strlen(in), "user_id", &id, &out, &len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(id, 12);
    cr_assert_str_eq(out, "{\"user_id\":12,\"id\":\"not the key\"}");
    free(out);
    const char *bad = "{\"user_id\": -1}";
    cr_assert_eq(store_record_normalize_keyed(bad, strlen(bad), "user_id", &id, &out, &len, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "user_id must be a positive integer, not -1");
    const char *big = "{\"user_id\": 18446744073709551615}";
    cr_assert_eq(store_record_normalize_keyed(big, strlen(big), "user_id", &id, &out, &len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(id, UINT64_MAX);
    free(out);
}
