/* A single-threaded process waits on a process-shared mutex that another
 * process holds: the one lock wait a program that never made a thread can
 * have. The shim's mutex lock forwards straight to glibc while the process
 * has one thread (a private mutex cannot be contended then); a
 * process-shared one must still be timed. The child holds the mutex for
 * 300 ms; the parent, which never creates a thread, waits for it in
 * waiter() and then takes a private mutex 1000 times (the shortcut).
 * Prints "wait_ns N", the parent's wait measured around its lock call,
 * "threads N", the parent's /proc/self/task entries after it, and "pid N"
 * (the child writes profiles too). */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((noinline)) static int64_t waiter(pthread_mutex_t *m)
{
	int64_t t0 = now_ns();
	if (pthread_mutex_lock(m) != 0)
		exit(1);
	int64_t waited = now_ns() - t0;
	pthread_mutex_unlock(m);
	return waited;
}

static int tasks(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

int main(void)
{
	pthread_mutex_t *m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 1;
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(m, &a);
	int ready[2];
	if (pipe(ready) != 0)
		return 1;
	pid_t child = fork();
	if (child < 0)
		return 1;
	if (child == 0) {
		pthread_mutex_lock(m);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		struct timespec hold = { 0, 300000000 };
		nanosleep(&hold, NULL);
		pthread_mutex_unlock(m);
		_exit(0);
	}
	char c;
	if (read(ready[0], &c, 1) != 1)
		return 1;
	int64_t waited = waiter(m);
	pthread_mutex_t private_lock = PTHREAD_MUTEX_INITIALIZER;
	for (int i = 0; i < 1000; i++) {
		pthread_mutex_lock(&private_lock);
		pthread_mutex_unlock(&private_lock);
	}
	int status;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		return 1;
	fprintf(stderr, "wait_ns %lld\nthreads %d\npid %d\n", (long long)waited, tasks(),
		(int)getpid());
	return 0;
}
