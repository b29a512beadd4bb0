/* signals.c — the signals libcprof handles, and stepping aside for the
 * program when it wants one of them.
 *
 * Owned signals and their roles:
 *   CPU signal     the CPU profile's timers (cpu.c): SIGRTMAX-4, or
 *                  SIGPROF where only setitimer can be had;
 *   dump signal    CPROF_SIGNAL, default SIGUSR2: wake the dumper;
 *   SIGTERM/SIGINT when their action was the default at start-up: write the
 *                  final profiles, restore the default and re-raise, so the
 *                  exit status is the one the program would have had.
 * The program sees, through sigaction and signal, the action it would have
 * without libcprof. When it installs a handler function of its own for an
 * owned signal, libcprof gets out of the way before the handler is in place
 * (and says so once for the CPU signal and the dump signal); SIG_IGN and SIG_DFL
 * are remembered and reported back, except that SIG_IGN for SIGTERM/SIGINT
 * is installed for real, since our handler would otherwise end the process.
 * The CPU signal is also hidden from the program's masks and signal waits
 * (sigmask.c); what it ignored is ignored again at exec (exec.c, through
 * cprof_signals_ignore_for_exec).
 *
 * A vfork child shares the parent's memory: there sigaction writes nothing
 * of ours and goes to the kernel as it would without the shim (found by
 * the process id the shim last saw, so a raw clone child is treated the
 * same way).
 *
 * CPROF_SIGSAFE: on_dump_signal, on_terminate, sigaction, and the exec
 * helpers.
 */
#include "cprof_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef enum { ROLE_NONE, ROLE_PROF, ROLE_DUMP, ROLE_FINAL } signal_role_t;

typedef struct owned_signal {
	atomic_int role;           /* ROLE_NONE when not ours */
	struct sigaction program;  /* the action the program believes it has */
	struct sigaction ours;     /* the handler installed */
} owned_signal_t;

static owned_signal_t owned[_NSIG];
static pid_t owner_pid; /* the process whose owned[] this is */

static signal_role_t role_for(int sig)
{
	if (sig == cprof_cpu_signal)
		return ROLE_PROF;
	if (sig == cprof_config.dump_signal)
		return ROLE_DUMP;
	return ROLE_FINAL;
}

int cprof_signal_take(int sig, void (*handler)(int, siginfo_t *, void *))
{
	struct sigaction sa, old;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (role_for(sig) == ROLE_FINAL)
		sigfillset(&sa.sa_mask); /* nothing interleaves the final dump */
	if (real_sigaction(sig, &sa, &old) != 0)
		return -errno;
	owned[sig].program = old;
	owned[sig].ours = sa;
	atomic_store(&owned[sig].role, role_for(sig));
	if (role_for(sig) == ROLE_PROF)
		cprof_sigmask_hide(sig);
	return 0;
}

CPROF_SIGSAFE static void on_dump_signal(int sig, siginfo_t *info, void *ucontext)
{
	(void)sig;
	(void)info;
	(void)ucontext;
	cprof_dump_request(); /* keeps errno */
}

CPROF_SIGSAFE static void on_terminate(int sig, siginfo_t *info, void *ucontext)
{
	int saved_errno = errno;
	(void)info;
	(void)ucontext;
	/* Bounded wait: if the dumper cannot finish (say this thread holds a
	 * lock it needs), the process still ends as it would have. */
	cprof_dump_final_from_signal(5000);
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	real_sigaction(sig, &dfl, NULL);
	/* Pending until this handler returns and unblocks it; then the
	 * default action ends the process with the status of `sig`. */
	raise(sig);
	errno = saved_errno;
}

static void signals_atfork_child(void)
{
	owner_pid = (pid_t)syscall(SYS_getpid);
}

void cprof_signals_init(void)
{
	owner_pid = (pid_t)syscall(SYS_getpid);
	pthread_atfork(NULL, NULL, signals_atfork_child);
	cprof_sigmask_init();
	cprof_exec_init();
	int dump = cprof_config.dump_signal;
	if (dump > 0) {
		int err = cprof_signal_take(dump, on_dump_signal);
		if (err < 0)
			cprof_log("cannot install a handler for the dump signal %d (%s)", dump,
				  strerror(-err));
	}
	static const int finals[] = { SIGTERM, SIGINT };
	for (size_t i = 0; i < sizeof finals / sizeof finals[0]; i++) {
		int sig = finals[i];
		struct sigaction cur;
		if (sig == dump || real_sigaction(sig, NULL, &cur) != 0)
			continue;
		/* An ignored SIGTERM (nohup, a supervisor) stays ignored. */
		if (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_DFL)
			cprof_signal_take(sig, on_terminate);
	}
}

static bool is_handler_function(const struct sigaction *act)
{
	if (act->sa_flags & SA_SIGINFO)
		return act->sa_sigaction != NULL;
	return act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN;
}

/* Gives the signal back to the program, before its action is installed. */
static void step_aside(int sig, signal_role_t role)
{
	atomic_store(&owned[sig].role, ROLE_NONE);
	if (role == ROLE_PROF) {
		cprof_sigmask_release(sig);
		cprof_cpu_step_aside();
		cprof_log("the program installs its own handler for signal %d, which the CPU "
			  "profile's timers use; the CPU profile stops here and keeps what "
			  "it has", sig);
	} else if (role == ROLE_DUMP) {
		cprof_log("the program installs its own handler for signal %d; dumps on that "
			  "signal are off (profiles are still written at exit)", sig);
	}
}

static bool is_ours(int sig, const struct sigaction *act)
{
	return (act->sa_flags & SA_SIGINFO) && act->sa_sigaction == owned[sig].ours.sa_sigaction;
}

