/* dump.c — writing the profiles: the dumper thread, the dump child, file
 * names, atomic writes.
 *
 * A dump is cumulative since the start of the process (or the fork that
 * made it), so `pprof -base first second` shows the window between two.
 *
 * The dumper thread starts at the program's first pthread_create (or at
 * start-up for CPROF_DUMP_INTERVAL and CPROF_HTTP), so that a program
 * that never makes a thread stays single-threaded; until then every dump
 * but the exit's is written by a child process (see "the dump child"
 * below), and the exit dump starts the dumper then. Once it
 * runs, every dump runs on the dumper thread: on the dump signal, from
 * cprof_dump(), and the final one at exit (the exiting thread asks and
 * waits, bounded). Requests only set a bit and wake it (an atomic and a
 * futex wake, CPROF_SIGSAFE); requests that arrive while a dump runs
 * coalesce into one pending dump. The dumper blocks every signal, so the
 * program's signals never land on it, and works with the re-entrancy
 * guard held.
 *
 * Descriptors: the dumper calls unshare(CLONE_FILES) once and closes every
 * descriptor of its private table, so what libdw, zlib and the writes open
 * lives where the program cannot close, reuse or see it (a daemon's
 * closefrom(3), a thread that closes a number it believes is its own,
 * /proc/self/fd), and the dumper keeps no copy of the program's pipes or
 * sockets, whose readers would then never see EOF. The dumper does not
 * count as a thread for glibc's "last thread calls exit(0)": when the
 * program's last thread ends, the process ends as it would without us.
 *
 * Files: <out>/<program>.<pid>.<seq>.<kind>.pb.gz, mode 0600, written to
 * an anonymous O_TMPFILE (or, where the file system has none, a temporary
 * created exclusively under an unpredictable name), checked with fstat to
 * be ours and 0600, and given its name without replacing anything
 * (linkat, or renameat2 RENAME_NOREPLACE; a taken name moves to the next
 * sequence number), so no dump overwrites another process's or an earlier
 * one, no other user can own it, and no reader sees half a file. The
 * shim's own I/O is raw system calls, below its own wrappers and any the
 * program has. A failure costs one `cprof:` line and that dump.
 */
#include "cprof_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/single_threaded.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif
#ifndef O_TMPFILE
#define O_TMPFILE (020000000 | O_DIRECTORY)
#endif

/* Requests, coalesced: at most one dump of each is pending. */
enum { REQ_SIGNAL = 1, REQ_API = 2, REQ_FINAL = 4 };

static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER; /* one dump at a time */
/* Held by the dumper only where it calls into the loader (dl_iterate_phdr
 * for the mappings, dlopen of libdw at the first dump), and by fork: a
 * child must not inherit the loader's locks held. A dump in progress
 * otherwise never delays a fork. */
static pthread_mutex_t fork_gate = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint wake_count;        /* futex word: wake-ups so far */
static atomic_uint pending;           /* REQ_* bits not yet served */
static atomic_uint api_asked;         /* cprof_dump() calls so far */
static atomic_uint api_done;          /* futex word: the calls served */
static atomic_int api_result;         /* the last served dump's result */
static atomic_int dumper_running;
static atomic_int final_requested;
static atomic_uint final_done;         /* futex word */
static unsigned park_word;             /* the dumper waits here after the final dump */
static atomic_int dumper_claimed;      /* the dumper was started, or tried */
static char program_name[64];
static int names_pid;                  /* the pid in file names: this process's */
/* What a dump child (see "the dump child") hands back: a page shared with
 * it, made again in the child of a fork. */
typedef struct dump_shared {
	atomic_uint next_seq;
	atomic_int result;
} dump_shared_t;
static dump_shared_t shared_fallback;
static dump_shared_t *shared = &shared_fallback;
static atomic_long dump_child;         /* a dump child not yet reaped, 0 none */
/* glibc's count of live threads; when its last thread ends it calls
 * exit(0). The dumper takes itself off it. NULL when not found. */
static unsigned *nptl_nthreads;

static void set_program_name(void)
{
	/* program_invocation_short_name is set by libc before constructors;
	 * keep [A-Za-z0-9_-] so the name is safe in a glob. */
	const char *s = program_invocation_short_name;
	size_t n = 0;
	for (; s && *s && n < sizeof program_name - 1; s++) {
		char c = *s;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-';
		program_name[n++] = ok ? c : '_';
	}
	if (n == 0)
		program_name[n++] = 'p';
	program_name[n] = 0;
}

/* Raw system calls: 0 or -errno, errno kept for nobody. */
static long sys_ret(long rc)
{
	return rc < 0 ? -errno : rc;
}

/* mkdir -p; 0 or -errno. */
static int make_dirs(const char *path)
{
	char buf[sizeof cprof_config.out_dir];
	size_t len = strlen(path);
	if (len >= sizeof buf)
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p == '/' || *p == 0) {
			char saved = *p;
			*p = 0;
			if (syscall(SYS_mkdirat, AT_FDCWD, buf, 0755) != 0 && errno != EEXIST)
				return -errno;
			*p = saved;
			if (!saved)
				break;
		}
	}
	return 0;
}

