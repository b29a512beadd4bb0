/* heap.c — the heap profile: the malloc family's wrappers, the sampler that
 * picks the allocations to record, and the table of live sampled blocks
 * that matches their frees.
 *
 * Sampling, as Go's runtime does it: each thread counts down the bytes it
 * allocates from a number drawn from an exponential distribution of mean
 * CPROF_HEAP_RATE (R); the allocation that takes the count to zero or
 * below is sampled and a new count is drawn. So every byte allocated has
 * the same chance 1/R of landing a sample, an allocation of s bytes is
 * sampled with probability 1 - exp(-s/R), and a sample stands for
 * 1 / (1 - exp(-s/R)) allocations of its size. That scaling is applied at
 * dump time (heap_values), per (stack, size) entry: the stack table keys
 * heap entries by stack and size (the entry's tag, which the writer puts
 * in the `bytes` label), and the raw counters are samples and sampled
 * bytes. R = 1 samples every allocation, unscaled; R = 0 turns the heap
 * profile off. CPROF_SEED makes each thread's draws repeatable.
 *
 * Raw counters of a heap entry: [0] allocations sampled, [1] their bytes,
 * [2] of those, still live, [3] their bytes. One exception: when the stack
 * table is full, cprof_stacks_insert hands back the kind's one
 * "[cprof: dropped]" entry, whose samples have every size; there the
 * counts are stored already scaled, in 1/65536ths of an object, and the
 * bytes already scaled too, so the totals stay unbiased.
 *
 * The live-sample table remembers each sampled block (address -> entry,
 * size) so that its free takes it out of inuse_*. Every tracked sample
 * sits at a marked address (0 or 16 modulo an alignment, 4096 at the
 * default rate; see "marked blocks"), so a free of any other address goes
 * straight to the real free. For marked addresses, a filter of one-byte
 * counters, one per granule of that alignment (folded), counts the live
 * sampled blocks that start there: a free of an ordinary block that
 * happens to be at a marked address reads one counter and finds 0.
 * Both are mmap'd once, at start, sized by CPROF_HEAP_SAMPLES (N live
 * sampled blocks, default 65536): 2N rounded up to a power of two slots of
 * 24 bytes, plus 16N rounded up counters of one byte; 64 bytes per block,
 * 4 MiB at the default (64 KiB at the minimum N = 1024). Pages never
 * touched cost no memory. When the table holds N blocks, a newly sampled
 * block is still counted as allocated, under its stack with a
 * "[cprof: dropped]" leaf frame, but it is not tracked: its inuse_* are
 * not recorded, and a profile that shows such frames under-reports inuse
 * by their share. (Stacks come from cprof_unwind_fast: walk.c's walk, or
 * for a stack it does not take libunwind's, whose frame cache takes
 * 256 KiB more on each of at most CPROF_UNWIND_CACHES threads.)
 *
 * The next definitions are found with dlsym(RTLD_NEXT) in the constructor
 * (cprof_real_init, first of all), or at the first call of any wrapper
 * when that comes before it (from the dynamic loader, libc's set-up,
 * other libraries' constructors). dlsym allocates;
 * those allocations, made while this thread resolves, are served from a
 * small static arena, and free ignores arena pointers. Whatever comes next
 * in the lookup order is what gets called: glibc, or jemalloc, tcmalloc,
 * mimalloc when the program is linked with (or preloads) one. C++ new and
 * delete are seen because libstdc++'s operator new calls malloc through
 * the PLT; an allocator that replaces operator new itself (tcmalloc does)
 * takes C++ allocations past the shim, and they are not in the profile.
 *
 * CPROF_SIGSAFE: every wrapper and what it calls. They allocate nothing of
 * their own, take no lock, print nothing and leave errno as the real call
 * left it. The fast paths cost: malloc, a thread-local subtraction and a
 * test before the tail call (7 instructions); free, an AND of the address
 * with the mark's mask before the tail call (4 instructions, no load but
 * the mask's; 9 with a range test for the arena, 17 with the filter on
 * every free). Counted with cachegrind on bench/heap_work.c: the wrappers add
 * 16 instructions a pair; at the default rate the rest adds 2 to 3 more
 * and 0.25 D1 misses a pair, against 10 and 0.8 with the filter on every
 * free (bench/RESULTS.md, "Issue 9", has the times).
 * Only a sampled allocation unwinds, with the re-entrancy guard held, and
 * the profiler's own allocations (cprof_thread.busy > 0) are never
 * sampled.
 */
#include "cprof_internal.h"
#include "unwind_here.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- the next definitions and the bootstrap arena --------------------- */

/* Until resolved, each pointer is a bootstrap function that resolves them
 * all, or, on a thread that is resolving, serves from the arena: so the
 * fast paths need no "resolved yet?" test. */
static void *boot_malloc(size_t size);
static void *boot_calloc(size_t n, size_t size);
static void *boot_realloc(void *p, size_t size);
static void boot_free(void *p);
static int boot_posix_memalign(void **out, size_t align, size_t size);
static void *boot_aligned_alloc(size_t align, size_t size);
static void *boot_memalign(size_t align, size_t size);
static void *boot_valloc(size_t size);
static void *boot_pvalloc(size_t size);

static void *(*real_malloc)(size_t) = boot_malloc;
static void *(*real_calloc)(size_t, size_t) = boot_calloc;
static void *(*real_realloc)(void *, size_t) = boot_realloc;
static void (*real_free)(void *) = boot_free;
static int (*real_posix_memalign)(void **, size_t, size_t) = boot_posix_memalign;
static void *(*real_aligned_alloc)(size_t, size_t) = boot_aligned_alloc;
static void *(*real_memalign)(size_t, size_t) = boot_memalign;
static void *(*real_valloc)(size_t) = boot_valloc;
static void *(*real_pvalloc)(size_t) = boot_pvalloc;

/* dlsym's allocations (a few hundred bytes in glibc 2.36; more when it
 * has an error to report). Never reused: a free of an arena pointer is
 * ignored, and its memory is zero from the start, as calloc needs. Every
 * block starts on a page (ARENA_ALIGN), where the mark's mask finds it,
 * so free's fast path needs no range test of its own for the arena (see
 * "marked blocks"); untouched pages of the arena cost no memory. */
#define ARENA_BYTES (256 * 1024)
#define ARENA_ALIGN 4096
static char heap_arena[ARENA_BYTES] __attribute__((aligned(ARENA_ALIGN)));
static atomic_size_t heap_arena_used;

/* Per-thread sampler state, initial-exec TLS: one load to reach. */
typedef struct heap_thread {
	int64_t countdown; /* bytes to the next sample; <= 0: take the slow path */
	uint64_t rng;      /* xorshift64* state; 0 until the thread's first draw */
	int resolving;     /* inside dlsym: allocations come from the arena */
} heap_thread_t;

static __thread heap_thread_t heap_tls __attribute__((tls_model("initial-exec")));

static inline bool heap_in_arena(const void *p)
{
	return (uintptr_t)p - (uintptr_t)heap_arena < ARENA_BYTES;
}

/* A block of the arena, zeroed, with its size in the 8 bytes before it. */
static void *arena_alloc(size_t size, size_t align)
{
	if (align < ARENA_ALIGN)
		align = ARENA_ALIGN;
	if (size > ARENA_BYTES || (align & (align - 1)) || align > ARENA_BYTES / 4) {
		errno = ENOMEM;
		return NULL;
	}
	size_t used = atomic_load_explicit(&heap_arena_used, memory_order_relaxed);
	for (;;) {
		size_t start = (used + 16 + align - 1) & ~(align - 1);
		size_t end = start + ((size + 15) & ~(size_t)15);
		if (end > ARENA_BYTES) {
			errno = ENOMEM;
			return NULL;
		}
		if (atomic_compare_exchange_weak(&heap_arena_used, &used, end)) {
			memcpy(heap_arena + start - 8, &size, sizeof size);
			return heap_arena + start;
		}
	}
}

