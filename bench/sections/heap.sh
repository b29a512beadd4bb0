# bench/sections/heap.sh — `make bench`'s heap section: what the heap
# profile costs a malloc-heavy program, against the unprofiled run and
# against the heap profilers a user would otherwise reach for.
#
# Sourced by bench/run.sh, which calls bench_heap after the CPU sections;
# uses its helpers (heading, fail, field, median, minmax, machine, ratio,
# pct, secs) and its variables (B, TMP, SHIM, SHIM_STATE, ROOT).
#
# Workload: bench/heap_work.c, 2 threads of malloc+free pairs of mixed
# small sizes (16..1024 B, 3 in 4 under 256 B), each block's first 16
# bytes written. It prints worker_cpu_ns, the CPU time of the two workers'
# loops alone (thread CPU clocks: no start-up, no exit, no profile dump),
# and hwm_kb, its peak RSS before main returns; the runner adds the
# process's CPU and wall time and its peak RSS through exit (maxrss).
#
# Two sets of configurations, each a median of interleaved rounds:
#   fast  (BENCH_HEAP_PAIRS per thread, default 4000000; BENCH_HEAP_ROUNDS,
#         default 31): unprofiled, libcprof at the default rate, at 65536,
#         with the heap profile off (the wrappers alone), forwarding only
#         (bench/heap_forward.c: an interposed malloc and free that call
#         glibc's and do nothing else, the floor of any wrapper), plain
#         tcmalloc;
#   wide  (BENCH_HEAP_WIDE_PAIRS per thread, default 2000000;
#         BENCH_HEAP_WIDE_ROUNDS, default 41): the shape issue 9 measured,
#         4096 live blocks per thread of 16..4096 bytes (heap_work's
#         WINDOW and MAX_SIZE arguments): unprofiled, libcprof, heap off,
#         forwarding only;
#   peers (BENCH_HEAP_PEER_PAIRS per thread, default 150000;
#         BENCH_HEAP_PEER_ROUNDS, default 5): the same workload, shorter,
#         because gperftools' heap profiler and heaptrack record every
#         allocation: unprofiled, libcprof, tcmalloc, tcmalloc+HEAPPROFILE,
#         heaptrack. Per-pair figures are comparable across the sets.
# "added ns/pair" = median worker ns per pair - the set's unprofiled median.
# Many short rounds rather than a few long ones: on a shared VM the pace
# of the machine drifts over seconds (the unprofiled runs of one set
# spread 40 to 68 ns a pair), and runs a round apart pair the better the
# closer together they are. The target's verdict gives a 95% interval of
# the median ratio it judges (2026-12-03: the rounds' own ratios spread
# over 10 points and more, so a median of 9 rounds could not tell +3%
# from +6%).
#
# Targets (libcprof, default rate, fast and wide sets): workers under 3%
# slower than unprofiled (TARGET_HEAP_CPU), judged on the 95% interval of
# the median round ratio; peak RSS before exit within 5% of unprofiled
# plus the profiler's fixed tables (see HEAP_FIXED_KB below).

HEAP_PAIRS=${BENCH_HEAP_PAIRS:-4000000}
HEAP_ROUNDS=${BENCH_HEAP_ROUNDS:-31}
HEAP_PEER_PAIRS=${BENCH_HEAP_PEER_PAIRS:-150000}
HEAP_PEER_ROUNDS=${BENCH_HEAP_PEER_ROUNDS:-5}
TCMALLOC=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4
HEAP_WIDE_PAIRS=${BENCH_HEAP_WIDE_PAIRS:-2000000}
HEAP_WIDE_ROUNDS=${BENCH_HEAP_WIDE_ROUNDS:-41}
TARGET_HEAP_CPU=0.03 # issue 9: +3% at the default rate
declare -gA HEAP_SHAPE=([wide]="4096 4096") # heap_work's arguments after PAIRS, per set

