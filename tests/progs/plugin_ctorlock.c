/* A library whose constructor takes a mutex of the program that loads it,
 * as C++ static registries do (a registrar that locks the program's
 * registry). The program passes the mutex's address in CTORLOCK_MUTEX
 * (a hex pointer), since test programs export no symbols. Built as
 * build/progs/libplugin_ctorlock.so; used by dlopen_ctorlock. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

uint64_t ctorlock_registered;

__attribute__((constructor)) static void ctorlock_register(void)
{
	const char *addr = getenv("CTORLOCK_MUTEX");
	if (!addr)
		return;
	pthread_mutex_t *m = (pthread_mutex_t *)(uintptr_t)strtoull(addr, NULL, 16);
	pthread_mutex_lock(m);
	ctorlock_registered++;
	pthread_mutex_unlock(m);
}
