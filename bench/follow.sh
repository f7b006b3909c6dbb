#!/usr/bin/env bash
# bench/follow.sh - `ringd follow` (issue 13): how fast it applies a backlog (single-row and 100-row
# transactions), and the end-to-end lag (commit in PostgreSQL -> visible in an HTTP answer) at a fixed
# update rate while `ringd serve` answers wrk load, with the serving throughput of an idle feed beside it.
#
#   bench/follow.sh            full run: 100,000 users; 100,000 single-row and 5,000 100-row transactions;
#                              then 5 rounds of 10 s of wrk with an idle feed and 10 s at 5,000 updates/s
#                              of the followed table (lag probed); results in bench/results/follow/
#   bench/follow.sh --smoke    seconds: tiny sizes, only checks that every step produces its figure
#
# Options:
#   --users N        rows in the table (default 100000; --smoke 2000)
#   --single N       single-row transactions for the apply rate (default 100000; --smoke 2000)
#   --batches N      100-row transactions for the apply rate (default 5000; --smoke 50)
#   --rate R         updates/s during the lag measurement (default 5000; --smoke 500)
#   --duration S     seconds of each wrk measurement (default 10; --smoke 2)
#   --rounds N       rounds of (idle feed, busy feed) wrk runs, alternating ABBA (default 5; --smoke 1)
#   --windows N      windows of the alternating serving measurement, half of them busy (default 24; --smoke 4;
#                    0: none); see "Serving, alternating" below
#   --window S       seconds per window (default 5; --smoke 3; at least 3)
#   --server-cpu N   CPU `ringd serve` (one shard) is pinned to (default 0; env BENCH_SERVER_CPU)
#   --load-cpu N     CPU wrk is pinned to (default 1; env BENCH_LOAD_CPU)
#   --feed-cpu LIST  CPUs PostgreSQL, pgbench, the probe and `ringd follow` are pinned to (taskset list,
#                    e.g. 1; default: not pinned; env BENCH_FEED_CPU). See "CPUs" below.
#   --follow-cpu LIST  CPUs `ringd follow` alone is pinned to (default: as --feed-cpu; env BENCH_FOLLOW_CPU)
#   --depth N        requests wrk pipelines per write (default 8; env WRK_DEPTH); see "CPUs" below
#   --serve-quota P  serve may use P% of one CPU (a CFS quota, 10 ms periods, in a cgroup of its own), so
#                    that serve, not wrk, sets the pace; 0: no quota (default 30; env BENCH_SERVE_QUOTA;
#                    needs root and the cgroup cpu controller)
#   --port N         HTTP port on 127.0.0.1 (default 29090; env BENCH_PORT)
#   --no-build       use the existing build/ringd (env RINGD_BIN overrides the path)
#   --keep-logs      keep every log of the run (PostgreSQL, follow, serve, pgbench, probe, samples.log)
#                    beside the results, as a failed run always does
#   --out DIR        where results go (default bench/results/follow; --smoke: a temp dir)
#   -h, --help       this text
#
# What runs: a throwaway PostgreSQL 15 cluster (unix socket, wal_level=logical, as nobody when run as
# root; synchronous_commit=off so pgbench reaches the rate on 2 cores, with wal_writer_delay=5ms
# because a walsender only decodes flushed WAL: the lag includes up to 5 ms of that wait; and
# wal_init_zero=off: a new cluster has no WAL segment to recycle, so it creates one every 16 MB, every
# ~16 s at the rate, and zero-filling 16 MB after the backlog phase held every PostgreSQL writer 3-4 s
# on this VM's disk (the WAL insert position stood still at each segment boundary), a stall that a
# long-running cluster, recycling its segments, does not have); pgbench for the writes; `ringd follow`
# (on --follow-cpu, else with PostgreSQL); `ringd serve --shards 1` pinned to --server-cpu; wrk pinned
# to --load-cpu; bench/follow/probe.c for the lag. Everything is stopped by pid.
# serve runs with --refresh-ms 10 (env BENCH_SERVE_ARGS replaces that): a commit becomes visible at a
# shard's next read-transaction renewal, so the lag is the follower's delay plus up to --refresh-ms
# (with the default 50 ms, p99 sits near 50 ms on its own).
#
# Apply rate: the follower is stopped, pgbench commits the backlog, the follower is started again and
# timed until ringd_feed_applied_transactions_total (read by /metrics at each scrape) has counted it
# all: start-up, PostgreSQL's decoding and ringd's apply together. Polled every 20 ms.
# Lag: probe commits an update of a row pgbench never touches every 50 ms and polls GET /users/{id}
# every 200 µs until the new value shows; p50/p90/p99 of (first answer showing it - commit returned).
# CPUs: on a 2-CPU machine the busy-feed run puts PostgreSQL (backends, walsender, WAL writer), pgbench
# and the follower next to serve and wrk. Unpinned, the kernel spreads them over both CPUs, so the
# busy/idle ratio mixes what the feed costs serve with how much CPU the shard lost to other processes.
# --feed-cpu 1 keeps all of them on the load CPU (--follow-cpu 0 puts the follower beside serve, as on
# a ringd host). wrk then shares CPU 1 with PostgreSQL, and a wrk short of CPU, not serve, would set
# the throughput: a serving ratio that measures how much CPU wrk had left. So serve runs under a CPU
# quota (--serve-quota) that wrk, pipelining --depth requests per write, can saturate in both runs;
# the busy/idle ratio is then serve's own capacity with and without the feed. wrk runs at nice 19 so
# that the load generator, not PostgreSQL, waits when CPU 1 is short (as on separate hosts). Each wrk
# run reports serve's CPU use (utime + stime from /proc, as a fraction of one CPU, all threads: it
# should sit at the quota; serve_saturated says whether both runs did) and requests per serve
# CPU-second; the follower's own CPU use in the busy run is reported beside it (follower_cpu), the
# CPU a ringd host gives the feed, outside serve's quota.
# Serving, alternating: this VM's speed drifts by 10-40 % over tens of seconds with no feed at all
# (serve alone under its quota, wrk's rate read every second: sd 9-19 %, lag-1 autocorrelation 0.55-0.9),
# so 10 s phases leave per-round ratios of 0.8 to 1.2. The alternating measurement flips the feed
# every --window seconds inside one pgbench and one wrk run: a PL/pgSQL function updates the followed
# table in even windows of the wall clock (floor(epoch / window) even) and the outside table in odd
# ones, at the same rate. serve's answered requests (/metrics) and CPU are read from 2 s after each
# window's start (the follower catches up within milliseconds; the index build that follows the last
# change comes within its 1-1.6 s gap) to 0.2 s before its end. Reported: mean busy window / mean idle
# window, and the median of each busy window over the mean of the idle windows beside it.
set -euo pipefail
shopt -s inherit_errexit

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
PG_BIN=/usr/lib/postgresql/15/bin

