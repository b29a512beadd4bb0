# bench/sections/exit.sh — `make bench`'s exit-cost section: what a short
# process that recorded samples pays under the shim, most of it the final
# dump (symbolize, build, gzip, write) at exit.
#
# Sourced by bench/run.sh; uses its helpers (heading, fail, field, median,
# minmax, machine, ratio, pct) and its variables (B, TMP, SHIM, SHIM_STATE,
# GPERF, ROOT). The start-up section's do-nothing program records no
# sample and writes no file; this one does.
#
# Workload: bench/cpu_work.c with BENCH_EXIT_WORK_ROUNDS rounds (default
# 170: about 50 ms of wall on 2 idle cores, 0.1 s of CPU), so at 100 Hz
# each run records a few samples, in the program's own code and in libc
# (its sort), and writes a CPU profile (and a block one: the joins) at exit.
# Configurations, BENCH_EXIT_ROUNDS interleaved rounds (default 21):
#   base        unprofiled
#   cprof       libcprof at the defaults (every kind, CPROF_LINES=program)
#   cprofall    libcprof with CPROF_LINES=all: DWARF lines of the system
#               libraries too (libc's separate debug file when libc6-dbg
#               is installed), what the default leaves out
#   gperf       gperftools' CPU profiler at 100 Hz (the peer for CPU)
# "added" = median over the rounds of (run - the same round's unprofiled
# run), in ms of wall and of CPU. Target (cprof): at most +5 ms of both.

EXIT_ROUNDS=${BENCH_EXIT_ROUNDS:-21}
EXIT_WORK_ROUNDS=${BENCH_EXIT_WORK_ROUNDS:-170}
TARGET_EXIT_MS=5

exit_label() {
	case $1 in
	base) echo "unprofiled" ;;
	cprof) echo "libcprof (defaults)" ;;
	cprofall) echo "libcprof CPROF_LINES=all" ;;
	gperf) echo "gperftools 100 Hz" ;;
	esac
}

exit_enabled() {
	case $1 in
	cprof*) [[ $SHIM_STATE == ok ]] ;;
	gperf) [[ -f $GPERF ]] ;;
	*) true ;;
	esac
}

# exit_run CONFIG ROUND: one run; appends wall and CPU (ns) and the
# number of profile files written.
exit_run() {
	local cfg=$1 round=$2 stem=$TMP/exit/$1.$2
	local prof=$stem.d
	local -a env=()
	mkdir -p "$prof"
	case $cfg in
	cprof) env=(-e "LD_PRELOAD=$SHIM" -e "CPROF_OUT=$prof") ;;
	cprofall) env=(-e "LD_PRELOAD=$SHIM" -e "CPROF_OUT=$prof" -e CPROF_LINES=all) ;;
	gperf) env=(-e "LD_PRELOAD=$GPERF" -e "CPUPROFILE=$prof/cpu.prof"
		-e CPUPROFILE_FREQUENCY=100) ;;
	esac
	if ! "$B/runner" -t 60 -o "$stem.result" "${env[@]}" -- \
		"$B/cpu_work" "$EXIT_WORK_ROUNDS" >"$stem.out" 2>"$stem.err"; then
		tail -n 5 "$stem.err" >&2
		fail "exit: $(exit_label "$cfg"), round $round: the workload did not finish"
		touch "$TMP/exit/$cfg.failed"
		return
	fi
	local sum
	sum=$(sed -n 's/^checksum=\([0-9a-f]*\).*/\1/p' "$stem.out")
	if [[ $sum != "$EXIT_REF_SUM" ]]; then
		fail "exit: $(exit_label "$cfg"), round $round: checksum '$sum', expected '$EXIT_REF_SUM'"
		touch "$TMP/exit/$cfg.failed"
	fi
	field wall_ns "$stem.result" >"$stem.wall"
	field cpu_ns "$stem.result" >"$stem.cpu"
	cat "$stem.wall" >>"$TMP/exit/$cfg.wall"
	cat "$stem.cpu" >>"$TMP/exit/$cfg.cpu"
	find "$prof" -type f | wc -l >>"$TMP/exit/$cfg.files"
	rm -rf "$prof"
}

# exit_added CONFIG WHAT: median over the rounds of CONFIG's WHAT (wall or
# cpu) minus the same round's unprofiled figure, in ns.
exit_added() {
	local cfg=$1 what=$2 r d=$TMP/exit
	: >"$d/$cfg.$what.diff"
	for ((r = 1; r <= EXIT_ROUNDS; r++)); do
		[[ -s $d/$cfg.$r.$what && -s $d/base.$r.$what ]] || continue
		echo $(($(cat "$d/$cfg.$r.$what") - $(cat "$d/base.$r.$what"))) >>"$d/$cfg.$what.diff"
	done
	median "$d/$cfg.$what.diff"
}

