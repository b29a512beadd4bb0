/* diff.c — `cprof diff`: compares profiles by function and gates a CI
 * run on the result.
 *
 *   cprof diff BASE... NEW [-t SAMPLE_TYPE] [--threshold PCT] [--min-share PCT]
 *                          [--cum] [-n N] [--format text|md]
 *
 * The last file is NEW; every file before it is a BASE run. Each
 * function's value (flat by default, cum with --cum) is taken as a share
 * of its own profile's total, so runs of different length compare fairly.
 * With several BASE runs the lowest and highest share a function had in
 * them is its noise band (0 counts for a run it is absent from).
 *
 * A function REGRESSES when its share in NEW is above the top of its band
 * by more than --threshold points (default 5): with one BASE, when it grew
 * by more than that many points. Functions whose share stays under
 * --min-share percent (default 1) in every file are left out of the table
 * and of the verdict.
 *
 * Output: a header (files, sample type, what is compared, totals), the
 * biggest movers by |NEW share - mean BASE share| (-n rows, default 10,
 * plus every regression), and a last line: "PASS: ..." or "FAIL: ...
 * <function> (+x.xx points)". --format md prints the same as markdown for
 * a CI log or a pull-request comment.
 *
 * Exit status: 0 no regression; 1 a regression; 2 usage error, an
 * unreadable or invalid file, or files that lack the sample type (or
 * carry it in different units), with one line naming the file.
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

typedef enum diff_format { FORMAT_TEXT, FORMAT_MARKDOWN } diff_format_t;

typedef struct diff_options {
	const char *sample_type; /* NULL: NEW's default */
	double threshold;
	double min_share;
	bool by_cum;
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

/* ---- reading the files ------------------------------------------------ */

typedef struct diff_input {
	char type_name[256];
	char unit[256];
	bool have_type;
} diff_input_t;

/* Reads `file` and adds it. The sample type is chosen by the first file
 * read (NEW, by -t or its default) and must be present, in the same unit,
 * in every other. */
