/* Lock order against the loader. Threads A lock and unlock the program's
 * mutex M in a loop, contending with each other so that the mutex profile
 * records at unlock, and malloc while they hold M (the heap profile
 * records there). The main thread, B, takes the loader's locks while it
 * waits for M, two ways: it dlopens and dlcloses a library whose
 * constructor locks M (plugin_ctorlock.c: the loader's lock is held while
 * constructors run), and it walks the loaded objects with dl_iterate_phdr
 * with a callback that locks M (the loader's list lock is held while the
 * callback runs). Nothing here is wrong without a profiler: A never enters
 * the loader. A profiler whose unwind in A's wrappers takes a loader lock
 * deadlocks the two. Prints "rounds N locks yes" and exits 0.
 * Usage: loader_order LIBRARY [rounds, default 300] */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static volatile int done;
static volatile uint64_t sink;
static uint64_t locks[2];

__attribute__((noinline)) static void hold_and_allocate(int self)
{
	pthread_mutex_lock(&m);
	for (int i = 0; i < 8; i++) {
		char *p = malloc(64 + i * 16);
		p[0] = (char)i;
		sink += (uint64_t)p[0];
		free(p);
	}
	for (int i = 0; i < 2000; i++)
		sink += (uint64_t)i * 7;
	locks[self]++;
	pthread_mutex_unlock(&m);
}

static void *locker(void *arg)
{
	int self = (int)(intptr_t)arg;
	while (!done)
		hold_and_allocate(self);
	return NULL;
}

static int lock_per_object(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	pthread_mutex_lock(&m);
	*(uint64_t *)data += info->dlpi_phnum;
	pthread_mutex_unlock(&m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: loader_order LIBRARY [rounds]\n");
		return 2;
	}
	int opens = argc > 2 ? atoi(argv[2]) : 300;
	char addr[32];
	snprintf(addr, sizeof addr, "%lx", (unsigned long)(uintptr_t)&m);
	setenv("CTORLOCK_MUTEX", addr, 1);
	pthread_t a[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&a[i], NULL, locker, (void *)(intptr_t)i);
	for (int i = 0; i < opens; i++) {
		void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			fprintf(stderr, "dlopen: %s\n", dlerror());
			return 1;
		}
		dlclose(h);
		uint64_t phdrs = 0;
		dl_iterate_phdr(lock_per_object, &phdrs);
		sink += phdrs;
	}
	done = 1;
	for (int i = 0; i < 2; i++)
		pthread_join(a[i], NULL);
	printf("rounds %d locks %s\n", opens, locks[0] + locks[1] > 0 ? "yes" : "no");
	return 0;
}
