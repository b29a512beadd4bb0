# End-to-end tests of what the shim must never do to a program's files
# and lifetime (issue 8, items 1-3, 7, 8, 10, 12): touch or hold a
# descriptor the program can see, close or reuse; let dump requests pile
# up or make fork wait; keep a process alive; write a profile another user
# can own; let its own I/O pass through the program's definitions. Every
# run has the CPU profile at 1000 Hz and every kind on. Sourced by
# tests/run.sh.

# wait_caught PID SIGNUM: until PID catches SIGNUM (the shim's handler is
# in place), at most 2 s.
wait_caught() {
	local i mask
	for i in $(seq 1000); do
		mask=$(sed -n 's/^SigCgt:\t//p' "/proc/$1/status" 2>/dev/null) || return 1
		[ -n "$mask" ] && (( (0x$mask >> ($2 - 1)) & 1 )) && return 0
		sleep 0.002
	done
	return 1
}

# usr2_every PID SECONDS: the dump signal to PID every SECONDS until it
# ends; prints how many were sent.
usr2_every() {
	local n=0
	wait_caught "$1" 12
	while kill -USR2 "$1" 2>/dev/null; do
		n=$((n + 1))
		sleep "$2"
	done
	echo "$n"
}

# elapsed START: seconds since START (an $EPOCHREALTIME).
elapsed() {
	awk -v s="$1" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.3f", e - s }'
}

# Item 1. A daemon's files on 3 and 4 while samples land in the vDSO and in
# code with no unwind information: libunwind 1.6's memory check read a
# byte of the input and wrote into the output through its pipe, on those
# numbers, and reopened "its" pipe over them. strace counts every read and
# one-byte write on 4 and read on 3 by any thread but the dumper (whose
# private table has numbers of its own): exactly the program's, one per
# byte and one EOF.
test_fd_daemon_unwind_touches_no_descriptor() {
	head -c 3000 /dev/urandom | base64 -w 60 >input
	local size
	size=$(stat -c %s input)
	run_profiled prof CPROF_CPU_HZ=1000 -- "$PROGS/fd_daemon" input output 1.5 >out 2>err ||
		fail "exit $?: $(cat err)" || return 1
	cmp -s input output || fail "the output is not the input: $(cmp input output)" || return 1
	[ ! -s err ] || fail "stderr: $(cat err)" || return 1
	local file total truth
	file=$(profile_of prof cpu)
	total=$(cprof_total "$file" cpu)
	truth=$(sed -n 's/^cpu_ns //p' out)
	"$CPROF" raw "$file" >raw || fail "cprof raw failed" || return 1
	echo "cpu total $total ns, getrusage $truth ns; vdso mapping: $(grep -c vdso raw)"
	within "$total" "$truth" 15 || fail "cpu total $total ns against $truth ns by getrusage" || return 1
	grep -q '\[vdso\]' raw || fail "no sample in the vDSO" || return 1
	pprof_top "$file" | grep -q worker || fail "pprof: no worker" || return 1

	profiled_argv prof2 CPROF_CPU_HZ=1000 -- "$PROGS/fd_daemon" input output 1.5
	# -ff: one file per thread, so no call is split by another's.
	strace -ff -qq -e trace=read,write,unshare -e signal=none -o trace \
		env "${PROFILED[@]}" >out 2>err || fail "under strace: exit $?: $(cat err)" || return 1
	cmp -s input output || fail "under strace: the output is not the input" || return 1
	local dumper reads writes
	dumper=$(grep -l 'unshare(CLONE_FILES)' trace.* | head -1)
	[ -n "$dumper" ] || fail "no thread unshared its descriptors" || return 1
	# One-byte calls: the program's and libunwind's (the loader reads
	# each library's ELF header on 3 at start-up, 832 bytes).
	reads=$(ls trace.* | grep -vx "$dumper" | xargs cat | grep -c '^read(3, .*, 1) *= ')
	writes=$(ls trace.* | grep -vx "$dumper" | xargs cat | grep -c '^write(4, .*, 1) *= ')
	echo "input $size bytes: reads on 3: $reads, writes on 4: $writes"
	[ "$reads" -eq $((size + 1)) ] || fail "$reads reads of fd 3, the program made $((size + 1))" || return 1
	[ "$writes" -eq "$size" ] || fail "$writes writes to fd 4, the program made $size" || return 1
}

# Item 2. The descriptors a program sees are its own: the listing is the
# unprofiled one at start-up, after a dump, in a forked child and after
# exec.
check_fd_listing() {
	"$@" >listing 2>&1 || fail "unprofiled: exit $?" || return 1
	mv listing expected
	run_profiled prof CPROF_CPU_HZ=1000 -- "$@" >listing 2>&1 || fail "exit $?: $(cat listing)" || return 1
	diff expected listing || fail "the profiled program sees other descriptors" || return 1
	echo "listing: $(tr '\n' ' ' <listing)"
}

