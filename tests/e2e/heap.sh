# End-to-end tests of the heap profile: the figures issue 3 asserts, read
# back with our decoder (tools/cprof) and with `go tool pprof`. Sourced by
# tests/run.sh; each test_* runs in its own empty directory.
#
# Sampling is random: each test either samples every allocation
# (CPROF_HEAP_RATE=1, exact figures) or runs where the expected error is a
# third of the bound or less, with CPROF_SEED so a failure can be replayed.
# At rate R a total of T bytes in blocks smaller than R carries T/R samples
# and a relative standard deviation of about sqrt(R/T).

HEAP_LEAK_BYTES=67108864 # tests/progs/heap_leak.c
HEAP_DEFAULT_RATE=524288

# heap_profile DIR: the newest heap profile in DIR (fails the test if none).
heap_profile() {
	local f
	f=$(profile_of "$1" heap)
	[ -n "$f" ] || fail "no heap profile in $1: $(ls "$1" 2>/dev/null)" || return 1
	echo "$f"
}

# heap_pprof_value FILE SAMPLE_TYPE FUNCTION: pprof's cum for FUNCTION, in bytes
# for the space types (0 when the function is not in the profile).
heap_pprof_value() {
	local file=$1 type=$2 fn=$3 unit=()
	case $type in *_space) unit=(-unit=B) ;; esac
	pprof_top "$file" -sample_index="$type" "${unit[@]}" | awk -v fn="$fn" '
		NR > 1 && $6 != "" {
			name = $6; for (i = 7; i <= NF; i++) name = name " " $i
			if (name == fn || name == fn " (inline)") { v = $4; sub("B$", "", v); print v; found = 1; exit }
		}
		END { if (!found) print 0 }'
}

# heap_pprof_total FILE SAMPLE_TYPE: pprof's "Total samples" for the type.
heap_pprof_total() {
	local unit=()
	case $2 in *_space) unit=(-unit=B) ;; esac
	pprof_top "$1" -sample_index="$2" "${unit[@]}" |
		sed -n 's/.*Total samples = \([0-9.]*\)B\{0,1\} *$/\1/p' | head -1
}

# heap_no_negative FILE: no function has a negative flat value of any type.
heap_no_negative() {
	local t
	for t in alloc_objects alloc_space inuse_objects inuse_space; do
		"$CPROF" top --raw-values -n 0 -t "$t" "$1" | awk -F'\t' -v t="$t" '
			$1 < 0 || $2 < 0 { print "negative " t ": " $0; bad = 1 } END { exit bad }' ||
			return 1
	done
}

# 64 MiB leaked from one function in mixed sizes: inuse_space within 10% at
# rate 65536 (T/R = 1024 samples: sd 3%, measured 2.8% over 150 seeds), by
# both readers; and the profile's own facts (types, period, label).
test_heap_leak_64mib_rate_65536() {
	run_profiled prof CPROF_PROFILES=heap CPROF_HEAP_RATE=65536 CPROF_SEED=7 -- \
		"$PROGS/heap_leak" 2>err || fail "exit $?: $(cat err)" || return 1
	local file ours theirs
	file=$(heap_profile prof) || return 1
	ours=$(cprof_value "$file" leak_mixed cum inuse_space)
	theirs=$(heap_pprof_value "$file" inuse_space leak_mixed)
	echo "leak_mixed inuse_space: cprof $ours, pprof $theirs, truth $HEAP_LEAK_BYTES"
	within "$ours" "$HEAP_LEAK_BYTES" 10 || fail "cprof: $ours not within 10%" || return 1
	within "$theirs" "$HEAP_LEAK_BYTES" 10 || fail "pprof: $theirs not within 10%" || return 1
	# churn_and_free freed all it took.
	[ "$(cprof_value "$file" churn_and_free cum inuse_space)" -eq 0 ] ||
		fail "churn_and_free still has bytes in use" || return 1
	[ "$(cprof_value "$file" churn_and_free cum alloc_space)" -gt 0 ] ||
		fail "churn_and_free has no allocations" || return 1

	"$CPROF" raw "$file" >raw || fail "cprof raw failed" || return 1
	grep -q '^Sample types: alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes$' raw ||
		fail "sample types: $(grep '^Sample types' raw)" || return 1
	grep -q '^Default sample type: inuse_space$' raw || fail "default type" || return 1
	grep -q '^Period type: space/bytes$' raw || fail "period type" || return 1
	grep -q '^Period: 65536 ' raw || fail "period: $(grep '^Period:' raw)" || return 1
	grep -qE 'labels: bytes=[0-9]+ bytes' raw || fail "no bytes label" || return 1
	# pprof reads every type, and the label as a tag.
	local t
	for t in alloc_objects alloc_space inuse_objects; do
		pprof_top "$file" -sample_index="$t" | grep -q leak_mixed || fail "pprof -sample_index=$t" || return 1
	done
	go tool pprof -tags "$file" 2>/dev/null | grep -q 'bytes' || fail "pprof -tags shows no bytes" || return 1
	heap_no_negative "$file" || fail "negative values" || return 1
}