static size_t arena_size_of(const void *p)
{
	size_t size;
	memcpy(&size, (const char *)p - 8, sizeof size);
	return size;
}

static void *next_symbol(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

static void *fail_alloc(size_t a)
{
	(void)a;
	errno = ENOMEM;
	return NULL;
}

static void *fail_alloc2(size_t a, size_t b)
{
	(void)a, (void)b;
	errno = ENOMEM;
	return NULL;
}

static void *fail_realloc(void *p, size_t b)
{
	(void)p, (void)b;
	errno = ENOMEM;
	return NULL;
}

static void fail_free(void *p)
{
	(void)p;
}

static int fail_posix_memalign(void **out, size_t a, size_t b)
{
	(void)out, (void)a, (void)b;
	return ENOMEM;
}

/* Finds every next definition, then publishes them together: until the
 * last dlsym returns, this thread's allocations come from the arena.
 * Threads that race here resolve the same values. A name with no next
 * definition (not with glibc, which has them all) fails with ENOMEM. */
static void heap_resolve(void)
{
	int saved_errno = errno;
	heap_tls.resolving++;
	void *m = next_symbol("malloc"), *c = next_symbol("calloc"),
	     *r = next_symbol("realloc"), *f = next_symbol("free"),
	     *pm = next_symbol("posix_memalign"), *aa = next_symbol("aligned_alloc"),
	     *ma = next_symbol("memalign"), *va = next_symbol("valloc"),
	     *pv = next_symbol("pvalloc");
	heap_tls.resolving--;
	__atomic_store_n(&real_calloc, c ? (void *(*)(size_t, size_t))c : fail_alloc2, __ATOMIC_RELEASE);
	__atomic_store_n(&real_realloc, r ? (void *(*)(void *, size_t))r : fail_realloc, __ATOMIC_RELEASE);
	__atomic_store_n(&real_free, f ? (void (*)(void *))f : fail_free, __ATOMIC_RELEASE);
	__atomic_store_n(&real_posix_memalign,
			 pm ? (int (*)(void **, size_t, size_t))pm : fail_posix_memalign,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&real_aligned_alloc, aa ? (void *(*)(size_t, size_t))aa : fail_alloc2,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&real_memalign, ma ? (void *(*)(size_t, size_t))ma : fail_alloc2,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&real_valloc, va ? (void *(*)(size_t))va : fail_alloc, __ATOMIC_RELEASE);
	__atomic_store_n(&real_pvalloc, pv ? (void *(*)(size_t))pv : fail_alloc, __ATOMIC_RELEASE);
	__atomic_store_n(&real_malloc, m ? (void *(*)(size_t))m : fail_alloc, __ATOMIC_RELEASE);
	errno = saved_errno;
}

static void *boot_malloc(size_t size)
{
	if (heap_tls.resolving)
		return arena_alloc(size, 16);
	heap_resolve();
	return real_malloc(size);
}

static void *boot_calloc(size_t n, size_t size)
{
	size_t bytes;
	if (heap_tls.resolving) {
		if (__builtin_mul_overflow(n, size, &bytes)) {
			errno = ENOMEM;
			return NULL;
		}
		return arena_alloc(bytes, 16);
	}
	heap_resolve();
	return real_calloc(n, size);
}

/* Only reached with a pointer that is not the arena's (see realloc). */
static void *boot_realloc(void *p, size_t size)
{
	if (heap_tls.resolving)
		return p ? NULL : arena_alloc(size, 16);
	heap_resolve();
	return real_realloc(p, size);
}

static void boot_free(void *p)
{
	if (heap_tls.resolving)
		return; /* cannot be: nothing but the arena has allocated yet */
	heap_resolve();
	real_free(p);
}

static int boot_posix_memalign(void **out, size_t align, size_t size)
{
	if (heap_tls.resolving) {
		void *p = arena_alloc(size, align);
		if (!p)
			return ENOMEM;
		*out = p;
		return 0;
	}
	heap_resolve();
	return real_posix_memalign(out, align, size);
}

static void *boot_aligned_alloc(size_t align, size_t size)
{
	if (heap_tls.resolving)
		return arena_alloc(size, align);
	heap_resolve();
	return real_aligned_alloc(align, size);
}

static void *boot_memalign(size_t align, size_t size)
{
	if (heap_tls.resolving)
		return arena_alloc(size, align);
	heap_resolve();
	return real_memalign(align, size);
}

static void *boot_valloc(size_t size)
{
	if (heap_tls.resolving)
		return arena_alloc(size, 4096);
	heap_resolve();
	return real_valloc(size);
}

static void *boot_pvalloc(size_t size)
{
	if (heap_tls.resolving)
		return arena_alloc((size + 4095) & ~(size_t)4095, 4096);
	heap_resolve();
	return real_pvalloc(size);
}

/* ---- sampler state ---------------------------------------------------- */

enum { HEAP_UNSET = 0, HEAP_ON = 1, HEAP_OFF = 2 };
static atomic_int heap_state;      /* UNSET until the constructor decides */
static uint64_t heap_rate;         /* CPROF_HEAP_RATE, fixed at start */
static double heap_rate_double;
static atomic_uint heap_thread_ordinal; /* for CPROF_SEED: threads in order */

/* Far enough that no thread ever gets there: the heap profile is off. */
#define COUNTDOWN_NEVER (INT64_MAX / 2)

static uint64_t heap_rng_next(void)
{
	return cprof_xorshift64star(&heap_tls.rng);
}

/* A thread's first draw. With CPROF_SEED, the main thread always gets the
 * same sequence, and other threads one per order of their first sampled
 * byte; without it, a different one per thread and run. */
static void heap_thread_seed(void)
{
	uint64_t seed;
	pid_t tid = cprof_gettid();
	if (cprof_config.seed) {
		uint64_t ordinal = tid == getpid() || cprof_thread.busy
					   ? 0
					   : 1 + atomic_fetch_add(&heap_thread_ordinal, 1);
		seed = cprof_mix64(cprof_config.seed ^
				   cprof_mix64(ordinal + 0x9e3779b97f4a7c15ULL));
	} else {
		seed = cprof_mix64(((uint64_t)tid << 32) ^ (uint64_t)cprof_now_ns(CLOCK_MONOTONIC) ^
			     (uintptr_t)&heap_tls);
	}
	heap_tls.rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

/* Natural logarithm of x in (0, 1], to about 1e-15: libcprof does not link
 * libm. x = m 2^e with m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(t) with
 * t = (m - 1) / (m + 1), |t| < 0.172, whose series converges fast. */
static double heap_log(double x)
{
	union { double d; uint64_t u; } v = { .d = x };
	int e = (int)((v.u >> 52) & 0x7ff) - 1023;
	v.u = (v.u & ((1ULL << 52) - 1)) | (1023ULL << 52);
	double m = v.d;
	if (m > 1.4142135623730951) {
		m *= 0.5;
		e++;
	}
	/* 1/k as constants: eleven divisions were 3% of the time at a high
	 * sampling rate. */
	static const double inverse_odd[] = { 1 / 3.,  1 / 5.,  1 / 7.,  1 / 9.,
					      1 / 11., 1 / 13., 1 / 15., 1 / 17.,
					      1 / 19., 1 / 21., 1 / 23. };
	double t = (m - 1) / (m + 1), t2 = t * t, term = t, sum = t;
	for (unsigned i = 0; i < sizeof inverse_odd / sizeof inverse_odd[0]; i++) {
		term *= t2;
		sum += term * inverse_odd[i];
	}
	return 2 * sum + e * 0.6931471805599453;
}

/* 1 - exp(-x) for x >= 0, without cancellation for small x. */
static double heap_one_minus_exp_neg(double x)
{
	if (x < 0.5) {
		double term = x, sum = x;
		for (int k = 2; k <= 20; k++) {
			term *= -x / k;
			sum += term;
		}
		return sum;
	}
	if (x > 700)
		return 1;
	/* exp(-x) = 2^-k exp(-r), x = k ln 2 + r, r in [0, ln 2). */
	int k = (int)(x / 0.6931471805599453);
	double r = x - k * 0.6931471805599453, term = 1, sum = 1;
	for (int i = 1; i <= 20; i++) {
		term *= -r / i;
		sum += term;
	}
	union { double d; uint64_t u; } scale = { .u = (uint64_t)(1023 - k) << 52 };
	return 1 - sum * scale.d;
}

/* How many allocations of `size` bytes one sample stands for. */
static double heap_weight(uint64_t size)
{
	if (heap_rate <= 1 || size == 0)
		return 1;
	return 1 / heap_one_minus_exp_neg((double)size / heap_rate_double);
}

/* Bytes to the next sample: exponential of mean R, in whole bytes, plus
 * one (as Go does), so an allocation of s bytes is sampled with probability
 * exactly 1 - exp(-s/R). R = 1: every allocation. */
static int64_t heap_next_countdown(void)
{
	if (heap_rate <= 1)
		return 0;
	double u = (double)((heap_rng_next() >> 11) + 1) * 0x1p-53; /* (0, 1] */
	return (int64_t)(-heap_log(u) * heap_rate_double) + 1;
}

/* The countdown of this thread reached zero on an allocation of `size`
 * bytes: true if it is to be recorded. Draws the next countdown. */
CPROF_SIGSAFE __attribute__((noinline)) static bool heap_sample_decide(size_t size)
{
	int state = atomic_load_explicit(&heap_state, memory_order_acquire);
	if (CPROF_UNLIKELY(state != HEAP_ON)) {
		/* Before the constructor: come back here until it decides. */
		if (state == HEAP_UNSET && atomic_load(&cprof_running) &&
		    !cprof_enabled(CPROF_KIND_HEAP))
			atomic_store(&heap_state, state = HEAP_OFF);
		heap_tls.countdown = state == HEAP_OFF ? COUNTDOWN_NEVER : 0;
		return false;
	}
	if (CPROF_UNLIKELY(!heap_tls.rng)) {
		/* The profiler's own allocation (a new thread's stack bounds,
		 * in pthread_create's trampoline) does not make the thread's
		 * first draw: that would give it the main thread's stream
		 * under CPROF_SEED. It comes back here until the program's
		 * first allocation draws. */
		if (cprof_thread.busy)
			return false;
		/* The thread's first draw: is this allocation already past it? */
		heap_thread_seed();
		heap_tls.countdown += heap_next_countdown();
		if (heap_tls.countdown > 0)
			return false;
	}
	heap_tls.countdown = heap_next_countdown();
	/* A sample point that lands in the profiler's own allocation is
	 * dropped; by the exponential's lack of memory the program's
	 * allocations keep their chances. Sizes of 0 cannot be sampled at
	 * R > 1 (their chance is 0; this only guards the scaling). */
	if (cprof_thread.busy || (size == 0 && heap_rate > 1) ||
	    !atomic_load_explicit(&cprof_running, memory_order_relaxed))
		return false;
	return true;
}

/* The fast path's test: count `size` bytes down; true when the slow path
 * must decide. Sizes beyond INT64_MAX fail in the allocator anyway. On
 * x86-64 the count is one subtraction in memory and its flags (GCC makes
 * a load, a subtraction, a store and a test of it): malloc's wrapper is
 * four instructions to glibc's, where it was seven. */
static inline __attribute__((always_inline)) bool heap_countdown_expired(size_t size)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
	/* The count is written through the "memory" clobber (an asm goto
	 * with an output operand lost its labels in GCC 12's inlining). */
	__asm__ goto("subq %1, %0\n\tjle %l[expired]"
		     :
		     : "m"(heap_tls.countdown), "r"(size)
		     : "cc", "memory"
		     : expired);
	return false;
expired:
	return true;
#else
	return CPROF_UNLIKELY((heap_tls.countdown -= (int64_t)size) <= 0);
#endif
}

/* ---- the filter and the live-sample table ---------------------------- */

typedef struct live_slot {
	_Atomic uintptr_t block;   /* LIVE_EMPTY, LIVE_TOMBSTONE or an address */
	cprof_stack_t *entry;      /* written by the inserter after the claim */
	uint64_t size;
} live_slot_t;

#define LIVE_EMPTY ((uintptr_t)0)
#define LIVE_TOMBSTONE ((uintptr_t)1)
#define LIVE_PROBES 64 /* a block sits within this many slots of its home */
#define HASH_MULTIPLIER 0x9e3779b97f4a7c15ULL

/* Until start, the filter is two zero counters: every free misses it. */
static _Atomic uint8_t filter_empty[2];
static struct {
	_Atomic uint8_t *counts;   /* published before mask */
	_Atomic size_t mask;       /* number of counters - 1 */
} filter = { filter_empty, 1 };

static struct {
	live_slot_t *slots;
	size_t mask;
	unsigned shift;
	unsigned capacity;         /* CPROF_HEAP_SAMPLES */
	void *map;                 /* slots and filter counters, one mapping */
	size_t map_bytes;
	/* Written at each sample and each sampled free: a line of its own,
	 * apart from the fields above and from heap_state and the rate,
	 * which every sample reads. */
	CPROF_OWN_LINE _Atomic unsigned live;
} live CPROF_OWN_LINE;

/* ---- marked blocks ---------------------------------------------------
 * free must tell a sampled block from the others without touching memory
 * the allocator does not touch itself: a filter lookup per free (one byte
 * of a table of our own) was most of what the heap profile cost a
 * malloc/free loop. So every tracked sample is placed where few other
 * blocks are: at an address that is 0 or 16 modulo heap_mark_align (4096
 * at the default rate). A sampled malloc asks the next posix_memalign for
 * that alignment; sampled calloc, realloc and the aligned family keep the
 * next allocator's block when it is already there (large blocks are:
 * page-aligned, or 16 past a page where glibc maps them itself) and
 * otherwise move it to an aligned one. A free looks at the address only:
 * one AND and a branch. The few ordinary blocks that fall on such an
 * address (2 in 256 of glibc's small ones at 4096) go on to the filter
 * and the table, as every free did before. Counted with cachegrind on
 * bench/heap_work.c at the default rate (its samples come every 850 to
 * 2300 pairs): the placement costs glibc about 1.5 instructions a pair
 * (memalign's larger request consolidates the fast bins), 1024 instead
 * of 4096 saved none of that and sent 3% of frees to the filter, and the
 * filter on every free had cost 8 instructions and 0.8 D1 misses a pair
 * (wide loop) where the mark costs 0.25. The mark is an address, so
 * realloc, malloc_usable_size and another allocator next in line see
 * ordinary blocks of theirs.
 *
 * The alignment is what a sample may waste, transiently (the allocator
 * gets the slack back at once): at most align / R of the bytes a sample
 * stands for, 1/64 at most, so it shrinks with the rate R, to 64 at
 * R <= 8192 (never above ARENA_ALIGN, so the arena's blocks stay marked).
 * Before the heap profile starts, and when it is off, there are no
 * sampled blocks, and the mask finds the arena's (and a few ordinary
 * blocks, and NULL, which the slow path sends on at once). A block that cannot be placed (an
 * alignment the program asked for that is not a power of two, or memory
 * short) is counted as allocated but not tracked, like a block that finds
 * the live table full. */
/* Until the heap profile starts (and when it is off) the mask finds the
 * arena's page-aligned blocks, and with them 1 in 256 or so of the
 * allocator's own blocks, which go on to the real free after two tests. */
static uintptr_t heap_mark_mask = ARENA_ALIGN - 1; /* (align - 1) & ~16 once started */
static size_t heap_mark_align = 4096;

/* Could p be a tracked sample? Certainly not when false. On x86-64 a
 * test against the mask in memory (GCC loads it into a register first):
 * free's wrapper is three instructions to glibc's. */
static inline __attribute__((always_inline)) bool heap_maybe_marked(const void *p)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
	__asm__ goto("testq %0, %1\n\tjz %l[marked]"
		     :
		     : "r"(p), "m"(heap_mark_mask)
		     : "cc"
		     : marked);
	return false;
marked:
	return true;
#else
	return ((uintptr_t)p & __atomic_load_n(&heap_mark_mask, __ATOMIC_RELAXED)) == 0;
#endif
}

