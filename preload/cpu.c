/* cpu.c — the CPU profile: a timer on each thread's own CPU clock and the
 * handler of their signal, which charges each expiry to the interrupted stack.
 *
 * Why per-thread timers: a process-wide ITIMER_PROF signal goes to
 * whichever thread the kernel picks, so busy threads are under-sampled as
 * cores grow. A timer on CLOCK_THREAD_CPUTIME_ID with SIGEV_THREAD_ID
 * fires on the thread that spent the time. CPU-clock timers are checked at
 * the scheduler tick (250 Hz here), so at 1000 Hz one expiry stands for
 * several periods: the handler counts 1 + si_overrun periods, or the
 * profile would under-report. A random first expiry keeps short-lived
 * threads from being under-counted. setitimer(ITIMER_PROF) is only the
 * fallback where timer_create cannot be had.
 *
 * The per-thread timers signal with a real-time signal (SIGRTMAX-4), not
 * SIGPROF: programs install SIGPROF handlers of their own (sort(1) does, to
 * clean up; language runtimes and other profilers do, for their timers),
 * and with a signal of its own the shim neither disturbs them nor has to
 * stop profiling them. Only the setitimer fallback uses SIGPROF. Should a
 * program take the real-time signal too, the shim steps aside for it.
 *
 * CPROF_SIGSAFE: on_cpu_timer. It takes no lock, allocates nothing, keeps
 * errno, and does not unwind where that could deadlock or crash: on a
 * thread that is inside libcprof itself, inside dlclose, or stopped in the
 * dynamic loader's code (which may hold the loader lock that libunwind's
 * dl_iterate_phdr takes). Those samples keep their time, charged to the
 * interrupted PC and a "[cprof: not unwound]" frame. Its frames go to
 * the capture pool, never onto the interrupted stack, which may be a
 * small alternate one: with too little room there cprof_unwind_signal
 * counts the sample under "[cprof: no stack room]" instead.
 */
#include "cprof_internal.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sched.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* Every live thread timer, so that all can be disarmed at once when the
 * program takes the timers' signal for itself or the process ends. */
#define TIMER_SLOTS 8192
/* taken: SLOT_FREE, SLOT_BUSY (being made or deleted), SLOT_LIVE (its
 * timer armed), SLOT_PENDING (a new thread's, no timer yet: see "timers
 * made late"), SLOT_ARMING (the dumper makes its timer now), SLOT_NO_TIMER
 * (the thread's, its timer could not be made: it ends with its tail). */
enum { SLOT_FREE = 0, SLOT_BUSY = 1, SLOT_LIVE = 2, SLOT_PENDING = 3, SLOT_ARMING = 4,
       SLOT_NO_TIMER = 5 };
typedef struct timer_slot {
	atomic_int taken;
	int id;                  /* the kernel's timer id (raw system calls) */
	pid_t tid;               /* SLOT_PENDING: the thread */
	int64_t first_ns;        /* SLOT_PENDING: its first expiry, on its CPU clock */
	_Atomic int64_t arm_at;  /* SLOT_PENDING: CLOCK_MONOTONIC from which it may need it */
} timer_slot_t;

static timer_slot_t timer_slots[TIMER_SLOTS];
static atomic_int timer_slots_high;  /* slots [0, high) have been used */
static atomic_int cpu_active;        /* the handler records */
static bool on_demand;               /* CPROF_CPU=on-demand */
static atomic_int demand;            /* open windows that want samples */
static bool use_itimer;              /* fallback: process-wide timer */
static int64_t period_ns;
int cprof_cpu_signal;                /* the timers' signal */

static __thread uint64_t rng_state __attribute__((tls_model("initial-exec")));

/* The timers are made and set with raw system calls, on the dumper's
 * thread for another thread's clock too (below). 0 or -1 and errno. */
static int sys_timer_create(clockid_t clock, struct sigevent *sev, int *id)
{
	return (int)syscall(SYS_timer_create, clock, sev, id);
}

static int sys_timer_settime(int id, int flags, const struct itimerspec *its,
			     struct itimerspec *old)
{
	return (int)syscall(SYS_timer_settime, id, flags, its, old);
}

static int sys_timer_gettime(int id, struct itimerspec *its)
{
	return (int)syscall(SYS_timer_gettime, id, its);
}

static int sys_timer_delete(int id)
{
	return (int)syscall(SYS_timer_delete, id);
}

