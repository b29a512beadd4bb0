# End-to-end tests of the /debug/pprof endpoint (preload/http.c): real
# clients (curl, go tool pprof) against tests/progs/http_service under the
# shim. Sourced by tests/run.sh.

# http_start NAME [ENV=VALUE ...] -- ARGS: starts http_service ARGS under
# the shim serving on a free loopback port, its stdin a fifo held open on
# fd 7; sets SVC_PID and ADDR (from CPROF_OUT/<program>.<pid>.http).
http_start() {
	local name=$1
	shift
	local env=()
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do
		env+=("$1")
		shift
	done
	shift
	rm -f "$name.in"
	mkfifo "$name.in"
	(start_profiled "$name" CPROF_HTTP=:0 "${env[@]}" -- "$PROGS/http_service" "$@" \
		<"$name.in" >"$name.out" 2>"$name.err") &
	SVC_PID=$!
	exec 7>"$name.in"
	ADDR=
	for _ in $(seq 100); do
		if [ -s "$name/http_service.$SVC_PID.http" ] && grep -q '^ready' "$name.out" 2>/dev/null; then
			ADDR=$(cat "$name/http_service.$SVC_PID.http")
			return 0
		fi
		sleep 0.05
	done
	fail "no address file for $SVC_PID: $(cat "$name.err")"
}

# svc_do NAME CMD: sends a command and waits for its "ok".
svc_do() {
	local before
	before=$(grep -c '^ok' "$1.out")
	echo "$2" >&7
	for _ in $(seq 600); do
		[ "$(grep -c '^ok' "$1.out")" -gt "$before" ] && return 0
		sleep 0.05
	done
	fail "no ok for $2"
}

# svc_stop: EOF on stdin; returns the service's exit status.
svc_stop() {
	exec 7>&-
	wait "$SVC_PID"
}

# cpu_ticks PID: utime + stime of the process in ns (from /proc/PID/stat).
cpu_ns() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.0f\n", ($12 + $13) * 1e9 / hz }' \
		"/proc/$1/stat"
}

# status URL [CURL ARGS]: the HTTP status of a GET.
status() {
	local url=$1
	shift
	curl -s -o /dev/null -w '%{http_code}' "$@" "$url"
}

# A CPU window is the difference of two snapshots: profile?seconds=2 holds
# the CPU of those 2 s (the truth: the process's utime+stime over the
# request, from /proc), not the 1.5 s burnt before it; go tool pprof reads
# it straight from the endpoint.
test_http_cpu_window() {
	http_start svc -- || return 1
	svc_do svc "spin 1500" || return 1
	echo "spin 4500" >&7
	sleep 0.2
	local before after
	before=$(cpu_ns "$SVC_PID")
	curl -s -o win.pb.gz -D win.h "http://$ADDR/debug/pprof/profile?seconds=2" || fail "curl $?" || return 1
	after=$(cpu_ns "$SVC_PID")
	grep -qi '^Content-Type: application/octet-stream' win.h || fail "content type: $(cat win.h)" || return 1
	grep -qi '^Content-Disposition: attachment; filename="profile"' win.h || fail "disposition" || return 1
	local spin total truth
	spin=$(cprof_value win.pb.gz spin_phase cum cpu)
	total=$(cprof_total win.pb.gz cpu)
	truth=$((after - before))
	echo "window: spin_phase=$spin total=$total /proc=$truth"
	within "$total" "$truth" 15 || fail "window total $total ns vs /proc $truth ns (> 15%)" || return 1
	near "$spin" "$total" $((total / 10)) || fail "spin_phase $spin of $total" || return 1
	[ "$total" -lt 2600000000 ] || fail "window holds $total ns: the CPU before it too" || return 1
	go tool pprof -raw -seconds 2 "http://$ADDR/debug/pprof/profile" >raw 2>perr ||
		fail "go tool pprof: $(cat perr)" || return 1
	grep -q 'spin_phase' raw || fail "pprof -raw lacks spin_phase" || return 1
	grep -q '^Duration: 2' raw || fail "pprof: duration $(grep Duration raw)" || return 1
	svc_stop || fail "service exit $?" || return 1
}

# Two windows at once are both served, from the same moment (their
# time_nanos within half a second), not one after the other.
test_http_two_windows_at_once() {
	http_start svc -- || return 1
	echo "spin 2500" >&7
	curl -s -o a.pb.gz "http://$ADDR/debug/pprof/profile?seconds=2" &
	local a=$!
	curl -s -o b.pb.gz -w '%{http_code}' "http://$ADDR/debug/pprof/profile?seconds=2" >b.code
	wait $a || fail "first curl $?" || return 1
	[ "$(cat b.code)" = 200 ] || fail "second: $(cat b.code)" || return 1
	local ta tb
	ta=$("$CPROF" raw a.pb.gz | sed -n 's/^Time: \([0-9]*\).*/\1/p')
	tb=$("$CPROF" raw b.pb.gz | sed -n 's/^Time: \([0-9]*\).*/\1/p')
	echo "time_nanos $ta $tb"
	[ -n "$ta" ] && [ -n "$tb" ] || fail "no time in the profiles" || return 1
	near "$ta" "$tb" 500000000 || fail "windows started $ta and $tb: not at once" || return 1
	for f in a.pb.gz b.pb.gz; do
		[ "$(cprof_value $f spin_phase cum cpu)" -gt 0 ] || fail "$f has no spin_phase" || return 1
		pprof_top $f >/dev/null || fail "pprof cannot read $f" || return 1
	done
	svc_stop
}

