/* A dlsym that allocates, as glibc's did before 2.34 (libdl's dlerror
 * state) and others still do. Defined in the program, it comes first in
 * the lookup order, so libcprof's own dlsym calls reach it: while the shim
 * resolves the next malloc, this dlsym's calloc can only be served from the
 * shim's bootstrap arena, and its free of that block must be ignored.
 * The program then allocates as usual; kept_after keeps 3 x 1000 bytes.
 * Prints on stderr how many of its dlsym calls allocated and whether all
 * of them got memory. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int calls, allocated;
static void *volatile kept[3];

void *dlsym(void *handle, const char *name)
{
	static void *(*real_dlsym)(void *, const char *);
	if (!real_dlsym)
		real_dlsym = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
	if (!real_dlsym)
		real_dlsym = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
	char *state = calloc(1, 200);
	calls++;
	if (state) {
		allocated++;
		strcpy(state, name);
	}
	void *result;
	if (handle == RTLD_NEXT) {
		/* RTLD_NEXT is relative to the caller, which is now this
		 * program: look in libc, which is next after the shim. */
		void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
		result = libc ? real_dlsym(libc, name) : NULL;
	} else {
		result = real_dlsym(handle, name);
	}
	free(state);
	return result;
}

__attribute__((noinline)) static void kept_after(void)
{
	for (int i = 0; i < 3; i++) {
		kept[i] = malloc(1000);
		memset(kept[i], i, 1000);
	}
	kept[0] = realloc(kept[0], 1000);
}

int main(void)
{
	kept_after();
	fprintf(stderr, "dlsym calls %d, allocated %d\n", calls, allocated);
	return calls == allocated ? 0 : 1;
}
