/* threads.c — `cprof threads FILE`: a threads profile as a person reads it
 * during a hang, as Go's goroutine?debug=2 is read: every group of threads
 * with its count, what it waits in and for how long, its state and name,
 * then its stack, and the stack that created it.
 *
 *   4 threads [read, 47 minutes] sleeping "worker": worker_main, created by pool_start
 *   	read
 *   	worker_main pool.c:12
 *   	start_thread
 *   created by
 *   	pool_start pool.c:30
 *   	main pool.c:51
 *
 * Groups are printed most threads first. The numbers are the profile's:
 * wait_ns is the longest wait of the group.
 */
#include "cprof_command.h"
#include "profile_read.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Perftools__Profiles__Profile profile_t;
typedef Perftools__Profiles__Sample sample_t;


static int by_count(const void *a, const void *b)
{
	const sample_t *x = *(sample_t *const *)a, *y = *(sample_t *const *)b;
	int64_t cx = x->n_value ? x->value[0] : 0, cy = y->n_value ? y->value[0] : 0;
	return cx > cy ? -1 : cx < cy;
}

static const char *label_str(const profile_t *p, const sample_t *s, const char *key)
{
	for (size_t i = 0; i < s->n_label; i++)
		if (s->label[i]->str && strcmp(cprof_profile_string(p, s->label[i]->key), key) == 0)
			return cprof_profile_string(p, s->label[i]->str);
	return NULL;
}

static bool label_num(const profile_t *p, const sample_t *s, const char *key, int64_t *out)
{
	for (size_t i = 0; i < s->n_label; i++)
		if (!s->label[i]->str && strcmp(cprof_profile_string(p, s->label[i]->key), key) == 0) {
			*out = s->label[i]->num;
			return true;
		}
	return false;
}

static void duration(int64_t ns, char *out, size_t cap)
{
	int64_t s = ns / 1000000000;
	if (ns < 1000000000)
		snprintf(out, cap, "%" PRId64 " ms", ns / 1000000);
	else if (s < 120)
		snprintf(out, cap, "%" PRId64 " seconds", s);
	else if (s < 7200)
		snprintf(out, cap, "%" PRId64 " minutes", s / 60);
	else
		snprintf(out, cap, "%" PRId64 " hours", s / 3600);
}

/* The innermost function of location `id` (or, with `outermost`, the
 * function it is inlined into), or NULL. */
static const char *location_name(const profile_t *p, uint64_t id, bool outermost)
{
	const Perftools__Profiles__Location *loc = cprof_profile_location(p, id);
	if (!loc || !loc->n_line)
		return NULL;
	const Perftools__Profiles__Line *line = loc->line[outermost ? loc->n_line - 1 : 0];
	const Perftools__Profiles__Function *f = cprof_profile_function(p, line->function_id);
	return f ? cprof_profile_function_name(p, f) : NULL;
}

static void print_location(const profile_t *p, uint64_t id)
{
	const Perftools__Profiles__Location *loc = cprof_profile_location(p, id);
	if (!loc)
		return;
	if (!loc->n_line) {
		char name[4200];
		cprof_profile_address_name(p, loc, name, sizeof name);
		printf("\t%s\n", name);
		return;
	}
	for (size_t j = 0; j < loc->n_line; j++) {
		const Perftools__Profiles__Line *line = loc->line[j];
		const Perftools__Profiles__Function *f = cprof_profile_function(p, line->function_id);
		fputc('\t', stdout);
		cprof_print_escaped(stdout, f ? cprof_profile_function_name(p, f) : "?");
		const char *file = f ? cprof_profile_string(p, f->filename) : "";
		if (*file) {
			const char *base = strrchr(file, '/');
			printf(" %s:%" PRId64, base ? base + 1 : file, line->line);
		}
		fputc('\n', stdout);
	}
}

int command_threads(int argc, char **argv)
{
	const command_t *command = command_find("threads");
	if (argc != 2 || argv[1][0] == '-') {
		if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
			command_print_usage(stdout, command);
			return command_finish_output();
		}
		return command_fail("threads: wants one threads profile (usage: cprof threads FILE)");
	}
	profile_t *p;
	char err[1024];
	if (cprof_profile_read(argv[1], &p, err, sizeof err) != 0)
		return command_fail("%s", err);
	if (p->n_sample_type != 1 ||
	    strcmp(cprof_profile_string(p, p->sample_type[0]->type), "threads") != 0) {
		cprof_profile_free(p);
		return command_fail("threads: %s is not a threads profile (its sample type is not "
				    "threads/count)", argv[1]);
	}
	sample_t **sorted = malloc((p->n_sample ? p->n_sample : 1) * sizeof *sorted);
	if (!sorted) {
		cprof_profile_free(p);
		return command_fail("threads: out of memory");
	}
	memcpy(sorted, p->sample, p->n_sample * sizeof *sorted);
	qsort(sorted, p->n_sample, sizeof *sorted, by_count);
	int64_t total = 0;
	for (size_t i = 0; i < p->n_sample; i++)
		total += sorted[i]->n_value ? sorted[i]->value[0] : 0;
	printf("threads profile: total %" PRId64 "\n", total);
	for (size_t i = 0; i < p->n_sample; i++) {
		const sample_t *s = sorted[i];
		int64_t count = s->n_value ? s->value[0] : 0, wait_ns = 0;
		const char *wait = label_str(p, s, "wait");
		const char *state = label_str(p, s, "state");
		const char *name = label_str(p, s, "thread_name");
		char how_long[48] = "";
		if (label_num(p, s, "wait_ns", &wait_ns))
			duration(wait_ns, how_long, sizeof how_long);
		/* The summary: the first frame past the call waited in, and the
		 * first frame of the creator. */
		size_t created = s->n_location_id;
		for (size_t k = 0; k < s->n_location_id; k++) {
			const char *n = location_name(p, s->location_id[k], false);
			if (n && strcmp(n, "[cprof: created by]") == 0) {
				created = k;
				break;
			}
		}
		size_t first = wait && created > 1 ? 1 : 0;
		const char *at = first < created ? location_name(p, s->location_id[first], false) : NULL;
		const char *by = created + 1 < s->n_location_id
					 ? location_name(p, s->location_id[created + 1], false)
					 : NULL;
		printf("\n%" PRId64 " thread%s [%s%s%s] %s \"", count, count == 1 ? "" : "s",
		       wait ? wait : state ? state : "?", how_long[0] ? ", " : "", how_long,
		       state ? state : "?");
		cprof_print_escaped(stdout, name ? name : "");
		fputc('"', stdout);
		for (size_t k = 0; k < s->n_label; k++) {
			const char *key = cprof_profile_string(p, s->label[k]->key);
			if (!s->label[k]->str || strcmp(key, "wait") == 0 || strcmp(key, "state") == 0 ||
			    strcmp(key, "thread_name") == 0)
				continue;
			printf(" %s=", key);
			cprof_print_escaped(stdout, cprof_profile_string(p, s->label[k]->str));
		}
		printf(": %s%s%s\n", at ? at : "?", by ? ", created by " : "", by ? by : "");
		for (size_t k = 0; k < s->n_location_id; k++) {
			if (k == created) {
				fputs("created by\n", stdout);
				continue;
			}
			print_location(p, s->location_id[k]);
		}
	}
	free(sorted);
	cprof_profile_free(p);
	return command_finish_output();
}
