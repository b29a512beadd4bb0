/* threads.c — the threads profile: at each dump, what every thread of the
 * process is doing now, counted by stack (Go's goroutine profile).
 *
 * Every pthread (and the main thread) has a fixed record in a table mapped
 * at start (THREAD_RECORDS, found by tid; taken in the pthread_create
 * trampoline, given back by the thread-key destructor). A snapshot runs on
 * a thread of the shim's (the dumper, or the endpoint's), which never
 * appear in it, and asks each thread listed in /proc/self/task for its
 * stack without any effect the program could see:
 *
 *  (a) a thread inside one of the shim's wrapped blocking calls (block.c,
 *      mutex.c) published at entry which call, since when, and the
 *      registers to unwind from (wait.h): it is unwound from those over a
 *      copy of its stack (process_vm_readv, so a stack that goes away
 *      costs an error, not a fault) and its sequence re-read; unchanged,
 *      the stack is right and the thread was never disturbed. Labels
 *      `wait` (the call) and `wait_ns`.
 *  (b) otherwise /proc/self/task/TID/syscall says where it is. Running,
 *      with the CPU profile's per-thread timers running: its own next
 *      expiry answers (the handler sees the record asked), which comes
 *      only while it runs, never as it goes to sleep; after TIMER_WAIT_NS
 *      without one it is examined again (it went to sleep: in a wrapper,
 *      a restartable call, or not). Blocked in a call the kernel restarts
 *      transparently after an SA_RESTART handler (futex without a
 *      timeout, read/write on a pipe, wait4, waitid, flock), or running
 *      with no timer: it is sent the hidden signal (the CPU timer's,
 *      which the program can neither block nor see; this profile takes
 *      it when the CPU profile is off), whose handler captures its stack
 *      into its record as a CPU sample would (a running thread that
 *      enters an EINTR-prone call in the microseconds before it lands
 *      sees EINTR: why the profile is off by default). Anything else (poll,
 *      epoll_wait, select, nanosleep, a futex with a timeout such as
 *      sem_timedwait's, a raw syscall(SYS_ppoll) ...) would return EINTR:
 *      never signalled, it is counted with its state, the system call as
 *      `wait`, and a best-effort stack unwound from the sp and pc that
 *      file gives (usually the call and its caller: the file gives no
 *      frame pointer), or [cprof: not reached] when even that fails.
 *
 * The dumper waits at most 100 ms in all for the signalled threads; those
 * that did not answer (a program's SA_ONSTACK handler holds the signal
 * blocked while it runs) count under [cprof: not reached] with their
 * names and state. A thread that ends meanwhile (tgkill ESRCH, its record
 * given back) is left out. Threads with no record (made with raw clone, or
 * before the constructor) are listed from /proc with their state and
 * [cprof: no stack].
 *
 * created_by: the pthread_create wrapper captures the creator's stack (at
 * most CREATED_DEPTH frames) into the new thread's record; it is written
 * as the root frames of every sample of that thread, under a
 * [cprof: created by] pseudo-frame, so a flame graph roots a pool's
 * threads at the code that made the pool (a label could not be drawn).
 *
 * Samples: one per distinct (stack, thread_name, state, wait, label set),
 * value threads/count; wait_ns is the longest wait of the group (the
 * oldest leaked thread is what one looks for).
 *
 * CPROF_SIGSAFE: cprof_threads_on_signal (from the hidden signal's
 * handler): it writes only its own record and a futex word.
 */
#include "wait.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define THREAD_RECORDS 8192
#define CREATED_DEPTH 8
#define ANSWER_WAIT_NS 100000000LL /* all signalled threads together */
#define TIMER_WAIT_NS 50000000LL   /* of which for running threads' CPU timers */
#define STACK_COPY (32 * 1024)     /* bytes of a published thread's stack copied */
#define SHIM_THREADS 8

typedef struct thread_record {
	cprof_wait_record_t wait;  /* the wrappers' part (wait.h) */
	_Atomic int tid;           /* 0: free */
	_Atomic uint32_t asked;    /* the snapshot generation asked ... */
	_Atomic uint32_t answered; /* ... and the one the handler answered */
	int depth;
	uint32_t labels;           /* at the answer */
	uintptr_t stack_lo, stack_hi;
	const cprof_thread_t *tls; /* the thread's cprof_thread */
	unsigned ncreated;
	uintptr_t created[CREATED_DEPTH];
	uintptr_t frames[];        /* max_depth, from the handler */
} thread_record_t;

static unsigned char *records;
static size_t record_bytes;
static atomic_int records_high;
static atomic_uint records_hint;
static atomic_int records_live;
static _Atomic uint32_t answers; /* futex word: handler answers so far */
static atomic_int shim_tids[SHIM_THREADS];

static thread_record_t *record_at(int i)
{
	return (thread_record_t *)(records + (size_t)i * record_bytes);
}