/* A timer on thread `tid`'s CPU clock (`clock`), signalling that thread
 * only; 0 or -1 and errno. */
static int thread_timer_create(clockid_t clock, pid_t tid, int *id)
{
	struct sigevent sev;
	memset(&sev, 0, sizeof sev);
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = cprof_cpu_signal;
	sev.sigev_notify_thread_id = tid;
	return sys_timer_create(clock, &sev, id);
}

/* ---- the tail of a thread's CPU time ----------------------------------
 * The kernel checks a CPU-clock timer at a scheduler tick that finds its
 * thread running (250 Hz here), and counts the expiries it missed as
 * overruns; but the periods that expire after the last such tick of a
 * thread that then ends are never signalled: a thread of 3 ms read back
 * as 1.2 ms on average, one of 10 ms as 8 (measured, 100 threads each), and
 * more under load, where ticks find a thread running less often. So each
 * thread counts the periods its signals brought (1 + overruns), and when
 * its timer is deleted (the thread ends, or the process does) the periods
 * its own CPU clock says expired beyond those are charged to the last
 * stack it was sampled in, or to "[cprof: unsampled tail]" when it never
 * was. Exact: before the timer is deleted the thread marks its tail as
 * settling, and its handler then counts no expiry (one still pending is
 * in the tail), so none is counted twice; no system call but the delete
 * and the clock read (blocking the signal around them cost two more per
 * thread, and counted an expiry pending at the unblock twice). Not with CPROF_CPU=on-demand (the timers are
 * armed and disarmed) nor the process-wide fallback. */
typedef struct cpu_tail {
	int64_t first_ns;        /* the thread CPU time of the first expiry; 0: none */
	int settling;            /* the tail is being counted: the handler counts no more */
	int64_t wall_bound_ns;   /* CLOCK_MONOTONIC before which its CPU time cannot reach first_ns */
	int64_t counted;         /* periods charged by this thread's signals */
	cprof_stack_t *last;     /* the entry of its last sample */
} cpu_tail_t;

static __thread cpu_tail_t tail __attribute__((tls_model("initial-exec")));

static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define TAIL_MARGIN_NS 20000

/* On the thread itself, its timer deleted. */
static void tail_flush(void)
{
	if (!tail.first_ns || on_demand || use_itimer || period_ns <= 0)
		return;
	/* A thread runs no faster than the wall clock: one that ends before
	 * its first expiry could come (most short threads) needs no read of
	 * its CPU clock, a system call of 0.5 us. The margin covers the two
	 * clocks' drift. */
	if (cprof_now_ns(CLOCK_MONOTONIC) < tail.wall_bound_ns - TAIL_MARGIN_NS) {
		tail.first_ns = 0;
		return;
	}
	int64_t now = thread_cpu_ns();
	if (now < tail.first_ns)
		return;
	int64_t missing = 1 + (now - tail.first_ns) / period_ns - tail.counted;
	tail.first_ns = 0;
	if (missing <= 0)
		return;
	cprof_stack_t *s = tail.last;
	if (!s) {
		uintptr_t frame = CPROF_FRAME_TAIL;
		s = cprof_stacks_insert(CPROF_KIND_CPU, 0, &frame, 1);
	}
	if (s) {
		cprof_stack_add(s, 0, missing);
		cprof_stack_add(s, 1, missing * period_ns);
	}
}

/* Deletes the calling thread's timer, then charges its tail. From the
 * moment `settling` is set the handler (which runs on this thread only)
 * counts nothing, so what the tail reads of `counted` is final. */
static void delete_own_timer(int slot)
{
	tail.settling = 1;
	atomic_signal_fence(memory_order_seq_cst);
	int expected = 2;
	if (atomic_compare_exchange_strong(&timer_slots[slot].taken, &expected, 1)) {
		sys_timer_delete(timer_slots[slot].id);
		tail_flush();
		atomic_store(&timer_slots[slot].taken, 0);
	}
	/* settling stays set: an expiry still pending is in the tail. A new
	 * timer on this thread clears it (cprof_cpu_thread_start). */
}

static uint64_t rng_next(void)
{
	/* xorshift64*, seeded per thread from its id and the clock. */
	if (!rng_state)
		rng_state = ((uint64_t)cprof_gettid() << 32) ^
			    (uint64_t)cprof_now_ns(CLOCK_MONOTONIC) ^ 0x9e3779b97f4a7c15ULL;
	return cprof_xorshift64star(&rng_state);
}

