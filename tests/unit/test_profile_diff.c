/* test_profile_diff.c — unit tests for the share comparison behind
 * `cprof diff` (tools/profile_read.c): shares of each profile's own
 * total, the noise band of several BASE runs, flat and cum, functions
 * present on one side only, empty profiles, and the verdict.
 *
 * Profiles are built here with protobuf-c from a list of stacks (function
 * names, leaf first) and values, packed and read back through
 * cprof_profile_read_buffer, as the command reads them.
 */
#include "profile_read.h"

#include <setjmp.h> /* cmocka.h needs these four first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef Perftools__Profiles__Profile profile_t;

/* ---- building profiles ---------------------------------------------------- */

#define MAX_NAMES 16
#define MAX_SAMPLES 16
#define MAX_DEPTH 4

/* One sample: up to MAX_DEPTH function names, leaf first, and its value. */
typedef struct stack_value {
	const char *frames[MAX_DEPTH];
	int64_t value;
} stack_value_t;

/* A single-sample-type profile ("cpu/nanoseconds") with one function and
 * one location per distinct name, packed and read back. */
static profile_t *build_profile(const stack_value_t *stacks, size_t count)
{
	char *strings[MAX_NAMES + 3] = { "", "cpu", "nanoseconds" };
	size_t n_strings = 3;
	Perftools__Profiles__Function functions[MAX_NAMES], *function_list[MAX_NAMES];
	Perftools__Profiles__Line lines[MAX_NAMES], *line_lists[MAX_NAMES][1];
	Perftools__Profiles__Location locations[MAX_NAMES], *location_list[MAX_NAMES];
	Perftools__Profiles__Sample samples[MAX_SAMPLES], *sample_list[MAX_SAMPLES];
	uint64_t ids[MAX_SAMPLES][MAX_DEPTH];
	int64_t values[MAX_SAMPLES];
	size_t n_functions = 0;

	assert_true(count <= MAX_SAMPLES);
	for (size_t i = 0; i < count; i++) {
		size_t depth = 0;
		for (; depth < MAX_DEPTH && stacks[i].frames[depth]; depth++) {
			const char *name = stacks[i].frames[depth];
			size_t f = 0;
			while (f < n_functions && strcmp(strings[3 + f], name) != 0)
				f++;
			if (f == n_functions) {
				assert_true(n_functions < MAX_NAMES);
				strings[n_strings++] = (char *)name;
				Perftools__Profiles__Function *function = &functions[f];
				perftools__profiles__function__init(function);
				function->id = f + 1;
				function->name = (int64_t)(3 + f);
				function->system_name = (int64_t)(3 + f);
				function_list[f] = function;
				perftools__profiles__line__init(&lines[f]);
				lines[f].function_id = f + 1;
				line_lists[f][0] = &lines[f];
				perftools__profiles__location__init(&locations[f]);
				locations[f].id = f + 1;
				locations[f].address = 0x1000 + 16 * f;
				locations[f].line = line_lists[f];
				locations[f].n_line = 1;
				location_list[f] = &locations[f];
				n_functions++;
			}
			ids[i][depth] = f + 1;
		}
		perftools__profiles__sample__init(&samples[i]);
		values[i] = stacks[i].value;
		samples[i].location_id = ids[i];
		samples[i].n_location_id = depth;
		samples[i].value = &values[i];
		samples[i].n_value = 1;
		sample_list[i] = &samples[i];
	}
	Perftools__Profiles__ValueType type;
	Perftools__Profiles__ValueType *type_list[1] = { &type };
	perftools__profiles__value_type__init(&type);
	type.type = 1;
	type.unit = 2;
	profile_t profile;
	perftools__profiles__profile__init(&profile);
	profile.sample_type = type_list;
	profile.n_sample_type = 1;
	profile.sample = sample_list;
	profile.n_sample = count;
	profile.location = location_list;
	profile.n_location = n_functions;
	profile.function = function_list;
	profile.n_function = n_functions;
	profile.string_table = strings;
	profile.n_string_table = n_strings;

	size_t length = perftools__profiles__profile__get_packed_size(&profile);
	uint8_t *packed = malloc(length ? length : 1);
	assert_non_null(packed);
	assert_int_equal(perftools__profiles__profile__pack(&profile, packed), length);
	char err[512];
	profile_t *read = NULL;
	if (cprof_profile_read_buffer(packed, length, "built", &read, err, sizeof err) != 0)
		fail_msg("built profile rejected: %s", err);
	free(packed);
	return read;
}

