/* clock.c — the wait clock: how the lock and blocking-call wrappers time a
 * call, in nanoseconds, for less than the vDSO's clock_gettime.
 *
 * Every wrapped call reads the clock twice, and on a short call (a pipe
 * read that does not sleep, ~200 ns) those two vDSO reads were the whole
 * cost of the block profile: 2 x 22 ns here. The time-stamp counter costs
 * 9-11 ns a read, so, as Go's block profiler does with cputicks, the
 * wrappers read the TSC and convert: ns = base_ns + (tsc - base_tsc) *
 * mult >> 32, one multiply.
 *
 * When the TSC is used: only where the kernel itself keeps time with it
 * (clocksource "tsc": the kernel found it invariant and synchronised
 * across CPUs; on a VM whose kernel falls back to kvm-clock or hpet it is
 * not trusted, and neither do we) and CPROF_CLOCK is not "monotonic".
 * Calibration needs no start-up wait: the constructor notes one pair
 * (TSC, CLOCK_MONOTONIC); until CALIBRATE_NS have passed the wrappers use
 * the vDSO clock, and the first wrapped call after that notes a second
 * pair, computes the ratio and switches every thread to the TSC. Both
 * clocks agree at the base, so a wait that starts on one and ends on the
 * other is measured right to within the calibration error (a few parts
 * per million over 20 ms; what a 20 ms read jitter of ~50 ns gives).
 *
 * CPROF_SIGSAFE: cprof_wait_now_slow (atomics and the vDSO clock only).
 */
#include "wait.h"

#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CALIBRATE_NS 20000000 /* 20 ms between the two pairs */

cprof_wait_clock_t cprof_wait_clock;

static uint64_t base_tsc;
static int64_t base_ns;
static atomic_int tsc_wanted; /* the kernel trusts the TSC; not calibrated yet */

static int64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no system call */
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* True when the kernel's clocksource is the TSC. Raw system calls, at
 * start-up: the descriptor lives for three calls and is the shim's own. */
static bool kernel_uses_tsc(void)
{
	char buf[32];
	int fd = (int)syscall(SYS_openat, AT_FDCWD,
			      "/sys/devices/system/clocksource/clocksource0/current_clocksource",
			      O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
	syscall(SYS_close, fd);
	return n == 4 && memcmp(buf, "tsc\n", 4) == 0;
}

/* A (TSC, monotonic) pair read as close together as the clock allows:
 * the TSC read halfway between two clock reads, of three tries the
 * tightest. */
static void read_pair(uint64_t *tsc, int64_t *ns)
{
	int64_t best = INT64_MAX;
	for (int i = 0; i < 3; i++) {
		int64_t a = monotonic_ns();
		uint64_t t = cprof_rdtsc();
		int64_t b = monotonic_ns();
		if (b - a < best) {
			best = b - a;
			*tsc = t;
			*ns = a + (b - a) / 2;
		}
	}
}

void cprof_wait_clock_init(void)
{
	cprof_wait_clock.mult = 0;
	atomic_store_explicit(&cprof_wait_clock.tsc_on, 0, memory_order_relaxed);
	if (cprof_config.wait_clock == CPROF_CLOCK_MONOTONIC || !kernel_uses_tsc()) {
		atomic_store(&tsc_wanted, 0);
		return;
	}
	read_pair(&base_tsc, &base_ns);
	atomic_store(&tsc_wanted, 1);
}

CPROF_SIGSAFE int64_t cprof_wait_now_slow(void)
{
	int64_t now = monotonic_ns();
	if (!atomic_load_explicit(&tsc_wanted, memory_order_relaxed) ||
	    now - base_ns < CALIBRATE_NS)
		return now;
	/* One thread calibrates; the others keep the vDSO clock meanwhile. */
	int expected = 1;
	if (!atomic_compare_exchange_strong(&tsc_wanted, &expected, 2))
		return now;
	uint64_t tsc;
	int64_t ns;
	read_pair(&tsc, &ns);
	if (tsc <= base_tsc || ns <= base_ns) {
		return now; /* tsc_wanted stays 2: not trusted, never again */
	}
	/* ns per tick in 32.32 fixed point; a 1 GHz..10 GHz TSC gives
	 * mult in (0.1, 1] x 2^32. */
	unsigned __int128 m = ((unsigned __int128)(uint64_t)(ns - base_ns) << 32) /
			      (tsc - base_tsc);
	if (m == 0 || m > ((unsigned __int128)1 << 36))
		return now;
	cprof_wait_clock.base_tsc = base_tsc;
	cprof_wait_clock.base_ns = base_ns;
	cprof_wait_clock.mult = (uint64_t)m;
	atomic_store_explicit(&cprof_wait_clock.tsc_on, 1, memory_order_release);
	return now;
}

const char *cprof_wait_clock_name(void)
{
	return atomic_load_explicit(&cprof_wait_clock.tsc_on, memory_order_acquire) ? "tsc"
										   : "monotonic";
}
