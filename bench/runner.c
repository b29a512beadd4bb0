/* runner.c — runs a command and measures it, for bench/run.sh.
 *
 *   runner [-n COUNT] [-t SECONDS] [-e NAME=VALUE]... [-o FILE] -- PROGRAM [ARG...]
 *
 * Starts PROGRAM COUNT times (default 1), one after another, and writes one
 * line to FILE (default stderr):
 *
 *   runs=COUNT wall_ns=W cpu_ns=C user_ns=U sys_ns=S maxrss_kb=M
 *
 * wall_ns is the monotonic time from the first start to the last exit; cpu_ns
 * is user + system time of the children, from wait4's rusage, so the figure
 * is the child's own, threads included, and nothing of the runner's.
 *
 * Why a C runner rather than bash's `time` or /usr/bin/time:
 *  - -e NAME=VALUE goes into the child's environment only. Setting
 *    LD_PRELOAD on the runner's own command line would load the profiler
 *    into the runner too, and its fork/exec/wait would be measured under it.
 *  - -n runs a short program many times from one process, so the start-up
 *    benchmark measures the program's start-up and not bash's fork/exec.
 *  - it needs no package beyond libc (no GNU time).
 *
 * A run that exits non-zero, dies on a signal or outlives -t SECONDS (then
 * it is killed with SIGKILL: a profiler that hangs must not hang `make
 * bench`) stops the loop: the runner says which run and why on stderr, and
 * exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
	(void)sig;
	timed_out = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: runner [-n COUNT] [-t SECONDS] [-e NAME=VALUE]... [-o FILE] -- PROGRAM [ARG...]\n");
	exit(2);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t tv_ns(struct timeval tv)
{
	return (int64_t)tv.tv_sec * 1000000000 + (int64_t)tv.tv_usec * 1000;
}

/* The environment for the children: ours, with each -e NAME=VALUE replacing
 * an entry of the same name or added at the end. Built once, before the
 * clock starts. */
static char **build_env(char **extra, int nextra)
{
	int n = 0;
	while (environ[n])
		n++;
	char **env = calloc((size_t)(n + nextra + 1), sizeof *env);
	if (!env) {
		perror("runner: calloc");
		exit(1);
	}
	int m = 0;
	for (int i = 0; i < n; i++) {
		int overridden = 0;
		for (int j = 0; j < nextra; j++) {
			size_t len = strcspn(extra[j], "=") + 1; /* "NAME=" */
			if (strncmp(environ[i], extra[j], len) == 0)
				overridden = 1;
		}
		if (!overridden)
			env[m++] = environ[i];
	}
	for (int j = 0; j < nextra; j++)
		env[m++] = extra[j];
	env[m] = NULL;
	return env;
}

int main(int argc, char **argv)
{
	long count = 1;
	unsigned timeout_s = 0;
	const char *out_path = NULL;
	char **extra = calloc((size_t)argc, sizeof *extra);
	int nextra = 0;
	int opt;

	if (!extra)
		return 1;
	while ((opt = getopt(argc, argv, "+n:t:e:o:")) != -1) {
		switch (opt) {
		case 'n': {
			char *end;
			count = strtol(optarg, &end, 10);
			if (*end || count <= 0)
				usage();
			break;
		}
		case 't': {
			char *end;
			long t = strtol(optarg, &end, 10);
			if (*end || t <= 0 || t > 86400)
				usage();
			timeout_s = (unsigned)t;
			break;
		}
		case 'e':
			if (!strchr(optarg, '=') || optarg[0] == '=')
				usage();
			extra[nextra++] = optarg;
			break;
		case 'o':
			out_path = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
	char **cmd = argv + optind;
	char **env = build_env(extra, nextra);

	/* No SA_RESTART: the alarm interrupts wait4 with EINTR. */
	struct sigaction sa = {.sa_handler = on_alarm};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);

	int64_t cpu_user = 0, cpu_sys = 0;
	long maxrss = 0;
	/* posix_spawn (vfork-style in glibc) costs the same for every
	 * configuration and less than fork, so less noise in the start-up
	 * figures. */
	int64_t t0 = now_ns();
	for (long i = 0; i < count; i++) {
		pid_t pid;
		int rc = posix_spawnp(&pid, cmd[0], NULL, NULL, cmd, env);
		if (rc) {
			fprintf(stderr, "runner: cannot start %s: %s\n", cmd[0], strerror(rc));
			return 1;
		}
		int status;
		struct rusage ru;
		alarm(timeout_s); /* 0: no timeout */
		while (wait4(pid, &status, 0, &ru) < 0) {
			if (errno != EINTR) {
				perror("runner: wait4");
				return 1;
			}
			if (timed_out)
				kill(pid, SIGKILL); /* then reap it */
		}
		alarm(0);
		if (timed_out) {
			fprintf(stderr, "runner: run %ld of %ld: %s still running after %u s, killed\n",
				i + 1, count, cmd[0], timeout_s);
			return 1;
		}
		cpu_user += tv_ns(ru.ru_utime);
		cpu_sys += tv_ns(ru.ru_stime);
		if (ru.ru_maxrss > maxrss)
			maxrss = ru.ru_maxrss;
		if (WIFSIGNALED(status)) {
			fprintf(stderr, "runner: run %ld of %ld: %s killed by signal %d (%s)\n",
				i + 1, count, cmd[0], WTERMSIG(status), strsignal(WTERMSIG(status)));
			return 1;
		}
		if (WEXITSTATUS(status) != 0) {
			fprintf(stderr, "runner: run %ld of %ld: %s exited with status %d\n",
				i + 1, count, cmd[0], WEXITSTATUS(status));
			return 1;
		}
	}
	int64_t wall = now_ns() - t0;

	FILE *out = stderr;
	if (out_path && !(out = fopen(out_path, "w"))) {
		fprintf(stderr, "runner: %s: %s\n", out_path, strerror(errno));
		return 1;
	}
	fprintf(out, "runs=%ld wall_ns=%" PRId64 " cpu_ns=%" PRId64 " user_ns=%" PRId64
		" sys_ns=%" PRId64 " maxrss_kb=%ld\n",
		count, wall, cpu_user + cpu_sys, cpu_user, cpu_sys, maxrss);
	if (out != stderr && fclose(out) != 0) {
		fprintf(stderr, "runner: %s: %s\n", out_path, strerror(errno));
		return 1;
	}
	return 0;
}