SMOKE=0
USERS="" SINGLE="" BATCHES="" RATE="" DURATION="" ROUNDS="" WINDOWS="" WINDOW=""
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
FEED_CPU=${BENCH_FEED_CPU:-}
FOLLOW_CPU=${BENCH_FOLLOW_CPU:-}
PORT=${BENCH_PORT:-29090}
SERVE_ARGS=${BENCH_SERVE_ARGS:---refresh-ms 10}
DEPTH=${WRK_DEPTH:-8}
QUOTA=${BENCH_SERVE_QUOTA:-30}
DO_BUILD=1
KEEP_LOGS=0
OUT=""

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
    --smoke) SMOKE=1 ;;
    --users) USERS=$2; shift ;;
    --single) SINGLE=$2; shift ;;
    --batches) BATCHES=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --windows) WINDOWS=$2; shift ;;
    --window) WINDOW=$2; shift ;;
    --server-cpu) SERVER_CPU=$2; shift ;;
    --load-cpu) LOAD_CPU=$2; shift ;;
    --feed-cpu) FEED_CPU=$2; shift ;;
    --follow-cpu) FOLLOW_CPU=$2; shift ;;
    --depth) DEPTH=$2; shift ;;
    --serve-quota) QUOTA=$2; shift ;;
    --port) PORT=$2; shift ;;
    --no-build) DO_BUILD=0 ;;
    --keep-logs) KEEP_LOGS=1 ;;
    --out) OUT=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "follow.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for v in USERS SINGLE BATCHES RATE DURATION ROUNDS WINDOWS WINDOW SERVER_CPU LOAD_CPU DEPTH QUOTA PORT; do
    val=${!v}
    if [ -n "$val" ] && ! [[ $val =~ ^[0-9]+$ ]]; then echo "follow.sh: --${v,,} wants a whole number, not '$val'" >&2; exit 2; fi
done
for v in FEED_CPU FOLLOW_CPU; do
    val=${!v}
    if [ -n "$val" ] && ! [[ $val =~ ^[0-9][0-9,-]*$ ]]; then
        flag=${v,,}; echo "follow.sh: --${flag//_/-} wants a CPU list such as 1 or 0-1, not '$val'" >&2; exit 2
    fi
done
if [ $SMOKE = 1 ]; then
    USERS=${USERS:-2000} SINGLE=${SINGLE:-2000} BATCHES=${BATCHES:-50} RATE=${RATE:-500} DURATION=${DURATION:-2} ROUNDS=${ROUNDS:-1}
    WINDOWS=${WINDOWS:-4} WINDOW=${WINDOW:-3}
else
    USERS=${USERS:-100000} SINGLE=${SINGLE:-100000} BATCHES=${BATCHES:-5000} RATE=${RATE:-5000} DURATION=${DURATION:-10} ROUNDS=${ROUNDS:-5}
    WINDOWS=${WINDOWS:-24} WINDOW=${WINDOW:-5}
