/* dump.c — writing the profiles: the dumper thread, file names, atomic
 * writes.
 *
 * A dump is cumulative since the start of the process (or the fork that
 * made it), so `pprof -base first second` shows the window between two.
 * Signals only wake the dumper (an atomic increment and a futex wake,
 * CPROF_SIGSAFE: no file descriptor, which a daemon's closefrom(3) could
 * close and reuse under us); it blocks every signal, so the program's signals never land on it, and it
 * symbolizes, builds, compresses and writes with the re-entrancy guard
 * held. Files: <out>/<program>.<pid>.<seq>.<kind>.pb.gz, mode 0600,
 * written to a hidden temporary name and renamed without replacing
 * anything (renameat2 RENAME_NOREPLACE; a taken name moves to the next
 * sequence number), so no dump overwrites another process's or an earlier
 * one, and no reader sees half a file. A failure costs one `cprof:` line
 * and that dump.
 */
#include "cprof_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif


static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint wake_count;        /* futex word: requests so far */
static atomic_int dumper_running;
static atomic_int final_requested;
static atomic_int final_done;          /* futex word */
static unsigned next_seq;
static char program_name[64];

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
			if (mkdir(buf, 0755) != 0 && errno != EEXIST)
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
		ssize_t n = write(fd, data, len);
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

/* Writes data under a name for (kind, *seq); moves *seq on while the name
 * is taken. 0 or -errno; on failure nothing is left behind. */
static int write_profile_file(cprof_kind_t kind, unsigned *seq, const uint8_t *data,
			      size_t len, char *final_path, size_t final_cap)
{
	const char *dir = cprof_config.out_dir;
	char tmp[sizeof cprof_config.out_dir + 128];
	int pid = getpid();

	snprintf(tmp, sizeof tmp, "%s/.%s.%d.%s.tmp", dir, program_name, pid,
		 cprof_kind_name(kind));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	int err = write_all(fd, data, len);
	if (close(fd) != 0 && !err)
		err = -errno;
	for (int tries = 0; !err && tries < 1000; tries++, (*seq)++) {
		snprintf(final_path, final_cap, "%s/%s.%d.%04u.%s.pb.gz", dir, program_name, pid,
			 *seq, cprof_kind_name(kind));
		if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, final_path,
			    RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EEXIST)
			continue;
		if (errno == EINVAL || errno == ENOSYS) {
			/* A file system without RENAME_NOREPLACE: link() also
			 * refuses to replace. */
			if (link(tmp, final_path) == 0) {
				unlink(tmp);
				return 0;
			}
			if (errno == EEXIST)
				continue;
		}
		err = -errno;
	}
	if (!err)
		err = -EEXIST;
	unlink(tmp);
	return err;
}

int cprof_dump_write(const char *why, bool final)
{
	int first_err = 0;
	cprof_thread.busy++;
	pthread_mutex_lock(&dump_lock);

	unsigned kinds = atomic_load(&cprof_dump_kinds);
	for (int k = 0; final && k < CPROF_KIND_COUNT; k++)
		if ((kinds & (1u << k)) && !cprof_stacks_any((cprof_kind_t)k))
			kinds &= ~(1u << k);
	int err = kinds ? make_dirs(cprof_config.out_dir) : 0;
	if (err < 0) {
		cprof_log("cannot create the profile directory %s (%s); %s dump lost",
			  cprof_config.out_dir, strerror(-err), why);
		first_err = err;
		kinds = 0;
	}
	cprof_symbolizer_t *sym = kinds ? cprof_symbolizer_new() : NULL;
	if (kinds && !sym) {
		cprof_log("out of memory for symbols; %s dump lost", why);
		first_err = -ENOMEM;
		kinds = 0;
	}
	unsigned seq = next_seq;
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
	if (sym)
		cprof_symbolizer_free(sym);
	next_seq = seq + 1;

	pthread_mutex_unlock(&dump_lock);
	cprof_thread.busy--;
	return first_err;
}

static void futex_wake_all(void *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

CPROF_SIGSAFE void cprof_dump_request(void)
{
	int saved_errno = errno;
	atomic_fetch_add(&wake_count, 1);
	futex_wake_all(&wake_count);
	errno = saved_errno;
}

CPROF_SIGSAFE void cprof_dump_final_from_signal(int timeout_ms)
{
	if (!atomic_load(&dumper_running))
		return;
	atomic_store(&final_requested, 1);
	cprof_dump_request();
	int64_t deadline = cprof_now_ns(CLOCK_MONOTONIC) + (int64_t)timeout_ms * 1000000;
	while (!atomic_load(&final_done)) {
		int64_t left = deadline - cprof_now_ns(CLOCK_MONOTONIC);
		if (left <= 0)
			break;
		struct timespec ts = { left / 1000000000, left % 1000000000 };
		syscall(SYS_futex, &final_done, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
	}
}

static void *dumper_main(void *arg)
{
	(void)arg;
	cprof_thread.busy = 1; /* nothing this thread does is the program's */
	unsigned seen = atomic_load(&wake_count);
	for (;;) {
		unsigned now = atomic_load(&wake_count);
		if (now == seen) {
			syscall(SYS_futex, &wake_count, FUTEX_WAIT_PRIVATE, now, NULL, NULL, 0);
			continue;
		}
		seen = now;
		if (atomic_load(&final_requested)) {
			atomic_store(&cprof_running, 0);
			cprof_cpu_stop();
			cprof_dump_write("final", true);
			atomic_store(&final_done, 1);
			futex_wake_all(&final_done);
			return NULL;
		}
		cprof_dump_write("signal", false);
	}
}

static int start_dumper(void)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t thread;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int err = real_pthread_create(&thread, &attr, dumper_main, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	atomic_store(&dumper_running, 1);
	return 0;
}

int cprof_dump_init(void)
{
	set_program_name();
	int err = start_dumper();
	if (err < 0)
		cprof_log("cannot start the dumper thread (%s); profiles are written at exit "
			  "only", strerror(-err));
	return err;
}

/* At exit: the final dump, unless a terminating signal already wrote it. */
void cprof_dump_at_exit(void)
{
	if (atomic_load(&final_requested))
		return;
	cprof_dump_write("exit", true);
}

void cprof_dump_atfork_prepare(void)
{
	/* No dump is half-done in the parent when the child is made. */
	pthread_mutex_lock(&dump_lock);
}

void cprof_dump_atfork_parent(void)
{
	pthread_mutex_unlock(&dump_lock);
}

void cprof_dump_atfork_child(void)
{
	pthread_mutex_init(&dump_lock, NULL);
	next_seq = 0;
	atomic_store(&final_requested, 0);
	atomic_store(&final_done, 0);
	atomic_store(&dumper_running, 0); /* the parent's is not ours */
	atomic_store(&wake_count, 0);
	start_dumper();
}
