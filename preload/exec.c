/* exec.c — what a program ignored stays ignored across exec, and the new
 * program starts with the signal mask the old one set.
 *
 * The shim keeps a handler on the signals it owns (signals.c) and tells
 * the program the action it set; when the program sets one of them (the
 * dump signal, SIGUSR2) to SIG_IGN, the kernel still has our handler, and
 * exec resets handled signals to SIG_DFL: a program the shim cannot enter
 * (static, setuid) would die of the next SIGUSR2 instead of ignoring it.
 * posix_spawn's child does the same reset before its exec. So every exec
 * and spawn call is wrapped: just before it, each owned signal the program
 * ignores is set to SIG_IGN for real, and the CPU signal, hidden from the
 * program's masks (sigmask.c), is blocked if this thread's program asked
 * for it blocked, so that the new program starts with the mask the old
 * one set. With CPROF_CPU_TIMER=process the ITIMER_PROF is stopped too:
 * interval timers survive exec, and its SIGPROF would kill a program that
 * does not expect it. If the exec fails (and after every spawn), the
 * handlers, the mask and the timer are put back; the result and errno are
 * the call's.
 *
 * Wrapped: execve, execv, execvp, execvpe, execl, execlp, execle, fexecve,
 * execveat, posix_spawn, posix_spawnp, system and popen (glibc's exec
 * family, system and popen reach execve or posix_spawn inside libc, not
 * through a wrapper, so each is wrapped at the entry the program calls).
 *
 * The exec calls are async-signal-safe and are called in vfork children,
 * which share the parent's memory: they allocate nothing, lock nothing and
 * write no memory, only the calling process's kernel state (dispositions,
 * mask, timer), which a vfork child has of its own. execl, execlp and
 * execle build argv on the stack: 64 entries (512 bytes) for the usual
 * call, up to 4096 (32 KiB, in a frame of its own only for such calls, as
 * glibc's own variable-length array would take); more arguments fail with
 * E2BIG.
 *
 * Spawns leave the parent running: during posix_spawn, system or popen
 * the ignored owned signals are SIG_IGN in the parent too (a dump signal
 * sent during a system() of a program that ignores it is lost). A count
 * of spawns in flight puts the handlers back only when the last one ends;
 * two threads whose spawns start and end at the same moment can still
 * hand one child SIG_DFL (a lock would close that, and the calls must
 * not take one).
 */
#include "wait.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

extern char **environ;

CPROF_NEXT(int, execve, (const char *path, char *const argv[], char *const envp[]),
	   (path, argv, envp))
CPROF_NEXT(int, execv, (const char *path, char *const argv[]), (path, argv))
CPROF_NEXT(int, execvp, (const char *file, char *const argv[]), (file, argv))
CPROF_NEXT(int, execvpe, (const char *file, char *const argv[], char *const envp[]),
	   (file, argv, envp))
CPROF_NEXT(int, fexecve, (int fd, char *const argv[], char *const envp[]), (fd, argv, envp))
CPROF_NEXT(int, execveat,
	   (int dirfd, const char *path, char *const argv[], char *const envp[], int flags),
	   (dirfd, path, argv, envp, flags))
CPROF_NEXT(int, posix_spawn,
	   (pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
	    const posix_spawnattr_t *attr, char *const argv[], char *const envp[]),
	   (pid, path, actions, attr, argv, envp))
CPROF_NEXT(int, posix_spawnp,
	   (pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
	    const posix_spawnattr_t *attr, char *const argv[], char *const envp[]),
	   (pid, file, actions, attr, argv, envp))
CPROF_NEXT(int, system, (const char *command), (command))
CPROF_NEXT(FILE *, popen, (const char *command, const char *type), (command, type))

typedef struct exec_state {
	uint64_t ignored;         /* owned signals set to SIG_IGN for the call */
	int blocked;              /* the hidden signal, blocked for it; 0 none */
	bool spawn;               /* counted in spawns_in_flight */
	bool itimer_saved;        /* ITIMER_PROF stopped; `itimer` is its value */
	struct itimerval itimer;
} exec_state_t;

static atomic_int spawns_in_flight;

