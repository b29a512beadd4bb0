/* Threads for the threads profile (tests/e2e/threads.sh), one mode each;
 * dumps with cprof_dump_now() where the test wants a snapshot.
 *
 *   leak             4 threads blocked in read on a pipe nobody writes, a
 *                    dump 0.3 s later; 4 more, a dump 0.3 s later
 *   deadlock         two threads that lock two mutexes in opposite order;
 *                    a dump 0.3 s later
 *   eintr            threads blocked in poll, epoll_wait, select,
 *                    nanosleep, sem_timedwait and a raw syscall(SYS_ppoll)
 *                    for 1.5 s while the main thread dumps 5 times; every
 *                    return is checked, and an EINTR (or a call that
 *                    ended early) prints a line and exits 1
 *   many N           N threads, half blocked in read on a pipe, half in a
 *                    raw futex wait; one dump
 *   churn            threads that end while snapshots run: 4 makers each
 *                    start and join short threads (each spins ~50 us) for
 *                    1.5 s while the main thread dumps every 10 ms;
 *                    prints "made N threads, D dumps" on stdout
 *   pollloop         8 threads in a loop of 3 us of work and a 100 us ppoll
 *                    (when seen running, about to poll again) for 3 s while the main
 *                    thread dumps every 5 ms; an EINTR prints a line and
 *                    exits 1
 *   unreachable      one thread spinning in an SA_ONSTACK signal handler
 *                    (the shim's signal is held blocked there), one made
 *                    with raw clone; one dump, timed
 * Prints "dump N ms" for each dump's duration on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cprof.h"

static int pipe_fds[2];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void dump(void)
{
	double t0 = now_s();
	int rc = cprof_dump_now();
	fprintf(stderr, "dump %.1f ms rc %d\n", (now_s() - t0) * 1000, rc);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- leak ------------------------------------------------------------ */

__attribute__((noinline)) static void *leaker_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "leaker");
	char c;
	ssize_t n = read(pipe_fds[0], &c, 1); /* nobody writes */
	fprintf(stderr, "leaker: read returned %zd (%s)\n", n, strerror(errno));
	return NULL;
}

__attribute__((noinline)) static void pool_start(int n)
{
	for (int i = 0; i < n; i++) {
		pthread_t t;
		pthread_create(&t, NULL, leaker_main, NULL);
		pthread_detach(t);
	}
}

static int leak(void)
{
	pool_start(4);
	sleep_ms(300);
	dump();
	pool_start(4);
	sleep_ms(300);
	dump();
	return 0;
}

/* ---- deadlock -------------------------------------------------------- */

static pthread_mutex_t m1 = PTHREAD_MUTEX_INITIALIZER, m2 = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both;

__attribute__((noinline)) static void *lock_a(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "lockA");
	pthread_mutex_lock(&m1);
	pthread_barrier_wait(&both);
	pthread_mutex_lock(&m2);
	return NULL;
}

__attribute__((noinline)) static void *lock_b(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "lockB");
	pthread_mutex_lock(&m2);
	pthread_barrier_wait(&both);
	pthread_mutex_lock(&m1);
	return NULL;
}

static int deadlock(void)
{
	pthread_t a, b;
	pthread_barrier_init(&both, NULL, 2);
	pthread_create(&a, NULL, lock_a, NULL);
	pthread_create(&b, NULL, lock_b, NULL);
	sleep_ms(300);
	dump();
	return 0;
}

/* ---- eintr ----------------------------------------------------------- */

#define WAIT_MS 1500
static _Atomic int failures;

static void check(const char *what, long rc, int err, double t0, int want_rc)
{
	double took = (now_s() - t0) * 1000;
	if (rc < 0 && err == EINTR) {
		fprintf(stderr, "EINTR in %s after %.0f ms\n", what, took);
		failures++;
	} else if (rc != want_rc || took < WAIT_MS - 50) {
		fprintf(stderr, "%s returned %ld (%s) after %.0f ms\n", what, rc, strerror(err), took);
		failures++;
	}
}

static void *in_poll(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "poll");
	struct pollfd p = { pipe_fds[0], POLLIN, 0 };
	double t0 = now_s();
	int rc = poll(&p, 1, WAIT_MS);
	check("poll", rc, errno, t0, 0);
	return NULL;
}

