/* config.c — the CPROF_* environment, read once at start-up.
 *
 * Every variable is validated; a bad value costs one `cprof:` warning that
 * names the variable and the value, and the default is kept. Nothing here
 * allocates: getenv and fixed buffers only, since this runs in the
 * constructor before the program's own allocator may be ready.
 */
#include "cprof_internal.h"
#include "http_route.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

cprof_config_t cprof_config;

/* Parses a whole decimal number in [min, max]; false on anything else. */
static bool parse_unsigned(const char *s, unsigned long min, unsigned long max,
			   unsigned long *out)
{
	if (!s || !*s || *s == '-' || *s == '+')
		return false;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* Reads a whole number in [min, max] into *value (an unsigned or a
 * uint64_t, by size); on a bad value warns and keeps the default. */
static void read_number(const char *name, unsigned long min, unsigned long max, void *value,
			size_t size)
{
	const char *s = getenv(name);
	unsigned long v;
	if (!s)
		return;
	if (parse_unsigned(s, min, max, &v)) {
		if (size == sizeof(unsigned))
			*(unsigned *)value = (unsigned)v;
		else
			*(uint64_t *)value = v;
		return;
	}
	unsigned long current = size == sizeof(unsigned) ? *(unsigned *)value : *(uint64_t *)value;
	cprof_log("%s=\"%s\" is not a whole number from %lu to %lu; using %lu", name, s, min,
		  max, current);
}

#define read_unsigned(name, min, max, field) read_number(name, min, max, field, sizeof *(field))

static const struct {
	const char *name;
	int number;
} signal_names[] = {
	{ "HUP", SIGHUP },   { "INT", SIGINT },   { "QUIT", SIGQUIT }, { "USR1", SIGUSR1 },
	{ "USR2", SIGUSR2 }, { "ALRM", SIGALRM }, { "TERM", SIGTERM }, { "CONT", SIGCONT },
	{ "TTIN", SIGTTIN }, { "TTOU", SIGTTOU }, { "URG", SIGURG },   { "XCPU", SIGXCPU },
	{ "XFSZ", SIGXFSZ }, { "VTALRM", SIGVTALRM }, { "WINCH", SIGWINCH }, { "PWR", SIGPWR },
};

/* A dump signal must be one a handler can catch and that means nothing to
 * the profiler or to a crash: not KILL/STOP, not SIGPROF, not SEGV & co. */
static bool dump_signal_allowed(int sig)
{
	switch (sig) {
	case SIGKILL: case SIGSTOP: case SIGPROF: case SIGSEGV: case SIGBUS:
	case SIGFPE: case SIGILL: case SIGABRT: case SIGTRAP: case SIGSYS:
	case SIGCHLD: case SIGPIPE:
		return false;
	}
	return sig >= 1 && sig <= SIGRTMAX;
}

static int parse_signal(const char *s)
{
	unsigned long n;
	if (parse_unsigned(s, 1, (unsigned long)SIGRTMAX, &n))
		return (int)n;
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
		if (strcasecmp(s, signal_names[i].name) == 0)
			return signal_names[i].number;
	return -1;
}

static void read_signal(void)
{
	const char *s = getenv("CPROF_SIGNAL");
	if (!s)
		return;
	if (strcasecmp(s, "none") == 0 || strcmp(s, "0") == 0) {
		cprof_config.dump_signal = 0;
		return;
	}
	int sig = parse_signal(s);
	if (sig > 0 && dump_signal_allowed(sig)) {
		cprof_config.dump_signal = sig;
		return;
	}
	cprof_log("CPROF_SIGNAL=\"%s\" is not a usable signal (a name such as USR2 or "
		  "USR1, a number, or none); using SIGUSR2", s);
}

/* "cpu,heap,mutex,block" in any order; "all" or "none" also. */
static void read_profiles(void)
{
	const char *s = getenv("CPROF_PROFILES");
	if (!s)
		return;
	unsigned set = 0;
	const char *p = s;
	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		int found = 0;
		if (len == 3 && strncasecmp(p, "all", 3) == 0) {
			set |= (1u << CPROF_KIND_COUNT) - 1;
			found = 1;
		} else if (len == 4 && strncasecmp(p, "none", 4) == 0) {
			found = 1;
		}
		for (int k = 0; k < CPROF_KIND_COUNT && !found; k++) {
			const char *name = cprof_kind_name((cprof_kind_t)k);
			if (len == strlen(name) && strncasecmp(p, name, len) == 0) {
				set |= 1u << k;
				found = 1;
			}
		}
		if (!found && len > 0) {
			cprof_log("CPROF_PROFILES=\"%s\" names an unknown profile (known: "
				  "cpu,heap,mutex,block,threads); using all", s);
			return;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	cprof_config.profiles = set;
}

static void read_cpu_timer(void)
{
	const char *s = getenv("CPROF_CPU_TIMER");
	if (!s || strcmp(s, "thread") == 0)
		return;
	if (strcmp(s, "process") == 0) {
		cprof_config.cpu_process_timer = true;
		return;
	}
	cprof_log("CPROF_CPU_TIMER=\"%s\" is neither thread nor process; using thread", s);
}

/* CPROF_CLOCK: how waits are timed (clock.c). */
static void read_wait_clock(void)
{
	const char *s = getenv("CPROF_CLOCK");
	if (!s || strcmp(s, "auto") == 0)
		return;
	if (strcmp(s, "monotonic") == 0) {
		cprof_config.wait_clock = CPROF_CLOCK_MONOTONIC;
		return;
	}
	cprof_log("CPROF_CLOCK=\"%s\" is neither auto nor monotonic; using auto", s);
}

/* CPROF_LINES: program (default), all, none. */
static void read_lines(void)
{
	static const char *const names[] = { [CPROF_LINES_PROGRAM] = "program",
					     [CPROF_LINES_ALL] = "all",
					     [CPROF_LINES_NONE] = "none" };
	const char *s = getenv("CPROF_LINES");
	if (!s)
		return;
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcmp(s, names[i]) == 0) {
			cprof_config.lines = i;
			return;
		}
	cprof_log("CPROF_LINES=\"%s\" is not program, all or none; using program", s);
}

/* CPROF_DUMP_INTERVAL: "60s", "500ms", "2m", "1h", or whole seconds;
 * 100 ms to 1 day. */
static void read_dump_interval(void)
{
	const char *s = getenv("CPROF_DUMP_INTERVAL");
	if (!s || !*s)
		return;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	uint64_t unit = 1000000000ULL;
	if (end != s && *s != '-' && *s != '+' && !errno) {
		if (strcmp(end, "ms") == 0)
			unit = 1000000ULL;
		else if (strcmp(end, "m") == 0)
			unit = 60ULL * 1000000000ULL;
		else if (strcmp(end, "h") == 0)
			unit = 3600ULL * 1000000000ULL;
		else if (*end != '\0' && strcmp(end, "s") != 0)
			unit = 0;
		if (unit && v <= 86400000ULL * 1000000ULL / unit) {
			uint64_t ns = v * unit;
			if (ns >= 100000000ULL && ns <= 86400ULL * 1000000000ULL) {
				cprof_config.dump_interval_ns = ns;
				return;
			}
		}
	}
	cprof_log("CPROF_DUMP_INTERVAL=\"%s\" is not a duration from 100ms to 24h (such as 60s, "
		  "500ms, 5m); no periodic dumps", s);
}

/* CPROF_CPU: always (default) or on-demand. */
static void read_cpu_mode(void)
{
	const char *s = getenv("CPROF_CPU");
	if (!s || strcmp(s, "always") == 0)
		return;
	if (strcmp(s, "on-demand") == 0) {
		cprof_config.cpu_on_demand = true;
		return;
	}
	cprof_log("CPROF_CPU=\"%s\" is neither always nor on-demand; using always", s);
}

static void read_out_dir(void)
{
	const char *s = getenv("CPROF_OUT");
	char *dir = cprof_config.out_dir;
	size_t cap = sizeof cprof_config.out_dir;

	if (s && *s) {
		if (s[0] == '/') {
			if (strlen(s) < cap) {
				strcpy(dir, s);
				return;
			}
		} else if (getcwd(dir, cap) && strlen(dir) + 1 + strlen(s) < cap) {
			/* Relative to the start-up directory, so a later chdir
			 * of the program does not move the profiles. */
			strcat(dir, "/");
			strcat(dir, s);
			return;
		}
		cprof_log("CPROF_OUT=\"%s\" is too long a path; using the working directory", s);
	}
	if (!getcwd(dir, cap)) {
		cprof_log("cannot read the working directory (%s); profiles go to /tmp",
			  strerror(errno));
		strcpy(dir, "/tmp");
	}
}

/* A token is sent in a header: visible ASCII only, so no header can be
 * split or folded by it. */
static bool token_usable(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n >= sizeof cprof_config.http_token)
		return false;
	for (; *t; t++)
		if (*t < 0x21 || *t > 0x7e)
			return false;
	return true;
}