/* In another process than owned[]'s (a vfork child): the kernel's action,
 * reported as the program's view where it is still our handler. */
static int sigaction_foreign(int sig, const struct sigaction *act, struct sigaction *old)
{
	struct sigaction kernel;
	if (real_sigaction(sig, act, &kernel) != 0)
		return -1;
	if (old)
		*old = is_ours(sig, &kernel) ? owned[sig].program : kernel;
	return 0;
}

/* A handler the program runs on its alternate signal stack (SA_ONSTACK)
 * gets the CPU timers' signal added to its sa_mask: that stack may be
 * small (8 KiB, or the kernel's minimum, the size of one signal frame),
 * and a timer signal landing there would need a second signal frame on it
 * (3.4 KiB with AVX-512): the kernel kills a process whose frame does not
 * fit. Blocked, the signal waits until the handler returns or
 * siglongjmps, and its periods (1 + overruns) are charged there. The
 * program sees its own sa_mask when it asks. `onstack_masked[sig]`: the
 * mask of sig's action holds the CPU signal because libcprof put it
 * there. */
static atomic_bool onstack_masked[_NSIG];

static int program_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	int cpu = cprof_cpu_signal;
	bool mask = act && cpu > 0 && sig > 0 && sig < _NSIG && sig != cpu &&
		    (act->sa_flags & SA_ONSTACK) && is_handler_function(act) &&
		    !sigismember(&act->sa_mask, cpu);
	struct sigaction with_mask;
	if (mask) {
		with_mask = *act;
		sigaddset(&with_mask.sa_mask, cpu);
		act = &with_mask;
	}
	int ret = real_sigaction(sig, act, old);
	if (ret != 0 || sig <= 0 || sig >= _NSIG)
		return ret;
	if (old && cpu > 0 && atomic_load(&onstack_masked[sig]))
		sigdelset(&old->sa_mask, cpu);
	if (act)
		atomic_store(&onstack_masked[sig], mask);
	return ret;
}

CPROF_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	if (CPROF_UNLIKELY(!real_sigaction))
		cprof_real_init();
	signal_role_t role = (sig > 0 && sig < _NSIG) ? atomic_load(&owned[sig].role) : ROLE_NONE;
	if (role == ROLE_NONE)
		return program_sigaction(sig, act, old);
	if ((pid_t)syscall(SYS_getpid) != owner_pid)
		return sigaction_foreign(sig, act, old);

	struct sigaction previous = owned[sig].program;
	if (act) {
		bool ignore_final = role == ROLE_FINAL && !(act->sa_flags & SA_SIGINFO) &&
				    act->sa_handler == SIG_IGN;
		if (is_handler_function(act) || ignore_final) {
			step_aside(sig, role);
			if (real_sigaction(sig, act, NULL) != 0)
				return -1;
		} else {
			owned[sig].program = *act;
		}
	}
	if (old)
		*old = previous;
	return 0;
}

/* signal() with glibc's (BSD) semantics, routed through sigaction above
 * for the signals we own; untouched for the rest. */
static sighandler_t bsd_signal_impl(int sig, sighandler_t handler)
{
	if (CPROF_UNLIKELY(!real_sigaction))
		cprof_real_init();
	if (sig <= 0 || sig >= _NSIG || atomic_load(&owned[sig].role) == ROLE_NONE)
		return real_signal(sig, handler);
	struct sigaction act, old;
	memset(&act, 0, sizeof act);
	act.sa_handler = handler;
	sigemptyset(&act.sa_mask);
	sigaddset(&act.sa_mask, sig);
	act.sa_flags = SA_RESTART;
	if (sigaction(sig, &act, &old) != 0)
		return SIG_ERR;
	return (old.sa_flags & SA_SIGINFO) ? (sighandler_t)(void *)old.sa_sigaction
					   : old.sa_handler;
}

CPROF_EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
	return bsd_signal_impl(sig, handler);
}

CPROF_EXPORT sighandler_t bsd_signal(int sig, sighandler_t handler)
{
	return bsd_signal_impl(sig, handler);
}

/* ---- exec (exec.c) ------------------------------------------------------ */

static bool program_ignores(int sig)
{
	const struct sigaction *p = &owned[sig].program;
	return !(p->sa_flags & SA_SIGINFO) && p->sa_handler == SIG_IGN;
}

CPROF_SIGSAFE uint64_t cprof_signals_ignore_for_exec(void)
{
	struct sigaction ignore;
	memset(&ignore, 0, sizeof ignore);
	ignore.sa_handler = SIG_IGN;
	sigemptyset(&ignore.sa_mask);
	uint64_t which = 0;
	for (int sig = 1; sig < _NSIG && sig <= 64; sig++) {
		if (atomic_load_explicit(&owned[sig].role, memory_order_relaxed) == ROLE_NONE ||
		    !program_ignores(sig))
			continue;
		/* Only where the kernel still has our handler: a vfork child
		 * that set the signal itself (sigaction_foreign) keeps its own. */
		struct sigaction cur;
		if (real_sigaction(sig, NULL, &cur) == 0 && is_ours(sig, &cur) &&
		    real_sigaction(sig, &ignore, NULL) == 0)
			which |= 1ULL << (sig - 1);
	}
	return which;
}

CPROF_SIGSAFE void cprof_signals_reinstall(uint64_t which)
{
	for (int sig = 1; sig < _NSIG && sig <= 64; sig++)
		if ((which >> (sig - 1)) & 1 &&
		    atomic_load_explicit(&owned[sig].role, memory_order_relaxed) != ROLE_NONE)
			real_sigaction(sig, &owned[sig].ours, NULL);
}
