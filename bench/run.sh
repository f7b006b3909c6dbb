#!/usr/bin/env bash
# bench/run.sh - ringd side by side with nginx, h2o, the io_uring floor
# (bench/floor) and the hyper peer (bench/peers/hyper); issues 6, 9, 10 and 12 (TLS).
#
#   bench/run.sh              full run: Release build, 1,000,000-user demo DB,
#                             3 rounds x 10 s per scenario and server, profile,
#                             results in bench/results/
#   bench/run.sh --quick      the same, 1 round x 3 s
#   bench/run.sh --smoke      seconds: ringd, floor and hyper (hyper when it is
#                             built, see --no-build), 1 round x 1 s; exits 1
#                             unless every scenario that applies produced
#                             figures; output in bench/results/smoke/
#
# Options:
#   --servers LIST      comma list of ringd,nginx,h2o,floor,hyper (default: all
#                       five; --smoke: ringd,floor,hyper)
#   --peers-only        every server but ringd (ringd is still built: hyper reads its DB)
#   --server-cpu N      CPU the server is pinned to (default 0; env BENCH_SERVER_CPU)
#   --load-cpu N        CPU the load generator is pinned to (default 1; env BENCH_LOAD_CPU)
#   --port N            HTTP port on 127.0.0.1 (default 29080, below the ephemeral range so no client socket holds it; nginx h2c uses N+1, HTTPS N+2; env BENCH_PORT)
#   --duration S        seconds per measurement (default 10, --quick 3, --smoke 1)
#   --scenarios LIST    comma list of scenarios to run (default: all; see SCENARIOS below)
#   --reps N            rounds, i.e. measurements of each scenario on each server
#                       (default 3; --quick and --smoke 1)
#   --users N           users in the demo DB (default 1000000, --smoke 10000)
#   --rate R            total req/s of the fixed-rate scenario h1-rate (default:
#                       half of nginx's h1-c64 req/s, measured in round 1)
#   --no-build          use the existing build/ringd (env RINGD_BIN overrides the
#                       path) and the existing hyper build: hyper is "unavailable"
#                       unless bench/peers/hyper/build.sh has run here before
#   --with-hyper-build  run bench/peers/hyper/build.sh even with --no-build
#   --no-profile        skip the profile step
#   --wait-idle S       before each measurement wait up to S seconds for the
#                       machine to go idle (default 60; 0 = do not wait)
#   --out DIR           where results go (default bench/results)
#   -h, --help          this text
#
# Environment: BENCH_HYPER_BUILD=PATH runs PATH instead of
# bench/peers/hyper/build.sh (same contract: prints the binary's path last).
#
# One server at a time, pinned with taskset, started for each measurement and
# stopped by pid; the rounds interleave the servers (see plan()).
# See bench/README.md for the method and what each figure means.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")

MODE=full
DURATION=""
USERS=""
REPS=""
RATE_ARG=""
ALL_SERVERS="ringd,nginx,h2o,floor,hyper,grpcgo"
SERVERS=$ALL_SERVERS
SERVERS_GIVEN=0
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
PORT=${BENCH_PORT:-29080}
DO_BUILD=1
DO_PROFILE=1
WAIT_IDLE=${BENCH_WAIT_IDLE:-60}
OUT_DIR=""
HYPER_FORCE_BUILD=0
HYPER_BUILD_S=null
PROFILE_SERVER=ringd   # hidden: --profile-server NAME, to try the profile step on a peer
PROFILE_TOOL=auto      # hidden: --profile-tool callgrind|perf (auto: perf stat when the CPU counts instructions)
RINGD_BIN=${RINGD_BIN:-$REPO_DIR/build/ringd}
FLOOR_SRC=$BENCH_DIR/floor/floor.c
FLOOR_BIN=$BENCH_DIR/.cache/floor
# The hyper peer's build script (env BENCH_HYPER_BUILD overrides, to try a stand-in).
HYPER_BUILD=${BENCH_HYPER_BUILD:-$BENCH_DIR/peers/hyper/build.sh}
HYPER_PATH_CACHE=$BENCH_DIR/.cache/hyper-peer.path
HYPER_BIN=""
# The grpc-go peer (bench/peers/grpc-go: GOPATH mode, offline, Debian's golang-google-grpc-dev).
GRPCGO_BUILD=$BENCH_DIR/peers/grpc-go/build.sh
GRPCGO_BIN=""
# The gRPC scenarios' request: GetUserRequest{id: 4242} (08 92 21), framed (flag 0, length 3).
GRPC_BODY_OCTAL='\000\000\000\000\003\010\222\041'

# Debian packages the harness needs; installed only when missing.
PKGS=(wrk nginx-light h2o nghttp2-client gnuplot-nox valgrind jq curl time util-linux procps gcc liburing-dev openssl
      golang-go golang-google-grpc-dev)

# h1-rate comes after h1-c64: its rate is half of nginx's h1-c64 req/s of round 1.
# tls-*: the same over HTTPS (one certificate for every server, made per run).
# grpc-c16-m10: ringd.v1.Users/GetUser over h2c (ringd and the grpc-go peer only), next to h2-c16-m10's JSON.
SCENARIOS=(h1-c64 h1-c64-p16 h1-c256 h1-c1024 h1-rate h2-c16-m10 h2-c4-m100 tls-h1-c64 tls-h2-c16-m10 tls-handshakes
           grpc-c16-m10)

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
        --quick) MODE=quick ;;
        --smoke) MODE=smoke ;;
        --servers) SERVERS=${2:?--servers needs a list}; SERVERS_GIVEN=1; shift ;;
        --peers-only) SERVERS="nginx,h2o,floor,hyper"; SERVERS_GIVEN=1 ;;
        --server-cpu) SERVER_CPU=${2:?}; shift ;;
        --load-cpu) LOAD_CPU=${2:?}; shift ;;
        --port) PORT=${2:?}; shift ;;
        --duration) DURATION=${2:?}; shift ;;
        --users) USERS=${2:?}; shift ;;
        --reps) REPS=${2:?}; shift ;;
        --scenarios) ONLY_SCENARIOS=${2:?--scenarios needs a list}; shift ;;
        --rate) RATE_ARG=${2:?}; shift ;;
        --no-build) DO_BUILD=0 ;;
        --with-hyper-build) HYPER_FORCE_BUILD=1 ;;
        --no-profile) DO_PROFILE=0 ;;
        --wait-idle) WAIT_IDLE=${2:?}; shift ;;
        --out) OUT_DIR=${2:?}; shift ;;
        --profile-server) PROFILE_SERVER=${2:?}; shift ;;
        --profile-tool) PROFILE_TOOL=${2:?}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
        esac
        shift
    done
    case "$MODE" in
    full)  : "${DURATION:=10}" "${USERS:=1000000}" "${REPS:=3}"; WARMUP=2; PROFILE_REQS=20000 ;;
    quick) : "${DURATION:=3}" "${USERS:=1000000}" "${REPS:=1}"; WARMUP=1; PROFILE_REQS=10000 ;;
    smoke) : "${DURATION:=1}" "${USERS:=10000}" "${REPS:=1}"; WARMUP=0; PROFILE_REQS=2000
           WAIT_IDLE=0
           [ "$SERVERS_GIVEN" = 1 ] || SERVERS="ringd,floor,hyper" ;;
    esac
    [[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "--reps needs a whole number >= 1"
    [[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "--duration needs a whole number of seconds >= 1"
    [ -z "$RATE_ARG" ] || [[ "$RATE_ARG" =~ ^[1-9][0-9]*$ ]] || die "--rate needs a whole number of requests/s"
    : "${OUT_DIR:=$BENCH_DIR/results}"
    [ "$MODE" = smoke ] && OUT_DIR="$BENCH_DIR/results/smoke"
    H2C_PORT=$((PORT + 1))
    TLS_PORT=$((PORT + 2))
    local s
    IFS=, read -ra SERVER_LIST <<<"$SERVERS"
    local -A seen=()
    for s in "${SERVER_LIST[@]}"; do
        case "$s" in ringd|nginx|h2o|floor|hyper|grpcgo) ;; *) die "unknown server '$s'" ;; esac
        [ -z "${seen[$s]:-}" ] || die "server '$s' is listed twice"
        seen[$s]=1
    done
    [ ${#SERVER_LIST[@]} -gt 0 ] || die "--servers needs at least one server"
    if [ -n "${ONLY_SCENARIOS:-}" ]; then
        local want sc keep=()
        IFS=, read -ra want <<<"$ONLY_SCENARIOS"
        for sc in "${want[@]}"; do
            [[ " ${SCENARIOS[*]} " == *" $sc "* ]] || die "unknown scenario '$sc' (${SCENARIOS[*]})"
            keep+=("$sc")
        done
        SCENARIOS=("${keep[@]}")
    fi
}

# Whether server $1 speaks h2c: floor and hyper are HTTP/1.1 only, their h2c
# scenarios are "n/a" (not run, not a failure).
speaks_h2() { case "$1" in ringd|nginx|h2o) return 0 ;; *) return 1 ;; esac; }

# Whether server $1 serves HTTPS: floor and hyper do not (their tls-*
# scenarios are "n/a").
speaks_tls() { case "$1" in ringd|nginx|h2o) return 0 ;; *) return 1 ;; esac; }

