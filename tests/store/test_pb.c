/* test_pb.c - store/pb.c and the stored value: varints, skipping unknown fields, a record's ringd.v1.User bytes. */
#include "store/pb.h"
#include "store/store.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The User encoding of json (asserts it succeeds); *len gets its length. Caller frees. */
static uint8_t *user_pb(uint64_t id, const char *json, size_t *len)
{
    struct buf b = {0};
    char err[256] = "";
    cr_assert_eq(store_pb_user(id, json, strlen(json), &b, err, sizeof(err)), 0, "%s: %s", json, err);
    *len = b.len;
    return (uint8_t *)b.data;
}

static bool contains(const uint8_t *p, size_t n, const void *needle, size_t m)
{
    return memmem(p, n, needle, m) != NULL;
}

Test(pb, varints)
{
    const uint64_t vals[] = {0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX, UINT64_MAX};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        uint8_t b[PB_VARINT_MAX];
        size_t n = pb_put_varint(b, vals[i]);
        cr_assert_eq(n, pb_varint_len(vals[i]));
        uint64_t v = 0;
        cr_assert_eq(pb_get_varint(b, b + n, &v), n);
        cr_assert_eq(v, vals[i]);
        cr_assert_eq(pb_get_varint(b, b + n - 1, &v), 0, "a truncated varint is malformed");
    }
    uint8_t b300[] = {0xac, 0x02};
    uint64_t v;
    cr_assert_eq(pb_get_varint(b300, b300 + 2, &v), 2);
    cr_assert_eq(v, 300);
    uint8_t eleven[11];
    memset(eleven, 0x80, sizeof(eleven));
    eleven[10] = 0;
    cr_assert_eq(pb_get_varint(eleven, eleven + 11, &v), 0, "more than 10 octets");
}

Test(pb, skip)
{
    uint8_t len_field[] = {0x03, 'a', 'b', 'c'};
    cr_assert_eq(pb_skip(len_field, len_field + 4, PB_LEN), 4);
    cr_assert_eq(pb_skip(len_field, len_field + 3, PB_LEN), 0, "length beyond the message");
    uint8_t fixed[8] = {0};
    cr_assert_eq(pb_skip(fixed, fixed + 8, PB_I64), 8);
    cr_assert_eq(pb_skip(fixed, fixed + 7, PB_I64), 0);
    cr_assert_eq(pb_skip(fixed, fixed + 4, PB_I32), 4);
    cr_assert_eq(pb_skip(fixed, fixed + 1, PB_VARINT), 1);
    cr_assert_eq(pb_skip(fixed, fixed + 8, 3), 0, "groups are not proto3");
    cr_assert_eq(pb_skip(fixed, fixed + 8, 7), 0);
}

/* Every octet, worked out by hand from struct.proto. */
Test(pb, user_bytes_by_hand)
{
    size_t n;
    uint8_t *p = user_pb(7, "{\"id\":7,\"a\":\"x\"}", &n);
    static const uint8_t want[] = {
        0x08, 0x07,                                 /* id = 7 */
        0x12, 0x1b,                                 /* record: Struct, 27 octets */
        0x0a, 0x0f,                                 /*   fields entry, 15 */
        0x0a, 0x02, 'i',  'd',                      /*     key "id" */
        0x12, 0x09, 0x11,                           /*     value: number_value */
        0,    0,    0,    0,    0,   0, 0x1c, 0x40, /* 7.0 */
        0x0a, 0x08,                                 /*   fields entry, 8 */
        0x0a, 0x01, 'a',                            /*     key "a" */
        0x12, 0x03, 0x1a, 0x01, 'x',                /* value: string_value "x" */
    };
    cr_assert_eq(n, sizeof(want));
    cr_assert(memcmp(p, want, n) == 0);
    free(p);
}

Test(pb, every_kind_of_value)
{
    size_t n;
    uint8_t *p = user_pb(1, "{\"id\":1,\"n\":null,\"t\":true,\"f\":false,\"l\":[],\"o\":{}}", &n);
    cr_assert(contains(p, n, "\x0a\x01n\x12\x02\x08\x00", 7), "null_value 0");
    cr_assert(contains(p, n, "\x0a\x01t\x12\x02\x20\x01", 7), "bool_value true");
    cr_assert(contains(p, n,
                       "\x0a\x01"
                       "f\x12\x02\x20\x00",
                       7),
              "bool_value false");
    cr_assert(contains(p, n, "\x0a\x01l\x12\x02\x32\x00", 7), "an empty list_value");
    cr_assert(contains(p, n, "\x0a\x01o\x12\x02\x2a\x00", 7), "an empty struct_value");
    free(p);

    p = user_pb(1, "{\"id\":1,\"l\":[1,\"a\",[true]]}", &n);
    /* ListValue values: Value{number 1}, Value{string "a"}, Value{list [true]} */
    cr_assert(contains(p, n, "\x0a\x09\x11\x00\x00\x00\x00\x00\x00\xf0\x3f", 11), "1.0 as a Value in the list");
    cr_assert(contains(p, n,
                       "\x0a\x03\x1a\x01"
                       "a",
                       5),
              "\"a\" as a Value in the list");
    cr_assert(contains(p, n, "\x0a\x06\x32\x04\x0a\x02\x20\x01", 8), "[true] nested");
    free(p);
}