static void add(cprof_diff_t *diff, const stack_value_t *stacks, size_t count,
		cprof_diff_side_t side)
{
	profile_t *profile = build_profile(stacks, count);
	assert_int_equal(cprof_diff_add(diff, profile, 0, side), 0);
	cprof_profile_free(profile); /* rows own their names */
}

static const cprof_diff_row_t *row_named(const cprof_diff_t *diff, const char *name)
{
	for (size_t i = 0; i < diff->count; i++)
		if (strcmp(diff->rows[i].name, name) == 0)
			return &diff->rows[i];
	fail_msg("no row %s", name);
	return NULL;
}

#define assert_near(a, b) assert_true(fabs((a) - (b)) < 1e-9)

#define STACKS(...) ((const stack_value_t[]){ __VA_ARGS__ })
#define COUNT(...) (sizeof((const stack_value_t[]){ __VA_ARGS__ }) / sizeof(stack_value_t))
#define ADD(diff, side, ...) add(diff, STACKS(__VA_ARGS__), COUNT(__VA_ARGS__), side)

/* ---- tests ------------------------------------------------------------------- */

/* Shares are of each profile's own total: a NEW run twice as long with
 * the same mix moves nothing. */
static void test_shares_ignore_run_length(void **state)
{
	(void)state;
	cprof_diff_t diff;
	cprof_diff_init(&diff, false);
	ADD(&diff, CPROF_DIFF_BASE, { { "parse", "main" }, 30 }, { { "hash", "main" }, 60 },
	    { { "main" }, 10 });
	ADD(&diff, CPROF_DIFF_NEW, { { "parse", "main" }, 60 }, { { "hash", "main" }, 120 },
	    { { "main" }, 20 });
	cprof_diff_finish(&diff);
	assert_int_equal(diff.count, 3);
	assert_near(diff.base_total, 100);
	assert_int_equal(diff.new_total, 200);
	const cprof_diff_row_t *hash = row_named(&diff, "hash");
	assert_near(hash->base_share, 60);
	assert_near(hash->new_share, 60);
	assert_near(hash->base_value, 60);
	assert_int_equal(hash->new_value, 120);
	for (size_t i = 0; i < diff.count; i++)
		assert_false(cprof_diff_row_regressed(&diff.rows[i], 0.0, 0.0));
	cprof_diff_release(&diff);
	assert_int_equal(diff.count, 0);
	assert_null(diff.rows);
}

/* A function whose share grows by more than the threshold regresses;
 * rows sort by |change|; the growth is in points of the total. */
static void test_growth_beyond_threshold(void **state)
{
	(void)state;
	cprof_diff_t diff;
	cprof_diff_init(&diff, false);
	/* base: parse 30%, hash 60%, main 10%; new: parse 45%, hash 45%, main 10% */
	ADD(&diff, CPROF_DIFF_NEW, { { "parse", "main" }, 45 }, { { "hash", "main" }, 45 },
	    { { "main" }, 10 });
	ADD(&diff, CPROF_DIFF_BASE, { { "parse", "main" }, 30 }, { { "hash", "main" }, 60 },
	    { { "main" }, 10 });
	cprof_diff_finish(&diff);
	/* |15| ties: by name, hash before parse; main (0) last. */
	assert_string_equal(diff.rows[0].name, "hash");
	assert_string_equal(diff.rows[1].name, "parse");
	assert_string_equal(diff.rows[2].name, "main");
	const cprof_diff_row_t *parse = &diff.rows[1];
	assert_near(cprof_diff_growth(parse), 15);
	assert_true(cprof_diff_row_regressed(parse, 5.0, 1.0));
	assert_true(cprof_diff_row_regressed(parse, 14.9, 1.0));
	assert_false(cprof_diff_row_regressed(parse, 15.0, 1.0)); /* not more than */
	assert_false(cprof_diff_row_regressed(&diff.rows[0], 0.0, 1.0)); /* shrank */
	cprof_diff_release(&diff);
}