# The profiler's fixed tables at the defaults, mapped at start-up and
# resident only as far as they are touched: the stack table (CPROF_STACKS
# = 32768, as stacks.c sizes it: 2 x 256 KiB index + 32768 entries of 184
# bytes = 6.25 MiB), the heap tables (64 B x CPROF_HEAP_SAMPLES = 65536:
# 4 MiB), and libunwind's per-thread frame cache (256 KiB for each thread
# that samples: here main and 2 workers).
HEAP_FIXED_KB=$((6400 + 4096 + 3 * 256))

heap_label() {
	case $1 in
	base) echo "unprofiled" ;;
	cprof) echo "libcprof (rate 524288)" ;;
	cprof64k) echo "libcprof (rate 65536)" ;;
	cprofoff) echo "libcprof (heap off)" ;;
	forward) echo "forwarding only" ;;
	tcmalloc) echo "tcmalloc (no profiler)" ;;
	gperf) echo "tcmalloc + HEAPPROFILE" ;;
	heaptrack) echo "heaptrack" ;;
	esac
}

heap_enabled() {
	case $1 in
	cprof*) [[ $SHIM_STATE == ok ]] ;;
	forward) [[ -f $B/heap_forward.so ]] ;;
	tcmalloc | gperf) [[ -f $TCMALLOC ]] ;;
	heaptrack) command -v heaptrack >/dev/null ;;
	*) true ;;
	esac
}

# heap_run SET CONFIG ROUND PAIRS: one run; appends to $TMP/heap/SET.CONFIG.*
heap_run() {
	local set=$1 cfg=$2 round=$3 pairs=$4
	local stem=$TMP/heap/$set.$cfg.$round prof=$TMP/heap/$set.$cfg.$round.d
	local -a env=() pre=()
	mkdir -p "$prof"
	case $cfg in
	cprof) env=(-e "LD_PRELOAD=$SHIM" -e CPROF_PROFILES=heap -e "CPROF_OUT=$prof") ;;
	cprof64k) env=(-e "LD_PRELOAD=$SHIM" -e CPROF_PROFILES=heap -e CPROF_HEAP_RATE=65536
		-e "CPROF_OUT=$prof") ;;
	cprofoff) env=(-e "LD_PRELOAD=$SHIM" -e CPROF_PROFILES=heap -e CPROF_HEAP_RATE=0
		-e "CPROF_OUT=$prof") ;;
	forward) env=(-e "LD_PRELOAD=$B/heap_forward.so") ;;
	tcmalloc) env=(-e "LD_PRELOAD=$TCMALLOC") ;;
	gperf) env=(-e "LD_PRELOAD=$TCMALLOC" -e "HEAPPROFILE=$prof/heap") ;;
	heaptrack) pre=(heaptrack -o "$prof/heaptrack") ;;
	esac
	if ! "$B/runner" -t 300 -o "$stem.result" "${env[@]}" -- \
		"${pre[@]}" "$B/heap_work" "$pairs" ${HEAP_SHAPE[$set]:-} >"$stem.out" 2>"$stem.err"; then
		tail -n 5 "$stem.err" >&2
		fail "heap: $(heap_label "$cfg"), round $round: the workload did not finish"
		touch "$TMP/heap/$set.$cfg.failed"
		return
	fi
	local line sum
	line=$(grep '^checksum=' "$stem.out")
	sum=$(echo "$line" | sed -n 's/^checksum=\([0-9a-f]*\).*/\1/p')
	if [[ $sum != "${HEAP_REF_SUM[$set]}" ]]; then
		fail "heap: $(heap_label "$cfg"), round $round: checksum '$sum', expected '${HEAP_REF_SUM[$set]}'"
		touch "$TMP/heap/$set.$cfg.failed"
	fi
	# Picoseconds per pair: whole numbers, which median() keeps exact.
	local worker done_pairs
	worker=$(echo "$line" | sed -n 's/.*worker_cpu_ns=\([0-9]*\).*/\1/p')
	done_pairs=$(echo "$line" | sed -n 's/.*pairs=\([0-9]*\).*/\1/p')
	awk -v w="$worker" -v p="$done_pairs" 'BEGIN { printf "%.0f\n", w * 1000 / p }' \
		>"$TMP/heap/$set.$cfg.$round.pspp"
	cat "$TMP/heap/$set.$cfg.$round.pspp" >>"$TMP/heap/$set.$cfg.pspp"
	echo "$line" | sed -n 's/.*hwm_kb=\([0-9]*\).*/\1/p' >>"$TMP/heap/$set.$cfg.hwm"
	field cpu_ns "$stem.result" >>"$TMP/heap/$set.$cfg.cpu"
	field wall_ns "$stem.result" >>"$TMP/heap/$set.$cfg.wall"
	field maxrss_kb "$stem.result" >>"$TMP/heap/$set.$cfg.rss"
	rm -rf "$prof"
}

