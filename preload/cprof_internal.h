/* cprof_internal.h — what the files of libcprof.so share.
 *
 * Everything here has hidden visibility (the build sets
 * -fvisibility=hidden); only the interposed libc names and include/cprof.h
 * are exported. Functions marked CPROF_SIGSAFE may be called from a signal
 * handler or a malloc wrapper: they take no lock, allocate nothing, touch no
 * stdio and leave errno as they found it. Everything else runs on the dump
 * path or at start-up. `grep -n CPROF_SIGSAFE preload/` lists the set.
 */
#ifndef CPROF_INTERNAL_H
#define CPROF_INTERNAL_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define CPROF_SIGSAFE /* reachable from a signal handler or malloc */
#define CPROF_EXPORT __attribute__((visibility("default")))
/* A cache line of its own: for counters that threads write at event
 * rates, so that the read-mostly variables next to them (what every
 * wrapper call reads) do not move between the cores with each write. */
#define CPROF_OWN_LINE __attribute__((aligned(64)))
#define CPROF_LIKELY(x) __builtin_expect(!!(x), 1)
#define CPROF_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- profile kinds -------------------------------------------------- */

typedef enum cprof_kind {
	CPROF_KIND_CPU = 0,
	CPROF_KIND_HEAP = 1,
	CPROF_KIND_MUTEX = 2,
	CPROF_KIND_BLOCK = 3,
	CPROF_KIND_THREADS = 4,
	CPROF_KIND_COUNT
} cprof_kind_t;

#define CPROF_VALUES_MAX 4 /* raw counters per stack entry */

const char *cprof_kind_name(cprof_kind_t kind); /* "cpu", "heap", ... */

/* ---- configuration (config.c) --------------------------------------- */

typedef struct cprof_config {
	char out_dir[4096];      /* absolute; CPROF_OUT or cwd at start-up */
	unsigned profiles;       /* bit (1u << kind) per enabled kind */
	unsigned cpu_hz;         /* CPROF_CPU_HZ, 1..10000 */
	bool cpu_process_timer;  /* CPROF_CPU_TIMER=process: the setitimer fallback */
	bool cpu_on_demand;      /* CPROF_CPU=on-demand: timers armed in windows only */
	unsigned max_depth;      /* CPROF_MAX_DEPTH, 1..CPROF_DEPTH_LIMIT */
	int dump_signal;         /* CPROF_SIGNAL; 0 = none */
	unsigned stacks;         /* CPROF_STACKS: unique stacks the table holds */
	uint64_t heap_rate;      /* CPROF_HEAP_RATE: mean bytes between samples; 0 off */
	unsigned heap_samples;   /* CPROF_HEAP_SAMPLES: live sampled blocks held */
	uint64_t seed;           /* CPROF_SEED: 0 = random; else repeatable sampling */
	unsigned mutex_fraction; /* CPROF_MUTEX_FRACTION: 1 in N contentions kept */
	uint64_t block_rate;     /* CPROF_BLOCK_RATE: ns; waits >= this always kept */
	int wait_clock;          /* CPROF_CLOCK: CPROF_CLOCK_AUTO or _MONOTONIC */
	unsigned label_sets;     /* CPROF_LABEL_SETS: distinct label sets held */
	uint64_t dump_interval_ns; /* CPROF_DUMP_INTERVAL: periodic dumps; 0 none */
	unsigned keep;           /* CPROF_KEEP: this process's newest dumps kept; 0 all */
	unsigned lines;          /* CPROF_LINES: a cprof_lines_t */
	unsigned unwind_caches;  /* CPROF_UNWIND_CACHES: threads with a trace cache */
	/* The /debug/pprof endpoint (http.c); http[0] == 0: none. */
	char http[256];          /* CPROF_HTTP, validated (http_route.h) */
	char http_token[256];    /* CPROF_HTTP_TOKEN, "" none */
	char http_token_file[4096]; /* CPROF_HTTP_TOKEN_FILE, "" none */
	unsigned http_max_seconds;  /* CPROF_HTTP_MAX_SECONDS */
	unsigned http_connections;  /* CPROF_HTTP_CONNECTIONS */
	unsigned http_timeout;      /* CPROF_HTTP_TIMEOUT, seconds */
	bool http_addresses_only;   /* CPROF_HTTP_SYMBOLIZE=off */
} cprof_config_t;

enum { CPROF_CLOCK_AUTO = 0, CPROF_CLOCK_MONOTONIC = 1 };

/* Which modules get DWARF source lines and inline frames at dump time
 * (function names come from the symbol tables in every case). Zero is the
 * default, so a zeroed configuration (tools, unit tests) means it too. */
