/* Fills the profiler's fixed tables, to show what a full table costs.
 *   hold_many   keeps LIVE blocks of 64 bytes (the live-sample table);
 *   many_sizes  ROUNDS times allocates one block of each size 16 ..
 *               16 + SIZES - 1 (distinct sizes are distinct entries of
 *               the stack table), keeps the last round's even sizes and
 *               frees the rest.
 * Prints on stderr "allocated_bytes A kept_bytes K" (the two arrays of
 * pointers included: everything the program allocates).
 *   usage: heap_many LIVE SIZES ROUNDS */
#include <stdio.h>
#include <stdlib.h>

/* Not static: the compiler must keep the allocations it cannot see used. */
void **held;
void **sized;

__attribute__((noinline)) static size_t hold_many(int live)
{
	held = calloc((size_t)live, sizeof *held);
	for (int i = 0; i < live; i++)
		held[i] = malloc(64);
	return (size_t)live * (64 + sizeof *held);
}

__attribute__((noinline)) static size_t many_sizes(int sizes, int rounds, size_t *kept)
{
	size_t total = (size_t)sizes * sizeof *sized;
	sized = calloc((size_t)sizes, sizeof *sized);
	*kept += total;
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < sizes; i++) {
			sized[i] = malloc(16 + (size_t)i);
			total += 16 + (size_t)i;
		}
		for (int i = 0; i < sizes; i++) {
			if (r == rounds - 1 && i % 2 == 0) {
				*kept += 16 + (size_t)i;
				continue;
			}
			free(sized[i]);
		}
	}
	return total;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	int live = atoi(argv[1]), sizes = atoi(argv[2]), rounds = atoi(argv[3]);
	size_t kept = hold_many(live);
	size_t total = kept;
	total += many_sizes(sizes, rounds, &kept);
	fprintf(stderr, "allocated_bytes %zu kept_bytes %zu\n", total, kept);
	return 0;
}