/* ---- spare marked blocks ---------------------------------------------
 * The next posix_memalign is most of what a sample costs the allocator:
 * 760 instructions a call on bench/heap_work's wide loop (cachegrind),
 * and its request, larger than the block, consolidates glibc's fast bins.
 * So a sampled block that is freed is kept by the thread that frees it,
 * up to SPARE_SLOTS of them of at most SPARE_MAX bytes (128 KiB held a
 * thread at most), and that thread's next sample that fits in one takes
 * it: a marked block already. A slot is one word: the block's address,
 * whose bits below the mark's alignment are known (0 or 16 modulo 4096),
 * with what the block holds (its usable size, at most SPARE_MAX), in
 * 16-byte units, in the 11 bits left free. A sample of s bytes takes a
 * block of s to 2s + 64 bytes; the blocks are asked for in size classes
 * (spare_class), so that one fits every sample of its class. A full set
 * gives its next block round back to the allocator (without that, sizes
 * no sample asks for clogged it). Only with the default mark of 4096 (heap rates of 256 KiB
 * and more). A thread gives its blocks back when it ends.
 *
 * Per thread, in its TLS: a set shared by every thread was the costliest
 * part of a sample (rdtsc on bench/heap_work's wide loop: 350 cycles a
 * take, most of them the set's lines moving between the cores, and 1,700
 * for a miss, 45% of samples), and a block one thread took from another
 * was later freed into the other's malloc arena, whose lock that thread
 * holds for its own mallocs and frees (800 to 1,100 futex waits a run
 * where the two threads share nothing; 1 unprofiled). The slots are
 * compare-and-swapped all the same: a signal handler that allocates may
 * interrupt a take or a put on its own thread.
 *
 * 16 slots, not 8 (rdtsc build on the wide loop, 2 M pairs a thread,
 * median of 11 interleaved runs): samples that find a kept block 81% ->
 * 96%, the slow path's allocation 304 -> 198 cycles, and 48,700 -> 38,200
 * marked frees a run, as fewer sampled blocks go back to glibc, which
 * hands their marked addresses to the program's next blocks. The price:
 * up to 128 KiB held a thread where it was 64 (glibc's own per-thread
 * cache holds up to 7 blocks of each of 64 sizes up to 1 KiB). */