# heap?seconds=N is Go's delta: allocations of the window only, in-use
# columns as they stand at its end. Every allocation sampled (rate 1), so
# the truth is exact: 8 MiB allocated before the window, 16 MiB in it.
test_http_heap_window() {
	http_start svc CPROF_HEAP_RATE=1 -- --alloc-at-start 8 || return 1
	curl -s -o win.pb.gz -D win.h "http://$ADDR/debug/pprof/heap?seconds=2" &
	local c=$!
	sleep 0.5
	svc_do svc "alloc 16" || return 1
	wait $c || fail "curl $?" || return 1
	grep -qi 'filename="heap-delta"' win.h || fail "disposition: $(cat win.h)" || return 1
	local alloc inuse
	alloc=$(cprof_value win.pb.gz alloc_phase cum alloc_space)
	inuse=$(cprof_value win.pb.gz alloc_phase cum inuse_space)
	echo "window: alloc_space=$alloc inuse_space=$inuse"
	[ "$alloc" = $((16 << 20)) ] || fail "alloc_space $alloc, want 16 MiB" || return 1
	[ "$inuse" = $((24 << 20)) ] || fail "inuse_space $inuse, want 24 MiB" || return 1
	pprof_top win.pb.gz -sample_index=alloc_space >top || fail "pprof" || return 1
	grep -q 'alloc_phase' top || fail "pprof lacks alloc_phase" || return 1
	# allocs: the same data, alloc_space by default.
	curl -s -o allocs.pb.gz -D allocs.h "http://$ADDR/debug/pprof/allocs"
	grep -qi 'filename="allocs"' allocs.h || fail "allocs disposition" || return 1
	pprof_top allocs.pb.gz | grep -q '^Type: alloc_space' || fail "allocs default type: $(pprof_top allocs.pb.gz | head -3)" || return 1
	[ "$(cprof_value allocs.pb.gz alloc_phase cum alloc_space)" = $((24 << 20)) ] ||
		fail "allocs alloc_space" || return 1
	svc_stop
}

# delta_heap (godeltaprof's path, as Alloy scrapes it): the change since
# the previous request to that path; the first is since the start.
test_http_delta_heap_twice() {
	http_start svc CPROF_HEAP_RATE=1 -- --alloc-at-start 8 || return 1
	curl -s -o d1.pb.gz "http://$ADDR/debug/pprof/delta_heap" || return 1
	svc_do svc "alloc 4" || return 1
	curl -s -o d2.pb.gz "http://$ADDR/debug/pprof/delta_heap" || return 1
	curl -s -o d3.pb.gz "http://$ADDR/debug/pprof/delta_heap" || return 1
	local a1 a2 a3 i2
	a1=$(cprof_value d1.pb.gz alloc_phase cum alloc_space)
	a2=$(cprof_value d2.pb.gz alloc_phase cum alloc_space)
	a3=$(cprof_value d3.pb.gz alloc_phase cum alloc_space)
	i2=$(cprof_value d2.pb.gz alloc_phase cum inuse_space)
	echo "delta_heap: $a1 $a2 $a3 inuse $i2"
	[ "$a1" = $((8 << 20)) ] || fail "first delta $a1, want 8 MiB" || return 1
	[ "$a2" = $((4 << 20)) ] || fail "second delta $a2, want 4 MiB" || return 1
	[ "$a3" = 0 ] || fail "third delta $a3, want 0" || return 1
	[ "$i2" = $((12 << 20)) ] || fail "in use $i2, want 12 MiB" || return 1
	# delta_mutex, delta_block: the same rule.
	svc_do svc "contend 300" || return 1
	curl -s -o m1.pb.gz "http://$ADDR/debug/pprof/delta_mutex" || return 1
	curl -s -o m2.pb.gz "http://$ADDR/debug/pprof/delta_mutex" || return 1
	curl -s -o b1.pb.gz "http://$ADDR/debug/pprof/delta_block" || return 1
	local m1 m2 b1
	m1=$(cprof_total m1.pb.gz delay)
	m2=$(cprof_total m2.pb.gz delay)
	b1=$(cprof_value b1.pb.gz contend_thread cum delay)
	echo "delta_mutex $m1 then $m2; delta_block contend_thread $b1"
	[ "$m1" -gt 0 ] && [ "$m2" = 0 ] || fail "delta_mutex $m1 then $m2" || return 1
	[ "$b1" -gt 0 ] || fail "delta_block without contend_thread" || return 1
	svc_stop
}

