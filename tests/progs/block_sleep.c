/* 20 sleeps of 50 ms in one function, sleepy(): the block profile must
 * show 1 s of delay on it. The argument picks the call that sleeps, so
 * every sleep wrapper can be checked the same way. Prints the measured
 * truth on stderr, the sum of each call's duration measured around it:
 * "slept_ns N" (1 s, unless the machine is too busy to wake the thread on
 * time).
 * Usage: block_sleep [nanosleep|usleep|clock_nanosleep|poll|select|epoll_wait] */
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t slept;

__attribute__((noinline)) static void sleepy(const char *how, int ep)
{
	for (int i = 0; i < 20; i++) {
		int64_t t0 = now_ns();
		if (strcmp(how, "usleep") == 0) {
			usleep(50000);
		} else if (strcmp(how, "clock_nanosleep") == 0) {
			struct timespec ts = { 0, 50000000 };
			clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
		} else if (strcmp(how, "poll") == 0) {
			poll(NULL, 0, 50);
		} else if (strcmp(how, "select") == 0) {
			struct timeval tv = { 0, 50000 };
			select(0, NULL, NULL, NULL, &tv);
		} else if (strcmp(how, "epoll_wait") == 0) {
			struct epoll_event ev;
			epoll_wait(ep, &ev, 1, 50);
		} else {
			struct timespec ts = { 0, 50000000 };
			nanosleep(&ts, NULL);
		}
		slept += now_ns() - t0;
	}
}

int main(int argc, char **argv)
{
	const char *how = argc > 1 ? argv[1] : "nanosleep";
	int ep = epoll_create1(0);
	sleepy(how, ep);
	fprintf(stderr, "slept_ns %lld\n", (long long)slept);
	printf("done %s\n", how);
	return 0;
}
