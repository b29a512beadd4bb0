/* A small service for the /debug/pprof endpoint tests (tests/e2e/http.sh).
 *
 *   http_service [--closefrom]     reads commands on stdin, one a line:
 *       alloc N    allocate N MiB in 1 KiB blocks in alloc_phase, kept
 *       spin MS    burn MS ms of CPU in spin_phase
 *       contend MS two threads fight over one mutex for MS ms
 *       (EOF)      exit 0
 *     It prints "ready" when it reads, "ok CMD" after each command.
 *     --closefrom closes every descriptor above 2 first, as daemons do.
 *   http_service --busy THREADS ITERATIONS
 *     THREADS threads each run a fixed computation; prints the combined
 *     checksum (the same on every run) and exits with status 3.
 *   http_service --alloc-at-start N   as the first, after alloc N at start
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void *volatile *kept;
static size_t nkept, capkept;

__attribute__((noinline)) static void alloc_phase(unsigned mib)
{
	for (size_t i = 0; i < (size_t)mib * 1024; i++) {
		if (nkept == capkept)
			return;
		char *p = malloc(1024);
		p[0] = (char)i;
		kept[nkept++] = p;
	}
}

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static volatile uint64_t sink;

__attribute__((noinline)) static void spin_phase(unsigned ms)
{
	double end = cpu_now() + ms;
	uint64_t x = 1;
	while (cpu_now() < end)
		for (int i = 0; i < 100000; i++)
			x = x * 6364136223846793005ULL + 1;
	sink = x;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static double contend_end;

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

__attribute__((noinline)) static void *contend_thread(void *arg)
{
	(void)arg;
	while (wall_now() < contend_end) {
		pthread_mutex_lock(&lock);
		struct timespec hold = { 0, 200000 };
		nanosleep(&hold, NULL);
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

static void contend(unsigned ms)
{
	pthread_t t[2];
	contend_end = wall_now() + ms;
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, contend_thread, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
}

static unsigned long busy_iterations;

__attribute__((noinline)) static void *busy_thread(void *arg)
{
	uint64_t x = (uintptr_t)arg + 1;
	for (unsigned long i = 0; i < busy_iterations; i++)
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	return (void *)(uintptr_t)x;
}

static int busy(int threads, unsigned long iterations)
{
	pthread_t t[64];
	uint64_t sum = 0;
	busy_iterations = iterations;
	if (threads < 1 || threads > 64)
		return 2;
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, busy_thread, (void *)(uintptr_t)i);
	for (int i = 0; i < threads; i++) {
		void *r;
		pthread_join(t[i], &r);
		sum ^= (uint64_t)(uintptr_t)r;
	}
	printf("busy: %d threads, checksum %016llx\n", threads, (unsigned long long)sum);
	return 3;
}

int main(int argc, char **argv)
{
	/* Room for 1 GiB of blocks: no realloc in alloc_phase, whose
	 * allocations the tests count to the byte. */
	capkept = 1u << 20;
	kept = malloc(capkept * sizeof *kept);
	if (argc == 4 && strcmp(argv[1], "--busy") == 0)
		return busy(atoi(argv[2]), strtoul(argv[3], NULL, 10));
	if (argc == 2 && strcmp(argv[1], "--closefrom") == 0)
		closefrom(3);
	if (argc == 3 && strcmp(argv[1], "--alloc-at-start") == 0)
		alloc_phase((unsigned)atoi(argv[2]));
	printf("ready\n");
	fflush(stdout);
	char line[128];
	while (fgets(line, sizeof line, stdin)) {
		unsigned n = 0;
		if (sscanf(line, "alloc %u", &n) == 1)
			alloc_phase(n);
		else if (sscanf(line, "spin %u", &n) == 1)
			spin_phase(n);
		else if (sscanf(line, "contend %u", &n) == 1)
			contend(n);
		printf("ok %s", line);
		fflush(stdout);
	}
	return 0;
}