typedef enum cprof_lines {
	CPROF_LINES_PROGRAM = 0, /* all but system libraries' separate debug files */
	CPROF_LINES_ALL = 1,
	CPROF_LINES_NONE = 2,
} cprof_lines_t;

#define CPROF_DEPTH_LIMIT 512

extern cprof_config_t cprof_config;

/* Reads the CPROF_* environment into cprof_config. A bad value costs one
 * `cprof:` warning naming the variable and the value; the default stays. */
void cprof_config_load(void);
static inline bool cprof_enabled(cprof_kind_t kind)
{
	return (cprof_config.profiles >> kind) & 1u;
}

/* ---- logging (init.c) ----------------------------------------------- */

/* One line "cprof: ...\n" on stderr through write(2); no malloc, no stdio.
 * Formats %s %d %u %ld %lu %x %% only. Safe to call anywhere. */
CPROF_SIGSAFE void cprof_log(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
/* Where the lines go instead of stderr when >= 0 (a dump child's copy of
 * the program's stderr, moved off 2: see dump.c). */
extern int cprof_log_fd;

/* ---- mixing and random numbers (header-only) ------------------------ */

/* splitmix64's finaliser: a good 64-bit spread (hashes, seeds). */
static inline uint64_t cprof_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* One xorshift64* step on a caller-owned, non-zero state: uniform 64-bit
 * numbers with no system call, for the samplers' per-thread streams (each
 * source seeds its own, as its repeatability rules require). */
CPROF_SIGSAFE static inline uint64_t cprof_xorshift64star(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 2685821657736338717ULL;
}

/* ---- re-entrancy guard (init.c) ------------------------------------- */

/* Per-thread state, initial-exec TLS: reading it costs one load. */
typedef struct cprof_thread {
	int busy;        /* >0 while the profiler itself runs on this thread */
	int timer_slot;  /* index in cpu.c's timer registry, -1 none */
	uint32_t labels; /* the thread's label set (labels.c), 0 none */
	int private_files; /* the dumper: its descriptor table is its own */
	pid_t tid;       /* gettid(), set where the thread starts; 0 unknown */
	struct cprof_wait_record *wait; /* threads profile: this thread's record (wait.h) */
} cprof_thread_t;

extern __thread cprof_thread_t cprof_thread
	__attribute__((tls_model("initial-exec")));

/* The calling thread's id without a system call where the shim saw the
 * thread start (its pthread_create trampoline, the constructor, a fork
 * child). Never cached lazily: a thread made with raw clone and no TLS
 * of its own shares its creator's. */
CPROF_SIGSAFE pid_t cprof_gettid(void);

/* Calls fn for each name in the open directory `dir`, from its current
 * offset, with raw getdents64 (no descriptor or allocation of libc's, below
 * any wrapper); true when all were seen, false when fn stopped it by
 * returning false. Dump path. */
bool cprof_dir_each(int dir, bool (*fn)(int dir, const char *name, void *ctx), void *ctx);

/* ---- process state (init.c) ----------------------------------------- */

extern atomic_int cprof_running;   /* 1 while sources may record */
extern int64_t cprof_start_wall_ns; /* CLOCK_REALTIME at start (or fork) */
extern uintptr_t cprof_self_text_start, cprof_self_text_end; /* our code */

CPROF_SIGSAFE int64_t cprof_now_ns(clockid_t clock);

/* ---- next definitions (real.c) -------------------------------------- */

#include <pthread.h>
struct sigaction;
typedef int (*cprof_pthread_create_fn)(pthread_t *, const pthread_attr_t *,
				       void *(*)(void *), void *);
extern cprof_pthread_create_fn real_pthread_create;
extern int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);
extern int (*real_dlclose)(void *);
extern sighandler_t (*real_signal)(int, sighandler_t);

/* Resolves every next definition libcprof calls, once, in the
 * constructor (or at the first wrapper called before it): the malloc
 * family first (heap.c, whose dlsym allocations it serves), then every
 * descriptor in the cprof_next section (CPROF_NEXT_SLOT: real.c's
 * pointers, unwind.c's dl_iterate_phdr, every CPROF_NEXT of wait.h), so
 * no wrapper runs the loader later, inside a signal handler or with the
 * program's locks held. Safe to call again. */
void cprof_real_init(void);

typedef struct cprof_next_desc {
	const char *name;
	const char *version; /* dlvsym first when not NULL */
	void **slot;         /* the real_<name> pointer to set */
} cprof_next_desc_t;

/* Registers `slot` (a function pointer variable) for cprof_real_init. */
#define CPROF_NEXT_SLOT(name, version, slot)                                        \
	__attribute__((used, section("cprof_next"), aligned(sizeof(void *))))        \
	static cprof_next_desc_t cprof_next_desc_##name = { #name, version, (void **)&(slot) }

