#!/usr/bin/env bash
# bench/callgrind_h2.sh - user-space instructions per HTTP/2 request (valgrind callgrind), ringd or h2o, one fixed load.
#   bench/callgrind_h2.sh ringd BIN DBDIR C M [N]   ringd serve --shards 1 on a DB made by `ringd demo --users 100000`
#   bench/callgrind_h2.sh h2o - - C M [N]           h2o with bench/peers/h2o.conf.in (one thread, a static body)
# Load: h2load -t1 -cC -mM -n N (default 20000) over 1000 random /users/{id} URIs, after a 2000-request warm-up;
# the counters are zeroed after the warm-up (callgrind_control -z) and dumped after the load (-d).
# Prints "instructions_per_request=..." and leaves the annotated profile in $OUT (default /tmp/callgrind-h2).
# Not a timing benchmark: it measures instructions, and valgrind slows the server ~50x.
set -euo pipefail
server=${1:?usage: $0 ringd|h2o BIN DBDIR C M [N]} bin=${2:-} db=${3:-} c=${4:?C} m=${5:?M} n=${6:-20000}
out=${OUT:-/tmp/callgrind-h2} port=${PORT:-29397}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
label="$server-c${c}m${m}"
rm -f "$out/$label".*
case "$server" in
ringd) cmd=("$bin" serve --listen "127.0.0.1:$port" --db "$db" --shards 1) ;;
h2o)
    cp "$here/peers/body.json" "$out/body.json"
    sed -e "s|@USER@|$(id -un)|; s|@WORK@|$out|g; s|@PORT@|$port|" "$here/peers/h2o.conf.in" >"$out/h2o.conf"
    cmd=(h2o -c "$out/h2o.conf")
    ;;
*) echo "$0: ringd or h2o" >&2; exit 2 ;;
esac
valgrind --tool=callgrind "--callgrind-out-file=$out/$label.%p" "${cmd[@]}" >"$out/$label.log" 2>&1 &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true' EXIT
for _ in $(seq 150); do curl -s -o /dev/null "http://127.0.0.1:$port/users/1" && break; sleep 0.2; done
awk -v p="$port" 'BEGIN { srand(7); for (i = 0; i < 1000; i++) printf "http://127.0.0.1:%d/users/%d\n", p, 1 + int(rand() * 100000) }' \
    >"$out/uris.txt"
h2load -t1 -c"$c" -m"$m" -n 2000 -i "$out/uris.txt" >/dev/null 2>&1
callgrind_control -z "$pid" >/dev/null
h2load -t1 -c"$c" -m"$m" -n "$n" -i "$out/uris.txt" >"$out/$label.h2load" 2>&1
callgrind_control -d "$pid" >/dev/null
sleep 1
kill -KILL "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
trap - EXIT
f=$(ls -t "$out/$label".[0-9]*.[0-9]* | head -n 1)
# A dump taken while the server runs charges the frames still on the stack (clone, start_thread, main) with everything.
callgrind_annotate --inclusive=no --threshold=100 "$f" >"$out/$label.txt" 2>/dev/null
total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' "$out/$label.txt")
grep -E '^requests:' "$out/$label.h2load"
echo "$label instructions=$total requests=$n instructions_per_request=$((total / n))"
