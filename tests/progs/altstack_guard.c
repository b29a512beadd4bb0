/* Guard-page recovery on a small alternate signal stack, as language
 * runtimes do it: a loop touches a PROT_NONE page, the SIGSEGV handler
 * (SA_ONSTACK, on an alternate stack of SIZE bytes) burns some CPU there,
 * as a runtime's stack-overflow or null-check handler does its work, and
 * siglongjmps back. A profiler whose signal lands while the thread runs
 * on that small stack must not overflow it.
 * SIZE: a byte count, or "min": the kernel's minimum (sysconf
 * _SC_MINSIGSTKSZ, AT_MINSIGSTKSZ: the signal frame alone, 3376 bytes with
 * AVX-512) plus the 2048 bytes of the classic MINSIGSTKSZ for the handler
 * (with _GNU_SOURCE, glibc 2.34+ turns MINSIGSTKSZ into a sysconf of
 * 13504 here).
 * MODE "longjmp" (default) leaves the handler by siglongjmp; "return"
 * unprotects the page and returns, as runtimes that grow a guard zone do
 * (the main loop protects it again).
 * The alternate stack has a PROT_NONE page right below it: a handler (or a
 * profiler) that uses more than SIZE bytes there faults, and the kernel
 * ends the process. Build with -Wl,-z,now (the Makefile does): a lazy PLT
 * entry resolved in the handler would use 3.1 KiB of it by itself.
 * Prints "mask signals 0" (the handler's mask as read back) and
 * "recovered N" (N = ROUNDS) on stdout and exits 0.
 * Usage: altstack_guard SIZE [rounds, default 2000] [burn per fault, default 20000]
 *                      [longjmp|return] */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static sigjmp_buf recover;
static volatile char *guard;
static volatile uint64_t sink;
static long burn;
static int by_return;
static long page;

__attribute__((noinline)) static void handler_work(void)
{
	uint64_t x = 88172645463325252ULL;
	for (long i = 0; i < burn; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	sink += x;
}

static void on_segv(int sig, siginfo_t *info, void *uc)
{
	(void)sig;
	(void)uc;
	if (info->si_addr != (void *)guard)
		abort();
	handler_work();
	if (by_return) {
		mprotect((void *)guard, page, PROT_READ | PROT_WRITE);
		return;
	}
	siglongjmp(recover, 1);
}

__attribute__((noinline)) static void touch_guard(void)
{
	guard[0] = 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: altstack_guard SIZE|min [rounds] [burn]\n");
		return 2;
	}
	size_t size = strcmp(argv[1], "min") == 0
			      ? (size_t)sysconf(_SC_MINSIGSTKSZ) + 2048
			      : (size_t)strtoul(argv[1], NULL, 0);
	long rounds = argc > 2 ? atol(argv[2]) : 2000;
	burn = argc > 3 ? atol(argv[3]) : 20000;
	by_return = argc > 4 && strcmp(argv[4], "return") == 0;

	page = sysconf(_SC_PAGESIZE);
	char *region = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED || mprotect(region + page, page, PROT_NONE) != 0) {
		perror("mmap");
		return 1;
	}
	guard = region + page;

	/* The alternate stack ends at a PROT_NONE page, so that using more
	 * than SIZE bytes of it faults at once (and the kernel ends the
	 * process) instead of silently writing over the heap below it. */
	size_t rounded = (size + (size_t)page - 1) / (size_t)page * (size_t)page;
	char *alt = mmap(NULL, rounded + (size_t)page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	stack_t ss;
	memset(&ss, 0, sizeof ss);
	if (alt == MAP_FAILED || mprotect(alt, (size_t)page, PROT_NONE) != 0) {
		perror("mmap");
		return 1;
	}
	ss.ss_sp = alt + page + (rounded - size);
	ss.ss_size = size;
	if (sigaltstack(&ss, NULL) != 0) {
		perror("sigaltstack");
		return 1;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	/* What the program reads back is what it set: no signal of anyone
	 * else's in the mask. */
	struct sigaction back;
	sigaction(SIGSEGV, NULL, &back);
	int extra = 0;
	for (int sig = 1; sig < NSIG; sig++)
		extra += sigismember(&back.sa_mask, sig) == 1;
	printf("mask signals %d\n", extra);

	volatile long recovered = 0;
	for (long i = 0; i < rounds; i++) {
		if (by_return) {
			touch_guard(); /* faults; the handler opens the page */
			recovered++;
			mprotect((void *)guard, page, PROT_NONE);
		} else if (sigsetjmp(recover, 1) == 0) {
			touch_guard();
		} else {
			recovered++;
		}
	}
	printf("recovered %ld\n", recovered);
	return recovered == rounds ? 0 : 1;
}
