/* test_pprof.c — unit tests for preload/pprof.c, the profile.proto writer.
 *
 * The stack table is filled with stacks whose frames are real addresses
 * inside static functions of this test binary (plus pseudo frames), a real
 * symbolizer (cprof_symbolizer_new) names them, cprof_pprof_build writes
 * the profile, and it is read back three ways: the project's decoder
 * (tools/profile_read.c), an independent gunzip + protobuf-c unpack (the
 * output must be one valid gzip member), and `go tool pprof -raw`.
 *
 * Asserted for the CPU kind: sample types samples/count and cpu/nanoseconds,
 * period type cpu/nanoseconds, the period the source registered (1e9/cpu_hz
 * as cpu.c does, or any other), time_nanos and duration_nanos, default
 * sample type "cpu", string_table[0] "", the comment; one Location per
 * unique address (frames shared between stacks share a location id; two
 * addresses in one function share one Function); the static functions'
 * names, file and lines; per stack the values added; entries of other
 * kinds and entries whose values are all zero left out; mapping 1 is this
 * executable with its non-empty build id and has_functions; pseudo frames
 * ([cprof: truncated], [cprof: dropped]) named "[cprof: ...]" without a
 * mapping. For the heap kind: the four sample types, default inuse_space,
 * period type space/bytes, the kind's period, the "bytes" numeric label
 * (num = tag, num_unit "bytes") on every sample, values per (stack, tag),
 * and cprof_pprof_values converting raw counters (a sample whose converted
 * values are all zero is left out). Finally `go tool pprof -raw` reads both
 * profiles and names the test functions.
 */
#include <setjmp.h> /* cmocka.h needs these four first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cprof_internal.h"
#include "profile_read.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

typedef Perftools__Profiles__Profile profile_t;
typedef Perftools__Profiles__Sample sample_t;
typedef Perftools__Profiles__Location location_t;

/* ---- code with known names -------------------------------------------- */

static volatile int sink;

__attribute__((noipa)) static int leaf_fn(int x)
{
	sink += x;
	sink *= 3;
	return sink + x;
}

__attribute__((noipa)) static int mid_fn(int x)
{
	sink ^= x;
	sink += leaf_fn(x + 1);
	return sink - 1;
}

__attribute__((noipa)) static int root_fn(int x)
{
	sink -= x;
	sink += mid_fn(x * 2);
	return sink;
}

/* Addresses as the table stores them: any byte inside the function. */
#define LEAF ((uintptr_t)&leaf_fn + 4)
#define LEAF_2 ((uintptr_t)&leaf_fn + 1) /* a second address in leaf_fn */
#define MID ((uintptr_t)&mid_fn + 4)
#define ROOT ((uintptr_t)&root_fn + 4)

enum {
	CPU_HZ = 250,
	PERIOD_NS = 1000000000 / CPU_HZ,
	HEAP_PERIOD = 512 * 1024,
	MAX_FRAMES = 8,
};
static const int64_t START_NS = INT64_C(1700000000123456789);
static const int64_t DURATION_NS = INT64_C(2500000001);

/* ---- what goes into the table, and what should come out ---------------- */

typedef struct stack_spec {
	cprof_kind_t kind;
	uint64_t tag;
	unsigned depth;
	uintptr_t frames[MAX_FRAMES];
	int64_t values[CPROF_VALUES_MAX];
} stack_spec_t;

static void insert_spec(const stack_spec_t *spec)
{
	cprof_stack_t *s = cprof_stacks_insert(spec->kind, spec->tag, spec->frames, spec->depth);
	assert_non_null(s);
	assert_int_not_equal(s->frames[0], CPROF_FRAME_DROPPED);
	for (int i = 0; i < CPROF_VALUES_MAX; i++)
		if (spec->values[i])
			cprof_stack_add(s, i, spec->values[i]);
}

static bool spec_written(const stack_spec_t *spec, cprof_kind_t kind, unsigned nvalues)
{
	if (spec->kind != kind)
		return false;
	for (unsigned i = 0; i < nvalues; i++)
		if (spec->values[i])
			return true;
	return false;
}

