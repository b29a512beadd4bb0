/* heap_forward.c — the floor of any malloc wrapper, for `make bench`'s heap
 * section: an LD_PRELOAD library whose malloc, free, calloc and realloc
 * call glibc's own (__libc_malloc and the rest) and do nothing else. It
 * costs what every interposed allocation call costs, one more call to
 * reach glibc's, and nothing of a profiler's. Not a profiler; a baseline.
 *
 *   cc -O2 -shared -fPIC -o heap_forward.so bench/heap_forward.c
 */
#include <stddef.h>

extern void *__libc_malloc(size_t size);
extern void __libc_free(void *p);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);

__attribute__((visibility("default"))) void *malloc(size_t size)
{
	return __libc_malloc(size);
}

__attribute__((visibility("default"))) void free(void *p)
{
	__libc_free(p);
}

__attribute__((visibility("default"))) void *calloc(size_t n, size_t size)
{
	return __libc_calloc(n, size);
}

__attribute__((visibility("default"))) void *realloc(void *p, size_t size)
{
	return __libc_realloc(p, size);
}