static int write_all(int fd, const uint8_t *data, size_t len)
{
	while (len) {
		long n = syscall(SYS_write, fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static uint64_t unpredictable(void)
{
	uint64_t r = 0;
	if (syscall(SYS_getrandom, &r, sizeof r, 0x0001 /* GRND_NONBLOCK */) != (long)sizeof r)
		r = cprof_mix64((uint64_t)cprof_now_ns(CLOCK_MONOTONIC) ^
				((uint64_t)syscall(SYS_gettid) << 32));
	return r;
}

/* A new file for the profile that nobody else can have opened or named:
 * an anonymous O_TMPFILE in dir (tmp[0] == 0), else one created with
 * O_EXCL under an unpredictable name (written to tmp). fd or -errno. */
static int open_temporary(const char *dir, cprof_kind_t kind, char *tmp, size_t cap)
{
	tmp[0] = 0;
	long fd = syscall(SYS_openat, AT_FDCWD, dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd >= 0)
		return (int)fd;
	for (int tries = 0; tries < 100; tries++) {
		snprintf(tmp, cap, "%s/.%s.%d.%s.%016llx.tmp", dir, program_name, (int)getpid(),
			 cprof_kind_name(kind), (unsigned long long)unpredictable());
		fd = syscall(SYS_openat, AT_FDCWD, tmp,
			     O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0)
			return (int)fd;
		if (errno != EEXIST)
			break;
	}
	int err = -errno;
	tmp[0] = 0;
	return err;
}

/* What we are about to write is a regular file of ours, mode 0600, with
 * the links we made (none for O_TMPFILE, one for a named temporary). */
static int check_ours(int fd, bool named)
{
	struct stat st;
	if (syscall(SYS_fchmod, fd, 0600) != 0 || syscall(SYS_fstat, fd, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 07777) != 0600 ||
	    st.st_nlink != (named ? 1u : 0u))
		return -EPERM;
	return 0;
}

/* Names the written temporary `final_path` without replacing anything.
 * 0, -EEXIST (taken: try the next name) or -errno. */
static int publish(int fd, const char *tmp, const char *final_path)
{
	if (!tmp[0]) {
		/* /proc/thread-self: the dumper's descriptors are its own. */
		char proc[64];
		snprintf(proc, sizeof proc, "/proc/thread-self/fd/%d", fd);
		if (syscall(SYS_linkat, AT_FDCWD, proc, AT_FDCWD, final_path,
			    AT_SYMLINK_FOLLOW) == 0)
			return 0;
		if (errno == EEXIST)
			return -EEXIST;
		return sys_ret(syscall(SYS_linkat, fd, "", AT_FDCWD, final_path, AT_EMPTY_PATH));
	}
	if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, final_path, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	/* A file system without RENAME_NOREPLACE: link() also refuses to
	 * replace. */
	if (syscall(SYS_linkat, AT_FDCWD, tmp, AT_FDCWD, final_path, 0) != 0)
		return -errno;
	syscall(SYS_unlinkat, AT_FDCWD, tmp, 0);
	return 0;
}

/* Writes data under a name for (kind, *seq); moves *seq on while the name
 * is taken. 0 or -errno; on failure nothing is left behind. */
static int write_profile_file(cprof_kind_t kind, unsigned *seq, const uint8_t *data,
			      size_t len, char *final_path, size_t final_cap)
{
	const char *dir = cprof_config.out_dir;
	char tmp[sizeof cprof_config.out_dir + 128];
	int pid = names_pid;

	int fd = open_temporary(dir, kind, tmp, sizeof tmp);
	if (fd < 0)
		return fd;
	int err = check_ours(fd, tmp[0] != 0);
	if (!err)
		err = write_all(fd, data, len);
	for (int tries = 0; !err; tries++, (*seq)++) {
		if (tries == 1000) {
			err = -EEXIST;
			break;
		}
		snprintf(final_path, final_cap, "%s/%s.%d.%04u.%s.pb.gz", dir, program_name, pid,
			 *seq, cprof_kind_name(kind));
		err = publish(fd, tmp, final_path);
		if (!err) {
			tmp[0] = 0; /* renamed or linked: nothing to remove */
			break;
		}
		if (err == -EEXIST)
			err = 0;
	}
	if (tmp[0])
		syscall(SYS_unlinkat, AT_FDCWD, tmp, 0);
	if (syscall(SYS_close, fd) != 0 && !err)
		err = -errno;
	return err;
}

/* The kinds a dump writes: every running source's, and for the final
 * dump only those that recorded something. Reads only: signal-safe. */
CPROF_SIGSAFE static unsigned dump_kinds(bool final)
{
	unsigned kinds = atomic_load(&cprof_dump_kinds);
	for (int k = 0; final && k < CPROF_KIND_COUNT; k++)
		if ((kinds & (1u << k)) && !cprof_source_any((cprof_kind_t)k))
			kinds &= ~(1u << k);
	return kinds;
}

int cprof_dump_write(const char *why, bool final)
{
	int first_err = 0;
	cprof_thread.busy++;
	pthread_mutex_lock(&dump_lock);

	unsigned kinds = dump_kinds(final);
	int err = kinds ? make_dirs(cprof_config.out_dir) : 0;
	if (err < 0) {
		cprof_log("cannot create the profile directory %s (%s); %s dump lost",
			  cprof_config.out_dir, strerror(-err), why);
		first_err = err;
		kinds = 0;
	}
	/* The loader's locks are taken under the fork gate (see fork_gate):
	 * libdw's dlopen (the first dump) and the mappings' walk. */
	cprof_symbolizer_t *sym = NULL;
	if (kinds) {
		pthread_mutex_lock(&fork_gate);
		cprof_symbolize_load();
		sym = cprof_symbolizer_new();
		pthread_mutex_unlock(&fork_gate);
	}
	if (kinds && !sym) {
		cprof_log("out of memory for symbols; %s dump lost", why);
		first_err = -ENOMEM;
		kinds = 0;
	}
	for (int k = 0; k < CPROF_KIND_COUNT; k++)
		if (kinds & (1u << k))
			cprof_pprof_want((cprof_kind_t)k, sym);
	unsigned seq = atomic_load(&shared->next_seq);
	int64_t now = cprof_now_ns(CLOCK_REALTIME);
	char failed[64] = ""; /* kinds lost, for the one line a dump may cost */
	for (int k = 0; k < CPROF_KIND_COUNT; k++) {
		if (!(kinds & (1u << k)))
			continue;
		uint8_t *data = NULL;
		size_t len = 0;
		char path[sizeof cprof_config.out_dir + 128];
		err = cprof_pprof_build((cprof_kind_t)k, sym, now, &data, &len);
		if (err == 0)
			err = write_profile_file((cprof_kind_t)k, &seq, data, len, path,
						 sizeof path);
		free(data);
		if (err < 0) {
			if (failed[0])
				strcat(failed, ",");
			strcat(failed, cprof_kind_name((cprof_kind_t)k));
			if (!first_err)
				first_err = err;
		}
	}
	if (failed[0])
		cprof_log("cannot write the %s profile to %s (%s); %s dump lost", failed,
			  cprof_config.out_dir, strerror(-first_err), why);
	/* The final dump on the dumper's thread ends with the process: its
	 * symbolizer (libdw's open files, in this thread's own descriptor
	 * table, and memory, still reachable for leak checkers) goes with
	 * it, 0.1 ms sooner than freed. */
	static cprof_symbolizer_t *kept_to_exit __attribute__((used));
	if (sym && final && cprof_thread.private_files)
		kept_to_exit = sym;
	else if (sym)
		cprof_symbolizer_free(sym);
	atomic_store(&shared->next_seq, seq + 1);

	pthread_mutex_unlock(&dump_lock);
	cprof_thread.busy--;
	return first_err;
}

static void futex_wake_all(void *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* Waits until *word != 0 (or, with `want`, until it reaches want), at
 * most timeout_ms. True when it did. */
CPROF_SIGSAFE static bool wait_until(atomic_uint *word, bool with_want, unsigned want,
				     int timeout_ms)
{
	int64_t deadline = cprof_now_ns(CLOCK_MONOTONIC) + (int64_t)timeout_ms * 1000000;
	for (;;) {
		unsigned v = atomic_load(word);
		if (with_want ? (int)(v - want) >= 0 : v != 0)
			return true;
		int64_t left = deadline - cprof_now_ns(CLOCK_MONOTONIC);
		if (left <= 0)
			return false;
		struct timespec ts = { left / 1000000000, left % 1000000000 };
		syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, v, &ts, NULL, 0);
	}
}

/* ---- the dump child -------------------------------------------------------
 * A program that never made a thread has no dumper (it would make the
 * program multi-threaded: glibc's single-thread shortcuts off, a second
 * entry in /proc/self/task, Python's fork warning). Its dumps, from the
 * dump signal, SIGTERM/SIGINT or cprof_dump(), are written by a child
 * process (the exit dump starts the dumper: nothing of the program runs
 * after it, and a thread starts in microseconds where the clone copies
 * the page tables, 25 ms a GiB resident; a child only when no thread can
 * be had): a raw clone with no exit signal (no SIGCHLD; the
 * program's wait(-1) and waitpid(-1) never see it, only __WALL or __WCLONE
 * would), which writes from its copy of memory, the parent's stack table
 * as it was at the request. It works from a signal handler: the child's
 * allocations come from a private heap (cprof_heap_private), not from an
 * allocator whose lock the interrupted thread may hold; its mutexes are
 * made anew; it keeps no descriptor of the program's but stderr (moved
 * off 2, for its `cprof:` lines), so no pipe reader waits for it. What it cannot avoid
 * is the loader's lock (libdw's dlopen, the mappings' walk): held at the
 * moment of the request (a signal inside dlopen, or inside a C++ throw's
 * dl_iterate_phdr), the child waits for it for ever; an interval timer
 * ends it at its deadline, and the parent kills it at its own, with one
 * `cprof:` line: that dump is lost, never the program. The file names
 * carry the parent's pid; the next sequence number and the result come
 * back through a shared page. The parent waits for the child of a
 * terminating signal and of cprof_dump(), not for a dump signal's: that child is reaped (and a later request waits for it) at
 * the next request, the first thread, exec or exit. A dump child is a
 * fork without the copy of memory: the parent pays the copy of its page
 * tables (tens of microseconds a hundred MiB), and the pages it writes
 * while the child lives. */

#define CHILD_SIGNAL_MS 30000

static void prune_dumps(void);

CPROF_SIGSAFE static int64_t ms_from_now(int ms)
{
	return cprof_now_ns(CLOCK_MONOTONIC) + (int64_t)ms * 1000000;
}

CPROF_SIGSAFE static const char *errname(int err)
{
	const char *name = strerrorname_np(err);
	return name ? name : "?";
}

/* The child: writes the dump and ends. Never returns. */
CPROF_SIGSAFE __attribute__((noreturn)) static void child_main(const char *why, bool final,
								int timeout_ms)
{
	cprof_thread.busy = 1 << 20; /* nothing here is the program's */
	cprof_thread.private_files = 0;
	cprof_heap_private();
	pthread_mutex_init(&dump_lock, NULL);
	pthread_mutex_init(&fork_gate, NULL);
	/* Bounded by itself too: SIGALRM, at its default action, is the one
	 * signal unblocked. */
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	real_sigaction(SIGALRM, &dfl, NULL);
	struct itimerval deadline = { { 0, 0 }, { timeout_ms / 1000, (timeout_ms % 1000) * 1000 } };
	syscall(SYS_setitimer, ITIMER_REAL, &deadline, NULL);
	uint64_t alarm_bit = 1ULL << (SIGALRM - 1);
	syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &alarm_bit, NULL, sizeof alarm_bit);
	/* No copy of the program's descriptors but stderr, and that one off
	 * 2, for the `cprof:` lines only: what libdw writes or opens through
	 * a program's own write() or open() reaches no stderr, as on the
	 * dumper thread. */
	syscall(SYS_close, 0);
	syscall(SYS_close, 1);
	if (syscall(SYS_close_range, 3, ~0U, 0) != 0) {
		long max = sysconf(_SC_OPEN_MAX);
		for (long fd = 3; fd < (max > 0 ? max : 1024); fd++)
			syscall(SYS_close, (int)fd);
	}
	long errfd = syscall(SYS_fcntl, 2, F_DUPFD_CLOEXEC, 3);
	/* No stderr (the program closed it): lines go nowhere, never to a
	 * file of the dump's that got descriptor 2. */
	cprof_log_fd = errfd >= 0 ? (int)errfd : 0x7fffffff;
	syscall(SYS_close, 2);
	int err = cprof_dump_write(why, final);
	prune_dumps();
	atomic_store(&shared->result, err);
	for (;;)
		syscall(SYS_exit_group, 0);
}

/* Starts a dump child; its pid or -errno. Every signal is blocked around
 * the clone, so none lands in the child before it has set itself up. */
CPROF_SIGSAFE static long spawn_child(const char *why, bool final, int timeout_ms)
{
	uint64_t all = ~0ULL, old = 0;
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof all);
	atomic_store(&shared->result, -ECHILD);
	/* Flags 0: a new process, no exit signal; the child runs on its copy
	 * of this stack and returns from the system call with 0. */
	long pid = syscall(SYS_clone, 0UL, 0UL, NULL, NULL, 0UL);
	int err = errno;
	if (pid == 0)
		child_main(why, final, timeout_ms);
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof old);
	return pid < 0 ? -err : pid;
}

