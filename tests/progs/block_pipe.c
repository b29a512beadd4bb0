/* A pipe ping-pong between two threads: each sends one byte and waits in
 * read() for the answer. ping_wait and pong_wait time their own reads
 * (the truth), so the block profile's read delay under them can be
 * checked. Prints "read_wait_ns N" on stderr.
 * Usage: block_pipe [round trips, default 20000] */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int to_pong[2], to_ping[2];
static long trips;
static int64_t ping_waited, pong_waited;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((noinline)) static void ping_wait(char *c)
{
	int64_t t0 = now_ns();
	if (read(to_ping[0], c, 1) != 1)
		abort();
	ping_waited += now_ns() - t0;
}

__attribute__((noinline)) static void pong_wait(char *c)
{
	int64_t t0 = now_ns();
	if (read(to_pong[0], c, 1) != 1)
		abort();
	pong_waited += now_ns() - t0;
}

static void *pong(void *arg)
{
	(void)arg;
	char c;
	for (long i = 0; i < trips; i++) {
		pong_wait(&c);
		if (write(to_ping[1], &c, 1) != 1)
			abort();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	trips = argc > 1 ? atol(argv[1]) : 20000;
	if (pipe(to_pong) || pipe(to_ping))
		return 1;
	pthread_t t;
	pthread_create(&t, NULL, pong, NULL);
	char c = 'x';
	for (long i = 0; i < trips; i++) {
		if (write(to_pong[1], &c, 1) != 1)
			abort();
		ping_wait(&c);
	}
	pthread_join(t, NULL);
	fprintf(stderr, "read_wait_ns %lld\n", (long long)(ping_waited + pong_waited));
	printf("done %ld\n", trips);
	return 0;
}