test_fd_listing_at_start() { check_fd_listing ls /proc/self/fd; }
test_fd_listing_after_dump() {
	check_fd_listing "$PROGS/fd_list" now || return 1
	[ -n "$(profile_of prof cpu)" ] || fail "no dump was written" || return 1
}
test_fd_listing_in_fork_child() {
	check_fd_listing "$PROGS/fd_list" fork || return 1
	[ "$(ls prof/fd_list.*.0000.cpu.pb.gz | wc -l)" -eq 2 ] ||
		fail "want a dump from parent and child: $(ls prof)" || return 1
}
test_fd_listing_after_exec() { check_fd_listing "$PROGS/fd_list" exec; }

# Item 3. A daemon that closes every descriptor above 2 and rewrites a
# file 300 times, while dumps are asked for every 3 ms: every file whole,
# the run about as fast as unprofiled, a bounded number of files (dump
# requests coalesce).
test_fd_rewrite_under_dumps() {
	mkdir -p data
	local t0 base
	t0=$EPOCHREALTIME
	"$PROGS/fd_rewrite" data 300 >expected || fail "unprofiled: exit $?" || return 1
	base=$(elapsed "$t0")
	t0=$EPOCHREALTIME
	(start_profiled prof CPROF_CPU_HZ=1000 -- "$PROGS/fd_rewrite" data 300 >out 2>err) &
	local pid=$!
	usr2_every "$pid" 0.003 >signals &
	wait "$pid"
	local rc=$? took
	took=$(elapsed "$t0")
	wait
	local files signals
	files=$(ls prof | wc -l)
	signals=$(cat signals)
	echo "unprofiled ${base}s, profiled ${took}s, $signals signals, $files profile files: $(cat out)"
	[ "$rc" -eq 0 ] || fail "exit $rc: $(cat out) $(cat err)" || return 1
	cmp -s expected out || fail "files differ: $(cat out)" || return 1
	[ ! -s err ] || fail "stderr: $(cat err)" || return 1
	awk -v t="$took" -v b="$base" 'BEGIN { exit !(t < 10 * b || t < 10) }' ||
		fail "${took}s against ${base}s unprofiled" || return 1
	[ "$files" -le $((4 * (signals + 1))) ] || fail "$files files for $signals signals" || return 1
	pprof_top "$(profile_of prof cpu)" >/dev/null || fail "pprof cannot read the last dump" || return 1
}

