/* test_unwind.c — how much stack an unwind uses, measured, against the
 * bounds the capture functions check (CPROF_UNWIND_ROOM_SIGNAL, _WRAPPER):
 *   - a thread runs on a 1 MiB stack of its own painted with a pattern,
 *     recurses 64 or 512 frames and unwinds there: from a signal handler
 *     (cprof_unwind_signal on the handler's ucontext), and from a wrapper's
 *     place (cprof_unwind_here) by both of its paths, libunwind's cached
 *     fast trace and the uncached unw_step walk; the lowest byte that no
 *     longer holds the pattern is the high-water mark, and what lies
 *     between it and the frame that called the capture is the unwind's
 *     use. Each must stay below the bound (printed: the figures behind
 *     the README's);
 *   - with the same thread's stack nearly spent (less than the bound
 *     left), both capture functions answer [cprof: no stack room] and use
 *     next to nothing below their caller.
 */
#include <setjmp.h> /* cmocka.h needs these four first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cprof_internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#define STACK_BYTES (1u << 20)
#define PAINT 0xa5

enum { FROM_SIGNAL, FROM_WRAPPER };

typedef struct probe {
	int how;
	int frames;        /* recursion depth before the capture */
	size_t leave;      /* 0, or: burn the stack down to this many bytes left */
	unsigned caches;   /* CPROF_UNWIND_CACHES for this thread's run */
	/* out */
	uintptr_t caller;  /* the frame that called the capture */
	int depth;
	uintptr_t pcs[CPROF_DEPTH_LIMIT + 2];
} probe_t;

static probe_t *current;
static char *stack_base;

static void on_usr1(int sig, siginfo_t *info, void *uc)
{
	(void)sig;
	(void)info;
	current->caller = (uintptr_t)__builtin_frame_address(0);
	current->depth = cprof_unwind_signal(uc, current->pcs, CPROF_DEPTH_LIMIT);
}

__attribute__((noinline)) static void capture(probe_t *p)
{
	if (p->how == FROM_SIGNAL) {
		raise(SIGUSR1);
	} else {
		p->caller = (uintptr_t)__builtin_frame_address(0);
		p->depth = cprof_unwind_here(p->pcs, CPROF_DEPTH_LIMIT);
	}
}

__attribute__((noinline)) static int recurse(probe_t *p, int n)
{
	volatile char pad[32];
	pad[0] = (char)n;
	if (n > 0)
		return recurse(p, n - 1) + pad[0];
	if (p->leave) {
		/* Burn the stack down to p->leave bytes above its end. */
		uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
		size_t burn = sp - (uintptr_t)stack_base - p->leave;
		char *hole = __builtin_alloca(burn);
		__asm__ volatile("" : : "r"(hole) : "memory");
	}
	capture(p);
	return pad[0];
}

static void *run(void *arg)
{
	probe_t *p = arg;
	uintptr_t lo = 0, hi = 0;
	assert_true(cprof_self_stack_asked(&lo, &hi));
	cprof_unwind_thread_bounds(lo, hi);
	current = p;
	/* A thread's first wrapper unwinds are uncached: past them, the
	 * capture is the thread's first cached trace (it makes the table). */
	unsigned cached = cprof_unwind_cached_threads();
	if (p->how == FROM_WRAPPER && p->caches)
		for (int i = 0; i < CPROF_UNWIND_UNCACHED_FIRST; i++) {
			uintptr_t pcs[8];
			assert_true(cprof_unwind_here(pcs, 8) > 0);
			assert_int_equal(cprof_unwind_cached_threads(), cached);
		}
	recurse(p, p->frames);
	if (p->how == FROM_WRAPPER && !p->leave)
		assert_int_equal(cprof_unwind_cached_threads(), cached + (p->caches ? 1 : 0));
	return NULL;
}

/* Runs the probe on a freshly painted stack; returns the bytes the
 * capture used below its caller's frame. */
