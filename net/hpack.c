/* hpack.c - HPACK decoding (static and dynamic tables, Huffman) for HTTP/2 requests.
 *
 * The dynamic table keeps its entries' bytes in one buffer, oldest first,
 * addressed by virtual offsets that only grow (uint32 arithmetic, so they may
 * wrap): an insertion appends at _end, an eviction moves _start past the
 * oldest entry, and when the tail has no room the live bytes are moved to the
 * front once (_base becomes _start). The buffer is at most twice the table
 * size, which after the evictions an insertion needs always leaves room for
 * the entry, and each move is paid for by at least HPACK_TABLE_SIZE bytes
 * inserted since the last one. Entry descriptors sit in a fixed ring of
 * HPACK_MAX_ENTRIES (an entry costs at least 32 octets of the 4096).
 *
 * Huffman strings are decoded 4 bits at a time by a table built once from the
 * code of RFC 7541 Appendix B: each of the code tree's 256 internal nodes has
 * 16 transitions, each saying which node it lands on, whether it completed a
 * symbol (at most one: codes are 5 bits or longer) and whether stopping there
 * is valid (the bits since the last symbol are all ones and fewer than 8).
 * Reaching EOS leads to a 257th state that only leads to itself and is never
 * valid, so the loop has no error branch: the verdict is read at the end.
 */
#include "net/hpack.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* ---------- Huffman ---------- */

