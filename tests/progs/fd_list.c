/* Lists the program's descriptors (/proc/self/fd, without the listing's
 * own) as "N -> target" lines, after a dump (cprof_dump_now; nothing
 * without the shim) and then: `now` in this process, `fork` in a forked
 * child (after a dump of its own), `exec` by exec'ing
 * `ls /proc/self/fd`. A profiler that holds a descriptor shows in the
 * listing. Usage: fd_list now|fork|exec */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cprof.h"

static void list(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return;
	int own = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || atoi(e->d_name) == own)
			continue;
		char path[300], target[256];
		snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(path, target, sizeof target - 1);
		target[n > 0 ? n : 0] = 0;
		printf("%s -> %s\n", e->d_name, target);
	}
	closedir(d);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "now";
	int rc = cprof_dump_now();
	if (rc != 0 && rc != -ENOSYS) {
		fprintf(stderr, "cprof_dump_now: %d\n", rc);
		return 1;
	}
	if (strcmp(mode, "now") == 0) {
		list();
	} else if (strcmp(mode, "fork") == 0) {
		pid_t pid = fork();
		if (pid == 0) {
			rc = cprof_dump_now();
			if (rc != 0 && rc != -ENOSYS)
				return 1;
			list();
			return 0;
		}
		int status;
		waitpid(pid, &status, 0);
		return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
	} else if (strcmp(mode, "exec") == 0) {
		execlp("ls", "ls", "/proc/self/fd", (char *)NULL);
		return 1;
	}
	return 0;
}
