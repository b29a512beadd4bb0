/* test_walk.c — preload/walk.c's stack walk against libunwind's, frame for
 * frame, from the same place:
 *   - 40 frames of code with frame pointers (CFA from rbp), 40 without
 *     (CFA from rsp, at offsets that change inside the function), frames
 *     that alloca (rbp set up in code built without frame pointers), and
 *     a mix of the three, on a thread of the test's own;
 *   - a comparison function called by libc's qsort: libc's frames, built
 *     without frame pointers, with epilogues in mid-function
 *     (remember_state / restore_state);
 *   - the main thread, out to _start;
 *   - the second walk of the same stack (the thread's memo), a walk after
 *     cprof_walk_flush, and walks of one stack from 4 threads at once
 *     (the shared table's inserts racing);
 * each the same return addresses as unw_backtrace gives, and as many.
 * And where the walk must leave it to libunwind (answer -1): a frame
 * whose CFA is another register's or an expression's, a thread whose stack
 * bounds are not known, a signal handler (the kernel's signal frame), a
 * stack with less than the walk's room left.
 */
#include <setjmp.h> /* cmocka.h needs these four first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "cprof_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#define MAX 128

typedef struct shot {
	int n, m; /* the walk's depth (or -1), libunwind's */
	uintptr_t walk[MAX], lib[MAX];
} shot_t;

/* Both walks from one frame: the walk's first address is its own call's
 * return address, libunwind's first two are in unw_backtrace and at its
 * call's return; from the caller out they must agree. */
static void (*take_hook)(void);

static void raise_usr2(void)
{
	raise(SIGUSR2);
}

__attribute__((noinline)) static void take(shot_t *s)
{
	if (take_hook) {
		take_hook();
		return;
	}
	s->n = cprof_walk_here(s->walk, MAX);
	s->m = unw_backtrace((void **)s->lib, MAX);
	__asm__ volatile("" ::: "memory");
}

static void assert_same(const shot_t *s, const char *what)
{
	if (s->n < 2 || s->m < s->n) {
		printf("    %s: walk %d frames, libunwind %d\n", what, s->n, s->m);
		fail();
	}
	/* walk[1..n) against libunwind's last n - 1. */
	int d = s->m - s->n;
	for (int i = 1; i < s->n; i++)
		if (s->walk[i] != s->lib[i + d]) {
			printf("    %s: frame %d: walk %#lx, libunwind %#lx\n", what, i,
			       (unsigned long)s->walk[i], (unsigned long)s->lib[i + d]);
			fail();
		}
	/* libunwind's extra frames are its own and take()'s. */
	assert_true(d >= 0 && d <= 2);
}

/* ---- stacks of each kind of frame --------------------------------------- */

enum { WITH_FP, WITHOUT_FP, ALLOCA, MIXED };

static int frame_kind(int kind, int n)
{
	return kind == MIXED ? n % 3 : kind;
}

static int descend(shot_t *s, int kind, int n);

__attribute__((noinline)) static int with_fp(shot_t *s, int kind, int n)
{
	volatile int pad[5];
	pad[0] = n;
	int r = descend(s, kind, n - 1);
	return r + pad[0];
}

__attribute__((noinline, optimize("omit-frame-pointer"))) static int without_fp(shot_t *s,
										   int kind, int n)
{
	volatile long pad[3];
	pad[1] = n;
	int r = descend(s, kind, n - 1);
	return r + (int)pad[1];
}

__attribute__((noinline, optimize("omit-frame-pointer"))) static int with_alloca(shot_t *s,
										    int kind, int n)
{
	volatile char *hole = __builtin_alloca(16 + (size_t)(n % 7) * 48);
	hole[0] = (char)n;
	int r = descend(s, kind, n - 1);
	return r + hole[0];
}

static int descend(shot_t *s, int kind, int n)
{
	if (n <= 0) {
		take(s);
		return 0;
	}
	switch (frame_kind(kind, n)) {
	case WITH_FP:
		return with_fp(s, kind, n);
	case WITHOUT_FP:
		return without_fp(s, kind, n);
	default:
		return with_alloca(s, kind, n);
	}
}

typedef struct job {
	int kind, frames;
	bool bounds;  /* tell libcprof the thread's stack */
	int twice;    /* walk again: 1 the same stack, 2 after a flush */
	shot_t shot, again;
} job_t;

