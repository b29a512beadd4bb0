/* Burns CPU along thousands of distinct call stacks: walk() descends 12
 * levels choosing left() or right() by the bits of a counter, so the
 * stack at the leaf differs for each of 4096 paths. For the tests of a
 * full stack table. Usage: many_stacks [rounds] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static volatile uint64_t sink;
static uint64_t walk(unsigned path, int depth);

__attribute__((noinline)) static uint64_t left(unsigned path, int depth)
{
	return walk(path, depth) + 1;
}

__attribute__((noinline)) static uint64_t right(unsigned path, int depth)
{
	return walk(path, depth) + 2;
}

__attribute__((noinline)) static uint64_t walk(unsigned path, int depth)
{
	if (depth == 0) {
		uint64_t x = path | 1;
		for (int i = 0; i < 20000; i++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		return x;
	}
	return (path >> (depth - 1)) & 1 ? right(path, depth - 1) : left(path, depth - 1);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 10;
	for (int r = 0; r < rounds; r++)
		for (unsigned path = 0; path < 4096; path++)
			sink += walk(path, 12);
	printf("done\n");
	return 0;
}
