/* run.c — `cprof run`: runs a command under libcprof.so, the way a user
 * would wrap a benchmark in CI, and says where its profiles went.
 *
 *   cprof run [-o DIR] [-p LIST] [--hz N] [SETTINGS] [--lib FILE] [-q] [--] CMD [ARGS]
 *
 * What it does, in order:
 *   1. Checks every flag (the same ranges preload/config.c accepts) and
 *      exits 2 with one line on a bad one, before running anything.
 *   2. Finds libcprof.so: --lib FILE; else next to itself
 *      (<dir of cprof>/libcprof.so); else the build tree
 *      (<dir>/../preload/libcprof.so); else the install prefix
 *      (<dir>/../lib/libcprof.so, for <prefix>/bin/cprof).
 *   3. Makes the output directory (-o, else $CPROF_OUT, else the working
 *      directory) and notes the profiles already in it.
 *   4. Forks; the child gets LD_PRELOAD=<libcprof.so>[:<the LD_PRELOAD it
 *      had>] and the CPROF_* variables of the flags, and execs CMD (a name
 *      without '/' is looked up in PATH). cprof's own environment is never
 *      changed, so cprof itself is not profiled.
 *   5. Forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to
 *      CMD, except those the terminal sent (si_code SI_KERNEL): the
 *      terminal signals the whole foreground process group, so CMD has its
 *      own copy and a second one would count twice ("press ^C again to
 *      quit"). SIGUSR2 is the shim's dump signal: `kill -USR2 <cprof pid>`
 *      gets a dump from CMD.
 *   6. When CMD ends, prints one line on stderr naming the profiles it
 *      wrote (files in the directory that were not there before), e.g.
 *        cprof: 2 profiles in prof: app.4242.0000.cpu.pb.gz app.4242.0000.heap.pb.gz
 *      and exits with CMD's status; when CMD was killed by a signal, cprof
 *      kills itself with the same signal (no core file of its own), so a
 *      shell sees 128 + N as it would for CMD.
 *
 * Exit status: CMD's; 127 when CMD is not found, 126 when it cannot be
 * executed (as env(1) and the shells); 2 for a usage error or when
 * libcprof.so cannot be found or the directory cannot be made.
 */
#include "cprof_command.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- settings ---------------------------------------------------------- */

typedef enum setting_kind {
	SETTING_NUMBER,   /* whole number in [min, max] */
	SETTING_PROFILES, /* comma list of kinds */
	SETTING_SIGNAL,   /* signal name or number, or none */
} setting_kind_t;

/* The CPROF_* variables a flag sets. Ranges as in preload/config.c: the
 * shim would warn and use its default; cprof refuses before running. */
typedef struct setting {
	const char *option; /* long option */
	int short_option;   /* 0 when none */
	const char *variable;
	setting_kind_t kind;
	unsigned long long min, max;
	const char *value; /* given on the command line, or NULL */
} setting_t;

static setting_t settings[] = {
	{ "profiles", 'p', "CPROF_PROFILES", SETTING_PROFILES, 0, 0, NULL },
	{ "hz", 0, "CPROF_CPU_HZ", SETTING_NUMBER, 1, 10000, NULL },
	{ "max-depth", 0, "CPROF_MAX_DEPTH", SETTING_NUMBER, 1, 512, NULL },
	{ "signal", 0, "CPROF_SIGNAL", SETTING_SIGNAL, 0, 0, NULL },
	{ "stacks", 0, "CPROF_STACKS", SETTING_NUMBER, 256, 1u << 24, NULL },
	{ "heap-rate", 0, "CPROF_HEAP_RATE", SETTING_NUMBER, 0, 1ull << 40, NULL },
	{ "heap-samples", 0, "CPROF_HEAP_SAMPLES", SETTING_NUMBER, 1024, 1u << 24, NULL },
	{ "seed", 0, "CPROF_SEED", SETTING_NUMBER, 0, ULONG_MAX, NULL },
	{ "mutex-fraction", 0, "CPROF_MUTEX_FRACTION", SETTING_NUMBER, 1, 1u << 30, NULL },
	{ "block-rate", 0, "CPROF_BLOCK_RATE", SETTING_NUMBER, 1, 1ull << 40, NULL },
	{ "unwind-caches", 0, "CPROF_UNWIND_CACHES", SETTING_NUMBER, 0, 1u << 16, NULL },
};
#define SETTING_COUNT (sizeof settings / sizeof settings[0])
#define OPTION_SETTING_BASE 0x100 /* getopt code of settings[i]: base + i */