static struct timespec ns_to_timespec(int64_t ns)
{
	struct timespec ts = { ns / 1000000000, ns % 1000000000 };
	return ts;
}

/* Charges `periods` timer periods to the stack the signal interrupted.
 * The frames go to a buffer of the capture pool, not onto the interrupted
 * stack, which may be a small alternate one (cprof_unwind_signal checks
 * the room there). */
CPROF_SIGSAFE static cprof_stack_t *record_sample(ucontext_t *uc, int64_t periods)
{
	uintptr_t spare[2];
	uintptr_t *pcs = cprof_thread.busy ? NULL : cprof_capture_take();
	int depth;
	uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];

	if (!pcs) {
		spare[0] = pc;
		spare[1] = CPROF_FRAME_NOUNWIND;
		depth = 2;
	} else {
		cprof_thread.busy++;
		depth = cprof_unwind_signal(uc, pcs, (int)cprof_config.max_depth);
		cprof_thread.busy--;
	}
	cprof_stack_t *s = cprof_stacks_insert(CPROF_KIND_CPU, 0, pcs ? pcs : spare, (unsigned)depth);
	cprof_capture_give(pcs);
	if (s) {
		cprof_stack_add(s, 0, periods);
		cprof_stack_add(s, 1, periods * period_ns);
	}
	return s;
}

CPROF_SIGSAFE static void on_cpu_timer(int sig, siginfo_t *info, void *ucontext)
{
	int saved_errno = errno;
	(void)sig;

	if (info->si_code == SI_TKILL) {
		/* A threads snapshot asks for this thread's stack. */
		cprof_threads_on_signal(ucontext);
	} else if (atomic_load_explicit(&cpu_active, memory_order_relaxed)) {
		/* Only our timers: the signal sent by kill() is not CPU time. */
		if (info->si_code == SI_TIMER && !tail.settling) {
			int64_t periods = 1 + (info->si_overrun > 0 ? info->si_overrun : 0);
			cprof_stack_t *s = record_sample(ucontext, periods);
			tail.counted += periods;
			if (s)
				tail.last = s;
			cprof_threads_on_signal(ucontext); /* a snapshot may wait for it */
		}
		else if (use_itimer && info->si_code == SI_KERNEL)
			record_sample(ucontext, 1);
	}
	errno = saved_errno;
}

static int timer_slot_take(void)
{
	for (int i = 0; i < TIMER_SLOTS; i++) {
		int expected = 0;
		if (atomic_load_explicit(&timer_slots[i].taken, memory_order_relaxed) == 0 &&
		    atomic_compare_exchange_strong(&timer_slots[i].taken, &expected, 1)) {
			int high = atomic_load(&timer_slots_high);
			while (high < i + 1 &&
			       !atomic_compare_exchange_weak(&timer_slots_high, &high, i + 1))
				;
			return i;
		}
	}
	return -1;
}

/* First expiry uniform in (0, period]: a thread that runs for less
 * than a period is sampled with the right probability. */
static int64_t arm_timer(int id)
{
	struct itimerspec its;
	int64_t first = 1 + (int64_t)(rng_next() % (uint64_t)period_ns);
	its.it_interval = ns_to_timespec(period_ns);
	its.it_value = ns_to_timespec(first);
	sys_timer_settime(id, 0, &its, NULL);
	return first;
}

