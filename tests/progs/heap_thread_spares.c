/* heap_thread_spares.c — many short threads, one after another, each
 * mallocs BLOCKS blocks of 8 KiB (at most 64), frees them and ends. A
 * sampled block that is freed may be kept by its thread for the thread's
 * next sample (preload/heap.c, spare blocks): what a thread keeps must go
 * back to the allocator when it ends. Prints "in_use_bytes N" (mallinfo2's
 * uordblks after the last thread) on stderr.
 * Usage: heap_thread_spares THREADS BLOCKS */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long blocks;

/* BLOCKS blocks live at once, then all freed: the thread's set fills. */
static void *worker(void *arg)
{
	(void)arg;
	char *held[64];
	long n = blocks < 64 ? blocks : 64;
	for (long i = 0; i < n; i++) {
		held[i] = malloc(8192);
		if (!held[i])
			abort();
		memset(held[i], (int)i, 64);
	}
	for (long i = 0; i < n; i++)
		free(held[i]);
	return NULL;
}

int main(int argc, char **argv)
{
	long threads = argc > 1 ? atol(argv[1]) : 500;
	blocks = argc > 2 ? atol(argv[2]) : 16;
	for (long t = 0; t < threads; t++) {
		pthread_t th;
		if (pthread_create(&th, NULL, worker, NULL) != 0 || pthread_join(th, NULL) != 0)
			return 1;
	}
	struct mallinfo2 mi = mallinfo2();
	fprintf(stderr, "in_use_bytes %zu\n", mi.uordblks);
	return 0;
}