/* RFC 7541 Appendix B: the code of each symbol (0..255, then EOS), right-aligned, and its length in bits. */
static const struct {
    uint32_t code;
    uint8_t bits;
} huff_code[257] = {
    {0x1ff8, 13},    {0x7fffd8, 23},   {0xfffffe2, 28}, {0xfffffe3, 28},  {0xfffffe4, 28},  {0xfffffe5, 28}, {0xfffffe6, 28},
    {0xfffffe7, 28}, {0xfffffe8, 28},  {0xffffea, 24},  {0x3ffffffc, 30}, {0xfffffe9, 28},  {0xfffffea, 28}, {0x3ffffffd, 30},
    {0xfffffeb, 28}, {0xfffffec, 28},  {0xfffffed, 28}, {0xfffffee, 28},  {0xfffffef, 28},  {0xffffff0, 28}, {0xffffff1, 28},
    {0xffffff2, 28}, {0x3ffffffe, 30}, {0xffffff3, 28}, {0xffffff4, 28},  {0xffffff5, 28},  {0xffffff6, 28}, {0xffffff7, 28},
    {0xffffff8, 28}, {0xffffff9, 28},  {0xffffffa, 28}, {0xffffffb, 28},  {0x14, 6},        {0x3f8, 10},     {0x3f9, 10},
    {0xffa, 12},     {0x1ff9, 13},     {0x15, 6},       {0xf8, 8},        {0x7fa, 11},      {0x3fa, 10},     {0x3fb, 10},
    {0xf9, 8},       {0x7fb, 11},      {0xfa, 8},       {0x16, 6},        {0x17, 6},        {0x18, 6},       {0x0, 5},
    {0x1, 5},        {0x2, 5},         {0x19, 6},       {0x1a, 6},        {0x1b, 6},        {0x1c, 6},       {0x1d, 6},
    {0x1e, 6},       {0x1f, 6},        {0x5c, 7},       {0xfb, 8},        {0x7ffc, 15},     {0x20, 6},       {0xffb, 12},
    {0x3fc, 10},     {0x1ffa, 13},     {0x21, 6},       {0x5d, 7},        {0x5e, 7},        {0x5f, 7},       {0x60, 7},
    {0x61, 7},       {0x62, 7},        {0x63, 7},       {0x64, 7},        {0x65, 7},        {0x66, 7},       {0x67, 7},
    {0x68, 7},       {0x69, 7},        {0x6a, 7},       {0x6b, 7},        {0x6c, 7},        {0x6d, 7},       {0x6e, 7},
    {0x6f, 7},       {0x70, 7},        {0x71, 7},       {0x72, 7},        {0xfc, 8},        {0x73, 7},       {0xfd, 8},
    {0x1ffb, 13},    {0x7fff0, 19},    {0x1ffc, 13},    {0x3ffc, 14},     {0x22, 6},        {0x7ffd, 15},    {0x3, 5},
    {0x23, 6},       {0x4, 5},         {0x24, 6},       {0x5, 5},         {0x25, 6},        {0x26, 6},       {0x27, 6},
    {0x6, 5},        {0x74, 7},        {0x75, 7},       {0x28, 6},        {0x29, 6},        {0x2a, 6},       {0x7, 5},
    {0x2b, 6},       {0x76, 7},        {0x2c, 6},       {0x8, 5},         {0x9, 5},         {0x2d, 6},       {0x77, 7},
    {0x78, 7},       {0x79, 7},        {0x7a, 7},       {0x7b, 7},        {0x7ffe, 15},     {0x7fc, 11},     {0x3ffd, 14},
    {0x1ffd, 13},    {0xffffffc, 28},  {0xfffe6, 20},   {0x3fffd2, 22},   {0xfffe7, 20},    {0xfffe8, 20},   {0x3fffd3, 22},
    {0x3fffd4, 22},  {0x3fffd5, 22},   {0x7fffd9, 23},  {0x3fffd6, 22},   {0x7fffda, 23},   {0x7fffdb, 23},  {0x7fffdc, 23},
    {0x7fffdd, 23},  {0x7fffde, 23},   {0xffffeb, 24},  {0x7fffdf, 23},   {0xffffec, 24},   {0xffffed, 24},  {0x3fffd7, 22},
    {0x7fffe0, 23},  {0xffffee, 24},   {0x7fffe1, 23},  {0x7fffe2, 23},   {0x7fffe3, 23},   {0x7fffe4, 23},  {0x1fffdc, 21},
    {0x3fffd8, 22},  {0x7fffe5, 23},   {0x3fffd9, 22},  {0x7fffe6, 23},   {0x7fffe7, 23},   {0xffffef, 24},  {0x3fffda, 22},
    {0x1fffdd, 21},  {0xfffe9, 20},    {0x3fffdb, 22},  {0x3fffdc, 22},   {0x7fffe8, 23},   {0x7fffe9, 23},  {0x1fffde, 21},
    {0x7fffea, 23},  {0x3fffdd, 22},   {0x3fffde, 22},  {0xfffff0, 24},   {0x1fffdf, 21},   {0x3fffdf, 22},  {0x7fffeb, 23},
    {0x7fffec, 23},  {0x1fffe0, 21},   {0x1fffe1, 21},  {0x3fffe0, 22},   {0x1fffe2, 21},   {0x7fffed, 23},  {0x3fffe1, 22},
    {0x7fffee, 23},  {0x7fffef, 23},   {0xfffea, 20},   {0x3fffe2, 22},   {0x3fffe3, 22},   {0x3fffe4, 22},  {0x7ffff0, 23},
    {0x3fffe5, 22},  {0x3fffe6, 22},   {0x7ffff1, 23},  {0x3ffffe0, 26},  {0x3ffffe1, 26},  {0xfffeb, 20},   {0x7fff1, 19},
    {0x3fffe7, 22},  {0x7ffff2, 23},   {0x3fffe8, 22},  {0x1ffffec, 25},  {0x3ffffe2, 26},  {0x3ffffe3, 26}, {0x3ffffe4, 26},
    {0x7ffffde, 27}, {0x7ffffdf, 27},  {0x3ffffe5, 26}, {0xfffff1, 24},   {0x1ffffed, 25},  {0x7fff2, 19},   {0x1fffe3, 21},
    {0x3ffffe6, 26}, {0x7ffffe0, 27},  {0x7ffffe1, 27}, {0x3ffffe7, 26},  {0x7ffffe2, 27},  {0xfffff2, 24},  {0x1fffe4, 21},
    {0x1fffe5, 21},  {0x3ffffe8, 26},  {0x3ffffe9, 26}, {0xffffffd, 28},  {0x7ffffe3, 27},  {0x7ffffe4, 27}, {0x7ffffe5, 27},
    {0xfffec, 20},   {0xfffff3, 24},   {0xfffed, 20},   {0x1fffe6, 21},   {0x3fffe9, 22},   {0x1fffe7, 21},  {0x1fffe8, 21},
    {0x7ffff3, 23},  {0x3fffea, 22},   {0x3fffeb, 22},  {0x1ffffee, 25},  {0x1ffffef, 25},  {0xfffff4, 24},  {0xfffff5, 24},
    {0x3ffffea, 26}, {0x7ffff4, 23},   {0x3ffffeb, 26}, {0x7ffffe6, 27},  {0x3ffffec, 26},  {0x3ffffed, 26}, {0x7ffffe7, 27},
    {0x7ffffe8, 27}, {0x7ffffe9, 27},  {0x7ffffea, 27}, {0x7ffffeb, 27},  {0xffffffe, 28},  {0x7ffffec, 27}, {0x7ffffed, 27},
    {0x7ffffee, 27}, {0x7ffffef, 27},  {0x7fffff0, 27}, {0x3ffffee, 26},  {0x3fffffff, 30},
};

