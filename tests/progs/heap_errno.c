/* The wrappers are transparent: return values, errno and failures are what
 * the allocator gives without the shim. Prints one line per check on
 * stdout, the same with and without libcprof.so; the e2e test compares.
 * keep_after_failed_realloc keeps 777 bytes whose realloc failed; nothing
 * else the program allocates stays in use. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile kept, *volatile early;

/* Runs before any shared object's constructor, libcprof's included: the
 * wrappers must work (and resolve the next malloc) before the shim has
 * started; main frees this block after it has. */
static void early_malloc(void)
{
	early = malloc(4000);
}
__attribute__((section(".preinit_array"), used)) static void (*preinit)(void) = early_malloc;
/* volatile: the compiler must not see (and warn about) the sizes. */
static volatile size_t huge = SIZE_MAX / 2, quarter = SIZE_MAX / 4;

__attribute__((noinline)) static void keep_after_failed_realloc(void)
{
	void *p = malloc(777);
	memset(p, 7, 777);
	errno = 0;
	void *q = realloc(p, huge);
	if (q) {
		printf("realloc huge: ptr\n");
		kept = q;
		return;
	}
	printf("realloc huge: NULL errno=%s old intact=%d\n", strerror(errno),
	       ((unsigned char *)p)[776] == 7);
	kept = p;
}

int main(void)
{
	printf("preinit malloc: %s\n", early ? "ptr" : "NULL");
	free(early);
	errno = 1234;
	void *p = malloc(100);
	printf("malloc ok keeps errno: %d\n", errno == 1234);
	printf("usable size >= 100: %d\n", malloc_usable_size(p) >= 100);
	errno = 77;
	free(p);
	printf("free keeps errno: %d\n", errno == 77);
	errno = 55;
	free(NULL);
	printf("free(NULL) keeps errno: %d\n", errno == 55);

	errno = 0;
	p = malloc(huge);
	printf("malloc huge: %s errno=%s\n", p ? "ptr" : "NULL", strerror(errno));
	errno = 0;
	p = calloc(quarter, 16);
	printf("calloc overflow: %s errno=%s\n", p ? "ptr" : "NULL", strerror(errno));
	errno = 0;
	p = reallocarray(NULL, quarter, 16);
	printf("reallocarray overflow: %s errno=%s\n", p ? "ptr" : "NULL", strerror(errno));
	errno = 0;
	p = aligned_alloc(4096, huge);
	printf("aligned_alloc huge: %s errno=%s\n", p ? "ptr" : "NULL", strerror(errno));
	errno = 1234;
	void *q = NULL;
	int rc = posix_memalign(&q, 24, 100);
	printf("posix_memalign(24): rc=%s errno kept=%d\n", strerror(rc), errno == 1234);
	rc = posix_memalign(&q, 64, 100);
	printf("posix_memalign(64): rc=%d aligned=%d errno kept=%d\n", rc,
	       (uintptr_t)q % 64 == 0, errno == 1234);
	free(q);
	p = calloc(1000, 10);
	int zero = 1;
	for (int i = 0; i < 10000; i++)
		zero &= ((unsigned char *)p)[i] == 0;
	printf("calloc zeroed: %d\n", zero);
	p = realloc(p, 0);
	printf("realloc(p, 0): %s\n", p ? "ptr" : "NULL");
	free(p);
	printf("mallopt: %d\n", mallopt(M_MMAP_THRESHOLD, 1 << 20));
	keep_after_failed_realloc();
	return 0;
}