static thread_record_t *record_of(cprof_wait_record_t *w)
{
	return (thread_record_t *)((char *)w - offsetof(thread_record_t, wait));
}

/* ---- the pseudo-frames and the wrappers' names ------------------------- */

extern const cprof_wait_name_t __start_cprof_wait_name[] __attribute__((weak));
extern const cprof_wait_name_t __stop_cprof_wait_name[] __attribute__((weak));

const char *cprof_wait_name_of(uintptr_t entry)
{
	for (const cprof_wait_name_t *n = __start_cprof_wait_name; n && n < __stop_cprof_wait_name; n++)
		if ((uintptr_t)n->entry == entry)
			return n->name;
	return NULL;
}

/* ---- threads' lifecycle ------------------------------------------------ */

static int record_take(int tid)
{
	if (!records)
		return -1;
	unsigned start = atomic_load_explicit(&records_hint, memory_order_relaxed) % THREAD_RECORDS;
	for (unsigned n = 0; n < THREAD_RECORDS; n++) {
		int i = (int)((start + n) % THREAD_RECORDS);
		thread_record_t *r = record_at(i);
		int expected = 0;
		if (atomic_load_explicit(&r->tid, memory_order_relaxed) == 0 &&
		    atomic_compare_exchange_strong(&r->tid, &expected, tid)) {
			int high = atomic_load(&records_high);
			while (high < i + 1 && !atomic_compare_exchange_weak(&records_high, &high, i + 1))
				;
			atomic_store_explicit(&records_hint, (unsigned)i + 1, memory_order_relaxed);
			atomic_fetch_add(&records_live, 1);
			return i;
		}
	}
	return -1;
}

/* On the new thread (the trampoline), its stack bounds known. */
void cprof_threads_thread_start(const uintptr_t *created, unsigned ncreated)
{
	if (!cprof_threads_on || cprof_thread.wait)
		return;
	int i = record_take((int)cprof_gettid());
	if (i < 0)
		return;
	thread_record_t *r = record_at(i);
	cprof_unwind_stack_bounds(&r->stack_lo, &r->stack_hi);
	r->tls = &cprof_thread;
	r->ncreated = ncreated > CREATED_DEPTH ? CREATED_DEPTH : ncreated;
	if (r->ncreated)
		memcpy(r->created, created, r->ncreated * sizeof *created);
	r->depth = 0;
	atomic_store(&r->asked, atomic_load(&r->answered));
	cprof_thread.wait = &r->wait;
}

void cprof_threads_thread_exit(void)
{
	cprof_wait_record_t *w = cprof_thread.wait;
	if (!w)
		return;
	cprof_thread.wait = NULL;
	atomic_store(&record_of(w)->tid, 0);
	atomic_fetch_sub(&records_live, 1);
}

/* The creator's stack, for the new thread's created_by (pthread_create
 * wrapper, on the creating thread). */
unsigned cprof_threads_creator(uintptr_t *pcs, unsigned max)
{
	if (!cprof_threads_on || cprof_thread.busy)
		return 0;
	cprof_thread.busy++;
	int n = cprof_unwind_here(pcs, (int)max);
	cprof_thread.busy--;
	/* A short stack by design: no [cprof: truncated] at its root. */
	if (n > 0 && pcs[n - 1] == CPROF_FRAME_TRUNCATED)
		n--;
	return n > 0 ? (unsigned)n : 0;
}

void cprof_threads_shim_thread(void)
{
	int tid = (int)syscall(SYS_gettid);
	for (int i = 0; i < SHIM_THREADS; i++) {
		int expected = 0;
		if (atomic_compare_exchange_strong(&shim_tids[i], &expected, tid))
			return;
	}
}

static bool is_shim_thread(int tid)
{
	for (int i = 0; i < SHIM_THREADS; i++)
		if (atomic_load(&shim_tids[i]) == tid)
			return true;
	return false;
}

/* ---- the handler's part ------------------------------------------------- */

