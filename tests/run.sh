#!/usr/bin/env bash
# The test runner behind `make test`: unit tests (cmocka binaries in
# build/tests), then end-to-end tests (tests/e2e/*.sh) that run real
# programs under the shim with real threads and signals and read every
# profile back twice: with our own decoder (tools/cprof) and with
# `go tool pprof`, the independent reader. Ends with "N passed, N failed".
#
#   bash tests/run.sh [NAME_PATTERN]     run the e2e tests matching a pattern
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
SHIM=$ROOT/preload/libcprof.so
CPROF=$ROOT/tools/cprof
PROGS=$ROOT/build/progs
WORK=$(mktemp -d /tmp/cprof-test.XXXXXX)
# CPROF_TEST_KEEP=1 keeps the work directory (each test's files and log).
if [ -n "${CPROF_TEST_KEEP:-}" ]; then
	echo "work directory: $WORK (kept)"
else
	trap 'rm -rf "$WORK"' EXIT
fi
export GOCACHE=${GOCACHE:-$WORK/gocache}
export HOME=${HOME:-$WORK}
# pprof must not try to reach a symbol server; local files only.
export PPROF_BINARY_PATH=${PPROF_BINARY_PATH:-}
pattern=${1:-}

passed=0
failed=0
failed_names=()

# ---- helpers the e2e tests use -------------------------------------------

# fail MESSAGE: record why the current test fails (it goes on to return 1).
fail() {
	echo "    $*"
	return 1
}

# profiled_argv OUTDIR [ENV=VALUE ...] -- CMD ARGS: sets PROFILED to the
# `env` arguments that run CMD under the shim with those settings.
profiled_argv() {
	local out=$1
	shift
	PROFILED=(CPROF_OUT="$out")
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do
		PROFILED+=("$1")
		shift
	done
	shift
	PROFILED+=(LD_PRELOAD="$SHIM" "$@")
}

