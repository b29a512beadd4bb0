# Labels (include/cprof.h: cprof_labels_push / cprof_labels_pop, the
# counterpart of Go's pprof.Do), read back by go tool pprof (-tags,
# -tagfocus) and by cprof raw. Program: tests/progs/labels.c.

# labels_pprof_total_ns FILE TAGFOCUS [FOCUS]: pprof's total CPU in ns of
# the samples with that tag ("" for all), and through FOCUS (a function
# regex) if given.
labels_pprof_total_ns() {
	# Every node shown (pprof drops nodes under 0.5% by default, and the
	# "Showing nodes accounting for" figure with them).
	local args=(-top -unit=ns -nodefraction=0 -nodecount=100000)
	[ -n "$2" ] && args+=("-tagfocus=$2")
	[ -n "${3:-}" ] && args+=("-focus=$3")
	go tool pprof "${args[@]}" "$1" 2>/dev/null |
		sed -n 's/^Showing nodes accounting for \([0-9.]*\)ns.*/\1/p' | head -1
}

# Two threads doing the same work, one under tenant=acme, one under
# tenant=globex (the value's buffer is overwritten after the push): the
# CPU profile splits 50/50 by tag within sampling error (1000 Hz, 0.6 s
# each: ~600 samples a side, sd ~2%), each side within 5% of its thread's
# own CPU clock, and op=work on all of it.
test_labels_cpu_split() {
	run_profiled prof CPROF_CPU_HZ=1000 CPROF_PROFILES=cpu -- "$PROGS/labels" split \
		>out 2>err || fail "exit $?" || return 1
	local file acme globex total op truth_a truth_g
	file=$(profile_of prof cpu)
	[ -n "$file" ] || fail "no cpu profile" || return 1
	total=$(labels_pprof_total_ns "$file" "")
	acme=$(labels_pprof_total_ns "$file" tenant=acme)
	globex=$(labels_pprof_total_ns "$file" tenant=globex)
	op=$(labels_pprof_total_ns "$file" op=work)
	truth_a=$(sed -n 's/^cpu_ns acme //p' err)
	truth_g=$(sed -n 's/^cpu_ns globex //p' err)
	echo "total=$total acme=$acme (truth $truth_a) globex=$globex (truth $truth_g) op=work $op"
	within "$acme" "$truth_a" 5 || fail "acme $acme vs its thread's $truth_a" || return 1
	within "$globex" "$truth_g" 5 || fail "globex $globex vs its thread's $truth_g" || return 1
	near "$(awk -v a="$acme" -v t="$total" 'BEGIN { printf "%.1f", 100 * a / t }')" 50 5 ||
		fail "acme share not 50% +- 5" || return 1
	within "$op" "$((acme + globex))" 1 || fail "op=work $op, want acme+globex" || return 1
	go tool pprof -tags "$file" 2>/dev/null | grep -q 'acme' || fail "pprof -tags: no acme" || return 1
	# Our reader shows the same labels on the samples, and cprof top --tag
	# slices as -tagfocus does.
	"$CPROF" raw "$file" | grep -q 'labels:.*op=work.*tenant=acme' ||
		fail "cprof raw: no sample with op=work tenant=acme" || return 1
	local ours_a ours_g
	ours_a=$("$CPROF" top --raw-values -n 0 --tag tenant=acme "$file" | awk -F'\t' '{ s += $1 } END { printf "%.0f", s }')
	ours_g=$("$CPROF" top --raw-values -n 0 --tag tenant=globex --tag op=work "$file" |
		awk -F'\t' '{ s += $1 } END { printf "%.0f", s }')
	echo "cprof top --tag: acme=$ours_a globex+op=work=$ours_g"
	[ "$ours_a" = "${acme%.*}" ] || fail "cprof top --tag tenant=acme: $ours_a, pprof $acme" || return 1
	[ "$ours_g" = "${globex%.*}" ] || fail "cprof top --tag tenant=globex: $ours_g, pprof $globex" || return 1
	"$CPROF" top --tag tenant=acme "$file" | grep -q '^Type: cpu, only tenant=acme$' ||
		fail "cprof top --tag: the header does not say the filter" || return 1
	# diff --tag: the same slice on both sides passes; a tag nobody has is
	# an error (exit 2, one line), not an empty success.
	"$CPROF" diff --tag tenant=acme "$file" "$file" >diff.out || fail "diff --tag: exit $?" || return 1
	grep -q "only tenant=acme" diff.out || fail "diff --tag: header: $(head -3 diff.out)" || return 1
	"$CPROF" top --tag tenant=nobody "$file" >/dev/null 2>tag.err
	[ $? -eq 2 ] && [ "$(wc -l <tag.err)" -eq 1 ] && grep -q 'no sample carries tenant=nobody' tag.err ||
		fail "top --tag tenant=nobody: $(cat tag.err)" || return 1
	"$CPROF" diff --tag tenant "$file" "$file" >/dev/null 2>tag.err
	[ $? -eq 2 ] && grep -q -- '--tag wants KEY=VALUE' tag.err || fail "diff --tag tenant: $(cat tag.err)" || return 1
}

