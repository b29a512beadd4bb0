/* service.c — the libcprof demo: a small record-processing service with
 * four planted performance problems, one for each profile. Run it under
 * `cprof run` (demo/demo.sh, `make demo`), read the four profiles, then
 * run it with --fixed and compare with `cprof diff`. The README's
 * "Tutorial: the demo" walks through it.
 *
 * Shape, as a real service:
 *
 *   reader (main thread)       read_record -> [lookup_account] -> pipe
 *   workers (--workers, 4)     next_record <- pipe
 *                              [lookup_account]          (fixed)
 *                              parse_fields, render_summary -> append_field
 *                              store_result: journal + keep (results_lock)
 *                              stats_record (stats_lock)
 *   metrics thread             every 5 ms: export_metrics (stats_lock)
 *
 * The planted problems (--fix KIND removes one, --fixed all four):
 *   CPU    append_field finds the end of the summary by scanning it from
 *          the start for every field: building a summary is quadratic in
 *          its length. Fix: keep the end pointer.
 *   heap   every 10th record is a duplicate, which store_result drops
 *          without freeing its payload (allocated in read_record). Fix:
 *          free it.
 *   mutex  store_result holds results_lock while it writes and flushes the
 *          journal entry (about 150 us), so workers queue behind each
 *          other. Fix: write the journal first, lock only to keep.
 *   block  the reader calls lookup_account (a 250 us round trip to an
 *          account service, simulated by a sleep) for each record before
 *          it goes into the pipe: one at a time, so the worker pool waits
 *          in read() on an empty pipe. Fix: the workers look up, in
 *          parallel, and the reader only reads.
 *
 * Usage: service [--fixed | --fix cpu,heap,mutex,block] [--records N] [--workers N]
 * Prints one line of results and one of symptoms (elapsed and CPU time,
 * heap in use at exit); the results line is the same whatever is fixed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Kept as separate functions under their own names (no inlining, no
 * ".isra"/".constprop" clones), so that every profile names them. */
#define NOINLINE __attribute__((noipa))

enum {
	PAYLOAD_BYTES = 4096,     /* each record's raw payload */
	FIELDS = 320,             /* fields in a record */
	DUPLICATE_EVERY = 10,     /* every Nth record repeats an earlier id */
	ACCOUNTS = 8192,          /* the account table, kept for the whole run */
	LOOKUP_NS = 250000,       /* one account-service round trip */
	JOURNAL_FLUSH_NS = 150000, /* one journal flush */
	METRICS_PERIOD_NS = 5000000,
	METRICS_ACCOUNTS = 512,   /* accounts in a metrics scrape */
};

enum { FIX_CPU = 1, FIX_HEAP = 2, FIX_MUTEX = 4, FIX_BLOCK = 8, FIX_ALL = 15 };
static unsigned fixes; /* the planted problems removed */

static bool fixed(unsigned fix)
{
	return (fixes & fix) != 0;
}

typedef struct record {
	uint64_t id;
	uint32_t account;
	char *payload;        /* PAYLOAD_BYTES, text fields separated by ',' */
	int64_t balance;      /* from lookup_account */
} record_t;

typedef struct result {
	uint64_t id;
	uint64_t checksum;
	char *summary;
} result_t;

typedef struct account {
	uint32_t id;
	int64_t balance;
	char name[112];
} account_t;

/* ---- shared state ------------------------------------------------------ */

static account_t *accounts; /* loaded at start, alive until exit */
static int pipe_fds[2];     /* reader -> workers: record pointers */

static pthread_mutex_t results_lock = PTHREAD_MUTEX_INITIALIZER;
static result_t *results;
static size_t result_count;
static uint64_t *seen_ids; /* ids kept so far, by id: duplicates are dropped */
static size_t duplicates;
static int journal_fd;

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uint64_t records, bytes, histogram[64];
	uint32_t per_account[ACCOUNTS];
} stats;
static volatile bool stopping;

static void sleep_ns(long ns)
{
	struct timespec t = { ns / 1000000000, ns % 1000000000 };
	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ull;
	x ^= x >> 27;
	x *= 0x81dadef4bc2dd44dull;
	return x ^ (x >> 33);
}

