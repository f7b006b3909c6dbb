/* test_h2_frame.c - net/h2_frame.c: frame headers, the per-type rules of RFC 9113 6, padding and priority fields, serializers. */
#include <criterion/criterion.h>
#include <string.h>

#include "net/h2_frame.h"

static struct h2_frame frame(uint8_t type, uint8_t flags, uint32_t stream, const uint8_t *payload, uint32_t len)
{
    return (struct h2_frame){.len = len, .type = type, .flags = flags, .stream = stream, .payload = payload};
}

Test(h2_frame, header_roundtrip_and_reserved_bit)
{
    uint8_t buf[9];
    h2_frame_put_header(buf, 0x123456, H2_HEADERS, 0x25, 0x7fffffff);
    struct h2_frame f;
    h2_frame_parse_header(buf, &f);
    cr_assert_eq(f.len, 0x123456);
    cr_assert_eq(f.type, H2_HEADERS);
    cr_assert_eq(f.flags, 0x25);
    cr_assert_eq(f.stream, 0x7fffffff);
    cr_assert_eq(f.payload, buf + 9);
    /* The reserved bit is ignored on receipt (RFC 9113 4.1). */
    const uint8_t r[9] = {0, 0, 0, H2_DATA, 0, 0x80, 0, 0, 3};
    h2_frame_parse_header(r, &f);
    cr_assert_eq(f.stream, 3);
}

struct rule {
    const char *what;
    uint8_t type, flags;
    uint32_t stream, len;
    uint32_t err;
    bool stream_error;
};

Test(h2_frame, per_type_rules)
{
    static const uint8_t zero[64];
    const struct rule rules[] = {
        {"DATA on 0", H2_DATA, 0, 0, 4, H2_PROTOCOL_ERROR, false},
        {"DATA", H2_DATA, 0, 1, 4, 0, false},
        {"HEADERS on 0", H2_HEADERS, 0, 0, 4, H2_PROTOCOL_ERROR, false},
        {"CONTINUATION on 0", H2_CONTINUATION, 0, 0, 4, H2_PROTOCOL_ERROR, false},
        {"PRIORITY on 0", H2_PRIORITY, 0, 0, 5, H2_PROTOCOL_ERROR, false},
        {"PRIORITY of 4 octets", H2_PRIORITY, 0, 1, 4, H2_FRAME_SIZE_ERROR, true},
        {"PRIORITY", H2_PRIORITY, 0, 1, 5, 0, false},
        {"RST_STREAM on 0", H2_RST_STREAM, 0, 0, 4, H2_PROTOCOL_ERROR, false},
        {"RST_STREAM of 3 octets", H2_RST_STREAM, 0, 1, 3, H2_FRAME_SIZE_ERROR, false},
        {"SETTINGS on 1", H2_SETTINGS, 0, 1, 6, H2_PROTOCOL_ERROR, false},
        {"SETTINGS of 7 octets", H2_SETTINGS, 0, 0, 7, H2_FRAME_SIZE_ERROR, false},
        {"SETTINGS ACK with payload", H2_SETTINGS, H2_FLAG_ACK, 0, 6, H2_FRAME_SIZE_ERROR, false},
        {"SETTINGS ACK", H2_SETTINGS, H2_FLAG_ACK, 0, 0, 0, false},
        {"SETTINGS", H2_SETTINGS, 0, 0, 12, 0, false},
        {"PUSH_PROMISE", H2_PUSH_PROMISE, 0, 1, 4, H2_PROTOCOL_ERROR, false},
        {"PING on 1", H2_PING, 0, 1, 8, H2_PROTOCOL_ERROR, false},
        {"PING of 7 octets", H2_PING, 0, 0, 7, H2_FRAME_SIZE_ERROR, false},
        {"PING", H2_PING, 0, 0, 8, 0, false},
        {"GOAWAY on 1", H2_GOAWAY, 0, 1, 8, H2_PROTOCOL_ERROR, false},
        {"GOAWAY of 7 octets", H2_GOAWAY, 0, 0, 7, H2_FRAME_SIZE_ERROR, false},
        {"GOAWAY with debug data", H2_GOAWAY, 0, 0, 20, 0, false},
        {"WINDOW_UPDATE of 5 octets", H2_WINDOW_UPDATE, 0, 0, 5, H2_FRAME_SIZE_ERROR, false},
        {"WINDOW_UPDATE on a stream", H2_WINDOW_UPDATE, 0, 7, 4, 0, false},
        {"unknown type", 0xfa, 0xff, 0, 3, 0, false},
    };
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        struct h2_frame f = frame(rules[i].type, rules[i].flags, rules[i].stream, zero, rules[i].len);
        bool se = !rules[i].stream_error;
        cr_expect_eq(h2_frame_check(&f, H2_DEFAULT_FRAME_SIZE, &se), rules[i].err, "%s", rules[i].what);
        cr_expect_eq(se, rules[i].stream_error, "%s: stream error", rules[i].what);
    }
    /* Over SETTINGS_MAX_FRAME_SIZE: a connection error, whatever the type. */
    struct h2_frame big = frame(H2_DATA, 0, 1, zero, H2_DEFAULT_FRAME_SIZE + 1);
    bool se;
    cr_expect_eq(h2_frame_check(&big, H2_DEFAULT_FRAME_SIZE, &se), H2_FRAME_SIZE_ERROR);
    cr_expect(!se);
    cr_expect_eq(h2_frame_check(&big, H2_MAX_FRAME_SIZE, &se), 0, "allowed by a larger setting");
}