ms() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e6 }'; }
ms_signed() { awk -v ns="$1" 'BEGIN { printf "%+.1f", ns / 1e6 }'; }

bench_exit() {
	heading "Exit cost: a 50 ms process with samples (bench/cpu_work.c $EXIT_WORK_ROUNDS)"
	mkdir -p "$TMP/exit"
	if ! "$B/runner" -t 60 -o "$TMP/exit/warmup.result" -- \
		"$B/cpu_work" "$EXIT_WORK_ROUNDS" >"$TMP/exit/warmup.out"; then
		fail "exit: the unprofiled workload did not finish"
		return
	fi
	EXIT_REF_SUM=$(sed -n 's/^checksum=\([0-9a-f]*\).*/\1/p' "$TMP/exit/warmup.out")
	local -a configs=()
	local cfg
	for cfg in base cprof cprofall gperf; do
		if exit_enabled "$cfg"; then configs+=("$cfg"); else echo "skipping $(exit_label "$cfg")"; fi
	done
	local n=${#configs[@]} r i
	for ((r = 1; r <= EXIT_ROUNDS; r++)); do
		for ((i = 0; i < n; i++)); do
			exit_run "${configs[$(((i + r - 1) % n))]}" "$r"
		done
	done
	echo "$n configurations x $EXIT_ROUNDS interleaved rounds done"

	{
		local dbg=not
		dpkg-query -W -f='${Status}' libc6-dbg 2>/dev/null | grep -q 'ok installed' && dbg=""
		echo "Workload: bench/cpu_work.c $EXIT_WORK_ROUNDS (2 threads), $(machine); libc6-dbg ${dbg:+not }installed."
		echo "Median of $EXIT_ROUNDS interleaved rounds; added: median over the rounds of the"
		echo "difference from the same round's unprofiled run. Files: profiles written per run."
		echo
		printf '| %-26s | %-7s | %-13s | %-14s | %-7s | %-13s | %-5s | %-24s |\n' \
			configuration "wall ms" "wall min-max" "added wall ms" "CPU ms" "added CPU ms" \
			files "target (+5 ms wall, CPU)"
		printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ---------------------------- --------- \
			--------------- ---------------- --------- --------------- ------- \
			--------------------------
		local busy=0 base_w base_c
		base_w=$(median "$TMP/exit/base.wall")
		base_c=$(median "$TMP/exit/base.cpu")
		# Two threads on min(2, cores) cores: CPU < 0.9 x ideal x wall
		# means other jobs had the cores, and the wall figures are theirs.
		local ideal=$(($(nproc) < 2 ? $(nproc) : 2))
		awk -v c="$base_c" -v w="$base_w" -v i="$ideal" 'BEGIN { exit !(c < 0.9 * i * w) }' && busy=1
		for cfg in "${configs[@]}"; do
			local label=$(exit_label "$cfg") w c lo hi aw="" ac="" target=""
			[[ -f $TMP/exit/$cfg.failed ]] && label="$label (FAILED)"
			[[ -s $TMP/exit/$cfg.wall ]] || { printf '| %-26s | no successful run |\n' "$label"; continue; }
			w=$(median "$TMP/exit/$cfg.wall")
			c=$(median "$TMP/exit/$cfg.cpu")
			read -r lo hi < <(minmax "$TMP/exit/$cfg.wall")
			if [[ $cfg != base ]]; then
				local dw dc
				dw=$(exit_added "$cfg" wall)
				dc=$(exit_added "$cfg" cpu)
				aw=$(ms_signed "$dw") ac=$(ms_signed "$dc")
				if [[ $cfg == cprof ]]; then
					local lim=$((TARGET_EXIT_MS * 1000000))
					if ((busy)); then
						((dc <= lim)) && target="met (CPU only)" || target="missed (CPU)"
					elif ((dw <= lim && dc <= lim)); then
						target=met
					else
						target="missed"
					fi
					[[ -f $TMP/exit/$cfg.failed ]] && target="run FAILED"
				fi
			fi
			printf '| %-26s | %-7s | %-13s | %-14s | %-7s | %-13s | %-5s | %-24s |\n' \
				"$label" "$(ms "$w")" "$(ms "$lo")-$(ms "$hi")" "$aw" "$(ms "$c")" "$ac" \
				"$(median "$TMP/exit/$cfg.files")" "$target"
		done
		if ((busy)); then
			echo
			echo "WARNING: busy machine: the unprofiled runs used $(awk -v c="$base_c" -v w="$base_w" \
				'BEGIN { printf "%.2f", c / w }') of $ideal cores; the target is judged on CPU only."
		fi
	} | tee "$B/exit.md"
	echo
	echo "(table also in ${B#"$ROOT"/}/exit.md)"
}