# A labelled region that allocates: the heap profile's in-use space by tag
# is what each region kept (8 MiB acme, 2 MiB globex, 1 MiB unlabelled),
# at CPROF_HEAP_RATE=1 exactly.
test_labels_heap() {
	run_profiled prof CPROF_HEAP_RATE=1 CPROF_PROFILES=heap -- "$PROGS/labels" heap \
		>out 2>err || fail "exit $?" || return 1
	local file acme globex load
	file=$(profile_of prof heap)
	acme=$(go tool pprof -sample_index=inuse_space -tagfocus=tenant=acme -top -unit=B "$file" 2>/dev/null |
		sed -n 's/^Showing nodes accounting for \([0-9.]*\)B.*/\1/p' | head -1)
	globex=$(go tool pprof -sample_index=inuse_space -tagfocus=tenant=globex -top -unit=B "$file" 2>/dev/null |
		sed -n 's/^Showing nodes accounting for \([0-9.]*\)B.*/\1/p' | head -1)
	load=$(go tool pprof -sample_index=inuse_space -tagfocus=op=load -top -unit=B "$file" 2>/dev/null |
		sed -n 's/^Showing nodes accounting for \([0-9.]*\)B.*/\1/p' | head -1)
	echo "inuse acme=$acme globex=$globex op=load $load"
	[ "${acme%.*}" -eq $((8 << 20)) ] || fail "acme in use $acme, want 8 MiB" || return 1
	[ "${globex%.*}" -eq $((2 << 20)) ] || fail "globex in use $globex, want 2 MiB" || return 1
	[ "${load%.*}" -eq $((8 << 20)) ] || fail "op=load in use $load, want 8 MiB" || return 1
	"$CPROF" raw "$file" | grep -q 'labels: bytes=1048576 bytes op=load tenant=acme' ||
		fail "cprof raw: no sample with bytes, op and tenant labels" || return 1
}

# Nested labels add to the outer ones and a pop restores them; a thread
# made inside a labelled region inherits its labels; after the last pop a
# thread's samples carry none.
test_labels_nested_and_inherited() {
	run_profiled prof CPROF_CPU_HZ=1000 CPROF_PROFILES=cpu -- "$PROGS/labels" nested \
		>out 2>err || fail "exit $?" || return 1
	local file tags
	file=$(profile_of prof cpu)
	tags=$(go tool pprof -tags -focus=burn_inner "$file" 2>/dev/null)
	echo "burn_inner: $(echo "$tags" | tr -s ' \n' ' ')"
	echo "$tags" | grep -q 'acme' && echo "$tags" | grep -q 'inner' ||
		fail "burn_inner lacks tenant=acme op=inner" || return 1
	tags=$(go tool pprof -tags -focus=burn_child "$file" 2>/dev/null)
	echo "burn_child: $(echo "$tags" | tr -s ' \n' ' ')"
	echo "$tags" | grep -q 'acme' && echo "$tags" | grep -q 'inner' ||
		fail "the child thread did not inherit tenant=acme op=inner" || return 1
	local after labelled
	after=$(go tool pprof -top -unit=ns -focus=burn_after "$file" 2>/dev/null |
		sed -n 's/^Showing nodes accounting for \([0-9.]*\)ns.*/\1/p' | head -1)
	labelled=$(go tool pprof -top -unit=ns -focus=burn_after -tagfocus=tenant=acme "$file" 2>/dev/null |
		sed -n 's/^Showing nodes accounting for \([0-9.]*\)ns.*/\1/p' | head -1)
	echo "burn_after: $after ns, of it labelled ${labelled:-0}"
	[ "${after%.*}" -gt 100000000 ] || fail "burn_after has ${after:-0} ns" || return 1
	[ "${labelled:-0}" = 0 ] || [ "${labelled%.*}" -eq 0 ] ||
		fail "burn_after still carries tenant=acme after the pop" || return 1
}

