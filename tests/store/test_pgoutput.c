/* test_pgoutput.c - store/pgoutput.c on constructed bytes: replication framing, every pgoutput message the follower
 * reads (each truncation refused, never read past the end), COPY text rows, and column text rendered as JSON. */
#include "store/pgoutput.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* A message under construction, big-endian as on the wire. */
struct msg {
    uint8_t b[4096];
    size_t n;
};

static void u8(struct msg *m, uint8_t v)
{
    m->b[m->n++] = v;
}

static void u16(struct msg *m, uint16_t v)
{
    u8(m, (uint8_t)(v >> 8));
    u8(m, (uint8_t)v);
}

static void u32(struct msg *m, uint32_t v)
{
    u16(m, (uint16_t)(v >> 16));
    u16(m, (uint16_t)v);
}

static void u64(struct msg *m, uint64_t v)
{
    u32(m, (uint32_t)(v >> 32));
    u32(m, (uint32_t)v);
}

static void str(struct msg *m, const char *s)
{
    size_t n = strlen(s) + 1;
    memcpy(m->b + m->n, s, n);
    m->n += n;
}

static void text(struct msg *m, const char *s)
{
    u8(m, 't');
    u32(m, (uint32_t)strlen(s));
    memcpy(m->b + m->n, s, strlen(s));
    m->n += strlen(s);
}

static struct pgout_scratch sc;

/* Decodes a copy that ends exactly at an allocation's end (ASan sees any over-read). */
static int decode(const struct msg *m, size_t len, struct pgout_msg *out)
{
    uint8_t *p = malloc(len ? len : 1);
    memcpy(p, m->b, len);
    int rc = pgout_decode(p, len, &sc, out);
    /* The decoded pointers point into p: the callers below only look at numbers after this. */
    free(p);
    return rc;
}

/* Every strict prefix is refused; the whole message decodes. */
static void expect_prefixes_refused(const struct msg *m)
{
    struct pgout_msg out;
    for (size_t len = 0; len < m->n; len++)
        cr_assert_eq(decode(m, len, &out), -1, "prefix of %zu bytes of a '%c' message", len, m->b[0]);
    cr_assert_eq(decode(m, m->n, &out), 0);
}

Test(pgoutput, begin_and_commit)
{
    struct msg m = {0};
    u8(&m, 'B');
    u64(&m, 0x1234567890ull);
    u64(&m, (uint64_t)-5);
    u32(&m, 777);
    expect_prefixes_refused(&m);
    struct pgout_msg out;
    cr_assert_eq(pgout_decode(m.b, m.n, &sc, &out), 0);
    cr_assert_eq(out.kind, 'B');
    cr_assert_eq(out.begin.final_lsn, 0x1234567890ull);
    cr_assert_eq(out.begin.commit_time, -5);
    cr_assert_eq(out.begin.xid, 777);

    struct msg c = {0};
    u8(&c, 'C');
    u8(&c, 0);
    u64(&c, 100);
    u64(&c, 180);
    u64(&c, 42);
    expect_prefixes_refused(&c);
    cr_assert_eq(pgout_decode(c.b, c.n, &sc, &out), 0);
    cr_assert_eq(out.commit.commit_lsn, 100);
    cr_assert_eq(out.commit.end_lsn, 180);
    cr_assert_eq(out.commit.commit_time, 42);
}

Test(pgoutput, relation)
{
    struct msg m = {0};
    u8(&m, 'R');
    u32(&m, 16384);
    str(&m, "public");
    str(&m, "users");
    u8(&m, 'd');
    u16(&m, 2);
    u8(&m, 1);
    str(&m, "id");
    u32(&m, 20);
    u32(&m, (uint32_t)-1);
    u8(&m, 0);
    str(&m, "name");
    u32(&m, 25);
    u32(&m, (uint32_t)-1);
    expect_prefixes_refused(&m);
    struct pgout_msg out;
    cr_assert_eq(pgout_decode(m.b, m.n, &sc, &out), 0);
    cr_assert_eq(out.relation.relid, 16384);
    cr_assert_str_eq(out.relation.nspname, "public");
    cr_assert_str_eq(out.relation.relname, "users");
    cr_assert_eq(out.relation.replident, 'd');
    cr_assert_eq(out.relation.ncols, 2);
    cr_assert_eq(out.relation.cols[0].flags, 1);
    cr_assert_str_eq(out.relation.cols[0].name, "id");
    cr_assert_eq(out.relation.cols[0].typid, 20);
    cr_assert_eq(out.relation.cols[0].typmod, -1);
    cr_assert_str_eq(out.relation.cols[1].name, "name");
    cr_assert_eq(out.relation.cols[1].typid, 25);
}

