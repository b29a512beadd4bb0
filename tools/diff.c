/* diff.c — `cprof diff`: compares runs by total and by function and gates
 * a CI run on the result.
 *
 *   cprof diff BASE... NEW [--new PATH...] [-t SAMPLE_TYPE] [--threshold PCT]
 *              [--max-total-growth PCT] [--max-growth PCT] [--per N,...]
 *              [--min-share PCT] [--cum] [-k KIND] [--by program|process]
 *              [-n N] [--format text|md]
 *
 * Every path is one run: a profile file, or a directory whose profiles
 * (of one kind) are merged into one run (profile_merge.h). The last is
 * NEW, every one before it a BASE run; --new PATH... makes NEW the merge
 * of those paths instead (--base goes back to BASE runs). Several BASE
 * runs set a noise band for each figure: its lowest and highest value in
 * them (0 for a run a function is absent from).
 *
 * Three gates, any of which fails the run (exit 1):
 *   - the total (--max-total-growth, default 5%): NEW's total is more than
 *     PCT percent above the highest BASE total;
 *   - the shares (--threshold, default 5 points): a function's share of its
 *     run's total is above the top of its band by more than PCT points;
 *   - the values (--max-growth, off by default): a function's value is more
 *     than PCT percent above the top of its band.
 * --per divides each run's totals and values by its work first. Functions
 * whose share stays under --min-share percent (default 1) in every run are
 * left out of the table and of the share and value gates. With --by, rows
 * are programs (or processes) instead of functions.
 *
 * Output: a header (runs, sample type, what is compared, totals, gates),
 * the biggest movers by |NEW share - mean BASE share| (-n rows, default 10,
 * plus every regression), and a last line: "PASS: ..." or "FAIL: ..."
 * naming each gate that failed and by how much. --format md prints the
 * same as markdown, with the total as the table's first row.
 *
 * Exit status: 0 no gate failed; 1 one did; 2 usage error, an unreadable
 * or invalid file, a directory without profiles, runs that do not merge,
 * or runs that lack the sample type (or carry it in different units),
 * with one line naming the file.
 */
#include "cprof_command.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIFF_DEFAULT_ROWS 10
#define DIFF_DEFAULT_THRESHOLD 5.0
#define DIFF_DEFAULT_MIN_SHARE 1.0
#define DIFF_DEFAULT_MAX_TOTAL_GROWTH 5.0

typedef enum diff_format { FORMAT_TEXT, FORMAT_MARKDOWN } diff_format_t;

typedef struct diff_options {
	const char *sample_type; /* NULL: NEW's default */
	double threshold;
	double min_share;
	double max_total_growth; /* percent; < 0: no totals gate */
	double max_growth;       /* percent; < 0: no per-function value gate */
	double *per;             /* work per run, BASE runs then NEW; NULL: none */
	size_t per_count;
	bool by_cum;
	cprof_by_t by;
	size_t rows;
	diff_format_t format;
} diff_options_t;

/* "5", "2.5" or "5%": a finite number >= 0. */
static bool parse_percent(const char *text, double *out)
{
	char *end;
	errno = 0;
	double value = strtod(text, &end);
	if (end == text || errno != 0)
		return false;
	if (*end == '%')
		end++;
	if (*end != '\0' || !isfinite(value) || value < 0 || value > 100)
		return false;
	*out = value;
	return true;
}

/* A growth limit: a percentage >= 0 (may pass 100: "twice as slow" is
 * 100), or "off". */
static bool parse_growth(const char *text, double *out)
{
	if (strcmp(text, "off") == 0 || strcmp(text, "none") == 0) {
		*out = -1;
		return true;
	}
	char *end;
	errno = 0;
	double value = strtod(text, &end);
	if (end == text || errno != 0)
		return false;
	if (*end == '%')
		end++;
	if (*end != '\0' || !isfinite(value) || value < 0 || value > 1e6)
		return false;
	*out = value;
	return true;
}