/* ---- timers made late ----------------------------------------------------
 * A thread's timer costs three system calls (timer_create 0.87 us,
 * timer_settime 0.81, timer_delete 0.63 here), most of what the CPU
 * profile cost a program that makes many short threads; and a thread that
 * ends before its first expiry never needed one: its tail counts it, and
 * the wall clock, which its CPU time cannot outrun, says when that is
 * without a read of its CPU clock either. So a new thread takes a slot
 * in the SLOT_PENDING state with its first expiry drawn as an absolute
 * time on its own CPU clock, and no timer; the dumper thread, at the wall
 * time from which the thread could have reached that expiry, makes the
 * thread's timer (timer_create on that thread's CPU clock, signalling
 * that thread, as its own would be) armed at that absolute time, or, if
 * the thread ran past it already, at the next of its periods at least
 * ARM_AHEAD_NS ahead (never in the past: an expiry made to fire at once
 * would be signalled whatever the thread is doing, and wake it from a
 * ppoll with EINTR); the periods passed are in its tail, counted at its
 * end, so no CPU time is lost, only charged to its last sample. The
 * dumper sleeps until the earliest waiting thread's time, at least
 * ARM_TICK_NS (later while it writes a dump), and says when
 * (arm_look_at); a new thread wakes it only when that is more than
 * ARM_TICK_NS after its own time, or when no thread waits (a futex wake
 * and a switch to the dumper for each new thread cost more than the
 * timer they saved: churn 1.32x against 1.23x). While threads keep
 * coming (one since the last look) it looks every ARM_TICK_NS, so they
 * need not wake it; once none came and none waits, it sleeps until one
 * does. (It used to look every 2 ms for 200 ms after any thread's
 * start: 25 wake-ups in a 50 ms process, each a switch away from one of
 * its threads, 1 to 2 ms of its exit cost.) A thread that ends first
 * pays no timer at all.
 * The thread's end and the dumper's arming meet on the slot's state: the
 * thread takes SLOT_PENDING back, or waits out SLOT_ARMING (two system
 * calls) and deletes the timer as its own. Thread-directed timers only:
 * a process-wide timer's signal may land on a thread asleep in ppoll and
 * wake it with EINTR (an earlier try, withdrawn for that). Not with
 * CPROF_CPU=on-demand, nor without a dumper thread (the thread is then
 * armed at its start, as the main thread always is). */
#define ARM_TICK_NS 2000000
#define ARM_AHEAD_NS 200000  /* a made timer's first expiry is at least this far ahead */
#define ARM_NEVER INT64_MAX
static atomic_int pending_threads;   /* slots in SLOT_PENDING */
/* CLOCK_MONOTONIC time by which the dumper looks at the waiting slots
 * again; ARM_NEVER while it sleeps until woken, and while it looks (a
 * thread that comes then wakes it, or finds the time it will look). */
static _Atomic int64_t arm_look_at = ARM_NEVER;
static _Atomic int64_t arm_last_start;  /* the latest new thread's start (CLOCK_MONOTONIC) */
static int64_t arm_last_look;           /* the dumper's: when it last looked */

static int64_t arm_due(int64_t now);

/* On the dumper's thread: makes the timers that are due; returns the
 * CLOCK_MONOTONIC time by which it should look again, 0 for none.
 * Against a new thread (cprof_cpu_thread_start): the dumper says
 * ARM_NEVER before it counts the waiting slots, and the thread counts
 * itself before it reads what the dumper said. A slot the count missed
 * was published after it, so its thread reads ARM_NEVER or the time
 * found without it, and wakes the dumper if that is too late for it. */
int64_t cprof_cpu_arm_pending(int64_t now)
{
	atomic_store(&arm_look_at, ARM_NEVER);
	if (!atomic_load(&cpu_active))
		return 0;
	int64_t next = ARM_NEVER;
	if (atomic_load(&pending_threads) > 0) {
		next = arm_due(now);
		if (next < now + ARM_TICK_NS)
			next = now + ARM_TICK_NS;
	}
	bool coming = atomic_load_explicit(&arm_last_start, memory_order_relaxed) >= arm_last_look;
	arm_last_look = now;
	if (coming && next > now + ARM_TICK_NS)
		next = now + ARM_TICK_NS;
	if (next == ARM_NEVER)
		return 0;
	atomic_store(&arm_look_at, next);
	return next;
}

/* Makes the due slots' timers; returns the earliest time of a slot
 * still waiting, ARM_NEVER for none. */
