/* The parent burns CPU in parent_work, then forks; the child burns CPU in
 * child_work and returns from main (a normal exit, so it writes its own
 * profile); the parent waits and does a little more parent_work.
 * Prints the child's pid so a test can find its files. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile uint64_t sink;

static uint64_t spin(uint64_t n)
{
	uint64_t x = 88172645463325252ULL;
	for (uint64_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	return x;
}

__attribute__((noinline)) static void parent_work(int units)
{
	for (int i = 0; i < units; i++)
		sink += spin(2000000);
}

__attribute__((noinline)) static void child_work(int units)
{
	for (int i = 0; i < units; i++)
		sink += spin(2000000);
}

int main(void)
{
	parent_work(40);
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		child_work(40);
		return 0;
	}
	int status;
	waitpid(pid, &status, 0);
	parent_work(10);
	printf("child %d exited %d\n", (int)pid, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return 0;
}
