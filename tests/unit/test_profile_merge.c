/* test_profile_merge.c — unit tests for merging profiles
 * (tools/profile_merge.c): the same code in processes loaded at different
 * addresses becomes one mapping and one location, samples with the same
 * stack add up, labels keep samples apart, headers combine as pprof's
 * Merge combines them, and profiles of other sample types are refused
 * with a message naming them. The merged profile must come back through
 * the reader, and what cprof_profile_write writes must read the same.
 *
 * Profiles are built here with protobuf-c: one mapping of /bin/app at a
 * chosen start, one function and location per name (at start + 0x100 *
 * index), two sample types (samples/count, cpu/nanoseconds).
 */
#include "profile_merge.h"

#include <setjmp.h> /* cmocka.h needs these four first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef Perftools__Profiles__Profile profile_t;

#define NAMES 4
static const char *const function_names[NAMES] = { "main", "parse", "hash", "sort" };

typedef struct spec {
	uint64_t start;        /* the mapping's start */
	const char *unit;      /* of the second sample type */
	int64_t time, duration, period;
	const char *comment;
	/* samples: stacks of function indices (leaf first, -1 ends), values */
	int stacks[4][4];
	int64_t values[4];
	size_t samples;
} spec_t;

static profile_t *build(const spec_t *spec)
{
	char *strings[16] = { "", "samples", "count", "cpu", (char *)spec->unit, "/bin/app",
			      "a comment" };
	size_t n_strings = 7;
	for (size_t i = 0; i < NAMES; i++)
		strings[n_strings++] = (char *)function_names[i];
	Perftools__Profiles__ValueType types[2], *type_list[2] = { &types[0], &types[1] };
	for (int i = 0; i < 2; i++) {
		perftools__profiles__value_type__init(&types[i]);
		types[i].type = 1 + 2 * i;
		types[i].unit = 2 + 2 * i;
	}
	Perftools__Profiles__Mapping mapping, *mapping_list[1] = { &mapping };
	perftools__profiles__mapping__init(&mapping);
	mapping.id = 1;
	mapping.memory_start = spec->start;
	mapping.memory_limit = spec->start + 0x10000;
	mapping.filename = 5;
	mapping.has_functions = true;
	Perftools__Profiles__Function functions[NAMES], *function_list[NAMES];
	Perftools__Profiles__Line lines[NAMES], *line_lists[NAMES][1];
	Perftools__Profiles__Location locations[NAMES], *location_list[NAMES];
	for (size_t i = 0; i < NAMES; i++) {
		perftools__profiles__function__init(&functions[i]);
		functions[i].id = 10 + i; /* not 1..n: the merge renumbers */
		functions[i].name = functions[i].system_name = (int64_t)(7 + i);
		function_list[i] = &functions[i];
		perftools__profiles__line__init(&lines[i]);
		lines[i].function_id = 10 + i;
		lines[i].line = 20 + (int64_t)i;
		line_lists[i][0] = &lines[i];
		perftools__profiles__location__init(&locations[i]);
		locations[i].id = 100 + i;
		locations[i].mapping_id = 1;
		locations[i].address = spec->start + 0x100 * (i + 1);
		locations[i].line = line_lists[i];
		locations[i].n_line = 1;
		location_list[i] = &locations[i];
	}
	Perftools__Profiles__Sample samples[4], *sample_list[4];
	uint64_t ids[4][4];
	int64_t values[4][2];
	for (size_t s = 0; s < spec->samples; s++) {
		perftools__profiles__sample__init(&samples[s]);
		size_t depth = 0;
		while (depth < 4 && spec->stacks[s][depth] >= 0) {
			ids[s][depth] = 100 + (uint64_t)spec->stacks[s][depth];
			depth++;
		}
		samples[s].location_id = ids[s];
		samples[s].n_location_id = depth;
		values[s][0] = 1;
		values[s][1] = spec->values[s];
		samples[s].value = values[s];
		samples[s].n_value = 2;
		sample_list[s] = &samples[s];
	}
	int64_t comments[1] = { 6 };
	profile_t p;
	perftools__profiles__profile__init(&p);
	p.sample_type = type_list;
	p.n_sample_type = 2;
	p.sample = sample_list;
	p.n_sample = spec->samples;
	p.mapping = mapping_list;
	p.n_mapping = 1;
	p.location = location_list;
	p.n_location = NAMES;
	p.function = function_list;
	p.n_function = NAMES;
	p.string_table = strings;
	p.n_string_table = n_strings;
	p.time_nanos = spec->time;
	p.duration_nanos = spec->duration;
	p.period = spec->period;
	if (spec->comment) {
		p.comment = comments;
		p.n_comment = 1;
	}
	p.default_sample_type = 3;

	size_t length = perftools__profiles__profile__get_packed_size(&p);
	uint8_t *packed = malloc(length);
	assert_non_null(packed);
	perftools__profiles__profile__pack(&p, packed);
	char err[512];
	profile_t *read = NULL;
	if (cprof_profile_read_buffer(packed, length, "built", &read, err, sizeof err) != 0)
		fail_msg("built profile rejected: %s", err);
	free(packed);
	return read;
}