static size_t measure(probe_t *p)
{
	memset(stack_base, PAINT, STACK_BYTES);
	cprof_config.unwind_caches = p->caches;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, stack_base, STACK_BYTES);
	pthread_t t;
	assert_int_equal(pthread_create(&t, &attr, run, p), 0);
	pthread_join(t, NULL);
	pthread_attr_destroy(&attr);
	size_t low = 0;
	while (low < STACK_BYTES && (unsigned char)stack_base[low] == PAINT)
		low++;
	uintptr_t lowest = (uintptr_t)stack_base + low;
	return p->caller > lowest ? p->caller - lowest : 0;
}

static bool has_frame(const probe_t *p, uintptr_t frame)
{
	for (int i = 0; i < p->depth; i++)
		if (p->pcs[i] == frame)
			return true;
	return false;
}

static void check(int how, int frames, unsigned caches, const char *what)
{
	static probe_t p;
	memset(&p, 0, sizeof p);
	p.how = how;
	p.frames = frames;
	p.caches = caches;
	size_t used = measure(&p);
	printf("    unwind %s, %d frames: %zu bytes of stack below the caller (bound %d), depth %d\n",
	       what, frames, used,
	       how == FROM_SIGNAL ? CPROF_UNWIND_ROOM_SIGNAL : CPROF_UNWIND_ROOM_WRAPPER, p.depth);
	assert_true(p.depth >= (frames < 500 ? frames : 500));
	assert_false(has_frame(&p, CPROF_FRAME_NOROOM));
	assert_true(used < (how == FROM_SIGNAL ? CPROF_UNWIND_ROOM_SIGNAL : CPROF_UNWIND_ROOM_WRAPPER));
}

static void test_signal_unwind_within_bound(void **state)
{
	(void)state;
	check(FROM_SIGNAL, 64, 64, "from a signal");
	check(FROM_SIGNAL, 510, 64, "from a signal");
}

static void test_wrapper_unwind_cached_within_bound(void **state)
{
	(void)state;
	check(FROM_WRAPPER, 64, 64, "from a wrapper, cached trace");
	check(FROM_WRAPPER, 510, 64, "from a wrapper, cached trace");
}

static void test_wrapper_unwind_uncached_within_bound(void **state)
{
	(void)state;
	check(FROM_WRAPPER, 64, 0, "from a wrapper, uncached");
	check(FROM_WRAPPER, 510, 0, "from a wrapper, uncached");
}

static void test_short_stack_not_unwound(void **state)
{
	(void)state;
	static probe_t p;
	for (int how = FROM_SIGNAL; how <= FROM_WRAPPER; how++) {
		memset(&p, 0, sizeof p);
		p.how = how;
		p.frames = 4;
		p.caches = 64;
		/* Less room than the bound (for a signal: counting the kernel's
		 * signal frame, about 3 KiB, that lands below this one). */
		p.leave = how == FROM_SIGNAL ? CPROF_UNWIND_ROOM_SIGNAL + 2048
					     : CPROF_UNWIND_ROOM_WRAPPER / 2;
		size_t used = measure(&p);
		printf("    short stack, %s: depth %d, %zu bytes used\n",
		       how == FROM_SIGNAL ? "signal" : "wrapper", p.depth, used);
		if (how == FROM_WRAPPER) {
			assert_int_equal(p.depth, 1);
			assert_int_equal(p.pcs[0], CPROF_FRAME_NOROOM);
		}
		assert_true(used < 1024);
	}
}

int main(void)
{
	cprof_config.max_depth = CPROF_DEPTH_LIMIT;
	cprof_config.unwind_caches = 64;
	stack_base = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (stack_base == MAP_FAILED)
		return 1;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGUSR1, &sa, NULL);
	cprof_unwind_init();
	/* Here libcprof's code is this test's: keep its frames. */
	cprof_self_text_start = cprof_self_text_end = 0;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signal_unwind_within_bound),
		cmocka_unit_test(test_wrapper_unwind_cached_within_bound),
		cmocka_unit_test(test_wrapper_unwind_uncached_within_bound),
		cmocka_unit_test(test_short_stack_not_unwound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
