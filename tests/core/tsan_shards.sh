#!/usr/bin/env bash
# tsan_shards.sh - the ThreadSanitizer check of what shards share: a TSan build of
# ringd with 2 shards under HTTP/1.1 and HTTP/2 load (connection handoffs over
# MSG_RING, cross-shard load counters), /metrics scraped meanwhile (every
# shard's block read by another thread), HTTPS load while SIGHUP reloads the
# certificate (contexts published by the main thread, taken and released by the
# shards), `ringd import` committing small updates meanwhile (the snapshot index
# pinned by the indexer thread and read by the shards through the change log),
# the access log on (each shard's ring drained by the writer thread;
# SIGUSR1 reopens the file), then SIGTERM (drain, wake-ups).
# Criterion cannot run under TSan, so real clients drive the server here.
#   tests/core/tsan_shards.sh BUILD_DIR    (a -DRINGD_TSAN=ON build)
# Exits non-zero on any TSan report, a failed request or a non-zero exit.
set -euo pipefail
bin=${1:?usage: tsan_shards.sh BUILD_DIR}/ringd
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/ringd-tsan-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$bin" demo --db "$work/db" --users 10000 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" \
    -days 2 -subj /CN=localhost >/dev/null 2>&1
mkdir "$work/tsan"
TSAN_OPTIONS="halt_on_error=0 log_path=$work/tsan/report" \
    "$bin" serve --listen 127.0.0.1:0 --db "$work/db" --shards 2 --tls-listen 127.0.0.1:0 \
    --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --access-log "$work/access.log" --access-log-sample 3 \
    2>"$work/log" &
pid=$!
port=""
for _ in $(seq 1 200); do
    port=$(sed -n 's/.*msg=listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/log")
    tls_port=$(sed -n 's/.*msg=listening .* tls=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/log")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "tsan_shards: server did not start"; cat "$work/log"; exit 1; }

WRK_USERS=10000 wrk -t1 -c100 -d4s -s "$here/bench/wrk/users.lua" "http://127.0.0.1:$port" >"$work/wrk.out" 2>&1 &
wrk_pid=$!
h2load -c10 -m10 -D 4 "http://127.0.0.1:$port/users/5" >"$work/h2.out" 2>&1 &
h2_pid=$!
h2load -c8 -m4 -D 4 "https://127.0.0.1:$tls_port/users/6" >"$work/tls.out" 2>&1 &
tls_pid=$!
# A writer beside the server, as `ringd follow` is: 50 users rewritten every 0.2 s.
(
    for round in $(seq 1 16); do
        for i in $(seq 1 50); do
            id=$(((round * 131 + i * 197) % 10000 + 1))
            echo "{\"id\":$id,\"name\":\"user $id\",\"round\":$round}"
        done >"$work/upd.jsonl"
        "$bin" import --db "$work/db" "$work/upd.jsonl" 2>>"$work/import.log" || echo "import failed" >>"$work/import.log"
        sleep 0.2
    done
) &
import_pid=$!
for i in $(seq 1 8); do
    curl -s "http://127.0.0.1:$port/metrics" >/dev/null
    [ $((i % 3)) -ne 1 ] || kill -HUP "$pid" # a reload under load: the old context is freed once both shards moved on
    [ "$i" -ne 4 ] || { mv "$work/access.log" "$work/access.log.1"; kill -USR1 "$pid"; }
    sleep 0.5
done
wait "$wrk_pid" "$h2_pid" "$tls_pid" "$import_pid"
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""

fail=0
if [ "$status" -ne 0 ]; then echo "tsan_shards: ringd exited $status"; fail=1; fi
if ! grep -q ' 0 failed, 0 errored' "$work/h2.out"; then echo "tsan_shards: h2load:"; grep '^requests:' "$work/h2.out"; fail=1; fi
if ! grep -q ' 0 failed, 0 errored' "$work/tls.out"; then echo "tsan_shards: h2load (TLS):"; grep '^requests:' "$work/tls.out"; fail=1; fi
if [ "$(grep -c 'msg=tls_reloaded' "$work/log")" -ne 3 ]; then echo "tsan_shards: expected 3 TLS reloads:"; cat "$work/log"; fail=1; fi
if grep -q 'Non-2xx\|Socket errors' "$work/wrk.out"; then echo "tsan_shards: wrk:"; cat "$work/wrk.out"; fail=1; fi
if ! grep -q 'msg=access_log_reopened' "$work/log"; then echo "tsan_shards: the access log was not reopened"; fail=1; fi
if [ ! -s "$work/access.log" ] || [ ! -s "$work/access.log.1" ]; then echo "tsan_shards: access log lines missing"; fail=1; fi
if grep -q 'import failed' "$work/import.log"; then echo "tsan_shards: an import failed:"; cat "$work/import.log"; fail=1; fi
overlay=$(echo "$metrics" | sed -n 's/^ringd_store_index_overlay_lookups_total \([0-9]*\)$/\1/p')
if [ -z "$overlay" ] || [ "$overlay" -eq 0 ]; then
    echo "tsan_shards: no lookup went through the older index while imports ran:"; echo "$metrics" | grep ringd_store_index; fail=1
fi
if [ -n "$(ls -A "$work/tsan")" ]; then echo "tsan_shards: ThreadSanitizer reports:"; head -n 80 "$work"/tsan/*; fail=1; fi
echo "tsan_shards: $(grep -c . "$work/wrk.out" >/dev/null && grep 'requests in' "$work/wrk.out"), h2: $(grep '^requests:' "$work/h2.out"), tls: $(grep '^requests:' "$work/tls.out")"
[ "$fail" -eq 0 ] && echo "tsan_shards: 1 passed, 0 failed" || echo "tsan_shards: 0 passed, 1 failed"
exit "$fail"
