/* cprof.c — the cprof command: reads the profiles libcprof.so writes (and
 * any other pprof profile.proto, gzipped or not) and prints them. This
 * file owns the command line: the subcommand table, option parsing, exit
 * codes and the output formats below. Reading, validation, names, units
 * and per-function totals live in profile_read.c, shared with the tests.
 *
 * Usage
 *   cprof run [-o DIR] [-p LIST] [--hz N] [...] [--] CMD ARGS   (run.c)
 *   cprof top PATH... [-n N] [--cum] [-t SAMPLE_TYPE] [--raw-values]
 *             [-k KIND] [--by program|process]
 *   cprof diff BASE... NEW [-t SAMPLE_TYPE] [--threshold PCT] ...   (diff.c)
 *   cprof merge -o OUT PATH... [-k KIND] [--by program|process]     (merge.c)
 *   cprof flame PATH... [--base PATH...] -o OUT.svg [-t TYPE]      (flame.c)
 *   cprof raw PATH... [-k KIND] [--by program|process]
 *
 * A PATH is a profile file or a directory: every NAME.KIND.pb.gz under it
 * (any depth). Several paths are merged into one profile as pprof merges
 * (profile_merge.h); -k picks the kind a directory's files must have, and
 * is needed when the directories hold several kinds. --by program adds a
 * "program" label to each file's samples (pprof -tagfocus can slice by
 * it) and makes `top` list programs instead of functions.
 *   cprof help | --help | -h          (cprof COMMAND --help for one command)
 *
 * Exit status: 0 success; 2 usage error or unreadable/invalid profile, with
 * one line "cprof: <file>: <problem>" (or "cprof: <command>: <problem>")
 * on stderr; 1 when writing the output fails, or (diff) when a function's
 * share grew beyond the threshold. `run` exits with its command's status.
 *
 * cprof top — like `pprof -top`
 *   -n N, --nodes=N          rows to print (default 20; 0 = all)
 *   --cum                    sort by cum instead of flat
 *   -t T, --sample-type=T    sample type by name ("cpu", "samples",
 *                            "inuse_space", ...) or index; default: the
 *                            profile's default_sample_type, else the last
 *   --raw-values             machine-readable rows (below)
 *   -k KIND, --kind=KIND     the kind of profile taken from directories
 *   --by program|process     rows by program (or process) instead of function
 *
 *   File: prof.pb.gz
 *   Type: cpu
 *   Total: 1.20s
 *         flat  flat%   sum%        cum   cum%
 *        0.90s 75.01% 75.01%      1.10s 91.67%  compute
 *        ...
 *
 *   One row per function name. flat: the values of the samples whose leaf
 *   location's innermost line is the function; cum: the values of the
 *   samples with the function anywhere in the stack (inlined lines
 *   included), once per sample even under recursion. A location without
 *   lines (or a line whose function has no name) is named "0x<address>",
 *   or "<mapping basename> 0x<address in the file>" when the mapping has a
 *   file name (runtime address - mapping start + file offset: the same in
 *   every run, as addr2line wants it).
 *   Rows are sorted by |flat| (--cum: |cum|) descending, ties by name
 *   (strcmp); rows with zero flat and zero cum are left out. Total is the
 *   sum of |value| over all samples, as pprof's. sum% is the running sum of
 *   flat. Values: time units as ns/us/ms/s/hrs ("340ms", "1.20s"), memory
 *   units as B/kB/MB/GB/TB/PB in steps of 1024, two decimals with ".00"
 *   dropped; other units (count, ...) as plain integers; 0 as "0".
 *   Percentages have two decimals ("75.01%"), "100%" when they round to it.
 *   Columns: "%10s %6s %6s %10s %6s  %s". Control characters in names are
 *   printed as \xNN.
 *
 *   With --raw-values the output is only the rows, one per line:
 *     <flat>\t<cum>\t<name>\n
 *   flat and cum exact decimal integers in the sample type's own unit
 *   (saturated at the int64 range), name escaped as above (so it has no
 *   tab or newline), same order as the table; here -n defaults to 0 (all
 *   rows) unless given.
 *
 * cprof raw — the decoded profile as text, like `pprof -raw`
 *   File: prof.pb.gz
 *   Sample types: samples/count cpu/nanoseconds
 *   Default sample type: cpu
 *   Period type: cpu/nanoseconds
 *   Period: 10000000 (10ms)
 *   Time: 2024-05-01 12:00:00.000000000 UTC (1714564800000000000 ns)
 *   Duration: 1.20s (1200000000 ns)
 *   Drop frames: ...                 (only when set; so are Keep frames
 *   Comments:                         and the comments)
 *     ...
 *   Mappings: 1
 *     1: 0x400000-0x401000 offset 0x0 /usr/bin/prog build_id=ab12 [functions filenames line_numbers inline_frames]
 *   Locations: 3, functions: 2, strings: 12
 *   Samples: 1
 *     sample 0: 1 10000000
 *       #0 0x401136 compute /src/prog.c:12 (inline)
 *       #0 0x401136 helper /src/prog.c:30
 *       #1 0x4011f0 main /src/prog.c:40
 *       #2 0x29d90 libc.so.6 0x29d90
 *       labels: thread=worker bytes=4096 bytes
 *   A sample's values follow the sample types' order; frames go leaf
 *   first, "#<depth> 0x<address>", then each Line innermost first, the
 *   inlined ones marked "(inline)"; a location without lines prints its
 *   address name; a sample without locations prints "(no stack)"; a
 *   frame's "file:line" is left out when unknown. Absent strings print as
 *   "-", an unset time as "Time: (not set)". Numeric labels print
 *   "key=number[ unit]", string labels "key=value".
 */
