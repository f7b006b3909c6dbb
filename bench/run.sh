#!/usr/bin/env bash
# bench/run.sh - ringd side by side with nginx and h2o (issue 6).
#
#   bench/run.sh              full run: Release build, 1,000,000-user demo DB,
#                             10 s per scenario, profile, results in bench/results/
#   bench/run.sh --quick      the same, 3 s per scenario
#   bench/run.sh --smoke      seconds, ringd only: checks every scenario produces
#                             figures (exit 1 if not); output in bench/results/smoke/
#
# Options:
#   --servers LIST      comma list of ringd,nginx,h2o (default: all three)
#   --peers-only        same as --servers nginx,h2o (no ringd build needed)
#   --server-cpu N      CPU the server is pinned to (default 0; env BENCH_SERVER_CPU)
#   --load-cpu N        CPU the load generator is pinned to (default 1; env BENCH_LOAD_CPU)
#   --port N            HTTP port on 127.0.0.1 (default 29080, below the ephemeral range so no client socket holds it; nginx h2c uses N+1; env BENCH_PORT)
#   --duration S        seconds per scenario (default 10, --quick 3, --smoke 1)
#   --users N           users in the demo DB (default 1000000, --smoke 10000)
#   --no-build          use the existing build/ringd (env RINGD_BIN overrides the path)
#   --no-profile        skip the profile step
#   --wait-idle S       before each scenario wait up to S seconds for the rest of
#                       the machine to go idle (default 60; 0 = do not wait)
#   --out DIR           where results go (default bench/results)
#   -h, --help          this text
#
# Each server runs alone, pinned with taskset, started and stopped by pid.
# See bench/README.md for what each figure means.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")

MODE=full
DURATION=""
USERS=""
SERVERS="ringd,nginx,h2o"
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
PORT=${BENCH_PORT:-29080}
DO_BUILD=1
DO_PROFILE=1
WAIT_IDLE=${BENCH_WAIT_IDLE:-60}
OUT_DIR=""
PROFILE_SERVER=ringd   # hidden: --profile-server NAME, to try the profile step on a peer
PROFILE_TOOL=auto      # hidden: --profile-tool callgrind|perf (auto: perf stat when the CPU counts instructions)
RINGD_BIN=${RINGD_BIN:-$REPO_DIR/build/ringd}

# Debian packages the harness needs; installed only when missing.
PKGS=(wrk nginx-light h2o nghttp2-client gnuplot-nox valgrind jq curl time util-linux procps)

SCENARIOS=(h1-c64 h1-c64-p16 h1-c256 h1-c1024 h2-c16-m10 h2-c4-m100)

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
        --quick) MODE=quick ;;
        --smoke) MODE=smoke ;;
        --servers) SERVERS=${2:?--servers needs a list}; shift ;;
        --peers-only) SERVERS="nginx,h2o" ;;
        --server-cpu) SERVER_CPU=${2:?}; shift ;;
        --load-cpu) LOAD_CPU=${2:?}; shift ;;
        --port) PORT=${2:?}; shift ;;
        --duration) DURATION=${2:?}; shift ;;
        --users) USERS=${2:?}; shift ;;
        --no-build) DO_BUILD=0 ;;
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
    full)  : "${DURATION:=10}" "${USERS:=1000000}"; WARMUP=2; PROFILE_REQS=20000 ;;
    quick) : "${DURATION:=3}" "${USERS:=1000000}"; WARMUP=1; PROFILE_REQS=10000 ;;
    smoke) : "${DURATION:=1}" "${USERS:=10000}"; WARMUP=0; PROFILE_REQS=2000
           SERVERS=ringd; WAIT_IDLE=0 ;;
    esac
    : "${OUT_DIR:=$BENCH_DIR/results}"
    [ "$MODE" = smoke ] && OUT_DIR="$BENCH_DIR/results/smoke"
    H2C_PORT=$((PORT + 1))
    local s
    IFS=, read -ra SERVER_LIST <<<"$SERVERS"
    for s in "${SERVER_LIST[@]}"; do
        case "$s" in ringd|nginx|h2o) ;; *) die "unknown server '$s'" ;; esac
    done
}

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
    [ "$SERVERS" != "ringd,nginx,h2o" ] && NAME+="-${SERVERS//,/-}"
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
SERVER_NAME=""

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

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
    esac
}