static int64_t arm_due(int64_t now)
{
	int64_t next = ARM_NEVER;
	int high = atomic_load(&timer_slots_high);
	for (int i = 0; i < high && atomic_load(&cpu_active); i++) {
		timer_slot_t *t = &timer_slots[i];
		if (atomic_load_explicit(&t->taken, memory_order_acquire) != SLOT_PENDING)
			continue;
		int64_t at = atomic_load_explicit(&t->arm_at, memory_order_relaxed);
		if (at > now) {
			if (at < next)
				next = at;
			continue;
		}
		int expected = SLOT_PENDING;
		if (!atomic_compare_exchange_strong(&t->taken, &expected, SLOT_ARMING))
			continue;
		/* The thread's CPU clock (as pthread_getcpuclockid makes it). */
		clockid_t clock = (clockid_t)((~(unsigned)t->tid << 3) | 6);
		if (thread_timer_create(clock, t->tid, &t->id) != 0) {
			/* Never again (the slot stays the thread's): its end
			 * counts its time. */
			atomic_fetch_sub(&pending_threads, 1);
			atomic_store(&t->taken, SLOT_NO_TIMER);
			continue;
		}
		/* Never an expiry in the past: it would fire now, whatever
		 * the thread is doing, and wake one asleep in ppoll with
		 * EINTR. Periods it ran past already are its tail's (counted
		 * at its end, charged to its last sample). */
		int64_t expiry = t->first_ns;
		struct timespec cpu;
		if (clock_gettime(clock, &cpu) == 0) {
			int64_t ran = (int64_t)cpu.tv_sec * 1000000000 + cpu.tv_nsec + ARM_AHEAD_NS;
			if (ran >= expiry)
				expiry += ((ran - expiry) / period_ns + 1) * period_ns;
		}
		struct itimerspec its = { ns_to_timespec(period_ns), ns_to_timespec(expiry) };
		sys_timer_settime(t->id, TIMER_ABSTIME, &its, NULL);
		atomic_fetch_sub(&pending_threads, 1);
		atomic_store_explicit(&t->taken, SLOT_LIVE, memory_order_release);
		/* The profile stopped meanwhile (the program took the signal):
		 * disarm_all may have passed this slot. */
		if (!atomic_load(&cpu_active)) {
			expected = SLOT_LIVE;
			if (atomic_compare_exchange_strong(&t->taken, &expected, SLOT_BUSY)) {
				sys_timer_delete(t->id);
				atomic_store(&t->taken, SLOT_NO_TIMER);
			}
		}
	}
	return next;
}

void cprof_cpu_thread_start(int64_t created_ns)
{
	if (!atomic_load(&cpu_active) || use_itimer || cprof_thread.timer_slot >= 0)
		return;
	if (created_ns && !on_demand && cprof_dump_thread_running()) {
		int slot = timer_slot_take();
		if (slot >= 0) {
			/* Its CPU clock began at zero after created_ns. */
			int64_t first = 1 + (int64_t)(rng_next() % (uint64_t)period_ns);
			timer_slot_t *t = &timer_slots[slot];
			t->tid = cprof_gettid();
			t->first_ns = first;
			atomic_store(&t->arm_at, created_ns + first);
			tail = (cpu_tail_t){ .first_ns = first, .wall_bound_ns = created_ns + first };
			cprof_thread.timer_slot = slot;
			atomic_store_explicit(&t->taken, SLOT_PENDING, memory_order_release);
			atomic_store_explicit(&arm_last_start, created_ns, memory_order_relaxed);
			atomic_fetch_add(&pending_threads, 1);
			if (atomic_load(&arm_look_at) > created_ns + first + ARM_TICK_NS)
				cprof_dump_kick();
			return;
		}
	}
	int slot = timer_slot_take();
	if (slot < 0) {
		if (atomic_fetch_add(&cprof_cpu_threads_not_sampled, 1) == 0)
			cprof_log("more than %d threads at once; threads beyond that have no "
				  "CPU timer", TIMER_SLOTS);
		return;
	}
	tail.settling = 0;
	if (thread_timer_create(CLOCK_THREAD_CPUTIME_ID, cprof_gettid(), &timer_slots[slot].id) != 0) {
		atomic_store(&timer_slots[slot].taken, 0);
		return;
	}
	/* On demand, a timer is armed only while a window is open; the
	 * check after publishing the slot meets a window opened meanwhile
	 * (the opener arms published slots: one of the two arms it). */
	if (!on_demand) {
		/* The expiries it will count from: its CPU time now plus the
		 * first delay (relative to the thread's clock); and the wall
		 * time before which it cannot have reached the first. */
		int64_t now = thread_cpu_ns(), wall = cprof_now_ns(CLOCK_MONOTONIC);
		int64_t first = arm_timer(timer_slots[slot].id);
		tail = (cpu_tail_t){ .first_ns = now + first, .wall_bound_ns = wall + first };
	} else if (atomic_load(&demand) > 0) {
		arm_timer(timer_slots[slot].id);
	}
	atomic_store(&timer_slots[slot].taken, 2); /* live */
	cprof_thread.timer_slot = slot;
	if (on_demand && atomic_load(&demand) > 0)
		arm_timer(timer_slots[slot].id);
}