/* A transition, packed: bits 0-8 the state reached (HUFF_SINK after EOS),
 * 16-23 the symbol completed, bit 24 whether one was, bit 25 whether the
 * string may end here. */
#define HUFF_SINK 256
#define HUFF_SYM_SHIFT 16
#define HUFF_EMIT (1u << 24)
#define HUFF_ACCEPT (1u << 25)

static uint32_t huff_fsm[(HUFF_SINK + 1) * 16]; /* written once by huff_build, read-only after */
static pthread_once_t huff_once = PTHREAD_ONCE_INIT;

#define HUFF_LEAF 256 /* child values >= HUFF_LEAF are leaves: HUFF_LEAF + symbol */

static void huff_build(void)
{
    uint16_t child[256][2];
    uint8_t depth[256];
    bool ones[256]; /* the path from the root to this node is all 1 bits */
    memset(child, 0xff, sizeof(child));
    unsigned nodes = 1;
    depth[0] = 0;
    ones[0] = true;
    for (unsigned sym = 0; sym < 257; sym++) {
        uint32_t code = huff_code[sym].code;
        unsigned bits = huff_code[sym].bits, n = 0;
        for (unsigned i = bits - 1; i > 0; i--) {
            unsigned bit = code >> i & 1;
            if (child[n][bit] == 0xffff) {
                if (nodes == 256)
                    abort(); /* not a complete prefix code: the table above is wrong */
                child[n][bit] = (uint16_t)nodes;
                depth[nodes] = (uint8_t)(depth[n] + 1);
                ones[nodes] = ones[n] && bit;
                nodes++;
            }
            n = child[n][bit];
        }
        child[n][code & 1] = (uint16_t)(HUFF_LEAF + sym);
    }
    for (unsigned n = 0; n < 256; n++) {
        for (unsigned v = 0; v < 16; v++) {
            unsigned cur = n;
            uint32_t step = 0;
            for (int i = 3; i >= 0; i--) {
                unsigned next = child[cur][v >> i & 1];
                if (next == HUFF_LEAF + 256) { /* EOS: no way back */
                    cur = HUFF_SINK;
                    step = 0;
                    break;
                }
                if (next >= HUFF_LEAF) {
                    step = HUFF_EMIT | (next - HUFF_LEAF) << HUFF_SYM_SHIFT;
                    cur = 0;
                } else {
                    cur = next;
                }
            }
            if (cur != HUFF_SINK && ones[cur] && depth[cur] <= 7)
                step |= HUFF_ACCEPT;
            huff_fsm[n * 16 + v] = step | cur;
        }
    }
    for (unsigned v = 0; v < 16; v++)
        huff_fsm[HUFF_SINK * 16 + v] = HUFF_SINK;
}

/* The decoder proper; huff_build must have run. */
static ssize_t huff_decode(const uint8_t *in, size_t len, char *out)
{
    char *o = out;
    uint32_t step = HUFF_ACCEPT; /* state 0 (the root); an empty string is valid */
    for (size_t i = 0; i < len; i++) {
        /* Always store the symbol, advance only when there was one. */
        step = huff_fsm[(step & 0x1ff) * 16 + (in[i] >> 4)];
        *o = (char)(step >> HUFF_SYM_SHIFT);
        o += step >> 24 & 1;
        step = huff_fsm[(step & 0x1ff) * 16 + (in[i] & 15)];
        *o = (char)(step >> HUFF_SYM_SHIFT);
        o += step >> 24 & 1;
    }
    return (step & HUFF_ACCEPT) ? o - out : -1;
}

ssize_t hpack_huffman_decode(const uint8_t *in, size_t len, char *out)
{
    pthread_once(&huff_once, huff_build);
    return huff_decode(in, len, out);
}

/* ---------- names and values ---------- */