/* The CPU fixture: shared frames, a second address in one function, two
 * entries with the same frames (tags differ; the CPU profile has no tag
 * label), a pseudo frame, an all-zero entry, and an entry of another kind
 * at the same addresses. */
static size_t cpu_fixture(stack_spec_t *specs)
{
	const stack_spec_t all[] = {
		{ CPROF_KIND_CPU, 0, 3, { LEAF, MID, ROOT }, { 3, 3 * PERIOD_NS } },
		{ CPROF_KIND_CPU, 0, 2, { MID, ROOT }, { 2, 2 * PERIOD_NS } },
		{ CPROF_KIND_CPU, 0, 2, { LEAF_2, ROOT }, { 1, PERIOD_NS } },
		{ CPROF_KIND_CPU, 0, 3, { LEAF, MID, CPROF_FRAME_TRUNCATED },
		  { 5, 5 * PERIOD_NS } },
		{ CPROF_KIND_CPU, 7, 3, { LEAF, MID, ROOT }, { 1, PERIOD_NS } },
		{ CPROF_KIND_CPU, 0, 1, { ROOT }, { 0, 0 } },           /* all zero */
		{ CPROF_KIND_CPU, 0, 2, { ROOT, MID }, { 0, 0, 9, 9 } }, /* beyond nvalues */
		{ CPROF_KIND_HEAP, 16, 1, { LEAF + 2 }, { 1, 16, 1, 16 } }, /* not CPU */
	};
	memcpy(specs, all, sizeof all);
	return sizeof all / sizeof all[0];
}

static void set_config(void)
{
	cprof_config.cpu_hz = CPU_HZ;
	cprof_config.max_depth = 16;
	cprof_start_wall_ns = START_NS;
	for (int k = 0; k < CPROF_KIND_COUNT; k++) {
		cprof_pprof_period[k] = 0;
		cprof_pprof_values[k] = NULL;
	}
	/* As the CPU source registers itself when it starts. */
	cprof_source_register(CPROF_KIND_CPU, 1000000000 / CPU_HZ, NULL);
}

static int setup(void **state)
{
	(void)state;
	set_config();
	/* A table of its own for every test (the old one leaks: fine here). */
	return cprof_stacks_init(1024, 16);
}

/* The go test's temporary directory, removed here even when it fails. */
static char go_dir[64];

static int teardown(void **state)
{
	(void)state;
	set_config();
	if (go_dir[0]) {
		char cmd[128];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", go_dir);
		go_dir[0] = '\0';
		if (system(cmd) != 0)
			return -1;
	}
	return 0;
}

/* ---- building and reading ---------------------------------------------- */

/* Gunzips one gzip member with zlib directly: independent of the decoder,
 * which would also take plain protobuf. Checks the trailer's length. */
static uint8_t *gunzip(const uint8_t *gz, size_t len, size_t *out_len)
{
	assert_true(len > 18);
	assert_int_equal(gz[0], 0x1f);
	assert_int_equal(gz[1], 0x8b);
	assert_int_equal(gz[2], 8); /* deflate */
	size_t isize = (size_t)gz[len - 4] | (size_t)gz[len - 3] << 8 |
		       (size_t)gz[len - 2] << 16 | (size_t)gz[len - 1] << 24;
	uint8_t *out = malloc(isize + 1);
	assert_non_null(out);
	z_stream z;
	memset(&z, 0, sizeof z);
	assert_int_equal(inflateInit2(&z, 16 + MAX_WBITS), Z_OK);
	z.next_in = (Bytef *)gz;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)isize + 1;
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	assert_int_equal(z.avail_in, 0); /* one member, nothing after it */
	assert_int_equal(z.total_out, isize);
	inflateEnd(&z);
	*out_len = isize;
	return out;
}

typedef struct built {
	uint8_t *gz;
	size_t gz_len;
	profile_t *p;
} built_t;