void cprof_cpu_thread_exit(void)
{
	int slot = cprof_thread.timer_slot;
	if (slot < 0)
		return;
	cprof_thread.timer_slot = -1;
	timer_slot_t *t = &timer_slots[slot];
	int expected = SLOT_PENDING;
	bool was_pending = atomic_compare_exchange_strong(&t->taken, &expected, SLOT_BUSY);
	if (!was_pending) {
		expected = SLOT_NO_TIMER;
		was_pending = atomic_compare_exchange_strong(&t->taken, &expected, SLOT_BUSY);
	} else {
		atomic_fetch_sub(&pending_threads, 1);
	}
	if (was_pending) {
		/* No timer was made: the tail is all its time. */
		tail.settling = 1;
		tail_flush();
		atomic_store(&t->taken, SLOT_FREE);
		return;
	}
	while (atomic_load(&t->taken) == SLOT_ARMING)
		sched_yield();
	delete_own_timer(slot);
}

static void disarm_all(void)
{
	int high = atomic_load(&timer_slots_high);
	for (int i = 0; i < high; i++) {
		int expected = 2;
		if (atomic_compare_exchange_strong(&timer_slots[i].taken, &expected, 1)) {
			sys_timer_delete(timer_slots[i].id);
			atomic_store(&timer_slots[i].taken, 0);
		}
	}
	if (use_itimer) {
		struct itimerval off;
		memset(&off, 0, sizeof off);
		setitimer(ITIMER_PROF, &off, NULL);
	}
}


/* ---- CPROF_CPU=on-demand ------------------------------------------------
 * Go's CPU profiler runs only while a profile is asked for; a service
 * under the shim can have the same: each thread still gets its timer at
 * start (created, not armed: no signal, no cost), and the timers of every
 * live thread are armed when the first window opens (profile?seconds=N on
 * the endpoint) and disarmed when the last one closes. Between windows the
 * CPU profile grows by nothing, so a cumulative dump holds what the windows
 * saw. Heap, mutex and block keep sampling (in-use memory cannot be
 * learnt after the fact). */

static void arm_itimer(void);

static void set_all(bool armed)
{
	if (use_itimer) {
		if (armed) {
			arm_itimer();
		} else {
			struct itimerval off;
			memset(&off, 0, sizeof off);
			setitimer(ITIMER_PROF, &off, NULL);
		}
		return;
	}
	static const struct itimerspec off;
	int high = atomic_load(&timer_slots_high);
	for (int i = 0; i < high; i++) {
		if (atomic_load(&timer_slots[i].taken) != 2)
			continue;
		/* A thread ending now may have deleted it: EINVAL, nothing
		 * else (every timer id in the table is ours). */
		if (armed)
			arm_timer(timer_slots[i].id);
		else
			sys_timer_settime(timer_slots[i].id, 0, &off, NULL);
	}
}

void cprof_cpu_demand(int delta)
{
	if (!on_demand || !atomic_load(&cpu_active))
		return;
	int before = atomic_fetch_add(&demand, delta);
	if (delta > 0 && before == 0)
		set_all(true);
	else if (delta < 0 && before + delta == 0)
		set_all(false);
}

static int probe_thread_timer(void)
{
	/* Can this kernel/container give per-thread CPU timers? */
	int id;
	if (thread_timer_create(CLOCK_THREAD_CPUTIME_ID, (pid_t)syscall(SYS_gettid), &id) != 0)
		return -errno;
	sys_timer_delete(id);
	return 0;
}

static void arm_itimer(void)
{
	struct itimerval itv;
	itv.it_interval.tv_sec = period_ns / 1000000000;
	itv.it_interval.tv_usec = (period_ns % 1000000000) / 1000;
	if (itv.it_interval.tv_sec == 0 && itv.it_interval.tv_usec == 0)
		itv.it_interval.tv_usec = 1;
	itv.it_value = itv.it_interval;
	setitimer(ITIMER_PROF, &itv, NULL);
}

