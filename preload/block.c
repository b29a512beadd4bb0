/* block.c — the block profile: where threads wait off-CPU, charged to the
 * waiter's own stack, as Go's block profile does.
 *
 * Every call in which a thread can wait (sleeps, I/O, socket calls, poll
 * and its kin, process and signal waits, file locks, condition variables,
 * joins, semaphores, barriers; contended locks come from mutex.c) is
 * wrapped: the wrapper reads CLOCK_MONOTONIC through the vDSO before and
 * after the next definition, and hands the measured wait to Go's
 * block-rate rule (cprof_block_keep). A kept wait costs one unwind (about
 * a microsecond) and one lock-free table insert; a wait that is not kept
 * costs two vDSO clock reads and, below the rate, one random number. The
 * profile measures the time inside the call: for a read from the page
 * cache that is kernel work, not sleep; such short calls are what the
 * rate samples away.
 *
 * Sample values are Go's: contentions/count and delay/nanoseconds,
 * cumulative since start, period 1. A wait of d >= CPROF_BLOCK_RATE ns
 * adds (1, d); a shorter one, kept with probability d/rate, adds
 * (rate/d, rate), so both sums stay unbiased. The contention weight is
 * kept in thousandths in the table and rounded when written.
 *
 * Leaf frame: each recorded stack starts with the wrapper's own entry, so
 * the profile names the call the program waited in (read, nanosleep,
 * pthread_cond_wait, pthread_mutex_lock), then the program's frames.
 *
 * Not seen: calls libc makes to itself (stdio's reads, system()'s wait),
 * and waits inside the kernel that no wrapped call reaches (page faults).
 *
 * Contract: see wait.h. Wrappers are CPROF_SIGSAFE (a signal handler may
 * call read or write): all they reach is, and they keep errno.
 */
#include "wait.h"
#include "unwind_here.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/msg.h>
#include <sys/select.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int cprof_block_on;
int cprof_mutex_on;
int cprof_locks_on;
int cprof_threads_on;
int cprof_waits_timed;

/* ---- random numbers --------------------------------------------------- */

static __thread uint64_t random_state __attribute__((tls_model("initial-exec")));
static _Atomic uint64_t random_threads;

CPROF_SIGSAFE static uint64_t random_seed(void)
{
	/* CPROF_SEED: the n-th thread to draw gets the same stream in every
	 * run. Otherwise the clock and this thread's TLS address. */
	uint64_t n = atomic_fetch_add_explicit(&random_threads, 1, memory_order_relaxed) + 1;
	uint64_t base = cprof_config.seed ? cprof_config.seed
					  : (uint64_t)cprof_wait_now() ^ (uintptr_t)&random_state;
	uint64_t x = cprof_mix64(base + n * 0x9e3779b97f4a7c15ULL);
	return x ? x : 1;
}

CPROF_SIGSAFE uint64_t cprof_wait_random(void)
{
	if (CPROF_UNLIKELY(!random_state))
		random_state = random_seed();
	return cprof_xorshift64star(&random_state);
}

void cprof_wait_random_reset(void)
{
	random_state = 0;
}

/* ---- recording -------------------------------------------------------- */

/* (cprof_unwind_fast holds cancellation off around the unwind: libunwind
 * may check memory with write() and read(), both cancellation points.)
 * Its walk starts here, in the wrapper's callee (see unwind_here.h). */
CPROF_SIGSAFE void cprof_wait_stack(cprof_wait_capture_t *c, uintptr_t leaf)
{
	c->buffer = cprof_capture_take();
	c->pcs = c->buffer ? c->buffer : c->spare;
	c->pcs[0] = leaf;
	if (!c->buffer) {
		c->pcs[1] = CPROF_FRAME_NOUNWIND;
		c->depth = 2;
		return;
	}
	int max = (int)cprof_config.max_depth;
	if (max <= 1) {
		c->depth = 1;
		return;
	}
	cprof_thread.busy++;
	c->depth = 1 + cprof_unwind_fast(c->pcs + 1, max - 1);
	cprof_thread.busy--;
}

CPROF_SIGSAFE void cprof_wait_release(cprof_wait_capture_t *c)
{
	cprof_capture_give(c->buffer);
}