/* Characters of a field name: RFC 9110 tchar without uppercase letters (RFC 9113 8.2.1). */
static const uint8_t name_char[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1,
    ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0'] = 1, ['1'] = 1,  ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,  ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,
    ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1,  ['z'] = 1,
};

#define IS(lit) (len == sizeof(lit) - 1 && memcmp(name, lit, sizeof(lit) - 1) == 0)

uint8_t hpack_name_token(const char *name, size_t len)
{
    if (len == 0)
        return HPACK_TOK_INVALID;
    if (name[0] == ':') {
        if (IS(":path"))
            return HPACK_TOK_PATH;
        if (IS(":method"))
            return HPACK_TOK_METHOD;
        if (IS(":scheme"))
            return HPACK_TOK_SCHEME;
        if (IS(":authority"))
            return HPACK_TOK_AUTHORITY;
        return HPACK_TOK_PSEUDO_OTHER;
    }
    for (size_t i = 0; i < len; i++)
        if (!name_char[(uint8_t)name[i]])
            return HPACK_TOK_INVALID;
    switch (len) {
    case 2:
        return IS("te") ? HPACK_TOK_TE : HPACK_TOK_OTHER;
    case 4:
        return IS("host") ? HPACK_TOK_HOST : HPACK_TOK_OTHER;
    case 7:
        return IS("user-id") ? HPACK_TOK_USER_ID : IS("upgrade") ? HPACK_TOK_CONNECTION_SPECIFIC : HPACK_TOK_OTHER;
    case 10:
        return IS("connection") || IS("keep-alive") ? HPACK_TOK_CONNECTION_SPECIFIC : HPACK_TOK_OTHER;
    case 11:
        return IS("traceparent") ? HPACK_TOK_TRACEPARENT : HPACK_TOK_OTHER;
    case 12:
        return IS("content-type")   ? HPACK_TOK_CONTENT_TYPE
               : IS("grpc-timeout") ? HPACK_TOK_GRPC_TIMEOUT
               : IS("x-request-id") ? HPACK_TOK_REQUEST_ID
                                    : HPACK_TOK_OTHER;
    case 14:
        return IS("content-length") ? HPACK_TOK_CONTENT_LENGTH : HPACK_TOK_OTHER;
    case 16:
        return IS("proxy-connection") ? HPACK_TOK_CONNECTION_SPECIFIC : HPACK_TOK_OTHER;
    case 17:
        return IS("transfer-encoding") ? HPACK_TOK_CONNECTION_SPECIFIC : HPACK_TOK_OTHER;
    default:
        return HPACK_TOK_OTHER;
    }
}

#undef IS

/* Octet classes for values: bit 0 never allowed (NUL, CR, LF), bit 1 not visible (controls, SP, DEL). */
static const uint8_t value_class[256] = {
    [0] = 3,  [1] = 2,  [2] = 2,  [3] = 2,  [4] = 2,  [5] = 2,  [6] = 2,  [7] = 2,  [8] = 2,   [9] = 2,    [10] = 3, [11] = 2,
    [12] = 2, [13] = 3, [14] = 2, [15] = 2, [16] = 2, [17] = 2, [18] = 2, [19] = 2, [20] = 2,  [21] = 2,   [22] = 2, [23] = 2,
    [24] = 2, [25] = 2, [26] = 2, [27] = 2, [28] = 2, [29] = 2, [30] = 2, [31] = 2, [' '] = 2, [0x7f] = 2,
};

static inline void check_value(const char *value, size_t len, bool *ok, bool *visible)
{
    unsigned acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= value_class[(uint8_t)value[i]];
    *visible = !(acc & 2);
    *ok = !(acc & 1);
    if (len > 0 && (acc & 2)) { /* only then can it start or end with SP or HTAB */
        uint8_t first = (uint8_t)value[0], last = (uint8_t)value[len - 1];
        if (first == ' ' || first == '\t' || last == ' ' || last == '\t')
            *ok = false;
    }
}

void hpack_check_value(const char *value, size_t len, bool *ok, bool *visible)
{
    check_value(value, len, ok, visible);
}

/* ---------- the static table (RFC 7541 Appendix A) ---------- */

#define S(n, v, tok)                                                                                                               \
    {                                                                                                                              \
        n, v, sizeof(n) - 1, sizeof(v) - 1, tok                                                                                    \
    }

struct static_entry {
    const char *name, *value;
    uint8_t name_len, value_len, token;
};

