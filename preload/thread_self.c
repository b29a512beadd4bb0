/* thread_self.c — what a thread made through pthread_create learns about
 * itself as it starts, without a system call: its kernel thread id and its
 * stack's bounds (the CPU timer, the threads profile and the unwinder's
 * room check need them).
 *
 * Both are in glibc's thread descriptor (struct pthread, where
 * pthread_self() points): the kernel writes the id there before the thread
 * runs (CLONE_PARENT_SETTID), and a stack glibc allocated ends a fixed
 * distance above the descriptor, which glibc places at the top of the
 * block. Neither offset is public, so neither is assumed. The id's offset
 * is found on the main thread (the word that holds what gettid said), the
 * stack top's is learnt from the first thread's pthread_getattr_np, and
 * each is checked against the real answer (gettid, 0.17 us here;
 * pthread_getattr_np, 0.57 us: a sched_getaffinity call and three
 * allocations) on the first VERIFY_THREADS threads and on one thread in
 * RECHECK_EVERY after. One disagreement turns that shortcut off for good.
 * The low bound is taken from the size the thread was made with, rounded
 * down to a page, less a page of margin: glibc's block is at least that
 * big (a cached stack may be bigger), so the room check never counts on
 * stack that is not there. A stack the program supplied
 * (pthread_attr_setstack) has its bounds in the attributes.
 */
#include "cprof_internal.h"

#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define VERIFY_THREADS 2
#define RECHECK_EVERY 64
#define PAGE 4096u
#define TID_SCAN_BYTES 1024 /* the id is at 720 in glibc 2.36 (bookworm) */
#define TOP_OFFSET_MAX 65536

static int tid_offset = -1;          /* in the descriptor; -1: not found */
static _Atomic int tid_confirmed;    /* threads that agreed; -1: off */
static _Atomic intptr_t top_offset;  /* stack top - descriptor; 0: not known */
static _Atomic int top_confirmed;    /* threads that agreed; -1: off */
static _Atomic unsigned threads_seen;

void cprof_self_init(pid_t main_tid)
{
	const unsigned char *pd = (const unsigned char *)pthread_self();
	for (unsigned o = 0; o + sizeof(pid_t) <= TID_SCAN_BYTES; o += sizeof(pid_t)) {
		pid_t v;
		memcpy(&v, pd + o, sizeof v);
		if (v == main_tid) {
			tid_offset = (int)o;
			return;
		}
	}
}

void cprof_self_hint(const pthread_attr_t *attr, cprof_stack_hint_t *hint)
{
	*hint = (cprof_stack_hint_t){ 0, 0, 0 };
	pthread_attr_t defaults;
	const pthread_attr_t *a = attr;
	if (!a) {
		if (pthread_attr_init(&defaults) != 0)
			return;
		a = &defaults;
	}
	void *addr = NULL;
	size_t size = 0;
	/* glibc's pthread_attr_getstack gives the stack's top less its size,
	 * so attributes that set no stack (a null top) give addr + size == 0;
	 * the deprecated pthread_attr_getstackaddr, which says it outright,
	 * would print a warning at every link. */
	if (attr && pthread_attr_getstack(attr, &addr, &size) == 0 && size &&
	    (uintptr_t)addr + size != 0) {
		hint->user_lo = (uintptr_t)addr;
		hint->user_hi = (uintptr_t)addr + size;
	} else if (pthread_attr_getstacksize(a, &size) == 0) {
		hint->size = size; /* the default's, when attr sets none */
	}
	if (a == &defaults)
		pthread_attr_destroy(&defaults);
}

/* One more agreement, unless the shortcut is off (-1) for good. */
static void confirm(_Atomic int *count)
{
	int v = atomic_load_explicit(count, memory_order_relaxed);
	while (v >= 0 && v < VERIFY_THREADS &&
	       !atomic_compare_exchange_weak_explicit(count, &v, v + 1, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

static pid_t tid_learn(uintptr_t pd, bool recheck)
{
	int confirmed = atomic_load_explicit(&tid_confirmed, memory_order_relaxed);
	pid_t mine = 0;
	if (tid_offset >= 0)
		memcpy(&mine, (const char *)pd + tid_offset, sizeof mine);
	if (confirmed >= VERIFY_THREADS && mine > 0 && !recheck)
		return mine;
	pid_t real = (pid_t)syscall(SYS_gettid);
	if (confirmed >= 0 && tid_offset >= 0) {
		if (mine == real)
			confirm(&tid_confirmed);
		else
			atomic_store_explicit(&tid_confirmed, -1, memory_order_relaxed);
	}
	return real;
}

/* pthread_getattr_np's answer: the real bounds. */
bool cprof_self_stack_asked(uintptr_t *lo, uintptr_t *hi)
{
	pthread_attr_t attr;
	if (pthread_getattr_np(pthread_self(), &attr) != 0)
		return false;
	void *addr;
	size_t size;
	bool ok = pthread_attr_getstack(&attr, &addr, &size) == 0;
	pthread_attr_destroy(&attr);
	if (!ok)
		return false;
	*lo = (uintptr_t)addr;
	*hi = (uintptr_t)addr + size;
	return true;
}

static bool stack_learn(const cprof_stack_hint_t *hint, uintptr_t pd, bool recheck,
			uintptr_t *lo, uintptr_t *hi)
{
	if (hint->user_hi) {
		*lo = hint->user_lo;
		*hi = hint->user_hi;
		return true;
	}
	size_t usable = hint->size & ~(size_t)(PAGE - 1);
	bool derivable = usable >= 4 * PAGE;
	int confirmed = atomic_load_explicit(&top_confirmed, memory_order_relaxed);
	intptr_t top = atomic_load_explicit(&top_offset, memory_order_relaxed);
	if (confirmed >= VERIFY_THREADS && derivable && !recheck) {
		*hi = pd + (uintptr_t)top;
		*lo = *hi - usable + PAGE;
		return true;
	}
	if (!cprof_self_stack_asked(lo, hi))
		return false;
	if (confirmed >= 0 && derivable) {
		intptr_t d = (intptr_t)(*hi - pd);
		bool agrees = *hi > pd && d < TOP_OFFSET_MAX && *hi - usable + PAGE >= *lo;
		if (agrees && top == 0) {
			intptr_t none = 0;
			atomic_compare_exchange_strong(&top_offset, &none, d);
			top = atomic_load_explicit(&top_offset, memory_order_relaxed);
		}
		if (agrees && d == top)
			confirm(&top_confirmed);
		else
			atomic_store_explicit(&top_confirmed, -1, memory_order_relaxed);
	}
	return true;
}

bool cprof_self_learn(const cprof_stack_hint_t *hint, pid_t *tid, uintptr_t *lo, uintptr_t *hi)
{
	unsigned n = atomic_fetch_add_explicit(&threads_seen, 1, memory_order_relaxed);
	bool recheck = n % RECHECK_EVERY == RECHECK_EVERY - 1;
	uintptr_t pd = (uintptr_t)pthread_self();
	*tid = tid_learn(pd, recheck);
	return stack_learn(hint, pd, recheck, lo, hi);
}