# heap_rounds SET PAIRS ROUNDS CONFIG...: interleaved rounds, rotating
# which configuration goes first.
heap_rounds() {
	local set=$1 pairs=$2 rounds=$3
	shift 3
	local -a configs=() skipped=()
	local cfg
	for cfg in "$@"; do
		if heap_enabled "$cfg"; then configs+=("$cfg"); else skipped+=("$cfg"); fi
	done
	for cfg in "${skipped[@]}"; do echo "skipping $(heap_label "$cfg"): not available"; done
	# Warm-up, not counted: page cache, and the reference checksum.
	if ! "$B/runner" -t 120 -o "$TMP/heap/$set.warmup.result" -- \
		"$B/heap_work" "$pairs" ${HEAP_SHAPE[$set]:-} >"$TMP/heap/$set.warmup.out"; then
		fail "heap: the unprofiled workload did not finish"
		return 1
	fi
	HEAP_REF_SUM[$set]=$(sed -n 's/^checksum=\([0-9a-f]*\).*/\1/p' "$TMP/heap/$set.warmup.out")
	local n=${#configs[@]} r i order
	for ((r = 1; r <= rounds; r++)); do
		order=""
		for ((i = 0; i < n; i++)); do
			cfg=${configs[$(((i + r - 1) % n))]}
			heap_run "$set" "$cfg" "$r" "$pairs"
			order+=" $cfg"
		done
		echo "$set round $r/$rounds:$order"
	done
	HEAP_CONFIGS[$set]="${configs[*]}"
}

mib() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }

# paired SET CONFIG ROUNDS: per round, CONFIG's worker ps/pair minus the
# unprofiled run's of the same round, and their ratio; prints the medians
# "added_ps ratio". Runs of one round are back to back, so a slow drift of
# the machine's load moves both; the median of the differences is steadier
# than the difference of the medians on a shared machine.
# A REF other than base (paired SET CONFIG ROUNDS REF) pairs against that
# configuration's runs instead, into files named CONFIG-REF.
paired() {
	local set=$1 cfg=$2 rounds=$3 ref=${4:-base} r d=$TMP/heap
	local out=$cfg
	[[ $ref == base ]] || out=$cfg-$ref
	: >"$d/$set.$out.diff"
	: >"$d/$set.$out.ratio"
	for ((r = 1; r <= rounds; r++)); do
		[[ -s $d/$set.$cfg.$r.pspp && -s $d/$set.$ref.$r.pspp ]] || continue
		local a b
		a=$(cat "$d/$set.$cfg.$r.pspp")
		b=$(cat "$d/$set.$ref.$r.pspp")
		echo $((a - b)) >>"$d/$set.$out.diff"
		awk -v a="$a" -v b="$b" 'BEGIN { printf "%.0f\n", a * 1000000 / b }' >>"$d/$set.$out.ratio"
	done
	echo "$(median "$d/$set.$out.diff") $(median "$d/$set.$out.ratio")"
}

# ppm_ratio PPM: a ratio kept in millionths, as a decimal (1.034).
ppm_ratio() { awk -v r="$1" 'BEGIN { printf "%.3f", r / 1000000 }'; }