Test(pgoutput, insert_update_delete)
{
    struct msg m = {0};
    u8(&m, 'I');
    u32(&m, 7);
    u8(&m, 'N');
    u16(&m, 3);
    text(&m, "42");
    u8(&m, 'n');
    text(&m, "");
    expect_prefixes_refused(&m);
    struct pgout_msg out;
    cr_assert_eq(pgout_decode(m.b, m.n, &sc, &out), 0);
    cr_assert_eq(out.kind, 'I');
    cr_assert_eq(out.change.relid, 7);
    cr_assert_eq(out.change.old_kind, 0);
    cr_assert_eq(out.change.new_tuple.ncols, 3);
    cr_assert_eq(out.change.new_tuple.vals[0].kind, 't');
    cr_assert_eq(out.change.new_tuple.vals[0].len, 2);
    cr_assert_eq(memcmp(out.change.new_tuple.vals[0].data, "42", 2), 0);
    cr_assert_eq(out.change.new_tuple.vals[1].kind, 'n');
    cr_assert_eq(out.change.new_tuple.vals[2].kind, 't');
    cr_assert_eq(out.change.new_tuple.vals[2].len, 0, "an empty string is not NULL");

    /* An update that changed the key: the old key, then the new row with an unchanged TOASTed value. */
    struct msg u = {0};
    u8(&u, 'U');
    u32(&u, 7);
    u8(&u, 'K');
    u16(&u, 2);
    text(&u, "41");
    u8(&u, 'n');
    u8(&u, 'N');
    u16(&u, 2);
    text(&u, "42");
    u8(&u, 'u');
    expect_prefixes_refused(&u);
    cr_assert_eq(pgout_decode(u.b, u.n, &sc, &out), 0);
    cr_assert_eq(out.change.old_kind, 'K');
    cr_assert_eq(out.change.old_tuple.ncols, 2);
    cr_assert_eq(memcmp(out.change.old_tuple.vals[0].data, "41", 2), 0);
    cr_assert_eq(out.change.new_tuple.vals[1].kind, 'u');

    /* Without an old tuple (REPLICA IDENTITY DEFAULT, key unchanged). */
    struct msg u2 = {0};
    u8(&u2, 'U');
    u32(&u2, 7);
    u8(&u2, 'N');
    u16(&u2, 1);
    text(&u2, "1");
    cr_assert_eq(pgout_decode(u2.b, u2.n, &sc, &out), 0);
    cr_assert_eq(out.change.old_kind, 0);

    struct msg d = {0};
    u8(&d, 'D');
    u32(&d, 7);
    u8(&d, 'O');
    u16(&d, 1);
    text(&d, "9");
    expect_prefixes_refused(&d);
    cr_assert_eq(pgout_decode(d.b, d.n, &sc, &out), 0);
    cr_assert_eq(out.kind, 'D');
    cr_assert_eq(out.change.old_kind, 'O');
    cr_assert_eq(out.change.new_tuple.ncols, 0);
}

Test(pgoutput, malformed_changes)
{
    struct pgout_msg out;
    struct msg m = {0};
    u8(&m, 'I');
    u32(&m, 7);
    u8(&m, 'X'); /* not 'N' */
    u16(&m, 0);
    cr_assert_eq(pgout_decode(m.b, m.n, &sc, &out), -1);
    struct msg b = {0};
    u8(&b, 'I');
    u32(&b, 7);
    u8(&b, 'N');
    u16(&b, 1);
    u8(&b, 'b'); /* binary: never asked for */
    u32(&b, 0);
    cr_assert_eq(pgout_decode(b.b, b.n, &sc, &out), -1);
    struct msg big = {0};
    u8(&big, 'I');
    u32(&big, 7);
    u8(&big, 'N');
    u16(&big, PGOUT_MAX_COLS + 1);
    cr_assert_eq(pgout_decode(big.b, big.n, &sc, &out), -1);
    struct msg len = {0};
    u8(&len, 'I');
    u32(&len, 7);
    u8(&len, 'N');
    u16(&len, 1);
    u8(&len, 't');
    u32(&len, 0xffffffffu); /* a length beyond the message */
    cr_assert_eq(pgout_decode(len.b, len.n, &sc, &out), -1);
    cr_assert_eq(pgout_decode(NULL, 0, &sc, &out), -1);
}

