/* wait.h — what the lock wrappers (mutex.c) and the blocking-call wrappers
 * (block.c) share: finding the next definitions, the clock, the per-thread
 * random numbers that sample, and the block profile's recording rule.
 *
 * Contract of every wrapper built on this: it allocates nothing, takes no
 * lock of its own, prints nothing, and hands the program back exactly what
 * the next definition returned, errno included. The next definition is the
 * cancellation point, never the wrapper. On a path that records nothing the
 * wrapper makes no system call of its own: the clock is read through the
 * vDSO. When its profile is off a wrapper is one predictable branch and a
 * tail call.
 */
#ifndef CPROF_WAIT_H
#define CPROF_WAIT_H

#include "cprof_internal.h"

#include <time.h>

/* ---- next definitions ------------------------------------------------ */

/* Declares real_<name>, a pointer to the next definition, and registers
 * it with cprof_real_init, which sets it in the constructor. Until then
 * it points at a resolver (a wrapper called before the constructor, from
 * another library's): the first call resolves and forwards, later calls
 * go straight through, so a wrapper pays no "resolved yet?" test.
 * `params` and `args` are the parenthesised parameter and argument lists;
 * the pointer's type is the system header's own prototype. */
#define CPROF_NEXT_VERSIONED(ret, name, version, params, args)                     \
	static ret resolve_##name params;                                            \
	static __typeof__(name) *real_##name = resolve_##name;                       \
	static ret resolve_##name params                                             \
	{                                                                            \
		__typeof__(name) *next = (__typeof__(name) *)cprof_wait_next(#name, version); \
		__atomic_store_n(&real_##name, next, __ATOMIC_RELAXED);                   \
		return next args;                                                    \
	}                                                                            \
	CPROF_NEXT_SLOT(name, version, real_##name);
#define CPROF_NEXT(ret, name, params, args) CPROF_NEXT_VERSIONED(ret, name, NULL, params, args)

/* The wrapper's own entry address: the leaf frame of what it records, so
 * that a profile names the call the program waited in ("read",
 * "pthread_mutex_lock"), as Go's name runtime.chanrecv or
 * sync.(*Mutex).Lock. A hidden alias: not the GOT, which the program could
 * interpose. */
#define CPROF_WAIT_SELF(name)                                                       \
	extern __typeof__(name) cprof_self_##name                                    \
		__attribute__((alias(#name), copy(name), visibility("hidden")));     \
	__attribute__((used, section("cprof_wait_name"), aligned(sizeof(void *))))   \
	static const cprof_wait_name_t cprof_wait_name_##name = { (const void *)cprof_self_##name, #name }

/* Every wrapper's entry with its name, for the threads profile's `wait`
 * label (a section the linker gathers; no lookup in the loader). */
typedef struct cprof_wait_name {
	const void *entry;
	const char *name;
} cprof_wait_name_t;
/* The name of the wrapper whose entry is `entry`, or NULL. */
const char *cprof_wait_name_of(uintptr_t entry);

/* ---- what a thread inside a wrapped call publishes (threads profile) --
 * At entry, when the threads profile is on, a wrapper writes into the
 * calling thread's fixed record (threads.c, found through
 * cprof_thread.wait): the call (its entry), when it began on the wait
 * clock, the thread's labels, and the registers an unwind starts from
 * (rip, rsp, rbp, rbx, r12-r15 at a point inside the wrapper's frame:
 * eight stores, not unw_getcontext), then makes seq odd; at exit, seq
 * even again. The dumper unwinds such a thread from those registers over
 * a copy of its stack, and re-reads seq: changed, the thread left the
 * call meanwhile and the copy is discarded. So a thread blocked in a
 * wrapped call is never signalled to learn its stack. */
typedef struct cprof_wait_record {
	_Atomic uint32_t seq;  /* odd while inside a wrapped call */
	uint32_t labels;
	uintptr_t entry;       /* the wrapper's entry: the leaf frame, the name */
	int64_t start;         /* cprof_wait_now() at entry */
	uintptr_t regs[8];     /* rip rsp rbp rbx r12 r13 r14 r15 */
} cprof_wait_record_t;

/* Inlined into the wrapper's frame: the registers are that frame's.
 * Returns the odd seq it published, to give cprof_wait_leave, or 0 when
 * it published nothing: a call made by a signal handler inside another
 * wrapped call (the outer call stands), or a handler's call that landed
 * while this one was publishing. */
CPROF_SIGSAFE static inline __attribute__((always_inline)) uint32_t
cprof_wait_enter(cprof_wait_record_t *r, uintptr_t entry, int64_t start)
{
	uint32_t seq = atomic_load_explicit(&r->seq, memory_order_relaxed);
	if (seq & 1)
		return 0;
	r->entry = entry;
	r->start = start;
	r->labels = cprof_thread.labels;
	__asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
			 "movq %%rax, 0(%0)\n"
			 "1:\n\t"
			 "movq %%rsp, 8(%0)\n\t"
			 "movq %%rbp, 16(%0)\n\t"
			 "movq %%rbx, 24(%0)\n\t"
			 "movq %%r12, 32(%0)\n\t"
			 "movq %%r13, 40(%0)\n\t"
			 "movq %%r14, 48(%0)\n\t"
			 "movq %%r15, 56(%0)"
			 :
			 : "r"(r->regs)
			 : "rax", "memory");
	if (atomic_load_explicit(&r->seq, memory_order_relaxed) != seq)
		return 0;
	atomic_store_explicit(&r->seq, seq + 1, memory_order_release);
	return seq + 1;
}

CPROF_SIGSAFE static inline void cprof_wait_leave(cprof_wait_record_t *r, uint32_t token)
{
	if (token)
		atomic_store_explicit(&r->seq, token + 1, memory_order_release);
}

/* A wrapped call between the two, published when the threads profile is
 * on (cprof_thread.wait set): `call` is the next definition's call. */
#define CPROF_WAIT_PUBLISHED(result, call, entry, start)                               \
	do {                                                                         \
		cprof_wait_record_t *wr_ = cprof_thread.wait;                        \
		uint32_t token_ = wr_ ? cprof_wait_enter(wr_, (entry), (start)) : 0; \
		result = call;                                                       \
		if (wr_)                                                             \
			cprof_wait_leave(wr_, token_);                               \
	} while (0)

/* ---- sources' switches ------------------------------------------------- */

/* Set once by the sources' start; plain loads. Hidden in the declaration
 * too, so a wrapper loads them directly (one instruction, not the GOT's
 * address and then the word). */
#define CPROF_HIDDEN __attribute__((visibility("hidden")))
extern CPROF_HIDDEN int cprof_block_on;   /* the block profile records */
extern CPROF_HIDDEN int cprof_mutex_on;   /* the mutex profile records */
extern CPROF_HIDDEN int cprof_locks_on;   /* either: lock wrappers time contended waits */
extern CPROF_HIDDEN int cprof_threads_on; /* the threads profile: wrappers publish their calls */
extern CPROF_HIDDEN int cprof_waits_timed; /* block or threads: blocking wrappers time their calls */

/* Turns the lock wrappers on (cprof_locks_on and the mutex lock's route,
 * mutex.c): called by each source that needs contended waits timed. */
void cprof_locks_enable(void);

/* ---- clock and random numbers ------------------------------------------ */

/* The wait clock (clock.c): nanoseconds from the time-stamp counter where
 * the kernel keeps time with it (one rdtsc and one multiply, ~10 ns),
 * else CLOCK_MONOTONIC through the vDSO (~22 ns). Differences only. */
typedef struct cprof_wait_clock {
	atomic_int tsc_on;  /* calibrated: the fields below are set */
	uint64_t mult;      /* ns per tick, 32.32 fixed point */
	uint64_t base_tsc;
	int64_t base_ns;
} cprof_wait_clock_t;

extern cprof_wait_clock_t cprof_wait_clock;

/* Notes the first calibration pair (constructor). */
void cprof_wait_clock_init(void);
CPROF_SIGSAFE int64_t cprof_wait_now_slow(void);
/* "tsc" once the TSC times waits, else "monotonic" (for the profile). */
const char *cprof_wait_clock_name(void);

CPROF_SIGSAFE static inline uint64_t cprof_rdtsc(void)
{
	return __builtin_ia32_rdtsc();
}

CPROF_SIGSAFE static inline int64_t cprof_wait_now(void)
{
	if (CPROF_LIKELY(atomic_load_explicit(&cprof_wait_clock.tsc_on, memory_order_acquire))) {
		int64_t d = (int64_t)(cprof_rdtsc() - cprof_wait_clock.base_tsc);
		return cprof_wait_clock.base_ns +
		       (int64_t)(((__int128)d * (__int128)cprof_wait_clock.mult) >> 32);
	}
	return cprof_wait_now_slow();
}

/* Per-thread xorshift64*: uniform 64-bit numbers, no system call, seeded
 * from CPROF_SEED (repeatable) or from the clock and the thread. */
CPROF_SIGSAFE uint64_t cprof_wait_random(void);

/* Forget this thread's random state (fork child: not the parent's stream). */
void cprof_wait_random_reset(void);

/* ---- recording ------------------------------------------------------------ */

/* A captured stack: `leaf` (a wrapper's entry) and then the program's
 * stack that called it, pcs[0..depth), in a buffer of the capture pool
 * (never on the program's stack, which may be small), or [leaf,
 * [cprof: not unwound]] when the pool is empty. */
typedef struct cprof_wait_capture {
	uintptr_t *pcs;
	int depth;
	uintptr_t *buffer; /* from the pool, or NULL */
	uintptr_t spare[2];
} cprof_wait_capture_t;

/* Captures; sets cprof_thread.busy around the unwind. Give the buffer
 * back with cprof_wait_release once the stack is in the table. */
CPROF_SIGSAFE void cprof_wait_stack(cprof_wait_capture_t *c, uintptr_t leaf);
CPROF_SIGSAFE void cprof_wait_release(cprof_wait_capture_t *c);

/* Go's block-rate rule for a wait of `delay` ns: kept when delay >= rate,
 * adding (1 contention, delay); else kept with probability delay/rate,
 * adding (rate/delay contentions, rate ns), so that both sums are
 * unbiased. Contentions are in thousandths. False: not kept. */
CPROF_SIGSAFE static inline bool cprof_block_keep(int64_t delay, int64_t *count_milli,
						  int64_t *value)
{
	uint64_t rate = cprof_config.block_rate;
	if (delay <= 0)
		return false;
	if ((uint64_t)delay >= rate) {
		*count_milli = 1000;
		*value = delay;
		return true;
	}
	if (cprof_wait_random() % rate >= (uint64_t)delay)
		return false;
	*count_milli = (int64_t)((rate * 1000 + (uint64_t)delay / 2) / (uint64_t)delay);
	*value = (int64_t)rate;
	return true;
}

/* Adds one kept wait to the block profile: the stack pcs[0..depth) and
 * the values from cprof_block_keep. */
CPROF_SIGSAFE void cprof_block_add(const uintptr_t *pcs, int depth, int64_t count_milli,
				   int64_t delay);

/* A wait of `delay` ns that just ended in the wrapper whose entry is
 * `leaf`: decides by the rule and records it against the caller's stack.
 * errno is kept. */
CPROF_SIGSAFE void cprof_block_wait(uintptr_t leaf, int64_t delay);

/* mutex.c: `lock` (a mutex) is about to be released by the program
 * without pthread_mutex_unlock (pthread_cond_wait releases it inside
 * libc): the releaser side of the mutex profile, as in the unlock
 * wrapper. `leaf` is the wrapper's entry. */
void cprof_mutex_releasing(const void *lock, uintptr_t leaf);

#endif