/* Several BASE runs: mean, lowest and highest share; a function absent
 * from a run counts 0 there; NEW inside the band plus the threshold
 * passes, beyond it fails. */
static void test_noise_band_of_base_runs(void **state)
{
	(void)state;
	cprof_diff_t diff;
	cprof_diff_init(&diff, false);
	ADD(&diff, CPROF_DIFF_BASE, { { "hash" }, 20 }, { { "rest" }, 80 });
	ADD(&diff, CPROF_DIFF_BASE, { { "hash" }, 30 }, { { "rest" }, 70 });
	ADD(&diff, CPROF_DIFF_BASE, { { "hash" }, 100 }, { { "rest" }, 300 }, { { "gc" }, 100 });
	/* hash: 20, 30, 20 -> mean 23.33, band 20-30; gc: 0, 0, 20 -> band 0-20 */
	ADD(&diff, CPROF_DIFF_NEW, { { "hash" }, 34 }, { { "rest" }, 50 }, { { "gc" }, 16 });
	cprof_diff_finish(&diff);
	assert_int_equal(diff.base_count, 3);
	assert_near(diff.base_total, (100.0 + 100.0 + 500.0) / 3);
	const cprof_diff_row_t *hash = row_named(&diff, "hash");
	assert_near(hash->base_share, 70.0 / 3);
	assert_near(hash->base_low, 20);
	assert_near(hash->base_high, 30);
	assert_near(hash->new_share, 34);
	assert_int_equal(hash->base_seen, 3);
	assert_near(cprof_diff_growth(hash), 4);
	/* 10.67 points above the mean, but only 4 above the band: passes at 5. */
	assert_false(cprof_diff_row_regressed(hash, 5.0, 1.0));
	assert_true(cprof_diff_row_regressed(hash, 3.0, 1.0));
	const cprof_diff_row_t *gc = row_named(&diff, "gc");
	assert_int_equal(gc->base_seen, 1);
	assert_near(gc->base_low, 0);
	assert_near(gc->base_high, 20);
	assert_near(gc->base_share, 20.0 / 3);
	assert_near(gc->base_value, 100.0 / 3);
	assert_false(cprof_diff_row_regressed(gc, 0.0, 0.0)); /* inside its band */
	cprof_diff_release(&diff);
}

/* A function only in NEW grows from 0; one only in BASE drops to 0. */
static void test_one_sided_functions(void **state)
{
	(void)state;
	cprof_diff_t diff;
	cprof_diff_init(&diff, false);
	ADD(&diff, CPROF_DIFF_BASE, { { "old_path" }, 10 }, { { "rest" }, 90 });
	ADD(&diff, CPROF_DIFF_NEW, { { "new_path" }, 40 }, { { "rest" }, 60 });
	cprof_diff_finish(&diff);
	const cprof_diff_row_t *fresh = row_named(&diff, "new_path");
	assert_near(fresh->base_share, 0);
	assert_near(fresh->base_high, 0);
	assert_int_equal(fresh->base_seen, 0);
	assert_near(fresh->new_share, 40);
	assert_true(cprof_diff_row_regressed(fresh, 5.0, 1.0));
	const cprof_diff_row_t *gone = row_named(&diff, "old_path");
	assert_near(gone->new_share, 0);
	assert_int_equal(gone->new_value, 0);
	assert_near(cprof_diff_growth(gone), -10);
	assert_false(cprof_diff_row_regressed(gone, 0.0, 0.0));
	assert_string_equal(diff.rows[0].name, "new_path"); /* the biggest mover */
	cprof_diff_release(&diff);
}

/* --min-share: a function under it in every file neither shows nor fails,
 * however much it grew relative to itself. */
static void test_min_share(void **state)
{
	(void)state;
	cprof_diff_t diff;
	cprof_diff_init(&diff, false);
	ADD(&diff, CPROF_DIFF_BASE, { { "tiny" }, 1 }, { { "rest" }, 999 });
	ADD(&diff, CPROF_DIFF_NEW, { { "tiny" }, 8 }, { { "rest" }, 992 });
	cprof_diff_finish(&diff);
	const cprof_diff_row_t *tiny = row_named(&diff, "tiny");
	assert_near(tiny->new_share, 0.8);
	assert_false(cprof_diff_row_counts(tiny, 1.0));
	assert_false(cprof_diff_row_regressed(tiny, 0.5, 1.0));
	assert_true(cprof_diff_row_counts(tiny, 0.8));
	assert_true(cprof_diff_row_regressed(tiny, 0.5, 0.5));
	cprof_diff_release(&diff);
}

