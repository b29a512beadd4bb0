/* Threads on PTHREAD_STACK_MIN stacks (16 KiB) that use most of them, as
 * a program does that knows its stack (a deep parser, a large local
 * buffer) and only makes small libc calls near the end: each thread eats
 * its stack down to LEAVE bytes (default 5120), then loops: malloc and
 * free, lock and unlock a contended mutex, a short nanosleep and a write
 * to a pipe (blocking calls), and some CPU work. Every libc call is made
 * once before, at full stack, so that lazy binding is not what runs out.
 * Prints "threads N rounds N" on stdout and exits 0.
 * Usage: small_stacks [threads, default 8] [rounds, default 3000] [leave] */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int pipe_fds[2];
static long rounds;
static size_t leave = 5120;
static volatile uint64_t sink;

__attribute__((noinline)) static void burn(int n)
{
	uint64_t x = 88172645463325252ULL + (uint64_t)n;
	for (int i = 0; i < 20000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	sink += x;
}

__attribute__((noinline)) static void calls(long i)
{
	char *p = malloc(48 + (size_t)(i % 5) * 16);
	p[0] = (char)i;
	pthread_mutex_lock(&lock);
	sink += (uint64_t)p[0];
	burn((int)i);
	pthread_mutex_unlock(&lock);
	free(p);
	struct timespec ts = { 0, 1000 };
	nanosleep(&ts, NULL);
	char c = 'x';
	if (write(pipe_fds[1], &c, 1) != 1)
		abort();
}

__attribute__((noinline)) static void near_the_end(void)
{
	for (long i = 0; i < rounds; i++)
		calls(i);
}

static void *worker(void *arg)
{
	(void)arg;
	calls(0); /* binds every call at full stack */
	pthread_attr_t attr;
	void *lo;
	size_t size;
	pthread_getattr_np(pthread_self(), &attr);
	pthread_attr_getstack(&attr, &lo, &size);
	pthread_attr_destroy(&attr);
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
	size_t eat = sp - (uintptr_t)lo - leave;
	char *used = __builtin_alloca(eat);
	memset(used, 1, 64);
	__asm__ volatile("" : : "r"(used) : "memory");
	near_the_end();
	return NULL;
}

static void *drain(void *arg)
{
	(void)arg;
	char buf[256];
	while (read(pipe_fds[0], buf, sizeof buf) > 0)
		;
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 8;
	rounds = argc > 2 ? atol(argv[2]) : 3000;
	if (argc > 3)
		leave = (size_t)atol(argv[3]);
	if (pipe(pipe_fds) != 0)
		return 1;
	pthread_t reader;
	pthread_create(&reader, NULL, drain, NULL);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, PTHREAD_STACK_MIN);
	pthread_t *t = calloc((size_t)n, sizeof *t);
	for (int i = 0; i < n; i++)
		if (pthread_create(&t[i], &attr, worker, NULL) != 0)
			return 1;
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	close(pipe_fds[1]);
	pthread_join(reader, NULL);
	printf("threads %d rounds %ld\n", n, rounds);
	return 0;
}