static int64_t value_of(const profile_t *p, const char *name, bool cum)
{
	cprof_function_total_t *rows;
	size_t count;
	assert_int_equal(cprof_profile_function_totals(p, 1, &rows, &count), 0);
	int64_t value = 0;
	for (size_t i = 0; i < count; i++)
		if (strcmp(rows[i].name, name) == 0)
			value = cum ? rows[i].cum : rows[i].flat;
	cprof_function_totals_free(rows, count);
	return value;
}

static profile_t *merge_two(const spec_t *a, const spec_t *b, const char *key)
{
	cprof_merge_t *merge = cprof_merge_new();
	assert_non_null(merge);
	char err[512];
	profile_t *pa = build(a), *pb = build(b);
	assert_int_equal(cprof_merge_add(merge, pa, "a.pb", key, "alpha", err, sizeof err), 0);
	assert_int_equal(cprof_merge_add(merge, pb, "b.pb", key, "beta", err, sizeof err), 0);
	cprof_profile_free(pa);
	cprof_profile_free(pb);
	assert_int_equal(cprof_merge_count(merge), 2);
	profile_t *merged = NULL;
	assert_int_equal(cprof_merge_finish(merge, &merged, err, sizeof err), 0);
	cprof_merge_free(merge);
	return merged;
}

static const spec_t process_a = {
	.start = 0x400000, .unit = "nanoseconds", .time = 2000, .duration = 10, .period = 5,
	.comment = "a comment",
	.stacks = { { 1, 0, -1 }, { 2, 0, -1 } }, .values = { 300, 100 }, .samples = 2,
};
static const spec_t process_b = {
	.start = 0x7f0000000000, .unit = "nanoseconds", .time = 1000, .duration = 30,
	.period = 7, .comment = "a comment",
	.stacks = { { 1, 0, -1 }, { 3, 1, 0, -1 } }, .values = { 200, 50 }, .samples = 2,
};

/* Two processes of /bin/app at different addresses: one mapping, one
 * location per function, samples of the same stack summed. */
static void test_same_code_other_address(void **state)
{
	(void)state;
	profile_t *merged = merge_two(&process_a, &process_b, NULL);
	assert_int_equal(merged->n_mapping, 1);
	assert_int_equal(merged->mapping[0]->memory_start, 0x400000);
	assert_int_equal(merged->n_location, 4);
	assert_int_equal(merged->n_function, 4);
	/* parse;main from both: one sample of 500 */
	assert_int_equal(merged->n_sample, 3);
	assert_int_equal(value_of(merged, "parse", false), 500);
	assert_int_equal(value_of(merged, "parse", true), 550);
	assert_int_equal(value_of(merged, "main", true), 650);
	assert_int_equal(value_of(merged, "hash", false), 100);
	assert_int_equal(value_of(merged, "sort", false), 50);
	assert_int_equal(cprof_profile_total(merged, 1), 650);
	assert_int_equal(cprof_profile_total(merged, 0), 4); /* counts add up too */
	/* Addresses are on the merged mapping: the same name as from A. */
	char name[256];
	for (size_t i = 0; i < merged->n_location; i++) {
		assert_true(merged->location[i]->address >= 0x400000);
		assert_true(merged->location[i]->address < 0x410000);
		cprof_profile_address_name(merged, merged->location[i], name, sizeof name);
		assert_non_null(strstr(name, "app 0x"));
	}
	/* Headers: earliest time, summed duration, largest period, one comment. */
	assert_int_equal(merged->time_nanos, 1000);
	assert_int_equal(merged->duration_nanos, 40);
	assert_int_equal(merged->period, 7);
	assert_int_equal(merged->n_comment, 1);
	assert_string_equal(cprof_profile_string(merged, merged->comment[0]), "a comment");
	assert_string_equal(cprof_profile_string(merged, merged->default_sample_type), "cpu");
	cprof_profile_free(merged);
}