# Every path, its status, content type, disposition and error text, as
# Go's net/http/pprof.
test_http_paths() {
	http_start svc -- --alloc-at-start 4 || return 1
	local base="http://$ADDR/debug/pprof"
	curl -s -D idx.h "$base/" >idx || return 1
	grep -qi '^Content-Type: text/html; charset=utf-8' idx.h || fail "index type" || return 1
	for p in allocs block cmdline heap mutex profile; do
		grep -q "<a href='$p?debug=1'>$p</a>" idx || fail "index lacks $p" || return 1
	done
	grep -q "<tr><td>[1-9][0-9]*</td><td><a href='heap?debug=1'>" idx || fail "heap count 0" || return 1
	curl -s -D cmd.h "$base/cmdline" | tr '\0' ' ' >cmd
	[ "$(cat cmd)" = "$PROGS/http_service --alloc-at-start 4" ] || fail "cmdline: $(cat cmd)" || return 1
	grep -qi '^Content-Type: text/plain; charset=utf-8' cmd.h || fail "cmdline type" || return 1
	for p in heap allocs mutex block delta_heap delta_mutex delta_block; do
		curl -s -D h -o p.pb.gz "$base/$p" || return 1
		grep -qi "^Content-Disposition: attachment; filename=\"$p\"" h || fail "$p: $(cat h)" || return 1
		grep -qi '^Content-Type: application/octet-stream' h || fail "$p type" || return 1
		"$CPROF" raw p.pb.gz >/dev/null || fail "$p: cprof cannot read it" || return 1
		go tool pprof -raw p.pb.gz >/dev/null 2>&1 || fail "$p: pprof cannot read it" || return 1
	done
	[ "$(curl -s "$base/symbol")" = "num_symbols: 1" ] || fail "symbol GET" || return 1
	# debug=1: Go's legacy text forms, which pprof still reads.
	curl -s -D t.h "$base/heap?debug=1" >heap.txt
	grep -qi '^Content-Type: text/plain; charset=utf-8' t.h || fail "debug=1 type" || return 1
	head -1 heap.txt | grep -q '^heap profile: [0-9]*: [0-9]* \[[0-9]*: [0-9]*\] @ heap/2$' ||
		fail "heap text: $(head -1 heap.txt)" || return 1
	grep -q "alloc_phase.*http_service.c:" heap.txt || fail "heap text lacks alloc_phase" || return 1
	go tool pprof -raw heap.txt 2>/dev/null | grep -q "^objects/count space/bytes" || fail "pprof cannot read the heap text" || return 1
	[ "$(curl -s "$base/mutex?debug=1" | head -1)" = "--- mutex:" ] || fail "mutex text" || return 1
	[ "$(curl -s "$base/block?debug=1" | head -1)" = "--- contention:" ] || fail "block text" || return 1
	local code
	for want in "404 $base/threads" "404 $base/nope" "404 http://$ADDR/other" \
		"400 $base/profile?seconds=0" "400 $base/profile?seconds=-1" \
		"400 $base/profile?seconds=abc" "400 $base/heap?seconds=x" \
		"400 $base/heap?seconds=301" "400 $base/profile?seconds=301" \
		"200 $base/heap?seconds=" "200 $base/heap?gc=1"; do
		code=$(status "${want#* }")
		[ "$code" = "${want%% *}" ] || fail "${want#* }: $code, want ${want%% *}" || return 1
	done
	curl -s -D e.h "$base/heap?seconds=x" >e
	[ "$(cat e)" = 'invalid value for "seconds" - must be a positive integer' ] || fail "error text: $(cat e)" || return 1
	grep -qi '^X-Go-Pprof: 1' e.h || fail "no X-Go-Pprof" || return 1
	[ "$(curl -s "$base/heap?seconds=2&debug=1")" = "seconds and debug params are incompatible" ] ||
		fail "seconds+debug" || return 1
	[ "$(curl -s "$base/nope")" = "Unknown profile" ] || fail "404 text" || return 1
	code=$(curl -s -o /dev/null -w '%{http_code}' -D m.h -X DELETE "$base/heap")
	[ "$code" = 405 ] || fail "DELETE heap: $code" || return 1
	grep -qi '^Allow: GET, HEAD' m.h || fail "no Allow" || return 1
	[ "$(curl -s -o /dev/null -w '%{http_code}' -d x "$base/heap")" = 405 ] || fail "POST heap" || return 1
	svc_stop
}

