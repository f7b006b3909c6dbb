#!/bin/sh
# run.sh - build and run the metrics micro-benchmark (no CMake needed).
#   bench/micro/run.sh [iterations] [requests-per-turn ...]
#   CALLGRIND=1 bench/micro/run.sh   # also count instructions per request with valgrind
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${TMPDIR:-/tmp}/ringd-metrics-bench
CC=${CC:-cc}
# shellcheck disable=SC2046
$CC -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE \
    -DRINGD_VERSION='"bench"' -DRINGD_LIBURING_VERSION="\"$(pkg-config --modversion liburing)\"" \
    -I"$root" $(pkg-config --cflags lmdb libnghttp2) \
    "$here/metrics_bench.c" "$root/core/metrics.c" "$root/core/buf.c" "$root/core/clock.c" "$root/core/alloc.c" \
    "$root/core/log.c" \
    -o "$out" $(pkg-config --libs lmdb libnghttp2) -lpthread
echo "# $(uname -srm), $(nproc) cpus, $($CC --version | head -1)"
"$out" "$@"

if [ "${CALLGRIND:-0}" = 1 ]; then
    if ! command -v valgrind >/dev/null 2>&1; then
        echo "# valgrind not found: no instruction counts"
        exit 0
    fi
    # Instructions per request = (Ir of the counted loop - Ir of the baseline loop) / requests,
    # each a single pass of N requests in its own process (start-up cancels out).
    n=2000000
    ir() {
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$out" ir "$1" "$n" "$2" 2>&1 |
            sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
    }
    for batch in 1 16 64; do
        c=$(ir counted "$batch")
        z=$(ir baseline "$batch")
        awk -v c="$c" -v z="$z" -v n="$n" -v b="$batch" \
            'BEGIN { printf "callgrind requests/turn=%-3s %6.1f instructions per counted request\n", b, (c - z) / n }'
    done
fi
