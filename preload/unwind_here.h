/* unwind_here.h — a wrapper's unwind that starts in the wrapper's own
 * frame.
 *
 * Inlined into the wrapper's slow path. First walk.c's walk, from the
 * wrapper's own frame: no libunwind, and nothing to set up around it (no
 * cancellation to hold off, no loader lookups to answer). For a stack
 * that walk does not take, libunwind's unw_backtrace, called from here:
 * cprof_unwind_here walks its own frames and those of everything between
 * it and the wrapper before it reaches the program's, and libunwind's
 * fast trace pays a table lookup for each (callgrind on bench/heap_work:
 * 1,126 instructions for a heap sample's 9 frames, 5 of them libcprof's;
 * starting here saved 195 a sample). The halves around that walk return
 * before it starts. A thread that does not hold a cached trace yet, or a
 * stack short of room, goes to cprof_unwind_here, which handles both.
 * The test build (CPROF_WALK_CHECK) also takes each stack with
 * cprof_unwind_here and has walk.c compare the two. */
#ifndef CPROF_UNWIND_HERE_H
#define CPROF_UNWIND_HERE_H

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "cprof_internal.h"

#ifdef CPROF_WALK_CHECK
#include <string.h>
#endif

/* -1: take cprof_unwind_here; else the state for cprof_unwind_fast_end. */
CPROF_SIGSAFE int cprof_unwind_fast_begin(uintptr_t sp);
/* n: what unw_backtrace returned into pcs[]. Returns the depth. */
CPROF_SIGSAFE int cprof_unwind_fast_end(uintptr_t *pcs, int n, int max, int state);

/* As cprof_unwind_here; only where it is inlined into the wrapper. */
CPROF_SIGSAFE static inline __attribute__((always_inline)) int cprof_unwind_fast(uintptr_t *pcs,
										 int max)
{
	if (max <= 0)
		return 0;
	/* walk.c's walk first: no libunwind, nothing to set up around it. */
	int n = cprof_walk_here(pcs, max);
#ifdef CPROF_WALK_CHECK
	if (max <= 256) {
		uintptr_t lib[256], mine[256];
		int depth = -1;
		if (n >= 0) {
			memcpy(mine, pcs, (size_t)n * sizeof *pcs);
			depth = cprof_unwind_walked(mine, n, max);
		}
		cprof_walk_check(0, mine, depth, lib, cprof_unwind_here(lib, max));
	}
#endif
	if (n >= 0)
		return cprof_unwind_walked(pcs, n, max);
	int state = cprof_unwind_fast_begin((uintptr_t)__builtin_frame_address(0));
	if (state < 0)
		return cprof_unwind_here(pcs, max);
	return cprof_unwind_fast_end(pcs, unw_backtrace((void **)pcs, max), max, state);
}

#endif