# The same program sampled at every allocation: exact (bound 1%).
test_heap_leak_64mib_rate_1() {
	run_profiled prof CPROF_PROFILES=heap CPROF_HEAP_RATE=1 -- "$PROGS/heap_leak" 2>err ||
		fail "exit $?: $(cat err)" || return 1
	local file ours theirs blocks objects
	file=$(heap_profile prof) || return 1
	ours=$(cprof_value "$file" leak_mixed cum inuse_space)
	theirs=$(heap_pprof_value "$file" inuse_space leak_mixed)
	blocks=$(sed -n 's/^leaked [0-9]* in \([0-9]*\) blocks$/\1/p' err)
	objects=$(cprof_value "$file" leak_mixed cum inuse_objects)
	echo "leak_mixed: cprof $ours B, pprof $theirs B, $objects objects; truth $HEAP_LEAK_BYTES B, $blocks blocks"
	within "$ours" "$HEAP_LEAK_BYTES" 1 || fail "cprof: $ours not within 1%" || return 1
	within "$theirs" "$HEAP_LEAK_BYTES" 1 || fail "pprof: $theirs not within 1%" || return 1
	[ "$objects" = "$blocks" ] || fail "inuse_objects $objects, want $blocks" || return 1
	"$CPROF" raw "$file" | grep -q '^Period: 1 ' || fail "period is not 1" || return 1
}

# alloc_space against a program that counts what it asks for: 2 threads,
# every entry of the malloc family, 2 GiB at the default rate (4096
# samples: sd 1.6%, bound 5%). The program frees everything, so inuse is
# under one rate's worth.
test_heap_alloc_total_and_all_freed() {
	run_profiled prof CPROF_PROFILES=heap CPROF_SEED=11 -- "$PROGS/heap_count" 1024 2>err ||
		fail "exit $?: $(cat err)" || return 1
	local file truth ours theirs inuse p_inuse
	file=$(heap_profile prof) || return 1
	truth=$(sed -n 's/^allocated_bytes \([0-9]*\) .*/\1/p' err)
	ours=$(cprof_total "$file" alloc_space)
	theirs=$(heap_pprof_total "$file" alloc_space)
	inuse=$(cprof_total "$file" inuse_space)
	p_inuse=$(heap_pprof_total "$file" inuse_space)
	echo "alloc_space: cprof $ours, pprof $theirs, counted by the program $truth;" \
		"inuse_space: cprof $inuse, pprof ${p_inuse:-0}"
	within "$ours" "$truth" 5 || fail "cprof alloc_space $ours not within 5% of $truth" || return 1
	within "$theirs" "$truth" 5 || fail "pprof alloc_space $theirs not within 5% of $truth" || return 1
	[ "$inuse" -ge 0 ] && [ "$inuse" -lt "$HEAP_DEFAULT_RATE" ] ||
		fail "inuse_space $inuse after freeing everything (want 0 .. $HEAP_DEFAULT_RATE)" || return 1
	awk -v v="${p_inuse:-0}" -v r="$HEAP_DEFAULT_RATE" 'BEGIN { exit !(v >= 0 && v < r) }' ||
		fail "pprof inuse_space $p_inuse" || return 1
	heap_no_negative "$file" || fail "negative values" || return 1
}