static bool valid_number(const setting_t *setting, const char *text)
{
	if (text[0] < '0' || text[0] > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	return errno == 0 && *end == '\0' && value >= setting->min && value <= setting->max;
}

static bool valid_profiles(const char *text)
{
	static const char *const names[] = { "cpu", "heap", "mutex", "block", "all", "none" };
	const char *p = text;
	if (*p == '\0')
		return false;
	while (*p) {
		size_t length = strcspn(p, ",");
		bool found = length == 0; /* empty items are ignored, as by the shim */
		for (size_t i = 0; i < sizeof names / sizeof names[0] && !found; i++)
			found = length == strlen(names[i]) && strncasecmp(p, names[i], length) == 0;
		if (!found)
			return false;
		p += length;
		if (*p == ',')
			p++;
	}
	return true;
}

/* The dump signals the shim accepts: a number, or a name with or without
 * "SIG", of a signal a handler can catch that means nothing else to the
 * profiler or a crash; "none" or "0" for no dump signal. */
static bool valid_signal(const char *text)
{
	static const char *const names[] = { "HUP",  "INT",  "QUIT", "USR1", "USR2",   "ALRM",
					      "TERM", "CONT", "TTIN", "TTOU", "URG",    "XCPU",
					      "XFSZ", "VTALRM", "WINCH", "PWR" };
	if (strcasecmp(text, "none") == 0 || strcmp(text, "0") == 0)
		return true;
	if (text[0] >= '0' && text[0] <= '9') {
		char *end;
		errno = 0;
		unsigned long number = strtoul(text, &end, 10);
		if (errno != 0 || *end != '\0' || number < 1 || number > (unsigned long)SIGRTMAX)
			return false;
		switch ((int)number) {
		case SIGKILL: case SIGSTOP: case SIGPROF: case SIGSEGV: case SIGBUS:
		case SIGFPE: case SIGILL: case SIGABRT: case SIGTRAP: case SIGSYS:
		case SIGCHLD: case SIGPIPE:
			return false;
		}
		return true;
	}
	if (strncasecmp(text, "SIG", 3) == 0)
		text += 3;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcasecmp(text, names[i]) == 0)
			return true;
	return false;
}

static int check_setting(const setting_t *setting, const char *value)
{
	switch (setting->kind) {
	case SETTING_NUMBER:
		if (valid_number(setting, value))
			return EXIT_OK;
		return command_fail("run: --%s wants a whole number from %llu to %llu, not \"%s\"",
				    setting->option, setting->min, setting->max, value);
	case SETTING_PROFILES:
		if (valid_profiles(value))
			return EXIT_OK;
		return command_fail("run: -p/--profiles wants a comma list of cpu, heap, mutex, "
				    "block (or all, none), not \"%s\"", value);
	case SETTING_SIGNAL:
		if (valid_signal(value))
			return EXIT_OK;
		return command_fail("run: --signal wants a catchable signal (USR2, USR1, HUP, "
				    "a number, ...) or none, not \"%s\"", value);
	}
	return EXIT_USAGE;
}

/* ---- finding the shim -------------------------------------------------- */

static bool is_readable_file(const char *path)
{
	struct stat status;
	return stat(path, &status) == 0 && S_ISREG(status.st_mode) && access(path, R_OK) == 0;
}

/* Fills `shim` (PATH_MAX bytes) with the absolute path of libcprof.so.
 * Returns EXIT_OK, or EXIT_USAGE after one line naming where it looked. */
static int find_shim(const char *given, char *shim)
{
	if (given) {
		errno = 0;
		if (!is_readable_file(given) || !realpath(given, shim))
			return command_fail("run: --lib %s: %s", given,
					    errno ? strerror(errno) : "not a regular file");
		return EXIT_OK;
	}
	char self[PATH_MAX];
	ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
	if (length <= 0)
		return command_fail("run: cannot find my own path in /proc/self/exe (%s); "
				    "give --lib FILE", strerror(errno));
	self[length] = '\0';
	char *slash = strrchr(self, '/');
	*slash = '\0'; /* the directory cprof is in */
	static const char *const places[] = {
		"libcprof.so",            /* next to it */
		"../preload/libcprof.so", /* the build tree: tools/cprof */
		"../lib/libcprof.so",     /* installed: <prefix>/bin/cprof */
	};
	char candidate[PATH_MAX + 64];
	for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) {
		snprintf(candidate, sizeof candidate, "%s/%s", self, places[i]);
		if (is_readable_file(candidate) && realpath(candidate, shim))
			return EXIT_OK;
	}
	return command_fail("run: cannot find libcprof.so (looked in %s/, %s/../preload/ and "
			    "%s/../lib/); give --lib FILE", self, self, self);
}

