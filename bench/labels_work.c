/* labels_work.c — the cost of a label push+pop, for bench/sections/labels.sh.
 *
 *   labels_work [PAIRS]   PAIRS (default 20 000 000) push+pop pairs of two
 *                         labels (tenant alternating between two values,
 *                         op=checkout), in 15 blocks; prints the best
 *                         block's ns_per_pair. Without the shim the calls
 *                         are the header's no-ops: the unprofiled row.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cprof.h"

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long pairs = argc > 1 ? atol(argv[1]) : 20000000;
	const int blocks = 15;
	long per = pairs / blocks;
	const char *tenants[2] = { "acme", "globex" };
	double best = 1e30;
	unsigned long check = 0;
	for (int b = 0; b < blocks; b++) {
		int64_t t0 = now_ns();
		for (long i = 0; i < per; i++) {
			cprof_labels_t old =
				cprof_labels_push("tenant", tenants[i & 1], "op", "checkout", NULL);
			check += old;
			cprof_labels_pop(old);
		}
		double ns = (double)(now_ns() - t0) / (double)per;
		if (ns < best)
			best = ns;
	}
	printf("ns_per_pair=%.2f checksum=%lu\n", best, check);
	return 0;
}
