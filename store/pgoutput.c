/* pgoutput.c - decoding PostgreSQL's replication framing, pgoutput protocol 1 and COPY text rows; column text as JSON. */
#include "store/pgoutput.h"

#include <string.h>
#include <strings.h>

/* A bounds-checked cursor: every read past the end sets bad and yields 0, so
 * a decoder reads its fields straight through and checks once at the end. */
struct rd {
    const uint8_t *p, *end;
    bool bad;
};

static bool rd_need(struct rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return false;
    }
    return true;
}

static uint8_t rd_u8(struct rd *r)
{
    return rd_need(r, 1) ? *r->p++ : 0;
}

static uint16_t rd_u16(struct rd *r)
{
    if (!rd_need(r, 2))
        return 0;
    uint16_t v = (uint16_t)((r->p[0] << 8) | r->p[1]);
    r->p += 2;
    return v;
}

static uint32_t rd_u32(struct rd *r)
{
    if (!rd_need(r, 4))
        return 0;
    uint32_t v = ((uint32_t)r->p[0] << 24) | ((uint32_t)r->p[1] << 16) | ((uint32_t)r->p[2] << 8) | r->p[3];
    r->p += 4;
    return v;
}

static uint64_t rd_u64(struct rd *r)
{
    uint64_t hi = rd_u32(r);
    return (hi << 32) | rd_u32(r);
}

