# End-to-end tests of the shim on programs that push at its limits
# (issue 8, items 6, 9, 11 and 13): small signal stacks and small thread
# stacks, thousands of threads, a first libc call inside a signal
# handler, and the loader's locks against the program's own. Sourced by
# tests/run.sh; each test_* runs in its own empty directory.

# same_as_unprofiled NAME ENV... -- CMD ARGS: runs CMD without the shim and
# then under it with the settings, into prof.NAME/; fails unless the exit
# status and stdout are the same (timeout 60 s each).
same_as_unprofiled() {
	local name=$1
	shift
	local settings=()
	while [ "$1" != "--" ]; do
		settings+=("$1")
		shift
	done
	shift
	timeout 60 "$@" >"want.$name" 2>/dev/null
	local want=$?
	profiled_argv "prof.$name" "${settings[@]}" -- "$@"
	timeout 60 env "${PROFILED[@]}" >"got.$name" 2>"err.$name"
	local got=$?
	[ "$got" -eq "$want" ] || fail "$name: exit $got, want $want ($(head -2 "err.$name"))" || return 1
	cmp -s "want.$name" "got.$name" || fail "$name: stdout differs: $(head -2 "got.$name")" || return 1
}

# has_no_room FILE [SAMPLE_TYPE]: the profile, read by both readers,
# charges something to [cprof: no stack room].
has_no_room() {
	local file=$1 type=${2:-}
	local v
	v=$(cprof_value "$file" "[cprof: no stack room]" cum "$type")
	[ "$v" -gt 0 ] || fail "$file: nothing under [cprof: no stack room]" || return 1
	local args=()
	[ -n "$type" ] && args+=(-sample_index="$type")
	pprof_top "$file" "${args[@]}" | grep -q 'no stack room' ||
		fail "pprof: no [cprof: no stack room] in $file" || return 1
}

# Item 6. A runtime-style SIGSEGV handler on a small alternate stack,
# recovering from a guard page 2000 times while it burns CPU, with the CPU
# timer at 1000 Hz: 8 KiB (crashed 3 of 3 before: the handler's frames and
# libunwind's on top of a second signal frame), and the kernel's minimum
# signal frame plus 2 KiB (crashed 3 of 3: the timer's signal frame alone
# does not fit there), leaving by siglongjmp and by returning. Same status
# and output as unprofiled in every run; the CPU time spent while the
# stack was too small is in the profile, under [cprof: no stack room].
test_robust_small_alternate_stack() {
	local size mode run
	for size in 8192 min; do
		for mode in longjmp return; do
			for run in 1 2 3; do
				same_as_unprofiled "$size.$mode.$run" CPROF_CPU_HZ=1000 -- \
					"$PROGS/altstack_guard" "$size" 2000 20000 "$mode" || return 1
			done
		done
		local file
		file=$(profile_of "prof.$size.longjmp.1" cpu)
		[ -n "$file" ] || fail "$size: no cpu profile" || return 1
		has_no_room "$file" || return 1
		echo "alternate stack $size: $(cprof_value "$file" "[cprof: no stack room]" cum cpu) ns under no stack room, of $(cprof_total "$file" cpu) ns"
	done
}

# Item 6. Threads on PTHREAD_STACK_MIN stacks that use all but 5 KiB of
# them and then malloc, lock a contended mutex, sleep and write, with
# every kind recording every event: crashed 3 of 3 before (an unwind there
# needs up to 6.5 KiB, tests/unit/test_unwind.c). Same status and output
# in 3 runs, and every kind counts its events under [cprof: no stack room].
test_robust_small_thread_stacks() {
	local run
	for run in 1 2 3; do
		same_as_unprofiled "$run" CPROF_CPU_HZ=1000 CPROF_HEAP_RATE=1 CPROF_MUTEX_FRACTION=1 \
			CPROF_BLOCK_RATE=1 -- "$PROGS/small_stacks" 8 2000 || return 1
	done
	has_no_room "$(profile_of prof.1 cpu)" || return 1
	has_no_room "$(profile_of prof.1 heap)" alloc_objects || return 1
	has_no_room "$(profile_of prof.1 mutex)" || return 1
	has_no_room "$(profile_of prof.1 block)" || return 1
}