static void read_http(void)
{
	const char *token = getenv("CPROF_HTTP_TOKEN");
	const char *token_file = getenv("CPROF_HTTP_TOKEN_FILE");
	if (token && *token) {
		if (token_usable(token))
			strcpy(cprof_config.http_token, token);
		else
			cprof_log("CPROF_HTTP_TOKEN is empty, longer than 255 characters or has "
				  "spaces or control characters; not used");
	}
	if (token_file && *token_file) {
		if (token_file[0] == '/' && strlen(token_file) < sizeof cprof_config.http_token_file)
			strcpy(cprof_config.http_token_file, token_file);
		else
			cprof_log("CPROF_HTTP_TOKEN_FILE=\"%s\" is not an absolute path; not used",
				  token_file);
	}
	const char *s = getenv("CPROF_HTTP");
	if (!s || !*s)
		return;
	cprof_http_address_t address;
	const char *why = cprof_http_parse_address(s, &address);
	if (why || strlen(s) >= sizeof cprof_config.http) {
		cprof_log("CPROF_HTTP=\"%s\" is not an address to serve on (%s); no endpoint", s,
			  why ? why : "too long");
		return;
	}
	if (!address.loopback && !cprof_config.http_token[0] && !cprof_config.http_token_file[0]) {
		cprof_log("CPROF_HTTP=\"%s\" is not a loopback address: set CPROF_HTTP_TOKEN or "
			  "CPROF_HTTP_TOKEN_FILE to serve it to the network; no endpoint", s);
		return;
	}
	strcpy(cprof_config.http, s);
}

