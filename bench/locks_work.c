/* locks_work.c — the lock and blocking-call workloads of bench/sections/locks.sh.
 *
 *   locks_work uncontended [PAIRS]   one thread: lock+unlock pairs on one
 *                                    mutex, after one thread has existed;
 *                                    prints pair_ns
 *   locks_work single [PAIRS]        the same in a process that never made a
 *                                    thread (glibc's single-thread shortcut)
 *   locks_work contended [OPS]       4 threads, one mutex, a short critical
 *                                    section and a little work outside;
 *                                    prints ops_per_s
 *   locks_work pingpong [TRIPS]      2 threads, one byte back and forth over
 *                                    two pipes; prints trip_ns
 *   locks_work pinnedpong [TRIPS]    the same with the process on one CPU
 *                                    (its first allowed one): each trip two
 *                                    switches on that CPU instead of two
 *                                    wake-ups from the other, whose latency
 *                                    is most of a trip's time in a VM and
 *                                    most of its noise
 *   locks_work shortcalls [CALLS]    1-byte reads of /dev/zero, calls that
 *                                    never sleep, with an idle second thread
 *                                    alive; prints call_ns
 *   locks_work singlecalls [CALLS]   the same in a process that never made a
 *                                    thread (glibc's single-thread system
 *                                    calls, the kernel's unshared file table)
 *
 * Each run splits its work into blocks (15, or 5 for the threaded ones)
 * and prints the best block's figure: on a machine shared with other jobs
 * the best block is the one they disturbed least, which is the cost of the
 * code itself. The checksum ("checksum=N") depends only on the arguments,
 * so a run that computed something else is caught. Built -O2 -g as users
 * build.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- uncontended ---------------------------------------------------- */

static pthread_mutex_t one_lock = PTHREAD_MUTEX_INITIALIZER;
static int single_threaded;
static volatile uint64_t counter;

__attribute__((noinline)) static void lock_pairs(long n)
{
	for (long i = 0; i < n; i++) {
		pthread_mutex_lock(&one_lock);
		counter++;
		pthread_mutex_unlock(&one_lock);
	}
}

static void *nothing(void *arg)
{
	return arg;
}

static void uncontended(long pairs)
{
	const int blocks = 15;
	/* A program that locks has threads; once one has existed glibc takes
	 * the atomic path for good. Without this the unprofiled run would use
	 * glibc's single-thread shortcut, which the shim's own dumper thread
	 * turns off: that cost is reported apart (mode single). */
	if (!single_threaded) {
		pthread_t t;
		pthread_create(&t, NULL, nothing, NULL);
		pthread_join(t, NULL);
	}
	long per = pairs / blocks;
	int64_t best = INT64_MAX;
	lock_pairs(per / 10); /* warm: resolve, fault in */
	counter = 0;
	for (int b = 0; b < blocks; b++) {
		int64_t t0 = now_ns();
		lock_pairs(per);
		int64_t t = now_ns() - t0;
		if (t < best)
			best = t;
	}
	printf("mode=%s pair_ns=%.3f checksum=%llu\n",
	       single_threaded ? "single" : "uncontended", (double)best / (double)per,
	       (unsigned long long)counter);
}

/* ---- contended ------------------------------------------------------ */

#define CONTENDERS 4
#ifndef INSIDE
#define INSIDE 100
#endif
#ifndef OUTSIDE
#define OUTSIDE 100
#endif
static long ops_per_thread;
static uint64_t shared_sum;

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	return x ^ (x >> 29);
}

__attribute__((noinline)) static void critical(uint64_t v)
{
	pthread_mutex_lock(&one_lock);
	for (int i = 0; i < INSIDE; i++)
		v = mix(v);
	shared_sum += v;
	pthread_mutex_unlock(&one_lock);
}

static void *contender(void *arg)
{
	uint64_t v = (uint64_t)(uintptr_t)arg;
	for (long i = 0; i < ops_per_thread; i++) {
		uint64_t w = v + (uint64_t)i;
		for (int k = 0; k < OUTSIDE; k++) /* work outside the lock */
			w = mix(w);
		critical(w & 0xffff);
	}
	return NULL;
}

static void contended(long ops)
{
	const int blocks = 5;
	ops_per_thread = ops / CONTENDERS / blocks;
	double best = 0;
	for (int b = 0; b < blocks; b++) {
		pthread_t threads[CONTENDERS];
		int64_t t0 = now_ns();
		for (int i = 0; i < CONTENDERS; i++)
			pthread_create(&threads[i], NULL, contender,
				       (void *)(uintptr_t)((i + 1) * 1000003));
		for (int i = 0; i < CONTENDERS; i++)
			pthread_join(threads[i], NULL);
		double rate = (double)(ops_per_thread * CONTENDERS) * 1e9 / (double)(now_ns() - t0);
		if (rate > best)
			best = rate;
	}
	printf("mode=contended ops_per_s=%.0f checksum=%llu\n", best,
	       (unsigned long long)shared_sum);
}

