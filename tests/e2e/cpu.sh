# End-to-end tests of the CPU profile and of the machinery every profile
# shares: dumps at exit and on the signal, file names, fork, signals the
# program owns, transparency, bad settings. Sourced by tests/run.sh; each
# test_* runs in its own empty directory with the helpers defined there.

# A 75/25 split between two threads: each share within 3 points of the
# truth, total CPU within 5% of what getrusage reports; read by both
# readers.
check_split() {
	local hz=$1
	run_profiled prof CPROF_CPU_HZ="$hz" -- "$PROGS/cpu_split" 150 >out 2>err || fail "exit status $?" || return 1
	local file truth
	file=$(profile_of prof cpu)
	[ -n "$file" ] || fail "no cpu profile in prof/" || return 1
	truth=$(sed -n 's/^rusage_cpu_ns //p' err)
	local heavy light total
	heavy=$(cprof_value "$file" work_heavy cum cpu)
	light=$(cprof_value "$file" work_light cum cpu)
	total=$(cprof_total "$file" cpu)
	echo "hz=$hz cprof: heavy=$heavy light=$light total=$total rusage=$truth"
	local heavy_pct light_pct
	heavy_pct=$(awk -v a="$heavy" -v t="$((heavy + light))" 'BEGIN { printf "%.2f", 100 * a / t }')
	light_pct=$(awk -v a="$light" -v t="$((heavy + light))" 'BEGIN { printf "%.2f", 100 * a / t }')
	near "$heavy_pct" 75 3 || fail "work_heavy share $heavy_pct%, want 75 +- 3" || return 1
	near "$light_pct" 25 3 || fail "work_light share $light_pct%, want 25 +- 3" || return 1
	within "$total" "$truth" 5 || fail "sampled total $total ns vs getrusage $truth ns (> 5%)" || return 1

	# The independent reader agrees.
	local p_heavy p_light p_total
	p_heavy=$(pprof_cum_pct "$file" work_heavy)
	p_light=$(pprof_cum_pct "$file" work_light)
	p_total=$(pprof_total_ns "$file")
	echo "hz=$hz pprof: heavy=$p_heavy% light=$p_light% total=${p_total}ns"
	near "$p_heavy" 75 3 || fail "pprof: work_heavy $p_heavy%" || return 1
	near "$p_light" 25 3 || fail "pprof: work_light $p_light%" || return 1
	within "$p_total" "$truth" 5 || fail "pprof total $p_total vs $truth" || return 1
}

# split_of DIR: sets SPLIT_FILE (the CPU profile in DIR), SPLIT_SAMPLES
# and SPLIT_HEAVY, SPLIT_LIGHT (work_heavy's and work_light's cum CPU ns,
# our reader) and SPLIT_PCT (work_heavy's share, %) for cpu_split's run.
split_of() {
	SPLIT_FILE=$(profile_of "$1" cpu)
	[ -n "$SPLIT_FILE" ] || fail "no cpu profile in $1" || return 1
	SPLIT_SAMPLES=$(cprof_total "$SPLIT_FILE" samples)
	SPLIT_HEAVY=$(cprof_value "$SPLIT_FILE" work_heavy cum cpu)
	SPLIT_LIGHT=$(cprof_value "$SPLIT_FILE" work_light cum cpu)
	SPLIT_PCT=$(awk -v a="$SPLIT_HEAVY" -v b="$SPLIT_LIGHT" 'BEGIN { printf "%.1f", 100 * a / (a + b) }')
}

# split_near: work_heavy's share (split_of) is within 5 points of 75%.
split_near() {
	awk -v s="$SPLIT_PCT" 'BEGIN { exit !(s > 70 && s < 80) }' ||
		fail "split off: heavy $SPLIT_HEAVY light $SPLIT_LIGHT" || return 1
}

