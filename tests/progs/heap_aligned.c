/* The aligned allocators: posix_memalign, aligned_alloc, memalign, valloc,
 * pvalloc. Each kept_* function keeps 8 blocks of its size, each freed_*
 * one allocates 8 and frees them; every address is checked for its
 * alignment and written to end to end. Exits 1 on a misaligned block.
 * Under CPROF_HEAP_RATE=1, inuse_space: kept_posix 8 x 3000,
 * kept_aligned 8 x 8192, kept_memalign 8 x 5000, kept_valloc 8 x 7000,
 * kept_pvalloc 8 x 8192 (5000 rounded up to pages); every freed_* 0. */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 8
static void *volatile kept[5][N];
static int bad;

static void *check(void *p, size_t align, size_t size)
{
	if (!p || (uintptr_t)p % align) {
		fprintf(stderr, "block %p not aligned to %zu\n", p, align);
		bad = 1;
		return p;
	}
	memset(p, 0xab, size);
	return p;
}

__attribute__((noinline)) static void *one_posix(void)
{
	void *p = NULL;
	if (posix_memalign(&p, 4096, 3000) != 0)
		return NULL;
	return check(p, 4096, 3000);
}

__attribute__((noinline)) static void kept_posix(void)
{
	for (int i = 0; i < N; i++)
		kept[0][i] = one_posix();
}

__attribute__((noinline)) static void freed_posix(void)
{
	for (int i = 0; i < N; i++) {
		void *p = NULL;
		if (posix_memalign(&p, 64, 3000) == 0)
			free(check(p, 64, 3000));
	}
}

__attribute__((noinline)) static void kept_aligned(void)
{
	for (int i = 0; i < N; i++)
		kept[1][i] = check(aligned_alloc(1024, 8192), 1024, 8192);
}

__attribute__((noinline)) static void freed_aligned(void)
{
	for (int i = 0; i < N; i++)
		free(check(aligned_alloc(2048, 4096), 2048, 4096));
}

__attribute__((noinline)) static void kept_memalign(void)
{
	for (int i = 0; i < N; i++)
		kept[2][i] = check(memalign(512, 5000), 512, 5000);
}

__attribute__((noinline)) static void freed_memalign(void)
{
	for (int i = 0; i < N; i++)
		free(check(memalign(128, 5000), 128, 5000));
}

__attribute__((noinline)) static void kept_valloc(void)
{
	for (int i = 0; i < N; i++)
		kept[3][i] = check(valloc(7000), (size_t)getpagesize(), 7000);
}

__attribute__((noinline)) static void kept_pvalloc(void)
{
	for (int i = 0; i < N; i++)
		kept[4][i] = check(pvalloc(5000), (size_t)getpagesize(), 8192);
}

__attribute__((noinline)) static void freed_valloc(void)
{
	for (int i = 0; i < N; i++) {
		free(check(valloc(7000), (size_t)getpagesize(), 7000));
		free(check(pvalloc(100), (size_t)getpagesize(), 4096));
	}
}

int main(void)
{
	kept_posix();
	freed_posix();
	kept_aligned();
	freed_aligned();
	kept_memalign();
	freed_memalign();
	kept_valloc();
	kept_pvalloc();
	freed_valloc();
	/* An invalid alignment fails as it does without the shim. */
	void *p = (void *)1;
	int err = posix_memalign(&p, 3, 100);
	fprintf(stderr, "posix_memalign(3) = %d, p unchanged %d\n", err, p == (void *)1);
	return bad;
}
