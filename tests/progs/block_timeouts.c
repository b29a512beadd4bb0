/* Transparency of the lock and blocking-call wrappers: return values,
 * errno, timeouts, EINTR and cancellation points, printed one per line so
 * that the output under the shim can be compared with the output without
 * it, byte for byte. Every timed wait below times out (ETIMEDOUT, or 0 /
 * EAGAIN where that is the call's way of saying so) and must not return
 * before its deadline. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_NS 30000000 /* 30 ms */

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t held_rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t cond_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_signalled = PTHREAD_COND_INITIALIZER;
static sem_t never_posted;
static int ready_pipe[2], go_pipe[2];

static int64_t now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct timespec deadline(clockid_t clock)
{
	int64_t t = now_ns(clock) + TIMEOUT_NS;
	struct timespec ts = { t / 1000000000, t % 1000000000 };
	return ts;
}

/* "name: rc=R errno=E waited=yes|no" where waited says the call did not
 * return before its timeout. */
static void report(const char *name, long rc, int err, int64_t start, int waits)
{
	int64_t took = now_ns(CLOCK_MONOTONIC) - start;
	printf("%s: rc=%ld errno=%s", name, rc, err ? strerrorname_np(err) : "0");
	if (waits)
		printf(" waited=%s", took >= TIMEOUT_NS - 1000000 ? "yes" : "no");
	printf("\n");
}

/* Another thread holds `held` and `held_rw` (write) until told. */
static void *holder(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&held);
	pthread_rwlock_wrlock(&held_rw);
	char c;
	if (write(ready_pipe[1], "h", 1) != 1 || read(go_pipe[0], &c, 1) != 1)
		abort();
	pthread_rwlock_unlock(&held_rw);
	pthread_mutex_unlock(&held);
	return NULL;
}

static void timeouts(void)
{
	int64_t t;
	struct timespec d;
	int rc;

	t = now_ns(CLOCK_MONOTONIC);
	d = deadline(CLOCK_REALTIME);
	rc = pthread_mutex_timedlock(&held, &d);
	report("pthread_mutex_timedlock", rc, 0, t, 1);

	t = now_ns(CLOCK_MONOTONIC);
	d = deadline(CLOCK_MONOTONIC);
	rc = pthread_mutex_clocklock(&held, CLOCK_MONOTONIC, &d);
	report("pthread_mutex_clocklock", rc, 0, t, 1);

	t = now_ns(CLOCK_MONOTONIC);
	d = deadline(CLOCK_REALTIME);
	rc = pthread_rwlock_timedrdlock(&held_rw, &d);
	report("pthread_rwlock_timedrdlock", rc, 0, t, 1);

	t = now_ns(CLOCK_MONOTONIC);
	d = deadline(CLOCK_REALTIME);
	rc = pthread_rwlock_timedwrlock(&held_rw, &d);
	report("pthread_rwlock_timedwrlock", rc, 0, t, 1);

	t = now_ns(CLOCK_MONOTONIC);
	d = deadline(CLOCK_MONOTONIC);
	rc = pthread_rwlock_clockwrlock(&held_rw, CLOCK_MONOTONIC, &d);
	report("pthread_rwlock_clockwrlock", rc, 0, t, 1);

	pthread_mutex_lock(&cond_lock);
	t = now_ns(CLOCK_MONOTONIC);
	d = deadline(CLOCK_REALTIME);
	rc = pthread_cond_timedwait(&never_signalled, &cond_lock, &d);
	report("pthread_cond_timedwait", rc, 0, t, 1);
	t = now_ns(CLOCK_MONOTONIC);
	d = deadline(CLOCK_MONOTONIC);
	rc = pthread_cond_clockwait(&never_signalled, &cond_lock, CLOCK_MONOTONIC, &d);
	report("pthread_cond_clockwait", rc, 0, t, 1);
	/* The mutex is held again after the timeout. */
	printf("cond mutex held after timeout: %s\n",
	       pthread_mutex_trylock(&cond_lock) == EBUSY ? "yes" : "no");
	pthread_mutex_unlock(&cond_lock);

	t = now_ns(CLOCK_MONOTONIC);
	d = deadline(CLOCK_REALTIME);
	errno = 0;
	rc = sem_timedwait(&never_posted, &d);
	report("sem_timedwait", rc, errno, t, 1);
	t = now_ns(CLOCK_MONOTONIC);
	d = deadline(CLOCK_MONOTONIC);
	errno = 0;
	rc = sem_clockwait(&never_posted, CLOCK_MONOTONIC, &d);
	report("sem_clockwait", rc, errno, t, 1);

	t = now_ns(CLOCK_MONOTONIC);
	rc = poll(NULL, 0, TIMEOUT_NS / 1000000);
	report("poll", rc, 0, t, 1);

	int ep = epoll_create1(0);
	struct epoll_event ev;
	t = now_ns(CLOCK_MONOTONIC);
	rc = epoll_wait(ep, &ev, 1, TIMEOUT_NS / 1000000);
	report("epoll_wait", rc, 0, t, 1);
	close(ep);

	struct timeval tv = { 0, TIMEOUT_NS / 1000 };
	t = now_ns(CLOCK_MONOTONIC);
	rc = select(0, NULL, NULL, NULL, &tv);
	report("select", rc, 0, t, 1);
	printf("select left timeout %ld.%06ld\n", (long)tv.tv_sec, (long)tv.tv_usec);

	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &usr2, NULL);
	struct timespec rel = { 0, TIMEOUT_NS };
	t = now_ns(CLOCK_MONOTONIC);
	errno = 0;
	rc = sigtimedwait(&usr2, NULL, &rel);
	report("sigtimedwait", rc, errno, t, 1);
	pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);

	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	struct timeval rcv = { 0, TIMEOUT_NS / 1000 };
	setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof rcv);
	char buf[8];
	t = now_ns(CLOCK_MONOTONIC);
	errno = 0;
	rc = (int)recv(sv[0], buf, sizeof buf, 0);
	report("recv SO_RCVTIMEO", rc, errno, t, 1);
	close(sv[0]);
	close(sv[1]);
}