# Every allocation sampled, two threads allocating and freeing at once:
# each free finds its block (inuse exactly 0 where everything was freed),
# and nothing of the profiler's own (thread start, dump) is in the profile.
test_heap_every_allocation_two_threads() {
	run_profiled prof CPROF_PROFILES=heap CPROF_HEAP_RATE=1 -- "$PROGS/heap_count" 64 2>err ||
		fail "exit $?: $(cat err)" || return 1
	local file truth calls alloc objects inuse
	file=$(heap_profile prof) || return 1
	truth=$(sed -n 's/^allocated_bytes \([0-9]*\) .*/\1/p' err)
	calls=$(sed -n 's/.* calls \([0-9]*\)$/\1/p' err)
	alloc=$(cprof_value "$file" worker_main cum alloc_space)
	objects=$(cprof_value "$file" worker_main cum alloc_objects)
	inuse=$(cprof_value "$file" worker_main cum inuse_space)
	echo "worker_main: alloc_space $alloc (counted $truth), alloc_objects $objects (calls $calls), inuse $inuse"
	[ "$alloc" = "$truth" ] || fail "alloc_space $alloc, want $truth" || return 1
	[ "$objects" = "$calls" ] || fail "alloc_objects $objects, want $calls" || return 1
	[ "$inuse" = 0 ] || fail "worker_main inuse_space $inuse, want 0" || return 1
	"$CPROF" top --raw-values -n 0 -t alloc_objects "$file" >all
	if grep -E 'cprof_|thread_trampoline|dumper|protobuf|deflate|unw_|_UL|\[cprof' all; then
		fail "the profiler's own allocations are in the profile"
		return 1
	fi
	heap_no_negative "$file" || fail "negative values" || return 1
}

# CPROF_SEED: the same seed gives the same profile, another seed another.
test_heap_seed_repeatable() {
	local s
	for s in 42a 42b 43; do
		run_profiled "prof$s" CPROF_PROFILES=heap CPROF_HEAP_RATE=65536 CPROF_SEED="${s%[ab]}" -- \
			"$PROGS/heap_leak" 2>/dev/null || fail "seed $s: exit $?" || return 1
		local file
		file=$(heap_profile "prof$s") || return 1
		{
			"$CPROF" top --raw-values -n 0 -t alloc_space "$file"
			"$CPROF" top --raw-values -n 0 -t inuse_objects "$file"
		} >"values$s"
	done
	echo "seed 42: $(grep -m1 leak_mixed values42a); seed 43: $(grep -m1 leak_mixed values43)"
	cmp -s values42a values42b || { diff values42a values42b | head; fail "same seed, different profiles"; return 1; }
	cmp -s values42a values43 && fail "different seeds, same profile" && return 1
	return 0
}