/* The next definition of `name` (dlvsym with `version` when not NULL,
 * falling back to dlsym), or a stub failing with ENOSYS, with one cprof
 * line, when there is none (real.c). */
void *cprof_wait_next(const char *name, const char *version);
/* heap.c: resolves the malloc family's next definitions if not yet. */
void cprof_heap_resolve(void);

/* ---- stack capture (unwind.c) --------------------------------------- */

/* Fills pcs[] with the stack interrupted by a signal, leaf first: the
 * interrupted PC, then return addresses minus one. Returns the depth.
 * With less than CPROF_UNWIND_ROOM_SIGNAL bytes left on the stack the
 * handler runs on: the PC and [cprof: no stack room]. */
CPROF_SIGSAFE int cprof_unwind_signal(void *ucontext, uintptr_t *pcs, int max);

/* Fills pcs[] with the caller's stack, leaf first, without libcprof's own
 * frames. For wrappers (heap, mutex, block); never from a signal handler.
 * Short of room: [cprof: no stack room] alone. */
CPROF_SIGSAFE int cprof_unwind_here(uintptr_t *pcs, int max);

/* What an unwind may use below its caller's frame, measured
 * (tests/unit/test_unwind.c paints a stack and finds the high-water mark
 * of 64- and 510-frame unwinds) with libunwind 1.6.2 on x86_64: from a
 * signal, 2,984 bytes (5,784 when it is the first and the loader binds
 * libunwind's calls lazily, 2.8 KiB of that the binder's register save);
 * from a wrapper, 5,080 with the cached trace (a thread's first trace
 * builds its cache), 6,632 with lazy binding, 3,944 uncached (5,288).
 * The bounds the capture functions check, with a margin: */
#define CPROF_UNWIND_ROOM_SIGNAL (7 * 1024)
#define CPROF_UNWIND_ROOM_WRAPPER (8 * 1024)

/* A relaxed load of an int compared with a constant, for wrappers' fast
 * paths: on x86-64 one compare from memory (GCC loads an atomic into a
 * register and tests it there: one instruction more). */
#define cprof_int_is(p, k) cprof_int_is_((const void *)(p), (k))
static inline __attribute__((always_inline)) bool cprof_int_is_(const void *p, int k)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
	/* Equal falls through: the fast paths' likely case. */
	__asm__ goto("cmpl %1, %0\n\tjne %l[no]" : : "m"(*(const int *)p), "i"(k) : "cc" : no);
	return true;
no:
	return false;
#else
	return __atomic_load_n((const int *)p, __ATOMIC_RELAXED) == k;
#endif
}

/* A thread's first wrapper unwinds walk uncached, before it takes a
 * cached trace (unwind.c). */
#define CPROF_UNWIND_UNCACHED_FIRST 16

/* A capture buffer of max_depth + 2 addresses from a fixed pool, taken
 * lock-free (signal-safe); NULL when every one is in use. */
CPROF_SIGSAFE uintptr_t *cprof_capture_take(void);
CPROF_SIGSAFE void cprof_capture_give(uintptr_t *pcs);

/* The calling thread's stack bounds, set once outside any handler
 * (pthread_create's trampoline, from thread_self.c; 0, 0: not known). */
void cprof_unwind_thread_bounds(uintptr_t lo, uintptr_t hi);
/* The same for the main thread, from the stack limit (the constructor). */
void cprof_unwind_main_start(void);
/* True when sp is on the calling thread's own stack, as far as known. */
CPROF_SIGSAFE bool cprof_unwind_on_thread_stack(uintptr_t sp);
/* A SIG_SETMASK call from libunwind's code at `caller` inside one of our
 * unwinds, where its signal blocking protects nothing: true when it is
 * skipped (unwind.c says which). */
CPROF_SIGSAFE bool cprof_unwind_skips_mask(uintptr_t caller, const sigset_t *set, sigset_t *old);
/* ---- a new thread's id and stack (thread_self.c) --------------------- */

/* What pthread_create's wrapper passes the new thread about its stack. */
typedef struct cprof_stack_hint {
	uintptr_t user_lo, user_hi; /* a stack the program gave; 0, 0: glibc's */
	size_t size;                /* glibc's: the size asked for (or the default) */
} cprof_stack_hint_t;
/* The constructor, on the main thread: finds where glibc keeps the id. */
void cprof_self_init(pid_t main_tid);
/* In pthread_create's wrapper, before the thread exists. */
void cprof_self_hint(const pthread_attr_t *attr, cprof_stack_hint_t *hint);
/* The calling thread's stack bounds as pthread_getattr_np gives them. */
bool cprof_self_stack_asked(uintptr_t *lo, uintptr_t *hi);
/* On the new thread: its id, and its stack's bounds (false: not known). */
bool cprof_self_learn(const cprof_stack_hint_t *hint, pid_t *tid, uintptr_t *lo, uintptr_t *hi);

