/* A program that may never make a thread, for the lazy dumper's tests
 * (tests/e2e/lazy.sh). It reports what it sees of itself: "threads=N"
 * (/proc/self/status), "tasks=N" (/proc/self/task entries) and
 * "single=B" (glibc's __libc_single_threaded, the flag that goes false at
 * the first thread and keeps glibc's lock and system-call shortcuts off
 * from then on).
 *
 *   lazy_single status DIR   malloc, a lock, a read and CPU work (every
 *                            profile has something), then one status line
 *   lazy_single phases DIR   phase_one, a dump signal to itself (waits
 *                            for its files in DIR), cprof_dump_now(),
 *                            phase_two on a thread of its own, a dump
 *                            signal again, then exit: four dumps
 *   lazy_single fork DIR     forks; the child runs child_work and sends
 *                            itself the dump signal, the parent runs
 *                            parent_work; each prints its status
 *   lazy_single wait DIR     a SIGCHLD handler, the dump signal to
 *                            itself, its files waited for; then what
 *                            wait() and waitid(P_ALL) say (no child of
 *                            its own: ECHILD) and the SIGCHLDs it got
 *   lazy_single churn DIR    prints "ready", then mallocs, reallocs and
 *                            frees until a signal ends it: a signal lands
 *                            inside the allocator as often as not
 *
 * DIR is CPROF_OUT: a dump's files are waited for there (at most 20 s).
 * Without the shim the waits are skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cprof.h"

static volatile uint64_t sink;
static const char *dir;

static void spin(uint64_t seed, double seconds)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	uint64_t x = seed;
	do {
		for (int i = 0; i < 100000; i++)
			x = x * 6364136223846793005ULL + seed;
		sink = x;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	} while ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
}

__attribute__((noinline)) static void phase_one(void) { spin(1, 0.2); }
__attribute__((noinline)) static void phase_two(void) { spin(3, 0.2); }
__attribute__((noinline)) static void child_work(void) { spin(5, 0.2); }
__attribute__((noinline)) static void parent_work(void) { spin(7, 0.3); }

static int threads_now(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	int n = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

static int tasks_now(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static void status(const char *who)
{
	printf("%s: threads=%d tasks=%d single=%d\n", who, threads_now(), tasks_now(),
	       (int)__libc_single_threaded);
	fflush(stdout);
}

/* Waits for this process's dump `seq` (its cpu file) in dir. */
static int wait_dump(unsigned seq)
{
	if (!getenv("LD_PRELOAD"))
		return 0;
	char want[128];
	snprintf(want, sizeof want, ".%d.%04u.cpu.pb.gz", (int)getpid(), seq);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		DIR *d = opendir(dir);
		struct dirent *e;
		bool found = false;
		while (d && (e = readdir(d)))
			if (strstr(e->d_name, want))
				found = true;
		if (d)
			closedir(d);
		clock_gettime(CLOCK_MONOTONIC, &t);
		double waited = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
		if (found) {
			fprintf(stderr, "dump %u after %.3f s\n", seq, waited);
			return 0;
		}
		if (waited > 20) {
			fprintf(stderr, "dump %u: no file after 20 s\n", seq);
			return 1;
		}
		usleep(1000);
	}
}

__attribute__((noinline)) static void churn(void)
{
	void *volatile slots[64] = { 0 };
	uint64_t x = 1;
	for (;;) {
		x = x * 6364136223846793005ULL + 1;
		unsigned i = (unsigned)(x >> 58);
		size_t size = 16 + (size_t)((x >> 20) % 8192);
		if (x & 1)
			slots[i] = realloc(slots[i], size);
		else {
			free(slots[i]);
			slots[i] = malloc(size);
		}
	}
}

static volatile sig_atomic_t sigchlds;

static void on_sigchld(int sig)
{
	(void)sig;
	sigchlds++;
}

static void *thread_phase(void *arg)
{
	phase_two();
	return arg;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	dir = argv[2];
	if (strcmp(argv[1], "status") == 0) {
		pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
		for (int i = 0; i < 1000; i++) {
			pthread_mutex_lock(&m);
			void *volatile p = malloc(1000 + (size_t)i);
			free(p);
			pthread_mutex_unlock(&m);
		}
		int fd = open("/dev/zero", O_RDONLY);
		char c;
		if (fd < 0 || read(fd, &c, 1) != 1)
			return 1;
		close(fd);
		phase_one();
		status("status");
		return 0;
	}
	if (strcmp(argv[1], "phases") == 0) {
		int bad = 0;
		phase_one();
		raise(SIGUSR2);
		bad |= wait_dump(0);
		status("after signal");
		int rc = cprof_dump_now();
		fprintf(stderr, "cprof_dump_now=%d\n", rc);
		bad |= rc != 0 && rc != -ENOSYS;
		bad |= wait_dump(1); /* there already: cprof_dump returns when written */
		status("after cprof_dump");
		pthread_t t;
		pthread_create(&t, NULL, thread_phase, NULL);
		pthread_join(t, NULL);
		raise(SIGUSR2);
		bad |= wait_dump(2);
		printf("threaded: single=%d\n", (int)__libc_single_threaded);
		return bad;
	}
	if (strcmp(argv[1], "wait") == 0) {
		signal(SIGCHLD, on_sigchld);
		phase_one();
		raise(SIGUSR2);
		int bad = wait_dump(0);
		usleep(100000); /* the child has ended by now */
		errno = 0;
		pid_t w = wait(NULL);
		int wait_errno = errno;
		siginfo_t si;
		errno = 0;
		int wi = waitid(P_ALL, 0, &si, WEXITED | WNOHANG);
		printf("wait=%d %s waitid=%d %s sigchld=%d\n", (int)w,
		       wait_errno == ECHILD ? "ECHILD" : "?", wi, errno == ECHILD ? "ECHILD" : "?",
		       (int)sigchlds);
		status("wait");
		return bad;
	}
	if (strcmp(argv[1], "churn") == 0) {
		printf("ready\n");
		fflush(stdout);
		churn();
	}
	if (strcmp(argv[1], "fork") == 0) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0) {
			child_work();
			raise(SIGUSR2);
			int bad = wait_dump(0);
			status("child");
			return bad;
		}
		parent_work();
		int st;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return 1;
		status("parent");
		return 0;
	}
	return 2;
}