/* --cum compares cum values: a caller whose callee grew grows too, and
 * cum shares may add up to more than 100. */
static void test_cum_shares(void **state)
{
	(void)state;
	cprof_diff_t flat, cum;
	cprof_diff_init(&flat, false);
	cprof_diff_init(&cum, true);
	cprof_diff_t *both[] = { &flat, &cum };
	for (int i = 0; i < 2; i++) {
		ADD(both[i], CPROF_DIFF_BASE, { { "leaf", "caller", "main" }, 20 },
		    { { "other", "main" }, 80 });
		ADD(both[i], CPROF_DIFF_NEW, { { "leaf", "caller", "main" }, 50 },
		    { { "other", "main" }, 50 });
		cprof_diff_finish(both[i]);
	}
	assert_near(row_named(&flat, "caller")->new_share, 0);
	assert_near(row_named(&cum, "caller")->base_share, 20);
	assert_near(row_named(&cum, "caller")->new_share, 50);
	assert_near(row_named(&cum, "main")->new_share, 100);
	assert_true(cprof_diff_row_regressed(row_named(&cum, "caller"), 5.0, 1.0));
	assert_false(cprof_diff_row_regressed(row_named(&flat, "caller"), 5.0, 1.0));
	assert_true(cprof_diff_row_regressed(row_named(&flat, "leaf"), 5.0, 1.0));
	cprof_diff_release(&flat);
	cprof_diff_release(&cum);
}

/* A profile with a total of 0 gives shares of 0, never a division by 0. */
static void test_empty_totals(void **state)
{
	(void)state;
	cprof_diff_t diff;
	cprof_diff_init(&diff, false);
	ADD(&diff, CPROF_DIFF_BASE, { { "leak" }, 0 });
	ADD(&diff, CPROF_DIFF_NEW, { { "leak" }, 4096 });
	cprof_diff_finish(&diff);
	assert_near(diff.base_total, 0);
	assert_int_equal(diff.count, 1);
	const cprof_diff_row_t *leak = &diff.rows[0];
	assert_near(leak->base_share, 0);
	assert_near(leak->new_share, 100);
	assert_true(cprof_diff_row_regressed(leak, 5.0, 1.0));
	cprof_diff_release(&diff);

	cprof_diff_init(&diff, false);
	ADD(&diff, CPROF_DIFF_BASE, { { "leak" }, 4096 });
	ADD(&diff, CPROF_DIFF_NEW, { { "leak" }, 0 });
	cprof_diff_finish(&diff);
	assert_int_equal(diff.new_total, 0);
	assert_near(diff.rows[0].new_share, 0);
	assert_false(cprof_diff_row_regressed(&diff.rows[0], 0.0, 0.0));
	cprof_diff_release(&diff);
}

/* Misuse is refused: NEW twice, adding after finish, a bad sample type. */
static void test_refuses_misuse(void **state)
{
	(void)state;
	profile_t *profile = build_profile(STACKS({ { "f" }, 1 }), 1);
	cprof_diff_t diff;
	cprof_diff_init(&diff, false);
	assert_int_equal(cprof_diff_add(&diff, profile, 1, CPROF_DIFF_BASE), -1);
	assert_int_equal(cprof_diff_add(&diff, profile, -1, CPROF_DIFF_BASE), -1);
	assert_int_equal(cprof_diff_add(&diff, profile, 0, CPROF_DIFF_NEW), 0);
	assert_int_equal(cprof_diff_add(&diff, profile, 0, CPROF_DIFF_NEW), -1);
	assert_int_equal(cprof_diff_add(&diff, profile, 0, CPROF_DIFF_BASE), 0);
	cprof_diff_finish(&diff);
	assert_int_equal(cprof_diff_add(&diff, profile, 0, CPROF_DIFF_BASE), -1);
	assert_int_equal(diff.base_count, 1);
	cprof_diff_release(&diff);
	cprof_profile_free(profile);
}

