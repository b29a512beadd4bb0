/* unwind.c — stack capture with libunwind, the one way every profile kind
 * gets its stacks.
 *
 * CPROF_SIGSAFE: both capture functions run in the CPU timer's handler or
 * in wrappers. libunwind's local unwinder is async-signal-safe when it
 * takes no lock: its global cache takes one (with signals blocked, two
 * sigprocmask calls per frame), so it runs with no cache (see
 * cprof_unwind_init). Its memory comes from mmap, never malloc. What
 * remains is dl_iterate_phdr, which it calls to find an address's unwind
 * tables and which takes the loader's lock: a signal that lands while its
 * thread holds that lock (inside dlopen, dlclose, or dl_iterate_phdr
 * itself, as C++ exceptions do) would have the handler walk a list in
 * mid-change, or wait on a lock; and a wrapper that waits for it while
 * the program holds its own mutex deadlocks with a thread that holds the
 * loader's lock and waits for that mutex (a dlopen'd constructor).
 * So libcprof exports its own dl_iterate_phdr: for everyone else it is the
 * real one; on a thread inside one of libcprof's unwinds it answers with
 * the one object that holds the address being looked up, found with
 * glibc's lock-free, async-signal-safe _dl_find_object, and takes no lock
 * at all.
 *
 * Stack: the capture functions check the room left on the stack they run
 * on before unwinding (see "stack room"); their callers keep the frames in
 * the capture pool below, not on that stack. Memory: the wrappers' fast
 * trace keeps a 256 KiB cache per thread, for at most
 * CPROF_UNWIND_CACHES threads at once.
 *
 * No descriptor: libunwind 1.6 checks memory (when a DWARF step falls
 * back, and with its conservative checks on every step) by writing a byte
 * of it to a pipe it opens at start-up and reading it back; when the pipe
 * looks broken it closes "its" two numbers and opens a new pipe. In a
 * daemon that closed every descriptor above 2 and opened its own files on
 * those numbers, that read its input and wrote NUL bytes into its output
 * (libunwind issues #274 and #291). So the local address space's
 * access_mem is ours (unw_get_accessors gives the mutable table): it
 * probes with rt_sigprocmask given an invalid `how` and the address as
 * its set, which copies 8 bytes from user memory before it looks at `how`
 * and changes nothing: EFAULT means unreadable, EINVAL readable. Known-good
 * pages are kept in a small per-thread cache, as libunwind does, emptied
 * when a library is closed. libunwind's pipe is closed in the constructor
 * right after it was opened; nothing uses it.
 *
 * Addresses: the first frame of a signal stack is the interrupted PC,
 * exact; every other frame is a return address, stored minus one so it
 * points into the call instruction (the right line, the right inline).
 */
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "cprof_internal.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

/* Per-thread unwinding state, initial-exec TLS (no allocation, one load):
 * the thread's own stack, found once outside any handler
 * (cprof_unwind_thread_bounds, cprof_unwind_main_start), for the room
 * check; whether this thread may use libunwind's cached fast trace; and,
 * while it unwinds, the flag that has dl_iterate_phdr below answer
 * lock-free. */
typedef struct unwind_thread {
	uintptr_t stack_lo, stack_hi; /* 0: not known */
	int trace;                    /* TRACE_* */
	unsigned uncached_walks;      /* wrapper unwinds before the first cached one */
	int unwinding;                /* >0 inside one of our unwinds */
	int masks_skipped;            /* libunwind's mask changes skipped, not yet restored */
	int from_signal;              /* ... from a signal handler */
	uintptr_t lookup_pc;          /* signal unwinds: the address looked up next */
	/* Another thread's stack (cprof_unwind_remote): reads in
	 * [remote_lo, remote_hi) come from the copy of [copy_at, copy_at +
	 * copy_len), or one checked word at a time; none is dereferenced. */
	uintptr_t remote_lo, remote_hi, copy_at;
	size_t copy_len;
	const unsigned char *copy;
} unwind_thread_t;

enum { TRACE_UNDECIDED = 0, TRACE_CACHED, TRACE_UNCACHED, TRACE_EXITED };

static __thread unwind_thread_t unwind_tls __attribute__((tls_model("initial-exec")));

/* The end of one of our unwinds; the outermost also ends a mask pair
 * libunwind left half-done (sigmask.c skips them inside our unwinds). */
CPROF_SIGSAFE static inline void unwind_leave(unwind_thread_t *t)
{
	if (--t->unwinding == 0)
		t->masks_skipped = 0;
}

/* libunwind's own code: a dl_iterate_phdr callback from there is its
 * dwarf_callback (the only caller in libunwind 1.6.2's x86_64 local
 * unwinder: src/dwarf/Gfind_proc_info-lsb.c), whose data is a struct
 * dwarf_callback_data that starts with the ip it looks for. */
