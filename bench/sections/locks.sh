# bench/sections/locks.sh — `make bench`'s lock and blocking-call section:
# what the mutex and block profiles cost, against the unprofiled run, and
# the measurements behind CPROF_MUTEX_FRACTION's and CPROF_BLOCK_RATE's
# defaults.
#
# Sourced by bench/run.sh, which calls bench_locks after the CPU sections;
# uses its helpers (heading, fail, field, median, minmax, machine, ratio,
# pct) and its variables (B, TMP, SHIM, SHIM_STATE, ROOT).
#
# Workloads: bench/locks_work.c, figures measured inside the process (no
# start-up, no profile written at exit), each the best of several blocks
# of the run (the block other jobs on the machine disturbed least):
#   uncontended  one thread, lock+unlock pairs on one mutex, after one
#                thread has existed (as in any program that locks); ns per
#                pair
#   single       the same in a process that never made a thread (glibc's
#                single-thread shortcut, which the shim keeps: its dumper
#                thread starts at the program's first pthread_create)
#   contended    4 threads, one mutex, ~20 mixes inside and ~60 outside;
#                operations per second
#   pingpong     2 threads, one byte each way over two pipes; ns per trip
#   pinnedpong   the same with the process on one CPU (no cross-CPU
#                wake-ups, whose latency is most of a trip in a VM)
#   singlecalls  the same reads in a process that never made a thread
#   shortcalls   1-byte reads of /dev/zero: calls that never sleep, the
#                worst case for timing every call; ns per call
# Configurations: unprofiled; libcprof with CPROF_PROFILES=cpu (the
# wrappers present but off); libcprof at the defaults (every profile);
# and the sweeps behind the defaults: the mutex profile alone at
# fractions 1, 10, 100 (contended), the block profile alone at rates 1 us
# to 1 ms (pingpong, shortcalls). BENCH_LOCKS_ROUNDS interleaved rounds
# (default 9), the first configuration rotating from round to round; the
# best run of each configuration gives its ratio (see locks_table).
#
# Accuracy behind the block rate: block_pipe (tests/progs) at each rate,
# its read waits in the block profile against the waits it measured itself.
#
# Targets (issue 9): at most 1.5 ns added to an uncontended lock+unlock
# pair at the defaults; the pipe ping-pong at most 1.05x at the defaults.

LOCKS_ROUNDS=${BENCH_LOCKS_ROUNDS:-9}
LOCKS_PAIRS=${BENCH_LOCKS_PAIRS:-60000000}
LOCKS_OPS=${BENCH_LOCKS_OPS:-1000000}
LOCKS_TRIPS=${BENCH_LOCKS_TRIPS:-40000}
LOCKS_CALLS=${BENCH_LOCKS_CALLS:-1500000}
LOCKS_ACCURACY_RUNS=${BENCH_LOCKS_ACCURACY_RUNS:-3}
TARGET_LOCK_PAIR_NS=1.5
TARGET_PINGPONG_RATIO=1.05

locks_label() {
	case $1 in
	base) echo "unprofiled" ;;
	cpu) echo "libcprof, CPROF_PROFILES=cpu" ;;
	all) echo "libcprof, defaults" ;;
	m*) echo "mutex only, fraction ${1#m}" ;;
	r*) echo "block only, rate $(locks_rate_label "${1#r}")" ;;
	esac
}

locks_rate_label() {
	awk -v r="$1" 'BEGIN { if (r >= 1000000) printf "%g ms", r / 1e6; else printf "%g us", r / 1e3 }'
}

# locks_figure WORKLOAD: the name of the figure the workload prints.
locks_figure() {
	case $1 in
	uncontended | single) echo pair_ns ;;
	contended) echo ops_per_s ;;
	pingpong | pinnedpong) echo trip_ns ;;
	shortcalls | singlecalls) echo call_ns ;;
	esac
}