static const struct static_entry static_table[HPACK_STATIC_ENTRIES] = {
    S(":authority", "", HPACK_TOK_AUTHORITY),
    S(":method", "GET", HPACK_TOK_METHOD),
    S(":method", "POST", HPACK_TOK_METHOD),
    S(":path", "/", HPACK_TOK_PATH),
    S(":path", "/index.html", HPACK_TOK_PATH),
    S(":scheme", "http", HPACK_TOK_SCHEME),
    S(":scheme", "https", HPACK_TOK_SCHEME),
    S(":status", "200", HPACK_TOK_PSEUDO_OTHER),
    S(":status", "204", HPACK_TOK_PSEUDO_OTHER),
    S(":status", "206", HPACK_TOK_PSEUDO_OTHER),
    S(":status", "304", HPACK_TOK_PSEUDO_OTHER),
    S(":status", "400", HPACK_TOK_PSEUDO_OTHER),
    S(":status", "404", HPACK_TOK_PSEUDO_OTHER),
    S(":status", "500", HPACK_TOK_PSEUDO_OTHER),
    S("accept-charset", "", HPACK_TOK_OTHER),
    S("accept-encoding", "gzip, deflate", HPACK_TOK_OTHER),
    S("accept-language", "", HPACK_TOK_OTHER),
    S("accept-ranges", "", HPACK_TOK_OTHER),
    S("accept", "", HPACK_TOK_OTHER),
    S("access-control-allow-origin", "", HPACK_TOK_OTHER),
    S("age", "", HPACK_TOK_OTHER),
    S("allow", "", HPACK_TOK_OTHER),
    S("authorization", "", HPACK_TOK_OTHER),
    S("cache-control", "", HPACK_TOK_OTHER),
    S("content-disposition", "", HPACK_TOK_OTHER),
    S("content-encoding", "", HPACK_TOK_OTHER),
    S("content-language", "", HPACK_TOK_OTHER),
    S("content-length", "", HPACK_TOK_CONTENT_LENGTH),
    S("content-location", "", HPACK_TOK_OTHER),
    S("content-range", "", HPACK_TOK_OTHER),
    S("content-type", "", HPACK_TOK_CONTENT_TYPE),
    S("cookie", "", HPACK_TOK_OTHER),
    S("date", "", HPACK_TOK_OTHER),
    S("etag", "", HPACK_TOK_OTHER),
    S("expect", "", HPACK_TOK_OTHER),
    S("expires", "", HPACK_TOK_OTHER),
    S("from", "", HPACK_TOK_OTHER),
    S("host", "", HPACK_TOK_HOST),
    S("if-match", "", HPACK_TOK_OTHER),
    S("if-modified-since", "", HPACK_TOK_OTHER),
    S("if-none-match", "", HPACK_TOK_OTHER),
    S("if-range", "", HPACK_TOK_OTHER),
    S("if-unmodified-since", "", HPACK_TOK_OTHER),
    S("last-modified", "", HPACK_TOK_OTHER),
    S("link", "", HPACK_TOK_OTHER),
    S("location", "", HPACK_TOK_OTHER),
    S("max-forwards", "", HPACK_TOK_OTHER),
    S("proxy-authenticate", "", HPACK_TOK_OTHER),
    S("proxy-authorization", "", HPACK_TOK_OTHER),
    S("range", "", HPACK_TOK_OTHER),
    S("referer", "", HPACK_TOK_OTHER),
    S("refresh", "", HPACK_TOK_OTHER),
    S("retry-after", "", HPACK_TOK_OTHER),
    S("server", "", HPACK_TOK_OTHER),
    S("set-cookie", "", HPACK_TOK_OTHER),
    S("strict-transport-security", "", HPACK_TOK_OTHER),
    S("transfer-encoding", "", HPACK_TOK_CONNECTION_SPECIFIC),
    S("user-agent", "", HPACK_TOK_OTHER),
    S("vary", "", HPACK_TOK_OTHER),
    S("via", "", HPACK_TOK_OTHER),
    S("www-authenticate", "", HPACK_TOK_OTHER),
};

#undef S

/* ---------- the dynamic table ---------- */

#define ENT_MASK (HPACK_MAX_ENTRIES - 1)
_Static_assert((HPACK_MAX_ENTRIES & ENT_MASK) == 0, "the entry ring is a power of two");
#define MEM_MAX (2u * HPACK_TABLE_SIZE)
#define MEM_MIN 512u

