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
	[[ $m == *"[functions]"* ]] || fail "libc mapping: every location named, and no lines: $m" ||
		return 1
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
	[[ $(libc_mapping all.raw) == *filenames* ]] ||
		fail "CPROF_LINES=all: libc mapping without filenames: $(libc_mapping all.raw)" || return 1

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