#define SPARE_SLOTS 16
#define SPARE_MAX 8192

/* The next allocator's own answer: what a block can hold (glibc reads
 * the chunk's header, which its free reads next). */
static size_t (*const heap_usable_size)(void *) = malloc_usable_size;

/* The size a sampled block is asked for: a power of two less 24 (40
 * and up), so that a kept block fits every later sample of its size
 * class, where a block of the exact size fitted only samples of that
 * size to twice it (bench/heap_work's wide loop: 62% of samples found a
 * kept block, and each other one cost a posix_memalign, about 1,000
 * instructions with what it does to glibc's bins). Sampled blocks are 1
 * in 850 or so at the default rate, and each gives its slack back when
 * freed.
 *
 * Less 24: glibc makes a request of 2^k - 24 bytes a chunk of 2^k - 16
 * (its 8-byte size word, rounded up to 16), so the block after a sampled
 * one of 4 or 8 KiB starts 16 bytes short of a page boundary. With 2^k,
 * the block after it started 16 past one, a marked address, and so
 * did every block glibc placed there later: each of their frees went the
 * marked way (rdtsc on the wide loop, 2 M pairs a thread, median of 15
 * runs: 53,900 marked frees a run, 43,000 with this). */
#define CLASS_MAX (SPARE_MAX - 24) /* larger samples ask their own size */

static inline size_t spare_class(size_t size)
{
	if (size <= 40)
		return 40;
	return ((size_t)1 << (64 - __builtin_clzll((unsigned long long)size + 23))) - 24;
}

typedef struct spare_set {
	_Atomic uintptr_t blocks[SPARE_SLOTS];
	unsigned evict_next;
	bool closed; /* the thread is ending: keep nothing more */
} spare_set_t;
static __thread spare_set_t spare_tls __attribute__((tls_model("initial-exec")));

static inline uintptr_t spare_word(const void *p, size_t size)
{
	uintptr_t v = size >> 4; /* <= 512: 10 bits */
	return (uintptr_t)p | (v & 15) | ((v >> 4) << 5);
}

static inline void *spare_block(uintptr_t word)
{
	return (void *)(word & ~(uintptr_t)0xfef);
}

static inline size_t spare_size(uintptr_t word)
{
	return (size_t)(((word & 15) | (((word >> 5) & 0x7f) << 4)) << 4);
}

/* Keeps p (a tracked sample being freed); false: not kept, the caller
 * frees it. The slot records what the block can hold (its usable size,
 * not the size it was sampled at: a kept block of its class holds more). */
static bool spare_put(void *p)
{
	spare_set_t *set = &spare_tls;
	if (heap_mark_align != 4096 || set->closed || ((uintptr_t)p & 0xfef))
		return false;
	size_t size = heap_usable_size(p);
	if (size > SPARE_MAX)
		size = SPARE_MAX;
	if (size < 16)
		return false;
	uintptr_t word = spare_word(p, size);
	for (int i = 0; i < SPARE_SLOTS; i++) {
		uintptr_t expected = atomic_load_explicit(&set->blocks[i], memory_order_relaxed);
		if (expected == 0 &&
		    atomic_compare_exchange_strong_explicit(&set->blocks[i], &expected, word,
							    memory_order_relaxed, memory_order_relaxed))
			return true;
	}
	unsigned i = set->evict_next++ % SPARE_SLOTS;
	uintptr_t old = atomic_exchange_explicit(&set->blocks[i], word, memory_order_relaxed);
	if (old)
		real_free(spare_block(old));
	return true;
}

/* A kept block for `size` bytes, or NULL. */
static void *spare_take(size_t size)
{
	if (size > SPARE_MAX || heap_mark_align != 4096)
		return NULL;
	spare_set_t *set = &spare_tls;
	for (int i = 0; i < SPARE_SLOTS; i++) {
		uintptr_t word = atomic_load_explicit(&set->blocks[i], memory_order_relaxed);
		size_t cap = spare_size(word);
		if (!word || cap < size || cap > 2 * size + 64)
			continue;
		if (atomic_compare_exchange_strong_explicit(&set->blocks[i], &word, 0,
							    memory_order_relaxed,
							    memory_order_relaxed))
			return spare_block(word);
	}
	return NULL;
}

/* The thread ends: its blocks go back to the allocator, and it keeps no
 * more (its TLS destructors may free sampled blocks after this). */
