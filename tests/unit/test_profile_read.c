/* test_profile_read.c — unit tests for tools/profile_read.c: the profile
 * reader (gzip and plain protobuf, files and memory), its rejection of
 * damaged, hostile and oversize input, the look-ups, names and units, and
 * the per-function totals behind `cprof top`.
 *
 * Profiles are built here with protobuf-c from a small fixture, packed and
 * gzipped with zlib, then read back. The mutation test damages a valid
 * profile 2000 ways (deterministically) and requires each result to be
 * either a clean one-line error or a profile whose every reference holds.
 */
#include "profile_read.h"

#include <setjmp.h> /* cmocka.h needs these four first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef Perftools__Profiles__Profile profile_t;

/* ---- the fixture ------------------------------------------------------ */

enum string_index {
	STRING_EMPTY,
	STRING_SAMPLES,
	STRING_COUNT,
	STRING_CPU,
	STRING_NANOSECONDS,
	STRING_MAIN,
	STRING_COMPUTE,
	STRING_HELPER,
	STRING_SOURCE_FILE,
	STRING_PROGRAM,
	STRING_LIBC,
	STRING_THREAD,
	STRING_WORKER,
	STRING_BYTES,
	STRING_BUILD_ID,
	STRING_TABLE_SIZE
};

static char *const fixture_strings[STRING_TABLE_SIZE] = {
	[STRING_EMPTY] = "",
	[STRING_SAMPLES] = "samples",
	[STRING_COUNT] = "count",
	[STRING_CPU] = "cpu",
	[STRING_NANOSECONDS] = "nanoseconds",
	[STRING_MAIN] = "main",
	[STRING_COMPUTE] = "compute",
	[STRING_HELPER] = "helper",
	[STRING_SOURCE_FILE] = "/src/prog.c",
	[STRING_PROGRAM] = "/usr/bin/prog",
	[STRING_LIBC] = "/usr/lib/x86_64-linux-gnu/libc.so.6",
	[STRING_THREAD] = "thread",
	[STRING_WORKER] = "worker",
	[STRING_BYTES] = "bytes",
	[STRING_BUILD_ID] = "0123456789abcdef",
};

enum { FUNCTION_MAIN = 1, FUNCTION_COMPUTE = 2, FUNCTION_HELPER = 3 };

/* Location ids are sparse and stored out of order on purpose: the reader
 * must sort them and find them by binary search. */
enum {
	LOCATION_COMPUTE_IN_HELPER = 101, /* compute inlined into helper */
	LOCATION_MAIN = 102,
	LOCATION_LIBC = 103,              /* no lines: an address in libc */
	LOCATION_HELPER = 104,
};

#define MILLISECOND 1000000

/*
 * Samples (values: samples/count, cpu/nanoseconds), stacks leaf first:
 *   0: compute(inline) helper, main                    3, 30ms
 *   1: helper, helper, main          (recursion)      1, 10ms
 *   2: libc 0x29d90, main            (labels)         2, 20ms
 *   3: helper, compute(inline) helper, main            4, 40ms
 * cpu per function:   flat   cum
 *   helper             50    80   (samples 1, 3 flat; 0, 1, 3 cum)
 *   compute            30    70
 *   libc.so.6 0x29d90  20    20
 *   main                0   100
 */
typedef struct fixture {
	Perftools__Profiles__ValueType sample_types[2], period_type;
	Perftools__Profiles__ValueType *sample_type_list[2];
	Perftools__Profiles__Function functions[3];
	Perftools__Profiles__Function *function_list[3];
	Perftools__Profiles__Mapping mappings[2];
	Perftools__Profiles__Mapping *mapping_list[2];
	Perftools__Profiles__Line lines[4];
	Perftools__Profiles__Line *lines_compute_in_helper[2], *lines_main[1], *lines_helper[1];
	Perftools__Profiles__Location locations[4];
	Perftools__Profiles__Location *location_list[4];
	uint64_t stacks[4][3];
	int64_t values[4][2];
	Perftools__Profiles__Label labels[2];
	Perftools__Profiles__Label *label_list[2];
	Perftools__Profiles__Sample samples[4];
	Perftools__Profiles__Sample *sample_list[4];
	char *strings[STRING_TABLE_SIZE];
	profile_t profile;
} fixture_t;

static void init_value_type(Perftools__Profiles__ValueType *type, int64_t name, int64_t unit)
{
	perftools__profiles__value_type__init(type);
	type->type = name;
	type->unit = unit;
}

static void init_function(Perftools__Profiles__Function *f, uint64_t id, int64_t name)
{
	perftools__profiles__function__init(f);
	f->id = id;
	f->name = name;
	f->system_name = name;
	f->filename = STRING_SOURCE_FILE;
}

static void init_line(Perftools__Profiles__Line *l, uint64_t function_id, int64_t number)
{
	perftools__profiles__line__init(l);
	l->function_id = function_id;
	l->line = number;
}

static void init_location(Perftools__Profiles__Location *l, uint64_t id, uint64_t mapping_id,
		     uint64_t address, Perftools__Profiles__Line **lines, size_t count)
{
	perftools__profiles__location__init(l);
	l->id = id;
	l->mapping_id = mapping_id;
	l->address = address;
	l->line = lines;
	l->n_line = count;
}

static void init_sample(fixture_t *f, size_t i, size_t depth, const uint64_t *stack,
		   int64_t count, int64_t nanoseconds)
{
	perftools__profiles__sample__init(&f->samples[i]);
	memcpy(f->stacks[i], stack, depth * sizeof *stack);
	f->values[i][0] = count;
	f->values[i][1] = nanoseconds;
	f->samples[i].location_id = f->stacks[i];
	f->samples[i].n_location_id = depth;
	f->samples[i].value = f->values[i];
	f->samples[i].n_value = 2;
	f->sample_list[i] = &f->samples[i];
}