/* ---- ping-pong ------------------------------------------------------ */

static int to_pong[2], to_ping[2];
static long trips;

static void *ponger(void *arg)
{
	(void)arg;
	char c;
	for (long i = 0; i < trips; i++) {
		if (read(to_pong[0], &c, 1) != 1)
			abort();
		c++;
		if (write(to_ping[1], &c, 1) != 1)
			abort();
	}
	return NULL;
}

/* The process on its first allowed CPU, before any thread is made (every
 * thread made later, the shim's dumper too, inherits it). */
static void pin_to_one_cpu(void)
{
	cpu_set_t allowed, one;
	if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
		abort();
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed))
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (sched_setaffinity(0, sizeof one, &one) != 0)
			abort();
		return;
	}
	abort();
}

static void pingpong(long n, const char *mode)
{
	const int blocks = 5;
	trips = n;
	if (pipe(to_pong) || pipe(to_ping))
		abort();
	pthread_t thread;
	pthread_create(&thread, NULL, ponger, NULL);
	unsigned char c = 0;
	uint64_t sum = 0;
	int64_t best = INT64_MAX;
	long per = trips / blocks;
	for (int b = 0; b < blocks; b++) {
		long count = b == blocks - 1 ? trips - per * (blocks - 1) : per;
		int64_t t0 = now_ns();
		for (long i = 0; i < count; i++) {
			if (write(to_pong[1], &c, 1) != 1)
				abort();
			if (read(to_ping[0], &c, 1) != 1)
				abort();
			sum += c;
		}
		int64_t t = (now_ns() - t0) * per / count;
		if (t < best)
			best = t;
	}
	pthread_join(thread, NULL);
	printf("mode=%s trip_ns=%.1f checksum=%llu\n", mode, (double)best / (double)per,
	       (unsigned long long)sum);
}

/* ---- short calls ---------------------------------------------------- */

static void *idle_reader(void *arg)
{
	char c;
	(void)!read(*(int *)arg, &c, 1);
	return NULL;
}

static void shortcalls(long n)
{
	const int blocks = 15;
	/* A second thread lives (blocked) through the run, as the shim's
	 * dumper thread does in the profiled runs: with one, the kernel takes
	 * the shared-file-table path of every fd call (+28 ns a read here),
	 * which is the cost of any second thread, not of the wrappers. */
	int idle[2];
	pthread_t t;
	if (pipe(idle))
		abort();
	if (!single_threaded)
		pthread_create(&t, NULL, idle_reader, &idle[0]);
	int fd = open("/dev/zero", O_RDONLY);
	if (fd < 0)
		abort();
	char c = 1;
	uint64_t sum = 0;
	long per = n / blocks;
	int64_t best = INT64_MAX;
	for (int b = 0; b < blocks; b++) {
		int64_t t0 = now_ns();
		for (long i = 0; i < per; i++) {
			if (read(fd, &c, 1) != 1)
				abort();
			sum += (uint64_t)c + 1;
		}
		int64_t t = now_ns() - t0;
		if (t < best)
			best = t;
	}
	close(idle[1]);
	if (!single_threaded)
		pthread_join(t, NULL);
	printf("mode=%s call_ns=%.1f checksum=%llu\n", single_threaded ? "singlecalls" : "shortcalls",
	       (double)best / (double)per, (unsigned long long)sum);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	long n = argc > 2 ? atol(argv[2]) : 0;
	if (strcmp(mode, "uncontended") == 0 || strcmp(mode, "single") == 0) {
		single_threaded = strcmp(mode, "single") == 0;
		uncontended(n ? n : 150000000);
	}
	else if (strcmp(mode, "contended") == 0)
		contended(n ? n : 2000000);
	else if (strcmp(mode, "pingpong") == 0)
		pingpong(n ? n : 100000, mode);
	else if (strcmp(mode, "pinnedpong") == 0) {
		pin_to_one_cpu();
		pingpong(n ? n : 100000, mode);
	}
	else if (strcmp(mode, "shortcalls") == 0 || strcmp(mode, "singlecalls") == 0) {
		single_threaded = strcmp(mode, "singlecalls") == 0;
		shortcalls(n ? n : 2000000);
	}
	else {
		fprintf(stderr, "usage: locks_work uncontended|single|contended|pingpong|pinnedpong|shortcalls|singlecalls [N]\n");
		return 2;
	}
	return 0;
}