CPROF_SIGSAFE void cprof_threads_on_signal(void *ucontext)
{
	cprof_wait_record_t *w = cprof_thread.wait;
	if (!w)
		return;
	thread_record_t *r = record_of(w);
	uint32_t asked = atomic_load_explicit(&r->asked, memory_order_acquire);
	if (asked == atomic_load_explicit(&r->answered, memory_order_relaxed))
		return; /* not a snapshot's signal */
	ucontext_t *uc = ucontext;
	int max = (int)cprof_config.max_depth;
	if (cprof_thread.busy) {
		/* Inside libcprof: not unwound, as the CPU profile does. */
		r->frames[0] = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
		r->frames[1] = CPROF_FRAME_NOUNWIND;
		r->depth = max >= 2 ? 2 : 1;
	} else {
		cprof_thread.busy++;
		r->depth = cprof_unwind_signal(uc, r->frames, max);
		cprof_thread.busy--;
	}
	r->labels = cprof_thread.labels;
	atomic_store_explicit(&r->answered, asked, memory_order_release);
	atomic_fetch_add(&answers, 1);
	syscall(SYS_futex, &answers, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ---- reading /proc ------------------------------------------------------ */

/* The file's text (NUL-terminated), or -errno. Raw system calls: the
 * descriptor is in the calling shim thread's own table. */
static long read_proc(const char *path, char *buf, size_t cap)
{
	long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	long n = syscall(SYS_read, (int)fd, buf, cap - 1);
	int err = errno;
	syscall(SYS_close, (int)fd);
	if (n < 0)
		return -err;
	buf[n] = 0;
	return n;
}

/* stat: "tid (comm) S ...", comm may hold ')' and spaces. */
static bool read_stat(int tid, char *state, char comm[17])
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
	if (read_proc(path, buf, sizeof buf) <= 0)
		return false;
	char *open = strchr(buf, '('), *close = strrchr(buf, ')');
	if (!open || !close || close < open || close[1] != ' ')
		return false;
	size_t n = (size_t)(close - open - 1);
	if (n > 16)
		n = 16;
	memcpy(comm, open + 1, n);
	comm[n] = 0;
	*state = close[2];
	return true;
}

typedef struct in_syscall {
	bool running;      /* in user space */
	long nr;           /* -1: blocked outside a system call */
	unsigned long args[6], sp, pc;
} in_syscall_t;

static bool read_syscall(int tid, in_syscall_t *out)
{
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
	if (read_proc(path, buf, sizeof buf) <= 0)
		return false;
	memset(out, 0, sizeof *out);
	if (strncmp(buf, "running", 7) == 0) {
		out->running = true;
		return true;
	}
	char *p = buf, *end;
	out->nr = strtol(p, &end, 10);
	if (end == p)
		return false;
	p = end;
	if (out->nr < 0) {
		out->sp = strtoul(p, &end, 0);
		out->pc = strtoul(end, &end, 0);
		return true;
	}
	for (int i = 0; i < 6; i++, p = end)
		out->args[i] = strtoul(p, &end, 0);
	out->sp = strtoul(p, &end, 0);
	out->pc = strtoul(end, &end, 0);
	return true;
}

/* x86_64 numbers of the calls a thread is found waiting in. */
static const struct {
	long nr;
	const char *name;
} syscall_names[] = {
	{ 0, "read" }, { 1, "write" }, { 7, "poll" }, { 17, "pread64" }, { 18, "pwrite64" },
	{ 19, "readv" }, { 20, "writev" }, { 23, "select" }, { 34, "pause" },
	{ 35, "nanosleep" }, { 42, "connect" }, { 43, "accept" }, { 44, "sendto" },
	{ 45, "recvfrom" }, { 46, "sendmsg" }, { 47, "recvmsg" }, { 61, "wait4" },
	{ 65, "semop" }, { 69, "msgsnd" }, { 70, "msgrcv" }, { 72, "fcntl" }, { 73, "flock" },
	{ 128, "rt_sigtimedwait" }, { 130, "rt_sigsuspend" }, { 202, "futex" },
	{ 208, "io_getevents" }, { 219, "restart_syscall" }, { 220, "semtimedop" },
	{ 230, "clock_nanosleep" }, { 232, "epoll_wait" }, { 247, "waitid" },
	{ 270, "pselect6" }, { 271, "ppoll" }, { 281, "epoll_pwait" }, { 288, "accept4" },
	{ 299, "recvmmsg" }, { 307, "sendmmsg" }, { 441, "epoll_pwait2" }, { 449, "futex_waitv" },
};

static const char *syscall_name(long nr, char *buf, size_t cap)
{
	for (size_t i = 0; i < sizeof syscall_names / sizeof syscall_names[0]; i++)
		if (syscall_names[i].nr == nr)
			return syscall_names[i].name;
	snprintf(buf, cap, "syscall %ld", nr);
	return buf;
}

/* The descriptor `fd` of thread `tid` is a pipe. */
static bool is_pipe(int tid, unsigned long fd)
{
	char path[80], target[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/fd/%lu", tid, fd);
	long n = syscall(SYS_readlinkat, AT_FDCWD, path, target, sizeof target - 1);
	return n >= 5 && memcmp(target, "pipe:", 5) == 0;
}

/* A handler with SA_RESTART is invisible to a thread blocked in this call:
 * the kernel restarts it (ERESTARTSYS and kin). Everything not known to
 * be so is not signalled: poll, select, epoll, sleeps, signal waits, IPC,
 * a futex with a timeout (ERESTART_RESTARTBLOCK gives EINTR), and socket
 * calls (EINTR when the socket has a timeout). */
static bool restarts_transparently(int tid, const in_syscall_t *c)
{
	switch (c->nr) {
	case 202: { /* futex(uaddr, op, val, timeout, ...) */
		unsigned long op = c->args[1] & 127;
		return c->args[3] == 0 && (op == 0 /* WAIT */ || op == 9 /* WAIT_BITSET */ ||
					   op == 6 /* LOCK_PI */);
	}
	case 0: case 1: case 19: case 20: /* read, write, readv, writev */
		return is_pipe(tid, c->args[0]);
	case 61: case 247: case 73: /* wait4, waitid, flock */
		return true;
	default:
		return false;
	}
}

/* ---- the snapshot --------------------------------------------------------- */

enum { HOW_PUBLISHED, HOW_SIGNALLED, HOW_TIMER, HOW_UNSIGNALLED, HOW_NO_RECORD, HOW_GONE };

typedef struct task {
	int tid;
	int how;
	thread_record_t *rec;
	char state;
	char comm[17];
	const char *wait;        /* NULL: none */
	char wait_buf[32];
	int64_t wait_ns;         /* -1: none */
	uint32_t labels;
	unsigned depth;
	uintptr_t *frames;       /* max_depth + 2 + CREATED_DEPTH */
} task_t;

typedef struct group {
	char comm[17];
	const char *state;
	const char *wait;
	char wait_buf[32];
	int64_t wait_ns;
} group_t;

static pthread_mutex_t snapshot_lock = PTHREAD_MUTEX_INITIALIZER;
static cprof_stack_t **entries;
static group_t *groups;
static size_t nentries;
static uint32_t generation;
static atomic_uint last_total; /* threads in the last snapshot */
static int64_t last_ns;        /* how long it took */

static const char *state_name(char s)
{
	switch (s) {
	case 'R': return "running";
	case 'S': return "sleeping";
	case 'D': return "disk";
	case 'T': return "stopped";
	case 't': return "tracing stop";
	case 'Z': return "zombie";
	case 'X': return "dead";
	case 'I': return "idle";
	case 'P': return "parked";
	default: return "unknown";
	}
}

typedef struct task_list {
	int *tids;
	size_t count, cap;
} task_list_t;

static bool task_add(int dir, const char *name, void *ctx)
{
	(void)dir;
	task_list_t *l = ctx;
	int tid = atoi(name);
	if (tid <= 0 || is_shim_thread(tid))
		return true;
	if (l->count == l->cap) {
		int *grown = realloc(l->tids, l->cap * 2 * sizeof *l->tids);
		if (!grown)
			return false;
		l->tids = grown;
		l->cap *= 2;
	}
	l->tids[l->count++] = tid;
	return true;
}

/* tids of /proc/self/task, without the shim's own threads. */
static int *list_tasks(size_t *count)
{
	*count = 0;
	int dir = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/task",
			       O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return NULL;
	task_list_t l = { .tids = malloc(256 * sizeof(int)), .cap = 256 };
	if (l.tids && !cprof_dir_each(dir, task_add, &l)) {
		free(l.tids);
		l.tids = NULL;
		l.count = 0;
	}
	syscall(SYS_close, dir);
	*count = l.count;
	return l.tids;
}

/* A thread's cprof_thread from its own memory, through the kernel (the
 * thread may be gone: an error, not a fault). */
static bool read_tls(const thread_record_t *r, cprof_thread_t *t)
{
	struct iovec local = { t, sizeof *t };
	struct iovec remote = { (void *)r->tls, sizeof *t };
	return r->tls && syscall(SYS_process_vm_readv, (long)getpid(), &local, 1L, &remote, 1L,
				 0L) == (long)sizeof *t;
}

static uint32_t labels_of(const thread_record_t *r)
{
	cprof_thread_t t;
	return read_tls(r, &t) ? t.labels : 0;
}

/* Unwinds from regs over a copy of [regs[1], ...) of the thread's stack. */
static unsigned unwind_copy(const uintptr_t regs[8], uintptr_t lo, uintptr_t hi, void *copy,
			    uintptr_t *pcs, int max)
{
	uintptr_t sp = regs[1];
	if (!lo || sp <= lo || sp >= hi || max <= 0)
		return 0;
	size_t len = hi - sp < STACK_COPY ? hi - sp : STACK_COPY;
	struct iovec local = { copy, len };
	struct iovec remote = { (void *)sp, len };
	long got = syscall(SYS_process_vm_readv, (long)getpid(), &local, 1L, &remote, 1L, 0L);
	if (got <= 0)
		return 0;
	int n = cprof_unwind_remote(regs, lo, hi, copy, (size_t)got, pcs, max);
	return n > 0 ? (unsigned)n : 0;
}

/* (a): the thread is inside a wrapped call; its stack from what it
 * published, if it is still there after the copy. */
static bool try_published(task_t *t, void *copy, int max)
{
	thread_record_t *r = t->rec;
	uint32_t seq = atomic_load_explicit(&r->wait.seq, memory_order_acquire);
	if (!(seq & 1))
		return false;
	uintptr_t regs[8];
	memcpy(regs, r->wait.regs, sizeof regs);
	uintptr_t entry = r->wait.entry;
	int64_t start = r->wait.start;
	uint32_t labels = r->wait.labels;
	t->frames[0] = entry;
	unsigned n = unwind_copy(regs, r->stack_lo, r->stack_hi, copy, t->frames + 1, max - 1);
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&r->wait.seq, memory_order_relaxed) != seq || n == 0)
		return false;
	t->depth = 1 + n;
	t->how = HOW_PUBLISHED;
	t->wait = cprof_wait_name_of(entry);
	int64_t d = cprof_wait_now() - start;
	t->wait_ns = d > 0 ? d : 0;
	t->labels = labels;
	return true;
}