static void *in_epoll(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "epoll");
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN }, out;
	epoll_ctl(ep, EPOLL_CTL_ADD, pipe_fds[0], &ev);
	double t0 = now_s();
	int rc = epoll_wait(ep, &out, 1, WAIT_MS);
	check("epoll_wait", rc, errno, t0, 0);
	close(ep);
	return NULL;
}

static void *in_select(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "select");
	fd_set r;
	FD_ZERO(&r);
	FD_SET(pipe_fds[0], &r);
	struct timeval tv = { WAIT_MS / 1000, (WAIT_MS % 1000) * 1000 };
	double t0 = now_s();
	int rc = select(pipe_fds[0] + 1, &r, NULL, NULL, &tv);
	check("select", rc, errno, t0, 0);
	return NULL;
}

static void *in_nanosleep(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "nanosleep");
	struct timespec ts = { WAIT_MS / 1000, (WAIT_MS % 1000) * 1000000L };
	double t0 = now_s();
	int rc = nanosleep(&ts, NULL);
	check("nanosleep", rc, errno, t0, 0);
	return NULL;
}

static void *in_sem_timedwait(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "semwait");
	sem_t sem;
	sem_init(&sem, 0, 0);
	struct timespec abs;
	clock_gettime(CLOCK_REALTIME, &abs);
	abs.tv_sec += WAIT_MS / 1000;
	abs.tv_nsec += (WAIT_MS % 1000) * 1000000L;
	if (abs.tv_nsec >= 1000000000) {
		abs.tv_sec++;
		abs.tv_nsec -= 1000000000;
	}
	double t0 = now_s();
	int rc = sem_timedwait(&sem, &abs);
	int err = errno;
	/* A timeout is -1 ETIMEDOUT: the wanted answer. */
	check("sem_timedwait", rc == -1 && err == ETIMEDOUT ? 0 : rc, err, t0, 0);
	return NULL;
}

__attribute__((noinline)) static void *in_raw_ppoll(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "rawppoll");
	struct pollfd p = { pipe_fds[0], POLLIN, 0 };
	struct timespec ts = { WAIT_MS / 1000, (WAIT_MS % 1000) * 1000000L };
	double t0 = now_s();
	long rc = syscall(SYS_ppoll, &p, 1, &ts, NULL, 8);
	check("raw ppoll", rc, errno, t0, 0);
	return NULL;
}

static volatile int stop_spin;

static void *spinner(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "spinner");
	while (!stop_spin)
		;
	return NULL;
}

static int eintr(void)
{
	void *(*fns[])(void *) = { in_poll, in_epoll, in_select, in_nanosleep, in_sem_timedwait,
				   in_raw_ppoll, spinner };
	enum { N = sizeof fns / sizeof fns[0] };
	pthread_t t[N];
	for (int i = 0; i < N; i++)
		pthread_create(&t[i], NULL, fns[i], NULL);
	sleep_ms(200);
	for (int i = 0; i < 5; i++) {
		dump();
		sleep_ms(100);
	}
	for (int i = 0; i < N - 1; i++)
		pthread_join(t[i], NULL);
	stop_spin = 1;
	pthread_join(t[N - 1], NULL);
	if (failures) {
		fprintf(stderr, "%d calls saw EINTR or ended early\n", (int)failures);
		return 1;
	}
	fprintf(stderr, "no EINTR\n");
	return 0;
}

/* ---- many -------------------------------------------------------------- */

static int futex_word;

static void *in_raw_futex(void *arg)
{
	(void)arg;
	while (__atomic_load_n(&futex_word, __ATOMIC_ACQUIRE) == 0)
		syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	return NULL;
}

static int many(int n)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (int i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, &attr, i % 2 ? in_raw_futex : leaker_main, NULL) != 0) {
			fprintf(stderr, "pthread_create %d failed\n", i);
			return 1;
		}
	}
	sleep_ms(500);
	dump();
	return 0;
}

/* ---- churn ---------------------------------------------------------------- */

static volatile int churn_stop;
static _Atomic long churn_made;

