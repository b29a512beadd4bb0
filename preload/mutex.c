/* mutex.c — the mutex profile: contention delay charged to the stack that
 * released the contended lock (the critical section that made others
 * wait), as Go's mutex profile does; and the lock wrappers' share of the
 * block profile (the same waits, charged to the waiter's lock call).
 *
 * Lock (pthread_mutex_lock/timedlock/clocklock, pthread_rwlock_rdlock/
 * wrlock and their timed and clock forms): a try-lock first, so an
 * uncontended lock costs the wrapper's branch and one indirect call
 * (pthread_mutex_lock of a mutex whose lock word reads free: a load and a
 * jump to glibc's, see mutex_looks_free). Only a lock that had to wait is
 * timed (the wait clock, clock.c).
 *
 * Who made the waiter wait: a fixed, lock-free side table of
 * LOCK_SLOTS words keyed by lock address. A waiter that is sampled for the
 * mutex profile (1 in CPROF_MUTEX_FRACTION, decided before it waits)
 * registers in its lock's slot (address << 16 | sampled waiters). An
 * unlock loads its lock's slot word and compares (one multiply, one load:
 * the whole cost when nobody waits); if sampled waiters are registered it
 * takes a new release generation and writes it in the slot, unlocks, then
 * captures its own stack. The waiter, once it holds the lock, reads the
 * generation that let it in and meets that releaser in the generation's
 * hand-off cell: whichever comes second charges the waiter's measured
 * delay to the releaser's stack. Sampling (1 in CPROF_MUTEX_FRACTION) is
 * decided by the waiter, so unlocks capture stacks only for sampled
 * waiters.
 *
 * Approximations (the README's Limits say the same for users):
 *  - The whole wait goes to the last releaser before the waiter got the
 *    lock. A waiter that sat through several holders (others barged in
 *    first) charges all its wait to the last one, as Go does.
 *  - A lock released where no wrapper sees it (inside libc other than
 *    pthread_cond_wait, which reports itself), a release the waiter
 *    registered too late to see, or two contended locks sharing a slot:
 *    the wait is charged to the waiter's own lock call instead, so totals
 *    stay right while attribution is lost for those events.
 *  - rwlocks: several readers may release at once; the last one to record
 *    is charged.
 *  - A mutex taken by another thread between mutex_looks_free's load and
 *    glibc's compare-and-swap makes its caller wait untimed: a window of a
 *    few instructions.
 *  - Failed waits (ETIMEDOUT, EDEADLK) are not mutex contentions (nobody
 *    released to the waiter); they stay in the block profile.
 *  - The releaser captures its stack after it released the lock (see the
 *    hand-off below), so its critical section is not lengthened; only
 *    pthread_cond_wait, which releases and waits inside libc, captures
 *    first. A wait longer than 2^38 ns (4.5 minutes) is charged as that.
 *
 * Sample values are Go's: contentions/count and delay/nanoseconds, both
 * multiplied by the fraction when written, period 1.
 *
 * Contract: see wait.h. No wrapper here is a cancellation point, and none
 * calls one (cprof_wait_stack holds cancellation off around the unwind).
 */
#include "wait.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/single_threaded.h>

/* ---- the side table ---------------------------------------------------- */

#define LOCK_SLOTS 2048 /* power of two: 16 KiB of keys */
#define LOCK_SLOT_BITS 11
#define LOCK_WAITERS_MAX 0xffffu

/* (lock address << 16) | sampled waiters registered; 0 when free. Only
 * waiters write it, so with no contention it stays shared in every core's
 * cache and an unlock's load hits. Addresses above 2^47 are not tracked. */
static _Atomic uint64_t lock_keys[LOCK_SLOTS];

/* Sampled waiters registered on any lock: what an unlock tests first (one
 * load and a compare while nobody waits). Alone in its cache line, which
 * only waiters write. */
static _Atomic unsigned lock_waiters_any __attribute__((aligned(64)));

