/* test_thread_self.c — what a new thread learns about itself without a
 * system call (preload/thread_self.c), against the real answers:
 *   - 300 threads of three kinds in turn (default attributes, a 64 KiB
 *     stack, a 100000-byte stack with a 3-page guard, and a stack the
 *     program gave), each asking cprof_self_learn with the hint its
 *     creator made (cprof_self_hint), as the shim's trampoline does: its
 *     id is gettid's; its stack top is pthread_getattr_np's exactly; its
 *     low bound is never below the real one (the room check must not count
 *     on stack that is not there), and what it counts is the size asked
 *     for less at most a page (glibc may hand out a bigger cached stack);
 *   - after the first threads, the shortcut is taken: fewer than one
 *     thread in ten still makes the calls, and some still do (the
 *     recheck; counted with a wrapped pthread_getattr_np).
 */
#include <setjmp.h> /* cmocka.h needs these four first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cprof_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int asked; /* pthread_getattr_np calls made by thread_self.c */

/* Counts the calls, then answers as glibc does. */
int pthread_getattr_np(pthread_t t, pthread_attr_t *attr)
{
	static int (*next)(pthread_t, pthread_attr_t *);
	if (!next)
		next = (int (*)(pthread_t, pthread_attr_t *))dlsym(RTLD_NEXT, "pthread_getattr_np");
	__atomic_fetch_add(&asked, 1, __ATOMIC_RELAXED);
	return next(t, attr);
}

typedef struct probe {
	cprof_stack_hint_t hint;
	bool known;
	pid_t tid, real_tid;
	uintptr_t lo, hi, real_lo, real_hi;
} probe_t;

static void *learn(void *arg)
{
	probe_t *p = arg;
	p->known = cprof_self_learn(&p->hint, &p->tid, &p->lo, &p->hi);
	p->real_tid = (pid_t)syscall(SYS_gettid);
	int before = __atomic_load_n(&asked, __ATOMIC_RELAXED);
	pthread_attr_t attr;
	void *addr;
	size_t size;
	assert_int_equal(pthread_getattr_np(pthread_self(), &attr), 0);
	assert_int_equal(pthread_attr_getstack(&attr, &addr, &size), 0);
	pthread_attr_destroy(&attr);
	__atomic_store_n(&asked, before, __ATOMIC_RELAXED); /* not thread_self.c's */
	p->real_lo = (uintptr_t)addr;
	p->real_hi = (uintptr_t)addr + size;
	return NULL;
}

static void test_learns_what_the_calls_say(void **state)
{
	(void)state;
	cprof_self_init((pid_t)syscall(SYS_gettid));
	pthread_attr_t small, odd, given, mid;
	pthread_attr_init(&small);
	pthread_attr_setstacksize(&small, 65536);
	pthread_attr_init(&odd);
	pthread_attr_setstacksize(&odd, 100000);
	pthread_attr_setguardsize(&odd, 3 * 4096);
	size_t given_size = 1 << 20;
	void *stack = aligned_alloc(4096, given_size);
	assert_non_null(stack);
	pthread_attr_init(&given);
	pthread_attr_setstack(&given, stack, given_size);
	pthread_attr_init(&mid);
	pthread_attr_setstacksize(&mid, 256 * 1024);
	const pthread_attr_t *kinds[] = { NULL, &small, &odd, &given, &mid };
	const int threads = 300;
	int asked_after_warmup = 0;
	for (int i = 0; i < threads; i++) {
		const pthread_attr_t *attr = kinds[i % 5];
		probe_t p;
		memset(&p, 0, sizeof p);
		cprof_self_hint(attr, &p.hint);
		if (i == 20)
			asked_after_warmup = __atomic_load_n(&asked, __ATOMIC_RELAXED);
		pthread_t t;
		assert_int_equal(pthread_create(&t, attr, learn, &p), 0);
		assert_int_equal(pthread_join(t, NULL), 0);
		assert_true(p.known);
		bool short_counted = p.hint.size && p.hi - p.lo + 4096 < (p.hint.size & ~(size_t)4095);
		if (p.tid != p.real_tid || p.hi != p.real_hi || p.lo < p.real_lo || short_counted)
			fail_msg("thread %d (kind %d): tid %d/%d hi %#lx/%#lx lo %#lx/%#lx", i, i % 5,
				 (int)p.tid, (int)p.real_tid, (unsigned long)p.hi,
				 (unsigned long)p.real_hi, (unsigned long)p.lo,
				 (unsigned long)p.real_lo);
		if (attr == &given) {
			assert_int_equal(p.lo, (uintptr_t)stack);
			assert_int_equal(p.hi, (uintptr_t)stack + given_size);
		}
	}
	int late = __atomic_load_n(&asked, __ATOMIC_RELAXED) - asked_after_warmup;
	printf("pthread_getattr_np asked by %d of the last %d threads\n", late, threads - 20);
	assert_true(late * 10 < threads - 20);
	assert_true(late > 0);
	free(stack);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_learns_what_the_calls_say),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