static uintptr_t unwinder_text_start, unwinder_text_end;

static int (*real_dl_iterate_phdr)(int (*)(struct dl_phdr_info *, size_t, void *), void *);
CPROF_NEXT_SLOT(dl_iterate_phdr, NULL, real_dl_iterate_phdr);

/* The one object that holds `pc`, from glibc's lock-free,
 * async-signal-safe _dl_find_object; 0 when none. */
static int answer_one(uintptr_t pc, int (*callback)(struct dl_phdr_info *, size_t, void *),
		      void *data)
{
	struct dl_find_object found;
	if (_dl_find_object((void *)pc, &found) != 0 || !found.dlfo_link_map)
		return 0;
	/* The ELF header is mapped at the object's lowest address, and the
	 * program headers with it. */
	const ElfW(Ehdr) *ehdr = found.dlfo_map_start;
	if (memcmp(ehdr->e_ident, ELFMAG, SELFMAG) != 0 || ehdr->e_phentsize != sizeof(ElfW(Phdr)))
		return 0;
	struct dl_phdr_info info;
	memset(&info, 0, sizeof info);
	info.dlpi_addr = found.dlfo_link_map->l_addr;
	info.dlpi_name = found.dlfo_link_map->l_name;
	info.dlpi_phdr = (const ElfW(Phdr) *)((const char *)ehdr + ehdr->e_phoff);
	info.dlpi_phnum = ehdr->e_phnum;
	return callback(&info, offsetof(struct dl_phdr_info, dlpi_adds), data);
}

/* libunwind blocks every signal around each lookup of an address's object
 * (a sigprocmask pair, 17 system calls a CPU sample here), so that a
 * handler cannot re-enter the loader's lock the lookup holds. Inside our
 * unwinds the lookup holds no lock (dl_iterate_phdr above), so the pair
 * protects nothing: sigmask.c skips it. A call that sets the mask and
 * saves the old one is skipped and counted; a restore (no old set asked)
 * is skipped only against that count, so the mask is left exactly as it
 * was and a restore that is not one of a skipped pair goes to the kernel.
 * Calls from libunwind outside our unwinds (a program's own) are not
 * touched. */
CPROF_SIGSAFE bool cprof_unwind_skips_mask(uintptr_t caller, const sigset_t *set, sigset_t *old)
{
	unwind_thread_t *t = &unwind_tls;
	if (!t->unwinding || !set || caller < unwinder_text_start || caller >= unwinder_text_end)
		return false;
	if (old) {
		*old = *set; /* read back only by the restore, which is skipped too */
		t->masks_skipped++;
		return true;
	}
	if (t->masks_skipped > 0) {
		t->masks_skipped--;
		return true;
	}
	return false;
}

/* ---- memory validation without a descriptor -------------------------- */

#define PAGE_OF(a) ((uintptr_t)(a) & ~(uintptr_t)4095)
#define VALID_PAGES 8

/* Pages this thread found readable, and the library generation they were
 * found in: a dlclose (cprof_unwind_flush) may unmap any of them. */
static __thread uintptr_t valid_page[VALID_PAGES] __attribute__((tls_model("initial-exec")));
static __thread unsigned valid_next __attribute__((tls_model("initial-exec")));
static __thread unsigned valid_generation __attribute__((tls_model("initial-exec")));
static atomic_uint pages_generation = 1;

/* The 8 bytes at addr can be read: one system call that reads user memory
 * and has no effect. errno is kept. */
CPROF_SIGSAFE static bool readable(uintptr_t addr)
{
	int saved_errno = errno;
	long rc = syscall(SYS_rt_sigprocmask, -1, (void *)addr, NULL, sizeof(uint64_t));
	bool ok = rc < 0 && errno == EINVAL;
	errno = saved_errno;
	return ok;
}

CPROF_SIGSAFE static bool validate(uintptr_t addr)
{
	unsigned generation = atomic_load_explicit(&pages_generation, memory_order_relaxed);
	if (CPROF_UNLIKELY(valid_generation != generation)) {
		memset(valid_page, 0, sizeof valid_page);
		valid_generation = generation;
	}
	uintptr_t first = PAGE_OF(addr), last = PAGE_OF(addr + sizeof(unw_word_t) - 1);
	if (first == 0)
		return false;
	bool have_first = false, have_last = false;
	for (int i = 0; i < VALID_PAGES; i++) {
		have_first |= valid_page[i] == first;
		have_last |= valid_page[i] == last;
	}
	if (have_first && have_last)
		return true;
	if (!readable(addr))
		return false;
	/* A signal landing here may take a slot too: each store is one word,
	 * and every page stored was readable when it was. */
	valid_page[valid_next++ % VALID_PAGES] = first;
	if (last != first)
		valid_page[valid_next++ % VALID_PAGES] = last;
	return true;
}