CPROF_SIGSAFE void cprof_block_add(const uintptr_t *pcs, int depth, int64_t count_milli,
				   int64_t delay)
{
	cprof_stack_t *s = cprof_stacks_insert(CPROF_KIND_BLOCK, 0, pcs, (unsigned)depth);
	if (s) {
		cprof_stack_add(s, 0, count_milli);
		cprof_stack_add(s, 1, delay);
	}
}

CPROF_SIGSAFE void cprof_block_wait(uintptr_t leaf, int64_t delay)
{
	int64_t count_milli, value;
	if (!cprof_block_on || !cprof_block_keep(delay, &count_milli, &value))
		return;
	int saved_errno = errno;
	cprof_wait_capture_t c;
	cprof_wait_stack(&c, leaf);
	cprof_block_add(c.pcs, c.depth, count_milli, value);
	cprof_wait_release(&c);
	errno = saved_errno;
}

/* Thousandths of a contention to whole ones, as written. */
static void block_values(const cprof_stack_t *s, int64_t out[CPROF_VALUES_MAX])
{
	int64_t milli = atomic_load_explicit(&s->values[0], memory_order_relaxed);
	out[0] = (milli + 500) / 1000;
	out[1] = atomic_load_explicit(&s->values[1], memory_order_relaxed);
}

int cprof_block_start(void)
{
	cprof_block_on = 1;
	cprof_locks_enable();
	cprof_waits_timed = 1;
	cprof_source_register(CPROF_KIND_BLOCK, 1 /* as Go writes it */, block_values);
	return 0;
}

void cprof_block_atfork_child(void)
{
	cprof_wait_random_reset();
}

/* ---- the wrappers ------------------------------------------------------ */

/* The next definition, the wrapper's own entry, and the out-of-line
 * timed call both wrapper forms below share. */
#define BLOCKING_TIMED(ret, name, params, args)                                       \
	CPROF_NEXT(ret, name, params, args)                                          \
	CPROF_WAIT_SELF(name);                                                       \
	__attribute__((noinline)) static ret timed_##name params                     \
	{                                                                            \
		int64_t start = cprof_wait_now();                                    \
		ret result;                                                          \
		CPROF_WAIT_PUBLISHED(result, real_##name args, (uintptr_t)cprof_self_##name, \
				     start);                                         \
		cprof_block_wait((uintptr_t)cprof_self_##name, cprof_wait_now() - start); \
		return result;                                                       \
	}

/* A wrapper that times the next definition and records the wait. The
 * result is returned untouched; cprof_block_wait keeps errno. The wrapper
 * itself only tests and tail-calls, so it has no frame: with the block
 * profile off it is a load, a branch and a jump. */
#define BLOCKING(ret, name, params, args)                                             \
	BLOCKING_TIMED(ret, name, params, args)                                      \
	CPROF_EXPORT CPROF_SIGSAFE ret name params                                   \
	{                                                                            \
		if (!cprof_waits_timed || cprof_thread.busy)                          \
			return real_##name args;                                     \
		return timed_##name args;                                            \
	}

/* Sleeps. */
BLOCKING(int, nanosleep, (const struct timespec *req, struct timespec *rem), (req, rem))
BLOCKING(int, clock_nanosleep,
	 (clockid_t clock, int flags, const struct timespec *req, struct timespec *rem),
	 (clock, flags, req, rem))
BLOCKING(int, usleep, (useconds_t usec), (usec))
BLOCKING(unsigned, sleep, (unsigned seconds), (seconds))
BLOCKING(int, pause, (void), ())
BLOCKING(int, sigsuspend, (const sigset_t *mask), (mask))

/* Files and pipes. */
BLOCKING(ssize_t, read, (int fd, void *buf, size_t n), (fd, buf, n))
BLOCKING(ssize_t, write, (int fd, const void *buf, size_t n), (fd, buf, n))
BLOCKING(ssize_t, readv, (int fd, const struct iovec *iov, int n), (fd, iov, n))
BLOCKING(ssize_t, writev, (int fd, const struct iovec *iov, int n), (fd, iov, n))
BLOCKING(ssize_t, pread, (int fd, void *buf, size_t n, off_t off), (fd, buf, n, off))
BLOCKING(ssize_t, pwrite, (int fd, const void *buf, size_t n, off_t off), (fd, buf, n, off))
BLOCKING(ssize_t, pread64, (int fd, void *buf, size_t n, off64_t off), (fd, buf, n, off))
BLOCKING(ssize_t, pwrite64, (int fd, const void *buf, size_t n, off64_t off), (fd, buf, n, off))
BLOCKING(ssize_t, preadv, (int fd, const struct iovec *iov, int n, off_t off), (fd, iov, n, off))
BLOCKING(ssize_t, pwritev, (int fd, const struct iovec *iov, int n, off_t off), (fd, iov, n, off))
BLOCKING(ssize_t, preadv64, (int fd, const struct iovec *iov, int n, off64_t off),
	 (fd, iov, n, off))
BLOCKING(ssize_t, pwritev64, (int fd, const struct iovec *iov, int n, off64_t off),
	 (fd, iov, n, off))
BLOCKING(ssize_t, preadv2, (int fd, const struct iovec *iov, int n, off_t off, int flags),
	 (fd, iov, n, off, flags))
BLOCKING(ssize_t, pwritev2, (int fd, const struct iovec *iov, int n, off_t off, int flags),
	 (fd, iov, n, off, flags))
BLOCKING(int, fsync, (int fd), (fd))
BLOCKING(int, fdatasync, (int fd), (fd))
BLOCKING(int, flock, (int fd, int op), (fd, op))
BLOCKING(int, lockf, (int fd, int cmd, off_t len), (fd, cmd, len))
BLOCKING(int, lockf64, (int fd, int cmd, off64_t len), (fd, cmd, len))

/* _FORTIFY_SOURCE builds (Debian's packages) call these instead. */
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t n, off64_t off, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *__restrict buf, size_t n, size_t buflen, int flags,
		       __SOCKADDR_ARG addr, socklen_t *__restrict len);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
		const sigset_t *mask, size_t fdslen);