Test(pgoutput, truncate_and_others)
{
    struct msg m = {0};
    u8(&m, 'T');
    u32(&m, 2);
    u8(&m, 1);
    u32(&m, 11);
    u32(&m, 16384);
    expect_prefixes_refused(&m);
    struct pgout_msg out;
    cr_assert_eq(pgout_decode(m.b, m.n, &sc, &out), 0);
    cr_assert_eq(out.truncate.nrels, 2);
    cr_assert_eq(out.truncate.options, 1);
    cr_assert_eq(pgout_truncate_relid(&out, 0), 11);
    cr_assert_eq(pgout_truncate_relid(&out, 1), 16384);
    struct msg o = {0};
    u8(&o, 'O');
    u64(&o, 5);
    str(&o, "origin");
    cr_assert_eq(pgout_decode(o.b, o.n, &sc, &out), 0);
    cr_assert_eq(out.kind, 'O', "skipped kinds decode as themselves");
}

Test(pgoutput, framing)
{
    struct msg w = {0};
    u8(&w, 'w');
    u64(&w, 0x100);
    u64(&w, 0x200);
    u64(&w, 99);
    u8(&w, 'B');
    char kind;
    struct pgout_xlogdata x;
    struct pgout_keepalive k;
    cr_assert_eq(pgout_parse_copydata(w.b, w.n, &kind, &x, &k), 0);
    cr_assert_eq(kind, 'w');
    cr_assert_eq(x.start_lsn, 0x100);
    cr_assert_eq(x.wal_end, 0x200);
    cr_assert_eq(x.send_time, 99);
    cr_assert_eq(x.len, 1);
    cr_assert_eq(x.data[0], 'B');
    cr_assert_eq(pgout_parse_copydata(w.b, 24, &kind, &x, &k), -1);

    struct msg ka = {0};
    u8(&ka, 'k');
    u64(&ka, 0xABCDEF);
    u64(&ka, 7);
    u8(&ka, 1);
    cr_assert_eq(pgout_parse_copydata(ka.b, ka.n, &kind, &x, &k), 0);
    cr_assert_eq(kind, 'k');
    cr_assert_eq(k.wal_end, 0xABCDEF);
    cr_assert(k.reply_requested);
    cr_assert_eq(pgout_parse_copydata(ka.b, ka.n - 1, &kind, &x, &k), -1);
    uint8_t junk[] = {'z', 0};
    cr_assert_eq(pgout_parse_copydata(junk, sizeof(junk), &kind, &x, &k), -1);

    uint8_t st[PGOUT_STATUS_LEN];
    cr_assert_eq(pgout_standby_status(st, 0x0102030405060708ull, 2, 3, 4, true), 34);
    cr_assert_eq(st[0], 'r');
    const uint8_t w8[] = {1, 2, 3, 4, 5, 6, 7, 8};
    cr_assert_eq(memcmp(st + 1, w8, 8), 0, "big-endian");
    cr_assert_eq(st[16], 2);
    cr_assert_eq(st[24], 3);
    cr_assert_eq(st[32], 4);
    cr_assert_eq(st[33], 1);
}

static int copy_row(const char *line, struct pgout_value *vals, size_t cap, char *buf)
{
    strcpy(buf, line);
    return pgout_copy_row(buf, strlen(buf), vals, cap);
}

Test(pgoutput, copy_text_rows)
{
    struct pgout_value v[8];
    char buf[256];
    cr_assert_eq(copy_row("1\tplain\t\\N\t\n", v, 8, buf), 4);
    cr_assert_eq(v[0].kind, 't');
    cr_assert_eq(v[0].len, 1);
    cr_assert_eq(v[1].len, 5);
    cr_assert_eq(memcmp(v[1].data, "plain", 5), 0);
    cr_assert_eq(v[2].kind, 'n');
    cr_assert_eq(v[3].kind, 't', "an empty field is an empty string");
    cr_assert_eq(v[3].len, 0);

    cr_assert_eq(copy_row("a\\tb\\\\c\\nd\\\\N\\101\\x41", v, 8, buf), 1);
    cr_assert_eq(v[0].len, 11);
    cr_assert_eq(memcmp(v[0].data, "a\tb\\c\nd\\NAA", 11), 0);
    cr_assert_eq(copy_row("\\\\N", v, 8, buf), 1, "an escaped backslash then N");
    cr_assert_eq(v[0].kind, 't');
    cr_assert_eq(copy_row("x\\N", v, 8, buf), 1);
    cr_assert_eq(v[0].kind, 't', "\\N inside a value is not NULL");

    cr_assert_eq(copy_row("1\t2\t3", v, 2, buf), -1, "more columns than room");
    cr_assert_eq(copy_row("", v, 8, buf), 1);
}

