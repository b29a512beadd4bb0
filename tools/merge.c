/* merge.c — `cprof merge`: many profiles into one file that pprof reads.
 *
 *   cprof merge -o OUT PATH... [-k KIND] [--by program|process]
 *
 * The paths (files, directories of NAME.KIND.pb.gz) are merged as pprof
 * merges (profile_merge.h) and written gzipped to OUT, through a temporary
 * file renamed into place. --by adds a "program" (or "process") label to
 * every sample, so that `go tool pprof -tagfocus=program=NAME OUT` slices
 * one program out and `cprof top --by program OUT` sums by it.
 *
 * Exit status: 0 written; 2 a usage error, an unreadable profile, profiles
 * whose sample types differ, a directory without profiles, or OUT cannot
 * be written, with one line naming the file.
 */
#include "cprof_command.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static void print_merge_usage(FILE *stream)
{
	command_print_usage(stream, command_find("merge"));
	fputs("  -o, --output OUT        the merged profile (gzipped profile.proto)\n"
	      "  PATH...                 profile files, or directories: every NAME.KIND.pb.gz\n"
	      "                          under them\n"
	      "  -k, --kind KIND         take KIND (cpu, heap, mutex, block) from directories;\n"
	      "                          needed when they hold several kinds\n"
	      "      --by program|process  label each sample with its program (or process)\n"
	      "Exit status: 0 written, 2 unusable input or OUT not writable.\n",
	      stream);
}

int command_merge(int argc, char **argv)
{
	const command_t *command = command_find("merge");
	static const struct option options[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "kind", required_argument, NULL, 'k' },
		{ "by", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *output = NULL;
	cprof_paths_t paths = { 0 };
	cprof_by_t by = CPROF_BY_NONE;
	optind = 0;
	opterr = 0;
	int code;
	while ((code = getopt_long(argc, argv, ":o:k:h", options, NULL)) != -1) {
		switch (code) {
		case 'o':
			output = optarg;
			break;
		case 'k':
			paths.kind = optarg;
			break;
		case 'b':
			if (!command_parse_by(optarg, &by))
				return command_fail("merge: --by wants program or process, not \"%s\"",
						    optarg);
			break;
		case 'h':
			print_merge_usage(stdout);
			return command_finish_output();
		default:
			return command_option_error(command, code, argv);
		}
	}
	if (!output)
		return command_fail("merge: missing -o OUT; usage: cprof merge %s", command->arguments);
	if (optind >= argc)
		return command_fail("merge: missing PATH; usage: cprof merge %s", command->arguments);
	char *const *list = argv + optind;
	size_t count = (size_t)(argc - optind);
	char err[1024];
	if (cprof_paths_choose_kind(&paths, list, count, err, sizeof err) != 0)
		return command_fail("%s", err);

	/* One file goes through the merger too: OUT is compacted (only what
	 * its samples use) whatever the count. */
	Perftools__Profiles__Profile *profile;
	size_t files;
	int status = command_load(&paths, list, count, by, &profile, &files);
	if (status != EXIT_OK)
		return status;
	if (files == 1 && by == CPROF_BY_NONE) {
		cprof_merge_t *merge = cprof_merge_new();
		bool allocated = merge != NULL;
		Perftools__Profiles__Profile *merged = NULL;
		int made = merge && cprof_merge_add(merge, profile, list[0], NULL, NULL, err,
						    sizeof err) == 0 &&
			   cprof_merge_finish(merge, &merged, err, sizeof err) == 0;
		cprof_merge_free(merge);
		cprof_profile_free(profile);
		if (!made)
			return command_fail("%s", allocated ? err : "merge: out of memory");
		profile = merged;
	}
	int written = cprof_profile_write(profile, output, err, sizeof err);
	cprof_profile_free(profile);
	if (written != 0)
		return command_fail("%s", err);
	fprintf(stderr, "cprof: merged %zu profile%s into %s\n", files, files == 1 ? "" : "s",
		output);
	return EXIT_OK;
}