/* How a dump child ended, for its one line when it did not by itself:
 * the signal that ended it (SIGALRM: its own deadline), or 0. */
static atomic_int child_end_signal;

/* Waits for dump child `pid` until `deadline` (CLOCK_MONOTONIC ns), then
 * kills it. True when it ended by itself, or is not ours to wait for (a
 * child process of the program's made without fork's handlers). */
CPROF_SIGSAFE static bool reap_child(long pid, int64_t deadline)
{
	int status = 0;
	int64_t start = cprof_now_ns(CLOCK_MONOTONIC);
	atomic_store(&child_end_signal, SIGKILL);
	for (;;) {
		long r = syscall(SYS_wait4, pid, &status, __WCLONE | WNOHANG, NULL);
		if (r == pid) {
			atomic_store(&child_end_signal, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
			return WIFEXITED(status);
		}
		if (r < 0 && errno != EINTR)
			return true;
		int64_t now = cprof_now_ns(CLOCK_MONOTONIC);
		if (r == 0 && now >= deadline)
			break;
		/* No signal comes at its end (no exit signal), so it is polled:
		 * finely while a dump is quick (a few ms), coarser after. */
		int64_t waited = now - start;
		struct timespec ts = { 0, waited < 20000000 ? 50000 : waited < 200000000 ? 500000 : 2000000 };
		syscall(SYS_nanosleep, &ts, NULL);
	}
	syscall(SYS_kill, pid, SIGKILL);
	while (syscall(SYS_wait4, pid, &status, __WCLONE, NULL) < 0 && errno == EINTR)
		;
	return false;
}

CPROF_SIGSAFE static void log_child_lost(const char *why)
{
	int sig = atomic_load(&child_end_signal);
	if (sig == SIGKILL || sig == SIGALRM)
		cprof_log("the %s dump did not finish in time (the loader's lock held at the "
			  "request?); it is lost", why);
	else
		cprof_log("the process writing the %s dump ended by signal %d; that dump is lost",
			  why, sig);
}

CPROF_SIGSAFE static void log_signal_child_lost(void)
{
	log_child_lost("signal");
}

/* A dump signal's child still out there: waited for at most wait_ms,
 * then stopped, and reaped. */
CPROF_SIGSAFE static void finish_signal_child(int wait_ms)
{
	long pid = atomic_exchange(&dump_child, 0);
	if (pid > 0 && !reap_child(pid, ms_from_now(wait_ms)))
		log_signal_child_lost();
}

/* A dump written by a child while the caller waits: 0, -errno, or
 * -ECHILD when no child could be started (errno-like *start_err then). */
CPROF_SIGSAFE static int child_dump(const char *why, bool final, int timeout_ms, int *start_err)
{
	*start_err = 0;
	int64_t deadline = ms_from_now(timeout_ms);
	/* A signal's dump still being written: half the time for it, the
	 * rest for this one (which holds all that one would). */
	finish_signal_child(timeout_ms / 2);
	timeout_ms = (int)((deadline - cprof_now_ns(CLOCK_MONOTONIC)) / 1000000);
	if (timeout_ms < 100)
		timeout_ms = 100;
	long pid = spawn_child(why, final, timeout_ms);
	if (pid < 0) {
		*start_err = (int)-pid;
		return -ECHILD;
	}
	if (!reap_child(pid, deadline + 200 * 1000000LL)) {
		log_child_lost(why);
		return -ETIMEDOUT;
	}
	return atomic_load(&shared->result);
}

CPROF_SIGSAFE void cprof_dump_before_exec(void)
{
	/* Not in a vfork child, which shares this memory: its pid differs. */
	if (atomic_load(&dump_child) && syscall(SYS_getpid) == names_pid) {
		int saved_errno = errno;
		finish_signal_child(5000);
		errno = saved_errno;
	}
}

CPROF_SIGSAFE static void request(unsigned what)
{
	int saved_errno = errno;
	atomic_fetch_or(&pending, what);
	atomic_fetch_add(&wake_count, 1);
	futex_wake_all(&wake_count);
	errno = saved_errno;
}

bool cprof_dump_thread_running(void)
{
	return atomic_load(&dumper_running) != 0;
}

void cprof_dump_kick(void)
{
	atomic_fetch_add(&wake_count, 1);
	futex_wake_all(&wake_count);
}

CPROF_SIGSAFE void cprof_dump_request(void)
{
	if (atomic_load(&dumper_running)) {
		request(REQ_SIGNAL);
		return;
	}
	/* No dumper: a child writes it, and the program runs on. While the
	 * child of an earlier signal still writes, this request is merged
	 * into that dump (the next one holds what it misses). */
	int saved_errno = errno;
	long old = atomic_load(&dump_child);
	if (old > 0) {
		int status = 0;
		long r = syscall(SYS_wait4, old, &status, __WCLONE | WNOHANG, NULL);
		if (r == 0) {
			errno = saved_errno;
			return;
		}
		if (!atomic_compare_exchange_strong(&dump_child, &old, 0)) {
			errno = saved_errno;
			return; /* another context took it meanwhile */
		}
		if (r == old && !WIFEXITED(status))
			log_signal_child_lost();
	}
	long pid = spawn_child("signal", false, CHILD_SIGNAL_MS);
	if (pid > 0)
		atomic_store(&dump_child, pid);
	else
		cprof_log("cannot start the process that writes the dump (%s); signal dump lost",
			  errname((int)-pid));
	errno = saved_errno;
}

CPROF_SIGSAFE void cprof_dump_final_from_signal(int timeout_ms)
{
	if (!atomic_load(&dumper_running)) {
		if (atomic_exchange(&final_requested, 1))
			return;
		int saved_errno = errno;
		atomic_store(&cprof_running, 0);
		int start_err = 0;
		if (dump_kinds(true) && child_dump("final", true, timeout_ms, &start_err) == -ECHILD &&
		    start_err)
			cprof_log("cannot start the process that writes the final dump (%s); it is "
				  "lost", errname(start_err));
		errno = saved_errno;
		return;
	}
	atomic_store(&final_requested, 1);
	request(REQ_FINAL);
	int saved_errno = errno;
	wait_until(&final_done, false, 0, timeout_ms);
	errno = saved_errno;
}

/* The dumper's own descriptor table, empty: nothing it opens from now on
 * is in the program's, and it holds none of the program's. */
static void private_descriptors(void)
{
	if (syscall(SYS_unshare, CLONE_FILES) != 0) {
		cprof_log("cannot give the dumper thread its own descriptors (%s); its files "
			  "are opened among the program's", strerror(errno));
		return;
	}
	cprof_thread.private_files = 1;
	if (syscall(SYS_close_range, 0, ~0U, 0) != 0) {
		long max = sysconf(_SC_OPEN_MAX);
		for (long fd = 0; fd < (max > 0 ? max : 1024); fd++)
			syscall(SYS_close, (int)fd);
	}
}

/* ---- CPROF_KEEP: this process's oldest dumps go ----------------------- */

/* The sequence number of `name` if it is one of this process's profiles
 * (<program>.<pid>.<seq>.<kind>.pb.gz), else -1. */
static long own_profile_seq(const char *name, const char *prefix, size_t prefix_len)
{
	if (strncmp(name, prefix, prefix_len) != 0)
		return -1;
	const char *p = name + prefix_len;
	char *end;
	errno = 0;
	long seq = strtol(p, &end, 10);
	if (end == p || *end != '.' || errno || seq < 0)
		return -1;
	size_t len = strlen(end);
	if (len < 8 || strcmp(end + len - 6, ".pb.gz") != 0)
		return -1;
	return seq;
}

static int compare_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return x < y ? -1 : x > y;
}

