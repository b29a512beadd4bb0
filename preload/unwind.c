/* unwind.c — stack capture with libunwind, the one way every profile kind
 * gets its stacks.
 *
 * CPROF_SIGSAFE: both capture functions run in the CPU timer's handler or
 * in wrappers. libunwind's local unwinder is async-signal-safe when its
 * cache is per thread: the global cache takes a lock (with signals blocked,
 * two sigprocmask calls per frame), the per-thread one takes none. Its
 * memory comes from mmap, never malloc. What remains is dl_iterate_phdr,
 * which it calls to find an address's unwind tables and which takes the
 * loader's lock: a signal that lands while its thread holds that lock
 * (inside dlopen, dlclose, or dl_iterate_phdr itself, as C++ exceptions
 * do) would have the handler walk a list in mid-change, or wait on a lock.
 * So libcprof exports its own dl_iterate_phdr: for everyone else it is the
 * real one; on a thread that is unwinding from a signal it answers with the
 * one object that holds the address being looked up, found with glibc's
 * lock-free, async-signal-safe _dl_find_object, and takes no lock at all.
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
#include <string.h>
#include <ucontext.h>

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

CPROF_SIGSAFE int cprof_unwind_signal(void *ucontext, uintptr_t *pcs, int max)
{
	unw_cursor_t cursor;
	ucontext_t *uc = ucontext;

	if (max <= 0)
		return 0;
	signal_lookup_pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	signal_unwinding = 1;
	int depth = 1;
	if (unw_init_local2(&cursor, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) < 0)
		pcs[0] = signal_lookup_pc;
	else
		depth = collect(&cursor, pcs, 0, max, 1);
	signal_unwinding = 0;
	return depth;
}

CPROF_SIGSAFE int cprof_unwind_here(uintptr_t *pcs, int max)
{
	unw_context_t context;
	unw_cursor_t cursor;
	unw_word_t ip;

	if (max <= 0 || unw_getcontext(&context) < 0 || unw_init_local(&cursor, &context) < 0)
		return 0;
	/* Skip libcprof's own frames: the wrapper and what it called. */
	do {
		if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0)
			return 0;
		if (!in_self(ip))
			break;
	} while (unw_step(&cursor) > 0);
	if (in_self(ip))
		return 0;
	return collect(&cursor, pcs, 0, max, 0);
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
}

void cprof_unwind_init(void)
{
	Dl_info info;
	if (dladdr((void *)cprof_unwind_init, &info) && info.dli_fbase) {
		text_range_query_t self = { (uintptr_t)info.dli_fbase, &cprof_self_text_start,
					    &cprof_self_text_end };
		dl_iterate_phdr(find_text, &self);
	}

	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
	unw_set_cache_size(unw_local_addr_space, 1024, 0);

	/* One unwind of each kind now, so libunwind sets up its state and
	 * binds its symbols before the first signal rather than inside it. */
	uintptr_t pcs[8];
	(void)cprof_unwind_here(pcs, 8);
	ucontext_t uc;
	if (getcontext(&uc) == 0)
		(void)cprof_unwind_signal(&uc, pcs, 8);
}
