/* Runs tests/progs/sig_child (built static: a program the shim cannot
 * enter) through one of the exec or spawn calls, after setting SIGUSR2 to
 * SIG_IGN ("ignore") and/or blocking every signal ("block"), as a daemon
 * or a shell's nohup would. With "retry" it first makes the same call on
 * a path that does not exist, checks that it fails with errno intact and
 * that SIGUSR2 still reads back as set, raises SIGUSR2 (ignored: nothing
 * happens to the program), so that under the shim a dump is written if,
 * and only if, the shim's handler is back after the failure; when
 * CPROF_OUT is set it waits (at most 10 s) for that dump's file before it
 * goes on, as the exec would end the dump.
 *
 *   sig_exec MODE CHILD GOFILE [ignore] [block] [retry]
 *   MODE: execve execv execvp execvpe execl execlp execle fexecve
 *         execveat posix_spawn posix_spawnp system popen, or vfork: the
 *         vfork child sets SIGUSR2 to SIG_DFL itself before its execve
 *         (the child dies of SIGUSR2; the parent's own SIGUSR2 stays as
 *         it set it, which it prints)
 * The p-variants find the child through PATH (its directory is put
 * first). Output: what the child reports, and for the spawn modes the
 * child's status. Must be the same with and without libcprof. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;
static volatile uint64_t sink;

static void burn_ms(int ms)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	uint64_t x = 1;
	do {
		for (int i = 0; i < 100000; i++)
			x = x * 6364136223846793005ULL + 1;
		sink = x;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
}

/* A cpu profile of this process in CPROF_OUT, waited for up to 10 s. */
static void wait_for_dump(void)
{
	const char *out = getenv("CPROF_OUT");
	char prefix[64];
	snprintf(prefix, sizeof prefix, "sig_exec.%d.", (int)getpid());
	for (int i = 0; out && i < 1000; i++) {
		DIR *d = opendir(out);
		struct dirent *e;
		bool found = false;
		while (d && (e = readdir(d)))
			found |= !strncmp(e->d_name, prefix, strlen(prefix)) &&
				 strstr(e->d_name, ".cpu.pb.gz") != NULL;
		if (d)
			closedir(d);
		if (found)
			return;
		struct timespec step = { 0, 10000000 };
		nanosleep(&step, NULL);
	}
}

static const char *usr2_view(void)
{
	struct sigaction sa;
	sigaction(SIGUSR2, NULL, &sa);
	if (sa.sa_flags & SA_SIGINFO)
		return "handler";
	return sa.sa_handler == SIG_IGN ? "ignored" : sa.sa_handler == SIG_DFL ? "default" : "handler";
}

static void print_status(const char *what, int status, const char *end)
{
	if (WIFEXITED(status))
		printf("%s: exit %d%s", what, WEXITSTATUS(status), end);
	else if (WIFSIGNALED(status))
		printf("%s: signal %d%s", what, WTERMSIG(status), end);
	else
		printf("%s: status %#x%s", what, status, end);
}

/* One call of MODE on `path` (name for the p-variants). Returns for the
 * exec modes only when the exec failed: -1 and errno. For the spawn
 * modes: the child's wait status, or -1 and errno. */
static int run(const char *mode, const char *path, const char *name, const char *go)
{
	char *argv[] = { (char *)name, (char *)go, NULL };
	if (!strcmp(mode, "execve"))
		return execve(path, argv, environ);
	if (!strcmp(mode, "execv"))
		return execv(path, argv);
	if (!strcmp(mode, "execvp"))
		return execvp(name, argv);
	if (!strcmp(mode, "execvpe"))
		return execvpe(name, argv, environ);
	if (!strcmp(mode, "execl"))
		return execl(path, name, go, (char *)NULL);
	if (!strcmp(mode, "execlp"))
		return execlp(name, name, go, (char *)NULL);
	if (!strcmp(mode, "execle"))
		return execle(path, name, go, (char *)NULL, environ);
	if (!strcmp(mode, "fexecve")) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -1;
		fexecve(fd, argv, environ);
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (!strcmp(mode, "execveat"))
		return execveat(AT_FDCWD, path, argv, environ, 0);
	int status;
	if (!strcmp(mode, "vfork")) {
		pid_t pid = vfork();
		if (pid == 0) {
			signal(SIGUSR2, SIG_DFL);
			execve(path, argv, environ);
			_exit(127);
		}
		if (pid < 0)
			return -1;
		waitpid(pid, &status, 0);
		printf("after vfork: usr2=%s\n", usr2_view());
		return status;
	}
	if (!strcmp(mode, "posix_spawn") || !strcmp(mode, "posix_spawnp")) {
		pid_t pid;
		int err = mode[11] == 'p' ? posix_spawnp(&pid, name, NULL, NULL, argv, environ)
					  : posix_spawn(&pid, path, NULL, NULL, argv, environ);
		if (err) {
			errno = err;
			return -1;
		}
		waitpid(pid, &status, 0);
		return status;
	}
	char cmd[8192];
	snprintf(cmd, sizeof cmd, "'%s' '%s'", path, go);
	if (!strcmp(mode, "system"))
		return system(cmd);
	if (!strcmp(mode, "popen")) {
		FILE *f = popen(cmd, "r");
		if (!f)
			return -1;
		char line[512];
		while (fgets(line, sizeof line, f))
			printf("%s", line);
		return pclose(f);
	}
	fprintf(stderr, "sig_exec: unknown mode %s\n", mode);
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: sig_exec MODE CHILD GOFILE [ignore] [block] [retry]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *mode = argv[1], *child = argv[2], *go = argv[3];
	int ignore = 0, block = 0, retry = 0;
	for (int i = 4; i < argc; i++) {
		ignore |= !strcmp(argv[i], "ignore");
		block |= !strcmp(argv[i], "block");
		retry |= !strcmp(argv[i], "retry");
	}
	char dir[4096], path_env[8192];
	snprintf(dir, sizeof dir, "%s", child);
	const char *name = strrchr(child, '/') ? strrchr(child, '/') + 1 : child;
	snprintf(path_env, sizeof path_env, "%s:%s", dirname(dir), getenv("PATH") ? getenv("PATH") : "/bin");
	setenv("PATH", path_env, 1);

	if (ignore)
		signal(SIGUSR2, SIG_IGN);
	if (block) {
		sigset_t all;
		sigfillset(&all);
		sigprocmask(SIG_BLOCK, &all, NULL);
	}
	printf("parent: %s ignore=%d block=%d usr2=%s\n", mode, ignore, block, usr2_view());
	burn_ms(50);

	if (retry) {
		errno = 0;
		int r = run(mode, "/nonexistent/sig_child", "sig_child_none", go);
		int e = errno;
		if (r == -1)
			printf("failed attempt: %s", strerror(e));
		else
			print_status("failed attempt", r, "");
		printf(" usr2=%s\n", usr2_view());
		if (ignore) {
			raise(SIGUSR2);
			wait_for_dump();
		}
	}

	int r = run(mode, child, name, go);
	if (r == -1) {
		printf("%s failed: %s\n", mode, strerror(errno));
		return 1;
	}
	print_status("child", r, "\n");
	return 0;
}