int cprof_cpu_start(void)
{
	period_ns = 1000000000LL / cprof_config.cpu_hz;
	cprof_cpu_signal = SIGRTMAX - 4;
	int err = cprof_config.cpu_process_timer ? 0 : probe_thread_timer();
	if (cprof_config.cpu_process_timer) {
		use_itimer = true;
		cprof_cpu_signal = SIGPROF;
	} else if (err < 0) {
		use_itimer = true;
		cprof_cpu_signal = SIGPROF;
		cprof_log("per-thread CPU timers unavailable (%s); falling back to a "
			  "process-wide ITIMER_PROF, which under-samples busy threads",
			  strerror(-err));
	}
	err = cprof_signal_take(cprof_cpu_signal, on_cpu_timer);
	if (err < 0) {
		cprof_log("cannot install the CPU timer's handler (%s); no CPU profile",
			  strerror(-err));
		return err;
	}
	on_demand = cprof_config.cpu_on_demand;
	atomic_store(&cpu_active, 1);
	cprof_source_register(CPROF_KIND_CPU, period_ns, NULL);
	if (use_itimer) {
		if (!on_demand)
			arm_itimer();
	} else {
		cprof_cpu_thread_start(0);
	}
	return 0;
}

bool cprof_cpu_timers_running(void)
{
	return atomic_load(&cpu_active) && !use_itimer &&
	       (!on_demand || atomic_load(&demand) > 0);
}

int cprof_cpu_snapshot_signal(void)
{
	if (cprof_cpu_signal)
		return cprof_cpu_signal;
	/* The CPU profile is off: the handler is installed for the snapshots
	 * alone (cpu_active stays 0), and the signal hidden the same way. */
	cprof_cpu_signal = SIGRTMAX - 4;
	if (cprof_signal_take(cprof_cpu_signal, on_cpu_timer) < 0) {
		cprof_cpu_signal = 0;
		return 0;
	}
	return cprof_cpu_signal;
}

void cprof_cpu_stop(void)
{
	/* The calling thread's tail first (at exit, the thread that exits),
	 * while its timer is still live: charged before the final dump. */
	if (cprof_thread.timer_slot >= 0 && atomic_load(&cpu_active))
		cprof_cpu_thread_exit(); /* its timer, or its pending slot */
	if (!atomic_exchange(&cpu_active, 0))
		return;
	disarm_all();
}

/* The program installs its own handler for the timers' signal: stop
 * sending it ours before it is in place. The samples taken so far stay. */
void cprof_cpu_step_aside(void)
{
	cprof_cpu_stop();
}

void cprof_cpu_atfork_child(void)
{
	/* Timers are not inherited by fork: forget the parent's slots and
	 * arm this thread's own. */
	int high = atomic_load(&timer_slots_high);
	for (int i = 0; i < high; i++)
		atomic_store(&timer_slots[i].taken, 0);
	atomic_store(&timer_slots_high, 0);
	atomic_store(&pending_threads, 0);
	atomic_store(&arm_look_at, ARM_NEVER);
	atomic_store(&arm_last_start, 0);
	arm_last_look = 0;
	cprof_thread.timer_slot = -1;
	/* The parent's windows are not the child's (its endpoint thread
	 * did not come along). */
	atomic_store(&demand, 0);
	if (!atomic_load(&cpu_active))
		return;
	if (use_itimer) {
		if (!on_demand)
			arm_itimer();
	} else {
		cprof_cpu_thread_start(0);
	}
}

/* ---- leaving a handler on the alternate stack by siglongjmp ---------- */

/* signals.c puts the timers' signal in the sa_mask of the program's
 * SA_ONSTACK handlers, so that it never needs a second signal frame on a
 * small alternate stack. A handler that returns gives the mask back with
 * the stack, atomically (sigreturn). One that leaves by siglongjmp does
 * not: siglongjmp restores the saved mask while it still runs on the
 * alternate stack, and a timer signal held pending since the handler
 * began would land there at once, and with it a frame too big for a stack
 * of the kernel's minimum size: the kernel kills the process. So, on the
 * alternate stack only, the jump first takes that pending signal itself
 * (sigtimedwait, no wait), counting its periods under
 * "[cprof: no stack room]" at the call site, and makes sure the thread's
 * next expiry is at least HOLD_OFF_NS of its CPU time away: CPU timers
 * fire only at a scheduler tick after expiry, and the jump is off that
 * stack within a few microseconds. What that moves the expiry by is
 * added up per thread and counted there too, period by period, so a loop
 * that faults faster than HOLD_OFF_NS keeps its CPU time. */
#define HOLD_OFF_NS 1000000

static __thread int64_t held_off_ns __attribute__((tls_model("initial-exec")));