static void fixture_build(fixture_t *f)
{
	memset(f, 0, sizeof *f);
	memcpy(f->strings, fixture_strings, sizeof f->strings);

	init_value_type(&f->sample_types[0], STRING_SAMPLES, STRING_COUNT);
	init_value_type(&f->sample_types[1], STRING_CPU, STRING_NANOSECONDS);
	init_value_type(&f->period_type, STRING_CPU, STRING_NANOSECONDS);
	f->sample_type_list[0] = &f->sample_types[0];
	f->sample_type_list[1] = &f->sample_types[1];

	init_function(&f->functions[0], FUNCTION_MAIN, STRING_MAIN);
	init_function(&f->functions[1], FUNCTION_COMPUTE, STRING_COMPUTE);
	init_function(&f->functions[2], FUNCTION_HELPER, STRING_HELPER);
	for (int i = 0; i < 3; i++)
		f->function_list[i] = &f->functions[i];

	for (int i = 0; i < 2; i++) {
		Perftools__Profiles__Mapping *m = &f->mappings[i];
		perftools__profiles__mapping__init(m);
		m->id = (uint64_t)i + 1;
		f->mapping_list[i] = m;
	}
	f->mappings[0].memory_start = 0x400000;
	f->mappings[0].memory_limit = 0x500000;
	f->mappings[0].filename = STRING_PROGRAM;
	f->mappings[0].build_id = STRING_BUILD_ID;
	f->mappings[0].has_functions = 1;
	f->mappings[0].has_line_numbers = 1;
	f->mappings[1].memory_start = 0x7f0000000000;
	f->mappings[1].memory_limit = 0x7f0000200000;
	f->mappings[1].file_offset = 0x28000;
	f->mappings[1].filename = STRING_LIBC;

	init_line(&f->lines[0], FUNCTION_COMPUTE, 12);
	init_line(&f->lines[1], FUNCTION_HELPER, 30);
	init_line(&f->lines[2], FUNCTION_MAIN, 40);
	init_line(&f->lines[3], FUNCTION_HELPER, 31);
	f->lines_compute_in_helper[0] = &f->lines[0];
	f->lines_compute_in_helper[1] = &f->lines[1];
	f->lines_main[0] = &f->lines[2];
	f->lines_helper[0] = &f->lines[3];
	/* Stored in the order 103, 101, 104, 102. */
	init_location(&f->locations[0], LOCATION_LIBC, 2, 0x29d90, NULL, 0);
	init_location(&f->locations[1], LOCATION_COMPUTE_IN_HELPER, 1, 0x401010,
		 f->lines_compute_in_helper, 2);
	init_location(&f->locations[2], LOCATION_HELPER, 1, 0x401030, f->lines_helper, 1);
	init_location(&f->locations[3], LOCATION_MAIN, 1, 0x401020, f->lines_main, 1);
	for (int i = 0; i < 4; i++)
		f->location_list[i] = &f->locations[i];

	init_sample(f, 0, 2, (const uint64_t[]){ LOCATION_COMPUTE_IN_HELPER, LOCATION_MAIN }, 3,
	       30 * MILLISECOND);
	init_sample(f, 1, 3, (const uint64_t[]){ LOCATION_HELPER, LOCATION_HELPER, LOCATION_MAIN },
	       1, 10 * MILLISECOND);
	init_sample(f, 2, 2, (const uint64_t[]){ LOCATION_LIBC, LOCATION_MAIN }, 2,
	       20 * MILLISECOND);
	init_sample(f, 3, 3,
	       (const uint64_t[]){ LOCATION_HELPER, LOCATION_COMPUTE_IN_HELPER, LOCATION_MAIN },
	       4, 40 * MILLISECOND);
	perftools__profiles__label__init(&f->labels[0]);
	f->labels[0].key = STRING_THREAD;
	f->labels[0].str = STRING_WORKER;
	perftools__profiles__label__init(&f->labels[1]);
	f->labels[1].key = STRING_BYTES;
	f->labels[1].num = 4096;
	f->labels[1].num_unit = STRING_BYTES;
	f->label_list[0] = &f->labels[0];
	f->label_list[1] = &f->labels[1];
	f->samples[2].label = f->label_list;
	f->samples[2].n_label = 2;

	profile_t *p = &f->profile;
	perftools__profiles__profile__init(p);
	p->sample_type = f->sample_type_list;
	p->n_sample_type = 2;
	p->sample = f->sample_list;
	p->n_sample = 4;
	p->mapping = f->mapping_list;
	p->n_mapping = 2;
	p->location = f->location_list;
	p->n_location = 4;
	p->function = f->function_list;
	p->n_function = 3;
	p->string_table = f->strings;
	p->n_string_table = STRING_TABLE_SIZE;
	p->period_type = &f->period_type;
	p->period = 10 * MILLISECOND;
	p->time_nanos = 1714564800000000000;
	p->duration_nanos = 1200 * (int64_t)MILLISECOND;
}

/* ---- packing and gzip -------------------------------------------------- */

typedef struct bytes {
	uint8_t *data;
	size_t length;
} bytes_t;

static bytes_t pack(const profile_t *profile)
{
	bytes_t packed;
	packed.length = perftools__profiles__profile__get_packed_size(profile);
	packed.data = malloc(packed.length ? packed.length : 1);
	assert_non_null(packed.data);
	assert_int_equal(perftools__profiles__profile__pack(profile, packed.data),
			 packed.length);
	return packed;
}

static bytes_t gzip(const uint8_t *data, size_t length)
{
	z_stream stream;
	memset(&stream, 0, sizeof stream);
	assert_int_equal(deflateInit2(&stream, 6, Z_DEFLATED, 16 + MAX_WBITS, 8,
				      Z_DEFAULT_STRATEGY),
			 Z_OK);
	bytes_t zipped;
	size_t capacity = deflateBound(&stream, length) + 64;
	zipped.data = malloc(capacity);
	assert_non_null(zipped.data);
	stream.next_in = (Bytef *)data;
	stream.avail_in = (uInt)length;
	stream.next_out = zipped.data;
	stream.avail_out = (uInt)capacity;
	assert_int_equal(deflate(&stream, Z_FINISH), Z_STREAM_END);
	zipped.length = capacity - stream.avail_out;
	deflateEnd(&stream);
	return zipped;
}

static bytes_t fixture_packed(void)
{
	fixture_t f;
	fixture_build(&f);
	return pack(&f.profile);
}

static bytes_t fixture_gzipped(void)
{
	bytes_t packed = fixture_packed();
	bytes_t zipped = gzip(packed.data, packed.length);
	free(packed.data);
	return zipped;
}

static void write_file(const char *path, const uint8_t *data, size_t length)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, length), (ssize_t)length);
	assert_int_equal(close(fd), 0);
}

/* A fresh path in a private directory; the caller unlinks and rmdirs. */
static void temporary_path(char *directory, size_t size, char *path, size_t path_size,
			   const char *file)
{
	snprintf(directory, size, "/tmp/cprof_test_profile_read_XXXXXX");
	assert_non_null(mkdtemp(directory));
	snprintf(path, path_size, "%s/%s", directory, file);
}

/* ---- checks ------------------------------------------------------------ */

/* A failed read: -1, no profile, one line starting with "<name>: ". */
static void assert_rejected(int result, const profile_t *profile, const char *err,
			    const char *name, const char *expected)
{
	assert_int_equal(result, -1);
	assert_null(profile);
	size_t name_length = strlen(name);
	if (strncmp(err, name, name_length) != 0 || strncmp(err + name_length, ": ", 2) != 0)
		fail_msg("error \"%s\" does not start with \"%s: \"", err, name);
	if (strlen(err) <= name_length + 2)
		fail_msg("error \"%s\" names no problem", err);
	if (strchr(err, '\n'))
		fail_msg("error \"%s\" spans lines", err);
	if (expected && !strstr(err, expected))
		fail_msg("error \"%s\" lacks \"%s\"", err, expected);
}

static void read_expect_failure(const bytes_t *input, const char *expected)
{
	char err[512] = "";
	profile_t *profile = NULL;
	int result = cprof_profile_read_buffer(input->data, input->length, "prof.pb.gz",
					       &profile, err, sizeof err);
	assert_rejected(result, profile, err, "prof.pb.gz", expected);
}

/* Packs a damaged fixture (plain and gzipped) and requires both rejected. */
static void expect_invalid(fixture_t *f, const char *expected)
{
	bytes_t packed = pack(&f->profile);
	read_expect_failure(&packed, expected);
	bytes_t zipped = gzip(packed.data, packed.length);
	read_expect_failure(&zipped, expected);
	free(packed.data);
	free(zipped.data);
}

/* Everything a command may rely on after a successful read, checked
 * without the reader's own validation, then the helpers exercised. */
