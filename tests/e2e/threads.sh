# The threads profile (preload/threads.c): a snapshot of every thread at
# each dump, read back by tools/cprof (raw, threads) and go tool pprof
# (-tags, -top). Program: tests/progs/threads_snap.c.

# threads_samples FILE: one line per sample, "COUNT<TAB>LABELS<TAB>FRAMES"
# (frames joined by ';', leaf first), from cprof raw.
threads_samples() {
	"$CPROF" raw "$1" | awk '
		/^  sample [0-9]+:/ { if (n) print v "\t" l "\t" f; n = 1; v = $3; l = ""; f = ""; next }
		n && /^    #/ { $1 = ""; sub(/^ [^ ]+ /, ""); f = f (f == "" ? "" : ";") $0; next }
		n && /^    labels:/ { sub(/^    labels: /, ""); l = $0; next }
		END { if (n) print v "\t" l "\t" f }'
}

# threads_count FILE LABEL: threads whose labels hold LABEL (key=value).
threads_count() {
	threads_samples "$1" | awk -F'\t' -v want="$2" '
		{ split($2, ls, " "); for (i in ls) if (ls[i] == want) { s += $1; break } }
		END { print s + 0 }'
}

# threads_wait_ns FILE LABEL: the longest wait_ns of those threads.
threads_wait_ns() {
	threads_samples "$1" | awk -F'\t' -v want="$2" '
		{ split($2, ls, " "); hit = 0; w = -1
		  for (i in ls) { if (ls[i] == want) hit = 1; if (ls[i] ~ /^wait_ns=/) { sub(/^wait_ns=/, "", ls[i]); w = ls[i] } }
		  if (hit && w > m) m = w }
		END { print m + 0 }'
}

# Item 5: 4 threads blocked in read on a pipe nobody writes, a dump 0.3 s
# later, 4 more, a dump 0.3 s later: the leak shows by count (4, then 8,
# all wait=read in state sleeping) and by wait (>= 0.3 s, then >= 0.6 s:
# the first four waited on), created by pool_start; pprof reads the tags.
test_threads_leak() {
	run_profiled prof CPROF_PROFILES=threads -- "$PROGS/threads_snap" leak >out 2>err ||
		fail "exit $?: $(cat err)" || return 1
	local first=prof/threads_snap.*.0000.threads.pb.gz second=prof/threads_snap.*.0001.threads.pb.gz
	# shellcheck disable=SC2086
	first=$(ls $first) second=$(ls $second) || fail "no two dumps: $(ls prof)" || return 1
	local c1 c2 w1 w2 r2
	c1=$(threads_count "$first" thread_name=leaker)
	c2=$(threads_count "$second" thread_name=leaker)
	r2=$(threads_count "$second" wait=read)
	w1=$(threads_wait_ns "$first" thread_name=leaker)
	w2=$(threads_wait_ns "$second" thread_name=leaker)
	echo "leakers $c1 then $c2 ($r2 in read), longest wait ${w1} ns then ${w2} ns"
	[ "$c1" -eq 4 ] && [ "$c2" -eq 8 ] && [ "$r2" -eq 8 ] || fail "counts $c1, $c2, $r2 in read" || return 1
	[ "$w1" -ge 290000000 ] && [ "$w1" -lt 5000000000 ] || fail "first wait $w1 ns" || return 1
	[ "$w2" -ge $((w1 + 250000000)) ] || fail "the wait did not grow: $w1 then $w2" || return 1
	[ "$(threads_count "$second" state=sleeping)" -ge 8 ] || fail "not sleeping" || return 1
	threads_samples "$second" | grep 'thread_name=leaker' | grep -q 'read;leaker_main.*;\[cprof: created by\];pool_start' ||
		fail "stack: $(threads_samples "$second" | grep leaker | head -1)" || return 1
	# pprof: the labels as tags, the stack as functions.
	go tool pprof -tags "$second" 2>/dev/null >tags || fail "pprof -tags" || return 1
	grep -q 'leaker' tags && grep -q 'sleeping' tags && grep -q ': read' tags ||
		fail "pprof -tags: $(cat tags)" || return 1
	[ "$(pprof_top "$second" -tagfocus=thread_name=leaker | awk '$6 == "leaker_main" { print $4 }')" = 8 ] ||
		fail "pprof: leaker_main cum not 8" || return 1
	# cprof threads: the groups as a person reads them.
	"$CPROF" threads "$second" >text || fail "cprof threads: exit $?" || return 1
	grep -q '^4 threads \[read, [0-9]* ms\] sleeping "leaker": leaker_main, created by pool_start$' text ||
		fail "cprof threads: $(head -5 text)" || return 1
	[ "$(grep -c '^4 threads \[read' text)" -eq 2 ] || fail "two groups of 4 (two call sites)" || return 1
}