/* ---- the output directory ---------------------------------------------- */

/* mkdir -p. Returns 0 or -1 with errno set. */
static int make_directories(const char *path)
{
	char buffer[PATH_MAX];
	if (strlen(path) >= sizeof buffer) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(buffer, path);
	for (char *p = buffer + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buffer, 0777) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buffer, 0777) != 0 && errno != EEXIST)
		return -1;
	struct stat status;
	if (stat(buffer, &status) != 0)
		return -1;
	if (!S_ISDIR(status.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

typedef struct name_list {
	char **names;
	size_t count, capacity;
} name_list_t;

static void name_list_free(name_list_t *list)
{
	for (size_t i = 0; i < list->count; i++)
		free(list->names[i]);
	free(list->names);
	*list = (name_list_t){ 0 };
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t length = strlen(s), suffix_length = strlen(suffix);
	return length >= suffix_length && strcmp(s + length - suffix_length, suffix) == 0;
}

/* The profile files (*.pb.gz, not hidden) in `directory`; an unreadable
 * directory gives an empty list. */
static void list_profiles(const char *directory, name_list_t *list)
{
	*list = (name_list_t){ 0 };
	DIR *dir = opendir(directory);
	if (!dir)
		return;
	struct dirent *entry;
	while ((entry = readdir(dir)) != NULL) {
		if (entry->d_name[0] == '.' || !ends_with(entry->d_name, ".pb.gz"))
			continue;
		if (list->count == list->capacity) {
			size_t bigger = list->capacity ? list->capacity * 2 : 16;
			char **names = realloc(list->names, bigger * sizeof *names);
			if (!names)
				break;
			list->names = names;
			list->capacity = bigger;
		}
		char *copy = strdup(entry->d_name);
		if (!copy)
			break;
		list->names[list->count++] = copy;
	}
	closedir(dir);
}

static bool name_list_has(const name_list_t *list, const char *name)
{
	for (size_t i = 0; i < list->count; i++)
		if (strcmp(list->names[i], name) == 0)
			return true;
	return false;
}

/* Profiles sort by everything before the kind (program, pid, sequence),
 * then by kind in the order cpu, heap, mutex, block. */
static int kind_rank(const char *name)
{
	static const char *const kinds[] = { ".cpu.pb.gz", ".heap.pb.gz", ".mutex.pb.gz",
					     ".block.pb.gz" };
	for (int i = 0; i < 4; i++)
		if (ends_with(name, kinds[i]))
			return i;
	return 4;
}

static size_t stem_length(const char *name)
{
	const char *end = name + strlen(name) - strlen(".pb.gz");
	while (end > name && end[-1] != '.')
		end--;
	return (size_t)(end - name);
}

static int compare_profile_names(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	size_t lx = stem_length(x), ly = stem_length(y);
	int order = strncmp(x, y, lx < ly ? lx : ly);
	if (order != 0)
		return order;
	if (lx != ly)
		return lx < ly ? -1 : 1;
	int rx = kind_rank(x), ry = kind_rank(y);
	if (rx != ry)
		return rx < ry ? -1 : 1;
	return strcmp(x, y);
}

/* The one line: the new profiles in `directory` since `before`. */
static void report_profiles(const char *shown_directory, const char *directory,
			    const name_list_t *before)
{
	name_list_t after;
	list_profiles(directory, &after);
	size_t fresh = 0;
	for (size_t i = 0; i < after.count; i++) {
		if (name_list_has(before, after.names[i])) {
			free(after.names[i]);
			continue;
		}
		after.names[fresh++] = after.names[i];
	}
	after.count = fresh;
	if (fresh == 0) {
		fprintf(stderr, "cprof: no profiles in %s (nothing was recorded; the program ran "
				"too briefly, or is statically linked or setuid)\n",
			shown_directory);
		name_list_free(&after);
		return;
	}
	qsort(after.names, after.count, sizeof *after.names, compare_profile_names);
	fprintf(stderr, "cprof: %zu profile%s in %s:", fresh, fresh == 1 ? "" : "s",
		shown_directory);
	size_t shown = fresh <= 8 ? fresh : 6;
	for (size_t i = 0; i < shown; i++) {
		fputc(' ', stderr);
		cprof_print_escaped(stderr, after.names[i]);
	}
	if (shown < fresh)
		fprintf(stderr, " and %zu more", fresh - shown);
	fputc('\n', stderr);
	name_list_free(&after);
}

/* ---- the child's environment ------------------------------------------- */

typedef struct environment {
	char **entries;
	size_t count;
	size_t inherited; /* entries[0 .. inherited) are environ's, the rest ours */
} environment_t;

static void environment_free(environment_t *env)
{
	for (size_t i = env->inherited; i < env->count; i++)
		free(env->entries[i]);
	free(env->entries);
	*env = (environment_t){ 0 };
}

static char *joined(const char *name, const char *value)
{
	size_t length = strlen(name) + 1 + strlen(value) + 1;
	char *entry = malloc(length);
	if (entry)
		snprintf(entry, length, "%s=%s", name, value);
	return entry;
}

static bool is_variable(const char *entry, const char *name)
{
	size_t length = strlen(name);
	return strncmp(entry, name, length) == 0 && entry[length] == '=';
}

/* LD_PRELOAD lists are split on spaces and colons by the loader. */
static bool preload_has(const char *list, const char *path)
{
	size_t length = strlen(path);
	for (const char *p = list; *p;) {
		size_t item = strcspn(p, " :");
		if (item == length && strncmp(p, path, length) == 0)
			return true;
		p += item;
		p += strspn(p, " :");
	}
	return false;
}

/* environ with LD_PRELOAD and the given CPROF_* variables replaced.
 * Returns 0 or -1 (out of memory). */
static int build_environment(environment_t *env, const char *shim, const char *out_dir)
{
	size_t count = 0;
	while (environ[count])
		count++;
	env->entries = calloc(count + SETTING_COUNT + 3, sizeof *env->entries);
	if (!env->entries)
		return -1;
	env->count = 0;
	const char *old_preload = getenv("LD_PRELOAD");
	env->inherited = 0;
	for (size_t i = 0; i < count; i++) {
		const char *entry = environ[i];
		bool replaced = is_variable(entry, "LD_PRELOAD") ||
				(out_dir && is_variable(entry, "CPROF_OUT"));
		for (size_t j = 0; j < SETTING_COUNT && !replaced; j++)
			replaced = settings[j].value && is_variable(entry, settings[j].variable);
		if (!replaced)
			env->entries[env->count++] = (char *)entry;
	}
	env->inherited = env->count;
	char *preload;
	if (!old_preload || old_preload[strspn(old_preload, " :")] == '\0') {
		preload = joined("LD_PRELOAD", shim);
	} else if (preload_has(old_preload, shim)) {
		preload = joined("LD_PRELOAD", old_preload); /* already there (nested run) */
	} else {
		size_t length = strlen(shim) + 1 + strlen(old_preload) + 1;
		char *value = malloc(length);
		if (!value)
			return -1;
		snprintf(value, length, "%s:%s", shim, old_preload);
		preload = joined("LD_PRELOAD", value);
		free(value);
	}
	if (!preload)
		return -1;
	env->entries[env->count++] = preload;
	if (out_dir) {
		char *entry = joined("CPROF_OUT", out_dir);
		if (!entry)
			return -1;
		env->entries[env->count++] = entry;
	}
	for (size_t j = 0; j < SETTING_COUNT; j++) {
		if (!settings[j].value)
			continue;
		char *entry = joined(settings[j].variable, settings[j].value);
		if (!entry)
			return -1;
		env->entries[env->count++] = entry;
	}
	env->entries[env->count] = NULL;
	return 0;
}

/* ---- running and signals ----------------------------------------------- */

static const int forwarded_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
#define FORWARDED_COUNT (sizeof forwarded_signals / sizeof forwarded_signals[0])

static volatile sig_atomic_t child_pid;

/* Async-signal-safe: kill() only, errno kept. */
static void forward_signal(int sig, siginfo_t *info, void *context)
{
	(void)context;
	int saved = errno;
	/* The terminal signalled the whole process group: CMD has it too. */
	if (child_pid > 0 && info->si_code != SI_KERNEL)
		kill((pid_t)child_pid, sig);
	errno = saved;
}

/* Dies of `sig` as CMD did, without a core file of cprof's own; returns
 * 128 + sig if the signal does not end the process. */
static int die_like(int sig)
{
	struct rlimit no_core = { 0, 0 };
	setrlimit(RLIMIT_CORE, &no_core);
	signal(sig, SIG_DFL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);
	return 128 + sig;
}

static void print_run_usage(FILE *stream)
{
	command_print_usage(stream, command_find("run"));
	fputs("  -o, --out DIR           where the profiles go (CPROF_OUT; made if missing;\n"
	      "                          default $CPROF_OUT, else the working directory)\n"
	      "  -p, --profiles LIST     cpu,heap,mutex,block, all or none (CPROF_PROFILES)\n"
	      "      --hz N              CPU samples per second per thread (CPROF_CPU_HZ)\n"
	      "      --max-depth N       deepest stack kept (CPROF_MAX_DEPTH)\n"
	      "      --signal SIG        the dump signal, or none (CPROF_SIGNAL)\n"
	      "      --stacks N          unique stacks held (CPROF_STACKS)\n"
	      "      --heap-rate N       mean bytes between heap samples (CPROF_HEAP_RATE)\n"
	      "      --heap-samples N    live heap samples held (CPROF_HEAP_SAMPLES)\n"
	      "      --seed N            repeatable sampling (CPROF_SEED)\n"
	      "      --mutex-fraction N  keep 1 contention in N (CPROF_MUTEX_FRACTION)\n"
	      "      --block-rate NS     block profile sampling (CPROF_BLOCK_RATE)\n"
	      "      --unwind-caches N   threads with a fast-unwind cache (CPROF_UNWIND_CACHES)\n"
	      "      --lib FILE          the libcprof.so to use (default: found next to cprof)\n"
	      "  -q, --quiet             no line saying where the profiles went\n"
	      "CMD runs with LD_PRELOAD=libcprof.so; cprof exits with its status.\n",
	      stream);
}

int command_run(int argc, char **argv)
{
	const command_t *command = command_find("run");
	enum { OPTION_LIB = 0x80, OPTION_HELP };
	struct option options[SETTING_COUNT + 5];
	size_t used = 0;
	for (size_t i = 0; i < SETTING_COUNT; i++)
		options[used++] = (struct option){ settings[i].option, required_argument, NULL,
						   (int)(OPTION_SETTING_BASE + i) };
	options[used++] = (struct option){ "out", required_argument, NULL, 'o' };
	options[used++] = (struct option){ "lib", required_argument, NULL, OPTION_LIB };
	options[used++] = (struct option){ "quiet", no_argument, NULL, 'q' };
	options[used++] = (struct option){ "help", no_argument, NULL, 'h' };
	options[used] = (struct option){ NULL, 0, NULL, 0 };

	const char *out_dir = NULL, *lib = NULL;
	bool quiet = false;
	optind = 0;
	opterr = 0;
	int code;
	/* "+": options end at CMD, whose own options are its own. */
	while ((code = getopt_long(argc, argv, "+:o:p:qh", options, NULL)) != -1) {
		if (code >= OPTION_SETTING_BASE && code < OPTION_SETTING_BASE + (int)SETTING_COUNT) {
			setting_t *setting = &settings[code - OPTION_SETTING_BASE];
			int status = check_setting(setting, optarg);
			if (status != EXIT_OK)
				return status;
			setting->value = optarg;
			continue;
		}
		switch (code) {
		case 'p': {
			int status = check_setting(&settings[0], optarg);
			if (status != EXIT_OK)
				return status;
			settings[0].value = optarg;
			break;
		}
		case 'o':
			if (optarg[0] == '\0')
				return command_fail("run: -o wants a directory, not \"\"");
			out_dir = optarg;
			break;
		case OPTION_LIB:
			lib = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			print_run_usage(stdout);
			return command_finish_output();
		default:
			return command_option_error(command, code, argv);
		}
	}
	if (optind >= argc)
		return command_fail("run: no command to run; usage: cprof run %s",
				    command->arguments);
	char **cmd = argv + optind;

	char shim[PATH_MAX];
	int status = find_shim(lib, shim);
	if (status != EXIT_OK)
		return status;
	if (strpbrk(shim, " :"))
		return command_fail("run: %s: LD_PRELOAD cannot carry a path with a space or "
				    "colon; give --lib a path without", shim);

	/* The directory: made now, so that a bad one fails before the run. */
	const char *shown_directory = out_dir;
	char directory[PATH_MAX];
	if (!shown_directory)
		shown_directory = getenv("CPROF_OUT");
	if (shown_directory && shown_directory[0] != '\0') {
		if (make_directories(shown_directory) != 0)
			return command_fail("run: cannot make the output directory %s: %s",
					    shown_directory, strerror(errno));
		if (!realpath(shown_directory, directory))
			return command_fail("run: %s: %s", shown_directory, strerror(errno));
	} else {
		if (!getcwd(directory, sizeof directory))
			return command_fail("run: cannot read the working directory: %s",
					    strerror(errno));
		shown_directory = directory;
	}
	name_list_t before;
	list_profiles(directory, &before);

	environment_t env = { 0 };
	if (build_environment(&env, shim, out_dir ? directory : NULL) != 0) {
		environment_free(&env);
		name_list_free(&before);
		return command_fail("run: out of memory");
	}

	/* Forwarded signals are blocked from before the fork until the child's
	 * pid is known, so none is lost or sent to nobody. */
	sigset_t forwarded, old_mask;
	sigemptyset(&forwarded);
	for (size_t i = 0; i < FORWARDED_COUNT; i++)
		sigaddset(&forwarded, forwarded_signals[i]);
	sigprocmask(SIG_BLOCK, &forwarded, &old_mask);
	struct sigaction old_actions[FORWARDED_COUNT];
	struct sigaction forward = { .sa_sigaction = forward_signal,
				     .sa_flags = SA_SIGINFO | SA_RESTART };
	sigemptyset(&forward.sa_mask);
	for (size_t i = 0; i < FORWARDED_COUNT; i++)
		sigaction(forwarded_signals[i], &forward, &old_actions[i]);

	/* exec failures come back through a close-on-exec pipe. */
	int report[2];
	if (pipe2(report, O_CLOEXEC) != 0)
		return command_fail("run: pipe: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return command_fail("run: fork: %s", strerror(errno));
	if (pid == 0) {
		/* The child: the signal state cprof found, then CMD. */
		for (size_t i = 0; i < FORWARDED_COUNT; i++)
			sigaction(forwarded_signals[i], &old_actions[i], NULL);
		sigprocmask(SIG_SETMASK, &old_mask, NULL);
		close(report[0]);
		execvpe(cmd[0], cmd, env.entries);
		int error = errno;
		ssize_t written = write(report[1], &error, sizeof error);
		(void)written;
		_exit(error == ENOENT ? 127 : 126);
	}
	child_pid = pid;
	close(report[1]);
	environment_free(&env);
	sigprocmask(SIG_SETMASK, &old_mask, NULL);

	int exec_error = 0;
	ssize_t got;
	do
		got = read(report[0], &exec_error, sizeof exec_error);
	while (got < 0 && errno == EINTR);
	close(report[0]);

	int wait_status;
	while (waitpid(pid, &wait_status, 0) < 0) {
		if (errno != EINTR) {
			command_fail("run: waitpid: %s", strerror(errno));
			wait_status = 0x7f00; /* as if it exited 127 */
			break;
		}
	}
	child_pid = 0;
	if (got == (ssize_t)sizeof exec_error) {
		fputs("cprof: run: ", stderr);
		cprof_print_escaped(stderr, cmd[0]);
		fprintf(stderr, ": %s\n", strerror(exec_error));
		name_list_free(&before);
		return exec_error == ENOENT ? 127 : 126;
	}

	if (!quiet)
		report_profiles(shown_directory, directory, &before);
	name_list_free(&before);
	for (size_t i = 0; i < FORWARDED_COUNT; i++)
		sigaction(forwarded_signals[i], &old_actions[i], NULL);
	fflush(NULL);
	if (WIFSIGNALED(wait_status))
		return die_like(WTERMSIG(wait_status));
	return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 1;
}
