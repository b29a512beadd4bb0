/* Two threads: work_heavy does 3 units of CPU work for every unit that
 * work_light does. Prints the process CPU time from getrusage (ns) so a
 * test can compare the profile's total against the truth. Output is
 * deterministic apart from the rusage line on stderr.
 * Usage: cpu_split [units]   (default 100, about 1 s of CPU in total) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static volatile uint64_t sink;

static uint64_t spin(uint64_t n)
{
	uint64_t x = 88172645463325252ULL;
	for (uint64_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	return x;
}

__attribute__((noinline)) static uint64_t work_heavy(long units)
{
	uint64_t acc = 0;
	for (long i = 0; i < units * 3; i++)
		acc += spin(2000000);
	return acc;
}

__attribute__((noinline)) static uint64_t work_light(long units)
{
	uint64_t acc = 0;
	for (long i = 0; i < units; i++)
		acc += spin(2000000);
	return acc;
}

static long units;

static void *heavy_thread(void *arg)
{
	(void)arg;
	sink += work_heavy(units);
	return NULL;
}

static void *light_thread(void *arg)
{
	(void)arg;
	sink += work_light(units);
	return NULL;
}

int main(int argc, char **argv)
{
	units = argc > 1 ? atol(argv[1]) : 100;
	pthread_t a, b;
	pthread_create(&a, NULL, heavy_thread, NULL);
	pthread_create(&b, NULL, light_thread, NULL);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	long long cpu_ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
			   (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
	fprintf(stderr, "rusage_cpu_ns %lld\n", cpu_ns);
	printf("done %d\n", (int)(sink & 1) >= 0);
	return 0;
}
