# End-to-end tests of what the profiles keep when the dump is made cheap:
# CPROF_LINES (which modules get DWARF source lines at dump time) and the
# names every frame keeps without them. Sourced by tests/run.sh.
#
# lines_qsort spends its time in its own compare_keys and in libc's
# msort_with_tmp, a static function that only libc's separate debug file
# (libc6-dbg, in the Makefile's package list) names.

# libc6-dbg's debug file for the libc this machine runs, or "".
libc_debug_file() {
	local libc id
	libc=$(ldd "$PROGS/lines_qsort" | awk '/libc\.so/ { print $3 }')
	id=$(readelf -n "$libc" | sed -n 's/.*Build ID: //p')
	[ -n "$id" ] && [ -f "/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug" ] &&
		echo "/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug"
}

# lines_run DIR [ENV=VALUE...]: profiles lines_qsort at 1000 Hz into DIR,
# leaves its `cprof raw` in DIR.raw and its stderr in DIR.err.
lines_run() {
	local dir=$1
	shift
	run_profiled "$dir" CPROF_PROFILES=cpu CPROF_CPU_HZ=1000 "$@" -- \
		"$PROGS/lines_qsort" 300 >"$dir.out" 2>"$dir.err" || fail "exit status $?" || return 1
	local file
	file=$(profile_of "$dir" cpu)
	[ -n "$file" ] || fail "no cpu profile in $dir" || return 1
	"$CPROF" raw "$file" >"$dir.raw" || fail "cprof raw failed" || return 1
}

# The mapping line of libc in a `cprof raw` listing.
libc_mapping() { grep -E '^ +[0-9]+: .*/libc\.so' "$1"; }