static void errors(void)
{
	char c;
	int rc;
	errno = 0;
	rc = (int)read(-1, &c, 1);
	report("read bad fd", rc, errno, 0, 0);
	errno = 0;
	rc = (int)write(12345, &c, 1);
	report("write bad fd", rc, errno, 0, 0);
	int p[2];
	if (pipe(p))
		abort();
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	errno = 0;
	rc = (int)write(p[1], "x", 1);
	report("write closed pipe", rc, errno, 0, 0);
	close(p[1]);
	struct timespec bad = { 0, 2000000000 };
	errno = 0;
	rc = nanosleep(&bad, NULL);
	report("nanosleep bad", rc, errno, 0, 0);
	rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &bad, NULL);
	report("clock_nanosleep bad (returns the error)", rc, 0, 0, 0);
	errno = 0;
	rc = waitpid(-1, NULL, 0);
	report("waitpid no child", rc, errno, 0, 0);
	errno = 0;
	rc = poll(NULL, 0, 0);
	report("poll zero timeout", rc, errno, 0, 0);
	errno = 0;
	rc = usleep(0);
	report("usleep 0", rc, errno, 0, 0);
	errno = 0;
	rc = (int)sleep(0);
	report("sleep 0", rc, errno, 0, 0);

	pthread_mutexattr_t a;
	pthread_mutex_t m;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
	pthread_mutex_init(&m, &a);
	pthread_mutex_lock(&m);
	rc = pthread_mutex_lock(&m);
	report("errorcheck relock", rc, 0, 0, 0);
	rc = pthread_mutex_unlock(&m);
	report("errorcheck unlock", rc, 0, 0, 0);
	rc = pthread_mutex_unlock(&m);
	report("errorcheck unlock again", rc, 0, 0, 0);
	pthread_mutex_destroy(&m);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&m, &a);
	int r1 = pthread_mutex_lock(&m), r2 = pthread_mutex_lock(&m);
	int r3 = pthread_mutex_unlock(&m), r4 = pthread_mutex_trylock(&m);
	printf("recursive: %d %d %d %d\n", r1, r2, r3, r4);
	pthread_mutex_unlock(&m);
	pthread_mutex_unlock(&m);
	pthread_mutex_destroy(&m);
	pthread_mutexattr_destroy(&a);

	/* A timed lock with a bad deadline on a free mutex succeeds (the
	 * deadline is not looked at), on a held one it is EINVAL. */
	struct timespec bad_deadline = { 0, -5 };
	pthread_mutex_t fm = PTHREAD_MUTEX_INITIALIZER;
	rc = pthread_mutex_timedlock(&fm, &bad_deadline);
	report("timedlock free, bad deadline", rc, 0, 0, 0);
	rc = pthread_mutex_timedlock(&held, &bad_deadline);
	report("timedlock held, bad deadline", rc, 0, 0, 0);
	pthread_mutex_unlock(&fm);
}