# count_calls SYSCALL OUTDIR [ENV=VALUE ...] -- CMD ARGS: runs CMD under
# strace twice, unprofiled and under the shim (profiles into OUTDIR), and
# sets BASE_CALLS and PROF_CALLS to the calls of SYSCALL each made (all
# threads). Fails when a run fails.
count_calls() {
	local sc=$1
	shift
	profiled_argv "$@"
	local -a cmd=("$@")
	while [ ${#cmd[@]} -gt 0 ] && [ "${cmd[0]}" != "--" ]; do cmd=("${cmd[@]:1}"); done
	[ ${#cmd[@]} -gt 1 ] || fail "count_calls: no command after --" || return 1
	cmd=("${cmd[@]:1}")
	strace -f -qq -c -e trace="$sc" -o base.st "${cmd[@]}" >/dev/null 2>&1 ||
		fail "unprofiled run failed" || return 1
	strace -f -qq -c -e trace="$sc" -o prof.st env "${PROFILED[@]}" >/dev/null 2>err ||
		fail "profiled run failed: $(cat err)" || return 1
	BASE_CALLS=$(awk -v sc="$sc" '$NF == sc { print $4 }' base.st)
	PROF_CALLS=$(awk -v sc="$sc" '$NF == sc { print $4 }' prof.st)
	BASE_CALLS=${BASE_CALLS:-0}
	PROF_CALLS=${PROF_CALLS:-0}
}

# run_profiled OUTDIR [ENV=VALUE ...] -- CMD ARGS: runs CMD under the shim.
run_profiled() {
	profiled_argv "$@"
	env "${PROFILED[@]}"
}

# start_profiled ...: the same in place of the calling (sub)shell, for
# `(start_profiled ... ) &` where $! must be the program's own pid.
start_profiled() {
	profiled_argv "$@"
	exec env "${PROFILED[@]}"
}

# profile_of DIR KIND: the newest (highest sequence) profile of KIND in DIR.
profile_of() {
	ls "$1"/*."$2".pb.gz 2>/dev/null | sort -t. -k3 | tail -n 1
}

# cprof_value FILE FUNCTION [flat|cum] [SAMPLE_TYPE]: our decoder's value.
cprof_value() {
	local file=$1 fn=$2 col=${3:-cum} type=${4:-}
	local args=(top --raw-values -n 0)
	[ -n "$type" ] && args+=(-t "$type")
	"$CPROF" "${args[@]}" "$file" | awk -F'\t' -v fn="$fn" -v col="$col" '
		$3 == fn { v = (col == "flat") ? $1 : $2; found = 1 }
		END { print found ? v : 0 }'
}

# cprof_total FILE [SAMPLE_TYPE]: sum of flat over all functions.
cprof_total() {
	local args=(top --raw-values -n 0)
	[ -n "${2:-}" ] && args+=(-t "$2")
	# %.0f, not %d: mawk's %d stops at 2^31-1 (2.1 s in nanoseconds).
	"$CPROF" "${args[@]}" "$1" | awk -F'\t' '{ s += $1 } END { printf "%.0f\n", s }'
}

# pprof_top FILE [ARGS]: `go tool pprof -top` with exact units.
pprof_top() {
	local file=$1
	shift
	go tool pprof -top -nodecount=1000 "$@" "$file" 2>"$WORK/pprof.err"
}

# pprof_cum_pct FILE FUNCTION: the cum% pprof gives the function.
pprof_cum_pct() {
	pprof_top "$1" | awk -v fn="$2" '$6 == fn { gsub("%", "", $5); print $5; found = 1 }
		END { if (!found) print 0 }'
}

# pprof_total_ns FILE: "Total samples = X" in nanoseconds.
pprof_total_ns() {
	pprof_top "$1" -unit=ns | sed -n 's/.*Total samples = \([0-9.]*\)ns.*/\1/p' | head -1
}

# within VALUE TRUTH PCT: |VALUE - TRUTH| <= PCT% of TRUTH
within() {
	awk -v v="$1" -v t="$2" -v p="$3" 'BEGIN { d = v - t; if (d < 0) d = -d;
		exit !(t != 0 && d <= t * p / 100) }'
}

# near VALUE TRUTH POINTS: |VALUE - TRUTH| <= POINTS (absolute)
near() {
	awk -v v="$1" -v t="$2" -v p="$3" 'BEGIN { d = v - t; if (d < 0) d = -d; exit !(d <= p) }'
}

# reap_leftovers DIR: kills what a test left running (a program it started
# in the background and did not wait for, say after a failed check), found
# by the CPROF_TEST_RUN=DIR every test's processes inherit, so that no
# leftover burns CPU under the next tests.
reap_leftovers() {
	local f pid left=()
	for f in $(grep -lzxF "CPROF_TEST_RUN=$1" /proc/[0-9]*/environ 2>/dev/null); do
		pid=${f#/proc/}
		pid=${pid%/environ}
		[ "$pid" = $$ ] || [ "$pid" = "$BASHPID" ] || left+=("$pid")
	done
	[ ${#left[@]} -eq 0 ] && return
	echo "    (killed ${#left[@]} process(es) the test left running: ${left[*]})"
	kill -KILL "${left[@]}" 2>/dev/null
}

# watchdog DIR: a test that runs longer than TEST_TIMEOUT seconds (a hang:
# a wait on a program that never ends) is killed, with everything it
# started, and fails, instead of stalling the whole run.
TEST_TIMEOUT=${CPROF_TEST_TIMEOUT:-180}
watchdog() {
	local i
	for ((i = 0; i < TEST_TIMEOUT * 2; i++)); do
		sleep 0.5
	done
	touch "$1/.timed-out"
	reap_leftovers "$1"
}

# ---- unit tests -----------------------------------------------------------

echo "== unit tests"
for bin in build/tests/test_*; do
	[ -x "$bin" ] || continue
	[ -n "$pattern" ] && continue
	out=$("$bin" 2>&1)
	rc=$?
	p=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	p=${p:-0}
	f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$f" -ne 0 ]; then
		echo "$out" | grep -E '^\[  FAILED  \]|^\[  ERROR   \]|Failure|error' | head -20 | sed 's/^/    /'
		echo "FAIL $(basename "$bin") ($f failed)"
		failed_names+=("$(basename "$bin")")
	else
		echo "PASS $(basename "$bin") ($p tests)"
	fi
done

# ---- end-to-end tests -----------------------------------------------------

echo "== end-to-end tests"
for f in tests/e2e/*.sh; do
	# shellcheck source=/dev/null
	source "$f"
done
for t in $(declare -F | awk '{ print $3 }' | grep '^test_'); do
	name=${t#test_}
	if [ -n "$pattern" ] && [[ $name != *$pattern* ]]; then continue; fi
	T=$WORK/$name
	mkdir -p "$T"
	start=$(date +%s.%N)
	watchdog "$T" &
	watchdog_pid=$!
	if ( export CPROF_TEST_RUN="$T"; cd "$T" && "$t" ) >"$T/log" 2>&1; then
		passed=$((passed + 1))
		awk -v n="$name" -v s="$start" -v e="$(date +%s.%N)" \
			'BEGIN { printf "PASS %s (%.1fs)\n", n, e - s }'
	else
		failed=$((failed + 1))
		failed_names+=("$name")
		echo "FAIL $name"
		[ -e "$T/.timed-out" ] && echo "    timed out after $TEST_TIMEOUT s; killed" >>"$T/log"
		sed 's/^/    /' "$T/log" | tail -n 25
	fi
	kill "$watchdog_pid" 2>/dev/null
	wait "$watchdog_pid" 2>/dev/null
	reap_leftovers "$T"
done

[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