/* The generation of the last recorded release of the slot's lock. */
static _Atomic uint64_t lock_last_release[LOCK_SLOTS];

static _Atomic uint64_t release_generation; /* process-wide, from 1 */

static inline unsigned lock_slot(const void *lock)
{
	return (unsigned)(((uintptr_t)lock * 0x9e3779b97f4a7c15ULL) >> (64 - LOCK_SLOT_BITS));
}

/* True when sampled waiters are registered on `lock`: one multiply, one
 * load, one compare (after lock_waiters_any said some are, somewhere). */
static inline bool lock_has_waiters(const void *lock, unsigned *slot)
{
	*slot = lock_slot(lock);
	uint64_t key = atomic_load_explicit(&lock_keys[*slot], memory_order_relaxed);
	return CPROF_UNLIKELY(key >> 16 == (uintptr_t)lock) && key != 0;
}

/* Registers a sampled waiter on `lock`; the slot index, or -1 when the
 * slot is taken by another lock (the wait is then charged to the waiter).
 * *seen: the slot's last release before the wait. */
static int waiter_enter(const void *lock, uint64_t *seen)
{
	uintptr_t a = (uintptr_t)lock;
	if (!a || a >> 47)
		return -1;
	unsigned i = lock_slot(lock);
	/* Counted before the slot says so: an unlock that finds the slot
	 * finds the count too. */
	atomic_fetch_add_explicit(&lock_waiters_any, 1, memory_order_acq_rel);
	/* Read before registering: a release recorded between this read and
	 * the registration is this lock's, made while this thread waited.
	 * Both reads are writes that change nothing, here and in the
	 * hand-off: these tables' pages are then first touched by a write,
	 * not mapped as the zero page and copied at the next write (which
	 * flushes every other CPU's TLB; cprof_stacks_insert says more). */
	*seen = atomic_fetch_add_explicit(&lock_last_release[i], 0, memory_order_acq_rel);
	uint64_t key = atomic_fetch_add_explicit(&lock_keys[i], 0, memory_order_relaxed);
	for (;;) {
		uint64_t want;
		if (key == 0)
			want = (uint64_t)a << 16 | 1;
		else if (key >> 16 == a && (key & LOCK_WAITERS_MAX) != LOCK_WAITERS_MAX)
			want = key + 1;
		else
			break;
		if (atomic_compare_exchange_weak_explicit(&lock_keys[i], &key, want,
							  memory_order_acq_rel, memory_order_relaxed))
			return (int)i;
	}
	atomic_fetch_sub_explicit(&lock_waiters_any, 1, memory_order_release);
	return -1;
}

/* Deregisters; returns the generation of the last release recorded on
 * the slot. Called by the waiter once it holds the lock (or gave up),
 * before it can release the lock itself. */
static uint64_t waiter_leave(int slot)
{
	uint64_t last = atomic_load_explicit(&lock_last_release[slot], memory_order_acquire);
	uint64_t key = atomic_load_explicit(&lock_keys[slot], memory_order_relaxed);
	for (;;) {
		uint64_t want = (key & LOCK_WAITERS_MAX) <= 1 ? 0 : key - 1;
		if (atomic_compare_exchange_weak_explicit(&lock_keys[slot], &key, want,
							  memory_order_acq_rel, memory_order_relaxed))
			break;
	}
	atomic_fetch_sub_explicit(&lock_waiters_any, 1, memory_order_release);
	return last;
}

/* ---- the hand-off ------------------------------------------------------
 * The releaser knows its stack only after an unwind, which it does after
 * the real unlock, so that the critical section is not made longer (an
 * unwind inside it turned a contended 4-thread loop into a convoy, ten
 * times slower). The waiter it let in knows the delay. They meet in the
 * generation's cell, one compare-and-swap word:
 *   bits 0-1   HANDOFF_RELEASER: the releaser's entry is in the cell;
 *              HANDOFF_WAITER: a waiter came first and left its delay;
 *              HANDOFF_DONE: the releaser charged that waiter, and its
 *              entry is in the cell
 *   bits 2-25  the generation, mod 2^24
 *   bits 26-63 the first waiter's delay in ns (capped at 2^38-1, 4.5 min)
 * A waiter that finds the entry (RELEASER or DONE: several readers let in
 * by one writer's unlock all do) charges it itself; the first to come
 * before the releaser leaves its delay for it. Another waiter that also
 * comes before the releaser, or a cell already reused, charges the
 * waiter's own stack. A cell is reused HANDOFF_CELLS generations later. */

