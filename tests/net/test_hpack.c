/* test_hpack.c - net/hpack.c: RFC 7541 Appendix C, Huffman edge cases, table management and errors, and what nghttp2 encodes. */
#include <criterion/criterion.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/hpack.h"

/* ---------- helpers ---------- */

/* Hex with spaces and newlines ("8286 8441") into out; returns the length. */
static size_t dehex(const char *hex, uint8_t *out)
{
    size_t n = 0;
    int hi = -1;
    for (const char *p = hex; *p != '\0'; p++) {
        int v;
        if (*p >= '0' && *p <= '9')
            v = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            v = *p - 'a' + 10;
        else
            continue;
        if (hi < 0) {
            hi = v;
        } else {
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    cr_assert_eq(hi, -1, "odd number of hex digits");
    return n;
}

struct pair {
    const char *name, *value;
};

/* Decodes the whole block and checks its fields against want (NULL-terminated). */
static void expect_block(struct hpack_decoder *d, const uint8_t *block, size_t len, const struct pair *want)
{
    struct hpack_cursor cur;
    hpack_cursor_init(&cur, block, len);
    struct hpack_field f;
    size_t i = 0;
    int rv;
    while ((rv = hpack_decode(d, &cur, &f)) > 0) {
        cr_assert_not_null(want[i].name, "field %zu is one too many: %.*s", i, (int)f.name_len, f.name);
        cr_assert_eq(f.name_len, strlen(want[i].name), "field %zu name %.*s", i, (int)f.name_len, f.name);
        cr_assert_eq(memcmp(f.name, want[i].name, f.name_len), 0, "field %zu name %.*s", i, (int)f.name_len, f.name);
        cr_assert_eq(f.value_len, strlen(want[i].value), "field %zu value %.*s", i, (int)f.value_len, f.value);
        cr_assert_eq(memcmp(f.value, want[i].value, f.value_len), 0, "field %zu value %.*s", i, (int)f.value_len, f.value);
        i++;
    }
    cr_assert_eq(rv, 0, "block decodes without error");
    cr_assert_null(want[i].name, "missing field %zu (%s)", i, want[i].name);
}

/* Checks the dynamic table: entries newest first, and its size. */
static void expect_table(const struct hpack_decoder *d, const struct pair *want, size_t size)
{
    unsigned n = 0;
    while (want[n].name != NULL)
        n++;
    cr_assert_eq(hpack_table_count(d), n, "entries: %u, want %u", hpack_table_count(d), n);
    for (unsigned i = 0; i < n; i++) {
        struct hpack_field f;
        cr_assert(hpack_table_entry(d, i, &f));
        cr_assert(f.name_len == strlen(want[i].name) && memcmp(f.name, want[i].name, f.name_len) == 0, "entry %u name %.*s", i,
                  (int)f.name_len, f.name);
        cr_assert(f.value_len == strlen(want[i].value) && memcmp(f.value, want[i].value, f.value_len) == 0, "entry %u value %.*s",
                  i, (int)f.value_len, f.value);
    }
    cr_assert_eq(hpack_table_size(d), size, "table size %zu, want %zu", hpack_table_size(d), size);
}

static void expect_hex(struct hpack_decoder *d, const char *hex, const struct pair *fields, const struct pair *table, size_t size)
{
    uint8_t block[512];
    size_t len = dehex(hex, block);
    expect_block(d, block, len, fields);
    expect_table(d, table, size);
}

/* Decodes the block; returns the decoder's verdict for the whole block (0 or -1). */
static int decode_all(struct hpack_decoder *d, const uint8_t *block, size_t len)
{
    struct hpack_cursor cur;
    hpack_cursor_init(&cur, block, len);
    struct hpack_field f;
    int rv;
    while ((rv = hpack_decode(d, &cur, &f)) > 0)
        ;
    return rv;
}

static int decode_hex(const char *hex)
{
    uint8_t block[512];
    size_t len = dehex(hex, block);
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    int rv = decode_all(&d, block, len);
    hpack_decoder_free(&d);
    return rv;
}

static const struct pair none[] = {{NULL, NULL}};

/* ---------- RFC 7541 C.2: single representations ---------- */

Test(hpack, c2_literals_and_indexed)
{
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    expect_hex(&d, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
               (struct pair[]){{"custom-key", "custom-header"}, {NULL, NULL}},
               (struct pair[]){{"custom-key", "custom-header"}, {NULL, NULL}}, 55);
    hpack_decoder_free(&d);

    hpack_decoder_init(&d);
    expect_hex(&d, "040c 2f73 616d 706c 652f 7061 7468", (struct pair[]){{":path", "/sample/path"}, {NULL, NULL}}, none, 0);
    expect_hex(&d, "1008 7061 7373 776f 7264 0673 6563 7265 74", (struct pair[]){{"password", "secret"}, {NULL, NULL}}, none, 0);
    expect_hex(&d, "82", (struct pair[]){{":method", "GET"}, {NULL, NULL}}, none, 0);
    hpack_decoder_free(&d);
}

/* ---------- C.3 / C.4: requests on one connection, plain and Huffman ---------- */

static const struct pair req1[] = {
    {":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "www.example.com"}, {NULL, NULL}};
static const struct pair req2[] = {
    {":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "www.example.com"}, {"cache-control", "no-cache"},
    {NULL, NULL}};
static const struct pair req3[] = {{":method", "GET"},
                                   {":scheme", "https"},
                                   {":path", "/index.html"},
                                   {":authority", "www.example.com"},
                                   {"custom-key", "custom-value"},
                                   {NULL, NULL}};
static const struct pair req_t1[] = {{":authority", "www.example.com"}, {NULL, NULL}};
static const struct pair req_t2[] = {{"cache-control", "no-cache"}, {":authority", "www.example.com"}, {NULL, NULL}};
static const struct pair req_t3[] = {
    {"custom-key", "custom-value"}, {"cache-control", "no-cache"}, {":authority", "www.example.com"}, {NULL, NULL}};

Test(hpack, c3_requests_without_huffman)
{
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    expect_hex(&d, "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", req1, req_t1, 57);
    expect_hex(&d, "8286 84be 5808 6e6f 2d63 6163 6865", req2, req_t2, 110);
    expect_hex(&d, "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65", req3, req_t3, 164);
    hpack_decoder_free(&d);
}

Test(hpack, c4_requests_with_huffman)
{
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    expect_hex(&d, "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", req1, req_t1, 57);
    expect_hex(&d, "8286 84be 5886 a8eb 1064 9cbf", req2, req_t2, 110);
    expect_hex(&d, "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf", req3, req_t3, 164);
    hpack_decoder_free(&d);
}

/* ---------- C.5 / C.6: responses with a 256-octet table (evictions) ---------- */

#define DATE1 "Mon, 21 Oct 2013 20:13:21 GMT"
#define DATE2 "Mon, 21 Oct 2013 20:13:22 GMT"
#define COOKIE "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"

static const struct pair resp1[] = {
    {":status", "302"}, {"cache-control", "private"}, {"date", DATE1}, {"location", "https://www.example.com"}, {NULL, NULL}};
static const struct pair resp_t1[] = {
    {"location", "https://www.example.com"}, {"date", DATE1}, {"cache-control", "private"}, {":status", "302"}, {NULL, NULL}};
static const struct pair resp2[] = {
    {":status", "307"}, {"cache-control", "private"}, {"date", DATE1}, {"location", "https://www.example.com"}, {NULL, NULL}};
static const struct pair resp_t2[] = {
    {":status", "307"}, {"location", "https://www.example.com"}, {"date", DATE1}, {"cache-control", "private"}, {NULL, NULL}};
static const struct pair resp3[] = {
    {":status", "200"},           {"cache-control", "private"}, {"date", DATE2}, {"location", "https://www.example.com"},
    {"content-encoding", "gzip"}, {"set-cookie", COOKIE},       {NULL, NULL}};
static const struct pair resp_t3[] = {{"set-cookie", COOKIE}, {"content-encoding", "gzip"}, {"date", DATE2}, {NULL, NULL}};

/* The examples assume SETTINGS_HEADER_TABLE_SIZE 256: an encoder signals that
 * with a size update (3fe1 01 = 256) at the start of its first block. */
#define SIZE_256 "3fe1 01 "

Test(hpack, c5_responses_without_huffman)
{
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    expect_hex(&d,
               SIZE_256 "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 "
                        "3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
               resp1, resp_t1, 222);
    expect_hex(&d, "4803 3330 37c1 c0bf", resp2, resp_t2, 222);
    expect_hex(&d,
               "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f "
               "6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b "
               "2076 6572 7369 6f6e 3d31",
               resp3, resp_t3, 215);
    hpack_decoder_free(&d);
}

Test(hpack, c6_responses_with_huffman)
{
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    expect_hex(&d,
               SIZE_256 "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad "
                        "1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
               resp1, resp_t1, 222);
    expect_hex(&d, "4883 640e ffc1 c0bf", resp2, resp_t2, 222);
    expect_hex(&d,
               "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 "
               "dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
               resp3, resp_t3, 215);
    hpack_decoder_free(&d);
}

/* ---------- Huffman ---------- */

static ssize_t huff(const char *hex, char *out)
{
    uint8_t in[256];
    size_t len = dehex(hex, in);
    return hpack_huffman_decode(in, len, out);
}

Test(hpack, huffman_vectors_and_edges)
{
    char out[512];
    ssize_t n = huff("f1e3 c2e5 f23a 6ba0 ab90 f4ff", out);
    cr_assert_eq(n, 15);
    cr_assert_eq(memcmp(out, "www.example.com", 15), 0);
    n = huff("a8eb 1064 9cbf", out);
    cr_assert(n == 8 && memcmp(out, "no-cache", 8) == 0);
    cr_assert_eq(huff("", out), 0, "an empty string is valid");
    /* '0' is 00000 (5 bits): 0x07 = 00000 111, padded with three 1s. */
    n = huff("07", out);
    cr_assert(n == 1 && out[0] == '0', "%zd", n);
    cr_assert_eq(huff("07ff", out), -1, "padding longer than 7 bits (a whole 0xff octet)");
    cr_assert_eq(huff("00", out), -1, "padding of zeros: '0' then 000");
    cr_assert_eq(huff("ff", out), -1, "8 ones: more than 7 bits of padding");
    cr_assert_eq(huff("fe", out), -1, "padding that is not all ones");
    /* EOS is 30 ones: 0xffffffff holds it (then 2 more ones). */
    cr_assert_eq(huff("ffff ffff", out), -1, "EOS in the string");
    cr_assert_eq(huff("07ff ffff ff", out), -1, "a symbol, then EOS");
    /* 0x3fffffff << 2 | 0b11 is EOS plus padding; EOS alone in 30 bits + "11" padding. */
    cr_assert_eq(huff("ffff fffc", out), -1, "EOS followed by zero bits");
    /* The longest valid codes: byte 0x0a is 30 bits (3ffffffc): 111111111111111111111111111100 + 11 padding. */
    n = huff("ffff fff3", out);
    cr_assert(n == 1 && out[0] == '\n', "%zd", n);
}

/* Every octet value, and random strings, survive nghttp2's encoder and our decoder. */
Test(hpack, huffman_matches_nghttp2_encoder)
{
    nghttp2_hd_deflater *def;
    cr_assert_eq(nghttp2_hd_deflate_new(&def, 0), 0); /* no table: every field is a literal */
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    srand(7);
    for (int round = 0; round < 2000; round++) {
        char value[300];
        size_t len;
        if (round < 256) {
            /* octet 'round' among enough 'e's (5 bits) that Huffman is shorter even for 30-bit codes */
            len = 160;
            for (size_t i = 0; i < len; i++)
                value[i] = (char)(i % 16 == 0 ? round : 'e');
        } else {
            len = (size_t)(rand() % 200);
            for (size_t i = 0; i < len; i++)
                value[i] = (char)(rand() % 3 == 0 ? rand() % 256 : 'a' + rand() % 26);
        }
        nghttp2_nv nv = {(uint8_t *)"x-v", (uint8_t *)value, 3, len, NGHTTP2_NV_FLAG_NONE};
        uint8_t block[1024];
        ssize_t blen = nghttp2_hd_deflate_hd(def, block, sizeof(block), &nv, 1);
        cr_assert_gt(blen, 0);
        if (round < 256)
            cr_assert_lt(blen, 150, "round %d: nghttp2 chose Huffman", round);
        struct hpack_cursor cur;
        hpack_cursor_init(&cur, block, (size_t)blen);
        struct hpack_field f;
        cr_assert_eq(hpack_decode(&d, &cur, &f), 1, "round %d", round);
        cr_assert_eq(f.value_len, len, "round %d", round);
        cr_assert_eq(memcmp(f.value, value, len), 0, "round %d", round);
        cr_assert_eq(hpack_decode(&d, &cur, &f), 0);
    }
    hpack_decoder_free(&d);
    nghttp2_hd_deflate_del(def);
}

/* ---------- the dynamic table ---------- */

/* A thousand header lists from nghttp2's encoder, with its 4096-octet table
 * evicting all along: every field decodes to what was encoded. */
Test(hpack, follows_nghttp2_table_through_evictions)
{
    nghttp2_hd_deflater *def;
    cr_assert_eq(nghttp2_hd_deflate_new(&def, HPACK_TABLE_SIZE), 0);
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    srand(11);
    for (int round = 0; round < 1000; round++) {
        char path[64], ua[64], cookie[300];
        snprintf(path, sizeof(path), "/users/%d", rand() % 100000);
        snprintf(ua, sizeof(ua), "agent-%d", rand() % 7);
        size_t clen = (size_t)(rand() % 290);
        for (size_t i = 0; i < clen; i++)
            cookie[i] = (char)('a' + rand() % 26);
        cookie[clen] = '\0';
        const char *nv[][2] = {{":method", "GET"}, {":scheme", "http"}, {":authority", "127.0.0.1:8080"},
                               {":path", path},    {"user-agent", ua},  {"cookie", cookie}};
        nghttp2_nv nva[6];
        for (int i = 0; i < 6; i++)
            nva[i] =
                (nghttp2_nv){(uint8_t *)nv[i][0], (uint8_t *)nv[i][1], strlen(nv[i][0]), strlen(nv[i][1]), NGHTTP2_NV_FLAG_NONE};
        uint8_t block[2048];
        ssize_t blen = nghttp2_hd_deflate_hd(def, block, sizeof(block), nva, 6);
        cr_assert_gt(blen, 0);
        struct pair want[7];
        for (int i = 0; i < 6; i++)
            want[i] = (struct pair){nv[i][0], nv[i][1]};
        want[6] = (struct pair){NULL, NULL};
        expect_block(&d, block, (size_t)blen, want);
        cr_assert_leq(hpack_table_size(&d), HPACK_TABLE_SIZE);
    }
    hpack_decoder_free(&d);
    nghttp2_hd_deflate_del(def);
}

Test(hpack, entry_larger_than_table_empties_it)
{
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    expect_hex(&d, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
               (struct pair[]){{"custom-key", "custom-header"}, {NULL, NULL}},
               (struct pair[]){{"custom-key", "custom-header"}, {NULL, NULL}}, 55);
    /* A literal with indexing, name "x", value of 4070 octets: 1 + 4070 + 32 > 4096. */
    static uint8_t block[5000];
    size_t n = 0;
    block[n++] = 0x40;
    block[n++] = 0x01;
    block[n++] = 'x';
    n += hpack_encode_int(block + n, 0, 7, 4070);
    memset(block + n, 'v', 4070);
    n += 4070;
    struct hpack_cursor cur;
    hpack_cursor_init(&cur, block, n);
    struct hpack_field f;
    cr_assert_eq(hpack_decode(&d, &cur, &f), 1);
    cr_assert_eq(f.value_len, 4070, "the field itself is still returned");
    cr_assert_eq(hpack_decode(&d, &cur, &f), 0);
    expect_table(&d, none, 0);
    hpack_decoder_free(&d);
}

/* RFC 7541 4.4: a new entry may name an entry its own insertion evicts. */
Test(hpack, insertion_keeps_a_name_its_eviction_removes)
{
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    /* Size update to 100, then custom-key: custom-header (55). */
    expect_hex(&d, "3f45 400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
               (struct pair[]){{"custom-key", "custom-header"}, {NULL, NULL}},
               (struct pair[]){{"custom-key", "custom-header"}, {NULL, NULL}}, 55);
    /* Literal with indexing, name index 62 (that entry), value "0123456789" (10 + 10 + 32 = 52: 55 + 52 > 100). */
    expect_hex(&d, "7e0a 3031 3233 3435 3637 3839", (struct pair[]){{"custom-key", "0123456789"}, {NULL, NULL}},
               (struct pair[]){{"custom-key", "0123456789"}, {NULL, NULL}}, 52);
    hpack_decoder_free(&d);
}

Test(hpack, size_updates)
{
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    expect_hex(&d, "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", req1, req_t1, 57);
    /* Two updates at the start of a block: 0 (empties the table), then 4096 back. */
    expect_hex(&d, "20 3fe1 1f 82", (struct pair[]){{":method", "GET"}, {NULL, NULL}}, none, 0);
    hpack_decoder_free(&d);
    cr_assert_eq(decode_hex("3fe2 1f"), -1, "4097 is above SETTINGS_HEADER_TABLE_SIZE");
    cr_assert_eq(decode_hex("82 20"), -1, "an update after a field");
    cr_assert_eq(decode_hex("3fe1 1f"), 0, "4096 is allowed");
}

/* ---------- errors ---------- */

Test(hpack, malformed_blocks_are_errors)
{
    cr_assert_eq(decode_hex("80"), -1, "index 0");
    cr_assert_eq(decode_hex("be"), -1, "index 62 with an empty dynamic table");
    cr_assert_eq(decode_hex("ff"), -1, "an integer cut short");
    cr_assert_eq(decode_hex("ff80 8080 8080 00"), -1, "six continuation octets");
    cr_assert_eq(decode_hex("ff ffff ffff 0f"), -1, "an integer above 2^32-1");
    cr_assert_eq(decode_hex("4005 6162"), -1, "a name longer than the block");
    cr_assert_eq(decode_hex("4001 61"), -1, "a literal without its value");
    cr_assert_eq(decode_hex("4001 6181 ff"), -1, "a Huffman value with 8 bits of padding");
    cr_assert_eq(decode_hex("4001 6184 ffff ffff"), -1, "a Huffman value holding EOS");
    cr_assert_eq(decode_hex("0081 ff01 61"), -1, "a Huffman name of all padding");
    cr_assert_eq(decode_hex("ff 8080 8080 00"), -1, "an index with leading zero continuations that is still too big");
    cr_assert_eq(decode_hex(""), 0, "an empty block is valid");
}

/* ---------- names and values ---------- */

Test(hpack, name_tokens)
{
    struct {
        const char *name;
        uint8_t token;
    } cases[] = {
        {":path", HPACK_TOK_PATH},
        {":method", HPACK_TOK_METHOD},
        {":scheme", HPACK_TOK_SCHEME},
        {":authority", HPACK_TOK_AUTHORITY},
        {":status", HPACK_TOK_PSEUDO_OTHER},
        {":protocol", HPACK_TOK_PSEUDO_OTHER},
        {":foo", HPACK_TOK_PSEUDO_OTHER},
        {"user-id", HPACK_TOK_USER_ID},
        {"x-request-id", HPACK_TOK_REQUEST_ID},
        {"traceparent", HPACK_TOK_TRACEPARENT},
        {"x-request-ix", HPACK_TOK_OTHER},
        {"tracestate", HPACK_TOK_OTHER},
        {"content-length", HPACK_TOK_CONTENT_LENGTH},
        {"te", HPACK_TOK_TE},
        {"host", HPACK_TOK_HOST},
        {"connection", HPACK_TOK_CONNECTION_SPECIFIC},
        {"keep-alive", HPACK_TOK_CONNECTION_SPECIFIC},
        {"proxy-connection", HPACK_TOK_CONNECTION_SPECIFIC},
        {"transfer-encoding", HPACK_TOK_CONNECTION_SPECIFIC},
        {"upgrade", HPACK_TOK_CONNECTION_SPECIFIC},
        {"user-agent", HPACK_TOK_OTHER},
        {"x-a_b.c~!#$%&'*+^`|", HPACK_TOK_OTHER},
        {"User-Id", HPACK_TOK_INVALID},
        {"x y", HPACK_TOK_INVALID},
        {"x:y", HPACK_TOK_INVALID},
        {"", HPACK_TOK_INVALID},
        {"x\x01", HPACK_TOK_INVALID},
        {"\xc3\xa9", HPACK_TOK_INVALID},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_expect_eq(hpack_name_token(cases[i].name, strlen(cases[i].name)), cases[i].token, "%s", cases[i].name);
}

Test(hpack, value_checks)
{
    struct {
        const char *v;
        bool ok, visible;
    } cases[] = {
        {"", true, true},         {"abc", true, true},
        {"a b", true, false},     {" a", false, false},
        {"a ", false, false},     {"\ta", false, false},
        {"a\t", false, false},    {"a\tb", true, false},
        {"a\rb", false, false},   {"a\nb", false, false},
        {"a\x01z", true, false},  {"a\x7fz", true, false},
        {"\xc3\xa9", true, true}, {"/users/1?x=%20", true, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool ok, visible;
        hpack_check_value(cases[i].v, strlen(cases[i].v), &ok, &visible);
        cr_expect_eq(ok, cases[i].ok, "\"%s\" ok", cases[i].v);
        cr_expect_eq(visible, cases[i].visible, "\"%s\" visible", cases[i].v);
    }
    bool ok, visible;
    hpack_check_value("a\0b", 3, &ok, &visible);
    cr_expect(!ok && !visible, "NUL");
}

/* A decoded field's token and checks come from the table for indexed fields too. */
Test(hpack, indexed_fields_keep_their_classification)
{
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    /* literal with indexing, new name "User-Id" (invalid), value " 5" (leading space), then index 62 */
    uint8_t block[] = {0x40, 7, 'U', 's', 'e', 'r', '-', 'I', 'd', 2, ' ', '5', 0xbe};
    struct hpack_cursor cur;
    hpack_cursor_init(&cur, block, sizeof(block));
    struct hpack_field f;
    cr_assert_eq(hpack_decode(&d, &cur, &f), 1);
    cr_assert_eq(f.token, HPACK_TOK_INVALID);
    cr_assert(!f.value_ok);
    cr_assert_eq(hpack_decode(&d, &cur, &f), 1);
    cr_assert_eq(f.token, HPACK_TOK_INVALID, "from the dynamic table");
    cr_assert(!f.value_ok, "from the dynamic table");
    cr_assert_eq(hpack_decode(&d, &cur, &f), 0);
    hpack_decoder_free(&d);
}

Test(hpack, encode_int_roundtrip)
{
    uint32_t values[] = {0, 1, 30, 31, 126, 127, 128, 1337, 4096, 65535, 1u << 20, UINT32_MAX};
    for (unsigned n = 4; n <= 7; n++) {
        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
            /* as the index of an indexed name in a literal without indexing, then an empty value */
            uint8_t block[16];
            size_t len = hpack_encode_int(block, 0, n, values[i]);
            cr_assert_leq(len, 6);
            if (n == 5) /* RFC 7541 C.1.1-C.1.2 */
                cr_assert(values[i] != 1337 || (len == 3 && block[0] == 31 && block[1] == 0x9a && block[2] == 0x0a));
        }
    }
    uint8_t b[6];
    cr_assert_eq(hpack_encode_int(b, 0, 5, 10), 1);
    cr_assert_eq(b[0], 10, "C.1.1");
    cr_assert_eq(hpack_encode_int(b, 0, 8, 42), 1);
    cr_assert_eq(b[0], 42, "C.1.3");
}

/* ---------- the response encoder ---------- */

/* Decodes block with nghttp2's inflater (an independent implementation of the
 * peer's table) and checks the fields are exactly want (NULL-terminated). */
static void expect_inflated(nghttp2_hd_inflater *inf, const uint8_t *block, size_t len, const struct pair *want,
                            const char *what)
{
    size_t k = 0;
    for (;;) {
        nghttp2_nv nv;
        int flags = 0;
        ssize_t n = nghttp2_hd_inflate_hd2(inf, &nv, &flags, block, len, 1);
        cr_assert_geq(n, 0, "%s: nghttp2 refused our block (%zd)", what, n);
        block += n;
        len -= (size_t)n;
        if (flags & NGHTTP2_HD_INFLATE_EMIT) {
            cr_assert_not_null(want[k].name, "%s: extra field %.*s", what, (int)nv.namelen, nv.name);
            cr_assert(nv.namelen == strlen(want[k].name) && memcmp(nv.name, want[k].name, nv.namelen) == 0,
                      "%s: field %zu is %.*s, want %s", what, k, (int)nv.namelen, nv.name, want[k].name);
            cr_assert(nv.valuelen == strlen(want[k].value) && memcmp(nv.value, want[k].value, nv.valuelen) == 0,
                      "%s: %s is %.*s, want %s", what, want[k].name, (int)nv.valuelen, nv.value, want[k].value);
            k++;
        }
        if (flags & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(inf);
            break;
        }
        if (n == 0 && len == 0)
            break;
    }
    cr_assert_null(want[k].name, "%s: field %s missing", what, want[k].name);
}

/* One response block as h2.c writes it: server, date (key: the second), content-type, content-length. */
static size_t encode_response(struct hpack_encoder *e, uint8_t *out, unsigned second, const char *ctype,
                              const char *clen)
{
    static const char server[] = "ringd";
    char date[32];
    snprintf(date, sizeof(date), "Wed, 02 Dec 2026 07:%02u:%02u GMT", second / 60 % 60, second % 60);
    size_t n = hpack_encoder_begin(e, out);
    out[n++] = 0x88; /* :status 200 */
    n += hpack_encode_field(e, out + n, HPACK_NAME_SERVER, 0, server, 5, true);
    n += hpack_encode_field(e, out + n, HPACK_NAME_DATE, second, date, strlen(date), true);
    n += hpack_encode_field(e, out + n, HPACK_NAME_CONTENT_TYPE, (uintptr_t)ctype, ctype, strlen(ctype), true);
    n += hpack_encode_field(e, out + n, HPACK_NAME_CONTENT_LENGTH, 0, clen, strlen(clen), false);
    return n;
}

/* Thousands of blocks over changing dates, content types and the peer's
 * table sizes (0 to 4096, set as SETTINGS would) all decode to what was meant,
 * and a steady block is small: the indexed fields take one octet each. */
Test(hpack, response_encoder_follows_the_peer_table)
{
    static const char *ctypes[] = {"application/json", "text/plain; charset=utf-8",
                                   "text/plain; version=0.0.4; charset=utf-8"};
    static const uint32_t sizes[] = {4096, 4096, 0, 100, 4096, 64, 200, 1000, 4096};
    struct hpack_encoder e;
    hpack_encoder_init(&e);
    nghttp2_hd_inflater *inf;
    cr_assert_eq(nghttp2_hd_inflate_new(&inf), 0);
    srand(11);
    unsigned second = 0;
    size_t steady = 0;
    for (int round = 0; round < 5000; round++) {
        if (round % 600 == 599) {
            /* The peer changes SETTINGS_HEADER_TABLE_SIZE; its decoder allows up to that from now on. */
            uint32_t v = sizes[(round / 600) % (sizeof(sizes) / sizeof(sizes[0]))];
            cr_assert_eq(nghttp2_hd_inflate_change_table_size(inf, v), 0);
            hpack_encoder_set_peer_max(&e, v);
        }
        if (rand() % 40 == 0)
            second++;
        const char *ctype = ctypes[rand() % 8 == 0 ? rand() % 3 : 0];
        char clen[16], date[32];
        snprintf(clen, sizeof(clen), "%d", 50 + rand() % 200);
        snprintf(date, sizeof(date), "Wed, 02 Dec 2026 07:%02u:%02u GMT", second / 60 % 60, second % 60);
        uint8_t block[256];
        size_t n = encode_response(&e, block, second, ctype, clen);
        struct pair want[] = {{":status", "200"}, {"server", "ringd"}, {"date", date},
                              {"content-type", ctype}, {"content-length", clen}, {NULL, NULL}};
        char what[32];
        snprintf(what, sizeof(what), "round %d", round);
        expect_inflated(inf, block, n, want, what);
        cr_assert_leq(nghttp2_hd_inflate_get_dynamic_table_size(inf), e.cap, "%s: table over what we announced", what);
        if (round < 600 && n <= 4 + 3 + strlen(clen))
            steady++;
    }
    /* With the default table, most blocks are status + three indexed fields + content-length. */
    cr_assert_gt(steady, 400, "only %zu of 600 blocks were the short form", steady);
    nghttp2_hd_inflate_del(inf);
}

/* A peer that allows no table at all gets literals only, and never an insertion. */
Test(hpack, response_encoder_without_a_table)
{
    struct hpack_encoder e;
    hpack_encoder_init(&e);
    hpack_encoder_set_peer_max(&e, 0);
    nghttp2_hd_inflater *inf;
    cr_assert_eq(nghttp2_hd_inflate_new(&inf), 0);
    cr_assert_eq(nghttp2_hd_inflate_change_table_size(inf, 0), 0);
    for (int round = 0; round < 10; round++) {
        uint8_t block[256];
        size_t n = encode_response(&e, block, 7, "application/json", "117");
        struct pair want[] = {{":status", "200"},
                              {"server", "ringd"},
                              {"date", "Wed, 02 Dec 2026 07:00:07 GMT"},
                              {"content-type", "application/json"},
                              {"content-length", "117"},
                              {NULL, NULL}};
        expect_inflated(inf, block, n, want, "no table");
        cr_assert_eq(e.n, 0);
        cr_assert_eq(nghttp2_hd_inflate_get_dynamic_table_size(inf), 0);
    }
    nghttp2_hd_inflate_del(inf);
}