/* (b) not signalled: a best-effort stack from the sp and pc /proc gives,
 * kept only if the thread is still in the same call after the copy. */
static void unsignalled_stack(task_t *t, const in_syscall_t *c, void *copy, int max)
{
	t->depth = 0;
	if (t->rec && c->sp && c->pc) {
		uintptr_t regs[8] = { c->pc, c->sp };
		/* The pc follows the syscall instruction: as a return address
		 * it names the right function. */
		unsigned n = unwind_copy(regs, t->rec->stack_lo, t->rec->stack_hi, copy, t->frames,
					 max);
		in_syscall_t again;
		if (n && read_syscall(t->tid, &again) && again.nr == c->nr && again.sp == c->sp &&
		    again.pc == c->pc) {
			if (t->frames[0] == c->pc - 1)
				t->frames[0] = c->pc; /* the leaf is exact */
			t->depth = n;
		}
	}
	if (!t->depth) {
		t->frames[0] = CPROF_FRAME_NOT_REACHED;
		t->depth = 1;
	}
}

static void free_snapshot(void)
{
	for (size_t i = 0; i < nentries; i++)
		free(entries[i]);
	free(entries);
	free(groups);
	entries = NULL;
	groups = NULL;
	nentries = 0;
}

static bool same_entry(const cprof_stack_t *e, const group_t *g, const task_t *t, const char *state)
{
	if (e->depth != t->depth || e->labels != t->labels || strcmp(g->comm, t->comm) != 0 ||
	    g->state != state)
		return false;
	if ((g->wait == NULL) != (t->wait == NULL) || (g->wait && strcmp(g->wait, t->wait) != 0))
		return false;
	return memcmp(e->frames, t->frames, t->depth * sizeof(uintptr_t)) == 0;
}

