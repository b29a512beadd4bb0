# End-to-end tests of the CI gate (issue 12): many processes as one
# profile (`cprof top|diff|raw` on several files and directories, `cprof
# merge`, --by program), the totals and per-function value gates of
# `cprof diff`, `cprof flame` rendered in headless Chromium and checked
# pixel by pixel, and bad input on every new path. The README's worked CI
# example is test_cli_ci_example in cli.sh. Sourced by tests/run.sh.
#
# Synthetic profiles come from build/progs/cli_synth (STACK=VALUE, leaf
# first), so every figure is known exactly; every merged profile is read
# back by `go tool pprof` as well.

GATE_SYNTH=$PROGS/cli_synth

# pprof_ns FILE FUNCTION [flat|cum] [PPROF ARGS]: pprof's value in ns.
pprof_ns() {
	local file=$1 fn=$2 col=${3:-flat}
	shift 3 2>/dev/null || shift $#
	go tool pprof -top -nodecount=1000 -unit=ns "$@" "$file" 2>/dev/null | awk -v fn="$fn" -v col="$col" '
		$6 == fn { v = (col == "flat") ? $1 : $4; sub(/ns$/, "", v); print v; found = 1 }
		END { if (!found) print 0 }'
}

# pprof_total FILE [PPROF ARGS]: pprof's total ("of X total") in ns.
pprof_total() {
	local file=$1
	shift
	go tool pprof -top -unit=ns "$@" "$file" 2>/dev/null |
		sed -n 's/.* of \([0-9.]*\)ns total.*/\1/p' | head -1
}

# ---- merging -------------------------------------------------------------------