#define HANDOFF_CELLS 1024
enum { HANDOFF_RELEASER = 1, HANDOFF_WAITER = 2, HANDOFF_DONE = 3 };
#define HANDOFF_GEN_MASK 0xffffffu
#define HANDOFF_DELAY_MAX ((1ULL << 38) - 1)

typedef struct handoff {
	_Atomic uint64_t state;
	_Atomic(cprof_stack_t *) entry;
} handoff_t;

static handoff_t handoffs[HANDOFF_CELLS];

static inline uint64_t handoff_word(uint64_t gen, uint64_t flag, int64_t delay)
{
	uint64_t d = delay < 0 ? 0 : (uint64_t)delay > HANDOFF_DELAY_MAX ? HANDOFF_DELAY_MAX
									 : (uint64_t)delay;
	return d << 26 | (gen & HANDOFF_GEN_MASK) << 2 | flag;
}

/* <0: the cell is empty or its generation older than gen; 0: the same;
 * >0: newer. */
static inline int handoff_age(uint64_t word, uint64_t gen)
{
	if (!word)
		return -1;
	uint32_t diff = (uint32_t)(((word >> 2) - gen) & HANDOFF_GEN_MASK);
	return diff == 0 ? 0 : diff < (HANDOFF_GEN_MASK + 1) / 2 ? 1 : -1;
}

static void mutex_charge(cprof_stack_t *s, int64_t delay)
{
	if (s) {
		cprof_stack_add(s, 0, 1);
		cprof_stack_add(s, 1, delay);
	}
}

/* The releaser of generation `gen` with its stack entry. */
static void handoff_release(uint64_t gen, cprof_stack_t *entry)
{
	handoff_t *h = &handoffs[gen % HANDOFF_CELLS];
	uint64_t word = atomic_fetch_add_explicit(&h->state, 0, memory_order_acq_rel);
	for (;;) {
		int age = handoff_age(word, gen);
		if (age > 0 || (age == 0 && (word & 3) != HANDOFF_WAITER))
			return; /* reused already: nobody waits for this one */
		/* Published before the state that says it is there. */
		atomic_store_explicit(&h->entry, entry, memory_order_relaxed);
		if (age == 0) {
			/* The first waiter came first and left its delay. */
			if (atomic_compare_exchange_weak_explicit(
				    &h->state, &word, handoff_word(gen, HANDOFF_DONE, 0),
				    memory_order_acq_rel, memory_order_acquire)) {
				mutex_charge(entry, (int64_t)(word >> 26));
				return;
			}
		} else if (atomic_compare_exchange_weak_explicit(
				   &h->state, &word, handoff_word(gen, HANDOFF_RELEASER, 0),
				   memory_order_acq_rel, memory_order_acquire)) {
			return;
		}
	}
}

/* A waiter let in by generation `gen`: true when its delay is charged or
 * left for the releaser, false when the waiter must charge its own stack. */
static bool handoff_wait(uint64_t gen, int64_t delay)
{
	handoff_t *h = &handoffs[gen % HANDOFF_CELLS];
	uint64_t word = atomic_fetch_add_explicit(&h->state, 0, memory_order_acq_rel);
	for (;;) {
		int age = handoff_age(word, gen);
		if (age == 0 && (word & 3) != HANDOFF_WAITER) {
			mutex_charge(atomic_load_explicit(&h->entry, memory_order_relaxed), delay);
			return true;
		}
		if (age >= 0)
			return false; /* another waiter is waiting for it, or reused */
		if (atomic_compare_exchange_weak_explicit(&h->state, &word,
							  handoff_word(gen, HANDOFF_WAITER, delay),
							  memory_order_acq_rel, memory_order_acquire))
			return true;
	}
}