# Whether server $1 speaks gRPC (ringd.v1.Users): ringd and the grpc-go peer, which speaks nothing else.
speaks_grpc() { case "$1" in ringd|grpcgo) return 0 ;; *) return 1 ;; esac; }

# Whether server $1 takes part in scenario $2.
applies() {
    if [[ "$2" == grpc-* ]]; then speaks_grpc "$1"; return; fi
    [ "$1" != grpcgo ] && { [[ "$2" != h2-* ]] || speaks_h2 "$1"; } && { [[ "$2" != tls-* ]] || speaks_tls "$1"; }
}

# What became of each server before measuring: ok, unavailable (not there to
# measure: not an error) or failed (should have run and could not), and why.
declare -A SERVER_STATUS=() SERVER_REASON=()
set_status() { SERVER_STATUS[$1]=$2; SERVER_REASON[$1]=${3:-}; [ -z "${3:-}" ] || log "$1: $2: $3"; }

scenarios_json() { printf '%s\n' "${SCENARIOS[@]}" | jq -R . | jq -sc .; }

has_server() { [[ ",$SERVERS," == *",$1,"* ]]; }

# ---------------------------------------------------------------- setup

install_missing() {
    local p missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

CMDS_FILE=""
# Run a command and append it, shell-quoted, to the list of exact commands.
# Paths inside the repo are written relative to its root.
record_cmd() { printf '%q ' "$@" | sed "s/ \$//; s|$REPO_DIR/||g" >>"$CMDS_FILE"; echo >>"$CMDS_FILE"; }

setup_run() {
    local stamp commit
    stamp=$(date +%F)
    commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo nocommit)
    DIRTY=""
    if [ "$commit" != nocommit ] &&
        [ -n "$(git -C "$REPO_DIR" status --porcelain -- . ':!bench/results' 2>/dev/null)" ]; then
        DIRTY="+dirty"
    fi
    COMMIT=$commit
    NAME="$stamp-$commit"
    [ "$MODE" = quick ] && NAME+="-quick"
    [ -n "${ONLY_SCENARIOS:-}" ] && NAME+="-${ONLY_SCENARIOS//,/-}"
    [ "$SERVERS" != "$ALL_SERVERS" ] && NAME+="-${SERVERS//,/-}"
    mkdir -p "$OUT_DIR"
    WORK="$BENCH_DIR/.work/$NAME"
    rm -rf "$WORK"
    mkdir -p "$WORK/nginx-tmp"
    chmod 755 "$WORK"
    CMDS_FILE="$WORK/commands.txt"
    : >"$CMDS_FILE"
    RUNS_FILE="$WORK/runs.ndjson"
    : >"$RUNS_FILE"
    PROFILE_JSON="$WORK/profile.json"
    echo '{}' >"$PROFILE_JSON"
    # 1024 connections need more descriptors than the usual soft limit.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    CLK_TCK=$(getconf CLK_TCK)
    local ncpu
    ncpu=$(nproc)
    if [ "$SERVER_CPU" -ge "$ncpu" ] || [ "$LOAD_CPU" -ge "$ncpu" ]; then
        die "CPU $SERVER_CPU or $LOAD_CPU does not exist ($ncpu online)"
    fi
    [ "$SERVER_CPU" != "$LOAD_CPU" ] || log "warning: server and load generator share CPU $SERVER_CPU"
}

build_ringd() {
    if [ "$DO_BUILD" = 1 ]; then
        log "building ringd (Release)"
        record_cmd "$REPO_DIR/build.sh"
        "$REPO_DIR/build.sh" >&2
    fi
    [ -x "$RINGD_BIN" ] || die "$RINGD_BIN not found (build failed, or run without --no-build)"
}

# The floor (bench/floor/floor.c) is compiled into bench/.cache, again when the
# source is newer than the binary.
build_floor() {
    mkdir -p "$BENCH_DIR/.cache"
    local cmd=(cc -O2 -o "$FLOOR_BIN" "$FLOOR_SRC" -luring)
    record_cmd "${cmd[@]}"
    if [ -x "$FLOOR_BIN" ] && [ "$FLOOR_BIN" -nt "$FLOOR_SRC" ]; then
        log "floor is up to date ($FLOOR_BIN)"
        set_status floor ok
        return 0
    fi
    log "building the floor"
    if "${cmd[@]}" >"$WORK/floor-build.log" 2>&1; then
        set_status floor ok
    else
        cat "$WORK/floor-build.log" >&2
        set_status floor failed "cc failed on bench/floor/floor.c (see $WORK/floor-build.log)"
    fi
}