# Item 5: a deadlocked pair shows both threads in pthread_mutex_lock (the
# wrapper published the call), each with its wait.
test_threads_deadlock() {
	run_profiled prof CPROF_PROFILES=threads -- "$PROGS/threads_snap" deadlock >out 2>err ||
		fail "exit $?: $(cat err)" || return 1
	local file a b
	file=$(ls prof/*.0000.threads.pb.gz) || return 1
	threads_samples "$file" | grep -E 'lock[AB]'
	for t in lockA:lock_a lockB:lock_b; do
		threads_samples "$file" | grep "thread_name=${t%:*} " | grep 'wait=pthread_mutex_lock' |
			grep -q "^1	.*	pthread_mutex_lock;${t#*:}" || fail "${t%:*} not in pthread_mutex_lock" || return 1
	done
	a=$(threads_wait_ns "$file" thread_name=lockA)
	b=$(threads_wait_ns "$file" thread_name=lockB)
	[ "$a" -ge 250000000 ] && [ "$b" -ge 250000000 ] || fail "waits $a, $b ns" || return 1
	go tool pprof -tags "$file" 2>/dev/null | grep -q 'pthread_mutex_lock' || fail "pprof -tags" || return 1
}

# Threads blocked in poll, epoll_wait, select, nanosleep, sem_timedwait and
# a raw syscall(SYS_ppoll) (outside every wrapper) get no EINTR from five
# dumps: the program checks every return and errno (with a snapshot that
# signals every thread, all six saw EINTR). The wrapped ones are in the
# profile with their call and wait, the raw one with wait=ppoll (never
# signalled) and its caller, and the busy thread running.
test_threads_no_eintr() {
	run_profiled prof CPROF_PROFILES=threads -- "$PROGS/threads_snap" eintr >out 2>err ||
		fail "exit $?: $(grep -v '^dump' err)" || return 1
	grep -q '^no EINTR$' err || fail "$(cat err)" || return 1
	local file
	file=$(ls prof/*.0000.threads.pb.gz) || return 1
	for t in poll:poll epoll:epoll_wait select:select nanosleep:nanosleep semwait:sem_timedwait; do
		threads_samples "$file" | grep "thread_name=${t%:*} " | grep -q "wait=${t#*:} wait_ns=" ||
			fail "${t%:*}: not in ${t#*:}" || return 1
	done
	threads_samples "$file" | grep 'thread_name=rawppoll ' | grep 'wait=ppoll' | grep -q 'in_raw_ppoll' ||
		fail "raw ppoll: $(threads_samples "$file" | grep rawppoll)" || return 1
	threads_samples "$file" | grep 'thread_name=spinner ' | grep 'state=running' | grep -q 'spinner' ||
		fail "spinner: $(threads_samples "$file" | grep spinner)" || return 1
	go tool pprof -raw "$file" >/dev/null 2>&1 || fail "pprof cannot read it" || return 1
}

# Item 5: 2000 threads (1000 in a wrapped read, 1000 in a raw futex wait
# that is signalled): the snapshot counts all of them and completes within
# 1 s (measured: 71 ms on this 2-core machine under the other sessions'
# load; the profile's comment says snapshot_us).
test_threads_2000() {
	run_profiled prof CPROF_PROFILES=threads -- "$PROGS/threads_snap" many 2000 >out 2>err ||
		fail "exit $?: $(cat err)" || return 1
	local file us reads total
	file=$(ls prof/*.0000.threads.pb.gz) || return 1
	us=$("$CPROF" raw "$file" | sed -n 's/.*snapshot_us=\([0-9]*\).*/\1/p')
	reads=$(threads_count "$file" wait=read)
	total=$(threads_samples "$file" | awk -F'\t' '{ s += $1 } END { print s }')
	echo "2001 threads: $total counted, $reads in read, snapshot ${us} us"
	[ "$total" -eq 2001 ] && [ "$reads" -eq 1000 ] || fail "counted $total, $reads in read" || return 1
	[ "$(threads_samples "$file" | grep -c 'not reached')" -eq 0 ] || fail "threads not reached" || return 1
	[ "$us" -lt 1000000 ] || fail "snapshot took $us us" || return 1
}

# Item 4: a thread spinning in an SA_ONSTACK handler (where the shim's
# signal is held blocked) is [cprof: not reached], with its name, after
# the 100 ms bound and not much more; a thread made with raw clone is
# listed with its state and [cprof: no stack].
test_threads_not_reached() {
	run_profiled prof CPROF_PROFILES=threads -- "$PROGS/threads_snap" unreachable >out 2>err ||
		fail "exit $?: $(cat err)" || return 1
	local file us
	file=$(ls prof/*.0000.threads.pb.gz) || return 1
	us=$("$CPROF" raw "$file" | sed -n 's/.*snapshot_us=\([0-9]*\).*/\1/p')
	echo "snapshot ${us} us; $(grep '^dump' err)"
	threads_samples "$file" | grep 'thread_name=inhandler ' | grep -q '	\[cprof: not reached\]' ||
		fail "inhandler: $(threads_samples "$file" | grep inhandler)" || return 1
	threads_samples "$file" | grep -q '	\[cprof: no stack\]$' || fail "no raw clone thread" || return 1
	[ "$us" -ge 100000 ] && [ "$us" -lt 400000 ] || fail "snapshot $us us, want 100 ms and a little" || return 1
	"$CPROF" threads "$file" | grep -q '^1 thread \[running\] running "inhandler": \[cprof: not reached\]' ||
		fail "cprof threads: $("$CPROF" threads "$file")" || return 1
}

# The endpoint: /debug/pprof/threads as pprof (debug=0) and as text
# (debug=1, 2), listed on the index; 404 when the kind is not collected.
test_threads_http() {
	http_start svc CPROF_PROFILES=cpu,threads -- || return 1
	local base="http://$ADDR/debug/pprof"
	curl -s "$base/" >idx || return 1
	grep -q "<a href='threads?debug=1'>threads</a>" idx || fail "index lacks threads" || return 1
	curl -s -o t.pb.gz "$base/threads" || return 1
	"$CPROF" raw t.pb.gz | grep -q 'thread_name=' || fail "cprof raw: no thread_name" || return 1
	go tool pprof -tags t.pb.gz 2>/dev/null | grep -q 'thread_name' || fail "pprof -tags" || return 1
	"$CPROF" raw t.pb.gz | grep -q 'http_service' || fail "the service's threads missing" || return 1
	for d in 1 2; do
		curl -s "$base/threads?debug=$d" >t.txt || return 1
		head -1 t.txt | grep -q '^threads profile: total [1-9]' || fail "debug=$d: $(head -3 t.txt)" || return 1
		grep -q '^[0-9]* threads\? \[' t.txt || fail "debug=$d: no group" || return 1
	done
	svc_stop || fail "service exit $?" || return 1
}

# Item 4: threads that end while snapshots run (4 makers start and join
# short threads, the main thread dumps every 10 ms for 1.5 s): nothing
# crashes or hangs, every dump is written with no cprof: line, and the last
# snapshot counts no more threads than can be alive (main, 4 makers, 16).
test_threads_churn() {
	run_profiled prof CPROF_PROFILES=threads -- "$PROGS/threads_snap" churn >out 2>err ||
		fail "exit $?: $(grep -v '^dump' err | head -3)" || return 1
	local made dumps files last
	made=$(sed -n 's/^made \([0-9]*\) threads.*/\1/p' out)
	dumps=$(sed -n 's/.*, \([0-9]*\) dumps$/\1/p' out)
	files=$(ls prof/*.threads.pb.gz | wc -l)
	echo "$made threads made, $dumps dumps, $files files"
	[ "$made" -gt 100 ] && [ "$dumps" -gt 20 ] || fail "made $made, dumps $dumps" || return 1
	[ "$files" -ge "$dumps" ] || fail "$files files for $dumps dumps" || return 1
	! grep -q '^cprof:' err || fail "$(grep '^cprof:' err | head -2)" || return 1
	last=$(profile_of prof threads)
	go tool pprof -raw "$last" >/dev/null 2>&1 || fail "pprof cannot read $last" || return 1
	# A snapshot counts the main thread and the 4 makers, and at most 16 short ones.
	local total
	total=$(threads_samples "$last" | awk -F'\t' '{ s += $1 } END { print s }')
	[ "$total" -ge 1 ] && [ "$total" -le 21 ] || fail "$total threads in the last snapshot" || return 1
}

# A thread seen running that is about to enter an EINTR-prone call: 8
# threads loop on 3 us of work and a 100 us ppoll while the main thread
# dumps every 5 ms for 3 s. Signalled at once, one of them sometimes got
# its signal as it entered ppoll: 3, 1 and 2 EINTR in three runs (of ~340
# dumps each). With the CPU profile's per-thread timers running, a running
# thread is left to its own next expiry (which comes only while it runs),
# then examined again: no EINTR.
test_threads_no_eintr_running() {
	run_profiled prof CPROF_PROFILES=cpu,threads -- "$PROGS/threads_snap" pollloop >out 2>err ||
		fail "exit $?: $(cat out)" || return 1
	cat out
	grep -q ', 0 EINTR$' out || fail "$(cat out)" || return 1
	local dumps
	dumps=$(sed -n 's/.* \([0-9]*\) dumps.*/\1/p' out)
	[ "$dumps" -ge 30 ] || fail "only $dumps dumps in 3 s" || return 1
}

# The same loop under the CPU profile alone (no snapshot signals at all):
# its timers never interrupt the ppoll. Here for the merge: on main at
# 358eaf2 (the process-wide "detector" CPU timer of 6700fce) this program
# saw 15-19 EINTR a run, and a variant without dumps 24-72; on this
# branch's base, 0.
test_threads_cpu_only_no_eintr() {
	run_profiled prof CPROF_PROFILES=cpu -- "$PROGS/threads_snap" pollloop >out 2>err ||
		fail "exit $?: $(cat out)" || return 1
	grep -q ', 0 EINTR$' out || fail "$(cat out)" || return 1
}