/* The thread ends: its turn at libunwind's cached trace goes back. */
void cprof_unwind_thread_exit(void);
void cprof_unwind_atfork_child(void);
/* Threads holding a libunwind trace cache now (<= CPROF_UNWIND_CACHES). */
unsigned cprof_unwind_cached_threads(void);

/* The calling thread's stack bounds as set above (0, 0: not known). */
void cprof_unwind_stack_bounds(uintptr_t *lo, uintptr_t *hi);
/* walk.c: the calling wrapper's stack, return addresses from its own
 * frame out, walked with the objects' .eh_frame rules, as unw_backtrace
 * gives them; -1 when this walk cannot take every frame (then libunwind
 * must). The thread's stack bounds must be known. */
CPROF_SIGSAFE int cprof_walk_here(uintptr_t *pcs, int max);
/* unwind.c: the n addresses cprof_walk_here gave, as the program's frames
 * (libcprof's own skipped, return addresses less one). The depth. */
CPROF_SIGSAFE int cprof_unwind_walked(uintptr_t *pcs, int n, int max);
/* The same from a signal handler, over the interrupted context: the
 * interrupted PC first, then return addresses; *complete when it reached
 * the outermost frame, not max. */
CPROF_SIGSAFE int cprof_walk_signal(const void *ucontext, uintptr_t *pcs, int max,
				    bool *complete);
/* A dlclose: the kept rules may be another object's now. */
void cprof_walk_flush(void);
#ifdef CPROF_WALK_CHECK
/* The test build's check: a walk's frames as recorded (depth -1: left to
 * libunwind) against libunwind's m of the same stack; kind 0 a
 * wrapper's, 1 a signal handler's. */
void cprof_walk_check(int kind, const uintptr_t *mine, int depth, const uintptr_t *lib, int m);
#endif
/* Another thread's stack, leaf first, from the registers it published
 * (wait.h: rip rsp rbp rbx r12-r15), over `copy`: copy_len bytes of its
 * stack copied from regs[1] up. Reads in that thread's stack
 * [stack_lo, stack_hi) come from the copy or through the kernel, never
 * by dereference. Dump path. The depth; 0 when rsp is not in bounds. */
int cprof_unwind_remote(const uintptr_t regs[8], uintptr_t stack_lo, uintptr_t stack_hi,
			const void *copy, size_t copy_len, uintptr_t *pcs, int max);

/* Prepares the unwinder (caching policy, first unwind) before sampling. */
void cprof_unwind_init(void);
/* Forgets cached unwind rules (after dlclose: a new library may reuse the
 * addresses). */
void cprof_unwind_flush(void);


/* ---- labels (labels.c) ---------------------------------------------- */

/* The label set a sample carries when the table could not hold its own:
 * written as the one label cprof="labels dropped". */
#define CPROF_LABELS_DROPPED UINT32_MAX
#define CPROF_LABELS_PAIRS_MAX 16 /* pairs in one set */

/* Maps the table of label sets (`entries` of 512 bytes); 0 or -errno. */
int cprof_labels_init(unsigned entries);
/* The pairs of set `id` (0: none), sorted by key; the count. Strings live
 * as long as the process. Dump path and tests. */
unsigned cprof_labels_get(uint32_t id, const char **keys, const char **values, unsigned max);

/* ---- stack table (stacks.c) ----------------------------------------- */

/* Pseudo-frames: values below 4096 never are code addresses. The dump
 * names them "[cprof: ...]". */
enum {
	CPROF_FRAME_DROPPED = 1,    /* the stack table was full */
	CPROF_FRAME_TRUNCATED = 2,  /* stack deeper than CPROF_MAX_DEPTH */
	CPROF_FRAME_NOUNWIND = 3,   /* not unwound: unsafe at that moment */
	CPROF_FRAME_NOROOM = 4,     /* not unwound: too little stack left */
	CPROF_FRAME_TAIL = 5,       /* CPU time no timer expiry was signalled for */
	CPROF_FRAME_NOT_REACHED = 6, /* threads: a thread that did not answer, or not asked */
	CPROF_FRAME_CREATED_BY = 7, /* threads: the creator's frames follow */
	CPROF_FRAME_NO_STACK = 8,   /* threads: not a pthread of ours (raw clone) */
	CPROF_FRAME_LAST = 8,
	CPROF_FRAME_PSEUDO_MAX = 4096
};

typedef struct cprof_stack {
	uint64_t hash;
	uint32_t kind;
	uint32_t depth;
	uint64_t tag;                         /* kind-specific key part */
	uint32_t labels;                      /* the recording thread's label set */
	uint32_t reserved;
	_Atomic int64_t values[CPROF_VALUES_MAX];
	uintptr_t frames[];                   /* leaf first */
} cprof_stack_t;