static void assert_profile_consistent(const profile_t *p)
{
	assert_true(p->n_string_table >= 1);
	assert_string_equal(p->string_table[0], "");
	for (size_t i = 0; i < p->n_sample_type; i++) {
		assert_in_range(p->sample_type[i]->type, 0, p->n_string_table - 1);
		assert_in_range(p->sample_type[i]->unit, 0, p->n_string_table - 1);
	}
	for (size_t i = 0; i < p->n_function; i++) {
		assert_in_range(p->function[i]->name, 0, p->n_string_table - 1);
		assert_in_range(p->function[i]->system_name, 0, p->n_string_table - 1);
		assert_in_range(p->function[i]->filename, 0, p->n_string_table - 1);
		assert_ptr_equal(cprof_profile_function(p, p->function[i]->id), p->function[i]);
	}
	for (size_t i = 0; i < p->n_mapping; i++) {
		assert_in_range(p->mapping[i]->filename, 0, p->n_string_table - 1);
		assert_in_range(p->mapping[i]->build_id, 0, p->n_string_table - 1);
		assert_ptr_equal(cprof_profile_mapping(p, p->mapping[i]->id), p->mapping[i]);
	}
	for (size_t i = 0; i < p->n_location; i++) {
		const Perftools__Profiles__Location *l = p->location[i];
		assert_ptr_equal(cprof_profile_location(p, l->id), l);
		if (l->mapping_id != 0)
			assert_non_null(cprof_profile_mapping(p, l->mapping_id));
		for (size_t j = 0; j < l->n_line; j++)
			assert_non_null(cprof_profile_function(p, l->line[j]->function_id));
	}
	for (size_t i = 0; i < p->n_sample; i++) {
		const Perftools__Profiles__Sample *s = p->sample[i];
		assert_int_equal(s->n_value, p->n_sample_type);
		for (size_t j = 0; j < s->n_location_id; j++)
			assert_non_null(cprof_profile_location(p, s->location_id[j]));
		for (size_t j = 0; j < s->n_label; j++) {
			assert_in_range(s->label[j]->key, 0, p->n_string_table - 1);
			assert_in_range(s->label[j]->str, 0, p->n_string_table - 1);
			assert_in_range(s->label[j]->num_unit, 0, p->n_string_table - 1);
		}
	}
	for (size_t t = 0; t < p->n_sample_type; t++) {
		cprof_function_total_t *rows;
		size_t count;
		assert_int_equal(cprof_profile_function_totals(p, (int)t, &rows, &count), 0);
		cprof_function_totals_sort(rows, count, CPROF_SORT_BY_CUM);
		char text[64];
		const char *unit = cprof_profile_string(p, p->sample_type[t]->unit);
		int64_t total = cprof_profile_total(p, (int)t);
		for (size_t i = 0; i < count; i++) {
			cprof_format_value(rows[i].flat, unit, text, sizeof text);
			cprof_format_percent(rows[i].cum, total, text, sizeof text);
		}
		cprof_function_totals_free(rows, count);
	}
	if (p->n_sample_type > 0)
		assert_in_range(cprof_profile_default_sample_type(p), 0, p->n_sample_type - 1);
	else
		assert_int_equal(cprof_profile_default_sample_type(p), -1);
}

static const cprof_function_total_t *find_row(const cprof_function_total_t *rows,
					      size_t count, const char *name)
{
	for (size_t i = 0; i < count; i++)
		if (strcmp(rows[i].name, name) == 0)
			return &rows[i];
	fail_msg("no row named \"%s\"", name);
	return NULL;
}

/* ---- reading valid profiles ------------------------------------------- */

static void check_fixture_contents(const profile_t *p)
{
	assert_int_equal(p->n_sample_type, 2);
	assert_string_equal(cprof_profile_string(p, p->sample_type[0]->type), "samples");
	assert_string_equal(cprof_profile_string(p, p->sample_type[1]->unit), "nanoseconds");
	assert_int_equal(p->n_sample, 4);
	assert_int_equal(p->sample[3]->value[0], 4);
	assert_int_equal(p->sample[3]->value[1], 40 * MILLISECOND);
	assert_int_equal(p->sample[3]->location_id[0], LOCATION_HELPER);
	assert_int_equal(p->period, 10 * MILLISECOND);
	assert_int_equal(p->duration_nanos, 1200 * (int64_t)MILLISECOND);
	assert_non_null(p->period_type);

	/* Sorted by id, found by id. */
	assert_int_equal(p->n_location, 4);
	for (size_t i = 1; i < p->n_location; i++)
		assert_true(p->location[i - 1]->id < p->location[i]->id);
	const Perftools__Profiles__Location *libc = cprof_profile_location(p, LOCATION_LIBC);
	assert_non_null(libc);
	assert_int_equal(libc->address, 0x29d90);
	assert_null(cprof_profile_location(p, 0));
	assert_null(cprof_profile_location(p, 105));
	assert_null(cprof_profile_location(p, 1));
	const Perftools__Profiles__Location *inlined =
		cprof_profile_location(p, LOCATION_COMPUTE_IN_HELPER);
	assert_int_equal(inlined->n_line, 2);
	const Perftools__Profiles__Function *compute =
		cprof_profile_function(p, inlined->line[0]->function_id);
	assert_string_equal(cprof_profile_function_name(p, compute), "compute");
	assert_string_equal(cprof_profile_string(p, compute->filename), "/src/prog.c");
	assert_null(cprof_profile_function(p, 4));
	const Perftools__Profiles__Mapping *program = cprof_profile_mapping(p, 1);
	assert_string_equal(cprof_profile_string(p, program->build_id), "0123456789abcdef");
	assert_true(program->has_functions);
	assert_false(program->has_inline_frames);

	const Perftools__Profiles__Sample *labelled = p->sample[2];
	assert_int_equal(labelled->n_label, 2);
	assert_string_equal(cprof_profile_string(p, labelled->label[0]->str), "worker");
	assert_int_equal(labelled->label[1]->num, 4096);
	assert_string_equal(cprof_profile_string(p, labelled->label[1]->num_unit), "bytes");
	assert_profile_consistent(p);
}

static void test_reads_gzipped_file(void **state)
{
	(void)state;
	char directory[64], path[128], err[512] = "";
	temporary_path(directory, sizeof directory, path, sizeof path, "prof.pb.gz");
	bytes_t zipped = fixture_gzipped();
	write_file(path, zipped.data, zipped.length);

	profile_t *p = NULL;
	assert_int_equal(cprof_profile_read(path, &p, err, sizeof err), 0);
	assert_string_equal(err, "");
	check_fixture_contents(p);
	cprof_profile_free(p);

	unlink(path);
	rmdir(directory);
	free(zipped.data);
}

static void test_reads_plain_protobuf_buffer(void **state)
{
	(void)state;
	bytes_t packed = fixture_packed();
	char err[512] = "";
	profile_t *p = NULL;
	assert_int_equal(cprof_profile_read_buffer(packed.data, packed.length, "plain", &p, err,
						   sizeof err),
			 0);
	check_fixture_contents(p);
	cprof_profile_free(p);
	free(packed.data);
}

