#!/usr/bin/env bash
# demo/demo.sh — what `make demo` runs once the shim, tools/cprof and
# build/demo/service are built: the demo service (demo/service.c) under
# `cprof run`, the top of each of its four profiles, then the fixed
# service and `cprof diff` for each profile. The README's "Tutorial: the
# demo" explains every step.
#
#   bash demo/demo.sh [OUTPUT_DIR]      (default: a new /tmp/cprof-demo.XXXXXX)
set -euo pipefail
cd "$(dirname "$0")/.."
CPROF=tools/cprof
SERVICE=build/demo/service
out=${1:-$(mktemp -d /tmp/cprof-demo.XXXXXX)}
# The demo is small and short: 1000 CPU samples a second instead of 100,
# and a heap sample every 16 KiB on average instead of every 512 KiB, so
# that its leak gets about a hundred samples.
settings=(--hz 1000 --heap-rate 16384 --mutex-fraction 1)

# show CMD...: print the command as typed, then run it.
show() {
	echo "\$ $*"
	"$@"
}

# show_top KIND [OPTIONS]: cprof top of the planted run's profile of KIND.
show_top() {
	local kind=$1 file
	shift
	file=$(profile "$out/planted" "$kind")
	if [ -z "$file" ]; then
		echo "(no $kind profile: the run recorded nothing of that kind)"
		return 0
	fi
	show "$CPROF" top "$@" "$file"
}

section() {
	printf '\n== %s\n' "$*"
}

profile() { # profile DIR KIND: the newest profile of KIND in DIR
	ls "$1"/*."$2".pb.gz 2>/dev/null | sort | tail -n 1
}

section "The service, profiled: cprof run"
show "$CPROF" run -o "$out/planted" "${settings[@]}" -- "$SERVICE"

section "CPU: where the CPU time goes (flat: the function that was running)"
show_top cpu -n 5
echo "-> append_field: it finds the end of the summary by scanning from the start, for every field."

section "Heap: memory still allocated at exit (inuse_space), by the function that allocated it"
show_top heap -n 5
echo "-> read_record's payloads: every 10th record is a duplicate, dropped without freeing its payload."

section "Mutex: lock waits, charged to the code that held the lock (--cum: the callers)"
show_top mutex --cum -n 6
echo "-> store_result: it holds results_lock while it writes and flushes the journal."

section "Block: time threads spent waiting (--cum: who waited, and in what)"
show_top block --cum -n 9
echo "-> next_record/read: the workers wait on an empty pipe; the reader feeds it one lookup_account at a time."

section "The fixed service"
show "$CPROF" run -o "$out/fixed" "${settings[@]}" -- "$SERVICE" --fixed

section "cprof diff FIXED PLANTED: what a CI gate says about the change that planted each problem"
for kind in cpu heap mutex block; do
	options=(-n 3)
	case $kind in mutex | block) options+=(--cum) ;; esac
	echo
	base=$(profile "$out/fixed" "$kind")
	new=$(profile "$out/planted" "$kind")
	if [ -z "$base" ] || [ -z "$new" ]; then
		# A kind that recorded nothing is left out of the exit dump.
		echo "(no $kind profile from the ${base:+planted}${base:-fixed} run: it recorded nothing)"
		continue
	fi
	set +e
	show "$CPROF" diff "${options[@]}" "$base" "$new"
	echo "(exit status $?)"
	set -e
done

printf '\nProfiles are in %s. Next: go tool pprof -http=:8080 %s\n' "$out" \
	"$(profile "$out/planted" cpu)"