/* "N" or "N,N,...": positive finite counts. */
static bool parse_per(const char *text, double **out, size_t *count)
{
	size_t most = 1;
	for (const char *p = text; *p; p++)
		most += *p == ',';
	double *values = calloc(most, sizeof *values);
	if (!values)
		return false;
	size_t n = 0;
	const char *p = text;
	for (;;) {
		char *end;
		errno = 0;
		double value = strtod(p, &end);
		if (end == p || errno != 0 || !isfinite(value) || !(value > 0) ||
		    (*end != ',' && *end != '\0')) {
			free(values);
			return false;
		}
		values[n++] = value;
		if (*end == '\0')
			break;
		p = end + 1;
	}
	free(*out);
	*out = values;
	*count = n;
	return true;
}

/* ---- reading the runs ------------------------------------------------ */

/* One run: the paths that make it (merged when more than one file). */
typedef struct diff_run {
	char **paths;
	size_t count, capacity;
	size_t files; /* after expansion */
} diff_run_t;

static int run_add_path(diff_run_t *run, char *path)
{
	if (run->count == run->capacity) {
		size_t bigger = run->capacity ? run->capacity * 2 : 4;
		char **grown = realloc(run->paths, bigger * sizeof *grown);
		if (!grown)
			return -1;
		run->paths = grown;
		run->capacity = bigger;
	}
	run->paths[run->count++] = path;
	return 0;
}

typedef struct diff_input {
	char type_name[256];
	char unit[256];
	bool have_type;
	cprof_paths_t paths;
} diff_input_t;

/* Loads `run` and adds it. The sample type is chosen by the first run
 * read (NEW, by -t or its default) and must be present, in the same unit,
 * in every other. */
static int add_run(cprof_diff_t *diff, diff_input_t *input, diff_run_t *run,
		   const diff_options_t *options, cprof_diff_side_t side, double work)
{
	Perftools__Profiles__Profile *profile;
	int status = command_load(&input->paths, run->paths, run->count, options->by, &profile,
				  &run->files);
	if (status != EXIT_OK)
		return status;
	const char *file = run->paths[0];
	int type;
	if (!input->have_type) {
		type = cprof_profile_select_sample_type(profile, options->sample_type);
		if (type < 0) {
			status = command_sample_type_error(
				file, profile, options->sample_type ? options->sample_type : "");
			goto done;
		}
		const Perftools__Profiles__ValueType *value_type = profile->sample_type[type];
		snprintf(input->type_name, sizeof input->type_name, "%s",
			 cprof_profile_string(profile, value_type->type));
		snprintf(input->unit, sizeof input->unit, "%s",
			 cprof_profile_string(profile, value_type->unit));
		input->have_type = true;
	} else {
		type = cprof_profile_sample_type_index(profile, input->type_name);
		if (type < 0) {
			status = command_sample_type_error(file, profile, input->type_name);
			goto done;
		}
		const char *unit = cprof_profile_string(profile, profile->sample_type[type]->unit);
		if (strcmp(unit, input->unit) != 0) {
			fprintf(stderr, "cprof: %s: sample type ", file);
			cprof_print_escaped(stderr, input->type_name);
			fputs(" is in ", stderr);
			cprof_print_escaped(stderr, unit[0] ? unit : "(no unit)");
			fputs(", in the other files in ", stderr);
			cprof_print_escaped(stderr, input->unit[0] ? input->unit : "(no unit)");
			fputc('\n', stderr);
			status = EXIT_USAGE;
			goto done;
		}
	}
	if (cprof_diff_add_run(diff, profile, type, side, work) != 0) {
		command_fail("%s: out of memory", file);
		status = EXIT_USAGE;
	}
done:
	cprof_profile_free(profile);
	return status;
}

/* ---- printing ----------------------------------------------------------- */

static void print_points(double points, char *buffer, size_t size)
{
	if (fabs(points) < 0.005)
		snprintf(buffer, size, "0");
	else
		snprintf(buffer, size, "%+.2f", points);
}

static void print_share(double share, char *buffer, size_t size)
{
	snprintf(buffer, size, "%.2f%%", fabs(share) < 0.005 ? 0.0 : share);
}

static void print_value(double value, const char *unit, char *buffer, size_t size)
{
	double rounded = value < 0 ? ceil(value - 0.5) : floor(value + 0.5);
	if (rounded > (double)INT64_MAX)
		rounded = (double)INT64_MAX;
	if (rounded < (double)INT64_MIN)
		rounded = (double)INT64_MIN;
	cprof_format_value((int64_t)rounded, unit, buffer, size);
}