void cprof_heap_thread_exit(void)
{
	spare_set_t *set = &spare_tls;
	set->closed = true;
	for (int i = 0; i < SPARE_SLOTS; i++) {
		uintptr_t old = atomic_exchange_explicit(&set->blocks[i], 0, memory_order_relaxed);
		if (old)
			real_free(spare_block(old));
	}
}

/* A block of `size` bytes where heap_maybe_marked finds it, from the kept
 * ones or the next posix_memalign; NULL when it has none to give. errno
 * as it was. */
static void *heap_alloc_marked(size_t size, size_t align)
{
	int saved_errno = errno;
	void *p = NULL;
	size_t ask = size;
	if (align == 0) {
		if ((p = spare_take(size)) != NULL)
			return p;
		if (heap_mark_align == 4096 && size <= CLASS_MAX)
			ask = spare_class(size);
	}
	if (align < heap_mark_align)
		align = heap_mark_align;
	if (real_posix_memalign(&p, align, ask) != 0)
		p = NULL;
	errno = saved_errno;
	return p;
}


/* The filter's index keeps locality: one counter per granule of the
 * mark's alignment (a page at the default rate), which holds two marked
 * addresses at most, so the marked blocks a program frees close together
 * share the filter's cache lines: a heap of 16 MiB in use is 4 KiB of
 * counters. (Before the mark, every free looked here, one counter per
 * 256 bytes: a hashed index had cost a cache miss on nearly every free,
 * 13% of the benchmark's time, against 3.3% with those granules.) The
 * period of 2^20 granules is folded with the bits above it, so that
 * glibc's 64 MiB-aligned per-thread heaps do not all land on the same
 * counters. A free that shares a granule with a sampled block looks in
 * the table for nothing: rare, and bounded by LIVE_PROBES. */
static unsigned filter_shift = 12; /* log2 of heap_mark_align, set at start */

static inline size_t filter_index(const void *p, size_t mask)
{
	uintptr_t granule = (uintptr_t)p >> __atomic_load_n(&filter_shift, __ATOMIC_RELAXED);
	return (granule ^ (granule >> 20)) & mask;
}

/* Is p perhaps a sampled block? One counter load; false: certainly not. */
static inline bool filter_maybe(const void *p)
{
	size_t mask = atomic_load_explicit(&filter.mask, memory_order_acquire);
	_Atomic uint8_t *counts = filter.counts;
	return atomic_load_explicit(&counts[filter_index(p, mask)], memory_order_relaxed) != 0;
}

/* Counters stick at 255: from then on that counter always says "maybe",
 * which costs a table lookup, never a missed free. */
static void filter_add(const void *p, int delta)
{
	_Atomic uint8_t *c = &filter.counts[filter_index(p, filter.mask)];
	/* Read by a write that changes nothing (see live_insert). */
	uint8_t old = atomic_fetch_add_explicit(c, 0, memory_order_relaxed);
	while (old != 255 &&
	       !atomic_compare_exchange_weak_explicit(c, &old, (uint8_t)(old + delta),
						      memory_order_release, memory_order_relaxed))
		;
}

/* The live table's index keeps locality too: the marked addresses of 32
 * neighbouring granules (128 KiB of heap at the default mark) have a run
 * of 64 slots of their own, two a granule (offsets 0 and 16), and the
 * runs are placed by a multiplicative hash of the region. So samples
 * touch as many pages of the table as the heap has sampled regions, not
 * a page each: with a hashed slot per block, heap_work's samples faulted
 * in a page of the 3 MiB table each, some 700 page faults a run. */
static inline size_t live_index(const void *p)
{
	uintptr_t a = (uintptr_t)p;
	uintptr_t granule = a >> __atomic_load_n(&filter_shift, __ATOMIC_RELAXED);
	size_t run = (size_t)(((uint64_t)(granule >> 5) * HASH_MULTIPLIER) >> (live.shift + 6));
	return ((run << 6) | ((granule & 31) << 1) | ((a >> 4) & 1)) & live.mask;
}

/* Claims a slot for a block; NULL when N blocks are already held (or,
 * far less likely, the block's neighbourhood is full). */
static live_slot_t *live_insert(const void *p)
{
	if (atomic_fetch_add_explicit(&live.live, 1, memory_order_relaxed) >= live.capacity) {
		atomic_fetch_sub_explicit(&live.live, 1, memory_order_relaxed);
		return NULL;
	}
	size_t i = live_index(p);
	for (int probe = 0; probe < LIVE_PROBES; probe++, i = (i + 1) & live.mask) {
		/* A read-modify-write that changes nothing: a page of the
		 * table first touched here is mapped for writing at once,
		 * where a load would map the zero page and the claim after it
		 * copy that, flushing the other CPUs' TLBs (cprof_stacks_insert
		 * says the same). */
		uintptr_t cur = atomic_fetch_add_explicit(&live.slots[i].block, 0, memory_order_relaxed);
		if (cur <= LIVE_TOMBSTONE &&
		    atomic_compare_exchange_strong_explicit(&live.slots[i].block, &cur,
							    (uintptr_t)p, memory_order_acq_rel,
							    memory_order_relaxed))
			return &live.slots[i];
	}
	atomic_fetch_sub_explicit(&live.live, 1, memory_order_relaxed);
	return NULL;
}

/* The slot of a live sampled block, or NULL. A slot never goes back to
 * empty (removal leaves a tombstone), so the scan may stop at the first
 * empty one: nothing was placed past it. */
static live_slot_t *live_find(const void *p)
{
	size_t i = live_index(p);
	for (int probe = 0; probe < LIVE_PROBES; probe++, i = (i + 1) & live.mask) {
		uintptr_t cur = atomic_load_explicit(&live.slots[i].block, memory_order_acquire);
		if (cur == (uintptr_t)p)
			return &live.slots[i];
		if (cur == LIVE_EMPTY)
			return NULL;
	}
	return NULL;
}

/* ---- recording ------------------------------------------------------- */

/* The stack table's own "[cprof: dropped]" entry: samples of every size,
 * kept scaled (see the top of the file). */
static inline bool heap_entry_prescaled(const cprof_stack_t *s)
{
	return s->depth == 1 && s->frames[0] == CPROF_FRAME_DROPPED && s->tag == 0;
}

#define PRESCALED_ONE 65536 /* one object, in the prescaled counts */

/* Adds (sign +1) or takes away (sign -1) one sampled block of `size`
 * bytes; `alloc`: the alloc_* counters too, `inuse`: the inuse_* ones. */
static void heap_count(cprof_stack_t *s, uint64_t size, int sign, bool alloc, bool inuse)
{
	int64_t objects = 1, bytes = (int64_t)size;
	if (CPROF_UNLIKELY(heap_entry_prescaled(s))) {
		double w = heap_weight(size);
		objects = (int64_t)(w * PRESCALED_ONE + 0.5);
		bytes = (int64_t)(w * (double)size + 0.5);
	}
	if (alloc) {
		cprof_stack_add(s, 0, sign * objects);
		cprof_stack_add(s, 1, sign * bytes);
	}
	if (inuse) {
		cprof_stack_add(s, 2, sign * objects);
		cprof_stack_add(s, 3, sign * bytes);
	}
}

/* The thread's last recorded stack: a sample guesses that its own is the
 * same, and asks for that stack's entry (of its size) while it allocates
 * and unwinds, ahead of the insert (see heap_guess_begin). A hint only: a
 * signal handler's sample that lands in the middle of its copy leaves a
 * guess that matches nothing. */
#define GUESS_FRAMES 16

typedef struct heap_guess {
	unsigned depth; /* 0: none (the last was deeper than GUESS_FRAMES) */
	uintptr_t pcs[GUESS_FRAMES];
} heap_guess_t;