/* ---- the release side -------------------------------------------------- */

/* A release with sampled waiters: a new generation, set in the slot while
 * the lock is still held, so the waiter it lets in finds it. */
static uint64_t release_begin(unsigned slot)
{
	uint64_t gen = atomic_fetch_add_explicit(&release_generation, 1, memory_order_relaxed) + 1;
	atomic_store_explicit(&lock_last_release[slot], gen, memory_order_release);
	return gen;
}

/* After the release: this stack is the releaser of `gen`. */
static void release_end(uint64_t gen, uintptr_t leaf)
{
	int saved_errno = errno;
	cprof_wait_capture_t c;
	cprof_wait_stack(&c, leaf);
	handoff_release(gen, cprof_stacks_insert(CPROF_KIND_MUTEX, 0, c.pcs, (unsigned)c.depth));
	cprof_wait_release(&c);
	errno = saved_errno;
}

/* pthread_cond_wait releases inside libc, and then waits: its stack is
 * taken before, while the mutex is still held. */
void cprof_mutex_releasing(const void *lock, uintptr_t leaf)
{
	unsigned slot;
	if (lock_has_waiters(lock, &slot))
		release_end(release_begin(slot), leaf);
}

/* ---- a contended wait ------------------------------------------------- */

typedef struct lock_wait {
	int slot;       /* registered in the side table, or -1 */
	uint64_t seen;  /* the slot's last release before the wait */
	int64_t start;
} lock_wait_t;

static inline void lock_wait_begin(lock_wait_t *w, const void *lock)
{
	w->slot = -1;
	if (cprof_mutex_on &&
	    (cprof_config.mutex_fraction <= 1 ||
	     cprof_wait_random() % cprof_config.mutex_fraction == 0))
		w->slot = waiter_enter(lock, &w->seen);
	w->start = cprof_wait_now();
}

/* The wait ended with `err` from the next definition: the mutex profile
 * (if sampled and acquired) and the block profile (by Go's rule). The
 * lock is held here: the only unwind is the block profile's, kept with
 * probability min(1, delay/rate), and the rare waiter that must charge
 * its own stack. */
static void lock_wait_end(const lock_wait_t *w, int err, uintptr_t leaf)
{
	int64_t delay = cprof_wait_now() - w->start;
	int saved_errno = errno;
	bool acquired = err == 0 || err == EOWNERDEAD;
	bool mutex_self = false;
	if (w->slot >= 0) {
		uint64_t last = waiter_leave(w->slot);
		mutex_self = acquired && (last == w->seen || !handoff_wait(last, delay));
	}
	int64_t count_milli = 0, value = 0;
	bool block = cprof_block_on && cprof_block_keep(delay, &count_milli, &value);
	if (block || mutex_self) {
		cprof_wait_capture_t c;
		cprof_wait_stack(&c, leaf);
		if (block)
			cprof_block_add(c.pcs, c.depth, count_milli, value);
		if (mutex_self)
			mutex_charge(cprof_stacks_insert(CPROF_KIND_MUTEX, 0, c.pcs, (unsigned)c.depth),
				     delay);
		cprof_wait_release(&c);
	}
	errno = saved_errno;
}

/* ---- the wrappers ------------------------------------------------------ */

CPROF_NEXT(int, pthread_mutex_trylock, (pthread_mutex_t *m), (m))
CPROF_NEXT(int, pthread_rwlock_tryrdlock, (pthread_rwlock_t *l), (l))
CPROF_NEXT(int, pthread_rwlock_trywrlock, (pthread_rwlock_t *l), (l))