static void count_held(uintptr_t call_site, int64_t periods)
{
	uintptr_t pcs[2] = { call_site, CPROF_FRAME_NOROOM };
	cprof_stack_t *s = cprof_stacks_insert(CPROF_KIND_CPU, 0, pcs, 2);
	if (s) {
		cprof_stack_add(s, 0, periods);
		cprof_stack_add(s, 1, periods * period_ns);
	}
	tail.counted += periods;
}

static bool cpu_held_by_mask(const sigjmp_buf env)
{
	int sig = cprof_cpu_signal;
	if (!atomic_load_explicit(&cpu_active, memory_order_relaxed) || use_itimer || sig <= 0)
		return false;
	return env[0].__mask_was_saved && !sigismember((const sigset_t *)&env[0].__saved_mask, sig);
}

__attribute__((noinline)) static void cpu_leave_altstack(uintptr_t call_site)
{
	int saved_errno = errno;
	stack_t ss;
	if (sigaltstack(NULL, &ss) != 0 || !(ss.ss_flags & SS_ONSTACK)) {
		errno = saved_errno;
		return;
	}
	int slot = cprof_thread.timer_slot;
	if (slot >= 0) {
		struct itimerspec its;
		if (sys_timer_gettime(timer_slots[slot].id, &its) == 0 &&
		    (its.it_value.tv_sec == 0 && its.it_value.tv_nsec < HOLD_OFF_NS)) {
			held_off_ns += HOLD_OFF_NS - its.it_value.tv_nsec;
			its.it_value.tv_nsec = HOLD_OFF_NS;
			sys_timer_settime(timer_slots[slot].id, 0, &its, NULL);
			if (held_off_ns >= period_ns) {
				count_held(call_site, held_off_ns / period_ns);
				held_off_ns %= period_ns;
			}
		}
	}
	sigset_t only;
	sigemptyset(&only);
	sigaddset(&only, cprof_cpu_signal);
	struct timespec zero = { 0, 0 };
	siginfo_t info;
	/* The system call: libcprof's own sigtimedwait is a block wrapper. */
	while (syscall(SYS_rt_sigtimedwait, &only, &info, &zero, _NSIG / 8) == cprof_cpu_signal) {
		if (info.si_code != SI_TIMER)
			continue;
		count_held(call_site, 1 + (info.si_overrun > 0 ? info.si_overrun : 0));
	}
	errno = saved_errno;
}

typedef void (*longjmp_fn)(struct __jmp_buf_tag *, int);
static longjmp_fn real_siglongjmp, real_longjmp, real__longjmp;
static void (*real___longjmp_chk)(struct __jmp_buf_tag *, int);
CPROF_NEXT_SLOT(siglongjmp, NULL, real_siglongjmp);
CPROF_NEXT_SLOT(longjmp, NULL, real_longjmp);
CPROF_NEXT_SLOT(_longjmp, NULL, real__longjmp);
CPROF_NEXT_SLOT(__longjmp_chk, NULL, real___longjmp_chk);

#define LONGJMP(name)                                                                 \
	CPROF_EXPORT __attribute__((noreturn)) void name(struct __jmp_buf_tag env[1], int val) \
	{                                                                            \
		if (CPROF_UNLIKELY(!real_##name))                                    \
			cprof_real_init();                                           \
		if (CPROF_UNLIKELY(cpu_held_by_mask(env)) &&                          \
		    !cprof_unwind_on_thread_stack((uintptr_t)__builtin_frame_address(0))) \
			cpu_leave_altstack((uintptr_t)__builtin_return_address(0) - 1); \
		real_##name(env, val);                                               \
		__builtin_unreachable();                                             \
	}

LONGJMP(siglongjmp)
LONGJMP(longjmp)
LONGJMP(_longjmp)
LONGJMP(__longjmp_chk)

/* dlclose may unmap code whose unwind rules libunwind has cached; a
 * library loaded later at the same address must not be unwound with them.
 * (dlopen is not wrapped: glibc resolves a dlopen'd name against the
 * caller's RUNPATH, found from the return address, which a wrapper would
 * change.) */
CPROF_EXPORT int dlclose(void *handle)
{
	if (CPROF_UNLIKELY(!real_dlclose))
		cprof_real_init();
	int ret = real_dlclose(handle);
	int saved_errno = errno;
	cprof_unwind_flush();
	errno = saved_errno;
	return ret;
}