# A CPU sample makes no signal-mask system call: libunwind blocks and
# unblocks every signal around each object lookup, 17 rt_sigprocmask calls
# a sample here, which protect nothing inside the shim's lock-free unwinds
# (preload/unwind.c). strace counts the calls of the profiled run (1000 Hz,
# CPU profile only) against the unprofiled one: at most 50 more plus one
# for every 20 samples. The split stays right (the stacks are unchanged).
test_cpu_samples_make_no_mask_calls() {
	count_calls rt_sigprocmask prof CPROF_PROFILES=cpu CPROF_CPU_HZ=1000 -- \
		"$PROGS/cpu_split" 60 || return 1
	split_of prof || return 1
	local more=$((PROF_CALLS - BASE_CALLS)) samples=$SPLIT_SAMPLES
	echo "rt_sigprocmask: unprofiled $BASE_CALLS, profiled $PROF_CALLS; samples $samples;" \
		"work_heavy share $SPLIT_PCT%"
	[ "$samples" -ge 100 ] || fail "only $samples samples" || return 1
	[ "$more" -le $((50 + samples / 20)) ] ||
		fail "$more more mask calls for $samples samples" || return 1
	split_near
}

# The dumper makes a new thread's CPU timer at the thread's first expiry
# (preload/cpu.c) and sleeps while no thread waits for one: it used to
# look every 2 ms for 200 ms after each thread's start, about 100 futex
# waits, each a switch away from one of the program's threads. strace
# counts futex calls, profiled (CPU only, 100 Hz) against unprofiled: at
# most 20 more. The threads' timers are still made: the 0.6 s of CPU
# time has at least 30 samples (a thread without its timer has one, its
# tail) and the split is right.
test_cpu_dumper_sleeps_while_threads_run() {
	count_calls futex prof CPROF_PROFILES=cpu -- "$PROGS/cpu_split" 60 || return 1
	split_of prof || return 1
	local more=$((PROF_CALLS - BASE_CALLS))
	echo "futex calls: unprofiled $BASE_CALLS, profiled $PROF_CALLS; samples $SPLIT_SAMPLES"
	[ "$more" -le 20 ] || fail "$more more futex calls" || return 1
	[ "$SPLIT_SAMPLES" -ge 30 ] ||
		fail "only $SPLIT_SAMPLES samples: threads without timers" || return 1
	split_near || return 1
	pprof_top "$SPLIT_FILE" | grep -q work_heavy || fail "pprof does not see work_heavy" || return 1
}

test_cpu_split_100hz() { check_split 100; }
test_cpu_split_1000hz() { check_split 1000; }

# The profile's own facts: sample and period types, the period, time and
# duration, main executable first with its real build id, static
# functions named, source lines present, flags only where true.
test_cpu_profile_format() {
	run_profiled prof CPROF_CPU_HZ=250 -- "$PROGS/cpu_split" 30 >/dev/null 2>&1 || fail "exit $?" || return 1
	local file
	file=$(profile_of prof cpu)
	"$CPROF" raw "$file" >raw || fail "cprof raw failed" || return 1
	grep -q '^Sample types: samples/count cpu/nanoseconds$' raw || fail "sample types" || return 1
	grep -q '^Period type: cpu/nanoseconds$' raw || fail "period type" || return 1
	grep -q '^Period: 4000000 ' raw || fail "period is not 4ms at 250 Hz" || return 1
	grep -q '^Duration: ' raw || fail "no duration" || return 1
	local want_id
	want_id=$(readelf -n "$PROGS/cpu_split" | sed -n 's/.*Build ID: //p')
	grep -E "^ +1: .*$PROGS/cpu_split build_id=$want_id" raw ||
		fail "mapping 1 is not the main program with build id $want_id" || return 1
	# work_heavy and spin are static: named from .symtab, with lines.
	grep -qE 'work_heavy .*cpu_split.c:[0-9]+' raw || fail "static work_heavy without file:line" || return 1
	grep -qE 'spin .*cpu_split.c:[0-9]+ \(inline\)' raw || fail "inlined spin not expanded" || return 1
	# pprof shows the source lines of the inlined frames.
	go tool pprof -list 'work_heavy' "$file" 2>/dev/null | grep -q 'spin(2000000)' ||
		fail "pprof -list work_heavy shows no source" || return 1
}

