/* churn_work.c — thread churn, the workload of bench/sections/churn.sh.
 *
 *   churn_work [THREADS] [AT_ONCE] [ADDS]
 *
 * Creates THREADS threads (default 3000), AT_ONCE (10) at a time, and
 * joins each batch before the next; each thread mallocs a block, takes a
 * mutex, does ADDS (20000) additions into it, and frees it: a server that
 * makes a thread per request, or a test runner's workers. What a profiler
 * pays per thread (timers, caches mapped and unmapped) shows here and not
 * in a loop of long-lived threads. Prints "checksum=N", which depends
 * only on the arguments. Built -O2 -g as users build.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t total;
static long adds = 20000;

static void *worker(void *arg)
{
	uintptr_t id = (uintptr_t)arg;
	volatile uint64_t *block = malloc(64 + id % 512);
	if (!block)
		abort();
	*block = 0;
	for (long i = 0; i < adds; i++)
		*block += (uint64_t)i ^ id;
	pthread_mutex_lock(&lock);
	total += *block;
	pthread_mutex_unlock(&lock);
	free((void *)block);
	return NULL;
}

int main(int argc, char **argv)
{
	long threads = argc > 1 ? atol(argv[1]) : 3000;
	long at_once = argc > 2 ? atol(argv[2]) : 10;
	if (argc > 3)
		adds = atol(argv[3]);
	if (threads < 1 || at_once < 1 || at_once > 1000 || adds < 0) {
		fprintf(stderr, "usage: churn_work [THREADS] [AT_ONCE 1..1000] [ADDS]\n");
		return 2;
	}
	pthread_t batch[1000];
	for (long made = 0; made < threads;) {
		long n = threads - made < at_once ? threads - made : at_once;
		for (long i = 0; i < n; i++)
			if (pthread_create(&batch[i], NULL, worker, (void *)(uintptr_t)(made + i)) != 0) {
				perror("pthread_create");
				return 1;
			}
		for (long i = 0; i < n; i++)
			pthread_join(batch[i], NULL);
		made += n;
	}
	printf("checksum=%llu\n", (unsigned long long)total);
	return 0;
}
