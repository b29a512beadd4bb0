/* Producer/consumer on a condition variable. The producer makes an item
 * every ~100 us of CPU work; the consumer waits for each in consume_wait,
 * which times its own pthread_cond_wait calls (the truth). Prints
 * "cond_wait_ns N" on stderr.
 * Usage: block_cond [items, default 3000] */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready = PTHREAD_COND_INITIALIZER;
static long queued, items;
static int64_t waited;
static volatile uint64_t sink;

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

__attribute__((noinline)) static void consume_wait(void)
{
	pthread_mutex_lock(&lock);
	while (queued == 0) {
		int64_t t0 = now_ns();
		pthread_cond_wait(&ready, &lock);
		waited += now_ns() - t0;
	}
	queued--;
	pthread_mutex_unlock(&lock);
}

static void *consumer(void *arg)
{
	(void)arg;
	for (long i = 0; i < items; i++)
		consume_wait();
	return NULL;
}

__attribute__((noinline)) static void produce(void)
{
	sink += spin(60000);
	pthread_mutex_lock(&lock);
	queued++;
	pthread_cond_signal(&ready);
	pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv)
{
	items = argc > 1 ? atol(argv[1]) : 3000;
	pthread_t t;
	pthread_create(&t, NULL, consumer, NULL);
	for (long i = 0; i < items; i++)
		produce();
	pthread_join(t, NULL);
	fprintf(stderr, "cond_wait_ns %lld\n", (long long)waited);
	printf("done %ld\n", items);
	return 0;
}