/* Creates the table: `stacks` unique stacks of up to `max_depth` frames.
 * Address space is mmap'd once here and never grows; pages are touched as
 * stacks arrive. Returns 0 or -errno. */
int cprof_stacks_init(unsigned stacks, unsigned max_depth);

/* Finds or adds the stack (kind, tag, the calling thread's labels,
 * frames). Never blocks, never
 * allocates. When the table is full, returns the kind's
 * [cprof: dropped] entry, so the event's values are still counted. */
CPROF_SIGSAFE cprof_stack_t *cprof_stacks_insert(cprof_kind_t kind, uint64_t tag,
						 const uintptr_t *frames,
						 unsigned depth);

/* The same in two steps, for a caller with other work to do between
 * them (a heap sample): the key (the stack's hash and the calling
 * thread's labels) and a prefetch of the index line its probe reads
 * first, then the insert with that key (same kind, tag, frames and depth;
 * the insert reads no labels of its own). cprof_stacks_warm asks for the
 * table's own lines that every insert reads, before even the frames are
 * known. */
typedef struct cprof_stack_key {
	uint64_t hash;
	uint32_t labels;
} cprof_stack_key_t;
CPROF_SIGSAFE void cprof_stacks_warm(void);
CPROF_SIGSAFE cprof_stack_key_t cprof_stacks_key(cprof_kind_t kind, uint64_t tag,
						 const uintptr_t *frames, unsigned depth);
CPROF_SIGSAFE cprof_stack_t *cprof_stacks_insert_key(cprof_kind_t kind, uint64_t tag,
						     const uintptr_t *frames, unsigned depth,
						     cprof_stack_key_t key);
/* Asks for the lines of the entry a key's first index slot holds, if its
 * hash matches: for a key guessed ahead of the insert (a heap sample
 * guesses that its stack is the thread's last one). Reads the slot. */
CPROF_SIGSAFE void cprof_stacks_fetch(cprof_stack_key_t key);

/* Adds to one counter of an entry (relaxed atomic). */
CPROF_SIGSAFE static inline void cprof_stack_add(cprof_stack_t *s, int i, int64_t v)
{
	atomic_fetch_add_explicit(&s->values[i], v, memory_order_relaxed);
}

/* Calls fn for every entry of `kind` (dump path). */
void cprof_stacks_foreach(cprof_kind_t kind,
			  void (*fn)(const cprof_stack_t *s, void *ctx), void *ctx);

/* Empties the table (fork child): O(1), no page is touched. */
void cprof_stacks_reset(void);

/* True if some entry of `kind` has a non-zero counter. */
bool cprof_stacks_any(cprof_kind_t kind);

/* Entries in use and inserts that found the table full, for diagnostics. */
unsigned cprof_stacks_used(void);

/* ---- sources -------------------------------------------------------- */

/* cpu.c */
extern int cprof_cpu_signal;           /* the timers' signal, 0 before start */
int cprof_cpu_start(void);             /* handler + main thread timer */
void cprof_cpu_stop(void);             /* disarm every timer */
/* Arms the calling thread's timer, or, for a new thread (`created_ns`:
 * CLOCK_MONOTONIC as its creator read it before making it; 0 for any
 * other), leaves it to the dumper to make when the thread could need it
 * (cpu.c, "timers made late"). */
void cprof_cpu_thread_start(int64_t created_ns);
/* The dumper's thread: makes the timers due; the CLOCK_MONOTONIC time by
 * which to call again, 0 for none. */
int64_t cprof_cpu_arm_pending(int64_t now_ns);
void cprof_cpu_thread_exit(void);      /* delete the calling thread's timer */
void cprof_cpu_atfork_child(void);
void cprof_cpu_step_aside(void);       /* the program takes SIGPROF */
/* CPROF_CPU=on-demand: a window that wants CPU samples opens (+1) or
 * closes (-1); the timers run while at least one is open. No-op in the
 * default mode, where they always run. */
void cprof_cpu_demand(int delta);
/* Threads that got no CPU timer (more than the table's 8192 at once):
 * their CPU time is not in the profile; its comment says how many. */
extern atomic_uint cprof_cpu_threads_not_sampled;

/* heap.c: malloc family wrappers. cprof_heap_start runs in the
 * constructor when the heap profile is enabled; the wrappers themselves
 * must work before it (they forward to the next definitions). */
int cprof_heap_start(void);
void cprof_heap_atfork_child(void);
/* The thread ends: the blocks it kept for its next samples go back. */
void cprof_heap_thread_exit(void);

