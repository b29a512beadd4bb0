/* heap_marked.c — the malloc family's contracts on blocks the heap
 * profile samples and moves to a marked address (preload/heap.c, "marked
 * blocks"): contents kept by realloc, calloc zeroed, alignments asked for
 * honoured, malloc_usable_size at least the size, and a large calloc not
 * touched (its pages stay out of the resident set). Keeps KEEP blocks of
 * KEEP_SIZE bytes from keep_blocks, frees everything else; prints one
 * line per check, the same with and without the shim.
 * Usage: heap_marked [ROUNDS]   (default 2000) */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEEP 100
#define KEEP_SIZE 1000

static long rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

__attribute__((noinline)) static void *keep_blocks(size_t n)
{
	return calloc(n, 1);
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 2000;
	unsigned bad_copy = 0, bad_zero = 0, bad_align = 0, bad_usable = 0;
	uint64_t s = 0x9e3779b97f4a7c15ULL;
	for (long r = 0; r < rounds; r++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		size_t a = 1 + (s & 2047), b = 1 + ((s >> 11) & 8191);
		unsigned char *p = malloc(a);
		memset(p, (int)(r & 255), a);
		bad_usable += malloc_usable_size(p) < a;
		unsigned char *q = realloc(p, b);
		for (size_t i = 0; i < (a < b ? a : b); i++)
			bad_copy += q[i] != (unsigned char)(r & 255);
		bad_usable += malloc_usable_size(q) < b;
		unsigned char *z = calloc(1 + (s >> 24 & 63), 1 + (s >> 30 & 63));
		for (size_t i = 0; i < (1 + (s >> 24 & 63)) * (1 + (s >> 30 & 63)); i++)
			bad_zero += z[i] != 0;
		void *al = aligned_alloc(64, 128);
		void *ma = memalign(32, 1 + (s >> 40 & 511));
		void *pm = NULL;
		if (posix_memalign(&pm, 8192, 100) != 0)
			pm = NULL;
		bad_align += ((uintptr_t)al & 63) != 0 || ((uintptr_t)ma & 31) != 0 ||
			     !pm || ((uintptr_t)pm & 8191) != 0;
		free(q);
		free(z);
		free(al);
		free(ma);
		free(pm);
	}
	/* An invalid alignment still fails as it should. */
	void *inv = NULL;
	int einval = posix_memalign(&inv, 24, 100);

	void *kept[KEEP];
	for (int i = 0; i < KEEP; i++)
		kept[i] = keep_blocks(KEEP_SIZE);

	long before = rss_kb();
	unsigned char *big = calloc(64, 1 << 20);
	long grew = rss_kb() - before;
	unsigned bad_big = 0;
	for (size_t i = 0; big && i < (64u << 20); i += 1 << 20)
		bad_big += big[i] != 0;
	free(big);

	printf("copy errors %u\nzero errors %u\nalignment errors %u\nusable-size errors %u\n",
	       bad_copy, bad_zero, bad_align, bad_usable);
	printf("posix_memalign(24) %s\n", einval ? "fails" : "succeeds");
	printf("64 MiB calloc: %s, resident set %s\n", bad_big ? "not zero" : "zero",
	       grew < 16 * 1024 ? "untouched" : "grew");
	(void)kept;
	return 0;
}
