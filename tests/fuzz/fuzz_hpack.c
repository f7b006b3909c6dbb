/* fuzz_hpack.c - libFuzzer target for net/hpack.c, checked against nghttp2's decoder: for any sequence of header
 * blocks sharing one dynamic table, both accept or both reject each block, and accepted blocks decode to the same
 * fields; never a crash, an over-read or a leak.
 * Input: blocks, each preceded by its length (one octet).
 * Build: cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DRINGD_FUZZ=ON -DRINGD_TESTS=OFF && cmake --build build-fuzz --target
 * fuzz_hpack Run:   build-fuzz/fuzz_hpack -max_total_time=60 tests/fuzz/corpus/hpack */
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/hpack.h"

/* nghttp2's verdict on one block; its fields are appended to out as name\0value\0. Returns 0 or -1. */
static int nghttp2_decode(nghttp2_hd_inflater *inf, const uint8_t *in, size_t len, struct buf *out)
{
    for (;;) {
        nghttp2_nv nv;
        int flags = 0;
        ssize_t rv = nghttp2_hd_inflate_hd2(inf, &nv, &flags, in, len, 1);
        if (rv < 0)
            return -1;
        in += rv;
        len -= (size_t)rv;
        if (flags & NGHTTP2_HD_INFLATE_EMIT) {
            buf_append(out, nv.name, nv.namelen);
            buf_append(out, "", 1);
            buf_append(out, nv.value, nv.valuelen);
            buf_append(out, "", 1);
        }
        if (flags & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(inf);
            return 0;
        }
        if (rv == 0 && len == 0)
            return -1; /* cannot happen with in_final: nghttp2 reports an incomplete block as an error */
    }
}

static int ours_decode(struct hpack_decoder *d, const uint8_t *in, size_t len, struct buf *out)
{
    struct hpack_cursor cur;
    hpack_cursor_init(&cur, in, len);
    struct hpack_field f;
    int rv;
    while ((rv = hpack_decode(d, &cur, &f)) > 0) {
        if (f.token != hpack_name_token(f.name, f.name_len))
            abort(); /* a name's token is what its bytes say, wherever the name came from */
        bool ok, visible;
        hpack_check_value(f.value, f.value_len, &ok, &visible);
        if (ok != f.value_ok || visible != f.value_visible)
            abort();
        buf_append(out, f.name, f.name_len);
        buf_append(out, "", 1);
        buf_append(out, f.value, f.value_len);
        buf_append(out, "", 1);
    }
    if (hpack_table_size(d) > HPACK_TABLE_SIZE)
        abort();
    return rv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nghttp2_hd_inflater *inf;
    if (nghttp2_hd_inflate_new(&inf) != 0)
        abort();
    struct hpack_decoder d;
    hpack_decoder_init(&d);
    struct buf a = {0}, b = {0};
    size_t off = 0;
    while (off < size) {
        size_t len = data[off++];
        if (len > size - off)
            len = size - off;
        /* An exact-size heap copy: ASan flags any read past the block. */
        uint8_t *block = malloc(len ? len : 1);
        memcpy(block, data + off, len);
        off += len;
        a.len = b.len = 0;
        int ra = ours_decode(&d, block, len, &a);
        int rb = nghttp2_decode(inf, block, len, &b);
        free(block);
        if ((ra < 0) != (rb < 0))
            abort(); /* one decoder accepts what the other rejects */
        if (ra < 0)
            break; /* a COMPRESSION_ERROR ends the connection: the tables are no longer defined */
        if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
            abort();
    }
    buf_free(&a);
    buf_free(&b);
    hpack_decoder_free(&d);
    nghttp2_hd_inflate_del(inf);
    return 0;
}