Test(h2_frame, padding_and_priority)
{
    const uint8_t *data;
    uint32_t len;
    struct h2_priority prio;
    /* DATA, PADDED: pad length 2, "abc", 2 octets of padding */
    const uint8_t padded[] = {2, 'a', 'b', 'c', 0, 0};
    struct h2_frame f = frame(H2_DATA, H2_FLAG_PADDED, 1, padded, sizeof(padded));
    cr_assert_eq(h2_frame_data(&f, &data, &len, NULL), 0);
    cr_assert(len == 3 && memcmp(data, "abc", 3) == 0);
    /* all padding: valid, empty data */
    const uint8_t all_pad[] = {3, 0, 0, 0};
    f = frame(H2_DATA, H2_FLAG_PADDED, 1, all_pad, sizeof(all_pad));
    cr_assert_eq(h2_frame_data(&f, &data, &len, NULL), 0);
    cr_assert_eq(len, 0);
    /* padding longer than the rest: PROTOCOL_ERROR (RFC 9113 6.1) */
    const uint8_t too_long[] = {4, 0, 0, 0};
    f = frame(H2_DATA, H2_FLAG_PADDED, 1, too_long, sizeof(too_long));
    cr_assert_eq(h2_frame_data(&f, &data, &len, NULL), H2_PROTOCOL_ERROR);
    /* PADDED with no room for the pad length */
    f = frame(H2_DATA, H2_FLAG_PADDED, 1, padded, 0);
    cr_assert_eq(h2_frame_data(&f, &data, &len, NULL), H2_FRAME_SIZE_ERROR);
    /* HEADERS, PADDED|PRIORITY: pad 1, exclusive dependency on 3, weight 16, block "xy", padding */
    const uint8_t hp[] = {1, 0x80, 0, 0, 3, 15, 'x', 'y', 0};
    f = frame(H2_HEADERS, H2_FLAG_PADDED | H2_FLAG_PRIORITY, 5, hp, sizeof(hp));
    cr_assert_eq(h2_frame_data(&f, &data, &len, &prio), 0);
    cr_assert(len == 2 && memcmp(data, "xy", 2) == 0);
    cr_assert(prio.exclusive);
    cr_assert_eq(prio.depends_on, 3);
    cr_assert_eq(prio.weight, 15);
    /* the padding may not eat into the priority fields */
    const uint8_t hp_bad[] = {2, 0, 0, 0, 3, 15, 'x'};
    f = frame(H2_HEADERS, H2_FLAG_PADDED | H2_FLAG_PRIORITY, 5, hp_bad, sizeof(hp_bad));
    cr_assert_eq(h2_frame_data(&f, &data, &len, &prio), H2_PROTOCOL_ERROR);
    /* PRIORITY flag with fewer than 5 octets */
    f = frame(H2_HEADERS, H2_FLAG_PRIORITY, 5, hp + 1, 4);
    cr_assert_eq(h2_frame_data(&f, &data, &len, &prio), H2_FRAME_SIZE_ERROR);
    /* DATA ignores the PRIORITY flag (it is not defined for DATA) */
    f = frame(H2_DATA, H2_FLAG_PRIORITY, 1, (const uint8_t *)"abc", 3);
    cr_assert_eq(h2_frame_data(&f, &data, &len, &prio), 0);
    cr_assert_eq(len, 3);
    cr_assert_eq(prio.depends_on, 0);
    /* a PRIORITY frame */
    const uint8_t pr[5] = {0, 0, 0, 7, 255};
    f = frame(H2_PRIORITY, 0, 7, pr, 5);
    h2_frame_priority(&f, &prio);
    cr_assert(!prio.exclusive && prio.depends_on == 7 && prio.weight == 255);
}