BLOCKING(ssize_t, __read_chk, (int fd, void *buf, size_t n, size_t buflen), (fd, buf, n, buflen))
BLOCKING(ssize_t, __pread_chk, (int fd, void *buf, size_t n, off_t off, size_t buflen),
	 (fd, buf, n, off, buflen))
BLOCKING(ssize_t, __pread64_chk, (int fd, void *buf, size_t n, off64_t off, size_t buflen),
	 (fd, buf, n, off, buflen))
BLOCKING(ssize_t, __recv_chk, (int fd, void *buf, size_t n, size_t buflen, int flags),
	 (fd, buf, n, buflen, flags))
BLOCKING(ssize_t, __recvfrom_chk,
	 (int fd, void *__restrict buf, size_t n, size_t buflen, int flags, __SOCKADDR_ARG addr,
	  socklen_t *__restrict len),
	 (fd, buf, n, buflen, flags, addr, len))
BLOCKING(int, __poll_chk, (struct pollfd *fds, nfds_t n, int timeout, size_t fdslen),
	 (fds, n, timeout, fdslen))
BLOCKING(int, __ppoll_chk,
	 (struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask,
	  size_t fdslen),
	 (fds, n, timeout, mask, fdslen))

/* fcntl: only the waiting commands are timed; the third argument is
 * passed on as glibc's own fcntl reads it, one pointer-sized word. */
static bool fcntl_waits(int cmd)
{
	return cmd == F_SETLKW || cmd == F_OFD_SETLKW;
}

