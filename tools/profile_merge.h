/* profile_merge.h — many profiles as one, for `cprof top|diff|raw|merge|
 * flame` given several files or directories: the merge itself (as pprof's
 * profile.Merge does it) and the sets of files a command's paths name.
 *
 * Merging (profile_merge.c). Profiles merge only when they have the same
 * sample types (type and unit, in the same order) and the same period
 * type; the first profile added sets them. Like pprof: mappings are one
 * when their build id (or, without one, their file), offset and size
 * rounded up to 4 KiB agree, and a location's address is moved onto the
 * merged mapping, so that the processes of one program, loaded at
 * different addresses, share mappings and locations; functions are one
 * when name, system name, file and start line agree; samples are one when
 * their stacks and labels agree, and their values add up (saturating).
 * Time is the earliest nonzero, duration the sum, period the largest,
 * comments are kept once each, the default sample type is the first set.
 * With a label (`--by program`), each sample of a profile gets a string
 * label key=value, so that pprof's -tagfocus can slice the merged profile
 * and `top --by` can sum by it.
 *
 *   cprof_merge_t *merge = cprof_merge_new();
 *   for each profile: cprof_merge_add(merge, profile, name, key, value, err, n)
 *   cprof_merge_finish(merge, &merged, err, n);    a validated profile
 *   cprof_merge_free(merge);
 *
 * Profiles may be freed once added. The merged profile is packed and read
 * back through cprof_profile_read_buffer, so it is exactly what
 * `cprof merge` writes and obeys every guarantee of the reader.
 *
 * Sets of files (profile_set.c). A path is a profile file, taken as it
 * is, or a directory: every regular file NAME.KIND.pb.gz below it, in name
 * order, for one KIND (cpu, heap, mutex, block, ...). The kind is the one
 * asked for (-k), else the only kind the command's directories hold;
 * directories that hold several kinds, and no -k, are an error, as is a
 * directory with no profile of the kind.
 */
#ifndef CPROF_PROFILE_MERGE_H
#define CPROF_PROFILE_MERGE_H

#include <stdbool.h>
#include <stddef.h>

#include "profile_read.h"

/* ---- merging ----------------------------------------------------------- */

typedef struct cprof_merge cprof_merge_t;

/* NULL when out of memory. */
cprof_merge_t *cprof_merge_new(void);

/* Adds `profile` (from the reader). `name` stands for it in messages.
 * With `label_key` set, every sample gets the string label
 * label_key=label_value (a sample that has that key already keeps its
 * own). Returns 0, or -1 with one line in err: "<name>: sample types
 * samples/count, cpu/nanoseconds differ from <first>'s cpu/nanoseconds;
 * profiles of different kinds do not merge", or out of memory. */
int cprof_merge_add(cprof_merge_t *merge, const Perftools__Profiles__Profile *profile,
		    const char *name, const char *label_key, const char *label_value,
		    char *err, size_t errlen);

/* How many profiles were added. */
size_t cprof_merge_count(const cprof_merge_t *merge);

/* The merged profile, to release with cprof_profile_free; -1 with err
 * when nothing was added or out of memory. Call once. */
int cprof_merge_finish(cprof_merge_t *merge, Perftools__Profiles__Profile **out,
		       char *err, size_t errlen);

void cprof_merge_free(cprof_merge_t *merge);

/* Packs and gzips `profile` into `path`, through a temporary file in the
 * same directory renamed into place: never a half-written file. Returns
 * 0, or -1 with "<path>: <problem>" in err. */
int cprof_profile_write(const Perftools__Profiles__Profile *profile, const char *path,
			char *err, size_t errlen);

/* ---- sets of files ----------------------------------------------------- */

/* Which label `--by` adds: none, the program (NAME of NAME.PID.SEQ.KIND.pb.gz,
 * else the main mapping's file name, else the file name up to its first
 * '.') or the process (NAME.PID, else the file name without .pb.gz). */
typedef enum cprof_by {
	CPROF_BY_NONE,
	CPROF_BY_PROGRAM,
	CPROF_BY_PROCESS,
} cprof_by_t;

/* "program", "process", NULL for none. */
const char *cprof_by_key(cprof_by_t by);

/* The paths of one command. Expand once with all of the command's paths,
 * so that every side uses the same kind. */
typedef struct cprof_paths {
	const char *kind; /* -k, or NULL: found by cprof_paths_choose_kind */
	char found_kind[64];
} cprof_paths_t;

/* Looks through the directories among `paths` for the kinds of profile
 * they hold and settles paths->kind when it is NULL. Returns 0, or -1
 * with one line in err: "<dir>: holds cpu and heap profiles; choose the
 * kind with -k KIND", "<dir>: not a profile file or directory: ...". */
int cprof_paths_choose_kind(cprof_paths_t *paths, char *const *list, size_t count,
			    char *err, size_t errlen);

/* Reads the profiles that `list` names (files as they are, directories
 * expanded) and merges them into *out, with the `by` label. One file and
 * no label: that profile as read, unmerged. *files gets how many files
 * went in. Returns 0, or -1 with one line in err naming the file. */
int cprof_paths_load(const cprof_paths_t *paths, char *const *list, size_t count,
		     cprof_by_t by, Perftools__Profiles__Profile **out, size_t *files,
		     char *err, size_t errlen);

#endif
