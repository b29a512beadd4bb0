# End-to-end tests of the cprof command (issue 5): `cprof run` (the
# environment it gives, signals, exit statuses, finding the shim),
# `cprof diff` on synthetic profiles with known shares (thresholds, the
# noise band, --min-share, --cum, markdown, exit codes), bad input for
# every subcommand, the README's worked CI example, and the demo with its
# four planted problems. Sourced by tests/run.sh; each test_* runs in its
# own empty directory with the helpers defined there.
#
# Synthetic profiles come from build/progs/cli_synth (STACK=VALUE, leaf
# first); the CI example runs build/progs/cli_bench.

SYNTH=$PROGS/cli_synth

# one_line_error FILE NAME: FILE (a command's stderr) is exactly one line,
# "cprof: NAME: <problem>".
one_line_error() {
	local lines
	lines=$(wc -l <"$1")
	[ "$lines" -eq 1 ] || fail "want one stderr line, got $lines: $(head -3 "$1")" || return 1
	grep -q "^cprof: $2: ." "$1" || fail "stderr does not name $2: $(cat "$1")" || return 1
}

# diff_status BASE... NEW [OPTIONS]: prints cprof diff's exit status; its
# output goes to ./diff.out and ./diff.err.
diff_status() {
	"$CPROF" diff "$@" >diff.out 2>diff.err
	echo $?
}

# ---- cprof run -----------------------------------------------------------

# The child gets LD_PRELOAD with the shim first and the old value after,
# CPROF_* from the flags and CPROF_OUT absolute; cprof's own environment
# keeps the old LD_PRELOAD only (cprof is not profiled); CMD's exit status
# comes back; one stderr line.
test_cli_run_environment_and_status() {
	local libm=/lib/x86_64-linux-gnu/libm.so.6
	[ -f "$libm" ] || libm=$(ldconfig -p | awk '/libm.so.6 / { print $NF; exit }')
	LD_PRELOAD=$libm "$CPROF" run -o out --hz 250 -p cpu --signal USR1 -- sh -c '
		echo "preload=$LD_PRELOAD"
		echo "out=$CPROF_OUT hz=$CPROF_CPU_HZ profiles=$CPROF_PROFILES signal=$CPROF_SIGNAL"
		echo "parent_preload=$(tr "\0" "\n" </proc/$PPID/environ | sed -n "s/^LD_PRELOAD=//p")"
		exit 7' >stdout 2>stderr
	local rc=$?
	cat stdout stderr
	[ "$rc" -eq 7 ] || fail "exit status $rc, want 7" || return 1
	grep -qx "preload=$SHIM:$libm" stdout || fail "LD_PRELOAD is not shim:old" || return 1
	grep -qx "out=$PWD/out hz=250 profiles=cpu signal=USR1" stdout || fail "settings" || return 1
	grep -qx "parent_preload=$libm" stdout || fail "cprof's own environment has the shim" || return 1
	[ "$(grep -c . stderr)" -eq 1 ] || fail "want one stderr line" || return 1
	# sh, tr and sed run a millisecond or two each: at 250 Hz each has a
	# fair chance of a CPU sample (its timer's first expiry falls inside
	# its CPU time, counted at its exit), and a process with a sample
	# writes its profile; the line names them, or says there are none.
	grep -qE '^cprof: (no profiles in out |[0-9]+ profiles? in out: )' stderr ||
		fail "line: $(cat stderr)" || return 1
	[ -d out ] || fail "out/ not made" || return 1
	# Without an old LD_PRELOAD: the shim alone; a nested run adds it once.
	env -u LD_PRELOAD "$CPROF" run -q -p none -- "$CPROF" run -q -- sh -c 'echo "$LD_PRELOAD"' >nested ||
		fail "nested run failed" || return 1
	[ "$(cat nested)" = "$SHIM" ] || fail "nested LD_PRELOAD: $(cat nested)" || return 1
}

