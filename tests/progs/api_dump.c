/* Calls cprof_dump_now() from include/cprof.h between two phases, as a
 * benchmark would at the end of a phase. Links nothing of libcprof: with
 * the shim absent the call is a no-op returning -ENOSYS. Prints the result
 * on stderr (it differs with and without the shim); stdout is the same. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include "cprof.h"

static volatile uint64_t sink;

__attribute__((noinline)) static void phase_one(void)
{
	uint64_t x = 1;
	for (long i = 0; i < 200000000; i++)
		x = x * 6364136223846793005ULL + 1;
	sink = x;
}

__attribute__((noinline)) static void phase_two(void)
{
	uint64_t x = 3;
	for (long i = 0; i < 200000000; i++)
		x = x * 6364136223846793005ULL + 7;
	sink = x;
}

int main(void)
{
	phase_one();
	int rc = cprof_dump_now();
	fprintf(stderr, "cprof_dump_now=%d\n", rc);
	phase_two();
	printf("phases done\n");
	return rc == 0 || rc == -ENOSYS ? 0 : 1;
}
