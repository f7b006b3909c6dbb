#!/usr/bin/env bash
# test_systemd.sh - deploy/systemd: `systemd-analyze verify` accepts the units (ExecStart pointed at the built
# binary, which verify requires to exist). Usage: test_systemd.sh RINGD_BIN SOURCE_DIR. Exit 77 without systemd.
set -euo pipefail
RINGD=$1
SRC=$2
command -v systemd-analyze >/dev/null || { echo "skip: systemd-analyze not installed"; exit 77; }
tmp=$(mktemp -d /tmp/ringd-units-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for u in ringd.service ringd-follow.service ringd.socket; do
    sed "s|/usr/local/bin/ringd|$RINGD|g" "$SRC/deploy/systemd/$u" >"$tmp/$u"
done
out=$(cd "$tmp" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no ./ringd.service ./ringd-follow.service ./ringd.socket 2>&1) || {
    echo "systemd-analyze verify failed:"; echo "$out"; exit 1; }
# verify exits 0 on some warnings: a unit setting it does not know is still a mistake.
if echo "$out" | grep -E "Unknown (key|section)|Failed to parse|Invalid|Ignoring" ; then
    echo "systemd-analyze verify warned:"; echo "$out"; exit 1
fi
echo "systemd-analyze verify: ringd.service ringd-follow.service ringd.socket OK"
[ -z "$out" ] || echo "$out"