wait_ready() {
    local pid=$1 timeout=$2 i
    for ((i = 0; i < timeout * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/users/1" && return 0
        sleep 0.1
    done
    return 1
}

# start_server NAME [WRAPPER...]: pinned to SERVER_CPU, pid in SERVER_PID.
start_server() {
    local name=$1
    shift
    port_busy "$PORT" && die "port $PORT is already in use by another process"
    [ "$name" = nginx ] && port_busy "$H2C_PORT" && die "port $H2C_PORT is already in use"
    server_cmd "$name"
    local cmd=(taskset -c "$SERVER_CPU" "$@" "${SERVER_CMD[@]}")
    record_cmd "${cmd[@]}"
    "${cmd[@]}" >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    SERVER_NAME=$name
    local timeout=15
    [ $# -gt 0 ] && timeout=120   # under valgrind
    if ! wait_ready "$SERVER_PID" "$timeout"; then
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
    SERVER_NAME=""
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

wrk_cmd() { # conns depth
    LOAD_CMD=(env "WRK_USERS=$USERS" "WRK_DEPTH=$2"
        wrk -t1 "-c$1" "-d${DURATION}s" --latency -s "$BENCH_DIR/wrk/users.lua" "http://127.0.0.1:$PORT")
}

h2load_cmd() { # clients streams tag
    LOAD_CMD=(h2load -t1 "-c$1" "-m$2" -D "$DURATION" -i "$WORK/uris-$SERVER_NAME.txt"
        "--log-file=$WORK/$3.tsv")
}

# Percentiles (nearest rank) of column 3 of an h2load log: "p50 p99 p999".
h2load_percentiles() {
    cut -f3 "$1" | sort -n | awk '
        { v[NR] = $1 }
        function pct(p,  k) { k = int(p * NR + 0.999999); if (k < 1) k = 1; return v[k] }
        END { if (NR == 0) print "null null null"; else print pct(0.50), pct(0.99), pct(0.999) }'
}

# Emit one run's JSON line into RUNS_FILE.
emit_run() { # server scenario tool proto conns depth ticks figures-json
    local cpu_s
    cpu_s=$(awk -v t="$7" -v hz="$CLK_TCK" 'BEGIN { printf "%.4f", t / hz }')
    jq -cn --arg server "$1" --arg scenario "$2" --arg tool "$3" --arg proto "$4" \
        --argjson conns "$5" --argjson depth "$6" --argjson cpu "$cpu_s" \
        --argjson lu "$LOAD_U" --argjson ls "$LOAD_S" --argjson le "$LOAD_E" \
        --argjson rc "$LOAD_RC" --argjson f "$8" \
        --argjson other "${OTHER_S:-null}" --argjson steal "${STEAL_S:-null}" '
        $f + {server: $server, scenario: $scenario, tool: $tool, proto: $proto,
              conns: $conns, depth: $depth, load_rc: $rc,
              server_cpu_s: $cpu,
              server_cpu_us_per_req: (if ($f.requests // 0) > 0 then ($cpu * 1e6 / $f.requests) else null end),
              load_cpu_s: ($lu + $ls),
              other_cpu_s: $other, steal_s: $steal,
              load_cpu_pct: (if $le > 0 then (($lu + $ls) * 100 / $le) else null end)}' \
        >>"$RUNS_FILE"
}

run_scenario() { # server scenario
    local server=$1 sc=$2 tag="$1-$2" t0 t1 m0 m1 st0 st1 figs conns depth tool proto
    case "$sc" in
    h1-c64)     tool=wrk; conns=64; depth=1 ;;
    h1-c64-p16) tool=wrk; conns=64; depth=16 ;;
    h1-c256)    tool=wrk; conns=256; depth=1 ;;
    h1-c1024)   tool=wrk; conns=1024; depth=1 ;;
    h2-c16-m10) tool=h2load; conns=16; depth=10 ;;
    h2-c4-m100) tool=h2load; conns=4; depth=100 ;;
    esac
    if [ "$tool" = wrk ]; then proto=http/1.1; wrk_cmd "$conns" "$depth"; else proto=h2c; h2load_cmd "$conns" "$depth" "$tag"; fi
    wait_idle
    log "$server $sc"
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
    if [ "$tool" = wrk ]; then
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
    else
        figs=$(parse_h2load "$WORK/$tag.out" "$WORK/$tag.tsv")
    fi
    [ -n "$figs" ] || { log "warning: no figures from $tag (see $WORK/$tag.out)"; figs='{"requests":null}'; }
    emit_run "$server" "$sc" "$tool" "$proto" "$conns" "$depth" "$((t1 - t0))" "$figs"
    rm -f "$WORK/$tag.tsv"   # per-request log: large, only needed for percentiles
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

bench_server() {
    local server=$1 sc
    if ! start_server "$server"; then
        log "warning: $server did not start; its scenarios have no figures"
        for sc in "${SCENARIOS[@]}"; do
            LOAD_U=0 LOAD_S=0 LOAD_E=0 LOAD_RC=-1 OTHER_S=null STEAL_S=null
            emit_run "$server" "$sc" none none 0 0 0 '{"requests":null,"failed_to_start":true}'
        done
        return 0
    fi
    sed "s|^|http://127.0.0.1:$H2_PORT|" "$WORK/paths.txt" >"$WORK/uris-$server.txt"
    if [ "$server" = ringd ] && [ ! -s "$WORK/ringd-sample.json" ]; then
        curl -s "http://127.0.0.1:$PORT/users/$((USERS / 2 + 1))" >"$WORK/ringd-sample.json" || true
    fi
    if [ "$WARMUP" -gt 0 ]; then
        log "$server warm-up ${WARMUP}s"
        local d=$DURATION
        DURATION=$WARMUP
        wrk_cmd 64 1
        run_load "$server-warmup" "${LOAD_CMD[@]}"
        DURATION=$d
    fi
    for sc in "${SCENARIOS[@]}"; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "warning: $server exited during the run (see $WORK/$server.log)"
            LOAD_U=0 LOAD_S=0 LOAD_E=0 LOAD_RC=-1 OTHER_S=null STEAL_S=null
            emit_run "$server" "$sc" none none 0 0 0 '{"requests":null,"server_died":true}'
            continue
        fi
        run_scenario "$server" "$sc"
    done
    stop_server
}

# The peers send ringd's record for user USERS/2+1 when ringd ran first, so the
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

# Sampled profile with the cpu-clock software event (works without hardware
# counters): user and kernel functions while the server runs at full speed.
profile_perf_record() {
    local server=$1 phase secs entries=() perf_pid
    perf record -e cpu-clock -o /dev/null true >/dev/null 2>&1 || { log "perf record unavailable"; return 0; }
    secs=$DURATION
    [ "$secs" -gt 5 ] && secs=5
    log "profile: perf record -e cpu-clock on $server (${secs}s per phase)"
    start_server "$server" || { log "warning: $server did not start; no perf record"; return 0; }
    local d=$DURATION
    DURATION=$secs
    for phase in h1 h2; do
        record_cmd perf record -e cpu-clock -F 999 -g -p "$SERVER_PID" -o "$WORK/perf-$phase.data"
        perf record -e cpu-clock -F 999 -g -p "$SERVER_PID" -o "$WORK/perf-$phase.data" \
            >"$WORK/perf-record-$phase.log" 2>&1 &
        perf_pid=$!
        sleep 0.5
        if [ "$phase" = h1 ]; then
            wrk_cmd 64 1
        else
            sed "s|^|http://127.0.0.1:$H2_PORT|" "$WORK/paths.txt" >"$WORK/uris-$SERVER_NAME.txt"
            h2load_cmd 16 10 "perf-$phase"
        fi
        run_load "perf-$phase" "${LOAD_CMD[@]}"
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        rm -f "$WORK/perf-$phase.tsv"
        record_cmd perf report -i "$WORK/perf-$phase.data" --stdio --no-children --sort dso,symbol
        perf report -i "$WORK/perf-$phase.data" --stdio --no-children --sort dso,symbol -g none \
            2>/dev/null | awk '/^ +[0-9.]+%/ { sub(/( +-)+ *$/, ""); print; if (++n == 20) exit }' \
            >"$WORK/perf-$phase.top" || true
        entries+=("$(jq -cn --arg phase "$phase" --argjson secs "$secs" --rawfile top "$WORK/perf-$phase.top" \
            '{phase: $phase, seconds: $secs, top: $top}')")
    done
    DURATION=$d
    stop_server
    local rec
    rec=$(printf '%s\n' "${entries[@]}" | jq -sc .)
    jq --argjson rec "$rec" '. + {perf_record: $rec}' "$PROFILE_JSON" >"$PROFILE_JSON.new"
    mv "$PROFILE_JSON.new" "$PROFILE_JSON"
}

# Fixed request mix: PROFILE_REQS HTTP/1.1 requests on 8 connections, then
# PROFILE_REQS h2c requests on 4 connections x 10 streams.
profile_load() { # phase
    server_cmd "$SERVER_NAME"   # sets H2_PORT
    sed "s|^|http://127.0.0.1:$H2_PORT|" "$WORK/paths.txt" >"$WORK/uris-profile.txt"
    case "$1" in
    h1) run_load "profile-h1" h2load --h1 -t1 -c8 -n "$PROFILE_REQS" -i "$WORK/uris-profile.txt" ;;
    h2) run_load "profile-h2" h2load -t1 -c4 -m10 -n "$PROFILE_REQS" -i "$WORK/uris-profile.txt" ;;
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

