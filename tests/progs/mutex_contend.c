/* Four threads contend on one mutex. Each round a thread takes the lock
 * in acquire() (which times its own wait: the truth), holds it in
 * hold_and_release() for a fixed amount of CPU work and releases it there,
 * then works outside the lock. The mutex profile must charge the waits to
 * hold_and_release (the critical section that made others wait), the
 * block profile to acquire (where the waiting happened).
 * With "rwlock" the lock is a pthread_rwlock_t taken for writing.
 * Prints "wait_ns N" (sum over threads) and "contended N" on stderr.
 * Usage: mutex_contend [rounds per thread, default 1500] [mutex|rwlock] */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS 4

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rwlock = PTHREAD_RWLOCK_INITIALIZER;
static int use_rwlock;
static volatile uint64_t sink;
static long rounds;
static int64_t wait_total[THREADS];
static long waits_over_1us[THREADS];

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t spin(uint64_t n)
{
	uint64_t x = 88172645463325252ULL + n;
	for (uint64_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	return x;
}

__attribute__((noinline)) static void acquire(int self)
{
	int64_t t0 = now_ns();
	if (use_rwlock)
		pthread_rwlock_wrlock(&rwlock);
	else
		pthread_mutex_lock(&lock);
	int64_t d = now_ns() - t0;
	wait_total[self] += d;
	waits_over_1us[self] += d > 1000;
}

__attribute__((noinline)) static void hold_and_release(void)
{
	sink += spin(40000);
	if (use_rwlock)
		pthread_rwlock_unlock(&rwlock);
	else
		pthread_mutex_unlock(&lock);
}

__attribute__((noinline)) static void work_outside(void)
{
	sink += spin(20000);
}

static void *worker(void *arg)
{
	int self = (int)(intptr_t)arg;
	for (long i = 0; i < rounds; i++) {
		acquire(self);
		hold_and_release();
		work_outside();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	rounds = argc > 1 ? atol(argv[1]) : 1500;
	use_rwlock = argc > 2 && strcmp(argv[2], "rwlock") == 0;
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	int64_t total = 0;
	long contended = 0;
	for (int i = 0; i < THREADS; i++) {
		total += wait_total[i];
		contended += waits_over_1us[i];
	}
	fprintf(stderr, "wait_ns %lld\ncontended %ld\n", (long long)total, contended);
	printf("done\n");
	return 0;
}