# A label table too small for the sets asked: one cprof line, the samples
# beyond it carry cprof="labels dropped", and no CPU time is lost.
test_labels_table_full() {
	run_profiled prof CPROF_LABEL_SETS=16 CPROF_CPU_HZ=1000 CPROF_PROFILES=cpu -- \
		"$PROGS/labels" full 30 >out 2>err || fail "exit $?" || return 1
	local file total dropped labelled lines
	file=$(profile_of prof cpu)
	# The tenants' work (burn), not the start-up and exit around it, which
	# run under no label: on a cold machine the loader's page faults alone
	# were 4 ms of CPU there, 1.3% of the run.
	total=$(labels_pprof_total_ns "$file" "" '^burn$')
	dropped=$(labels_pprof_total_ns "$file" "cprof=labels dropped" '^burn$')
	labelled=$(labels_pprof_total_ns "$file" "tenant=t[0-9]*" '^burn$')
	lines=$(grep -c '^cprof: label table full' err)
	echo "in burn: total=$total dropped=$dropped with a tenant=$labelled; whole profile:" \
		"$(labels_pprof_total_ns "$file" ""); cprof lines=$lines"
	[ "$lines" -eq 1 ] || fail "$lines cprof lines, want 1: $(cat err)" || return 1
	# 16 entries hold 12 sets: t0..t11 keep their labels, the other 18
	# tenants' samples are counted under the dropped label.
	[ "${dropped%.*}" -gt 0 ] || fail "no labels-dropped samples" || return 1
	[ "${labelled%.*}" -gt 0 ] || fail "no labelled samples" || return 1
	within "$(awk -v a="$dropped" -v b="$labelled" 'BEGIN { printf "%.0f", a + b }')" "$total" 1 ||
		fail "dropped + labelled != total" || return 1
	local kept
	kept=$(go tool pprof -tags "$file" 2>/dev/null | grep -c ': t[0-9]*$')
	echo "tenants with their own label: $kept"
	[ "$kept" -le 12 ] || fail "$kept tenants kept, the table holds 12" || return 1
}

# A repeated push compares the strings with the copies it cached, reading
# them 8 bytes at a time; a string that ends near the end of a page is
# read a byte at a time, so no read crosses into the next page (here
# unmapped). Every repeat of a value gives its set, a changed value
# another, a changed byte past the NUL the same one.
test_labels_page_end() {
	run_profiled prof CPROF_PROFILES=cpu -- "$PROGS/labels" pageend >out 2>err ||
		fail "exit $?: $(cat out err)" || return 1
	cat out
	grep -q '^pageend checks [1-9][0-9]* wrong 0$' out || fail "wrong sets: $(cat out)" || return 1
}

# Without the shim the API is a no-op: same output, exit 0.
test_labels_without_shim() {
	local mode
	for mode in split heap nested; do
		"$PROGS/labels" "$mode" >"out_$mode" 2>/dev/null || fail "$mode: exit $?" || return 1
		run_profiled "prof_$mode" -- "$PROGS/labels" "$mode" >"outp_$mode" 2>/dev/null ||
			fail "$mode under the shim: exit $?" || return 1
		cmp -s "out_$mode" "outp_$mode" || fail "$mode: output differs" || return 1
	done
}