fi
[ "$WINDOW" -ge 3 ] || { echo "follow.sh: --window must be at least 3 s (its first 2 s are not measured)" >&2; exit 2; }
[ "$USERS" -ge 200 ] || { echo "follow.sh: --users must be at least 200" >&2; exit 2; }
[ "$QUOTA" -le 100 ] || { echo "follow.sh: --serve-quota is a share of one CPU: 0 to 100, not $QUOTA" >&2; exit 2; }
[ "$DEPTH" -ge 1 ] || { echo "follow.sh: --depth must be at least 1" >&2; exit 2; }
[ "$ROUNDS" -ge 1 ] || { echo "follow.sh: --rounds must be at least 1" >&2; exit 2; }

for tool in wrk curl jq cc taskset setpriv; do
    command -v "$tool" >/dev/null || { echo "follow.sh: $tool is missing (./build.sh deps installs it)" >&2; exit 1; }
done
[ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/pgbench" ] || { echo "follow.sh: PostgreSQL 15 is missing (apt-get install postgresql-15)" >&2; exit 1; }

if [ $DO_BUILD = 1 ] && [ -z "${RINGD_BIN:-}" ]; then
    cmake -S "$REPO_DIR" -B "$REPO_DIR/build" -DCMAKE_BUILD_TYPE=Release -DRINGD_TESTS=OFF >/dev/null
    cmake --build "$REPO_DIR/build" -j "$(nproc)" >/dev/null
fi
RINGD=${RINGD_BIN:-$REPO_DIR/build/ringd}
[ -x "$RINGD" ] || { echo "follow.sh: no ringd at $RINGD (run without --no-build)" >&2; exit 1; }

work=$(mktemp -d /tmp/ringd-bench-follow-XXXXXX)
chmod 711 "$work" # PostgreSQL runs as nobody under it
pg_pid="" follow_pid="" serve_pid="" sampler_pid="" cgroup="" bg_pids=()
main_pid=$BASHPID
cleanup() {
    [ "$BASHPID" = "$main_pid" ] || return 0 # not in a $(...) subshell that inherited the trap
    for p in "${bg_pids[@]}" $sampler_pid; do kill -9 "$p" 2>/dev/null || true; done
    # ringd exits 0 on SIGTERM (the follower after confirming its position)
    for p in $follow_pid $serve_pid; do kill -TERM "$p" 2>/dev/null && { wait "$p" 2>/dev/null || true; }; done
    if [ -n "$pg_pid" ]; then
        # Fast shutdown (its checkpoint may take a while), then immediate; never remove the directory under it.
        kill -INT "$pg_pid" 2>/dev/null || true
        for _ in $(seq 1 600); do kill -0 "$pg_pid" 2>/dev/null || break; sleep 0.1; done
        kill -QUIT "$pg_pid" 2>/dev/null && sleep 1
        kill -KILL "$pg_pid" 2>/dev/null || true
        wait "$pg_pid" 2>/dev/null || true
    fi
    [ -z "$cgroup" ] || rmdir "$cgroup" 2>/dev/null || true # empty once serve is gone
    rm -rf "$work"
}
trap cleanup EXIT

log() { echo "follow.sh: $*" >&2; }
# The prefix that runs a feed-side command on --feed-cpu: a word list, not a function, so that $! of a
# backgrounded command is the command itself (taskset execs it), not a subshell.
FEEDSET=()
[ -z "$FEED_CPU" ] || FEEDSET=(taskset -c "$FEED_CPU")
FOLLOWSET=("${FEEDSET[@]}")
[ -z "$FOLLOW_CPU" ] || FOLLOWSET=(taskset -c "$FOLLOW_CPU")
now() { date +%s.%N; }
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
wait_line() { # FILE PATTERN SECONDS
    for _ in $(seq 1 $(($3 * 20))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    log "timed out waiting for '$2' in $1"; tail -n 20 "$1" >&2; return 1
}

# The machine, every 100 ms, into samples.log (kept with the logs of a failed run): unix time, then per
# CPU user+nice, system+irq+softirq, idle+iowait and steal ticks from /proc/stat, then the totals (µs) of
# CPU and I/O pressure (some, full) from /proc/pressure. A stall in the lag shows up here as a CPU with
# no idle ticks, steal, or I/O pressure, at the time the probe printed for it.
sample_machine() {
    local line cpu u n sy id io irq sirq st rest out psi
    while :; do
        out=$EPOCHREALTIME
        while read -r cpu u n sy id io irq sirq st rest; do
            case $cpu in cpu[0-9]*) out+=" $cpu=$((u + n)),$((sy + irq + sirq)),$((id + io)),$st" ;; esac
        done </proc/stat
        for psi in cpu io; do
            while read -r line; do out+=" $psi.${line%% *}=${line##*total=}"; done <"/proc/pressure/$psi" 2>/dev/null || true
        done
        echo "$out"
        sleep 0.1
    done
}
sample_machine >"$work/samples.log" 2>/dev/null &
sampler_pid=$!

# --- PostgreSQL ---
pg_user=$(id -un) pg_group=$(id -gn)
[ "$(id -u)" = 0 ] && pg_user=nobody pg_group=$(id -gn nobody)
mkdir -p "$work/pg" && chown "$pg_user:$pg_group" "$work/pg"
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid="$pg_user" --regid="$pg_group" --clear-groups -- "$@"; else "$@"; fi; }
as_pg "$PG_BIN/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$work/initdb.log" 2>&1 ||
    { cat "$work/initdb.log" >&2; exit 1; }
