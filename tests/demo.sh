#!/usr/bin/env bash
# `make demo`: run a small two-thread program under the shim, the way a
# user would, and show the top of its CPU profile with both readers.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/cprof-demo.XXXXXX)
echo "\$ LD_PRELOAD=\$PWD/preload/libcprof.so CPROF_OUT=$out build/progs/cpu_split 100"
LD_PRELOAD=$PWD/preload/libcprof.so CPROF_OUT=$out build/progs/cpu_split 100
file=$(ls "$out"/*.cpu.pb.gz | tail -n 1)
echo
echo "\$ tools/cprof top --cum -n 8 $file"
tools/cprof top --cum -n 8 "$file"
if command -v go >/dev/null; then
	echo
	echo "\$ go tool pprof -top -cum $file"
	GOCACHE=${GOCACHE:-$out/gocache} go tool pprof -top -cum -nodecount=8 "$file" 2>/dev/null
fi
echo
echo "Profiles are in $out. Try: go tool pprof -http=:8080 $file"