static void test_reads_concatenated_gzip_members(void **state)
{
	(void)state;
	/* gzip members join (as `cat a.gz b.gz` makes) and protobuf messages
	 * merge: the sample types packed alone, then the rest. */
	fixture_t f;
	fixture_build(&f);
	profile_t first_part;
	perftools__profiles__profile__init(&first_part);
	first_part.sample_type = f.sample_type_list;
	first_part.n_sample_type = 2;
	bytes_t first = pack(&first_part);
	f.profile.sample_type = NULL;
	f.profile.n_sample_type = 0;
	bytes_t rest = pack(&f.profile);
	bytes_t first_zipped = gzip(first.data, first.length);
	bytes_t rest_zipped = gzip(rest.data, rest.length);
	bytes_t joined;
	joined.length = first_zipped.length + rest_zipped.length;
	joined.data = malloc(joined.length);
	memcpy(joined.data, first_zipped.data, first_zipped.length);
	memcpy(joined.data + first_zipped.length, rest_zipped.data, rest_zipped.length);

	char err[512] = "";
	profile_t *p = NULL;
	assert_int_equal(cprof_profile_read_buffer(joined.data, joined.length, "joined", &p, err,
						   sizeof err),
			 0);
	check_fixture_contents(p);
	cprof_profile_free(p);
	free(first.data);
	free(rest.data);
	free(first_zipped.data);
	free(rest_zipped.data);
	free(joined.data);
}

static void test_sample_type_selection(void **state)
{
	(void)state;
	fixture_t f;
	fixture_build(&f);
	bytes_t packed = pack(&f.profile);
	char err[512];
	profile_t *p;
	assert_int_equal(
		cprof_profile_read_buffer(packed.data, packed.length, "p", &p, err, sizeof err), 0);
	assert_int_equal(cprof_profile_default_sample_type(p), 1); /* the last: cpu */
	assert_int_equal(cprof_profile_sample_type_index(p, "samples"), 0);
	assert_int_equal(cprof_profile_sample_type_index(p, "cpu"), 1);
	assert_int_equal(cprof_profile_sample_type_index(p, "inuse_space"), -1);
	assert_int_equal(cprof_profile_select_sample_type(p, NULL), 1);
	assert_int_equal(cprof_profile_select_sample_type(p, "samples"), 0);
	assert_int_equal(cprof_profile_select_sample_type(p, "0"), 0);
	assert_int_equal(cprof_profile_select_sample_type(p, "1"), 1);
	assert_int_equal(cprof_profile_select_sample_type(p, "2"), -1);
	assert_int_equal(cprof_profile_select_sample_type(p, "1x"), -1);
	assert_int_equal(cprof_profile_select_sample_type(p, "-1"), -1);
	assert_int_equal(cprof_profile_select_sample_type(p, ""), -1);
	cprof_profile_free(p);
	free(packed.data);

	/* default_sample_type names the first. */
	f.profile.default_sample_type = STRING_SAMPLES;
	packed = pack(&f.profile);
	assert_int_equal(
		cprof_profile_read_buffer(packed.data, packed.length, "p", &p, err, sizeof err), 0);
	assert_int_equal(cprof_profile_default_sample_type(p), 0);
	cprof_profile_free(p);
	free(packed.data);

	/* ... or a string that is no sample type: pprof's fallback, the last. */
	f.profile.default_sample_type = STRING_MAIN;
	packed = pack(&f.profile);
	assert_int_equal(
		cprof_profile_read_buffer(packed.data, packed.length, "p", &p, err, sizeof err), 0);
	assert_int_equal(cprof_profile_default_sample_type(p), 1);
	cprof_profile_free(p);
	free(packed.data);
}

static void test_function_totals(void **state)
{
	(void)state;
	bytes_t zipped = fixture_gzipped();
	char err[512];
	profile_t *p;
	assert_int_equal(
		cprof_profile_read_buffer(zipped.data, zipped.length, "p", &p, err, sizeof err), 0);

	assert_int_equal(cprof_profile_total(p, 1), 100 * MILLISECOND);
	assert_int_equal(cprof_profile_total(p, 0), 10);

	cprof_function_total_t *rows;
	size_t count;
	assert_int_equal(cprof_profile_function_totals(p, 1, &rows, &count), 0);
	assert_int_equal(count, 4);
	cprof_function_totals_sort(rows, count, CPROF_SORT_BY_FLAT);
	assert_string_equal(rows[0].name, "helper");
	assert_int_equal(rows[0].flat, 50 * MILLISECOND);
	assert_int_equal(rows[0].cum, 80 * MILLISECOND);
	assert_string_equal(rows[1].name, "compute");
	assert_int_equal(rows[1].flat, 30 * MILLISECOND);
	assert_int_equal(rows[1].cum, 70 * MILLISECOND);
	assert_string_equal(rows[2].name, "libc.so.6 0x29d90");
	assert_int_equal(rows[2].flat, 20 * MILLISECOND);
	assert_int_equal(rows[2].cum, 20 * MILLISECOND);
	assert_string_equal(rows[3].name, "main");
	assert_int_equal(rows[3].flat, 0);
	assert_int_equal(rows[3].cum, 100 * MILLISECOND);

	cprof_function_totals_sort(rows, count, CPROF_SORT_BY_CUM);
	assert_string_equal(rows[0].name, "main");
	assert_string_equal(rows[1].name, "helper");
	assert_string_equal(rows[2].name, "compute");
	assert_string_equal(rows[3].name, "libc.so.6 0x29d90");
	cprof_function_totals_free(rows, count);

	/* The other sample type, and a bad index. */
	assert_int_equal(cprof_profile_function_totals(p, 0, &rows, &count), 0);
	assert_int_equal(find_row(rows, count, "helper")->flat, 5);
	assert_int_equal(find_row(rows, count, "main")->cum, 10);
	cprof_function_totals_free(rows, count);
	assert_int_equal(cprof_profile_function_totals(p, 2, &rows, &count), -1);
	assert_int_equal(cprof_profile_function_totals(p, -1, &rows, &count), -1);
	cprof_profile_free(p);
	free(zipped.data);
}

static void test_ties_sort_by_name_and_zero_rows_are_left_out(void **state)
{
	(void)state;
	fixture_t f;
	fixture_build(&f);
	/* Every sample 5ms, sample 2 (libc) 0: compute and helper tie on flat
	 * if sample 3 is also 5 and sample 1 is 0. */
	f.values[0][1] = 5; /* compute flat 5 */
	f.values[1][1] = 0;
	f.values[2][1] = 0; /* libc: flat 0, cum 0 -> no row */
	f.values[3][1] = 5; /* helper flat 5 */
	bytes_t packed = pack(&f.profile);
	char err[512];
	profile_t *p;
	assert_int_equal(
		cprof_profile_read_buffer(packed.data, packed.length, "p", &p, err, sizeof err), 0);
	cprof_function_total_t *rows;
	size_t count;
	assert_int_equal(cprof_profile_function_totals(p, 1, &rows, &count), 0);
	assert_int_equal(count, 3);
	cprof_function_totals_sort(rows, count, CPROF_SORT_BY_FLAT);
	assert_string_equal(rows[0].name, "compute");
	assert_string_equal(rows[1].name, "helper");
	assert_string_equal(rows[2].name, "main");
	cprof_function_totals_free(rows, count);
	cprof_profile_free(p);
	free(packed.data);
}