pg_port=$((PORT + 1))
cat >>"$work/pg/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$work/pg'
port = $pg_port
wal_level = logical
max_replication_slots = 4
max_wal_senders = 4
synchronous_commit = off
wal_writer_delay = 5ms
wal_init_zero = off
shared_buffers = 256MB
max_connections = 40
CONF
# Not through as_pg: a backgrounded function is a subshell, and $! must be the postmaster itself.
if [ "$(id -u)" = 0 ]; then
    "${FEEDSET[@]}" setpriv --reuid="$pg_user" --regid="$pg_group" --clear-groups -- "$PG_BIN/postgres" -D "$work/pg/data" >"$work/pg.log" 2>&1 &
else
    "${FEEDSET[@]}" "$PG_BIN/postgres" -D "$work/pg/data" >"$work/pg.log" 2>&1 &
fi
pg_pid=$!
CONNINFO="host=$work/pg port=$pg_port user=postgres dbname=postgres"
psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$CONNINFO" "$@"; }
for _ in $(seq 1 100); do psql -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
psql -c "CREATE TABLE users (id bigint PRIMARY KEY, name text, email text, n bigint NOT NULL DEFAULT 0, plan text, created timestamptz)" \
     -c "INSERT INTO users SELECT i, 'User ' || i, 'user' || i || '@example.com', 0, (ARRAY['free','pro','team'])[1 + i % 3],
         timestamptz '2024-01-01' + i * interval '1 minute' FROM generate_series(1, $USERS + 10) i" -c "VACUUM ANALYZE users" \
     -c "CREATE TABLE other (LIKE users INCLUDING ALL)" -c "INSERT INTO other SELECT * FROM users" -c "VACUUM ANALYZE other"
# pgbench never touches the last 10 rows: they are the probe's.
cat >"$work/single.sql" <<SQL
\set id random(1, $USERS)
UPDATE users SET n = n + 1 WHERE id = :id;
SQL
# The idle-feed run's writes: the same update rate on a table outside the publication, so PostgreSQL
# (and the walsender's decoding) costs the same CPU as in the busy run while the follower gets nothing.
cat >"$work/other.sql" <<SQL
\set id random(1, $USERS)
UPDATE other SET n = n + 1 WHERE id = :id;
SQL
cat >"$work/batch.sql" <<SQL
\set id random(1, $USERS - 99)
UPDATE users SET n = n + 1 WHERE id BETWEEN :id AND :id + 99;
SQL
cc -O2 -o "$work/probe" "$BENCH_DIR/follow/probe.c" $(pkg-config --cflags --libs libpq)

# --- ringd ---
db=$work/db
start_follower() {
    "${FOLLOWSET[@]}" "$RINGD" follow --db "$db" --pg "$CONNINFO" --table users 2>>"$work/follow.log" &
    follow_pid=$!
}
stop_follower() { kill -TERM "$follow_pid"; wait "$follow_pid" || true; follow_pid=""; }
start_follower
wait_line "$work/follow.log" "msg=follow_streaming" 120
taskset -c "$SERVER_CPU" "$RINGD" serve --listen "127.0.0.1:$PORT" --db "$db" --shards 1 $SERVE_ARGS 2>"$work/serve.log" &
serve_pid=$!
wait_line "$work/serve.log" "msg=listening" 30
# serve's quota: a cgroup of its own (v1 cpu controller, or v2 with cpu enabled), every thread moved in.
if [ "$QUOTA" -gt 0 ]; then
    if [ -w /sys/fs/cgroup/cpu/cgroup.procs ]; then
        cgroup=/sys/fs/cgroup/cpu/ringd-bench-follow-$main_pid
        mkdir "$cgroup" && echo 10000 >"$cgroup/cpu.cfs_period_us" && echo $((QUOTA * 100)) >"$cgroup/cpu.cfs_quota_us"
    elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
        cgroup=/sys/fs/cgroup/ringd-bench-follow-$main_pid
        mkdir "$cgroup" && echo "$((QUOTA * 100)) 10000" >"$cgroup/cpu.max"
    else
        log "--serve-quota needs the cgroup cpu controller (and root); --serve-quota 0 runs without"; exit 1
    fi
    echo "$serve_pid" >"$cgroup/cgroup.procs"
fi
log "PostgreSQL and ringd up: $USERS users copied"