static void *short_life(void *arg)
{
	(void)arg;
	double t0 = now_s();
	while (now_s() - t0 < 50e-6)
		;
	return NULL;
}

static void *maker(void *arg)
{
	(void)arg;
	while (!churn_stop) {
		pthread_t t[4];
		for (int i = 0; i < 4; i++)
			if (pthread_create(&t[i], NULL, short_life, NULL) != 0)
				abort();
		for (int i = 0; i < 4; i++)
			pthread_join(t[i], NULL);
		churn_made += 4;
	}
	return NULL;
}

static int churn(void)
{
	pthread_t m[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&m[i], NULL, maker, NULL);
	int dumps = 0;
	double t0 = now_s();
	while (now_s() - t0 < 1.5) {
		if (cprof_dump_now() == 0)
			dumps++;
		sleep_ms(10);
	}
	churn_stop = 1;
	for (int i = 0; i < 4; i++)
		pthread_join(m[i], NULL);
	printf("made %ld threads, %d dumps\n", (long)churn_made, dumps);
	return 0;
}

/* ---- pollloop -------------------------------------------------------------- */

static volatile int loop_stop;
static _Atomic int loop_eintr;
static _Atomic long loop_polls;

static void *poll_loop(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "pollloop");
	struct pollfd p = { pipe_fds[0], POLLIN, 0 };
	struct timespec ts = { 0, 100000 };
	while (!loop_stop) {
		double t0 = now_s();
		while (now_s() - t0 < 3e-6)
			;
		int rc = ppoll(&p, 1, &ts, NULL);
		if (rc < 0 && errno == EINTR)
			loop_eintr++;
		loop_polls++;
	}
	return NULL;
}

static int pollloop(void)
{
	pthread_t t[8];
	for (int i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, poll_loop, NULL);
	int dumps = 0;
	double t0 = now_s();
	while (now_s() - t0 < 3.0) {
		if (cprof_dump_now() == 0)
			dumps++;
		sleep_ms(5);
	}
	loop_stop = 1;
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	printf("%ld polls, %d dumps, %d EINTR\n", (long)loop_polls, dumps, (int)loop_eintr);
	return loop_eintr ? 1 : 0;
}

/* ---- unreachable --------------------------------------------------------- */

static volatile int in_handler;

static void spin_handler(int sig)
{
	(void)sig;
	in_handler = 1;
	double t0 = now_s();
	while (now_s() - t0 < 1.0)
		;
}

static void *handler_thread(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "inhandler");
	static char alt[64 * 1024];
	stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt };
	sigaltstack(&ss, NULL);
	raise(SIGUSR1); /* the handler runs on this thread, 1 s */
	return NULL;
}

static int cloned_main(void *arg)
{
	(void)arg;
	struct timespec ts = { 2, 0 };
	syscall(SYS_nanosleep, &ts, NULL);
	return 0;
}

static int unreachable(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = spin_handler;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);
	size_t size = 256 * 1024;
	char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (clone(cloned_main, stack + size, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND |
					       CLONE_THREAD | CLONE_SYSVSEM,
		  NULL) < 0)
		perror("clone");
	pthread_t t;
	pthread_create(&t, NULL, handler_thread, NULL);
	while (!in_handler)
		;
	dump();
	pthread_join(t, NULL);
	return 0;
}

int main(int argc, char **argv)
{
	if (pipe(pipe_fds) != 0)
		return 2;
	const char *mode = argc > 1 ? argv[1] : "";
	if (strcmp(mode, "leak") == 0)
		return leak();
	if (strcmp(mode, "deadlock") == 0)
		return deadlock();
	if (strcmp(mode, "eintr") == 0)
		return eintr();
	if (strcmp(mode, "many") == 0)
		return many(argc > 2 ? atoi(argv[2]) : 2000);
	if (strcmp(mode, "pollloop") == 0)
		return pollloop();
	if (strcmp(mode, "churn") == 0)
		return churn();
	if (strcmp(mode, "unreachable") == 0)
		return unreachable();
	fprintf(stderr, "usage: threads_snap leak|deadlock|eintr|many N|unreachable\n");
	return 2;
}