# only_plt_unnamed RAW: every libc location in the cprof raw listing that
# has no name lies in libc's PLT (.plt, .plt.got). A sample in a PLT stub
# (qsort reaching memcpy through its IRELATIVE slot) has no symbol to be
# named by, nor a line, and its mapping then cannot claim every location
# named or lined (seen 1 run in 6); every other libc location must be.
only_plt_unnamed() {
	local plt_lo=0 plt_hi=0 name addr size unnamed off
	while read -r name addr size; do
		[ "$plt_lo" -eq 0 ] || [ $((16#$addr)) -lt "$plt_lo" ] && plt_lo=$((16#$addr))
		[ $((16#$addr + 16#$size)) -gt "$plt_hi" ] && plt_hi=$((16#$addr + 16#$size))
	done < <(readelf -SW "$(readlink -f /lib/x86_64-linux-gnu/libc.so.6)" |
		sed -n 's/^ *\[ *[0-9]*\] \(\.plt[.a-z]*\) *[A-Z]* *\([0-9a-f]*\) [0-9a-f]* \([0-9a-f]*\).*/\1 \2 \3/p')
	unnamed=$(sed -n 's/^ *#[0-9]* 0x[0-9a-f]* libc\.so\.6 0x\([0-9a-f]*\)$/\1/p' "$1")
	echo "libc locations without a name (file offsets): ${unnamed:-none}; PLT: $plt_lo-$plt_hi"
	[ -n "$unnamed" ] || fail "libc mapping lacks a flag, yet every location is named" || return 1
	for off in $unnamed; do
		[ $((16#$off)) -ge "$plt_lo" ] && [ $((16#$off)) -lt "$plt_hi" ] ||
			fail "libc location 0x$off has no name and is not in the PLT" || return 1
	done
}

# Default (program): the program's own frames have file:line, libc's are
# named from the debug file's symbol table (the static msort_with_tmp
# too) but carry no file, and libc's mapping says so, so pprof may add
# the lines when it reads the profile. Both readers see the names.
test_lines_program_default() {
	[ -n "$(libc_debug_file)" ] || fail "libc6-dbg is not installed (make deps)" || return 1
	lines_run prof || return 1
	grep -qE 'compare_keys .*lines_qsort\.c:[0-9]+' prof.raw ||
		fail "the program's compare_keys has no file:line" || return 1
	grep -qE '#[0-9]+ 0x[0-9a-f]+ main .*lines_qsort\.c:[0-9]+' prof.raw ||
		fail "main has no file:line" || return 1
	grep -qE '#[0-9]+ 0x[0-9a-f]+ msort_with_tmp[.a-z0-9]*$' prof.raw ||
		fail "libc's static msort_with_tmp not named, or named with a file" || return 1
	grep -E 'msort\.c' prof.raw && fail "libc frames have DWARF lines by default" && return 1
	local m
	m=$(libc_mapping prof.raw)
	echo "$m"
	if [[ $m != *"[functions]"* ]]; then
		only_plt_unnamed prof.raw || return 1
	fi
	[ -s prof.err ] && { cat prof.err; fail "stderr not empty"; return 1; }
	local p
	p=$(pprof_cum_pct "$(profile_of prof cpu)" compare_keys)
	echo "pprof: compare_keys cum $p%"
	awk -v p="$p" 'BEGIN { exit !(p > 10) }' || fail "pprof: compare_keys cum $p%" || return 1
	pprof_top "$(profile_of prof cpu)" | grep -q 'msort_with_tmp' ||
		fail "pprof does not show msort_with_tmp" || return 1
}

# CPROF_LINES=all: libc's frames get lines and inline frames from the
# debug file; none: no frame has a file, every one keeps its name.
test_lines_all_and_none() {
	[ -n "$(libc_debug_file)" ] || fail "libc6-dbg is not installed (make deps)" || return 1
	lines_run all CPROF_LINES=all || return 1
	grep -qE 'msort_with_tmp[.a-z0-9]* .*msort\.c:[0-9]+' all.raw ||
		fail "CPROF_LINES=all: libc's msort_with_tmp without msort.c:N" || return 1
	grep -qE 'compare_keys .*lines_qsort\.c:[0-9]+' all.raw ||
		fail "CPROF_LINES=all: compare_keys without file:line" || return 1
	if [[ $(libc_mapping all.raw) != *filenames* ]]; then
		only_plt_unnamed all.raw ||
			fail "CPROF_LINES=all: libc mapping without filenames: $(libc_mapping all.raw)" ||
			return 1
	fi

	lines_run none CPROF_LINES=none || return 1
	grep -qE '#[0-9]+ 0x[0-9a-f]+ compare_keys$' none.raw ||
		fail "CPROF_LINES=none: compare_keys not named or with a file" || return 1
	grep -qE '\.c:[0-9]+' none.raw && fail "CPROF_LINES=none: a frame has a line" && return 1
	grep -qE '#[0-9]+ 0x[0-9a-f]+ msort_with_tmp' none.raw ||
		fail "CPROF_LINES=none: msort_with_tmp not named" || return 1
	[ -s all.err ] || [ -s none.err ] && { cat all.err none.err; fail "stderr not empty"; return 1; }
	return 0
}

# A bad value: one line naming the variable and the value, the default
# kept (the program's lines are there, libc's not), the program unharmed.
test_lines_bad_value() {
	"$PROGS/lines_qsort" 300 >expected
	lines_run bad CPROF_LINES=some || return 1
	cmp -s expected bad.out || fail "output differs" || return 1
	cat bad.err
	[ "$(wc -l <bad.err)" -eq 1 ] || fail "want exactly one line on stderr" || return 1
	grep -q '^cprof: CPROF_LINES="some" is not program, all or none; using program$' bad.err ||
		fail "warning does not name the variable and value" || return 1
	grep -qE 'compare_keys .*lines_qsort\.c:[0-9]+' bad.raw || fail "default not kept" || return 1
	grep -q 'msort\.c' bad.raw && fail "default not kept: libc has lines" && return 1
	return 0
}

# Sampled blocks live at marked addresses (preload/heap.c, "marked
# blocks") so that free needs no table lookup for the others. The malloc
# family's contracts hold on them at every mark alignment (rate 1 and
# 4096: 64, 65536: 1024, the default: 4096) and with tcmalloc next in line: same
# output as unprofiled; at rate 1 every sample is tracked (no
# "[cprof: dropped]"), kept blocks counted exactly, the rest freed to 0.
test_heap_marked_blocks() {
	"$PROGS/heap_marked" >want || fail "unprofiled: exit $?" || return 1
	grep -q 'resident set untouched' want || fail "unprofiled calloc touched its pages" || return 1
	local rate
	for rate in 1 4096 65536 524288; do
		run_profiled "r$rate" CPROF_PROFILES=heap CPROF_HEAP_RATE=$rate -- \
			"$PROGS/heap_marked" >"got$rate" 2>err || fail "rate $rate: exit $?: $(cat err)" || return 1
		cmp -s want "got$rate" || { diff want "got$rate"; fail "rate $rate: output differs"; return 1; }
	done
	local file
	file=$(profile_of r1 heap)
	"$CPROF" raw "$file" >raw || fail "cprof raw" || return 1
	grep -q 'cprof: dropped' raw && fail "rate 1: a sample was not tracked" && return 1
	local kept main
	kept=$(cprof_value "$file" keep_blocks cum inuse_space)
	echo "rate 1: keep_blocks inuse_space $kept"
	[ "$kept" = 100000 ] || fail "keep_blocks inuse_space $kept, want 100000" || return 1
	# Everything else main allocated was freed: in use under main are the
	# kept blocks and stdio's buffer for stdout.
	local stdio
	main=$(cprof_value "$file" main cum inuse_space)
	stdio=$(cprof_value "$file" _IO_file_doallocate cum inuse_space)
	[ "$main" = $((100000 + stdio)) ] ||
		fail "main inuse_space $main, want 100000 + stdout's buffer $stdio" || return 1

	local tc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
	[ -f "$tc" ] || fail "no $tc (make deps installs libgoogle-perftools4)" || return 1
	env LD_PRELOAD="$tc" "$PROGS/heap_marked" >want_tc || fail "tcmalloc alone: exit $?" || return 1
	env CPROF_OUT=tc CPROF_PROFILES=heap CPROF_HEAP_RATE=1 LD_PRELOAD="$SHIM $tc" \
		"$PROGS/heap_marked" >got_tc 2>err || fail "under tcmalloc: exit $?: $(cat err)" || return 1
	cmp -s want_tc got_tc || { diff want_tc got_tc; fail "output differs under tcmalloc"; return 1; }
	kept=$(cprof_value "$(profile_of tc heap)" keep_blocks cum inuse_space)
	echo "under tcmalloc: keep_blocks inuse_space $kept"
	[ "$kept" = 100000 ] || fail "under tcmalloc: keep_blocks $kept, want 100000" || return 1
}