# locks_run WORKLOAD CONFIG ROUND N: one run; appends the figure (ns
# figures in picoseconds, so that median() keeps them whole) to
# $TMP/locks/WORKLOAD.CONFIG.
locks_run() {
	local work=$1 cfg=$2 round=$3 n=$4
	local stem=$TMP/locks/$work.$cfg.$round prof=$TMP/locks/$work.$cfg.$round.d
	local -a env=()
	mkdir -p "$prof"
	case $cfg in
	base) ;;
	cpu) env=(-e "LD_PRELOAD=$SHIM" -e CPROF_PROFILES=cpu -e "CPROF_OUT=$prof") ;;
	all) env=(-e "LD_PRELOAD=$SHIM" -e "CPROF_OUT=$prof") ;;
	m*) env=(-e "LD_PRELOAD=$SHIM" -e CPROF_PROFILES=mutex -e "CPROF_MUTEX_FRACTION=${cfg#m}"
		-e "CPROF_OUT=$prof") ;;
	r*) env=(-e "LD_PRELOAD=$SHIM" -e CPROF_PROFILES=block -e "CPROF_BLOCK_RATE=${cfg#r}"
		-e "CPROF_OUT=$prof") ;;
	esac
	if ! "$B/runner" -t 120 -o "$stem.result" "${env[@]}" -- \
		"$B/locks_work" "$work" "$n" >"$stem.out" 2>"$stem.err"; then
		tail -n 5 "$stem.err" >&2
		fail "locks: $work, $(locks_label "$cfg"), round $round: the workload did not finish"
		touch "$TMP/locks/$work.$cfg.failed"
		return
	fi
	local sum figure value
	sum=$(sed -n 's/.*checksum=\([0-9]*\).*/\1/p' "$stem.out")
	if [[ $sum != "${LOCKS_REF_SUM[$work]}" ]]; then
		fail "locks: $work, $(locks_label "$cfg"), round $round: checksum '$sum', expected '${LOCKS_REF_SUM[$work]}'"
		touch "$TMP/locks/$work.$cfg.failed"
	fi
	figure=$(locks_figure "$work")
	value=$(sed -n "s/.*$figure=\\([0-9.]*\\).*/\\1/p" "$stem.out")
	if [[ $figure == ops_per_s ]]; then
		echo "$value" >>"$TMP/locks/$work.$cfg"
	else
		awk -v v="$value" 'BEGIN { printf "%.0f\n", v * 1000 }' >>"$TMP/locks/$work.$cfg"
	fi
	rm -rf "$prof"
}