CPROF_SIGSAFE static int mask_one(int how, int sig)
{
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, sig);
	return (int)syscall(SYS_rt_sigprocmask, how, &one, NULL, _NSIG / 8);
}

/* A SIGPROF of the stopped ITIMER_PROF may still be pending, and a pending
 * signal survives exec: take it (SI_KERNEL is the timer's; any other was
 * sent by someone and goes back in the queue). */
CPROF_SIGSAFE static void drain_itimer_signal(void)
{
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, SIGPROF);
	struct timespec zero = { 0, 0 };
	siginfo_t info;
	if (syscall(SYS_rt_sigtimedwait, &one, &info, &zero, _NSIG / 8) == SIGPROF &&
	    info.si_code != SI_KERNEL)
		syscall(SYS_rt_tgsigqueueinfo, syscall(SYS_getpid), syscall(SYS_gettid), SIGPROF,
			&info);
}

/* Just before an exec (`spawn` false: this process becomes the new
 * program) or a spawn (a child does). */
CPROF_SIGSAFE static void exec_prepare(exec_state_t *st, bool spawn)
{
	int saved_errno = errno;
	st->spawn = spawn;
	if (spawn)
		atomic_fetch_add(&spawns_in_flight, 1);
	if (!spawn)
		cprof_dump_before_exec();
	st->ignored = cprof_signals_ignore_for_exec();
	st->blocked = 0;
	st->itimer_saved = false;
	int sig = cprof_sigmask_hidden();
	/* Stopped before blocking: no new SIGPROF after the drain. (A spawned
	 * child has no interval timer of its parent's.) */
	if (!spawn && sig == SIGPROF) {
		struct itimerval zero;
		memset(&zero, 0, sizeof zero);
		st->itimer_saved = setitimer(ITIMER_PROF, &zero, &st->itimer) == 0 &&
				   timerisset(&st->itimer.it_value);
	}
	if (sig && cprof_sigmask_view() && mask_one(SIG_BLOCK, sig) == 0) {
		st->blocked = sig;
		if (!spawn && sig == SIGPROF)
			drain_itimer_signal();
	}
	errno = saved_errno;
}

/* After a failed exec, or any spawn: the handlers first (the hidden
 * signal, unblocked, finds ours), then the mask and the timer. */
CPROF_SIGSAFE static void exec_undo(const exec_state_t *st)
{
	int saved_errno = errno;
	bool last = st->spawn ? atomic_fetch_sub(&spawns_in_flight, 1) == 1
			      : atomic_load(&spawns_in_flight) == 0;
	if (st->ignored && last)
		cprof_signals_reinstall(st->ignored);
	if (st->blocked)
		mask_one(SIG_UNBLOCK, st->blocked);
	if (st->itimer_saved)
		setitimer(ITIMER_PROF, &st->itimer, NULL);
	errno = saved_errno;
}

static void exec_undo_cleanup(void *st)
{
	exec_undo(st);
}

/* ---- exec --------------------------------------------------------------- */

#define EXEC_WRAPPER(name, params, args)                                              \
	CPROF_EXPORT CPROF_SIGSAFE int name params                                   \
	{                                                                            \
		exec_state_t st;                                                     \
		exec_prepare(&st, false);                                            \
		int ret = real_##name args;                                          \
		exec_undo(&st);                                                      \
		return ret;                                                          \
	}

EXEC_WRAPPER(execve, (const char *path, char *const argv[], char *const envp[]),
	     (path, argv, envp))
EXEC_WRAPPER(execv, (const char *path, char *const argv[]), (path, argv))
EXEC_WRAPPER(execvp, (const char *file, char *const argv[]), (file, argv))
EXEC_WRAPPER(execvpe, (const char *file, char *const argv[], char *const envp[]),
	     (file, argv, envp))
EXEC_WRAPPER(fexecve, (int fd, char *const argv[], char *const envp[]), (fd, argv, envp))
EXEC_WRAPPER(execveat,
	     (int dirfd, const char *path, char *const argv[], char *const envp[], int flags),
	     (dirfd, path, argv, envp, flags))

/* ---- execl, execlp, execle: argv on the stack ---------------------------- */

#define EXECL_SMALL 64
#define EXECL_LARGE 4096