/* Many functions: the name index grows and every row is found once. */
static void test_many_functions(void **state)
{
	(void)state;
	cprof_diff_t diff;
	cprof_diff_init(&diff, false);
	static char names[3][MAX_SAMPLES][16];
	for (int run = 0; run < 3; run++) {
		stack_value_t stacks[MAX_SAMPLES];
		memset(stacks, 0, sizeof stacks);
		for (int i = 0; i < MAX_SAMPLES; i++) {
			/* runs overlap by half: 8 new names per run */
			snprintf(names[run][i], sizeof names[run][i], "fn%d", run * 8 + i);
			stacks[i].frames[0] = names[run][i];
			stacks[i].value = 1;
		}
		profile_t *profile = build_profile(stacks, MAX_SAMPLES);
		assert_int_equal(cprof_diff_add(&diff, profile, 0,
						run < 2 ? CPROF_DIFF_BASE : CPROF_DIFF_NEW),
				 0);
		cprof_profile_free(profile);
	}
	cprof_diff_finish(&diff);
	assert_int_equal(diff.count, 32); /* fn0 .. fn31 */
	for (size_t i = 0; i < diff.count; i++)
		for (size_t j = i + 1; j < diff.count; j++)
			assert_string_not_equal(diff.rows[i].name, diff.rows[j].name);
	/* BASE runs hold fn0..fn15 and fn8..fn23, NEW fn16..fn31, 6.25% each. */
	const cprof_diff_row_t *both_bases = row_named(&diff, "fn10");
	assert_near(both_bases->base_share, 6.25);
	assert_near(both_bases->new_share, 0);
	const cprof_diff_row_t *one_base = row_named(&diff, "fn20");
	assert_near(one_base->base_share, 3.125);
	assert_near(one_base->base_low, 0);
	assert_near(one_base->base_high, 6.25);
	assert_near(one_base->new_share, 6.25);
	assert_false(cprof_diff_row_regressed(one_base, 0.0, 0.0));
	assert_true(cprof_diff_row_regressed(row_named(&diff, "fn30"), 5.0, 1.0));
	cprof_diff_release(&diff);
}

static void add_run(cprof_diff_t *diff, const stack_value_t *stacks, size_t count,
		    cprof_diff_side_t side, double work)
{
	profile_t *profile = build_profile(stacks, count);
	assert_int_equal(cprof_diff_add_run(diff, profile, 0, side, work), 0);
	cprof_profile_free(profile);
}

#define ADD_RUN(diff, side, work, ...) \
	add_run(diff, STACKS(__VA_ARGS__), COUNT(__VA_ARGS__), side, work)

/* Every function 10% slower: no share moves, the total does. The totals
 * gate compares NEW with the top of the BASE totals' band. */
static void test_totals_gate(void **state)
{
	(void)state;
	cprof_diff_t diff;
	cprof_diff_init(&diff, false);
	ADD(&diff, CPROF_DIFF_BASE, { { "parse" }, 400 }, { { "hash" }, 600 });
	ADD(&diff, CPROF_DIFF_BASE, { { "parse" }, 416 }, { { "hash" }, 624 });
	ADD(&diff, CPROF_DIFF_NEW, { { "parse" }, 440 }, { { "hash" }, 660 });
	cprof_diff_finish(&diff);
	assert_near(diff.base_total, 1020);
	assert_near(diff.base_total_low, 1000);
	assert_near(diff.base_total_high, 1040);
	assert_near(diff.new_total, 1100);
	for (size_t i = 0; i < diff.count; i++)
		assert_false(cprof_diff_row_regressed(&diff.rows[i], 0.5, 1.0));
	/* 1100 / 1040 - 1 = 5.77%. */
	assert_near(cprof_diff_percent_growth(diff.new_total, diff.base_total_high),
		    100.0 * 60 / 1040);
	assert_true(cprof_diff_total_regressed(&diff, 5.0));
	assert_false(cprof_diff_total_regressed(&diff, 5.8));
	cprof_diff_release(&diff);
	assert_near(cprof_diff_percent_growth(0, 0), 0);
	assert_true(isinf(cprof_diff_percent_growth(5, 0)));
}