# locks_rounds WORKLOAD N CONFIG...: a warm-up for the reference checksum,
# then interleaved rounds.
locks_rounds() {
	local work=$1 n=$2
	shift 2
	local -a configs=("$@")
	if ! "$B/runner" -t 120 -o "$TMP/locks/$work.warmup.result" -- \
		"$B/locks_work" "$work" "$n" >"$TMP/locks/$work.warmup.out"; then
		fail "locks: the unprofiled $work workload did not finish"
		return 1
	fi
	LOCKS_REF_SUM[$work]=$(sed -n 's/.*checksum=\([0-9]*\).*/\1/p' "$TMP/locks/$work.warmup.out")
	local k=${#configs[@]} r i order cfg
	for ((r = 1; r <= LOCKS_ROUNDS; r++)); do
		order=""
		for ((i = 0; i < k; i++)); do
			cfg=${configs[$(((i + r - 1) % k))]}
			locks_run "$work" "$cfg" "$r" "$n"
			order+=" $cfg"
		done
		echo "$work round $r/$LOCKS_ROUNDS:$order"
	done
}

# locks_trip_verdict WORKLOAD: "RATIO VERDICT" of the defaults' best run
# against the unprofiled best, on the ping-pong target ("FAILED" when a
# run failed).
locks_trip_verdict() {
	local d=$TMP/locks/$1 ratio
	ratio=$(awk -v a="$(sort -g "$d.all" | head -n 1)" -v b="$(sort -g "$d.base" | head -n 1)" \
		'BEGIN { printf "%.3f", a / b }')
	if [[ -f $d.all.failed ]]; then
		echo "$ratio run FAILED"
	else
		awk -v r="$ratio" -v t="$TARGET_PINGPONG_RATIO" 'BEGIN { print r, (r <= t) ? "met" : "missed" }'
	fi
}

# locks_table WORKLOAD CONFIG...: one markdown table. Each run's figure is
# already its best block; the table shows, over the rounds, the best run
# (the least disturbed: the ratio and the added cost are taken from it)
# and the median run. On this shared 2-core machine the median falls in
# one of two modes (the ping-pong's 4.5 us or 6.3 us, with or without
# another job on the core) from round to round, so the best is the
# stabler figure of what the code costs. Ratio = configuration /
# unprofiled: time for ns figures, throughput for ops/s.
locks_table() {
	local work=$1
	shift
	local figure unit d=$TMP/locks base
	figure=$(locks_figure "$work")
	if [[ $figure == ops_per_s ]]; then
		unit="ops/s"
		base=$(sort -g "$d/$work.base" | tail -n 1)
	else
		unit="ns"
		base=$(sort -g "$d/$work.base" | head -n 1)
	fi
	printf '| %-30s | %-14s | %-14s | %-22s | %-12s |\n' configuration "best $unit" \
		"median $unit" "ratio (best)" "added (best)"
	printf '|%s|%s|%s|%s|%s|\n' -------------------------------- ---------------- \
		---------------- ------------------------ --------------
	local cfg
	for cfg in "$@"; do
		local label v med r
		label=$(locks_label "$cfg")
		[[ -f $d/$work.$cfg.failed ]] && label="$label (FAILED)"
		if [[ ! -s $d/$work.$cfg ]]; then
			printf '| %-30s | %s |\n' "$label" "no successful run"
			continue
		fi
		med=$(median "$d/$work.$cfg")
		if [[ $figure == ops_per_s ]]; then
			v=$(sort -g "$d/$work.$cfg" | tail -n 1)
			r=$(ratio "$v" "$base")
			printf '| %-30s | %-14s | %-14s | %-22s | %-12s |\n' "$label" "$v" "$med" \
				"$r ($(pct "$r"))" "$(awk -v a="$v" -v b="$base" 'BEGIN { printf "%+d", a - b }')"
		else
			v=$(sort -g "$d/$work.$cfg" | head -n 1)
			r=$(ratio "$v" "$base")
			printf '| %-30s | %-14s | %-14s | %-22s | %-12s |\n' "$label" "$(locks_ns "$v")" \
				"$(locks_ns "$med")" "$r ($(pct "$r"))" \
				"$(awk -v a="$v" -v b="$base" 'BEGIN { printf "%+.2f", (a - b) / 1000 }')"
		fi
	done
}

locks_ns() { awk -v ps="$1" 'BEGIN { printf "%.2f", ps / 1000 }'; }

# locks_accuracy: block_pipe's read waits in the block profile against
# its own measurement, at each rate.
locks_accuracy() {
	local rate run
	printf '| %-10s | %-40s | %-22s |\n' "rate" "error of the estimate per run" "mean absolute error"
	printf '|%s|%s|%s|\n' ------------ ------------------------------------------ ------------------------
	for rate in 1000 10000 100000 1000000; do
		local errs=""
		for ((run = 1; run <= LOCKS_ACCURACY_RUNS; run++)); do
			local prof=$TMP/locks/acc.$rate.$run
			mkdir -p "$prof"
			if ! env LD_PRELOAD="$SHIM" CPROF_OUT="$prof" CPROF_PROFILES=block \
				CPROF_BLOCK_RATE="$rate" "$B/block_pipe" 20000 >/dev/null 2>"$prof.err"; then
				fail "locks: block_pipe at rate $rate did not finish"
				continue
			fi
			local truth file est
			truth=$(sed -n 's/^read_wait_ns //p' "$prof.err")
			file=$(ls "$prof"/*.block.pb.gz | tail -n 1)
			est=$("$ROOT/tools/cprof" top --raw-values -n 0 -t delay "$file" |
				awk -F'\t' '$3 == "ping_wait" || $3 == "pong_wait" { s += $2 } END { printf "%d", s }')
			errs+=" $(awk -v e="$est" -v t="$truth" 'BEGIN { printf "%+.1f%%", 100 * (e - t) / t }')"
		done
		printf '| %-10s | %-40s | %-22s |\n' "$(locks_rate_label "$rate")" "$errs" \
			"$(echo "$errs" | tr ' ' '\n' | awk 'NF { v = $1; sub("%", "", v); v += 0; if (v < 0) v = -v; s += v; n++ }
				END { if (n) printf "%.1f%%", s / n }')"
	done
}

bench_locks() {
	heading "Mutex and block profiles (bench/locks_work.c)"
	if [[ $SHIM_STATE != ok ]]; then
		echo "libcprof rows SKIPPED (preload/libcprof.so $SHIM_STATE)."
		return
	fi
	local cc=${CC:-gcc}
	mkdir -p "$TMP/locks"
	"$cc" -O2 -g -Wall -Wextra -pthread -o "$B/locks_work" "$ROOT/bench/locks_work.c" || {
		fail "locks: cannot build locks_work"
		return
	}
	"$cc" -g -O1 -pthread -o "$B/block_pipe" "$ROOT/tests/progs/block_pipe.c" || {
		fail "locks: cannot build block_pipe"
		return
	}
	declare -gA LOCKS_REF_SUM=()
	local t0=$SECONDS
	locks_rounds uncontended "$LOCKS_PAIRS" base cpu all
	locks_rounds single "$((LOCKS_PAIRS / 2))" base cpu all
	locks_rounds singlecalls "$LOCKS_CALLS" base cpu all
	locks_rounds contended "$LOCKS_OPS" base cpu all m1 m10 m100
	locks_rounds pingpong "$LOCKS_TRIPS" base cpu all r1000 r10000 r100000 r1000000
	locks_rounds pinnedpong "$LOCKS_TRIPS" base cpu all
	locks_rounds shortcalls "$LOCKS_CALLS" base cpu all r100000
	echo "($((SECONDS - t0)) s)"
	{
		echo "Workloads: bench/locks_work.c, $(machine); defaults: CPROF_MUTEX_FRACTION and"
		echo "CPROF_BLOCK_RATE as preload/config.c sets them. $LOCKS_ROUNDS interleaved rounds; each run's"
		echo "figure is its best block, the table's best is the best run (ratios from it), median the median run."
		echo
		echo "Uncontended lock+unlock pair, one thread ($LOCKS_PAIRS pairs, after a thread has existed):"
		echo
		locks_table uncontended base cpu all
		local added verdict
		added=$(awk -v a="$(sort -g "$TMP/locks/uncontended.all" | head -n 1)" \
			-v b="$(sort -g "$TMP/locks/uncontended.base" | head -n 1)" \
			'BEGIN { printf "%.2f", (a - b) / 1000 }')
		verdict=$(awk -v a="$added" -v t="$TARGET_LOCK_PAIR_NS" 'BEGIN { print (a <= t) ? "met" : "missed" }')
		[[ -f $TMP/locks/uncontended.all.failed ]] && verdict="run FAILED"
		echo
		echo "Target, at most $TARGET_LOCK_PAIR_NS ns added per pair at the defaults: $verdict ($added ns)."
		echo
		echo "The same in a process that never made a thread ($((LOCKS_PAIRS / 2)) pairs):"
		echo
		locks_table single base cpu all
		echo
		echo "1-byte reads of /dev/zero in a process that never made a thread ($LOCKS_CALLS calls):"
		echo
		locks_table singlecalls base cpu all
		echo
		echo "Contended: 4 threads, one mutex ($LOCKS_OPS operations); ratio = throughput:"
		echo
		locks_table contended base cpu all m1 m10 m100
		echo
		echo "Pipe ping-pong between 2 threads ($LOCKS_TRIPS round trips); ratio = time per trip:"
		echo
		locks_table pingpong base cpu all r1000 r10000 r100000 r1000000
		local ratio
		read -r ratio verdict < <(locks_trip_verdict pingpong)
		# A trip is two cross-CPU wake-ups: on a host whose scheduling
		# is noisy the unprofiled runs alone spread by more than the
		# target, and no ratio of them says anything of the profiler.
		local spread
		spread=$(sort -g "$TMP/locks/pingpong.base" | awk '{ v[NR] = $1 } END {
			printf "%.2f", v[int((NR + 1) / 2)] / v[1] }')
		if awk -v s="$spread" 'BEGIN { exit !(s > 1.25) }'; then
			verdict="not judged: the unprofiled runs' median is ${spread}x their best"
		fi
		[[ -f $TMP/locks/pingpong.all.failed ]] && verdict="run FAILED"
		echo
		echo "Target, the defaults at most ${TARGET_PINGPONG_RATIO}x per trip (best runs): $verdict (${ratio}x)."
		echo
		echo "The same ping-pong with the process on one CPU (pinnedpong): each trip two switches"
		echo "on that CPU, not two wake-ups from the other, whose latency is most of an unpinned"
		echo "trip in a VM; the wrappers' work per trip is the same, on a smaller denominator:"
		echo
		locks_table pinnedpong base cpu all
		read -r ratio verdict < <(locks_trip_verdict pinnedpong)
		echo
		echo "Target, pinned, the defaults at most ${TARGET_PINGPONG_RATIO}x per trip (best runs): $verdict (${ratio}x)."
		echo
		echo "Short calls that never sleep: 1-byte reads of /dev/zero ($LOCKS_CALLS calls):"
		echo
		locks_table shortcalls base cpu all r100000
		echo
		echo "Accuracy: block_pipe's read waits (20000 round trips) in the block profile against"
		echo "its own measurement, $LOCKS_ACCURACY_RUNS runs per rate:"
		echo
		locks_accuracy
	} | tee "$B/locks.md"
	echo
	echo "(table also in ${B#"$ROOT"/}/locks.md)"
}