#include "cprof_command.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOP_DEFAULT_ROWS 20

static int run_top(int argc, char **argv);
static int run_raw(int argc, char **argv);
static int run_help(int argc, char **argv);

static const command_t commands[] = {
	{ "run", command_run,
	  "[-o DIR] [-p cpu,heap,mutex,block] [--hz N] [SETTINGS] [--] CMD [ARGS]",
	  "run CMD under libcprof.so; exits with CMD's status" },
	{ "top", run_top,
	  "PATH... [-n N] [--cum] [-t SAMPLE_TYPE] [--raw-values] [-k KIND] [--by program|process] "
	  "[--tag KEY=VALUE]...",
	  "functions (or programs) by flat (or cum) value, like pprof -top" },
	{ "diff", command_diff,
	  "BASE... NEW [--new PATH...] [-t TYPE] [--threshold PCT] [--max-total-growth PCT] "
	  "[--max-growth PCT] [--per N,...] [--min-share PCT] [--cum] [-k KIND] "
	  "[--by program] [--tag KEY=VALUE]... [--format text|md]",
	  "compare runs by total and by function; exit 1 on a regression" },
	{ "merge", command_merge, "-o OUT PATH... [-k KIND] [--by program|process]",
	  "merge profiles into one file, as pprof merges" },
	{ "flame", command_flame,
	  "PATH... [--base PATH...] -o OUT.svg [-t TYPE] [-k KIND] [--title T] [--width PX] "
	  "[--tag KEY=VALUE]...",
	  "an SVG flame graph; with --base, a differential one" },
	{ "raw", run_raw, "PATH... [-k KIND] [--by program|process]",
	  "the decoded profile as text, like pprof -raw" },
	{ "threads", command_threads, "FILE",
	  "a threads profile's groups with their waits and stacks, like goroutine?debug=2" },
	{ "help", run_help, "", "this list" },
};
#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

/* ---- shared pieces --------------------------------------------------- */

int command_fail(const char *format, ...)
{
	va_list args;
	va_start(args, format);
	fputs("cprof: ", stderr);
	vfprintf(stderr, format, args);
	fputc('\n', stderr);
	va_end(args);
	return EXIT_USAGE;
}

