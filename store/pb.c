/* pb.c - protobuf varints and skipping, and the encoder of a JSON record into ringd.v1.User (google.protobuf.Struct).
 *
 * The encoder walks the JSON text itself (no tree): each value becomes a
 * google.protobuf.Value, objects Structs (map entries in the record's key
 * order), arrays ListValues, numbers doubles (strtod). A length-delimited
 * field's length is known only after its content: the content is written
 * behind a 5-octet gap and moved down over the unused part of the gap once
 * the length's varint is known. It runs when a record is written, never on
 * the request path.
 *
 * The messages (struct.proto):
 *   Struct    { map<string, Value> fields = 1; }   entry: { string key = 1; Value value = 2; }
 *   Value     { oneof kind { NullValue null_value = 1; double number_value = 2; string string_value = 3;
 *                            bool bool_value = 4; Struct struct_value = 5; ListValue list_value = 6; } }
 *   ListValue { repeated Value values = 1; }
 */
#include "store/pb.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PB_TAG(field, wt) ((uint8_t)((field) << 3 | (wt)))
#define PB_LEN_GAP 5     /* a length up to 2^35-1: far beyond any record */
#define PB_MAX_DEPTH 256 /* jansson's own nesting limit is 2048; records are shallow */

size_t pb_get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < PB_VARINT_MAX && p + i < end; i++) {
        x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

size_t pb_skip(const uint8_t *p, const uint8_t *end, unsigned wt)
{
    uint64_t v;
    size_t n;
    switch (wt) {
    case PB_VARINT:
        return pb_get_varint(p, end, &v);
    case PB_I64:
        return end - p >= 8 ? 8 : 0;
    case PB_I32:
        return end - p >= 4 ? 4 : 0;
    case PB_LEN:
        n = pb_get_varint(p, end, &v);
        if (n == 0 || v > (uint64_t)(end - p - (ptrdiff_t)n))
            return 0;
        return n + (size_t)v;
    default: /* groups (3, 4) are not proto3; 6 and 7 do not exist */
        return 0;
    }
}

struct pb_enc {
    const char *p, *end;
    struct buf *out;
    char *err;
    size_t errlen;
    int depth;
};

static int enc_fail(struct pb_enc *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int enc_fail(struct pb_enc *e, const char *fmt, ...)
{
    if (e->err != NULL && e->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->err, e->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void ws(struct pb_enc *e)
{
    while (e->p < e->end && (*e->p == ' ' || *e->p == '\t' || *e->p == '\n' || *e->p == '\r'))
        e->p++;
}

static void put_byte(struct pb_enc *e, uint8_t b)
{
    buf_append(e->out, &b, 1);
}

static void put_varint(struct pb_enc *e, uint64_t v)
{
    uint8_t tmp[PB_VARINT_MAX];
    buf_append(e->out, tmp, pb_put_varint(tmp, v));
}

/* Starts a length-delimited field: its tag, then the gap; returns where the content will start. */
static size_t open_len(struct pb_enc *e, uint8_t tag)
{
    put_byte(e, tag);
    static const uint8_t gap[PB_LEN_GAP];
    buf_append(e->out, gap, PB_LEN_GAP);
    return e->out->len;
}

/* Ends the field opened at start: writes its length into the gap and closes the rest of it. */
static void close_len(struct pb_enc *e, size_t start)
{
    size_t n = e->out->len - start;
    uint8_t *gap = (uint8_t *)e->out->data + start - PB_LEN_GAP;
    size_t vn = pb_put_varint(gap, n);
    memmove(gap + vn, gap + PB_LEN_GAP, n);
    e->out->len -= PB_LEN_GAP - vn;
}

static void put_utf8(struct pb_enc *e, uint32_t cp)
{
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (uint8_t)(0xc0 | cp >> 6);
        b[1] = (uint8_t)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xe0 | cp >> 12);
        b[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        b[2] = (uint8_t)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (uint8_t)(0xf0 | cp >> 18);
        b[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
        b[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        b[3] = (uint8_t)(0x80 | (cp & 0x3f));
        n = 4;
    }
    buf_append(e->out, b, n);
}

static int hex4(struct pb_enc *e, uint32_t *cp)
{
    if (e->end - e->p < 4)
        return enc_fail(e, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = *e->p++;
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (uint32_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (uint32_t)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v |= (uint32_t)(ch - 'A' + 10);
        else
            return enc_fail(e, "bad \\u escape");
    }
    *cp = v;
    return 0;
}

/* A JSON string at e->p (its opening quote) becomes a length-delimited field with tag. */
static int enc_string(struct pb_enc *e, uint8_t tag)
{
    e->p++; /* " */
    size_t start = open_len(e, tag);
    for (;;) {
        const char *run = e->p;
        while (e->p < e->end && *e->p != '"' && *e->p != '\\')
            e->p++;
        if (e->p > run)
            buf_append(e->out, run, (size_t)(e->p - run)); /* UTF-8 as it is: jansson validated it */
        if (e->p >= e->end)
            return enc_fail(e, "unterminated string");
        if (*e->p == '"') {
            e->p++;
            break;
        }
        e->p++; /* backslash */
        if (e->p >= e->end)
            return enc_fail(e, "unterminated string");
        char ch = *e->p++;
        uint32_t cp;
        switch (ch) {
        case '"':
            put_byte(e, '"');
            break;
        case '\\':
            put_byte(e, '\\');
            break;
        case '/':
            put_byte(e, '/');
            break;
        case 'b':
            put_byte(e, '\b');
            break;
        case 'f':
            put_byte(e, '\f');
            break;
        case 'n':
            put_byte(e, '\n');
            break;
        case 'r':
            put_byte(e, '\r');
            break;
        case 't':
            put_byte(e, '\t');
            break;
        case 'u':
            if (hex4(e, &cp) != 0)
                return -1;
            if (cp >= 0xd800 && cp < 0xdc00) { /* a high surrogate: its low half must follow */
                uint32_t lo;
                if (e->end - e->p < 2 || e->p[0] != '\\' || e->p[1] != 'u')
                    return enc_fail(e, "lone surrogate");
                e->p += 2;
                if (hex4(e, &lo) != 0)
                    return -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return enc_fail(e, "lone surrogate");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return enc_fail(e, "lone surrogate");
            }
            put_utf8(e, cp);
            break;
        default:
            return enc_fail(e, "bad escape \\%c", ch);
        }
    }
    close_len(e, start);
    return 0;
}

static int enc_value(struct pb_enc *e);

/* The members of an object at e->p ('{') as Struct fields (the Struct's own content). */
static int enc_object_fields(struct pb_enc *e)
{
    e->p++; /* { */
    ws(e);
    if (e->p < e->end && *e->p == '}') {
        e->p++;
        return 0;
    }
    for (;;) {
        ws(e);
        if (e->p >= e->end || *e->p != '"')
            return enc_fail(e, "object key expected");
        size_t entry = open_len(e, PB_TAG(1, PB_LEN)); /* fields: one map entry */
        if (enc_string(e, PB_TAG(1, PB_LEN)) != 0)     /* its key */
            return -1;
        ws(e);
        if (e->p >= e->end || *e->p != ':')
            return enc_fail(e, "':' expected");
        e->p++;
        size_t value = open_len(e, PB_TAG(2, PB_LEN)); /* its value */
        if (enc_value(e) != 0)
            return -1;
        close_len(e, value);
        close_len(e, entry);
        ws(e);
        if (e->p < e->end && *e->p == ',') {
            e->p++;
            continue;
        }
        if (e->p < e->end && *e->p == '}') {
            e->p++;
            return 0;
        }
        return enc_fail(e, "',' or '}' expected");
    }
}

/* The elements of an array at e->p ('[') as ListValue values. */
static int enc_array_values(struct pb_enc *e)
{
    e->p++; /* [ */
    ws(e);
    if (e->p < e->end && *e->p == ']') {
        e->p++;
        return 0;
    }
    for (;;) {
        size_t value = open_len(e, PB_TAG(1, PB_LEN));
        if (enc_value(e) != 0)
            return -1;
        close_len(e, value);
        ws(e);
        if (e->p < e->end && *e->p == ',') {
            e->p++;
            continue;
        }
        if (e->p < e->end && *e->p == ']') {
            e->p++;
            return 0;
        }
        return enc_fail(e, "',' or ']' expected");
    }
}

static bool word(struct pb_enc *e, const char *w, size_t n)
{
    if ((size_t)(e->end - e->p) < n || memcmp(e->p, w, n) != 0)
        return false;
    e->p += n;
    return true;
}

/* One JSON value as the content of a google.protobuf.Value. */
static int enc_value(struct pb_enc *e)
{
    ws(e);
    if (e->p >= e->end)
        return enc_fail(e, "value expected");
    if (++e->depth > PB_MAX_DEPTH)
        return enc_fail(e, "nested deeper than %d", PB_MAX_DEPTH);
    int rc = 0;
    size_t start;
    switch (*e->p) {
    case '{':
        start = open_len(e, PB_TAG(5, PB_LEN)); /* struct_value */
        rc = enc_object_fields(e);
        if (rc == 0)
            close_len(e, start);
        break;
    case '[':
        start = open_len(e, PB_TAG(6, PB_LEN)); /* list_value */
        rc = enc_array_values(e);
        if (rc == 0)
            close_len(e, start);
        break;
    case '"':
        rc = enc_string(e, PB_TAG(3, PB_LEN)); /* string_value */
        break;
    case 't':
    case 'f': {
        bool t = word(e, "true", 4);
        if (!t && !word(e, "false", 5))
            return enc_fail(e, "bad literal");
        put_byte(e, PB_TAG(4, PB_VARINT)); /* bool_value */
        put_byte(e, t ? 1 : 0);
        break;
    }
    case 'n':
        if (!word(e, "null", 4))
            return enc_fail(e, "bad literal");
        put_byte(e, PB_TAG(1, PB_VARINT)); /* null_value: NULL_VALUE (0) */
        put_byte(e, 0);
        break;
    default: {
        /* A number: its span, then strtod (the C locale's '.': ringd never calls setlocale). */
        const char *s = e->p;
        while (e->p < e->end && (strchr("+-.eE", *e->p) != NULL || (*e->p >= '0' && *e->p <= '9')))
            e->p++;
        size_t n = (size_t)(e->p - s);
        if (n == 0 || n > 400)
            return enc_fail(e, "bad value");
        char tmp[401];
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        char *endp;
        errno = 0;
        double d = strtod(tmp, &endp);
        if (endp != tmp + n)
            return enc_fail(e, "bad number");
        put_byte(e, PB_TAG(2, PB_I64)); /* number_value */
        uint64_t bits;
        memcpy(&bits, &d, 8);
        uint8_t le[8];
        for (int i = 0; i < 8; i++)
            le[i] = (uint8_t)(bits >> (8 * i));
        buf_append(e->out, le, 8);
        break;
    }
    }
    e->depth--;
    return rc;
}

int store_pb_user(uint64_t id, const char *json, size_t len, struct buf *out, char *err, size_t errlen)
{
    struct pb_enc e = {.p = json, .end = json + len, .out = out, .err = err, .errlen = errlen};
    size_t mark = out->len;
    put_byte(&e, PB_TAG(1, PB_VARINT)); /* id */
    put_varint(&e, id);
    ws(&e);
    if (e.p >= e.end || *e.p != '{') {
        out->len = mark;
        return enc_fail(&e, "not an object");
    }
    size_t start = open_len(&e, PB_TAG(2, PB_LEN)); /* record: a Struct */
    if (enc_object_fields(&e) != 0) {
        out->len = mark;
        return -1;
    }
    close_len(&e, start);
    ws(&e);
    if (e.p != e.end) {
        out->len = mark;
        return enc_fail(&e, "text after the object");
    }
    return 0;
}
