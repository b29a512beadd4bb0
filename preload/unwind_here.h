/* unwind_here.h — a wrapper's unwind that starts in the wrapper's own
 * frame.
 *
 * cprof_unwind_here walks its own frames and those of everything between
 * it and the wrapper before it reaches the program's, and libunwind's
 * fast trace pays a table lookup for each (callgrind on bench/heap_work:
 * 1,126 instructions for a heap sample's 9 frames, 5 of them libcprof's;
 * starting here saved 195 a sample). Inlined into the wrapper's slow
 * path, this calls
 * unw_backtrace from there: two frames of libcprof's are walked, the
 * wrapper's and unw_backtrace's own. The halves around the walk return
 * before it starts. A thread that does not hold a cached trace yet, or a
 * stack short of room, goes to cprof_unwind_here, which handles both. */
#ifndef CPROF_UNWIND_HERE_H
#define CPROF_UNWIND_HERE_H

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "cprof_internal.h"

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
	int state = cprof_unwind_fast_begin((uintptr_t)__builtin_frame_address(0));
	if (state < 0)
		return cprof_unwind_here(pcs, max);
	return cprof_unwind_fast_end(pcs, unw_backtrace((void **)pcs, max), max, state);
}

#endif