/* A lock taken while the profiler runs on this thread (cprof_thread.busy):
 * libunwind's, inside one of our unwinds. Every uncached step takes the
 * mutex of libunwind's memory pool for a few instructions (a CIE's parse
 * info), so two threads whose CPU samples come in the same scheduler tick
 * met there, and the later one slept in the kernel inside its signal
 * handler: 10 to 40 futex waits a run of tests/progs/cpu_split 60 at
 * 100 Hz, where the test allows 20. So it spins on the try-lock first
 * (busy_NAME, in LOCK_PATHS below), as glibc's adaptive mutex does, for
 * about as long as the holder needs, and only then waits. The try-lock
 * gives what the lock would for a lock that is free; a lock that stays
 * busy (the caller's own, an error-checking one) goes to the real lock
 * after the spin, which answers as it always did. */
#define BUSY_LOCK_SPINS 256
static inline void busy_lock_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* A lock: try first; wait (timed) only when that says EBUSY. Every other
 * answer of the try-lock is the lock's own (EOWNERDEAD, EAGAIN, EINVAL),
 * and the next definition gives EDEADLK where the try-lock said EBUSY.
 * The exported wrapper tests, makes the try-lock's call and compares; with
 * both profiles off it is a load, a branch and a jump. No frame pointer:
 * the try's path is a push, the call, a compare and a return. */