Test(pb, strings_are_unescaped_utf8)
{
    size_t n;
    /* what jansson writes stays as it is; escapes become the characters, surrogate pairs one code point */
    uint8_t *p = user_pb(1, "{\"id\":1,\"s\":\"\xc3\xa9\\u00e9\\\"\\n\\/\\ud83d\\ude00\"}", &n);
    cr_assert(contains(p, n, "\x1a\x0b\xc3\xa9\xc3\xa9\"\n/\xf0\x9f\x98\x80", 13));
    free(p);
    p = user_pb(1, "{\"id\":1,\"\\u65e5\":\"\"}", &n);
    cr_assert(contains(p, n, "\x0a\x03\xe6\x97\xa5\x12\x02\x1a\x00", 9), "escaped key, empty value");
    free(p);
}

Test(pb, numbers_are_doubles)
{
    size_t n;
    uint8_t *p = user_pb(18446744073709551615ull, "{\"id\":18446744073709551615,\"x\":-2.5e-3}", &n);
    cr_assert(contains(p, n, "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11), "the User id is exact");
    double d = -2.5e-3;
    uint8_t le[9] = {0x11};
    memcpy(le + 1, &d, 8); /* little-endian host */
    cr_assert(contains(p, n, le, 9));
    d = 18446744073709551615.0;
    memcpy(le + 1, &d, 8);
    cr_assert(contains(p, n, le, 9), "the record's id member is a double, as Struct has it");
    free(p);
}

Test(pb, long_content_moves_behind_its_length)
{
    /* a string of 300 octets: a two-octet length, and everything after it in place */
    char json[400];
    char s[301];
    memset(s, 'z', 300);
    s[300] = '\0';
    snprintf(json, sizeof(json), "{\"id\":2,\"s\":\"%s\",\"k\":1}", s);
    size_t n;
    uint8_t *p = user_pb(2, json, &n);
    cr_assert(contains(p, n, "\x1a\xac\x02zzz", 6));
    cr_assert(contains(p, n, "\x0a\x01k\x12\x09\x11", 6), "the next member follows intact");
    free(p);
}

Test(pb, refuses_what_is_not_an_object)
{
    const char *bad[] = {"[1]", "{\"id\":1", "{\"id\":1,}", "{\"id\":\"\\ud800\"}", "{\"a\":tru}", "{} x", "{\"a\":\"\\q\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf b = {0};
        char err[256] = "";
        cr_assert_eq(store_pb_user(1, bad[i], strlen(bad[i]), &b, err, sizeof(err)), -1, "%s", bad[i]);
        cr_assert_eq(b.len, 0, "nothing left behind");
        cr_assert_neq(err[0], '\0');
        buf_free(&b);
    }
}

Test(pb, stored_value_splits_into_both_forms)
{
    const char *json = "{\"id\":5,\"name\":\"Z\"}";
    struct buf v = {0};
    char err[256];
    cr_assert_eq(store_value_build(5, json, strlen(json), &v, err, sizeof(err)), 0, "%s", err);
    struct store_user u;
    cr_assert_eq(store_value_split(v.data, v.len, &u), 0);
    cr_assert_eq(u.json_len, strlen(json));
    cr_assert(memcmp(u.json, json, u.json_len) == 0);
    size_t n;
    uint8_t *p = user_pb(5, json, &n);
    cr_assert_eq(u.pb_len, n);
    cr_assert(memcmp(u.pb, p, n) == 0);
    free(p);
    /* a value that cannot be one: too short, or a JSON length beyond its end */
    cr_assert_eq(store_value_split(v.data, 3, &u), MDB_CORRUPTED);
    cr_assert_eq(store_value_split("{\"id\":1}", 8, &u), MDB_CORRUPTED, "a v1 value is never misread as v2");
    buf_free(&v);
}
