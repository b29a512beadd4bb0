# tests/e2e/lazy.sh — a program that never makes a thread stays
# single-threaded under the shim (no dumper thread until its first
# pthread_create), and every dump still comes: the dump signal, SIGTERM,
# cprof_dump(), fork, exit. Sourced by tests/run.sh.

# lazy_status_field PID FIELD: a field of /proc/PID/status ("Threads").
lazy_status_field() {
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# Every profile on, CPU at 1000 Hz: one thread (status, task list), and
# glibc's single-thread flag still set, which is what keeps its lock and
# system-call shortcuts (3.5 ns an uncontended lock pair, against 11.7 ns
# once a second thread has existed).
test_lazy_single_threaded() {
	"$PROGS/lazy_single" status "$PWD/prof0" >expected 2>err0 || fail "without shim: $?" || return 1
	run_profiled prof CPROF_PROFILES=cpu,heap,mutex,block CPROF_CPU_HZ=1000 \
		CPROF_HEAP_RATE=1 -- "$PROGS/lazy_single" status "$PWD/prof" >out 2>err ||
		fail "exit $?: $(cat err)" || return 1
	cat out
	cmp -s expected out || fail "want the unprofiled run's: $(cat expected)" || return 1
	[ ! -s err ] || fail "stderr: $(cat err)" || return 1
	local file
	file=$(profile_of prof cpu)
	[ -n "$file" ] || fail "no exit dump" || return 1
	[ "$(cprof_value "$file" phase_one)" -gt 0 ] || fail "cpu: no phase_one" || return 1
	pprof_top "$file" | grep -q phase_one || fail "pprof: no phase_one" || return 1
	file=$(profile_of prof heap)
	[ -n "$file" ] && [ "$(cprof_value "$file" main cum alloc_objects)" -ge 1000 ] ||
		fail "heap: want >= 1000 allocations in main" || return 1
}

# Python 3.12 and later warn on os.fork() in a process with more than one
# thread ("DeprecationWarning: This process (pid=N) is multi-threaded, use
# of fork() may lead to deadlocks in the child"), which they count from the
# 20th field of /proc/self/stat. The newest python3 found (a pyenv one when
# PATH's is older) runs the script directly, not through a wrapper script;
# with a python older than 3.12 only the field is checked.
lazy_newest_python() {
	local c exe best="" root
	root=$(pyenv root 2>/dev/null)
	for c in python3.13 python3.12 "$root"/versions/3.1[2-9]*/bin/python3 python3; do
		exe=$("$c" -c 'import sys; print(sys.executable if sys.version_info >= (3, 12) else "")' 2>/dev/null) || continue
		[ -n "$exe" ] && { echo "$exe"; return; }
		[ -z "$best" ] && best=$("$c" -c 'import sys; print(sys.executable)' 2>/dev/null)
	done
	echo "$best"
}

test_lazy_python_fork() {
	local py script='
import os
threads = int(open("/proc/self/stat").read().split(")")[-1].split()[17])
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
print("threads before fork:", threads)
'
	py=$(lazy_newest_python)
	[ -n "$py" ] || fail "no python3" || return 1
	echo "python: $py ($("$py" --version 2>&1))"
	"$py" -c "$script" >expected 2>err0 || fail "without shim: $(cat err0)" || return 1
	run_profiled prof -- "$py" -c "$script" >out 2>err || fail "exit $?: $(cat err)" || return 1
	cat out
	[ ! -s err ] || fail "stderr: $(cat err)" || return 1
	cmp -s expected out || fail "want: $(cat expected)" || return 1
}

# A CPU-bound loop that makes no wrapped call: the dump signal still gives
# a dump while it runs, it stays single-threaded, and SIGTERM still leaves
# its final profile and ends it with the status of SIGTERM.
test_lazy_signal_dumps_no_calls() {
	(start_profiled prof -- env --default-signal=TERM "$PROGS/busy_until_signal" >out 2>err) &
	local pid=$!
	for _ in $(seq 50); do grep -q ready out 2>/dev/null && break; sleep 0.1; done
	sleep 0.3
	[ "$(lazy_status_field "$pid" Threads)" = 1 ] || fail "threads before a dump: $(lazy_status_field "$pid" Threads)" || return 1
	local t0 t1 ms
	t0=$(date +%s%N)
	kill -USR2 "$pid"
	for _ in $(seq 2000); do
		[ -n "$(profile_of prof cpu)" ] && break
		sleep 0.01
	done
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	local first
	first=$(profile_of prof cpu)
	[ -n "$first" ] || fail "no dump 20 s after the dump signal" || return 1
	echo "dump signal: cpu file after $ms ms"
	kill -0 "$pid" || fail "the program ended" || return 1
	[ "$(lazy_status_field "$pid" Threads)" = 1 ] || fail "threads after a dump: $(lazy_status_field "$pid" Threads)" || return 1
	sleep 0.3
	local ticks hz
	ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	hz=$(getconf CLK_TCK)
	kill -TERM "$pid"
	wait "$pid"
	local rc=$?
	[ "$rc" -eq 143 ] || fail "exit status $rc, want 143: $(cat err)" || return 1
	[ ! -s err ] || fail "stderr: $(cat err)" || return 1
	local last busy1 busy2 truth
	last=$(profile_of prof cpu)
	[ "$last" != "$first" ] || fail "no final dump" || return 1
	busy1=$(cprof_value "$first" busy_loop)
	busy2=$(cprof_value "$last" busy_loop)
	truth=$((ticks * 1000000000 / hz))
	echo "busy_loop: $busy1 ns at the dump signal, $busy2 ns final, $truth ns of CPU used"
	[ "$busy1" -gt 0 ] && [ "$busy2" -gt "$busy1" ] || fail "busy_loop does not grow" || return 1
	[ "$busy2" -ge $((truth / 2)) ] && [ "$busy2" -le $((truth + 2000000000 / hz)) ] ||
		fail "final busy_loop $busy2 ns for $truth ns of CPU" || return 1
	pprof_top "$last" | grep -q busy_loop || fail "pprof: no busy_loop" || return 1
	# Both dumps carry the program's pid, in order.
	case $first in *".$pid.0000.cpu.pb.gz") ;; *) fail "first dump named $first" || return 1 ;; esac
	case $last in *".$pid.0001.cpu.pb.gz") ;; *) fail "final dump named $last" || return 1 ;; esac
}