#define LOCK_PATHS(name, trylock, params, args)                                       \
	CPROF_NEXT(int, name, params, args)                                          \
	CPROF_WAIT_SELF(name);                                                       \
	__attribute__((noinline)) static int busy_##name params                      \
	{                                                                            \
		for (int i = 0; i < BUSY_LOCK_SPINS; i++) {                          \
			int tried = real_##trylock(lock);                            \
			if (tried != EBUSY)                                          \
				return tried;                                        \
			busy_lock_pause();                                           \
		}                                                                    \
		return real_##name args;                                             \
	}                                                                            \
	__attribute__((noinline)) static int contended_##name params                 \
	{                                                                            \
		if (cprof_thread.busy)                                               \
			return busy_##name args;                                     \
		lock_wait_t w;                                                       \
		lock_wait_begin(&w, lock);                                           \
		int err;                                                             \
		CPROF_WAIT_PUBLISHED(err, real_##name args, (uintptr_t)cprof_self_##name, \
				     w.start);                                       \
		lock_wait_end(&w, err, (uintptr_t)cprof_self_##name);                \
		return err;                                                          \
	}                                                                            \
	static inline __attribute__((always_inline)) int try_##name params          \
	{                                                                            \
		int err = real_##trylock(lock);                                      \
		if (CPROF_LIKELY(err != EBUSY))                                      \
			return err;                                                  \
		return contended_##name args;                                        \
	}
#define LOCK(name, trylock, params, args)                                             \
	LOCK_PATHS(name, trylock, params, args)                                      \
	CPROF_EXPORT __attribute__((optimize("omit-frame-pointer"))) int name params \
	{                                                                            \
		if (!cprof_locks_on)                                                 \
			return real_##name args;                                     \
		return try_##name args;                                              \
	}

/* pthread_mutex_lock has a third way: in a process that has never had a
 * second thread (glibc's __libc_single_threaded) a private mutex cannot be
 * contended, and glibc's own lock takes its single-thread shortcut (no
 * atomic instruction) where a try-lock would not. The route is ROUTE_SINGLE
 * from the start until the first lock that sees threads, then ROUTE_TRY
 * for good; a process-shared mutex (another process may hold it) is always
 * tried. */
enum { ROUTE_FORWARD, ROUTE_SINGLE, ROUTE_TRY };
static _Atomic int mutex_lock_route;
#define MUTEX_PSHARED_BIT 128 /* glibc's __kind bit for a process-shared mutex */

LOCK_PATHS(pthread_mutex_lock, pthread_mutex_trylock, (pthread_mutex_t *lock), (lock))

__attribute__((noinline)) static int mutex_lock_single(pthread_mutex_t *lock)
{
	if (!__libc_single_threaded)
		atomic_store_explicit(&mutex_lock_route, ROUTE_TRY, memory_order_relaxed);
	else if (!(lock->__data.__kind & MUTEX_PSHARED_BIT))
		return real_pthread_mutex_lock(lock);
	return try_pthread_mutex_lock(lock);
}

__attribute__((noinline)) static int mutex_lock_untried(pthread_mutex_t *lock)
{
	if (atomic_load_explicit(&mutex_lock_route, memory_order_relaxed) == ROUTE_FORWARD) {
		if (CPROF_UNLIKELY(cprof_thread.busy))
			return busy_pthread_mutex_lock(lock);
		return real_pthread_mutex_lock(lock);
	}
	return mutex_lock_single(lock);
}

/* A mutex whose lock word is 0 is free: glibc's lock takes it at once,
 * so the wrapper jumps there and keeps no call of its own (the try-lock's
 * call, its compare and return were most of the +2.3 ns a pair the mutex
 * profile cost an uncontended lock). Every mutex type keeps 0 there when
 * free (the owner's id for robust and PI ones). A thread that takes it
 * between this load and glibc's compare-and-swap makes the caller wait
 * untimed: that contention is not recorded, a window of a few
 * instructions against waits that start on a busy lock. */
static inline bool mutex_looks_free(pthread_mutex_t *lock)
{
	return __atomic_load_n(&lock->__data.__lock, __ATOMIC_RELAXED) == 0;
}

CPROF_EXPORT __attribute__((optimize("omit-frame-pointer"))) int
pthread_mutex_lock(pthread_mutex_t *lock)
{
	if (CPROF_LIKELY(cprof_int_is(&mutex_lock_route, ROUTE_TRY))) {
		if (CPROF_LIKELY(mutex_looks_free(lock)))
			return real_pthread_mutex_lock(lock);
		return try_pthread_mutex_lock(lock);
	}
	return mutex_lock_untried(lock);
}

void cprof_locks_enable(void)
{
	cprof_locks_on = 1;
	int forward = ROUTE_FORWARD;
	atomic_compare_exchange_strong(&mutex_lock_route, &forward, ROUTE_SINGLE);
}

LOCK(pthread_mutex_timedlock, pthread_mutex_trylock,
     (pthread_mutex_t *__restrict lock, const struct timespec *__restrict abstime),
     (lock, abstime))
LOCK(pthread_mutex_clocklock, pthread_mutex_trylock,
     (pthread_mutex_t *__restrict lock, clockid_t clock, const struct timespec *__restrict abstime),
     (lock, clock, abstime))
LOCK(pthread_rwlock_rdlock, pthread_rwlock_tryrdlock, (pthread_rwlock_t *lock), (lock))
LOCK(pthread_rwlock_wrlock, pthread_rwlock_trywrlock, (pthread_rwlock_t *lock), (lock))
LOCK(pthread_rwlock_timedrdlock, pthread_rwlock_tryrdlock,
     (pthread_rwlock_t *__restrict lock, const struct timespec *__restrict abstime),
     (lock, abstime))
LOCK(pthread_rwlock_timedwrlock, pthread_rwlock_trywrlock,
     (pthread_rwlock_t *__restrict lock, const struct timespec *__restrict abstime),
     (lock, abstime))
LOCK(pthread_rwlock_clockrdlock, pthread_rwlock_tryrdlock,
     (pthread_rwlock_t *__restrict lock, clockid_t clock, const struct timespec *__restrict abstime),
     (lock, clock, abstime))
LOCK(pthread_rwlock_clockwrlock, pthread_rwlock_trywrlock,
     (pthread_rwlock_t *__restrict lock, clockid_t clock, const struct timespec *__restrict abstime),
     (lock, clock, abstime))

/* A recursive mutex locked more than once is not released by this
 * unlock. (glibc's public struct: kind's low bits, the recursion count.) */
static bool mutex_releases(const pthread_mutex_t *m)
{
	return (m->__data.__kind & 3) != PTHREAD_MUTEX_RECURSIVE_NP || m->__data.__count <= 1;
}

/* The unlocks: with no sampled waiter registered anywhere, one load and a
 * compare, then a tail call (no frame); with some, the lock's own slot;
 * with its own, a new release generation before the real unlock and this
 * stack, out of line, after it. Waiters register only while the mutex
 * profile is on. */
CPROF_NEXT(int, pthread_mutex_unlock, (pthread_mutex_t *m), (m))
CPROF_WAIT_SELF(pthread_mutex_unlock);

__attribute__((noinline)) static int mutex_unlock_recorded(pthread_mutex_t *m, unsigned slot)
{
	if (cprof_thread.busy || !mutex_releases(m))
		return real_pthread_mutex_unlock(m);
	uint64_t gen = release_begin(slot);
	int err = real_pthread_mutex_unlock(m);
	release_end(gen, (uintptr_t)cprof_self_pthread_mutex_unlock);
	return err;
}

CPROF_EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
	unsigned slot;
	if (CPROF_LIKELY(cprof_int_is(&lock_waiters_any, 0)) || !lock_has_waiters(m, &slot))
		return real_pthread_mutex_unlock(m);
	return mutex_unlock_recorded(m, slot);
}

