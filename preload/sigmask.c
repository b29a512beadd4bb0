/* sigmask.c — the CPU timer's signal is the shim's alone: the program can
 * neither block it nor read it, and sees its mask as it set it.
 *
 * A program that blocks every signal and reads them from a signalfd or
 * with sigwaitinfo (systemd, its services, many daemons) would otherwise
 * leave the timer's signal (SIGRTMAX-4; SIGPROF with CPROF_CPU_TIMER=process)
 * pending and then read it as if someone had sent it, and the CPU profile
 * would lose every sample. So, while the CPU profile owns that signal (the
 * "hidden" signal):
 *   - sigprocmask and pthread_sigmask never block it: it is taken out of
 *     the set passed down (as glibc takes out its own SIGCANCEL and
 *     SIGSETXID). Whether the program asked for it blocked is remembered
 *     per thread (initial-exec TLS, inherited by the threads it creates
 *     and by exec, see exec.c) and is what every old mask reads back;
 *   - signalfd, sigwait, sigwaitinfo and sigtimedwait never get it in the
 *     set they wait for (block.c), and sigpending never reports it, so a
 *     timer signal left pending by glibc's own brief all-blocked sections
 *     (pthread_create, posix_spawn) is invisible and reaches the handler
 *     when glibc unblocks it.
 * The masks that last only for one call (sigsuspend, ppoll, pselect,
 * epoll_pwait) and signal handlers' sa_mask are left as the program gave
 * them: while they hold, no program code runs that could read the signal,
 * and it is delivered to the handler the moment the call or the handler
 * returns, with its overrun counted; taking it out would instead let a
 * timer expiry wake the call with EINTR.
 * Every other signal, including the dump signal and SIGTERM, is the
 * program's and passes untouched. Calls the shim makes itself
 * (cprof_thread.busy) pass through.
 *
 * The BSD and System V mask calls (sigblock, sigsetmask, siggetmask,
 * sighold, sigrelse) go through the same path.
 *
 * Not seen: the mask set by raw system calls, setcontext/swapcontext,
 * siglongjmp and sigset(SIG_HOLD) (glibc calls the kernel directly: the
 * real mask is right, only the hidden signal's bit in a later read-back
 * may be stale). A vfork child that changes its mask
 * writes the parent thread's remembered bit (they share memory); spawn
 * code restores the parent's mask after vfork, which rewrites it.
 * While the CPU profile runs, SIGRTMAX-4 (or SIGPROF with the process
 * timer) sent by another process to a program that blocks it is not
 * readable from a signalfd: the signal is reserved, as glibc reserves
 * SIGRTMIN..SIGRTMIN+2.
 *
 * Cost: a wrapper is a load and a branch when the CPU profile is off; with
 * it on, a bit test, a 128-byte copy when the set holds the hidden signal,
 * and a bit fixed in the old set.
 *
 * CPROF_SIGSAFE: every wrapper (the calls are async-signal-safe): no
 * lock, no allocation, errno as the next definition left it.
 */
#include "wait.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

CPROF_NEXT(int, sigprocmask, (int how, const sigset_t *set, sigset_t *old), (how, set, old))
CPROF_NEXT(int, pthread_sigmask, (int how, const sigset_t *set, sigset_t *old), (how, set, old))
CPROF_NEXT(int, sigpending, (sigset_t *set), (set))
CPROF_NEXT(int, signalfd, (int fd, const sigset_t *mask, int flags), (fd, mask, flags))

static atomic_int hidden_signal;  /* the signal hidden now, 0 none */
static atomic_int released_signal; /* hidden once, the program's since */

/* The program asked for the hidden signal blocked on this thread. */
static __thread unsigned char view_blocked __attribute__((tls_model("initial-exec")));

#define WORD_BITS (8 * sizeof(unsigned long))

CPROF_SIGSAFE static inline bool set_has(const sigset_t *set, int sig)
{
	return (set->__val[(sig - 1) / WORD_BITS] >> ((sig - 1) % WORD_BITS)) & 1;
}

CPROF_SIGSAFE static inline void set_put(sigset_t *set, int sig, bool on)
{
	unsigned long bit = 1UL << ((sig - 1) % WORD_BITS);
	if (on)
		set->__val[(sig - 1) / WORD_BITS] |= bit;
	else
		set->__val[(sig - 1) / WORD_BITS] &= ~bit;
}

/* rt_sigprocmask on one signal, straight to the kernel: below the
 * wrappers, and below any sigprocmask the program itself interposes.
 * 0, or -1 and errno. */
CPROF_SIGSAFE static int mask_one(int how, int sig, sigset_t *old)
{
	sigset_t one;
	sigemptyset(&one);
	set_put(&one, sig, true);
	return (int)syscall(SYS_rt_sigprocmask, how, &one, old, _NSIG / 8);
}

