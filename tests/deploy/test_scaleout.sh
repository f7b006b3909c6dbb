#!/usr/bin/env bash
# test_scaleout.sh - three `ringd serve` instances on loopback behind HAProxy with deploy/haproxy/haproxy.cfg
# (addresses substituted), wrk (HTTP/1.1) and h2load (h2c) through HAProxy for 15 s each run:
#   1. the instances restarted one by one (SIGTERM, drain, replacement on the same ports, ready): 0 failed requests;
#   2. one instance SIGKILLed mid-load: the failures are reported (HAProxy's retries should make them 0), and
#      service must continue (requests keep succeeding after the kill).
# Usage: test_scaleout.sh RINGD_BIN SOURCE_DIR. Exit 77 (skip) without haproxy, wrk or h2load.
set -euo pipefail
RINGD=$1
SRC=$2
LOAD_S=${SCALEOUT_LOAD_S:-15}
for t in haproxy wrk h2load curl; do
    command -v "$t" >/dev/null || { echo "skip: $t not installed"; exit 77; }
done

tmp=$(mktemp -d /tmp/ringd-scaleout-XXXXXX)
pids=()
declare -A ringd_pid http_port admin_port
cleanup() {
    for p in "${pids[@]}" "${ringd_pid[@]}"; do
        kill -9 "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
[ -n "${SCALEOUT_KEEP:-}" ] && echo "tmp=$tmp"

# start_instance N: ringd N. The first start takes free ports (port 0, read back from its log); a replacement
# joins the same ports with --reuse-port-join while its predecessor drains, so the ports are never free for
# another process to take. Waits for its "listening" line: every shard serves, /readyz is 200.
starts=0
start_instance() {
    local n=$1 log
    starts=$((starts + 1))
    log="$tmp/ringd$n.$starts.log"
    [ -d "$tmp/db$n" ] || "$RINGD" demo --db "$tmp/db$n" --users 1000 >/dev/null 2>&1
    local listen=(--listen 127.0.0.1:0 --admin-listen 127.0.0.1:0)
    [ -n "${http_port[$n]:-}" ] &&
        listen=(--listen "127.0.0.1:${http_port[$n]}" --admin-listen "127.0.0.1:${admin_port[$n]}" --reuse-port-join)
    "$RINGD" serve "${listen[@]}" --db "$tmp/db$n" --shards 1 --drain-grace-ms 2000 --drain-timeout-ms 5000 \
        >"$log" 2>&1 &
    ringd_pid[$n]=$!
    for _ in $(seq 1 300); do
        local line
        line=$(grep -m1 'msg=listening' "$log" || true)
        if [ -n "$line" ]; then
            http_port[$n]=$(echo "$line" | sed -E 's/.* addr=[^ ]*:([0-9]+) .*/\1/')
            admin_port[$n]=$(echo "$line" | sed -E 's/.* admin=[^ ]*:([0-9]+).*/\1/')
            return 0
        fi
        kill -0 "${ringd_pid[$n]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "ringd $n did not start"; tail -n 20 "$log"; return 1
}

# stop_instance N [PID]: SIGTERM and wait for its exit status (must be 0: drained).
stop_instance() {
    local n=$1 pid=${2:-${ringd_pid[$1]}} rc=0
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    [ "$pid" = "${ringd_pid[$n]:-}" ] && unset "ringd_pid[$n]"
    [ "$rc" -eq 0 ] || { echo "ringd $n exited $rc after SIGTERM"; tail -n 20 "$tmp"/ringd$n.*.log; return 1; }
}

# haproxy_up N: waits until HAProxy's health checks see ringd N as UP in both backends (stats socket).
haproxy_up() {
    local n=$1
    for _ in $(seq 1 100); do
        local up
        up=$(echo "show stat" | /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError:
    print(0); sys.exit(0)  # HAProxy is still starting
s.sendall(b"show stat\n")
data = b""
while True:
    b = s.recv(65536)
    if not b: break
    data += b
print(sum(1 for l in data.decode().splitlines() if l.split(",")[1:2] == ["ringd" + sys.argv[2]] and ",UP," in l))
' "$tmp/haproxy.sock" "$n")
        [ "$up" = 2 ] && return 0
        sleep 0.1
    done
    echo "haproxy never saw ringd $n up"; /usr/bin/python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b\"show stat\\n\"); print(s.makefile().read())" "$tmp/haproxy.sock" | cut -d, -f1,2,18,37 | head; tail -5 "$tmp/haproxy.log"; return 1
}

for n in 1 2 3; do start_instance "$n"; done
front=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# The repository's config, with loopback addresses: the server lines' ADDR:PORT and "port ADMIN", the bind port;
# a stats socket so the test can see the health checks' verdicts.
/usr/bin/python3 - "$SRC/deploy/haproxy/haproxy.cfg" "$tmp/haproxy.cfg" "$front" "$tmp/haproxy.sock" \
    "${http_port[1]}" "${admin_port[1]}" "${http_port[2]}" "${admin_port[2]}" "${http_port[3]}" "${admin_port[3]}" <<'PY'
import re, sys
src, dst, front, sock = sys.argv[1:5]
ports = sys.argv[5:]
text = open(src).read()
def server(m):
    i = int(m.group(2)) - 1
    return f"{m.group(1)}ringd{i + 1} 127.0.0.1:{ports[2 * i]}{m.group(3)}port {ports[2 * i + 1]}"
text, n = re.subn(r"^(\s*server )ringd(\d) \S+:\d+(.*?)port \d+", server, text, flags=re.M)
assert n == 6, f"expected 6 server lines, replaced {n}"
text, n = re.subn(r"^(\s*bind )\S*:8080", rf"\g<1>127.0.0.1:{front}", text, flags=re.M)
assert n == 1, "one bind line"
text = text.replace("global\n", f"global\n    stats socket {sock} mode 600 level admin\n", 1)
open(dst, "w").write(text)
PY
haproxy -c -f "$tmp/haproxy.cfg" >/dev/null

haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
pids+=($!)
for n in 1 2 3; do haproxy_up "$n"; done

start_load() {
    local run=$1
    wrk -t1 -c32 -d"${LOAD_S}s" --timeout 5s "http://127.0.0.1:$front/users/42" >"$tmp/wrk-$run.out" 2>&1 &
    wrk_pid=$!
    h2load -c4 -m10 -D "$LOAD_S" -T 5 "http://127.0.0.1:$front/users/43" >"$tmp/h2load-$run.out" 2>&1 &
    h2load_pid=$!
    pids+=("$wrk_pid" "$h2load_pid")
}

# failures RUN: prints "wrk_requests wrk_failed h2load_succeeded h2load_failed" after both clients end.
failures() {
    local run=$1
    wait "$wrk_pid" || true
    wait "$h2load_pid" || true
    /usr/bin/python3 - "$tmp/wrk-$run.out" "$tmp/h2load-$run.out" <<'PY'
import re, sys
w = open(sys.argv[1]).read()
h = open(sys.argv[2]).read()
reqs = int(re.search(r"(\d+) requests in", w).group(1))
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", w)
wfail = sum(map(int, sock.groups())) if sock else 0
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", w)
wfail += int(non2xx.group(1)) if non2xx else 0
m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", h)
hok, hfail = int(m.group(1)), int(m.group(2)) + int(m.group(3))
st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", h)
hfail += int(st.group(3)) + int(st.group(4)) if st else 0
print(reqs, wfail, hok, hfail)
PY
}

rc=0
# ---------- run 1: rolling restart ----------
start_load rolling
sleep 2
for n in 1 2 3; do
    old=${ringd_pid[$n]}
    pids+=("$old")
    kill -TERM "$old"         # readiness off at once, serving through the grace
    start_instance "$n"       # the replacement joins the ports
    stop_instance "$n" "$old" # the old one drains and exits 0
    haproxy_up "$n"
    sleep 1
done
failures rolling >"$tmp/counts"
read -r wreq wfail hok hfail <"$tmp/counts"
echo "scale-out rolling restart (3 instances, SIGTERM + replacement, ${LOAD_S}s): wrk $wreq requests, $wfail failed; h2load $hok succeeded, $hfail failed"
if [ "$wfail" -ne 0 ] || [ "$hfail" -ne 0 ] || [ "$wreq" -eq 0 ] || [ "$hok" -eq 0 ]; then
    echo "FAIL: requests failed during the rolling restart"; cat "$tmp/wrk-rolling.out" "$tmp/h2load-rolling.out"; rc=1
fi

# ---------- run 2: SIGKILL mid-load ----------
start_load kill
sleep 5
kill -KILL "${ringd_pid[2]}"
wait "${ringd_pid[2]}" 2>/dev/null || true
unset "ringd_pid[2]"
sleep 2
# Service continues: the two others answer through HAProxy, on new connections too.
for i in $(seq 1 20); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$front/users/$i")
    [ "$code" = 200 ] || { echo "FAIL: after the SIGKILL, GET /users/$i through HAProxy answered $code"; rc=1; }
done
failures kill >"$tmp/counts"
read -r wreq wfail hok hfail <"$tmp/counts"
echo "scale-out SIGKILL of one instance mid-load (${LOAD_S}s): wrk $wreq requests, $wfail failed; h2load $hok succeeded, $hfail failed"
if [ "$wreq" -eq 0 ] || [ "$hok" -eq 0 ]; then
    echo "FAIL: no service after the SIGKILL"; rc=1
fi
for n in 1 3; do stop_instance "$n" || rc=1; done
exit $rc
