/* fuzz_profile_read.c — libFuzzer target for the profile reader
 * (tools/profile_read.c): every input goes through
 * cprof_profile_read_buffer, gzipped or plain, with the default limits.
 * An input it accepts is then used the way the cprof subcommands use it:
 * every sample type's per-function totals, sorted both ways and
 * formatted, every name and address name, and a diff of the profile
 * against itself (whose shares must then agree). A crash, a sanitizer
 * report, a leak, a hang (-timeout) or an allocation past -rss_limit_mb
 * is a finding.
 *
 * Built and run by `make fuzz` (clang -fsanitize=fuzzer,address,undefined);
 * the seed corpus is tests/fuzz/corpus/, new inputs go to build/fuzz/corpus.
 */
#include "profile_read.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Perftools__Profiles__Profile profile_t;

static void exercise(const profile_t *profile)
{
	char text[PATH_MAX + 64];
	for (size_t i = 0; i < profile->n_location; i++)
		cprof_profile_address_name(profile, profile->location[i], text, sizeof text);
	for (size_t i = 0; i < profile->n_function; i++)
		if (!cprof_profile_function_name(profile, profile->function[i]))
			abort();
	(void)cprof_profile_default_sample_type(profile);
	(void)cprof_profile_select_sample_type(profile, "cpu");
	(void)cprof_profile_select_sample_type(profile, "1");

	for (size_t type = 0; type < profile->n_sample_type; type++) {
		cprof_function_total_t *rows;
		size_t count;
		if (cprof_profile_function_totals(profile, (int)type, &rows, &count) != 0)
			continue; /* out of memory: allowed */
		const char *unit = cprof_profile_string(profile, profile->sample_type[type]->unit);
		int64_t total = cprof_profile_total(profile, (int)type);
		cprof_function_totals_sort(rows, count, CPROF_SORT_BY_FLAT);
		cprof_function_totals_sort(rows, count, CPROF_SORT_BY_CUM);
		for (size_t i = 0; i < count; i++) {
			cprof_format_value(rows[i].flat, unit, text, sizeof text);
			cprof_format_value(rows[i].cum, unit, text, sizeof text);
			cprof_format_percent(rows[i].flat, total, text, sizeof text);
		}
		cprof_function_totals_free(rows, count);

		/* The profile against itself: every share equal on both sides. */
		cprof_diff_t diff;
		cprof_diff_init(&diff, type % 2 == 1);
		if (cprof_diff_add(&diff, profile, (int)type, CPROF_DIFF_BASE) == 0 &&
		    cprof_diff_add(&diff, profile, (int)type, CPROF_DIFF_NEW) == 0) {
			cprof_diff_finish(&diff);
			for (size_t i = 0; i < diff.count; i++) {
				const cprof_diff_row_t *row = &diff.rows[i];
				if (isfinite(row->new_share) && row->new_share != row->base_share)
					abort();
				if (cprof_diff_row_regressed(row, 0.0, 0.0))
					abort();
			}
		}
		cprof_diff_release(&diff);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	profile_t *profile = NULL;
	if (cprof_profile_read_buffer(data, size, "fuzz", &profile, err, sizeof err) != 0) {
		/* A clean refusal: no profile, one line naming the input. */
		if (profile || strncmp(err, "fuzz: ", 6) != 0 || strchr(err, '\n'))
			abort();
		return 0;
	}
	exercise(profile);
	cprof_profile_free(profile);
	return 0;
}
