/* heap_arenas.c — two threads that share nothing: each mallocs and frees
 * its own blocks (16..4096 bytes, 4096 live at a time, chosen at random),
 * so glibc gives each its own malloc arena and neither ever waits for the
 * other's arena lock. A profiler that moves a block from one thread to the
 * other makes them wait (futex calls, tests/e2e/heap.sh).
 * Usage: heap_arenas [pairs per thread]   (default 400000) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WINDOW = 4096 };

static long pairs = 400000;

static void *worker(void *arg)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(uintptr_t)arg;
	void **window = calloc(WINDOW, sizeof *window);
	uint64_t sum = 0;
	for (long n = 0; n < pairs + WINDOW; n++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		unsigned i = (unsigned)(x >> 40) & (WINDOW - 1);
		size_t size = 16 + (size_t)(x & 4079);
		free(window[i]);
		window[i] = malloc(size);
		if (!window[i])
			return NULL;
		memset(window[i], (int)n, 16);
		sum += ((unsigned char *)window[i])[size / 2 & ~(size_t)15];
	}
	for (unsigned i = 0; i < WINDOW; i++)
		free(window[i]);
	free(window);
	return (void *)(uintptr_t)(sum | 1);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		pairs = atol(argv[1]);
	pthread_t t[2];
	for (long i = 0; i < 2; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)(i + 1)) != 0)
			return 1;
	for (int i = 0; i < 2; i++) {
		void *r;
		pthread_join(t[i], &r);
		if (!r)
			return 1;
	}
	puts("done");
	return 0;
}
