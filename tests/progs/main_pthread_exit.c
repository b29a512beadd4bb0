/* main starts two workers (0.5 s of CPU each) and calls pthread_exit(NULL); the process must
 * end when the last worker does, with glibc's exit(0), and its stdio
 * flushed. Mode `exit3`: the first worker calls exit(3) after its work
 * while the second sleeps on. Usage: main_pthread_exit [exit3] */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile uint64_t sink;
static int exit3;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* 0.5 s of CPU each */
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static void *worker_spin(void *arg)
{
	long id = (long)arg;
	double end = now() + 0.5;
	uint64_t x = 1;
	while (now() < end)
		for (int i = 0; i < 100000; i++)
			x = x * 6364136223846793005ULL + 1;
	sink = x;
	if (exit3 && id == 0)
		exit(3);
	if (exit3)
		sleep(5);
	return NULL;
}

int main(int argc, char **argv)
{
	exit3 = argc > 1 && strcmp(argv[1], "exit3") == 0;
	printf("main leaves\n"); /* buffered when stdout is a file: exit flushes it */
	pthread_t t[2];
	for (long i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker_spin, (void *)i);
	pthread_exit(NULL);
}