static void *run(void *arg)
{
	job_t *j = arg;
	if (j->bounds) {
		uintptr_t lo = 0, hi = 0;
		assert_true(cprof_self_stack_asked(&lo, &hi));
		cprof_unwind_thread_bounds(lo, hi);
	}
	descend(&j->shot, j->kind, j->frames);
	if (j->twice == 2)
		cprof_walk_flush();
	if (j->twice)
		descend(&j->again, j->kind, j->frames);
	return NULL;
}

static void on_thread(job_t *j)
{
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, run, j), 0);
	pthread_join(t, NULL);
}

static void check_kind(int kind, const char *what)
{
	static job_t j;
	memset(&j, 0, sizeof j);
	j.kind = kind;
	j.frames = 40;
	j.bounds = true;
	j.twice = 1;
	on_thread(&j);
	assert_same(&j.shot, what);
	assert_true(j.shot.n >= 40);
	assert_same(&j.again, what);
	/* The descent's frames (the two walks return to different places in
	 * run). */
	assert_int_equal(j.again.n, j.shot.n);
	assert_memory_equal(j.again.walk + 1, j.shot.walk + 1, 40 * sizeof(uintptr_t));
	printf("    %s: %d frames, as libunwind\n", what, j.shot.n);
}

static void test_frame_pointer_frames(void **state)
{
	(void)state;
	check_kind(WITH_FP, "frames with rbp");
}

static void test_frames_without_frame_pointer(void **state)
{
	(void)state;
	check_kind(WITHOUT_FP, "frames without rbp");
}

static void test_alloca_frames(void **state)
{
	(void)state;
	check_kind(ALLOCA, "alloca frames");
}

static void test_mixed_frames(void **state)
{
	(void)state;
	check_kind(MIXED, "mixed frames");
}

/* ---- libc's frames --------------------------------------------------- */

static shot_t sort_shot;
static int sort_calls;

static int by_value(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	if (++sort_calls == 500)
		take(&sort_shot);
	return (x > y) - (x < y);
}

static void test_libc_frames(void **state)
{
	(void)state;
	int values[2000];
	for (int i = 0; i < 2000; i++)
		values[i] = (i * 7919) % 2003;
	sort_calls = 0;
	qsort(values, 2000, sizeof values[0], by_value);
	assert_same(&sort_shot, "qsort's comparison");
	Dl_info info;
	bool in_libc = false;
	for (int i = 1; i < sort_shot.n; i++)
		if (dladdr((void *)sort_shot.walk[i], &info) && info.dli_fname &&
		    strstr(info.dli_fname, "libc.so"))
			in_libc = true;
	assert_true(in_libc);
	printf("    qsort's comparison: %d frames through libc, as libunwind\n", sort_shot.n);
}

static void test_main_thread(void **state)
{
	(void)state;
	static shot_t s;
	descend(&s, MIXED, 10);
	assert_same(&s, "main thread");
	printf("    main thread: %d frames out to _start, as libunwind\n", s.n);
}

static void test_after_flush(void **state)
{
	(void)state;
	static job_t j;
	memset(&j, 0, sizeof j);
	j.kind = MIXED;
	j.frames = 20;
	j.bounds = true;
	j.twice = 2;
	on_thread(&j);
	assert_same(&j.shot, "before the flush");
	assert_same(&j.again, "after the flush");
}