# The symbol endpoint, by hand and by pprof: a profile served without
# names (CPROF_HTTP_SYMBOLIZE=off, for agents that symbolize themselves)
# has mappings without functions, and `go tool pprof -symbolize=remote`
# names them through /debug/pprof/symbol.
test_http_symbol_remote() {
	http_start svc CPROF_HTTP_SYMBOLIZE=off -- || return 1
	local load offset addr
	load=$(awk -v p="$PROGS/http_service" '$6 == p { split($1, a, "-"); print a[1]; exit }' "/proc/$SVC_PID/maps")
	offset=$(nm "$PROGS/http_service" | awk '$3 == "alloc_phase" { print $1 }')
	addr=$(printf '0x%x' $((0x$load + 0x$offset + 4)))
	curl -s -d "$addr+0x10+bogus" "http://$ADDR/debug/pprof/symbol" >sym
	printf 'num_symbols: 1\n%s alloc_phase\n' "$addr" | cmp -s - sym || fail "symbol POST: $(cat sym)" || return 1
	svc_do svc "spin 3000" >/dev/null &
	local spinner=$!
	sleep 0.3
	curl -s -o plain.pb.gz "http://$ADDR/debug/pprof/profile?seconds=1"
	"$CPROF" raw plain.pb.gz >plain.raw
	grep -q 'spin_phase' plain.raw && fail "CPROF_HTTP_SYMBOLIZE=off profile has names" && return 1
	go tool pprof -symbolize=remote -raw -seconds 1 "http://$ADDR/debug/pprof/profile" >raw 2>perr ||
		fail "pprof: $(cat perr)" || return 1
	grep -q 'spin_phase' raw || fail "pprof -symbolize=remote did not name spin_phase: $(head -30 raw)" || return 1
	wait $spinner
	svc_stop
}

