#!/usr/bin/env bash
# bench/access_log.sh BIN DB REPO - the access log off / 1:1 / 1:100 (issue 15): `ringd serve --shards 1` on CPU 0,
# wrk -t1 -c64 (bench/wrk/users.lua, 1,000,000 users) on CPU 1, 8 s after 2 s of warm-up, 3 interleaved rounds;
# server CPU of all its threads (shard, log writer, indexer) from /proc. Loopback port 29380.
set -u
BIN=$1; DB=$2; REPO=$3; PORT=29380
tck=$(getconf CLK_TCK)
for round in 1 2 3; do for mode in off 1 100; do
  a=(); [ $mode = off ] || a=(--access-log /tmp/ringd-access.log --access-log-sample $mode)
  taskset -c 0 $BIN serve --listen 127.0.0.1:$PORT --db $DB --shards 1 "${a[@]}" 2>/dev/null & pid=$!
  for i in $(seq 50); do curl -sf 127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done
  WRK_USERS=1000000 taskset -c 1 wrk -t1 -c64 -d2s -s $REPO/bench/wrk/users.lua http://127.0.0.1:$PORT >/dev/null
  t0=$(awk '{print $14+$15}' /proc/$pid/stat)
  out=$(WRK_USERS=1000000 taskset -c 1 wrk -t1 -c64 -d8s -s $REPO/bench/wrk/users.lua http://127.0.0.1:$PORT)
  t1=$(awk '{print $14+$15}' /proc/$pid/stat)
  # count threads' CPU: /proc/pid/stat covers all threads of the process
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  drop=$(curl -s 127.0.0.1:$PORT/metrics | awk '/^ringd_access_log_dropped_total/{print $2}')
  lines=$( [ -f /tmp/ringd-access.log ] && wc -l < /tmp/ringd-access.log || echo 0)
  kill $pid; wait $pid 2>/dev/null; rm -f /tmp/ringd-access.log
  awk -v r=$round -v m=$mode -v rps=$rps -v reqs=$reqs -v t=$((t1-t0)) -v tck=$tck -v d="${drop:-0}" -v l=$lines \
    'BEGIN{printf "round %d log %-4s req/s %s  server CPU %.2f us/req  dropped %s  lines %s\n", r, m, rps, t/tck*1e6/reqs, d, l}'
done; done
