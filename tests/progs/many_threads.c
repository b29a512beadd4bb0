/* A thread-per-connection server's shape: THREADS threads alive at once,
 * each on a small stack (64 KiB), each doing a little malloc, locking
 * a shared mutex (contended) and a 200 us sleep (a blocking call, as a
 * connection's read is), and then waiting at a barrier until all exist,
 * as connections idle. Once all are alive, the main thread prints
 * its VmRSS ("rss_kb N" on stderr: what the process holds with every
 * thread alive), then releases them and joins them all.
 * Prints "threads N" on stdout and exits 0.
 * Usage: many_threads [threads, default 10000] */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t all_alive, go;
static volatile unsigned long sink;

__attribute__((noinline)) static void serve(int id)
{
	for (int i = 0; i < 4; i++) {
		char *p = malloc(64 + (size_t)(id % 7) * 32);
		memset(p, id, 64);
		pthread_mutex_lock(&lock);
		for (int j = 0; j < 200; j++)
			sink += (unsigned long)p[j % 64] * (unsigned long)j;
		pthread_mutex_unlock(&lock);
		free(p);
	}
	struct timespec ts = { 0, 200000 };
	nanosleep(&ts, NULL);
}

static void *connection(void *arg)
{
	serve((int)(long)arg);
	pthread_barrier_wait(&all_alive);
	pthread_barrier_wait(&go);
	return NULL;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10000;
	pthread_t *threads = calloc((size_t)n, sizeof *threads);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	pthread_barrier_init(&all_alive, NULL, (unsigned)n + 1);
	pthread_barrier_init(&go, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++) {
		int err = pthread_create(&threads[i], &attr, connection, (void *)(long)i);
		if (err) {
			fprintf(stderr, "pthread_create %d: %s\n", i, strerror(err));
			return 1;
		}
	}
	pthread_barrier_wait(&all_alive);
	fprintf(stderr, "rss_kb %ld\n", rss_kb());
	pthread_barrier_wait(&go);
	for (int i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	printf("threads %d\n", n);
	return 0;
}