/* Groups the tasks by (stack, name, state, wait, labels). Quadratic in
 * the groups with a hash in front: fine for thousands of threads. */
static int group_tasks(task_t *tasks, size_t n)
{
	entries = calloc(n ? n : 1, sizeof *entries);
	groups = calloc(n ? n : 1, sizeof *groups);
	uint64_t *hashes = calloc(n ? n : 1, sizeof *hashes);
	if (!entries || !groups || !hashes) {
		free(hashes);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		task_t *t = &tasks[i];
		if (t->how == HOW_GONE)
			continue;
		const char *state = state_name(t->state);
		uint64_t h = 0xcbf29ce484222325ULL ^ t->depth ^ ((uint64_t)t->labels << 32);
		for (unsigned k = 0; k < t->depth; k++)
			h = cprof_mix64(h ^ t->frames[k]);
		for (const char *c = t->comm; *c; c++)
			h = (h ^ (unsigned char)*c) * 0x100000001b3ULL;
		h ^= (uintptr_t)state;
		size_t j = 0;
		for (; j < nentries; j++)
			if (hashes[j] == h && same_entry(entries[j], &groups[j], t, state))
				break;
		if (j == nentries) {
			cprof_stack_t *e = calloc(1, sizeof *e + t->depth * sizeof(uintptr_t));
			if (!e) {
				free(hashes);
				return -ENOMEM;
			}
			e->kind = CPROF_KIND_THREADS;
			e->depth = t->depth;
			e->labels = t->labels;
			e->tag = j;
			memcpy(e->frames, t->frames, t->depth * sizeof(uintptr_t));
			group_t *g = &groups[j];
			memcpy(g->comm, t->comm, sizeof g->comm);
			g->state = state;
			if (t->wait == t->wait_buf) {
				memcpy(g->wait_buf, t->wait_buf, sizeof g->wait_buf);
				g->wait = g->wait_buf;
			} else {
				g->wait = t->wait;
			}
			g->wait_ns = -1;
			hashes[j] = h;
			entries[nentries++] = e;
		}
		atomic_fetch_add_explicit(&entries[j]->values[0], 1, memory_order_relaxed);
		if (t->wait_ns > groups[j].wait_ns)
			groups[j].wait_ns = t->wait_ns;
	}
	free(hashes);
	return 0;
}