/* ---- the reader -------------------------------------------------------- */

static NOINLINE void load_accounts(void)
{
	accounts = calloc(ACCOUNTS, sizeof *accounts);
	for (uint32_t i = 0; i < ACCOUNTS; i++) {
		accounts[i].id = i;
		accounts[i].balance = (int64_t)(mix(i) % 100000);
		snprintf(accounts[i].name, sizeof accounts[i].name, "account-%u", i);
	}
}

/* A record as it would arrive from a socket or a file: generated here, so
 * that the demo needs no input. Every DUPLICATE_EVERY-th repeats an id. */
static NOINLINE record_t *read_record(uint64_t sequence)
{
	record_t *record = malloc(sizeof *record);
	record->id = sequence % DUPLICATE_EVERY == DUPLICATE_EVERY - 1 ? sequence - 1 : sequence;
	record->account = (uint32_t)(mix(record->id) % ACCOUNTS);
	record->payload = malloc(PAYLOAD_BYTES);
	size_t used = 0;
	uint64_t x = mix(record->id + 1); /* a duplicate is the same record again */
	for (int field = 0; field < FIELDS && used + 16 < PAYLOAD_BYTES; field++) {
		x = mix(x);
		used += (size_t)snprintf(record->payload + used, PAYLOAD_BYTES - used, "%s%07x",
					 field ? "," : "", (unsigned)(x & 0xfffffff));
	}
	record->balance = 0;
	return record;
}

/* A round trip to the account service. */
static NOINLINE void lookup_account(record_t *record)
{
	sleep_ns(LOOKUP_NS);
	record->balance = accounts[record->account].balance;
}

static NOINLINE void send_record(record_t *record)
{
	ssize_t n = write(pipe_fds[1], &record, sizeof record);
	if (n != (ssize_t)sizeof record) {
		perror("service: write to the worker pipe");
		exit(1);
	}
}

static NOINLINE void reader_main(uint64_t records)
{
	for (uint64_t i = 0; i < records; i++) {
		record_t *record = read_record(i);
		if (!fixed(FIX_BLOCK))
			lookup_account(record); /* planted (block): one at a time */
		send_record(record);
	}
	close(pipe_fds[1]); /* the workers see end of file */
}

/* ---- the workers ------------------------------------------------------- */

/* Waits for the next record; NULL at the end. */
static NOINLINE record_t *next_record(void)
{
	record_t *record;
	ssize_t n;
	do
		n = read(pipe_fds[0], &record, sizeof record);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof record ? record : NULL;
}

static NOINLINE size_t parse_fields(const char *payload, const char *fields[FIELDS],
				    size_t lengths[FIELDS])
{
	size_t count = 0;
	const char *p = payload;
	while (*p && count < FIELDS) {
		const char *end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		fields[count] = p;
		lengths[count] = (size_t)(end - p);
		count++;
		p = *end ? end + 1 : end;
	}
	return count;
}

/* Appends `piece` (length bytes) and a separator to the summary; returns
 * the new end. Planted (CPU): without `end` it finds the end by scanning
 * the summary from the start, every time. */
static NOINLINE char *append_field(char *summary, char *end, const char *piece,
				   size_t length)
{
	if (!end) {
		end = summary;
		while (*end)
			end++;
	}
	memcpy(end, piece, length);
	end[length] = ';';
	end[length + 1] = '\0';
	return end + length + 1;
}

static NOINLINE char *render_summary(const record_t *record)
{
	const char *fields[FIELDS];
	size_t lengths[FIELDS];
	size_t count = parse_fields(record->payload, fields, lengths);
	char *summary = malloc(PAYLOAD_BYTES + 64);
	int used = snprintf(summary, 64, "%llu:%lld:", (unsigned long long)record->id,
			    (long long)record->balance);
	char *end = summary + used;
	for (size_t i = 0; i < count; i++)
		end = append_field(summary, fixed(FIX_CPU) ? end : NULL, fields[i], lengths[i]);
	return summary;
}