# Item 3, the dumper's log line: it reaches the program's stderr though
# the dumper has no descriptor of the program's, and a reader of that
# stderr sees EOF as soon as the program closes it.
test_stderr_eof_after_close() {
	local before
	env CPROF_OUT=/proc/cprof-none CPROF_CPU_HZ=1000 LD_PRELOAD="$SHIM" \
		"$PROGS/stderr_close" 3 2>&1 >/dev/null | { cat >err; echo "$EPOCHREALTIME" >eof_at; }
	# The program sleeps 3 s after the close: EOF comes that long before
	# the pipeline ends.
	before=$(awk -v s="$(cat eof_at)" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.3f", e - s }')
	echo "EOF ${before}s before the program ended; stderr: $(cat err)"
	grep -q '^cprof: cannot create the profile directory /proc/cprof-none' err ||
		fail "the dumper's line did not reach stderr" || return 1
	awk -v b="$before" 'BEGIN { exit !(b > 2) }' || fail "EOF only ${before}s before the end" || return 1
}

# Item 7. Dumps asked for every 2 ms while the program forks 300 short
# children: fork never waits for a dump, requests coalesce, and no child
# inherits a pending request (children record nothing, so they write no
# file at all).
test_fork_under_dumps() {
	local t0 base
	t0=$EPOCHREALTIME
	"$PROGS/fork_many" 300 >expected || fail "unprofiled: exit $?" || return 1
	base=$(elapsed "$t0")
	t0=$EPOCHREALTIME
	(start_profiled prof CPROF_CPU_HZ=100 -- "$PROGS/fork_many" 300 >out 2>err) &
	local pid=$!
	usr2_every "$pid" 0.002 >signals &
	wait "$pid"
	local rc=$? took
	took=$(elapsed "$t0")
	wait
	local files signals others
	files=$(ls prof | wc -l)
	signals=$(cat signals)
	others=$(ls prof | grep -vc "^fork_many\.$pid\.")
	echo "unprofiled ${base}s, profiled ${took}s, $signals signals, $files files ($others not the parent's)"
	[ "$rc" -eq 0 ] || fail "exit $rc: $(cat out) $(cat err)" || return 1
	cmp -s expected out || fail "output: $(cat out)" || return 1
	[ ! -s err ] || fail "stderr: $(cat err)" || return 1
	awk -v t="$took" -v b="$base" 'BEGIN { exit !(t < 10 * b || t < 10) }' ||
		fail "${took}s against ${base}s unprofiled" || return 1
	# A child writes a profile only of its own samples, at its exit (a
	# child that used a millisecond of CPU may have one: that is its
	# truth, its CPU timer's tail), never a dump its parent was asked for:
	# so at most one dump (sequence 0000) per child, and from few children.
	# An inherited request made nearly every child dump, some twice. At
	# 100 Hz a child of 1 ms has a 1 in 10 chance of a tail; at 1000 Hz a
	# loaded machine made every child's 1 ms worth one (300 of 300).
	local child_pids child_seqs
	child_pids=$(ls prof | grep -v "^fork_many\.$pid\." | cut -d. -f2 | sort -u | wc -l)
	child_seqs=$(ls prof | grep -v "^fork_many\.$pid\." | cut -d. -f3 | sort -u | tr '\n' ' ')
	echo "children that wrote a profile: $child_pids, sequence numbers: ${child_seqs:-none}"
	[ "$child_pids" -le 100 ] || fail "$child_pids of 300 children wrote profiles" || return 1
	[ -z "$child_seqs" ] || [ "$child_seqs" = "0000 " ] ||
		fail "a child wrote more than its final dump: sequences $child_seqs" || return 1
	[ "$files" -le $((4 * (signals + 1))) ] || fail "$files files for $signals signals" || return 1
	pprof_top "$(profile_of prof cpu)" >/dev/null || fail "pprof cannot read the last dump" || return 1
}

# Item 8. main calls pthread_exit; the process ends when its last worker
# does, with glibc's exit(0) (stdio flushed), and the final dump written.
check_main_pthread_exit() {
	local want=$1
	shift
	"$PROGS/main_pthread_exit" "$@" >expected
	local want_rc=$?
	[ "$want_rc" -eq "$want" ] || fail "unprofiled exit $want_rc" || return 1
	local t0 took
	t0=$EPOCHREALTIME
	timeout -s KILL 60 env CPROF_OUT=prof CPROF_CPU_HZ=1000 LD_PRELOAD="$SHIM" \
		"$PROGS/main_pthread_exit" "$@" >out 2>err
	local rc=$?
	took=$(elapsed "$t0")
	echo "exit $rc after ${took}s (unprofiled $want_rc)"
	[ "$rc" -eq "$want" ] || fail "exit status $rc, want $want (137: still alive after 60 s)" || return 1
	cmp -s expected out || fail "output: $(cat out)" || return 1
	[ ! -s err ] || fail "stderr: $(cat err)" || return 1
	local file spin
	file=$(profile_of prof cpu)
	[ -n "$file" ] || fail "no final profile" || return 1
	spin=$(cprof_value "$file" worker_spin)
	echo "worker_spin: $spin ns"
	[ "$spin" -gt 700000000 ] || fail "worker_spin $spin ns for 1 s of CPU (two workers, 0.5 s each)" || return 1
	pprof_top "$file" | grep -q worker_spin || fail "pprof: no worker_spin" || return 1
}

test_main_pthread_exit_ends() { check_main_pthread_exit 0; }
test_main_pthread_exit_worker_exit3() { check_main_pthread_exit 3 exit3; }

# Item 10. CPROF_OUT is a shared sticky directory where another user made
# the temporary names it could guess (for this very pid) as its own
# world-writable files: the profiles are still root's, mode 0600.
test_profile_owned_in_shared_dir() {
	[ "$(id -u)" -eq 0 ] || { echo "skipped: needs root"; return 0; }
	mkdir -m 1777 shared
	SHIM="$SHIM" PROG="$PROGS/cpu_split" sh -c '
		for k in cpu heap mutex block; do
			setpriv --reuid=nobody --regid=nogroup --clear-groups \
				sh -c "umask 0; : >shared/.cpu_split.$$.$k.tmp" || exit 9
		done
		exec env CPROF_OUT="$PWD/shared" CPROF_CPU_HZ=1000 LD_PRELOAD="$SHIM" "$PROG" 20' \
		>out 2>err || fail "exit $?: $(cat err)" || return 1
	ls -la shared
	local n=0 f
	for f in shared/cpu_split.*.pb.gz; do
		[ -e "$f" ] || continue
		n=$((n + 1))
		[ "$(stat -c '%U %a' "$f")" = "root 600" ] ||
			fail "$f is $(stat -c '%U %a' "$f")" || return 1
		"$CPROF" raw "$f" >/dev/null || fail "cprof cannot read $f" || return 1
	done
	[ "$n" -ge 1 ] || fail "no profile written" || return 1
	pprof_top "$(profile_of shared cpu)" | grep -q work_heavy || fail "pprof: no work_heavy" || return 1
	[ -z "$(find shared -name '.*' -user root)" ] || fail "a temporary was left behind" || return 1
}

# Item 12. The shim's own I/O goes below its wrappers and the program's
# definitions: a program with its own write() and open() sees none of the
# shim's log line or the dump's writes and opens.
test_own_io_below_program_definitions() {
	run_profiled "$PWD/prof" CPROF_CPU_HZ=bad -- "$PROGS/own_write" >out 2>err || fail "exit $?: $(cat err)" || return 1
	echo "$(cat out); stderr: $(cat err)"
	grep -q '^dump 0 ' out || fail "the dump failed: $(cat out)" || return 1
	grep -q '^cprof: CPROF_CPU_HZ="bad"' err || fail "no warning line" || return 1
	grep -q ' own writes 0 profile opens 0 ' out || fail "the program's write/open saw the shim's: $(cat out)" || return 1
	[ -z "$(grep '^own ' err)" ] || fail "$(grep '^own ' err | head -3)" || return 1
	pprof_top "$(profile_of prof cpu)" | grep -q ' main$' || fail "pprof: no main" || return 1
}

# CPROF_DUMP_INTERVAL and CPROF_KEEP: a 0.6 s run (two threads burning
# 0.6 s of CPU each) with dumps every 200 ms writes at least 3 dumps
# without CPROF_KEEP; with CPROF_KEEP=2 only the files of its 2 newest
# dumps are left (the final one among them, which leaves out kinds that
# recorded nothing); pprof -base of the two reads them. Bad values cost
# one cprof line each.
test_periodic_dumps_and_keep() {
	run_profiled all CPROF_DUMP_INTERVAL=200ms CPROF_PROFILES=cpu,heap -- \
		"$PROGS/labels" split >/dev/null 2>err_all || fail "exit $?" || return 1
	local seqs_all
	seqs_all=$(ls all | cut -d. -f3 | sort -u | wc -l)
	echo "without CPROF_KEEP: $seqs_all dumps: $(ls all | tr '\n' ' ')"
	[ "$seqs_all" -ge 3 ] || fail "only $seqs_all dumps in a 0.6 s run at 200 ms" || return 1
	! grep -q '^cprof' err_all || fail "stderr: $(cat err_all)" || return 1

	run_profiled kept CPROF_DUMP_INTERVAL=200ms CPROF_KEEP=2 CPROF_PROFILES=cpu,heap -- \
		"$PROGS/labels" split >/dev/null 2>err_kept || fail "exit $?" || return 1
	local seqs last count
	seqs=$(ls kept | cut -d. -f3 | sort -u | tr '\n' ' ')
	count=$(ls kept | cut -d. -f3 | sort -u | wc -l)
	echo "CPROF_KEEP=2: $(ls kept | tr '\n' ' ')"
	[ "$count" -eq 2 ] || fail "kept dumps: $seqs" || return 1
	[ "$(ls kept/*.cpu.pb.gz | wc -l)" -eq 2 ] || fail "want the cpu file of each: $(ls kept)" || return 1
	last=$(ls kept | cut -d. -f3 | sort -u | tail -1)
	[ "$((10#$last))" -ge 2 ] || fail "the newest kept is $last: older dumps were kept instead" ||
		return 1
	local older newer
	older=$(ls kept/*.cpu.pb.gz | head -1)
	newer=$(ls kept/*.cpu.pb.gz | tail -1)
	go tool pprof -top -base "$older" "$newer" >base.out 2>base.err ||
		fail "pprof -base: $(cat base.err)" || return 1
	"$CPROF" diff --max-total-growth off "$older" "$newer" >/dev/null
	[ $? -le 1 ] || fail "cprof diff cannot read the kept dumps" || return 1

	local bad
	for bad in "CPROF_DUMP_INTERVAL=5x" "CPROF_DUMP_INTERVAL=10ms" "CPROF_KEEP=-1"; do
		run_profiled bad "$bad" -- true 2>bad.err || fail "$bad: exit $?" || return 1
		[ "$(grep -c '^cprof: ' bad.err)" -eq 1 ] || fail "$bad: $(cat bad.err)" || return 1
	done
}