write_json() {
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
        --rawfile commands "$CMDS_FILE" '
        {meta: {name: $name, commit: $commit, date: $date, mode: $mode, kernel: $kernel,
                cpu: $cpu, online_cpus: $ncpu, server_cpu: $scpu, load_cpu: $lcpu,
                duration_s: $duration, users: $users, peer_body_bytes: $body,
                somaxconn: $somaxconn,
                versions: {wrk: $wrk, nginx: $nginx, h2o: $h2o, h2load: $h2load}},
         runs: $runs, profile: $profile[0],
         commands: ($commands | split("\n") | map(select(length > 0)))}' >"$JSON_OUT"
}

# gnuplot data: scenario, then req/s and p99 (ms) per server in SERVER_LIST order.
write_chart() {
    local dat="$WORK/chart.dat" gp="$WORK/chart.gp" servers_json
    servers_json=$(printf '%s\n' "${SERVER_LIST[@]}" | jq -R . | jq -sc .)
    jq -r --argjson servers "$servers_json" --argjson scen "$(scenarios_json)" '
        .runs as $runs
        | def fig($sc; $sv; f): ([$runs[] | select(.scenario == $sc and .server == $sv) | f] | .[0]) // "-";
          ("# " + (["scenario"] + ($servers | map(. + "_rps")) + ($servers | map(. + "_p99ms")) | join(" "))),
          ($scen[] as $sc
           | [$sc]
             + ($servers | map(fig($sc; .; .rps)))
             + ($servers | map(fig($sc; .; (if .p99_us then .p99_us / 1000 else null end))))
           | map(tostring) | join(" "))' "$JSON_OUT" >"$dat"
    local n=${#SERVER_LIST[@]} i ls plot_rps="" plot_p99=""
    for ((i = 0; i < n; i++)); do
        case "${SERVER_LIST[$i]}" in ringd) ls=1 ;; nginx) ls=2 ;; *) ls=3 ;; esac
        plot_rps+="${plot_rps:+, }'$dat' using $((i + 2)):xtic(1) title '${SERVER_LIST[$i]}' ls $ls"
        plot_p99+="${plot_p99:+, }'$dat' using $((i + 2 + n)):xtic(1) title '${SERVER_LIST[$i]}' ls $ls"
    done
    cat >"$gp" <<EOF