/* libunwind's local access_mem without its pipe. The low bit of `arg` is
 * the cursor's "validate" flag from libunwind 1.6 on (AS_ARG_GET_VALIDATE),
 * set for every step under its conservative checks and for the
 * frame-chain fallback; before 1.6 `arg` was the cursor itself, and every
 * read is checked. */
#if UNW_VERSION_MAJOR > 1 || (UNW_VERSION_MAJOR == 1 && UNW_VERSION_MINOR >= 6)
#define ASKS_VALIDATION(arg) ((uintptr_t)(arg) & 1)
#else
#define ASKS_VALIDATION(arg) 1
#endif
CPROF_SIGSAFE static int access_mem_checked(unw_addr_space_t as, unw_word_t addr,
					    unw_word_t *val, int write, void *arg)
{
	(void)as;
	if (CPROF_UNLIKELY(write)) {
		*(unw_word_t *)addr = *val;
		return 0;
	}
	const unwind_thread_t *t = &unwind_tls;
	if (CPROF_UNLIKELY(t->remote_hi)) {
		if (addr >= t->copy_at && addr + sizeof *val <= t->copy_at + t->copy_len) {
			memcpy(val, t->copy + (addr - t->copy_at), sizeof *val);
			return 0;
		}
		if (addr + sizeof *val > t->remote_lo && addr < t->remote_hi) {
			/* Another thread's stack beyond the copy: copied by the
			 * kernel, which answers EFAULT rather than a fault. */
			struct iovec local = { val, sizeof *val };
			struct iovec remote = { (void *)(uintptr_t)addr, sizeof *val };
			if (syscall(SYS_process_vm_readv, (long)getpid(), &local, 1L, &remote, 1L, 0L) !=
			    (long)sizeof *val)
				return -UNW_EINVAL;
			return 0;
		}
		if (!validate((uintptr_t)addr))
			return -UNW_EINVAL;
		*val = *(unw_word_t *)addr;
		return 0;
	}
	if (ASKS_VALIDATION(arg) && !validate((uintptr_t)addr))
		return -UNW_EINVAL;
	*val = *(unw_word_t *)addr;
	return 0;
}

static long raw_fcntl(int fd, int cmd)
{
	return syscall(SYS_fcntl, fd, cmd, 0);
}

/* The lowest descriptor numbers free now: pipe2 takes the two lowest. */
static void lowest_free_fds(int out[2])
{
	int n = 0;
	for (int fd = 0; n < 2 && fd < 65536; fd++)
		if (raw_fcntl(fd, F_GETFD) < 0 && errno == EBADF)
			out[n++] = fd;
	if (n < 2)
		out[0] = out[1] = -1;
}

/* fds[0] and fds[1] are the two ends of one non-blocking close-on-exec
 * pipe: what libunwind's tdep_init_mem_validate opens. */