typedef struct prune {
	const char *prefix;
	size_t prefix_len;
	long *seqs;
	size_t nseqs, cap;
	long threshold; /* second pass: files of sequences below it go */
} prune_t;

/* First pass: this process's sequence numbers; false when out of memory. */
static bool prune_collect(int dir, const char *name, void *ctx)
{
	(void)dir;
	prune_t *p = ctx;
	long seq = own_profile_seq(name, p->prefix, p->prefix_len);
	if (seq < 0)
		return true;
	if (p->nseqs == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 64;
		long *grown = realloc(p->seqs, ncap * sizeof *p->seqs);
		if (!grown)
			return false;
		p->seqs = grown;
		p->cap = ncap;
	}
	p->seqs[p->nseqs++] = seq;
	return true;
}

static bool prune_unlink(int dir, const char *name, void *ctx)
{
	prune_t *p = ctx;
	long seq = own_profile_seq(name, p->prefix, p->prefix_len);
	if (seq >= 0 && seq < p->threshold)
		syscall(SYS_unlinkat, dir, name, 0);
	return true;
}

/* Deletes this process's dumps older than its newest cprof_config.keep
 * (a dump: every file of one sequence number). Raw system calls in the
 * dumper's own descriptor table; other processes' files are never
 * touched (the prefix holds the pid). */
