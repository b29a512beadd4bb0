/* real.c — the next definitions of the libc functions libcprof interposes,
 * found once with dlsym(RTLD_NEXT) and called as real_<name>.
 *
 * Resolved in the constructor, before any thread exists; a wrapper that
 * runs earlier (another library's constructor calling pthread_create)
 * resolves them itself through cprof_real_init, which is idempotent.
 */
#include "cprof_internal.h"

#include <dlfcn.h>
#include <signal.h>

cprof_pthread_create_fn real_pthread_create;
int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);
int (*real_dlclose)(void *);
sighandler_t (*real_signal)(int, sighandler_t);

static void *next_symbol(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (!p)
		cprof_log("cannot find the next definition of %s", name);
	return p;
}

void cprof_real_init(void)
{
	if (real_sigaction)
		return;
	real_pthread_create = (cprof_pthread_create_fn)next_symbol("pthread_create");
	real_dlclose = (int (*)(void *))next_symbol("dlclose");
	real_signal = (sighandler_t(*)(int, sighandler_t))next_symbol("signal");
	real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))
		next_symbol("sigaction");
}