static built_t build(cprof_kind_t kind)
{
	built_t b = { NULL, 0, NULL };
	cprof_symbolizer_t *sym = cprof_symbolizer_new();
	assert_non_null(sym);
	assert_int_equal(cprof_pprof_build(kind, sym, START_NS + DURATION_NS, &b.gz, &b.gz_len),
			 0);
	cprof_symbolizer_free(sym);
	assert_non_null(b.gz);

	/* Valid gzip holding a valid message, by protobuf-c alone. */
	size_t raw_len;
	uint8_t *raw = gunzip(b.gz, b.gz_len, &raw_len);
	profile_t *direct = perftools__profiles__profile__unpack(NULL, raw_len, raw);
	assert_non_null(direct);

	char err[512] = "";
	int rc = cprof_profile_read_buffer(b.gz, b.gz_len, "built", &b.p, err, sizeof err);
	if (rc != 0)
		fail_msg("the decoder refuses the profile: %s", err);
	assert_non_null(b.p);
	assert_int_equal(direct->n_sample, b.p->n_sample);
	assert_int_equal(direct->n_location, b.p->n_location);
	assert_int_equal(direct->n_string_table, b.p->n_string_table);
	perftools__profiles__profile__free_unpacked(direct, NULL);
	free(raw);
	return b;
}

static void built_free(built_t *b)
{
	cprof_profile_free(b->p);
	free(b->gz);
}

static const char *str(const profile_t *p, int64_t i)
{
	assert_true(i >= 0 && (uint64_t)i < p->n_string_table);
	return cprof_profile_string(p, i);
}

static void assert_value_type(const profile_t *p, const Perftools__Profiles__ValueType *t,
			      const char *type, const char *unit)
{
	assert_non_null(t);
	assert_string_equal(str(p, t->type), type);
	assert_string_equal(str(p, t->unit), unit);
}

static const location_t *location_at(const profile_t *p, uintptr_t address)
{
	const location_t *found = NULL;
	for (size_t i = 0; i < p->n_location; i++) {
		if (p->location[i]->address != address)
			continue;
		assert_null(found); /* one location per address */
		found = p->location[i];
	}
	return found;
}

/* The innermost function name of a location. */
static const char *location_name(const profile_t *p, const location_t *l)
{
	assert_non_null(l);
	assert_true(l->n_line >= 1);
	const Perftools__Profiles__Function *f = cprof_profile_function(p, l->line[0]->function_id);
	assert_non_null(f);
	return cprof_profile_function_name(p, f);
}

static bool sample_is(const profile_t *p, const sample_t *s, const stack_spec_t *spec)
{
	if (s->n_location_id != spec->depth)
		return false;
	for (unsigned i = 0; i < spec->depth; i++) {
		const location_t *l = cprof_profile_location(p, s->location_id[i]);
		if (!l || l->address != spec->frames[i])
			return false;
	}
	return true;
}

static int64_t sample_tag(const profile_t *p, const sample_t *s)
{
	assert_int_equal(s->n_label, 1);
	const Perftools__Profiles__Label *l = s->label[0];
	assert_string_equal(str(p, l->key), "bytes");
	assert_string_equal(str(p, l->num_unit), "bytes");
	assert_int_equal(l->str, 0);
	return l->num;
}

/* Every written spec is in the profile with its values (specs with the
 * same frames, and for labelled kinds the same tag, are summed: the
 * profile may hold them as one sample or several); every sample is one
 * of the written specs; nothing else is there. */