# The dump signal, then cprof_dump(), while single-threaded; then a thread,
# the dump signal again and exit: four dumps, each with what ran before it.
test_lazy_phases_then_threads() {
	run_profiled prof CPROF_CPU_HZ=1000 -- "$PROGS/lazy_single" phases "$PWD/prof" >out 2>err ||
		fail "exit $?: $(cat out err)" || return 1
	cat out err
	grep -q '^after signal: threads=1 tasks=1 single=1$' out || fail "after the signal" || return 1
	grep -q '^after cprof_dump: threads=1 tasks=1 single=1$' out || fail "after cprof_dump" || return 1
	grep -q '^cprof_dump_now=0$' err || fail "cprof_dump_now" || return 1
	grep -q '^threaded: single=0$' out || fail "threaded" || return 1
	[ "$(grep -vc '^dump [0-9] after\|^cprof_dump_now=0$' err)" -eq 0 ] || fail "stderr" || return 1
	local f seq one two
	for seq in 0 1 2 3; do
		f=$(ls prof/*."$seq".cpu.pb.gz prof/*.000"$seq".cpu.pb.gz 2>/dev/null | head -1)
		[ -n "$f" ] || fail "no dump $seq: $(ls prof)" || return 1
		one=$(cprof_value "$f" phase_one)
		two=$(cprof_value "$f" phase_two)
		echo "dump $seq: phase_one $one ns, phase_two $two ns"
		[ "$one" -gt 100000000 ] || fail "dump $seq: phase_one $one ns of 0.2 s" || return 1
		if [ "$seq" -lt 2 ]; then
			[ "$two" -eq 0 ] || fail "dump $seq has phase_two" || return 1
		else
			[ "$two" -gt 100000000 ] || fail "dump $seq: phase_two $two ns of 0.2 s" || return 1
		fi
	done
	pprof_top "$f" | grep -q phase_two || fail "pprof: no phase_two" || return 1
}

# The child that writes a single-threaded program's dump is not the
# program's to see: no SIGCHLD (its handler counts none), and wait() and
# waitid(P_ALL) still say the program has no child (ECHILD).
test_lazy_dump_child_unseen() {
	run_profiled prof -- "$PROGS/lazy_single" wait "$PWD/prof" >out 2>err ||
		fail "exit $?: $(cat out err)" || return 1
	cat out err
	grep -q '^wait=-1 ECHILD waitid=-1 ECHILD sigchld=0$' out || fail "the program saw a child" || return 1
	grep -q '^wait: threads=1 tasks=1 single=1$' out || fail "threads" || return 1
	[ "$(grep -vc '^dump 0 after' err)" -eq 0 ] || fail "stderr" || return 1
	pprof_top "$(profile_of prof cpu)" | grep -q phase_one || fail "pprof: no phase_one" || return 1
}

# fork in a single-threaded program: the child stays single-threaded, its
# dump signal and its exit give it its own profiles, the parent's its own.
test_lazy_fork_child() {
	run_profiled prof CPROF_CPU_HZ=1000 -- "$PROGS/lazy_single" fork "$PWD/prof" >out 2>err ||
		fail "exit $?: $(cat out err)" || return 1
	cat out err
	grep -q '^child: threads=1 tasks=1 single=1$' out || fail "child" || return 1
	grep -q '^parent: threads=1 tasks=1 single=1$' out || fail "parent" || return 1
	local pids
	pids=$(ls prof | awk -F. '{ print $2 }' | sort -u)
	[ "$(echo "$pids" | wc -l)" -eq 2 ] || fail "want two processes' files: $(ls prof)" || return 1
	local p f child=0 parent=0
	for p in $pids; do
		f=$(profile_of prof "$p".0001.cpu)
		[ -n "$f" ] || f=$(ls prof/*."$p".0000.cpu.pb.gz)
		if [ "$(cprof_value "$f" child_work)" -gt 0 ]; then
			child=$((child + 1))
			[ -e "$(ls prof/*."$p".0000.cpu.pb.gz)" ] && [ -e "$(ls prof/*."$p".0001.cpu.pb.gz)" ] ||
				fail "child: want a signal dump and an exit dump: $(ls prof)" || return 1
			[ "$(cprof_value "$f" parent_work)" -eq 0 ] || fail "child has parent_work" || return 1
		else
			parent=$((parent + 1))
			[ "$(cprof_value "$f" parent_work)" -gt 0 ] || fail "parent: no parent_work in $f" || return 1
		fi
	done
	[ "$child" -eq 1 ] && [ "$parent" -eq 1 ] || fail "child $child, parent $parent" || return 1
}

# Dump signals, then SIGTERM, landing inside malloc and realloc of a
# program that does nothing else: each dump is written by a child process
# from its copy of memory, which must not use the allocator the signal
# interrupted (its state half-updated: glibc takes no lock while a
# process is single-threaded). Every dump comes, no `cprof:` line, and the
# program still dies of SIGTERM.
test_lazy_signals_inside_malloc() {
	local run
	for run in 1 2 3; do
		rm -rf prof out err
		(start_profiled prof CPROF_CPU_HZ=1000 CPROF_HEAP_RATE=4096 -- \
			env --default-signal=TERM "$PROGS/lazy_single" churn "$PWD/prof" >out 2>err) &
		local pid=$! i
		for _ in $(seq 50); do grep -q ready out 2>/dev/null && break; sleep 0.1; done
		for i in $(seq 20); do
			kill -USR2 "$pid"
			sleep 0.05
		done
		[ "$(lazy_status_field "$pid" Threads)" = 1 ] || fail "run $run: threads $(lazy_status_field "$pid" Threads)" || return 1
		kill -TERM "$pid"
		wait "$pid"
		local rc=$?
		[ "$rc" -eq 143 ] || fail "run $run: exit status $rc, want 143: $(cat err)" || return 1
		[ ! -s err ] || fail "run $run: stderr: $(cat err)" || return 1
		local n last
		n=$(ls prof/*.cpu.pb.gz | wc -l)
		last=$(profile_of prof cpu)
		echo "run $run: $n cpu profiles for 20 dump signals and SIGTERM; churn $(cprof_value "$last" churn) ns"
		[ "$n" -ge 3 ] || fail "run $run: $n dumps" || return 1
		[ "$(cprof_value "$last" churn)" -gt 0 ] || fail "run $run: no churn in $last" || return 1
		[ "$(cprof_value "$(profile_of prof heap)" churn cum alloc_objects)" -gt 0 ] ||
			fail "run $run: no heap samples in churn" || return 1
	done
	pprof_top "$last" | grep -q churn || fail "pprof: no churn" || return 1
}
