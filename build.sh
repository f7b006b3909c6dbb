#!/usr/bin/env bash
# build.sh - install what is missing, build, run or test ringd.
#   ./build.sh          install dependencies, Release build into build/
#   ./build.sh run      ... then start `ringd serve --listen 127.0.0.1:8080` on ./ringd-data
#   ./build.sh test     ASan+UBSan Debug build into build-asan/, every test through ctest,
#                       a ThreadSanitizer build driven with real clients (build-tsan/), and a
#                       Release build with the tests (build-release/): its unit tests and the
#                       memory test under the shipped allocator
#   ./build.sh deps     only install the Debian packages
set -euo pipefail
cd "$(dirname "$0")"

BUILD_PKGS=(gcc make cmake pkg-config liburing-dev libh2o-evloop-dev libmimalloc-dev liblmdb-dev
            libnghttp2-dev libjansson-dev libcriterion-dev libssl-dev libpq-dev curl)
# Real clients the integration tests talk to the server with, and what the
# benchmark's smoke pass (a ctest) uses, so one apt run installs everything.
# postgresql-15: `ringd follow`'s tests start their own throwaway clusters (tests/support/pg.c).
# The gRPC tests' real client: Python grpcio with stubs generated at test time (protoc + grpc_python_plugin)
# from proto/ and grpc-proto's health.proto (libprotobuf-dev has struct.proto); golang-*: the bench's grpc-go peer.
# haproxy: the scale-out test (tests/deploy); systemd: systemd-analyze verify of deploy/systemd; python3-yaml:
# the manifest checks (run with /usr/bin/python3); linux-libc-dev: the syscall numbers the seccomp check uses.
TEST_PKGS=(nghttp2-client wrk prometheus jq time gnuplot-nox nginx-light h2o valgrind util-linux procps openssl postgresql-15
           python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc libprotobuf-dev grpc-proto
           golang-go golang-google-grpc-dev
           haproxy systemd python3 python3-yaml linux-libc-dev)
# python3 (Debian's, /usr/bin/python3): the access log's and the dashboard's checks parse JSON with it.

missing_pkgs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

install_pkgs() {
    local missing
    missing=$(missing_pkgs "$@")
    [ -z "$missing" ] && return 0
    echo "build.sh: installing:" $missing >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

jobs() { nproc 2>/dev/null || echo 2; }

build_release() {
    install_pkgs "${BUILD_PKGS[@]}"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DRINGD_TESTS=OFF >/dev/null
    cmake --build build -j "$(jobs)"
}

cmd=${1:-build}
case "$cmd" in
deps)
    install_pkgs "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"
    ;;
build)
    build_release
    ;;
run)
    build_release
    shift || true
    exec ./build/ringd serve --listen "${RINGD_LISTEN:-127.0.0.1:8080}" "$@"
    ;;
test)
    install_pkgs "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRINGD_SANITIZE=ON -DRINGD_TESTS=ON >/dev/null
    cmake --build build-asan -j "$(jobs)"
    # Every sanitizer report, from a test process, a Criterion worker or a
    # ringd under test, lands in its own file: a Criterion worker's leak report
    # does not change the test's verdict, so the files decide as well.
    logs="$PWD/build-asan/sanitizer-logs"
    rm -rf "$logs" && mkdir -p "$logs"
    export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:log_path=$logs/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
    rc=0
    # ThreadSanitizer on what shards share (Criterion cannot run under TSan,
    # so a TSan server is driven by real clients): skipped when ctest is
    # narrowed with extra arguments. Runs first so ctest's summary ends the output.
    if [ $# -le 1 ]; then
        cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DRINGD_TSAN=ON -DRINGD_TESTS=OFF >/dev/null
        cmake --build build-tsan -j "$(jobs)" >/dev/null
        tests/core/tsan_shards.sh build-tsan || rc=1
        # Release with the tests, the default configuration of a plain cmake:
        # -O2 brings warnings -O0 does not (gcc's -Wformat-truncation broke this
        # build once), so all of it is built. Its unit tests run (seconds), and
        # the two integration tests that need the shipped binary: the memory
        # test, whose RSS bound means something only with mimalloc (under ASan
        # it checks the budget alone), and the benchmark's profile step, which
        # valgrind cannot run on an ASan binary (~30 s). The other integration
        # tests already ran above; twice would double the suite's time for little.
        echo "build.sh: Release build with tests (build-release/)" >&2
        cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DRINGD_TESTS=ON >/dev/null
        cmake --build build-release -j "$(jobs)" >/dev/null
        (cd build-release && ctest --output-on-failure -j 1 -L unit &&
            ctest --output-on-failure -j 1 -R '^(core_test_shard|bench_profile_smoke)$') || rc=1
    fi
    (cd build-asan && ctest --output-on-failure -j 1 "${@:2}") || rc=$?
    if [ -n "$(ls -A "$logs")" ]; then
        echo "build.sh: sanitizer reports (leaks or errors) were written:" >&2
        for f in "$logs"/*; do echo "--- $f" >&2; head -n 60 "$f" >&2; done
        rc=1
    fi
    exit $rc
    ;;
-h|--help|help)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    ;;
*)
    echo "build.sh: unknown command '$cmd' (build, run, test, deps)" >&2
    exit 2
    ;;
esac
