/* Leaks exactly 64 MiB from leak_mixed, in sizes from 16 B to 64 KiB
 * (log-uniform, from a fixed PRNG, the last block sized to make the total
 * exact), after some churn in churn_and_free that is all freed again.
 * Touches no leaked byte, so the 64 MiB costs address space, not memory.
 * Prints "leaked <bytes> in <blocks> blocks" on stderr (no stdio buffer,
 * so the program itself leaves nothing else on the heap). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LEAK_BYTES (64u << 20)
#define MAX_BLOCKS 65536

static void *volatile kept[MAX_BLOCKS];
static uint64_t rng = 0x243f6a8885a308d3ULL;

static uint64_t next_random(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ULL;
}

/* 16 .. 65536 bytes, log-uniform. */
static size_t random_size(void)
{
	unsigned shift = 4 + (unsigned)(next_random() % 12);     /* 16 .. 32768 */
	size_t lo = (size_t)1 << shift;
	return lo + (size_t)(next_random() % (lo + 1));          /* lo .. 2 lo */
}

__attribute__((noinline)) static size_t leak_mixed(size_t *blocks)
{
	size_t total = 0, n = 0;
	while (total < LEAK_BYTES && n < MAX_BLOCKS) {
		size_t size = random_size();
		if (LEAK_BYTES - total < size + 16)
			size = LEAK_BYTES - total; /* the last block: exact total */
		kept[n++] = malloc(size);
		total += size;
	}
	*blocks = n;
	return total;
}

__attribute__((noinline)) static void churn_and_free(void)
{
	void *tmp[256];
	for (int round = 0; round < 64; round++) {
		for (int i = 0; i < 256; i++)
			tmp[i] = malloc(random_size());
		for (int i = 0; i < 256; i++)
			free(tmp[i]);
	}
}

int main(void)
{
	size_t blocks;
	churn_and_free();
	size_t total = leak_mixed(&blocks);
	churn_and_free();
	fprintf(stderr, "leaked %zu in %zu blocks\n", total, blocks);
	return total == LEAK_BYTES ? 0 : 1;
}