static void assert_samples(const profile_t *p, const stack_spec_t *specs, size_t n,
			   cprof_kind_t kind, unsigned nvalues, bool tagged)
{
	size_t written = 0, matched = 0;
	for (size_t i = 0; i < n; i++)
		written += spec_written(&specs[i], kind, nvalues);
	assert_int_equal(p->n_sample, written); /* one per non-zero entry */

	for (size_t i = 0; i < p->n_sample; i++) {
		const sample_t *s = p->sample[i];
		assert_int_equal(s->n_value, nvalues);
		bool any = false;
		for (unsigned v = 0; v < nvalues; v++)
			any |= s->value[v] != 0;
		assert_true(any); /* all-zero samples are left out */
		if (!tagged)
			assert_int_equal(s->n_label, 0);
	}

	for (size_t i = 0; i < n; i++) {
		if (!spec_written(&specs[i], kind, nvalues))
			continue;
		int64_t want[CPROF_VALUES_MAX] = { 0 }, got[CPROF_VALUES_MAX] = { 0 };
		for (size_t j = 0; j < n; j++) {
			if (!spec_written(&specs[j], kind, nvalues) || specs[j].depth != specs[i].depth ||
			    memcmp(specs[j].frames, specs[i].frames,
				   specs[i].depth * sizeof(uintptr_t)) ||
			    (tagged && specs[j].tag != specs[i].tag))
				continue;
			for (unsigned v = 0; v < nvalues; v++)
				want[v] += specs[j].values[v];
		}
		size_t hits = 0;
		for (size_t k = 0; k < p->n_sample; k++) {
			const sample_t *s = p->sample[k];
			if (!sample_is(p, s, &specs[i]))
				continue;
			if (tagged && (uint64_t)sample_tag(p, s) != specs[i].tag)
				continue;
			hits++;
			for (unsigned v = 0; v < nvalues; v++)
				got[v] += s->value[v];
		}
		assert_true(hits >= 1);
		for (unsigned v = 0; v < nvalues; v++)
			assert_int_equal(got[v], want[v]);
	}
	for (size_t k = 0; k < p->n_sample; k++) {
		for (size_t i = 0; i < n; i++) {
			if (spec_written(&specs[i], kind, nvalues) && sample_is(p, p->sample[k], &specs[i]) &&
			    (!tagged || (uint64_t)sample_tag(p, p->sample[k]) == specs[i].tag)) {
				matched++;
				break;
			}
		}
	}
	assert_int_equal(matched, p->n_sample);
}