static void expect_json(uint32_t typid, const char *in, const char *want)
{
    struct buf b = {0};
    pgout_json_value(&b, typid, in, strlen(in));
    buf_append(&b, "", 1);
    cr_assert_str_eq(b.data, want, "type %u, '%s'", typid, in);
    /* Valid JSON (jansson decodes it, any value). */
    json_error_t e;
    json_t *j = json_loads(b.data, JSON_DECODE_ANY, &e);
    cr_assert_not_null(j, "%s: %s", b.data, e.text);
    json_decref(j);
    buf_free(&b);
}

Test(pgoutput, json_like_row_to_json)
{
    expect_json(PGOUT_INT4OID, "-42", "-42");
    expect_json(PGOUT_INT8OID, "9223372036854775807", "9223372036854775807");
    expect_json(PGOUT_NUMERICOID, "1.50", "1.50");
    expect_json(PGOUT_NUMERICOID, "NaN", "\"NaN\"");
    expect_json(PGOUT_NUMERICOID, "123456789012345678901234567890", "123456789012345678901234567890.0");
    expect_json(PGOUT_NUMERICOID, "-9223372036854775808", "-9223372036854775808");
    expect_json(PGOUT_FLOAT8OID, "1e+100", "1e+100");
    expect_json(PGOUT_FLOAT8OID, "Infinity", "\"Infinity\"");
    expect_json(PGOUT_FLOAT4OID, "-Infinity", "\"-Infinity\"");
    expect_json(PGOUT_BOOLOID, "t", "true");
    expect_json(PGOUT_BOOLOID, "f", "false");
    expect_json(PGOUT_JSONBOID, "{\"a\": [1, 2]}", "{\"a\": [1, 2]}");
    expect_json(PGOUT_TIMESTAMPTZOID, "2024-01-02 03:04:05+00", "\"2024-01-02T03:04:05+00:00\"");
    expect_json(PGOUT_TIMESTAMPTZOID, "2024-01-02 03:04:05.123456+05:30", "\"2024-01-02T03:04:05.123456+05:30\"");
    expect_json(PGOUT_TIMESTAMPTZOID, "2024-01-02 03:04:05-08", "\"2024-01-02T03:04:05-08:00\"");
    expect_json(PGOUT_TIMESTAMPOID, "2024-01-02 03:04:05.5", "\"2024-01-02T03:04:05.5\"");
    expect_json(PGOUT_TIMESTAMPOID, "infinity", "\"infinity\"");
    expect_json(25, "say \"hi\"\\ \n\t\x01 é", "\"say \\\"hi\\\"\\\\ \\n\\t\\u0001 é\"");
    expect_json(1082, "2024-02-29", "\"2024-02-29\"");
}

Test(pgoutput, arrays_like_row_to_json)
{
    expect_json(1007, "{1,2,3}", "[1,2,3]");
    expect_json(1007, "{}", "[]");
    expect_json(1016, "{-9223372036854775808,NULL,7}", "[-9223372036854775808,null,7]");
    expect_json(1000, "{t,f,NULL}", "[true,false,null]");
    expect_json(1231, "{1.50,NaN,-2}", "[1.50,\"NaN\",-2]");
    expect_json(1022, "{Infinity,1e+100}", "[\"Infinity\",1e+100]");
    /* Quoting: array_out quotes the empty string, blanks, delimiters, quotes, backslashes and the word NULL. */
    expect_json(1009, "{a,\"b c\",\"\",\"NULL\",NULL,\"x\\\"y\\\\z\",\"{,}\"}",
                "[\"a\",\"b c\",\"\",\"NULL\",null,\"x\\\"y\\\\z\",\"{,}\"]");
    expect_json(1015, "{ é , ü }", "[\"é\",\"ü\"]");
    expect_json(1007, "{{1,2},{3,4}}", "[[1,2],[3,4]]");
    expect_json(1007, "{{{1},{2}},{{3},{4}}}", "[[[1],[2]],[[3],[4]]]");
    expect_json(1007, "[0:1]={5,6}", "[5,6]");
    expect_json(1185, "{\"2024-01-02 03:04:05+00\",NULL}", "[\"2024-01-02T03:04:05+00:00\",null]");
    expect_json(3807, "{\"{\\\"a\\\": [1, 2]}\",NULL}", "[{\"a\": [1, 2]},null]");
    expect_json(2951, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "[\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]");
    /* Not array_out's form: the text as a string, as any other type. */
    expect_json(1007, "{1,2", "\"{1,2\"");
    expect_json(1007, "{1,,2}", "\"{1,,2}\"");
    expect_json(1007, "{1}x", "\"{1}x\"");
    expect_json(1009, "{\"a}", "\"{\\\"a}\"");
    expect_json(1007, "[1:2]{1,2}", "\"[1:2]{1,2}\"");
    /* Not an array type: as before. */
    expect_json(25, "{1,2}", "\"{1,2}\"");
}
