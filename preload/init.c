/* init.c — the shim's lifecycle: start-up, threads, fork, exit.
 *
 * The constructor reads the configuration, sets up the stack table and the
 * unwinder, the dumps (dump.c: the dumper thread starts here only when it
 * is needed from the start, else at the program's first pthread_create)
 * and the enabled sources; the destructor stops the sources and writes the
 * final profiles. Threads made through
 * pthread_create pass through a trampoline that arms their CPU timer; a
 * thread-key destructor removes it when the thread ends. A forked child
 * starts with empty tables, its own timer and no dumper until it needs one.
 */
#include "cprof_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cprof.h"
#include "wait.h"

static pthread_key_t thread_key;
static bool thread_key_ok;

static void on_thread_exit(void *value)
{
	(void)value;
	cprof_cpu_thread_exit();
	cprof_threads_thread_exit();
	cprof_unwind_thread_exit();
	cprof_heap_thread_exit();
}

#define CREATED_BY_DEPTH 8

typedef struct thread_start {
	void *(*fn)(void *);
	void *arg;
	uint32_t labels; /* the creator's: a thread inherits them, as goroutines do */
	bool sigmask_view; /* the creator's view of the hidden signal (sigmask.c) */
	bool sigmask_maybe_blocked; /* the thread may start with it really blocked */
	unsigned ncreated; /* threads profile: where pthread_create was called */
	uintptr_t created[CREATED_BY_DEPTH];
	int64_t created_ns; /* CLOCK_MONOTONIC before the thread was made */
	cprof_stack_hint_t stack; /* what the thread's stack was made from */
} thread_start_t;

/* Out of line: nothing of the trampoline's frame may have its address
 * taken, or its call of the thread's function is no tail call. */
__attribute__((noinline)) static void thread_started(const thread_start_t *start)
{
	/* Its id and stack without a system call, where glibc's descriptor
	 * has been seen to hold them (thread_self.c). */
	uintptr_t lo = 0, hi = 0;
	pid_t tid;
	if (!cprof_self_learn(&start->stack, &tid, &lo, &hi))
		lo = hi = 0;
	cprof_thread.tid = tid;
	if (thread_key_ok)
		pthread_setspecific(thread_key, (void *)1);
	cprof_unwind_thread_bounds(lo, hi);
	cprof_threads_thread_start(start->created, start->ncreated);
	cprof_cpu_thread_start(start->created_ns);
}

static void *thread_trampoline(void *p)
{
	thread_start_t *start = p;
	void *(*fn)(void *) = start->fn;
	void *arg = start->arg;
	cprof_thread.busy++;
	cprof_thread.labels = start->labels;
	thread_started(start);
	cprof_sigmask_thread_start(start->sigmask_view, start->sigmask_maybe_blocked);
	free(p);
	cprof_thread.busy--;
	/* A tail call: the trampoline leaves no frame in the thread's stacks
	 * (nothing of its frame may outlive this line: only scalars). */
	return fn(arg);
}

CPROF_EXPORT int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
				void *(*fn)(void *), void *arg)
{
	if (CPROF_UNLIKELY(!real_pthread_create))
		cprof_real_init();
	if (!atomic_load_explicit(&cprof_running, memory_order_relaxed))
		return real_pthread_create(thread, attr, fn, arg);
	/* Multi-threaded from now on: the dumper may exist too (dump.c). */
	cprof_dump_thread_coming();
	cprof_thread.busy++;
	thread_start_t *start = malloc(sizeof *start);
	cprof_thread.busy--;
	if (!start)
		return real_pthread_create(thread, attr, fn, arg);
	start->fn = fn;
	start->arg = arg;
	start->labels = cprof_thread.labels;
	start->sigmask_view = cprof_sigmask_view();
	/* The new thread starts with this thread's real mask, or the one in
	 * attr (pthread_attr_setsigmask_np). */
	sigset_t attr_mask;
	start->sigmask_maybe_blocked =
		!cprof_unwind_on_thread_stack((uintptr_t)__builtin_frame_address(0)) ||
		(attr && pthread_attr_getsigmask_np(attr, &attr_mask) == 0);
	start->ncreated = cprof_threads_creator(start->created, CREATED_BY_DEPTH);
	cprof_self_hint(attr, &start->stack);
	start->created_ns = cprof_now_ns(CLOCK_MONOTONIC);
	int err = real_pthread_create(thread, attr, thread_trampoline, start);
	if (err)
		free(start);
	return err;
}

static void atfork_prepare(void)
{
	cprof_dump_atfork_prepare();
}

static void atfork_parent(void)
{
	cprof_dump_atfork_parent();
}

static void atfork_child(void)
{
	cprof_thread.busy++;
	cprof_thread.tid = (pid_t)syscall(SYS_gettid);
	cprof_stacks_reset();
	cprof_start_wall_ns = cprof_now_ns(CLOCK_REALTIME);
	cprof_unwind_atfork_child();
	cprof_http_atfork_child();
	for (int k = 0; k < CPROF_KIND_COUNT; k++)
		if (cprof_sources[k].atfork_child)
			cprof_sources[k].atfork_child();
	cprof_dump_atfork_child();
	cprof_thread.busy--;
}

__attribute__((constructor)) static void cprof_init(void)
{
	cprof_thread.busy++;
	cprof_thread.tid = (pid_t)syscall(SYS_gettid);
	cprof_self_init(cprof_thread.tid);
	cprof_start_wall_ns = cprof_now_ns(CLOCK_REALTIME);
	cprof_config_load();
	cprof_real_init();
	cprof_symbolize_own_entry = cprof_wait_name_of; /* the wrappers' leaves, by name */
	int err = cprof_stacks_init(cprof_config.stacks, cprof_config.max_depth);
	if (err < 0) {
		cprof_log("cannot map the stack table (%s); profiling off", strerror(-err));
		cprof_thread.busy--;
		return;
	}
	if (cprof_labels_init(cprof_config.label_sets) < 0)
		cprof_log("cannot map the label table; samples carry no labels");
	cprof_unwind_main_start();
	cprof_unwind_init();
	thread_key_ok = pthread_key_create(&thread_key, on_thread_exit) == 0;
	cprof_dump_init();
	cprof_signals_init();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	cprof_wait_clock_init();
	atomic_store(&cprof_running, 1);
	for (int k = 0; k < CPROF_KIND_COUNT; k++)
		if (cprof_enabled((cprof_kind_t)k) && cprof_sources[k].start)
			cprof_sources[k].start();
	cprof_http_start();
	cprof_thread.busy--;
}

__attribute__((destructor)) static void cprof_fini(void)
{
	if (!atomic_exchange(&cprof_running, 0))
		return;
	cprof_thread.busy++;
	cprof_http_settle();
	for (int k = 0; k < CPROF_KIND_COUNT; k++)
		if (cprof_sources[k].stop)
			cprof_sources[k].stop();
	cprof_dump_at_exit();
	cprof_thread.busy--;
}

/* include/cprof.h: write every profile now. */
CPROF_EXPORT int cprof_dump(void)
{
	if (!atomic_load(&cprof_running))
		return -ESRCH;
	return cprof_dump_wait();
}