static void test_names(void **state)
{
	(void)state;
	fixture_t f;
	fixture_build(&f);
	f.locations[1].mapping_id = 0; /* compute-in-helper: no mapping */
	f.functions[2].name = STRING_EMPTY; /* helper: system name only */
	f.functions[2].system_name = STRING_HELPER;
	bytes_t packed = pack(&f.profile);
	char err[512], name[64];
	profile_t *p;
	assert_int_equal(
		cprof_profile_read_buffer(packed.data, packed.length, "p", &p, err, sizeof err), 0);
	cprof_profile_address_name(p, cprof_profile_location(p, LOCATION_LIBC), name,
				   sizeof name);
	assert_string_equal(name, "libc.so.6 0x29d90");
	cprof_profile_address_name(p, cprof_profile_location(p, LOCATION_COMPUTE_IN_HELPER),
				   name, sizeof name);
	assert_string_equal(name, "0x401010");
	cprof_profile_address_name(p, cprof_profile_location(p, LOCATION_LIBC), name, 8);
	assert_string_equal(name, "libc.so");
	assert_string_equal(cprof_profile_function_name(p, cprof_profile_function(p, 3)),
			    "helper");
	assert_string_equal(cprof_profile_string(p, -1), "");
	assert_string_equal(cprof_profile_string(p, STRING_TABLE_SIZE), "");
	assert_string_equal(cprof_profile_string(p, STRING_CPU), "cpu");
	cprof_profile_free(p);
	free(packed.data);
}

static void test_nameless_function_counts_under_its_address(void **state)
{
	(void)state;
	fixture_t f;
	fixture_build(&f);
	f.functions[0].name = STRING_EMPTY; /* main: no name at all */
	f.functions[0].system_name = STRING_EMPTY;
	bytes_t packed = pack(&f.profile);
	char err[512];
	profile_t *p;
	assert_int_equal(
		cprof_profile_read_buffer(packed.data, packed.length, "p", &p, err, sizeof err), 0);
	cprof_function_total_t *rows;
	size_t count;
	assert_int_equal(cprof_profile_function_totals(p, 1, &rows, &count), 0);
	assert_int_equal(count, 4);
	/* Named by its address in the file (0x401020 in a mapping at 0x400000,
	 * offset 0): stable across runs, whatever ASLR did. */
	assert_int_equal(find_row(rows, count, "prog 0x1020")->cum, 100 * MILLISECOND);
	cprof_function_totals_free(rows, count);
	cprof_profile_free(p);
	free(packed.data);
}

/* Twenty thousand functions named by one 1 MiB string: the name is hashed
 * and copied once, not once per function (20 GB of hashing). */
