/* util.c — small pieces every file uses: the `cprof:` logger, clocks, the
 * per-thread state and the kind names.
 *
 * cprof_log is CPROF_SIGSAFE: it formats into a stack buffer and writes
 * with the raw write system call (below libcprof's own write wrapper and
 * any the program has); no malloc, no stdio, errno preserved. The dumper
 * thread has a descriptor table of its own with no stderr in it: there it
 * borrows the program's stderr for the one line (pidfd_getfd: the same
 * open file, its offset, its flags) and closes it at once, so no copy
 * outlives the line and a reader of the program's stderr still sees EOF
 * when the program closes it.
 */
#include "cprof_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

__thread cprof_thread_t cprof_thread __attribute__((tls_model("initial-exec"))) = {
	.timer_slot = -1,
};

atomic_int cprof_running;
atomic_uint cprof_dump_kinds;
atomic_uint cprof_cpu_threads_not_sampled;
int64_t cprof_start_wall_ns;
uintptr_t cprof_self_text_start, cprof_self_text_end;

const char *cprof_kind_name(cprof_kind_t kind)
{
	return (unsigned)kind < CPROF_KIND_COUNT ? cprof_sources[kind].name : "?";
}

bool cprof_dir_each(int dir, bool (*fn)(int dir, const char *name, void *ctx), void *ctx)
{
	char buf[8192];
	for (;;) {
		long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
		if (n <= 0)
			return true;
		for (long off = 0; off < n;) {
			struct {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (void *)(buf + off);
			off += d->reclen;
			if (!fn(dir, d->name, ctx))
				return false;
		}
	}
}

CPROF_SIGSAFE pid_t cprof_gettid(void)
{
	pid_t tid = cprof_thread.tid;
	return tid ? tid : (pid_t)syscall(SYS_gettid);
}

CPROF_SIGSAFE int64_t cprof_now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts); /* vDSO for the clocks we use */
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct {
	char *p, *end;
} log_buf_t;

static void put_char(log_buf_t *b, char c)
{
	if (b->p < b->end)
		*b->p++ = c;
}

static void put_str(log_buf_t *b, const char *s)
{
	if (!s)
		s = "(null)";
	while (*s)
		put_char(b, *s++);
}

static void put_unsigned(log_buf_t *b, unsigned long v, unsigned base)
{
	char digits[24];
	int n = 0;
	do {
		digits[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n)
		put_char(b, digits[--n]);
}

int cprof_log_fd = -1;

/* The descriptor the line goes to; *borrowed when it must be closed. */
static int log_fd(bool *borrowed)
{
	*borrowed = false;
	if (cprof_log_fd >= 0)
		return cprof_log_fd;
	if (!cprof_thread.private_files)
		return STDERR_FILENO;
	long pidfd = syscall(SYS_pidfd_open, getpid(), 0);
	long fd = pidfd >= 0 ? syscall(SYS_pidfd_getfd, (int)pidfd, STDERR_FILENO, 0) : -1;
	if (pidfd >= 0)
		syscall(SYS_close, (int)pidfd);
	if (fd < 0) /* an older kernel: the same file, opened again */
		fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/fd/2",
			     O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	*borrowed = fd >= 0;
	return (int)fd;
}

CPROF_SIGSAFE void cprof_log(const char *fmt, ...)
{
	int saved_errno = errno;
	char line[512];
	log_buf_t b = { line, line + sizeof line - 1 };
	va_list ap;

	put_str(&b, "cprof: ");
	va_start(ap, fmt);
	for (const char *f = fmt; *f; f++) {
		if (*f != '%') {
			put_char(&b, *f);
			continue;
		}
		int is_long = 0;
		f++;
		if (*f == 'l') {
			is_long = 1;
			f++;
		}
		switch (*f) {
		case 's':
			put_str(&b, va_arg(ap, const char *));
			break;
		case 'd': {
			long v = is_long ? va_arg(ap, long) : va_arg(ap, int);
			if (v < 0) {
				put_char(&b, '-');
				put_unsigned(&b, -(unsigned long)v, 10);
			} else {
				put_unsigned(&b, (unsigned long)v, 10);
			}
			break;
		}
		case 'u':
			put_unsigned(&b, is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 10);
			break;
		case 'x':
			put_unsigned(&b, is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 16);
			break;
		case '%':
			put_char(&b, '%');
			break;
		default:
			put_char(&b, '?');
			if (!*f)
				f--;
			break;
		}
	}
	va_end(ap);
	*b.p++ = '\n';
	ssize_t left = b.p - line;
	const char *p = line;
	bool borrowed;
	int fd = log_fd(&borrowed);
	while (fd >= 0 && left > 0) {
		ssize_t n = syscall(SYS_write, fd, p, (size_t)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		p += n;
		left -= n;
	}
	if (borrowed)
		syscall(SYS_close, fd);
	errno = saved_errno;
}
