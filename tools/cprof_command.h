/* cprof_command.h — what the cprof subcommands share: the command table
 * entry, exit codes and the one-line error helpers (tools/cprof.c). Each
 * subcommand lives in its own file: top and raw in cprof.c, run in run.c,
 * diff in diff.c, merge in merge.c, flame in flame.c. A subcommand gets argv with argv[0] its own name and
 * returns the process's exit status.
 */
#ifndef CPROF_COMMAND_H
#define CPROF_COMMAND_H

#include <stdbool.h>
#include <stdio.h>

#include "profile_merge.h"

enum {
	EXIT_OK = 0,
	EXIT_OUTPUT_FAILED = 1, /* writing stdout failed */
	EXIT_REGRESSION = 1,    /* diff: a gate failed (total, share or value) */
	EXIT_USAGE = 2,         /* also unreadable or invalid profiles */
};

typedef struct command {
	const char *name;
	int (*run)(int argc, char **argv); /* argv[0] is the command name */
	const char *arguments;              /* after "cprof <name> " */
	const char *summary;
} command_t;

int command_run(int argc, char **argv);  /* run.c */
int command_diff(int argc, char **argv); /* diff.c */
int command_merge(int argc, char **argv); /* merge.c */
int command_flame(int argc, char **argv); /* flame.c */
int command_threads(int argc, char **argv); /* threads.c */

const command_t *command_find(const char *name);

/* One line "cprof: ..." on stderr; returns EXIT_USAGE for `return command_fail(...)`. */
int command_fail(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* getopt's complaint (`code` ':' missing value, '?' unknown option) as one
 * line naming the command and its usage. */
int command_option_error(const command_t *command, int code, char **argv);

void command_print_usage(FILE *stream, const command_t *command);

/* Flushes stdout: EXIT_OK, or EXIT_OUTPUT_FAILED with one line. */
int command_finish_output(void);

/* "cprof: FILE: no sample type "x" (have: a, b)"; returns EXIT_USAGE. */
int command_sample_type_error(const char *file,
			      const Perftools__Profiles__Profile *profile,
			      const char *wanted);

/* "program" or "process" for --by; false otherwise. */
bool command_parse_by(const char *text, cprof_by_t *by);

/* --tag KEY=VALUE (top, diff, flame; repeatable): only samples carrying
 * every such string label count, as pprof's -tagfocus=KEY=VALUE with an
 * exact value; command_load reads the values of every other sample as 0.
 * Returns false (after one line) on an argument that is not KEY=VALUE. */
bool command_add_tag(const char *command_name, const char *text);
/* ", only tenant=acme op=x" after a header's type, or nothing. */
void command_print_tags(FILE *stream);

/* Loads the paths as one profile (profile_merge.h), or prints the one line
 * and returns EXIT_USAGE. With --tag filters, a profile where no sample
 * carries them is an error too (a misspelt tag should not pass a gate). */
int command_load(const cprof_paths_t *paths, char *const *list, size_t count, cprof_by_t by,
		 Perftools__Profiles__Profile **profile, size_t *files);

/* Prints the paths of one side for a header: "a.pb", "prof/ (12 files)". */
void command_print_paths(FILE *stream, char *const *list, size_t count, size_t files);

#endif