static __thread heap_guess_t guess_tls __attribute__((tls_model("initial-exec")));

static inline void heap_guess_keep(const uintptr_t *pcs, unsigned depth)
{
	heap_guess_t *g = &guess_tls;
	if (depth > GUESS_FRAMES) {
		g->depth = 0;
		return;
	}
	memcpy(g->pcs, pcs, depth * sizeof *pcs);
	g->depth = depth;
}

/* The key of the entry the sample would have with the last stack, its
 * index slot asked for; hash 0 when there is no guess. */
static inline cprof_stack_key_t heap_guess_begin(size_t size)
{
	heap_guess_t *g = &guess_tls;
	cprof_stack_key_t key = { 0, 0 };
	unsigned depth = g->depth;
	if (depth && depth <= GUESS_FRAMES)
		key = cprof_stacks_key(CPROF_KIND_HEAP, size, g->pcs, depth);
	return key;
}

/* A sampled allocation: its stack, its counters, its slot. Inlined into
 * the slow path of malloc, whose frame its unwind then starts from (see
 * unwind_here.h); called through heap_record_alloc from the rarer ones. */
CPROF_SIGSAFE static inline __attribute__((always_inline)) void heap_record_here(void *p, size_t size,
										cprof_stack_key_t guess)
{
	int saved_errno = errno;
	unsigned max = cprof_config.max_depth;
	/* pcs[0]: room for a "[cprof: dropped]" leaf. From the capture pool,
	 * not the program's stack (which may be small); [not unwound] when
	 * the pool is empty. */
	uintptr_t spare[2], *buffer = cprof_capture_take();
	uintptr_t *pcs = buffer ? buffer : spare;
	int depth = 0;

	/* The filter's counter and the table's slot for p, lines the sample
	 * writes after the unwind, and the stack table's own lines: asked
	 * for now, they arrive during it (each was a cache miss of its own
	 * after it). */
	if (CPROF_LIKELY(heap_maybe_marked(p))) {
		__builtin_prefetch(&filter.counts[filter_index(p, filter.mask)], 1);
		__builtin_prefetch(&live.slots[live_index(p)], 1);
	}
	cprof_stacks_warm();
	if (buffer) {
		cprof_thread.busy++;
		depth = cprof_unwind_fast(pcs + 1, (int)max);
		cprof_thread.busy--;
	}
	if (depth <= 0) {
		pcs[1] = CPROF_FRAME_NOUNWIND;
		depth = 1;
	}
	/* The guessed entry's lines, from its index slot that was asked for
	 * before the allocation and the unwind, and has come by now. */
	if (guess.hash)
		cprof_stacks_fetch(guess);
	/* The stack's index slot, asked for before the filter and the live
	 * table are written, which gives it their time to arrive (rdtsc on
	 * bench/heap_work's wide loop, median of 9 runs: the insert took
	 * 1,160 cycles a sample, 820 with this and the warm-up above). */
	cprof_stack_key_t key = cprof_stacks_key(CPROF_KIND_HEAP, size, pcs + 1, (unsigned)depth);
	live_slot_t *slot = NULL;
	if (CPROF_LIKELY(heap_maybe_marked(p))) {
		filter_add(p, +1); /* before the slot: the filter never misses a block */
		slot = live_insert(p);
	}
	cprof_stack_t *s;
	if (CPROF_LIKELY(slot != NULL)) {
		s = cprof_stacks_insert_key(CPROF_KIND_HEAP, size, pcs + 1, (unsigned)depth, key);
	} else {
		if (heap_maybe_marked(p))
			filter_add(p, -1);
		pcs[0] = CPROF_FRAME_DROPPED;
		s = cprof_stacks_insert(CPROF_KIND_HEAP, size, pcs, (unsigned)depth + 1);
	}
	if (s)
		heap_count(s, size, +1, true, slot != NULL);
	heap_guess_keep(pcs + 1, (unsigned)depth);
	cprof_capture_give(buffer);
	if (slot) {
		slot->entry = s;
		slot->size = size;
	}
	errno = saved_errno;
}

CPROF_SIGSAFE __attribute__((noinline)) static void heap_record_alloc(void *p, size_t size)
{
	heap_record_here(p, size, (cprof_stack_key_t){ 0, 0 });
}

typedef struct heap_record {
	cprof_stack_t *entry;
	uint64_t size;
} heap_record_t;

/* Takes a block out of the table, if it is there; its inuse_* not yet. */
static bool heap_forget(const void *p, heap_record_t *out)
{
	/* free(NULL) must not match an empty slot, nor anything a tombstone. */
	if ((uintptr_t)p <= LIVE_TOMBSTONE)
		return false;
	live_slot_t *slot = live_find(p);
	if (!slot)
		return false;
	out->entry = slot->entry;
	out->size = slot->size;
	/* After this store another block may take the slot. */
	atomic_store_explicit(&slot->block, LIVE_TOMBSTONE, memory_order_release);
	atomic_fetch_sub_explicit(&live.live, 1, memory_order_relaxed);
	filter_add(p, -1);
	return true;
}

/* The free of a block at a marked address: if the filter says it may be
 * sampled, out of the table before the real free, after which the
 * address may be handed out again. */
CPROF_SIGSAFE __attribute__((noinline)) static void heap_free_marked(void *p)
{
	heap_record_t rec;
	if (!p)
		return;
	bool sampled = filter_maybe(p) && heap_forget(p, &rec);
	if (sampled && rec.entry)
		heap_count(rec.entry, rec.size, -1, false, true);
	if (heap_in_arena(p))
		return;
	if (sampled && spare_put(p))
		return;
	real_free(p);
}

/* A sampled block the next allocator placed where free would not see it:
 * moved to a marked address (its first `keep` bytes copied, the rest
 * zeroed when `zero`), or left where it is when no marked block can be
 * had (it is then counted but not tracked). errno as it was. */
static void *heap_place_marked(void *p, size_t size, size_t keep, bool zero)
{
	if (heap_maybe_marked(p))
		return p;
	void *q = heap_alloc_marked(size, 0);
	if (!q)
		return p;
	int saved_errno = errno;
	memcpy(q, p, keep < size ? keep : size);
	if (zero && keep < size)
		memset((char *)q + keep, 0, size - keep);
	real_free(p);
	errno = saved_errno;
	return q;
}

/* ---- the wrappers ------------------------------------------------------ */

/* The slow half of the allocating wrappers: the countdown expired. */
CPROF_SIGSAFE __attribute__((noinline)) static void *heap_malloc_slow(size_t size)
{
	if (!heap_sample_decide(size))
		return real_malloc(size);
	/* The entry's lines are a chain of misses (index slot, entry) that
	 * came after the unwind: guessed now, the slot arrives during the
	 * allocation and the unwind, and the entry after it. */
	cprof_stack_key_t guess = heap_guess_begin(size);
	void *p = heap_alloc_marked(size, 0);
	if (!p)
		p = real_malloc(size); /* which sets errno if it fails too */
	if (p)
		heap_record_here(p, size, guess);
	return p;
}

CPROF_SIGSAFE CPROF_EXPORT void *malloc(size_t size)
{
	if (CPROF_LIKELY(!heap_countdown_expired(size)))
		return real_malloc(size);
	return heap_malloc_slow(size);
}

CPROF_SIGSAFE CPROF_EXPORT void free(void *p)
{
	if (CPROF_UNLIKELY(heap_maybe_marked(p)))
		return heap_free_marked(p); /* the arena's blocks too */
	real_free(p);
}