static bool is_validation_pipe(const int fds[2])
{
	struct stat a, b;
	if (fds[0] < 0 || syscall(SYS_fstat, fds[0], &a) != 0 ||
	    syscall(SYS_fstat, fds[1], &b) != 0)
		return false;
	if (!S_ISFIFO(a.st_mode) || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
		return false;
	long fl0 = raw_fcntl(fds[0], F_GETFL), fl1 = raw_fcntl(fds[1], F_GETFL);
	long fd0 = raw_fcntl(fds[0], F_GETFD), fd1 = raw_fcntl(fds[1], F_GETFD);
	return fl0 >= 0 && fl1 >= 0 && (fl0 & O_NONBLOCK) && (fl1 & O_NONBLOCK) &&
	       (fl0 & O_ACCMODE) == O_RDONLY && (fl1 & O_ACCMODE) == O_WRONLY &&
	       fd0 >= 0 && fd1 >= 0 && (fd0 & FD_CLOEXEC) && (fd1 & FD_CLOEXEC);
}

/* libunwind's first call (any unw_* runs its tdep_init) opens its
 * validation pipe; ours replaces the only code that uses it, so it is
 * closed at once, before the program runs. */
static void take_over_validation(void)
{
	int before[2];
	lowest_free_fds(before);
	unw_accessors_t *acc = unw_get_accessors(unw_local_addr_space);
	if (is_validation_pipe(before)) {
		syscall(SYS_close, before[0]);
		syscall(SYS_close, before[1]);
	}
	if (acc)
		acc->access_mem = access_mem_checked;
}

/* On a thread inside one of libcprof's unwinds, libunwind's lookups are
 * answered with the one object that holds the address, and no lock is
 * taken: the real dl_iterate_phdr holds the loader's list lock across its
 * callbacks, so a wrapper unwinding while the program holds its own mutex
 * (the mutex profile records at unlock; the heap profile inside malloc)
 * would wait for that lock while a thread in dl_iterate_phdr, dlopen or
 * dlclose whose callback or constructor takes the program's mutex waits
 * for it: a deadlock the program alone never has (tests/progs/loader_order).
 * The address is the ip member that opens libunwind's callback data;
 * should the callback not be libunwind's (another version's code), a
 * wrapper unwind takes the real, locking path, and a signal unwind the
 * address it set before the step. Everyone else gets the real one. */
CPROF_EXPORT int dl_iterate_phdr(int (*callback)(struct dl_phdr_info *, size_t, void *),
				 void *data)
{
	if (CPROF_LIKELY(!unwind_tls.unwinding)) {
		/* Too early for dlsym (a sanitizer's start-up): no objects,
		 * rather than a call through NULL. */
		if (CPROF_UNLIKELY(!real_dl_iterate_phdr))
			real_dl_iterate_phdr = (int (*)(int (*)(struct dl_phdr_info *, size_t, void *),
							void *))dlsym(RTLD_NEXT, "dl_iterate_phdr");
		return real_dl_iterate_phdr ? real_dl_iterate_phdr(callback, data) : 0;
	}
	uintptr_t cb = (uintptr_t)callback;
	if (CPROF_LIKELY(cb >= unwinder_text_start && cb < unwinder_text_end && data))
		return answer_one((uintptr_t)*(const unw_word_t *)data, callback, data);
	if (unwind_tls.from_signal)
		return answer_one(unwind_tls.lookup_pc, callback, data);
	return real_dl_iterate_phdr ? real_dl_iterate_phdr(callback, data) : 0;
}

/* ---- stack room --------------------------------------------------------- */

/* A signal can land while its thread runs on a small stack: an alternate
 * signal stack (a runtime's guard-page handler on 8 KiB), a thread made
 * with PTHREAD_STACK_MIN, a deep recursion near its end. An unwind needs
 * CPROF_UNWIND_ROOM_SIGNAL or _WRAPPER bytes below the caller's frame (libunwind's
 * cursor, context and DWARF state, measured by tests/unit/test_unwind.c);
 * with less, the event is counted under "[cprof: no stack room]"
 * instead. The stack the capture runs on is the thread's own (bounds from
 * cprof_unwind_thread_bounds) or its alternate stack (the handler's
 * ucontext says where that is; a wrapper asks sigaltstack, only when the
 * stack pointer is outside the thread's own stack). A stack libcprof does
 * not know (a coroutine's, a thread made with raw clone or before the
 * constructor) is not unwound: its room cannot be checked. */
static bool within(uintptr_t sp, uintptr_t lo, uintptr_t hi)
{
	return sp > lo && sp <= hi;
}

CPROF_SIGSAFE static bool stack_room(uintptr_t sp, const stack_t *alt, uintptr_t need)
{
	const unwind_thread_t *t = &unwind_tls;
	if (CPROF_LIKELY(t->stack_lo && within(sp, t->stack_lo, t->stack_hi)))
		return sp - t->stack_lo >= need;
	stack_t ss;
	if (!alt) {
		if (sigaltstack(NULL, &ss) != 0)
			return false;
		alt = &ss;
	}
	if (!(alt->ss_flags & SS_DISABLE) && alt->ss_size &&
	    within(sp, (uintptr_t)alt->ss_sp, (uintptr_t)alt->ss_sp + alt->ss_size))
		return sp - (uintptr_t)alt->ss_sp >= need;
	return false;
}

CPROF_SIGSAFE bool cprof_unwind_on_thread_stack(uintptr_t sp)
{
	return unwind_tls.stack_lo && within(sp, unwind_tls.stack_lo, unwind_tls.stack_hi);
}

/* The main thread's stack, in the constructor. pthread_getattr_np would
 * read /proc/self/maps for it: its stack ends at __libc_stack_end's page
 * and may grow down to the stack limit. */
void cprof_unwind_main_start(void)
{
	extern void *__libc_stack_end;
	struct rlimit rl;
	uintptr_t hi = ((uintptr_t)__libc_stack_end + 4095) & ~(uintptr_t)4095;
	if (getrlimit(RLIMIT_STACK, &rl) != 0) {
		cprof_unwind_thread_bounds(0, 0);
		return;
	}
	uintptr_t size = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1ul << 30)
				 ? (1ul << 30) : (uintptr_t)rl.rlim_cur;
	/* The kernel's gap below is not stack. */
	cprof_unwind_thread_bounds(hi - size + 4096, hi);
}