/* In the dump child (dump.c) only: every allocation from now on comes from
 * a private bump allocator over mmap, frees do nothing, and the next
 * allocator (whose locks the parent may have held) is never called. */
CPROF_SIGSAFE void cprof_heap_private(void);

/* mutex.c, block.c: lock and blocking-call wrappers. */
int cprof_mutex_start(void);
void cprof_mutex_atfork_child(void);
int cprof_block_start(void);
void cprof_block_atfork_child(void);

/* threads.c: the threads profile (snapshots at dumps). */
int cprof_threads_start(void);
void cprof_threads_atfork_child(void);
/* On a new thread (trampoline): its record, with its creator's stack. */
void cprof_threads_thread_start(const uintptr_t *created, unsigned ncreated);
void cprof_threads_thread_exit(void);
/* The creator's stack for created_by (pthread_create); 0 when off. */
unsigned cprof_threads_creator(uintptr_t *pcs, unsigned max);
/* A thread of the shim's (dumper, endpoint): never in a snapshot. */
void cprof_threads_shim_thread(void);
/* The hidden signal sent by tgkill (si_code SI_TKILL): a snapshot asks. */
CPROF_SIGSAFE void cprof_threads_on_signal(void *ucontext);
/* "47 minutes": how long a wait is, as Go's goroutine dump says it. */
void cprof_threads_duration(int64_t ns, char *out, size_t cap);
/* cpu.c: the hidden signal for snapshots, taken now if the CPU profile
 * did not; the signal, or 0. */
int cprof_cpu_snapshot_signal(void);
/* cpu.c: every thread's CPU timer is armed now (per-thread timers, not on
 * demand or in a window): a running thread's next expiry can answer. */
bool cprof_cpu_timers_running(void);

/* ---- signals (signals.c) -------------------------------------------- */

/* Installs the dump signal and the SIGTERM/SIGINT final-dump handlers. */
void cprof_signals_init(void);
/* Installs a handler for a signal the profiler owns from now on, and
 * remembers the action the program had, which is what the program sees
 * when it asks. Returns 0 or -errno. */
int cprof_signal_take(int sig, void (*handler)(int, siginfo_t *, void *));

/* ---- the hidden signal and exec (sigmask.c, exec.c) ----------------- */

/* The CPU timer's signal while the CPU profile owns it: never blocked,
 * never readable by the program (see sigmask.c). 0 when none. */
CPROF_SIGSAFE int cprof_sigmask_hidden(void);
/* This thread's program asked for the hidden signal blocked. */
CPROF_SIGSAFE bool cprof_sigmask_view(void);
/* `set` without the hidden signal: `set` itself, or `copy` filled. */
CPROF_SIGSAFE const sigset_t *cprof_sigmask_filter(const sigset_t *set, sigset_t *copy);
void cprof_sigmask_hide(int sig);      /* the CPU profile takes `sig` */
void cprof_sigmask_release(int sig);   /* and gives it to the program */
/* In a new thread: unblock the hidden signal, remember the creator's view
 * (`inherited`) or the real bit as the program's. `maybe_blocked`: the
 * thread may have started with the signal really blocked (the creator
 * called from off its own stack, as in a handler whose sa_mask holds it,
 * or gave the thread a signal mask of its own); otherwise it has the
 * creator's real mask, which the wrappers never let block it, and no
 * system call is made. */
void cprof_sigmask_thread_start(bool inherited, bool maybe_blocked);
void cprof_sigmask_init(void);         /* next definitions */
void cprof_exec_init(void);            /* next definitions */

/* signals.c, for exec.c: set SIG_IGN for real for every owned signal the
 * program ignores (the kernel resets handled ones to SIG_DFL at exec);
 * returns them as bits (1 << (sig - 1)). Writes no memory (vfork). */
CPROF_SIGSAFE uint64_t cprof_signals_ignore_for_exec(void);
/* Puts the shim's handlers back on those still owned. */
CPROF_SIGSAFE void cprof_signals_reinstall(uint64_t which);

/* ---- symbolization (symbolize.c, dump path only) -------------------- */

typedef struct cprof_mapping {
	uint64_t start, limit, offset;
	const char *path;        /* as in /proc/self/maps, or "[vdso]" */
	const char *build_id;    /* lower-case hex, "" when unknown */
	/* true only where every location in this mapping has it */
	bool has_functions, has_filenames, has_line_numbers, has_inline_frames;
} cprof_mapping_t;

typedef struct cprof_line {
	const char *name;        /* demangled if known, else = system_name */
	const char *system_name; /* as in the symbol table (C++ mangled) */
	const char *file;        /* "" when unknown */
	int64_t line;            /* 0 when unknown */
	int64_t start_line;      /* line of the function's declaration, or 0 */
} cprof_line_t;

