/* lines_qsort.c — CPU time split between the program's own code and
 * libc's: repeatedly sorts an array with qsort (libc's msort_with_tmp, a
 * static function named only in libc's separate debug symbols) through a
 * comparison function of its own, for the tests of CPROF_LINES.
 * Usage: lines_qsort [ROUNDS]   (default 300, about 0.3 s) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define N 4096

static uint32_t v[N];

__attribute__((noinline)) static int compare_keys(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	/* A little work of its own, so its share is clear of noise. */
	for (int i = 0; i < 8; i++) {
		x = x * 2654435761u + 1;
		y = y * 2654435761u + 1;
	}
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 300;
	uint64_t s = 88172645463325252ULL, sum = 0;
	for (long r = 0; r < rounds; r++) {
		for (int i = 0; i < N; i++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			v[i] = (uint32_t)s;
		}
		qsort(v, N, sizeof v[0], compare_keys);
		sum += v[0] ^ v[N - 1];
	}
	printf("%llu\n", (unsigned long long)sum);
	return 0;
}