# Item 9. A thread-per-connection server: 10,000 threads alive at once on
# 64 KiB stacks, each mallocing and locking a contended mutex. What the
# shim adds to VmRSS must stay within the README's bound, whatever the
# thread count: CPROF_UNWIND_CACHES (64) trace caches of 256 KiB, at most
# 3 pages (12 KiB) of each thread's own stack that an unwind touches (8 KiB
# bound on unwind stack use, tests/unit/test_unwind.c), and 20 MiB for the
# tables and the dumper. Before: +2.2 GB (a trace cache in every thread).
# The 1,809 threads beyond the 8,192 CPU timers are counted in the CPU
# profile's comment.
test_robust_thread_count_memory() {
	local threads=10000
	"$PROGS/many_threads" $threads >want 2>want.err || fail "unprofiled run failed" || return 1
	local base
	base=$(sed -n 's/^rss_kb //p' want.err)
	run_profiled prof CPROF_CPU_HZ=1000 -- "$PROGS/many_threads" $threads >got 2>err ||
		fail "profiled run: exit $?: $(head -3 err)" || return 1
	cmp -s want got || fail "stdout differs" || return 1
	local rss bound
	rss=$(sed -n 's/^rss_kb //p' err)
	bound=$((64 * 256 + threads * 12 + 20 * 1024))
	echo "VmRSS with $threads threads: unprofiled $base kB, profiled $rss kB (+$((rss - base)) kB, bound +$bound kB)"
	[ $((rss - base)) -le $bound ] || fail "VmRSS grew by $((rss - base)) kB, bound $bound kB" || return 1
	local file
	file=$(profile_of prof cpu)
	[ -n "$file" ] || fail "no cpu profile" || return 1
	pprof_top "$file" >/dev/null || fail "pprof cannot read $file" || return 1
	local unsampled
	unsampled=$("$CPROF" raw "$file" | sed -n 's/.*threads_not_sampled=\([0-9]*\).*/\1/p' | head -1)
	echo "threads not sampled: ${unsampled:-none}"
	# main + 10,000 alive at once, 8,192 timers.
	[ "${unsampled:-0}" -ge $((threads + 1 - 8192)) ] ||
		fail "threads_not_sampled=${unsampled:-missing}, want >= $((threads + 1 - 8192))" || return 1
	[ "$unsampled" -le $((threads + 1 - 8192 + 16)) ] ||
		fail "threads_not_sampled=$unsampled, too many" || return 1
}

# Item 11. The program's first write() and first sigsuspend() are made in
# its own signal handler. The loader must not run there on the shim's
# behalf: LD_DEBUG=bindings, whose lines go to the same stderr in order
# with the program's markers, shows no lookup made by libcprof between
# the handler's start and end (before: dlsym bound write and sigsuspend
# there). The program's own lazy bindings are its own, with or without the
# shim.
test_robust_no_loader_in_handler() {
	same_as_unprofiled first CPROF_SIGNAL=none -- "$PROGS/handler_first_calls" || return 1
	env CPROF_OUT=prof LD_DEBUG=bindings LD_PRELOAD="$SHIM" "$PROGS/handler_first_calls" \
		>out 2>err || fail "exit $?" || return 1
	sed -n '/MARK handler-start/,/MARK handler-end/p' err >inside
	grep -q 'MARK handler-end' inside || fail "no handler markers in stderr" || return 1
	# The check can fail: libcprof's lookups are there, before main.
	grep -q "binding file $SHIM \[0\] to .*: normal symbol \`write'" err ||
		fail "LD_DEBUG shows no lookup of write by libcprof at all" || return 1
	if grep "binding file $SHIM " inside >shim_lookups; then
		fail "the loader ran for libcprof inside the handler: $(head -2 shim_lookups)" || return 1
	fi
}

# Item 13. Threads lock a program mutex M (contended, so the mutex
# profile records at unlock, CPROF_MUTEX_FRACTION=1) and malloc while
# they hold it (CPROF_HEAP_RATE=1); the main thread dlopens a library whose
# constructor locks M and walks dl_iterate_phdr with a callback that locks
# M. Before, the wrappers' unwinds took the loader's lock while M was held:
# 2 of 4 runs hung. 4 runs must each end within 60 s, with the output of
# the unprofiled run, and the profiles show the contention and the
# allocations under M.
test_robust_loader_lock_order() {
	local run
	for run in 1 2 3 4; do
		same_as_unprofiled "$run" CPROF_CPU_HZ=1000 CPROF_MUTEX_FRACTION=1 CPROF_HEAP_RATE=1 -- \
			"$PROGS/loader_order" "$PROGS/libplugin_ctorlock.so" 5000 || return 1
	done
	local mutex heap
	mutex=$(profile_of prof.1 mutex)
	heap=$(profile_of prof.1 heap)
	[ "$(cprof_value "$mutex" hold_and_allocate)" -gt 0 ] ||
		fail "no contention charged to hold_and_allocate" || return 1
	[ "$(cprof_value "$heap" hold_and_allocate cum alloc_objects)" -gt 0 ] ||
		fail "no allocations in hold_and_allocate" || return 1
	pprof_top "$mutex" | grep -q hold_and_allocate || fail "pprof: no hold_and_allocate" || return 1
}
