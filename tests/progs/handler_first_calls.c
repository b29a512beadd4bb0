/* The program's very first write() and sigsuspend() happen inside its own
 * signal handler, as a minimal daemon's might (its main loop does nothing
 * else until a signal comes). Markers written with the raw system call
 * bracket the handler, so that LD_DEBUG=bindings output, in order on the
 * same stderr, shows whether the loader resolved anything in between.
 * The handler: write() one line on stdout, then sigsuspend() until a
 * second signal (sent before, blocked until then) is taken.
 * Prints "handler wrote\n" on stdout; exits 0 after both signals. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile sig_atomic_t got_hup;

static void mark(const char *s)
{
	syscall(SYS_write, 2, s, strlen(s));
}

static void on_hup(int sig)
{
	(void)sig;
	got_hup = 1;
}

static void on_usr1(int sig)
{
	(void)sig;
	mark("MARK handler-start\n");
	static const char line[] = "handler wrote\n";
	write(1, line, sizeof line - 1);
	/* SIGHUP is pending and blocked; sigsuspend takes it and returns. */
	sigset_t wait_mask;
	sigfillset(&wait_mask);
	sigdelset(&wait_mask, SIGHUP);
	sigsuspend(&wait_mask);
	mark("MARK handler-end\n");
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_hup;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = on_usr1;
	sigaddset(&sa.sa_mask, SIGHUP);
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, NULL);
	kill(getpid(), SIGHUP);   /* pending until the handler's sigsuspend */
	kill(getpid(), SIGUSR1);   /* the handler runs now */
	return got_hup ? 0 : 1;
}