# median_ci FILE: "lo hi", a 95% confidence interval of the median of the
# numbers in FILE, from their order statistics (ranks n/2 -+ 0.98 sqrt(n),
# the binomial's normal approximation; no assumption on their spread).
median_ci() {
	sort -g "$1" | awk '{ v[NR] = $1 }
		END { if (NR == 0) exit;
		      h = 0.98 * sqrt(NR);
		      lo = int(NR / 2 - h); hi = int(NR / 2 + h + 1.999);
		      if (lo < 1) lo = 1; if (hi > NR) hi = NR;
		      print v[lo], v[hi] }'
}

# heap_table SET PAIRS ROUNDS: the markdown table of one set.
heap_table() {
	local set=$1 pairs=$2 rounds=$3 d=$TMP/heap
	local base_pspp base_cpu base_hwm
	base_pspp=$(median "$d/$set.base.pspp")
	base_cpu=$(median "$d/$set.base.cpu")
	base_hwm=$(median "$d/$set.base.hwm")
	echo "Workload: bench/heap_work.c $pairs ${HEAP_SHAPE[$set]:-} (2 threads x $pairs malloc+free pairs), $(machine)."
	echo "Median of $rounds interleaved rounds. Worker ns/pair: the workers' own CPU time per"
	echo "pair (thread CPU clocks); added and ratio: medians over the rounds of the difference"
	echo "from, and the ratio to, the same round's unprofiled run (the target is judged on that"
	echo "ratio). Process CPU adds start-up, helper threads and processes and the profile written"
	echo "at exit. RSS before exit: the workload's VmHWM as main returns; peak RSS: the whole"
	echo "run's (wait4), the profile dump at exit included."
	echo
	printf '| %-24s | %-14s | %-13s | %-15s | %-13s | %-15s | %-7s | %-19s | %-12s |\n' \
		configuration "worker ns/pair" "added ns/pair" "worker ratio" "process CPU s" \
		"CPU ratio" "wall s" "RSS before exit MiB" "peak RSS MiB"
	printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' -------------------------- ---------------- \
		--------------- ----------------- --------------- ----------------- -------- \
		--------------------- --------------
	local cfg
	for cfg in ${HEAP_CONFIGS[$set]}; do
		local label pspp cpu wall hwm rss rw rc
		label=$(heap_label "$cfg")
		[[ -f $d/$set.$cfg.failed ]] && label="$label (FAILED)"
		if [[ ! -s $d/$set.$cfg.pspp ]]; then
			printf '| %-24s | %s |\n' "$label" "no successful run"
			continue
		fi
		pspp=$(median "$d/$set.$cfg.pspp")
		cpu=$(median "$d/$set.$cfg.cpu")
		wall=$(median "$d/$set.$cfg.wall")
		hwm=$(median "$d/$set.$cfg.hwm")
		rss=$(median "$d/$set.$cfg.rss")
		local added ratio_ppm
		read -r added ratio_ppm < <(paired "$set" "$cfg" "$rounds")
		rw=$(ppm_ratio "$ratio_ppm")
		rc=$(ratio "$cpu" "$base_cpu")
		printf '| %-24s | %-14s | %-13s | %-15s | %-13s | %-15s | %-7s | %-19s | %-12s |\n' \
			"$label" "$(awk -v v="$pspp" 'BEGIN { printf "%.2f", v / 1000 }')" \
			"$(awk -v v="$added" 'BEGIN { printf "%+.2f", v / 1000 }')" \
			"$rw ($(pct "$rw"))" "$(secs "$cpu")" "$rc ($(pct "$rc"))" "$(secs "$wall")" \
			"$(mib "$hwm")" "$(mib "$rss")"
	done
	# The targets, on the fast and wide sets' default-rate rows.
	if [[ ($set == fast || $set == wide) && -s $d/$set.cprof.pspp ]]; then
		local hwm rw cpu_ok rss_ok limit
		local added ratio_ppm
		read -r added ratio_ppm < <(paired "$set" cprof "$rounds")
		hwm=$(median "$d/$set.cprof.hwm")
		rw=$(ppm_ratio "$ratio_ppm")
		local lo hi
		read -r lo hi < <(median_ci "$d/$set.cprof.ratio")
		# Met or missed only when the interval says so.
		cpu_ok=$(awk -v lo="$lo" -v hi="$hi" -v t="$TARGET_HEAP_CPU" 'BEGIN {
			if (hi / 1000000 - 1 < t) print "met";
			else if (lo / 1000000 - 1 >= t) print "missed";
			else print "not decided" }')
		limit=$(awk -v b="$base_hwm" -v f="$HEAP_FIXED_KB" 'BEGIN { printf "%.0f", b * 1.05 + f }')
		rss_ok=$( ((hwm <= limit)) && echo met || echo missed)
		[[ -f $d/$set.cprof.failed ]] && cpu_ok="run FAILED" rss_ok="run FAILED"
		echo
		echo "Target, workers under $(awk -v t="$TARGET_HEAP_CPU" 'BEGIN { printf "%g", t * 100 }')%" \
			"slower at the default rate: $cpu_ok ($(pct "$rw"); 95% interval of that median" \
			"over $rounds rounds: $(pct "$(ppm_ratio "$lo")") to $(pct "$(ppm_ratio "$hi")"))."
		if [[ -s $d/$set.forward.pspp ]]; then
			local fadded fratio flo fhi
			read -r fadded fratio < <(paired "$set" cprof "$rounds" forward)
			read -r flo fhi < <(median_ci "$d/$set.cprof-forward.ratio")
			echo "Over the forwarding floor (the same round's forwarding-only run):" \
				"$(pct "$(ppm_ratio "$fratio")") (95% interval $(pct "$(ppm_ratio "$flo")") to" \
				"$(pct "$(ppm_ratio "$fhi")"))."
		fi
		echo "Target, RSS before exit within 5% of unprofiled + fixed tables" \
			"($(mib "$base_hwm") x 1.05 + $(mib "$HEAP_FIXED_KB") = $(mib "$limit") MiB):" \
			"$rss_ok ($(mib "$hwm") MiB)."
	fi
}

