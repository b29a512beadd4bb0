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
 * mid-change, or wait on a lock.
 * So libcprof exports its own dl_iterate_phdr: for everyone else it is the
 * real one; on a thread that is unwinding from a signal it answers with the
 * one object that holds the address being looked up, found with glibc's
 * lock-free, async-signal-safe _dl_find_object, and takes no lock at all.
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
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* Copies frames from the cursor into pcs[] starting at n. `exact` says
 * whether the cursor's current IP is exact (leaf of a signal) or a return
 * address. */
/* Set while this thread unwinds from a signal: the address libunwind is
 * about to look up, for dl_iterate_phdr below. */
static __thread uintptr_t signal_lookup_pc __attribute__((tls_model("initial-exec")));
static __thread int signal_unwinding __attribute__((tls_model("initial-exec")));
static int (*real_dl_iterate_phdr)(int (*)(struct dl_phdr_info *, size_t, void *), void *);

CPROF_EXPORT int dl_iterate_phdr(int (*callback)(struct dl_phdr_info *, size_t, void *),
				 void *data)
{
	if (CPROF_LIKELY(!signal_unwinding)) {
		if (CPROF_UNLIKELY(!real_dl_iterate_phdr))
			real_dl_iterate_phdr = (int (*)(int (*)(struct dl_phdr_info *, size_t, void *),
							void *))dlsym(RTLD_NEXT, "dl_iterate_phdr");
		/* Too early for dlsym (a sanitizer's start-up): no objects,
		 * rather than a call through NULL. */
		return real_dl_iterate_phdr ? real_dl_iterate_phdr(callback, data) : 0;
	}
	struct dl_find_object found;
	if (_dl_find_object((void *)signal_lookup_pc, &found) != 0 || !found.dlfo_link_map)
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

static inline int in_self(unw_word_t ip)
{
	return ip >= cprof_self_text_start && ip < cprof_self_text_end;
}

static int collect(unw_cursor_t *cursor, uintptr_t *pcs, int n, int max, int exact)
{
	while (n < max) {
		unw_word_t ip;
		if (unw_get_reg(cursor, UNW_REG_IP, &ip) < 0 || ip == 0)
			return n;
		/* libcprof's own callers (a wrapper between the program and
		 * the code it called) are not the program's frames; a leaf in
		 * libcprof is real cost and stays. */
		if (n == 0 || !in_self(ip))
			pcs[n++] = exact ? (uintptr_t)ip : (uintptr_t)ip - 1;
		/* Past a signal frame the next IP is an interrupted PC. */
		exact = unw_is_signal_frame(cursor) > 0;
		signal_lookup_pc = exact ? (uintptr_t)ip : (uintptr_t)ip - 1;
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

CPROF_SIGSAFE int cprof_unwind_signal(void *ucontext, uintptr_t *pcs, int max)
{
	unw_cursor_t cursor;
	ucontext_t *uc = ucontext;

	if (max <= 0)
		return 0;
	int cancel_state = cancel_off();
	signal_lookup_pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	signal_unwinding = 1;
	int depth = 1;
	if (unw_init_local2(&cursor, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) < 0)
		pcs[0] = signal_lookup_pc;
	else
		depth = collect(&cursor, pcs, 0, max, 1);
	signal_unwinding = 0;
	cancel_restore(cancel_state);
	return depth;
}

/* unw_backtrace, libunwind's fast trace: it remembers each return
 * address's frame layout in a per-thread table (mmap'd, 256 KiB a thread
 * at first use) and then walks with no lock and no system call, where an
 * unw_step loop parses the unwind tables again at every frame (no cache,
 * see cprof_unwind_init): 0.11 us against 17 us for a 10-frame stack,
 * which is what makes heap sampling at the default rate cheap. It falls
 * back to unw_step itself on frames it cannot describe. Every address it
 * gives is a return address, stored minus one. Not for signal handlers:
 * the first use on a thread sets up its table (pthread_once,
 * pthread_setspecific). */
CPROF_SIGSAFE int cprof_unwind_here(uintptr_t *pcs, int max)
{
	if (max <= 0)
		return 0;
	int cancel_state = cancel_off();
	int n = unw_backtrace((void **)pcs, max);
	cancel_restore(cancel_state);
	/* Skip libcprof's own frames: the wrapper and what it called. */
	int skip = 0;
	while (skip < n && in_self(pcs[skip]))
		skip++;
	int depth = n - skip;
	for (int i = 0; i < depth; i++)
		pcs[i] = pcs[i + skip] - 1;
	/* As deep as the buffer: there may be more. Say so in the root. */
	if (n == max && depth > 1)
		pcs[depth - 1] = CPROF_FRAME_TRUNCATED;
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

	/* One unwind of each kind now, so libunwind sets up its state and
	 * binds its symbols before the first signal rather than inside it. */
	uintptr_t pcs[8];
	(void)cprof_unwind_here(pcs, 8);
	ucontext_t uc;
	if (getcontext(&uc) == 0)
		(void)cprof_unwind_signal(&uc, pcs, 8);
}