static void test_threads_at_once(void **state)
{
	(void)state;
	cprof_walk_flush();
	static job_t jobs[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		memset(&jobs[i], 0, sizeof jobs[i]);
		jobs[i].kind = MIXED;
		jobs[i].frames = 60;
		jobs[i].bounds = true;
		jobs[i].twice = 1;
		assert_int_equal(pthread_create(&t[i], NULL, run, &jobs[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_same(&jobs[i].shot, "one of 4 threads");
		assert_same(&jobs[i].again, "one of 4 threads, again");
	}
}

/* ---- what the walk leaves to libunwind ---------------------------------- */

/* Frames whose CFA is another register's (hand-written code's way) or an
 * expression's (GCC's, in a function that realigns its stack): each calls
 * fn(s) with rbx holding the CFA less 16. */
void frame_on_rbx(shot_t *s, void (*fn)(shot_t *));
void frame_on_expression(shot_t *s, void (*fn)(shot_t *));
__asm__(".text\n"
	".globl frame_on_rbx\n"
	".type frame_on_rbx, @function\n"
	"frame_on_rbx:\n"
	"	.cfi_startproc\n"
	"	pushq %rbx\n"
	"	.cfi_def_cfa_offset 16\n"
	"	.cfi_offset %rbx, -16\n"
	"	movq %rsp, %rbx\n"
	"	.cfi_def_cfa_register %rbx\n"
	"	andq $-16, %rsp\n"
	"	call *%rsi\n"
	"	movq %rbx, %rsp\n"
	"	.cfi_def_cfa_register %rsp\n"
	"	popq %rbx\n"
	"	.cfi_def_cfa_offset 8\n"
	"	ret\n"
	"	.cfi_endproc\n"
	".size frame_on_rbx, .-frame_on_rbx\n"
	".globl frame_on_expression\n"
	".type frame_on_expression, @function\n"
	"frame_on_expression:\n"
	"	.cfi_startproc\n"
	"	pushq %rbx\n"
	"	.cfi_def_cfa_offset 16\n"
	"	.cfi_offset %rbx, -16\n"
	"	movq %rsp, %rbx\n"
	/* DW_CFA_def_cfa_expression: DW_OP_breg3 (rbx) 16 */
	"	.cfi_escape 0x0f, 0x02, 0x73, 0x10\n"
	"	andq $-16, %rsp\n"
	"	call *%rsi\n"
	"	movq %rbx, %rsp\n"
	"	.cfi_def_cfa %rsp, 16\n"
	"	popq %rbx\n"
	"	.cfi_def_cfa_offset 8\n"
	"	ret\n"
	"	.cfi_endproc\n"
	".size frame_on_expression, .-frame_on_expression\n");

static void test_other_cfa_falls_back(void **state)
{
	(void)state;
	static shot_t s;
	memset(&s, 0, sizeof s);
	frame_on_rbx(&s, take);
	assert_int_equal(s.n, -1);
	assert_true(s.m > 3);
	memset(&s, 0, sizeof s);
	frame_on_expression(&s, take);
	assert_int_equal(s.n, -1);
	assert_true(s.m > 3);
}

static void test_unknown_bounds_fall_back(void **state)
{
	(void)state;
	static job_t j;
	memset(&j, 0, sizeof j);
	j.kind = WITH_FP;
	j.frames = 5;
	j.bounds = false;
	on_thread(&j);
	assert_int_equal(j.shot.n, -1);
}

/* ---- a signal handler's walk of the interrupted stack ------------------- */

typedef struct signal_shot {
	int n, m;
	bool complete;
	uintptr_t walk[MAX], lib[MAX];
} signal_shot_t;

static signal_shot_t sig_shot;

/* libunwind's walk of the interrupted stack, as collect() in unwind.c
 * starts it: the interrupted PC, then return addresses. */
static int lib_signal_walk(ucontext_t *uc, uintptr_t *pcs, int max)
{
	unw_cursor_t cursor;
	if (unw_init_local2(&cursor, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) < 0)
		return 0;
	int n = 0;
	while (n < max) {
		unw_word_t ip;
		if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0)
			break;
		pcs[n++] = ip;
		if (unw_step(&cursor) <= 0)
			break;
	}
	return n;
}

static void on_usr2(int sig, siginfo_t *info, void *uc)
{
	(void)sig, (void)info;
	sig_shot.n = cprof_walk_signal(uc, sig_shot.walk, MAX, &sig_shot.complete);
	sig_shot.m = lib_signal_walk(uc, sig_shot.lib, MAX);
}

/* A signal raised in the descent's innermost frame, under frames of each
 * kind: the same frames as libunwind's, the interrupted PC (in libc's
 * raise) first. */
static void test_signal_walk(void **state)
{
	(void)state;
	struct sigaction sa, old;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_usr2;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGUSR2, &sa, &old);
	for (int kind = WITH_FP; kind <= MIXED; kind++) {
		static job_t j;
		memset(&j, 0, sizeof j);
		memset(&sig_shot, 0, sizeof sig_shot);
		j.kind = kind;
		j.frames = 30;
		j.bounds = true;
		take_hook = raise_usr2;
		on_thread(&j);
		take_hook = NULL;
		if (sig_shot.n < 0 || sig_shot.n != sig_shot.m ||
		    memcmp(sig_shot.walk, sig_shot.lib, (size_t)sig_shot.n * sizeof(uintptr_t)) != 0) {
			printf("    kind %d: walk %d frames, libunwind %d\n", kind, sig_shot.n, sig_shot.m);
			for (int i = 0; i < sig_shot.n && i < sig_shot.m; i++)
				if (sig_shot.walk[i] != sig_shot.lib[i])
					printf("    frame %d: %#lx against %#lx\n", i,
					       (unsigned long)sig_shot.walk[i], (unsigned long)sig_shot.lib[i]);
			fail();
		}
		assert_true(sig_shot.complete);
		assert_true(sig_shot.n > 30);
		printf("    a signal in raise under %d frames of kind %d: %d frames, as libunwind\n",
		       30, kind, sig_shot.n);
	}
	sigaction(SIGUSR2, &old, NULL);
}

static shot_t signal_shot;

static void on_usr1(int sig)
{
	(void)sig;
	take(&signal_shot);
}

static void test_signal_frame_falls_back(void **state)
{
	(void)state;
	signal(SIGUSR1, on_usr1);
	raise(SIGUSR1);
	signal(SIGUSR1, SIG_DFL);
	assert_int_equal(signal_shot.n, -1);
	assert_true(signal_shot.m > 2);
}

/* Only the walk: libunwind would not fit in what is left. */
__attribute__((noinline)) static int burn_to(shot_t *s, uintptr_t lo, size_t leave)
{
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
	volatile char *hole = __builtin_alloca(sp - lo - leave);
	hole[0] = 1;
	s->n = cprof_walk_here(s->walk, MAX);
	return hole[0];
}

static void *short_run(void *arg)
{
	shot_t *s = arg;
	uintptr_t lo = 0, hi = 0;
	assert_true(cprof_self_stack_asked(&lo, &hi));
	cprof_unwind_thread_bounds(lo, hi);
	burn_to(s, lo, 1024);
	return NULL;
}

static void test_short_stack_falls_back(void **state)
{
	(void)state;
	static shot_t s;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, short_run, &s), 0);
	pthread_join(t, NULL);
	assert_int_equal(s.n, -1);
}

