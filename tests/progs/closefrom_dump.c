/* A daemon-like start: close every descriptor above stderr (as daemons
 * and closefrom(3) do), open a file that takes the lowest free number,
 * then receive the dump signal several times and write to the file. The
 * file must hold exactly what the program wrote: a profiler that kept a
 * descriptor of its own could write into it. Usage: closefrom_dump FILE */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile uint64_t sink;

__attribute__((noinline)) static void daemon_work(void)
{
	uint64_t x = 1;
	for (long i = 0; i < 100000000; i++)
		x = x * 6364136223846793005ULL + 1;
	sink = x;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return 3;
	for (int i = 0; i < 3; i++) {
		daemon_work();
		kill(getpid(), SIGUSR2);
		struct timespec pause = { 0, 100000000 };
		nanosleep(&pause, NULL);
	}
	const char msg[] = "only this\n";
	if (write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg))
		return 4;
	close(fd);
	printf("fd %d\n", fd);
	return 0;
}