/* The distinct addresses of the written specs: exactly the locations. */
static void assert_locations(const profile_t *p, const stack_spec_t *specs, size_t n,
			     cprof_kind_t kind, unsigned nvalues)
{
	uintptr_t seen[64];
	size_t nseen = 0;
	for (size_t i = 0; i < n; i++) {
		if (!spec_written(&specs[i], kind, nvalues))
			continue;
		for (unsigned f = 0; f < specs[i].depth; f++) {
			bool dup = false;
			for (size_t k = 0; k < nseen; k++)
				dup |= seen[k] == specs[i].frames[f];
			if (!dup) {
				assert_true(nseen < 64);
				seen[nseen++] = specs[i].frames[f];
			}
		}
	}
	assert_int_equal(p->n_location, nseen);
	for (size_t k = 0; k < nseen; k++)
		assert_non_null(location_at(p, seen[k]));
	for (size_t i = 0; i < p->n_location; i++)
		assert_int_equal(p->location[i]->id, i + 1); /* sorted by the reader */
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static void self_exe(char *buf, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", buf, size - 1);
	assert_true(n > 0);
	buf[n] = '\0';
}

/* ---- CPU --------------------------------------------------------------- */

static void test_cpu_profile(void **state)
{
	(void)state;
	stack_spec_t specs[16];
	size_t n = cpu_fixture(specs);
	for (size_t i = 0; i < n; i++)
		insert_spec(&specs[i]);
	built_t b = build(CPROF_KIND_CPU);
	const profile_t *p = b.p;

	/* Header. */
	assert_true(p->n_string_table >= 1);
	assert_string_equal(p->string_table[0], "");
	assert_int_equal(p->n_sample_type, 2);
	assert_value_type(p, p->sample_type[0], "samples", "count");
	assert_value_type(p, p->sample_type[1], "cpu", "nanoseconds");
	assert_value_type(p, p->period_type, "cpu", "nanoseconds");
	assert_int_equal(p->period, PERIOD_NS);
	assert_int_equal(p->period, 1000000000 / CPU_HZ);
	assert_int_equal(p->time_nanos, START_NS);
	assert_int_equal(p->duration_nanos, DURATION_NS);
	assert_string_equal(str(p, p->default_sample_type), "cpu");
	assert_int_equal(cprof_profile_default_sample_type(p), 1);
	assert_int_equal(p->n_comment, 1);
	assert_non_null(strstr(str(p, p->comment[0]), "cpu_hz=250"));
	/* Strings are de-duplicated. */
	for (size_t i = 0; i < p->n_string_table; i++)
		for (size_t j = i + 1; j < p->n_string_table; j++)
			assert_string_not_equal(p->string_table[i], p->string_table[j]);

	/* Samples: values per stack; the zero, beyond-nvalues and heap
	 * entries left out; the CPU dropped entry (zero) too. */
	assert_samples(p, specs, n, CPROF_KIND_CPU, 2, false);
	/* One location per distinct address: LEAF, LEAF_2, MID, ROOT and the
	 * pseudo frame; shared frames share the id. */
	assert_locations(p, specs, n, CPROF_KIND_CPU, 2);
	assert_int_equal(p->n_location, 5);
	assert_null(location_at(p, LEAF + 2));               /* heap only */
	assert_null(location_at(p, CPROF_FRAME_DROPPED));    /* zero */
	uint64_t leaf_id = location_at(p, LEAF)->id, root_id = location_at(p, ROOT)->id;
	size_t with_leaf = 0, with_root = 0;
	for (size_t i = 0; i < p->n_sample; i++) {
		const sample_t *s = p->sample[i];
		for (size_t k = 0; k < s->n_location_id; k++) {
			with_leaf += s->location_id[k] == leaf_id;
			with_root += s->location_id[k] == root_id;
		}
	}
	assert_int_equal(with_leaf, 3); /* two [LEAF MID ROOT] and [LEAF MID trunc] */
	assert_int_equal(with_root, 4);

	/* Names from the symbolizer, one Function per function. */
	const location_t *leaf = location_at(p, LEAF), *leaf2 = location_at(p, LEAF_2);
	const location_t *mid = location_at(p, MID), *root = location_at(p, ROOT);
	assert_string_equal(location_name(p, leaf), "leaf_fn");
	assert_string_equal(location_name(p, leaf2), "leaf_fn");
	assert_string_equal(location_name(p, mid), "mid_fn");
	assert_string_equal(location_name(p, root), "root_fn");
	assert_int_equal(leaf->line[0]->function_id, leaf2->line[0]->function_id);
	assert_int_not_equal(leaf->line[0]->function_id, mid->line[0]->function_id);
	assert_int_equal(p->n_function, 4); /* leaf_fn, mid_fn, root_fn, truncated */
	const location_t *code[] = { leaf, leaf2, mid, root };
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(code[i]->n_line, 1);
		const Perftools__Profiles__Function *f =
			cprof_profile_function(p, code[i]->line[0]->function_id);
		assert_string_equal(str(p, f->system_name), str(p, f->name));
		assert_string_equal(base_name(str(p, f->filename)), "test_pprof.c");
		assert_true(f->start_line > 0);
		assert_true(code[i]->line[0]->line >= f->start_line);
		assert_int_equal(code[i]->mapping_id, 1);
	}

	/* The pseudo frame: named, no mapping. */
	const location_t *trunc = location_at(p, CPROF_FRAME_TRUNCATED);
	assert_non_null(trunc);
	assert_string_equal(location_name(p, trunc), "[cprof: truncated]");
	assert_int_equal(strncmp(location_name(p, trunc), "[cprof: ", 8), 0);
	assert_int_equal(trunc->mapping_id, 0);

	/* Mapping 1: this program, with its build id, functions known. */
	char exe[PATH_MAX];
	self_exe(exe, sizeof exe);
	assert_true(p->n_mapping >= 2);
	const Perftools__Profiles__Mapping *m = cprof_profile_mapping(p, 1);
	assert_non_null(m);
	assert_string_equal(str(p, m->filename), exe);
	const char *build_id = str(p, m->build_id);
	assert_true(strlen(build_id) >= 16);
	assert_int_equal(strspn(build_id, "0123456789abcdef"), strlen(build_id));
	assert_true(m->has_functions);
	assert_true(m->has_filenames);
	assert_true(m->has_line_numbers);
	assert_true(m->memory_start <= LEAF && LEAF < m->memory_limit);
	assert_true(m->memory_start <= ROOT && ROOT < m->memory_limit);
	/* Nothing was looked up in the others: no claim made for them. */
	for (size_t i = 0; i < p->n_mapping; i++) {
		if (p->mapping[i]->id == 1)
			continue;
		assert_string_not_equal(str(p, p->mapping[i]->filename), exe);
		assert_false(p->mapping[i]->has_functions);
	}

	/* What pprof calls the totals. */
	assert_int_equal(cprof_profile_total(p, 0), 3 + 2 + 1 + 5 + 1);
	assert_int_equal(cprof_profile_total(p, 1), (3 + 2 + 1 + 5 + 1) * PERIOD_NS);
	built_free(&b);
}