/* A wrapper's stack as recorded: libcprof's frames dropped wherever they
 * are (the wrapper on top, and a wrapper of libcprof's between the program
 * and the code it called, as pthread_create's is between the program and
 * glibc's), return addresses less one, the root marked when the walk
 * filled max. The uncached walk (collect in unwind.c) always did so; the
 * cached trace's and the walk's kept a frame of libcprof's below the top
 * (found by tests/e2e/walk.sh: a heap sample in glibc's pthread_create,
 * called from libcprof's). */
static void test_walked_drops_own_frames(void **state)
{
	(void)state;
	uintptr_t saved_start = cprof_self_text_start, saved_end = cprof_self_text_end;
	cprof_self_text_start = 0x1000;
	cprof_self_text_end = 0x2000;
	uintptr_t pcs[8] = { 0x1100, 0x1200, 0x5001, 0x7001, 0x1300, 0x9001 };
	int depth = cprof_unwind_walked(pcs, 6, 8);
	assert_int_equal(depth, 3);
	assert_int_equal(pcs[0], 0x5000);
	assert_int_equal(pcs[1], 0x7000);
	assert_int_equal(pcs[2], 0x9000);
	/* Filled to max: the root says there may be more. */
	uintptr_t full[4] = { 0x1100, 0x5001, 0x1300, 0x7001 };
	depth = cprof_unwind_walked(full, 4, 4);
	assert_int_equal(depth, 2);
	assert_int_equal(full[0], 0x5000);
	assert_int_equal(full[1], CPROF_FRAME_TRUNCATED);
	cprof_self_text_start = saved_start;
	cprof_self_text_end = saved_end;
}

int main(void)
{
	cprof_config.max_depth = CPROF_DEPTH_LIMIT;
	cprof_unwind_init();
	cprof_unwind_main_start();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_pointer_frames),
		cmocka_unit_test(test_frames_without_frame_pointer),
		cmocka_unit_test(test_alloca_frames),
		cmocka_unit_test(test_mixed_frames),
		cmocka_unit_test(test_libc_frames),
		cmocka_unit_test(test_main_thread),
		cmocka_unit_test(test_after_flush),
		cmocka_unit_test(test_threads_at_once),
		cmocka_unit_test(test_other_cfa_falls_back),
		cmocka_unit_test(test_unknown_bounds_fall_back),
		cmocka_unit_test(test_signal_frame_falls_back),
		cmocka_unit_test(test_short_stack_falls_back),
		cmocka_unit_test(test_signal_walk),
		cmocka_unit_test(test_walked_drops_own_frames),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
