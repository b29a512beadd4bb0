# bench/sections/churn.sh — `make bench`'s thread-churn section: what the
# shim costs a program that makes many short threads.
#
# Sourced by bench/run.sh, which calls bench_churn; uses its helpers
# (heading, fail, field, median, minmax, machine, ratio, pct, secs) and
# variables (B, TMP, SHIM, SHIM_STATE, ROOT).
#
# Workload: bench/churn_work.c, 3000 threads made and joined 10 at a time,
# each doing a malloc, a lock and 20 000 additions. Whole-process runs
# (start-up, the threads, the exit dump), BENCH_CHURN_ROUNDS (default 15)
# interleaved rounds of: unprofiled, libcprof at the defaults (every kind,
# as a user gets it), libcprof with CPU only. Ratio = median over the
# rounds of the run's time / the same round's unprofiled time (as the heap
# and exit sections judge): this machine's speed drifts by more than 10%
# within a minute, which a ratio of two medians taken over the whole
# section measures along with the shim. Seconds: medians; min-max over the
# rounds.
#
# Target (issue 9): libcprof at the defaults at most 1.10x wall and CPU.

CHURN_ROUNDS=${BENCH_CHURN_ROUNDS:-15}
CHURN_ARGS=(3000 10 20000)
TARGET_CHURN=0.10

churn_label() {
	case $1 in
	base) echo "unprofiled" ;;
	cprof) echo "libcprof, defaults" ;;
	cprofcpu) echo "libcprof, CPU only" ;;
	esac
}

churn_run() {
	local cfg=$1 round=$2 stem=$TMP/churn/$1.$2
	local -a env=()
	mkdir -p "$stem.d"
	case $cfg in
	cprof) env=(-e "LD_PRELOAD=$SHIM" -e "CPROF_OUT=$stem.d") ;;
	cprofcpu) env=(-e "LD_PRELOAD=$SHIM" -e CPROF_PROFILES=cpu -e "CPROF_OUT=$stem.d") ;;
	esac
	if ! "$B/runner" -t 120 -o "$stem.result" "${env[@]}" -- \
		"$B/churn_work" "${CHURN_ARGS[@]}" >"$stem.out" 2>"$stem.err"; then
		tail -n 5 "$stem.err" >&2
		fail "churn: $(churn_label "$cfg"), round $round: the workload did not finish"
		touch "$TMP/churn/$cfg.failed"
		return
	fi
	if [[ $(cat "$stem.out") != "$CHURN_REF" ]]; then
		fail "churn: $(churn_label "$cfg"), round $round: printed '$(cat "$stem.out")'"
		touch "$TMP/churn/$cfg.failed"
	fi
	field wall_ns "$stem.result" >>"$TMP/churn/$cfg.wall"
	field cpu_ns "$stem.result" >>"$TMP/churn/$cfg.cpu"
	rm -rf "$stem.d"
}

# churn_paired CONFIG wall|cpu: CONFIG's per-round ratios to the same
# round's unprofiled run, in millionths, one a line (line N of every
# config's file is round N; a failed run stops the table's verdict).
churn_paired() {
	paste "$TMP/churn/base.$2" "$TMP/churn/$1.$2" |
		awk 'NF == 2 && $1 > 0 { printf "%.0f\n", 1e6 * $2 / $1 }' >"$TMP/churn/$1.$2.ratio"
}

bench_churn() {
	heading "Thread churn: 3000 short threads, 10 at a time (bench/churn_work.c)"
	mkdir -p "$TMP/churn"
	local cc=${CC:-gcc}
	"$cc" -O2 -g -Wall -Wextra -pthread -o "$B/churn_work" "$ROOT/bench/churn_work.c" || {
		fail "churn: cannot build bench/churn_work.c"
		return
	}
	"$B/churn_work" "${CHURN_ARGS[@]}" >"$TMP/churn/ref.out" || {
		fail "churn: the unprofiled workload failed"
		return
	}
	CHURN_REF=$(cat "$TMP/churn/ref.out")
	local -a configs=(base)
	if [[ $SHIM_STATE == ok ]]; then
		configs+=(cprof cprofcpu)
	else
		echo "libcprof rows SKIPPED (preload/libcprof.so $SHIM_STATE): baseline only."
	fi
	local r i n=${#configs[@]}
	for ((r = 1; r <= CHURN_ROUNDS; r++)); do
		for ((i = 0; i < n; i++)); do
			churn_run "${configs[$(((i + r - 1) % n))]}" "$r"
		done
	done
	{
		echo "Whole-process runs, $CHURN_ROUNDS interleaved rounds, $(machine)."
		echo "Ratio: median over the rounds of the run / the same round's unprofiled run."
		echo
		printf '| %-20s | %-8s | %-15s | %-16s | %-8s | %-16s | %-22s |\n' configuration \
			"wall s" "wall min-max s" "wall ratio" "CPU s" "CPU ratio" "target (<= 1.10x)"
		printf '|%s|%s|%s|%s|%s|%s|%s|\n' ---------------------- ---------- \
			----------------- ------------------ ---------- ------------------ \
			------------------------
		local cfg w c lo hi rw rc verdict
		for cfg in "${configs[@]}"; do
			[[ -s $TMP/churn/$cfg.wall ]] || { printf '| %-20s | no successful run |\n' "$cfg"; continue; }
			w=$(median "$TMP/churn/$cfg.wall")
			c=$(median "$TMP/churn/$cfg.cpu")
			read -r lo hi < <(minmax "$TMP/churn/$cfg.wall")
			churn_paired "$cfg" wall
			churn_paired "$cfg" cpu
			rw=$(awk '{ printf "%.3f", $1 / 1e6 }' <<<"$(median "$TMP/churn/$cfg.wall.ratio")")
			rc=$(awk '{ printf "%.3f", $1 / 1e6 }' <<<"$(median "$TMP/churn/$cfg.cpu.ratio")")
			verdict=""
			if [[ $cfg == cprof ]]; then
				verdict=$(awk -v w="$rw" -v c="$rc" -v t="$TARGET_CHURN" 'BEGIN {
					print (w - 1 <= t && c - 1 <= t) ? "met" : "missed" }')
				[[ -f $TMP/churn/$cfg.failed ]] && verdict="run FAILED"
			fi
			printf '| %-20s | %-8s | %-15s | %-16s | %-8s | %-16s | %-22s |\n' \
				"$(churn_label "$cfg")" "$(secs "$w")" "$(secs "$lo")-$(secs "$hi")" \
				"$rw ($(pct "$rw"))" "$(secs "$c")" "$rc ($(pct "$rc"))" "$verdict"
		done
	} | tee "$B/churn.md"
	echo
	echo "(table also in ${B#"$ROOT"/}/churn.md)"
}