void cprof_unwind_thread_bounds(uintptr_t lo, uintptr_t hi)
{
	unwind_thread_t *t = &unwind_tls;
	t->trace = TRACE_UNDECIDED;
	t->uncached_walks = 0;
	t->stack_lo = lo < hi ? lo : 0;
	t->stack_hi = lo < hi ? hi : 0;
}

/* ---- capture buffers ---------------------------------------------------- */

/* The frames of a capture in progress live in a fixed pool, not on the
 * interrupted stack (CPROF_MAX_DEPTH 512 would be 4 KiB there): slots of
 * max_depth + 2 addresses, mmap'd once, taken and given back lock-free
 * with one compare-and-swap on a bitmap, so a signal landing mid-capture
 * takes another. An empty pool (CAPTURE_SLOTS captures in progress at
 * once) counts the event "[cprof: not unwound]". */
#define CAPTURE_SLOTS 256
#define CAPTURE_WORDS (CAPTURE_SLOTS / 64)
/* Bit set: taken. Written twice a sample: lines of its own (an aligned
 * struct's size is a multiple of its alignment). */
static struct CPROF_OWN_LINE {
	_Atomic uint64_t mask[CAPTURE_WORDS];
} capture_free;
static uintptr_t *capture_pool;
static size_t capture_slot_words;

CPROF_SIGSAFE uintptr_t *cprof_capture_take(void)
{
	if (CPROF_UNLIKELY(!capture_pool))
		return NULL;
	for (int w = 0; w < CAPTURE_WORDS; w++) {
		uint64_t bits = atomic_load_explicit(&capture_free.mask[w], memory_order_relaxed);
		while (~bits) {
			int bit = __builtin_ctzll(~bits);
			if (atomic_compare_exchange_weak_explicit(&capture_free.mask[w], &bits,
								  bits | (1ull << bit),
								  memory_order_acquire,
								  memory_order_relaxed))
				return capture_pool + (size_t)(w * 64 + bit) * capture_slot_words;
		}
	}
	return NULL;
}

CPROF_SIGSAFE void cprof_capture_give(uintptr_t *pcs)
{
	if (!pcs)
		return;
	size_t i = (size_t)(pcs - capture_pool) / capture_slot_words;
	atomic_fetch_and_explicit(&capture_free.mask[i / 64], ~(1ull << (i % 64)),
				  memory_order_release);
}

static inline int in_self(unw_word_t ip)
{
	return ip >= cprof_self_text_start && ip < cprof_self_text_end;
}

/* Copies frames from the cursor into pcs[] starting at n. `exact` says
 * whether the cursor's current IP is exact (leaf of a signal) or a return
 * address. `skip_self`: libcprof's own frames at the top are not the
 * program's (a wrapper's unwind starts inside libcprof). */
static int collect(unw_cursor_t *cursor, uintptr_t *pcs, int n, int max, int exact,
		   int skip_self)
{
	while (n < max) {
		unw_word_t ip;
		if (unw_get_reg(cursor, UNW_REG_IP, &ip) < 0 || ip == 0)
			return n;
		if (skip_self && in_self(ip)) {
			/* still in libcprof: not the program's */
		} else {
			skip_self = 0;
			/* libcprof's own callers (a wrapper between the program
			 * and the code it called) are not the program's frames;
			 * a leaf in libcprof is real cost and stays. */
			if (n == 0 || !in_self(ip))
				pcs[n++] = exact ? (uintptr_t)ip : (uintptr_t)ip - 1;
		}
		/* Past a signal frame the next IP is an interrupted PC. */
		exact = unw_is_signal_frame(cursor) > 0;
		unwind_tls.lookup_pc = exact ? (uintptr_t)ip : (uintptr_t)ip - 1;
		if (unw_step(cursor) <= 0)
			return n;
	}
	/* Deeper than the cap: say so in the root frame. */
	if (max > 1)
		pcs[max - 1] = CPROF_FRAME_TRUNCATED;
	return max;
}

/* libunwind's own memory check (replaced above) used write() and read(),
 * both cancellation points: a cancel pending on the thread (requested
 * after a call that is not a cancellation point, or landing while the
 * program's own code ran when the signal came) would be acted on inside our unwind,
 * in a signal handler or a wrapper, where the program never asked for it.
 * So cancellation is held off around every unwind; glibc's
 * pthread_setcancelstate is an atomic update with no system call and no
 * lock. */
static int cancel_off(void)
{
	int state;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
	return state;
}

static void cancel_restore(int state)
{
	pthread_setcancelstate(state, NULL);
}

/* Kept out of line, so that the room check in the caller runs before any
 * of this frame (libunwind's cursor) is on the stack. */