typedef struct examine {
	void *copy;
	int max, pid, sig;
	uint32_t gen;
	bool timers; /* running threads may be left to their CPU timer */
} examine_t;

/* How to have t's stack, its stat read: 1 when an answer is awaited. */
static int examine(task_t *t, const examine_t *ex)
{
	t->wait = NULL;
	t->wait_ns = -1;
	if (t->rec && try_published(t, ex->copy, ex->max))
		return 0;
	if (!t->rec || t->state == 'Z' || t->state == 'X') {
		t->how = HOW_NO_RECORD;
		t->frames[0] = CPROF_FRAME_NO_STACK;
		t->depth = 1;
		return 0;
	}
	in_syscall_t c;
	bool known = read_syscall(t->tid, &c);
	if (known && !c.running && c.nr >= 0)
		t->wait = syscall_name(c.nr, t->wait_buf, sizeof t->wait_buf);
	bool stopped = t->state == 'T' || t->state == 't';
	cprof_thread_t tls;
	if (known && c.running && !stopped && ex->timers && read_tls(t->rec, &tls) &&
	    tls.timer_slot >= 0) {
		/* Running, with a CPU timer armed: its next expiry answers,
		 * a signal the CPU profile sends anyway, and only while the
		 * thread runs (not one that would land as it goes to sleep). */
		atomic_store_explicit(&t->rec->asked, ex->gen, memory_order_release);
		t->how = HOW_TIMER;
		t->depth = 0;
		return 1;
	}
	bool signal = known && !stopped && (c.running || restarts_transparently(t->tid, &c)) &&
		      ex->sig > 0;
	if (!signal) {
		t->how = HOW_UNSIGNALLED;
		t->labels = labels_of(t->rec);
		unsignalled_stack(t, &c, ex->copy, ex->max);
		return 0;
	}
	atomic_store_explicit(&t->rec->asked, ex->gen, memory_order_release);
	if (syscall(SYS_tgkill, ex->pid, t->tid, ex->sig) != 0) {
		t->how = HOW_GONE; /* ESRCH: it ended */
		return 0;
	}
	t->how = HOW_SIGNALLED;
	t->depth = 0;
	return 1;
}