void hpack_decoder_init(struct hpack_decoder *d)
{
    pthread_once(&huff_once, huff_build);
    memset(d, 0, sizeof(*d));
    d->_max_size = HPACK_TABLE_SIZE;
}

void hpack_decoder_free(struct hpack_decoder *d)
{
    free(d->_mem);
    buf_free(&d->_tmp);
    memset(d, 0, sizeof(*d));
}

void hpack_decoder_trim(struct hpack_decoder *d)
{
    if (d->_tmp.cap > 4096)
        buf_free(&d->_tmp);
}

static inline const struct hpack_entry *entry(const struct hpack_decoder *d, unsigned i)
{
    return &d->_ent[(d->_head - 1 - i) & ENT_MASK];
}

static void evict_oldest(struct hpack_decoder *d)
{
    const struct hpack_entry *e = entry(d, d->_count - 1);
    d->_size -= (uint32_t)e->name_len + e->value_len + 32;
    d->_count--;
    d->_start = d->_count > 0 ? entry(d, d->_count - 1)->off : d->_end;
}

/* Evicts until size more octets fit under the current maximum. */
static void evict_for(struct hpack_decoder *d, uint32_t size)
{
    while (d->_count > 0 && d->_size + size > d->_max_size)
        evict_oldest(d);
}

/* Inserts a field (RFC 7541 4.4). name must not point into the table: the
 * evictions and the move below may overwrite it (the caller copies it out). */
static void insert(struct hpack_decoder *d, const struct hpack_field *f)
{
    uint32_t need = f->name_len + f->value_len, size = need + 32;
    if (size > d->_max_size) { /* larger than the table: it empties, nothing is added */
        while (d->_count > 0)
            evict_oldest(d);
        return;
    }
    evict_for(d, size);
    if (d->_mem == NULL) { /* the first insertion (even of an empty field: _mem is never NULL after) */
        uint32_t cap = MEM_MIN;
        while (cap < 2 * need && cap < MEM_MAX)
            cap *= 2;
        d->_mem = xmalloc(cap);
        d->_mem_cap = cap;
        d->_base = d->_start = d->_end;
    } else if (d->_end - d->_base + need > d->_mem_cap) {
        uint32_t live = d->_end - d->_start;
        if (live + need <= d->_mem_cap / 2 || d->_mem_cap == MEM_MAX) {
            memmove(d->_mem, d->_mem + (d->_start - d->_base), live);
        } else {
            uint32_t cap = d->_mem_cap;
            while (cap < 2 * (live + need) && cap < MEM_MAX)
                cap *= 2;
            char *mem = xmalloc(cap);
            memcpy(mem, d->_mem + (d->_start - d->_base), live);
            free(d->_mem);
            d->_mem = mem;
            d->_mem_cap = cap;
        }
        d->_base = d->_start;
    }
    char *at = d->_mem + (d->_end - d->_base);
    memcpy(at, f->name, f->name_len);
    memcpy(at + f->name_len, f->value, f->value_len);
    d->_ent[d->_head & ENT_MASK] = (struct hpack_entry){
        .off = d->_end,
        .name_len = (uint16_t)f->name_len,
        .value_len = (uint16_t)f->value_len,
        .token = f->token,
        .value_ok = f->value_ok,
        .value_visible = f->value_visible,
    };
    if (d->_count == 0)
        d->_start = d->_end;
    d->_head++;
    d->_count++;
    d->_end += need;
    d->_size += size;
}

/* ---------- primitives ---------- */

/* An integer with an n-bit prefix (RFC 7541 5.1), up to 2^32-1 in at most
 * five continuation octets (nghttp2's limits, so the two agree on what is valid). */
static inline int get_int(struct hpack_cursor *cur, unsigned n, uint32_t *out)
{
    uint32_t max = (1u << n) - 1;
    uint64_t v = *cur->p++ & max;
    if (v == max) {
        for (unsigned shift = 0;; shift += 7) {
            if (cur->p == cur->end || shift > 28)
                return -1;
            uint8_t b = *cur->p++;
            v += (uint64_t)(b & 0x7f) << shift;
            if (v > UINT32_MAX)
                return -1;
            if (!(b & 0x80))
                break;
        }
    }
    *out = (uint32_t)v;
    return 0;
}

