# End-to-end tests of the wrappers' stack walk (preload/walk.c). Sourced
# by tests/run.sh; each test_* runs in its own empty directory.
#
# build/check/libcprof.so is the shim with every walk of walk.c's, a
# wrapper's or the CPU signal handler's, checked against libunwind's walk
# of the same stack (CPROF_WALK_CHECK; see walk.c): at exit each process
# prints on stderr, for each of the two, how many walks gave the same
# frames, how many differed, and how many the walk left to libunwind.

CHECK_SHIM=$ROOT/build/check/libcprof.so

# walk_check_sum KIND FILE: "same different left" summed over the check
# lines of KIND (wrapper, signal) in FILE (one line a process).
walk_check_sum() {
	awk -v k="$1" '$1 == "cprof-walk-check:" && $2 == k && $3 == "same" { s += $4; d += $6; l += $8 }
		END { printf "%d %d %d\n", s, d, l }' "$2"
}

# Real programs from Debian, their heap, block and mutex wrappers' walks
# (every 1 KiB allocated is a sample) and their CPU samples' (1000 Hz): an
# interpreter with threads that sleep and join, the same interpreter in a
# loop, another interpreter, a compiler driver and its cc1 and cc1plus;
# and the demo's service (threads that read, lock and wait; it found a
# stack recorded two ways, see test_walked_drops_own_frames). Every walk the new code makes must give libunwind's frames.
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
	gcc -std=gnu11 -g -O2 -pthread -o service "$ROOT/demo/service.c" ||
		fail "cannot build demo/service.c" || return 1
	for name in python pycpu perl gcc gxx service; do
		case $name in
		python) cmd=(/usr/bin/python3 -c 'import json, threading, time
def work():
    for i in range(300):
        json.dumps(list(range(10 * i)))
        time.sleep(0.0002)
threads = [threading.Thread(target=work) for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]') ;;
		pycpu) cmd=(/usr/bin/python3 -c 'print(sum(i * i for i in range(3000000)))') ;;
		perl) cmd=(perl -e 'my %h; $h{$_} = [1 .. 10] for 1 .. 100000; print scalar(keys %h), "\n"') ;;
		gcc) cmd=(gcc -O2 -c -o prog.o -x c "$ROOT/preload/stacks.c" -I"$ROOT/preload"
			-I"$ROOT/build/gen" -I"$ROOT/include" -D_GNU_SOURCE) ;;
		gxx) cmd=(g++ -O1 -c -o prog_cc.o prog.cc) ;;
		service) cmd=(./service) ;;
		esac
		status=0
		env CPROF_OUT="prof_$name" CPROF_PROFILES=cpu,heap,block,mutex CPROF_HEAP_RATE=1024 \
			CPROF_CPU_HZ=1000 LD_PRELOAD="$CHECK_SHIM" "${cmd[@]}" >"$name.out" 2>"$name.err" ||
			status=$?
		[ "$status" = 0 ] || fail "$name: exit $status: $(grep -v cprof-walk-check "$name.err" | head -5)" ||
			return 1
		grep -m 6 'cprof-walk-check: \(wrapper walk\|signal walk\|libunwind\)' "$name.err"
		local kind least
		for kind in wrapper signal; do
			read -r same different left < <(walk_check_sum "$kind" "$name.err")
			echo "$name, $kind: $same walks as libunwind's, $different different, $left left to libunwind"
			[ "$different" = 0 ] || fail "$name: $different $kind walks differ from libunwind's" ||
				return 1
			least=50
			[ "$kind" = signal ] && least=20
			[ "$same" -ge "$least" ] || fail "$name: only $same $kind walks checked" || return 1
		done
	done
}