typedef struct cprof_symbol {
	int mapping;             /* index into the mappings, -1 when none */
	unsigned nlines;         /* 0 when no function is known */
	const cprof_line_t *lines; /* innermost inlined function first */
} cprof_symbol_t;

typedef struct cprof_symbolizer cprof_symbolizer_t;

/* Loads libdw (dlopen, once per process) if it is not loaded yet. */
void cprof_symbolize_load(void);
/* Reads /proc/self/maps (executable mappings, the main program first). */
cprof_symbolizer_t *cprof_symbolizer_new(void);
void cprof_symbolizer_free(cprof_symbolizer_t *s);
/* The address as stored in a stack (callers already minus one). The
 * result's strings live until cprof_symbolizer_free. Each address is
 * looked up once; a repeated call answers from a cache. */
void cprof_symbolize(cprof_symbolizer_t *s, uintptr_t address, cprof_symbol_t *out);
/* The address will be looked up (as cprof_symbolize takes it): told for
 * all of a dump's addresses before its first lookup, the symbol tables
 * are read for them alone. An address looked up untold still gets its
 * answer (the mapping's whole table is read then). */
void cprof_symbolizer_want(cprof_symbolizer_t *s, uintptr_t address);
/* Set by the shim (threads.c: cprof_wait_name_of): the name of one of
 * its wrappers' entries, NULL for any other address; NULL in the tools. */
extern const char *(*cprof_symbolize_own_entry)(uintptr_t address);
/* The index of the mapping holding the address, -1 none; no lookup. */
int cprof_symbolizer_mapping_of(cprof_symbolizer_t *s, uintptr_t address);
/* Mappings with their has_* flags as they stand after the lookups made. */
unsigned cprof_symbolizer_mappings(cprof_symbolizer_t *s, const cprof_mapping_t **out);

/* ---- pprof writer (pprof.c, dump path only) ------------------------- */

/* Raw counters to sample values, per kind (NULL: the counters as they
 * are); and the period each kind reports. Set through
 * cprof_source_register. */
typedef void (*cprof_values_fn)(const cprof_stack_t *s, int64_t out[CPROF_VALUES_MAX]);

/* ---- the registry of kinds (sources.c) -------------------------------- */

/* A label a source adds to one sample beyond the thread's label set:
 * a string (str) or a number (num, unit). */
typedef struct cprof_sample_label {
	const char *key;
	const char *str;  /* NULL: numeric */
	int64_t num;
	const char *unit;
} cprof_sample_label_t;

typedef void (*cprof_entry_fn)(const cprof_stack_t *s, void *ctx);

/* One row per kind. Format fields are read by pprof.c; the hooks are the
 * shim's (NULL in the tools and unit tests, and where a kind has none). */
typedef struct cprof_source {
	const char *name;                       /* "cpu": files, CPROF_PROFILES */
	unsigned nvalues;
	const char *types[CPROF_VALUES_MAX][2]; /* {type, unit} */
	const char *period_type[2];
	const char *default_type;
	const char *tag_label[2];               /* {key, unit} for the tag, or NULL */
	void (*comment)(char *out, size_t cap); /* the settings behind the numbers */
	int (*start)(void);                     /* constructor, when enabled */
	void (*stop)(void);                     /* the process ends */
	void (*atfork_child)(void);             /* every forked child */
	/* A snapshot kind: collect takes the snapshot (dump path, before a
	 * build or a count), foreach walks its entries (NULL: the stack
	 * table's), labels adds per-sample labels, any says whether the final
	 * dump writes it, text is its debug=1/2 form. */
	int (*collect)(void);
	void (*foreach)(cprof_entry_fn fn, void *ctx);
	unsigned (*labels)(const cprof_stack_t *s, cprof_sample_label_t *out, unsigned max);
	bool (*any)(void);
	int (*text)(cprof_symbolizer_t *sym, int debug, FILE *f);
} cprof_source_t;

extern const cprof_source_t cprof_sources[CPROF_KIND_COUNT];

/* The kind's entries: its own foreach, else the stack table's. */
void cprof_source_foreach(cprof_kind_t kind, cprof_entry_fn fn, void *ctx);
/* Whether the final dump writes the kind (it recorded something). */
bool cprof_source_any(cprof_kind_t kind);
extern cprof_values_fn cprof_pprof_values[CPROF_KIND_COUNT];
extern int64_t cprof_pprof_period[CPROF_KIND_COUNT];

/* A source that started: its kind is dumped from now on, with this
 * period and values transform (NULL: raw counters). */
void cprof_source_register(cprof_kind_t kind, int64_t period, cprof_values_fn values);

/* Tells the symbolizer every address of `kind`'s stacks now (the build
 * does it for its own kind; a dump of several tells them all first). */
void cprof_pprof_want(cprof_kind_t kind, cprof_symbolizer_t *sym);

