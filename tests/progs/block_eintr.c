/* Does the CPU profiler's timer signal make calls that the kernel never
 * restarts return EINTR? A thread burns CPU (so its CPU timer fires) and
 * between bursts calls poll, ppoll, select, pselect, epoll_wait,
 * nanosleep, clock_nanosleep, usleep, sem_timedwait, sem_wait (posted by a
 * helper) and sigtimedwait, each with a short timeout, and counts EINTR.
 * Without the shim no signal arrives, so every count must stay 0 under it
 * too. Then the program's own signal (SIGUSR1, handler without
 * SA_RESTART) must still interrupt a long poll with EINTR.
 * Each burst is 300 us of the thread's own CPU time, so the number of
 * timer signals does not depend on how busy the machine is.
 * Prints "eintr NAME N" per call, "own_signal_eintr yes|no" on stdout and
 * "calls N" on stderr.
 * Usage: block_eintr [rounds of the 11 calls, default 250] */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

enum { POLL, PPOLL, SELECT, PSELECT, EPOLL, NANOSLEEP, CLOCK_NANOSLEEP, USLEEP,
       SEM_TIMEDWAIT, SEM_WAIT, SIGTIMEDWAIT, NCALLS };
static const char *names[NCALLS] = { "poll", "ppoll", "select", "pselect", "epoll_wait",
				     "nanosleep", "clock_nanosleep", "usleep", "sem_timedwait",
				     "sem_wait", "sigtimedwait" };
static long eintr[NCALLS], other_errors;
static sem_t posted, never;
static volatile int stop;
static volatile uint64_t sink;

static int64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void burn(int64_t ns)
{
	int64_t end = cpu_ns() + ns;
	uint64_t x = 88172645463325252ULL;
	while (cpu_ns() < end)
		for (int i = 0; i < 1000; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
	sink += x;
}

static void *poster(void *arg)
{
	(void)arg;
	while (!stop) {
		sem_post(&posted);
		struct timespec ts = { 0, 300000 };
		nanosleep(&ts, NULL);
	}
	sem_post(&posted);
	return NULL;
}

static void count(int call, int failed)
{
	if (failed && errno == EINTR)
		eintr[call]++;
	else if (failed && errno != ETIMEDOUT && errno != EAGAIN)
		other_errors++;
}

static void one_round(int ep)
{
	struct timespec short_ts = { 0, 200000 };
	struct timeval tv = { 0, 200 };
	struct epoll_event ev;
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	struct timespec abs;
	int rc;

	burn(300000);
	count(POLL, poll(NULL, 0, 1) < 0);
	burn(300000);
	count(PPOLL, ppoll(NULL, 0, &short_ts, NULL) < 0);
	burn(300000);
	tv.tv_usec = 200;
	count(SELECT, select(0, NULL, NULL, NULL, &tv) < 0);
	burn(300000);
	count(PSELECT, pselect(0, NULL, NULL, NULL, &short_ts, NULL) < 0);
	burn(300000);
	count(EPOLL, epoll_wait(ep, &ev, 1, 1) < 0);
	burn(300000);
	count(NANOSLEEP, nanosleep(&short_ts, NULL) < 0);
	burn(300000);
	rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &short_ts, NULL);
	errno = rc;
	count(CLOCK_NANOSLEEP, rc != 0);
	burn(300000);
	count(USLEEP, usleep(200) < 0);
	burn(300000);
	clock_gettime(CLOCK_REALTIME, &abs);
	abs.tv_nsec += 200000;
	if (abs.tv_nsec >= 1000000000) {
		abs.tv_sec++;
		abs.tv_nsec -= 1000000000;
	}
	count(SEM_TIMEDWAIT, sem_timedwait(&never, &abs) < 0);
	burn(300000);
	count(SEM_WAIT, sem_wait(&posted) < 0);
	burn(300000);
	count(SIGTIMEDWAIT, sigtimedwait(&usr2, NULL, &short_ts) < 0);
}

static void on_usr1(int sig)
{
	(void)sig;
}

static void *kicker(void *arg)
{
	struct timespec ts = { 0, 100000000 };
	nanosleep(&ts, NULL);
	pthread_kill(*(pthread_t *)arg, SIGUSR1);
	return NULL;
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 250;
	sem_init(&posted, 0, 0);
	sem_init(&never, 0, 0);
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	/* Blocked in every thread: sigtimedwait waits for it, and the shim's
	 * dump signal never lands here. */
	pthread_sigmask(SIG_BLOCK, &usr2, NULL);
	int ep = epoll_create1(0);
	pthread_t helper;
	pthread_create(&helper, NULL, poster, NULL);
	long calls = 0;
	for (long r = 0; r < rounds; r++) {
		one_round(ep);
		calls += NCALLS;
	}
	stop = 1;
	pthread_join(helper, NULL);
	for (int i = 0; i < NCALLS; i++)
		printf("eintr %s %ld\n", names[i], eintr[i]);
	printf("other_errors %ld\n", other_errors);
	fprintf(stderr, "calls %ld\n", calls);

	/* The program's own signal still interrupts. */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	pthread_t self = pthread_self(), k;
	pthread_create(&k, NULL, kicker, &self);
	int rc = poll(NULL, 0, 5000);
	printf("own_signal_eintr %s\n", rc < 0 && errno == EINTR ? "yes" : "no");
	pthread_join(k, NULL);
	return 0;
}
