/* real.c — the next definitions of the libc functions libcprof interposes
 * or calls past its own exports, all found in one place, once.
 *
 * Every pointer to a next definition is registered with a descriptor
 * {name, version, slot} in the "cprof_next" section (CPROF_NEXT_SLOT:
 * this file's real_* pointers, unwind.c's dl_iterate_phdr, each
 * CPROF_NEXT of the lock and blocking-call wrappers), and
 * cprof_real_init walks __start_/__stop_cprof_next and sets them all in
 * the constructor, before any thread exists: the malloc family first
 * (heap.c serves the allocations dlsym makes while it resolves them). So
 * no wrapper runs the loader (dlsym locks and allocates) later: not in a
 * signal handler whose first write() or sigsuspend() that is, and not
 * while the program holds a lock. A wrapper that runs before the
 * constructor (another library's constructor) still works: its pointer
 * starts at a resolver of its own (wait.h), or the wrapper calls
 * cprof_real_init, which is idempotent.
 */
#include "cprof_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>

cprof_pthread_create_fn real_pthread_create;
int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);
int (*real_dlclose)(void *);
sighandler_t (*real_signal)(int, sighandler_t);

CPROF_NEXT_SLOT(pthread_create, NULL, real_pthread_create);
CPROF_NEXT_SLOT(dlclose, NULL, real_dlclose);
CPROF_NEXT_SLOT(signal, NULL, real_signal);
CPROF_NEXT_SLOT(sigaction, NULL, real_sigaction);

extern cprof_next_desc_t __start_cprof_next[] __attribute__((visibility("hidden")));
extern cprof_next_desc_t __stop_cprof_next[] __attribute__((visibility("hidden")));

static long next_missing(void)
{
	errno = ENOSYS;
	return -1;
}

void *cprof_wait_next(const char *name, const char *version)
{
	/* dlsym may allocate or lock: none of that is the program's. */
	cprof_thread.busy++;
	void *p = version ? dlvsym(RTLD_NEXT, name, version) : NULL;
	if (!p)
		p = dlsym(RTLD_NEXT, name);
	cprof_thread.busy--;
	if (!p) {
		int cancel_state; /* cprof_log writes: not a cancellation point here */
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
		cprof_log("cannot find the next definition of %s; it fails with ENOSYS", name);
		pthread_setcancelstate(cancel_state, NULL);
		p = (void *)next_missing;
	}
	return p;
}

static atomic_int resolved;

void cprof_real_init(void)
{
	if (atomic_load_explicit(&resolved, memory_order_acquire))
		return;
	int saved_errno = errno;
	cprof_heap_resolve();
	for (cprof_next_desc_t *d = __start_cprof_next; d < __stop_cprof_next; d++)
		__atomic_store_n(d->slot, cprof_wait_next(d->name, d->version), __ATOMIC_RELEASE);
	atomic_store_explicit(&resolved, 1, memory_order_release);
	errno = saved_errno;
}
