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
	local file total
	file=$(profile_of prof cpu)
	total=$(cprof_total "$file" cpu)
	"$CPROF" raw "$file" >raw || fail "cprof raw failed" || return 1
	echo "cpu total $total ns; vdso mapping: $(grep -c vdso raw)"
	[ "$total" -gt 1000000000 ] || fail "cpu total $total ns for 4 busy threads" || return 1
	grep -q '\[vdso\]' raw || fail "no sample in the vDSO" || return 1
	pprof_top "$file" | grep -q worker || fail "pprof: no worker" || return 1

	profiled_argv prof2 CPROF_CPU_HZ=1000 -- "$PROGS/fd_daemon" input output 1.5
	strace -f -qq -e trace=read,write,unshare -e signal=none -o trace \
		env "${PROFILED[@]}" >out 2>err || fail "under strace: exit $?: $(cat err)" || return 1
	cmp -s input output || fail "under strace: the output is not the input" || return 1
	local dumper reads writes
	dumper=$(awk '/unshare\(CLONE_FILES\)/ { print $1; exit }' trace)
	# One-byte calls: the program's and libunwind's (the loader reads
	# each library's ELF header on 3 at start-up, 832 bytes).
	reads=$(awk -v d="$dumper" '$1 != d && $2 ~ /^read\(3,/ && /, 1\) += /' trace | wc -l)
	writes=$(awk -v d="$dumper" '$1 != d && $2 ~ /^write\(4,/ && /, 1\) += /' trace | wc -l)
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