# The serving thread keeps its sockets in a descriptor table of its own:
# the program sees none of them in /proc/PID/fd, and a daemon that closes
# every descriptor above 2 (closefrom) is still served.
test_http_private_descriptors() {
	http_start svc -- --closefrom || return 1
	curl -s -o /dev/null "http://$ADDR/debug/pprof/heap" &
	local c=$!
	sleep 0.2
	ls -l "/proc/$SVC_PID/fd" >fds
	cat fds
	grep -q 'socket:' fds && fail "the program's table holds a socket" && return 1
	[ "$(ls "/proc/$SVC_PID/fd" | sort -n | tr '\n' ' ')" = "0 1 2 " ] ||
		fail "descriptors after closefrom: $(ls "/proc/$SVC_PID/fd" | tr '\n' ' ')" || return 1
	wait $c
	[ "$(status "http://$ADDR/debug/pprof/heap")" = 200 ] || fail "not served after closefrom" || return 1
	grep -c 'serving /debug/pprof/ on 127.0.0.1:' svc.err | grep -qx 1 || fail "serving line: $(cat svc.err)" || return 1
	svc_stop || fail "exit $?" || return 1
}

# With a token every request needs "Authorization: Bearer <token>"; a
# non-loopback address is refused without one; a token file must be 0600.
test_http_token() {
	http_start svc CPROF_HTTP_TOKEN=s3cret -- || return 1
	local url="http://$ADDR/debug/pprof/heap"
	[ "$(status "$url")" = 401 ] || fail "no token: $(status "$url")" || return 1
	[ "$(status "$url" -H 'Authorization: Bearer s3cre')" = 401 ] || fail "short token" || return 1
	[ "$(status "$url" -H 'Authorization: Bearer s3cret1')" = 401 ] || fail "long token" || return 1
	[ "$(status "$url" -H 'Authorization: Basic s3cret')" = 401 ] || fail "basic" || return 1
	[ "$(status "$url" -H 'Authorization: Bearer s3cret')" = 200 ] || fail "good token refused" || return 1
	curl -s -D h -o /dev/null "$url"
	grep -qi '^WWW-Authenticate: Bearer' h || fail "no WWW-Authenticate" || return 1
	svc_stop

	# 0.0.0.0 without a token: one line, nothing listens, the program runs.
	run_profiled out CPROF_HTTP=0.0.0.0:0 -- "$PROGS/http_service" </dev/null >o 2>e ||
		fail "exit $?" || return 1
	cat e
	[ "$(grep -c '^cprof: ' e)" = 1 ] && grep -q 'CPROF_HTTP="0.0.0.0:0" is not a loopback address' e ||
		fail "refusal line: $(cat e)" || return 1
	[ "$(cat o)" = ready ] || fail "output $(cat o)" || return 1
	ls out/*.http 2>/dev/null && fail "an address file without an endpoint" && return 1

	printf 'filetoken\n' >tok
	chmod 0644 tok
	run_profiled out CPROF_HTTP=0.0.0.0:0 CPROF_HTTP_TOKEN_FILE="$PWD/tok" -- \
		"$PROGS/http_service" </dev/null >o 2>e
	grep -q 'must be a file of this user with mode 0600 (it is 644)' e || fail "0644 file: $(cat e)" || return 1
	chmod 0600 tok
	http_start svc2 CPROF_HTTP=0.0.0.0:0 CPROF_HTTP_TOKEN_FILE="$PWD/tok" -- || return 1
	local port=${ADDR##*:}
	grep -q "serving /debug/pprof/ on 0.0.0.0:$port" svc2.err || fail "$(cat svc2.err)" || return 1
	[ "$(status "http://127.0.0.1:$port/debug/pprof/heap" -H 'Authorization: Bearer filetoken')" = 200 ] ||
		fail "file token refused" || return 1
	[ "$(status "http://127.0.0.1:$port/debug/pprof/heap")" = 401 ] || fail "no token accepted" || return 1
	svc_stop
}

# A bad token file, or an address taken, is said however short the
# program: 10 runs of `true` (which ends at once) with a 0644 file, and 10
# on the port a running service holds, each print the one line and exit 0.
# Both were said on the serving thread only, which a program that ended
# first never heard: the token file's refusal in 4 runs of 10, the taken
# port's in none.
test_http_token_file_short_program() {
	printf 'tok\n' >tok
	chmod 0644 tok
	local i said=0
	for i in 1 2 3 4 5 6 7 8 9 10; do
		run_profiled out CPROF_HTTP=0.0.0.0:0 CPROF_HTTP_TOKEN_FILE="$PWD/tok" -- true 2>e ||
			fail "run $i: exit $?" || return 1
		[ "$(grep -c '^cprof: ' e)" = 1 ] &&
			grep -q 'must be a file of this user with mode 0600 (it is 644)' e &&
			said=$((said + 1))
	done
	echo "the line in $said of 10 runs"
	[ "$said" = 10 ] || fail "the refusal was said in $said of 10 runs" || return 1
	http_start svc -- || return 1
	said=0
	for i in 1 2 3 4 5 6 7 8 9 10; do
		run_profiled out2 CPROF_HTTP="$ADDR" -- true 2>e ||
			fail "taken port, run $i: exit $?" || return 1
		[ "$(grep -c '^cprof: ' e)" = 1 ] && grep -q 'cannot listen (Address already in use)' e &&
			said=$((said + 1))
	done
	svc_stop
	echo "the taken port's line in $said of 10 runs"
	[ "$said" = 10 ] || fail "the taken port was said in $said of 10 runs" || return 1
}

# A child forked while the serving thread starts has no such thread: its
# exit must not wait for one. fork_many's children exit at once; five of
# them, forked in the endpoint's first milliseconds, took 2 s each when the
# child kept the parent's "starting" mark. Bound: 1.5 s for the whole run.
test_http_fork_while_starting() {
	local t0 t1
	t0=$(date +%s%N)
	run_profiled out CPROF_HTTP=127.0.0.1:0 -- "$PROGS/fork_many" 5 >o 2>e ||
		fail "exit $?: $(cat e)" || return 1
	t1=$(date +%s%N)
	echo "5 children in $(((t1 - t0) / 1000000)) ms: $(cat o)"
	[ $(((t1 - t0) / 1000000)) -lt 1500 ] || fail "the children waited: $(((t1 - t0) / 1000000)) ms" ||
		return 1
}

# unix:/path: a socket of mode 0600 whatever the umask; [::1] and
# localhost work too.
test_http_unix_and_ipv6() {
	mkfifo in
	(umask 000; start_profiled out CPROF_HTTP="unix:$PWD/s.sock" -- "$PROGS/http_service" <in >o 2>e) &
	local pid=$!
	exec 7>in
	for _ in $(seq 100); do grep -q serving e 2>/dev/null && break; sleep 0.05; done
	grep -qx "cprof: serving /debug/pprof/ on unix:$PWD/s.sock" e || fail "$(cat e)" || return 1
	[ "$(stat -c %a s.sock)" = 600 ] || fail "socket mode $(stat -c %a s.sock)" || return 1
	[ "$(curl -s --unix-socket "$PWD/s.sock" http://x/debug/pprof/symbol)" = "num_symbols: 1" ] ||
		fail "unix socket not served" || return 1
	exec 7>&-
	wait $pid || fail "exit $?" || return 1
	# A socket left by a dead run is replaced.
	http_start v6 CPROF_HTTP="[::1]:0" -- || return 1
	grep -q 'serving /debug/pprof/ on \[::1\]:' v6.err || fail "$(cat v6.err)" || return 1
	[ "$(status "http://$ADDR/debug/pprof/heap")" = 200 ] || fail "[::1] not served" || return 1
	svc_stop
	# Its stdin stays open for a second: at EOF at once the service could
	# end before its endpoint said it serves (seen once in a full run).
	(umask 000; sleep 1 | start_profiled out CPROF_HTTP="unix:$PWD/s.sock" -- "$PROGS/http_service" >o 2>e)
	grep -q "serving /debug/pprof/ on unix:$PWD/s.sock" e || fail "stale socket not replaced: $(cat e)" || return 1
}

# Bad settings: one cprof line each, no endpoint, the program unchanged.
test_http_bad_settings() {
	local v
	for v in CPROF_HTTP=nonsense CPROF_HTTP=example.com:80 CPROF_HTTP=127.0.0.1:70000 \
		CPROF_HTTP=unix:relative CPROF_HTTP=[::1:80 CPROF_HTTP_MAX_SECONDS=0 \
		CPROF_HTTP_CONNECTIONS=x CPROF_HTTP_TIMEOUT=-1 CPROF_HTTP_SYMBOLIZE=maybe \
		CPROF_HTTP_TOKEN_FILE=relative; do
		run_profiled out "$v" -- "$PROGS/http_service" </dev/null >o 2>e || fail "$v: exit $?" || return 1
		echo "$v: $(cat e)"
		[ "$(grep -c '^cprof: ' e)" = 1 ] && grep -q "${v%%=*}" e || fail "$v: $(cat e)" || return 1
		[ "$(cat o)" = ready ] || fail "$v: output $(cat o)" || return 1
	done
}

# The serving thread's own descriptor table, as /proc shows it: the task
# named cprof-http.
http_thread_fds() {
	local t
	for t in /proc/"$1"/task/*; do
		if [ "$(cat "$t/comm")" = cprof-http ]; then
			ls "$t/fd" | wc -l
			return
		fi
	done
	echo none
}

# A client that sends its request a byte every half second is dropped
# after CPROF_HTTP_TIMEOUT seconds, however steadily it sends (an
# inactivity timeout alone would keep it forever).
test_http_limits_slow_client() {
	http_start svc CPROF_HTTP_TIMEOUT=2 -- || return 1
	perl -MIO::Socket::INET -MTime::HiRes=time,sleep -e '
		my $s = IO::Socket::INET->new(PeerAddr => $ARGV[0]) or die "connect: $!";
		$SIG{PIPE} = "IGNORE";
		my $start = time;
		my $req = "GET /debug/pprof/heap HTTP/1.1\r\nHost: x\r\nX-Slow: " . ("a" x 100);
		for my $c (split //, $req) {
			last unless defined syswrite($s, $c);
			my $rin = ""; vec($rin, fileno($s), 1) = 1;
			if (select(my $r = $rin, undef, undef, 0.5)) {
				my $n = sysread($s, my $buf, 100);
				last if !$n;
			}
			last if time - $start > 10;
		}
		printf "%.1f\n", time - $start;' "$ADDR" >dropped || fail "perl: $?" || return 1
	echo "slow client dropped after $(cat dropped) s"
	awk -v t="$(cat dropped)" 'BEGIN { exit !(t >= 1.5 && t < 5) }' ||
		fail "slow client held $(cat dropped) s (timeout 2 s)" || return 1
	[ "$(status "http://$ADDR/debug/pprof/heap")" = 200 ] || fail "not served after" || return 1
	svc_stop
}

# malformed_round ADDR: 45 malformed requests; prints "STATUS:COUNT ..."
# ("closed": libmicrohttpd closed without a reply, which it does for a
# line that is not HTTP/1.x at all). A body cut short is the slow
# client's case: dropped at the timeout.
malformed_round() {
	perl -MIO::Socket::INET -e '
		my @bad = ("GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET /debug/pprof/heap HTTP/9.9\r\n\r\n",
			"GET /debug/pprof/heap HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
			"GET /debug/pprof/heap?seconds=%zz HTTP/1.1\r\nHost: x\r\n\r\n",
			"\x00\x01\x02\xff\r\n\r\n", "GET /debug/pprof/heap HTTP/1.1\r\nHost: x\r\n" .
			"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
			"GET /debug/pprof/heap HTTP/1.1\r\nHost: x\r\nBad header line\r\n\r\n");
		my %codes;
		for my $i (1 .. 45) {
			my $s = IO::Socket::INET->new(PeerAddr => $ARGV[0]) or die "connect: $!";
			print $s $bad[$i % @bad];
			shutdown($s, 1);
			my $reply = join "", <$s>;
			my ($code) = $reply =~ m{^HTTP/1\.[01] (\d+)};
			$codes{$code // "closed"}++;
		}
		print join(" ", map { "$_:$codes{$_}" } sort keys %codes), "\n";' "$1"
}

# Headers over 8 KiB: 431 (or libmicrohttpd's own 431 when they do not
# even fit its buffer); bodies: symbol only, 64 KiB at most; malformed
# requests get a 4xx and neither descriptors nor memory leak.
test_http_limits_sizes() {
	http_start svc -- || return 1
	local base="http://$ADDR/debug/pprof" big huge code
	big=$(head -c 9000 /dev/zero | tr '\0' a)
	huge=$(head -c 40000 /dev/zero | tr '\0' a)
	code=$(status "$base/heap" -H "X-Big: $big")
	[ "$code" = 431 ] || fail "9000-byte header: $code" || return 1
	code=$(status "$base/heap" -H "X-Big: $huge")
	[ "$code" = 431 ] || [ "$code" = 400 ] || fail "40000-byte header: $code" || return 1
	code=$(status "$base/heap" -H "X-Ok: $(head -c 6000 /dev/zero | tr '\0' a)")
	[ "$code" = 200 ] || fail "6000-byte header: $code" || return 1
	head -c 70000 /dev/zero | tr '\0' 1 >body
	code=$(status "$base/symbol" --data-binary @body)
	[ "$code" = 413 ] || fail "70000-byte symbol body: $code" || return 1
	code=$(status "$base/symbol" -H 'Transfer-Encoding: chunked' --data-binary @body)
	[ "$code" = 413 ] || fail "chunked 70000-byte symbol body: $code" || return 1
	code=$(status "$base/heap" -X GET -d 'x=1')
	[ "$code" = 413 ] || fail "GET heap with a body: $code" || return 1

	# A first round warms the allocator; the second must cost nothing.
	malformed_round "$ADDR" >codes || fail "perl $?" || return 1
	local fds_before rss_before
	fds_before=$(http_thread_fds "$SVC_PID")
	rss_before=$(awk '/^VmRSS/ { print $2 }' "/proc/$SVC_PID/status")
	malformed_round "$ADDR" >codes || fail "perl $?" || return 1
	echo "malformed requests: $(cat codes)"
	grep -q ' 200:\|^200:' codes && fail "a malformed request got 200" && return 1
	grep -q '400:' codes || fail "no 400 at all" || return 1
	local fds_after rss_after
	fds_after=$(http_thread_fds "$SVC_PID")
	rss_after=$(awk '/^VmRSS/ { print $2 }' "/proc/$SVC_PID/status")
	[ "$(status "$base/heap")" = 200 ] || fail "not served after the malformed requests" || return 1
	echo "serving thread descriptors $fds_before -> $fds_after, RSS $rss_before -> $rss_after kB"
	[ "$fds_before" != none ] && [ "$fds_after" = "$fds_before" ] ||
		fail "descriptors $fds_before -> $fds_after" || return 1
	[ $((rss_after - rss_before)) -lt 512 ] || fail "RSS grew $((rss_after - rss_before)) kB" || return 1
	svc_stop
}

# CPROF_HTTP_CONNECTIONS (8) connections at once: the 9th gets a 503 and
# is served again once the others are gone.
test_http_limits_flood() {
	http_start svc -- || return 1
	mkfifo hold
	perl -MIO::Socket::INET -e '
		my @s = map { IO::Socket::INET->new(PeerAddr => $ARGV[0]) or die "connect: $!" } 1 .. 8;
		print "held\n";
		open(my $h, "<", $ARGV[1]); <$h>;' "$ADDR" "$PWD/hold" >held &
	local holder=$!
	for _ in $(seq 100); do grep -q held held && break; sleep 0.05; done
	sleep 0.2
	curl -s -D h "http://$ADDR/debug/pprof/heap" -o body
	grep -q '^HTTP/1.1 503' h || fail "9th connection: $(head -1 h)" || return 1
	grep -q 'too many connections' body || fail "503 body: $(cat body)" || return 1
	echo >hold
	wait $holder
	sleep 0.2
	[ "$(status "http://$ADDR/debug/pprof/heap")" = 200 ] || fail "not served after the flood" || return 1
	svc_stop
}

# A busy program (4 threads computing) under 100 requests of every kind,
# 5 of them CPU windows at once: its output and exit status are those of
# the run without the shim, and every request was answered while it ran.
test_http_busy_program_unchanged() {
	local iterations=6000000000
	"$PROGS/http_service" --busy 4 $iterations >plain.out 2>plain.err &
	local plain=$!
	(start_profiled prof CPROF_HTTP=:0 -- "$PROGS/http_service" --busy 4 $iterations \
		>shim.out 2>shim.err) &
	local pid=$!
	for _ in $(seq 100); do [ -s "prof/http_service.$pid.http" ] && break; sleep 0.05; done
	local addr
	addr=$(cat "prof/http_service.$pid.http") || fail "no address file" || return 1
	local base="http://$addr/debug/pprof" i
	for i in 1 2 3 4 5; do
		curl -s -o "win$i.pb.gz" -w '%{http_code}\n' "$base/profile?seconds=1" >>codes &
	done
	local paths=("" heap allocs mutex block delta_heap delta_mutex delta_block cmdline symbol
		"heap?seconds=1" "profile?seconds=1")
	for i in $(seq 95); do
		curl -s -o /dev/null -w '%{http_code}\n' "$base/${paths[i % 10]}" >>codes
	done
	alive=$(kill -0 $pid 2>/dev/null && echo yes || echo no)
	wait $pid
	local rc=$?
	wait $plain
	local plain_rc=$?
	wait
	[ "$plain_rc" = 3 ] || fail "plain run exit $plain_rc" || return 1
	echo "answers: $(sort codes | uniq -c | tr '\n' ' '); alive after 100: $alive; exit $rc"
	[ "$(grep -c '^200$' codes)" = 100 ] || fail "$(grep -vc '^200$' codes) requests not 200" || return 1
	[ "$alive" = yes ] || fail "the program ended before the 100 requests: raise iterations" || return 1
	[ "$rc" = "$plain_rc" ] || fail "exit $rc under the shim, $plain_rc without" || return 1
	cmp -s plain.out shim.out || fail "output differs: $(cat shim.out) vs $(cat plain.out)" || return 1
	[ "$(grep -v '^cprof: serving' shim.err)" = "$(cat plain.err)" ] || fail "stderr: $(cat shim.err)" || return 1
	[ "$(cprof_value win1.pb.gz busy_thread cum cpu)" -gt 0 ] || fail "window without busy_thread" || return 1
}

# fork and exec: a forked child does not serve on its parent's socket (it
# has no serving thread, and the socket is in no table it inherits); an
# exec'd program (same pid) serves afresh from the inherited CPROF_HTTP.
test_http_fork_exec() {
	mkfifo in
	(start_profiled out CPROF_HTTP=:0 -- bash -c "read line; exec $PROGS/http_service" <in >o 2>e) &
	local pid=$!
	exec 7>in
	for _ in $(seq 100); do [ -s "out/bash.$pid.http" ] && break; sleep 0.05; done
	local first
	first=$(cat "out/bash.$pid.http") || fail "bash did not serve: $(cat e)" || return 1
	[ "$(curl -s "http://$first/debug/pprof/cmdline" | tr '\0' ' ')" = "bash -c read line; exec $PROGS/http_service" ] ||
		fail "bash's cmdline" || return 1
	echo go >&7
	for _ in $(seq 100); do grep -q ready o 2>/dev/null && [ -s "out/http_service.$pid.http" ] && break; sleep 0.05; done
	local second
	second=$(cat "out/http_service.$pid.http") || fail "the exec'd program did not serve: $(cat e)" || return 1
	[ "$(curl -s "http://$second/debug/pprof/cmdline" | tr '\0' ' ')" = "$PROGS/http_service" ] ||
		fail "exec'd cmdline" || return 1
	[ "$(status "http://$first/debug/pprof/cmdline")" = 000 ] || fail "the old image's socket still answers" || return 1
	exec 7>&-
	wait $pid || fail "exit $?" || return 1
	# A forked child (heap_fork forks and the child exits) serves nothing.
	run_profiled out2 CPROF_HTTP=:0 -- "$PROGS/heap_fork" >fo 2>e2 || fail "heap_fork exit $?" || return 1
	local child
	child=$(sed -n 's/^child \([0-9]*\) exited.*/\1/p' fo)
	[ -n "$child" ] || fail "no child pid: $(cat fo)" || return 1
	[ ! -e "out2/heap_fork.$child.http" ] || fail "the forked child serves" || return 1
	[ "$(grep -c 'serving /debug/pprof/' e2)" -le 1 ] || fail "serving lines: $(cat e2)" || return 1
}

# CPROF_CPU=on-demand: no CPU timer runs until a window asks (a dump
# before it has no CPU sample although the service burnt 1 s); a 2 s window
# holds that window's CPU (the process's utime+stime over it, within 15%);
# after the window closes the timers stop (a later cumulative dump, taken
# after 1.5 s more of spinning, holds no more than the window did, +10%).
test_http_cpu_on_demand() {
	http_start svc CPROF_CPU=on-demand -- || return 1
	svc_do svc "spin 1000" || return 1
	kill -USR2 "$SVC_PID"
	local first
	for _ in $(seq 100); do
		first=$(profile_of svc cpu)
		[ -n "$first" ] && break
		sleep 0.05
	done
	[ -n "$first" ] || fail "no dump after SIGUSR2" || return 1
	local before_window
	before_window=$(cprof_total "$first" cpu)
	echo "before any window: $before_window ns of CPU in the profile, after 1 s of spin"
	[ "${before_window:-0}" -eq 0 ] || fail "on-demand sampled before any window" || return 1

	echo "spin 6000" >&7
	sleep 0.2
	local before after
	before=$(cpu_ns "$SVC_PID")
	curl -s -o win.pb.gz "http://$ADDR/debug/pprof/profile?seconds=2" || fail "curl $?" || return 1
	after=$(cpu_ns "$SVC_PID")
	local total truth
	total=$(cprof_total win.pb.gz cpu)
	truth=$((after - before))
	echo "window: $total ns, /proc $truth ns"
	within "$total" "$truth" 15 || fail "window $total ns vs /proc $truth ns" || return 1
	pprof_top win.pb.gz | grep -q spin_phase || fail "pprof: no spin_phase in the window" || return 1

	sleep 1.5
	kill -USR2 "$SVC_PID"
	local n last
	for _ in $(seq 100); do
		n=$(ls svc/*.cpu.pb.gz 2>/dev/null | wc -l)
		[ "$n" -ge 2 ] && break
		sleep 0.05
	done
	last=$(profile_of svc cpu)
	local cumulative
	cumulative=$(cprof_total "$last" cpu)
	echo "cumulative after the window and 1.5 s more: $cumulative ns"
	[ "$cumulative" -le $((total * 11 / 10 + 20000000)) ] ||
		fail "the timers ran on after the window: $cumulative ns against the window's $total" ||
		return 1
	[ "$cumulative" -gt 0 ] || fail "the window's samples are not in the cumulative dump" || return 1
	svc_stop || fail "service exit $?" || return 1
}

# The endpoint's thread never keeps a process alive either: main calls
# pthread_exit and the workers end, with CPROF_HTTP serving; the process
# ends with exit 0 (glibc's, from the last thread) as unprofiled, the
# profile written.
test_http_main_pthread_exit_ends() {
	"$PROGS/main_pthread_exit" >expected || fail "unprofiled exit $?" || return 1
	timeout -s KILL 20 env CPROF_OUT=prof CPROF_HTTP=127.0.0.1:0 LD_PRELOAD="$SHIM" \
		"$PROGS/main_pthread_exit" >out 2>err
	local rc=$?
	echo "exit $rc; stderr: $(cat err)"
	[ "$rc" -eq 0 ] || fail "exit status $rc, want 0 (137: still alive after 20 s)" || return 1
	cmp -s expected out || fail "output: $(cat out)" || return 1
	[ -n "$(profile_of prof cpu)" ] || fail "no final profile" || return 1
}