static void test_cpu_period_from_table(void **state)
{
	(void)state;
	cprof_pprof_period[CPROF_KIND_CPU] = 1234567;
	const stack_spec_t spec = { CPROF_KIND_CPU, 0, 1, { ROOT }, { 1, 1234567 } };
	insert_spec(&spec);
	built_t b = build(CPROF_KIND_CPU);
	assert_int_equal(b.p->period, 1234567);
	assert_int_equal(b.p->n_sample, 1);
	built_free(&b);
}

static void test_empty_and_dropped(void **state)
{
	(void)state;
	/* Nothing recorded: a valid profile with no sample and no location. */
	built_t b = build(CPROF_KIND_CPU);
	assert_int_equal(b.p->n_sample, 0);
	assert_int_equal(b.p->n_location, 0);
	assert_int_equal(b.p->n_function, 0);
	assert_int_equal(b.p->n_sample_type, 2);
	assert_true(b.p->n_mapping >= 1);
	built_free(&b);

	/* A full table: the dropped entry is written as [cprof: dropped]. */
	assert_int_equal(cprof_stacks_init(4, 8), 0);
	const uintptr_t fill[] = { LEAF, MID, ROOT, LEAF_2 };
	for (size_t i = 0; i < 4; i++)
		assert_non_null(cprof_stacks_insert(CPROF_KIND_CPU, 0, &fill[i], 1));
	const uintptr_t extra[] = { MID, LEAF };
	cprof_stack_t *d = cprof_stacks_insert(CPROF_KIND_CPU, 0, extra, 2);
	assert_non_null(d);
	assert_int_equal(d->frames[0], CPROF_FRAME_DROPPED);
	cprof_stack_add(d, 0, 6);
	cprof_stack_add(d, 1, 6 * PERIOD_NS);

	b = build(CPROF_KIND_CPU);
	const profile_t *p = b.p;
	assert_int_equal(p->n_sample, 1);
	assert_int_equal(p->sample[0]->n_location_id, 1);
	assert_int_equal(p->sample[0]->value[0], 6);
	assert_int_equal(p->sample[0]->value[1], 6 * PERIOD_NS);
	assert_int_equal(p->n_location, 1);
	const location_t *l = cprof_profile_location(p, p->sample[0]->location_id[0]);
	assert_non_null(l);
	assert_int_equal(l->address, CPROF_FRAME_DROPPED);
	assert_int_equal(l->mapping_id, 0);
	assert_string_equal(location_name(p, l), "[cprof: dropped]");
	built_free(&b);
}

/* ---- heap -------------------------------------------------------------- */

static size_t heap_fixture(stack_spec_t *specs)
{
	const stack_spec_t all[] = {
		{ CPROF_KIND_HEAP, 64, 2, { LEAF, ROOT }, { 2, 128, 1, 64 } },
		{ CPROF_KIND_HEAP, 4096, 2, { LEAF, ROOT }, { 1, 4096, 0, 0 } }, /* same frames */
		{ CPROF_KIND_HEAP, 32, 3, { MID, ROOT, CPROF_FRAME_NOUNWIND },
		  { 10, 320, 10, 320 } },
		{ CPROF_KIND_HEAP, 8, 2, { LEAF_2, ROOT }, { 0, 0, 0, 0 } },  /* all zero */
		{ CPROF_KIND_CPU, 0, 2, { LEAF_2, MID }, { 4, 4 * PERIOD_NS } }, /* not heap */
	};
	memcpy(specs, all, sizeof all);
	return sizeof all / sizeof all[0];
}

