/* Two threads allocate through every entry of the malloc family (malloc,
 * calloc, realloc, reallocarray, posix_memalign, aligned_alloc, memalign),
 * sizes 16 B .. 64 KiB, keep a window of up to 64 blocks, and free
 * everything before they end. Each counts the bytes it asked for (a
 * realloc counts its new size, as the profile does), and main prints the
 * total on stderr: "allocated_bytes <n> calls <n>".
 *
 *   usage: heap_count [MIB_PER_THREAD]   (default 1024)
 */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define WINDOW 64

typedef struct worker {
	uint64_t rng;
	uint64_t target, bytes, calls;
} worker_t;

static uint64_t next_random(worker_t *w)
{
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 2685821657736338717ULL;
}

static size_t random_size(worker_t *w)
{
	unsigned shift = 4 + (unsigned)(next_random(w) % 12);
	size_t lo = (size_t)1 << shift;
	return lo + (size_t)(next_random(w) % (lo + 1));
}

/* Allocates `size` bytes (or about: what it asks for is what it counts). */
__attribute__((noinline)) static void *allocate(worker_t *w, void *old, size_t size)
{
	void *p = NULL;
	w->calls++;
	if (old) {
		w->bytes += size;
		return realloc(old, size);
	}
	switch (next_random(w) % 6) {
	case 0:
		w->bytes += size;
		return calloc(1, size);
	case 1:
		w->bytes += (size / 16 + 1) * 16;
		return reallocarray(NULL, size / 16 + 1, 16);
	case 2:
		w->bytes += size;
		return posix_memalign(&p, 64, size) == 0 ? p : NULL;
	case 3:
		size = (size + 255) & ~(size_t)255;
		w->bytes += size;
		return aligned_alloc(256, size);
	case 4:
		w->bytes += size;
		return memalign(32, size);
	default:
		w->bytes += size;
		return malloc(size);
	}
}

static void *worker_main(void *arg)
{
	worker_t *w = arg;
	void *window[WINDOW] = { 0 };
	while (w->bytes < w->target) {
		unsigned i = (unsigned)(next_random(w) % WINDOW);
		if (window[i] && next_random(w) % 4 == 0) {
			window[i] = allocate(w, window[i], random_size(w));
		} else {
			free(window[i]);
			window[i] = allocate(w, NULL, random_size(w));
		}
	}
	for (int i = 0; i < WINDOW; i++)
		free(window[i]);
	return NULL;
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
	worker_t w[2] = { { .rng = 0x9e3779b97f4a7c15ULL, .target = mib << 20 },
			  { .rng = 0xbf58476d1ce4e5b9ULL, .target = mib << 20 } };
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		if (pthread_create(&t[i], NULL, worker_main, &w[i]) != 0)
			return 1;
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	fprintf(stderr, "allocated_bytes %llu calls %llu\n",
		(unsigned long long)(w[0].bytes + w[1].bytes),
		(unsigned long long)(w[0].calls + w[1].calls));
	return 0;
}