CPROF_SIGSAFE __attribute__((noinline)) static void *heap_calloc_slow(size_t n, size_t size,
								     size_t bytes)
{
	bool sample = heap_sample_decide(bytes);
	void *p = real_calloc(n, size);
	if (sample && p) {
		p = heap_place_marked(p, bytes, 0, true);
		heap_record_alloc(p, bytes);
	}
	return p;
}

CPROF_SIGSAFE CPROF_EXPORT void *calloc(size_t n, size_t size)
{
	size_t bytes;
	if (CPROF_UNLIKELY(__builtin_mul_overflow(n, size, &bytes)))
		return real_calloc(n, size); /* which fails, as it should */
	if (CPROF_LIKELY(!heap_countdown_expired(bytes)))
		return real_calloc(n, size);
	return heap_calloc_slow(n, size, bytes);
}

/* realloc of a block from the arena: a new block from the real allocator
 * (or the arena, while resolving), the old one left where it is. */
static void *arena_realloc(void *old, size_t size)
{
	void *p = heap_tls.resolving ? arena_alloc(size, 16) : malloc(size);
	if (p) {
		size_t old_size = arena_size_of(old);
		memcpy(p, old, old_size < size ? old_size : size);
	}
	return p;
}

/* realloc as free of the old block and allocation of the new size: the
 * sample follows the block to its new address when the new size is
 * sampled, which keeps every figure unbiased; alloc_* count the new size. */
CPROF_SIGSAFE __attribute__((noinline)) static void *heap_realloc_slow(void *old, size_t size,
								      bool maybe_sampled,
								      bool expired)
{
	heap_record_t rec;
	/* Out of the table before the real call: once that has freed the
	 * block, another thread may be given the address. */
	bool had = maybe_sampled && heap_forget(old, &rec);
	bool sample = expired && heap_sample_decide(size);
	void *p = real_realloc(old, size);
	int saved_errno = errno;
	if (had && rec.entry) {
		if (!p && size != 0) {
			/* Failed: the old block is still there, and still sampled. */
			live_slot_t *slot;
			filter_add(old, +1);
			if ((slot = live_insert(old))) {
				slot->entry = rec.entry;
				slot->size = rec.size;
			} else {
				filter_add(old, -1);
				heap_count(rec.entry, rec.size, -1, false, true);
			}
		} else {
			heap_count(rec.entry, rec.size, -1, false, true);
		}
	}
	if (sample && p) {
		p = heap_place_marked(p, size, size, false);
		heap_record_alloc(p, size);
	}
	errno = saved_errno;
	return p;
}

CPROF_SIGSAFE CPROF_EXPORT void *realloc(void *old, size_t size)
{
	if (CPROF_UNLIKELY(heap_in_arena(old)))
		return arena_realloc(old, size);
	bool maybe_sampled = old && heap_maybe_marked(old) && filter_maybe(old);
	bool expired = heap_countdown_expired(size);
	if (CPROF_LIKELY(!maybe_sampled && !expired))
		return real_realloc(old, size);
	return heap_realloc_slow(old, size, maybe_sampled, expired);
}

/* Not forwarded: the next reallocarray may call realloc through the PLT,
 * which would reach the wrapper above a second time. */
CPROF_SIGSAFE CPROF_EXPORT void *reallocarray(void *old, size_t n, size_t size)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(old, bytes);
}

/* An alignment the program asked for that a stricter one satisfies: a
 * power of two (0 and others are the next allocator's to judge). */
static inline bool heap_align_raisable(size_t align)
{
	return align != 0 && (align & (align - 1)) == 0;
}

CPROF_SIGSAFE CPROF_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
	if (CPROF_LIKELY(!heap_countdown_expired(size)))
		return real_posix_memalign(out, align, size);
	bool sample = heap_sample_decide(size);
	/* A valid alignment may be raised to the mark's: a stricter one
	 * satisfies it. An invalid one must still fail as it would. */
	size_t asked = align;
	if (sample && heap_align_raisable(align) && align % sizeof(void *) == 0 &&
	    align < heap_mark_align)
		asked = heap_mark_align;
	int err = real_posix_memalign(out, asked, size);
	if (sample && err == 0 && *out)
		heap_record_alloc(*out, size);
	return err;
}

/* aligned_alloc, memalign, valloc, pvalloc: an alignment and a size. */
typedef void *(*aligned_fn)(size_t, size_t);

CPROF_SIGSAFE __attribute__((noinline)) static void *heap_aligned_slow(aligned_fn fn,
								      size_t align, size_t size,
								      size_t bytes)
{
	bool sample = heap_sample_decide(bytes);
	if (sample && heap_align_raisable(align) && align < heap_mark_align)
		align = heap_mark_align; /* valloc, pvalloc: ignored, page-aligned */
	void *p = fn(align, size);
	if (sample && p)
		heap_record_alloc(p, bytes);
	return p;
}

CPROF_SIGSAFE CPROF_EXPORT void *aligned_alloc(size_t align, size_t size)
{
	if (CPROF_LIKELY(!heap_countdown_expired(size)))
		return real_aligned_alloc(align, size);
	return heap_aligned_slow(real_aligned_alloc, align, size, size);
}

CPROF_SIGSAFE CPROF_EXPORT void *memalign(size_t align, size_t size)
{
	if (CPROF_LIKELY(!heap_countdown_expired(size)))
		return real_memalign(align, size);
	return heap_aligned_slow(real_memalign, align, size, size);
}

static void *call_valloc(size_t align, size_t size)
{
	(void)align;
	return real_valloc(size);
}

static void *call_pvalloc(size_t align, size_t size)
{
	(void)align;
	return real_pvalloc(size);
}

CPROF_SIGSAFE CPROF_EXPORT void *valloc(size_t size)
{
	if (CPROF_LIKELY(!heap_countdown_expired(size)))
		return real_valloc(size);
	return heap_aligned_slow(call_valloc, 0, size, size);
}

/* pvalloc rounds the size up to whole pages: that is what is allocated. */
CPROF_SIGSAFE CPROF_EXPORT void *pvalloc(size_t size)
{
	size_t page = (size_t)getpagesize();
	size_t bytes = size ? (size + page - 1) & ~(page - 1) : page;
	if (CPROF_LIKELY(bytes < size || !heap_countdown_expired(bytes)))
		return real_pvalloc(size);
	return heap_aligned_slow(call_pvalloc, 0, size, bytes);
}

/* ---- dump path -------------------------------------------------------- */

static int64_t round_to_int(double x)
{
	return x >= 0 ? (int64_t)(x + 0.5) : -(int64_t)(-x + 0.5);
}

/* Raw counters to unbiased values: each sample of an entry of size s
 * stands for 1 / (1 - exp(-s/R)) allocations of s bytes. */
static void heap_values(const cprof_stack_t *s, int64_t out[CPROF_VALUES_MAX])
{
	int64_t raw[4];
	for (int i = 0; i < 4; i++)
		raw[i] = atomic_load_explicit(&s->values[i], memory_order_relaxed);
	if (heap_entry_prescaled(s)) {
		out[0] = round_to_int((double)raw[0] / PRESCALED_ONE);
		out[1] = raw[1];
		out[2] = round_to_int((double)raw[2] / PRESCALED_ONE);
		out[3] = raw[3];
		return;
	}
	double w = heap_weight(s->tag);
	for (int i = 0; i < 4; i++)
		out[i] = round_to_int((double)raw[i] * w);
}

/* ---- lifecycle ------------------------------------------------------- */