# The hyper peer is built by its own script, which prints the binary's
# absolute path as its last line of stdout; that path (with the script's) is
# kept in bench/.cache so that --no-build (and CI's smoke pass) can use an
# existing build without running the script, which may take minutes (cargo). No script: the peer has not landed, hyper is unavailable.
prepare_hyper() {
    HYPER_BIN=""
    if [ ! -f "$HYPER_BUILD" ]; then
        set_status hyper unavailable "${HYPER_BUILD#"$REPO_DIR/"} not found (the hyper peer has not landed); skipping hyper"
        return 0
    fi
    if [ "$DO_BUILD" = 0 ] && [ "$HYPER_FORCE_BUILD" = 0 ]; then
        local script="" cached="" newer
        [ -f "$HYPER_PATH_CACHE" ] && IFS=$'\t' read -r script cached <"$HYPER_PATH_CACHE"
        if [ "$script" = "$HYPER_BUILD" ] && [ -n "$cached" ] && [ -x "$cached" ]; then
            HYPER_BIN=$cached
            log "hyper: using the existing build $HYPER_BIN (--no-build)"
            newer=$(find "$(dirname "$HYPER_BUILD")" -type f -newer "$HYPER_BIN" -not -path '*/target/*' -print -quit)
            [ -z "$newer" ] || log "warning: hyper: ${newer#"$REPO_DIR/"} is newer than that build (run without --no-build to rebuild)"
            set_status hyper ok
        else
            set_status hyper unavailable "not built and --no-build given (run ${HYPER_BUILD#"$REPO_DIR/"} once, or pass --with-hyper-build)"
        fi
        return 0
    fi
    log "building the hyper peer (${HYPER_BUILD#"$REPO_DIR/"}; log in $WORK/hyper-build.log)"
    record_cmd bash "$HYPER_BUILD"
    local t0 rc=0 last
    t0=$(date +%s)
    bash "$HYPER_BUILD" >"$WORK/hyper-build.out" 2>"$WORK/hyper-build.log" || rc=$?
    HYPER_BUILD_S=$(($(date +%s) - t0))
    last=$(sed '/^[[:space:]]*$/d' "$WORK/hyper-build.out" | tail -n 1)
    if [ "$rc" -ne 0 ]; then
        tail -n 20 "$WORK/hyper-build.log" >&2 || true
        set_status hyper failed "${HYPER_BUILD#"$REPO_DIR/"} exited with $rc (see $WORK/hyper-build.log)"
    elif [[ "$last" != /* ]] || [ ! -x "$last" ]; then
        set_status hyper failed "${HYPER_BUILD#"$REPO_DIR/"} did not print an executable absolute path last (got '$last')"
    else
        HYPER_BIN=$last
        printf '%s\t%s\n' "$HYPER_BUILD" "$HYPER_BIN" >"$HYPER_PATH_CACHE"
        log "hyper peer built in ${HYPER_BUILD_S}s: $HYPER_BIN"
        set_status hyper ok
    fi
}

# The grpc-go peer: built by its script (offline, GOPATH mode; seconds once
# Go's build cache in bench/.cache is warm), which prints the binary's path last.
prepare_grpcgo() {
    GRPCGO_BIN=""
    if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/google.golang.org/grpc ]; then
        set_status grpcgo unavailable "go or golang-google-grpc-dev is not installed"
        return 0
    fi
    record_cmd bash "$GRPCGO_BUILD"
    local last
    if ! bash "$GRPCGO_BUILD" >"$WORK/grpcgo-build.out" 2>"$WORK/grpcgo-build.log"; then
        tail -n 20 "$WORK/grpcgo-build.log" >&2 || true
        set_status grpcgo failed "${GRPCGO_BUILD#"$REPO_DIR/"} failed (see $WORK/grpcgo-build.log)"
        return 0
    fi
    last=$(tail -n 1 "$WORK/grpcgo-build.out")
    if [ -x "$last" ]; then
        GRPCGO_BIN=$last
        set_status grpcgo ok
    else
        set_status grpcgo failed "${GRPCGO_BUILD#"$REPO_DIR/"} printed no binary (got '$last')"
    fi
}

# The framed request body of the grpc-* scenarios (h2load -d).
make_grpc_body() {
    # shellcheck disable=SC2059 # the format is the octal escapes
    printf "$GRPC_BODY_OCTAL" >"$WORK/grpc-body.bin"
    [ "$(stat -c %s "$WORK/grpc-body.bin")" = 8 ] || die "the gRPC request body is not 8 octets"
}

# The demo DB is cached in bench/.cache and rebuilt when ringd is newer.
make_db() {
    DB="$BENCH_DIR/.cache/db-$USERS"
    if [ -f "$DB/.done" ] && [ "$DB/.done" -nt "$RINGD_BIN" ]; then
        log "reusing demo DB $DB"
        record_cmd "$RINGD_BIN" demo --db "$DB" --users "$USERS"
        return 0
    fi
    log "creating a $USERS-user demo DB in $DB"
    rm -rf "$DB"
    mkdir -p "$DB"
    record_cmd "$RINGD_BIN" demo --db "$DB" --users "$USERS"
    "$RINGD_BIN" demo --db "$DB" --users "$USERS" >"$WORK/demo.log" 2>&1 ||
        { cat "$WORK/demo.log" >&2; die "ringd demo failed"; }
    touch "$DB/.done"
}

# 10,000 random user paths for h2load -i (same seed every run).
make_uri_paths() {
    awk -v n="$USERS" 'BEGIN { srand(4242); for (i = 0; i < 10000; i++) printf "/users/%d\n", 1 + int(rand() * n) }' \
        >"$WORK/paths.txt"
}

# ------------------------------------------------------------- servers

SERVER_PID=""

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Whether port $1 stays busy for 5 s. A server that just exited can hold its
# listener a moment longer: io_uring tears a ring down after the process is
# gone, and the listening socket lives until the ring's accept is cancelled.
port_held() {
    local i
    for ((i = 0; i < 50; i++)); do
        port_busy "$1" || return 1
        sleep 0.1
    done
    return 0
}

# All pids of a process tree (the process and its descendants).
proc_tree() {
    local pid=$1 c
    [ -d "/proc/$pid" ] || return 0
    echo "$pid"
    # shellcheck disable=SC2013  # children files hold space-separated pids
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do proc_tree "$c"; done
}

# utime+stime in clock ticks, summed over the process tree (all threads:
# /proc/PID/stat of a process covers every thread, io_uring workers included).
cpu_ticks() {
    local total=0 p s f
    for p in $(proc_tree "$1"); do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }             # drop "pid (comm) ": comm may contain spaces
        read -ra f <<<"$s"
        total=$((total + f[11] + f[12]))   # fields 14 and 15 of stat(5)
    done
    echo "$total"
}

# Busy CPU ticks of the whole machine (user+nice+system) and steal, from /proc/stat.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4, $9; exit }' /proc/stat; }

# Wait (up to WAIT_IDLE s) for a second in which the machine, less the
# server under test, is under 10% busy; other work skews every figure.
wait_idle() {
    [ "$WAIT_IDLE" -gt 0 ] || return 0
    local i m0 m1 s0=0 s1=0 busy
    for ((i = 0; i < WAIT_IDLE; i++)); do
        read -r m0 _ < <(machine_ticks)
        [ -n "$SERVER_PID" ] && s0=$(cpu_ticks "$SERVER_PID")
        sleep 1
        read -r m1 _ < <(machine_ticks)
        [ -n "$SERVER_PID" ] && s1=$(cpu_ticks "$SERVER_PID")
        busy=$(((m1 - m0) - (s1 - s0)))
        if [ $((busy * 100)) -lt $((CLK_TCK * 10)) ]; then
            [ "$i" -gt 0 ] && log "machine idle again after ${i}s"
            return 0
        fi
        [ "$i" -eq 0 ] && log "waiting up to ${WAIT_IDLE}s for other work on the machine to stop"
    done
    log "warning: the machine stayed busy; measuring anyway"
}

# Fill @TOKENS@ of a peer template.
render() {
    local tpl=$1 out=$2 body=$3 text
    text=$(<"$tpl")
    text=${text//@WORK@/"$WORK"}
    text=${text//@PORT@/"$PORT"}
    text=${text//@H2C_PORT@/"$H2C_PORT"}
    text=${text//@TLS_PORT@/"$TLS_PORT"}
    text=${text//@TLS_CERT@/"$WORK/tls.crt"}
    text=${text//@TLS_KEY@/"$WORK/tls.key"}
    text=${text//@USER@/"$(id -un)"}
    text=${text//@BODY@/"$body"}
    printf '%s\n' "$text" >"$out"
}

# Sets SERVER_CMD (array) and H2_PORT for server $1.
server_cmd() {
    H2_PORT=$PORT
    case "$1" in
    ringd)
        SERVER_CMD=("$RINGD_BIN" serve --listen "127.0.0.1:$PORT" --db "$DB" --shards 1 --max-conns 8192)
        # The TLS listener only where it is measured: the cleartext runs stay as they were.
        [[ "${CUR_SCENARIO:-}" != tls-* ]] ||
            SERVER_CMD+=(--tls-listen "127.0.0.1:$TLS_PORT" --tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key")
        ;;
    nginx)
        render "$BENCH_DIR/peers/nginx.conf.in" "$WORK/nginx.conf" "$(<"$WORK/body.json")"
        SERVER_CMD=(nginx -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf")
        H2_PORT=$H2C_PORT
        ;;
    h2o)
        render "$BENCH_DIR/peers/h2o.conf.in" "$WORK/h2o.conf" ""
        SERVER_CMD=(h2o -c "$WORK/h2o.conf")
        ;;
    floor)
        SERVER_CMD=("$FLOOR_BIN" --listen "127.0.0.1:$PORT" --body "$WORK/body.json")
        ;;
    hyper)
        SERVER_CMD=("$HYPER_BIN" --listen "127.0.0.1:$PORT" --db "$DB")
        ;;
    grpcgo)
        SERVER_CMD=(env GOMAXPROCS=1 "$GRPCGO_BIN" --listen "127.0.0.1:$PORT" --users "$USERS")
        ;;
    esac
}

wait_ready() {
    local pid=$1 timeout=$2 i
    for ((i = 0; i < timeout * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if [ "${STARTING:-}" = grpcgo ]; then # gRPC only: listening is ready (the records are made before the listen)
            port_busy "$PORT" && return 0
        else
            curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/users/1" && return 0
        fi
        sleep 0.1
    done
    return 1
}

# start_server NAME [WRAPPER...]: pinned to SERVER_CPU, pid in SERVER_PID.
start_server() {
    local name=$1
    shift
    port_held "$PORT" && die "port $PORT is already in use by another process"
    [ "$name" = nginx ] && port_held "$H2C_PORT" && die "port $H2C_PORT is already in use"
    speaks_tls "$name" && port_held "$TLS_PORT" && die "port $TLS_PORT is already in use"
    server_cmd "$name"
    local cmd=(taskset -c "$SERVER_CPU" "$@" "${SERVER_CMD[@]}")
    record_cmd "${cmd[@]}"
    "${cmd[@]}" >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    local timeout=15
    [ $# -gt 0 ] && timeout=120   # under valgrind
    [ "$name" = grpcgo ] && timeout=120 # a million records made at start-up
    if ! STARTING=$name wait_ready "$SERVER_PID" "$timeout"; then
        tail -n 20 "$WORK/$name.log" >&2 || true
        stop_server
        return 1
    fi
    log "$name up (pid $SERVER_PID, cpu $SERVER_CPU, port $PORT)"
}

# "pid:starttime" for each process of the tree, so a later kill can tell a
# process we started from an unrelated one that reused its pid.
proc_ids() {
    local p s f
    for p in $(proc_tree "$1"); do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }
        read -ra f <<<"$s"
        echo "$p:${f[19]}"   # field 22: start time
    done
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    local ids id p s f i
    ids=$(proc_ids "$SERVER_PID")
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    # Whatever of the tree we started is still alive gets SIGKILL, by pid.
    for id in $ids; do
        p=${id%%:*}
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }
        read -ra f <<<"$s"
        [ "${f[19]}" = "${id#*:}" ] && kill -KILL "$p" 2>/dev/null
    done
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

LOAD_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$LOAD_PID" ]; then
        local p
        for p in $(proc_tree "$LOAD_PID"); do kill -TERM "$p" 2>/dev/null || true; done
        wait "$LOAD_PID" 2>/dev/null || true
    fi
    stop_server
    exit "$rc"
}

# ------------------------------------------------------------ load

# Run the load generator pinned to LOAD_CPU under /usr/bin/time.
# Sets LOAD_U LOAD_S LOAD_E (seconds) and LOAD_RC.
run_load() {
    local tag=$1
    shift
    local cmd=(/usr/bin/time -f '%U %S %e' -o "$WORK/$tag.time" taskset -c "$LOAD_CPU" "$@")
    record_cmd "${cmd[@]}"
    LOAD_RC=0
    # In the background + wait, so that an interrupt runs cleanup at once.
    "${cmd[@]}" >"$WORK/$tag.out" 2>&1 &
    LOAD_PID=$!
    wait "$LOAD_PID" || LOAD_RC=$?
    LOAD_PID=""
    read -r LOAD_U LOAD_S LOAD_E < <(tail -n 1 "$WORK/$tag.time") || true
    : "${LOAD_U:=0}" "${LOAD_S:=0}" "${LOAD_E:=0}"
}

wrk_cmd() { # conns depth seconds
    LOAD_CMD=(env "WRK_USERS=$USERS" "WRK_DEPTH=$2"
        wrk -t1 "-c$1" "-d${3}s" --latency -s "$BENCH_DIR/wrk/users.lua" "http://127.0.0.1:$PORT")
}

# The 10,000 random paths as URIs of PORT (h2load -i).
uris_file() { # port
    local file="$WORK/uris-$1.txt"
    [ -s "$file" ] || sed "s|^|http://127.0.0.1:$1|" "$WORK/paths.txt" >"$file"
    printf '%s' "$file"
}

h2load_cmd() { # clients streams seconds [log-file]
    LOAD_CMD=(h2load -t1 "-c$1" "-m$2" -D "$3" -i "$(uris_file "$H2_PORT")" ${4:+"--log-file=$4"})
}

# The same paths as https URIs of TLS_PORT.
tls_uris_file() {
    local file="$WORK/uris-tls-$TLS_PORT.txt"
    [ -s "$file" ] || sed "s|^|https://127.0.0.1:$TLS_PORT|" "$WORK/paths.txt" >"$file"
    printf '%s' "$file"
}

# One certificate for every server's TLS listener: ECDSA P-256, self-signed, made per run.
make_tls_cert() {
    # shellcheck disable=SC2054 # the comma is inside one argument (subjectAltName)
    local cmd=(openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/tls.key"
        -out "$WORK/tls.crt" -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1)
    record_cmd "${cmd[@]}"
    "${cmd[@]}" >"$WORK/tls-cert.log" 2>&1 || die "openssl req failed (see $WORK/tls-cert.log)"
}

# The load of scenario $1 for $2 seconds, per-request log in $3 (h2load only;
# none if empty). Sets LOAD_CMD and SC_TOOL SC_PROTO SC_CONNS SC_DEPTH.
scenario_load() { # scenario seconds [log-file]
    case "$1" in
    h1-c64)     SC_TOOL=wrk; SC_CONNS=64; SC_DEPTH=1 ;;
    h1-c64-p16) SC_TOOL=wrk; SC_CONNS=64; SC_DEPTH=16 ;;
    h1-c256)    SC_TOOL=wrk; SC_CONNS=256; SC_DEPTH=1 ;;
    h1-c1024)   SC_TOOL=wrk; SC_CONNS=1024; SC_DEPTH=1 ;;
    h1-rate)    SC_TOOL=h2load; SC_CONNS=64; SC_DEPTH=1 ;;
    h2-c16-m10) SC_TOOL=h2load; SC_CONNS=16; SC_DEPTH=10 ;;
    h2-c4-m100) SC_TOOL=h2load; SC_CONNS=4; SC_DEPTH=100 ;;
    tls-h1-c64) SC_TOOL=wrk; SC_CONNS=64; SC_DEPTH=1 ;;
    tls-h2-c16-m10) SC_TOOL=h2load; SC_CONNS=16; SC_DEPTH=10 ;;
    tls-handshakes) SC_TOOL=s_time; SC_CONNS=1; SC_DEPTH=1 ;;
    grpc-c16-m10) SC_TOOL=h2load; SC_CONNS=16; SC_DEPTH=10 ;;
    *) die "unknown scenario $1" ;;
    esac
    if [ "$1" = tls-h1-c64 ]; then
        SC_PROTO=https/1.1
        wrk_cmd "$SC_CONNS" "$SC_DEPTH" "$2"
        LOAD_CMD[-1]="https://127.0.0.1:$TLS_PORT"
    elif [ "$1" = tls-h2-c16-m10 ]; then
        SC_PROTO=h2
        LOAD_CMD=(h2load -t1 "-c$SC_CONNS" "-m$SC_DEPTH" -D "$2" -i "$(tls_uris_file)" ${3:+"--log-file=$3"})
    elif [ "$1" = grpc-c16-m10 ]; then
        # One unary GetUser per request: a POST with the framed message (-d),
        # content-type application/grpc and te: trailers.
        SC_PROTO=grpc
        LOAD_CMD=(h2load -t1 "-c$SC_CONNS" "-m$SC_DEPTH" -D "$2" -d "$WORK/grpc-body.bin"
            -H 'content-type: application/grpc' -H 'te: trailers' ${3:+"--log-file=$3"}
            "http://127.0.0.1:$PORT/ringd.v1.Users/GetUser")
    elif [ "$1" = tls-handshakes ]; then
        # A full handshake per connection (s_time -new never resumes), then
        # one HTTP/1.0 request, read until the server closes.
        SC_PROTO=https/1.0
        LOAD_CMD=(openssl s_time -connect "127.0.0.1:$TLS_PORT" -new -www "/users/$SAMPLE_ID" -time "$2")
    elif [ "$SC_TOOL" = wrk ]; then
        SC_PROTO=http/1.1
        wrk_cmd "$SC_CONNS" "$SC_DEPTH" "$2"
    elif [ "$1" = h1-rate ]; then
        # h2load's --rps is per client; one request at a time per connection
        SC_PROTO=http/1.1
        LOAD_CMD=(h2load --h1 -t1 "-c$SC_CONNS" --rps "$RATE_PER_CLIENT" -D "$2" -i "$(uris_file "$PORT")"
            ${3:+"--log-file=$3"})
    else
        SC_PROTO=h2c
        h2load_cmd "$SC_CONNS" "$SC_DEPTH" "$2" "${3:-}"
    fi
}

# Percentiles (nearest rank) of column 3 of an h2load log: "p50 p99 p999".
h2load_percentiles() {
    cut -f3 "$1" | sort -n | awk '
        { v[NR] = $1 }
        function pct(p,  k) { k = int(p * NR + 0.999999); if (k < 1) k = 1; return v[k] }
        END { if (NR == 0) print "null null null"; else print pct(0.50), pct(0.99), pct(0.999) }'
}

SEQ=0
RUN_T0=0

# Emit one run's JSON line into RUNS_FILE.
emit_run() { # server scenario round tool proto conns depth ticks figures-json
    local cpu_s
    cpu_s=$(awk -v t="$8" -v hz="$CLK_TCK" 'BEGIN { printf "%.4f", t / hz }')
    jq -cn --arg server "$1" --arg scenario "$2" --argjson round "$3" --arg tool "$4" --arg proto "$5" \
        --argjson conns "$6" --argjson depth "$7" --argjson cpu "$cpu_s" \
        --argjson seq "$SEQ" --argjson t "$(($(date +%s) - RUN_T0))" \
        --argjson lu "$LOAD_U" --argjson ls "$LOAD_S" --argjson le "$LOAD_E" \
        --argjson rc "$LOAD_RC" --argjson f "$9" \
        --argjson other "${OTHER_S:-null}" --argjson steal "${STEAL_S:-null}" '
        $f + {server: $server, scenario: $scenario, round: $round, seq: $seq, t_s: $t,
              tool: $tool, proto: $proto,
              conns: $conns, depth: $depth, load_rc: $rc,
              server_cpu_s: $cpu,
              server_cpu_us_per_req: (if ($f.requests // 0) > 0 then ($cpu * 1e6 / $f.requests) else null end),
              load_cpu_s: ($lu + $ls),
              other_cpu_s: $other, steal_s: $steal,
              load_cpu_pct: (if $le > 0 then (($lu + $ls) * 100 / $le) else null end)}' \
        >>"$RUNS_FILE"
}

# A measurement that produced nothing: why, as a flag of the run.
emit_missing() { # server scenario round flag
    LOAD_U=0 LOAD_S=0 LOAD_E=0 LOAD_RC=-1 OTHER_S=null STEAL_S=null
    emit_run "$1" "$2" "$3" none none 0 0 0 "{\"requests\":null,\"$4\":true}"
}

# The hypervisor under this VM sometimes takes a CPU away for seconds (steal
# time in /proc/stat): a measurement during which more than STEAL_MAX_PCT % of
# the two CPUs' time was stolen says more about the host than about the
# server, so it is taken again, up to STEAL_RETRIES times; the last attempt is
# kept either way and every attempt's steal is in the JSON.
STEAL_MAX_PCT=${BENCH_STEAL_MAX_PCT:-2}
STEAL_RETRIES=${BENCH_STEAL_RETRIES:-2}

run_scenario() { # server scenario round
    local server=$1 sc=$2 round=$3 attempt stolen=()
    for ((attempt = 1; ; attempt++)); do
        measure_once "$server" "$sc" "$round"
        stolen+=("$STEAL_S")
        if [ "$MODE" = smoke ] || [ "$attempt" -gt "$STEAL_RETRIES" ] ||
            ! awk -v s="$STEAL_S" -v d="$DURATION" -v n="$(nproc)" -v m="$STEAL_MAX_PCT" \
                'BEGIN { exit !(s * 100 > d * n * m) }'; then
            break
        fi
        log "$server $sc: ${STEAL_S}s of CPU stolen by the host during the measurement; measuring again"
    done
    FIGS=$(jq -c --argjson a "$attempt" --argjson st "[$(IFS=,; echo "${stolen[*]}")]" \
        '. + {attempts: $a, steal_s_per_attempt: $st}' <<<"$FIGS")
    emit_run "$server" "$sc" "$round" "$SC_TOOL" "$SC_PROTO" "$SC_CONNS" "$SC_DEPTH" "$TICKS" "$FIGS"
}

# One measurement of the running server; sets FIGS, TICKS, OTHER_S and STEAL_S.
measure_once() { # server scenario round
    local server=$1 sc=$2 round=$3 tag="$1-$2-r$3" t0 t1 m0 m1 st0 st1 figs
    scenario_load "$sc" "$DURATION" "$WORK/$tag.tsv"
    log "$server $sc (round $round of $REPS, measurement $SEQ of $N_MEASURE)"
    read -r m0 st0 < <(machine_ticks)
    t0=$(cpu_ticks "$SERVER_PID")
    run_load "$tag" "${LOAD_CMD[@]}"
    t1=$(cpu_ticks "$SERVER_PID")
    read -r m1 st1 < <(machine_ticks)
    # CPU that neither the server nor the load generator used: other work on
    # the machine that competed with the measurement (plus kernel work that
    # is charged to no process).
    OTHER_S=$(awk -v m=$((m1 - m0)) -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v u="$LOAD_U" -v s="$LOAD_S" \
        'BEGIN { o = (m - t) / hz - u - s; if (o < 0) o = 0; printf "%.2f", o }')
    STEAL_S=$(awk -v d=$((st1 - st0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    if [ "$SC_TOOL" = wrk ]; then
        figs=$(sed -n 's/^WRKJSON //p' "$WORK/$tag.out" | tail -n 1)
        if [ -n "$figs" ]; then
            # wrk's percentiles are meaningless with pipelining (see users.lua); 0 = none
            figs=$(jq -c 'def pct(v): if .depth > 1 or v == 0 then null else v end;
                {requests, duration_s: (.duration_us / 1e6),
                rps: (if .duration_us > 0 then .requests * 1e6 / .duration_us else null end),
                p50_us: pct(.lat_p50_us), p99_us: pct(.lat_p99_us), p999_us: pct(.lat_p999_us),
                errors_socket: (.err_connect + .err_read + .err_write + .err_timeout),
                errors_status: .err_status,
                errors: (.err_connect + .err_read + .err_write + .err_timeout + .err_status),
                wrk: .}' <<<"$figs")
        fi
    elif [ "$SC_TOOL" = s_time ]; then
        figs=$(parse_s_time "$WORK/$tag.out")
    else
        figs=$(parse_h2load "$WORK/$tag.out" "$WORK/$tag.tsv")
    fi
    [ -n "$figs" ] || { log "warning: no figures from $tag (see $WORK/$tag.out)"; figs='{"requests":null}'; }
    if [ "$sc" = h1-rate ]; then
        figs=$(jq -c --argjson per "$RATE_PER_CLIENT" '. + {offered_rps: ($per * 64)}' <<<"$figs")
    fi
    FIGS=$figs
    TICKS=$((t1 - t0))
    rm -f "$WORK/$tag.tsv"   # per-request log: large, only needed for percentiles
}

# "N connections in T real seconds, B bytes read per connection": each
# connection is one full handshake and one request; no latency figures.
parse_s_time() { # out
    awk '/connections in [0-9.]+ real seconds/ { n = $1; t = $4; b = $6 }
         END {
             if (n == "" || t + 0 == 0) exit
             printf "{\"requests\":%d,\"duration_s\":%s,\"rps\":%.1f,\"p50_us\":null,\"p99_us\":null,\"p999_us\":null,", n, t, n / t
             printf "\"errors_socket\":0,\"errors_status\":%d,\"errors\":%d,\"s_time\":{\"connections\":%d,\"bytes_per_connection\":%d}}\n", (b < 100), (b < 100), n, b
         }' "$1"
}

parse_h2load() { # out tsv
    local out=$1 tsv=$2 p50 p99 p999
    grep -q '^requests:' "$out" || return 0
    read -r p50 p99 p999 < <(h2load_percentiles "$tsv")
    awk -v d="$DURATION" -v p50="$p50" -v p99="$p99" -v p999="$p999" '
        /^requests:/ { total = $2; done_ = $6; ok = $8; failed = $10; errored = $12; timeout = $14 }
        /^status codes:/ { s2 = $3; s3 = $5; s4 = $7; s5 = $9 }
        END {
            printf "{\"requests\":%d,\"duration_s\":%s,\"rps\":%.1f,\"p50_us\":%s,\"p99_us\":%s,\"p999_us\":%s,",
                ok, d, ok / d, p50, p99, p999
            printf "\"errors_socket\":%d,\"errors_status\":%d,\"errors\":%d,", failed, s3 + s4 + s5, failed + s3 + s4 + s5
            printf "\"h2load\":{\"total\":%d,\"done\":%d,\"succeeded\":%d,\"failed\":%d,\"errored\":%d,\"timeout\":%d,\"2xx\":%d,\"3xx\":%d,\"4xx\":%d,\"5xx\":%d}}\n",
                total, done_, ok, failed, errored, timeout, s2, s3, s4, s5
        }' "$out"
}

# One measurement: server $1 is started, warmed up with the scenario's own
# load for WARMUP seconds, measured for DURATION seconds, and stopped. A fresh
# process per measurement: no state (pools, connections, timers) carries over
# from the scenario before, and each server's repetitions sit in different
# rounds.
measure() { # server scenario round
    local server=$1 sc=$2 round=$3 wtag="$1-$2-r$3-warmup"
    SEQ=$((SEQ + 1))
    wait_idle
    if ! start_server "$server"; then
        log "warning: $server did not start; no figures for $sc round $round"
        emit_missing "$server" "$sc" "$round" failed_to_start
        return 0
    fi
    check_response "$server"
    if [ "$WARMUP" -gt 0 ]; then
        scenario_load "$sc" "$WARMUP" ""
        run_load "$wtag" "${LOAD_CMD[@]}"
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "warning: $server exited during the warm-up (see $WORK/$server.log)"
        emit_missing "$server" "$sc" "$round" server_died
        stop_server
        return 0
    fi
    run_scenario "$server" "$sc" "$round"
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "warning: $server exited during $sc (see $WORK/$server.log)"
    fi
    stop_server
}

# The order of the measurements: REPS rounds; in each round every scenario in
# turn, and for each scenario every server that takes part, one after the
# other. Round r starts the server list r-1 places further on (round-robin),
# so no server is always first or last after a change of scenario. Each
# server's repetitions of a scenario are thus a round apart, and ringd's
# repetition k sits next to each peer's repetition k in time.
plan() {
    local r sc i s n=${#SERVER_LIST[@]}
    for ((r = 1; r <= REPS; r++)); do
        for sc in "${SCENARIOS[@]}"; do
            for ((i = 0; i < n; i++)); do
                s=${SERVER_LIST[$(((i + r - 1) % n))]}
                [ "${SERVER_STATUS[$s]:-ok}" = ok ] || continue
                applies "$s" "$sc" || continue
                printf '%s %s %s\n' "$r" "$sc" "$s"
            done
        done
    done
}

# The rate of h1-rate, fixed before its first measurement (round 1, after
# every server's h1-c64 of round 1) and the same for every server and round:
# --rate, else half of nginx's h1-c64 req/s, else (nginx not measured) half of
# the slowest server's.
RATE_TOTAL=""
RATE_PER_CLIENT=""
RATE_SOURCE=""
set_rate() {
    [ -z "$RATE_PER_CLIENT" ] || return 0
    local r
    if [ -n "$RATE_ARG" ]; then
        RATE_TOTAL=$RATE_ARG
        RATE_SOURCE="--rate $RATE_ARG"
    else
        r=$(jq -rs '[.[] | select(.server == "nginx" and .scenario == "h1-c64" and (.requests // 0) > 0) | .rps] | .[0] // empty' "$RUNS_FILE")
        if [ -n "$r" ]; then
            RATE_SOURCE="half of nginx's h1-c64 req/s in round 1"
        else
            r=$(jq -rs '[.[] | select(.scenario == "h1-c64" and (.requests // 0) > 0) | .rps] | min // empty' "$RUNS_FILE")
            if [ -n "$r" ]; then
                RATE_SOURCE="half of the slowest server's h1-c64 req/s in round 1, for want of an nginx figure"
            else
                r=12800
                RATE_SOURCE="half of 12,800 req/s, for want of any h1-c64 figure"
            fi
        fi
        RATE_TOTAL=$(awk -v r="$r" 'BEGIN { printf "%.0f", r / 2 }')
    fi
    RATE_PER_CLIENT=$(awk -v r="$RATE_TOTAL" 'BEGIN { printf "%.3f", r / 64 }')
    log "h1-rate: $RATE_TOTAL req/s in all, h2load --rps $RATE_PER_CLIENT per connection ($RATE_SOURCE)"
}

rate_json() {
    if [ -z "$RATE_PER_CLIENT" ]; then echo null; return 0; fi
    jq -cn --argjson total "$RATE_TOTAL" --argjson per "$RATE_PER_CLIENT" --arg src "$RATE_SOURCE" \
        '{total_rps: $total, per_connection_rps: $per, connections: 64, offered_rps: ($per * 64), source: $src}'
}

run_rounds() {
    local r sc s
    plan >"$WORK/plan.txt"
    N_MEASURE=$(wc -l <"$WORK/plan.txt")
    log "$N_MEASURE measurements in $REPS round(s), about $(((N_MEASURE * (DURATION + WARMUP + 2) + 59) / 60)) min"
    # the plan on fd 3: nothing the loop runs reads it as its stdin
    while read -r r sc s <&3; do
        [ "$sc" != h1-rate ] || set_rate
        CUR_SCENARIO=$sc
        measure "$s" "$sc" "$r"
    done 3<"$WORK/plan.txt"
    CUR_SCENARIO=""
}

# ringd's record for user USERS/2+1, fetched from a ringd started for just
# that, before any server is measured: the peers that answer every path with
# one body (nginx, h2o, floor) send it, and hyper must answer it byte for byte.
take_sample() {
    [ -n "${DB:-}" ] || return 0
    start_server ringd || { log "warning: ringd did not start; the peers send bench/peers/body.json"; return 0; }
    curl -s "http://127.0.0.1:$PORT/users/$SAMPLE_ID" >"$WORK/ringd-sample.json" || true
    stop_server
}

# Once per server, after its first start: the size of its answer to
# /users/SAMPLE_ID, and for hyper whether it is ringd's record byte for byte.
declare -A RESPONSE_BYTES=() SAME_AS_RINGD=()
check_response() {
    local server=$1 n
    [ -z "${RESPONSE_BYTES[$server]:-}" ] || return 0
    n=$(curl -s -o "$WORK/$server-sample.out" -w '%{size_download}' "http://127.0.0.1:$PORT/users/$SAMPLE_ID") || n=null
    RESPONSE_BYTES[$server]=$n
    if [ "$server" = hyper ] && [ -s "$WORK/ringd-sample.json" ]; then
        if cmp -s "$WORK/ringd-sample.json" "$WORK/hyper-sample.out"; then
            SAME_AS_RINGD[$server]=true
        else
            SAME_AS_RINGD[$server]=false
            log "warning: hyper's /users/$SAMPLE_ID differs from ringd's (see $WORK/hyper-sample.out)"
        fi
    fi
}

# The peers send ringd's record for user USERS/2+1 (take_sample), so the
# bodies are the same size; else bench/peers/body.json.
choose_body() {
    local b=""
    [ -s "$WORK/ringd-sample.json" ] && b=$(<"$WORK/ringd-sample.json")
    # nginx's return text must not hold quotes, backslashes or variables
    if [ -z "$b" ] || [[ "$b" == *[\'\\\$]* ]] || [[ "$b" != \{* ]]; then
        b=$(<"$BENCH_DIR/peers/body.json")
    fi
    printf '%s' "$b" >"$WORK/body.json"
    BODY_BYTES=$(wc -c <"$WORK/body.json")
}

# -------------------------------------------------------------- profile

profile_step() {
    local server=$PROFILE_SERVER
    has_server "$server" || return 0
    if [ "$PROFILE_TOOL" = callgrind ] || { [ "$PROFILE_TOOL" = auto ] &&
        { perf stat -e instructions true 2>&1 | grep -q '<not supported>' ||
            ! perf stat -e instructions true >/dev/null 2>&1; }; }; then
        profile_callgrind "$server"
    else
        profile_perf "$server"
    fi
    profile_perf_record "$server"
}

# The store's share of a "perf report --sort dso,symbol -g none" listing of
# ringd: every sample in liblmdb plus ringd's own store_* and index_*
# functions (what LTO or inlining folded into their callers is not counted).
# Prints the share in % on the first line, then liblmdb's total (its symbols
# are stripped: one entry per address) and ringd's store lines.
store_share() { # report-file
    local dso
    dso=$(basename "$RINGD_BIN")
    awk -v dso="$dso" '
        { pct = $1; sub(/%$/, "", pct) }
        $2 ~ /^liblmdb[.]so/ { lmdb += pct; lmdb_n++; lmdb_dso = $2; next }
        $2 == dso && $4 ~ /^(store_|index_)/ { own += pct; lines[++n] = $0 }
        END {
            printf "%.2f\n", lmdb + own
            if (lmdb_n > 0) printf "%9.2f%%  %s (all of it, %d entries)\n", lmdb, lmdb_dso, lmdb_n
            for (i = 1; i <= n; i++) print lines[i]
        }' "$1"
}

# Sampled profile with the cpu-clock software event (works without hardware
# counters): user and kernel functions while the server runs at full speed.
profile_perf_record() {
    local server=$1 phase secs entries=() perf_pid
    perf record -e cpu-clock -o /dev/null true >/dev/null 2>&1 || { log "perf record unavailable"; return 0; }
    secs=$DURATION
    [ "$secs" -gt 5 ] && secs=5
    log "profile: perf record -e cpu-clock on $server (${secs}s per phase)"
    start_server "$server" || { log "warning: $server did not start; no perf record"; return 0; }
    for phase in h1 h2; do
        record_cmd perf record -e cpu-clock -F 999 -g -p "$SERVER_PID" -o "$WORK/perf-$phase.data"
        perf record -e cpu-clock -F 999 -g -p "$SERVER_PID" -o "$WORK/perf-$phase.data" \
            >"$WORK/perf-record-$phase.log" 2>&1 &
        perf_pid=$!
        sleep 0.5
        if [ "$phase" = h1 ]; then
            wrk_cmd 64 1 "$secs"
        else
            h2load_cmd 16 10 "$secs"
        fi
        run_load "perf-$phase" "${LOAD_CMD[@]}"
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        record_cmd perf report -i "$WORK/perf-$phase.data" --stdio --no-children --sort dso,symbol -g none
        perf report -i "$WORK/perf-$phase.data" --stdio --no-children --sort dso,symbol -g none \
            2>/dev/null | awk '/^ +[0-9.]+%/ { sub(/( +-)+ *$/, ""); print }' >"$WORK/perf-$phase.report" || true
        head -n 20 "$WORK/perf-$phase.report" >"$WORK/perf-$phase.top"
        store_share "$WORK/perf-$phase.report" >"$WORK/perf-$phase.store"
        entries+=("$(jq -cn --arg phase "$phase" --argjson secs "$secs" --rawfile top "$WORK/perf-$phase.top" \
            --rawfile store "$WORK/perf-$phase.store" '
            ($store | split("\n") | map(select(length > 0))) as $lines
            | {phase: $phase, seconds: $secs, top: $top,
               store_share_pct: ($lines[0] | tonumber? // null), store_samples: $lines[1:]}')")
    done
    stop_server
    local rec
    rec=$(printf '%s\n' "${entries[@]}" | jq -sc .)
    jq --argjson rec "$rec" '. + {perf_record: $rec}' "$PROFILE_JSON" >"$PROFILE_JSON.new"
    mv "$PROFILE_JSON.new" "$PROFILE_JSON"
}

# Fixed request mix: PROFILE_REQS HTTP/1.1 requests on 8 connections, then
# PROFILE_REQS h2c requests on 4 connections x 10 streams.
profile_load() { # phase
    local uris
    uris=$(uris_file "$H2_PORT")   # H2_PORT: set by start_server
    case "$1" in
    h1) run_load "profile-h1" h2load --h1 -t1 -c8 -n "$PROFILE_REQS" -i "$uris" ;;
    h2) run_load "profile-h2" h2load -t1 -c4 -m10 -n "$PROFILE_REQS" -i "$uris" ;;
    esac
}

profile_callgrind() {
    local server=$1 phase f ir total
    log "profile: callgrind on $server ($PROFILE_REQS requests per phase)"
    # vgdb, through which callgrind_control talks to the server, makes FIFOs
    # named after the pid; valgrind removes them only when it exits on its own,
    # not when stop_server has to SIGKILL it. Kept in $WORK, not /tmp, and
    # removed below, so no run leaves them behind.
    local vgdb_prefix="--vgdb-prefix=$WORK/vgdb-pipe"
    local vg=(valgrind --tool=callgrind "$vgdb_prefix" "--callgrind-out-file=$WORK/callgrind.out.%p")
    if ! start_server "$server" "${vg[@]}"; then
        log "warning: $server did not start under valgrind; no instruction counts"
        rm -f "$WORK"/vgdb-pipe-*
        jq -n --arg tool callgrind --arg log "$(grep -v '^==' "$WORK/$server.log" | tail -n 5)" \
            '{tool: $tool, error: "the server did not start under valgrind; its log ends with:\n\($log)"}' >"$PROFILE_JSON"
        return 0
    fi
    local pid=$SERVER_PID entries=()
    # Zero the counters after start-up, then dump after each phase (a dump
    # also zeroes), so each dump holds only that phase's requests.
    record_cmd callgrind_control "$vgdb_prefix" -z "$pid"
    callgrind_control "$vgdb_prefix" -z "$pid" >"$WORK/callgrind_control.log" 2>&1 ||
        log "warning: callgrind_control -z failed"
    for phase in h1 h2; do
        profile_load "$phase"
        record_cmd callgrind_control "$vgdb_prefix" -d "profile-$phase" "$pid"
        callgrind_control "$vgdb_prefix" -d "profile-$phase" "$pid" >>"$WORK/callgrind_control.log" 2>&1 ||
            log "warning: callgrind_control -d failed"
        sleep 1
        f=$(find "$WORK" -maxdepth 1 -name "callgrind.out.$pid.*" -printf '%T@ %p\n' | sort -rn | awk 'NR == 1 { print $2 }')
        if [ -z "$f" ]; then
            log "warning: no callgrind dump for $phase"
            continue
        fi
        mv "$f" "$WORK/callgrind-$phase.out"
        callgrind_annotate --inclusive=no --threshold=100 "$WORK/callgrind-$phase.out" \
            >"$WORK/callgrind-$phase.txt" 2>/dev/null || true
        total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' "$WORK/callgrind-$phase.txt")
        : "${total:=0}"
        # top 20 functions by own (exclusive) instructions; a dump taken while
        # the server runs charges the frames still on the stack (main,
        # start_thread, clone) with ~100%: leave those (>= 90%) out.
        awk '/PROGRAM TOTALS/ { next }
             match($0, /\( *[0-9.]+%\)/) {
                 pct = substr($0, RSTART + 1, RLENGTH - 3) + 0
                 if (pct >= 90) next
                 print; if (++n == 20) exit
             }' \
            "$WORK/callgrind-$phase.txt" >"$WORK/callgrind-$phase.top"
        ir=$(awk -v t="$total" -v n="$PROFILE_REQS" 'BEGIN { printf "%.0f", t / n }')
        entries+=("$(jq -cn --arg phase "$phase" --argjson total "$total" --argjson n "$PROFILE_REQS" \
            --argjson ir "$ir" --rawfile top "$WORK/callgrind-$phase.top" \
            '{phase: $phase, requests: $n, instructions: $total, instructions_per_request: $ir, top: $top}')")
    done
    stop_server
    rm -f "$WORK"/vgdb-pipe-*
    printf '%s\n' "${entries[@]}" | jq -s --arg server "$server" \
        '{tool: "callgrind", server: $server, note: "instructions executed in user space by the server (valgrind Ir) per request; kernel work not included", phases: .}' \
        >"$PROFILE_JSON"
}

profile_perf() {
    local server=$1 phase entries=() perf_pid ins
    log "profile: perf stat on $server ($PROFILE_REQS requests per phase)"
    start_server "$server" || { log "warning: $server did not start; no profile"; return 0; }
    for phase in h1 h2; do
        record_cmd perf stat -x, -e instructions,cycles,task-clock -p "$SERVER_PID" -o "$WORK/perf-$phase.csv"
        perf stat -x, -e instructions,cycles,task-clock -p "$SERVER_PID" -o "$WORK/perf-$phase.csv" &
        perf_pid=$!
        sleep 0.5
        profile_load "$phase"
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        ins=$(awk -F, '$3 == "instructions" || $3 ~ /^instructions/ { print $1; exit }' "$WORK/perf-$phase.csv")
        [[ "$ins" =~ ^[0-9]+$ ]] || ins=0
        entries+=("$(jq -cn --arg phase "$phase" --argjson total "$ins" --argjson n "$PROFILE_REQS" \
            --rawfile top "$WORK/perf-$phase.csv" \
            '{phase: $phase, requests: $n, instructions: $total, instructions_per_request: ($total / $n | floor), top: $top}')")
    done
    stop_server
    printf '%s\n' "${entries[@]}" | jq -s --arg server "$server" \
        '{tool: "perf stat", server: $server, note: "instructions (user+kernel) counted on the server process per request", phases: .}' \
        >"$PROFILE_JSON"
}

# ------------------------------------------------------------- report

# The host: CPU, kernel, clocksource, transparent huge pages and the CPU
# vulnerability mitigations the kernel reports (name: value).
host_json() {
    local f vul=() thp_enabled thp_defrag
    for f in /sys/devices/system/cpu/vulnerabilities/*; do
        [ -r "$f" ] || continue
        vul+=("$(jq -cn --arg k "$(basename "$f")" --arg v "$(<"$f")" '{($k): $v}')")
    done
    # the bracketed word of "always [madvise] never"
    thp_enabled=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || true)
    thp_defrag=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/defrag 2>/dev/null || true)
    jq -cn --arg cpu "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" \
        --arg kernel "$(uname -r)" --arg kver "$(uname -v)" --argjson ncpu "$(nproc)" \
        --arg clock "$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || true)" \
        --arg thp "$thp_enabled" --arg thpd "$thp_defrag" \
        --arg somaxconn "$(cat /proc/sys/net/core/somaxconn)" \
        --argjson vul "$( ((${#vul[@]})) && printf '%s\n' "${vul[@]}" | jq -sc 'add' || echo '{}')" '
        {cpu: $cpu, kernel: $kernel, kernel_version: $kver, online_cpus: $ncpu, clocksource: $clock,
         transparent_hugepage: {enabled: $thp, defrag: $thpd}, somaxconn: $somaxconn,
         vulnerabilities: $vul}'
}

# One line per server of the list: its status, whether it speaks h2c, what it
# answered for /users/SAMPLE_ID.
servers_json() {
    local s h2 tls grpc grpc_only
    for s in "${SERVER_LIST[@]}"; do
        if speaks_h2 "$s"; then h2=true; else h2=false; fi
        if speaks_tls "$s"; then tls=true; else tls=false; fi
        if speaks_grpc "$s"; then grpc=true; else grpc=false; fi
        if [ "$s" = grpcgo ]; then grpc_only=true; else grpc_only=false; fi
        jq -cn --arg name "$s" --arg status "${SERVER_STATUS[$s]:-ok}" --arg reason "${SERVER_REASON[$s]:-}" \
            --argjson h2 "$h2" --argjson tls "$tls" --argjson grpc "$grpc" --argjson grpc_only "$grpc_only" \
            --argjson bytes "${RESPONSE_BYTES[$s]:-null}" --argjson same "${SAME_AS_RINGD[$s]:-null}" '
            {name: $name, status: $status, h2c: $h2, tls: $tls, grpc: $grpc, grpc_only: $grpc_only, response_bytes: $bytes}
            + (if $reason != "" then {reason: $reason} else {} end)
            + (if $same != null then {same_bytes_as_ringd: $same} else {} end)'
    done | jq -sc .
}

write_json() {
    local floor_rev hyper_rev
    floor_rev=$(git -C "$REPO_DIR" log -1 --format=%h -- bench/floor/floor.c 2>/dev/null || true)
    hyper_rev=$(git -C "$REPO_DIR" log -1 --format=%h -- bench/peers/hyper 2>/dev/null || true)
    jq -n --slurpfile runs "$RUNS_FILE" --slurpfile profile "$PROFILE_JSON" \
        --arg name "$NAME" --arg commit "$COMMIT$DIRTY" --arg date "$(date -u +%FT%TZ)" \
        --arg mode "$MODE" --arg kernel "$(uname -r)" \
        --arg cpu "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" \
        --argjson ncpu "$(nproc)" --argjson scpu "$SERVER_CPU" --argjson lcpu "$LOAD_CPU" \
        --argjson duration "$DURATION" --argjson users "$USERS" --argjson body "$BODY_BYTES" \
        --arg wrk "$(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }')" \
        --arg nginx "$(nginx -v 2>&1 | sed 's|.*/||')" \
        --arg h2o "$(h2o -v 2>&1 | awk 'NR == 1 { print $3 }')" \
        --arg h2load "$(h2load --version 2>&1 | awk '{ print $2 }')" \
        --arg somaxconn "$(cat /proc/sys/net/core/somaxconn)" \
        --arg floor "bench/floor/floor.c${floor_rev:+ @ $floor_rev}" \
        --arg hyper "${HYPER_BIN:+$HYPER_BIN, bench/peers/hyper${hyper_rev:+ @ $hyper_rev}}" \
        --argjson hyper_build_s "$HYPER_BUILD_S" --argjson servers "$(servers_json)" --argjson steal_max "$STEAL_MAX_PCT" \
        --argjson host "$(host_json)" --argjson reps "$REPS" --argjson rate "$(rate_json)" --argjson sample "$SAMPLE_ID" --argjson warmup "$WARMUP" --argjson scen "$(scenarios_json)" \
        --rawfile commands "$CMDS_FILE" '
        {meta: {name: $name, commit: $commit, date: $date, mode: $mode, kernel: $kernel,
                cpu: $cpu, online_cpus: $ncpu, server_cpu: $scpu, load_cpu: $lcpu,
                duration_s: $duration, warmup_s: $warmup, reps: $reps, scenarios: $scen, h1_rate: $rate,
                order: "REPS rounds; each round runs every scenario in turn, and each scenario on every server that takes part, one after the other, the server list rotated by one place per round; every measurement on a freshly started server after WARMUP seconds of the same load",
                users: $users, sample_id: $sample, peer_body_bytes: $body,
                somaxconn: $somaxconn, host: $host, servers: $servers, hyper_build_s: $hyper_build_s, steal_max_pct: $steal_max,
                versions: {wrk: $wrk, nginx: $nginx, h2o: $h2o, h2load: $h2load,
                           floor: $floor, hyper: (if $hyper == "" then null else $hyper end)}},
         runs: $runs, profile: $profile[0],
         commands: ($commands | split("\n") | map(select(length > 0)))}' |
        jq -f "$BENCH_DIR/stats.jq" >"$JSON_OUT"
}

# gnuplot data: scenario, then per server in SERVER_LIST order the median,
# min and max of req/s, then the same of p99 (ms).
write_chart() {
    local dat="$WORK/chart.dat" gp="$WORK/chart.gp" servers_json
    servers_json=$(printf '%s\n' "${SERVER_LIST[@]}" | jq -R . | jq -sc .)
    jq -r --argjson servers "$servers_json" '
        .summary as $sum | .meta.scenarios as $scen
        | def s($sc; $sv): [$sum[] | select(.scenario == $sc and .server == $sv)] | .[0] // {};
          def three(x): [x.median, x.min, x.max] | map(. // "-");
          def ms: if . == null or . == "-" then "-" else . / 1000 end;
          ("# scenario, then for each of \($servers | join(" ")): rps median min max; then p99 ms median min max"),
          ($scen[] as $sc
           | [$sc]
             + ($servers | map(three(s($sc; .).rps // {})) | add)
             + ($servers | map(three(s($sc; .).p99_us // {}) | map(ms)) | add)
           | map(tostring) | join(" "))' "$JSON_OUT" >"$dat"
    local n=${#SERVER_LIST[@]} i ls plot_rps="" plot_p99="" c
    for ((i = 0; i < n; i++)); do
        case "${SERVER_LIST[$i]}" in ringd) ls=1 ;; nginx) ls=2 ;; h2o) ls=3 ;; floor) ls=4 ;; *) ls=5 ;; esac
        c=$((2 + 3 * i))
        plot_rps+="${plot_rps:+, }'$dat' using $c:$((c + 1)):$((c + 2)):xtic(1) title '${SERVER_LIST[$i]}' ls $ls"
        c=$((2 + 3 * n + 3 * i))
        plot_p99+="${plot_p99:+, }'$dat' using $c:$((c + 1)):$((c + 2)):xtic(1) title '${SERVER_LIST[$i]}' ls $ls"
    done
    cat >"$gp" <<EOF
set terminal pngcairo size 1200,900 font "sans,10"
set output '$PNG_OUT'
set datafile missing '-'
set style data histograms
set style histogram errorbars gap 1 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set offsets 0, 0, graph 0.08, 0
set xrange [-0.6:$(( ${#SCENARIOS[@]} - 1 )).6]
set grid ytics
set key top right
set xtics noenhanced
set style line 1 lc rgb '#d62728'
set style line 2 lc rgb '#1f77b4'
set style line 3 lc rgb '#2ca02c'
set style line 4 lc rgb '#7f7f7f'
set style line 5 lc rgb '#ff7f0e'
set multiplot layout 2,1 title "$NAME: server on CPU $SERVER_CPU, load on CPU $LOAD_CPU, ${DURATION}s per measurement, median of $REPS round(s) (bars: min to max)" noenhanced
set title 'requests/s (higher is better)'
set format y '%.0s%c'
set yrange [0:*]
plot $plot_rps
set title 'p99 latency, ms (lower is better; log scale; none for pipelined wrk runs)'
set logscale y
set format y '%g'
set yrange [*:*]
plot $plot_p99
unset multiplot
EOF
    record_cmd gnuplot "$gp"
    gnuplot "$gp" 2>"$WORK/gnuplot.log" || log "warning: gnuplot failed (see $WORK/gnuplot.log)"
}

write_markdown() {
    local png_name
    png_name=$(basename "$PNG_OUT")
    jq -r --arg png "$png_name" --arg json "$(basename "$JSON_OUT")" -f "$BENCH_DIR/report.jq" "$JSON_OUT" >"$MD_OUT"
}

# ------------------------------------------------------------- smoke

smoke_check() {
    local bad n line
    # every scenario of every server that should have run (not n/a, not
    # unavailable) has figures in every round, latency percentiles included
    # wherever the tool gives usable ones (not pipelined wrk)
    bad=$(jq -r '
        (.summary[] | select(.status != "n/a" and .status != "unavailable")
         | select(.status != "measured"
                  or (.with_figures as $w | [.rps.n, .server_cpu_us_per_req.n, .load_cpu_pct.n] | any(. < $w)))
         | "\(.server) \(.scenario): \(.status)\(if (.problems // []) != [] then " (" + (.problems | join("; ")) + ")" else "" end)"),
        (.runs[] | select((.requests // 0) > 0 and (.tool == "h2load" or (.tool == "wrk" and .depth == 1)))
         | select([.p50_us, .p99_us, .p999_us] | any(. == null))
         | "\(.server) \(.scenario) round \(.round): missing latency percentiles")' "$JSON_OUT")
    jq -r '.runs[] | select((.errors // 0) > 0) | "warning: \(.server) \(.scenario) round \(.round): \(.errors) errors"' "$JSON_OUT" >&2
    [ -s "$PNG_OUT" ] || bad+=$'\n'"chart $PNG_OUT missing"
    [ -s "$MD_OUT" ] || bad+=$'\n'"results $MD_OUT missing"
    bad=$(sed '/^$/d' <<<"$bad")
    if [ -n "$bad" ]; then
        log "smoke FAILED:"
        while IFS= read -r line; do printf '  %s\n' "$line" >&2; done <<<"$bad"
        return 1
    fi
    n=$(jq '[.summary[] | select(.status == "measured")] | length' "$JSON_OUT")
    log "smoke ok: $n scenario/server pairs produced figures; skipped: $(jq -r '
        [.summary[] | select(.status == "n/a" or .status == "unavailable")]
        | group_by(.server + " " + .status)
        | map("\(.[0].server) \(.[0].status)" + (if .[0].status == "n/a" then " (\(length) h2c/TLS scenarios)" else "" end))
        | if length == 0 then "none" else join(", ") end' "$JSON_OUT")"
}

# --------------------------------------------------------------- main

main() {
    parse_args "$@"
    trap cleanup EXIT INT TERM
    install_missing
    setup_run
    if awk '{ exit !($1 > 0.5) }' /proc/loadavg; then
        log "warning: the machine is not idle (load $(cut -d' ' -f1-3 /proc/loadavg)); figures will be noisy"
    fi
    log "run $NAME: servers $SERVERS, $REPS round(s) of ${DURATION}s per measurement, server cpu $SERVER_CPU, load cpu $LOAD_CPU"
    DB=""
    SAMPLE_ID=$((USERS / 2 + 1))
    # hyper serves ringd's DB: it needs ringd built as well
    if has_server ringd || has_server hyper; then
        build_ringd
        make_db
    fi
    if has_server floor; then build_floor; fi
    if has_server hyper; then prepare_hyper; fi
    if has_server grpcgo; then prepare_grpcgo; fi
    make_grpc_body
    make_uri_paths
    make_tls_cert
    take_sample
    choose_body
    RUN_T0=$(date +%s)
    run_rounds
    [ "$DO_PROFILE" = 1 ] && profile_step
    JSON_OUT="$OUT_DIR/$NAME.json"
    PNG_OUT="$OUT_DIR/$NAME.png"
    MD_OUT="$OUT_DIR/$NAME.md"
    write_json
    write_chart
    write_json   # again, so the gnuplot command is in the list
    write_markdown
    log "results: $MD_OUT"
    if [ "$MODE" = smoke ]; then smoke_check; fi
}

main "$@"