Test(h2_frame, serializers)
{
    uint8_t buf[64];
    struct h2_frame f;
    const struct h2_setting iv[2] = {{H2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}, {H2_SETTINGS_INITIAL_WINDOW_SIZE, 0x01020304}};
    size_t n = h2_frame_settings(buf, iv, 2);
    cr_assert_eq(n, 9 + 12);
    h2_frame_parse_header(buf, &f);
    cr_assert(f.type == H2_SETTINGS && f.flags == 0 && f.stream == 0 && f.len == 12);
    const uint8_t want_iv[12] = {0, 3, 0, 0, 0, 100, 0, 4, 1, 2, 3, 4};
    cr_assert_eq(memcmp(buf + 9, want_iv, 12), 0);

    cr_assert_eq(h2_frame_settings_ack(buf), 9);
    h2_frame_parse_header(buf, &f);
    cr_assert(f.type == H2_SETTINGS && f.flags == H2_FLAG_ACK && f.len == 0);

    const uint8_t opaque[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cr_assert_eq(h2_frame_ping(buf, H2_FLAG_ACK, opaque), H2_PING_LEN);
    h2_frame_parse_header(buf, &f);
    cr_assert(f.type == H2_PING && f.flags == H2_FLAG_ACK && f.len == 8 && memcmp(f.payload, opaque, 8) == 0);

    cr_assert_eq(h2_frame_goaway(buf, 0xffffffff, H2_ENHANCE_YOUR_CALM), H2_GOAWAY_LEN);
    h2_frame_parse_header(buf, &f);
    cr_assert(f.type == H2_GOAWAY && f.len == 8 && f.stream == 0);
    cr_assert_eq(h2_get_u32(f.payload), 0x7fffffff, "the reserved bit of the last stream id is clear");
    cr_assert_eq(h2_get_u32(f.payload + 4), H2_ENHANCE_YOUR_CALM);

    cr_assert_eq(h2_frame_rst_stream(buf, 9, H2_STREAM_CLOSED), H2_RST_STREAM_LEN);
    h2_frame_parse_header(buf, &f);
    cr_assert(f.type == H2_RST_STREAM && f.stream == 9 && f.len == 4 && h2_get_u32(f.payload) == H2_STREAM_CLOSED);

    cr_assert_eq(h2_frame_window_update(buf, 0, 65535), H2_WINDOW_UPDATE_LEN);
    h2_frame_parse_header(buf, &f);
    cr_assert(f.type == H2_WINDOW_UPDATE && f.stream == 0 && f.len == 4 && h2_get_u32(f.payload) == 65535);
    bool se;
    cr_assert_eq(h2_frame_check(&f, H2_DEFAULT_FRAME_SIZE, &se), 0, "what we write passes our own rules");
}
