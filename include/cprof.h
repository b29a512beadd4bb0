/* cprof.h — what a program may ask of libcprof, if it wants to.
 *
 * Nothing here is needed to be profiled: LD_PRELOAD=libcprof.so is enough.
 * A program that includes this header needs no link flag and no libcprof at
 * build time: each call looks the shim up with dlsym(RTLD_DEFAULT, ...) the
 * first time and is a no-op returning -ENOSYS when the shim is not loaded.
 * (glibc 2.34 and later have dlsym in libc; older ones need -ldl.)
 */
#ifndef CPROF_H
#define CPROF_H

#include <dlfcn.h>
#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The shim's entry points, exported by libcprof.so under these names. */
int cprof_dump(void);

/* Writes every enabled profile now, cumulative since the start of the
 * process, as a dump signal would, and returns when the files are in
 * place: 0, or -errno from the shim (for example -EACCES for an
 * unwritable CPROF_OUT), or -ENOSYS when libcprof.so is not loaded. */
static inline int cprof_dump_now(void)
{
	static int (*volatile dump_fn)(void);
	static volatile int looked_up;
	if (!looked_up) {
		dump_fn = (int (*)(void))dlsym(RTLD_DEFAULT, "cprof_dump");
		looked_up = 1;
	}
	return dump_fn ? dump_fn() : -ENOSYS;
}

#ifdef __cplusplus
}
#endif
#endif