static uint64_t checksum(const char *text)
{
	uint64_t sum = 1469598103934665603ull;
	for (; *text; text++)
		sum = (sum ^ (unsigned char)*text) * 1099511628211ull;
	return sum;
}

/* Writes the journal entry for a record and waits for the flush. */
static NOINLINE void write_journal(const result_t *result)
{
	char line[96];
	int length = snprintf(line, sizeof line, "%llu %016llx\n",
			      (unsigned long long)result->id,
			      (unsigned long long)result->checksum);
	if (write(journal_fd, line, (size_t)length) != length)
		perror("service: journal");
	sleep_ns(JOURNAL_FLUSH_NS); /* stands for fdatasync */
}

/* Keeps a result, once per id. Planted (mutex): the journal is written
 * under results_lock. Planted (heap): a duplicate's payload is not freed. */
static NOINLINE void store_result(record_t *record, result_t result)
{
	if (fixed(FIX_MUTEX))
		write_journal(&result);
	pthread_mutex_lock(&results_lock);
	if (!fixed(FIX_MUTEX))
		write_journal(&result);
	bool duplicate = seen_ids[record->id] != 0;
	if (duplicate) {
		duplicates++;
	} else {
		seen_ids[record->id] = 1;
		results[result_count++] = result;
	}
	pthread_mutex_unlock(&results_lock);
	if (duplicate) {
		free(result.summary);
		if (fixed(FIX_HEAP))
			free(record->payload);
		/* else: planted (heap), the payload leaks */
		free(record);
		return;
	}
	free(record->payload);
	free(record);
}

static NOINLINE void stats_record(uint32_t account, size_t bytes)
{
	pthread_mutex_lock(&stats_lock);
	stats.records++;
	stats.bytes += bytes;
	stats.histogram[63 - __builtin_clzll(bytes | 1)]++;
	stats.per_account[account]++;
	pthread_mutex_unlock(&stats_lock);
}

static void *worker_main(void *arg)
{
	(void)arg;
	record_t *record;
	while ((record = next_record()) != NULL) {
		if (fixed(FIX_BLOCK))
			lookup_account(record);
		result_t result = { .id = record->id };
		result.summary = render_summary(record);
		result.checksum = checksum(result.summary);
		size_t bytes = strlen(result.summary);
		uint32_t account = record->account;
		store_result(record, result);
		stats_record(account, bytes);
	}
	return NULL;
}

/* ---- metrics ----------------------------------------------------------- */

/* Formats the counters for a metrics scrape, holding stats_lock: the
 * ordinary contention every version of the service has. */
static NOINLINE size_t export_metrics(char *text, size_t size)
{
	pthread_mutex_lock(&stats_lock);
	size_t used = (size_t)snprintf(text, size, "records %llu\nbytes %llu\n",
				       (unsigned long long)stats.records,
				       (unsigned long long)stats.bytes);
	for (int i = 0; i < 64 && used < size; i++)
		used += (size_t)snprintf(text + used, size - used, "size_log2{%d} %llu\n", i,
					 (unsigned long long)stats.histogram[i]);
	for (int i = 0; i < METRICS_ACCOUNTS && used < size; i++)
		used += (size_t)snprintf(text + used, size - used, "account{%d} %u\n", i,
					 stats.per_account[i]);
	pthread_mutex_unlock(&stats_lock);
	return used;
}

static void *metrics_main(void *arg)
{
	(void)arg;
	char text[METRICS_ACCOUNTS * 24 + 4096];
	while (!stopping) {
		export_metrics(text, sizeof text);
		sleep_ns(METRICS_PERIOD_NS);
	}
	return NULL;
}

/* ---- main -------------------------------------------------------------- */