# The profiles are the program's, listed on the one line; none of cprof's.
test_cli_run_writes_and_names_profiles() {
	touch out-before
	mkdir -p out
	"$PROGS/cli_synth" out/old.1.0000.cpu.pb.gz "a=1" # already there: not listed
	"$CPROF" run -o out --hz 1000 -p cpu -- "$PROGS/cpu_split" 30 >stdout 2>stderr ||
		fail "exit $?: $(cat stderr)" || return 1
	cat stderr
	local file
	file=$(ls out/cpu_split.*.cpu.pb.gz)
	[ -n "$file" ] || fail "no profile: $(ls out)" || return 1
	local line
	line=$(grep '^cprof: ' stderr)
	[ "$line" = "cprof: 1 profile in out: $(basename "$file")" ] || fail "line: $line" || return 1
	local heavy
	heavy=$(cprof_value "$file" work_heavy)
	echo "work_heavy: $heavy ns"
	[ "$heavy" -gt 50000000 ] || fail "work_heavy has $heavy ns" || return 1
	ls out ./*.pb.gz 2>/dev/null | grep -q '^cprof\.' && fail "cprof profiled itself: $(ls out)" && return 1
	# Default directory: $CPROF_OUT, else the working directory.
	(cd out && "$CPROF" run -p cpu -- "$PROGS/cpu_split" 5 >/dev/null 2>../stderr2) ||
		fail "run in out/ failed" || return 1
	grep -q "^cprof: 1 profile in $PWD/out: cpu_split\." stderr2 || fail "$(cat stderr2)" || return 1
	CPROF_OUT=env-out "$CPROF" run -p cpu -- "$PROGS/cpu_split" 5 >/dev/null 2>stderr3 ||
		fail "run with CPROF_OUT failed" || return 1
	grep -q "^cprof: 1 profile in env-out: cpu_split\." stderr3 || fail "$(cat stderr3)" || return 1
}

# Signals reach CMD: the dump signal gets a mid-run dump; SIGTERM and
# SIGHUP end it and cprof ends the same way (128 + N in the shell);
# SIGUSR1 reaches a handler of CMD's own.
test_cli_run_forwards_signals() {
	"$CPROF" run -o out -p cpu -- "$PROGS/busy_until_signal" >out.txt 2>err.txt &
	local pid=$!
	for _ in $(seq 50); do grep -q ready out.txt 2>/dev/null && break; sleep 0.1; done
	sleep 0.3
	kill -USR2 "$pid"
	for _ in $(seq 50); do ls out/*.cpu.pb.gz >/dev/null 2>&1 && break; sleep 0.1; done
	local mid
	mid=$(ls out/*.cpu.pb.gz 2>/dev/null | wc -l)
	[ "$mid" -eq 1 ] || fail "SIGUSR2 to cprof gave $mid dumps while running" || return 1
	kill -TERM "$pid"
	wait "$pid"
	local rc=$?
	[ "$rc" -eq 143 ] || fail "exit status $rc after SIGTERM, want 143" || return 1
	local n
	n=$(ls out/*.cpu.pb.gz | wc -l)
	[ "$n" -eq 2 ] || fail "want the mid-run and the final dump, got $n" || return 1
	grep -q '^cprof: 2 profiles in out: busy_until_signal\.' err.txt || fail "$(cat err.txt)" || return 1

	"$CPROF" run -q -p none -- "$PROGS/busy_until_signal" >out2.txt 2>/dev/null &
	pid=$!
	for _ in $(seq 50); do grep -q ready out2.txt 2>/dev/null && break; sleep 0.1; done
	kill -HUP "$pid"
	wait "$pid"
	rc=$?
	[ "$rc" -eq 129 ] || fail "exit status $rc after SIGHUP, want 129" || return 1

	"$CPROF" run -q -p none -- sh -c 'trap "echo got-usr1; exit 5" USR1; echo ready;
		while :; do sleep 0.05; done' >out3.txt 2>/dev/null &
	pid=$!
	for _ in $(seq 50); do grep -q ready out3.txt 2>/dev/null && break; sleep 0.1; done
	kill -USR1 "$pid"
	wait "$pid"
	rc=$?
	[ "$rc" -eq 5 ] && grep -q got-usr1 out3.txt || fail "USR1: exit $rc, $(cat out3.txt)" || return 1
}

# Usage errors exit 2 with one line, before running anything; a command
# that is not found exits 127, one that cannot run 126.
test_cli_run_errors() {
	local rc
	"$CPROF" run >out 2>err; rc=$?
	[ "$rc" -eq 2 ] && grep -q 'no command to run' err || fail "no CMD: $rc $(cat err)" || return 1
	for bad in "--hz 0" "--hz 10001" "--hz abc" "-p cpu,disk" "--signal KILL" \
		"--stacks 12" "--heap-rate -1" "--bogus 1"; do
		# shellcheck disable=SC2086
		"$CPROF" run $bad -- touch ran >out 2>err; rc=$?
		[ "$rc" -eq 2 ] || fail "$bad: exit $rc, want 2" || return 1
		[ "$(wc -l <err)" -eq 1 ] && grep -q '^cprof: run: ' err || fail "$bad: $(cat err)" || return 1
		[ ! -e ran ] || fail "$bad: the command ran" || return 1
	done
	"$CPROF" run -o /proc/no-such-dir -- touch ran >out 2>err; rc=$?
	[ "$rc" -eq 2 ] && [ ! -e ran ] || fail "bad -o: exit $rc" || return 1
	grep -q '/proc/no-such-dir' err || fail "bad -o: $(cat err)" || return 1
	"$CPROF" run -- no-such-command-cprof >out 2>err; rc=$?
	[ "$rc" -eq 127 ] || fail "not found: exit $rc, want 127" || return 1
	[ "$(cat err)" = "cprof: run: no-such-command-cprof: No such file or directory" ] ||
		fail "not found: $(cat err)" || return 1
	printf '#!/bin/sh\necho hi\n' >not-executable
	"$CPROF" run -- ./not-executable >out 2>err; rc=$?
	[ "$rc" -eq 126 ] && grep -q 'Permission denied' err || fail "not executable: $rc $(cat err)" || return 1
	# CMD's own options are its own: options end at CMD.
	"$CPROF" run -q -p none echo -o x --hz y >out 2>err || fail "echo: exit $?" || return 1
	[ "$(cat out)" = "-o x --hz y" ] || fail "CMD's options: $(cat out)" || return 1
}

# Installed as <prefix>/bin/cprof, it uses <prefix>/lib/libcprof.so; alone,
# it says where it looked; --lib picks one.
test_cli_run_finds_the_shim() {
	mkdir -p inst/bin inst/lib lone/bin
	cp "$CPROF" inst/bin/cprof
	cp "$SHIM" inst/lib/libcprof.so
	cp "$CPROF" lone/bin/cprof
	inst/bin/cprof run -q -- sh -c 'echo "$LD_PRELOAD"' >out 2>err || fail "installed: $(cat err)" || return 1
	[ "$(cat out)" = "$PWD/inst/lib/libcprof.so" ] || fail "installed: LD_PRELOAD=$(cat out)" || return 1
	lone/bin/cprof run -- true >out 2>err
	local rc=$?
	[ "$rc" -eq 2 ] || fail "alone: exit $rc, want 2" || return 1
	[ "$(wc -l <err)" -eq 1 ] && grep -q 'cannot find libcprof.so (looked in .*lone/bin' err ||
		fail "alone: $(cat err)" || return 1
	lone/bin/cprof run -q --lib inst/lib/libcprof.so -- sh -c 'echo "$LD_PRELOAD"' >out 2>err ||
		fail "--lib: $(cat err)" || return 1
	[ "$(cat out)" = "$PWD/inst/lib/libcprof.so" ] || fail "--lib: $(cat out)" || return 1
}

# ---- cprof diff on synthetic profiles --------------------------------------

# Known shares: run length does not matter; a share growing by more than
# the threshold fails and is named; figures as computed by hand.
test_cli_diff_thresholds() {
	"$SYNTH" base.pb "parse;main=300" "hash;main=600" "main=100"
	"$SYNTH" longer.pb "parse;main=600" "hash;main=1200" "main=200"
	"$SYNTH" grown.pb "parse;main=450" "hash;main=450" "main=100"
	gzip -k grown.pb # gzipped and plain read alike
	local rc
	rc=$(diff_status base.pb longer.pb)
	cat diff.out
	# Twice as long is twice the total: the totals gate (default 5%) fails it...
	[ "$rc" -eq 1 ] || fail "same mix, twice as long: exit $rc, want 1 (total +100%)" || return 1
	grep -qE '^ +60\.00% +60\.00% +0 +600ns +1\.20us  hash$' diff.out || fail "hash row" || return 1
	grep -qx 'FAIL: total grew +100.0%, more than 5%' diff.out || fail "FAIL line: $(tail -1 diff.out)" || return 1
	# ...unless the runs say how much work they did, or the gate is off.
	[ "$(diff_status base.pb longer.pb --per 1,2)" -eq 0 ] || fail "--per 1,2: $(tail -1 diff.out)" || return 1
	grep -q '^Total per unit of work: base 1us, new 1us (+0.0%)$' diff.out || fail "--per total line" || return 1
	grep -qx "PASS: no function's share grew more than 5 points; total +0.0% (limit +5%)" diff.out ||
		fail "--per PASS line: $(tail -1 diff.out)" || return 1
	[ "$(diff_status base.pb longer.pb --max-total-growth off)" -eq 0 ] || fail "gate off" || return 1
	grep -q '^PASS: ' diff.out || fail "no PASS line" || return 1

	rc=$(diff_status base.pb grown.pb.gz)
	cat diff.out
	[ "$rc" -eq 1 ] || fail "parse +15 points: exit $rc, want 1" || return 1
	grep -qE '^ +30\.00% +45\.00% +\+15\.00 +300ns +450ns  parse   <- REGRESSION \(\+15\.00 points\)$' diff.out ||
		fail "parse row" || return 1
	grep -qx "FAIL: 1 function's share grew more than 5 points: parse (+15.00 points)" diff.out ||
		fail "FAIL line" || return 1
	grep -q 'Total: base 1us, new 1us (+0.0%)' diff.out || fail "totals" || return 1
	[ "$(diff_status base.pb grown.pb --threshold 14.9)" -eq 1 ] || fail "threshold 14.9" || return 1
	[ "$(diff_status base.pb grown.pb --threshold 15)" -eq 0 ] || fail "threshold 15 (not more than)" || return 1
	[ "$(diff_status base.pb grown.pb --threshold 20%)" -eq 0 ] || fail "threshold 20%" || return 1
	# The other way: parse shrank, hash grew by 15.
	[ "$(diff_status grown.pb base.pb)" -eq 1 ] && grep -q 'FAIL: .* hash (+15.00 points)' diff.out ||
		fail "reverse: $(tail -1 diff.out)" || return 1
	[ ! -s diff.err ] || fail "stderr: $(cat diff.err)" || return 1
}

# Several BASE runs set the band: hash at 20, 30 and 20 percent; NEW at
# 34 is 4 points above the band (passes at 5, fails at 3); against the
# first run alone it is 14 above (fails).
test_cli_diff_noise_band() {
	"$SYNTH" b1.pb "hash=20" "rest=80"
	"$SYNTH" b2.pb "hash=30" "rest=70"
	"$SYNTH" b3.pb "hash=100" "rest=300" "gc=100"
	"$SYNTH" new.pb "hash=34" "rest=50" "gc=16"
	local rc
	rc=$(diff_status b1.pb b2.pb b3.pb new.pb)
	cat diff.out
	[ "$rc" -eq 0 ] || fail "inside band + threshold: exit $rc" || return 1
	grep -qE '^ +23\.33% +20\.00%-30\.00% +34\.00% +\+10\.67 +50ns +34ns  hash$' diff.out ||
		fail "hash row" || return 1
	grep -qE '^ +6\.67% +0\.00%-20\.00% +16\.00% .* gc$' diff.out || fail "gc row (absent = 0)" || return 1
	grep -q '^Base: 3 runs: b1.pb b2.pb b3.pb$' diff.out || fail "header" || return 1
	grep -qx 'PASS: no function'"'"'s share grew more than 5 points above its band (largest: hash +4.00); total -80.0% against the highest base run (limit +5%)' diff.out ||
		fail "PASS line: $(tail -1 diff.out)" || return 1
	[ "$(diff_status b1.pb b2.pb b3.pb new.pb --threshold 3)" -eq 1 ] || fail "threshold 3" || return 1
	grep -q 'FAIL: .*hash (+4.00 points)' diff.out || fail "FAIL line: $(tail -1 diff.out)" || return 1
	[ "$(diff_status b1.pb new.pb)" -eq 1 ] || fail "one BASE: no band" || return 1
	grep -q 'hash (+14.00 points)' diff.out || fail "one BASE: $(tail -1 diff.out)" || return 1
}

# --min-share, --cum, -n, -t and units, and markdown.
test_cli_diff_options_and_markdown() {
	"$SYNTH" base.pb "tiny=1" "leaf;caller;main=200" "other;main=799"
	"$SYNTH" new.pb "tiny=8" "leaf;caller;main=500" "other;main=492"
	# tiny: 0.1% -> 0.8%, under the default --min-share of 1: left out.
	[ "$(diff_status base.pb new.pb --threshold 0.5 -n 0)" -eq 1 ] || fail "leaf must fail" || return 1
	grep -q ' tiny' diff.out && fail "tiny shown under --min-share 1" && return 1
	grep -q 'FAIL: 1 function' diff.out || fail "$(tail -1 diff.out)" || return 1
	[ "$(diff_status base.pb new.pb --threshold 0.5 --min-share 0.5 -n 0)" -eq 1 ] || return 1
	grep -q 'FAIL: 2 functions'"'"' share .*leaf (+30.00 points), tiny (+0.70 points)' diff.out ||
		fail "min-share 0.5: $(tail -1 diff.out)" || return 1
	# flat: caller has no flat value; --cum: caller and leaf grew, main did not.
	diff_status base.pb new.pb >/dev/null
	grep -q ' caller' diff.out && fail "caller has a flat row" && return 1
	[ "$(diff_status base.pb new.pb --cum)" -eq 1 ] || fail "--cum" || return 1
	grep -q 'Type: cpu, cum value' diff.out || fail "--cum not said" || return 1
	grep -q 'FAIL: 2 functions'"'"' cum share .*caller (+30.00 points), leaf (+30.00 points)' diff.out ||
		fail "--cum: $(tail -1 diff.out)" || return 1
	grep -qE '^ +99\.90% +99\.20% +-0\.70 +999ns +992ns  main$' diff.out || fail "--cum main" || return 1
	# -n 1: the biggest mover, and every regression besides.
	diff_status base.pb new.pb -n 1 --threshold 50 >/dev/null
	[ "$(grep -c '%  ' diff.out)" -eq 1 ] && grep -qE '^ +79\.90% .*  other$' diff.out ||
		fail "-n 1: $(cat diff.out)" || return 1
	grep -qx '(1 more function moved less)' diff.out || fail "-n 1: no note of the rest" || return 1
	diff_status base.pb new.pb -n 1 >/dev/null
	[ "$(grep -c '%  ' diff.out)" -eq 2 ] && grep -q '  leaf   <- REGRESSION' diff.out ||
		fail "-n 1 with a regression: $(cat diff.out)" || return 1
	# markdown
	[ "$(diff_status base.pb new.pb --format md)" -eq 1 ] || fail "md exit" || return 1
	cat diff.out
	head -1 diff.out | grep -qx '### cprof diff: regression' || fail "md title" || return 1
	grep -qx '| function | base | new | change | verdict | base value | new value |' diff.out ||
		fail "md header" || return 1
	grep -qx '| `leaf` | 20.00% | 50.00% | +30.00 | \*\*regression\*\* | 200ns | 500ns |' diff.out ||
		fail "md leaf row" || return 1
	grep -q '^\*\*FAIL\*\*: 1 function'"'"'s share .*`leaf` (+30.00 points)$' diff.out || fail "md FAIL" || return 1
	# Units of other kinds: bytes and counts, by -t.
	"$SYNTH" -t inuse_space/bytes h1.pb "load=1048576" "leak=0"
	"$SYNTH" -t inuse_space/bytes h2.pb "load=1048576" "leak=3145728"
	[ "$(diff_status h1.pb h2.pb -t inuse_space)" -eq 1 ] || fail "heap diff" || return 1
	grep -qE '^ +0\.00% +75\.00% +\+75\.00 +0 +3MB  leak' diff.out || fail "heap row: $(cat diff.out)" || return 1
	"$CPROF" top h2.pb | grep -qE '^ +3MB 75\.00% 75\.00% +3MB 75\.00%  leak$' || fail "top in MB" || return 1
	"$SYNTH" -t contentions/count m.pb "lock_a=3" "lock_b=1"
	"$CPROF" top m.pb | grep -qE '^ +3 75\.00% 75\.00% +3 75\.00%  lock_a$' || fail "top counts" || return 1
}

# Unusable input to diff: exit 2, one line naming the file.
test_cli_diff_unusable_input() {
	"$SYNTH" cpu.pb "a=1"
	"$SYNTH" -t cpu/microseconds us.pb "a=1"
	"$SYNTH" -t inuse_space/bytes heap.pb "a=1"
	[ "$(diff_status cpu.pb)" -eq 2 ] && grep -q 'want BASE... NEW, got 1 file' diff.err || fail "one file" || return 1
	[ "$(diff_status cpu.pb heap.pb)" -eq 2 ] || fail "different types: exit not 2" || return 1
	one_line_error diff.err cpu.pb || return 1
	grep -q 'no sample type "inuse_space" (have: cpu)' diff.err || fail "$(cat diff.err)" || return 1
	[ "$(diff_status us.pb cpu.pb)" -eq 2 ] || fail "different units: exit not 2" || return 1
	one_line_error diff.err us.pb || return 1
	[ "$(diff_status cpu.pb cpu.pb -t alloc_space)" -eq 2 ] || fail "-t missing" || return 1
	one_line_error diff.err cpu.pb || return 1
	for bad in "--threshold -1" "--threshold x" "--min-share 101" "--format html" "-n -2"; do
		# shellcheck disable=SC2086
		[ "$(diff_status cpu.pb cpu.pb $bad)" -eq 2 ] || fail "$bad: not 2" || return 1
		[ "$(wc -l <diff.err)" -eq 1 ] && grep -q '^cprof: diff: ' diff.err || fail "$bad: $(cat diff.err)" || return 1
	done
}

# ---- bad input, every subcommand ------------------------------------------

# Missing, empty, truncated, not gzip, corrupt gzip, corrupt protobuf, a
# dangling reference, a directory, a huge file and a gzip bomb: every
# subcommand exits 2 with one line naming the file, within 20 s and 1.5 GB
# of address space.
test_cli_bad_input_every_subcommand() {
	"$SYNTH" good.pb "parse;main=30" "main=10"
	run_profiled prof CPROF_PROFILES=cpu CPROF_CPU_HZ=1000 -- "$PROGS/cpu_split" 10 >/dev/null 2>&1
	local real
	real=$(profile_of prof cpu)
	local size
	size=$(stat -c %s "$real")
	head -c $((size / 2)) "$real" >truncated.pb.gz
	echo "this is not a profile" >text.pb.gz
	cp "$real" corrupt.pb.gz
	# The gzip trailer's CRC-32, wrong: the data inflates, the check fails.
	printf '\xde\xad\xbe\xef' | dd of=corrupt.pb.gz bs=1 seek=$((size - 8)) conv=notrunc 2>/dev/null
	printf '\x0a\xff\xff\xff\xff\x0f\x01\x02' >corrupt.pb
	"$SYNTH" --dangling dangling.pb "a=1"
	: >empty.pb.gz
	mkdir directory.pb.gz
	printf '\x1f\x8b' >huge.pb.gz
	truncate -s 300M huge.pb.gz
	head -c 300M /dev/zero | gzip -1 >bomb.pb.gz
	local expect=(
		"missing.pb.gz:No such file or directory"
		"empty.pb.gz:empty file"
		"truncated.pb.gz:truncated gzip data"
		"text.pb.gz:not gzip or protobuf"
		"corrupt.pb.gz:corrupt gzip data"
		"corrupt.pb:corrupt protobuf"
		"dangling.pb:refers to location 999, which does not exist"
		"directory.pb.gz:no profiles"
		"huge.pb.gz:too large"
		"bomb.pb.gz:decompressed size exceeds the limit"
	)
	local item file problem rc
	for item in "${expect[@]}"; do
		file=${item%%:*}
		problem=${item#*:}
		for cmd in "top $file" "raw $file" "diff $file good.pb" "diff good.pb good.pb $file" \
			"diff --cum good.pb $file"; do
			# shellcheck disable=SC2086
			(ulimit -v 1500000; timeout 20 "$CPROF" $cmd) >out 2>err
			rc=$?
			[ "$rc" -eq 2 ] || fail "cprof $cmd: exit $rc, want 2 (124: hung)" || return 1
			one_line_error err "$file" || { echo "cprof $cmd"; return 1; }
			grep -q "$problem" err || fail "cprof $cmd: $(cat err), want \"$problem\"" || return 1
		done
	done
	echo "10 bad files x 5 commands: exit 2, one line each"
}

# ---- the README's worked CI example ------------------------------------------

# ci_suite DIR [BENCH ARGS]: the README's test suite (three processes of
# the benchmark) under cprof run, its profiles in DIR.
ci_suite() {
	local dir=$1
	shift
	printf '%s\n' '# ci/suite.sh: the test suite, three processes' \
		"\"$PROGS/cli_bench\" --units 1 \"\$@\"" \
		"\"$PROGS/cli_bench\" --units 1 \"\$@\"" \
		"\"$PROGS/cli_bench\" --units 2 \"\$@\"" >suite.sh
	"$CPROF" run -q -o "$dir" -p cpu --hz 1000 -- sh suite.sh "$@" >/dev/null
}

# ci_gate NEW: the README's ci/profile-gate.sh with prof/NEW as the change:
# merged profiles and the flame graph into artifacts/NEW, the markdown
# summary into NEW.md, diff's exit status.
ci_gate() {
	mkdir -p "artifacts/$1"
	"$CPROF" merge -o "artifacts/$1/base.cpu.pb.gz" prof/base1 prof/base2 prof/base3 2>/dev/null &&
		"$CPROF" merge -o "artifacts/$1/new.cpu.pb.gz" "prof/$1" 2>/dev/null &&
		"$CPROF" flame "prof/$1" --base prof/base1 prof/base2 prof/base3 -o "artifacts/$1/profile.svg" ||
		return 2
	"$CPROF" diff --format md prof/base1 prof/base2 prof/base3 "prof/$1" >"$1.md"
}

# ci_suite_total DIR: the CPU time (ns) of a suite run's profiles.
ci_suite_total() {
	local f sum=0
	for f in "$1"/*.cpu.pb.gz; do sum=$((sum + $(cprof_total "$f"))); done
	echo "$sum"
}

# As in the README: three BASE runs of the suite set the noise band, one
# run of the change is judged against them on both gates, the markdown
# goes to the summary, the merged profiles and the flame graph are the
# artifacts. An unchanged suite passes; hash_records slowed 3x fails on
# its share (and the total); every stage 20% slower moves no share, and
# only the totals gate catches it.
#
# The runs alternate with the base runs, so that a drift of the machine's
# pace over the seconds they take moves both sides. The totals gate fails
# a change whose total is more than 5% over the highest base run's; the
# uniform change's premise is that its run is slower by about 20%, and a
# machine whose pace moves by more than 15% between two runs can undo
# that (a fresh chroot: base runs of 667 to 745 ms, then the slowed run
# at 775, +4.0%). So when the slowed run did not come out more than 5%
# over the highest base, it is run again, twice at most, and the test
# says which try it judged.
test_cli_ci_example() {
	local i rc
	ci_suite prof/base1 || fail "base run 1: exit $?" || return 1
	ci_suite prof/same || return 1
	ci_suite prof/base2 || fail "base run 2: exit $?" || return 1
	ci_suite prof/slow --slow hash_records || return 1
	ci_suite prof/base3 || fail "base run 3: exit $?" || return 1
	local try highest=0 t
	for i in 1 2 3; do
		t=$(ci_suite_total "prof/base$i")
		((t > highest)) && highest=$t
	done
	for try in 1 2 3; do
		rm -rf prof/uniform
		ci_suite prof/uniform --slower 20 || return 1
		t=$(ci_suite_total prof/uniform)
		echo "uniform try $try: total $t ns, highest base $highest ns"
		((t * 100 > highest * 105)) && break
	done
	[ "$(ls prof/base1/*.cpu.pb.gz | wc -l)" -eq 3 ] || fail "want 3 profiles per run: $(ls prof/base1)" || return 1

	ci_gate same
	rc=$?
	cat same.md
	[ "$rc" -eq 0 ] || fail "unchanged suite: exit $rc, want 0" || return 1
	grep -q '^\*\*PASS\*\*: ' same.md || fail "no PASS line" || return 1
	grep -q '^Base: 3 runs: `prof/base1` (3 files), `prof/base2` (3 files), `prof/base3` (3 files)  $' same.md ||
		fail "Base line" || return 1

	ci_gate slow
	rc=$?
	cat slow.md
	[ "$rc" -eq 1 ] || fail "slowed hash_records: exit $rc, want 1" || return 1
	grep -q "^\*\*FAIL\*\*: total grew .*; 1 function's share grew more than 5 points above the band: \`hash_records\`" slow.md ||
		fail "FAIL line does not name the total and hash_records only" || return 1
	# The figures: 30% of the work before; 90/160 = 56.25% after; total 160/100.
	local base new total
	base=$(awk -F'|' '$2 ~ /hash_records/ { sub(/%.*/, "", $3); print $3 + 0 }' slow.md)
	new=$(awk -F'|' '$2 ~ /hash_records/ { sub(/%.*/, "", $4); print $4 + 0 }' slow.md)
	total=$(awk -F'|' '$2 ~ /total/ { sub(/%.*/, "", $5); print $5 + 0 }' slow.md)
	echo "hash_records: base $base%, new $new%; total $total%"
	near "$base" 30 3 || fail "base share $base, want 30 +- 3" || return 1
	near "$new" 56.25 4 || fail "new share $new, want 56.25 +- 4" || return 1
	# CPU time, not work: a machine's speed drifts between runs minutes
	# apart (CI: +26.6% for a 20% slowdown; a fresh chroot: +75.6% for
	# this 60%), so the totals' bands are wide; the shares above are
	# ratios within one run and stay tight.
	near "$total" 60 30 || fail "total +$total%, want +60 +- 30" || return 1

	ci_gate uniform
	rc=$?
	cat uniform.md
	[ "$rc" -eq 1 ] || fail "uniformly slower: exit $rc, want 1" || return 1
	grep -q '^\*\*FAIL\*\*: total grew +[0-9.]*% above the highest base run, more than 5%$' uniform.md ||
		fail "FAIL line: $(tail -1 uniform.md)" || return 1
	total=$(awk -F'|' '$2 ~ /total/ { sub(/%.*/, "", $5); print $5 + 0 }' uniform.md)
	echo "uniform: total $total%"
	near "$total" 20 12 || fail "total +$total%, want +20 +- 12" || return 1
	"$CPROF" diff --max-total-growth off prof/base1 prof/base2 prof/base3 prof/uniform >shares-only.txt
	rc=$?
	tail -1 shares-only.txt
	[ "$rc" -eq 0 ] || fail "the share gate alone caught the uniform slowdown: exit $rc" || return 1

	# The artifacts: merged profiles pprof reads with the same totals, and
	# flame graphs that are well-formed, hash_records red when it was slowed.
	local side sum f
	for side in same slow uniform; do
		sum=$(ci_suite_total "prof/$side")
		[ "$(cprof_total "artifacts/$side/new.cpu.pb.gz")" -eq "$sum" ] || fail "$side: merged total" || return 1
		[ "$(pprof_total_ns "artifacts/$side/new.cpu.pb.gz")" = "$sum" ] ||
			fail "$side: pprof total $(pprof_total_ns "artifacts/$side/new.cpu.pb.gz") != $sum" || return 1
		xmllint --noout "artifacts/$side/profile.svg" || fail "$side: SVG not well-formed" || return 1
	done
	sum=0
	for f in prof/base*/*.cpu.pb.gz; do sum=$((sum + $(cprof_total "$f"))); done
	[ "$(pprof_total_ns artifacts/slow/base.cpu.pb.gz)" = "$sum" ] || fail "base merge: pprof total" || return 1
	grep -q '<title>hash_records (new [^;]*; base [^;]*; +[1-9][0-9][0-9]\.[0-9]%)</title><rect [^>]*fill="rgb(220,30,30)"' \
		artifacts/slow/profile.svg || fail "slow: hash_records is not full red (+100% or more)" || return 1
}

# ---- the demo ------------------------------------------------------------------

# The profile kinds the shim collects today: a kind whose wrappers it does
# not export yet (issues 3 and 4) is skipped with a note, not failed.
shim_has() {
	nm -D --defined-only "$SHIM" 2>/dev/null | grep -qw "$1"
}

# demo_share FILE FUNCTION flat|cum: the function's share of the total, %.
# (Summed here with %.0f: mawk's printf %d stops at 2^31 - 1, 2.1 s in ns.)
demo_share() {
	"$CPROF" top --raw-values -n 0 "$1" | awk -F'\t' -v fn="$2" -v col="$3" '
		{ total += $1 }
		$3 == fn { value = (col == "flat") ? $1 : $2 }
		END { printf "%.2f\n", total ? 100 * value / total : 0 }'
}

# The demo service, planted and fixed: each profile names its planted
# problem at the top, the fixed run does not have it, and cprof diff
# (fixed as BASE) fails naming it. Heap, mutex and block are checked when
# the shim has those profiles.
test_cli_demo_four_problems() {
	gcc -std=gnu11 -g -O2 -Wall -Wextra -Werror -pthread -o service "$ROOT/demo/service.c" ||
		fail "demo does not build" || return 1
	# Every contention kept: the fixed service has only a handful, and at
	# the default 1 in 10 its run may record none (and write no file).
	"$CPROF" run -o planted --heap-rate 16384 --mutex-fraction 1 -- ./service >planted.out 2>planted.err ||
		fail "planted run: exit $?" || return 1
	"$CPROF" run -o fixed --heap-rate 16384 --mutex-fraction 1 -- ./service --fixed >fixed.out 2>fixed.err ||
		fail "fixed run: exit $?" || return 1
	cat planted.err fixed.err
	cmp -s planted.out fixed.out || fail "results differ: $(cat planted.out fixed.out)" || return 1
	grep -q '3600 records kept, 400 duplicates dropped' planted.out || fail "$(cat planted.out)" || return 1

	# kind function column min_planted max_fixed [diff options]
	# (The fixed service still builds its summaries in append_field, in
	# about 0.2 s of CPU: 200 samples at 1000 Hz, so its share there moves
	# by several points from run to run; 20% still leaves it a third of
	# the planted share, and the diff below must still fail on it.)
	local checks=(
		"cpu append_field flat 30 20"
		"heap read_record flat 40 5 malloc"
		"mutex store_result cum 50 - pthread_mutex_unlock"
		"block next_record cum 30 10 read"
	)
	local check kind fn col low high needs p f planted_share fixed_share rc opts
	for check in "${checks[@]}"; do
		read -r kind fn col low high needs <<<"$check"
		if [ -n "$needs" ] && ! shim_has "$needs"; then
			echo "SKIP $kind: the shim does not have the $kind profile yet (no $needs)"
			continue
		fi
		p=$(profile_of planted "$kind")
		f=$(profile_of fixed "$kind")
		[ -n "$p" ] && [ -n "$f" ] || fail "$kind: missing profile: $(ls planted fixed)" || return 1
		planted_share=$(demo_share "$p" "$fn" "$col")
		fixed_share=$(demo_share "$f" "$fn" "$col")
		echo "$kind: $fn $col share planted $planted_share%, fixed $fixed_share%"
		awk -v s="$planted_share" -v l="$low" 'BEGIN { exit !(s >= l) }' ||
			fail "$kind: $fn has $planted_share% when planted, want >= $low%" || return 1
		if [ "$kind" = mutex ]; then
			# The fixed service has a handful of contentions left,
			# so one of them on store_result moves its share of that
			# tiny total between 0 and 45% (seen): what was fixed is
			# the delay itself, held to under a tenth of the planted.
			local pv fv
			pv=$(cprof_value "$p" "$fn" cum delay)
			fv=$(cprof_value "$f" "$fn" cum delay)
			echo "mutex: $fn delay planted $pv ns, fixed $fv ns"
			[ "$fv" -le $((pv / 10)) ] ||
				fail "$kind: $fn has $fv ns of delay when fixed, planted $pv" || return 1
		else
			awk -v s="$fixed_share" -v h="$high" 'BEGIN { exit !(s <= h) }' ||
				fail "$kind: $fn has $fixed_share% when fixed, want <= $high%" || return 1
		fi
		if [ "$col" = flat ]; then
			"$CPROF" top -n 1 "$p" | tail -1 | grep -q " $fn\$" ||
				fail "$kind: $fn is not the top row" || return 1
		fi
		opts=()
		[ "$col" = cum ] && opts=(--cum)
		"$CPROF" diff "${opts[@]}" "$f" "$p" >"$kind.diff"
		rc=$?
		[ "$rc" -eq 1 ] || fail "$kind: diff fixed planted: exit $rc, want 1" || return 1
		grep -q "^FAIL: .* $fn (+" "$kind.diff" || fail "$kind: FAIL line: $(tail -1 "$kind.diff")" || return 1
	done
}