# Three processes of two programs in a tree of directories: every figure
# of the merge is the sum of its parts, in cprof and in pprof; --by
# program keeps them apart for top and for pprof -tagfocus.
test_ci_gate_merge_sums() {
	mkdir -p prof/a prof/b/deeper
	"$GATE_SYNTH" prof/a/alpha.100.0000.cpu.pb.gz "parse;main=300" "hash;main=100"
	"$GATE_SYNTH" prof/b/alpha.101.0000.cpu.pb.gz "parse;main=200" "main=50"
	"$GATE_SYNTH" prof/b/deeper/beta.102.0000.cpu.pb.gz "hash;run=250" "parse;run=100"
	echo "not a profile" >prof/README.txt # not NAME.KIND.pb.gz: not taken
	"$CPROF" top prof >top.txt 2>top.err || fail "top prof: exit $? $(cat top.err)" || return 1
	cat top.txt
	grep -qx 'File: prof (3 files)' top.txt || fail "File line" || return 1
	grep -qx 'Total: 1us' top.txt || fail "Total line" || return 1
	[ "$(cprof_value prof parse flat)" -eq 600 ] || fail "parse flat $(cprof_value prof parse flat)" || return 1
	[ "$(cprof_value prof hash flat)" -eq 350 ] || fail "hash flat" || return 1
	[ "$(cprof_value prof main cum)" -eq 650 ] || fail "main cum" || return 1
	[ "$(cprof_value prof run cum)" -eq 350 ] || fail "run cum" || return 1
	# Files and directories mixed give the same.
	"$CPROF" top --raw-values prof/a prof/b/alpha.101.0000.cpu.pb.gz prof/b/deeper >mixed.txt ||
		fail "top mixed: exit $?" || return 1
	"$CPROF" top --raw-values prof >all.txt
	cmp -s mixed.txt all.txt || fail "mixed paths differ: $(cat mixed.txt)" || return 1

	"$CPROF" top --by program prof >programs.txt || fail "top --by program: exit $?" || return 1
	cat programs.txt
	grep -qE '^ +650ns 65\.00% 65\.00% +650ns 65\.00%  alpha$' programs.txt || fail "alpha row" || return 1
	grep -qE '^ +350ns 35\.00% +100% +350ns 35\.00%  beta$' programs.txt || fail "beta row" || return 1
	"$CPROF" top --raw-values --by process prof >processes.txt
	grep -qxP '400\t400\talpha.100' processes.txt && grep -qxP '250\t250\talpha.101' processes.txt ||
		fail "by process: $(cat processes.txt)" || return 1

	# The merged file: pprof reads it and finds the same sums; -tagfocus slices.
	"$CPROF" merge -o merged.pb.gz --by program prof 2>merge.err || fail "merge: $(cat merge.err)" || return 1
	grep -qx 'cprof: merged 3 profiles into merged.pb.gz' merge.err || fail "merge line: $(cat merge.err)" || return 1
	[ "$(pprof_total merged.pb.gz)" = 1000 ] || fail "pprof total $(pprof_total merged.pb.gz)" || return 1
	[ "$(pprof_ns merged.pb.gz parse flat)" = 600 ] || fail "pprof parse $(pprof_ns merged.pb.gz parse flat)" || return 1
	[ "$(pprof_ns merged.pb.gz parse flat -tagfocus=program=alpha)" = 500 ] ||
		fail "pprof -tagfocus=program=alpha parse: $(pprof_ns merged.pb.gz parse flat -tagfocus=program=alpha)" || return 1
	[ "$(pprof_ns merged.pb.gz hash flat -tagfocus=program=beta)" = 250 ] || fail "tagfocus beta" || return 1
	go tool pprof -tags merged.pb.gz 2>/dev/null | grep -q 'beta' || fail "pprof -tags has no beta" || return 1
	# Our reader on the merged file agrees, and keeps the label.
	[ "$(cprof_value merged.pb.gz parse flat)" -eq 600 ] || fail "cprof on merged" || return 1
	"$CPROF" raw merged.pb.gz | grep -q 'labels: program=beta' || fail "raw: no program label" || return 1
	# Without --by: one sample per stack (the two alpha "parse;main" add up).
	"$CPROF" merge -o plain.pb.gz prof 2>/dev/null || fail "plain merge" || return 1
	[ "$("$CPROF" raw plain.pb.gz | grep -c '^  sample ')" -eq 5 ] ||
		fail "plain merge samples: $("$CPROF" raw plain.pb.gz | grep -c '^  sample ')" || return 1
	"$CPROF" raw plain.pb.gz | grep -A1 '^  sample ' | grep -q '^  sample .*: 500$' ||
		fail "parse;main not summed to 500" || return 1
	[ "$(pprof_total plain.pb.gz)" = 1000 ] || fail "pprof total of plain merge" || return 1
	# raw of several paths is the merged profile.
	"$CPROF" raw prof | sed 1d >raw-merged.txt
	"$CPROF" raw plain.pb.gz | sed 1d >raw-file.txt
	cmp -s raw-merged.txt raw-file.txt || fail "raw prof differs from raw of the merged file" || return 1
}