CPROF_SIGSAFE int cprof_sigmask_hidden(void)
{
	return atomic_load_explicit(&hidden_signal, memory_order_relaxed);
}

CPROF_SIGSAFE bool cprof_sigmask_view(void)
{
	return view_blocked;
}

CPROF_SIGSAFE const sigset_t *cprof_sigmask_filter(const sigset_t *set, sigset_t *copy)
{
	int sig = cprof_sigmask_hidden();
	if (CPROF_LIKELY(!sig) || !set || !set_has(set, sig))
		return set;
	*copy = *set;
	set_put(copy, sig, false);
	return copy;
}

/* A thread starts (or the process starts, after an exec whose program had
 * the signal blocked): really unblocked, remembered as the program's. */
void cprof_sigmask_thread_start(bool inherited, bool maybe_blocked)
{
	int sig = cprof_sigmask_hidden();
	if (!sig)
		return;
	if (!maybe_blocked) {
		view_blocked = inherited;
		return;
	}
	int saved_errno = errno;
	sigset_t old;
	if (mask_one(SIG_UNBLOCK, sig, &old) == 0)
		view_blocked = inherited || set_has(&old, sig);
	errno = saved_errno;
}

void cprof_sigmask_hide(int sig)
{
	atomic_store(&hidden_signal, sig);
	cprof_sigmask_thread_start(false, true);
}

/* Applies the remembered bit for real to a thread that still has one. */
CPROF_SIGSAFE static void settle_released(void)
{
	int sig = atomic_load_explicit(&released_signal, memory_order_relaxed);
	view_blocked = 0;
	if (sig) {
		int saved_errno = errno;
		mask_one(SIG_BLOCK, sig, NULL);
		errno = saved_errno;
	}
}

void cprof_sigmask_release(int sig)
{
	int expected = sig;
	if (!atomic_compare_exchange_strong(&hidden_signal, &expected, 0))
		return;
	atomic_store(&released_signal, sig);
	/* This thread now; the others at their next mask call. */
	if (view_blocked)
		settle_released();
}

/* ---- the wrappers ------------------------------------------------------ */

/* Inside a handler running on the alternate signal stack, the CPU
 * signal is blocked by the sa_mask libcprof added (signals.c: a second
 * signal frame may not fit a small alternate stack, and the kernel kills
 * a process whose frame does not fit). A mask call there that would
 * unblock it keeps it as the kernel has it. Off the thread's own stack
 * only, so the common path makes no extra system call. */
CPROF_SIGSAFE static bool keep_kernel_block(int sig)
{
	if (cprof_unwind_on_thread_stack((uintptr_t)__builtin_frame_address(0)))
		return false;
	sigset_t current;
	if (syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &current, _NSIG / 8) != 0)
		return false;
	return sigismember(&current, sig) == 1;
}

/* The program's call with the hidden signal `sig` on: the set loses it,
 * the old set reads back the thread's remembered bit (or the real one,
 * set inside a handler whose sa_mask holds it), and the bit follows what
 * the program asked. Unblocking it changes nothing real. */
#define FILTERED_CALL(name, failed)                                                   \
	do {                                                                         \
		unsigned idx = (unsigned)sig - 1;                                    \
		unsigned long bit = 1UL << (idx % WORD_BITS);                        \
		unsigned word = idx / WORD_BITS;                                     \
		bool before = view_blocked, after = before;                          \
		sigset_t copy;                                                       \
		if (set) {                                                           \
			bool has = (set->__val[word] & bit) != 0;                    \
			if (how == SIG_BLOCK)                                        \
				after = before || has;                               \
			else if (how == SIG_SETMASK)                                 \
				after = has;                                         \
			else { /* SIG_UNBLOCK, or EINVAL from below */               \
				if (how == SIG_UNBLOCK)                              \
					after = before && !has;                      \
				has = false;                                         \
			}                                                            \
			if (has) {                                                   \
				copy = *set;                                         \
				copy.__val[word] &= ~bit;                            \
				set = &copy;                                         \
			}                                                            \
		}                                                                    \
		if (how != SIG_BLOCK && set && keep_kernel_block(sig)) {            \
			/* On an alternate stack the hidden signal stays as     \
			 * blocked as the kernel has it (stack room, signals.c). */ \
			if (set != &copy) {                                          \
				copy = *set;                                         \
				set = &copy;                                         \
			}                                                            \
			if (how == SIG_SETMASK)                                      \
				copy.__val[word] |= bit;                             \
			else                                                         \
				copy.__val[word] &= ~bit;                            \
		}                                                                    \
		int ret = real_##name(how, set, old);                                \
		if (!(failed)) {                                                     \
			if (old && before)                                           \
				old->__val[word] |= bit;                             \
			view_blocked = after;                                        \
		}                                                                    \
		return ret;                                                          \
	} while (0)

