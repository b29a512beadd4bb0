/* A program with its own SIGUSR2 and SIGPROF handlers, as servers and
 * language runtimes have. It first asks what SIGUSR2 and SIGPROF are set
 * to (without libcprof: the default), installs its handlers, drives its
 * own ITIMER_PROF, signals itself, and reports what it saw. The output must
 * be the same with and without libcprof. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t usr2_count, prof_count;
static volatile uint64_t sink;

static void on_usr2(int sig) { (void)sig; usr2_count++; }
static void on_prof(int sig) { (void)sig; prof_count++; }

static const char *describe(int sig)
{
	struct sigaction sa;
	if (sigaction(sig, NULL, &sa) != 0)
		return "error";
	if (sa.sa_flags & SA_SIGINFO)
		return "siginfo-handler";
	if (sa.sa_handler == SIG_DFL)
		return "default";
	if (sa.sa_handler == SIG_IGN)
		return "ignored";
	if (sa.sa_handler == on_usr2 || sa.sa_handler == on_prof)
		return "ours";
	return "other";
}

int main(void)
{
	printf("before: usr2=%s prof=%s\n", describe(SIGUSR2), describe(SIGPROF));
	signal(SIGUSR2, on_usr2);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_prof;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGPROF, &sa, NULL);
	printf("after: usr2=%s prof=%s\n", describe(SIGUSR2), describe(SIGPROF));

	raise(SIGUSR2);
	kill(getpid(), SIGUSR2);

	struct itimerval itv = { { 0, 10000 }, { 0, 10000 } };
	setitimer(ITIMER_PROF, &itv, NULL);
	uint64_t x = 1;
	while (prof_count < 20) {
		for (int i = 0; i < 100000; i++)
			x = x * 6364136223846793005ULL + 1;
		sink = x;
	}
	memset(&itv, 0, sizeof itv);
	setitimer(ITIMER_PROF, &itv, NULL);
	printf("usr2 handled %d times; own SIGPROF ticks >= 20: %s\n", (int)usr2_count,
	       prof_count >= 20 ? "yes" : "no");
	return 0;
}