bench_heap() {
	heading "Heap profile: 2-thread malloc/free of mixed small sizes (bench/heap_work.c)"
	mkdir -p "$TMP/heap"
	local cc=${CC:-gcc}
	"$cc" -O2 -g -Wall -Wextra -pthread -o "$B/heap_work" bench/heap_work.c || {
		fail "heap: cannot build bench/heap_work.c"
		return
	}
	declare -gA HEAP_REF_SUM=() HEAP_CONFIGS=()
	"$cc" -O2 -shared -fPIC -o "$B/heap_forward.so" bench/heap_forward.c ||
		echo "heap: cannot build bench/heap_forward.c; no forwarding-only rows"
	heap_rounds fast "$HEAP_PAIRS" "$HEAP_ROUNDS" base cprof cprof64k cprofoff forward tcmalloc ||
		return
	heap_rounds wide "$HEAP_WIDE_PAIRS" "$HEAP_WIDE_ROUNDS" base cprof cprofoff forward || return
	heap_rounds peers "$HEAP_PEER_PAIRS" "$HEAP_PEER_ROUNDS" base cprof tcmalloc gperf heaptrack ||
		return
	{
		echo "### Fast configurations"
		echo
		heap_table fast "$HEAP_PAIRS" "$HEAP_ROUNDS"
		echo
		echo "### Wide: 4096 live blocks per thread, 16..4096 bytes (issue 9's loop)"
		echo
		heap_table wide "$HEAP_WIDE_PAIRS" "$HEAP_WIDE_ROUNDS"
		echo
		echo "### Against the heap profilers that record every allocation"
		echo
		heap_table peers "$HEAP_PEER_PAIRS" "$HEAP_PEER_ROUNDS"
		if [[ $SHIM_STATE != ok ]]; then
			echo
			echo "pending: libcprof rows not measured (preload/libcprof.so $SHIM_STATE)."
		fi
	} | tee "$B/heap.md"
	echo
	echo "(tables also in ${B#"$ROOT"/}/heap.md)"
}