/* A name in a markdown table cell: a code span, with '|' escaped (GFM
 * splits cells on it even inside code) and a long enough backtick fence. */
static void print_markdown_name(const char *name)
{
	bool has_backtick = strchr(name, '`') != NULL;
	fputs(has_backtick ? "`` " : "`", stdout);
	for (const char *p = name; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '|')
			fputs("\\|", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	fputs(has_backtick ? " ``" : "`", stdout);
}

/* A growth in percent: "+31.0%", "new" when the base was 0. */
static void print_growth(double percent, char *buffer, size_t size)
{
	if (isinf(percent))
		snprintf(buffer, size, percent > 0 ? "new" : "gone");
	else
		snprintf(buffer, size, "%+.1f%%", fabs(percent) < 0.05 ? 0.0 : percent);
}

static void print_runs(diff_run_t *const *runs, size_t count, bool markdown)
{
	for (size_t r = 0; r < count; r++) {
		const diff_run_t *run = runs[r];
		fputs(r ? (markdown ? ", " : " ") : "", stdout);
		for (size_t i = 0; i < run->count; i++) {
			fputs(i ? "+" : "", stdout);
			if (markdown)
				print_markdown_name(run->paths[i]);
			else
				cprof_print_escaped(stdout, run->paths[i]);
		}
		if (run->files != run->count)
			printf(" (%zu files)", run->files);
	}
}

typedef struct verdict {
	size_t share_regressions, value_regressions;
	bool total_regressed;
} verdict_t;

static bool row_share_regressed(const cprof_diff_row_t *row, const diff_options_t *options)
{
	return cprof_diff_row_regressed(row, options->threshold, options->min_share);
}

static bool row_value_regressed(const cprof_diff_row_t *row, const diff_options_t *options)
{
	return options->max_growth >= 0 &&
	       cprof_diff_value_regressed(row, options->max_growth, options->min_share);
}

static verdict_t judge(const cprof_diff_t *diff, const diff_options_t *options)
{
	verdict_t verdict = { 0 };
	for (size_t i = 0; i < diff->count; i++) {
		verdict.share_regressions += row_share_regressed(&diff->rows[i], options);
		verdict.value_regressions += row_value_regressed(&diff->rows[i], options);
	}
	verdict.total_regressed = options->max_total_growth >= 0 &&
				  cprof_diff_total_regressed(diff, options->max_total_growth);
	return verdict;
}

static void print_name(const char *name, bool markdown)
{
	if (markdown)
		print_markdown_name(name);
	else
		cprof_print_escaped(stdout, name);
}

/* The verdict line without a newline: "PASS: ..." or "FAIL: ...", naming
 * every gate that failed and by how much. */
static void print_verdict(const cprof_diff_t *diff, const diff_options_t *options,
			  const verdict_t *verdict, const char *input_unit, bool markdown)
{
	const char *points = options->by_cum ? "cum share" : "share";
	const char *things = diff->label_key ? diff->label_key : "function";
	bool band = diff->base_count > 1;
	double total_growth = cprof_diff_percent_growth(diff->new_total, diff->base_total_high);
	char growth[32];
	print_growth(total_growth, growth, sizeof growth);
	bool failed = verdict->share_regressions || verdict->value_regressions ||
		      verdict->total_regressed;
	if (!failed) {
		/* The largest growth above the band, for the record. */
		const cprof_diff_row_t *largest = NULL;
		for (size_t i = 0; i < diff->count; i++) {
			const cprof_diff_row_t *row = &diff->rows[i];
			if (!cprof_diff_row_counts(row, options->min_share))
				continue;
			if (!largest || cprof_diff_growth(row) > cprof_diff_growth(largest))
				largest = row;
		}
		printf("%s: no %s's %s grew more than %g points%s", markdown ? "**PASS**" : "PASS",
		       things, points, options->threshold, band ? " above its band" : "");
		if (largest && cprof_diff_growth(largest) > 0.005) {
			char share_growth[32];
			print_points(cprof_diff_growth(largest), share_growth, sizeof share_growth);
			fputs(" (largest: ", stdout);
			print_name(largest->name, markdown);
			printf(" %s)", share_growth);
		}
		if (options->max_growth >= 0)
			printf("; no %s's value grew more than %g%%", things, options->max_growth);
		if (options->max_total_growth >= 0)
			printf("; total %s%s (limit +%g%%)", growth,
			       band ? " against the highest base run" : "", options->max_total_growth);
		return;
	}
	fputs(markdown ? "**FAIL**:" : "FAIL:", stdout);
	const char *separator = " ";
	if (verdict->total_regressed && isinf(total_growth)) {
		char new_total[64];
		print_value(diff->new_total, input_unit, new_total, sizeof new_total);
		printf("%stotal grew from 0 to %s", separator, new_total);
		separator = "; ";
	} else if (verdict->total_regressed) {
		printf("%stotal grew %s%s, more than %g%%", separator, growth,
		       band ? " above the highest base run" : "", options->max_total_growth);
		if (options->per)
			fputs(" (per unit of work)", stdout);
		separator = "; ";
	}
	if (verdict->share_regressions) {
		size_t n = verdict->share_regressions;
		printf("%s%zu %s%s %s grew more than %g points%s:", separator, n, things,
		       n == 1 ? "'s" : "s'", points, options->threshold,
		       band ? " above the band" : "");
		size_t listed = 0;
		for (size_t i = 0; i < diff->count; i++) {
			const cprof_diff_row_t *row = &diff->rows[i];
			if (!row_share_regressed(row, options))
				continue;
			if (listed == 5) {
				printf(" and %zu more", n - listed);
				break;
			}
			char share_growth[32];
			print_points(cprof_diff_growth(row), share_growth, sizeof share_growth);
			fputs(listed ? ", " : " ", stdout);
			print_name(row->name, markdown);
			printf(" (%s points)", share_growth);
			listed++;
		}
		separator = "; ";
	}
	if (verdict->value_regressions) {
		size_t n = verdict->value_regressions;
		printf("%s%zu %s%s value grew more than %g%%%s:", separator, n, things,
		       n == 1 ? "'s" : "s'", options->max_growth,
		       band ? " above the band" : "");
		size_t listed = 0;
		for (size_t i = 0; i < diff->count; i++) {
			const cprof_diff_row_t *row = &diff->rows[i];
			if (!row_value_regressed(row, options))
				continue;
			if (listed == 5) {
				printf(" and %zu more", n - listed);
				break;
			}
			char value_growth[32];
			print_growth(cprof_diff_percent_growth(row->new_value, row->base_value_high),
				     value_growth, sizeof value_growth);
			fputs(listed ? ", " : " ", stdout);
			print_name(row->name, markdown);
			printf(" (%s)", value_growth);
			listed++;
		}
	}
}

static void print_diff(const cprof_diff_t *diff, const diff_input_t *input,
		       const diff_options_t *options, diff_run_t *const *bases, size_t base_count,
		       diff_run_t *new_run)
{
	bool markdown = options->format == FORMAT_MARKDOWN;
	bool band = base_count > 1;
	const char *what = options->by_cum ? "cum" : "flat";
	verdict_t verdict = judge(diff, options);
	bool failed = verdict.share_regressions || verdict.value_regressions ||
		      verdict.total_regressed;
	size_t counted = 0;
	for (size_t i = 0; i < diff->count; i++)
		if (cprof_diff_row_counts(&diff->rows[i], options->min_share))
			counted++;
	char base_total[64], new_total[64], low_total[64], high_total[64], change[64] = "";
	print_value(diff->base_total, input->unit, base_total, sizeof base_total);
	print_value(diff->base_total_low, input->unit, low_total, sizeof low_total);
	print_value(diff->base_total_high, input->unit, high_total, sizeof high_total);
	print_value(diff->new_total, input->unit, new_total, sizeof new_total);
	if (diff->base_total != 0)
		snprintf(change, sizeof change, " (%+.1f%%)",
			 100.0 * (diff->new_total - diff->base_total) / fabs(diff->base_total));

	if (markdown)
		printf("### cprof diff: %s\n\n", failed ? "regression" : "no regression");
	/* Markdown: a hard line break ("  ") keeps the header lines apart. */
	const char *line_end = markdown ? "  \n" : "\n";
	fputs("Base: ", stdout);
	if (band)
		printf("%zu runs: ", base_count);
	print_runs(bases, base_count, markdown);
	printf("%sNew:  ", line_end);
	print_runs(&new_run, 1, markdown);
	printf("%sType: ", line_end);
	cprof_print_escaped(stdout, input->type_name);
	if (diff->label_key)
		printf(", by %s", diff->label_key);
	command_print_tags(stdout);
	printf(", %s value as a share of each profile's total%s", what, line_end);
	if (band)
		printf("Total%s: base %s (mean, %s-%s), new %s%s%s",
		       options->per ? " per unit of work" : "", base_total, low_total, high_total,
		       new_total, change, line_end);
	else
		printf("Total%s: base %s, new %s%s%s", options->per ? " per unit of work" : "",
		       base_total, new_total, change, line_end);
	printf("Fails when a share rises more than %g points above %s",
	       options->threshold, band ? "its highest base share" : "the base share");
	if (options->max_growth >= 0)
		printf(", a value more than %g%% above %s", options->max_growth,
		       band ? "its highest base value" : "the base value");
	if (options->max_total_growth >= 0)
		printf(", or the total more than %g%% above %s", options->max_total_growth,
		       band ? "the highest base total" : "the base total");
	printf("; %ss under %g%% everywhere are left out%s",
	       diff->label_key ? diff->label_key : "function", options->min_share, line_end);
	if (diff->base_total == 0 || diff->new_total == 0)
		printf("Note: %s has a total of 0 for this sample type; its shares are all 0%s",
		       diff->new_total == 0 ? "NEW" : "BASE", line_end);
	fputs("\n", stdout);

	/* The rows: the biggest movers, and every regression. */
	size_t limit = options->rows == 0 ? SIZE_MAX : options->rows;
	if (markdown) {
		printf("| %s | base%s | new | change | %s | base value | new value |\n",
		       diff->label_key ? diff->label_key : "function", band ? " (band)" : "",
		       "verdict");
		puts("|---|---:|---:|---:|---|---:|---:|");
		if (options->max_total_growth >= 0 || options->per) {
			char growth[32];
			print_growth(cprof_diff_percent_growth(diff->new_total, diff->base_total),
				     growth, sizeof growth);
			char band_value[256];
			if (band)
				snprintf(band_value, sizeof band_value, "%s (%s-%s)", base_total,
					 low_total, high_total);
			else
				snprintf(band_value, sizeof band_value, "%s", base_total);
			printf("| **total**%s | 100%% | 100%% | %s | %s | %s | %s |\n",
			       options->per ? " per unit of work" : "", growth,
			       verdict.total_regressed ? "**regression**" : "", band_value, new_total);
		}
	} else {
		if (band)
			printf("%8s %15s %8s %8s %10s %10s  %s\n", "base", "band", "new", "change",
			       "base", "new", diff->label_key ? diff->label_key : "function");
		else
			printf("%8s %8s %8s %10s %10s  %s\n", "base", "new", "change", "base", "new",
			       diff->label_key ? diff->label_key : "function");
	}
	size_t shown = 0;
	for (size_t i = 0; i < diff->count; i++) {
		const cprof_diff_row_t *row = &diff->rows[i];
		if (!cprof_diff_row_counts(row, options->min_share))
			continue;
		bool share_regressed = row_share_regressed(row, options);
		bool value_regressed = row_value_regressed(row, options);
		if (shown >= limit && !share_regressed && !value_regressed)
			continue;
		shown++;
		char base[32], low[32], high[32], fresh[32], moved[32], base_value[64],
			new_value[64], band_text[80], why[96] = "";
		print_share(row->base_share, base, sizeof base);
		print_share(row->base_low, low, sizeof low);
		print_share(row->base_high, high, sizeof high);
		print_share(row->new_share, fresh, sizeof fresh);
		print_points(row->new_share - row->base_share, moved, sizeof moved);
		print_value(row->base_value, input->unit, base_value, sizeof base_value);
		print_value(row->new_value, input->unit, new_value, sizeof new_value);
		snprintf(band_text, sizeof band_text, "%s-%s", low, high);
		char share_growth[32], value_growth[32];
		print_points(cprof_diff_growth(row), share_growth, sizeof share_growth);
		print_growth(cprof_diff_percent_growth(row->new_value, row->base_value_high),
			     value_growth, sizeof value_growth);
		if (share_regressed && value_regressed)
			snprintf(why, sizeof why, "%s points, value %s", share_growth, value_growth);
		else if (share_regressed)
			snprintf(why, sizeof why, "%s points", share_growth);
		else if (value_regressed)
			snprintf(why, sizeof why, "value %s", value_growth);
		if (markdown) {
			char cell[128] = "";
			if (share_regressed && !value_regressed)
				snprintf(cell, sizeof cell, "**regression**");
			else if (value_regressed)
				snprintf(cell, sizeof cell, "**regression** (%s)", why);
			fputs("| ", stdout);
			print_markdown_name(row->name);
			if (band)
				printf(" | %s (%s) | %s | %s | %s | %s | %s |\n", base, band_text, fresh,
				       moved, cell, base_value, new_value);
			else
				printf(" | %s | %s | %s | %s | %s | %s |\n", base, fresh, moved, cell,
				       base_value, new_value);
			continue;
		}
		if (band)
			printf("%8s %15s %8s %8s %10s %10s  ", base, band_text, fresh, moved,
			       base_value, new_value);
		else
			printf("%8s %8s %8s %10s %10s  ", base, fresh, moved, base_value, new_value);
		cprof_print_escaped(stdout, row->name);
		if (why[0])
			printf("   <- REGRESSION (%s)", why);
		fputc('\n', stdout);
	}
	if (shown == 0)
		puts(markdown ? "| (no function reaches the minimum share) | | | | | | |"
			      : "  (no function reaches the minimum share)");
	if (counted > shown)
		printf("%s(%zu more %s%s moved less)\n", markdown ? "\n" : "", counted - shown,
		       diff->label_key ? diff->label_key : "function",
		       counted - shown == 1 ? "" : "s");
	fputc('\n', stdout);
	print_verdict(diff, options, &verdict, input->unit, markdown);
	fputc('\n', stdout);
}

/* ---- the command ------------------------------------------------------ */

static void print_diff_usage(FILE *stream)
{
	command_print_usage(stream, command_find("diff"));
	fputs("  BASE...                 runs of the old version, each a profile file or a\n"
	      "                          directory (its profiles merged into one run); repeated\n"
	      "                          runs set the noise band; NEW is the last one\n"
	      "      --new PATH...       NEW is these paths merged (files and directories);\n"
	      "                          every other path is then a BASE run\n"
	      "      --base PATH...      the paths that follow are BASE runs again\n"
	      "  -t, --sample-type T     sample type by name or index (default: NEW's default)\n"
	      "      --threshold PCT     fail when a share rises more than PCT points above the\n"
	      "                          highest BASE share (default 5)\n"
	      "      --max-total-growth PCT  fail when NEW's total is more than PCT% above the\n"
	      "                          highest BASE total (default 5; off to turn it off)\n"
	      "      --max-growth PCT    fail when a function's value is more than PCT% above\n"
	      "                          its highest BASE value (default off)\n"
	      "      --per N[,N...]      divide each run's values by its work (iterations):\n"
	      "                          one count per run, BASE runs then NEW, or one for all\n"
	      "      --min-share PCT     leave out functions under PCT% in every file (default 1)\n"
	      "      --cum               compare cum values instead of flat\n"
	      "  -k, --kind KIND         the kind taken from directories (cpu, heap, ...)\n"
	      "      --by program        compare programs instead of functions\n"
	      "      --tag KEY=VALUE     only samples with that label, on both sides (repeatable)\n"
	      "  -n, --nodes N           rows to print (default 10, 0 = all; regressions always)\n"
	      "      --format text|md    plain text (default) or markdown\n"
	      "Exit status: 0 no regression, 1 a regression, 2 unusable input.\n",
	      stream);
}

int command_diff(int argc, char **argv)
{
	const command_t *command = command_find("diff");
	enum {
		OPTION_THRESHOLD = 0x100,
		OPTION_MIN_SHARE,
		OPTION_CUM,
		OPTION_FORMAT,
		OPTION_MAX_TOTAL_GROWTH,
		OPTION_MAX_GROWTH,
		OPTION_PER,
		OPTION_BY,
		OPTION_NEW,
		OPTION_BASE,
		OPTION_TAG,
	};
	static const struct option options_table[] = {
		{ "sample-type", required_argument, NULL, 't' },
		{ "threshold", required_argument, NULL, OPTION_THRESHOLD },
		{ "min-share", required_argument, NULL, OPTION_MIN_SHARE },
		{ "max-total-growth", required_argument, NULL, OPTION_MAX_TOTAL_GROWTH },
		{ "max-growth", required_argument, NULL, OPTION_MAX_GROWTH },
		{ "per", required_argument, NULL, OPTION_PER },
		{ "cum", no_argument, NULL, OPTION_CUM },
		{ "kind", required_argument, NULL, 'k' },
		{ "by", required_argument, NULL, OPTION_BY },
		{ "new", no_argument, NULL, OPTION_NEW },
		{ "base", no_argument, NULL, OPTION_BASE },
		{ "tag", required_argument, NULL, OPTION_TAG },
		{ "nodes", required_argument, NULL, 'n' },
		{ "format", required_argument, NULL, OPTION_FORMAT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	diff_options_t options = {
		.threshold = DIFF_DEFAULT_THRESHOLD,
		.min_share = DIFF_DEFAULT_MIN_SHARE,
		.max_total_growth = DIFF_DEFAULT_MAX_TOTAL_GROWTH,
		.max_growth = -1,
		.rows = DIFF_DEFAULT_ROWS,
		.format = FORMAT_TEXT,
	};
	diff_input_t input = { .have_type = false };
	/* Paths in order: each BASE path is a run; --new paths make NEW. */
	diff_run_t *runs = calloc((size_t)argc + 1, sizeof *runs);
	diff_run_t new_run = { 0 };
	char **all_paths = calloc((size_t)argc + 1, sizeof *all_paths);
	size_t run_count = 0, path_count = 0;
	bool to_new = false, new_given = false;
	int status = EXIT_OK;
	if (!runs || !all_paths) {
		free(runs);
		free(all_paths);
		return command_fail("diff: out of memory");
	}
	optind = 0;
	opterr = 0;
	int code;
	while (status == EXIT_OK &&
	       (code = getopt_long(argc, argv, "-:t:n:k:h", options_table, NULL)) != -1) {
		switch (code) {
		case 1: /* a path, in its place among the options */
			all_paths[path_count++] = optarg;
			if (to_new) {
				if (run_add_path(&new_run, optarg) != 0)
					status = command_fail("diff: out of memory");
			} else if (run_add_path(&runs[run_count++], optarg) != 0) {
				status = command_fail("diff: out of memory");
			}
			break;
		case OPTION_NEW:
			to_new = new_given = true;
			break;
		case OPTION_BASE:
			to_new = false;
			break;
		case OPTION_TAG:
			if (!command_add_tag("diff", optarg))
				status = EXIT_USAGE;
			break;
		case 't':
			options.sample_type = optarg;
			break;
		case 'k':
			input.paths.kind = optarg;
			break;
		case OPTION_BY:
			if (strcmp(optarg, "program") == 0)
				options.by = CPROF_BY_PROGRAM;
			else if (strcmp(optarg, "process") == 0)
				options.by = CPROF_BY_PROCESS;
			else
				status = command_fail("diff: --by wants program or process, not \"%s\"",
						      optarg);
			break;
		case OPTION_THRESHOLD:
			if (!parse_percent(optarg, &options.threshold))
				status = command_fail("diff: --threshold wants points from 0 to 100, "
						      "not \"%s\"", optarg);
			break;
		case OPTION_MIN_SHARE:
			if (!parse_percent(optarg, &options.min_share))
				status = command_fail("diff: --min-share wants a percentage from 0 to "
						      "100, not \"%s\"", optarg);
			break;
		case OPTION_MAX_TOTAL_GROWTH:
			if (!parse_growth(optarg, &options.max_total_growth))
				status = command_fail("diff: --max-total-growth wants a percentage "
						      ">= 0 or off, not \"%s\"", optarg);
			break;
		case OPTION_MAX_GROWTH:
			if (!parse_growth(optarg, &options.max_growth))
				status = command_fail("diff: --max-growth wants a percentage >= 0 or "
						      "off, not \"%s\"", optarg);
			break;
		case OPTION_PER:
			if (!parse_per(optarg, &options.per, &options.per_count))
				status = command_fail("diff: --per wants counts of work greater than 0, "
						      "N or N,N,..., not \"%s\"", optarg);
			break;
		case OPTION_CUM:
			options.by_cum = true;
			break;
		case 'n': {
			char *end;
			errno = 0;
			unsigned long long number = strtoull(optarg, &end, 10);
			if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || errno != 0 ||
			    number > SIZE_MAX)
				status = command_fail("diff: -n wants a count of rows (0 = all), not "
						      "\"%s\"", optarg);
			else
				options.rows = (size_t)number;
			break;
		}
		case OPTION_FORMAT:
			if (strcmp(optarg, "text") == 0)
				options.format = FORMAT_TEXT;
			else if (strcmp(optarg, "md") == 0 || strcmp(optarg, "markdown") == 0)
				options.format = FORMAT_MARKDOWN;
			else
				status = command_fail("diff: --format wants text or md, not \"%s\"",
						      optarg);
			break;
		case 'h':
			print_diff_usage(stdout);
			status = command_finish_output();
			goto out;
		default:
			status = command_option_error(command, code, argv);
			break;
		}
	}
	/* After "--": paths on the side the options left off at. */
	for (; status == EXIT_OK && optind < argc; optind++) {
		all_paths[path_count++] = argv[optind];
		if (to_new ? run_add_path(&new_run, argv[optind]) != 0
			   : run_add_path(&runs[run_count++], argv[optind]) != 0)
			status = command_fail("diff: out of memory");
	}
	if (status != EXIT_OK)
		goto out;
	if (!new_given && run_count > 0) {
		new_run = runs[--run_count]; /* the last run is NEW */
		runs[run_count] = (diff_run_t){ 0 };
	}
	if (run_count < 1 || new_run.count == 0) {
		if (new_given)
			status = command_fail("diff: want BASE... --new NEW..., got %zu BASE and %zu "
					      "NEW path%s; usage: cprof diff %s", run_count,
					      new_run.count, new_run.count == 1 ? "" : "s",
					      command->arguments);
		else
			status = command_fail("diff: want BASE... NEW, got %zu file%s; usage: cprof "
					      "diff %s", path_count, path_count == 1 ? "" : "s",
					      command->arguments);
		goto out;
	}
	if (options.per && options.per_count != 1 && options.per_count != run_count + 1) {
		status = command_fail("diff: --per has %zu counts for %zu runs (%zu BASE and NEW); "
				      "give one per run, or one for all", options.per_count,
				      run_count + 1, run_count);
		goto out;
	}
	char err[1024];
	if (cprof_paths_choose_kind(&input.paths, all_paths, path_count, err, sizeof err) != 0) {
		status = command_fail("%s", err);
		goto out;
	}

	/* NEW first: it chooses the sample type. One run in memory at a time;
	 * the rows keep what the comparison needs. */
	cprof_diff_t diff;
	cprof_diff_init(&diff, options.by_cum);
	diff.label_key = cprof_by_key(options.by);
	double new_work = options.per ? options.per[options.per_count - 1] : 1.0;
	status = add_run(&diff, &input, &new_run, &options, CPROF_DIFF_NEW, new_work);
	for (size_t i = 0; i < run_count && status == EXIT_OK; i++) {
		double work = options.per ? options.per[options.per_count == 1 ? 0 : i] : 1.0;
		status = add_run(&diff, &input, &runs[i], &options, CPROF_DIFF_BASE, work);
	}
	if (status != EXIT_OK) {
		cprof_diff_release(&diff);
		goto out;
	}
	cprof_diff_finish(&diff);
	diff_run_t **bases = calloc(run_count, sizeof *bases);
	if (!bases) {
		cprof_diff_release(&diff);
		status = command_fail("diff: out of memory");
		goto out;
	}
	for (size_t i = 0; i < run_count; i++)
		bases[i] = &runs[i];
	print_diff(&diff, &input, &options, bases, run_count, &new_run);
	free(bases);
	verdict_t verdict = judge(&diff, &options);
	cprof_diff_release(&diff);
	status = command_finish_output();
	if (status == EXIT_OK && (verdict.share_regressions || verdict.value_regressions ||
				  verdict.total_regressed))
		status = EXIT_REGRESSION;
out:
	for (size_t i = 0; i <= run_count && i < (size_t)argc + 1; i++)
		free(runs[i].paths);
	free(runs);
	free(new_run.paths);
	free(all_paths);
	free(options.per);
	return status;
}
