/* profile_set.c — the files a command's paths name (a profile file, or a
 * directory holding NAME.PID.SEQ.KIND.pb.gz files, searched to any depth),
 * the kind to take from directories, the program and process names that
 * `--by` labels samples with, and loading the lot as one merged profile.
 * See profile_merge.h.
 */
#include "profile_merge.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef Perftools__Profiles__Profile profile_t;

static void set_error(char *err, size_t errlen, const char *format, ...)
	__attribute__((format(printf, 3, 4)));

static void set_error(char *err, size_t errlen, const char *format, ...)
{
	va_list args;
	va_start(args, format);
	vsnprintf(err, errlen, format, args);
	va_end(args);
	for (char *c = err; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
}

const char *cprof_by_key(cprof_by_t by)
{
	return by == CPROF_BY_PROGRAM ? "program" : by == CPROF_BY_PROCESS ? "process" : NULL;
}

/* The KIND of "NAME.KIND.pb.gz" (the base name) into `kind`; false when
 * the name does not have that shape. */
static bool kind_of(const char *base, char *kind, size_t size)
{
	size_t length = strlen(base);
	if (length < 7 || strcmp(base + length - 6, ".pb.gz") != 0)
		return false;
	size_t end = length - 6, start = end;
	while (start > 0 && base[start - 1] != '.')
		start--;
	if (start == 0 || start == end || end - start >= size)
		return false;
	memcpy(kind, base + start, end - start);
	kind[end - start] = '\0';
	return true;
}

/* ---- walking directories ----------------------------------------------------- */

typedef struct file_list {
	char **paths;
	size_t count, capacity;
} file_list_t;

static void file_list_free(file_list_t *list)
{
	for (size_t i = 0; i < list->count; i++)
		free(list->paths[i]);
	free(list->paths);
	memset(list, 0, sizeof *list);
}

static int file_list_add(file_list_t *list, const char *path)
{
	if (list->count == list->capacity) {
		size_t bigger = list->capacity ? list->capacity * 2 : 64;
		char **grown = realloc(list->paths, bigger * sizeof *grown);
		if (!grown)
			return -1;
		list->paths = grown;
		list->capacity = bigger;
	}
	char *copy = strdup(path);
	if (!copy)
		return -1;
	list->paths[list->count++] = copy;
	return 0;
}

static int compare_paths(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Calls `visit` for every regular file NAME.KIND.pb.gz under `directory`
 * (any depth; symbolic links to directories are not followed, so no
 * loops). `kinds` collects the kinds seen (comma-separated, for the
 * message); `wanted` NULL: every kind. */
typedef struct walk {
	const char *wanted;
	file_list_t *files; /* NULL: only collect kinds */
	char kinds[256];
	char *err;
	size_t errlen;
	int depth;
} walk_t;

static int walk_directory(walk_t *walk, const char *directory)
{
	if (walk->depth > 64) {
		set_error(walk->err, walk->errlen, "%s: directories nested too deep", directory);
		return -1;
	}
	DIR *dir = opendir(directory);
	if (!dir) {
		set_error(walk->err, walk->errlen, "%s: %s", directory, strerror(errno));
		return -1;
	}
	int result = 0;
	struct dirent *entry;
	while ((entry = readdir(dir)) != NULL) {
		const char *name = entry->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		char path[PATH_MAX];
		size_t dir_length = strlen(directory);
		bool slash = dir_length > 0 && directory[dir_length - 1] == '/';
		if ((size_t)snprintf(path, sizeof path, "%s%s%s", directory, slash ? "" : "/", name) >=
		    sizeof path)
			continue;
		struct stat status;
		if (lstat(path, &status) != 0)
			continue;
		if (S_ISDIR(status.st_mode)) {
			walk->depth++;
			result = walk_directory(walk, path);
			walk->depth--;
			if (result != 0)
				break;
			continue;
		}
		if (S_ISLNK(status.st_mode) && (stat(path, &status) != 0 || !S_ISREG(status.st_mode)))
			continue;
		char kind[64];
		if (!S_ISREG(status.st_mode) || !kind_of(name, kind, sizeof kind))
			continue;
		/* Remember the kind. */
		char needle[70];
		snprintf(needle, sizeof needle, ",%s,", kind);
		char haystack[260];
		snprintf(haystack, sizeof haystack, ",%s,", walk->kinds);
		if (!strstr(haystack, needle) && strlen(walk->kinds) + strlen(kind) + 2 < sizeof walk->kinds) {
			size_t used = strlen(walk->kinds);
			snprintf(walk->kinds + used, sizeof walk->kinds - used, "%s%s", used ? "," : "", kind);
		}
		if (walk->files && (!walk->wanted || strcmp(kind, walk->wanted) == 0) &&
		    file_list_add(walk->files, path) != 0) {
			set_error(walk->err, walk->errlen, "%s: out of memory", directory);
			result = -1;
			break;
		}
	}
	closedir(dir);
	return result;
}

static bool is_directory(const char *path)
{
	struct stat status;
	return stat(path, &status) == 0 && S_ISDIR(status.st_mode);
}

int cprof_paths_choose_kind(cprof_paths_t *paths, char *const *list, size_t count, char *err,
			    size_t errlen)
{
	if (paths->kind)
		return 0;
	char kinds[256] = "";
	const char *first_dir = NULL;
	for (size_t i = 0; i < count; i++) {
		if (!is_directory(list[i]))
			continue;
		walk_t walk = { .err = err, .errlen = errlen };
		if (walk_directory(&walk, list[i]) != 0)
			return -1;
		if (!walk.kinds[0]) {
			set_error(err, errlen, "%s: no profiles (no NAME.KIND.pb.gz file under it)",
				  list[i]);
			return -1;
		}
		/* Union of the kinds, in the order met. */
		char *save, *copy = strdup(walk.kinds);
		if (!copy)
			return -1;
		for (char *kind = strtok_r(copy, ",", &save); kind; kind = strtok_r(NULL, ",", &save)) {
			char needle[70], haystack[260];
			snprintf(needle, sizeof needle, ",%s,", kind);
			snprintf(haystack, sizeof haystack, ",%s,", kinds);
			if (!strstr(haystack, needle) && strlen(kinds) + strlen(kind) + 2 < sizeof kinds) {
				size_t used = strlen(kinds);
				snprintf(kinds + used, sizeof kinds - used, "%s%s", used ? "," : "", kind);
			}
		}
		free(copy);
		if (!first_dir)
			first_dir = list[i];
	}
	if (!first_dir)
		return 0; /* files only: each taken as it is */
	/* In name order, so that the message is the same in every run. */
	char *sorted[64];
	size_t n = 0;
	for (char *save, *kind = strtok_r(kinds, ",", &save); kind && n < 64;
	     kind = strtok_r(NULL, ",", &save))
		sorted[n++] = kind;
	qsort(sorted, n, sizeof *sorted, compare_paths);
	char joined[256] = "";
	for (size_t i = 0; i < n; i++) {
		size_t used = strlen(joined);
		snprintf(joined + used, sizeof joined - used, "%s%s", i ? "," : "", sorted[i]);
	}
	memcpy(kinds, joined, sizeof kinds);
	if (strchr(kinds, ',')) {
		char shown[300];
		snprintf(shown, sizeof shown, "%s", kinds);
		for (char *c = shown; *c; c++)
			if (*c == ',')
				*c = ' ';
		set_error(err, errlen,
			  "%s: holds profiles of several kinds (%s); choose one with -k KIND, "
			  "e.g. -k %.*s", first_dir, shown, (int)strcspn(kinds, ","), kinds);
		return -1;
	}
	snprintf(paths->found_kind, sizeof paths->found_kind, "%s", kinds);
	paths->kind = paths->found_kind;
	return 0;
}

/* ---- program and process names ------------------------------------------------- */

static bool all_digits(const char *s, size_t length)
{
	if (length == 0)
		return false;
	for (size_t i = 0; i < length; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* NAME and NAME.PID of libcprof's "NAME.PID.SEQ.KIND.pb.gz"; false when
 * the base name is not of that shape. */
static bool split_cprof_name(const char *base, size_t *name_length, size_t *process_length)
{
	char kind[64];
	if (!kind_of(base, kind, sizeof kind))
		return false;
	size_t end = strlen(base) - 6 - strlen(kind) - 1; /* before ".KIND" */
	size_t seq = end;
	while (seq > 0 && base[seq - 1] != '.')
		seq--;
	if (seq == 0 || !all_digits(base + seq, end - seq))
		return false;
	size_t pid_end = seq - 1, pid = pid_end;
	while (pid > 0 && base[pid - 1] != '.')
		pid--;
	if (pid == 0 || !all_digits(base + pid, pid_end - pid))
		return false;
	*name_length = pid - 1;
	*process_length = pid_end;
	return *name_length > 0;
}

static void label_value(const char *path, const profile_t *profile, cprof_by_t by,
			char *buffer, size_t size)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t name_length, process_length;
	if (split_cprof_name(base, &name_length, &process_length)) {
		snprintf(buffer, size, "%.*s", (int)(by == CPROF_BY_PROCESS ? process_length
									   : name_length),
			 base);
		return;
	}
	if (by == CPROF_BY_PROGRAM && profile->n_mapping > 0) {
		const char *file = cprof_profile_string(profile, profile->mapping[0]->filename);
		const char *slash = strrchr(file, '/');
		if (slash)
			file = slash + 1;
		if (file[0]) {
			snprintf(buffer, size, "%s", file);
			return;
		}
	}
	size_t length = strlen(base);
	if (by == CPROF_BY_PROGRAM)
		length = strcspn(base, ".");
	else if (length > 6 && strcmp(base + length - 6, ".pb.gz") == 0)
		length -= 6;
	else if (length > 3 && strcmp(base + length - 3, ".pb") == 0)
		length -= 3;
	snprintf(buffer, size, "%.*s", (int)(length ? length : strlen(base)), base);
}

/* ---- loading ---------------------------------------------------------------------- */

int cprof_paths_load(const cprof_paths_t *paths, char *const *list, size_t count, cprof_by_t by,
		     profile_t **out, size_t *files_out, char *err, size_t errlen)
{
	*out = NULL;
	*files_out = 0;
	file_list_t files = { 0 };
	int result = -1;
	for (size_t i = 0; i < count; i++) {
		if (!is_directory(list[i])) {
			if (file_list_add(&files, list[i]) != 0) {
				set_error(err, errlen, "%s: out of memory", list[i]);
				goto done;
			}
			continue;
		}
		size_t before = files.count;
		walk_t walk = { .wanted = paths->kind, .files = &files, .err = err, .errlen = errlen };
		if (walk_directory(&walk, list[i]) != 0)
			goto done;
		if (files.count == before) {
			if (paths->kind)
				set_error(err, errlen, "%s: no %s profiles (no *.%s.pb.gz file under it)",
					  list[i], paths->kind, paths->kind);
			else
				set_error(err, errlen, "%s: no profiles (no NAME.KIND.pb.gz file under it)",
					  list[i]);
			goto done;
		}
		qsort(files.paths + before, files.count - before, sizeof *files.paths, compare_paths);
	}
	if (files.count == 0) {
		set_error(err, errlen, "no profiles given");
		goto done;
	}
	if (files.count == 1 && by == CPROF_BY_NONE) {
		if (cprof_profile_read(files.paths[0], out, err, errlen) != 0)
			goto done;
		*files_out = 1;
		result = 0;
		goto done;
	}
	cprof_merge_t *merge = cprof_merge_new();
	if (!merge) {
		set_error(err, errlen, "%s: out of memory", files.paths[0]);
		goto done;
	}
	for (size_t i = 0; i < files.count; i++) {
		profile_t *profile;
		if (cprof_profile_read(files.paths[i], &profile, err, errlen) != 0) {
			cprof_merge_free(merge);
			goto done;
		}
		char value[PATH_MAX];
		if (by != CPROF_BY_NONE)
			label_value(files.paths[i], profile, by, value, sizeof value);
		int added = cprof_merge_add(merge, profile, files.paths[i], cprof_by_key(by),
					    by != CPROF_BY_NONE ? value : NULL, err, errlen);
		cprof_profile_free(profile);
		if (added != 0) {
			cprof_merge_free(merge);
			goto done;
		}
	}
	result = cprof_merge_finish(merge, out, err, errlen);
	cprof_merge_free(merge);
	if (result == 0)
		*files_out = files.count;
done:
	file_list_free(&files);
	return result;
}