set terminal pngcairo size 1200,900 font "sans,10"
set output '$PNG_OUT'
set datafile missing '-'
set style data histograms
set style histogram clustered gap 1
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
set multiplot layout 2,1 title "$NAME: server on CPU $SERVER_CPU, load on CPU $LOAD_CPU, ${DURATION}s per scenario" noenhanced
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
    local bad
    bad=$(jq -r --argjson scen "$(scenarios_json)" '
        def tool_has_pct($x): $x.tool == "wrk" or $x.tool == "h2load";
        .runs as $r
        | $scen[] as $sc
        | ($r | map(select(.server == "ringd" and .scenario == $sc)) | .[0]) as $x
        | if $x == null then "\($sc): no run"
          elif ($x.requests // 0) <= 0 then "\($sc): no requests"
          elif ([$x.rps, $x.server_cpu_us_per_req, $x.load_cpu_s] | any(. == null)) then "\($sc): missing figures"
          elif $x.depth == 1 and tool_has_pct($x) and ([$x.p50_us, $x.p99_us, $x.p999_us] | any(. == null)) then "\($sc): missing latency percentiles"
          else empty end' "$JSON_OUT")
    jq -r '.runs[] | select((.errors // 0) > 0) | "warning: \(.scenario): \(.errors) errors"' "$JSON_OUT" >&2
    [ -s "$PNG_OUT" ] || bad+=$'\n'"chart $PNG_OUT missing"
    [ -s "$MD_OUT" ] || bad+=$'\n'"results $MD_OUT missing"
    bad=$(sed '/^$/d' <<<"$bad")
    if [ -n "$bad" ]; then
        log "smoke FAILED:"
        printf '  %s\n' "$bad" >&2
        return 1
    fi
    log "smoke ok: ${#SCENARIOS[@]} scenarios produced figures"
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
    log "run $NAME: servers $SERVERS, ${DURATION}s per scenario, server cpu $SERVER_CPU, load cpu $LOAD_CPU"
    if has_server ringd; then
        build_ringd
        make_db
    fi
    make_uri_paths
    BODY_BYTES=0
    local s
    for s in "${SERVER_LIST[@]}"; do
        [ "$s" = ringd ] || continue
        bench_server ringd
    done
    choose_body
    for s in "${SERVER_LIST[@]}"; do
        [ "$s" = ringd ] && continue
        bench_server "$s"
    done
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
