#!/usr/bin/env bash
# test_run.sh - bench/run.sh --smoke with its profile step, against $RINGD_BIN: it must pass
# and leave none of valgrind's vgdb FIFOs behind (they used to pile up in /tmp, one set per run).
# Exit 77 (skipped) for a sanitizer build: valgrind cannot run an ASan binary.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
bin=${RINGD_BIN:?RINGD_BIN names the ringd under test}
# Not grep -q: it exits at the first match, ldd then dies of SIGPIPE, and under pipefail the
# pipeline fails, so a sanitizer build was sometimes not recognised.
if ldd "$bin" | grep -E 'libasan|libtsan' >/dev/null; then
    echo "test_run.sh: $bin is a sanitizer build; valgrind cannot run it (skipped)"
    exit 77
fi
command -v valgrind >/dev/null || { echo "test_run.sh: no valgrind (skipped)"; exit 77; }

log=$(mktemp /tmp/ringd-test-bench-XXXXXX.log)
trap 'rm -f "$log"' EXIT
rc=0
# callgrind, not perf stat: whether this VM counts instructions varies from run to run.
bash "$src/bench/run.sh" --smoke --no-build --profile-tool callgrind >"$log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
    tail -n 30 "$log"
    echo "test_run.sh: bench/run.sh --smoke exited $rc"
    exit 1
fi
grep -q 'profile: callgrind' "$log" || { cat "$log"; echo "test_run.sh: the profile step did not run callgrind"; exit 1; }
if grep -q 'did not start under valgrind' "$log"; then
    cat "$log"
    echo "test_run.sh: ringd did not start under valgrind: the FIFO path was not exercised"
    exit 1
fi
# Every server the run started, by pid, and where its FIFOs could be.
pids=$(sed -n 's/.* up (pid \([0-9]*\),.*/\1/p' "$log")
[ -n "$pids" ] || { cat "$log"; echo "test_run.sh: no server pid in the log"; exit 1; }
left=""
for p in $pids; do
    for f in /tmp/vgdb-pipe-*-"$p"-* "$src"/bench/.work/*/vgdb-pipe-*-"$p"-*; do
        [ -e "$f" ] && left+=" $f"
    done
done
if [ -n "$left" ]; then
    echo "test_run.sh: vgdb FIFOs left behind:$left"
    exit 1
fi
echo "test_run.sh: smoke with profile ok, no FIFOs left (servers: $(echo $pids))"
