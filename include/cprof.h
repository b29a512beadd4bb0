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
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The shim's entry points, exported by libcprof.so under these names. */
int cprof_dump(void);
unsigned long cprof_labels_push_array(const char *const *kv, unsigned pairs);
void cprof_labels_restore(unsigned long previous);

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

/* ---- labels: pprof.Do for C ------------------------------------------
 *
 *   cprof_labels_t old = cprof_labels_push("tenant", id, "op", "checkout", NULL);
 *   ... every CPU, heap, mutex and block sample of this thread here carries
 *       tenant=<id> and op=checkout ...
 *   cprof_labels_pop(old);
 *
 * push adds the key/value pairs (a NULL-terminated list) to the calling
 * thread's current labels, a key given again replacing its value, and
 * returns the previous set; pop restores it. A thread created while labels
 * are set starts with them. The strings are copied: they may change or be
 * freed after the push. At most CPROF_LABELS_MAX pairs in one push; a set
 * of more than 16 pairs or 496 bytes of text, or one that finds the
 * shim's label table full (CPROF_LABEL_SETS), makes the samples carry
 * cprof="labels dropped" instead. No system call, no allocation once a
 * set has been seen. Without libcprof.so loaded, push returns 0 and pop
 * does nothing. Filter with `go tool pprof -tagfocus=tenant=acme` or
 * `cprof top --tag tenant=acme`. */
typedef unsigned long cprof_labels_t;

#define CPROF_LABELS_MAX 16

static inline cprof_labels_t cprof_labels_push_pairs(const char *const *kv, unsigned pairs)
{
	static unsigned long (*volatile push_fn)(const char *const *, unsigned);
	static volatile int looked_up;
	if (!looked_up) {
		push_fn = (unsigned long (*)(const char *const *, unsigned))dlsym(
			RTLD_DEFAULT, "cprof_labels_push_array");
		looked_up = 1;
	}
	return push_fn ? push_fn(kv, pairs) : 0;
}

static inline cprof_labels_t cprof_labels_push(const char *key, const char *value, ...)
{
	const char *kv[2 * CPROF_LABELS_MAX];
	unsigned pairs = 0;
	if (key) {
		va_list ap;
		kv[0] = key;
		kv[1] = value;
		pairs = 1;
		va_start(ap, value);
		while (pairs < CPROF_LABELS_MAX) {
			const char *k = va_arg(ap, const char *);
			if (!k)
				break;
			kv[2 * pairs] = k;
			kv[2 * pairs + 1] = va_arg(ap, const char *);
			pairs++;
		}
		va_end(ap);
	}
	return cprof_labels_push_pairs(kv, pairs);
}

static inline void cprof_labels_pop(cprof_labels_t previous)
{
	static void (*volatile restore_fn)(unsigned long);
	static volatile int looked_up;
	if (!looked_up) {
		restore_fn = (void (*)(unsigned long))dlsym(RTLD_DEFAULT, "cprof_labels_restore");
		looked_up = 1;
	}
	if (restore_fn)
		restore_fn(previous);
}

#ifdef __cplusplus
}

namespace cprof {
/* The scoped form: labels for the lifetime of the object.
 *   { cprof::scoped_labels l("tenant", id, "op", "checkout"); ... } */
class scoped_labels {
public:
	template <typename... Rest>
	explicit scoped_labels(const char *key, const char *value, Rest... rest)
		: previous_(cprof_labels_push(key, value, rest..., (const char *)nullptr))
	{
	}
	~scoped_labels() { cprof_labels_pop(previous_); }
	scoped_labels(const scoped_labels &) = delete;
	scoped_labels &operator=(const scoped_labels &) = delete;

private:
	cprof_labels_t previous_;
};
} // namespace cprof
#endif
#endif