__attribute__((noinline)) static int unwind_signal_walk(ucontext_t *uc, uintptr_t *pcs, int max)
{
	unw_cursor_t cursor;
	if (unw_init_local2(&cursor, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) < 0) {
		pcs[0] = unwind_tls.lookup_pc;
		return 1;
	}
	return collect(&cursor, pcs, 0, max, 1, 0);
}

/* The n addresses of walk.c's walk (pcs[from] on: return addresses) as
 * recorded: libcprof's own frames dropped wherever they are, as collect()
 * drops them, return addresses less one. The depth, pcs[0 .. from)
 * included as they are. */
CPROF_SIGSAFE static int drop_own_frames(uintptr_t *pcs, int from, int n)
{
	int depth = from;
	for (int i = from; i < n; i++)
		if (!in_self(pcs[i]))
			pcs[depth++] = pcs[i] - 1;
	return depth;
}

/* walk.c's walk of a signal's stack, as collect() records one: the
 * interrupted PC (a leaf in libcprof is real cost, and stays), then the
 * return addresses, the root marked when the stack goes on past max.
 * -1: libunwind must walk it, as it must when dropping libcprof's frames
 * left room that the walk did not fill. */
CPROF_SIGSAFE static int signal_walked(uintptr_t *pcs, int n, int max, bool complete)
{
	if (n < 0)
		return -1;
	int depth = drop_own_frames(pcs, 1, n);
	if (!complete && n == max) {
		if (depth < max)
			return -1;
		if (max > 1)
			pcs[max - 1] = CPROF_FRAME_TRUNCATED;
	}
	return depth;
}

/* libunwind's walk of a signal's stack, with what it needs around it. */
CPROF_SIGSAFE static int unwind_signal_libunwind(ucontext_t *uc, uintptr_t *pcs, int max)
{
	uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	int cancel_state = cancel_off();
	unwind_tls.lookup_pc = pc;
	unwind_tls.from_signal++;
	unwind_tls.unwinding++;
	int depth = unwind_signal_walk(uc, pcs, max);
	unwind_leave(&unwind_tls);
	unwind_tls.from_signal--;
	cancel_restore(cancel_state);
	return depth;
}

CPROF_SIGSAFE int cprof_unwind_signal(void *ucontext, uintptr_t *pcs, int max)
{
	ucontext_t *uc = ucontext;

	if (max <= 0)
		return 0;
	uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	if (!stack_room((uintptr_t)__builtin_frame_address(0), &uc->uc_stack,
			CPROF_UNWIND_ROOM_SIGNAL)) {
		pcs[0] = pc;
		if (max < 2)
			return 1;
		pcs[1] = CPROF_FRAME_NOROOM;
		return 2;
	}
	/* walk.c's walk first: no libunwind, no cancellation to hold off. */
	bool complete;
	int depth = signal_walked(pcs, cprof_walk_signal(uc, pcs, max, &complete), max, complete);
#ifdef CPROF_WALK_CHECK
	if (max <= 256) {
		uintptr_t lib[256];
		cprof_walk_check(1, pcs, depth, lib, unwind_signal_libunwind(uc, lib, max));
	}
#endif
	if (depth >= 0)
		return depth;
	return unwind_signal_libunwind(uc, pcs, max);
}

/* ---- another thread's stack (threads profile) --------------------------- */

void cprof_unwind_stack_bounds(uintptr_t *lo, uintptr_t *hi)
{
	*lo = unwind_tls.stack_lo;
	*hi = unwind_tls.stack_hi;
}

int cprof_unwind_remote(const uintptr_t regs[8], uintptr_t stack_lo, uintptr_t stack_hi,
			const void *copy, size_t copy_len, uintptr_t *pcs, int max)
{
	if (max <= 0 || regs[1] <= stack_lo || regs[1] >= stack_hi)
		return 0;
	ucontext_t uc;
	memset(&uc, 0, sizeof uc);
	static const int order[8] = { REG_RIP, REG_RSP, REG_RBP, REG_RBX,
				      REG_R12, REG_R13, REG_R14, REG_R15 };
	for (int i = 0; i < 8; i++)
		uc.uc_mcontext.gregs[order[i]] = (greg_t)regs[i];
	unwind_thread_t *t = &unwind_tls;
	t->remote_lo = stack_lo;
	t->remote_hi = stack_hi;
	t->copy_at = regs[1];
	t->copy_len = copy_len;
	t->copy = copy;
	t->unwinding++;
	unw_cursor_t cursor;
	int depth = 0;
	/* The first IP is inside a wrapper (libcprof's): skipped. */
	if (unw_init_local(&cursor, (unw_context_t *)&uc) >= 0)
		depth = collect(&cursor, pcs, 0, max, 0, 1);
	unwind_leave(t);
	t->remote_hi = 0;
	t->copy = NULL;
	return depth;
}