/* A string literal (RFC 7541 5.2): points into the block, or is decoded onto d->_tmp (its offset in *tmp_off). */
static int get_string(struct hpack_decoder *d, struct hpack_cursor *cur, const char **s, uint32_t *len, size_t *tmp_off)
{
    if (cur->p == cur->end)
        return -1;
    bool huff = *cur->p & 0x80;
    uint32_t n;
    if (get_int(cur, 7, &n) != 0 || n > (size_t)(cur->end - cur->p))
        return -1;
    const uint8_t *raw = cur->p;
    cur->p += n;
    *tmp_off = SIZE_MAX;
    if (!huff) {
        *s = (const char *)raw;
        *len = n;
        return 0;
    }
    buf_reserve(&d->_tmp, hpack_huffman_max(n));
    ssize_t out = huff_decode(raw, n, d->_tmp.data + d->_tmp.len);
    if (out < 0)
        return -1;
    *tmp_off = d->_tmp.len;
    *len = (uint32_t)out;
    d->_tmp.len += (size_t)out;
    return 0;
}

/* Fills f's name from table index idx (1-based, static then dynamic). */
static inline __attribute__((always_inline)) int get_indexed(const struct hpack_decoder *d, uint32_t idx, struct hpack_field *f,
                                                             bool with_value)
{
    if (idx == 0)
        return -1;
    if (idx <= HPACK_STATIC_ENTRIES) {
        const struct static_entry *e = &static_table[idx - 1];
        f->name = e->name;
        f->name_len = e->name_len;
        f->token = e->token;
        if (with_value) {
            f->value = e->value;
            f->value_len = e->value_len;
            f->value_ok = true;
            f->value_visible = idx != 16; /* accept-encoding "gzip, deflate" is the one static value with a space */
        }
        return 0;
    }
    idx -= HPACK_STATIC_ENTRIES + 1;
    if (idx >= d->_count)
        return -1;
    const struct hpack_entry *e = entry(d, idx);
    const char *at = d->_mem + (e->off - d->_base);
    f->name = at;
    f->name_len = e->name_len;
    f->token = e->token;
    if (with_value) {
        f->value = at + e->name_len;
        f->value_len = e->value_len;
        f->value_ok = e->value_ok;
        f->value_visible = e->value_visible;
    }
    return 0;
}

size_t hpack_table_size(const struct hpack_decoder *d)
{
    return d->_size;
}

unsigned hpack_table_count(const struct hpack_decoder *d)
{
    return d->_count;
}

bool hpack_table_entry(const struct hpack_decoder *d, unsigned i, struct hpack_field *f)
{
    return i < d->_count && get_indexed(d, HPACK_STATIC_ENTRIES + 1 + i, f, true) == 0;
}

/* ---------- decoding ---------- */

/* A literal (6.2): with incremental indexing (01), without (0000) or never
 * indexed (0001). Out of line: hpack_decode's loop stays small for indexed fields. */
static __attribute__((noinline)) int decode_literal(struct hpack_decoder *d, struct hpack_cursor *cur, struct hpack_field *f)
{
    bool indexing = *cur->p & 0x40;
    uint32_t idx;
    if (get_int(cur, indexing ? 6 : 4, &idx) != 0)
        return -1;
    d->_tmp.len = 0;
    size_t name_off = SIZE_MAX, value_off;
    bool name_in_table = false;
    if (idx != 0) {
        if (get_indexed(d, idx, f, false) != 0)
            return -1;
        name_in_table = idx > HPACK_STATIC_ENTRIES;
    } else {
        if (get_string(d, cur, &f->name, &f->name_len, &name_off) != 0)
            return -1;
    }
    if (indexing && name_in_table) {
        /* the entry it names may be evicted by this insertion (RFC 7541 4.4): keep a copy */
        name_off = d->_tmp.len;
        buf_reserve(&d->_tmp, f->name_len + 1); /* never a memcpy to NULL, even for an empty name */
        memcpy(d->_tmp.data + d->_tmp.len, f->name, f->name_len);
        d->_tmp.len += f->name_len;
    }
    if (get_string(d, cur, &f->value, &f->value_len, &value_off) != 0)
        return -1;
    /* _tmp may have moved while the value was decoded: point at it only now */
    if (name_off != SIZE_MAX)
        f->name = d->_tmp.data + name_off;
    if (value_off != SIZE_MAX)
        f->value = d->_tmp.data + value_off;
    if (idx == 0)
        f->token = hpack_name_token(f->name, f->name_len);
    check_value(f->value, f->value_len, &f->value_ok, &f->value_visible);
    if (indexing)
        insert(d, f);
    return 1;
}