static double seconds(struct timespec t)
{
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
	struct rusage usage;
	getrusage(RUSAGE_SELF, &usage);
	return (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
	       (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

static unsigned parse_fixes(const char *list)
{
	static const char *const names[] = { "cpu", "heap", "mutex", "block" };
	unsigned set = 0;
	for (const char *p = list; *p;) {
		size_t length = strcspn(p, ",");
		size_t i = 0;
		while (i < 4 && !(strlen(names[i]) == length && strncmp(p, names[i], length) == 0))
			i++;
		if (i == 4) {
			fprintf(stderr, "service: --fix wants cpu, heap, mutex or block, not \"%s\"\n",
				list);
			exit(2);
		}
		set |= 1u << i;
		p += length + (p[length] == ',');
	}
	return set;
}

static long positive(const char *text, const char *option)
{
	char *end;
	long value = strtol(text, &end, 10);
	if (*end != '\0' || value < 1 || value > 10000000) {
		fprintf(stderr, "service: %s wants a positive number, not \"%s\"\n", option, text);
		exit(2);
	}
	return value;
}

int main(int argc, char **argv)
{
	long records = 4000, workers = 4;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--fixed") == 0)
			fixes = FIX_ALL;
		else if (strcmp(argv[i], "--fix") == 0 && i + 1 < argc)
			fixes |= parse_fixes(argv[++i]);
		else if (strcmp(argv[i], "--records") == 0 && i + 1 < argc)
			records = positive(argv[++i], "--records");
		else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
			workers = positive(argv[++i], "--workers");
		else {
			fprintf(stderr, "usage: service [--fixed | --fix cpu,heap,mutex,block] "
					"[--records N] [--workers N]\n");
			return 2;
		}
	}
	/* Sleeps as long as asked (the default slack adds 50 us to each). */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	struct timespec start, finish;
	clock_gettime(CLOCK_MONOTONIC, &start);

	load_accounts();
	results = calloc((size_t)records, sizeof *results);
	seen_ids = calloc((size_t)records, sizeof *seen_ids);
	journal_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (!accounts || !results || !seen_ids || journal_fd < 0 || pipe(pipe_fds) != 0) {
		perror("service: start-up");
		return 1;
	}
	pthread_t metrics, *pool = calloc((size_t)workers, sizeof *pool);
	pthread_create(&metrics, NULL, metrics_main, NULL);
	for (long i = 0; i < workers; i++)
		pthread_create(&pool[i], NULL, worker_main, NULL);

	reader_main((uint64_t)records);

	for (long i = 0; i < workers; i++)
		pthread_join(pool[i], NULL);
	stopping = true;
	pthread_join(metrics, NULL);
	clock_gettime(CLOCK_MONOTONIC, &finish);

	/* Results: the same whatever is fixed. */
	uint64_t total = 0;
	for (size_t i = 0; i < result_count; i++)
		total ^= mix(results[i].id) ^ results[i].checksum;
	printf("service: %zu records kept, %zu duplicates dropped, digest %016llx\n",
	       result_count, duplicates, (unsigned long long)total);
	fflush(stdout);

	/* A service shuts down cleanly: everything it keeps is freed, except
	 * the account table, which lives as long as the process. */
	for (size_t i = 0; i < result_count; i++)
		free(results[i].summary);
	free(results);
	free(seen_ids);
	free(pool);
	close(journal_fd);
	close(pipe_fds[0]);

	struct mallinfo2 heap = mallinfo2(); /* arenas and mmap'd blocks */
	char label[64] = "";
	if (fixes == FIX_ALL)
		snprintf(label, sizeof label, " --fixed");
	else if (fixes != 0)
		snprintf(label, sizeof label, " --fix %s%s%s%s", fixed(FIX_CPU) ? "cpu," : "",
			 fixed(FIX_HEAP) ? "heap," : "", fixed(FIX_MUTEX) ? "mutex," : "",
			 fixed(FIX_BLOCK) ? "block," : "");
	if (label[0] && label[strlen(label) - 1] == ',')
		label[strlen(label) - 1] = '\0';
	fprintf(stderr,
		"service%s: %.2f s elapsed, %.2f s CPU, %.1f MiB of heap still in use at exit\n",
		label, seconds(finish) - seconds(start), cpu_seconds(),
		(double)(heap.uordblks + heap.hblkhd) / (1 << 20));
	return 0;
}