/* ---- wrapper unwinds: the cached fast trace, for a bounded number of
 * threads ---------------------------------------------------------------- */

/* unw_backtrace, libunwind's fast trace: it remembers each return
 * address's frame layout in a per-thread table and then walks with no
 * lock and no system call, where an unw_step loop parses the unwind
 * tables again at every frame (no cache, see cprof_unwind_init), and
 * libunwind blocks and unblocks signals around each lookup (9
 * sigprocmask calls a frame): 0.10 us against 139 us for a 14-frame stack
 * here, which is what makes heap sampling at the default rate cheap. Its table costs 256 KiB a thread, mmap'd and
 * written at the thread's first trace (1 MiB once a thread has traced
 * more than 8,192 distinct return addresses), freed at thread exit. So
 * that memory follows the settings and not the program's thread count, at
 * most CPROF_UNWIND_CACHES threads at once hold one (counted here; a
 * thread gives its turn back at exit, cprof_unwind_thread_exit); the
 * others walk with unw_step, uncached. Only threads whose exit libcprof
 * sees (made through its pthread_create, and the main thread) take a
 * turn. Not for signal handlers: the first trace on a thread sets up its
 * table (pthread_once, pthread_setspecific, mmap).
 *
 * A thread's first CPROF_UNWIND_UNCACHED_FIRST unwinds walk uncached all
 * the same: an uncached walk costs 4.5 us (8 frames; no mask calls, see
 * sigmask.c), making and touching the table about 100 us and 256 KiB, so
 * a thread that unwinds a few times (a join, a sleep, a short process's
 * few heap samples) never pays for one, and one that unwinds often pays
 * 16 walks (72 us) once. */
static atomic_uint trace_threads;

CPROF_SIGSAFE static bool trace_cached(void)
{
	unwind_thread_t *t = &unwind_tls;
	if (CPROF_LIKELY(t->trace == TRACE_CACHED))
		return true;
	if (t->trace == TRACE_EXITED || !t->stack_lo)
		return false;
	if (t->uncached_walks < CPROF_UNWIND_UNCACHED_FIRST) {
		t->uncached_walks++;
		return false;
	}
	unsigned limit = cprof_config.unwind_caches;
	if (atomic_load_explicit(&trace_threads, memory_order_relaxed) >= limit)
		return false;
	if (atomic_fetch_add_explicit(&trace_threads, 1, memory_order_relaxed) < limit) {
		t->trace = TRACE_CACHED;
		return true;
	}
	atomic_fetch_sub_explicit(&trace_threads, 1, memory_order_relaxed);
	t->trace = TRACE_UNCACHED;
	return false;
}

void cprof_unwind_thread_exit(void)
{
	if (unwind_tls.trace == TRACE_CACHED)
		atomic_fetch_sub_explicit(&trace_threads, 1, memory_order_relaxed);
	unwind_tls.trace = TRACE_EXITED;
}

void cprof_unwind_atfork_child(void)
{
	/* The only thread left is this one: its turn, if it had one. */
	atomic_store(&trace_threads, unwind_tls.trace == TRACE_CACHED ? 1 : 0);
}

unsigned cprof_unwind_cached_threads(void)
{
	return atomic_load(&trace_threads);
}

/* The uncached walk: a cursor and a context (2 KiB) of its own frame. */
__attribute__((noinline)) static int unwind_here_uncached(uintptr_t *pcs, int max)
{
	unw_context_t context;
	unw_cursor_t cursor;
	if (unw_getcontext(&context) < 0 || unw_init_local(&cursor, &context) < 0)
		return 0;
	/* The first IP is this function's own, exact, and libcprof's. */
	return collect(&cursor, pcs, 0, max, 0, 1);
}

/* The n return addresses unw_backtrace gave, as the program's frames. */
CPROF_SIGSAFE static int trace_finish(uintptr_t *pcs, int n, int max)
{
	/* Without libcprof's own frames: the wrapper and what it called, and
	 * a wrapper of libcprof's between the program and the code it called
	 * (pthread_create's, when glibc's allocates). */
	int depth = drop_own_frames(pcs, 0, n);
	/* As deep as the buffer: there may be more. Say so in the root. */
	if (n == max && depth > 1)
		pcs[depth - 1] = CPROF_FRAME_TRUNCATED;
	return depth;
}

static int unwind_here_walk(uintptr_t *pcs, int max)
{
	if (!trace_cached())
		return unwind_here_uncached(pcs, max);
	return trace_finish(pcs, unw_backtrace((void **)pcs, max), max);
}

/* The two halves of cprof_unwind_fast (unwind_here.h), out of line: they
 * return before the walk, so their frames are not walked. */