/* ---- cancellation ----------------------------------------------------- */

static int cancel_pipe[2];
static sem_t cancel_sem;
static pthread_mutex_t cancel_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cancel_cond = PTHREAD_COND_INITIALIZER;
static volatile int reached;

static void unlock_cleanup(void *m)
{
	pthread_mutex_unlock(m);
}

static void *blocked_in(void *arg)
{
	const char *what = arg;
	char c;
	if (strcmp(what, "read") == 0) {
		(void)!read(cancel_pipe[0], &c, 1);
	} else if (strcmp(what, "nanosleep") == 0) {
		struct timespec ts = { 60, 0 };
		nanosleep(&ts, NULL);
	} else if (strcmp(what, "poll") == 0) {
		poll(NULL, 0, 60000);
	} else if (strcmp(what, "sem_wait") == 0) {
		sem_wait(&cancel_sem);
	} else if (strcmp(what, "pthread_cond_wait") == 0) {
		pthread_mutex_lock(&cancel_lock);
		pthread_cleanup_push(unlock_cleanup, &cancel_lock);
		for (;;)
			pthread_cond_wait(&cancel_cond, &cancel_lock);
		pthread_cleanup_pop(1);
	}
	reached = 1;
	return NULL;
}

/* The lock calls are not cancellation points: with a cancel pending, a
 * thread goes through all of them (contended ones included) and is
 * cancelled only at the next real cancellation point. */
static void *not_points(void *arg)
{
	(void)arg;
	pthread_cancel(pthread_self());
	struct timespec d = deadline(CLOCK_REALTIME);
	pthread_mutex_timedlock(&held, &d);   /* held elsewhere: waits, times out */
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&m);
	pthread_mutex_unlock(&m);
	pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
	pthread_rwlock_rdlock(&l);
	pthread_rwlock_unlock(&l);
	pthread_rwlock_wrlock(&l);
	pthread_rwlock_unlock(&l);
	reached = 1;
	pthread_testcancel();
	reached = 2;
	return NULL;
}

static void cancellation(void)
{
	const char *calls[] = { "read", "nanosleep", "poll", "sem_wait", "pthread_cond_wait" };
	if (pipe(cancel_pipe))
		abort();
	sem_init(&cancel_sem, 0, 0);
	for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
		pthread_t t;
		void *ret;
		reached = 0;
		pthread_create(&t, NULL, blocked_in, (void *)calls[i]);
		struct timespec ts = { 0, 20000000 };
		nanosleep(&ts, NULL);
		pthread_cancel(t);
		pthread_join(t, &ret);
		printf("cancel in %s: %s, returned: %s\n", calls[i],
		       ret == PTHREAD_CANCELED ? "cancelled" : "not cancelled",
		       reached ? "yes" : "no");
	}
	pthread_t t;
	void *ret;
	reached = 0;
	pthread_create(&t, NULL, not_points, NULL);
	pthread_join(t, &ret);
	printf("pending cancel through lock calls: reached %d, %s\n", reached,
	       ret == PTHREAD_CANCELED ? "cancelled at testcancel" : "not cancelled");
	printf("cancel_lock free: %s\n", pthread_mutex_trylock(&cancel_lock) == 0 ? "yes" : "no");
	pthread_mutex_unlock(&cancel_lock);
}

int main(void)
{
	sem_init(&never_posted, 0, 0);
	if (pipe(ready_pipe) || pipe(go_pipe))
		return 1;
	pthread_t h;
	pthread_create(&h, NULL, holder, NULL);
	char c;
	if (read(ready_pipe[0], &c, 1) != 1)
		return 1;
	timeouts();
	errors();
	cancellation();
	if (write(go_pipe[1], "x", 1) != 1)
		return 1;
	int rc = pthread_join(h, NULL);
	printf("join: %d\n", rc);
	struct timespec d = deadline(CLOCK_REALTIME);
	pthread_t self_join;
	pthread_create(&self_join, NULL, blocked_in, (void *)"nanosleep");
	rc = pthread_timedjoin_np(self_join, NULL, &d);
	printf("pthread_timedjoin_np: %s\n", rc == ETIMEDOUT ? "ETIMEDOUT" : "other");
	pthread_cancel(self_join);
	pthread_join(self_join, NULL);
	return 0;
}
