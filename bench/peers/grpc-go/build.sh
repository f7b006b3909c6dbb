#!/usr/bin/env bash
# Builds the grpc-go peer offline in GOPATH mode against Debian's
# golang-google-grpc-dev (/usr/share/gocode) and prints the binary's absolute
# path as its last line (the contract of bench/peers/hyper/build.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${GRPC_GO_OUT:-$here/../../.cache/grpc-go-peer}
mkdir -p "$(dirname "$out")" "$here/../../.cache/go-build"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
cd "$here"
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$(cd "$here/../../.cache" && pwd)/go-build" GOFLAGS='' GOPROXY=off \
    go build -o "$out" main.go >&2
echo "$out"