static void test_heap_profile(void **state)
{
	(void)state;
	cprof_pprof_period[CPROF_KIND_HEAP] = HEAP_PERIOD;
	stack_spec_t specs[16];
	size_t n = heap_fixture(specs);
	for (size_t i = 0; i < n; i++)
		insert_spec(&specs[i]);
	built_t b = build(CPROF_KIND_HEAP);
	const profile_t *p = b.p;

	assert_string_equal(p->string_table[0], "");
	assert_int_equal(p->n_sample_type, 4);
	assert_value_type(p, p->sample_type[0], "alloc_objects", "count");
	assert_value_type(p, p->sample_type[1], "alloc_space", "bytes");
	assert_value_type(p, p->sample_type[2], "inuse_objects", "count");
	assert_value_type(p, p->sample_type[3], "inuse_space", "bytes");
	assert_string_equal(str(p, p->default_sample_type), "inuse_space");
	assert_int_equal(cprof_profile_default_sample_type(p), 3);
	assert_value_type(p, p->period_type, "space", "bytes");
	assert_int_equal(p->period, HEAP_PERIOD);
	assert_int_equal(p->time_nanos, START_NS);
	assert_int_equal(p->duration_nanos, DURATION_NS);

	/* Every sample labelled bytes=tag; values per (stack, tag). */
	for (size_t i = 0; i < p->n_sample; i++) {
		int64_t tag = sample_tag(p, p->sample[i]);
		assert_true(tag == 64 || tag == 4096 || tag == 32);
	}
	assert_samples(p, specs, n, CPROF_KIND_HEAP, 4, true);
	assert_int_equal(p->n_sample, 3);
	assert_locations(p, specs, n, CPROF_KIND_HEAP, 4);
	assert_null(location_at(p, LEAF_2)); /* zero heap entry, CPU entry */
	assert_string_equal(location_name(p, location_at(p, LEAF)), "leaf_fn");
	assert_string_equal(location_name(p, location_at(p, MID)), "mid_fn");
	assert_string_equal(location_name(p, location_at(p, ROOT)), "root_fn");
	assert_string_equal(location_name(p, location_at(p, CPROF_FRAME_NOUNWIND)),
			    "[cprof: not unwound]");
	assert_int_equal(cprof_profile_total(p, 3), 64 + 0 + 320);
	assert_int_equal(cprof_profile_total(p, 1), 128 + 4096 + 320);
	built_free(&b);
}

/* A converter: triples every counter, and says nothing (all zero) for
 * tag 999. */
static void triple_values(const cprof_stack_t *s, int64_t out[CPROF_VALUES_MAX])
{
	for (int i = 0; i < CPROF_VALUES_MAX; i++)
		out[i] = s->tag == 999 ? 0 : 3 * atomic_load(&s->values[i]);
}

static void test_heap_values_converted(void **state)
{
	(void)state;
	cprof_pprof_period[CPROF_KIND_HEAP] = HEAP_PERIOD;
	cprof_pprof_values[CPROF_KIND_HEAP] = triple_values;
	const stack_spec_t in[] = {
		{ CPROF_KIND_HEAP, 100, 2, { MID, ROOT }, { 1, 100, 1, 100 } },
		{ CPROF_KIND_HEAP, 999, 2, { LEAF, ROOT }, { 5, 5, 5, 5 } },
	};
	for (size_t i = 0; i < 2; i++)
		insert_spec(&in[i]);
	built_t b = build(CPROF_KIND_HEAP);
	const profile_t *p = b.p;
	assert_int_equal(p->n_sample, 1);
	const sample_t *s = p->sample[0];
	assert_int_equal(sample_tag(p, s), 100);
	assert_int_equal(s->n_value, 4);
	assert_int_equal(s->value[0], 3);
	assert_int_equal(s->value[1], 300);
	assert_int_equal(s->value[2], 3);
	assert_int_equal(s->value[3], 300);
	assert_null(location_at(p, LEAF));
	assert_int_equal(p->n_location, 2);
	built_free(&b);
}