static int snapshot(void)
{
	size_t ntids = 0;
	int *tids = list_tasks(&ntids);
	if (!tids)
		return -ENOMEM;
	int max = (int)cprof_config.max_depth;
	size_t frame_words = (size_t)max + 2 + CREATED_DEPTH;
	task_t *tasks = calloc(ntids ? ntids : 1, sizeof *tasks);
	uintptr_t *frames = calloc((ntids ? ntids : 1) * frame_words, sizeof *frames);
	void *copy = malloc(STACK_COPY);
	int err = tasks && frames && copy ? 0 : -ENOMEM;
	int pid = (int)getpid();
	int sig = cprof_sigmask_hidden();
	uint32_t gen = ++generation;
	if (!gen)
		gen = ++generation;

	/* tid -> record, for this snapshot. */
	int high = atomic_load(&records_high);
	for (size_t i = 0; !err && i < ntids; i++) {
		task_t *t = &tasks[i];
		t->tid = tids[i];
		t->frames = frames + i * frame_words;
		t->wait_ns = -1;
		for (int k = 0; k < high; k++)
			if (atomic_load_explicit(&record_at(k)->tid, memory_order_relaxed) == t->tid) {
				t->rec = record_at(k);
				break;
			}
	}
	examine_t ex = { copy, max, pid, sig, gen, cprof_cpu_timers_running() };
	size_t pending = 0;
	for (size_t i = 0; !err && i < ntids; i++) {
		task_t *t = &tasks[i];
		if (!read_stat(t->tid, &t->state, t->comm)) {
			t->how = HOW_GONE;
			continue;
		}
		pending += examine(t, &ex);
	}
	/* The answers, at most ANSWER_WAIT_NS for all of them; threads left to
	 * their CPU timer are examined again after TIMER_WAIT_NS. */
	int64_t start = cprof_now_ns(CLOCK_MONOTONIC);
	bool examined_again = !ex.timers;
	while (pending) {
		uint32_t seen = atomic_load(&answers);
		for (size_t i = 0; i < ntids; i++) {
			task_t *t = &tasks[i];
			if ((t->how != HOW_SIGNALLED && t->how != HOW_TIMER) || t->depth)
				continue;
			thread_record_t *r = t->rec;
			if (atomic_load_explicit(&r->answered, memory_order_acquire) == gen) {
				unsigned d = (unsigned)r->depth;
				if (d > (unsigned)max)
					d = (unsigned)max;
				memcpy(t->frames, r->frames, d * sizeof(uintptr_t));
				t->depth = d ? d : 1;
				if (!d)
					t->frames[0] = CPROF_FRAME_NOT_REACHED;
				t->labels = r->labels;
				pending--;
			} else if (atomic_load(&r->tid) != t->tid) {
				t->how = HOW_GONE; /* ended meanwhile; its record may be another's */
				pending--;
			}
		}
		int64_t now = cprof_now_ns(CLOCK_MONOTONIC);
		if (pending && !examined_again && now - start >= TIMER_WAIT_NS) {
			/* No expiry came: the thread ran too little, or went to
			 * sleep. Where is it now? */
			examined_again = true;
			ex.timers = false;
			for (size_t i = 0; i < ntids; i++) {
				task_t *t = &tasks[i];
				if (t->how != HOW_TIMER || t->depth)
					continue;
				pending--;
				if (!read_stat(t->tid, &t->state, t->comm))
					t->how = HOW_GONE;
				else
					pending += examine(t, &ex);
			}
			continue;
		}
		int64_t left = start + (examined_again ? ANSWER_WAIT_NS : TIMER_WAIT_NS) - now;
		if (!pending || left <= 0)
			break;
		struct timespec ts = { left / 1000000000, left % 1000000000 };
		syscall(SYS_futex, &answers, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
	}
	for (size_t i = 0; i < ntids; i++) {
		task_t *t = &tasks[i];
		if ((t->how == HOW_SIGNALLED || t->how == HOW_TIMER) && !t->depth) {
			t->frames[0] = CPROF_FRAME_NOT_REACHED;
			t->depth = 1;
			t->labels = labels_of(t->rec);
			/* Answered later: nobody reads it. */
		}
	}
	/* created_by: the creator's frames as the roots. */
	for (size_t i = 0; i < ntids; i++) {
		task_t *t = &tasks[i];
		if (t->how == HOW_GONE || !t->rec || !t->rec->ncreated || t->how == HOW_NO_RECORD)
			continue;
		unsigned nc = t->rec->ncreated > CREATED_DEPTH ? CREATED_DEPTH : t->rec->ncreated;
		t->frames[t->depth++] = CPROF_FRAME_CREATED_BY;
		memcpy(t->frames + t->depth, t->rec->created, nc * sizeof(uintptr_t));
		t->depth += nc;
	}
	if (!err) {
		free_snapshot();
		err = group_tasks(tasks, ntids);
		size_t total = 0;
		for (size_t i = 0; i < ntids; i++)
			total += tasks[i].how != HOW_GONE;
		atomic_store(&last_total, (unsigned)total);
	}
	free(tids);
	free(tasks);
	free(frames);
	free(copy);
	return err;
}

/* ---- the row's hooks ------------------------------------------------------- */

int cprof_threads_collect(void)
{
	pthread_mutex_lock(&snapshot_lock);
	int64_t t0 = cprof_now_ns(CLOCK_MONOTONIC);
	int err = snapshot();
	last_ns = cprof_now_ns(CLOCK_MONOTONIC) - t0;
	pthread_mutex_unlock(&snapshot_lock);
	return err;
}

/* The last snapshot's entries. Builds run on one shim thread at a time
 * per snapshot: the lock is held across the walk. */
void cprof_threads_foreach(cprof_entry_fn fn, void *ctx)
{
	pthread_mutex_lock(&snapshot_lock);
	for (size_t i = 0; i < nentries; i++)
		fn(entries[i], ctx);
	pthread_mutex_unlock(&snapshot_lock);
}

unsigned cprof_threads_labels(const cprof_stack_t *s, cprof_sample_label_t *out, unsigned max)
{
	if (s->tag >= nentries || max < 4)
		return 0;
	const group_t *g = &groups[s->tag];
	unsigned n = 0;
	out[n++] = (cprof_sample_label_t){ .key = "thread_name", .str = g->comm };
	out[n++] = (cprof_sample_label_t){ .key = "state", .str = g->state };
	if (g->wait)
		out[n++] = (cprof_sample_label_t){ .key = "wait", .str = g->wait };
	if (g->wait_ns >= 0)
		out[n++] = (cprof_sample_label_t){ .key = "wait_ns", .num = g->wait_ns,
						   .unit = "nanoseconds" };
	return n;
}

/* The final dump writes it when a thread other than the exiting one is
 * alive: a single-threaded program leaves no file. */
bool cprof_threads_any(void)
{
	return atomic_load(&records_live) > 1;
}

void cprof_threads_comment(char *out, size_t cap)
{
	snprintf(out, cap, "libcprof threads profile; threads=%u snapshot_us=%lld max_depth=%u",
		 atomic_load(&last_total), (long long)(last_ns / 1000), cprof_config.max_depth);
}

static int compare_count(const void *a, const void *b)
{
	const cprof_stack_t *x = *(cprof_stack_t *const *)a, *y = *(cprof_stack_t *const *)b;
	int64_t cx = atomic_load(&x->values[0]), cy = atomic_load(&y->values[0]);
	return cx > cy ? -1 : cx < cy;
}

/* debug=1 and 2: the text form `cprof threads` prints from a file. */
int cprof_threads_text(cprof_symbolizer_t *sym, int debug, FILE *f)
{
	(void)debug;
	pthread_mutex_lock(&snapshot_lock);
	cprof_stack_t **sorted = malloc((nentries ? nentries : 1) * sizeof *sorted);
	if (!sorted) {
		pthread_mutex_unlock(&snapshot_lock);
		return -ENOMEM;
	}
	memcpy(sorted, entries, nentries * sizeof *sorted);
	qsort(sorted, nentries, sizeof *sorted, compare_count);
	fprintf(f, "threads profile: total %u\n", atomic_load(&last_total));
	for (size_t i = 0; i < nentries; i++) {
		const cprof_stack_t *s = sorted[i];
		const group_t *g = &groups[s->tag];
		long long count = (long long)atomic_load(&s->values[0]);
		char how_long[48] = "";
		if (g->wait_ns >= 0)
			cprof_threads_duration(g->wait_ns, how_long, sizeof how_long);
		fprintf(f, "\n%lld thread%s [%s%s%s] %s \"%s\"", count, count == 1 ? "" : "s",
			g->wait ? g->wait : g->state, how_long[0] ? ", " : "", how_long, g->state,
			g->comm);
		const char *keys[CPROF_LABELS_PAIRS_MAX], *values[CPROF_LABELS_PAIRS_MAX];
		unsigned np = s->labels && s->labels != CPROF_LABELS_DROPPED
				      ? cprof_labels_get(s->labels, keys, values, CPROF_LABELS_PAIRS_MAX)
				      : 0;
		for (unsigned k = 0; k < np; k++)
			fprintf(f, " %s=%s", keys[k], values[k]);
		fputs(":\n", f);
		for (unsigned k = 0; k < s->depth; k++) {
			if (s->frames[k] == CPROF_FRAME_CREATED_BY) {
				fputs("created by\n", f);
				continue;
			}
			cprof_symbol_t sym_out;
			cprof_symbolize(sym, s->frames[k], &sym_out);
			if (!sym_out.nlines) {
				fprintf(f, "\t%#lx\n", (unsigned long)s->frames[k]);
				continue;
			}
			for (unsigned j = 0; j < sym_out.nlines; j++) {
				const cprof_line_t *l = &sym_out.lines[j];
				fprintf(f, "\t%s", l->name);
				if (l->file && *l->file)
					fprintf(f, " %s:%lld", l->file, (long long)l->line);
				fputc('\n', f);
			}
		}
	}
	free(sorted);
	pthread_mutex_unlock(&snapshot_lock);
	return 0;
}

int cprof_threads_start(void)
{
	record_bytes = (offsetof(thread_record_t, frames) +
			((size_t)cprof_config.max_depth + 2) * sizeof(uintptr_t) + 63) & ~(size_t)63;
	void *map = mmap(NULL, record_bytes * THREAD_RECORDS, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (map == MAP_FAILED) {
		cprof_log("cannot map the thread records (%s); no threads profile", strerror(errno));
		return -ENOMEM;
	}
	records = map;
	if (cprof_cpu_snapshot_signal() <= 0)
		cprof_log("no signal for the threads profile; running threads show as "
			  "[cprof: not reached]");
	cprof_threads_on = 1;
	cprof_locks_enable();
	cprof_waits_timed = 1;
	cprof_threads_thread_start(NULL, 0); /* the thread that runs the constructor */
	cprof_source_register(CPROF_KIND_THREADS, 1, NULL);
	return 0;
}

void cprof_threads_atfork_child(void)
{
	/* Only the forking thread is left; it keeps its record under its
	 * new tid. The parent's snapshot and shim threads are not ours. */
	for (int i = 0; i < SHIM_THREADS; i++)
		atomic_store(&shim_tids[i], 0);
	pthread_mutex_init(&snapshot_lock, NULL);
	nentries = 0; /* (the parent's entries are forgotten, not freed) */
	entries = NULL;
	groups = NULL;
	if (!records)
		return;
	cprof_wait_record_t *own = cprof_thread.wait;
	int high = atomic_load(&records_high);
	for (int i = 0; i < high; i++) {
		thread_record_t *r = record_at(i);
		if (&r->wait != own)
			atomic_store(&r->tid, 0);
	}
	if (own)
		atomic_store(&record_of(own)->tid, (int)syscall(SYS_gettid));
	atomic_store(&records_live, own ? 1 : 0);
}
