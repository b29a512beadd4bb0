/* Forks COUNT short children one after another; each returns at once
 * with exit(0) (its destructors run). Prints "children N". Meant to be
 * run while the test sends dump signals: a fork must never wait for a
 * dump, and no child inherits a dump request. Usage: fork_many COUNT */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int count = argc > 1 ? atoi(argv[1]) : 300;
	int done = 0;
	for (int i = 0; i < count; i++) {
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0)
			exit(0);
		int status;
		while (waitpid(pid, &status, 0) < 0)
			; /* EINTR: the dump signal is the shim's, not ours */
		done += WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	printf("children %d\n", done);
	return done != count;
}