#define FCNTL(name)                                                                   \
	static int resolve_##name(int fd, int cmd, ...);                             \
	static int (*real_##name)(int, int, ...) = resolve_##name;                   \
	static int resolve_##name(int fd, int cmd, ...)                              \
	{                                                                            \
		va_list ap;                                                          \
		va_start(ap, cmd);                                                   \
		void *arg = va_arg(ap, void *);                                      \
		va_end(ap);                                                          \
		int (*next)(int, int, ...) =                                         \
			(int (*)(int, int, ...))cprof_wait_next(#name, NULL);        \
		__atomic_store_n(&real_##name, next, __ATOMIC_RELAXED);              \
		return next(fd, cmd, arg);                                           \
	}                                                                            \
	CPROF_NEXT_SLOT(name, NULL, real_##name);                                    \
	CPROF_WAIT_SELF(name);                                                       \
	CPROF_EXPORT CPROF_SIGSAFE int name(int fd, int cmd, ...)                    \
	{                                                                            \
		va_list ap;                                                          \
		va_start(ap, cmd);                                                   \
		void *arg = va_arg(ap, void *);                                      \
		va_end(ap);                                                          \
		if (!cprof_waits_timed || cprof_thread.busy || !fcntl_waits(cmd))    \
			return real_##name(fd, cmd, arg);                            \
		int64_t start = cprof_wait_now();                                    \
		int result;                                                          \
		CPROF_WAIT_PUBLISHED(result, real_##name(fd, cmd, arg),              \
				     (uintptr_t)cprof_self_##name, start);           \
		cprof_block_wait((uintptr_t)cprof_self_##name, cprof_wait_now() - start); \
		return result;                                                       \
	}

FCNTL(fcntl)
FCNTL(fcntl64)

/* Sockets. */
BLOCKING(ssize_t, recv, (int fd, void *buf, size_t n, int flags), (fd, buf, n, flags))
BLOCKING(ssize_t, recvfrom,
	 (int fd, void *__restrict buf, size_t n, int flags, __SOCKADDR_ARG addr,
	  socklen_t *__restrict len),
	 (fd, buf, n, flags, addr, len))
BLOCKING(ssize_t, recvmsg, (int fd, struct msghdr *msg, int flags), (fd, msg, flags))
BLOCKING(int, recvmmsg,
	 (int fd, struct mmsghdr *v, unsigned int n, int flags, struct timespec *timeout),
	 (fd, v, n, flags, timeout))
BLOCKING(ssize_t, send, (int fd, const void *buf, size_t n, int flags), (fd, buf, n, flags))
BLOCKING(ssize_t, sendto,
	 (int fd, const void *buf, size_t n, int flags, __CONST_SOCKADDR_ARG addr, socklen_t len),
	 (fd, buf, n, flags, addr, len))
BLOCKING(ssize_t, sendmsg, (int fd, const struct msghdr *msg, int flags), (fd, msg, flags))
BLOCKING(int, sendmmsg, (int fd, struct mmsghdr *v, unsigned int n, int flags),
	 (fd, v, n, flags))
BLOCKING(int, accept, (int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len), (fd, addr, len))
BLOCKING(int, accept4, (int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len, int flags),
	 (fd, addr, len, flags))
BLOCKING(int, connect, (int fd, __CONST_SOCKADDR_ARG addr, socklen_t len), (fd, addr, len))

/* Waiting for any of several descriptors. */
BLOCKING(int, poll, (struct pollfd *fds, nfds_t n, int timeout), (fds, n, timeout))
BLOCKING(int, ppoll,
	 (struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask),
	 (fds, n, timeout, mask))
BLOCKING(int, select,
	 (int n, fd_set *__restrict r, fd_set *__restrict w, fd_set *__restrict e,
	  struct timeval *__restrict timeout),
	 (n, r, w, e, timeout))
BLOCKING(int, pselect,
	 (int n, fd_set *__restrict r, fd_set *__restrict w, fd_set *__restrict e,
	  const struct timespec *__restrict timeout, const sigset_t *__restrict mask),
	 (n, r, w, e, timeout, mask))
BLOCKING(int, epoll_wait, (int ep, struct epoll_event *ev, int n, int timeout),
	 (ep, ev, n, timeout))
BLOCKING(int, epoll_pwait,
	 (int ep, struct epoll_event *ev, int n, int timeout, const sigset_t *mask),
	 (ep, ev, n, timeout, mask))
BLOCKING(int, epoll_pwait2,
	 (int ep, struct epoll_event *ev, int n, const struct timespec *timeout,
	  const sigset_t *mask),
	 (ep, ev, n, timeout, mask))

/* Processes and signals. */
BLOCKING(pid_t, wait, (int *status), (status))
BLOCKING(pid_t, waitpid, (pid_t pid, int *status, int options), (pid, status, options))
BLOCKING(pid_t, wait4, (pid_t pid, int *status, int options, struct rusage *usage),
	 (pid, status, options, usage))
BLOCKING(int, waitid, (idtype_t type, id_t id, siginfo_t *info, int options),
	 (type, id, info, options))
/* The signal waits never wait for the CPU timer's signal (sigmask.c):
 * `set` loses it before the call. */
#define BLOCKING_SIGSET(ret, name, params, args)                                      \
	BLOCKING_TIMED(ret, name, params, args)                                      \
	CPROF_EXPORT CPROF_SIGSAFE ret name params                                   \
	{                                                                            \
		sigset_t filtered;                                                   \
		set = cprof_sigmask_filter(set, &filtered);                          \
		if (!cprof_waits_timed || cprof_thread.busy)                          \
			return real_##name args;                                     \
		return timed_##name args;                                            \
	}
BLOCKING_SIGSET(int, sigwait, (const sigset_t *__restrict set, int *__restrict sig), (set, sig))
BLOCKING_SIGSET(int, sigwaitinfo, (const sigset_t *__restrict set, siginfo_t *__restrict info),
		(set, info))
BLOCKING_SIGSET(int, sigtimedwait,
		(const sigset_t *__restrict set, siginfo_t *__restrict info,
		 const struct timespec *__restrict timeout),
		(set, info, timeout))

/* System V IPC. */
BLOCKING(ssize_t, msgrcv, (int id, void *msg, size_t n, long type, int flags),
	 (id, msg, n, type, flags))
BLOCKING(int, msgsnd, (int id, const void *msg, size_t n, int flags), (id, msg, n, flags))
BLOCKING(int, semop, (int id, struct sembuf *ops, size_t n), (id, ops, n))
BLOCKING(int, semtimedop, (int id, struct sembuf *ops, size_t n, const struct timespec *timeout),
	 (id, ops, n, timeout))

/* Threads: joins, semaphores, barriers. */
BLOCKING(int, pthread_join, (pthread_t t, void **ret), (t, ret))
BLOCKING(int, pthread_timedjoin_np, (pthread_t t, void **ret, const struct timespec *abstime),
	 (t, ret, abstime))
BLOCKING(int, pthread_clockjoin_np,
	 (pthread_t t, void **ret, clockid_t clock, const struct timespec *abstime),
	 (t, ret, clock, abstime))
BLOCKING(int, sem_wait, (sem_t *s), (s))
BLOCKING(int, sem_timedwait, (sem_t *__restrict s, const struct timespec *__restrict abstime),
	 (s, abstime))
BLOCKING(int, sem_clockwait, (sem_t *s, clockid_t clock, const struct timespec *abstime),
	 (s, clock, abstime))
BLOCKING(int, pthread_barrier_wait, (pthread_barrier_t *b), (b))

/* Condition variables. pthread_cond_wait releases the mutex inside libc,
 * where the unlock wrapper cannot see it: it tells the mutex profile
 * itself, as an unlock would. The default versions of the timed and
 * untimed waits are GLIBC_2.3.2, and that is what is forwarded to
 * (dlvsym): the GLIBC_2.2.5 ones take another condvar layout. (A binary
 * linked against those, from before 2003, would reach these wrappers too:
 * not supported.) */
#define COND_WAIT(name, version, params, args)                                        \
	CPROF_NEXT_VERSIONED(int, name, version, params, args)                       \
	CPROF_WAIT_SELF(name);                                                       \
	CPROF_EXPORT int name params                                                 \
	{                                                                            \
		if (!cprof_locks_on || cprof_thread.busy)                            \
			return real_##name args;                                     \
		if (cprof_mutex_on)                                                  \
			cprof_mutex_releasing(m, (uintptr_t)cprof_self_##name);      \
		if (!cprof_waits_timed)                                              \
			return real_##name args;                                     \
		int64_t start = cprof_wait_now();                                    \
		int result;                                                          \
		CPROF_WAIT_PUBLISHED(result, real_##name args, (uintptr_t)cprof_self_##name, \
				     start);                                         \
		cprof_block_wait((uintptr_t)cprof_self_##name, cprof_wait_now() - start); \
		return result;                                                       \
	}

COND_WAIT(pthread_cond_wait, "GLIBC_2.3.2", (pthread_cond_t *c, pthread_mutex_t *m), (c, m))
COND_WAIT(pthread_cond_timedwait, "GLIBC_2.3.2",
	  (pthread_cond_t *__restrict c, pthread_mutex_t *__restrict m,
	   const struct timespec *__restrict abstime),
	  (c, m, abstime))
COND_WAIT(pthread_cond_clockwait, NULL,
	  (pthread_cond_t *__restrict c, pthread_mutex_t *__restrict m, clockid_t clock,
	   const struct timespec *__restrict abstime),
	  (c, m, clock, abstime))