static size_t round_up_pow2(size_t n)
{
	size_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

static unsigned log2_of(size_t pow2)
{
	return (unsigned)__builtin_ctzll(pow2);
}

/* From cprof_real_init, which resolves every next definition in one
 * place; first, so that dlsym's own allocations there find these. */
void cprof_heap_resolve(void)
{
	if (__atomic_load_n(&real_malloc, __ATOMIC_ACQUIRE) == boot_malloc)
		heap_resolve();
}

int cprof_heap_start(void)
{
	cprof_heap_resolve();
	if (cprof_config.heap_rate == 0) {
		atomic_store(&heap_state, HEAP_OFF);
		return 0;
	}
	size_t capacity = cprof_config.heap_samples;
	size_t slots = round_up_pow2(2 * capacity);
	size_t counters = round_up_pow2(16 * capacity);
	size_t slot_bytes = (slots * sizeof(live_slot_t) + 4095) & ~(size_t)4095;
	size_t bytes = slot_bytes + counters;
	void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (map == MAP_FAILED) {
		int err = errno;
		cprof_log("cannot map the heap profile's live-sample table (%lu bytes: %s); "
			  "no heap profile", (unsigned long)bytes, strerror(err));
		atomic_store(&heap_state, HEAP_OFF);
		return -err;
	}
	live.map = map;
	live.map_bytes = bytes;
	live.slots = map;
	live.mask = slots - 1;
	live.shift = 64 - log2_of(slots);
	live.capacity = (unsigned)capacity;
	atomic_store(&live.live, 0);

	heap_rate = cprof_config.heap_rate;
	heap_rate_double = (double)heap_rate;
	/* The mark's alignment: R / 64 as a power of two, 64 to 4096 (see
	 * "marked blocks"); set before the first sample, never changed. */
	size_t align = 64;
	while (align < 4096 && align * 2 <= heap_rate / 64)
		align *= 2;
	heap_mark_align = align;
	__atomic_store_n(&filter_shift, log2_of(align), __ATOMIC_RELAXED);
	__atomic_store_n(&heap_mark_mask, (uintptr_t)(align - 1) & ~(uintptr_t)16, __ATOMIC_RELAXED);

	/* Counters first, then the mask that indexes them (see filter_maybe). */
	filter.counts = (_Atomic uint8_t *)((char *)map + slot_bytes);
	atomic_store_explicit(&filter.mask, counters - 1, memory_order_release);
	atomic_store_explicit(&heap_state, HEAP_ON, memory_order_release);
	cprof_source_register(CPROF_KIND_HEAP, (int64_t)heap_rate, heap_values);
	return 0;
}

/* ---- the dump child's private heap --------------------------------------
 * A dump of a program with no dumper thread is written by a child process
 * made with a raw clone from wherever the request came (dump.c), a signal
 * handler included: the child's copy of the next allocator may hold locks
 * the interrupted thread held (an arena lock inside malloc), which nobody
 * in the child will ever release. So the child's allocations (its own, the
 * loader's, libdw's, zlib's) come from here: a bump allocator over fresh
 * mmap'd chunks, never reused, so calloc needs no memset; free does
 * nothing. The child lives for one dump. The fast paths are untouched: the
 * wrappers already call through the real_* pointers, which the child
 * points here. */

#define BUMP_CHUNK (8u << 20)
#define BUMP_RANGES 512

static struct {
	char *cur, *end;
	unsigned nranges;
	struct {
		uintptr_t start, end;
	} ranges[BUMP_RANGES];
} bump;

static void *bump_map(size_t bytes)
{
	if (bump.nranges == BUMP_RANGES)
		return NULL;
	long p = syscall(SYS_mmap, NULL, bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == -1)
		return NULL;
	bump.ranges[bump.nranges].start = (uintptr_t)p;
	bump.ranges[bump.nranges].end = (uintptr_t)p + bytes;
	bump.nranges++;
	return (void *)p;
}

static bool bump_owns(const void *p)
{
	for (unsigned i = 0; i < bump.nranges; i++)
		if ((uintptr_t)p - bump.ranges[i].start < bump.ranges[i].end - bump.ranges[i].start)
			return true;
	return false;
}

/* A zeroed block with its size in the 8 bytes before it. */
static void *bump_alloc(size_t size, size_t align)
{
	if (align < 16)
		align = 16;
	if ((align & (align - 1)) || size > ((size_t)1 << 40) || align > ((size_t)1 << 30)) {
		errno = size > ((size_t)1 << 40) ? ENOMEM : EINVAL;
		return NULL;
	}
	size_t need = size + align + 16;
	if (need > BUMP_CHUNK / 4) {
		char *big = bump_map((need + 4095) & ~(size_t)4095);
		if (!big) {
			errno = ENOMEM;
			return NULL;
		}
		uintptr_t q = ((uintptr_t)big + 16 + align - 1) & ~(uintptr_t)(align - 1);
		memcpy((char *)q - 8, &size, sizeof size);
		return (void *)q;
	}
	for (int tries = 0; tries < 2; tries++) {
		if (bump.cur) {
			uintptr_t q = ((uintptr_t)bump.cur + 16 + align - 1) & ~(uintptr_t)(align - 1);
			if (q + size <= (uintptr_t)bump.end) {
				memcpy((char *)q - 8, &size, sizeof size);
				bump.cur = (char *)(q + size);
				return (void *)q;
			}
		}
		char *chunk = bump_map(BUMP_CHUNK);
		if (!chunk)
			break;
		bump.cur = chunk;
		bump.end = chunk + BUMP_CHUNK;
	}
	errno = ENOMEM;
	return NULL;
}

static void *bump_malloc(size_t size)
{
	return bump_alloc(size, 16);
}

static void *bump_calloc(size_t n, size_t size)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	return bump_alloc(bytes, 16);
}

static void bump_free(void *p)
{
	(void)p;
}

static void *bump_realloc(void *old, size_t size)
{
	if (!old)
		return bump_alloc(size, 16);
	size_t old_size;
	if (bump_owns(old))
		memcpy(&old_size, (char *)old - 8, sizeof old_size);
	else
		old_size = heap_usable_size(old); /* the parent's block: read, never freed */
	void *p = bump_alloc(size ? size : 1, 16);
	if (p)
		memcpy(p, old, old_size < size ? old_size : size);
	return p;
}

static int bump_posix_memalign(void **out, size_t align, size_t size)
{
	if (align < sizeof(void *) || (align & (align - 1)))
		return EINVAL;
	void *p = bump_alloc(size, align);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

static void *bump_memalign(size_t align, size_t size)
{
	return bump_alloc(size, align);
}

static void *bump_valloc(size_t size)
{
	return bump_alloc(size, 4096);
}

CPROF_SIGSAFE void cprof_heap_private(void)
{
	memset(&bump, 0, sizeof bump);
	real_malloc = bump_malloc;
	real_calloc = bump_calloc;
	real_realloc = bump_realloc;
	real_free = bump_free;
	real_posix_memalign = bump_posix_memalign;
	real_aligned_alloc = bump_memalign;
	real_memalign = bump_memalign;
	real_valloc = bump_valloc;
	real_pvalloc = bump_valloc;
}

/* The child of fork: the parent's samples are not its own. The stack
 * table is emptied by the caller; here the live table and the filter, by
 * mapping fresh zero pages over them (no page is copied or touched). The
 * child's frees of the parent's blocks then find nothing, so its inuse
 * never goes below what it allocated itself. The forking thread draws
 * afresh, so parent and child do not sample in lockstep. */
void cprof_heap_atfork_child(void)
{
	if (atomic_load(&heap_state) != HEAP_ON)
		return;
	mmap(live.map, live.map_bytes, PROT_READ | PROT_WRITE,
	     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	atomic_store(&live.live, 0);
	if (heap_tls.rng) {
		heap_tls.rng = cprof_mix64(heap_tls.rng ^ 0xd6e8feb86659fd93ULL);
		if (!heap_tls.rng)
			heap_tls.rng = 0x9e3779b97f4a7c15ULL;
		heap_tls.countdown = heap_next_countdown();
	}
}