static void prune_dumps(void)
{
	unsigned keep = cprof_config.keep;
	if (!keep)
		return;
	char prefix[96];
	int prefix_len = snprintf(prefix, sizeof prefix, "%s.%d.", program_name, names_pid);
	if (prefix_len <= 0 || (size_t)prefix_len >= sizeof prefix)
		return;
	int dir = (int)syscall(SYS_openat, AT_FDCWD, cprof_config.out_dir,
			       O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return;
	/* Two passes over the directory: the sequence numbers, then the
	 * files of those that go. */
	prune_t p = { .prefix = prefix, .prefix_len = (size_t)prefix_len };
	if (cprof_dir_each(dir, prune_collect, &p) && p.nseqs > keep) {
		qsort(p.seqs, p.nseqs, sizeof *p.seqs, compare_long);
		size_t distinct = 0;
		for (size_t i = 0; i < p.nseqs; i++)
			if (i == 0 || p.seqs[i] != p.seqs[i - 1])
				p.seqs[distinct++] = p.seqs[i];
		if (distinct > keep) {
			p.threshold = p.seqs[distinct - keep]; /* the oldest kept */
			syscall(SYS_lseek, dir, 0, SEEK_SET);
			cprof_dir_each(dir, prune_unlink, &p);
		}
	}
	free(p.seqs);
	syscall(SYS_close, dir);
}

static void *dumper_main(void *arg)
{
	(void)arg;
	cprof_thread.busy = 1; /* nothing this thread does is the program's */
	private_descriptors();
	/* This thread's malloc arena, made accessible once: a dump's 300 KiB
	 * or so (libdw, the profile) otherwise grow it by one mprotect call
	 * per few KiB, about 25 at the exit benchmark's dump. Three blocks
	 * under glibc's mmap threshold (128 KiB) come from the arena; freed,
	 * glibc trims them with one madvise and keeps the range accessible,
	 * so growing into it again needs no system call. Untouched, they cost
	 * no memory. */
	void *volatile grow[3]; /* volatile: not optimised away */
	for (int i = 0; i < 3; i++)
		grow[i] = malloc(100 * 1024);
	for (int i = 2; i >= 0; i--)
		free(grow[i]);
	finish_signal_child(CHILD_SIGNAL_MS + 1000); /* one dump at a time: a child's, then ours */
	unsigned seen = 0;
	/* CPROF_DUMP_INTERVAL: the next periodic dump is due at this
	 * CLOCK_MONOTONIC time (0: none); a request that wakes the dumper
	 * earlier does not move it. */
	int64_t interval = (int64_t)cprof_config.dump_interval_ns;
	int64_t due = interval ? cprof_now_ns(CLOCK_MONOTONIC) + interval : 0;
	for (;;) {
		unsigned now = atomic_load(&wake_count);
		bool periodic = false;
		if (now == seen) {
			/* New threads' CPU timers that are due (cpu.c); and when
			 * to look again. */
			int64_t t = cprof_now_ns(CLOCK_MONOTONIC);
			int64_t arm_next = cprof_cpu_arm_pending(t);
			int64_t wake = due && (!arm_next || due < arm_next) ? due : arm_next;
			if (!wake) {
				syscall(SYS_futex, &wake_count, FUTEX_WAIT_PRIVATE, now, NULL, NULL, 0);
				continue;
			}
			int64_t left = wake - t;
			if (left > 0) {
				struct timespec ts = { left / 1000000000, left % 1000000000 };
				syscall(SYS_futex, &wake_count, FUTEX_WAIT_PRIVATE, now, &ts, NULL, 0);
				continue;
			}
			if (!due || due > t) {
				continue;
			}
			periodic = true;
		}
		if (periodic) {
			due += interval;
			int64_t t = cprof_now_ns(CLOCK_MONOTONIC);
			if (due <= t) /* slept through several (a stopped process) */
				due = t + interval;
			if (atomic_load(&cprof_running)) {
				cprof_dump_write("periodic", false);
				prune_dumps();
			}
			continue;
		}
		seen = now;
		unsigned what = atomic_exchange(&pending, 0);
		if (what & REQ_FINAL) {
			atomic_store(&cprof_running, 0);
			cprof_cpu_stop();
			cprof_dump_write("final", true);
			prune_dumps();
			atomic_store(&dumper_running, 0); /* what asks later, waits for none */
			atomic_store(&final_done, 1);
			futex_wake_all(&final_done);
			/* Never returns: glibc does not count this thread, so
			 * its end must not be counted either. exit_group ends
			 * it. */
			for (;;)
				syscall(SYS_futex, &park_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		}
		if (!(what & (REQ_SIGNAL | REQ_API)))
			continue;
		/* Every cprof_dump() counted by now asked before this dump
		 * began: this dump answers it. */
		unsigned asked = atomic_load(&api_asked);
		int err = cprof_dump_write((what & REQ_API) ? "cprof_dump()" : "signal", false);
		prune_dumps();
		if (what & REQ_API) {
			atomic_store(&api_result, err);
			atomic_store(&api_done, asked);
			futex_wake_all(&api_done);
		}
	}
	return NULL;
}

/* A shim thread's first act: it is never in a threads snapshot. */
static void *shim_thread_main(void *fn)
{
	cprof_threads_shim_thread();
	return ((void *(*)(void *))fn)(NULL);
}

int cprof_thread_start_detached(void *(*fn)(void *))
{
	/* The raw call: the mask wrapper (sigmask.c) would keep the CPU
	 * signal unblocked, and this may run after the CPU profile hid it
	 * (the dumper starts at the program's first thread). */
	uint64_t all = ~0ULL, old = 0;
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof all);
	pthread_t thread;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int err = real_pthread_create(&thread, &attr, shim_thread_main, (void *)fn);
	pthread_attr_destroy(&attr);
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof old);
	return err;
}

