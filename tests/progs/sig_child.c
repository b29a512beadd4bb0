/* Built twice: dynamically (sig_child) and with -static
 * (sig_child_static, the Makefile's static rule), a program the shim
 * cannot enter, as a setuid binary is. It reports the signal
 * state it was handed at exec (SIGUSR2's disposition, whether SIGRTMAX-4
 * and SIGPROF are blocked, what is pending), prints "ready <pid>", burns
 * 50 ms of CPU (an inherited ITIMER_PROF would fire: its SIGPROF kills),
 * then waits until the file argv[1] exists (the test creates it after
 * sending SIGUSR2) and exits 0. Killed by SIGUSR2 when it was not
 * ignored. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile uint64_t sink;

int main(int argc, char **argv)
{
	struct sigaction sa;
	sigaction(SIGUSR2, NULL, &sa);
	const char *usr2 = (sa.sa_flags & SA_SIGINFO) ? "handler"
			   : sa.sa_handler == SIG_IGN ? "ignored"
			   : sa.sa_handler == SIG_DFL ? "default" : "handler";
	sigset_t mask, pending;
	sigprocmask(SIG_BLOCK, NULL, &mask);
	sigpending(&pending);
	printf("child: usr2=%s rtmax-4 blocked=%d prof blocked=%d pending:", usr2,
	       sigismember(&mask, SIGRTMAX - 4), sigismember(&mask, SIGPROF));
	int n = 0;
	for (int s = 1; s <= SIGRTMAX; s++)
		if (sigismember(&pending, s)) {
			printf(" %d", s);
			n++;
		}
	printf("%s\nready %d\n", n ? "" : " none", (int)getpid());
	fflush(stdout);

	struct timespec t0, t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	uint64_t x = 1;
	do {
		for (int i = 0; i < 100000; i++)
			x = x * 6364136223846793005ULL + 1;
		sink = x;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 50000000L);

	struct timespec step = { 0, 10000000 };
	for (int i = 0; i < 1000 && argc > 1 && access(argv[1], F_OK) != 0; i++)
		nanosleep(&step, NULL);
	printf("child: survived\n");
	return 0;
}