typedef enum { VIA_EXECVE, VIA_EXECVP } execl_via_t;

/* argv[0..argc) from `arg` and `ap`, then the terminating NULL (read from
 * ap, as glibc does); for execle the environment that follows. */
CPROF_SIGSAFE static int execl_run(execl_via_t via, const char *path, char **argv, size_t argc,
				   const char *arg, va_list *ap, bool with_env)
{
	argv[0] = (char *)arg;
	for (size_t i = 1; i <= argc; i++)
		argv[i] = va_arg(*ap, char *);
	char *const *envp = with_env ? va_arg(*ap, char *const *) : environ;
	exec_state_t st;
	exec_prepare(&st, false);
	int ret = via == VIA_EXECVP ? real_execvp(path, argv) : real_execve(path, argv, envp);
	exec_undo(&st);
	return ret;
}

__attribute__((noinline)) CPROF_SIGSAFE static int execl_large(execl_via_t via, const char *path,
							       size_t argc, const char *arg,
							       va_list *ap, bool with_env)
{
	char *argv[EXECL_LARGE];
	if (argc >= EXECL_LARGE) {
		errno = E2BIG;
		return -1;
	}
	return execl_run(via, path, argv, argc, arg, ap, with_env);
}

#define EXECL_WRAPPER(name, via, with_env)                                            \
	CPROF_EXPORT CPROF_SIGSAFE int name(const char *path, const char *arg, ...)  \
	{                                                                            \
		va_list ap;                                                          \
		size_t argc = 1;                                                     \
		va_start(ap, arg);                                                   \
		while (va_arg(ap, char *))                                           \
			argc++;                                                      \
		va_end(ap);                                                          \
		int ret;                                                             \
		va_start(ap, arg);                                                   \
		if (argc < EXECL_SMALL) {                                            \
			char *argv[EXECL_SMALL];                                     \
			ret = execl_run(via, path, argv, argc, arg, &ap, with_env);  \
		} else {                                                             \
			ret = execl_large(via, path, argc, arg, &ap, with_env);      \
		}                                                                    \
		va_end(ap);                                                          \
		return ret;                                                          \
	}

EXECL_WRAPPER(execl, VIA_EXECVE, false)
EXECL_WRAPPER(execlp, VIA_EXECVP, false)
EXECL_WRAPPER(execle, VIA_EXECVE, true)

/* ---- spawns ----------------------------------------------------------------- */

/* system and popen are cancellation points: the cleanup puts the
 * handlers back if the thread is cancelled inside. */
#define SPAWN_WRAPPER(ret, name, params, args)                                        \
	CPROF_EXPORT ret name params                                                 \
	{                                                                            \
		exec_state_t st;                                                     \
		ret result;                                                          \
		exec_prepare(&st, true);                                             \
		pthread_cleanup_push(exec_undo_cleanup, &st);                        \
		result = real_##name args;                                           \
		pthread_cleanup_pop(1);                                              \
		return result;                                                       \
	}

SPAWN_WRAPPER(int, posix_spawn,
	      (pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
	       const posix_spawnattr_t *attr, char *const argv[], char *const envp[]),
	      (pid, path, actions, attr, argv, envp))
SPAWN_WRAPPER(int, posix_spawnp,
	      (pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
	       const posix_spawnattr_t *attr, char *const argv[], char *const envp[]),
	      (pid, file, actions, attr, argv, envp))
SPAWN_WRAPPER(int, system, (const char *command), (command))
SPAWN_WRAPPER(FILE *, popen, (const char *command, const char *type), (command, type))

#define RESOLVE(name) real_##name = (__typeof__(name) *)cprof_wait_next(#name, NULL)

/* Resolves the next definitions now: an exec in a vfork child must not be
 * the first call (the resolver would write the shared memory). */
void cprof_exec_init(void)
{
	RESOLVE(execve);
	RESOLVE(execv);
	RESOLVE(execvp);
	RESOLVE(execvpe);
	RESOLVE(fexecve);
	RESOLVE(execveat);
	RESOLVE(posix_spawn);
	RESOLVE(posix_spawnp);
	RESOLVE(system);
	RESOLVE(popen);
}