/* With a label, the same stack in two programs stays two samples. */
static void test_label_keeps_programs_apart(void **state)
{
	(void)state;
	profile_t *merged = merge_two(&process_a, &process_b, "program");
	assert_int_equal(merged->n_sample, 4);
	cprof_function_total_t *rows;
	size_t count;
	assert_int_equal(cprof_profile_label_totals(merged, 1, "program", &rows, &count), 0);
	assert_int_equal(count, 2);
	cprof_function_totals_sort(rows, count, CPROF_SORT_BY_FLAT);
	assert_string_equal(rows[0].name, "alpha");
	assert_int_equal(rows[0].flat, 400);
	assert_string_equal(rows[1].name, "beta");
	assert_int_equal(rows[1].flat, 250);
	cprof_function_totals_free(rows, count);
	assert_int_equal(value_of(merged, "parse", false), 500);
	cprof_profile_free(merged);
}

/* Another unit for cpu: refused, naming the file and both type lists. */
static void test_refuses_other_sample_types(void **state)
{
	(void)state;
	spec_t micro = process_b;
	micro.unit = "microseconds";
	cprof_merge_t *merge = cprof_merge_new();
	char err[512];
	profile_t *pa = build(&process_a), *pb = build(&micro);
	assert_int_equal(cprof_merge_add(merge, pa, "a.pb", NULL, NULL, err, sizeof err), 0);
	assert_int_equal(cprof_merge_add(merge, pb, "b.pb", NULL, NULL, err, sizeof err), -1);
	assert_string_equal(err, "b.pb: sample types samples/count, cpu/microseconds differ from "
				 "a.pb's samples/count, cpu/nanoseconds; profiles of different "
				 "kinds do not merge");
	assert_int_equal(cprof_merge_count(merge), 1);
	cprof_profile_free(pa);
	cprof_profile_free(pb);
	cprof_merge_free(merge);
	/* Nothing added: nothing to finish. */
	merge = cprof_merge_new();
	profile_t *out = (profile_t *)1;
	assert_int_equal(cprof_merge_finish(merge, &out, err, sizeof err), -1);
	assert_null(out);
	cprof_merge_free(merge);
}

/* What cprof_profile_write writes reads back the same; a path that
 * cannot be written leaves nothing. */
static void test_write_reads_back(void **state)
{
	(void)state;
	profile_t *merged = merge_two(&process_a, &process_b, "program");
	char directory[] = "/tmp/cprof-merge-test.XXXXXX";
	assert_non_null(mkdtemp(directory));
	char path[256];
	snprintf(path, sizeof path, "%s/merged.pb.gz", directory);
	char err[512];
	assert_int_equal(cprof_profile_write(merged, path, err, sizeof err), 0);
	profile_t *again = NULL;
	assert_int_equal(cprof_profile_read(path, &again, err, sizeof err), 0);
	assert_int_equal(again->n_sample, merged->n_sample);
	assert_int_equal(value_of(again, "main", true), 650);
	cprof_profile_free(again);
	unlink(path);
	snprintf(path, sizeof path, "%s/no-such-dir/merged.pb.gz", directory);
	assert_int_equal(cprof_profile_write(merged, path, err, sizeof err), -1);
	assert_non_null(strstr(err, "No such file or directory"));
	rmdir(directory);
	cprof_profile_free(merged);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_code_other_address),
		cmocka_unit_test(test_label_keeps_programs_apart),
		cmocka_unit_test(test_refuses_other_sample_types),
		cmocka_unit_test(test_write_reads_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