/* Runs of different length, divided by their work, compare: values and
 * totals per unit, shares unchanged; the value band is per unit too. */
static void test_per_unit_of_work(void **state)
{
	(void)state;
	cprof_diff_t diff;
	cprof_diff_init(&diff, false);
	ADD_RUN(&diff, CPROF_DIFF_BASE, 100, { { "parse" }, 300 }, { { "hash" }, 700 });
	ADD_RUN(&diff, CPROF_DIFF_BASE, 200, { { "parse" }, 640 }, { { "hash" }, 1360 });
	ADD_RUN(&diff, CPROF_DIFF_NEW, 50, { { "parse" }, 195 }, { { "hash" }, 345 });
	cprof_diff_finish(&diff);
	assert_near(diff.base_total_low, 10);
	assert_near(diff.base_total_high, 10);
	assert_near(diff.new_total, 10.8);
	assert_true(cprof_diff_total_regressed(&diff, 5.0));
	assert_false(cprof_diff_total_regressed(&diff, 10.0));
	const cprof_diff_row_t *parse = row_named(&diff, "parse");
	assert_near(parse->base_value_low, 3.0);
	assert_near(parse->base_value_high, 3.2);
	assert_near(parse->base_value, 3.1);
	assert_near(parse->new_value, 3.9);
	assert_near(parse->new_share, 100.0 * 195 / 540);
	/* 3.9 / 3.2 - 1 = 21.875% */
	assert_true(cprof_diff_value_regressed(parse, 21.8, 1.0));
	assert_false(cprof_diff_value_regressed(parse, 21.9, 1.0));
	assert_false(cprof_diff_value_regressed(row_named(&diff, "hash"), 0.0, 1.0));
	cprof_diff_release(&diff);
	/* Work must be positive. */
	cprof_diff_init(&diff, false);
	profile_t *profile = build_profile(STACKS({ { "a" }, 1 }), 1);
	assert_int_equal(cprof_diff_add_run(&diff, profile, 0, CPROF_DIFF_BASE, 0), -1);
	assert_int_equal(cprof_diff_add_run(&diff, profile, 0, CPROF_DIFF_BASE, -1), -1);
	cprof_profile_free(profile);
	cprof_diff_release(&diff);
}

/* A function absent from a BASE run has value 0 there: its band starts
 * at 0, and a function new in NEW has infinite growth. */
static void test_value_band_absent(void **state)
{
	(void)state;
	cprof_diff_t diff;
	cprof_diff_init(&diff, false);
	ADD(&diff, CPROF_DIFF_BASE, { { "a" }, 100 }, { { "gc" }, 50 });
	ADD(&diff, CPROF_DIFF_BASE, { { "a" }, 100 });
	ADD(&diff, CPROF_DIFF_NEW, { { "a" }, 100 }, { { "gc" }, 40 }, { { "fresh" }, 10 });
	cprof_diff_finish(&diff);
	const cprof_diff_row_t *gc = row_named(&diff, "gc");
	assert_near(gc->base_value_low, 0);
	assert_near(gc->base_value_high, 50);
	assert_false(cprof_diff_value_regressed(gc, 0.0, 1.0));
	const cprof_diff_row_t *fresh = row_named(&diff, "fresh");
	assert_true(isinf(cprof_diff_percent_growth(fresh->new_value, fresh->base_value_high)));
	assert_true(cprof_diff_value_regressed(fresh, 1000.0, 1.0));
	cprof_diff_release(&diff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shares_ignore_run_length),
		cmocka_unit_test(test_growth_beyond_threshold),
		cmocka_unit_test(test_noise_band_of_base_runs),
		cmocka_unit_test(test_one_sided_functions),
		cmocka_unit_test(test_min_share),
		cmocka_unit_test(test_cum_shares),
		cmocka_unit_test(test_empty_totals),
		cmocka_unit_test(test_refuses_misuse),
		cmocka_unit_test(test_many_functions),
		cmocka_unit_test(test_totals_gate),
		cmocka_unit_test(test_per_unit_of_work),
		cmocka_unit_test(test_value_band_absent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
