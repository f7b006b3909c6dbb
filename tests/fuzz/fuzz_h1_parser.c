/* fuzz_h1_parser.c - libFuzzer target for net/h1_parser.c: any bytes, any split, never a crash or an over-read,
 * and a split never changes the verdict (a prefix is incomplete or gets the same error).
 * Build: cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DRINGD_FUZZ=ON && cmake --build build-fuzz --target fuzz_h1_parser
 * Run:   build-fuzz/fuzz_h1_parser -max_total_time=60 tests/fuzz/corpus/h1 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/h1_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy: ASan flags any read past the end. */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    struct h1_request req;
    int whole = h1_parse(buf, size, &req);
    if (whole > 0 && (size_t)whole > size)
        abort();
    if (size > 0) {
        size_t cut = data[0] % size;
        int part = h1_parse(buf, cut, &req);
        if (part > 0 && whole != part)
            abort(); /* a complete head in a prefix is the same head in the whole */
        if (part < 0 && part != whole)
            abort(); /* an error in a prefix stays the same error */
    }
    free(buf);
    return 0;
}