# Real processes: a shell script of five processes of two programs under
# `cprof run`; the merged profile is the sum of the files, by cprof and by
# pprof, and top --by program names the costly program first.
test_ci_gate_merge_real_processes() {
	"$CPROF" run -q -o prof -p cpu --hz 1000 -- sh -c "
		$PROGS/cli_bench --units 1 >/dev/null
		$PROGS/cli_bench --units 1 >/dev/null
		$PROGS/cli_bench --units 2 >/dev/null
		$PROGS/cpu_split 10 >/dev/null
		$PROGS/cpu_split 10 >/dev/null" || fail "run: exit $?" || return 1
	ls prof
	local n
	n=$(ls prof/*.cpu.pb.gz | wc -l)
	[ "$n" -ge 5 ] || fail "want at least 5 profiles, got $n" || return 1
	local sum=0 f
	for f in prof/*.cpu.pb.gz; do
		sum=$((sum + $(cprof_total "$f")))
	done
	local merged
	merged=$(cprof_total prof)
	echo "sum of the files: $sum ns, merged: $merged ns"
	[ "$merged" -eq "$sum" ] || fail "merged total $merged != sum $sum" || return 1
	"$CPROF" merge -o all.pb.gz prof 2>/dev/null || fail "merge" || return 1
	local by_pprof
	by_pprof=$(pprof_total all.pb.gz)
	[ "$by_pprof" = "$sum" ] || fail "pprof total $by_pprof != $sum" || return 1
	# The functions of each program, summed over its processes.
	local hash_sum=0
	for f in prof/cli_bench.*.cpu.pb.gz; do
		hash_sum=$((hash_sum + $(cprof_value "$f" hash_records flat)))
	done
	[ "$(cprof_value all.pb.gz hash_records flat)" -eq "$hash_sum" ] || fail "hash_records sum" || return 1
	[ "$(pprof_ns all.pb.gz hash_records flat)" = "$hash_sum" ] ||
		fail "pprof hash_records $(pprof_ns all.pb.gz hash_records flat) != $hash_sum" || return 1
	"$CPROF" top --by program prof >programs.txt || fail "top --by program" || return 1
	cat programs.txt
	# cli_bench ran 4 units of 100 points (about 0.4 s of CPU), cpu_split much less.
	sed -n 5p programs.txt | grep -q ' cli_bench$' || fail "cli_bench is not the top program" || return 1
	grep -q ' cpu_split$' programs.txt || fail "no cpu_split row" || return 1
}

# Kinds: a directory with cpu and heap profiles is never mixed: without
# -k it is an error naming the kinds; -k picks one; files of different
# sample types do not merge (exit 2 naming the odd one).
test_ci_gate_kinds() {
	mkdir -p prof
	"$GATE_SYNTH" prof/app.1.0000.cpu.pb.gz "a=10"
	"$GATE_SYNTH" prof/app.2.0000.cpu.pb.gz "a=5"
	"$GATE_SYNTH" -t inuse_space/bytes prof/app.1.0000.heap.pb.gz "b=4096"
	local rc cmd
	for cmd in "top prof" "raw prof" "merge -o m.pb.gz prof" "diff prof prof" "flame prof -o f.svg"; do
		# shellcheck disable=SC2086
		"$CPROF" $cmd >out 2>err; rc=$?
		[ "$rc" -eq 2 ] || fail "cprof $cmd: exit $rc, want 2" || return 1
		one_line_error err prof || { echo "cprof $cmd"; return 1; }
		grep -q 'several kinds (cpu heap); choose one with -k KIND' err || fail "cprof $cmd: $(cat err)" || return 1
	done
	[ ! -e m.pb.gz ] && [ ! -e f.svg ] || fail "an output was written" || return 1
	"$CPROF" top -k cpu --raw-values prof | grep -qxP '15\t15\ta' || fail "-k cpu" || return 1
	"$CPROF" top --kind heap --raw-values prof | grep -qxP '4096\t4096\tb' || fail "-k heap" || return 1
	"$CPROF" top -k mutex prof >out 2>err; rc=$?
	[ "$rc" -eq 2 ] && one_line_error err prof && grep -q 'no mutex profiles' err || fail "-k mutex: $(cat err)" || return 1
	# Explicit files of two kinds: the second is named.
	"$CPROF" merge -o m.pb.gz prof/app.1.0000.cpu.pb.gz prof/app.1.0000.heap.pb.gz >out 2>err; rc=$?
	[ "$rc" -eq 2 ] || fail "merge cpu+heap: exit $rc" || return 1
	one_line_error err prof/app.1.0000.heap.pb.gz || return 1
	grep -q 'sample types inuse_space/bytes differ from prof/app.1.0000.cpu.pb.gz' err || fail "$(cat err)" || return 1
	"$CPROF" top prof/app.1.0000.heap.pb.gz prof/app.1.0000.cpu.pb.gz >out 2>err; rc=$?
	[ "$rc" -eq 2 ] && one_line_error err prof/app.1.0000.cpu.pb.gz || fail "top heap+cpu: $rc" || return 1
	[ ! -e m.pb.gz ] || fail "merge wrote a file" || return 1
}

# ---- the gates -----------------------------------------------------------------

# Every function 10% slower moves no share: the share gate passes, the
# totals gate fails and says by how much; a band of three BASE runs
# lifts the bar to its top; --per compares work of different length.
test_ci_gate_totals() {
	"$GATE_SYNTH" b1.pb "parse;main=400" "hash;main=300" "sort;main=300"
	"$GATE_SYNTH" b2.pb "parse;main=416" "hash;main=312" "sort;main=312"
	"$GATE_SYNTH" b3.pb "parse;main=408" "hash;main=306" "sort;main=306"
	"$GATE_SYNTH" slow.pb "parse;main=440" "hash;main=330" "sort;main=330"
	"$GATE_SYNTH" bit.pb "parse;main=428" "hash;main=321" "sort;main=321"
	local rc
	rc=$(diff_status b1.pb slow.pb)
	cat diff.out
	[ "$rc" -eq 1 ] || fail "10% slower: exit $rc, want 1" || return 1
	grep -qx 'FAIL: total grew +10.0%, more than 5%' diff.out || fail "FAIL line: $(tail -1 diff.out)" || return 1
	[ "$(diff_status b1.pb slow.pb --max-total-growth off)" -eq 0 ] || fail "share gate alone must pass" || return 1
	[ "$(diff_status b1.pb slow.pb --max-total-growth 10)" -eq 0 ] || fail "10% is not more than 10%" || return 1
	[ "$(diff_status b1.pb slow.pb --max-total-growth 9.9)" -eq 1 ] || fail "9.9%" || return 1
	# The band: base totals 1000, 1040, 1020; 1070 is 2.9% above the top.
	rc=$(diff_status b1.pb b2.pb b3.pb bit.pb)
	cat diff.out
	[ "$rc" -eq 0 ] || fail "inside band + 5%: exit $rc" || return 1
	grep -qx 'Total: base 1.02us (mean, 1us-1.04us), new 1.07us (+4.9%)' diff.out || fail "Total line" || return 1
	tail -1 diff.out | grep -q '; total +2.9% against the highest base run (limit +5%)$' || fail "PASS line" || return 1
	[ "$(diff_status b1.pb b2.pb b3.pb bit.pb --max-total-growth 2.5)" -eq 1 ] || fail "2.5%" || return 1
	grep -qx 'FAIL: total grew +2.9% above the highest base run, more than 2.5%' diff.out ||
		fail "FAIL line: $(tail -1 diff.out)" || return 1
	# One BASE: the threshold alone (1070 vs 1000: +7%).
	[ "$(diff_status b1.pb bit.pb)" -eq 1 ] || fail "one BASE, +7%" || return 1
	# Per unit of work: the slow run did 10% more iterations.
	[ "$(diff_status b1.pb slow.pb --per 100,110)" -eq 0 ] || fail "--per 100,110" || return 1
	grep -qx 'Total per unit of work: base 10ns, new 10ns (+0.0%)' diff.out || fail "--per total: $(cat diff.out)" || return 1
	[ "$(diff_status b1.pb slow.pb --per 100,100)" -eq 1 ] || fail "--per 100,100" || return 1
	grep -q 'FAIL: total grew +10.0%, more than 5% (per unit of work)' diff.out || fail "per FAIL line" || return 1
	# Markdown: the total is the first row of the table, with its verdict.
	[ "$(diff_status b1.pb slow.pb --format md)" -eq 1 ] || fail "md" || return 1
	cat diff.out
	grep -qx '| \*\*total\*\* | 100% | 100% | +10.0% | \*\*regression\*\* | 1us | 1.10us |' diff.out ||
		fail "md total row" || return 1
	grep -qx '\*\*FAIL\*\*: total grew +10.0%, more than 5%' diff.out || fail "md FAIL line" || return 1
	head -1 diff.out | grep -qx '### cprof diff: regression' || fail "md title" || return 1
	# From nothing: a BASE total of 0.
	"$GATE_SYNTH" zero.pb "parse;main=0"
	[ "$(diff_status zero.pb slow.pb)" -eq 1 ] || fail "from 0" || return 1
	tail -1 diff.out | grep -q '^FAIL: total grew from 0 to 1.10us; ' || fail "from 0: $(tail -1 diff.out)" || return 1
}

# --max-growth: a function 30% slower whose share moved less than the
# threshold fails on its value; both gates name what failed.
test_ci_gate_function_growth() {
	"$GATE_SYNTH" base.pb "parse;main=500" "hash;main=500"
	"$GATE_SYNTH" new.pb "parse;main=650" "hash;main=350"
	local rc
	rc=$(diff_status base.pb new.pb --threshold 20)
	[ "$rc" -eq 0 ] || fail "share +15 < 20 and same total: exit $rc" || return 1
	rc=$(diff_status base.pb new.pb --threshold 20 --max-growth 25)
	cat diff.out
	[ "$rc" -eq 1 ] || fail "--max-growth 25: exit $rc" || return 1
	grep -qx "FAIL: 1 function's value grew more than 25%: parse (+30.0%)" diff.out || fail "FAIL line" || return 1
	grep -qE '  parse   <- REGRESSION \(value \+30\.0%\)$' diff.out || fail "parse row" || return 1
	[ "$(diff_status base.pb new.pb --threshold 20 --max-growth 30)" -eq 0 ] || fail "30 is not more than 30" || return 1
	# Both gates at once, in one line, in markdown too.
	rc=$(diff_status base.pb new.pb --max-growth 25 --format md)
	cat diff.out
	[ "$rc" -eq 1 ] || fail "both: exit $rc" || return 1
	grep -qx "\*\*FAIL\*\*: 1 function's share grew more than 5 points: \`parse\` (+15.00 points); 1 function's value grew more than 25%: \`parse\` (+30.0%)" diff.out ||
		fail "md FAIL line: $(tail -1 diff.out)" || return 1
	grep -qx '| `parse` | 50.00% | 65.00% | +15.00 | \*\*regression\*\* (+15.00 points, value +30.0%) | 500ns | 650ns |' diff.out ||
		fail "md parse row" || return 1
	# By program: the programs' values, gated the same way.
	mkdir -p b n
	"$GATE_SYNTH" b/app.1.0000.cpu.pb.gz "x=500"
	"$GATE_SYNTH" b/tool.2.0000.cpu.pb.gz "y=500"
	"$GATE_SYNTH" n/app.3.0000.cpu.pb.gz "x=800"
	"$GATE_SYNTH" n/tool.4.0000.cpu.pb.gz "y=200"
	rc=$(diff_status b n --by program --threshold 50 --max-growth 50)
	cat diff.out
	[ "$rc" -eq 1 ] || fail "--by program: exit $rc" || return 1
	grep -qx "FAIL: 1 program's value grew more than 50%: app (+60.0%)" diff.out || fail "by program FAIL line" || return 1
	grep -q '^Base: b (2 files)$' diff.out || fail "Base line" || return 1
	grep -qx "Type: cpu, by program, flat value as a share of each profile's total" diff.out || fail "Type line" || return 1
}

# NEW from several paths (--new), BASE runs from directories.
test_ci_gate_diff_sides() {
	mkdir -p r1 r2 new
	"$GATE_SYNTH" r1/t.1.0000.cpu.pb.gz "a=300"
	"$GATE_SYNTH" r1/t.2.0000.cpu.pb.gz "b=700"
	"$GATE_SYNTH" r2/t.3.0000.cpu.pb.gz "a=310" "b=690"
	"$GATE_SYNTH" n1.pb "a=200"
	"$GATE_SYNTH" n2.pb "b=600" "c=400"
	local rc
	rc=$(diff_status r1 r2 --new n1.pb n2.pb)
	cat diff.out
	[ "$rc" -eq 1 ] || fail "exit $rc, want 1 (total +20%)" || return 1
	grep -qx 'Base: 2 runs: r1 (2 files) r2' diff.out || fail "Base line" || return 1
	grep -qx 'New:  n1.pb+n2.pb' diff.out || fail "New line" || return 1
	grep -qE '^ +0\.00% +0\.00%-0\.00% +33\.33% .* c   <- REGRESSION \(\+33\.33 points\)$' diff.out || fail "c row" || return 1
	tail -1 diff.out | grep -q '^FAIL: total grew +20.0% above the highest base run, more than 5%; 1 function' ||
		fail "FAIL line: $(tail -1 diff.out)" || return 1
	# --base brings paths back to the BASE side; the legacy form is the same.
	diff_status --new n1.pb n2.pb --base r1 r2 >/dev/null
	sed 1,2d diff.out >a.txt
	diff_status r1 r2 --new n1.pb n2.pb >/dev/null
	sed 1,2d diff.out >b.txt
	cmp -s a.txt b.txt || fail "--base order changes the result" || return 1
}

# ---- the flame graph -------------------------------------------------------------

# render SVG PNG WIDTH HEIGHT: headless Chromium's picture of the SVG.
render() {
	timeout 60 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
		--screenshot="$2" --window-size="$3,$4" "$1" >chromium.log 2>&1
	[ -s "$2" ] || fail "chromium wrote no picture: $(tail -3 chromium.log)" || return 1
	pngtopnm "$2" >"${2%.png}.ppm" || fail "pngtopnm failed" || return 1
}

# fill_of SVG NAME: the rgb(...) fill of the frame whose title starts with NAME.
fill_of() {
	grep -o "<title>$2 ([^<]*</title><rect [^>]*fill=\"rgb([0-9,]*)\"" "$1" | head -1 |
		sed 's/.*fill="rgb(\([0-9,]*\))".*/\1/' | tr ',' ' '
}

# run_of PPM Y R G B: "first last" of the widest run of that colour on row Y.
run_of() {
	"$PROGS/ppm_row" "$1" "$2" | awk -v r="$3" -v g="$4" -v b="$5" '
		$3 == r && $4 == g && $5 == b && $2 - $1 > best { best = $2 - $1; first = $1; last = $2 }
		END { if (best) print first, last }'
}

# A known profile: main under all, then a 60%, b 30%, c 10% in name
# order. The SVG is well-formed XML (xmllint), has the frames and
# tooltips, and the picture has a's colour from x = 10 to 10 + 0.6 * 1180
# on a's row, b's after it.
test_ci_gate_flame_picture() {
	"$GATE_SYNTH" p.pb "a;main=600" "b;main=300" "c;main=100"
	"$CPROF" flame p.pb -o p.svg 2>err || fail "flame: exit $? $(cat err)" || return 1
	xmllint --noout p.svg || fail "not well-formed XML" || return 1
	grep -q '<script' p.svg && fail "the SVG has a script" && return 1
	grep -q 'href' p.svg && fail "the SVG refers to something outside" && return 1
	grep -q '<title>a (600ns, 60.00%)</title>' p.svg || fail "a's tooltip" || return 1
	grep -q '<title>main (1us, 100.00%)</title>' p.svg || fail "main's tooltip" || return 1
	local height
	height=$(sed -n 's/.*<svg [^>]* height="\([0-9]*\)".*/\1/p' p.svg)
	[ "$height" -eq 90 ] || fail "height $height, want 34 + 3 * 16 + 8 = 90" || return 1
	render p.svg p.png 1200 "$height" || return 1
	# Frames: all at y 66-80, main 50-64, a/b/c 34-48. Row 36 is inside a, b, c.
	local fill first last
	fill=$(fill_of p.svg a)
	read -r first last <<<"$(run_of p.ppm 36 $fill)"
	echo "a: rgb($fill), pixels $first-$last"
	[ -n "$first" ] || fail "a's colour is not on the row: $("$PROGS/ppm_row" p.ppm 36 | head)" || return 1
	near "$first" 10 2 || fail "a starts at $first, want 10" || return 1
	near "$last" 718 2 || fail "a ends at $last, want 718" || return 1
	fill=$(fill_of p.svg b)
	read -r first last <<<"$(run_of p.ppm 36 $fill)"
	echo "b: rgb($fill), pixels $first-$last"
	near "$first" 718 2 && near "$last" 1072 2 || fail "b at $first-$last, want 718-1072" || return 1
	fill=$(fill_of p.svg main)
	read -r first last <<<"$(run_of p.ppm 52 $fill)"
	near "$first" 10 2 && near "$last" 1190 2 || fail "main at $first-$last, want 10-1190" || return 1
	# The same function has the same colour in another graph.
	"$GATE_SYNTH" q.pb "a;other=5" "zzz;other=5"
	"$CPROF" flame q.pb -o q.svg || return 1
	[ "$(fill_of q.svg a)" = "$(fill_of p.svg a)" ] || fail "a's colour changed between graphs" || return 1
	# Wider: the same proportions.
	"$CPROF" flame p.pb -o wide.svg --width 2000 || return 1
	grep -q '<title>a (600ns, 60.00%)</title><rect x="10.00" y="34.0" width="1188.00"' wide.svg ||
		fail "width 2000: a is not 0.6 * 1980 wide" || return 1
	# Merged input: the frames of two files add up.
	"$CPROF" flame p.pb q.pb -o pq.svg || return 1
	grep -q '<title>all (1.01us, 100.00%)</title>' pq.svg || fail "merged total" || return 1
	grep -q '<title>a (600ns, 59.41%)</title>' pq.svg && grep -q '<title>a (5ns, 0.50%)</title>' pq.svg ||
		fail "merged a: $(grep -o '<title>a [^<]*' pq.svg)" || return 1
}

# Differential: b grew 100%, c shrank 50%, a unchanged: b's frame is red,
# c's blue, a's grey in the picture, widths are NEW's.
test_ci_gate_flame_differential() {
	"$GATE_SYNTH" base.pb "a;main=600" "b;main=300" "c;main=100"
	"$GATE_SYNTH" new.pb "a;main=600" "b;main=600" "c;main=50"
	"$CPROF" flame new.pb --base base.pb -o d.svg 2>err || fail "flame --base: $(cat err)" || return 1
	xmllint --noout d.svg || fail "not well-formed XML" || return 1
	grep -q '<title>b (new 600ns, 48.00%; base 300ns; +100.0%)</title>' d.svg || fail "b's tooltip" || return 1
	grep -q '<title>c (new 50ns, 4.00%; base 100ns; -50.0%)</title>' d.svg || fail "c's tooltip" || return 1
	render d.svg d.png 1200 90 || return 1
	# x = 10 + 1180 * share: a 10-576, b 576-1142, c 1142-1190.
	local row
	row=$("$PROGS/ppm_row" d.ppm 36)
	echo "$row"
	echo "$row" | awk '$1 <= 300 && $2 >= 300 { exit !($3 == 235 && $4 == 235 && $5 == 235) }' ||
		fail "a is not grey at x=300" || return 1
	echo "$row" | awk '$1 <= 800 && $2 >= 800 { exit !($3 > 200 && $4 < 60 && $5 < 60) }' ||
		fail "b is not red at x=800" || return 1
	echo "$row" | awk '$1 <= 1165 && $2 >= 1165 { exit !($5 > 200 && $3 < 60) }' ||
		fail "c is not blue at x=1165" || return 1
	# Three BASE runs: their mean is the base (300, 200, 400 for b: 300).
	"$GATE_SYNTH" b1.pb "a;main=600" "b;main=200" "c;main=100"
	"$GATE_SYNTH" b2.pb "a;main=600" "b;main=400" "c;main=100"
	"$CPROF" flame new.pb --base b1.pb base.pb b2.pb -o d3.svg || return 1
	grep -q '<title>b (new 600ns, 48.00%; base 300ns; +100.0%)</title>' d3.svg || fail "mean base" || return 1
}

# Hostile names stay well-formed XML; a huge profile renders in bounded
# size.
test_ci_gate_flame_hostile_names() {
	"$GATE_SYNTH" h.pb "$(printf 'a<b>&"c\x27\x01')=10" "$(printf 'bad\xff\xfeutf8')=10" \
		"$(printf 'caf\xc3\xa9')=10" "$(head -c 3000 /dev/zero | tr '\0' x)=10"
	"$CPROF" flame h.pb -o h.svg 2>err || fail "flame: $(cat err)" || return 1
	xmllint --noout h.svg || fail "not well-formed XML" || return 1
	grep -q 'a&lt;b&gt;&amp;&quot;c&apos;?' h.svg || fail "escaping" || return 1
	grep -q "$(printf 'caf\xc3\xa9')" h.svg || fail "UTF-8 name not kept" || return 1
	grep -q 'bad??utf8' h.svg || fail "bad UTF-8 not replaced" || return 1
}

# ---- bad input on the new paths -------------------------------------------------

test_ci_gate_bad_input() {
	"$GATE_SYNTH" good.pb "a;main=10"
	echo "not a profile" >text.pb.gz
	mkdir -p empty nokind prof
	echo x >nokind/notes.txt
	"$GATE_SYNTH" prof/app.1.0000.cpu.pb.gz "a=1"
	local item file problem rc cmd
	local cases=(
		"text.pb.gz|merge -o out.pb.gz good.pb text.pb.gz|not gzip or protobuf"
		"text.pb.gz|flame text.pb.gz -o out.svg|not gzip or protobuf"
		"text.pb.gz|flame good.pb --base text.pb.gz -o out.svg|not gzip or protobuf"
		"text.pb.gz|top good.pb text.pb.gz|not gzip or protobuf"
		"text.pb.gz|diff good.pb --new good.pb text.pb.gz|not gzip or protobuf"
		"empty|top empty|no profiles"
		"empty|raw good.pb empty|no profiles"
		"empty|merge -o out.pb.gz empty|no profiles"
		"empty|diff empty good.pb|no profiles"
		"empty|flame empty -o out.svg|no profiles"
		"nokind|top nokind|no profiles"
		"prof|top -k heap prof|no heap profiles"
		"missing.pb|merge -o out.pb.gz missing.pb|No such file or directory"
		"no-such-dir/out.pb.gz|merge -o no-such-dir/out.pb.gz good.pb|No such file or directory"
		"no-such-dir/out.svg|flame good.pb -o no-such-dir/out.svg|No such file or directory"
		"merge|merge good.pb|missing -o OUT"
		"merge|merge -o out.pb.gz|missing PATH"
		"flame|flame good.pb|missing -o OUT.svg"
		"flame|flame -o out.svg|missing PATH"
		"flame|flame good.pb -o out.svg --width 5|--width wants pixels"
		"top|top --by nothing good.pb|--by wants program or process"
		"diff|diff good.pb good.pb --per 1,2,3|--per has 3 counts for 2 runs"
		"diff|diff good.pb good.pb --per 0|--per wants counts"
		"diff|diff good.pb good.pb --max-total-growth x|--max-total-growth wants"
		"diff|diff good.pb good.pb --max-growth -3|--max-growth wants"
		"diff|diff good.pb --new|want BASE... --new NEW..."
	)
	for item in "${cases[@]}"; do
		IFS='|' read -r file cmd problem <<<"$item"
		# shellcheck disable=SC2086
		(ulimit -v 1500000; timeout 20 "$CPROF" $cmd) >out 2>err
		rc=$?
		[ "$rc" -eq 2 ] || fail "cprof $cmd: exit $rc, want 2" || return 1
		one_line_error err "$file" || { echo "cprof $cmd"; return 1; }
		grep -q -- "$problem" err || fail "cprof $cmd: $(cat err), want \"$problem\"" || return 1
		[ ! -e out.pb.gz ] && [ ! -e out.svg ] || fail "cprof $cmd wrote an output" || return 1
		ls ./*.tmp.* >/dev/null 2>&1 && fail "cprof $cmd left a temporary file" && return 1
	done
	# Nothing to draw: a total of 0.
	"$GATE_SYNTH" zero.pb "a=0"
	"$CPROF" flame zero.pb -o out.svg >out 2>err; rc=$?
	[ "$rc" -eq 2 ] && one_line_error err zero.pb && grep -q 'nothing to draw' err || fail "zero: $rc $(cat err)" || return 1
	echo "${#cases[@]} bad inputs: exit 2, one line each, nothing written"
}