CPROF_SIGSAFE int cprof_unwind_fast_begin(uintptr_t sp)
{
	if (CPROF_UNLIKELY(unwind_tls.trace != TRACE_CACHED) ||
	    !stack_room(sp, NULL, CPROF_UNWIND_ROOM_WRAPPER))
		return -1;
	int cancel_state = cancel_off();
	unwind_tls.unwinding++;
	return cancel_state;
}

CPROF_SIGSAFE int cprof_unwind_walked(uintptr_t *pcs, int n, int max)
{
	return trace_finish(pcs, n, max);
}

CPROF_SIGSAFE int cprof_unwind_fast_end(uintptr_t *pcs, int n, int max, int cancel_state)
{
	int depth = trace_finish(pcs, n, max);
	unwind_leave(&unwind_tls);
	cancel_restore(cancel_state);
	return depth;
}

CPROF_SIGSAFE int cprof_unwind_here(uintptr_t *pcs, int max)
{
	if (max <= 0)
		return 0;
	if (!stack_room((uintptr_t)__builtin_frame_address(0), NULL, CPROF_UNWIND_ROOM_WRAPPER)) {
		pcs[0] = CPROF_FRAME_NOROOM;
		return 1;
	}
	int cancel_state = cancel_off();
	unwind_tls.unwinding++;
	int depth = unwind_here_walk(pcs, max);
	unwind_leave(&unwind_tls);
	cancel_restore(cancel_state);
	return depth;
}

typedef struct text_range_query {
	uintptr_t base;
	uintptr_t *start, *end;
} text_range_query_t;

/* The executable segment of the object loaded at q->base. */
static int find_text(struct dl_phdr_info *info, size_t size, void *arg)
{
	text_range_query_t *q = arg;
	(void)size;
	if (info->dlpi_addr != q->base)
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			*q->start = info->dlpi_addr + ph->p_vaddr;
			*q->end = *q->start + ph->p_memsz;
			return 1;
		}
	}
	return 0;
}

void cprof_unwind_flush(void)
{
	cprof_walk_flush();
	unw_flush_cache(unw_local_addr_space, 0, 0);
	atomic_fetch_add(&pages_generation, 1);
}

void cprof_unwind_init(void)
{
	take_over_validation();
	Dl_info info;
	if (dladdr((void *)cprof_unwind_init, &info) && info.dli_fbase) {
		text_range_query_t self = { (uintptr_t)info.dli_fbase, &cprof_self_text_start,
					    &cprof_self_text_end };
		dl_iterate_phdr(find_text, &self);
	}

	/* No libunwind cache of unwind rules: Debian's libunwind is built
	 * without the per-thread one, and unw_set_caching_policy silently
	 * turns UNW_CACHE_PER_THREAD into the global cache, whose lock is
	 * held across dl_iterate_phdr. A wrapper unwinding on one thread
	 * (heap, block) then holds it while waiting for the loader lock,
	 * which a thread in dlclose holds while our CPU handler on it waits
	 * for the cache lock: a deadlock (tests/progs/stress hung). Without
	 * the cache nothing is held: a signal-time step parses the unwind
	 * tables again (17 us instead of 9 us for 10 frames), and the
	 * wrappers' unw_backtrace keeps its own per-thread cache. */
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_NONE);
	unw_set_cache_size(unw_local_addr_space, 1024, 0);

	/* libunwind's code, to know its dl_iterate_phdr callback. */
	if (dladdr((void *)unw_step, &info) && info.dli_fbase) {
		text_range_query_t unwinder = { (uintptr_t)info.dli_fbase, &unwinder_text_start,
						&unwinder_text_end };
		dl_iterate_phdr(find_text, &unwinder);
	}

	/* The capture buffers, for every thread at once. */
	capture_slot_words = (size_t)cprof_config.max_depth + 2;
	size_t bytes = (CAPTURE_SLOTS * capture_slot_words * sizeof(uintptr_t) + 4095) &
		       ~(size_t)4095;
	void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (map != MAP_FAILED)
		capture_pool = map;
	else
		cprof_log("cannot map the capture buffers (%lu bytes); stacks are not unwound",
			  (unsigned long)bytes);

	/* One uncached and one signal unwind now, so libunwind sets up its
	 * state before the first signal rather than inside it. Not the
	 * cached trace: its table is made by a thread's first cached unwind
	 * (trace_cached), never in a handler. */
	uintptr_t pcs[8];
	unwind_tls.unwinding++;
	(void)unwind_here_uncached(pcs, 8);
	unwind_leave(&unwind_tls);
	ucontext_t uc;
	if (getcontext(&uc) == 0)
		(void)unwind_signal_libunwind(&uc, pcs, 8);
}