/* The exported call is a load, a branch and a tail call when the CPU
 * profile is off; the rest is out of line. */
#define MASK_WRAPPER(name, failed)                                                    \
	__attribute__((noinline)) CPROF_SIGSAFE static int filtered_##name(         \
		int sig, int how, const sigset_t *set, sigset_t *old)               \
	{                                                                            \
		if (cprof_thread.busy)                                               \
			return real_##name(how, set, old);                           \
		FILTERED_CALL(name, failed);                                         \
	}                                                                            \
	__attribute__((noinline)) CPROF_SIGSAFE static int settled_##name(          \
		int how, const sigset_t *set, sigset_t *old)                        \
	{                                                                            \
		settle_released();                                                   \
		return real_##name(how, set, old);                                   \
	}                                                                            \
	CPROF_SIGSAFE static inline int program_##name(int how, const sigset_t *set, \
						       sigset_t *old)                \
	{                                                                            \
		int sig = cprof_sigmask_hidden();                                    \
		if (CPROF_LIKELY(!sig)) {                                            \
			if (CPROF_UNLIKELY(view_blocked))                            \
				return settled_##name(how, set, old);                \
			return real_##name(how, set, old);                           \
		}                                                                    \
		return filtered_##name(sig, how, set, old);                          \
	}                                                                            \
	CPROF_EXPORT CPROF_SIGSAFE int name(int how, const sigset_t *set, sigset_t *old) \
	{                                                                            \
		if (how == SIG_SETMASK &&                                            \
		    cprof_unwind_skips_mask((uintptr_t)__builtin_return_address(0), set, old)) \
			return 0;                                                    \
		return program_##name(how, set, old);                                \
	}

/* sigprocmask: -1 and errno on failure; pthread_sigmask: the error. */
MASK_WRAPPER(sigprocmask, ret == -1)
MASK_WRAPPER(pthread_sigmask, ret != 0)

/* The BSD and System V calls: glibc's reach the kernel without passing
 * through sigprocmask's entry (dash clears its mask with sigsetmask(0)),
 * so they are written here on the wrapper. An int mask holds signals 1-32,
 * bit n-1 for signal n, as glibc's. */
CPROF_SIGSAFE static int int_mask_call(int how, int mask)
{
	sigset_t set, old;
	sigemptyset(&set);
	set.__val[0] = (unsigned int)mask;
	if (program_sigprocmask(how, &set, &old) != 0)
		return -1;
	return (int)(unsigned int)old.__val[0];
}

CPROF_EXPORT CPROF_SIGSAFE int sigblock(int mask)
{
	return int_mask_call(SIG_BLOCK, mask);
}

CPROF_EXPORT CPROF_SIGSAFE int sigsetmask(int mask)
{
	return int_mask_call(SIG_SETMASK, mask);
}

CPROF_EXPORT CPROF_SIGSAFE int siggetmask(void)
{
	return int_mask_call(SIG_BLOCK, 0);
}

CPROF_SIGSAFE static int one_signal_call(int how, int sig)
{
	sigset_t set;
	sigemptyset(&set);
	if (sigaddset(&set, sig) < 0)
		return -1;
	return program_sigprocmask(how, &set, NULL);
}

CPROF_EXPORT CPROF_SIGSAFE int sighold(int sig)
{
	return one_signal_call(SIG_BLOCK, sig);
}

CPROF_EXPORT CPROF_SIGSAFE int sigrelse(int sig)
{
	return one_signal_call(SIG_UNBLOCK, sig);
}

CPROF_EXPORT CPROF_SIGSAFE int sigpending(sigset_t *set)
{
	int ret = real_sigpending(set);
	int sig = cprof_sigmask_hidden();
	if (ret == 0 && sig)
		set_put(set, sig, false);
	return ret;
}

CPROF_EXPORT CPROF_SIGSAFE int signalfd(int fd, const sigset_t *mask, int flags)
{
	sigset_t copy;
	return real_signalfd(fd, cprof_sigmask_filter(mask, &copy), flags);
}

/* Resolves the next definitions now, not in a handler's first call. */
void cprof_sigmask_init(void)
{
	real_sigprocmask = (__typeof__(sigprocmask) *)cprof_wait_next("sigprocmask", NULL);
	real_pthread_sigmask =
		(__typeof__(pthread_sigmask) *)cprof_wait_next("pthread_sigmask", NULL);
	real_sigpending = (__typeof__(sigpending) *)cprof_wait_next("sigpending", NULL);
	real_signalfd = (__typeof__(signalfd) *)cprof_wait_next("signalfd", NULL);
}
