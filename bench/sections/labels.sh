# bench/sections/labels.sh — `make bench`'s labels section: what a
# cprof_labels_push + cprof_labels_pop of two labels costs (issue 11's
# target: at most 20 ns), against the header's no-op without the shim.
#
# Sourced by bench/run.sh, which calls bench_labels; uses its helpers and
# variables. Workload: bench/labels_work.c (best of 15 blocks per run);
# BENCH_LABELS_ROUNDS (default 7) interleaved runs per configuration,
# median of the runs' figures.

LABELS_ROUNDS=${BENCH_LABELS_ROUNDS:-7}
TARGET_LABELS_NS=20

bench_labels() {
	heading "Labels: push+pop of two labels (bench/labels_work.c)"
	mkdir -p "$TMP/labels"
	local cc=${CC:-gcc}
	"$cc" -O2 -g -Wall -Wextra -I"$ROOT/include" -o "$B/labels_work" "$ROOT/bench/labels_work.c" || {
		fail "labels: cannot build bench/labels_work.c"
		return
	}
	local -a configs=(base)
	[[ $SHIM_STATE == ok ]] && configs+=(cprof)
	local r cfg
	for ((r = 1; r <= LABELS_ROUNDS; r++)); do
		for cfg in "${configs[@]}"; do
			local -a env=()
			[[ $cfg == cprof ]] && env=(-e "LD_PRELOAD=$SHIM" -e CPROF_PROFILES=cpu -e "CPROF_OUT=$TMP/labels/out")
			if ! "$B/runner" -t 60 -o "$TMP/labels/$cfg.$r.result" "${env[@]}" -- \
				"$B/labels_work" >"$TMP/labels/$cfg.$r.out" 2>"$TMP/labels/$cfg.$r.err"; then
				fail "labels: $cfg, round $r: the workload failed"
				continue
			fi
			field ns_per_pair "$TMP/labels/$cfg.$r.out" >>"$TMP/labels/$cfg.ns"
		done
	done
	{
		echo "Median of $LABELS_ROUNDS runs (each the best of 15 blocks), $(machine)."
		echo
		printf '| %-26s | %-12s | %-14s | %-22s |\n' configuration "ns per pair" "min-max" "target"
		printf '|%s|%s|%s|%s|\n' ---------------------------- -------------- ---------------- ------------------------
		local m lo hi verdict
		for cfg in "${configs[@]}"; do
			[[ -s $TMP/labels/$cfg.ns ]] || continue
			m=$(sort -g "$TMP/labels/$cfg.ns" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
			read -r lo hi < <(minmax "$TMP/labels/$cfg.ns")
			verdict=""
			if [[ $cfg == cprof ]]; then
				verdict=$(awk -v m="$m" -v t="$TARGET_LABELS_NS" 'BEGIN { print (m <= t) ? "<= 20 ns: met" : "<= 20 ns: missed" }')
				printf '| %-26s | %-12s | %-14s | %-22s |\n' "libcprof" "$m" "$lo-$hi" "$verdict"
			else
				printf '| %-26s | %-12s | %-14s | %-22s |\n' "no shim (header no-op)" "$m" "$lo-$hi" ""
			fi
		done
	} | tee "$B/labels.md"
}
