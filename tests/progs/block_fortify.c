/* Built with _FORTIFY_SOURCE, as Debian builds its packages: read() with a
 * buffer of known size becomes __read_chk, poll() __poll_chk. reader()
 * waits in them for a writer that sends a byte every 20 ms, 10 times:
 * about 200 ms each that the block profile must show under reader. */
#undef _FORTIFY_SOURCE
#define _FORTIFY_SOURCE 2
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int fds[2];
static volatile size_t one = 1; /* not a constant: the _chk forms are called */

static void *writer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20; i++) {
		struct timespec ts = { 0, 20000000 };
		nanosleep(&ts, NULL);
		if (write(fds[1], "x", 1) != 1)
			abort();
	}
	return NULL;
}

__attribute__((noinline)) static void reader(void)
{
	char buf[16];
	for (int i = 0; i < 10; i++)
		if (read(fds[0], buf, one) != 1)
			abort();
	struct pollfd p[1] = { { fds[0], POLLIN, 0 } };
	for (int i = 0; i < 10; i++) {
		if (poll(p, (nfds_t)one, -1) != 1 || read(fds[0], buf, one) != 1)
			abort();
	}
}

int main(void)
{
	if (pipe(fds))
		return 1;
	pthread_t t;
	pthread_create(&t, NULL, writer, NULL);
	reader();
	pthread_join(t, NULL);
	printf("done\n");
	return 0;
}