CPROF_NEXT(int, pthread_rwlock_unlock, (pthread_rwlock_t *l), (l))
CPROF_WAIT_SELF(pthread_rwlock_unlock);

__attribute__((noinline)) static int rwlock_unlock_recorded(pthread_rwlock_t *l, unsigned slot)
{
	if (cprof_thread.busy)
		return real_pthread_rwlock_unlock(l);
	uint64_t gen = release_begin(slot);
	int err = real_pthread_rwlock_unlock(l);
	release_end(gen, (uintptr_t)cprof_self_pthread_rwlock_unlock);
	return err;
}

CPROF_EXPORT int pthread_rwlock_unlock(pthread_rwlock_t *l)
{
	unsigned slot;
	if (CPROF_LIKELY(!atomic_load_explicit(&lock_waiters_any, memory_order_relaxed)) ||
	    !lock_has_waiters(l, &slot))
		return real_pthread_rwlock_unlock(l);
	return rwlock_unlock_recorded(l, slot);
}

/* ---- the source -------------------------------------------------------- */

/* The sampled counts, scaled by the fraction as Go writes them. */
static void mutex_values(const cprof_stack_t *s, int64_t out[CPROF_VALUES_MAX])
{
	int64_t f = cprof_config.mutex_fraction ? cprof_config.mutex_fraction : 1;
	out[0] = atomic_load_explicit(&s->values[0], memory_order_relaxed) * f;
	out[1] = atomic_load_explicit(&s->values[1], memory_order_relaxed) * f;
}

int cprof_mutex_start(void)
{
	cprof_mutex_on = 1;
	cprof_locks_enable();
	cprof_source_register(CPROF_KIND_MUTEX, 1 /* as Go writes it */, mutex_values);
	return 0;
}

void cprof_mutex_atfork_child(void)
{
	/* The parent's waiters do not exist here, and the entries the cells
	 * point at went with the parent's stack table. */
	for (unsigned i = 0; i < LOCK_SLOTS; i++) {
		atomic_store_explicit(&lock_keys[i], 0, memory_order_relaxed);
		atomic_store_explicit(&lock_last_release[i], 0, memory_order_relaxed);
	}
	for (unsigned i = 0; i < HANDOFF_CELLS; i++) {
		atomic_store_explicit(&handoffs[i].state, 0, memory_order_relaxed);
		atomic_store_explicit(&handoffs[i].entry, NULL, memory_order_relaxed);
	}
	atomic_store_explicit(&release_generation, 0, memory_order_relaxed);
	atomic_store_explicit(&lock_waiters_any, 0, memory_order_relaxed);
	/* The child has one thread: the single-thread route asks glibc again
	 * at each lock, and takes the try-lock's for good once it says no. */
	int tried = ROUTE_TRY;
	atomic_compare_exchange_strong(&mutex_lock_route, &tried, ROUTE_SINGLE);
	cprof_wait_random_reset();
}
