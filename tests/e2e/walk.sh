# End-to-end tests of the wrappers' stack walk (preload/walk.c). Sourced
# by tests/run.sh; each test_* runs in its own empty directory.
#
# build/check/libcprof.so is the shim with every wrapper walk checked
# against libunwind's trace of the same stack (CPROF_WALK_CHECK; see
# walk.c): at exit each process prints on stderr how many walks gave the
# same return addresses, how many differed, and how many the walk left
# to libunwind.

CHECK_SHIM=$ROOT/build/check/libcprof.so

# walk_check_sum FILE...: "same different left" summed over the check
# lines of the files.
walk_check_sum() {
	cat "$@" | awk '/^cprof-walk-check: same/ { s += $3; d += $5; l += $7 }
		END { printf "%d %d %d\n", s, d, l }'
}

# Real programs from Debian, their heap, block and mutex wrappers' walks
# (every 1 KiB allocated is a sample): an interpreter with threads that
# sleep and join, one without, a compiler driver and its cc1 and cc1plus. Every walk the new code makes must give libunwind's frames.
test_walk_matches_libunwind_real_programs() {
	[ -x "$CHECK_SHIM" ] || fail "no $CHECK_SHIM (make test builds it)" || return 1
	cat >prog.cc <<-'EOF'
		#include <map>
		#include <string>
		#include <vector>
		std::map<std::string, std::vector<int>> table;
		int count() { return (int)table.size(); }
	EOF
	local name status
	local -a cmd
	for name in python perl gcc gxx; do
		case $name in
		python) cmd=(/usr/bin/python3 -c 'import json, threading, time
def work():
    for i in range(300):
        json.dumps(list(range(i)))
        time.sleep(0.0002)
threads = [threading.Thread(target=work) for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]') ;;
		perl) cmd=(perl -e 'my %h; $h{$_} = [1 .. 10] for 1 .. 20000; print scalar(keys %h), "\n"') ;;
		gcc) cmd=(gcc -O2 -c -o prog.o -x c "$ROOT/preload/stacks.c" -I"$ROOT/preload"
			-I"$ROOT/build/gen" -I"$ROOT/include" -D_GNU_SOURCE) ;;
		gxx) cmd=(g++ -O1 -c -o prog_cc.o prog.cc) ;;
		esac
		status=0
		env CPROF_OUT="prof_$name" CPROF_PROFILES=heap,block,mutex CPROF_HEAP_RATE=1024 \
			LD_PRELOAD="$CHECK_SHIM" "${cmd[@]}" >"$name.out" 2>"$name.err" || status=$?
		[ "$status" = 0 ] || fail "$name: exit $status: $(grep -v cprof-walk-check "$name.err" | head -5)" ||
			return 1
		read -r same different left < <(walk_check_sum "$name.err")
		echo "$name: $same walks as libunwind's, $different different, $left left to libunwind"
		grep -m 6 'cprof-walk-check: \(walk\|libunwind\)' "$name.err"
		[ "$different" = 0 ] || fail "$name: $different walks differ from libunwind's" || return 1
		[ "$same" -ge 50 ] || fail "$name: only $same walks checked" || return 1
	done
}
