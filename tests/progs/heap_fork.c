/* Fork and the heap profile. The parent keeps 4 MiB from parent_keep, then
 * forks; the child frees half of the parent's blocks (child_free_parents),
 * keeps 2 MiB of its own from child_keep and exits normally (writing its
 * own profile); the parent waits, then keeps 1 MiB more from parent_after.
 * Prints "child <pid> exited <status>" on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define BLOCK 4096
static void *volatile parents[1024];
static void *volatile childs[512];
static void *volatile afters[256];

__attribute__((noinline)) static void parent_keep(void)
{
	for (int i = 0; i < 1024; i++)
		parents[i] = malloc(BLOCK);
}

__attribute__((noinline)) static void child_free_parents(void)
{
	for (int i = 0; i < 1024; i += 2)
		free(parents[i]);
}

__attribute__((noinline)) static void child_keep(void)
{
	for (int i = 0; i < 512; i++)
		childs[i] = malloc(BLOCK);
}

__attribute__((noinline)) static void parent_after(void)
{
	for (int i = 0; i < 256; i++)
		afters[i] = malloc(BLOCK);
}

int main(void)
{
	parent_keep();
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		child_free_parents();
		child_keep();
		return 0;
	}
	int status;
	waitpid(pid, &status, 0);
	parent_after();
	printf("child %d exited %d\n", (int)pid, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return 0;
}
