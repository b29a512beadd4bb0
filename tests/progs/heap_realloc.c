/* realloc moves a sample with its block. Under CPROF_HEAP_RATE=1:
 *   start_small   malloc(1000), then grow_kept reallocs it to 200000 (past
 *                 the mmap threshold: it moves) and keeps it: the bytes in
 *                 use belong to grow_kept;
 *   start_other   malloc(2000), grow_freed reallocs it to 300000, frees it;
 *   shrink_kept   malloc(50000), realloc'd smaller in place (40000), kept;
 *   reuse_old     mallocs blocks of the old sizes again, which the
 *                 allocator may place at the old addresses, and frees them.
 * Prints on stderr whether each realloc moved its block. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile keep[4];

__attribute__((noinline)) static void *start_small(void)
{
	return malloc(1000);
}

__attribute__((noinline)) static void *start_other(void)
{
	return malloc(2000);
}

__attribute__((noinline)) static void *grow_kept(void *p)
{
	return realloc(p, 200000);
}

__attribute__((noinline)) static void grow_freed(void *p)
{
	void *q = realloc(p, 300000);
	fprintf(stderr, "grow_freed moved %d\n", q != p);
	free(q);
}

__attribute__((noinline)) static void *shrink_kept(void)
{
	void *p = malloc(50000);
	void *q = realloc(p, 40000);
	fprintf(stderr, "shrink_kept moved %d\n", q != p);
	return q;
}

static void *volatile reused[2]; /* volatile: the compiler keeps the pair */

__attribute__((noinline)) static void reuse_old(void)
{
	reused[0] = malloc(1000);
	reused[1] = malloc(2000);
	free(reused[0]);
	free(reused[1]);
}

int main(void)
{
	void *small = start_small();
	void *blocker = malloc(16); /* so that growing in place is not possible */
	memset(small, 1, 1000);
	void *grown = grow_kept(small);
	fprintf(stderr, "grow_kept moved %d\n", grown != small);
	keep[0] = grown;
	void *other = start_other();
	void *blocker2 = malloc(16);
	grow_freed(other);
	keep[1] = shrink_kept();
	reuse_old();
	free(blocker);
	free(blocker2);
	return ((char *)keep[0])[999] == 1 ? 0 : 1;
}