static int add_file(cprof_diff_t *diff, diff_input_t *input, const char *file,
		    const diff_options_t *options, cprof_diff_side_t side)
{
	char err[512];
	Perftools__Profiles__Profile *profile;
	if (cprof_profile_read(file, &profile, err, sizeof err) != 0)
		return command_fail("%s", err);
	int status = EXIT_OK;
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
	if (cprof_diff_add(diff, profile, type, side) != 0) {
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

static void print_file_list(char *const *files, size_t count, bool markdown)
{
	for (size_t i = 0; i < count; i++) {
		fputs(i ? (markdown ? ", " : " ") : "", stdout);
		if (markdown)
			print_markdown_name(files[i]);
		else
			cprof_print_escaped(stdout, files[i]);
	}
}

/* The verdict line without a newline: "PASS: ..." or "FAIL: ...". */
static void print_verdict(const cprof_diff_t *diff, const diff_options_t *options,
			  size_t regressions, bool markdown)
{
	const char *points = options->by_cum ? "cum share" : "share";
	if (regressions == 0) {
		/* The largest growth above the band, for the record. */
		const cprof_diff_row_t *largest = NULL;
		for (size_t i = 0; i < diff->count; i++) {
			const cprof_diff_row_t *row = &diff->rows[i];
			if (!cprof_diff_row_counts(row, options->min_share))
				continue;
			if (!largest || cprof_diff_growth(row) > cprof_diff_growth(largest))
				largest = row;
		}
		printf("%s: no function's %s grew more than %g points%s", markdown ? "**PASS**" : "PASS",
		       points, options->threshold,
		       diff->base_count > 1 ? " above its band" : "");
		if (largest && cprof_diff_growth(largest) > 0.005) {
			char growth[32];
			print_points(cprof_diff_growth(largest), growth, sizeof growth);
			fputs(" (largest: ", stdout);
			if (markdown)
				print_markdown_name(largest->name);
			else
				cprof_print_escaped(stdout, largest->name);
			printf(" %s)", growth);
		}
		return;
	}
	printf("%s: %zu function%s %s grew more than %g points%s:",
	       markdown ? "**FAIL**" : "FAIL", regressions, regressions == 1 ? "'s" : "s'", points,
	       options->threshold, diff->base_count > 1 ? " above the band" : "");
	size_t listed = 0;
	for (size_t i = 0; i < diff->count; i++) {
		const cprof_diff_row_t *row = &diff->rows[i];
		if (!cprof_diff_row_regressed(row, options->threshold, options->min_share))
			continue;
		if (listed == 5) {
			printf(" and %zu more", regressions - listed);
			break;
		}
		char growth[32];
		print_points(cprof_diff_growth(row), growth, sizeof growth);
		fputs(listed ? ", " : " ", stdout);
		if (markdown)
			print_markdown_name(row->name);
		else
			cprof_print_escaped(stdout, row->name);
		printf(" (%s points)", growth);
		listed++;
	}
}

static void print_diff(const cprof_diff_t *diff, const diff_input_t *input,
		       const diff_options_t *options, char *const *bases, size_t base_count,
		       char *new_file)
{
	bool markdown = options->format == FORMAT_MARKDOWN;
	bool band = base_count > 1;
	const char *what = options->by_cum ? "cum" : "flat";
	size_t regressions = 0, counted = 0;
	for (size_t i = 0; i < diff->count; i++) {
		if (cprof_diff_row_regressed(&diff->rows[i], options->threshold, options->min_share))
			regressions++;
		if (cprof_diff_row_counts(&diff->rows[i], options->min_share))
			counted++;
	}
	char base_total[64], new_total[64], change[64] = "";
	print_value(diff->base_total, input->unit, base_total, sizeof base_total);
	cprof_format_value(diff->new_total, input->unit, new_total, sizeof new_total);
	if (diff->base_total != 0)
		snprintf(change, sizeof change, " (%+.1f%%)",
			 100.0 * ((double)diff->new_total - diff->base_total) / fabs(diff->base_total));

	if (markdown) {
		printf("### cprof diff: %s\n\n", regressions ? "regression" : "no regression");
	}
	/* Markdown: a hard line break ("  ") keeps the header lines apart. */
	const char *line_end = markdown ? "  \n" : "\n";
	fputs("Base: ", stdout);
	if (band)
		printf("%zu runs: ", base_count);
	print_file_list(bases, base_count, markdown);
	printf("%sNew:  ", line_end);
	print_file_list(&new_file, 1, markdown);
	printf("%sType: ", line_end);
	cprof_print_escaped(stdout, input->type_name);
	printf(", %s value as a share of each profile's total%s", what, line_end);
	printf("Total: base %s%s, new %s%s%s", base_total, band ? " (mean)" : "", new_total,
	       change, line_end);
	printf("Fails when a share rises more than %g points above %s; functions under "
	       "%g%% everywhere are left out%s",
	       options->threshold, band ? "its highest base share" : "the base share",
	       options->min_share, line_end);
	if (diff->base_total == 0 || diff->new_total == 0)
		printf("Note: %s has a total of 0 for this sample type; its shares are all 0%s",
		       diff->new_total == 0 ? "NEW" : "BASE", line_end);
	fputs("\n", stdout);

	/* The rows: the biggest movers, and every regression. */
	size_t limit = options->rows == 0 ? SIZE_MAX : options->rows;
	if (markdown) {
		printf("| function | base%s | new | change | %s | base value | new value |\n",
		       band ? " (band)" : "", "verdict");
		puts("|---|---:|---:|---:|---|---:|---:|");
	} else {
		if (band)
			printf("%8s %15s %8s %8s %10s %10s  %s\n", "base", "band", "new", "change",
			       "base", "new", "function");
		else
			printf("%8s %8s %8s %10s %10s  %s\n", "base", "new", "change", "base", "new",
			       "function");
	}
	size_t shown = 0;
	for (size_t i = 0; i < diff->count; i++) {
		const cprof_diff_row_t *row = &diff->rows[i];
		if (!cprof_diff_row_counts(row, options->min_share))
			continue;
		bool regressed = cprof_diff_row_regressed(row, options->threshold,
							  options->min_share);
		if (shown >= limit && !regressed)
			continue;
		shown++;
		char base[32], low[32], high[32], fresh[32], moved[32], base_value[64],
			new_value[64], band_text[80];
		print_share(row->base_share, base, sizeof base);
		print_share(row->base_low, low, sizeof low);
		print_share(row->base_high, high, sizeof high);
		print_share(row->new_share, fresh, sizeof fresh);
		print_points(row->new_share - row->base_share, moved, sizeof moved);
		print_value(row->base_value, input->unit, base_value, sizeof base_value);
		cprof_format_value(row->new_value, input->unit, new_value, sizeof new_value);
		snprintf(band_text, sizeof band_text, "%s-%s", low, high);
		if (markdown) {
			fputs("| ", stdout);
			print_markdown_name(row->name);
			if (band)
				printf(" | %s (%s) | %s | %s | %s | %s | %s |\n", base, band_text, fresh,
				       moved, regressed ? "**regression**" : "", base_value, new_value);
			else
				printf(" | %s | %s | %s | %s | %s | %s |\n", base, fresh, moved,
				       regressed ? "**regression**" : "", base_value, new_value);
			continue;
		}
		if (band)
			printf("%8s %15s %8s %8s %10s %10s  ", base, band_text, fresh, moved,
			       base_value, new_value);
		else
			printf("%8s %8s %8s %10s %10s  ", base, fresh, moved, base_value, new_value);
		cprof_print_escaped(stdout, row->name);
		if (regressed) {
			char growth[32];
			print_points(cprof_diff_growth(row), growth, sizeof growth);
			printf("   <- REGRESSION (%s points)", growth);
		}
		fputc('\n', stdout);
	}
	if (shown == 0)
		puts(markdown ? "| (no function reaches the minimum share) | | | | | | |"
			      : "  (no function reaches the minimum share)");
	if (counted > shown)
		printf("%s(%zu more function%s moved less)\n", markdown ? "\n" : "", counted - shown,
		       counted - shown == 1 ? "" : "s");
	fputc('\n', stdout);
	print_verdict(diff, options, regressions, markdown);
	fputc('\n', stdout);
}

/* ---- the command ------------------------------------------------------ */

static void print_diff_usage(FILE *stream)
{
	command_print_usage(stream, command_find("diff"));
	fputs("  BASE...                 one or more profiles of the old version (repeated runs\n"
	      "                          set each function's noise band); NEW is the last file\n"
	      "  -t, --sample-type T     sample type by name or index (default: NEW's default)\n"
	      "      --threshold PCT     fail when a share rises more than PCT points above the\n"
	      "                          highest BASE share (default 5)\n"
	      "      --min-share PCT     leave out functions under PCT% in every file (default 1)\n"
	      "      --cum               compare cum shares instead of flat\n"
	      "  -n, --nodes N           rows to print (default 10, 0 = all; regressions always)\n"
	      "      --format text|md    plain text (default) or markdown\n"
	      "Exit status: 0 no regression, 1 a regression, 2 unusable input.\n",
	      stream);
}

int command_diff(int argc, char **argv)
{
	const command_t *command = command_find("diff");
	enum { OPTION_THRESHOLD = 0x100, OPTION_MIN_SHARE, OPTION_CUM, OPTION_FORMAT };
	static const struct option options_table[] = {
		{ "sample-type", required_argument, NULL, 't' },
		{ "threshold", required_argument, NULL, OPTION_THRESHOLD },
		{ "min-share", required_argument, NULL, OPTION_MIN_SHARE },
		{ "cum", no_argument, NULL, OPTION_CUM },
		{ "nodes", required_argument, NULL, 'n' },
		{ "format", required_argument, NULL, OPTION_FORMAT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	diff_options_t options = {
		.threshold = DIFF_DEFAULT_THRESHOLD,
		.min_share = DIFF_DEFAULT_MIN_SHARE,
		.rows = DIFF_DEFAULT_ROWS,
		.format = FORMAT_TEXT,
	};
	optind = 0;
	opterr = 0;
	int code;
	while ((code = getopt_long(argc, argv, ":t:n:h", options_table, NULL)) != -1) {
		switch (code) {
		case 't':
			options.sample_type = optarg;
			break;
		case OPTION_THRESHOLD:
			if (!parse_percent(optarg, &options.threshold))
				return command_fail("diff: --threshold wants points from 0 to 100, "
						    "not \"%s\"", optarg);
			break;
		case OPTION_MIN_SHARE:
			if (!parse_percent(optarg, &options.min_share))
				return command_fail("diff: --min-share wants a percentage from 0 to "
						    "100, not \"%s\"", optarg);
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
				return command_fail("diff: -n wants a count of rows (0 = all), not "
						    "\"%s\"", optarg);
			options.rows = (size_t)number;
			break;
		}
		case OPTION_FORMAT:
			if (strcmp(optarg, "text") == 0)
				options.format = FORMAT_TEXT;
			else if (strcmp(optarg, "md") == 0 || strcmp(optarg, "markdown") == 0)
				options.format = FORMAT_MARKDOWN;
			else
				return command_fail("diff: --format wants text or md, not \"%s\"",
						    optarg);
			break;
		case 'h':
			print_diff_usage(stdout);
			return command_finish_output();
		default:
			return command_option_error(command, code, argv);
		}
	}
	int files = argc - optind;
	if (files < 2)
		return command_fail("diff: want BASE... NEW, got %d file%s; usage: cprof diff %s",
				    files, files == 1 ? "" : "s", command->arguments);
	char **bases = argv + optind;
	size_t base_count = (size_t)files - 1;
	char *new_file = argv[argc - 1];

	/* NEW first: it chooses the sample type. One profile in memory at a
	 * time; the rows keep what the comparison needs. */
	cprof_diff_t diff;
	cprof_diff_init(&diff, options.by_cum);
	diff_input_t input = { .have_type = false };
	int status = add_file(&diff, &input, new_file, &options, CPROF_DIFF_NEW);
	for (size_t i = 0; i < base_count && status == EXIT_OK; i++)
		status = add_file(&diff, &input, bases[i], &options, CPROF_DIFF_BASE);
	if (status != EXIT_OK) {
		cprof_diff_release(&diff);
		return status;
	}
	cprof_diff_finish(&diff);
	print_diff(&diff, &input, &options, bases, base_count, new_file);
	size_t regressions = 0;
	for (size_t i = 0; i < diff.count; i++)
		if (cprof_diff_row_regressed(&diff.rows[i], options.threshold, options.min_share))
			regressions++;
	cprof_diff_release(&diff);
	status = command_finish_output();
	if (status != EXIT_OK)
		return status;
	return regressions ? EXIT_REGRESSION : EXIT_OK;
}