static void test_shared_long_name_is_cheap(void **state)
{
	(void)state;
	enum { COUNT = 20000 };
	size_t name_length = 1 << 20;
	char *long_name = malloc(name_length + 1);
	assert_non_null(long_name);
	memset(long_name, 'x', name_length);
	long_name[name_length] = '\0';
	char *strings[] = { "", "cpu", "nanoseconds", long_name };
	Perftools__Profiles__ValueType type = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
	Perftools__Profiles__ValueType *types[] = { &type };
	type.type = 1;
	type.unit = 2;
	Perftools__Profiles__Function *functions = calloc(COUNT, sizeof *functions);
	Perftools__Profiles__Function **function_list = calloc(COUNT, sizeof *function_list);
	Perftools__Profiles__Line *lines = calloc(COUNT, sizeof *lines);
	Perftools__Profiles__Line **line_list = calloc(COUNT, sizeof *line_list);
	Perftools__Profiles__Location *locations = calloc(COUNT, sizeof *locations);
	Perftools__Profiles__Location **location_list = calloc(COUNT, sizeof *location_list);
	uint64_t *stack = calloc(COUNT, sizeof *stack);
	assert_true(functions && function_list && lines && line_list && locations &&
		    location_list && stack);
	for (size_t i = 0; i < COUNT; i++) {
		init_function(&functions[i], i + 1, 3);
		functions[i].filename = 0;
		function_list[i] = &functions[i];
		init_line(&lines[i], i + 1, 1);
		line_list[i] = &lines[i];
		init_location(&locations[i], i + 1, 0, 0x1000 + i, &line_list[i], 1);
		location_list[i] = &locations[i];
		stack[i] = i + 1;
	}
	int64_t value = 7;
	Perftools__Profiles__Sample one_sample = PERFTOOLS__PROFILES__SAMPLE__INIT;
	Perftools__Profiles__Sample *samples[] = { &one_sample };
	one_sample.location_id = stack;
	one_sample.n_location_id = COUNT;
	one_sample.value = &value;
	one_sample.n_value = 1;
	profile_t profile = PERFTOOLS__PROFILES__PROFILE__INIT;
	profile.sample_type = types;
	profile.n_sample_type = 1;
	profile.sample = samples;
	profile.n_sample = 1;
	profile.function = function_list;
	profile.n_function = COUNT;
	profile.location = location_list;
	profile.n_location = COUNT;
	profile.string_table = strings;
	profile.n_string_table = 4;
	bytes_t packed = pack(&profile);

	char err[512];
	profile_t *p;
	assert_int_equal(
		cprof_profile_read_buffer(packed.data, packed.length, "p", &p, err, sizeof err), 0);
	cprof_function_total_t *rows;
	size_t count;
	assert_int_equal(cprof_profile_function_totals(p, 0, &rows, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(strlen(rows[0].name), name_length);
	assert_int_equal(rows[0].flat, 7);
	assert_int_equal(rows[0].cum, 7); /* once, though on the stack 20000 times */
	cprof_function_totals_free(rows, count);
	cprof_profile_free(p);
	free(packed.data);
	free(functions);
	free(function_list);
	free(lines);
	free(line_list);
	free(locations);
	free(location_list);
	free(stack);
	free(long_name);
}

static void test_format_value(void **state)
{
	(void)state;
	char text[64];
	static const struct {
		int64_t value;
		const char *unit;
		const char *expected;
	} cases[] = {
		{ 1200000000, "nanoseconds", "1.20s" },
		{ 340000000, "nanoseconds", "340ms" },
		{ 1500000, "nanoseconds", "1.50ms" },
		{ 999, "nanoseconds", "999ns" },
		{ 2500, "ns", "2.50us" },
		{ 7200000000000, "nanoseconds", "2hrs" },
		{ 3, "seconds", "3s" },
		{ 0, "nanoseconds", "0" },
		{ -1500000, "nanoseconds", "-1.50ms" },
		{ 512, "bytes", "512B" },
		{ 1536, "bytes", "1.50kB" },
		{ 5 * 1048576, "bytes", "5MB" },
		{ 3 * 1073741824LL, "bytes", "3GB" },
		{ 2, "kilobytes", "2kB" },
		{ 42, "count", "42" },
		{ 42, "", "42" },
		{ 123456789012345, "objects", "123456789012345" },
		{ INT64_MIN, "count", "-9223372036854775808" },
		{ INT64_MIN, "bytes", "-8192PB" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cprof_format_value(cases[i].value, cases[i].unit, text, sizeof text);
		assert_string_equal(text, cases[i].expected);
	}
	cprof_format_percent(7501, 10000, text, sizeof text);
	assert_string_equal(text, "75.01%");
	cprof_format_percent(10, 10, text, sizeof text);
	assert_string_equal(text, "100%");
	cprof_format_percent(1, 3, text, sizeof text);
	assert_string_equal(text, "33.33%");
	cprof_format_percent(5, 0, text, sizeof text);
	assert_string_equal(text, "0.00%");
	cprof_format_percent(-35, 1000, text, sizeof text);
	assert_string_equal(text, "-3.50%");
	assert_int_equal(cprof_add_saturating(INT64_MAX, 1), INT64_MAX);
	assert_int_equal(cprof_add_saturating(INT64_MIN, -1), INT64_MIN);
	assert_int_equal(cprof_add_saturating(40, 2), 42);
}

static void test_print_escaped(void **state)
{
	(void)state;
	char *text = NULL;
	size_t size = 0;
	FILE *stream = open_memstream(&text, &size);
	assert_non_null(stream);
	cprof_print_escaped(stream, "a\tb\nc\x7f" "d\\e");
	fclose(stream);
	assert_string_equal(text, "a\\x09b\\x0ac\\x7fd\\e");
	free(text);
}

/* ---- rejecting bad input ---------------------------------------------- */

static void test_rejects_missing_empty_and_directory(void **state)
{
	(void)state;
	char directory[64], path[128], err[512];
	profile_t *p = (profile_t *)1;
	int result;
	temporary_path(directory, sizeof directory, path, sizeof path, "prof.pb.gz");

	result = cprof_profile_read(path, &p, err, sizeof err);
	assert_rejected(result, p, err, path,
			"No such file or directory");
	write_file(path, NULL, 0);
	result = cprof_profile_read(path, &p, err, sizeof err);
	assert_rejected(result, p, err, path,
			"empty file");
	result = cprof_profile_read(directory, &p, err, sizeof err);
	assert_rejected(result, p, err, directory,
			"Is a directory");
	unlink(path);
	rmdir(directory);

	/* A small err buffer is filled, terminated and never overrun. */
	char tiny[8];
	memset(tiny, 'x', sizeof tiny);
	assert_int_equal(cprof_profile_read("/nonexistent/prof.pb.gz", &p, tiny, 6), -1);
	assert_string_equal(tiny, "/none");
	assert_int_equal(tiny[6], 'x');

	/* A control character in the name does not split the line. */
	assert_int_equal(cprof_profile_read("/nonexistent/a\nb", &p, err, sizeof err), -1);
	assert_null(strchr(err, '\n'));
}

static void test_rejects_garbage(void **state)
{
	(void)state;
	bytes_t text = { (uint8_t *)"#!/bin/sh\necho hello\n", 21 };
	read_expect_failure(&text, "not gzip or protobuf: bad magic 0x23 0x21");
	bytes_t one = { (uint8_t *)"\x1f", 1 };
	read_expect_failure(&one, "not gzip or protobuf");
	bytes_t empty = { (uint8_t *)"", 0 };
	read_expect_failure(&empty, "empty file");
	/* A plausible first byte, then nonsense: sample_type of length 0x7f
	 * with 2 bytes present. */
	bytes_t broken = { (uint8_t *)"\x0a\x7f\x08\x01", 4 };
	read_expect_failure(&broken, "corrupt protobuf");
	/* gzip header, then garbage. */
	bytes_t bad_deflate = { (uint8_t *)"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xff\xff",
				13 };
	read_expect_failure(&bad_deflate, "corrupt gzip data");
	/* gzip of something that is not a profile. */
	bytes_t zipped_text = gzip(text.data, text.length);
	read_expect_failure(&zipped_text, "gzip data does not hold a protobuf profile");
	free(zipped_text.data);
	/* gzip of nothing. */
	bytes_t zipped_nothing = gzip((const uint8_t *)"", 0);
	read_expect_failure(&zipped_nothing, "empty profile inside the gzip data");
	free(zipped_nothing.data);
	/* A valid first byte, then a corrupt protobuf, gzipped. */
	bytes_t zipped_broken = gzip(broken.data, broken.length);
	read_expect_failure(&zipped_broken, "corrupt protobuf inside the gzip data");
	free(zipped_broken.data);
}

static void test_rejects_truncated_and_trailing_gzip(void **state)
{
	(void)state;
	bytes_t zipped = fixture_gzipped();
	for (size_t cut = 0; cut < zipped.length; cut++) {
		bytes_t truncated = { zipped.data, cut };
		read_expect_failure(&truncated, NULL);
	}
	bytes_t missing_last = { zipped.data, zipped.length - 1 };
	read_expect_failure(&missing_last, "truncated gzip data");

	bytes_t trailing;
	trailing.length = zipped.length + 3;
	trailing.data = malloc(trailing.length);
	memcpy(trailing.data, zipped.data, zipped.length);
	memcpy(trailing.data + zipped.length, "abc", 3);
	read_expect_failure(&trailing, "3 bytes of trailing garbage");

	/* Any single bit flipped in the compressed stream or its trailer: the
	 * CRC (or inflate) notices, or the result is still a valid profile. */
	for (size_t bit = 0; bit < zipped.length * 8; bit++) {
		zipped.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		char err[512];
		profile_t *p = NULL;
		if (cprof_profile_read_buffer(zipped.data, zipped.length, "flip", &p, err,
					      sizeof err) == 0) {
			assert_profile_consistent(p);
			cprof_profile_free(p);
		} else {
			assert_rejected(-1, p, err, "flip", NULL);
		}
		zipped.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	free(trailing.data);
	free(zipped.data);
}

static void test_rejects_semantic_errors(void **state)
{
	(void)state;
	fixture_t f;

	fixture_build(&f);
	f.profile.n_string_table = 0;
	expect_invalid(&f, "no string table");

	fixture_build(&f);
	f.strings[0] = "x";
	expect_invalid(&f, "string_table[0] is not empty");

	fixture_build(&f);
	f.functions[1].name = 99;
	expect_invalid(&f, "string index 99 out of range (table has 15) in function 2 name");

	fixture_build(&f);
	f.functions[0].filename = -1;
	expect_invalid(&f, "string index -1 out of range");

	fixture_build(&f);
	f.sample_types[1].unit = STRING_TABLE_SIZE;
	expect_invalid(&f, "sample type 1 unit");

	fixture_build(&f);
	f.period_type.type = 1000;
	expect_invalid(&f, "period type");

	fixture_build(&f);
	f.profile.default_sample_type = 77;
	expect_invalid(&f, "default_sample_type");

	fixture_build(&f);
	f.profile.drop_frames = 77;
	expect_invalid(&f, "drop_frames");

	fixture_build(&f);
	int64_t comments[] = { STRING_MAIN, 500 };
	f.profile.comment = comments;
	f.profile.n_comment = 2;
	expect_invalid(&f, "comment 1");

	fixture_build(&f);
	f.mappings[1].build_id = 40;
	expect_invalid(&f, "mapping 2 build_id");

	fixture_build(&f);
	f.labels[0].key = 15;
	expect_invalid(&f, "sample 2 label 0 key");

	fixture_build(&f);
	f.labels[1].num_unit = 16;
	expect_invalid(&f, "sample 2 label 1 num_unit");

	fixture_build(&f);
	f.stacks[1][2] = 999;
	expect_invalid(&f, "sample 1 refers to location 999, which does not exist");

	fixture_build(&f);
	f.stacks[0][0] = 0;
	expect_invalid(&f, "refers to location 0");

	fixture_build(&f);
	f.lines[3].function_id = 77;
	expect_invalid(&f, "location 104 line 0 refers to function 77, which does not exist");

	fixture_build(&f);
	f.lines[0].function_id = 0;
	expect_invalid(&f, "refers to function 0");

	fixture_build(&f);
	f.locations[0].mapping_id = 9;
	expect_invalid(&f, "location 103 refers to mapping 9, which does not exist");

	fixture_build(&f);
	f.samples[2].n_value = 1;
	expect_invalid(&f, "sample 2 has 1 values for 2 sample types");

	fixture_build(&f);
	f.profile.n_sample_type = 1;
	expect_invalid(&f, "sample 0 has 2 values for 1 sample types");

	fixture_build(&f);
	f.locations[2].id = LOCATION_LIBC;
	expect_invalid(&f, "two locations with id 103");

	fixture_build(&f);
	f.functions[2].id = 0;
	expect_invalid(&f, "function with id 0");

	fixture_build(&f);
	f.mappings[1].id = 1;
	expect_invalid(&f, "two mappings with id 1");

	fixture_build(&f);
	char long_path[PATH_MAX + 2];
	memset(long_path, 'a', sizeof long_path - 1);
	long_path[sizeof long_path - 1] = '\0';
	f.strings[STRING_LIBC] = long_path;
	expect_invalid(&f, "mapping 2 filename longer than 4096 bytes");
}

static void test_rejects_oversize_input(void **state)
{
	(void)state;
	char err[512];
	profile_t *p = NULL;
	int result;
	bytes_t packed = fixture_packed();
	bytes_t zipped = gzip(packed.data, packed.length);

	/* Each cap, made small, rejects the fixture; made exact, accepts it. */
	cprof_profile_limits_t limits = { .max_input_bytes = zipped.length - 1 };
	result = cprof_profile_read_buffer_with_limits(zipped.data, zipped.length, "p",
							      &limits, &p, err, sizeof err);
	assert_rejected(result, p, err, "p", "too large");
	limits.max_input_bytes = zipped.length;
	assert_int_equal(cprof_profile_read_buffer_with_limits(zipped.data, zipped.length, "p",
							       &limits, &p, err, sizeof err),
			 0);
	cprof_profile_free(p);

	limits = (cprof_profile_limits_t){ .max_decompressed_bytes = packed.length - 1 };
	result = cprof_profile_read_buffer_with_limits(zipped.data, zipped.length, "p",
							      &limits, &p, err, sizeof err);
	assert_rejected(result, p, err, "p", "decompressed size exceeds the limit");
	limits.max_decompressed_bytes = packed.length;
	assert_int_equal(cprof_profile_read_buffer_with_limits(zipped.data, zipped.length, "p",
							       &limits, &p, err, sizeof err),
			 0);
	cprof_profile_free(p);

	limits = (cprof_profile_limits_t){ .max_unpacked_bytes = 100 };
	result = cprof_profile_read_buffer_with_limits(packed.data, packed.length, "p",
							      &limits, &p, err, sizeof err);
	assert_rejected(result, p, err, "p", "memory once decoded");

	/* Many empty messages on the wire cost far more once unpacked: one
	 * million empty locations, 2 bytes each on the wire, under a budget of
	 * 16 MiB, are refused without allocating the rest. */
	size_t count = 1000000;
	bytes_t locations = { malloc(2 * count), 2 * count };
	for (size_t i = 0; i < count; i++) {
		locations.data[2 * i] = 0x22; /* field 4 (location), length-delimited */
		locations.data[2 * i + 1] = 0x00;
	}
	limits = (cprof_profile_limits_t){ .max_unpacked_bytes = 16 << 20 };
	result = cprof_profile_read_buffer_with_limits(locations.data, locations.length,
							      "p", &limits, &p, err, sizeof err);
	assert_rejected(result, p, err, "p", "memory once decoded");
	free(locations.data);

	/* The default input cap on a buffer: an untouched anonymous mapping,
	 * one byte too big, is refused before it is read. */
	size_t too_big = CPROF_PROFILE_MAX_INPUT_BYTES + 1;
	uint8_t *huge = mmap(NULL, too_big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			     -1, 0);
	assert_true(huge != MAP_FAILED);
	huge[0] = 0x1f;
	huge[1] = 0x8b;
	assert_rejected(cprof_profile_read_buffer(huge, too_big, "huge", &p, err, sizeof err), p,
			err, "huge", "too large");
	munmap(huge, too_big);

	/* ... and on a (sparse) file. */
	char directory[64], path[128];
	temporary_path(directory, sizeof directory, path, sizeof path, "big.pb.gz");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "\x1f\x8b", 2), 2);
	assert_int_equal(ftruncate(fd, (off_t)too_big), 0);
	close(fd);
	result = cprof_profile_read(path, &p, err, sizeof err);
	assert_rejected(result, p, err, path, "too large");
	unlink(path);
	rmdir(directory);

	free(packed.data);
	free(zipped.data);
}

static void test_rejects_gzip_bomb(void **state)
{
	(void)state;
	/* 300 MiB of zeros compress to about 300 KiB; the default cap stops
	 * decompression at 256 MiB. */
	z_stream stream;
	memset(&stream, 0, sizeof stream);
	assert_int_equal(deflateInit2(&stream, 9, Z_DEFLATED, 16 + MAX_WBITS, 9,
				      Z_DEFAULT_STRATEGY),
			 Z_OK);
	size_t chunk = 1 << 20, chunks = 300;
	uint8_t *zeros = calloc(1, chunk);
	size_t capacity = 1 << 20, length = 0;
	uint8_t *bomb = malloc(capacity);
	assert_non_null(zeros);
	assert_non_null(bomb);
	for (size_t i = 0; i <= chunks; i++) {
		stream.next_in = zeros;
		stream.avail_in = i < chunks ? (uInt)chunk : 0;
		int flush = i < chunks ? Z_NO_FLUSH : Z_FINISH;
		do {
			stream.next_out = bomb + length;
			stream.avail_out = (uInt)(capacity - length);
			int status = deflate(&stream, flush);
			assert_true(status == Z_OK || status == Z_STREAM_END ||
				    status == Z_BUF_ERROR);
			length = capacity - stream.avail_out;
			assert_true(length < capacity); /* 1 MiB is plenty */
		} while (stream.avail_in > 0);
	}
	deflateEnd(&stream);

	char err[512];
	profile_t *p = NULL;
	int result = cprof_profile_read_buffer(bomb, length, "bomb.pb.gz", &p, err,
						  sizeof err);
	assert_rejected(result, p, err, "bomb.pb.gz", "decompressed size exceeds the limit of 268435456");
	free(zeros);
	free(bomb);
}

/* ---- mutations ---------------------------------------------------------- */

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t next_random(uint64_t *seed)
{
	*seed ^= *seed >> 12;
	*seed ^= *seed << 25;
	*seed ^= *seed >> 27;
	return *seed * 2685821657736338717ull;
}

/* One random damage to a copy of `original`: flipped bits, overwritten,
 * inserted, deleted or duplicated bytes, or a cut. */
static bytes_t mutate(const bytes_t *original, uint64_t *seed)
{
	size_t room = original->length * 2 + 64;
	bytes_t m = { malloc(room), original->length };
	assert_non_null(m.data);
	memcpy(m.data, original->data, original->length);
	int rounds = 1 + (int)(next_random(seed) % 3);
	for (int round = 0; round < rounds && m.length > 0; round++) {
		size_t at = next_random(seed) % m.length;
		size_t span = 1 + next_random(seed) % 8;
		if (span > m.length - at)
			span = m.length - at;
		switch (next_random(seed) % 6) {
		case 0: /* flip a few bits */
			for (size_t i = 0; i < span; i++)
				m.data[at + (next_random(seed) % span)] ^=
					(uint8_t)(1u << (next_random(seed) % 8));
			break;
		case 1: /* overwrite with random or interesting bytes */
			for (size_t i = 0; i < span; i++) {
				static const uint8_t interesting[] = { 0x00, 0x01, 0x7f, 0x80,
								       0xff, 0x0a, 0x22 };
				uint64_t r = next_random(seed);
				m.data[at + i] = r & 1 ? (uint8_t)(r >> 8)
						       : interesting[(r >> 8) % sizeof interesting];
			}
			break;
		case 2: /* cut */
			m.length = at;
			break;
		case 3: /* insert random bytes */
			if (m.length + span <= room) {
				memmove(m.data + at + span, m.data + at, m.length - at);
				for (size_t i = 0; i < span; i++)
					m.data[at + i] = (uint8_t)next_random(seed);
				m.length += span;
			}
			break;
		case 4: /* delete */
			memmove(m.data + at, m.data + at + span, m.length - at - span);
			m.length -= span;
			break;
		case 5: /* duplicate a range at the end (repeated fields merge) */
			if (m.length + span <= room) {
				memcpy(m.data + m.length, m.data + at, span);
				m.length += span;
			}
			break;
		}
	}
	return m;
}

static void run_mutations(const bytes_t *original, int count, uint64_t seed,
			  int *accepted, int *rejected)
{
	for (int i = 0; i < count; i++) {
		bytes_t m = mutate(original, &seed);
		char err[512] = "";
		profile_t *p = NULL;
		int result = cprof_profile_read_buffer(m.data, m.length, "mutant", &p, err,
						       sizeof err);
		if (result == 0) {
			assert_non_null(p);
			assert_profile_consistent(p);
			cprof_profile_free(p);
			(*accepted)++;
		} else {
			assert_rejected(result, p, err, "mutant", NULL);
			(*rejected)++;
		}
		free(m.data);
	}
}

/* One to three random changes to the fixture's indices, ids and counts,
 * packed (and gzipped half the time): damage that keeps the protobuf
 * well-formed, so that the validator, not the decoder, has to catch it. */
static bytes_t mutate_fields(uint64_t *seed)
{
	fixture_t f;
	fixture_build(&f);
	int64_t *indices[] = {
		&f.sample_types[0].type, &f.sample_types[1].unit, &f.period_type.type,
		&f.functions[0].name, &f.functions[1].system_name, &f.functions[2].filename,
		&f.mappings[0].filename, &f.mappings[1].build_id, &f.labels[0].key,
		&f.labels[0].str, &f.labels[1].num_unit, &f.profile.default_sample_type,
		&f.profile.drop_frames, &f.profile.keep_frames,
	};
	uint64_t *ids[] = {
		&f.functions[0].id, &f.functions[2].id, &f.mappings[1].id, &f.locations[0].id,
		&f.locations[3].id, &f.locations[1].mapping_id, &f.lines[0].function_id,
		&f.lines[3].function_id, &f.stacks[0][0], &f.stacks[1][2], &f.stacks[3][1],
	};
	static const int64_t candidates[] = { 0, 1, 2, 3, 4, 14, 15, 16, 101, 103, 104, 105,
					      -1, INT64_MAX, INT64_MIN };
	int changes = 1 + (int)(next_random(seed) % 3);
	for (int i = 0; i < changes; i++) {
		uint64_t r = next_random(seed);
		int64_t value = candidates[(r >> 8) % (sizeof candidates / sizeof candidates[0])];
		switch (r % 4) {
		case 0:
			*indices[(r >> 16) % (sizeof indices / sizeof indices[0])] = value;
			break;
		case 1:
			*ids[(r >> 16) % (sizeof ids / sizeof ids[0])] = (uint64_t)value;
			break;
		case 2: /* fewer values, sample types, strings or frames */
			f.samples[(r >> 16) % 4].n_value = (r >> 24) % 3;
			break;
		default:
			if ((r >> 16) & 1)
				f.profile.n_sample_type = (r >> 24) % 3;
			else
				f.profile.n_string_table = (r >> 24) % (STRING_TABLE_SIZE + 1);
			break;
		}
	}
	bytes_t packed = pack(&f.profile);
	if (next_random(seed) & 1)
		return packed;
	bytes_t zipped = gzip(packed.data, packed.length);
	free(packed.data);
	return zipped;
}

static void run_field_mutations(int count, uint64_t seed, int *accepted, int *rejected)
{
	for (int i = 0; i < count; i++) {
		bytes_t m = mutate_fields(&seed);
		char err[512] = "";
		profile_t *p = NULL;
		int result = cprof_profile_read_buffer(m.data, m.length, "mutant", &p, err,
						       sizeof err);
		if (result == 0) {
			assert_profile_consistent(p);
			cprof_profile_free(p);
			(*accepted)++;
		} else {
			assert_rejected(result, p, err, "mutant", NULL);
			(*rejected)++;
		}
		free(m.data);
	}
}

static void test_survives_mutations(void **state)
{
	(void)state;
	bytes_t packed = fixture_packed();
	bytes_t zipped = gzip(packed.data, packed.length);
	int accepted = 0, rejected = 0;
	/* Byte damage to plain protobuf mostly reaches the decoder, to gzip the
	 * gunzip path and its CRC; field damage reaches the validator. */
	run_mutations(&packed, 1000, 0x9e3779b97f4a7c15ull, &accepted, &rejected);
	run_mutations(&zipped, 500, 0xd1b54a32d192ed03ull, &accepted, &rejected);
	run_field_mutations(500, 0x2545f4914f6cdd1dull, &accepted, &rejected);
	assert_int_equal(accepted + rejected, 2000);
	/* Both outcomes occur: the test reaches past the first checks. */
	assert_true(accepted > 0);
	assert_true(rejected > 0);
	print_message("mutations: %d accepted as valid, %d rejected cleanly\n", accepted,
		      rejected);
	free(packed.data);
	free(zipped.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_gzipped_file),
		cmocka_unit_test(test_reads_plain_protobuf_buffer),
		cmocka_unit_test(test_reads_concatenated_gzip_members),
		cmocka_unit_test(test_sample_type_selection),
		cmocka_unit_test(test_function_totals),
		cmocka_unit_test(test_ties_sort_by_name_and_zero_rows_are_left_out),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_nameless_function_counts_under_its_address),
		cmocka_unit_test(test_shared_long_name_is_cheap),
		cmocka_unit_test(test_format_value),
		cmocka_unit_test(test_print_escaped),
		cmocka_unit_test(test_rejects_missing_empty_and_directory),
		cmocka_unit_test(test_rejects_garbage),
		cmocka_unit_test(test_rejects_truncated_and_trailing_gzip),
		cmocka_unit_test(test_rejects_semantic_errors),
		cmocka_unit_test(test_rejects_oversize_input),
		cmocka_unit_test(test_rejects_gzip_bomb),
		cmocka_unit_test(test_survives_mutations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