pgbench() { "${FEEDSET[@]}" "$PG_BIN/pgbench" -n -M prepared "$@" "$CONNINFO" >>"$work/pgbench.log" 2>&1 || { log "pgbench failed"; tail -n 5 "$work/pgbench.log" >&2; exit 1; }; }

# Apply rate: a backlog of N transactions, then time the follower through it.
apply_rate() { # NAME SCRIPT TXNS ROWS_PER_TXN
    local name=$1 script=$2 txns=$3 per=$4
    stop_follower
    local before; before=$(metric ringd_feed_applied_transactions_total)
    local clients=4; [ "$txns" -lt 4 ] && clients=1
    pgbench -c "$clients" -j 2 -t $((txns / clients)) -f "$script"
    local want=$((before + txns / clients * clients))
    local t0; t0=$(now)
    start_follower
    local got=0 polls=$((3000 + txns / 20)) # 60 s, and 1 s more per 1,000 transactions
    for _ in $(seq 1 "$polls"); do
        got=$(metric ringd_feed_applied_transactions_total)
        [ "${got:-0}" -ge "$want" ] && break
        sleep 0.02
    done
    local t1; t1=$(now)
    [ "${got:-0}" -ge "$want" ] || { log "$name: the follower applied $got of $want"; tail -n 20 "$work/follow.log" >&2; exit 1; }
    local rows=$(( (want - before) * per ))
    jq -n --arg name "$name" --argjson txns $((want - before)) --argjson rows "$rows" --argjson t0 "$t0" --argjson t1 "$t1" \
        '{name: $name, transactions: $txns, row_changes: $rows, seconds: ($t1 - $t0),
          row_changes_per_sec: ($rows / ($t1 - $t0)), transactions_per_sec: ($txns / ($t1 - $t0))}'
}