# realloc moves the sample with the block, every allocation sampled.
test_heap_realloc_moves_sample() {
	run_profiled prof CPROF_PROFILES=heap CPROF_HEAP_RATE=1 -- "$PROGS/heap_realloc" 2>err ||
		fail "exit $?: $(cat err)" || return 1
	grep -q 'grow_kept moved 1' err && grep -q 'grow_freed moved 1' err &&
		grep -q 'shrink_kept moved 0' err || fail "not the moves the test needs: $(cat err)" || return 1
	local file fn want got
	file=$(heap_profile prof) || return 1
	for fn in start_small:0 grow_kept:200000 start_other:0 grow_freed:0 shrink_kept:40000 reuse_old:0; do
		want=${fn#*:}
		got=$(cprof_value "$file" "${fn%:*}" cum inuse_space)
		echo "${fn%:*} inuse_space $got (want $want)"
		[ "$got" = "$want" ] || fail "${fn%:*}: inuse_space $got, want $want" || return 1
	done
	for fn in start_small:1000 grow_kept:200000 grow_freed:300000 shrink_kept:90000 reuse_old:3000; do
		want=${fn#*:}
		got=$(cprof_value "$file" "${fn%:*}" cum alloc_space)
		[ "$got" = "$want" ] || fail "${fn%:*}: alloc_space $got, want $want" || return 1
	done
	[ "$(heap_pprof_value "$file" inuse_space grow_kept)" = 200000 ] || fail "pprof: grow_kept" || return 1
	heap_no_negative "$file" || fail "negative values" || return 1
}

# posix_memalign, aligned_alloc, memalign, valloc, pvalloc: aligned blocks,
# kept ones counted exactly, freed ones matched (inuse 0).
test_heap_aligned_allocators() {
	run_profiled prof CPROF_PROFILES=heap CPROF_HEAP_RATE=1 -- "$PROGS/heap_aligned" 2>err ||
		fail "exit $? (misaligned block?): $(cat err)" || return 1
	grep -q 'posix_memalign(3) = 22, p unchanged 1' err || fail "bad alignment: $(cat err)" || return 1
	local file fn want got
	file=$(heap_profile prof) || return 1
	for fn in kept_posix:24000 kept_aligned:65536 kept_memalign:40000 kept_valloc:56000 \
		kept_pvalloc:65536 freed_posix:0 freed_aligned:0 freed_memalign:0 freed_valloc:0; do
		want=${fn#*:}
		got=$(cprof_value "$file" "${fn%:*}" cum inuse_space)
		echo "${fn%:*} inuse_space $got (want $want)"
		[ "$got" = "$want" ] || fail "${fn%:*}: inuse_space $got, want $want" || return 1
	done
	for fn in freed_posix freed_aligned freed_memalign freed_valloc; do
		[ "$(cprof_value "$file" "$fn" cum alloc_objects)" -gt 0 ] || fail "$fn: not sampled" || return 1
	done
	[ "$(heap_pprof_value "$file" inuse_space kept_aligned)" = 65536 ] || fail "pprof: kept_aligned" || return 1
	heap_no_negative "$file" || fail "negative values" || return 1
}

# fork: the child's profile holds only what it allocated after the fork;
# its frees of the parent's blocks take nothing below zero; the parent's
# profile is untouched by the child.
test_heap_fork_child_starts_empty() {
	run_profiled prof CPROF_PROFILES=heap CPROF_HEAP_RATE=1 -- "$PROGS/heap_fork" >out 2>err ||
		fail "exit $?: $(cat err)" || return 1
	local child cfile pfile
	child=$(sed -n 's/^child \([0-9]*\) exited 0$/\1/p' out)
	[ -n "$child" ] || fail "child did not exit 0: $(cat out)" || return 1
	cfile=$(ls prof/heap_fork."$child".*.heap.pb.gz 2>/dev/null | tail -1)
	pfile=$(ls prof/heap_fork.*.heap.pb.gz | grep -v "\.$child\." | tail -1)
	[ -n "$cfile" ] && [ -n "$pfile" ] || fail "want a heap profile per process: $(ls prof)" || return 1
	local c_keep c_parent c_parent_alloc c_total p_keep p_after p_child
	c_keep=$(cprof_value "$cfile" child_keep cum inuse_space)
	c_parent=$(cprof_value "$cfile" parent_keep cum inuse_space)
	c_parent_alloc=$(cprof_value "$cfile" parent_keep cum alloc_space)
	c_total=$(cprof_total "$cfile" inuse_space)
	p_keep=$(cprof_value "$pfile" parent_keep cum inuse_space)
	p_after=$(cprof_value "$pfile" parent_after cum inuse_space)
	p_child=$(cprof_value "$pfile" child_keep cum alloc_space)
	echo "child: child_keep $c_keep, parent_keep $c_parent/$c_parent_alloc, total $c_total;" \
		"parent: parent_keep $p_keep, parent_after $p_after, child_keep $p_child"
	[ "$c_keep" = 2097152 ] || fail "child: child_keep $c_keep, want 2097152" || return 1
	[ "$c_parent" = 0 ] && [ "$c_parent_alloc" = 0 ] || fail "child has the parent's samples" || return 1
	[ "$c_total" -ge 2097152 ] || fail "child total inuse $c_total below its own" || return 1
	heap_no_negative "$cfile" || fail "child: negative values" || return 1
	[ "$p_keep" = 4194304 ] && [ "$p_after" = 1048576 ] && [ "$p_child" = 0 ] ||
		fail "parent profile wrong" || return 1
	[ "$(heap_pprof_value "$cfile" inuse_space child_keep)" = 2097152 ] || fail "pprof: child_keep" || return 1
}

# C++: operator new (libstdc++, which calls malloc) and its callers.
test_heap_cxx_operator_new() {
	run_profiled prof CPROF_PROFILES=heap CPROF_HEAP_RATE=1 -- "$PROGS/heap_cxx" 2>err ||
		fail "exit $?: $(cat err)" || return 1
	local file fn want got
	file=$(heap_profile prof) || return 1
	# new Node: 20000 x 64; new vector<int>(1000): 100 x (24 + 4000);
	# new Wide (aligned new): 100 x 512.
	for fn in build_tree:1280000 fill_vectors:402400 make_wides:51200; do
		want=${fn#*:}
		got=$(cprof_value "$file" "${fn%:*}" cum inuse_space)
		echo "${fn%:*} inuse_space $got (want $want)"
		[ "$got" = "$want" ] || fail "${fn%:*}: $got, want $want" || return 1
	done
	local new
	new=$(cprof_value "$file" "operator new" flat inuse_space)
	echo "operator new flat inuse_space $new"
	[ "$new" -ge $((1280000 + 402400 + 51200)) ] || fail "operator new holds $new" || return 1
	[ "$(cprof_value "$file" scratch_strings cum alloc_space)" -gt 0 ] &&
		[ "$(cprof_value "$file" scratch_strings cum inuse_space)" = 0 ] ||
		fail "scratch_strings: freed strings not matched" || return 1
	# pprof names operator new and shows build_tree among its callers.
	go tool pprof -peek '^operator new' -sample_index=inuse_space "$file" 2>/dev/null >peek
	grep -q 'operator new' peek && grep -q 'build_tree' peek ||
		fail "pprof -peek: $(head -20 peek)" || return 1
}

# The wrappers are transparent: same output (return values, errno,
# failures) with and without the shim, at every rate; a block malloc'd
# before the shim's constructor is freed fine; a failed realloc keeps the
# block sampled.
test_heap_transparent_errno() {
	"$PROGS/heap_errno" >want 2>want.err || fail "without shim: exit $?" || return 1
	local rate
	for rate in 1 4096 "$HEAP_DEFAULT_RATE"; do
		run_profiled "prof$rate" CPROF_HEAP_RATE="$rate" -- "$PROGS/heap_errno" >got 2>got.err ||
			fail "rate $rate: exit $?" || return 1
		cmp -s want got || { diff want got; fail "rate $rate: output differs"; return 1; }
		cmp -s want.err got.err || fail "rate $rate: stderr: $(cat got.err)" || return 1
	done
	local file
	file=$(heap_profile prof1) || return 1
	[ "$(cprof_value "$file" keep_after_failed_realloc cum inuse_space)" = 777 ] ||
		fail "keep_after_failed_realloc: want 777 in use" || return 1
	heap_no_negative "$file" || fail "negative values" || return 1
}

# A full live-sample table (CPROF_HEAP_SAMPLES=1024, 3000 blocks kept):
# no crash, every allocation still counted, the untracked ones under a
# "[cprof: dropped]" leaf, inuse never more than the table holds.
test_heap_full_live_table() {
	run_profiled prof CPROF_PROFILES=heap CPROF_HEAP_RATE=1 CPROF_HEAP_SAMPLES=1024 -- \
		"$PROGS/heap_many" 3000 10 1 2>err || fail "exit $?: $(cat err)" || return 1
	local file held dropped inuse
	file=$(heap_profile prof) || return 1
	held=$(cprof_value "$file" hold_many cum alloc_objects)
	dropped=$(cprof_value "$file" "[cprof: dropped]" flat alloc_objects)
	inuse=$(cprof_value "$file" hold_many cum inuse_objects)
	echo "hold_many: alloc_objects $held, in use $inuse; [cprof: dropped] $dropped"
	[ "$held" = 3001 ] || fail "hold_many alloc_objects $held, want 3001 (calloc + 3000)" || return 1
	[ "$dropped" -ge 1900 ] || fail "[cprof: dropped] $dropped, want >= 1900" || return 1
	[ "$inuse" -le 1024 ] && [ "$inuse" -ge 1000 ] || fail "in use $inuse, want 1000..1024" || return 1
	pprof_top "$file" -sample_index=alloc_objects | grep -q 'cprof: dropped' ||
		fail "pprof does not show [cprof: dropped]" || return 1
}

# A full stack table (CPROF_STACKS=256, 3000 distinct sizes, so 3000
# (stack, size) entries): the rest go to the [cprof: dropped] entry and
# the totals stay right; exact at rate 1, within 5% at 4096 (11000
# samples: sd 1%), where the dropped entry keeps its samples pre-scaled.
test_heap_full_stack_table() {
	local rate rounds bound
	for rate in 1:1:0 4096:10:5; do
		IFS=: read -r rate rounds bound <<<"$rate"
		run_profiled "prof$rate" CPROF_PROFILES=heap CPROF_HEAP_RATE="$rate" CPROF_STACKS=256 \
			CPROF_SEED=5 -- "$PROGS/heap_many" 10 3000 "$rounds" 2>err || fail "exit $?: $(cat err)" || return 1
		local file truth kept alloc inuse dropped
		file=$(heap_profile "prof$rate") || return 1
		truth=$(sed -n 's/^allocated_bytes \([0-9]*\) .*/\1/p' err)
		kept=$(sed -n 's/.* kept_bytes \([0-9]*\)$/\1/p' err)
		alloc=$(cprof_total "$file" alloc_space)
		inuse=$(cprof_total "$file" inuse_space)
		dropped=$(cprof_value "$file" "[cprof: dropped]" flat alloc_space)
		echo "rate $rate: alloc_space $alloc (truth $truth), inuse_space $inuse (truth $kept), dropped $dropped"
		[ "$dropped" -gt $((truth / 2)) ] || fail "rate $rate: [cprof: dropped] has $dropped" || return 1
		if [ "$bound" = 0 ]; then
			[ "$alloc" = "$truth" ] && [ "$inuse" = "$kept" ] || fail "rate 1: not exact" || return 1
		else
			within "$alloc" "$truth" "$bound" || fail "rate $rate: alloc_space off" || return 1
		fi
		heap_no_negative "$file" || fail "rate $rate: negative values" || return 1
	done
}

# The heap profile is written with the others on the dump signal:
# cumulative alloc_*, current inuse_*.
test_heap_dump_signal() {
	run_profiled prof CPROF_HEAP_RATE=1 -- "$PROGS/heap_phases" 2>err || fail "exit $?: $(cat err)" || return 1
	grep -q 'dump seen: 1' err || fail "the signal's dump was not written: $(cat err)" || return 1
	local first last
	first=$(ls prof/*.heap.pb.gz | sort | head -1)
	last=$(ls prof/*.heap.pb.gz | sort | tail -1)
	[ "$first" != "$last" ] || fail "want 2 heap profiles: $(ls prof)" || return 1
	local a b c d e
	a=$(cprof_value "$first" phase_one cum inuse_space)
	b=$(cprof_value "$first" phase_two cum alloc_space)
	c=$(cprof_value "$last" phase_one cum alloc_space)
	d=$(cprof_value "$last" phase_one cum inuse_space)
	e=$(cprof_value "$last" phase_two cum inuse_space)
	echo "signal dump: phase_one in use $a, phase_two allocated $b;" \
		"final: phase_one allocated $c, in use $d; phase_two in use $e"
	[ "$a" = 8388608 ] && [ "$b" = 0 ] || fail "signal dump wrong" || return 1
	[ "$c" = 8388608 ] && [ "$d" = 0 ] && [ "$e" = 2097152 ] || fail "final dump wrong" || return 1
	# pprof -base: what was allocated between the two dumps.
	local window
	window=$(pprof_top "$last" -sample_index=alloc_space -unit=B -base "$first" |
		sed -n 's/.*Total samples = \([0-9]*\)B.*/\1/p')
	echo "pprof -base alloc_space window: $window"
	[ "$window" -ge 2097152 ] && [ "$window" -lt 8388608 ] || fail "-base window $window" || return 1
}

# Another allocator next in line (tcmalloc preloaded after the shim): the
# wrappers forward to it; same output, exact figures at rate 1.
test_heap_other_allocator() {
	local tc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
	[ -f "$tc" ] || fail "no $tc (make deps installs libgoogle-perftools4)" || return 1
	env LD_PRELOAD="$tc" "$PROGS/heap_errno" >want 2>/dev/null
	env CPROF_OUT=prof CPROF_PROFILES=heap CPROF_HEAP_RATE=1 LD_PRELOAD="$SHIM $tc" \
		"$PROGS/heap_errno" >got 2>err || fail "heap_errno: exit $?: $(cat err)" || return 1
	cmp -s want got || { diff want got; fail "output differs under tcmalloc"; return 1; }
	env CPROF_OUT=prof2 CPROF_PROFILES=heap CPROF_HEAP_RATE=1 LD_PRELOAD="$SHIM $tc" \
		"$PROGS/heap_leak" 2>err || fail "heap_leak: exit $?: $(cat err)" || return 1
	local file leak
	file=$(heap_profile prof2) || return 1
	leak=$(cprof_value "$file" leak_mixed cum inuse_space)
	echo "under tcmalloc: leak_mixed inuse_space $leak"
	[ "$leak" = "$HEAP_LEAK_BYTES" ] || fail "leak_mixed $leak, want $HEAP_LEAK_BYTES" || return 1
	env CPROF_OUT=prof3 CPROF_PROFILES=heap CPROF_HEAP_RATE=1 LD_PRELOAD="$SHIM $tc" \
		"$PROGS/heap_aligned" 2>err || fail "heap_aligned: exit $?: $(cat err)" || return 1
	file=$(heap_profile prof3) || return 1
	[ "$(cprof_value "$file" kept_aligned cum inuse_space)" = 65536 ] &&
		[ "$(cprof_value "$file" freed_aligned cum inuse_space)" = 0 ] ||
		fail "aligned blocks under tcmalloc" || return 1
}

# A dlsym that allocates (glibc's before 2.34 did; heap_dlsym defines one):
# the shim's own dlsym calls, made while it resolves the next malloc, get
# their memory from the bootstrap arena, and free ignores those blocks.
test_heap_dlsym_allocates() {
	run_profiled prof CPROF_PROFILES=heap CPROF_HEAP_RATE=1 -- "$PROGS/heap_dlsym" 2>err ||
		fail "exit $?: $(cat err)" || return 1
	local calls
	calls=$(sed -n 's/^dlsym calls \([0-9]*\), allocated \1$/\1/p' err)
	echo "$(cat err)"
	# The shim resolves 9 malloc-family names, besides its other lookups.
	[ -n "$calls" ] && [ "$calls" -ge 9 ] || fail "the shim's dlsym calls did not all get memory" || return 1
	local file
	file=$(heap_profile prof) || return 1
	[ "$(cprof_value "$file" kept_after cum inuse_space)" = 3000 ] || fail "kept_after: want 3000 in use" || return 1
}

# Sampling often (rate 256) where allocation meets the loader and the
# unwinder: threads created and joined, dlopen/dlclose, C++ exceptions
# (their allocation is sampled), with the CPU profile at 1000 Hz; no
# deadlock, no crash, same output.
test_heap_stress_loader_exceptions() {
	timeout 60 env CPROF_OUT=prof CPROF_HEAP_RATE=256 CPROF_CPU_HZ=1000 LD_PRELOAD="$SHIM" \
		"$PROGS/stress" "$PROGS/libplugin.so" 4 >out 2>err
	local rc=$?
	[ "$rc" -eq 0 ] || fail "exit status $rc (124 = hung): $(cat err)" || return 1
	grep -q 'stress finished: all loops ran' out || fail "$(cat out)" || return 1
	[ ! -s err ] || fail "stderr: $(cat err)" || return 1
	local file
	file=$(heap_profile prof) || return 1
	[ "$(cprof_value "$file" deep_throw cum alloc_objects)" -gt 0 ] ||
		fail "no sampled exception allocations under deep_throw" || return 1
	heap_no_negative "$file" || fail "negative values" || return 1
}

# CPROF_HEAP_RATE=0 and CPROF_PROFILES without heap: no heap profile, and
# the wrappers still forward (same output).
test_heap_off() {
	"$PROGS/heap_errno" >want 2>/dev/null
	local setting
	for setting in CPROF_HEAP_RATE=0 CPROF_PROFILES=cpu; do
		run_profiled "prof-$setting" "$setting" -- "$PROGS/heap_errno" >got 2>err ||
			fail "$setting: exit $?" || return 1
		cmp -s want got || fail "$setting: output differs" || return 1
		[ ! -s err ] || fail "$setting: stderr $(cat err)" || return 1
		ls "prof-$setting" 2>/dev/null | grep -q '\.heap\.' && fail "$setting: a heap profile was written" && return 1
	done
	return 0
}

# A thread keeps the sampled blocks it frees for its next samples
# (preload/heap.c, spare blocks) and gives them back when it ends: 500
# threads, one after another, each with 64 blocks of 8 KiB live and then
# freed, about 2 samples a thread at rate 256 KiB (the spares need the
# mark of the rates from 256 KiB), leave no more in use than unprofiled
# plus a few threads' sets and the profiler's own tables. Kept for good,
# they would be some 1,000 x 8 KiB = 8 MiB.
test_heap_thread_spares_given_back() {
	"$PROGS/heap_thread_spares" 500 64 2>base.err || fail "unprofiled: exit $?" || return 1
	run_profiled prof CPROF_PROFILES=heap CPROF_HEAP_RATE=262144 CPROF_SEED=3 -- \
		"$PROGS/heap_thread_spares" 500 64 2>err || fail "exit $?: $(cat err)" || return 1
	local base prof file allocs
	base=$(sed -n 's/^in_use_bytes //p' base.err)
	prof=$(sed -n 's/^in_use_bytes //p' err)
	file=$(heap_profile prof) || return 1
	allocs=$(cprof_value "$file" worker cum alloc_objects)
	echo "in use after the threads: unprofiled $base, profiled $prof; worker alloc_objects $allocs (truth 32000)"
	[ -n "$base" ] && [ -n "$prof" ] || fail "no in_use_bytes line" || return 1
	[ "$prof" -le $((base + 1024 * 1024)) ] || fail "$((prof - base)) bytes more in use" || return 1
	within "$allocs" 32000 15 || fail "worker alloc_objects $allocs, want 32000" || return 1
}

# Two threads that share nothing never wait for each other's malloc arena
# lock, profiled or not. A sampled block the heap profile keeps for the
# next sample (preload/heap.c, spare blocks) used to go to whichever
# thread sampled next, which later freed it into the first thread's arena:
# 850 futex calls a run here, 2 unprofiled. strace counts them, profiled
# (heap only, the default rate) against unprofiled: at most 20 more. The
# profile has the workers' allocations, for both readers.
test_heap_threads_keep_their_arenas() {
	count_calls futex prof CPROF_PROFILES=heap -- "$PROGS/heap_arenas" || return 1
	local more=$((PROF_CALLS - BASE_CALLS)) file ours theirs
	file=$(heap_profile prof) || return 1
	ours=$(cprof_value "$file" worker cum alloc_space)
	theirs=$(heap_pprof_value "$file" alloc_space worker)
	echo "futex calls: unprofiled $BASE_CALLS, profiled $PROF_CALLS; worker alloc_space: cprof $ours, pprof $theirs"
	[ "$more" -le 20 ] || fail "$more more futex calls" || return 1
	# 2 x 404096 blocks of 16 + (x & 0xfef) bytes, 2055.5 on average: 1.661 GB.
	within "$ours" 1661000000 15 || fail "cprof: worker alloc_space $ours" || return 1
	within "$theirs" 1661000000 15 || fail "pprof: worker alloc_space $theirs" || return 1
}