const command_t *command_find(const char *name)
{
	for (size_t i = 0; i < COMMAND_COUNT; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

void command_print_usage(FILE *stream, const command_t *command)
{
	fprintf(stream, "usage: cprof %s %s\n", command->name, command->arguments);
}

int command_option_error(const command_t *command, int code, char **argv)
{
	const char *what = argv[optind - 1];
	char letter[3] = { '-', (char)optopt, '\0' };
	if (optopt > ' ' && optopt < 0x7f && strncmp(what, "--", 2) != 0)
		what = letter;
	return command_fail("%s: %s %s; usage: cprof %s %s", command->name,
		    code == ':' ? "missing value for option" : "unknown option", what,
		    command->name, command->arguments);
}

/* At least one PATH left after the options. */
static int some_paths(const command_t *command, int argc)
{
	if (optind >= argc)
		return command_fail("%s: missing PATH; usage: cprof %s %s", command->name,
			    command->name, command->arguments);
	return EXIT_OK;
}

bool command_parse_by(const char *text, cprof_by_t *by)
{
	if (strcmp(text, "program") == 0)
		*by = CPROF_BY_PROGRAM;
	else if (strcmp(text, "process") == 0)
		*by = CPROF_BY_PROCESS;
	else
		return false;
	return true;
}

/* ---- --tag KEY=VALUE ----------------------------------------------------- */

#define TAGS_MAX 16
static struct {
	char *key, *value;
} tags[TAGS_MAX];
static size_t tag_count;

bool command_add_tag(const char *command_name, const char *text)
{
	const char *eq = strchr(text, '=');
	if (!eq || eq == text) {
		command_fail("%s: --tag wants KEY=VALUE, not \"%s\"", command_name, text);
		return false;
	}
	if (tag_count == TAGS_MAX) {
		command_fail("%s: at most %d --tag filters", command_name, TAGS_MAX);
		return false;
	}
	tags[tag_count].key = strndup(text, (size_t)(eq - text));
	tags[tag_count].value = strdup(eq + 1);
	if (!tags[tag_count].key || !tags[tag_count].value) {
		command_fail("%s: out of memory", command_name);
		return false;
	}
	tag_count++;
	return true;
}

void command_print_tags(FILE *stream)
{
	for (size_t t = 0; t < tag_count; t++) {
		fputs(t ? " " : ", only ", stream);
		cprof_print_escaped(stream, tags[t].key);
		fputc('=', stream);
		cprof_print_escaped(stream, tags[t].value);
	}
}

/* Whether the sample carries the string label key=value. */
static bool sample_has_tag(const Perftools__Profiles__Profile *profile,
			   const Perftools__Profiles__Sample *sample, const char *key,
			   const char *value)
{
	for (size_t i = 0; i < sample->n_label; i++) {
		const Perftools__Profiles__Label *label = sample->label[i];
		if (label->str != 0 &&
		    strcmp(cprof_profile_string(profile, label->key), key) == 0 &&
		    strcmp(cprof_profile_string(profile, label->str), value) == 0)
			return true;
	}
	return false;
}

/* Zeroes the values of the samples that lack a --tag label; the number of
 * samples kept. */
static size_t apply_tags(Perftools__Profiles__Profile *profile)
{
	size_t kept = 0;
	for (size_t s = 0; s < profile->n_sample; s++) {
		Perftools__Profiles__Sample *sample = profile->sample[s];
		bool keep = true;
		for (size_t t = 0; t < tag_count && keep; t++)
			keep = sample_has_tag(profile, sample, tags[t].key, tags[t].value);
		if (keep) {
			kept++;
			continue;
		}
		for (size_t v = 0; v < sample->n_value; v++)
			sample->value[v] = 0;
	}
	return kept;
}

int command_load(const cprof_paths_t *paths, char *const *list, size_t count, cprof_by_t by,
		 Perftools__Profiles__Profile **profile, size_t *files)
{
	char err[1024];
	if (cprof_paths_load(paths, list, count, by, profile, files, err, sizeof err) != 0)
		return command_fail("%s", err);
	if (tag_count && apply_tags(*profile) == 0) {
		fputs("cprof: ", stderr);
		for (size_t i = 0; i < count; i++) {
			fputs(i ? " " : "", stderr);
			cprof_print_escaped(stderr, list[i]);
		}
		fputs(": no sample carries", stderr);
		for (size_t t = 0; t < tag_count; t++) {
			fputc(' ', stderr);
			cprof_print_escaped(stderr, tags[t].key);
			fputc('=', stderr);
			cprof_print_escaped(stderr, tags[t].value);
		}
		fputc('\n', stderr);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

void command_print_paths(FILE *stream, char *const *list, size_t count, size_t files)
{
	for (size_t i = 0; i < count; i++) {
		fputs(i ? " " : "", stream);
		cprof_print_escaped(stream, list[i]);
	}
	if (files != count)
		fprintf(stream, " (%zu files)", files);
}

int command_finish_output(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		command_fail("writing the output: %s", strerror(errno));
		return EXIT_OUTPUT_FAILED;
	}
	return EXIT_OK;
}

/* Prints "-" for an empty string, else the escaped string. */
static void print_or_dash(const char *s)
{
	if (s[0] == '\0')
		fputc('-', stdout);
	else
		cprof_print_escaped(stdout, s);
}

int command_sample_type_error(const char *file, const Perftools__Profiles__Profile *profile,
			      const char *wanted)
{
	if (profile->n_sample_type == 0)
		return command_fail("%s: the profile has no sample types", file);
	fprintf(stderr, "cprof: %s: no sample type \"", file);
	cprof_print_escaped(stderr, wanted);
	fputs("\" (have:", stderr);
	for (size_t i = 0; i < profile->n_sample_type; i++) {
		fputs(i ? ", " : " ", stderr);
		cprof_print_escaped(stderr,
				    cprof_profile_string(profile, profile->sample_type[i]->type));
	}
	fputs(")\n", stderr);
	return EXIT_USAGE;
}

/* ---- top ------------------------------------------------------------- */

static int run_top(int argc, char **argv)
{
	const command_t *command = command_find("top");
	static const struct option options[] = {
		{ "nodes", required_argument, NULL, 'n' },
		{ "cum", no_argument, NULL, 'c' },
		{ "sample-type", required_argument, NULL, 't' },
		{ "raw-values", no_argument, NULL, 'r' },
		{ "kind", required_argument, NULL, 'k' },
		{ "by", required_argument, NULL, 'b' },
		{ "tag", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	cprof_paths_t paths = { 0 };
	cprof_by_t by = CPROF_BY_NONE;
	size_t rows_wanted = TOP_DEFAULT_ROWS;
	bool rows_given = false, by_cum = false, raw_values = false;
	const char *sample_type_name = NULL;

	optind = 0; /* GNU getopt: start over, argv[0] is the command */
	opterr = 0;
	int code;
	while ((code = getopt_long(argc, argv, ":n:t:k:h", options, NULL)) != -1) {
		switch (code) {
		case 'k':
			paths.kind = optarg;
			break;
		case 'b':
			if (!command_parse_by(optarg, &by))
				return command_fail("top: --by wants program or process, not \"%s\"",
						    optarg);
			break;
		case 'T':
			if (!command_add_tag("top", optarg))
				return EXIT_USAGE;
			break;
		case 'n': {
			char *end;
			errno = 0;
			unsigned long long number = strtoull(optarg, &end, 10);
			if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || errno != 0 ||
			    number > SIZE_MAX)
				return command_fail("top: -n wants a count of rows (0 = all), not \"%s\"",
					    optarg);
			rows_wanted = (size_t)number;
			rows_given = true;
			break;
		}
		case 'c':
			by_cum = true;
			break;
		case 't':
			sample_type_name = optarg;
			break;
		case 'r':
			raw_values = true;
			break;
		case 'h':
			command_print_usage(stdout, command);
			return command_finish_output();
		default:
			return command_option_error(command, code, argv);
		}
	}
	int status = some_paths(command, argc);
	if (status != EXIT_OK)
		return status;
	if (raw_values && !rows_given)
		rows_wanted = 0;

	char err[1024];
	char *const *list = argv + optind;
	size_t list_count = (size_t)(argc - optind);
	if (cprof_paths_choose_kind(&paths, list, list_count, err, sizeof err) != 0)
		return command_fail("%s", err);
	Perftools__Profiles__Profile *profile;
	size_t files;
	status = command_load(&paths, list, list_count, by, &profile, &files);
	if (status != EXIT_OK)
		return status;
	const char *file = list[0];

	int sample_type = cprof_profile_select_sample_type(profile, sample_type_name);
	if (sample_type < 0) {
		status = command_sample_type_error(file, profile, sample_type_name ? sample_type_name : "");
		cprof_profile_free(profile);
		return status;
	}

	cprof_function_total_t *rows;
	size_t count;
	int made = by != CPROF_BY_NONE
			   ? cprof_profile_label_totals(profile, sample_type, cprof_by_key(by), &rows,
							&count)
			   : cprof_profile_function_totals(profile, sample_type, &rows, &count);
	if (made != 0) {
		cprof_profile_free(profile);
		command_fail("%s: out of memory", file);
		return EXIT_OUTPUT_FAILED;
	}
	cprof_function_totals_sort(rows, count, by_cum ? CPROF_SORT_BY_CUM : CPROF_SORT_BY_FLAT);
	size_t shown = rows_wanted == 0 || rows_wanted > count ? count : rows_wanted;

	if (raw_values) {
		for (size_t i = 0; i < shown; i++) {
			printf("%" PRId64 "\t%" PRId64 "\t", rows[i].flat, rows[i].cum);
			cprof_print_escaped(stdout, rows[i].name);
			fputc('\n', stdout);
		}
	} else {
		const Perftools__Profiles__ValueType *type = profile->sample_type[sample_type];
		const char *unit = cprof_profile_string(profile, type->unit);
		int64_t total = cprof_profile_total(profile, sample_type);
		char flat[64], flat_percent[32], sum_percent[32], cum[64], cum_percent[32];
		char total_text[64];
		cprof_format_value(total, unit, total_text, sizeof total_text);

		fputs("File: ", stdout);
		command_print_paths(stdout, list, list_count, files);
		fputs("\nType: ", stdout);
		cprof_print_escaped(stdout, cprof_profile_string(profile, type->type));
		if (by != CPROF_BY_NONE)
			printf(", by %s", cprof_by_key(by));
		command_print_tags(stdout);
		printf("\nTotal: %s\n", total_text);
		printf("%10s %6s %6s %10s %6s\n", "flat", "flat%", "sum%", "cum", "cum%");
		int64_t running = 0;
		for (size_t i = 0; i < shown; i++) {
			running = cprof_add_saturating(running, rows[i].flat);
			cprof_format_value(rows[i].flat, unit, flat, sizeof flat);
			cprof_format_percent(rows[i].flat, total, flat_percent, sizeof flat_percent);
			cprof_format_percent(running, total, sum_percent, sizeof sum_percent);
			cprof_format_value(rows[i].cum, unit, cum, sizeof cum);
			cprof_format_percent(rows[i].cum, total, cum_percent, sizeof cum_percent);
			printf("%10s %6s %6s %10s %6s  ", flat, flat_percent, sum_percent, cum,
			       cum_percent);
			cprof_print_escaped(stdout, rows[i].name);
			fputc('\n', stdout);
		}
	}
	cprof_function_totals_free(rows, count);
	cprof_profile_free(profile);
	return command_finish_output();
}

/* ---- raw ------------------------------------------------------------- */

static void print_value_type(const Perftools__Profiles__Profile *profile,
			     const Perftools__Profiles__ValueType *type)
{
	print_or_dash(cprof_profile_string(profile, type->type));
	fputc('/', stdout);
	print_or_dash(cprof_profile_string(profile, type->unit));
}

static void print_time(int64_t nanoseconds)
{
	if (nanoseconds == 0) {
		puts("Time: (not set)");
		return;
	}
	int64_t seconds = nanoseconds / 1000000000;
	int64_t fraction = nanoseconds % 1000000000;
	if (fraction < 0) {
		fraction += 1000000000;
		seconds -= 1;
	}
	time_t when = (time_t)seconds;
	struct tm broken_down;
	char text[64];
	if (gmtime_r(&when, &broken_down) &&
	    strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &broken_down) > 0)
		printf("Time: %s.%09" PRId64 " UTC (%" PRId64 " ns)\n", text, fraction,
		       nanoseconds);
	else
		printf("Time: %" PRId64 " ns\n", nanoseconds);
}

static void print_mapping(const Perftools__Profiles__Profile *profile,
			  const Perftools__Profiles__Mapping *mapping)
{
	printf("  %" PRIu64 ": 0x%" PRIx64 "-0x%" PRIx64 " offset 0x%" PRIx64 " ", mapping->id,
	       mapping->memory_start, mapping->memory_limit, mapping->file_offset);
	print_or_dash(cprof_profile_string(profile, mapping->filename));
	fputs(" build_id=", stdout);
	print_or_dash(cprof_profile_string(profile, mapping->build_id));
	const char *separator = "";
	fputs(" [", stdout);
	if (mapping->has_functions)
		printf("%sfunctions", separator), separator = " ";
	if (mapping->has_filenames)
		printf("%sfilenames", separator), separator = " ";
	if (mapping->has_line_numbers)
		printf("%sline_numbers", separator), separator = " ";
	if (mapping->has_inline_frames)
		printf("%sinline_frames", separator);
	fputs("]\n", stdout);
}

static void print_frames(const Perftools__Profiles__Profile *profile,
			 const Perftools__Profiles__Sample *sample)
{
	if (sample->n_location_id == 0)
		puts("    (no stack)");
	for (size_t depth = 0; depth < sample->n_location_id; depth++) {
		const Perftools__Profiles__Location *location =
			cprof_profile_location(profile, sample->location_id[depth]);
		if (location->n_line == 0) {
			char name[PATH_MAX + 64];
			cprof_profile_address_name(profile, location, name, sizeof name);
			printf("    #%zu 0x%" PRIx64 " ", depth, location->address);
			cprof_print_escaped(stdout, name);
			fputc('\n', stdout);
			continue;
		}
		for (size_t i = 0; i < location->n_line; i++) {
			const Perftools__Profiles__Line *line = location->line[i];
			const Perftools__Profiles__Function *function =
				cprof_profile_function(profile, line->function_id);
			const char *file = cprof_profile_string(profile, function->filename);
			printf("    #%zu 0x%" PRIx64 " ", depth, location->address);
			print_or_dash(cprof_profile_function_name(profile, function));
			if (file[0] != '\0') {
				fputc(' ', stdout);
				cprof_print_escaped(stdout, file);
				if (line->line > 0)
					printf(":%" PRId64, line->line);
			}
			if (i + 1 < location->n_line)
				fputs(" (inline)", stdout);
			fputc('\n', stdout);
		}
	}
}

static void print_labels(const Perftools__Profiles__Profile *profile,
			 const Perftools__Profiles__Sample *sample)
{
	if (sample->n_label == 0)
		return;
	fputs("    labels:", stdout);
	for (size_t i = 0; i < sample->n_label; i++) {
		const Perftools__Profiles__Label *label = sample->label[i];
		fputc(' ', stdout);
		print_or_dash(cprof_profile_string(profile, label->key));
		fputc('=', stdout);
		if (label->str != 0) {
			cprof_print_escaped(stdout, cprof_profile_string(profile, label->str));
			continue;
		}
		printf("%" PRId64, label->num);
		if (label->num_unit != 0) {
			fputc(' ', stdout);
			cprof_print_escaped(stdout, cprof_profile_string(profile, label->num_unit));
		}
	}
	fputc('\n', stdout);
}

static int run_raw(int argc, char **argv)
{
	const command_t *command = command_find("raw");
	static const struct option options[] = {
		{ "kind", required_argument, NULL, 'k' },
		{ "by", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	cprof_paths_t paths = { 0 };
	cprof_by_t by = CPROF_BY_NONE;
	optind = 0;
	opterr = 0;
	int code;
	while ((code = getopt_long(argc, argv, ":k:h", options, NULL)) != -1) {
		if (code == 'h') {
			command_print_usage(stdout, command);
			return command_finish_output();
		}
		if (code == 'k') {
			paths.kind = optarg;
			continue;
		}
		if (code == 'b') {
			if (!command_parse_by(optarg, &by))
				return command_fail("raw: --by wants program or process, not \"%s\"",
						    optarg);
			continue;
		}
		return command_option_error(command, code, argv);
	}
	int status = some_paths(command, argc);
	if (status != EXIT_OK)
		return status;

	char err[1024];
	char *const *list = argv + optind;
	size_t list_count = (size_t)(argc - optind);
	if (cprof_paths_choose_kind(&paths, list, list_count, err, sizeof err) != 0)
		return command_fail("%s", err);
	Perftools__Profiles__Profile *profile;
	size_t files;
	status = command_load(&paths, list, list_count, by, &profile, &files);
	if (status != EXIT_OK)
		return status;

	fputs("File: ", stdout);
	command_print_paths(stdout, list, list_count, files);
	fputs("\nSample types:", stdout);
	for (size_t i = 0; i < profile->n_sample_type; i++) {
		fputc(' ', stdout);
		print_value_type(profile, profile->sample_type[i]);
	}
	int default_type = cprof_profile_default_sample_type(profile);
	fputs("\nDefault sample type: ", stdout);
	print_or_dash(default_type < 0 ? ""
				       : cprof_profile_string(profile,
							      profile->sample_type[default_type]->type));
	fputs("\nPeriod type: ", stdout);
	if (profile->period_type)
		print_value_type(profile, profile->period_type);
	else
		fputc('-', stdout);
	printf("\nPeriod: %" PRId64, profile->period);
	if (profile->period_type && profile->period != 0) {
		char period[64];
		cprof_format_value(profile->period,
				   cprof_profile_string(profile, profile->period_type->unit),
				   period, sizeof period);
		printf(" (%s)", period);
	}
	fputc('\n', stdout);
	print_time(profile->time_nanos);
	char duration[64];
	cprof_format_value(profile->duration_nanos, "nanoseconds", duration, sizeof duration);
	printf("Duration: %s (%" PRId64 " ns)\n", duration, profile->duration_nanos);
	if (profile->drop_frames != 0) {
		fputs("Drop frames: ", stdout);
		cprof_print_escaped(stdout, cprof_profile_string(profile, profile->drop_frames));
		fputc('\n', stdout);
	}
	if (profile->keep_frames != 0) {
		fputs("Keep frames: ", stdout);
		cprof_print_escaped(stdout, cprof_profile_string(profile, profile->keep_frames));
		fputc('\n', stdout);
	}
	if (profile->n_comment > 0) {
		puts("Comments:");
		for (size_t i = 0; i < profile->n_comment; i++) {
			fputs("  ", stdout);
			cprof_print_escaped(stdout, cprof_profile_string(profile, profile->comment[i]));
			fputc('\n', stdout);
		}
	}

	printf("Mappings: %zu\n", profile->n_mapping);
	for (size_t i = 0; i < profile->n_mapping; i++)
		print_mapping(profile, profile->mapping[i]);
	printf("Locations: %zu, functions: %zu, strings: %zu\n", profile->n_location,
	       profile->n_function, profile->n_string_table);

	printf("Samples: %zu\n", profile->n_sample);
	for (size_t i = 0; i < profile->n_sample; i++) {
		const Perftools__Profiles__Sample *sample = profile->sample[i];
		printf("  sample %zu:", i);
		for (size_t j = 0; j < sample->n_value; j++)
			printf(" %" PRId64, sample->value[j]);
		fputc('\n', stdout);
		print_frames(profile, sample);
		print_labels(profile, sample);
	}
	cprof_profile_free(profile);
	return command_finish_output();
}

/* ---- help and dispatch ----------------------------------------------- */

static void print_usage(FILE *stream)
{
	fputs("usage: cprof COMMAND [ARGUMENTS]\n\ncommands:\n", stream);
	for (size_t i = 0; i < COMMAND_COUNT; i++)
		fprintf(stream, "  cprof %s%s%s\n      %s\n", commands[i].name,
			commands[i].arguments[0] ? " " : "", commands[i].arguments,
			commands[i].summary);
	fputs("\nPATH, BASE and NEW are pprof profile.proto files, gzipped or not, as\n"
	      "libcprof.so writes, or directories: every NAME.KIND.pb.gz under them, merged\n"
	      "(-k KIND when they hold several kinds). `cprof COMMAND --help` shows every\n"
	      "option of one command.\n"
	      "Exit status: 0 success; 2 usage error or unreadable profile; 1 output error,\n"
	      "or (diff) a regression; run exits with CMD's status.\n",
	      stream);
}

static int run_help(int argc, char **argv)
{
	if (argc > 1) {
		const command_t *command = command_find(argv[1]);
		if (!command)
			return command_fail("help: unknown command \"%s\"", argv[1]);
		command_print_usage(stdout, command);
		return command_finish_output();
	}
	print_usage(stdout);
	return command_finish_output();
}

int main(int argc, char **argv)
{
	char names[256] = "";
	for (size_t i = 0; i < COMMAND_COUNT; i++) {
		size_t used = strlen(names);
		snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
			 commands[i].name);
	}
	if (argc < 2)
		return command_fail("no command given (commands: %s; see cprof --help)", names);
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
		name = "help";
	const command_t *command = command_find(name);
	if (!command) {
		fprintf(stderr, "cprof: unknown command \"");
		cprof_print_escaped(stderr, argv[1]);
		fprintf(stderr, "\" (commands: %s; see cprof --help)\n", names);
		return EXIT_USAGE;
	}
	return command->run(argc - 1, argv + 1);
}