void cprof_config_load(void)
{
	/* Every kind but threads: a snapshot signals running threads at
	 * each dump (README, "The threads profile"), so it is asked for. */
	cprof_config.profiles = ((1u << CPROF_KIND_COUNT) - 1) & ~(1u << CPROF_KIND_THREADS);
	cprof_config.cpu_hz = 100;
	cprof_config.max_depth = 64;
	cprof_config.dump_signal = SIGUSR2;
	cprof_config.stacks = 32768;
	cprof_config.heap_rate = 524288;
	cprof_config.heap_samples = 65536;
	cprof_config.seed = 0;
	/* Measured (bench/sections/locks.sh; bench/RESULTS.md, "Mutex and
	 * block"). Mutex: keeping every contention cost a 4-thread loop on one
	 * hot mutex 10-22% of its throughput (an unwind per contended
	 * release); 1 in 10 cost 2-5%, 1 in 100 no less within the noise.
	 * Block: a pipe ping-pong (four calls of ~1-3 us per trip) was 7.9%
	 * slower at 100 us, nearly all of it the two vDSO clock reads every
	 * wrapped call pays at any rate; 10 us added 4.6 points (an unwind for
	 * a larger share of the short waits), 1 us 13; 1 ms was no cheaper
	 * and its estimate of those waits erred by up to 18% a run, against
	 * 5% at 100 us. Waits of 100 us and more are all kept, exactly. */
	cprof_config.mutex_fraction = 10;
	cprof_config.block_rate = 100000;
	cprof_config.wait_clock = CPROF_CLOCK_AUTO;
	cprof_config.label_sets = 4096;
	cprof_config.dump_interval_ns = 0; /* CPROF_DUMP_INTERVAL: none */
	cprof_config.keep = 0;             /* CPROF_KEEP: every dump stays */
	cprof_config.lines = CPROF_LINES_PROGRAM;
	/* libunwind's trace cache is 256 KiB a thread (unwind.c): 64 threads
	 * at once, 16 MiB, cover the programs that have fewer threads than
	 * that in full; the rest unwind uncached (bench/RESULTS.md). */
	cprof_config.unwind_caches = 64;

	read_out_dir();
	read_profiles();
	read_unsigned("CPROF_CPU_HZ", 1, 10000, &cprof_config.cpu_hz);
	read_unsigned("CPROF_MAX_DEPTH", 1, CPROF_DEPTH_LIMIT, &cprof_config.max_depth);
	read_unsigned("CPROF_STACKS", 256, 1u << 24, &cprof_config.stacks);
	read_unsigned("CPROF_HEAP_RATE", 0, 1UL << 40, &cprof_config.heap_rate);
	read_unsigned("CPROF_HEAP_SAMPLES", 1024, 1u << 24, &cprof_config.heap_samples);
	read_unsigned("CPROF_SEED", 0, ~0UL, &cprof_config.seed);
	read_unsigned("CPROF_MUTEX_FRACTION", 1, 1u << 30, &cprof_config.mutex_fraction);
	read_unsigned("CPROF_BLOCK_RATE", 1, 1UL << 40, &cprof_config.block_rate);
	read_unsigned("CPROF_LABEL_SETS", 16, 1u << 20, &cprof_config.label_sets);
	read_unsigned("CPROF_KEEP", 0, 1u << 20, &cprof_config.keep);
	read_dump_interval();
	read_unsigned("CPROF_UNWIND_CACHES", 0, 1u << 16, &cprof_config.unwind_caches);
	read_signal();
	read_cpu_timer();
	read_cpu_mode();
	read_wait_clock();
	read_lines();
	cprof_config.http_max_seconds = 300;
	cprof_config.http_connections = 8;
	cprof_config.http_timeout = 10;
	read_unsigned("CPROF_HTTP_MAX_SECONDS", 1, 86400, &cprof_config.http_max_seconds);
	read_unsigned("CPROF_HTTP_CONNECTIONS", 1, 256, &cprof_config.http_connections);
	read_unsigned("CPROF_HTTP_TIMEOUT", 1, 3600, &cprof_config.http_timeout);
	read_http();
	const char *symbolize = getenv("CPROF_HTTP_SYMBOLIZE");
	if (symbolize && strcmp(symbolize, "off") == 0)
		cprof_config.http_addresses_only = true;
	else if (symbolize && strcmp(symbolize, "on") != 0)
		cprof_log("CPROF_HTTP_SYMBOLIZE=\"%s\" is neither on nor off; using on", symbolize);
}
