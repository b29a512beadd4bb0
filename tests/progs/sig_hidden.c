/* A systemd-style program: it blocks every signal and reads them all
 * itself, from a signalfd or with sigwaitinfo / sigtimedwait / sigwait
 * (argv[1]). With every signal blocked, main and a worker thread burn
 * about 0.4 s of CPU each (spin_main, spin_thread), at once or, with
 * argv[2] "serial", one after the other; then it reports what
 * it sees of its mask and pending set, sends itself SIGUSR1, prints
 * "ready" and reads signals until the SIGTERM the test sends. It prints
 * every signal it got; the output must be the same with and without
 * libcprof. stderr: the CPU time of each busy loop, the test's truth. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

static volatile uint64_t sink;

static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Burns `ns` of this thread's CPU time; returns what it burned. */
static int64_t burn(int64_t ns)
{
	int64_t start = thread_cpu_ns(), now;
	uint64_t x = 1;
	do {
		for (int i = 0; i < 100000; i++)
			x = x * 6364136223846793005ULL + 1;
		sink = x;
		now = thread_cpu_ns();
	} while (now - start < ns);
	return now - start;
}

__attribute__((noinline)) static int64_t spin_main(void) { return burn(400000000); }
__attribute__((noinline)) static int64_t spin_thread(void) { return burn(400000000); }

/* "9 19 32 33": the signals 1..SIGRTMAX not in `set`. */
static void print_missing(const char *what, const sigset_t *set)
{
	printf("%s: not blocked:", what);
	for (int s = 1; s <= SIGRTMAX; s++)
		if (!sigismember(set, s))
			printf(" %d", s);
	printf("\n");
}

static void print_set(const char *what, const sigset_t *set)
{
	int n = 0;
	printf("%s:", what);
	for (int s = 1; s <= SIGRTMAX; s++)
		if (sigismember(set, s)) {
			printf(" %d", s);
			n++;
		}
	printf("%s\n", n ? "" : " none");
}

static const char *code_name(int code)
{
	switch (code) {
	case SI_USER: return "user";
	case SI_QUEUE: return "queue";
	case SI_TIMER: return "timer";
	case SI_KERNEL: return "kernel";
	case SI_TKILL: return "tkill";
	default: return "other";
	}
}

static int64_t thread_burned;
static char thread_view[256];

static void *worker(void *arg)
{
	(void)arg;
	thread_burned = spin_thread();
	/* Inherited from main: everything blocked. */
	sigset_t cur;
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	int n = 0;
	for (int s = 1; s <= SIGRTMAX; s++)
		if (!sigismember(&cur, s))
			n += snprintf(thread_view + n, sizeof thread_view - n, " %d", s);
	return NULL;
}

/* The program's own mask operations on SIGRTMAX-4 read back as set. */
static void mask_ops(void)
{
	int rt = SIGRTMAX - 4;
	sigset_t one, old, cur;
	sigemptyset(&one);
	sigaddset(&one, rt);
	sigprocmask(SIG_UNBLOCK, &one, &old);
	sigprocmask(SIG_BLOCK, NULL, &cur);
	printf("mask ops: old has %d: %d; after unblock: %d", rt, sigismember(&old, rt),
	       sigismember(&cur, rt));
	pthread_sigmask(SIG_BLOCK, &one, &old);
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	printf("; old %d, after block: %d", sigismember(&old, rt), sigismember(&cur, rt));
	sigset_t but_rt; /* still blocks the rest: a pending signal stays pending */
	sigfillset(&but_rt);
	sigdelset(&but_rt, rt);
	sigprocmask(SIG_SETMASK, &but_rt, &old);
	sigprocmask(SIG_SETMASK, &old, &cur);
	printf("; setmask round trip: %d %d\n", sigismember(&old, rt), sigismember(&cur, rt));
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "signalfd";
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	int sfd = -1;
	if (strcmp(mode, "signalfd") == 0) {
		sfd = signalfd(-1, &all, SFD_CLOEXEC);
		if (sfd < 0) {
			perror("signalfd");
			return 1;
		}
	}
	printf("mode %s\n", mode);

	bool serial = argc > 2 && strcmp(argv[2], "serial") == 0;
	pthread_t t;
	int64_t main_burned = serial ? spin_main() : 0;
	pthread_create(&t, NULL, worker, NULL);
	if (!serial)
		main_burned = spin_main();
	pthread_join(t, NULL);
	fprintf(stderr, "busy_main_ns %lld\nbusy_thread_ns %lld\n", (long long)main_burned,
		(long long)thread_burned);

	sigset_t pending;
	sigpending(&pending);
	print_set("pending after busy", &pending);
	sigprocmask(SIG_BLOCK, NULL, &old);
	print_missing("main", &old);
	printf("thread: not blocked:%s\n", thread_view);

	kill(getpid(), SIGUSR1);
	printf("ready\n");

	for (;;) {
		int sig = -1, code = 0;
		if (sfd >= 0) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof si) != sizeof si) {
				perror("read");
				return 1;
			}
			sig = (int)si.ssi_signo;
			code = si.ssi_code;
		} else if (strcmp(mode, "sigwait") == 0) {
			if (sigwait(&all, &sig) != 0)
				return 1;
			code = -100;
		} else {
			siginfo_t si;
			struct timespec ten = { 10, 0 };
			sig = strcmp(mode, "sigwaitinfo") == 0 ? sigwaitinfo(&all, &si)
								: sigtimedwait(&all, &si, &ten);
			if (sig < 0) {
				printf("%s: %s\n", mode, strerror(errno));
				continue;
			}
			code = si.si_code;
		}
		if (code == -100) /* sigwait: no siginfo */
			printf("got %d\n", sig);
		else
			printf("got %d %s\n", sig, code_name(code));
		if (sig == SIGTERM)
			break;
	}
	/* Whatever else is pending now. */
	struct timespec zero = { 0, 0 };
	siginfo_t si;
	int sig, n = 0;
	printf("after:");
	while ((sig = sigtimedwait(&all, &si, &zero)) > 0) {
		printf(" %d %s", sig, code_name(si.si_code));
		n++;
	}
	printf("%s\n", n ? "" : " none");
	mask_ops();
	return 0;
}