static int start_dumper(void)
{
	int err = cprof_thread_start_detached(dumper_main);
	if (!err && nptl_nthreads)
		__atomic_fetch_sub(nptl_nthreads, 1, __ATOMIC_SEQ_CST);
	if (err)
		return -err;
	atomic_store(&dumper_running, 1);
	return 0;
}

void cprof_thread_uncount(void)
{
	if (!nptl_nthreads)
		return;
	/* If every program thread ended meanwhile, none of them called
	 * exit: this thread does, as glibc's last thread would. */
	if (__atomic_sub_fetch(nptl_nthreads, 1, __ATOMIC_SEQ_CST) == 0)
		exit(0);
}

/* The page shared with dump children; the static fallback (then the
 * dumper is started at once: a child could not hand its results back). */
static void map_shared(void)
{
	void *p = mmap(NULL, sizeof(dump_shared_t), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	shared = p == MAP_FAILED ? &shared_fallback : p;
}

/* The dumper is needed from the start: periodic dumps, the endpoint (a
 * thread of its own anyway), the threads profile (its snapshot asks the
 * program's threads from a thread of the shim's, which a child copy of
 * one thread cannot be), or no page to share with a dump child. */
static bool dumper_needed_now(void)
{
	return cprof_config.dump_interval_ns || cprof_config.http[0] ||
	       cprof_enabled(CPROF_KIND_THREADS) || shared == &shared_fallback;
}

static int start_dumper_once(void)
{
	if (atomic_exchange(&dumper_claimed, 1))
		return 0;
	int err = start_dumper();
	if (err < 0)
		cprof_log("cannot start the dumper thread (%s); dumps are written by a child "
			  "process", strerror(-err));
	return err;
}

int cprof_dump_init(void)
{
	set_program_name();
	names_pid = (int)syscall(SYS_getpid);
	nptl_nthreads = dlvsym(RTLD_DEFAULT, "__nptl_nthreads", "GLIBC_PRIVATE");
	map_shared();
	/* Threads already (made before this constructor, say by another
	 * preloaded library's): a dump child would copy a process whose other
	 * threads may hold locks it needs. (Not so in a fork child: one
	 * thread, and glibc's fork leaves its locks free.) */
	return dumper_needed_now() || !__libc_single_threaded ? start_dumper_once() : 0;
}

void cprof_dump_thread_coming(void)
{
	if (CPROF_LIKELY(atomic_load_explicit(&dumper_claimed, memory_order_relaxed)))
		return;
	cprof_thread.busy++; /* the dumper's stack and TLS are not the program's */
	start_dumper_once();
	cprof_thread.busy--;
}

/* The dumper writes the profiles while the caller waits: it exists and
 * the caller is not it. */
static bool use_dumper(void)
{
	return atomic_load(&dumper_running) && !cprof_thread.private_files;
}

int cprof_dump_wait(void)
{
	if (!atomic_load(&dumper_running) && !cprof_thread.private_files) {
		int start_err;
		int err = child_dump("cprof_dump()", false, 60000, &start_err);
		if (!start_err)
			return err;
	}
	if (!use_dumper())
		return cprof_dump_write("cprof_dump()", false);
	unsigned ticket = atomic_fetch_add(&api_asked, 1) + 1;
	request(REQ_API);
	if (!wait_until(&api_done, true, ticket, 60000))
		return -ETIMEDOUT;
	return atomic_load(&api_result);
}

/* At exit: the final dump, unless a terminating signal already wrote it.
 * The exiting thread waits for the dumper at most 30 s: a dumper that
 * cannot finish (this thread holds a lock it needs) costs the final
 * profile, not the exit. */
void cprof_dump_at_exit(void)
{
	if (atomic_exchange(&final_requested, 1))
		return;
	if (!atomic_load(&dumper_running) && !cprof_thread.private_files) {
		if (!dump_kinds(true)) {
			finish_signal_child(5000);
			return;
		}
		/* Nothing of the program runs after this: the dumper thread
		 * costs it nothing now, and starts in microseconds where a
		 * child pays the copy of the page tables (25 ms a GiB
		 * resident). A child when no thread can be had. */
		cprof_thread.busy++;
		start_dumper_once();
		cprof_thread.busy--;
		int start_err;
		if (!atomic_load(&dumper_running) &&
		    (child_dump("exit", true, 30000, &start_err) != -ECHILD || !start_err))
			return;
	}
	if (!use_dumper()) {
		cprof_dump_write("exit", true);
		return;
	}
	request(REQ_FINAL);
	if (!wait_until(&final_done, false, 0, 30000))
		cprof_log("the final dump did not finish within 30 s; the process exits without it");
}

void cprof_dump_atfork_prepare(void)
{
	pthread_mutex_lock(&fork_gate);
}

void cprof_dump_atfork_parent(void)
{
	pthread_mutex_unlock(&fork_gate);
}

void cprof_dump_atfork_child(void)
{
	/* A dump the parent's dumper was writing is not ours, nor any
	 * request pending there. */
	pthread_mutex_init(&dump_lock, NULL);
	pthread_mutex_init(&fork_gate, NULL);
	names_pid = (int)syscall(SYS_getpid);
	if (shared != &shared_fallback)
		munmap(shared, sizeof *shared); /* the parent's, shared with it */
	map_shared();
	atomic_store(&shared->next_seq, 0);
	atomic_store(&dump_child, 0); /* the parent's child is not ours */
	atomic_store(&pending, 0);
	atomic_store(&api_asked, 0);
	atomic_store(&api_done, 0);
	atomic_store(&final_requested, 0);
	atomic_store(&final_done, 0);
	atomic_store(&dumper_running, 0); /* the parent's is not ours */
	atomic_store(&wake_count, 0);
	atomic_store(&dumper_claimed, 0);
	if (dumper_needed_now())
		start_dumper_once();
}