# A dump signal mid-run gives a valid profile, the program runs on with
# the same output, and -base shows the window between the dumps.
test_dump_signal_mid_run() {
	"$PROGS/cpu_split" 150 >expected 2>/dev/null
	(start_profiled prof -- "$PROGS/cpu_split" 150 >out 2>err) &
	local pid=$!
	sleep 0.5
	kill -USR2 "$pid"
	sleep 0.3
	kill -USR2 "$pid"
	wait "$pid" || fail "exit status $? after the dump signal" || return 1
	cmp -s expected out || fail "output differs after the dump signal" || return 1
	grep -v '^rusage_cpu_ns' err | grep . && fail "unexpected stderr" && return 1
	local files
	files=$(ls prof/*.cpu.pb.gz | wc -l)
	[ "$files" -eq 3 ] || fail "want 3 cpu profiles (2 signals + exit), got $files" || return 1
	local first last
	first=$(ls prof/*.cpu.pb.gz | sort | head -1)
	last=$(ls prof/*.cpu.pb.gz | sort | tail -1)
	local t1 t3
	t1=$(cprof_total "$first" cpu)
	t3=$(cprof_total "$last" cpu)
	echo "first dump $t1 ns, final $t3 ns"
	[ "$t1" -gt 0 ] && [ "$t1" -lt "$t3" ] || fail "dumps are not cumulative" || return 1
	pprof_top "$first" >/dev/null || fail "pprof cannot read the mid-run dump" || return 1
	local window
	window=$(pprof_top "$last" -unit=ns -base "$first" | sed -n 's/.*Total samples = \([0-9.]*\)ns.*/\1/p')
	echo "pprof -base window: $window ns"
	near "$window" "$((t3 - t1))" 1 || fail "-base window $window != $((t3 - t1))" || return 1
}

# fork: one profile per process; the child's holds only its own work.
test_fork_one_profile_per_process() {
	run_profiled prof -- "$PROGS/forker" >out 2>err || fail "exit $?" || return 1
	local child
	child=$(sed -n 's/^child \([0-9]*\) exited 0$/\1/p' out)
	[ -n "$child" ] || fail "child did not exit 0: $(cat out)" || return 1
	local cfile pfile
	cfile=$(ls prof/forker."$child".*.cpu.pb.gz | tail -1)
	pfile=$(ls prof/forker.*.cpu.pb.gz | grep -v "\.$child\." | tail -1)
	[ -n "$cfile" ] && [ -n "$pfile" ] || fail "want a profile for parent and child: $(ls prof)" || return 1
	local c_child c_parent p_parent p_child
	c_child=$(cprof_value "$cfile" child_work)
	c_parent=$(cprof_value "$cfile" parent_work)
	p_parent=$(cprof_value "$pfile" parent_work)
	p_child=$(cprof_value "$pfile" child_work)
	echo "child file: child_work=$c_child parent_work=$c_parent; parent file: parent_work=$p_parent child_work=$p_child"
	[ "$c_child" -gt 0 ] || fail "child profile lacks child_work" || return 1
	[ "$c_parent" -eq 0 ] || fail "child profile has the parent's pre-fork work" || return 1
	[ "$p_parent" -gt 0 ] && [ "$p_child" -eq 0 ] || fail "parent profile wrong" || return 1
	pprof_top "$cfile" | grep -q child_work || fail "pprof: child_work missing" || return 1
}

# A program with its own SIGUSR2 and SIGPROF handlers behaves exactly as
# without the shim. The shim steps aside for the dump signal and says so
# once; SIGPROF is the program's alone (the CPU timers use a signal of
# their own), so the CPU profile goes on through the program's own
# ITIMER_PROF loop in main.
test_program_owns_signals() {
	"$PROGS/own_signals" >expected 2>expected.err
	local want=$?
	run_profiled prof -- "$PROGS/own_signals" >out 2>err
	local got=$?
	[ "$got" -eq "$want" ] || fail "exit status $got, want $want" || return 1
	cmp -s expected out || { diff expected out; fail "output differs"; return 1; }
	grep -q 'usr2 handled 2 times; own SIGPROF ticks >= 20: yes' out || fail "program's handlers did not run" || return 1
	[ "$(grep -c '^cprof: .*signal 12' err)" -eq 1 ] || fail "want one cprof line for SIGUSR2: $(cat err)" || return 1
	[ "$(grep -vc '^cprof: .*signal 12' err)" -eq 0 ] || fail "other stderr: $(cat err)" || return 1
	local file main
	file=$(profile_of prof cpu)
	main=$(cprof_value "$file" main)
	echo "main: $main ns"
	[ "$main" -gt 50000000 ] || fail "CPU profile stopped: main has $main ns" || return 1
	pprof_top "$file" | grep -q ' main$' || fail "pprof: no main" || return 1
}

# A terminating signal the program has no handler for (SIGTERM, SIGINT):
# the final dump is written, then the process still dies of that signal.
check_final_dump_on() {
	local sig=$1 want=$2
	# env --default-signal: the program starts with the signal's default
	# action even where the test itself runs with it ignored (a shell
	# starts background jobs with SIGINT ignored when job control is off).
	(start_profiled prof -- env --default-signal="$sig" "$PROGS/busy_until_signal" >out 2>err) &
	local pid=$!
	for _ in $(seq 50); do grep -q ready out 2>/dev/null && break; sleep 0.1; done
	sleep 0.5
	# The truth: the CPU time the program had when the signal went
	# (utime + stime in clock ticks; on a busy machine far less than the
	# 0.5 s of wall time).
	local ticks hz
	ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	hz=$(getconf CLK_TCK)
	kill -"$sig" "$pid"
	wait "$pid"
	local rc=$?
	[ "$rc" -eq "$want" ] || fail "exit status $rc, want $want (killed by SIG$sig)" || return 1
	local file busy
	file=$(profile_of prof cpu)
	[ -n "$file" ] || fail "no final profile" || return 1
	busy=$(cprof_value "$file" busy_loop)
	local truth=$((ticks * 1000000000 / hz))
	echo "SIG$sig: busy_loop $busy ns; the process had used $truth ns of CPU"
	[ "$truth" -gt 0 ] || fail "the program used no CPU before the signal" || return 1
	# At least half of the CPU time it had (the samples of the last tick
	# or two before the signal may still be on their way), and no more
	# than it had plus two ticks.
	[ "$busy" -ge $((truth / 2)) ] && [ "$busy" -le $((truth + 2000000000 / hz)) ] ||
		fail "final profile has busy_loop $busy ns for $truth ns of CPU" || return 1
	pprof_top "$file" | grep -q busy_loop || fail "pprof: no busy_loop" || return 1
	[ ! -s err ] || fail "stderr: $(cat err)" || return 1
}

test_sigterm_final_dump() { check_final_dump_on TERM 143; }
test_sigint_final_dump() { check_final_dump_on INT 130; }

# cprof_dump_now() from include/cprof.h: writes a dump and returns 0 under
# the shim; a no-op returning -ENOSYS without it.
test_api_dump() {
	"$PROGS/api_dump" >expected 2>err0 || fail "without shim: exit $?" || return 1
	grep -q "cprof_dump_now=-38" err0 || fail "without shim: $(cat err0)" || return 1
	run_profiled prof -- "$PROGS/api_dump" >out 2>err || fail "exit $?" || return 1
	grep -q 'cprof_dump_now=0' err || fail "with shim: $(cat err)" || return 1
	cmp -s expected out || fail "output differs" || return 1
	local n first last
	n=$(ls prof/*.cpu.pb.gz | wc -l)
	[ "$n" -eq 2 ] || fail "want 2 cpu profiles, got $n" || return 1
	first=$(ls prof/*.cpu.pb.gz | sort | head -1)
	last=$(ls prof/*.cpu.pb.gz | sort | tail -1)
	[ "$(cprof_value "$first" phase_two)" -eq 0 ] || fail "first dump has phase_two" || return 1
	[ "$(cprof_value "$first" phase_one)" -gt 0 ] || fail "first dump lacks phase_one" || return 1
	[ "$(cprof_value "$last" phase_two)" -gt 0 ] || fail "final dump lacks phase_two" || return 1
}

# Threads created and joined, dlopen/dlclose and C++ exceptions at
# 1000 Hz: no deadlock, no crash, same output; three runs.
test_stress_1000hz() {
	for i in 1 2 3; do
		timeout 60 env CPROF_OUT=prof CPROF_CPU_HZ=1000 LD_PRELOAD="$SHIM" \
			"$PROGS/stress" "$PROGS/libplugin.so" 4 >out 2>err
		local rc=$?
		[ "$rc" -eq 0 ] || fail "run $i: exit status $rc (124 = hung): $(cat err)" || return 1
		grep -q 'stress finished: all loops ran' out || fail "run $i: $(cat out)" || return 1
		[ ! -s err ] || fail "run $i: stderr: $(cat err)" || return 1
	done
	local file
	file=$(profile_of prof cpu)
	pprof_top "$file" | grep -q deep_throw || fail "pprof: no deep_throw frames" || return 1
	# The loops that burn CPU are seen (threads_loop mostly waits in
	# pthread_join: a handful of samples or none, so it proves nothing).
	[ "$(cprof_value "$file" dlopen_loop)" -gt 0 ] || fail "no dlopen_loop samples" || return 1
	[ "$(cprof_value "$file" exceptions_loop)" -gt 0 ] || fail "no exceptions_loop samples" || return 1
}

# Real programs from Debian: same stdout, stderr and exit status with and
# without the shim, including failures.
test_transparent_real_programs() {
	seq 1 20000 | sort -R --random-source=/dev/zero >input
	local cmds=(
		"sort -n input"
		"ls -la /nonexistent-cprof-path"
		"gzip -c -9 input"
		"sh -c 'echo out; echo err >&2; exit 3'"
		"perl -e 'my \$s = 0; \$s += \$_ for 1 .. 3000000; print \"\$s\\n\"; exit 4'"
		"awk 'BEGIN { for (i = 0; i < 300000; i++) s += sin(i); printf \"%.3f\\n\", s }'"
	)
	for c in "${cmds[@]}"; do
		bash -c "$c" >want.out 2>want.err
		local want=$?
		env CPROF_OUT=prof CPROF_CPU_HZ=1000 LD_PRELOAD="$SHIM" bash -c "$c" >got.out 2>got.err
		local got=$?
		[ "$got" -eq "$want" ] || fail "$c: exit $got, want $want" || return 1
		cmp -s want.out got.out || fail "$c: stdout differs" || return 1
		cmp -s want.err got.err || fail "$c: stderr differs: $(head -3 got.err)" || return 1
	done
	# Each program that ran long enough to be sampled wrote its own
	# profile (perl and awk do at 1000 Hz), all readable by both readers.
	for f in prof/*.cpu.pb.gz; do
		"$CPROF" top "$f" >/dev/null || fail "unreadable: $f" || return 1
		pprof_top "$f" >/dev/null || fail "pprof cannot read $f" || return 1
	done
	ls prof | grep -q '^perl\.' || fail "no profile from perl: $(ls prof)" || return 1
	ls prof | grep -q '^awk\.\|^mawk\.' || fail "no profile from awk: $(ls prof)" || return 1
}

# A bad value: one cprof line naming the variable and value, default used.
test_bad_settings_warn_once() {
	local var
	for var in CPROF_CPU_HZ=abc CPROF_CPU_HZ=0 CPROF_MAX_DEPTH=-3 CPROF_SIGNAL=KILL \
		CPROF_PROFILES=cpu,disk CPROF_STACKS=12x; do
		run_profiled prof "$var" -- "$PROGS/cpu_split" 5 >out 2>err || fail "$var: exit $?" || return 1
		local name=${var%%=*} value=${var#*=}
		[ "$(grep -c '^cprof: ' err)" -eq 1 ] || fail "$var: want one cprof line: $(cat err)" || return 1
		grep '^cprof: ' err | grep -q "$name=\"$value\"" || fail "$var: line does not name it: $(cat err)" || return 1
		grep -q '^done' out || fail "$var: program did not finish" || return 1
	done
	# The default was used: 100 Hz gives a 10 ms period.
	run_profiled prof2 CPROF_CPU_HZ=abc -- "$PROGS/cpu_split" 5 >/dev/null 2>&1
	"$CPROF" raw "$(profile_of prof2 cpu)" | grep -q '^Period: 10000000 ' || fail "default 100 Hz not used" || return 1
}

# An unwritable output directory costs one cprof line per dump and the
# dump, never the program.
test_unwritable_directory() {
	"$PROGS/cpu_split" 10 >expected 2>/dev/null
	local want=$?
	run_profiled /proc/cprof-cannot-exist -- "$PROGS/cpu_split" 10 >out 2>err
	local got=$?
	[ "$got" -eq "$want" ] || fail "exit $got, want $want" || return 1
	cmp -s expected out || fail "output differs" || return 1
	[ "$(grep -c '^cprof: ' err)" -eq 1 ] || fail "want one cprof line: $(cat err)" || return 1
	grep -q 'cprof-cannot-exist' err || fail "line does not name the directory" || return 1
	touch afile
	run_profiled "$PWD/afile/sub" -- "$PROGS/cpu_split" 10 >out 2>err
	[ $? -eq "$want" ] && cmp -s expected out || fail "not-a-directory case changed the program" || return 1
	[ "$(grep -c '^cprof: ' err)" -eq 1 ] || fail "not-a-directory: $(cat err)" || return 1
	ls -a . | grep -q '\.tmp$' && fail "temporary file left behind" && return 1
	return 0
}

# File names: one glob per kind, pid and sequence, mode 0600, nothing
# overwritten when a name is already taken.
test_file_names_and_modes() {
	run_profiled prof CPROF_PROFILES=cpu -- "$PROGS/cpu_split" 5 >out 2>/dev/null || return 1
	local f
	f=$(ls prof)
	echo "$f" | grep -qE '^cpu_split\.[0-9]+\.0000\.cpu\.pb\.gz$' || fail "name: $f" || return 1
	[ "$(stat -c %a "prof/$f")" = 600 ] || fail "mode $(stat -c %a "prof/$f")" || return 1
	gzip -t "prof/$f" || fail "not gzip" || return 1
	ls -a prof | grep -q tmp && fail "temporary file left" && return 1
	return 0
}

# A process too short to be sampled leaves no empty file at exit; an
# explicit dump always writes, even with nothing in it.
test_short_process_leaves_no_empty_files() {
	# 1 Hz: /bin/true's half millisecond of CPU has a 1 in 2000 chance of
	# the sample it would have (an expiry inside its CPU time, counted at
	# exit); at 100 Hz, 1 in 20.
	run_profiled prof CPROF_PROFILES=cpu CPROF_CPU_HZ=1 -- /bin/true || fail "exit $?" || return 1
	[ -z "$(ls -A prof 2>/dev/null)" ] || fail "files left by /bin/true: $(ls -A prof)" || return 1
	run_profiled prof2 CPROF_PROFILES=cpu CPROF_CPU_HZ=1 -- "$PROGS/api_dump" >/dev/null 2>&1
	local n
	n=$(ls prof2/*.cpu.pb.gz 2>/dev/null | wc -l)
	[ "$n" -ge 1 ] || fail "cprof_dump() wrote nothing" || return 1
	"$CPROF" raw "$(ls prof2/*.cpu.pb.gz | head -1)" >/dev/null || fail "empty dump unreadable" || return 1
	pprof_top "$(ls prof2/*.cpu.pb.gz | head -1)" >/dev/null || fail "pprof: empty dump unreadable" || return 1
}

# A stack table too small for the program: the events still count, under
# [cprof: dropped], and the total still matches an unconstrained run's
# order of magnitude; nothing crashes.
test_full_table_counts_dropped() {
	run_profiled prof CPROF_STACKS=256 CPROF_CPU_HZ=1000 -- \
		"$PROGS/many_stacks" 30 >out 2>err || fail "exit $?: $(cat err)" || return 1
	run_profiled big CPROF_CPU_HZ=1000 -- "$PROGS/many_stacks" 30 >/dev/null 2>&1
	local file dropped total big_total
	file=$(profile_of prof cpu)
	dropped=$(cprof_value "$file" "[cprof: dropped]" flat)
	total=$(cprof_total "$file")
	big_total=$(cprof_total "$(profile_of big cpu)")
	echo "dropped $dropped ns of $total ns; with a large table $big_total ns"
	[ "$dropped" -gt 0 ] || fail "no [cprof: dropped] samples with a 256-stack table" || return 1
	within "$total" "$big_total" 15 || fail "total $total far from $big_total" || return 1
	pprof_top "$file" | grep -q 'cprof: dropped' || fail "pprof does not show the dropped samples" || return 1
	[ ! -s err ] || fail "stderr: $(cat err)" || return 1
}

# A daemon that closes every descriptor it did not open still gets its
# dumps on the signal, and nothing lands in the files it opens afterwards.
test_dump_signal_after_closefrom() {
	run_profiled prof -- "$PROGS/closefrom_dump" "$PWD/data" >out 2>err || fail "exit $?: $(cat err)" || return 1
	[ "$(cat data)" = "only this" ] || fail "the program's file holds: $(od -c data | head -3)" || return 1
	local n
	n=$(ls prof/*.cpu.pb.gz | wc -l)
	[ "$n" -eq 4 ] || fail "want 3 signal dumps + the final one, got $n" || return 1
	[ ! -s err ] || fail "stderr: $(cat err)" || return 1
}

# The process-wide fallback (CPROF_CPU_TIMER=process, also used where
# per-thread timers cannot be had) still gives a whole, readable profile.
test_cpu_process_timer_fallback() {
	run_profiled prof CPROF_CPU_TIMER=process -- "$PROGS/cpu_split" 100 >out 2>err || fail "exit $?" || return 1
	local file truth total heavy light
	file=$(profile_of prof cpu)
	truth=$(sed -n 's/^rusage_cpu_ns //p' err)
	total=$(cprof_total "$file" cpu)
	heavy=$(cprof_value "$file" work_heavy)
	light=$(cprof_value "$file" work_light)
	echo "process timer: total $total ns vs rusage $truth; heavy $heavy light $light"
	within "$total" "$truth" 10 || fail "total $total vs $truth" || return 1
	[ "$heavy" -gt "$light" ] && [ "$light" -gt 0 ] || fail "split lost" || return 1
	[ "$(grep -c '^cprof: ' err)" -eq 0 ] || fail "stderr: $(cat err)" || return 1
	pprof_top "$file" | grep -q work_heavy || fail "pprof: no work_heavy" || return 1
}


# A full disk costs one cprof line and that dump, never the program.
test_full_disk() {
	mkdir -p tiny
	if ! mount -t tmpfs -o size=4k tmpfs tiny 2>/dev/null; then
		fail "cannot mount a tmpfs here (needs root): not tested"
		return 1
	fi
	head -c 4096 /dev/zero >tiny/filler 2>/dev/null
	"$PROGS/cpu_split" 20 >expected 2>/dev/null
	run_profiled "$PWD/tiny" -- "$PROGS/cpu_split" 20 >out 2>err
	local rc=$?
	ls -a tiny >listing
	umount tiny
	[ "$rc" -eq 0 ] || fail "exit $rc" || return 1
	cmp -s expected out || fail "output differs" || return 1
	[ "$(grep -c '^cprof: ' err)" -eq 1 ] || fail "want one cprof line: $(cat err)" || return 1
	grep -q 'No space left' err || fail "line does not say why: $(cat err)" || return 1
	grep -q '\.tmp$' listing && fail "temporary file left behind" && return 1
	return 0
}

# Threads that end between two scheduler ticks: the periods of their CPU
# timer that expired after the last tick that found them running are never
# signalled (100 threads of 3 ms read back as 1.16 s of 3 s... 116 ms of
# 300, and 100 of 10 ms as 808 ms of 1000, before the tail was counted).
# Now each thread's own CPU clock settles its count when its timer is
# deleted: the profile's total is the threads' CPU time within 5% (1000
# Hz), the 10 ms threads' time on short_work itself (they are sampled),
# the rest of what no signal reached under [cprof: unsampled tail].
test_cpu_short_threads_tail() {
	local burn truth total work count tolerance
	# 300 us threads end before their first expiry 7 times in 10: their
	# tail is settled without a read of their CPU clock (the wall clock
	# bounds it); 6000 of them are 1800 periods, 2.4% sampling error, and
	# the threads' exit paths, which the truth leaves out, add 6-7%.
	for burn in 10000000 3000000 300000; do
		count=100 tolerance=5
		[ "$burn" -eq 300000 ] && count=6000 tolerance=15
		run_profiled "prof_$burn" CPROF_PROFILES=cpu CPROF_CPU_HZ=1000 -- \
			"$PROGS/short_threads" "$count" "$burn" >"out_$burn" 2>"err_$burn" ||
			fail "exit $?" || return 1
		local file
		file=$(profile_of "prof_$burn" cpu)
		truth=$(sed -n 's/^truth_ns //p' "err_$burn")
		total=$(cprof_total "$file" cpu)
		work=$(cprof_value "$file" short_work cum cpu)
		echo "$count threads x $burn ns: profile $total ns (short_work $work), truth $truth ns"
		within "$total" "$truth" "$tolerance" || fail "$burn: total $total ns vs $truth" || return 1
		if [ "$burn" -eq 10000000 ]; then
			within "$work" "$truth" 10 || fail "short_work $work ns vs $truth" || return 1
		fi
		local p
		p=$(pprof_total_ns "$file")
		within "${p%.*}" "$truth" "$tolerance" || fail "pprof total $p vs $truth" || return 1
	done
}