/* A NUL-terminated string inside the message. */
static const char *rd_str(struct rd *r)
{
    if (r->bad)
        return "";
    const uint8_t *nul = memchr(r->p, 0, (size_t)(r->end - r->p));
    if (nul == NULL) {
        r->bad = true;
        return "";
    }
    const char *s = (const char *)r->p;
    r->p = nul + 1;
    return s;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

int pgout_parse_copydata(const uint8_t *buf, size_t len, char *kind, struct pgout_xlogdata *x, struct pgout_keepalive *k)
{
    struct rd r = {buf, buf + len, false};
    *kind = (char)rd_u8(&r);
    if (*kind == 'w') {
        x->start_lsn = rd_u64(&r);
        x->wal_end = rd_u64(&r);
        x->send_time = (int64_t)rd_u64(&r);
        x->data = r.p;
        x->len = r.bad ? 0 : (size_t)(r.end - r.p);
    } else if (*kind == 'k') {
        k->wal_end = rd_u64(&r);
        k->send_time = (int64_t)rd_u64(&r);
        k->reply_requested = rd_u8(&r) != 0;
    } else {
        return -1;
    }
    return r.bad ? -1 : 0;
}

size_t pgout_standby_status(uint8_t out[PGOUT_STATUS_LEN], uint64_t written, uint64_t flushed, uint64_t applied, int64_t now,
                            bool reply)
{
    out[0] = 'r';
    put_u64(out + 1, written);
    put_u64(out + 9, flushed);
    put_u64(out + 17, applied);
    put_u64(out + 25, (uint64_t)now);
    out[33] = reply ? 1 : 0;
    return PGOUT_STATUS_LEN;
}

/* TupleData: Int16 columns, then per column 'n' | 'u' | 't' Int32 len, bytes. */
static void rd_tuple(struct rd *r, struct pgout_value *vals, struct pgout_tuple *t)
{
    t->ncols = rd_u16(r);
    t->vals = vals;
    if (t->ncols > PGOUT_MAX_COLS) {
        r->bad = true;
        return;
    }
    for (uint16_t i = 0; i < t->ncols && !r->bad; i++) {
        struct pgout_value *v = &vals[i];
        v->kind = (char)rd_u8(r);
        v->data = NULL;
        v->len = 0;
        if (v->kind == 't') {
            v->len = rd_u32(r);
            if (rd_need(r, v->len)) {
                v->data = (const char *)r->p;
                r->p += v->len;
            }
        } else if (v->kind != 'n' && v->kind != 'u') {
            r->bad = true; /* 'b' (binary) is never asked for */
        }
    }
}

int pgout_decode(const uint8_t *msg, size_t len, struct pgout_scratch *sc, struct pgout_msg *m)
{
    struct rd r = {msg, msg + len, false};
    memset(m, 0, sizeof(*m));
    m->kind = (char)rd_u8(&r);
    switch (m->kind) {
    case 'B':
        m->begin.final_lsn = rd_u64(&r);
        m->begin.commit_time = (int64_t)rd_u64(&r);
        m->begin.xid = rd_u32(&r);
        break;
    case 'C':
        m->commit.flags = rd_u8(&r);
        m->commit.commit_lsn = rd_u64(&r);
        m->commit.end_lsn = rd_u64(&r);
        m->commit.commit_time = (int64_t)rd_u64(&r);
        break;
    case 'R': {
        struct pgout_relation *rel = &m->relation;
        rel->relid = rd_u32(&r);
        rel->nspname = rd_str(&r);
        rel->relname = rd_str(&r);
        rel->replident = (char)rd_u8(&r);
        rel->ncols = rd_u16(&r);
        rel->cols = sc->cols;
        if (rel->ncols > PGOUT_MAX_COLS)
            return -1;
        for (uint16_t i = 0; i < rel->ncols && !r.bad; i++) {
            sc->cols[i].flags = rd_u8(&r);
            sc->cols[i].name = rd_str(&r);
            sc->cols[i].typid = rd_u32(&r);
            sc->cols[i].typmod = (int32_t)rd_u32(&r);
        }
        break;
    }
    case 'I':
        m->change.relid = rd_u32(&r);
        if (rd_u8(&r) != 'N')
            return -1;
        rd_tuple(&r, sc->new_vals, &m->change.new_tuple);
        break;
    case 'U': {
        m->change.relid = rd_u32(&r);
        uint8_t c = rd_u8(&r);
        if (c == 'K' || c == 'O') {
            m->change.old_kind = (char)c;
            rd_tuple(&r, sc->old_vals, &m->change.old_tuple);
            c = rd_u8(&r);
        }
        if (c != 'N')
            return -1;
        rd_tuple(&r, sc->new_vals, &m->change.new_tuple);
        break;
    }
    case 'D': {
        m->change.relid = rd_u32(&r);
        uint8_t c = rd_u8(&r);
        if (c != 'K' && c != 'O')
            return -1;
        m->change.old_kind = (char)c;
        rd_tuple(&r, sc->old_vals, &m->change.old_tuple);
        m->change.new_tuple.vals = sc->new_vals;
        break;
    }
    case 'T':
        m->truncate.nrels = rd_u32(&r);
        m->truncate.options = rd_u8(&r);
        m->truncate.relids = r.p;
        if (!rd_need(&r, (size_t)m->truncate.nrels * 4))
            return -1;
        r.p += (size_t)m->truncate.nrels * 4;
        break;
    default:
        /* Origin, Type, logical decoding Message, ...: not needed to apply rows. */
        return r.bad ? -1 : 0;
    }
    return r.bad ? -1 : 0;
}

uint32_t pgout_truncate_relid(const struct pgout_msg *m, uint32_t i)
{
    const uint8_t *p = m->truncate.relids + (size_t)i * 4;
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int pgout_copy_row(char *line, size_t len, struct pgout_value *vals, size_t cap)
{
    if (len > 0 && line[len - 1] == '\n')
        len--;
    size_t n = 0;
    size_t i = 0;
    for (;;) {
        if (n == cap)
            return -1;
        /* One field: from i to the next unescaped tab or the end, decoded to w. */
        char *start = line + i, *w = start;
        bool escaped_null = false;
        while (i < len && line[i] != '\t') {
            char c = line[i++];
            if (c != '\\' || i == len) {
                *w++ = c;
                continue;
            }
            c = line[i++];
            switch (c) {
            case 'N':
                escaped_null = w == start;
                break;
            case 'b':
                *w++ = '\b';
                break;
            case 'f':
                *w++ = '\f';
                break;
            case 'n':
                *w++ = '\n';
                break;
            case 'r':
                *w++ = '\r';
                break;
            case 't':
                *w++ = '\t';
                break;
            case 'v':
                *w++ = '\v';
                break;
            case 'x':
                if (i < len && hexval(line[i]) >= 0) {
                    int v = hexval(line[i++]);
                    if (i < len && hexval(line[i]) >= 0)
                        v = v * 16 + hexval(line[i++]);
                    *w++ = (char)v;
                } else {
                    *w++ = 'x';
                }
                break;
            default:
                if (c >= '0' && c <= '7') {
                    int v = c - '0';
                    for (int k = 0; k < 2 && i < len && line[i] >= '0' && line[i] <= '7'; k++)
                        v = v * 8 + (line[i++] - '0');
                    *w++ = (char)v;
                } else {
                    *w++ = c; /* \\ and any other escaped byte stand for themselves */
                }
            }
        }
        /* \N alone is NULL; COPY writes it for nothing else. */
        bool is_null = escaped_null && w == start && line + i == start + 2;
        vals[n].kind = is_null ? 'n' : 't';
        vals[n].data = is_null ? NULL : start;
        vals[n].len = is_null ? 0 : (uint32_t)(w - start);
        n++;
        if (i >= len)
            return (int)n;
        i++; /* the tab */
    }
}

void pgout_json_string(struct buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    buf_reserve(out, len + 2);
    buf_append(out, "\"", 1);
    size_t run = 0; /* bytes copied as they are, appended in one go */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_append(out, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        buf_append(out, esc, n);
    }
    buf_append(out, s + run, len - run);
    buf_append(out, "\"", 1);
}

/* A JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? ; *integral when neither part follows. */
static bool json_number(const char *s, size_t len, bool *integral)
{
    size_t i = 0;
    *integral = true;
    if (i < len && s[i] == '-')
        i++;
    if (i == len)
        return false;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        return false;
    }
    if (i < len && s[i] == '.') {
        *integral = false;
        size_t d = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        *integral = false;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t d = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    return i == len;
}

/* Whether an integral literal fits a signed 64-bit integer (what jansson holds). */
static bool fits_int64(const char *s, size_t len)
{
    bool neg = len > 0 && s[0] == '-';
    size_t digits = len - (neg ? 1 : 0);
    if (digits < 19)
        return true;
    if (digits > 19)
        return false;
    return memcmp(s + (neg ? 1 : 0), neg ? "9223372036854775808" : "9223372036854775807", 19) <= 0;
}

static void json_number_or_string(struct buf *out, const char *text, size_t len)
{
    bool integral;
    if (!json_number(text, len, &integral)) {
        pgout_json_string(out, text, len); /* NaN, Infinity, -Infinity: as row_to_json does */
        return;
    }
    buf_append(out, text, len);
    /* A numeric beyond 64 bits: jansson keeps numbers as long long or double,
     * so it goes in as a double rather than failing the whole row. */
    if (integral && !fits_int64(text, len))
        buf_append(out, ".0", 2);
}

/* ISO DateStyle "2024-01-02 03:04:05.678+05:30" -> "2024-01-02T03:04:05.678+05:30", "+00" -> "+00:00". */
static void json_timestamp(struct buf *out, const char *text, size_t len)
{
    const char *sp = memchr(text, ' ', len);
    if (len < 19 || sp == NULL || sp - text < 10) {
        pgout_json_string(out, text, len); /* infinity, -infinity */
        return;
    }
    char tmp[96];
    if (len > sizeof(tmp) - 4) {
        pgout_json_string(out, text, len);
        return;
    }
    memcpy(tmp, text, len);
    size_t n = len;
    tmp[sp - text] = 'T';
    /* The offset follows the seconds (and fraction): a sign after the 'T' part. */
    size_t t = (size_t)(sp - text) + 1;
    size_t z = t;
    while (z < n && tmp[z] != '+' && tmp[z] != '-' && tmp[z] != ' ')
        z++;
    if (z < n && tmp[z] != ' ') {
        size_t e = z + 1;
        while (e < n && tmp[e] >= '0' && tmp[e] <= '9')
            e++;
        if (e - z == 3 && (e == n || tmp[e] != ':')) {
            memmove(tmp + e + 3, tmp + e, n - e);
            memcpy(tmp + e, ":00", 3);
            n += 3;
        }
    }
    pgout_json_string(out, tmp, n);
}

/* The element type of the one-dimensional-or-more array types row_to_json
 * renders element by element (pg_type.dat's array OIDs); 0: not one of them.
 * Arrays of other types (inet, uuid, ...) are arrays of strings too, so the
 * element type only matters where the element's JSON is not a string. */
uint32_t pgout_array_elem(uint32_t typid)
{
    switch (typid) {
    case 1000: return PGOUT_BOOLOID;
    case 1005: return PGOUT_INT2OID;
    case 1007: return PGOUT_INT4OID;
    case 1016: return PGOUT_INT8OID;
    case 1028: return PGOUT_OIDOID;
    case 1021: return PGOUT_FLOAT4OID;
    case 1022: return PGOUT_FLOAT8OID;
    case 1231: return PGOUT_NUMERICOID;
    case 199: return PGOUT_JSONOID;
    case 3807: return PGOUT_JSONBOID;
    case 1115: return PGOUT_TIMESTAMPOID;
    case 1185: return PGOUT_TIMESTAMPTZOID;
    case 1009: /* text */
    case 1015: /* varchar */
    case 1014: /* bpchar */
    case 1002: /* char */
    case 1003: /* name */
    case 1182: /* date */
    case 1183: /* time */
    case 1270: /* timetz */
    case 1187: /* interval */
    case 2951: /* uuid */
    case 1041: /* inet */
    case 651:  /* cidr */
    case 1040: /* macaddr */
        return 25; /* their elements are JSON strings, like text's */
    default:
        return 0;
    }
}

#define ARRAY_MAX_DEPTH 6 /* MAXDIM */

static void array_skip_space(const char **pp, const char *end)
{
    const char *p = *pp;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f'))
        p++;
    *pp = p;
}

/* One brace level of array_out's text at *pp ('{' ... '}'), appended to out
 * as a JSON array; tmp holds one unescaped element at a time. Returns false
 * on text array_out would not have written (the caller then falls back). */
static bool array_level(struct buf *out, struct buf *tmp, uint32_t elem, const char **pp, const char *end, int depth)
{
    const char *p = *pp;
    if (p >= end || *p != '{' || depth > ARRAY_MAX_DEPTH)
        return false;
    p++;
    buf_append(out, "[", 1);
    array_skip_space(&p, end);
    if (p < end && *p == '}') {
        buf_append(out, "]", 1);
        *pp = p + 1;
        return true;
    }
    for (bool first = true;; first = false) {
        array_skip_space(&p, end);
        if (!first)
            buf_append(out, ",", 1);
        if (p < end && *p == '{') {
            if (!array_level(out, tmp, elem, &p, end, depth + 1))
                return false;
        } else if (p < end && *p == '"') {
            /* Quoted: backslash escapes the next character; "NULL" quoted is the string. */
            tmp->len = 0;
            for (p++; p < end && *p != '"'; p++) {
                if (*p == '\\' && ++p == end)
                    return false;
                buf_append(tmp, p, 1);
            }
            if (p == end)
                return false;
            p++;
            pgout_json_value(out, elem, tmp->data != NULL ? tmp->data : "", tmp->len);
        } else {
            /* Unquoted: up to the delimiter or the closing brace, surrounding blanks dropped. */
            tmp->len = 0;
            size_t kept = 0; /* tmp's length up to its last non-blank (or escaped) character */
            for (; p < end && *p != ',' && *p != '}'; p++) {
                if (*p == '{' || *p == '"')
                    return false;
                bool escaped = *p == '\\';
                if (escaped && ++p == end)
                    return false;
                buf_append(tmp, p, 1);
                if (escaped || !(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f'))
                    kept = tmp->len;
            }
            if (kept == 0)
                return false;
            if (kept == 4 && strncasecmp(tmp->data, "NULL", 4) == 0)
                buf_append(out, "null", 4);
            else
                pgout_json_value(out, elem, tmp->data, kept);
        }
        array_skip_space(&p, end);
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p < end && *p == '}') {
            p++;
            break;
        }
        return false;
    }
    buf_append(out, "]", 1);
    *pp = p;
    return true;
}

bool pgout_json_array(struct buf *out, uint32_t elem, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    size_t mark = out->len;
    /* "[0:2]={...}": bounds other than 1; row_to_json drops them, so do we. */
    if (p < end && *p == '[') {
        const char *eq = memchr(p, '=', len);
        if (eq == NULL)
            return false;
        p = eq + 1;
    }
    struct buf tmp = {0};
    bool ok = array_level(out, &tmp, elem, &p, end, 1);
    buf_free(&tmp);
    if (ok) {
        array_skip_space(&p, end);
        ok = p == end;
    }
    if (!ok)
        out->len = mark;
    return ok;
}

void pgout_json_value(struct buf *out, uint32_t typid, const char *text, size_t len)
{
    uint32_t elem = pgout_array_elem(typid);
    if (elem != 0 && pgout_json_array(out, elem, text, len))
        return;
    switch (typid) {
    case PGOUT_INT2OID:
    case PGOUT_INT4OID:
    case PGOUT_INT8OID:
    case PGOUT_OIDOID:
    case PGOUT_NUMERICOID:
    case PGOUT_FLOAT4OID:
    case PGOUT_FLOAT8OID:
        json_number_or_string(out, text, len);
        return;
    case PGOUT_BOOLOID:
        if (len == 1 && text[0] == 't')
            buf_append(out, "true", 4);
        else if (len == 1 && text[0] == 'f')
            buf_append(out, "false", 5);
        else
            pgout_json_string(out, text, len);
        return;
    case PGOUT_JSONOID:
    case PGOUT_JSONBOID:
        buf_append(out, text, len);
        return;
    case PGOUT_TIMESTAMPOID:
    case PGOUT_TIMESTAMPTZOID:
        json_timestamp(out, text, len);
        return;
    default:
        pgout_json_string(out, text, len);
        return;
    }
}