/* ---- go tool pprof, the independent reader ------------------------------ */

/* Runs `go tool pprof -raw` on buf; returns its output (malloc'd). */
static char *go_pprof_raw(const uint8_t *buf, size_t len, const char *dir, const char *name)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);

	/* Names as written: no symbolization by pprof itself, no network. */
	char cmd[4 * PATH_MAX];
	snprintf(cmd, sizeof cmd,
		 "GOCACHE='%s/gocache' HOME='%s' PPROF_TMPDIR='%s' PPROF_BINARY_PATH= "
		 "go tool pprof -symbolize=none -raw '%s' 2>&1",
		 dir, dir, dir, path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t cap = 1 << 16, used = 0;
	char *out = malloc(cap);
	assert_non_null(out);
	size_t got;
	while ((got = fread(out + used, 1, cap - used - 1, p)) > 0) {
		used += got;
		if (cap - used < 4096) {
			cap *= 2;
			out = realloc(out, cap);
			assert_non_null(out);
		}
	}
	out[used] = '\0';
	int status = pclose(p);
	if (status != 0)
		fail_msg("go tool pprof -raw exited with status %d:\n%s", status, out);
	return out;
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle)) {
		print_message("go tool pprof's output:\n%s\n", haystack);
		fail_msg("\"%s\" not in go tool pprof's output", needle);
	}
}

static void test_go_pprof_reads_it(void **state)
{
	(void)state;
	snprintf(go_dir, sizeof go_dir, "/tmp/cprof-test-pprof.XXXXXX");
	assert_non_null(mkdtemp(go_dir));
	const char *dir = go_dir;

	stack_spec_t specs[16];
	size_t n = cpu_fixture(specs);
	for (size_t i = 0; i < n; i++)
		insert_spec(&specs[i]);
	cprof_pprof_period[CPROF_KIND_HEAP] = HEAP_PERIOD;
	n = heap_fixture(specs);
	for (size_t i = 0; i < n; i++)
		if (specs[i].kind == CPROF_KIND_HEAP)
			insert_spec(&specs[i]);

	built_t b = build(CPROF_KIND_CPU);
	char *out = go_pprof_raw(b.gz, b.gz_len, dir, "test.cpu.pb.gz");
	assert_contains(out, "PeriodType: cpu nanoseconds");
	assert_contains(out, "Period: 4000000");
	assert_contains(out, "samples/count cpu/nanoseconds");
	assert_contains(out, "leaf_fn");
	assert_contains(out, "mid_fn");
	assert_contains(out, "root_fn");
	assert_contains(out, "[cprof: truncated]");
	assert_contains(out, "test_pprof.c");
	/* The samples' values as pprof reads them (5 of 12000000 ns etc.). */
	assert_contains(out, "          5   20000000:");
	assert_contains(out, "          2    8000000:");
	/* The two entries with the same frames, merged by pprof: 3 + 1. */
	assert_contains(out, "          4   16000000:");
	/* Mapping 1, this program, with functions ([FN]) from the file. */
	char exe[PATH_MAX], mapping[PATH_MAX + 16];
	self_exe(exe, sizeof exe);
	snprintf(mapping, sizeof mapping, " %s ", exe);
	assert_contains(out, mapping);
	assert_contains(out, "[FN]");
	free(out);
	built_free(&b);

	b = build(CPROF_KIND_HEAP);
	out = go_pprof_raw(b.gz, b.gz_len, dir, "test.heap.pb.gz");
	assert_contains(out, "PeriodType: space bytes");
	assert_contains(out, "Period: 524288");
	assert_contains(out, "alloc_objects/count alloc_space/bytes inuse_objects/count "
			     "inuse_space/bytes");
	assert_contains(out, "leaf_fn");
	assert_contains(out, "mid_fn");
	assert_contains(out, "[cprof: not unwound]");
	assert_contains(out, "bytes:[4096 bytes]");
	assert_contains(out, "bytes:[64 bytes]");
	free(out);
	built_free(&b);

}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cpu_profile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cpu_period_from_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_and_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heap_profile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heap_values_converted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_go_pprof_reads_it, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