wrk_start() { # SECONDS OUT: the serving load in the background ($! is wrk's pid)
    WRK_POOL=$USERS WRK_USERS=$USERS WRK_DEPTH=$DEPTH nice -n 19 taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${1}s" -s "$BENCH_DIR/wrk/users.lua" \
        "http://127.0.0.1:$PORT" >"$2" 2>&1 &
}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime of PID ("ringd" has no blank)
minflt() { awk '{ print $10 }' "/proc/$1/stat"; }     # minor page faults of PID, all its threads
index_ticks() { # utime + stime of serve's indexer thread (store/index.c names it), 0 without one
    local t
    for t in /proc/"$1"/task/*; do
        [ "$(cat "$t/comm" 2>/dev/null)" = ringd-index ] && { awk '{ print $14 + $15 }' "$t/stat"; return; } # not /proc/TID: the whole process
    done
    echo 0
}
wrk_rps() { # prints requests/s of one wrk run, serve's and the follower's CPU use meanwhile (fractions of one CPU),
    # serve's minor page faults per second (a page the follower wrote that serve maps for the first time),
    # and the CPU use of serve's indexer thread (its builds of the snapshot index, inside serve's quota)
    local t0 c0 f0 m0 i0 t1 c1 f1 m1 i1 wrk_pid
    wrk_start "$DURATION" "$work/wrk.out"
    wrk_pid=$!
    sleep 0.5 # its request pool is built and its connections are open: the CPU shares are of the load alone
    t0=$(now) c0=$(ticks "$serve_pid") f0=$(ticks "$follow_pid") m0=$(minflt "$serve_pid") i0=$(index_ticks "$serve_pid")
    wait "$wrk_pid" || true
    t1=$(now) c1=$(ticks "$serve_pid") f1=$(ticks "$follow_pid") m1=$(minflt "$serve_pid") i1=$(index_ticks "$serve_pid")
    local rps; rps=$(awk '/^Requests\/sec:/ { print $2 }' "$work/wrk.out")
    share() { awk -v a="$1" -v b="$2" -v s="$t0" -v e="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", (b - a) / hz / (e - s) }'; }
    echo "$rps $(share "$c0" "$c1") $(share "$f0" "$f1") $(awk -v a="$m0" -v b="$m1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }') $(share "$i0" "$i1")"
}

log "apply rate, single-row transactions ($SINGLE)"
# In this shell, not in $(...): it restarts the follower, whose pid the cleanup needs.
apply_rate single "$work/single.sql" "$SINGLE" 1 >"$work/single.json"
single=$(cat "$work/single.json")
log "apply rate, 100-row transactions ($BATCHES)"
apply_rate batch100 "$work/batch.sql" "$BATCHES" 100 >"$work/batch.json"
batch=$(cat "$work/batch.json")
sleep 1

rate_writes() { # SCRIPT LOG [SECONDS]: pgbench at --rate, in the background (default: the wrk run and 4 s more)
    "${FEEDSET[@]}" "$PG_BIN/pgbench" -n -M prepared -c 4 -j 2 -R "$RATE" -T "${3:-$((DURATION + 4))}" -f "$1" "$CONNINFO" >"$2" 2>&1 &
    bg_pids+=($!)
    sleep 1
}
phase() { # ROUND idle|busy: one wrk run beside that feed; appends its figures to phases.jsonl
    local round=$1 kind=$2 rps cpu fcpu faults icpu probe_pid=""
    if [ "$kind" = idle ]; then
        log "round $round: serving with an idle feed, $RATE updates/s of a table outside the publication (wrk ${DURATION}s)"
        rate_writes "$work/other.sql" "$work/pgbench-idle-$round.log"
    else
        log "round $round: serving at $RATE updates/s of the followed table, with the probe (wrk ${DURATION}s)"
        rate_writes "$work/single.sql" "$work/pgbench-busy-$round.log"
        # The probe starts once wrk runs (its pool is built), and exec keeps $! the probe's pid.
        (sleep 0.5; exec "${FEEDSET[@]}" "$work/probe" "$CONNINFO" "$PORT" $((DURATION * 20)) 50 $((USERS + 1)) 10) >"$work/probe-$round.out" 2>&1 &
        probe_pid=$!
        bg_pids+=("$probe_pid")
    fi
    read -r rps cpu fcpu faults icpu < <(wrk_rps)
    [ -z "$probe_pid" ] || wait "$probe_pid" || { cat "$work/probe-$round.out" >&2; exit 1; }
    wait "${bg_pids[0]}" || true
    bg_pids=()
    local tps; tps=$(awk '/^tps = / { print $3; exit }' "$work/pgbench-$kind-$round.log")
    jq -nc --argjson round "$round" --arg kind "$kind" --argjson rps "${rps:-null}" --argjson cpu "${cpu:-null}" \
        --argjson fcpu "${fcpu:-null}" --argjson tps "${tps:-null}" \
        --argjson faults "${faults:-null}" --argjson icpu "${icpu:-null}" \
        '{round: $round, kind: $kind, rps: $rps, serve_cpu: $cpu, follower_cpu: $fcpu, updates_per_sec: $tps,
          serve_minor_faults_per_sec: $faults, indexer_cpu: $icpu}' >>"$work/phases.jsonl"
}
# Idle and busy alternate, ABBA, so that a drift of the host over the minutes cancels out of the ratio.
: >"$work/phases.jsonl"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then phase "$round" idle; phase "$round" busy; else phase "$round" busy; phase "$round" idle; fi
done
# Serving, alternating (see the header): one pgbench, one wrk, the feed flipped by the wall clock.
requests() { curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^ringd_requests_processed_total/ { s += $2 } END { print s + 0 }'; }
sleep_until() { local d; d=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }'); sleep "$d"; }
: >"$work/windows.jsonl"
if [ "$WINDOWS" -gt 0 ]; then
    span=$((WINDOWS * WINDOW + WINDOW + 3))
    log "serving, alternating: $WINDOWS windows of ${WINDOW}s, the feed on the followed table in even ones (wrk ${span}s)"
    psql -c "CREATE FUNCTION bench_update(uid bigint) RETURNS void LANGUAGE plpgsql AS \$\$
             BEGIN
               IF floor(extract(epoch FROM clock_timestamp()) / $WINDOW)::bigint % 2 = 0 THEN
                 UPDATE users SET n = n + 1 WHERE id = uid;
               ELSE
                 UPDATE other SET n = n + 1 WHERE id = uid;
               END IF;
             END \$\$"
    printf '\\set id random(1, %d)\nSELECT bench_update(:id);\n' "$USERS" >"$work/alternate.sql"
    rate_writes "$work/alternate.sql" "$work/pgbench-alternate.log" $((span + 2))
    wrk_start "$span" "$work/wrk-alternate.out"
    alt_wrk_pid=$!
    bg_pids+=("$alt_wrk_pid")
    sleep 1
    first=$(awk -v n="$(now)" -v w="$WINDOW" 'BEGIN { printf "%d", int(n / w) + 1 }')
    for w in $(seq "$first" $((first + WINDOWS - 1))); do
        sleep_until "$(awk -v w="$w" -v s="$WINDOW" 'BEGIN { printf "%.3f", w * s + 2 }')"
        t0=$(now) r0=$(requests) c0=$(ticks "$serve_pid") f0=$(ticks "$follow_pid")
        sleep_until "$(awk -v w="$w" -v s="$WINDOW" 'BEGIN { printf "%.3f", (w + 1) * s - 0.2 }')"
        t1=$(now) r1=$(requests) c1=$(ticks "$serve_pid") f1=$(ticks "$follow_pid")
        kind=busy; [ $((w % 2)) = 0 ] || kind=idle
        awk -v w="$w" -v k="$kind" -v t0="$t0" -v t1="$t1" -v r0="$r0" -v r1="$r1" -v c0="$c0" -v c1="$c1" -v f0="$f0" -v f1="$f1" \
            -v hz="$(getconf CLK_TCK)" 'BEGIN { d = t1 - t0; printf "{\"window\": %d, \"kind\": \"%s\", \"rps\": %.1f, \"serve_cpu\": %.3f, \"follower_cpu\": %.3f}\n",
            w, k, (r1 - r0) / d, (c1 - c0) / hz / d, (f1 - f0) / hz / d }' >>"$work/windows.jsonl"
    done
    wait "$alt_wrk_pid" || true
    wait "${bg_pids[0]}" || true
    bg_pids=()
fi

# The lag: every probe of every busy phase, percentiles as probe.c takes them.
awk '$1 == "LAG" { print $2 }' "$work"/probe-*.out | sort -n >"$work/lags"
lag=$(awk '{ v[NR - 1] = $1 } $1 >= 5000 { t++ } END {
    if (NR == 0) { print "{}"; exit }
    p = "p50_ms p90_ms p99_ms"; split("0.50 0.90 0.99", q, " "); split(p, k, " ")
    printf "{\"count\": %d, ", NR
    for (i = 1; i <= 3; i++) printf "\"%s\": %.2f, ", k[i], v[int((NR - 1) * q[i])]
    printf "\"max_ms\": %.2f, \"timeouts\": %d}\n", v[NR - 1], t }' "$work/lags")

commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
result=$(jq -n --argjson single "$single" --argjson batch "$batch" --slurpfile phases "$work/phases.jsonl" --argjson lag "$lag" \
    --slurpfile windows "$work/windows.jsonl" --argjson window "$WINDOW" \
    --argjson quota "$QUOTA" --argjson depth "$DEPTH" --arg feed_cpu "$FEED_CPU" --arg follow_cpu "${FOLLOW_CPU:-$FEED_CPU}" \
    --argjson rate "$RATE" --arg commit "$commit" --argjson users "$USERS" --argjson smoke "$SMOKE" --arg host "$(nproc) CPUs, $(uname -r)" \
    --argjson duration "$DURATION" '
    def of($k): [$phases[] | select(.kind == $k)];
    def mean(f): (map(f) | add) / length;
    def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    (of("idle")) as $idle | (of("busy")) as $busy |
    [range(0; $idle | length) | ($busy[.].rps / $idle[.].rps)] as $ratios |
    {commit: $commit, host: $host, smoke: ($smoke == 1), users: $users, apply: [$single, $batch],
     lag: ({updates_per_sec_target: $rate, updates_per_sec: ($busy | mean(.updates_per_sec))} + $lag),
     serving: {wrk: "-t1 -c64 at nice 19, \($depth) requests per write, \($duration) s per phase", serve_quota_cpu: (if $quota > 0 then $quota / 100 else null end),
               rounds: ($idle | length), phases: $phases,
               idle_feed_other_table_updates_per_sec: ($idle | mean(.updates_per_sec)),
               idle_feed_rps: ($idle | mean(.rps)), busy_feed_rps: ($busy | mean(.rps)),
               busy_over_idle: (($busy | mean(.rps)) / ($idle | mean(.rps))),
               busy_over_idle_per_round: $ratios, busy_over_idle_median: ($ratios | median),
               feed_cpu: (if $feed_cpu == "" then null else $feed_cpu end),
               follow_cpu: (if $follow_cpu == "" then null else $follow_cpu end),
               idle_serve_cpu: ($idle | mean(.serve_cpu)), busy_serve_cpu: ($busy | mean(.serve_cpu)),
               busy_over_idle_per_serve_cpu: (($busy | mean(.rps / .serve_cpu)) / ($idle | mean(.rps / .serve_cpu))),
               serve_saturated: (if $quota > 0 then ($phases | map(.serve_cpu) | min) >= 0.95 * $quota / 100 else null end),
               idle_follower_cpu: ($idle | mean(.follower_cpu)), busy_follower_cpu: ($busy | mean(.follower_cpu)),
               idle_serve_minor_faults_per_sec: ($idle | mean(.serve_minor_faults_per_sec)),
               busy_serve_minor_faults_per_sec: ($busy | mean(.serve_minor_faults_per_sec)),
               idle_indexer_cpu: ($idle | mean(.indexer_cpu)), busy_indexer_cpu: ($busy | mean(.indexer_cpu))},
     serving_alternating: (if ($windows | length) == 0 then null else
       ($windows | map(select(.kind == "idle"))) as $wi | ($windows | map(select(.kind == "busy"))) as $wb |
       {window_s: $window, measured_s: ($window - 2.2), windows: ($windows | length), list: $windows,
        idle_feed_rps: ($wi | mean(.rps)), busy_feed_rps: ($wb | mean(.rps)),
        busy_over_idle: (($wb | mean(.rps)) / ($wi | mean(.rps))),
        # each busy window against the mean of the idle windows just before and after it
        busy_over_neighbours_median: ([$windows | to_entries[] | select(.value.kind == "busy") | .key as $i |
            [(if $i > 0 then $windows[$i - 1] else null end), $windows[$i + 1]] | map(select(. != null and .kind == "idle")) as $n |
            select($n | length > 0) | $windows[$i].rps / ($n | mean(.rps))] | if length == 0 then null else median end),
        serve_cpu_min: ($windows | map(.serve_cpu) | min), busy_follower_cpu: ($wb | mean(.follower_cpu))} end),
     targets: {batch_row_changes_per_sec_min: 50000, lag_p99_ms_max: 50, serving_drop_max: 0.10}}')

printf '%s\n' "$result" | jq -r '
  def r3: . * 1000 | round / 1000;
  "ringd follow benchmark (\(.commit), \(.host), \(.users) users\(if .smoke then ", SMOKE: sizes too small to mean anything" else "" end))",
  (.apply[] | "  apply \(.name): \(.transactions) txns, \(.row_changes) row changes in \(.seconds * 1000 | floor) ms: \(.row_changes_per_sec | floor) row changes/s, \(.transactions_per_sec | floor) txns/s"),
  "  lag at \(.lag.updates_per_sec // "?" | floor) updates/s (target \(.lag.updates_per_sec_target)), \(.lag.count) probes: p50 \(.lag.p50_ms) ms, p90 \(.lag.p90_ms) ms, p99 \(.lag.p99_ms) ms, max \(.lag.max_ms) ms, timeouts \(.lag.timeouts)",
  "  serving (wrk \(.serving.wrk), 1 shard\(if .serving.serve_quota_cpu then " under a quota of \(.serving.serve_quota_cpu) CPU" else "" end), rounds: \(.serving.rounds)): idle feed (\(.serving.idle_feed_other_table_updates_per_sec | floor) updates/s outside the publication) \(.serving.idle_feed_rps | floor) req/s, busy feed \(.serving.busy_feed_rps | floor) req/s, ratio \(.serving.busy_over_idle | r3) (per round \(.serving.busy_over_idle_per_round | map(r3) | join(" ")), median \(.serving.busy_over_idle_median | r3))",
  (if .serving_alternating then "  serving, alternating (\(.serving_alternating.windows) windows of \(.serving_alternating.window_s) s, \(.serving_alternating.measured_s | r3) s measured in each): idle feed \(.serving_alternating.idle_feed_rps | floor) req/s, busy feed \(.serving_alternating.busy_feed_rps | floor) req/s, ratio \(.serving_alternating.busy_over_idle | r3), median of busy / neighbouring idle \(.serving_alternating.busy_over_neighbours_median | r3), serve CPU min \(.serving_alternating.serve_cpu_min), follower CPU busy \(.serving_alternating.busy_follower_cpu | r3)" else empty end),
  "  serve CPU idle \(.serving.idle_serve_cpu | r3) busy \(.serving.busy_serve_cpu | r3), ratio per serve CPU \(.serving.busy_over_idle_per_serve_cpu | r3); follower CPU idle \(.serving.idle_follower_cpu | r3) busy \(.serving.busy_follower_cpu | r3) (feed on CPUs \(.serving.feed_cpu // "any"), follower on \(.serving.follow_cpu // "any")); serve minor faults/s idle \(.serving.idle_serve_minor_faults_per_sec | floor) busy \(.serving.busy_serve_minor_faults_per_sec | floor); serve indexer CPU idle \(.serving.idle_indexer_cpu | r3) busy \(.serving.busy_indexer_cpu | r3)\(if .serving.serve_saturated == false then "; NOT SATURATED: serve used less than its quota in some phase, the ratio measures the load generator too" else "" end)"'

if [ $SMOKE = 1 ]; then
    out=${OUT:-$work}
else
    out=${OUT:-$BENCH_DIR/results/follow}
fi
mkdir -p "$out"
file="$out/$(date -u +%Y-%m-%d)-$commit.json"
printf '%s\n' "$result" >"$file"
[ $SMOKE = 1 ] && [ -z "$OUT" ] || log "results: $file"
keep_logs() { # DIR
    mkdir -p "$1" && cp "$work"/*.log "$work"/*.out "$1"/ 2>/dev/null || true
}
# Every figure present, or the run failed.
printf '%s\n' "$result" | jq -e '.apply[0].row_changes_per_sec > 0 and .apply[1].row_changes_per_sec > 0 and
  .lag.p99_ms != null and .lag.timeouts == 0 and .serving.idle_feed_rps > 0 and .serving.busy_feed_rps > 0 and
  all(.serving.phases[]; .rps != null and .rps > 0) and
  (.serving_alternating == null or all(.serving_alternating.list[]; .rps > 0))' >/dev/null ||
    { keep="$out/failed-$(date -u +%Y%m%dT%H%M%S)"; keep_logs "$keep"; log "a figure is missing (logs kept in $keep)"; exit 1; }
if [ $KEEP_LOGS = 1 ]; then
    keep="$out/logs-$(date -u +%Y%m%dT%H%M%S)"; keep_logs "$keep"; log "logs kept in $keep"
fi