/* Builds the gzipped profile.proto for `kind` from the stack table.
 * Returns 0 and a malloc'd buffer, or -errno. */
int cprof_pprof_build(cprof_kind_t kind, cprof_symbolizer_t *sym,
		      int64_t now_wall_ns, uint8_t **out, size_t *out_len);

/* Delta profiles: a snapshot of one kind's sample values (after the
 * kind's transform), entry by entry, at one moment. */
typedef struct cprof_snapshot cprof_snapshot_t;
cprof_snapshot_t *cprof_snapshot_take(cprof_kind_t kind, int64_t now_wall_ns); /* NULL: ENOMEM */
void cprof_snapshot_free(cprof_snapshot_t *snap);

typedef struct cprof_pprof_options {
	const cprof_snapshot_t *base;  /* subtract these values (NULL: none) */
	const cprof_snapshot_t *later; /* values from here, not live (NULL: live) */
	unsigned keep_later;           /* bit per column not subtracted (heap in-use) */
	const char *default_type;      /* NULL: the kind's own */
	bool addresses_only;           /* no names: mappings and build ids only */
} cprof_pprof_options_t;

/* cprof_pprof_build with options; with a base, time_nanos is the base's
 * moment and duration_nanos runs to now (or to `later`). */
int cprof_pprof_build_with(cprof_kind_t kind, cprof_symbolizer_t *sym, int64_t now_wall_ns,
			   const cprof_pprof_options_t *opt, uint8_t **out, size_t *out_len);

/* debug=1: Go's legacy text form of the heap, mutex or block profile now
 * ("heap profile: ..." or "--- mutex:"), symbolized in # lines. 0 and a
 * malloc'd text, or -errno. */
int cprof_pprof_text(cprof_kind_t kind, cprof_symbolizer_t *sym, int debug, char **out,
		     size_t *out_len);

/* Entries of `kind` with a non-zero value now (the index page's counts). */
size_t cprof_pprof_count(cprof_kind_t kind);

/* ---- the /debug/pprof endpoint (http.c) ----------------------------- */

/* Starts the serving thread when CPROF_HTTP is set (constructor). */
void cprof_http_start(void);
/* At exit: waits (2 s at most) until that thread serves or has said why
 * it does not. */
void cprof_http_settle(void);
/* In a forked child: no serving thread to wait for. */
void cprof_http_atfork_child(void);

/* ---- dumps (dump.c) ------------------------------------------------- */

/* Names, the page shared with dump children, and the dumper thread when
 * it is needed from the start (CPROF_DUMP_INTERVAL, CPROF_HTTP, the threads profile); else it
 * starts at the program's first pthread_create, and until then dumps are
 * written by a child process (dump.c, "the dump child"). */
int cprof_dump_init(void);
/* The program is about to create a thread: the dumper starts now, once. */
void cprof_dump_thread_coming(void);
/* Before an exec: a dump child still writing is waited for and reaped. */
CPROF_SIGSAFE void cprof_dump_before_exec(void);
/* A thread of the shim's that never ends takes itself off glibc's count
 * of live threads, so that when the program's last thread ends the process
 * ends (glibc calls exit(0) there) as without the shim. Once per thread,
 * after cprof_dump_init; such a thread must then never return. */
void cprof_thread_uncount(void);
/* Starts fn as a detached thread of the shim's, with every signal blocked
 * (the program's signals never land on it) and no CPU timer (not through
 * the pthread_create wrapper). 0 or the error number. */
int cprof_thread_start_detached(void *(*fn)(void *));
extern atomic_uint cprof_dump_kinds;   /* bit per kind whose source runs */
CPROF_SIGSAFE void cprof_dump_request(void); /* wake the dumper */
/* The dumper thread runs (a program that made a thread, or asked for a
 * thread-needing setting); and a wake-up of it that asks for no dump. */
bool cprof_dump_thread_running(void);
void cprof_dump_kick(void);
/* Writes every profile; 0 or -errno. `final`: the last dump of the
 * process, which leaves out kinds that recorded nothing (a short process
 * under a wrapper should not litter the directory with empty files). */
int cprof_dump_write(const char *why, bool final);
void cprof_dump_at_exit(void);         /* the final dump, once */
/* cprof_dump(): the dumper writes every profile while the caller waits
 * (at most 60 s); 0 or -errno. */
int cprof_dump_wait(void);
void cprof_dump_atfork_prepare(void);
void cprof_dump_atfork_parent(void);
void cprof_dump_atfork_child(void);
/* From a terminating signal's handler: the dumper writes the final
 * profiles; waits at most timeout_ms for it. */
CPROF_SIGSAFE void cprof_dump_final_from_signal(int timeout_ms);

#endif
