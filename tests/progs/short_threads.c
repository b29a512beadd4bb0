/* Short threads, one after another: each burns BURN_NS of its own CPU time
 * (short_work) and ends. Prints the threads' summed CPU time as
 * "truth_ns N" on stderr: what a CPU profile must add up to. A thread of a
 * few milliseconds ends between two scheduler ticks, where the periods of
 * its CPU timer that expired after the last tick are never signalled.
 * Usage: short_threads COUNT BURN_NS */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long burn_ns;
static volatile uint64_t sink;
static int64_t total;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((noinline)) static void *short_work(void *arg)
{
	int64_t start = thread_cpu_ns(), now;
	uint64_t x = 1;
	do {
		for (int i = 0; i < 1000; i++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		sink = x;
		now = thread_cpu_ns();
	} while (now - start < burn_ns);
	/* The thread's CPU clock, which began at zero when it was made: its
	 * start-up path too, which is its CPU time (a profile counts it);
	 * what it burns after this is its exit path. */
	pthread_mutex_lock(&lock);
	total += thread_cpu_ns();
	pthread_mutex_unlock(&lock);
	return arg;
}

int main(int argc, char **argv)
{
	int count = argc > 1 ? atoi(argv[1]) : 100;
	burn_ns = argc > 2 ? atol(argv[2]) : 10000000;
	for (int i = 0; i < count; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, short_work, NULL) != 0)
			return 1;
		pthread_join(t, NULL);
	}
	/* And the main thread's own, making and joining them: a profile
	 * counts every thread of the program. */
	total += thread_cpu_ns();
	fprintf(stderr, "truth_ns %lld\n", (long long)total);
	printf("threads %d\n", count);
	return 0;
}