int hpack_decode(struct hpack_decoder *d, struct hpack_cursor *cur, struct hpack_field *f)
{
    while (cur->p != cur->end) {
        uint8_t b = *cur->p;
        uint32_t idx;
        if (b & 0x80) { /* indexed field (6.1) */
            cur->field_seen = true;
            if (get_int(cur, 7, &idx) != 0 || get_indexed(d, idx, f, true) != 0)
                return -1;
            return 1;
        }
        if ((b & 0xe0) != 0x20) {
            cur->field_seen = true;
            return decode_literal(d, cur, f);
        }
        /* dynamic table size update (6.3): only before the first field */
        if (cur->field_seen || get_int(cur, 5, &idx) != 0 || idx > HPACK_TABLE_SIZE)
            return -1;
        d->_max_size = idx;
        evict_for(d, 0);
    }
    return 0;
}

/* ---------- the response encoder ---------- */

/* Lengths of the static names hpack_encode_field may be given. */
static size_t static_name_len(enum hpack_static_name name)
{
    switch (name) {
    case HPACK_NAME_ALLOW: return 5;
    case HPACK_NAME_CONTENT_LENGTH: return 14;
    case HPACK_NAME_CONTENT_TYPE: return 12;
    case HPACK_NAME_DATE: return 4;
    case HPACK_NAME_SERVER: return 6;
    }
    return 0;
}

void hpack_encoder_init(struct hpack_encoder *e)
{
    memset(e, 0, sizeof(*e));
    e->cap = HPACK_TABLE_SIZE;
}

void hpack_encoder_set_peer_max(struct hpack_encoder *e, uint32_t v)
{
    uint32_t cap = v < HPACK_TABLE_SIZE ? v : HPACK_TABLE_SIZE;
    if (cap != e->cap) {
        e->cap = cap;
        e->update_due = true;
    }
}

/* Drops the oldest entry from the model, as the peer's decoder does (4.4). */
static void enc_evict(struct hpack_encoder *e)
{
    e->size -= e->e[0].size;
    memmove(&e->e[0], &e->e[1], sizeof(e->e[0]) * (e->n - 1));
    e->n--;
}

size_t hpack_encoder_begin(struct hpack_encoder *e, uint8_t *out)
{
    /* Room for the (up to 3) insertions of this block, or a changed cap:
     * empty the peer's table with an update to 0, then announce the size we use. */
    if (!e->update_due && e->n + 3 <= HPACK_ENC_ENTRIES)
        return 0;
    size_t n = 0;
    if (e->n > 0 && e->cap != 0)
        n += hpack_encode_int(out, 0x20, 5, 0); /* evicts everything ... */
    n += hpack_encode_int(out + n, 0x20, 5, e->cap); /* ... then the size we use (always said after a change) */
    e->n = 0;
    e->size = 0;
    e->update_due = false;
    return n;
}

size_t hpack_encode_field(struct hpack_encoder *e, uint8_t *out, enum hpack_static_name name, uint64_t key,
                          const char *value, size_t len, bool index)
{
    if (index) {
        for (unsigned i = e->n; i-- > 0;)
            if (e->e[i].name == name && e->e[i].key == key) /* dynamic index: 62 is the newest */
                return hpack_encode_int(out, 0x80, 7, (uint32_t)(HPACK_STATIC_ENTRIES + e->n - i));
        size_t esize = static_name_len(name) + len + 32;
        if (esize > e->cap || e->n == HPACK_ENC_ENTRIES)
            index = false;
        else {
            while (e->size + esize > e->cap)
                enc_evict(e);
            e->e[e->n].key = key;
            e->e[e->n].size = (uint16_t)esize;
            e->e[e->n].name = (uint8_t)name;
            e->n++;
            e->size += (uint32_t)esize;
        }
    }
    /* Literal with incremental indexing (6.2.1, 6-bit index) or without indexing (6.2.2, 4-bit). */
    size_t n = index ? hpack_encode_int(out, 0x40, 6, name) : hpack_encode_int(out, 0x00, 4, name);
    n += hpack_encode_int(out + n, 0, 7, (uint32_t)len);
    memcpy(out + n, value, len);
    return n + len;
}
